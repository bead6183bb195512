//! The Slipway flow engine: loads a packaged flow document and the node-type
//! plugins it names, and runs messages through it in the same sandbox as the
//! server.

pub mod executor;
pub mod flow;
pub mod loader;

pub use executor::{Executor, Failure, Outcome, Route};
