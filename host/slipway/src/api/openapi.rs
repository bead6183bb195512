//! The OpenAPI document, generated from the handlers' annotations and the
//! types they take and return; served at `/api/v1/openapi.json`.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{integrations, plans, plugins, registry, releases, services, targets, users};

/// The body of every error.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: `invalid`, `not-found`, `forbidden`, ...
    code: String,
    /// For people.
    message: String,
    /// JSON pointer to the request body's field at fault, when one is.
    path: Option<String>,
    /// Its line in a text body (a plan), from 1.
    line: Option<u32>,
    /// Its column, from 1.
    column: Option<u32>,
    /// Every problem, when a body has several (the first is `path` and
    /// `message` too).
    problems: Option<Vec<Problem>>,
}

/// One problem of a request body.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// JSON pointer to the field.
    path: String,
    /// What is wrong.
    message: String,
    /// Its line in a text body (a plan), from 1.
    line: Option<u32>,
    /// Its column, from 1.
    column: Option<u32>,
}

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API's description.
#[derive(OpenApi)]
#[openapi(
    info(title = "Slipway API", description = "Integrations, plugins, releases, targets, services, deploy plans and users of one organisation. Every call but the document itself takes `Authorization: Bearer <token>`."),
    paths(
        super::me,
        integrations::create, integrations::list, integrations::show, integrations::delete,
        integrations::add_version, integrations::versions, integrations::version, integrations::validate,
        plans::create, plans::list, plans::show, plans::remove, plans::run,
        plans::executions, plans::execution, plans::remove_execution, plans::pause, plans::stop, plans::resume, plans::rollback, plans::report, plans::events,
        plugins::upload, plugins::list, plugins::show, plugins::remove, plugins::grant,
        registry::show, registry::set, registry::changes,
        releases::create, releases::list, releases::show, releases::remove, releases::events,
        services::create, services::list, services::show, services::revise, services::remove, services::revisions,
        services::operate, services::operation, services::logs,
        targets::set, targets::list, targets::show, targets::remove, targets::changes,
        users::create, users::list, users::remove, users::new_token, users::revoke,
    ),
    components(schemas(ErrorBody, ErrorDetail, slipway_store::Diagnostic)),
    modifiers(&BearerToken),
    security(("token" = [])),
    tags(
        (name = "integrations", description = "Integrations and their immutable canvas versions"),
        (name = "plans", description = "Deploy plans (seed 002) and their executions: many services in order, paused, stopped and resumed"),
        (name = "plugins", description = "WebAssembly components: node types, registry adapters, deploy targets"),
        (name = "registry", description = "The registry release images are pushed to, through a registry-adapter plugin"),
        (name = "releases", description = "An integration version on its way to an image"),
        (name = "services", description = "Something deployed on a target, its revisions and operations"),
        (name = "targets", description = "Where services run: a deploy-target plugin and how the host reaches it"),
        (name = "users", description = "Users and API tokens (org-admin only)"),
    )
)]
pub struct ApiDoc;

/// `GET /api/v1/openapi.json`: built once, then served as bytes.
pub async fn document() -> impl IntoResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let body = DOCUMENT.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .expect("the document serializes")
    });
    ([(header::CONTENT_TYPE, "application/json")], body.as_str())
}
