//! The canvas format: what people draw, as JSON (or YAML).
//!
//! ```json
//! {
//!   "nodes": [
//!     {"id": "in", "type": "http-trigger@^1", "config": {"method": "POST", "path": "/orders"}},
//!     {"id": "route", "type": "choice@^1", "config": {"routes": [{"when": ".total > 100", "port": "large"}], "otherwise": "small"}},
//!     {"id": "enrich", "subflow": {"integration": "enrich-order", "version": 3}}
//!   ],
//!   "edges": [
//!     {"from": "in", "to": "route"},
//!     {"from": "route", "port": "large", "to": "enrich"}
//!   ]
//! }
//! ```
//!
//! A node has an `id` and either a `type` (`name@semver-requirement` of a
//! node-type plugin, with its `config`) or a `subflow` (another integration at
//! a pinned version). An edge leaves `from` by output `port` (default `out`)
//! and enters `to`.

use serde::{Deserialize, Serialize};

/// A canvas: nodes and the edges between them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Canvas {
    /// The nodes.
    pub nodes: Vec<Node>,
    /// The edges.
    #[serde(default)]
    pub edges: Vec<Edge>,
}

/// One node of a canvas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Unique within the canvas.
    pub id: String,
    /// `name@requirement` of a node-type plugin.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub node_type: Option<String>,
    /// The plugin's config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    /// Another integration, run as part of this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subflow: Option<SubflowRef>,
}

/// An integration at a pinned version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubflowRef {
    /// The integration's name.
    pub integration: String,
    /// Its canvas version.
    pub version: u32,
}

impl std::fmt::Display for SubflowRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.integration, self.version)
    }
}

/// A connection from an output port to a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    /// The node the message leaves.
    pub from: String,
    /// The output port it leaves by.
    #[serde(default = "default_port")]
    pub port: String,
    /// The node it goes to.
    pub to: String,
}

fn default_port() -> String {
    "out".into()
}
