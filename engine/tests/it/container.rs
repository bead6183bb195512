//! The engine built statically (musl) and run from an image built `FROM
//! scratch` on this machine's Docker Engine: it loads its precompiled code
//! and answers the same requests as on the host. This proves the binary is
//! self-contained.
//!
//! Needs Docker, and what `tests/support/src/static_engine.rs` needs.

use crate::common;
use slipway_test_support::docker;
use slipway_test_support::static_engine;

use std::path::Path;
use std::process::Command;

use common::{bundle, trigger};
use docker::Docker;
use serde_json::{Value, json};
use static_engine::static_engine;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_static_engine_serves_the_flow_from_a_scratch_image() {
    let engine = static_engine(env!("CARGO_TARGET_TMPDIR"));
    let size = std::fs::metadata(&engine).unwrap().len();
    println!("static slipway-engine: {size} bytes");

    let (_, dir) = bundle(
        json!({
            "nodes": [trigger(),
                {"id": "sum", "type": "transform@^1", "config": {"expression": "{total: (.items | add)}"}},
                {"id": "route", "type": "choice@^1", "config": {"routes": [{"when": ".total > 100", "port": "large"}], "otherwise": "small"}},
                {"id": "big", "type": "transform@^1", "config": {"expression": "{total, size: \"large\"}"}},
                {"id": "little", "type": "transform@^1", "config": {"expression": "{total, size: \"small\"}"}}],
            "edges": [{"from": "in", "to": "sum"}, {"from": "sum", "to": "route"},
                      {"from": "route", "port": "large", "to": "big"},
                      {"from": "route", "port": "small", "to": "little"}]
        }),
        &[],
        &[],
    )
    .await;
    // Code compiled by the binary that will load it.
    let status = Command::new(&engine)
        .args(["precompile", "--bundle"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());

    let context = tempfile::tempdir().unwrap();
    std::fs::copy(&engine, context.path().join("slipway-engine")).unwrap();
    copy_dir(dir.path(), &context.path().join("bundle"));
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\n\
         COPY slipway-engine /slipway-engine\n\
         COPY bundle /bundle\n\
         EXPOSE 8080\n\
         ENTRYPOINT [\"/slipway-engine\", \"--bundle\", \"/bundle\"]\n",
    )
    .unwrap();
    let image = format!("slipway-engine-test:{}", std::process::id());
    let container = format!("slipway-engine-test-{}", std::process::id());
    let docker = Docker::new();
    let _cleanup = docker.cleanup(&container, &image);
    docker.run(&[
        "build",
        "-q",
        "-t",
        &image,
        context.path().to_str().unwrap(),
    ]);
    docker.run(&[
        "run",
        "-d",
        "--name",
        &container,
        "-p",
        "127.0.0.1::8080",
        &image,
    ]);
    let address = docker.ready(&container).await;
    let url = |path: &str| format!("http://{address}{path}");
    let client = reqwest::Client::new();
    for (items, expected) in [
        (json!([1, 2, 3]), json!({"total": 6, "size": "small"})),
        (json!([100, 200]), json!({"total": 300, "size": "large"})),
    ] {
        let response = client
            .post(url("/orders"))
            .body(json!({"items": items}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.json::<Value>().await.unwrap(), expected);
    }

    docker.run(&["stop", "-t", "10", &container]);
    assert_eq!(
        docker.run(&["inspect", "-f", "{{.State.ExitCode}}", &container]),
        "0"
    );
    let logs = docker.run(&["logs", &container]);
    let records: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let precompiled = records
        .iter()
        .filter(|r| r["message"] == "loaded precompiled code")
        .count();
    assert_eq!(precompiled, 3, "{logs}");
    assert!(
        records
            .iter()
            .any(|r| r["message"] == "stopped: every request answered"),
        "{logs}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
