//! A reverse proxy in front of the test registry, standing in for a cloud
//! registry's own front end: a [`Gate`] admits or refuses each request and
//! says which `Authorization` the registry behind gets. `Location` headers
//! are rewritten to point at the proxy.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

/// Decides what passes.
pub trait Gate: Send + Sync + 'static {
    /// `Err` refuses with that answer; `Ok` forwards, with this
    /// `Authorization` (none when `None`).
    fn admit(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        headers: &HeaderMap,
    ) -> Result<Option<String>, Box<Response>>;

    /// Whether a manifest PUT is answered without `Location` (as ECR does).
    fn hides_manifest_location(&self) -> bool {
        false
    }
}

struct Front {
    upstream: String,
    origin: String,
    gate: Arc<dyn Gate>,
    http: reqwest::Client,
}

/// Serves a proxy to `upstream` (`http://host:port`) on 127.0.0.1; answers
/// its `host:port`.
pub async fn start(upstream: String, gate: Arc<dyn Gate>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let front = Arc::new(Front {
        upstream,
        origin: format!("http://{address}"),
        gate,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    });
    let app = axum::Router::new().fallback(forward).with_state(front);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

/// The repository a `/v2/<name>/(blobs|manifests|tags)/...` path names.
pub fn repository(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v2/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let at = parts
        .iter()
        .position(|p| matches!(*p, "blobs" | "manifests" | "tags"))?;
    (at > 0).then(|| parts[..at].join("/"))
}

/// A distribution-style error answer.
pub fn refusal(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
    (status, axum::Json(body)).into_response()
}

async fn forward(State(front): State<Arc<Front>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let authorization = match front
        .gate
        .admit(&parts.method, &path, &query, &parts.headers)
    {
        Ok(authorization) => authorization,
        Err(refused) => return *refused,
    };
    let body = to_bytes(body, 1 << 30).await.unwrap();
    let url = if query.is_empty() {
        format!("{}{path}", front.upstream)
    } else {
        format!("{}{path}?{query}", front.upstream)
    };
    let mut upstream = front.http.request(parts.method.clone(), url);
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "host" | "authorization" | "content-length") {
            upstream = upstream.header(name, value);
        }
    }
    if let Some(authorization) = authorization {
        upstream = upstream.header("authorization", authorization);
    }
    let answer = match upstream.body(body).send().await {
        Ok(answer) => answer,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = answer.status();
    let mut headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if matches!(name.as_str(), "content-length" | "transfer-encoding") {
            continue;
        }
        if name == "location" {
            let manifest_put = parts.method == Method::PUT && path.contains("/manifests/");
            if manifest_put && front.gate.hides_manifest_location() {
                continue;
            }
            let rewritten = value
                .to_str()
                .unwrap_or("")
                .replace(&front.upstream, &front.origin);
            headers.insert(name, rewritten.parse().unwrap());
            continue;
        }
        headers.append(name, value.clone());
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
