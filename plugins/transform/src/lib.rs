//! `transform`: maps a JSON body to a new JSON body with a jq expression.

use serde::{Deserialize, Serialize};
use slipway_jq::Program;
use slipway_sdk::node::{Info, NodeError, NodeType, Output, Translated};
use slipway_sdk::serde_json::json;
use slipway_sdk::{Diagnostic, Message};

/// The node type.
pub struct Transform;

/// Canvas config and runtime node alike.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A jq expression, e.g. `{id: .order.id, total: (.items | map(.price) | add)}`.
    pub expression: String,
    /// Gather every output into an array; otherwise the first output is the body.
    #[serde(default)]
    pub collect: bool,
}

impl NodeType for Transform {
    type Config = Config;
    type Node = Config;

    fn info() -> Info {
        Info::new(
            "Maps a JSON body to a new JSON body with a jq expression.",
            json!({
                "type": "object",
                "required": ["expression"],
                "additionalProperties": false,
                "properties": {
                    "expression": {"type": "string", "description": "jq expression"},
                    "collect": {"type": "boolean", "default": false}
                }
            }),
        )
    }

    fn validate(config: &Config) -> Vec<Diagnostic> {
        match Program::compile(&config.expression) {
            Ok(_) => Vec::new(),
            Err(e) => vec![Diagnostic::at("/expression", e)],
        }
    }

    fn translate(config: Config) -> Result<Translated<Config>, Vec<Diagnostic>> {
        Ok(Translated::new(config))
    }

    fn invoke(node: Config, mut input: Message) -> Result<Output, NodeError> {
        let program = Program::compile(&node.expression)
            .map_err(|e| NodeError::new("bad-expression", e).with_status(500))?;
        let outputs = program.run(&input.body).map_err(|e| {
            let status = if e.starts_with("the input is not JSON") { 400 } else { 422 };
            NodeError::new("transform-failed", e).with_status(status)
        })?;
        let body = if node.collect {
            format!("[{}]", outputs.join(","))
        } else {
            outputs.into_iter().next().ok_or_else(|| {
                NodeError::new("no-output", "the expression produced no output").with_status(422)
            })?
        };
        input.body = body.into_bytes();
        input.set_header("content-type", "application/json");
        Ok(Output::out(input))
    }
}

slipway_sdk::export_node_type!(Transform);
