//! Release latency, API call to `ready`, for a 10-node flow pushed to the
//! CNCF registry on loopback: cold (new server, empty registry) and warm (a
//! new canvas version), beside `docker build` + `docker push` of an image
//! with the same files to the same registry, in the same run. Also the bytes
//! a canvas-only change uploads, and 20 releases submitted at once.
//!
//! Needs `docker-registry` (Debian), Docker, and what
//! `tests/support/src/static_engine.rs` needs.
//! `cargo bench -p slipway --bench release`

use slipway_test_support::registry;
use slipway_test_support::static_engine;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use registry::TestRegistry;
use serde_json::{Value, json};
use slipway::config::Config;
use slipway::server::AppState;
use slipway_domain::registry::RegistrySettings;
use slipway_flow::canvas::Canvas;
use slipway_runtime::{Runtime, RuntimeConfig};
use slipway_store::{ReleaseImage, Status, Store, StoredRegistry, now_ms};

/// Warm releases (and docker build + push) timed.
const RUNS: u32 = 7;
/// Releases submitted at once.
const BURST: usize = 20;

/// Ten nodes: a trigger, eight transforms in a chain with a choice among them.
fn canvas(step: u32) -> Canvas {
    let mut nodes = vec![
        json!({"id": "in", "type": "http-trigger@^1", "config": {"method": "POST", "path": "/orders"}}),
    ];
    for i in 0..8 {
        nodes.push(json!({"id": format!("t{i}"), "type": "transform@^1",
            "config": {"expression": format!("{{total: ((.total // 0) + {step} + {i})}}")}}));
    }
    nodes.push(json!({"id": "route", "type": "choice@^1",
        "config": {"routes": [{"when": ".total > 100", "port": "large"}], "otherwise": "small"}}));
    let edges: Vec<Value> = nodes
        .windows(2)
        .map(|w| json!({"from": w[0]["id"], "to": w[1]["id"]}))
        .collect();
    serde_json::from_value(json!({"nodes": nodes, "edges": edges})).unwrap()
}

struct Bench {
    state: Arc<AppState>,
    org: u64,
    _dir: tempfile::TempDir,
}

impl Bench {
    async fn start(registry: &TestRegistry, integrations: usize) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let org = store
            .bootstrap("bench", None)
            .unwrap()
            .unwrap()
            .organisation
            .id;
        for i in 0..integrations {
            store.create_integration(org, &name(i)).unwrap();
        }
        let settings: RegistrySettings = serde_json::from_value(json!({
            "adapter": "distribution",
            "settings": {"url": format!("http://{}", registry.address), "namespace": "bench"}
        }))
        .unwrap();
        store
            .put_registry(
                org,
                &StoredRegistry {
                    settings: settings.to_stored(),
                    resolved: None,
                    code: None,
                    changed_by: "bench".into(),
                    changed_ms: now_ms(),
                },
            )
            .unwrap();
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: Some(dir.path().join("code-cache")),
            // The registry (and the fakes) listen on loopback, as an
            // operator's `egress-allow` would let them be reached.
            egress: slipway_runtime::Egress::loopback(),
            ..RuntimeConfig::default()
        })
        .unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            engine_binary: Some(static_engine::static_engine(env!("CARGO_TARGET_TMPDIR"))),
            ..Config::default()
        };
        let state = AppState::new(store, runtime, &config);
        state.load_plugins().await.unwrap();
        tokio::spawn(state.clone().start());
        Bench {
            state,
            org,
            _dir: dir,
        }
    }

    /// Stores the next canvas version of integration `i` and releases it;
    /// returns the time to `ready` and the image.
    async fn release(&self, i: usize, step: u32) -> (Duration, ReleaseImage) {
        let store = &self.state.store;
        let version = store.add_canvas(self.org, &name(i), &canvas(step)).unwrap();
        let started = Instant::now();
        let id = store
            .create_release(
                self.org,
                slipway_store::NewRelease::proposed(&name(i), version),
            )
            .unwrap()
            .id;
        self.state.jobs.wake();
        let image = self.wait(id).await;
        (started.elapsed(), image)
    }

    async fn wait(&self, id: u64) -> ReleaseImage {
        loop {
            let release = self.state.store.release(id).unwrap().unwrap();
            match release.status {
                Status::Ready => return release.image.unwrap(),
                Status::Failed => panic!("release failed: {:?}", release.error),
                _ => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
    }
}

fn name(i: usize) -> String {
    format!("flow{i}")
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn docker(args: &[&str]) {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `docker build` + `docker push` of the engine, the components with their
/// compiled code and the flow, the same files as a release image.
fn docker_build_and_push(context: &Path, tag: &str) -> Duration {
    let started = Instant::now();
    docker(&["build", "-q", "-t", tag, context.to_str().unwrap()]);
    docker(&["push", "-q", tag]);
    started.elapsed()
}

/// A build context with the files of the image `bench` pushed last.
fn context_like(bench: &Bench, image: &ReleaseImage) -> tempfile::TempDir {
    let context = tempfile::tempdir().unwrap();
    let dir = context.path();
    std::fs::copy(
        static_engine::static_engine(env!("CARGO_TARGET_TMPDIR")),
        dir.join("slipway-engine"),
    )
    .unwrap();
    let release = bench
        .state
        .store
        .releases()
        .unwrap()
        .into_iter()
        .rfind(|r| r.image.as_ref().is_some_and(|i| i.digest == image.digest))
        .unwrap();
    let flow = release.flow.unwrap();
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(bundle.join("plugins")).unwrap();
    std::fs::write(bundle.join("flow.json"), serde_json::to_vec(&flow).unwrap()).unwrap();
    for plugin in &flow.plugins {
        let bytes = bench
            .state
            .plugins
            .component(&bench.state.store, &plugin.sha256)
            .unwrap();
        std::fs::write(
            bundle
                .join("plugins")
                .join(format!("{}@{}.wasm", plugin.name, plugin.version)),
            &bytes[..],
        )
        .unwrap();
    }
    let status = Command::new(static_engine::static_engine(env!("CARGO_TARGET_TMPDIR")))
        .args(["precompile", "--bundle"])
        .arg(&bundle)
        .env("SLIPWAY_LOG", "error")
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nCOPY slipway-engine /slipway-engine\nCOPY bundle /bundle\n\
         EXPOSE 8080\nENTRYPOINT [\"/slipway-engine\", \"--bundle\", \"/bundle\"]\n",
    )
    .unwrap();
    context
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    static_engine::static_engine(env!("CARGO_TARGET_TMPDIR"));

    // Cold: a new server (no layer built yet) and an empty registry.
    let registry = TestRegistry::anonymous();
    let bench = Bench::start(&registry, 1).await;
    let (cold, first) = bench.release(0, 0).await;
    let image_bytes: u64 = first.layers.iter().map(|l| l.size).sum();

    // Warm: a new canvas version each time.
    let mut warm = Vec::new();
    let mut uploaded = Vec::new();
    let mut last = first.clone();
    for step in 1..=RUNS {
        let (took, image) = bench.release(0, step).await;
        warm.push(took);
        uploaded.push(image.push.bytes_uploaded);
        last = image;
    }

    // The baseline: docker build + push of the same files, cold then warm.
    let context = context_like(&bench, &last);
    let baseline_registry = TestRegistry::anonymous();
    let repository = format!("{}/baseline/flow", baseline_registry.address);
    let tag = |n: u32| format!("{repository}:run{n}");
    docker(&["builder", "prune", "-af"]);
    let docker_cold = docker_build_and_push(context.path(), &tag(0));
    let mut docker_warm = Vec::new();
    for n in 1..=RUNS {
        let flow = context.path().join("bundle/flow.json");
        let mut text = std::fs::read_to_string(&flow).unwrap();
        text.push_str(&format!("\n{{\"run\": {n}}}"));
        std::fs::write(&flow, text).unwrap();
        docker_warm.push(docker_build_and_push(context.path(), &tag(n)));
    }
    for n in 0..=RUNS {
        let _ = Command::new("docker").args(["rmi", "-f", &tag(n)]).output();
    }

    // Twenty releases at once, each of its own integration.
    let burst_registry = TestRegistry::anonymous();
    let burst = Bench::start(&burst_registry, BURST).await;
    burst.release(0, 0).await; // the engine layer, once
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..BURST {
        let store = &burst.state.store;
        let version = store
            .add_canvas(burst.org, &name(i), &canvas(1000 + i as u32))
            .unwrap();
        ids.push(
            store
                .create_release(
                    burst.org,
                    slipway_store::NewRelease::proposed(&name(i), version),
                )
                .unwrap()
                .id,
        );
    }
    burst.state.jobs.wake();
    for id in ids {
        burst.wait(id).await;
    }
    let burst_total = started.elapsed();

    let warm = median(warm);
    let docker_warm = median(docker_warm);
    uploaded.sort();
    println!("release of a 10-node flow, API call to ready (median of {RUNS} warm runs)");
    println!("  slipway cold (new server, empty registry): {}", ms(cold));
    println!("  slipway warm (new canvas version):         {}", ms(warm));
    println!(
        "  docker build + push, cold cache:           {}",
        ms(docker_cold)
    );
    println!(
        "  docker build + push, warm (flow changed):  {}",
        ms(docker_warm)
    );
    println!(
        "  warm speed-up over docker: {:.1}x (target >= 10x)",
        docker_warm.as_secs_f64() / warm.as_secs_f64()
    );
    println!(
        "bytes uploaded by a canvas-only change: {} of an image of {image_bytes} (flow layer {} + config + manifest)",
        uploaded[uploaded.len() / 2],
        last.layers[2].size
    );
    println!(
        "{BURST} releases submitted at once (2 at a time): all ready in {}",
        ms(burst_total)
    );
}
