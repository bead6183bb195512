//! Throughput and p99 of a 5-node flow (trigger → transform → choice →
//! transform → transform) served by the `slipway-engine` binary, beside a
//! plain axum handler doing the same JSON work natively, under wrk on
//! loopback in the same run.
//!
//! Needs `wrk` (Debian: `apt-get install wrk`).
//! `cargo bench -p slipway-engine --bench throughput`

#[path = "../tests/it/common.rs"]
mod common;
use slipway_test_support::wrk;

use std::process::Command;

use axum::Router;
use axum::http::header;
use axum::routing::post;
use common::{EngineProcess, bundle, five_nodes};
use serde_json::{Value, json};
use wrk::{CONNECTIONS, SECONDS, wrk};

/// The request every connection sends.
const BODY: &str = r#"{"customer":"c-17","items":[{"sku":"a","price":40,"qty":2},{"sku":"b","price":15,"qty":3}]}"#;

/// The same work in Rust.
fn native(body: &[u8]) -> Value {
    let order: Value = serde_json::from_slice(body).unwrap();
    let total: f64 = order["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["price"].as_f64().unwrap() * i["qty"].as_f64().unwrap())
        .sum();
    let (tier, discount) = if total > 100.0 {
        ("large", total * 0.1)
    } else {
        ("small", 0.0)
    };
    json!({"customer": order["customer"], "tier": tier, "due": total - discount})
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_, dir) = tokio.block_on(bundle(five_nodes(), &[], &[]));
    let engine = tokio.block_on(EngineProcess::start(dir.path(), &[]));
    let answer = tokio.block_on(async {
        reqwest::Client::new()
            .post(engine.url("/orders"))
            .body(BODY)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    });
    assert_eq!(answer, native(BODY.as_bytes()), "both do the same work");

    let baseline = tokio.block_on(async {
        let app = Router::new().route(
            "/orders",
            post(|body: axum::body::Bytes| async move {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    native(&body).to_string(),
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        address
    });

    let script = dir.path().join("post.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = '{BODY}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
        ),
    )
    .unwrap();
    let script = script.to_str().unwrap();
    println!(
        "wrk -t2 -c{CONNECTIONS} -d{SECONDS}s POST /orders; each server on 2 worker threads, same 2-core machine"
    );
    let (base_rps, base_p99) = wrk(&format!("http://{baseline}/orders"), &["-s", script]);
    let (rps, p99) = wrk(&engine.url("/orders"), &["-s", script]);
    println!(
        "baseline: axum handler, same JSON work in Rust  {base_rps:>9.0} req/s   p99 {base_p99:>6.2} ms"
    );
    println!(
        "slipway-engine, 5 nodes in the sandbox          {rps:>9.0} req/s   p99 {p99:>6.2} ms"
    );
    println!(
        "engine / baseline: {:.1}%   target >= 10000 req/s: {}",
        rps / base_rps * 100.0,
        if rps >= 10_000.0 { "met" } else { "NOT met" }
    );
    let rss = Command::new("ps")
        .args(["-o", "rss=", "-p", &engine.child.id().to_string()])
        .output()
        .unwrap();
    println!(
        "engine resident memory after the load: {} KiB",
        String::from_utf8_lossy(&rss.stdout).trim()
    );
}
