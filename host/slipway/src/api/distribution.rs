//! The OCI distribution API at `/v2/`, read-only, over the server's image
//! store: pull by tag or digest, and list tags. Repositories are
//! `<organisation>/<integration>`; a Slipway token (Basic, as `docker
//! login` sends it, or Bearer) reads its own organisation's only, and
//! another's answer as if they did not exist. Errors are the spec's
//! `{"errors": [{"code", "message"}]}`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine;
use serde_json::json;
use slipway_domain::images::{self, Images};
use tokio::io::AsyncReadExt;

use crate::server::AppState;

/// Tags one page lists at most.
const MAX_TAGS_PAGE: usize = 1000;
/// Bytes read from a blob's file at a time.
const CHUNK: usize = 64 << 10;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v2", any(distribution))
        .route("/v2/", any(distribution))
        .route("/v2/{*path}", any(distribution))
}

/// An error as the distribution spec writes it.
struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            status,
            code,
            message: message.into(),
        }
    }

    fn unknown(code: &'static str, what: &str) -> Failure {
        Failure::new(StatusCode::NOT_FOUND, code, format!("{what} is unknown"))
    }

    fn internal(err: impl std::fmt::Display) -> Failure {
        tracing::error!(error = %err, "image store request failed");
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            "internal error",
        )
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = json!({"errors": [{"code": self.code, "message": self.message}]});
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"slipway\""),
            );
        }
        response
    }
}

/// What a request asks for, its path parsed.
enum Asked<'a> {
    Base,
    Manifest(&'a str, &'a str, &'a str),
    Blob(&'a str, &'a str, &'a str),
    Tags(&'a str, &'a str),
}

/// `<org>/<repository>/(manifests/<ref>|blobs/<digest>|tags/list)`.
fn parse(path: &str) -> Option<Asked<'_>> {
    let path = path.strip_prefix("/v2")?.trim_start_matches('/');
    if path.is_empty() {
        return Some(Asked::Base);
    }
    let mut parts = path.split('/');
    let (organisation, repository, what, last) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    match what {
        "manifests" => Some(Asked::Manifest(organisation, repository, last)),
        "blobs" => Some(Asked::Blob(organisation, repository, last)),
        "tags" if last == "list" => Some(Asked::Tags(organisation, repository)),
        _ => None,
    }
}

async fn distribution(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut response = match answer(&state, &method, &uri, &headers).await {
        Ok(response) => response,
        Err(failure) => failure.into_response(),
    };
    // Clients look for it to know they speak to a registry.
    response.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    response
}

async fn answer(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, Failure> {
    let Some(images) = state.registries.images() else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "UNSUPPORTED",
            "this server keeps no images",
        ));
    };
    let reader = reader(state, images, headers)?;
    if !matches!(*method, Method::GET | Method::HEAD) {
        return Err(Failure::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "the server's image store is read-only: releases put images there",
        ));
    }
    let head = method == Method::HEAD;
    let asked = parse(uri.path())
        .ok_or_else(|| Failure::new(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "no such path"))?;
    let repository = |organisation: &str, repository: &'_ str| -> Result<(), Failure> {
        let own = state
            .store
            .organisation(reader)
            .map_err(Failure::internal)?
            .is_some_and(|o| o.name == organisation);
        if own && images::is_component(repository) {
            Ok(())
        } else {
            Err(Failure::unknown(
                "NAME_UNKNOWN",
                &format!("repository {organisation}/{repository}"),
            ))
        }
    };
    match asked {
        Asked::Base => Ok(axum::Json(json!({})).into_response()),
        Asked::Manifest(organisation, name, reference) => {
            repository(organisation, name)?;
            let manifest = images
                .manifest(reader, name, reference)
                .await
                .map_err(Failure::internal)?
                .ok_or_else(|| {
                    Failure::unknown("MANIFEST_UNKNOWN", &format!("manifest {reference}"))
                })?;
            let response = Response::builder()
                .header(header::CONTENT_TYPE, manifest.media_type)
                .header(header::CONTENT_LENGTH, manifest.bytes.len())
                .header("docker-content-digest", &manifest.digest)
                .header(header::ETAG, format!("\"{}\"", manifest.digest));
            let body = if head {
                Body::empty()
            } else {
                Body::from(manifest.bytes)
            };
            response.body(body).map_err(Failure::internal)
        }
        Asked::Blob(organisation, name, digest) => {
            repository(organisation, name)?;
            let blob = images
                .blob(reader, name, digest)
                .await
                .map_err(Failure::internal)?
                .ok_or_else(|| Failure::unknown("BLOB_UNKNOWN", &format!("blob {digest}")))?;
            let response = Response::builder()
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_LENGTH, blob.size)
                .header("docker-content-digest", digest)
                .header(header::ETAG, format!("\"{digest}\""));
            if head {
                return response.body(Body::empty()).map_err(Failure::internal);
            }
            let file = tokio::fs::File::open(&blob.path)
                .await
                .map_err(Failure::internal)?;
            let chunks = futures::stream::try_unfold(file, |mut file| async move {
                let mut chunk = vec![0; CHUNK];
                let read = file.read(&mut chunk).await?;
                chunk.truncate(read);
                Ok::<_, std::io::Error>((read > 0).then(|| (bytes::Bytes::from(chunk), file)))
            });
            response
                .body(Body::from_stream(chunks))
                .map_err(Failure::internal)
        }
        Asked::Tags(organisation, name) => {
            repository(organisation, name)?;
            let tags = images
                .tags(reader, name)
                .await
                .map_err(Failure::internal)?
                .ok_or_else(|| {
                    Failure::unknown("NAME_UNKNOWN", &format!("repository {organisation}/{name}"))
                })?;
            let (n, last) = page(uri.query().unwrap_or_default());
            let tags: Vec<String> = tags
                .into_iter()
                .filter(|t| last.as_ref().is_none_or(|last| t > last))
                .take(n)
                .collect();
            Ok(
                axum::Json(json!({"name": format!("{organisation}/{name}"), "tags": tags}))
                    .into_response(),
            )
        }
    }
}

/// `n` (at most [`MAX_TAGS_PAGE`]) and `last` from a tags list's query.
fn page(query: &str) -> (usize, Option<String>) {
    let mut n = MAX_TAGS_PAGE;
    let mut last = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "n" => n = value.parse().unwrap_or(MAX_TAGS_PAGE).min(MAX_TAGS_PAGE),
            "last" => last = Some(value.into_owned()),
            _ => {}
        }
    }
    (n, last)
}

/// The organisation the request's credentials read: a Slipway token as
/// Basic's password (any user name) or as a Bearer token, or a pull
/// password the server minted for a Docker Engine.
fn reader(state: &AppState, images: &Images, headers: &HeaderMap) -> Result<u64, Failure> {
    let unauthorized =
        |message: &str| Failure::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message);
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            unauthorized("log in with a Slipway token (`docker login -u <any> -p <token>`)")
        })?;
    let token = if let Some(basic) = value.strip_prefix("Basic ") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or_else(|| {
                unauthorized("the Basic credentials are not base64 of `user:password`")
            })?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| unauthorized("the Basic credentials are not `user:password`"))?;
        if user == images::PULL_USER {
            return images
                .pull_organisation(password)
                .ok_or_else(|| unauthorized("the pull credential is unknown or has expired"));
        }
        password.to_string()
    } else if let Some(bearer) = value.strip_prefix("Bearer ") {
        bearer.trim().to_string()
    } else {
        return Err(unauthorized(
            "the Authorization header must be Basic or Bearer",
        ));
    };
    state
        .store
        .authenticate(&token)
        .map_err(Failure::internal)?
        .map(|principal| principal.organisation.id)
        .ok_or_else(|| unauthorized("unknown token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_one_repository_and_one_thing_in_it() {
        assert!(matches!(parse("/v2/"), Some(Asked::Base)));
        assert!(matches!(parse("/v2"), Some(Asked::Base)));
        assert!(matches!(
            parse("/v2/default/orders/manifests/v1"),
            Some(Asked::Manifest("default", "orders", "v1"))
        ));
        assert!(matches!(
            parse("/v2/default/orders/blobs/sha256:ab"),
            Some(Asked::Blob("default", "orders", "sha256:ab"))
        ));
        assert!(matches!(
            parse("/v2/default/orders/tags/list"),
            Some(Asked::Tags("default", "orders"))
        ));
        for bad in [
            "/v2/default/manifests/v1",
            "/v2/default/a/b/manifests/v1",
            "/v2/default/orders/tags/other",
            "/v2/default/orders/uploads/x",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_tags_page_is_bounded() {
        assert_eq!(page(""), (MAX_TAGS_PAGE, None));
        assert_eq!(page("n=5&last=v2"), (5, Some("v2".into())));
        assert_eq!(page("n=99999999"), (MAX_TAGS_PAGE, None));
    }
}
