//! A node type that reads a file: it imports `wasi:filesystem` and must be refused.

use slipway_sdk::node::{Info, NodeError, NodeType, Output, Translated};
use slipway_sdk::serde_json::{Value, json};
use slipway_sdk::{Diagnostic, Message};

/// The node type.
pub struct FsReader;

impl NodeType for FsReader {
    type Config = Value;
    type Node = Value;

    fn info() -> Info {
        Info::new("reads /etc/passwd", json!({}))
    }

    fn translate(config: Value) -> Result<Translated<Value>, Vec<Diagnostic>> {
        Ok(Translated::new(config))
    }

    fn invoke(_node: Value, _input: Message) -> Result<Output, NodeError> {
        let text = std::fs::read_to_string("/etc/passwd")
            .map_err(|e| NodeError::new("io", e.to_string()))?;
        Ok(Output::out(Message::json(&text)))
    }
}

slipway_sdk::export_node_type!(FsReader);
