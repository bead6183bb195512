//! Packaging a 200-node canvas with three levels of subflows, from canvases
//! in sled and the built-in plugins, beside the floor it cannot go under: the
//! same plugin `validate` and `translate` calls made directly, one by one.
//!
//! `cargo bench -p slipway --bench packaging`

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use slipway::server::AppState;
use slipway_domain::canvases::OrganisationCanvases;
use slipway_flow::canvas::{Canvas, SubflowRef};
use slipway_flow::package::Packager;
use slipway_runtime::{CallContext, Kind, Runtime, RuntimeConfig};
use slipway_store::Store;

/// Nodes per canvas; four canvases (the root and three nested subflows).
const PER_CANVAS: usize = 50;
const RUNS: usize = 40;

/// A canvas of `PER_CANVAS` nodes: a trigger at the root, transforms and a
/// choice, then the next level's subflow (if any) at the end.
fn canvas(level: usize, last: bool) -> Value {
    let mut nodes = Vec::new();
    if level == 0 {
        nodes.push(json!({"id": "in", "type": "http-trigger@^1", "config": {"method": "POST", "path": "/orders"}}));
    }
    nodes.push(json!({"id": "route", "type": "choice@^1",
        "config": {"routes": [{"when": ".total > 100", "port": "large"}], "otherwise": "small"}}));
    let transforms = PER_CANVAS - nodes.len() - usize::from(!last);
    for i in 0..transforms {
        nodes.push(json!({"id": format!("t{i}"), "type": "transform@^1",
            "config": {"expression": format!("{{total: (.items | map(.price) | add), step: {i}}}")}}));
    }
    if !last {
        nodes.push(json!({"id": "deeper", "subflow": {"integration": format!("level{}", level + 1), "version": 1}}));
    }
    let edges: Vec<Value> = nodes
        .windows(2)
        .map(|w| {
            let from = w[0]["id"].as_str().unwrap();
            let port = if from == "route" { "large" } else { "out" };
            json!({"from": from, "port": port, "to": w[1]["id"]})
        })
        .collect();
    json!({"nodes": nodes, "edges": edges})
}

fn summary(label: &str, mut times: Vec<Duration>) -> Duration {
    times.sort();
    let median = times[times.len() / 2];
    let p95 = times[times.len() * 95 / 100];
    println!(
        "{label:<58} median {:>7.2} ms   p95 {:>7.2} ms",
        median.as_secs_f64() * 1e3,
        p95.as_secs_f64() * 1e3
    );
    median
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let org = store
        .bootstrap("bench", None)
        .unwrap()
        .unwrap()
        .organisation
        .id;
    let levels = 4;
    for level in 0..levels {
        let name = if level == 0 {
            "orders".to_string()
        } else {
            format!("level{level}")
        };
        store.create_integration(org, &name).unwrap();
        let canvas: Canvas = serde_json::from_value(canvas(level, level == levels - 1)).unwrap();
        assert_eq!(canvas.nodes.len(), PER_CANVAS);
        store.add_canvas(org, &name, &canvas).unwrap();
    }
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.path().join("code-cache")),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let config = slipway::config::Config {
        data_dir: dir.path().to_path_buf(),
        ..slipway::config::Config::default()
    };
    let state = AppState::new(store, runtime, &config);
    state.load_plugins().await.unwrap();

    let root = SubflowRef {
        integration: "orders".into(),
        version: 1,
    };
    let integration = state.store.integration(org, "orders").unwrap();
    let top = state.store.canvas(&integration, 1).unwrap().unwrap();
    let plugins = state.plugins.of(org);
    let canvases = OrganisationCanvases::new(&state.store, org);
    let packager = Packager::new(&plugins, &canvases);
    let flow = packager
        .package(&root, &top)
        .await
        .expect("the canvas is valid");
    println!(
        "canvas: {} canvas nodes in 4 integrations (3 subflow levels) -> {} flow nodes, {} edges",
        PER_CANVAS * levels,
        flow.nodes.len(),
        flow.edges.len()
    );

    // The floor: every plugin node's validate + translate, directly.
    let mut calls = Vec::new();
    for level in 0..levels {
        let value = canvas(level, level == levels - 1);
        for node in value["nodes"].as_array().unwrap() {
            if let Some(spec) = node["type"].as_str() {
                let (name, requirement) = spec.split_once('@').unwrap();
                let plugin = plugins
                    .resolve(Kind::NodeType, name, &requirement.parse().unwrap())
                    .unwrap();
                calls.push((plugin, node["config"].clone()));
            }
        }
    }
    let context = CallContext::default();
    let mut direct = Vec::new();
    let mut packaged = Vec::new();
    for run in 0..RUNS + 5 {
        let started = Instant::now();
        for (plugin, config) in &calls {
            assert!(plugin.validate(&context, config).await.unwrap().is_empty());
            plugin.translate(&context, config).await.unwrap().unwrap();
        }
        let direct_time = started.elapsed();
        let started = Instant::now();
        let top = state.store.canvas(&integration, 1).unwrap().unwrap();
        packager.package(&root, &top).await.unwrap();
        let packaged_time = started.elapsed();
        if run >= 5 {
            direct.push(direct_time);
            packaged.push(packaged_time);
        }
    }
    let floor = summary(
        &format!("baseline: {} validate+translate calls, direct", calls.len()),
        direct,
    );
    let whole = summary(
        "packaging stage (sled canvases, resolve, check, translate)",
        packaged,
    );
    println!(
        "packaging / baseline: {:.2}x   target <= 50 ms: {}",
        whole.as_secs_f64() / floor.as_secs_f64(),
        if whole <= Duration::from_millis(50) {
            "met"
        } else {
            "NOT met"
        }
    );
}
