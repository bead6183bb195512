//! The command-line client against a running `slipway serve`: log in, push a
//! plugin, create an integration, push canvases, validate, release and follow.

use crate::common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// Runs `slipway` with the login kept in `home`.
fn slipway(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(args)
        .env("SLIPWAY_CLIENT_CONFIG", home.join("client.toml"))
        .env_remove("SLIPWAY_SERVER")
        .env_remove("SLIPWAY_TOKEN")
        .env("SLIPWAY_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

#[test]
fn an_integrator_goes_from_canvas_to_release_with_the_cli() {
    let data = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let (server, lines) = common::start(data.path());
    let base = lines
        .last()
        .unwrap()
        .trim_start_matches("listening on ")
        .to_string();
    let home = home.path();

    // Not logged in yet; a wrong token is refused and not saved.
    let out = slipway(home, &["release", "list"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not logged in"), "{}", stderr(&out));
    let out = slipway(home, &["login", "--server", &base, "--token", "slw_wrong"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unknown token"), "{}", stderr(&out));
    assert!(!home.join("client.toml").exists());

    let out = slipway(
        home,
        &[
            "login",
            "--server",
            &base,
            "--token",
            "slw_crash_test_token",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("logged in to {base} as admin (org-admin)")),
        "{}",
        stdout(&out)
    );

    let greeter = slipway_plugin_artifacts::test_guest("greeter-v1").unwrap();
    let out = slipway(home, &["plugin", "push", greeter, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["name"], "greeter");
    let out = slipway(home, &["plugin", "list"]);
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with("greeter ") && l.ends_with("uploaded")),
        "{}",
        stdout(&out)
    );

    let out = slipway(home, &["integration", "create", "hello"]);
    assert_eq!(stdout(&out), "created integration hello\n");
    let out = slipway(home, &["integration", "create", "Bad Name"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("(at /name)"), "{}", stderr(&out));

    let canvases = tempfile::tempdir().unwrap();
    let good = canvases.path().join("hello.yaml");
    std::fs::write(
        &good,
        "nodes:\n  - id: in\n    type: http-trigger@^1\n    config: {method: GET, path: /}\n  - id: hi\n    type: greeter@^1\nedges:\n  - {from: in, to: hi}\n",
    )
    .unwrap();
    let bad = canvases.path().join("broken.json");
    std::fs::write(
        &bad,
        r#"{"nodes": [{"id": "in", "type": "http-trigger@^1", "config": {"method": "GET", "path": "/"}},
                      {"id": "sum", "type": "transform@^1", "config": {"expression": ".items |"}}],
            "edges": [{"from": "in", "to": "sum"}]}"#,
    )
    .unwrap();
    let out = slipway(
        home,
        &["integration", "push", "hello", good.to_str().unwrap()],
    );
    assert_eq!(stdout(&out), "pushed hello version 1\n", "{}", stderr(&out));
    let out = slipway(home, &["integration", "validate", "hello"]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        "hello@1 is valid: 2 nodes, 2 plugins, 0 subflows\n"
    );

    // A release followed live fails for want of a registry, after
    // packaging, and exits 1 (tests/distribution.rs follows one to `ready`).
    let out = slipway(home, &["release", "create", "hello", "--follow"]);
    assert!(!out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.lines()
            .last()
            .unwrap()
            .contains("the organisation has no registry"),
        "{text}"
    );

    // A broken canvas: validate names the field and exits non-zero; so does the release.
    slipway(
        home,
        &["integration", "push", "hello", bad.to_str().unwrap()],
    );
    let out = slipway(
        home,
        &["integration", "validate", "hello", "--version", "2"],
    );
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("  /nodes/1/config/expression: "),
        "{}",
        stdout(&out)
    );
    let out = slipway(home, &["release", "create", "hello", "--follow", "--json"]);
    assert!(!out.status.success());
    let events: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.last().unwrap()["status"], "failed");
    let failed = events[0]["id"].as_u64().unwrap();

    let out = slipway(home, &["release", "list", "--json"]);
    let list = json(&out);
    let statuses: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["failed", "failed"]);
    let out = slipway(home, &["release", "show", &failed.to_string()]);
    assert!(
        stdout(&out).contains("error: the canvas has 1 problem(s)"),
        "{}",
        stdout(&out)
    );
    let out = slipway(home, &["release", "delete", &failed.to_string()]);
    assert_eq!(stdout(&out), format!("deleted release {failed}\n"));
    let out = slipway(home, &["release", "list", "--status", "deleted", "--json"]);
    assert_eq!(json(&out).as_array().unwrap().len(), 1);
    let out = slipway(home, &["release", "show", "999999"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no release 999999"),
        "{}",
        stderr(&out)
    );

    common::stop(server);
    let out = slipway(home, &["release", "list"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot reach the server"),
        "{}",
        stderr(&out)
    );
}
