//! `rust-code`: a node whose behaviour is Rust source written on the canvas.
//!
//! Packaging checks the config; the compiling stage turns the source into a
//! component of its own that replaces this node type in the image. This
//! component never runs user code itself.

use serde::{Deserialize, Serialize};
use slipway_sdk::node::{Info, NodeError, NodeType, Output, Translated};
use slipway_sdk::serde_json::{Map, Value, json};
use slipway_sdk::{Diagnostic, Message};

/// The node type.
pub struct RustCode;

/// The largest source accepted (my choice: a node, not a program).
pub const MAX_SOURCE_BYTES: usize = 256 * 1024;

/// The function the source defines.
pub const SIGNATURE: &str =
    "pub fn process(input: Message, settings: &Value) -> Result<Output, NodeError>";

/// Canvas config and runtime node.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Rust source defining [`SIGNATURE`].
    pub source: String,
    /// Passed to `process` as `settings`.
    #[serde(default)]
    pub settings: Map<String, Value>,
    /// Output ports besides `out` that the code sends to.
    #[serde(default)]
    pub outputs: Vec<String>,
}

impl NodeType for RustCode {
    type Config = Config;
    type Node = Config;

    fn info() -> Info {
        Info::new(
            "Runs Rust source written on the canvas, compiled into the release image.",
            json!({
                "type": "object",
                "required": ["source"],
                "additionalProperties": false,
                "properties": {
                    "source": {"type": "string", "minLength": 1, "maxLength": MAX_SOURCE_BYTES,
                               "description": SIGNATURE},
                    "settings": {"type": "object"},
                    "outputs": {"type": "array", "items": {"type": "string"}}
                }
            }),
        )
    }

    fn validate(config: &Config) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        if config.source.len() > MAX_SOURCE_BYTES {
            problems.push(Diagnostic::at(
                "/source",
                format!("the source is larger than {MAX_SOURCE_BYTES} bytes"),
            ));
        } else if !config.source.contains("fn process") {
            problems.push(Diagnostic::at(
                "/source",
                format!("the source must define `{SIGNATURE}`"),
            ));
        }
        for (i, name) in config.outputs.iter().enumerate() {
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid || name == "out" {
                problems.push(Diagnostic::at(
                    format!("/outputs/{i}"),
                    format!("`{name}` is not a port name besides `out` (letters, digits, - and _)"),
                ));
            }
        }
        problems
    }

    fn translate(config: Config) -> Result<Translated<Config>, Vec<Diagnostic>> {
        let outputs = std::iter::once("out".to_string())
            .chain(config.outputs.iter().cloned())
            .collect();
        let mut translated = Translated::new(config);
        translated.outputs = Some(outputs);
        Ok(translated)
    }

    fn invoke(_node: Config, _input: Message) -> Result<Output, NodeError> {
        Err(NodeError::new(
            "not-compiled",
            "rust-code runs only in a release image, where its source is compiled",
        )
        .with_status(500))
    }
}

slipway_sdk::export_node_type!(RustCode);
