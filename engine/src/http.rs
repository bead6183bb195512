//! HTTP requests into messages, and messages and failures into responses.
//!
//! A request becomes a message with its body and headers (names lower-case)
//! and the attributes `http.method`, `http.path`, `http.query` (the raw query
//! string, without `?`) and `path.<name>` for each path parameter, decoded.
//! The message that reaches the end of its path answers: status from its
//! `http.status` attribute (200 when unset), its headers and its body.

use axum::body::{Body, Bytes};
use axum::http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use serde_json::json;
use slipway_runtime::Message;

use crate::executor::Failure;

/// The attribute a node sets to choose the response status.
pub const STATUS_ATTRIBUTE: &str = "http.status";

/// Headers that belong to one connection, never copied from a message.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "content-length",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Credentials a request carries: never sent back as they came.
const CREDENTIALS: &[&str] = &["authorization", "cookie", "proxy-authorization"];

/// The message a request starts: `params` are the path parameters as matched.
pub fn to_message<'p>(
    parts: &Parts,
    body: Bytes,
    params: impl IntoIterator<Item = (&'p str, &'p str)>,
) -> Message {
    let headers = parts
        .headers
        .iter()
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
        .collect();
    let mut attributes = vec![
        ("http.method".to_string(), parts.method.to_string()),
        ("http.path".to_string(), parts.uri.path().to_string()),
        (
            "http.query".to_string(),
            parts.uri.query().unwrap_or_default().to_string(),
        ),
    ];
    for (name, value) in params {
        let value = percent_decode_str(value).decode_utf8_lossy();
        attributes.push((format!("path.{name}"), value.into_owned()));
    }
    Message {
        body: body.to_vec(),
        headers,
        attributes,
    }
}

/// The response a message gives to the request whose headers were
/// `request`. A message carries its request's headers along, so credentials
/// it still holds as they came are dropped: a node that sets one anew (to
/// another value) sends it.
pub fn reply(message: Message, request: &HeaderMap) -> Response {
    let status = match message
        .attributes
        .iter()
        .find(|(k, _)| k == STATUS_ATTRIBUTE)
    {
        None => StatusCode::OK,
        Some((_, value)) => match value.parse::<u16>().ok().and_then(valid_status) {
            Some(status) => status,
            None => {
                return problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "bad-status",
                    &format!("the flow set {STATUS_ATTRIBUTE} to `{value}`, not an HTTP status"),
                );
            }
        },
    };
    let mut headers = HeaderMap::with_capacity(message.headers.len());
    for (name, value) in &message.headers {
        if HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            continue;
        }
        let reflected = CREDENTIALS.iter().any(|c| name.eq_ignore_ascii_case(c))
            && request
                .get_all(name.as_str())
                .iter()
                .any(|sent| sent.as_bytes() == value.as_bytes());
        if reflected {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            headers.append(name, value);
        }
    }
    (status, headers, Body::from(message.body)).into_response()
}

/// The response to a failed node: its status, and
/// `{"error": {"node", "code", "message"}}`.
pub fn failure(failure: &Failure) -> Response {
    let status = valid_status(failure.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"error": {
        "node": failure.node, "code": failure.code, "message": failure.message}});
    json_response(status, &body)
}

/// An error of the engine itself (no node involved): `{"error": {"code", "message"}}`.
pub fn problem(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body.to_string(),
    )
        .into_response()
}

fn valid_status(code: u16) -> Option<StatusCode> {
    (100..=599)
        .contains(&code)
        .then(|| StatusCode::from_u16(code).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    #[test]
    fn a_request_becomes_a_message() {
        let (parts, ()) = Request::post("/orders/a%20b?x=1&y=2")
            .header("X-Trace", "t1")
            .body(())
            .unwrap()
            .into_parts();
        let message = to_message(&parts, Bytes::from_static(b"{}"), [("id", "a%20b")]);
        assert_eq!(message.body, b"{}");
        assert_eq!(message.headers, vec![("x-trace".into(), "t1".into())]);
        let attribute = |name: &str| {
            message
                .attributes
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(attribute("http.method"), Some("POST"));
        assert_eq!(attribute("http.path"), Some("/orders/a%20b"));
        assert_eq!(attribute("http.query"), Some("x=1&y=2"));
        assert_eq!(attribute("path.id"), Some("a b"));
    }

    #[test]
    fn a_message_answers_with_its_status_and_headers() {
        let message = Message {
            body: b"created".to_vec(),
            headers: vec![
                ("content-type".into(), "text/plain".into()),
                ("content-length".into(), "999".into()),
                ("bad header".into(), "x".into()),
            ],
            attributes: vec![(STATUS_ATTRIBUTE.into(), "201".into())],
        };
        let response = reply(message, &HeaderMap::new());
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.headers()["content-type"], "text/plain");
        assert!(
            response
                .headers()
                .get("content-length")
                .is_none_or(|v| v == "7")
        );

        let bad = Message {
            body: Vec::new(),
            headers: Vec::new(),
            attributes: vec![(STATUS_ATTRIBUTE.into(), "99".into())],
        };
        assert_eq!(
            reply(bad, &HeaderMap::new()).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn credentials_the_request_sent_are_not_reflected() {
        let (parts, ()) = Request::post("/orders")
            .header("authorization", "Bearer s3cret")
            .header("cookie", "session=abc")
            .header("x-trace", "t1")
            .body(())
            .unwrap()
            .into_parts();
        let mut message = to_message(&parts, Bytes::new(), []);
        // A node may set a cookie of its own.
        message
            .headers
            .push(("cookie".into(), "session=new".into()));
        let response = reply(message, &parts.headers);
        let headers = response.headers();
        assert!(headers.get("authorization").is_none());
        let cookies: Vec<_> = headers.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["session=new"]);
        assert_eq!(headers["x-trace"], "t1");
    }
}
