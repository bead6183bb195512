//! What cloud registry adapters share: form and JSON posts to a provider's
//! control plane, provider tokens kept between calls until shortly before
//! they expire, and reading a JWT's expiry.

use base64::Engine as _;

use crate::Diagnostic;
use crate::distribution::{encode, split_url};
use crate::host;
use crate::http::{self, Request};
use crate::registry::Error;

/// A kept token is renewed when this little of its life is left.
const RENEW_MARGIN_MS: u64 = 5 * 60 * 1000;

/// A provider's answer: status and body (headers are not needed).
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The body as text, cut to 300 characters, for error messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body)
            .chars()
            .take(300)
            .collect()
    }
}

/// `a=1&b=2`, percent-encoded.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Sends `body` to `url` with `headers`; `what` names the endpoint in errors.
pub fn send(
    what: &str,
    method: &str,
    url: &str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> Result<Answer, Error> {
    let response = http::send(&Request {
        method: method.into(),
        url: url.into(),
        headers,
        body,
        timeout_ms: Some(30_000),
    })
    .map_err(|e| Error::Unavailable(format!("{what} ({url}): {}", describe(&e))))?;
    if response.status >= 500 {
        return Err(Error::Unavailable(format!(
            "{what} ({url}) answered {}",
            response.status
        )));
    }
    Ok(Answer {
        status: response.status,
        body: response.body,
    })
}

/// Posts an `application/x-www-form-urlencoded` body.
pub fn post_form(what: &str, url: &str, pairs: &[(&str, &str)]) -> Result<Answer, Error> {
    let headers = vec![(
        "content-type".into(),
        "application/x-www-form-urlencoded".into(),
    )];
    send(what, "POST", url, headers, form(pairs).into_bytes())
}

fn describe(error: &http::Error) -> String {
    match error {
        http::Error::Denied(m) => {
            format!("not allowed: {m}; grant the host in the registry's allowed-hosts")
        }
        http::Error::InvalidRequest(m) => format!("invalid request: {m}"),
        http::Error::Transport(m) => m.clone(),
        http::Error::Timeout => "timed out".into(),
    }
}

/// The token kept under `key`, or a new one from `fetch` (the token and
/// when it expires, in ms since the epoch), kept until shortly before then.
pub fn cached_token(
    key: &str,
    fetch: impl FnOnce() -> Result<(String, u64), Error>,
) -> Result<String, Error> {
    if let Some(token) = host::cache_get(key) {
        return Ok(token);
    }
    let (token, expires_at_ms) = fetch()?;
    let now = host::now_ms();
    let life = expires_at_ms.saturating_sub(now);
    let keep = life.saturating_sub(RENEW_MARGIN_MS.min(life / 2));
    host::cache_put(key, &token, keep);
    Ok(token)
}

/// The `exp` claim of a JWT, in ms since the epoch; `None` when the token
/// is not a JWT or has no expiry.
pub fn jwt_expiry_ms(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_u64().map(|s| s * 1000)
}

/// A provider's error: `error_description`, `error`, `message` or
/// `__type` from a JSON body, else the text.
pub fn provider_message(answer: &Answer) -> String {
    let json = answer.json();
    let field = |name: &str| json.get(name).and_then(|v| v.as_str()).map(str::to_string);
    let nested = json
        .get("error")
        .and_then(|e| e.get("message"))
        .and_then(|v| v.as_str())
        .map(str::to_string);
    field("error_description")
        .or(nested)
        .or_else(|| field("error"))
        .or_else(|| field("message").or_else(|| field("Message")))
        .or_else(|| field("__type"))
        .unwrap_or_else(|| answer.text())
}

/// Problems with endpoint overrides, by JSON pointer: each of `bases` must
/// be `http(s)://host[:port]` with no path, each of `urls` any http(s) URL.
pub fn check_endpoints(
    bases: &[(&str, &Option<String>)],
    urls: &[(&str, &Option<String>)],
) -> Vec<Diagnostic> {
    let bad_base = bases.iter().filter_map(|(path, url)| {
        url.as_ref().filter(|u| split_url(u).is_none()).map(|_| {
            Diagnostic::at(
                *path,
                "must be http:// or https:// followed by host[:port], with no path",
            )
        })
    });
    let bad_url = urls.iter().filter_map(|(path, url)| {
        url.as_ref()
            .filter(|u| !(u.starts_with("https://") || u.starts_with("http://")))
            .map(|_| Diagnostic::at(*path, "must be an http:// or https:// URL"))
    });
    bad_base.chain(bad_url).collect()
}
