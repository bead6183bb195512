//! Flows packaged by the real packaging stage, written as bundles, and the
//! `slipway-engine` binary run on them.
#![allow(dead_code, reason = "each test file uses part of it")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use slipway_engine::Bundle;
use slipway_engine::loader::component_path;
use slipway_flow::FlowDocument;
use slipway_flow::canvas::{Canvas, SubflowRef};
use slipway_flow::package::{Canvases, Lookup, Packager};
use slipway_runtime::{Runtime, RuntimeConfig};

/// Canvases by integration (version 1 each).
#[derive(Default)]
pub struct Library(pub BTreeMap<String, Canvas>);

impl Canvases for Library {
    fn lookup(&self, integration: &str, version: u32) -> Lookup {
        match self.0.get(integration) {
            Some(canvas) if version == 1 => Lookup::Found(canvas.clone()),
            Some(_) => Lookup::NoVersion { latest: Some(1) },
            None => Lookup::NoIntegration,
        }
    }
}

/// Compiled code shared by every test of this crate (tests and the engine
/// binary use the same wasmtime, so the same code).
pub fn shared_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("code-cache")
}

/// A runtime caching code in `dir`.
pub fn runtime(dir: &Path) -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.to_path_buf()),
        egress: slipway_runtime::Egress::any(),
        ..RuntimeConfig::default()
    })
    .unwrap()
}

/// The built-in components and these test guests.
pub fn components(guests: &[&str]) -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = slipway_plugin_artifacts::BUILTIN
        .iter()
        .map(|(_, wasm)| wasm.to_vec())
        .collect();
    for guest in guests {
        let path = slipway_plugin_artifacts::test_guest(guest).unwrap();
        all.push(std::fs::read(path).unwrap());
    }
    all
}

/// Packages `root` (integration `orders`, with `subflows`) against the
/// built-in plugins and the test `guests`, and writes a bundle directory.
pub async fn bundle(
    root: Value,
    subflows: &[(&str, Value)],
    guests: &[&str],
) -> (FlowDocument, tempfile::TempDir) {
    let runtime = runtime(&shared_cache());
    let components = components(guests);
    for wasm in &components {
        runtime.install(wasm).await.unwrap();
    }
    let mut library = Library::default();
    for (name, canvas) in subflows {
        library.0.insert(
            name.to_string(),
            serde_json::from_value(canvas.clone()).unwrap(),
        );
    }
    let canvas: Canvas = serde_json::from_value(root).unwrap();
    let flow = Packager::new(runtime.catalog(), &library)
        .package(
            &SubflowRef {
                integration: "orders".into(),
                version: 1,
            },
            &canvas,
        )
        .await
        .unwrap_or_else(|d| panic!("packaging failed: {d:?}"));
    let dir = tempfile::tempdir().unwrap();
    let bundle = Bundle::at(dir.path());
    std::fs::create_dir_all(&bundle.plugins).unwrap();
    std::fs::write(&bundle.flow, serde_json::to_vec_pretty(&flow).unwrap()).unwrap();
    for wasm in &components {
        let plugin = runtime.load(wasm).await.unwrap();
        if let Some(wanted) = flow.plugins.iter().find(|p| p.sha256 == plugin.sha256()) {
            std::fs::write(component_path(&bundle.plugins, wanted), wasm).unwrap();
        }
    }
    (flow, dir)
}

/// The `http-trigger` node `in`, serving `POST /orders`.
pub fn trigger() -> Value {
    serde_json::json!({"id": "in", "type": "http-trigger@^1", "config": {"method": "POST", "path": "/orders"}})
}

/// trigger → `sum` (totals `.items`) → `double`.
pub fn transform_chain() -> Value {
    serde_json::json!({
        "nodes": [trigger(),
            {"id": "sum", "type": "transform@^1", "config": {"expression": "{total: (.items | add)}"}},
            {"id": "double", "type": "transform@^1", "config": {"expression": "{total: (.total * 2)}"}}],
        "edges": [{"from": "in", "to": "sum"}, {"from": "sum", "to": "double"}]
    })
}

/// trigger → `route`: `.total > 100` to `big` (`{size: "large"}`), else to
/// `little` (`{size: "small"}`).
pub fn two_branches() -> Value {
    serde_json::json!({
        "nodes": [trigger(),
            {"id": "route", "type": "choice@^1", "config": {"routes": [{"when": ".total > 100", "port": "large"}], "otherwise": "small"}},
            {"id": "big", "type": "transform@^1", "config": {"expression": "{size: \"large\"}"}},
            {"id": "little", "type": "transform@^1", "config": {"expression": "{size: \"small\"}"}}],
        "edges": [{"from": "in", "to": "route"},
                  {"from": "route", "port": "large", "to": "big"},
                  {"from": "route", "port": "small", "to": "little"}]
    })
}

/// trigger → subflow `enrich` (adds `tag: "vip"`) → `reply`; and the
/// `enrich` canvas.
pub fn with_subflow() -> (Value, Value) {
    let root = serde_json::json!({
        "nodes": [trigger(),
            {"id": "enrich", "subflow": {"integration": "enrich", "version": 1}},
            {"id": "reply", "type": "transform@^1", "config": {"expression": "{tagged: .tag, total}"}}],
        "edges": [{"from": "in", "to": "enrich"}, {"from": "enrich", "to": "reply"}]
    });
    let enrich = serde_json::json!({"nodes": [
        {"id": "tag", "type": "transform@^1", "config": {"expression": ". + {tag: \"vip\"}"}}]});
    (root, enrich)
}

/// The benches' flow: total the order, route on its size, tag it, shape
/// the reply (five nodes on each path).
pub fn five_nodes() -> Value {
    serde_json::json!({
        "nodes": [trigger(),
            {"id": "total", "type": "transform@^1", "config": {"expression": "{customer, total: (.items | map(.price * .qty) | add)}"}},
            {"id": "route", "type": "choice@^1", "config": {"routes": [{"when": ".total > 100", "port": "large"}], "otherwise": "small"}},
            {"id": "large", "type": "transform@^1", "config": {"expression": ". + {tier: \"large\", discount: (.total * 0.1)}"}},
            {"id": "small", "type": "transform@^1", "config": {"expression": ". + {tier: \"small\", discount: 0}"}},
            {"id": "reply", "type": "transform@^1", "config": {"expression": "{customer, tier, due: (.total - .discount)}"}}],
        "edges": [{"from": "in", "to": "total"}, {"from": "total", "to": "route"},
                  {"from": "route", "port": "large", "to": "large"},
                  {"from": "route", "port": "small", "to": "small"},
                  {"from": "large", "to": "reply"}, {"from": "small", "to": "reply"}]
    })
}

/// A running `slipway-engine` process.
pub struct EngineProcess {
    pub child: Child,
    pub address: SocketAddr,
    /// Its log lines (JSON), as they arrive.
    pub logs: Arc<Mutex<Vec<Value>>>,
    /// The thread reading them; it ends when the process closes its stdout.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl EngineProcess {
    /// Starts the engine on `bundle` (code from the shared cache unless
    /// `args` say otherwise) on an ephemeral loopback port, and waits until
    /// it is ready.
    pub async fn start(bundle: &Path, args: &[&str]) -> EngineProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_slipway-engine"));
        command.arg("--bundle").arg(bundle);
        if !args.contains(&"--code") {
            command.arg("--code").arg(shared_cache());
        }
        let engine = EngineProcess::spawn(command.args(args));
        engine.wait_ready().await;
        engine
    }

    /// Spawns `command` with loopback and port 0, and waits for its
    /// `listening` line.
    pub fn spawn(command: &mut Command) -> EngineProcess {
        let mut child = command
            .env("PORT", "0")
            .env("SLIPWAY_BIND", "127.0.0.1")
            .env("SLIPWAY_LOG", "info")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (found, address) = std::sync::mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let collected = logs.clone();
        let reader = std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                let record: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| panic!("a log line is not JSON: {line}"));
                if record["message"] == "listening" {
                    let _ = found.send(record["address"].as_str().unwrap().parse().unwrap());
                }
                collected.lock().unwrap().push(record);
            }
        });
        let address = address
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("the engine never listened: {:?}", logs.lock().unwrap()));
        EngineProcess {
            child,
            address,
            logs,
            reader: Some(reader),
        }
    }

    /// `http://<address><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Polls `/readyz` until it answers 200.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(response) = reqwest::get(self.url("/readyz")).await
                && response.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("never ready: {:?}", self.logs.lock().unwrap());
    }

    /// Whether some log record has this message.
    pub fn logged(&self, message: &str) -> Option<Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .find(|r| r["message"] == message)
            .cloned()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Sends SIGTERM and waits for the exit, at most `within`, and for
    /// every log line it wrote to be in [`EngineProcess::logs`].
    pub fn stop(mut self, within: Duration) -> ExitStatus {
        self.terminate();
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                if let Some(reader) = self.reader.take() {
                    reader.join().unwrap();
                }
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the engine did not stop within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
