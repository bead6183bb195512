//! Per-node cost: the 5-node path of the throughput flow run by the executor,
//! beside the same five `invoke` calls made directly on the plugins, in the
//! same run. The difference is what the engine adds per node.
//!
//! `cargo bench -p slipway-engine --bench per_node`

#[path = "../tests/it/common.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{runtime, shared_cache};
use slipway_engine::loader::load_plugins;
use slipway_engine::{Bundle, Executor, Outcome};
use slipway_runtime::{CallContext, Message};

const RUNS: usize = 2_000;
/// The nodes a large order passes.
const PATH: [&str; 5] = ["in", "total", "route", "large", "reply"];

fn request() -> Message {
    Message {
        body: br#"{"customer":"c-17","items":[{"sku":"a","price":40,"qty":2},{"sku":"b","price":15,"qty":3}]}"#.to_vec(),
        headers: vec![("content-type".into(), "application/json".into())],
        attributes: vec![("http.method".into(), "POST".into())],
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (flow, dir) = common::bundle(common::five_nodes(), &[], &[]).await;
    let runtime = runtime(&shared_cache());
    let plugins = load_plugins(&runtime, &flow, &Bundle::at(dir.path()).plugins)
        .await
        .unwrap();
    let executor = Arc::new(Executor::new(&flow, &plugins).unwrap());
    let start = executor.routes()[0].node;
    let nodes: BTreeMap<&str, _> = flow.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let direct: Vec<_> = PATH
        .iter()
        .map(|id| {
            let node = nodes[id];
            (plugins[&node.plugin].clone(), node.node.to_string())
        })
        .collect();
    let context = CallContext::default();

    let mut engine = Vec::with_capacity(RUNS);
    let mut baseline = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        let outcome = executor.run(start, request(), &|_, _, _| {}).await;
        engine.push(started.elapsed());
        assert!(matches!(outcome, Outcome::Reply(_)));

        let started = Instant::now();
        let mut message = request();
        for (plugin, node) in &direct {
            message = plugin
                .invoke(&context, node, message)
                .await
                .unwrap()
                .unwrap()
                .message;
        }
        baseline.push(started.elapsed());
    }
    let (engine, baseline) = (median(engine), median(baseline));
    let per_node = |d: Duration| d.as_secs_f64() * 1e6 / PATH.len() as f64;
    println!("{RUNS} runs of the 5-node path, one at a time, medians");
    println!(
        "baseline: 5 direct invoke calls   {:>8.1} µs   {:>6.1} µs/node",
        baseline.as_secs_f64() * 1e6,
        per_node(baseline)
    );
    println!(
        "executor run                      {:>8.1} µs   {:>6.1} µs/node",
        engine.as_secs_f64() * 1e6,
        per_node(engine)
    );
    println!(
        "engine overhead per node: {:.2} µs",
        per_node(engine) - per_node(baseline)
    );
}
