//! The API against its own OpenAPI document: schemathesis (PyPI) runs its
//! coverage and fuzzing phases with every check against a running server,
//! and finds nothing. Requests the document allows must be accepted, those
//! it refuses must be refused, and every answer must be one it lists. The
//! fuzzing phase runs for 60 s with a fixed seed.

use crate::common;

use std::process::Command;

use serde_json::{Value, json};

/// The admin token `common::start` gives the first admin.
const TOKEN: &str = "slw_crash_test_token";

/// The pinned schemathesis version `.ci/run` installs.
const VERSION: &str = "4.32.5";

async fn post(base: &str, path: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_against_the_document() {
    let found = Command::new("schemathesis").arg("--version").output();
    let version = found
        .as_ref()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string());
    assert!(
        version.as_ref().is_ok_and(|v| v.contains(VERSION)),
        "schemathesis {VERSION} is on PATH (pip install schemathesis=={VERSION}); found {version:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let (_served, lines) = common::start(&dir.path().join("data"));
    let base = common::base_of(&lines);
    common::ready(&base).await;

    // What the fuzzed calls find: an integration with a canvas, and a user
    // of its own for the calls that delete users or revoke their tokens, so
    // the run's own token stays valid.
    post(&base, "/api/v1/integrations", json!({"name": "orders"})).await;
    post(
        &base,
        "/api/v1/integrations/orders/versions",
        json!({"nodes": [{"id": "in", "type": "http-trigger@^1", "config": {"method": "POST", "path": "/orders"}}], "edges": []}),
    )
    .await;
    let victim = post(
        &base,
        "/api/v1/users",
        json!({"name": "fuzzed", "role": "viewer"}),
    )
    .await;
    let victim = victim["user"]["id"].as_u64().unwrap();

    // The body of a plugin upload is a component: sent as the bytes drawn.
    std::fs::write(
        dir.path().join("slipway_hooks.py"),
        "import schemathesis\nschemathesis.serializer.alias(\"application/wasm\", \"application/octet-stream\")\n",
    )
    .unwrap();
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            r#"
headers = {{ Authorization = "Bearer {TOKEN}" }}
seed = 20261202
# One worker: with two, a run once failed inside Hypothesis itself (a
# KeyError in its source-line cache, reported as a flaky error on one
# operation), which a rerun of the same seed did not repeat.
workers = 1
generation.max-examples = 20

[[operations]]
include-path-regex = "^/api/v1/users/\\{{id\\}}"
parameters = {{ id = {victim} }}

[[operations]]
include-path-regex = "^/api/v1/integrations/\\{{name\\}}"
parameters = {{ name = "orders" }}

# What these accept depends on what is stored, which no schema can say: the
# integration version a release names, the adapter a registry names and the
# settings it accepts, the component uploaded, the hosts a plugin's manifest
# lists, the target and release a service names, the plugin a target names
# and the settings it accepts, an operation already on a service, the
# services a deploy plan names. A request
# the schema allows may be refused there with 409 or 422 and the field at
# fault.
[[operations]]
include-name = ["POST /api/v1/releases", "PUT /api/v1/registry", "POST /api/v1/plugins", "PUT /api/v1/plugins/{{kind}}/{{name}}/allowed-hosts", "POST /api/v1/services", "PUT /api/v1/services/{{id}}", "POST /api/v1/services/{{id}}/operations", "PUT /api/v1/targets/{{name}}", "POST /api/v1/plans", "POST /api/v1/plans/{{id}}/executions"]
checks.positive_data_acceptance.expected-statuses = ["2xx", 401, 403, 404, 409, 422]
"#
        ),
    )
    .unwrap();
    let run = Command::new("schemathesis")
        .arg("--config-file")
        .arg(&config)
        .args(["run", &format!("{base}/api/v1/openapi.json")])
        .args([
            "--url",
            &base,
            "--phases",
            "coverage,fuzzing",
            "--checks",
            "all",
        ])
        .args(["--max-time", "60", "--request-timeout", "30"])
        // Its run cache goes to the test's directory, not the clone.
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env("PYTHONPATH", dir.path())
        .env("SCHEMATHESIS_HOOKS", "slipway_hooks")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "schemathesis found something:\n{report}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
}
