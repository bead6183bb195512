//! Runtime tests against real components built from source.

mod builtins;
mod cache;
mod common;
mod kinds;
mod sandbox;
mod versions;
