//! `log`: writes a line to the host log for each message, then passes it on unchanged.

use serde::{Deserialize, Serialize};
use slipway_sdk::host::{self, Level};
use slipway_sdk::node::{Info, NodeError, NodeType, Output, Translated};
use slipway_sdk::serde_json::json;
use slipway_sdk::{Diagnostic, Message};

/// The node type.
pub struct Log;

/// Canvas config and runtime node: the same here.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The log line.
    pub message: String,
    /// `trace`, `debug`, `info` (default), `warn` or `error`.
    #[serde(default = "default_level")]
    pub level: String,
    /// Also log the body (cut at `maxBodyBytes`).
    #[serde(default)]
    pub include_body: bool,
    /// How much of the body to log.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
}

fn default_level() -> String {
    "info".into()
}

fn default_max_body() -> usize {
    1024
}

fn level(name: &str) -> Option<Level> {
    Some(match name {
        "trace" => Level::Trace,
        "debug" => Level::Debug,
        "info" => Level::Info,
        "warn" => Level::Warn,
        "error" => Level::Error,
        _ => return None,
    })
}

impl NodeType for Log {
    type Config = Config;
    type Node = Config;

    fn info() -> Info {
        Info::new(
            "Writes a line to the host log for each message and passes the message on.",
            json!({
                "type": "object",
                "required": ["message"],
                "additionalProperties": false,
                "properties": {
                    "message": {"type": "string", "minLength": 1},
                    "level": {"enum": ["trace", "debug", "info", "warn", "error"], "default": "info"},
                    "includeBody": {"type": "boolean", "default": false},
                    "maxBodyBytes": {"type": "integer", "minimum": 0, "default": 1024}
                }
            }),
        )
    }

    fn validate(config: &Config) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        if config.message.trim().is_empty() {
            problems.push(Diagnostic::at("/message", "must not be empty"));
        }
        if level(&config.level).is_none() {
            problems.push(Diagnostic::at(
                "/level",
                format!(
                    "unknown level `{}`: expected trace, debug, info, warn or error",
                    config.level
                ),
            ));
        }
        problems
    }

    fn translate(config: Config) -> Result<Translated<Config>, Vec<Diagnostic>> {
        Ok(Translated::new(config))
    }

    fn invoke(node: Config, input: Message) -> Result<Output, NodeError> {
        let level = level(&node.level).unwrap_or(Level::Info);
        let bytes = input.body.len().to_string();
        if node.include_body {
            let cut = &input.body[..input.body.len().min(node.max_body_bytes)];
            let body = String::from_utf8_lossy(cut);
            host::log(level, &node.message, &[("bytes", &bytes), ("body", &body)]);
        } else {
            host::log(level, &node.message, &[("bytes", &bytes)]);
        }
        Ok(Output::out(input))
    }
}

slipway_sdk::export_node_type!(Log);
