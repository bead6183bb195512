//! Cold start: process start to `/readyz` answering 200, for a flow of 5
//! plugins, with precompiled code beside the same start compiling it.
//!
//! `cargo bench -p slipway-engine --bench cold_start`

#[path = "../tests/it/common.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{EngineProcess, trigger};
use serde_json::json;
use slipway_engine::Bundle;

const PRECOMPILED_RUNS: usize = 20;
const COMPILING_RUNS: usize = 3;

/// Starts the engine and times it to its first 200 from `/readyz`.
async fn cold_start(bundle: &Path, code: &Path) -> Duration {
    let started = Instant::now();
    let mut command = Command::new(env!("CARGO_BIN_EXE_slipway-engine"));
    command.arg("--bundle").arg(bundle).arg("--code").arg(code);
    let engine = EngineProcess::spawn(&mut command);
    engine.wait_ready().await;
    let elapsed = started.elapsed();
    assert!(engine.stop(Duration::from_secs(10)).success());
    elapsed
}

fn summary(mut runs: Vec<Duration>) -> String {
    runs.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "median {:>7.1} ms   min {:>7.1} ms   max {:>7.1} ms",
        ms(runs[runs.len() / 2]),
        ms(runs[0]),
        ms(runs[runs.len() - 1])
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (_, dir) = common::bundle(
        json!({
            "nodes": [trigger(),
                {"id": "shape", "type": "transform@^1", "config": {"expression": "."}},
                {"id": "route", "type": "choice@^1", "config": {"routes": [{"when": ".x", "port": "x"}], "otherwise": "y"}},
                {"id": "note", "type": "log@^1", "config": {"message": "seen"}},
                {"id": "call", "type": "http-call@^1", "config": {"url": "http://127.0.0.1:9/"}}],
            "edges": [{"from": "in", "to": "shape"}, {"from": "shape", "to": "route"},
                      {"from": "route", "port": "x", "to": "note"}, {"from": "route", "port": "y", "to": "call"}]
        }),
        &[],
        &[],
    )
    .await;
    let bundle = Bundle::at(dir.path());
    let status = Command::new(env!("CARGO_BIN_EXE_slipway-engine"))
        .args(["precompile", "--bundle"])
        .arg(dir.path())
        .env("SLIPWAY_LOG", "warn")
        .status()
        .unwrap();
    assert!(status.success());

    let mut precompiled = Vec::new();
    for _ in 0..PRECOMPILED_RUNS {
        precompiled.push(cold_start(dir.path(), &bundle.code).await);
    }
    let mut compiling = Vec::new();
    for _ in 0..COMPILING_RUNS {
        let empty = tempfile::tempdir().unwrap();
        compiling.push(cold_start(dir.path(), empty.path()).await);
    }
    let median = {
        let mut runs = precompiled.clone();
        runs.sort();
        runs[runs.len() / 2]
    };
    println!(
        "process start to /readyz 200, 5 plugins (http-trigger, transform, choice, log, http-call)"
    );
    println!(
        "baseline: compiling at start ({COMPILING_RUNS} runs)   {}",
        summary(compiling)
    );
    println!(
        "precompiled code ({PRECOMPILED_RUNS} runs)             {}",
        summary(precompiled)
    );
    println!(
        "target <= 100 ms: {}",
        if median <= Duration::from_millis(100) {
            "met"
        } else {
            "NOT met"
        }
    );
}
