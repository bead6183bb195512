//! Node types: implement [`NodeType`], export with [`crate::export_node_type!`].

use std::marker::PhantomData;

use serde::{Serialize, de::DeserializeOwned};

use crate::bindings::node::exports::slipway::plugin::node as wit;
use crate::{Diagnostic, Message, Named, config, host};

pub use wit::{NodeError, Output, Port};

/// What a node type tells the host about itself, besides name and version.
#[derive(Debug, Clone, Default)]
pub struct Info {
    /// One sentence for people.
    pub description: String,
    /// JSON Schema of the config.
    pub config_schema: serde_json::Value,
    /// Input ports; empty for a trigger.
    pub inputs: Vec<Port>,
    /// Fixed output ports.
    pub outputs: Vec<Port>,
    /// Whether the node starts a flow.
    pub trigger: bool,
}

impl Info {
    /// A node with one input `in` and one output `out`.
    pub fn new(description: &str, config_schema: serde_json::Value) -> Self {
        Info {
            description: description.into(),
            config_schema,
            inputs: vec![port("in", "the incoming message")],
            outputs: vec![port("out", "the outgoing message")],
            trigger: false,
        }
    }

    /// Makes this node a trigger: no inputs.
    pub fn trigger(mut self) -> Self {
        self.trigger = true;
        self.inputs.clear();
        self
    }
}

/// A port with a description.
pub fn port(name: &str, description: &str) -> Port {
    Port {
        name: name.into(),
        description: description.into(),
    }
}

/// The translated node: what the engine hands back to [`NodeType::invoke`].
#[derive(Debug)]
pub struct Translated<N> {
    /// The node's runtime config.
    pub node: N,
    /// Output ports for this config; `None` means the fixed outputs of [`Info`].
    pub outputs: Option<Vec<String>>,
}

impl<N> Translated<N> {
    /// A translation with the fixed outputs.
    pub fn new(node: N) -> Self {
        Translated {
            node,
            outputs: None,
        }
    }
}

impl Output {
    /// The message goes out of port `out`.
    pub fn out(message: Message) -> Self {
        Output::to("out", message)
    }

    /// The message goes out of `port`.
    pub fn to(port: &str, message: Message) -> Self {
        Output {
            port: port.into(),
            message,
        }
    }
}

impl NodeError {
    /// An error with a code and message; the engine picks the status.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        NodeError {
            code: code.into(),
            message: message.into(),
            status: None,
        }
    }

    /// Sets the HTTP status a request-reply flow answers with.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
}

/// A canvas node type.
pub trait NodeType: Named {
    /// The config as the canvas holds it.
    type Config: DeserializeOwned;
    /// The config as the engine passes it to [`NodeType::invoke`].
    type Node: Serialize + DeserializeOwned;

    /// Description, schema and ports.
    fn info() -> Info;

    /// Checks a config that parsed; paths are JSON pointers into the config.
    fn validate(_config: &Self::Config) -> Vec<Diagnostic> {
        Vec::new()
    }

    /// Turns a valid config into the node's runtime form.
    fn translate(config: Self::Config) -> Result<Translated<Self::Node>, Vec<Diagnostic>>;

    /// Handles one message.
    fn invoke(node: Self::Node, input: Message) -> Result<Output, NodeError>;
}

/// Bridges a [`NodeType`] to the generated world; used by [`crate::export_node_type!`].
pub struct Adapter<T>(PhantomData<T>);

impl<T: NodeType> wit::Guest for Adapter<T> {
    fn describe() -> wit::Info {
        host::install_panic_hook();
        let info = T::info();
        wit::Info {
            name: T::NAME.into(),
            version: T::VERSION.into(),
            description: info.description,
            config_schema: info.config_schema.to_string(),
            inputs: info.inputs,
            outputs: info.outputs,
            trigger: info.trigger,
        }
    }

    fn validate(config: String) -> Vec<Diagnostic> {
        host::install_panic_hook();
        config::check(&config, T::validate)
    }

    fn translate(config: String) -> Result<wit::Translation, Vec<Diagnostic>> {
        host::install_panic_hook();
        let config = config::parse::<T::Config>(&config).map_err(|d| vec![d])?;
        let problems = T::validate(&config);
        if !problems.is_empty() {
            return Err(problems);
        }
        let translated = T::translate(config)?;
        let outputs = translated
            .outputs
            .unwrap_or_else(|| T::info().outputs.into_iter().map(|p| p.name).collect());
        let node = serde_json::to_string(&translated.node).map_err(|e| {
            vec![Diagnostic::at(
                "",
                format!("cannot serialize the node: {e}"),
            )]
        })?;
        Ok(wit::Translation { node, outputs })
    }

    fn invoke(node: String, input: Message) -> Result<Output, NodeError> {
        host::install_panic_hook();
        let node = serde_json::from_str::<T::Node>(&node).map_err(|e| {
            NodeError::new(
                "bad-node",
                format!("the node's runtime config is invalid: {e}"),
            )
        })?;
        T::invoke(node, input)
    }
}
