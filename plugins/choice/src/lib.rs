//! `choice`: routes a message to the first output whose jq condition holds.

use serde::{Deserialize, Serialize};
use slipway_jq::Program;
use slipway_sdk::node::{Info, NodeError, NodeType, Output, Translated};
use slipway_sdk::serde_json::json;
use slipway_sdk::{Diagnostic, Message};

/// The node type.
pub struct Choice;

/// Canvas config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Tried in order; the first whose condition is truthy wins.
    pub routes: Vec<Route>,
    /// The output when no route matches; without it, no match is an error.
    #[serde(default)]
    pub otherwise: Option<String>,
}

/// One condition and where it leads.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// A jq condition on the JSON body, e.g. `.total > 100`.
    pub when: String,
    /// The output port.
    pub port: String,
}

fn valid_port(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

impl Config {
    fn ports(&self) -> Vec<String> {
        let mut ports: Vec<String> = Vec::new();
        for name in self.routes.iter().map(|r| &r.port).chain(&self.otherwise) {
            if !ports.contains(name) {
                ports.push(name.clone());
            }
        }
        ports
    }
}

/// Runtime node: the routes plus the prelude definitions their conditions use.
#[derive(Debug, Deserialize, Serialize)]
pub struct Node {
    /// The routes, in order.
    pub routes: Vec<Route>,
    /// See [`Config::otherwise`].
    pub otherwise: Option<String>,
    /// jq definitions the conditions use.
    pub prelude: String,
}

impl NodeType for Choice {
    type Config = Config;
    type Node = Node;

    fn info() -> Info {
        let mut info = Info::new(
            "Routes a message to the first output whose jq condition holds.",
            json!({
                "type": "object",
                "required": ["routes"],
                "additionalProperties": false,
                "properties": {
                    "routes": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["when", "port"],
                            "additionalProperties": false,
                            "properties": {
                                "when": {"type": "string", "description": "jq condition"},
                                "port": {"type": "string", "pattern": "^[a-z][a-z0-9_-]*$"}
                            }
                        }
                    },
                    "otherwise": {"type": "string", "pattern": "^[a-z][a-z0-9_-]*$"}
                }
            }),
        );
        // No fixed outputs: `translate` declares one per port the config names.
        info.outputs.clear();
        info
    }

    fn validate(config: &Config) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        if config.routes.is_empty() {
            problems.push(Diagnostic::at("/routes", "needs at least one route"));
        }
        for (i, route) in config.routes.iter().enumerate() {
            if let Err(e) = Program::compile(&route.when) {
                problems.push(Diagnostic::at(format!("/routes/{i}/when"), e));
            }
            if !valid_port(&route.port) {
                problems.push(Diagnostic::at(
                    format!("/routes/{i}/port"),
                    format!(
                        "invalid port name `{}`: use lowercase letters, digits, `-` and `_`",
                        route.port
                    ),
                ));
            }
        }
        if let Some(other) = &config.otherwise
            && !valid_port(other)
        {
            problems.push(Diagnostic::at(
                "/otherwise",
                format!("invalid port name `{other}`: use lowercase letters, digits, `-` and `_`"),
            ));
        }
        problems
    }

    fn translate(config: Config) -> Result<Translated<Node>, Vec<Diagnostic>> {
        let outputs = Some(config.ports());
        let conditions: Vec<&str> = config.routes.iter().map(|r| r.when.as_str()).collect();
        Ok(Translated {
            node: Node {
                prelude: slipway_jq::prelude_for(&conditions.join(" ")),
                routes: config.routes,
                otherwise: config.otherwise,
            },
            outputs,
        })
    }

    fn invoke(node: Node, input: Message) -> Result<Output, NodeError> {
        for route in &node.routes {
            let program = Program::compile_with(&node.prelude, &route.when)
                .map_err(|e| NodeError::new("bad-condition", e).with_status(500))?;
            let holds = program.test(&input.body).map_err(|e| {
                let status = if e.starts_with("the input is not JSON") {
                    400
                } else {
                    422
                };
                NodeError::new("condition-failed", format!("`{}`: {e}", route.when))
                    .with_status(status)
            })?;
            if holds {
                return Ok(Output::to(&route.port, input));
            }
        }
        match &node.otherwise {
            Some(port) => Ok(Output::to(port, input)),
            None => {
                Err(NodeError::new("no-route", "no route matched the message").with_status(422))
            }
        }
    }
}

slipway_sdk::export_node_type!(Choice);
