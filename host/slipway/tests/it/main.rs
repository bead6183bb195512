//! The server's integration tests, one binary: the API through the router,
//! `slipway serve` as a process, the command-line tools, and releases
//! against real registries, the Docker Engine and fakes of cloud endpoints.

mod common;
mod releasing;

mod api;
mod cli;
mod client;
mod cloud_registries;
mod contract;
mod distribution;
mod docker_build;
mod fair_share;
mod images;
mod kubernetes;
mod openapi;
mod plans;
mod releases;
mod roles;
mod server;
mod services;
