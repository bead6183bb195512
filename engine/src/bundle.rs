//! Where the engine finds its flow, components and compiled code.
//!
//! A bundle directory holds all three:
//!
//! ```text
//! flow.json                             the flow document packaging produced
//! plugins/<name>@<version>.wasm         each component the flow names
//! code/<sha256>-<engine hash>.cwasm     code compiled ahead of time (optional)
//! ```

use std::path::{Path, PathBuf};

use slipway_flow::FlowDocument;

/// The paths the engine reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The flow document.
    pub flow: PathBuf,
    /// The components, as `<name>@<version>.wasm`.
    pub plugins: PathBuf,
    /// Compiled code, `<sha256>-<engine hash>.cwasm`; code compiled at start
    /// is written here too when the directory is writable.
    pub code: PathBuf,
}

/// The flow document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FlowFileError {
    /// The file could not be read.
    #[error("cannot read the flow document {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not a flow document.
    #[error("{path}: not a flow document: at `{at}`: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where in the document, as serde reports it (`nodes[2].plugin`).
        at: String,
        /// What is wrong.
        message: String,
    },
}

impl Bundle {
    /// The layout of a bundle directory.
    pub fn at(dir: &Path) -> Bundle {
        Bundle {
            flow: dir.join("flow.json"),
            plugins: dir.join("plugins"),
            code: dir.join("code"),
        }
    }

    /// Reads and parses the flow document.
    pub fn read_flow(&self) -> Result<FlowDocument, FlowFileError> {
        let text = std::fs::read(&self.flow).map_err(|source| FlowFileError::Read {
            path: self.flow.clone(),
            source,
        })?;
        let mut deserializer = serde_json::Deserializer::from_slice(&text);
        serde_path_to_error::deserialize(&mut deserializer).map_err(|e| FlowFileError::Parse {
            path: self.flow.clone(),
            at: e.path().to_string(),
            message: e.inner().to_string(),
        })
    }
}
