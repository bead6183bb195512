//! `http-trigger`: starts a flow for each HTTP request matching a method and path.
//!
//! The engine serves the trigger's method and path and hands each request in as
//! a message: body, headers, and the attributes `http.method`, `http.path`,
//! `http.query` and `path.<name>` for each `{name}` segment of the path.

use serde::{Deserialize, Serialize};
use slipway_sdk::node::{Info, NodeError, NodeType, Output, Translated};
use slipway_sdk::serde_json::json;
use slipway_sdk::{Diagnostic, Message};

/// The node type.
pub struct HttpTrigger;

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Canvas config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP method, any case.
    pub method: String,
    /// Path, with `{name}` segments for parameters, e.g. `/orders/{id}`.
    pub path: String,
}

/// Runtime node: the normalised method and path.
#[derive(Debug, Deserialize, Serialize)]
pub struct Node {
    /// Upper-case method.
    pub method: String,
    /// The path as configured.
    pub path: String,
}

/// Problems with a path template.
pub fn check_path(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return Some("must start with `/`".into());
    }
    let mut params: Vec<&str> = Vec::new();
    for segment in path.split('/').skip(1) {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let ok =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Some(format!(
                    "invalid parameter `{segment}`: use `{{name}}` with letters, digits and `_`"
                ));
            }
            if params.contains(&name) {
                return Some(format!("parameter `{name}` appears twice"));
            }
            params.push(name);
        } else if segment.contains(['{', '}', '?', '#', ' ']) {
            return Some(format!("invalid segment `{segment}`"));
        }
    }
    None
}

impl NodeType for HttpTrigger {
    type Config = Config;
    type Node = Node;

    fn info() -> Info {
        Info::new(
            "Starts a flow for each HTTP request matching a method and path.",
            json!({
                "type": "object",
                "required": ["method", "path"],
                "additionalProperties": false,
                "properties": {
                    "method": {"enum": METHODS},
                    "path": {"type": "string", "pattern": "^/"}
                }
            }),
        )
        .trigger()
    }

    fn validate(config: &Config) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        let method = config.method.to_ascii_uppercase();
        if !METHODS.contains(&method.as_str()) {
            problems.push(Diagnostic::at(
                "/method",
                format!(
                    "unsupported method `{}`: use one of {}",
                    config.method,
                    METHODS.join(", ")
                ),
            ));
        }
        if let Some(problem) = check_path(&config.path) {
            problems.push(Diagnostic::at("/path", problem));
        }
        problems
    }

    fn translate(config: Config) -> Result<Translated<Node>, Vec<Diagnostic>> {
        Ok(Translated::new(Node {
            method: config.method.to_ascii_uppercase(),
            path: config.path,
        }))
    }

    fn invoke(node: Node, mut input: Message) -> Result<Output, NodeError> {
        if let Some(method) = input.attribute("http.method")
            && !method.eq_ignore_ascii_case(&node.method)
        {
            return Err(NodeError::new(
                "method-not-allowed",
                format!("this flow answers {} only", node.method),
            )
            .with_status(405));
        }
        input.set_attribute("trigger.path", &node.path);
        Ok(Output::out(input))
    }
}

slipway_sdk::export_node_type!(HttpTrigger);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked() {
        assert_eq!(check_path("/orders/{id}/lines"), None);
        assert_eq!(check_path("orders").unwrap(), "must start with `/`");
        assert_eq!(
            check_path("/a/{id}/{id}").unwrap(),
            "parameter `id` appears twice"
        );
        assert!(
            check_path("/a/{}")
                .unwrap()
                .starts_with("invalid parameter")
        );
        assert!(check_path("/a/b?c").unwrap().starts_with("invalid segment"));
    }
}
