//! What Slipway's tests and benches share: the real parts they start (the
//! CNCF registry, the Docker CLI, the static engine), fakes of what cannot
//! run here (cloud token endpoints and control planes, following their real
//! protocols), and load helpers.

pub mod aws;
pub mod azure;
pub mod docker;
pub mod docker_tls;
pub mod files;
pub mod front;
pub mod google;
pub mod kube_api;
pub mod oracle;
pub mod registry;
pub mod slow_clients;
pub mod static_engine;
pub mod token_server;
pub mod wrk;
