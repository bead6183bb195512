//! Slipway's services, which the server composes and its handlers call:
//! the plugins, the organisations' registries, packaging canvases into
//! flows, compiling them into images, releases, deploy targets and the
//! services on them, and the job runner that builds, deletes and deploys. Nothing here knows of
//! HTTP serving, status codes or routes.

pub mod canvases;
pub mod image;
pub mod images;
pub mod jobs;
pub mod plans;
pub mod plugins;
mod refused;
pub mod registry;
pub mod releases;
pub mod services;
pub mod targets;
