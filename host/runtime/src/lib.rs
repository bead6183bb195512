//! The Slipway plugin runtime.
//!
//! Loads WebAssembly components that implement one of the `slipway:plugin`
//! worlds (node type, registry adapter, deploy target) and runs them in a
//! sandbox: a fresh instance per call from a pooling allocator, a per-call
//! deadline (epoch interruption) and memory cap, and only the host imports
//! Slipway offers. Used by the server and by the flow engine alike, so it
//! depends on neither.
//!
//! ```no_run
//! # async fn demo(wasm: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! use slipway_runtime::{CallContext, Kind, Message, Runtime, RuntimeConfig};
//!
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! runtime.install(wasm).await?;
//! let transform = runtime
//!     .catalog()
//!     .resolve(Kind::NodeType, "transform", &"^1".parse()?)?;
//! let node = r#"{"expression": ".a + 1"}"#;
//! let out = transform
//!     .invoke(&CallContext::default(), node, Message::from_body(r#"{"a": 1}"#))
//!     .await??;
//! assert_eq!(out.message.body, b"2");
//! # Ok(()) }
//! ```

mod bindings;
mod cache;
mod catalog;
mod context;
pub mod egress;
mod error;
pub mod harness;
mod imports;
pub mod inspect;
pub mod kinds;
pub mod manifest;
mod plugin;
mod plugin_cache;
mod runtime;
mod shares;
mod state;

pub use cache::CodeSource;
pub use catalog::{Catalog, RemoveError, ResolveError};
pub use context::CallContext;
pub use egress::Egress;
pub use error::{CallError, CallFailure, LoadError, LoadFailure};
pub use kinds::{AdapterInfo, Diagnostic, Message, NodeError, Output};
pub use manifest::{HostPattern, Kind, Manifest, ObjectFamily};
pub use plugin::{Description, Plugin};
pub use plugin_cache::{CacheScope, PluginCache};
pub use runtime::{Installed, KEEP_RESIDENT, Runtime, RuntimeConfig, StartError};
