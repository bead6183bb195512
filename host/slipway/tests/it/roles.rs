//! The role × endpoint matrix, and organisation isolation: every endpoint,
//! called by each role of the owning organisation and by another
//! organisation's admin.

use crate::common;

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{Value, json};
use slipway::server::AppState;
use slipway_store::{Role, Store};

/// Who may call an endpoint.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Allowed {
    Everyone,
    Writers,
    Admins,
}

struct Fixture {
    state: Arc<AppState>,
    tokens: Vec<(Role, String)>,
    outsider: String,
    vars: Vec<(&'static str, String)>,
}

async fn fixture() -> (Fixture, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let made = store.bootstrap("acme", None).unwrap().unwrap();
    let org = made.organisation.id;
    let provider = store
        .create_user(org, "provider", Role::ApiProvider)
        .unwrap()
        .1;
    let viewer = store.create_user(org, "viewer", Role::Viewer).unwrap().1;
    let (target, _) = store.create_user(org, "target", Role::Viewer).unwrap();
    let outsider = store.create_organisation("globex").unwrap().token;
    store.create_integration(org, "orders").unwrap();
    let canvas = serde_json::from_value(json!({
        "nodes": [{"id": "in", "type": "http-trigger@^1", "config": {"method": "GET", "path": "/"}}]
    }))
    .unwrap();
    store.add_canvas(org, "orders", &canvas).unwrap();
    let release = store
        .create_release(org, common::new_release("orders", 1))
        .unwrap();
    let state = common::loaded(store).await;
    // A target and two services; one has an operation queued (the jobs do
    // not run here), so the other takes operations.
    let docker =
        json!({"plugin": "docker", "connection": {"driver": "docker", "endpoint": "local"}});
    state
        .targets
        .set(
            org,
            "spare",
            serde_json::from_value(docker).unwrap(),
            "admin",
        )
        .await
        .unwrap();
    let service = |name: &str| {
        let spec = slipway_domain::services::spec::ServiceSpec::parse(
            json!({"name": name, "target": "local-docker", "image": "registry.example/app:1"}),
        )
        .unwrap();
        state
            .services
            .create(
                org,
                slipway_domain::services::NewService::from_spec(spec).unwrap(),
                "admin",
            )
            .unwrap()
            .id
    };
    let (idle, busy) = (service("idle"), service("busy"));
    let operation = state
        .services
        .operate(
            org,
            busy,
            slipway_domain::services::Operation::Stop,
            Default::default(),
            "admin",
        )
        .unwrap()
        .id;
    let greeter =
        std::fs::read(slipway_plugin_artifacts::test_guest("greeter-v1").unwrap()).unwrap();
    let plugin = state.plugins.runtime().load(&greeter).await.unwrap();
    state.plugins.uploaded(org).insert(plugin);
    let fixture = Fixture {
        state,
        tokens: vec![
            (Role::OrgAdmin, made.token),
            (Role::ApiProvider, provider),
            (Role::Viewer, viewer),
        ],
        outsider,
        vars: vec![
            ("{release}", release.id.to_string()),
            ("{user}", target.id.to_string()),
            ("{spare}", "spare".to_string()),
            ("{service}", idle.to_string()),
            ("{busy}", busy.to_string()),
            ("{operation}", operation.to_string()),
        ],
    };
    (fixture, dir)
}

async fn call(
    state: &Arc<AppState>,
    method: &str,
    path: &str,
    token: &str,
    body: &Value,
) -> StatusCode {
    let (content_type, bytes) = match body {
        Value::String(wasm) if wasm == "<wasm>" => (
            "application/wasm",
            std::fs::read(slipway_plugin_artifacts::test_guest("greeter-v2").unwrap()).unwrap(),
        ),
        _ => ("application/json", body.to_string().into_bytes()),
    };
    common::call(state, method, path, Some(token), content_type, bytes)
        .await
        .0
}

fn endpoints() -> Vec<(&'static str, &'static str, Value, Allowed)> {
    use Allowed::*;
    vec![
        ("GET", "/api/v1/me", json!(null), Everyone),
        ("GET", "/api/v1/integrations", json!(null), Everyone),
        (
            "POST",
            "/api/v1/integrations",
            json!({"name": "new"}),
            Writers,
        ),
        ("GET", "/api/v1/integrations/orders", json!(null), Everyone),
        (
            "DELETE",
            "/api/v1/integrations/orders",
            json!(null),
            Writers,
        ),
        (
            "GET",
            "/api/v1/integrations/orders/versions",
            json!(null),
            Everyone,
        ),
        (
            "POST",
            "/api/v1/integrations/orders/versions",
            json!({"nodes": []}),
            Writers,
        ),
        (
            "GET",
            "/api/v1/integrations/orders/versions/1",
            json!(null),
            Everyone,
        ),
        (
            "POST",
            "/api/v1/integrations/orders/versions/1/validate",
            json!(null),
            Everyone,
        ),
        ("GET", "/api/v1/plugins", json!(null), Everyone),
        ("POST", "/api/v1/plugins", json!("<wasm>"), Writers),
        (
            "GET",
            "/api/v1/plugins/node-type/greeter",
            json!(null),
            Everyone,
        ),
        (
            "DELETE",
            "/api/v1/plugins/node-type/greeter/1.0.0",
            json!(null),
            Writers,
        ),
        ("GET", "/api/v1/releases", json!(null), Everyone),
        (
            "POST",
            "/api/v1/releases",
            common::release_body("orders", 1),
            Writers,
        ),
        ("GET", "/api/v1/releases/{release}", json!(null), Everyone),
        ("DELETE", "/api/v1/releases/{release}", json!(null), Writers),
        ("GET", "/api/v1/targets", json!(null), Everyone),
        ("GET", "/api/v1/targets/{spare}", json!(null), Everyone),
        (
            "GET",
            "/api/v1/targets/{spare}/changes",
            json!(null),
            Everyone,
        ),
        (
            "PUT",
            "/api/v1/targets/edge",
            json!({"plugin": "docker", "connection": {"driver": "docker", "endpoint": "local"}}),
            Admins,
        ),
        ("DELETE", "/api/v1/targets/{spare}", json!(null), Admins),
        ("GET", "/api/v1/services", json!(null), Everyone),
        (
            "POST",
            "/api/v1/services",
            json!({"name": "new", "target": "local-docker", "image": "registry.example/app:2"}),
            Writers,
        ),
        ("GET", "/api/v1/services/{service}", json!(null), Everyone),
        (
            "PUT",
            "/api/v1/services/{service}",
            json!({"image": "registry.example/app:2", "replicas": 2}),
            Writers,
        ),
        (
            "GET",
            "/api/v1/services/{service}/revisions",
            json!(null),
            Everyone,
        ),
        (
            "POST",
            "/api/v1/services/{service}/operations",
            json!({"operation": "stop"}),
            Writers,
        ),
        (
            "GET",
            "/api/v1/services/{busy}/operations/{operation}",
            json!(null),
            Everyone,
        ),
        ("DELETE", "/api/v1/services/{service}", json!(null), Writers),
        ("GET", "/api/v1/users", json!(null), Admins),
        (
            "POST",
            "/api/v1/users",
            json!({"name": "n", "role": "viewer"}),
            Admins,
        ),
        ("DELETE", "/api/v1/users/{user}", json!(null), Admins),
        ("POST", "/api/v1/users/{user}/tokens", json!(null), Admins),
        ("DELETE", "/api/v1/users/{user}/tokens", json!(null), Admins),
    ]
}

fn allowed(rule: Allowed, role: Role) -> bool {
    match rule {
        Allowed::Everyone => true,
        Allowed::Writers => role != Role::Viewer,
        Allowed::Admins => role == Role::OrgAdmin,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_on_every_endpoint() {
    let mut failures = Vec::new();
    for (method, template, body, rule) in endpoints() {
        for role in [Role::OrgAdmin, Role::ApiProvider, Role::Viewer] {
            // A fresh organisation per call: deletions do not affect the next row.
            let (fixture, _dir) = fixture().await;
            let path = fixture
                .vars
                .iter()
                .fold(template.to_string(), |p, (k, v)| p.replace(k, v));
            let token = &fixture.tokens.iter().find(|(r, _)| *r == role).unwrap().1;
            let status = call(&fixture.state, method, &path, token, &body).await;
            let ok = if allowed(rule, role) {
                status.is_success()
            } else {
                status == StatusCode::FORBIDDEN
            };
            if !ok {
                failures.push(format!("{method} {template} as {role:?}: {status}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organisations_resources_answer_404() {
    let mut failures = Vec::new();
    for (method, template, body, _) in endpoints() {
        let scoped =
            template.contains("orders") || template.contains('{') || template.contains("greeter");
        if !scoped || method == "POST" && template == "/api/v1/releases" {
            continue;
        }
        let (fixture, _dir) = fixture().await;
        let path = fixture
            .vars
            .iter()
            .fold(template.to_string(), |p, (k, v)| p.replace(k, v));
        let status = call(&fixture.state, method, &path, &fixture.outsider, &body).await;
        if status != StatusCode::NOT_FOUND {
            failures.push(format!(
                "{method} {template} from another organisation: {status}"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
