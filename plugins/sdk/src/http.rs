//! Outbound HTTP through the host, to the hosts the manifest allows.

pub use crate::bindings::http_api::{Error, Request, Response};

/// Sends one request.
pub fn send(request: &Request) -> Result<Response, Error> {
    crate::bindings::http_api::send(request)
}

/// A GET without headers.
pub fn get(url: &str) -> Result<Response, Error> {
    send(&Request {
        method: "GET".into(),
        url: url.into(),
        headers: Vec::new(),
        body: Vec::new(),
        timeout_ms: None,
    })
}
