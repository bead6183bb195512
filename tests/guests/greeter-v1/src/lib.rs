//! Greets: answers `{"greeting": "hello from greeter <version>", "input": <body>}`.

use slipway_sdk::node::{Info, NodeError, NodeType, Output, Translated};
use slipway_sdk::serde_json::{Value, json};
use slipway_sdk::{Diagnostic, Message, Named};

/// The node type.
pub struct Greeter;

impl NodeType for Greeter {
    type Config = Value;
    type Node = Value;

    fn info() -> Info {
        Info::new("greets", json!({}))
    }

    fn translate(config: Value) -> Result<Translated<Value>, Vec<Diagnostic>> {
        Ok(Translated::new(config))
    }

    fn invoke(_node: Value, input: Message) -> Result<Output, NodeError> {
        let body: Value = input.body_json().unwrap_or(Value::Null);
        let greeting = format!("hello from greeter {}", Greeter::VERSION);
        Ok(Output::out(Message::json(
            &json!({"greeting": greeting, "input": body}),
        )))
    }
}

slipway_sdk::export_node_type!(Greeter, name: "greeter", manifest: "");
