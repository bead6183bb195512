//! A node type that reaches for the network from every call, for the
//! server's tests of what uploads may reach: `describe` fetches
//! [`DESCRIBE_URL`], `validate` and `translate` fetch the config's `url`
//! (as its `stage` says), and each says what came of it.

use serde::{Deserialize, Serialize};
use slipway_sdk::node::{Info, NodeError, NodeType, Output, Translated};
use slipway_sdk::serde_json::json;
use slipway_sdk::{Diagnostic, Message, http};

/// What `describe` fetches: a fixed port, since it gets no config.
pub const DESCRIBE_URL: &str = "http://127.0.0.1:17493/describe";

/// The node type.
pub struct Prober;

/// Where to reach, and from which call.
#[derive(Debug, Deserialize, Serialize)]
pub struct Config {
    /// The URL to fetch.
    pub url: String,
    /// `validate` or `translate`.
    pub stage: String,
}

/// What fetching `url` came to: `reached: <status>`, `denied: ...` or `failed: ...`.
fn probe(url: &str) -> String {
    match http::get(url) {
        Ok(response) => format!("reached: {}", response.status),
        Err(http::Error::Denied(message)) => format!("denied: {message}"),
        Err(other) => format!("failed: {other:?}"),
    }
}

impl NodeType for Prober {
    type Config = Config;
    type Node = Config;

    fn info() -> Info {
        Info::new(
            &format!("probe {}", probe(DESCRIBE_URL)),
            json!({"type": "object"}),
        )
    }

    fn validate(config: &Config) -> Vec<Diagnostic> {
        if config.stage == "validate" {
            return vec![Diagnostic::at("/url", probe(&config.url))];
        }
        Vec::new()
    }

    fn translate(config: Config) -> Result<Translated<Config>, Vec<Diagnostic>> {
        if config.stage == "translate" {
            return Err(vec![Diagnostic::at("/url", probe(&config.url))]);
        }
        Ok(Translated::new(config))
    }

    fn invoke(node: Config, _input: Message) -> Result<Output, NodeError> {
        Ok(Output::out(Message::json(&probe(&node.url))))
    }
}

slipway_sdk::export_node_type!(
    Prober,
    manifest: r#"allowed-hosts = ["*", "127.0.0.1:17493", "localhost:17493"]"#
);
