//! Read throughput of `GET /api/v1/releases/{id}` under wrk on loopback,
//! beside a bare axum handler returning the same bytes, in the same run; and
//! of `GET /api/v1/releases` for an organisation with one release, before
//! and after another organisation has 10,000.
//!
//! Needs `wrk` (Debian: `apt-get install wrk`).
//! `cargo bench -p slipway --bench api_read`

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use serde_json::json;
use slipway::server::{AppState, router};
use slipway_flow::canvas::Canvas;
use slipway_runtime::{Runtime, RuntimeConfig};
use slipway_store::{Status, Store};

use slipway_test_support::wrk;

use wrk::{CONNECTIONS, SECONDS, wrk};

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let made = store.bootstrap("bench", None).unwrap().unwrap();
    let org = made.organisation.id;
    store.create_integration(org, "orders").unwrap();
    let canvas: Canvas = serde_json::from_value(json!({
        "nodes": [
            {"id": "in", "type": "http-trigger@^1", "config": {"method": "POST", "path": "/orders"}},
            {"id": "sum", "type": "transform@^1", "config": {"expression": "{total: (.items | add)}"}},
            {"id": "route", "type": "choice@^1", "config": {"routes": [{"when": ".total > 100", "port": "large"}], "otherwise": "small"}}
        ],
        "edges": [{"from": "in", "to": "sum"}, {"from": "sum", "to": "route"}]
    }))
    .unwrap();
    store.add_canvas(org, "orders", &canvas).unwrap();
    let release = store
        .create_release(org, slipway_store::NewRelease::proposed("orders", 1))
        .unwrap();
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
    tokio::spawn(state.clone().start());
    while state.store.release(release.id).unwrap().unwrap().status != Status::Failed {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let slipway = serve(router(state.clone())).await;
    let path = format!("/api/v1/releases/{}", release.id);
    let body = reqwest::Client::new()
        .get(format!("http://{slipway}{path}"))
        .bearer_auth(&made.token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let bare = serve(Router::new().route(
        &path,
        get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }),
    ))
    .await;

    println!("wrk -t2 -c{CONNECTIONS} -d{SECONDS}s, server on 2 worker threads, same machine");
    let (bare_rps, bare_p99) =
        tokio::task::spawn_blocking(move || wrk(&format!("http://{bare}{path}"), &[]))
            .await
            .unwrap();
    let token = made.token.clone();
    let path = format!("/api/v1/releases/{}", release.id);
    let (rps, p99) = tokio::task::spawn_blocking(move || {
        let auth = format!("Authorization: Bearer {token}");
        wrk(&format!("http://{slipway}{path}"), &["-H", &auth])
    })
    .await
    .unwrap();
    println!(
        "baseline: bare axum handler, same bytes        {bare_rps:>10.0} req/s   p99 {bare_p99:>6.2} ms"
    );
    println!(
        "GET /api/v1/releases/{{id}} (token, sled read)   {rps:>10.0} req/s   p99 {p99:>6.2} ms"
    );
    println!(
        "slipway / baseline: {:.0}%   target >= 50%: {}",
        rps / bare_rps * 100.0,
        if rps >= bare_rps / 2.0 {
            "met"
        } else {
            "NOT met"
        }
    );

    let list = |label: &'static str| {
        let auth = format!("Authorization: Bearer {}", made.token);
        async move {
            let (rps, p99) = tokio::task::spawn_blocking(move || {
                wrk(&format!("http://{slipway}/api/v1/releases"), &["-H", &auth])
            })
            .await
            .unwrap();
            println!("GET /api/v1/releases, {label:<32} {rps:>10.0} req/s   p99 {p99:>6.2} ms");
            rps
        }
    };
    let alone = list("no other organisation").await;
    for version in 0..OTHERS {
        // Failed at once, so the workers leave them be.
        let mut other = state
            .store
            .create_release(
                org + 1,
                slipway_store::NewRelease::proposed("payments", version),
            )
            .unwrap();
        other.status = Status::Failed;
        state.store.put_release(&other).unwrap();
    }
    // Their writes on disk first, so the second run measures reads only.
    state.store.flush().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let crowded = list("another has 10,000 releases").await;
    println!(
        "with another's 10,000 / alone: {:.0}%",
        crowded / alone * 100.0
    );
}

/// Releases of another organisation in the list benchmark.
const OTHERS: u32 = 10_000;
