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

pub use crate::document::SubflowRef;
use serde::{Deserialize, Serialize};

/// A canvas: nodes and the edges between them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Canvas {
    /// The nodes, at most [`MAX_NODES`].
    #[cfg_attr(feature = "schema", schema(max_items = 10_000))]
    pub nodes: Vec<Node>,
    /// The edges, at most [`MAX_EDGES`].
    #[serde(default)]
    #[cfg_attr(feature = "schema", schema(max_items = 20_000))]
    pub edges: Vec<Edge>,
}

/// One node of a canvas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Unique within the canvas.
    #[serde(deserialize_with = "crate::text::string")]
    pub id: String,
    /// `name@requirement` of a node-type plugin.
    #[serde(
        default,
        rename = "type",
        deserialize_with = "crate::text::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_type: Option<String>,
    /// The plugin's config.
    #[serde(
        default,
        deserialize_with = "crate::number::json",
        skip_serializing_if = "Option::is_none"
    )]
    pub config: Option<serde_json::Value>,
    /// Another integration, run as part of this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subflow: Option<SubflowRef>,
}

/// A connection from an output port to a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Edge {
    /// The node the message leaves.
    #[serde(deserialize_with = "crate::text::string")]
    pub from: String,
    /// The output port it leaves by.
    #[serde(default = "default_port", deserialize_with = "crate::text::string")]
    pub port: String,
    /// The node it goes to.
    #[serde(deserialize_with = "crate::text::string")]
    pub to: String,
}

fn default_port() -> String {
    "out".into()
}

/// How a canvas is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// A canvas that does not parse: what is wrong and where (a JSON pointer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// JSON pointer to the field at fault; `""` for the document.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Most nodes one canvas may have.
pub const MAX_NODES: usize = 10_000;
/// Most edges one canvas may have.
pub const MAX_EDGES: usize = 20_000;

impl Canvas {
    /// Parses a canvas, pointing at the field at fault on failure; a canvas
    /// past [`MAX_NODES`] or [`MAX_EDGES`] is refused.
    pub fn parse(bytes: &[u8], format: Format) -> Result<Canvas, ParseError> {
        let canvas: Canvas = match format {
            Format::Json => {
                let mut de = serde_json::Deserializer::from_slice(bytes);
                serde_path_to_error::deserialize(&mut de).map_err(located)?
            }
            Format::Yaml => {
                let de = serde_norway::Deserializer::from_slice(bytes);
                serde_path_to_error::deserialize(de).map_err(located)?
            }
        };
        if let Some((path, message)) = canvas.oversized() {
            return Err(ParseError {
                path: path.into(),
                message,
            });
        }
        Ok(canvas)
    }

    /// Where the canvas has more nodes or edges than one may, and the problem.
    pub fn oversized(&self) -> Option<(&'static str, String)> {
        if self.nodes.len() > MAX_NODES {
            return Some((
                "/nodes",
                format!(
                    "a canvas has at most {MAX_NODES} nodes, this one has {}",
                    self.nodes.len()
                ),
            ));
        }
        if self.edges.len() > MAX_EDGES {
            return Some((
                "/edges",
                format!(
                    "a canvas has at most {MAX_EDGES} edges, this one has {}",
                    self.edges.len()
                ),
            ));
        }
        None
    }
}

fn located<E: std::fmt::Display>(err: serde_path_to_error::Error<E>) -> ParseError {
    let message = err.inner().to_string();
    ParseError {
        path: crate::pointer::locate(err.path(), &message),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_yaml_parse_alike() {
        let json = br#"{"nodes": [{"id": "a", "type": "log@^1", "config": {"message": "x"}}], "edges": []}"#;
        let yaml = b"nodes:\n  - id: a\n    type: log@^1\n    config:\n      message: x\n";
        assert_eq!(
            Canvas::parse(json, Format::Json).unwrap(),
            Canvas::parse(yaml, Format::Yaml).unwrap()
        );
    }

    #[test]
    fn errors_point_at_the_field() {
        let err = Canvas::parse(br#"{"nodes": [{"id": 7}]}"#, Format::Json).unwrap_err();
        assert_eq!(err.path, "/nodes/0/id");
        let err = Canvas::parse(br#"{"nodes": [{"type": "log@^1"}]}"#, Format::Json).unwrap_err();
        assert_eq!(err.path, "/nodes/0/id");
        assert!(
            err.message.starts_with("missing field `id`"),
            "{}",
            err.message
        );
        let err = Canvas::parse(b"nodes:\n  - id: a\n    colour: red\n", Format::Yaml).unwrap_err();
        assert_eq!(err.path, "/nodes/0/colour");
        let err = Canvas::parse(
            br#"{"edges": [{"from": "a", "to": "b", "prot": "x"}], "nodes": []}"#,
            Format::Json,
        )
        .unwrap_err();
        assert_eq!(err.path, "/edges/0/prot");
    }
}
