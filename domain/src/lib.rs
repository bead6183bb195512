//! Slipway's services, which the server composes and its handlers call:
//! the plugins, the organisations' registries, packaging canvases into
//! flows, compiling them into images, releases, and the job runner that
//! builds and deletes them. Nothing here knows of
//! HTTP serving, status codes or routes.

pub mod canvases;
pub mod image;
pub mod jobs;
pub mod plugins;
pub mod registry;
pub mod releases;
