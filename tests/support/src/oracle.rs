//! OCIR as the `ocir` adapter meets it:
//! - the token service (`GET /20180419/docker/token`, OCIR's path) takes
//!   basic credentials only with a user name OCIR accepts,
//!   `<namespace>/<user>` or `<namespace>/oracleidentitycloudservice/<user>`,
//!   then answers as the test registry's token realm;
//! - the registry front refuses uploads to a repository that does not exist
//!   when the tenancy does not create repositories on push.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::front::{self, Gate};
use crate::token_server::{self, TokenIssuer};

pub const NAMESPACE: &str = "axaxnpcrorw5";
pub const TOKEN_PATH: &str = "/20180419/docker/token";

/// OCIR's token service and registry front.
pub struct FakeOcir {
    /// The token service, `http://host:port`.
    pub url: String,
    /// Whether the tenancy creates repositories on first push.
    pub creates_on_push: AtomicBool,
    /// Repositories that exist.
    pub repositories: Mutex<BTreeSet<String>>,
    /// User names refused for their form.
    pub refused_names: Mutex<Vec<String>>,
    front: std::sync::OnceLock<String>,
}

impl FakeOcir {
    /// The token service, answering as `issuer` once the name passes.
    pub async fn start_token_service(issuer: &Arc<TokenIssuer>) -> Arc<FakeOcir> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = Arc::new(FakeOcir {
            url: format!("http://{}", listener.local_addr().unwrap()),
            creates_on_push: AtomicBool::new(true),
            repositories: Mutex::default(),
            refused_names: Mutex::default(),
            front: std::sync::OnceLock::new(),
        });
        let app = axum::Router::new()
            .route(TOKEN_PATH, axum::routing::get(token))
            .with_state((fake.clone(), issuer.clone()));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    /// The realm the registry names in its challenge.
    pub fn realm(&self) -> String {
        format!("{}{TOKEN_PATH}", self.url)
    }

    /// Puts the registry front before `upstream` (`http://host:port`).
    pub async fn start_front(self: &Arc<Self>, upstream: &str) {
        let address = front::start(upstream.to_string(), Arc::new(OcirGate(self.clone()))).await;
        self.front.set(address).unwrap();
    }

    /// The registry front, `host:port`.
    pub fn registry(&self) -> &str {
        self.front.get().expect("the front was started")
    }
}

/// Whether OCIR takes `username`.
fn well_formed(username: &str) -> bool {
    let Some(rest) = username
        .strip_prefix(NAMESPACE)
        .and_then(|r| r.strip_prefix('/'))
    else {
        return false;
    };
    match rest.split_once('/') {
        None => !rest.is_empty(),
        Some((provider, user)) => {
            provider == "oracleidentitycloudservice" && !user.is_empty() && !user.contains('/')
        }
    }
}

async fn token(
    State((fake, issuer)): State<(Arc<FakeOcir>, Arc<TokenIssuer>)>,
    headers: HeaderMap,
    query: RawQuery,
) -> Response {
    let user = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| STANDARD.decode(v).ok())
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|pair| pair.split_once(':').map(|(u, _)| u.to_string()));
    if let Some(user) = user
        && !well_formed(&user)
    {
        fake.refused_names.lock().unwrap().push(user);
        return front::refusal(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "the user name must be <tenancy-namespace>/<username>",
        );
    }
    token_server::token(State(issuer), headers, query)
        .await
        .into_response()
}

struct OcirGate(Arc<FakeOcir>);

impl Gate for OcirGate {
    fn admit(
        &self,
        method: &Method,
        path: &str,
        _: &str,
        headers: &HeaderMap,
    ) -> Result<Option<String>, Box<Response>> {
        let authorization = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let Some(name) = front::repository(path) else {
            return Ok(authorization);
        };
        let writes =
            *method == Method::POST || (*method == Method::PUT && path.contains("/manifests/"));
        let fake = &self.0;
        let mut repositories = fake.repositories.lock().unwrap();
        if writes && !repositories.contains(&name) {
            if !fake.creates_on_push.load(Ordering::SeqCst) {
                return Err(Box::new(front::refusal(
                    StatusCode::NOT_FOUND,
                    "NAME_UNKNOWN",
                    &format!(
                        "repository {name} not found; the tenancy does not create repositories on push"
                    ),
                )));
            }
            repositories.insert(name);
        }
        Ok(authorization)
    }
}
