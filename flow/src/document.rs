//! The flow document: what packaging produces and the engine runs. Subflows
//! are flattened into it (their node ids prefixed with the subflow node's id
//! and `/`), so the engine sees one graph.

use serde::{Deserialize, Serialize};

/// An integration at a pinned version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SubflowRef {
    /// The integration's name.
    #[serde(deserialize_with = "crate::text::string")]
    pub integration: String,
    /// Its canvas version.
    #[serde(deserialize_with = "crate::number::u32")]
    #[cfg_attr(feature = "schema", schema(minimum = 0, maximum = 4294967295_u64, format = Int64))]
    pub version: u32,
}

impl std::fmt::Display for SubflowRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.integration, self.version)
    }
}

/// A plugin version, as pinned by a flow.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct PluginRef {
    /// Its name.
    pub name: String,
    /// Its exact version.
    pub version: String,
    /// The sha256 of its component.
    pub sha256: String,
}

/// One node the engine runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct FlowNode {
    /// Unique in the flow; `sub/inner` for a node of subflow `sub`.
    pub id: String,
    /// The node type that runs it.
    pub plugin: PluginRef,
    /// What `translate` returned: passed to every `invoke`.
    pub node: serde_json::Value,
    /// Its output ports.
    pub outputs: Vec<String>,
    /// Whether it starts the flow.
    pub trigger: bool,
}

/// A connection the engine follows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct FlowEdge {
    /// Node the message leaves.
    pub from: String,
    /// By this output port.
    pub port: String,
    /// Node it goes to.
    pub to: String,
}

/// A packaged integration version, ready for the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct FlowDocument {
    /// The integration and version packaged.
    pub integration: SubflowRef,
    /// Every node, subflows' included.
    pub nodes: Vec<FlowNode>,
    /// Every edge.
    pub edges: Vec<FlowEdge>,
    /// Every plugin version used, once.
    pub plugins: Vec<PluginRef>,
    /// Every subflow included, with its version, once.
    pub subflows: Vec<SubflowRef>,
}
