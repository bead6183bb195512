//! `transform`: maps a JSON body to a new JSON body with a jq expression.

use serde::{Deserialize, Serialize};
use slipway_jq::Program;
use slipway_sdk::node::{Info, NodeError, NodeType, Output, Translated};
use slipway_sdk::serde_json::json;
use slipway_sdk::{Diagnostic, Message};

/// The node type.
pub struct Transform;

/// Canvas config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A jq expression, e.g. `{id: .order.id, total: (.items | map(.price) | add)}`.
    pub expression: String,
    /// Gather every output into an array; otherwise the first output is the body.
    #[serde(default)]
    pub collect: bool,
}

/// Runtime node: the config plus the prelude definitions the expression uses,
/// so each message compiles no more than it needs.
#[derive(Debug, Deserialize, Serialize)]
pub struct Node {
    /// The jq expression.
    pub expression: String,
    /// See [`Config::collect`].
    pub collect: bool,
    /// jq definitions the expression uses.
    pub prelude: String,
}

impl NodeType for Transform {
    type Config = Config;
    type Node = Node;

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

    fn translate(config: Config) -> Result<Translated<Node>, Vec<Diagnostic>> {
        Ok(Translated::new(Node {
            prelude: slipway_jq::prelude_for(&config.expression),
            expression: config.expression,
            collect: config.collect,
        }))
    }

    fn invoke(node: Node, mut input: Message) -> Result<Output, NodeError> {
        let program = Program::compile_with(&node.prelude, &node.expression)
            .map_err(|e| NodeError::new("bad-expression", e).with_status(500))?;
        let outputs = program.run(&input.body).map_err(|e| {
            let status = if e.starts_with("the input is not JSON") {
                400
            } else {
                422
            };
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
