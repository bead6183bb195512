//! What a flow is, from the canvas people draw to the flow document the
//! engine runs: the formats, JSON pointers into them, and (with the
//! `package` feature) the packaging stage that turns one into the other.

pub mod canvas;
pub mod document;
pub mod number;
#[cfg(feature = "package")]
pub mod package;
pub mod pointer;
pub mod text;

pub use canvas::Canvas;
pub use document::{FlowDocument, FlowEdge, FlowNode, PluginRef, SubflowRef};

/// The port a failing node's message leaves by, when the flow connects it.
pub const ERROR_PORT: &str = "error";
