//! The flow document packaging produces: defined by the engine that runs it.

pub use slipway_engine::flow::{FlowDocument, FlowEdge, FlowNode, PluginRef};
