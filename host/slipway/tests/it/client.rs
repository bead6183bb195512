//! The command-line client against a running `slipway serve`: log in, push a
//! plugin, create an integration, push canvases, validate, release and follow.

use crate::common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// `slipway` with `args` and the login kept in `home`.
fn command(home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_slipway"));
    command
        .args(args)
        .env("SLIPWAY_CLIENT_CONFIG", home.join("client.toml"))
        .env_remove("SLIPWAY_SERVER")
        .env_remove("SLIPWAY_TOKEN")
        .env("SLIPWAY_LOG", "warn");
    command
}

/// Runs `slipway` with the login kept in `home`.
fn slipway(home: &Path, args: &[&str]) -> Output {
    command(home, args).stdin(Stdio::null()).output().unwrap()
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
    let engine = slipway_test_support::static_engine::static_engine(env!("CARGO_TARGET_TMPDIR"));
    let (server, lines) =
        common::start_with(data.path(), &["--engine-binary", engine.to_str().unwrap()]);
    let base = common::base_of(&lines);
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

    // A release followed live ends ready; with no registry set, its image
    // is kept in the server's own store.
    let out = slipway(home, &["release", "create", "hello", "--follow"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    let address = base.trim_start_matches("http://");
    assert!(
        text.lines()
            .last()
            .unwrap()
            .contains(&format!("ready: {address}/default/hello:v1@sha256:")),
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
    assert_eq!(statuses, ["ready", "failed"]);
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

/// Runs `slipway` with `input` on its standard input.
fn slipway_with_input(home: &Path, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = command(home, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It may stop reading early: an input too large is what some tests send.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn an_org_admin_sets_the_registry_and_manages_users_with_the_cli() {
    let data = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let (server, lines) = common::start(data.path());
    let base = common::base_of(&lines);
    let home = home.path();
    // The registry adapters are plugins: loaded once the server is ready.
    common::ready(&base).await;
    let login =
        |home: &Path, token: &str| slipway(home, &["login", "--server", &base, "--token", token]);
    assert!(login(home, "slw_crash_test_token").status.success());

    // The registry, its secret read from standard input and never shown.
    let secret = "s3cret-from-stdin-41d7";
    let settings = r#"{"url": "http://127.0.0.1:5000", "username": "ci"}"#;
    let set = [
        "registry",
        "set",
        "--adapter",
        "distribution",
        "--settings",
        settings,
    ];
    let out = slipway_with_input(
        home,
        &[&set[..], &["--secrets", "-", "--json"]].concat(),
        &format!(r#"{{"password": "{secret}"}}"#),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["secrets"], serde_json::json!(["password"]));
    let out = slipway(home, &["registry", "show"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("distribution "),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains(r#"secrets: ["password"]"#),
        "{}",
        stdout(&out)
    );
    let out = slipway(home, &["registry", "changes", "--json"]);
    assert_eq!(json(&out).as_array().unwrap().len(), 1);
    assert!(!stdout(&out).contains(secret));
    // Secrets that are not an object of strings, or too large, are refused
    // before anything is sent.
    for input in [
        "[\"a\"]".to_string(),
        format!(r#"{{"password": "{}"}}"#, "x".repeat(2 << 20)),
    ] {
        let out = slipway_with_input(home, &[&set[..], &["--secrets", "-"]].concat(), &input);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("the secrets in standard input"),
            "{}",
            stderr(&out)
        );
    }
    let out = slipway(home, &["registry", "changes", "--json"]);
    assert_eq!(json(&out).as_array().unwrap().len(), 1, "nothing changed");

    // A user, a token issued and revoked, the user deleted.
    let out = slipway(
        home,
        &[
            "user",
            "create",
            "deployer",
            "--role",
            "api-provider",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let made = json(&out);
    let id = made["user"]["id"].as_u64().unwrap().to_string();
    let first = made["token"].as_str().unwrap().to_string();
    let users = json(&slipway(home, &["user", "list", "--json"]));
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "deployer"]);
    let out = slipway(home, &["user", "token", "issue", &id, "--json"]);
    let second = json(&out)["token"].as_str().unwrap().to_string();
    let theirs = tempfile::tempdir().unwrap();
    assert!(login(theirs.path(), &second).status.success());
    let out = slipway(home, &["user", "token", "revoke", &id]);
    assert_eq!(stdout(&out), format!("revoked 2 token(s) of user {id}\n"));
    assert!(!login(theirs.path(), &first).status.success());
    let out = slipway(home, &["user", "delete", &id]);
    assert_eq!(stdout(&out), format!("deleted user {id}\n"));

    // Completions for a shell name every command.
    let out = slipway(home, &["completions", "bash"]);
    assert!(out.status.success());
    for command in ["registry", "user", "release", "integration"] {
        assert!(stdout(&out).contains(command), "{command}");
    }

    common::stop(server);
}
