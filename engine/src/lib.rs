//! The Slipway flow engine: loads a packaged flow document and the node-type
//! plugins it names, and serves its HTTP triggers, running each message
//! through the flow in the same sandbox as the server.

pub mod bundle;
pub mod executor;
pub mod http;
pub mod loader;
pub mod metrics;
pub mod server;

pub use bundle::Bundle;
pub use executor::{Executor, Failure, Outcome, Route};
pub use server::{Engine, ServeError, Stopped, serve};
pub use slipway_serve::ConnectionLimits;
