//! A token server as the distribution token specification describes it:
//! `GET <realm>?service=..&scope=..` with basic authentication answers a JWT
//! (ES256, signed by a self-signed certificate carried in `x5c`) granting
//! the asked actions, which the registry checks against its
//! `rootcertbundle`. Served at Harbor's path, `/service/token`, so a fake
//! Harbor can mount it too.
//!
//! Knobs for hostile tests: repositories nobody may pull from (a mount from
//! them is refused by the registry), and tokens issued already expired.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

/// The `service` the registry names in its challenge and the token's audience.
pub const SERVICE: &str = "slipway-test-registry";
/// The token's issuer, as the registry expects it.
pub const ISSUER: &str = "slipway-test-issuer";
/// Where tokens are served (Harbor's path).
pub const TOKEN_PATH: &str = "/service/token";
/// How long a token lives, in seconds.
const LIFETIME: i64 = 300;

/// Signs tokens for known users.
pub struct TokenIssuer {
    key: EcdsaKeyPair,
    cert_der: Vec<u8>,
    /// The certificate the registry trusts (PEM).
    pub cert_pem: String,
    users: Mutex<Vec<(String, String)>>,
    /// Repositories no token grants `pull` on.
    pub unreadable: Mutex<Vec<String>>,
    /// How many of the next tokens are issued already expired (while the
    /// answer still says they last [`LIFETIME`] seconds).
    pub stale: AtomicUsize,
    /// Tokens issued so far.
    pub issued: AtomicUsize,
    /// Every scope asked for, in order.
    pub asked: Mutex<Vec<String>>,
}

impl TokenIssuer {
    /// An issuer with a fresh key, knowing `users` as `(name, password)`.
    pub fn new(users: &[(&str, &str)]) -> Arc<TokenIssuer> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec![ISSUER.to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let signing = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.serialize_der(),
            &SystemRandom::new(),
        )
        .unwrap();
        Arc::new(TokenIssuer {
            key: signing,
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            users: Mutex::new(
                users
                    .iter()
                    .map(|(u, p)| (u.to_string(), p.to_string()))
                    .collect(),
            ),
            unreadable: Mutex::default(),
            stale: AtomicUsize::new(0),
            issued: AtomicUsize::new(0),
            asked: Mutex::default(),
        })
    }

    /// The token endpoint, at [`TOKEN_PATH`].
    pub fn router(self: &Arc<Self>) -> axum::Router {
        axum::Router::new()
            .route(TOKEN_PATH, axum::routing::get(token))
            .with_state(self.clone())
    }

    /// Serves the endpoint on 127.0.0.1; answers the realm's URL.
    pub async fn serve(self: &Arc<Self>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = self.router();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{address}{TOKEN_PATH}")
    }

    /// The user a basic `Authorization` names, if the password is right;
    /// `Ok(None)` when there is none (anonymous).
    fn user(&self, headers: &HeaderMap) -> Result<Option<String>, ()> {
        let Some(value) = headers.get("authorization") else {
            return Ok(None);
        };
        let pair = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|v| STANDARD.decode(v).ok())
            .and_then(|v| String::from_utf8(v).ok())
            .ok_or(())?;
        let (user, password) = pair.split_once(':').ok_or(())?;
        self.users
            .lock()
            .unwrap()
            .iter()
            .any(|(u, p)| u == user && p == password)
            .then(|| Some(user.to_string()))
            .ok_or(())
    }

    /// Accepts `password` for `user` from now on (a provider's fake issues
    /// credentials the realm then honours).
    pub fn add_user(&self, user: &str, password: &str) {
        self.users
            .lock()
            .unwrap()
            .push((user.to_string(), password.to_string()));
    }

    /// Forgets every password of `user`.
    pub fn remove_user(&self, user: &str) {
        self.users.lock().unwrap().retain(|(u, _)| u != user);
    }

    /// A token for `subject` granting `scopes` (`repository:name:actions`),
    /// as the realm would issue it; counts as issued and honours `stale`.
    pub fn token_for(&self, subject: &str, scopes: &[String]) -> String {
        let access = scopes.iter().filter_map(|s| self.grant(s)).collect();
        let expired = self
            .stale
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let token = self.sign(subject, access, expired);
        self.issued.fetch_add(1, Ordering::SeqCst);
        token
    }

    /// What a `scope` grants: the asked actions, less `pull` on unreadable
    /// repositories.
    fn grant(&self, scope: &str) -> Option<serde_json::Value> {
        let mut parts = scope.splitn(3, ':');
        let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
        let unreadable = self.unreadable.lock().unwrap().iter().any(|r| r == name);
        let actions: Vec<&str> = actions
            .split(',')
            .filter(|a| !(unreadable && *a == "pull"))
            .collect();
        Some(serde_json::json!({"type": kind, "name": name, "actions": actions}))
    }

    fn sign(&self, subject: &str, access: Vec<serde_json::Value>, expired: bool) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        // The registry allows a minute of clock skew; a stale token is well past it.
        let (issued_at, expires) = if expired {
            (now - 3 * LIFETIME, now - 2 * LIFETIME)
        } else {
            (now, now + LIFETIME)
        };
        let header = serde_json::json!({
            "typ": "JWT", "alg": "ES256", "x5c": [STANDARD.encode(&self.cert_der)],
        });
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": subject, "aud": SERVICE,
            "iat": issued_at, "nbf": issued_at, "exp": expires,
            "jti": self.issued.load(Ordering::SeqCst).to_string(),
            "access": access,
        });
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&SystemRandom::new(), signed.as_bytes())
            .unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

/// The realm: a token for the asked scopes, to a known user (or an empty one
/// to an anonymous caller).
pub async fn token(
    State(issuer): State<Arc<TokenIssuer>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Ok(user) = issuer.user(&headers) else {
        let body = serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]});
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    };
    let query = query.unwrap_or_default();
    let mut scopes = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key == "scope" {
            issuer.asked.lock().unwrap().push(value.to_string());
            scopes.push(value.to_string());
        }
    }
    // Anonymous callers get a token that grants nothing.
    if user.is_none() {
        scopes.clear();
    }
    let token = issuer.token_for(user.as_deref().unwrap_or(""), &scopes);
    axum::Json(serde_json::json!({
        "token": token, "access_token": token, "expires_in": LIFETIME,
    }))
    .into_response()
}

/// `bytes` random bytes as hex, for passwords and tokens the fakes issue.
pub fn random_hex(bytes: usize) -> String {
    use ring::rand::SecureRandom;
    let mut buffer = vec![0u8; bytes];
    SystemRandom::new().fill(&mut buffer).unwrap();
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}
