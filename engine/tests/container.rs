//! The engine built statically (musl) and run from an image built `FROM
//! scratch` on this machine's Docker Engine: it loads its precompiled code
//! and answers the same requests as on the host. This proves the binary is
//! self-contained.
//!
//! Needs Docker, and the `x86_64-unknown-linux-musl` target with a musl C
//! compiler (Debian: `musl-tools`) for the build this test runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{bundle, trigger};
use serde_json::{Value, json};

const TARGET: &str = "x86_64-unknown-linux-musl";

/// Builds `slipway-engine` for musl with the `engine` profile, in a target
/// directory of its own (the outer build holds the usual one).
fn static_engine() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("musl");
    let _ = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status();
    let status = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args([
            "build",
            "--locked",
            "-p",
            "slipway-engine",
            "--bin",
            "slipway-engine",
        ])
        .args(["--profile", "engine", "--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .unwrap();
    assert!(status.success(), "the static build failed");
    target_dir
        .join(TARGET)
        .join("engine")
        .join("slipway-engine")
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes the container and image however the test ends.
struct Cleanup {
    container: String,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.container])
            .output();
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_static_engine_serves_the_flow_from_a_scratch_image() {
    let engine = static_engine();
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
    let _cleanup = Cleanup {
        container: container.clone(),
        image: image.clone(),
    };
    docker(&[
        "build",
        "-q",
        "-t",
        &image,
        context.path().to_str().unwrap(),
    ]);
    docker(&[
        "run",
        "-d",
        "--name",
        &container,
        "-p",
        "127.0.0.1::8080",
        &image,
    ]);
    let address = docker(&["port", &container, "8080/tcp"]);
    let address = address.lines().next().unwrap().to_string();
    let url = |path: &str| format!("http://{address}{path}");

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match reqwest::get(url("/readyz")).await {
            Ok(r) if r.status() == 200 => break,
            _ if Instant::now() > deadline => {
                panic!("not ready: {}", docker(&["logs", &container]))
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
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

    docker(&["stop", "-t", "10", &container]);
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.ExitCode}}", &container]),
        "0"
    );
    let logs = docker(&["logs", &container]);
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
