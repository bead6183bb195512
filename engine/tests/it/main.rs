//! The engine's integration tests, one binary: the executor in process, the
//! `slipway-engine` binary over HTTP, and the static engine in a container.

mod common;

mod container;
mod executor;
mod http;
