//! Calls into `node-type` plugins.

use serde::{Deserialize, Serialize};

use super::{Diagnostic, diagnostics, plugin_json};
use crate::bindings::node::exports::slipway::plugin::node as wit;
use crate::bindings::types;
use crate::context::CallContext;
use crate::error::CallError;
use crate::plugin::{Plugin, Pre, Session};

/// A port of a node type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    /// Port name, unique among the node's inputs or outputs.
    pub name: String,
    /// What flows through it.
    pub description: String,
}

/// What a node type says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// One sentence for people.
    pub description: String,
    /// JSON Schema of its config.
    pub config_schema: serde_json::Value,
    /// Input ports (none for a trigger).
    pub inputs: Vec<Port>,
    /// Fixed output ports.
    pub outputs: Vec<Port>,
    /// Whether it starts a flow.
    pub trigger: bool,
}

/// A node's part of the flow document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Translation {
    /// The runtime config the engine passes back to `invoke`.
    pub node: serde_json::Value,
    /// The node's output ports with this config.
    pub outputs: Vec<String>,
}

/// A message between nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The payload.
    pub body: Vec<u8>,
    /// Protocol headers.
    pub headers: Vec<(String, String)>,
    /// Metadata from nodes and the engine.
    pub attributes: Vec<(String, String)>,
}

impl Message {
    /// A message with this body and nothing else.
    pub fn from_body(body: impl Into<Vec<u8>>) -> Self {
        Message {
            body: body.into(),
            ..Message::default()
        }
    }

    /// An attribute by name.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Where a message goes next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// The output port.
    pub port: String,
    /// The message.
    pub message: Message,
}

/// A failure the node reports for one message (the plugin itself is fine).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct NodeError {
    /// Short machine-readable code.
    pub code: String,
    /// For people.
    pub message: String,
    /// The HTTP status to answer with, if the node chose one.
    pub status: Option<u16>,
}

impl From<Message> for types::Message {
    fn from(m: Message) -> Self {
        types::Message {
            body: m.body,
            headers: m.headers,
            attributes: m.attributes,
        }
    }
}

impl From<types::Message> for Message {
    fn from(m: types::Message) -> Self {
        Message {
            body: m.body,
            headers: m.headers,
            attributes: m.attributes,
        }
    }
}

pub(crate) async fn describe(
    mut session: Session,
    pre: &crate::bindings::node::NodeTypePre<crate::state::CallState>,
) -> Result<crate::plugin::Description, CallError> {
    let result = run_export!(session, pre, slipway_plugin_node, |g, s| g.call_describe(s));
    session.conclude(result, |raw| {
        info(raw).map(crate::plugin::Description::Node)
    })
}

/// Runs one export of a node type on a fresh instance.
macro_rules! node_call {
    ($plugin:expr, $context:expr, $name:literal, |$g:ident, $s:ident| $call:expr) => {
        call_export!(
            $plugin,
            $context,
            $name,
            Pre::Node,
            slipway_plugin_node,
            |$g, $s| $call
        )
    };
}

fn info(raw: wit::Info) -> Result<NodeInfo, String> {
    Ok(NodeInfo {
        config_schema: plugin_json(&raw.config_schema, "the config schema")?,
        name: raw.name,
        version: raw.version,
        description: raw.description,
        inputs: raw.inputs.into_iter().map(port).collect(),
        outputs: raw.outputs.into_iter().map(port).collect(),
        trigger: raw.trigger,
    })
}

fn port(p: wit::Port) -> Port {
    Port {
        name: p.name,
        description: p.description,
    }
}

impl Plugin {
    /// Checks a node config; an empty list means it is valid.
    pub async fn validate(
        &self,
        context: &CallContext,
        config: &serde_json::Value,
    ) -> Result<Vec<Diagnostic>, CallError> {
        let config = config.to_string();
        let (session, result) = node_call!(self, context, "validate", |g, s| g
            .call_validate(s, &config));
        session.finish(result).map(diagnostics)
    }

    /// Translates a valid config into the node's part of the flow document.
    pub async fn translate(
        &self,
        context: &CallContext,
        config: &serde_json::Value,
    ) -> Result<Result<Translation, Vec<Diagnostic>>, CallError> {
        let config = config.to_string();
        let (session, result) = node_call!(self, context, "translate", |g, s| g
            .call_translate(s, &config));
        session.conclude(result, |translated| match translated {
            Ok(t) => Ok(Ok(Translation {
                node: plugin_json(&t.node, "the translated node")?,
                outputs: t.outputs,
            })),
            Err(problems) => Ok(Err(diagnostics(problems))),
        })
    }

    /// Handles one message with a translated node (its JSON text).
    pub async fn invoke(
        &self,
        context: &CallContext,
        node: &str,
        input: Message,
    ) -> Result<Result<Output, NodeError>, CallError> {
        let input = types::Message::from(input);
        let node = node.to_owned();
        let (session, result) = node_call!(self, context, "invoke", |g, s| g
            .call_invoke(s, &node, &input));
        session.finish(result).map(|r| {
            r.map(|o| Output {
                port: o.port,
                message: o.message.into(),
            })
            .map_err(|e| NodeError {
                code: e.code,
                message: e.message,
                status: e.status,
            })
        })
    }
}
