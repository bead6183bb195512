//! An in-process server with a few integrations, driven through its API as
//! an org-admin: what the release tests share. Needs the test crate to have
//! `common`.
#![allow(dead_code)] // Each test file uses its own part.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use slipway::config::Config;
use slipway::server::AppState;
use slipway_store::Store;

use crate::common;
use slipway_test_support::static_engine::static_engine;

/// The flow every test releases: sum the items, route by size.
pub fn canvas(threshold: u32) -> Value {
    json!({
        "nodes": [
            {"id": "in", "type": "http-trigger@^1", "config": {"method": "POST", "path": "/orders"}},
            {"id": "sum", "type": "transform@^1", "config": {"expression": "{total: (.items | add)}"}},
            {"id": "route", "type": "choice@^1", "config": {"routes": [{"when": format!(".total > {threshold}"), "port": "large"}], "otherwise": "small"}},
            {"id": "big", "type": "transform@^1", "config": {"expression": "{total, size: \"large\"}"}},
            {"id": "little", "type": "transform@^1", "config": {"expression": "{total, size: \"small\"}"}}
        ],
        "edges": [
            {"from": "in", "to": "sum"}, {"from": "sum", "to": "route"},
            {"from": "route", "port": "large", "to": "big"},
            {"from": "route", "port": "small", "to": "little"}
        ]
    })
}

/// An in-process server whose organisation releases through the API.
pub struct Releaser {
    /// The server's state.
    pub state: Arc<AppState>,
    /// The org-admin's token.
    pub admin: String,
    _dir: tempfile::TempDir,
}

impl Releaser {
    /// A server with the integrations `orders`, `orders-`, `billing` and
    /// `shipping` (version 1 each), ready to release; it reaches loopback,
    /// where the tests' registries listen.
    pub async fn start() -> Releaser {
        Releaser::start_reaching(slipway_runtime::Egress::loopback()).await
    }

    /// The same, reaching what `egress` allows.
    pub async fn start_reaching(egress: slipway_runtime::Egress) -> Releaser {
        Releaser::start_on(slipway_runtime::RuntimeConfig {
            egress,
            ..slipway_runtime::RuntimeConfig::default()
        })
        .await
    }

    /// The same, its plugin runtime set up as `runtime` says.
    pub async fn start_on(runtime: slipway_runtime::RuntimeConfig) -> Releaser {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let made = store.bootstrap("acme", None).unwrap().unwrap();
        let org = made.organisation.id;
        for name in ["orders", "orders-", "billing", "shipping"] {
            store.create_integration(org, name).unwrap();
            let canvas = serde_json::from_value(canvas(100)).unwrap();
            store.add_canvas(org, name, &canvas).unwrap();
        }
        let config = Config {
            data_dir: dir.path().join("data"),
            engine_binary: Some(static_engine(env!("CARGO_TARGET_TMPDIR"))),
            // Shared by the tests, so the SDK's dependencies build once.
            user_code_dir: Some(
                std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("user-code"),
            ),
            ..Config::default()
        };
        let state = common::state_on(store, &config, runtime);
        tokio::spawn(state.clone().start());
        let deadline = Instant::now() + Duration::from_secs(120);
        while common::call(&state, "GET", "/readyz", None, "", "").await.0 != 200 {
            assert!(Instant::now() < deadline, "the plugins did not load");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Releaser {
            state,
            admin: made.token,
            _dir: dir,
        }
    }

    /// One API call as the org-admin.
    pub async fn call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let (status, value) = common::call(
            &self.state,
            method,
            path,
            Some(&self.admin),
            "application/json",
            body,
        )
        .await;
        (status.as_u16(), value)
    }

    /// Releases version 1 of `integration`; answers the settled release.
    pub async fn release(&self, integration: &str) -> Value {
        self.release_version(integration, 1).await
    }

    /// Releases `version`; answers the settled release.
    pub async fn release_version(&self, integration: &str, version: u32) -> Value {
        let id = self.start_release(integration, version).await;
        self.settled(id).await
    }

    /// Asks for a release of `version`; answers its id.
    pub async fn start_release(&self, integration: &str, version: u32) -> u64 {
        let (status, accepted) = self
            .call(
                "POST",
                "/api/v1/releases",
                common::release_body(integration, version),
            )
            .await;
        assert_eq!(status, 202, "{accepted}");
        accepted["id"].as_u64().unwrap()
    }

    /// The release once it is `ready` or `failed`.
    pub async fn settled(&self, id: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let (_, release) = self
                .call("GET", &format!("/api/v1/releases/{id}"), Value::Null)
                .await;
            if ["ready", "failed"].contains(&release["status"].as_str().unwrap_or("")) {
                return release;
            }
            assert!(Instant::now() < deadline, "did not settle: {release}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
