//! Slipway: the build-and-release server. `main.rs` is a thin shell over this
//! library, so tests drive the server through [`server::router`] without a socket.

pub mod api;
pub mod config;
pub mod server;
