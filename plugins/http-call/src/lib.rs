//! `http-call`: sends the message to an HTTP endpoint and passes on the response.
//!
//! The manifest allows any host; the host grants each use only the host its
//! config names (the translated node carries it as `host`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use slipway_sdk::http::{self, Error, Request};
use slipway_sdk::node::{Info, NodeError, NodeType, Output, Translated};
use slipway_sdk::serde_json::json;
use slipway_sdk::{Diagnostic, Message};

/// The node type.
pub struct HttpCall;

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];

/// Canvas config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// `http://` or `https://` URL.
    pub url: String,
    /// HTTP method; `POST` by default.
    #[serde(default = "default_method")]
    pub method: String,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Gives up after this long.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u32,
    /// An answer of 400 or more fails the node (otherwise it is passed on).
    #[serde(default = "yes")]
    pub fail_on_error_status: bool,
}

/// Runtime node.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// The URL.
    pub url: String,
    /// `host:port` the call goes to, for the host's grant.
    pub host: String,
    /// Upper-case method.
    pub method: String,
    /// Extra request headers.
    pub headers: BTreeMap<String, String>,
    /// Timeout.
    pub timeout_ms: u32,
    /// See [`Config::fail_on_error_status`].
    pub fail_on_error_status: bool,
}

fn default_method() -> String {
    "POST".into()
}

fn default_timeout() -> u32 {
    10_000
}

fn yes() -> bool {
    true
}

/// `host:port` of an http(s) URL, or why it is not one.
pub fn authority(url: &str) -> Result<String, String> {
    let (rest, default_port) = if let Some(rest) = url.strip_prefix("https://") {
        (rest, 443)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (rest, 80)
    } else {
        return Err("must start with `http://` or `https://`".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("must not carry credentials: use headers".into());
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            let port: u16 = port.parse().map_err(|_| format!("invalid port `{port}`"))?;
            (host, port)
        }
        _ => (authority, default_port),
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.is_empty()
        || !bare
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
    {
        return Err(format!("invalid host `{host}`"));
    }
    Ok(format!("{}:{port}", host.to_ascii_lowercase()))
}

impl NodeType for HttpCall {
    type Config = Config;
    type Node = Node;

    fn info() -> Info {
        Info::new(
            "Sends the message to an HTTP endpoint and passes on the response.",
            json!({
                "type": "object",
                "required": ["url"],
                "additionalProperties": false,
                "properties": {
                    "url": {"type": "string", "format": "uri"},
                    "method": {"enum": METHODS, "default": "POST"},
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "timeoutMs": {"type": "integer", "minimum": 1, "maximum": 300000, "default": 10000},
                    "failOnErrorStatus": {"type": "boolean", "default": true}
                }
            }),
        )
    }

    fn validate(config: &Config) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        if let Err(e) = authority(&config.url) {
            problems.push(Diagnostic::at("/url", e));
        }
        if !METHODS.contains(&config.method.to_ascii_uppercase().as_str()) {
            problems.push(Diagnostic::at(
                "/method",
                format!(
                    "unsupported method `{}`: use one of {}",
                    config.method,
                    METHODS.join(", ")
                ),
            ));
        }
        for name in config.headers.keys() {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                problems.push(Diagnostic::at(
                    format!("/headers/{}", slipway_sdk::config::escape(name)),
                    "invalid header name",
                ));
            }
        }
        if config.timeout_ms == 0 || config.timeout_ms > 300_000 {
            problems.push(Diagnostic::at("/timeoutMs", "must be between 1 and 300000"));
        }
        problems
    }

    fn translate(config: Config) -> Result<Translated<Node>, Vec<Diagnostic>> {
        let host = authority(&config.url).map_err(|e| vec![Diagnostic::at("/url", e)])?;
        Ok(Translated::new(Node {
            url: config.url,
            host,
            method: config.method.to_ascii_uppercase(),
            headers: config.headers,
            timeout_ms: config.timeout_ms,
            fail_on_error_status: config.fail_on_error_status,
        }))
    }

    fn invoke(node: Node, mut input: Message) -> Result<Output, NodeError> {
        let mut headers: Vec<(String, String)> = node.headers.into_iter().collect();
        if let Some(content_type) = input.header("content-type")
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            headers.push(("content-type".into(), content_type.into()));
        }
        let body = if matches!(node.method.as_str(), "GET" | "HEAD") {
            Vec::new()
        } else {
            std::mem::take(&mut input.body)
        };
        let request = Request {
            method: node.method,
            url: node.url,
            headers,
            body,
            timeout_ms: Some(node.timeout_ms),
        };
        let response = http::send(&request).map_err(|e| match e {
            Error::Denied(m) => NodeError::new("denied", m).with_status(502),
            Error::InvalidRequest(m) => NodeError::new("invalid-request", m).with_status(500),
            Error::Transport(m) => NodeError::new("unreachable", m).with_status(502),
            Error::Timeout => {
                NodeError::new("timeout", "the endpoint did not answer in time").with_status(504)
            }
        })?;
        if node.fail_on_error_status && response.status >= 400 {
            return Err(NodeError::new(
                "upstream-status",
                format!("{} answered {}", request.url, response.status),
            )
            .with_status(502));
        }
        input.body = response.body;
        input.headers = response.headers;
        input.set_attribute("http.status", &response.status.to_string());
        Ok(Output::out(input))
    }
}

slipway_sdk::export_node_type!(HttpCall, manifest: r#"allowed-hosts = ["*"]"#);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_of_urls() {
        assert_eq!(
            authority("https://API.example.com/x?y").unwrap(),
            "api.example.com:443"
        );
        assert_eq!(
            authority("http://127.0.0.1:8080/a").unwrap(),
            "127.0.0.1:8080"
        );
        assert_eq!(authority("http://[::1]:9000/").unwrap(), "[::1]:9000");
        assert!(authority("ftp://x").is_err());
        assert!(
            authority("http://user:pw@x/")
                .unwrap_err()
                .contains("credentials")
        );
        assert!(authority("http://x:notaport/").is_err());
    }
}
