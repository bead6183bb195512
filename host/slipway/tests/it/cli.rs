//! The `slipway plugin` commands, run as a user runs them.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn guest(name: &str) -> &'static str {
    slipway_plugin_artifacts::test_guest(name).expect("a test guest")
}

/// Writes a built-in plugin to a file, as an author's build would.
fn builtin_file(dir: &tempfile::TempDir, name: &str) -> std::path::PathBuf {
    let path = dir.path().join(format!("{name}.wasm"));
    std::fs::write(&path, slipway_plugin_artifacts::builtin(name).unwrap()).unwrap();
    path
}

fn slipway(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_prints_the_manifest_kind_world_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let file = builtin_file(&dir, "transform");
    let out = slipway(&["plugin", "check", file.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("transform@1.0.0  node-type\n"),
        "{stdout}"
    );
    assert!(stdout.contains("  world          slipway:plugin@0.1.0\n"));
    assert!(stdout.contains("  exports        slipway:plugin/node@0.1.0\n"));

    let out = slipway(&["plugin", "check", "--json", file.to_str().unwrap()], "");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["kind"], "node-type");
    assert_eq!(summary["manifest"]["name"], "transform");
    assert_eq!(summary["world"], "slipway:plugin@0.1.0");
    assert_eq!(summary["exports"], json!(["slipway:plugin/node@0.1.0"]));
    assert_eq!(summary["describe"]["inputs"][0]["name"], "in");
}

#[test]
fn check_refuses_what_is_not_a_plugin_in_one_line() {
    let out = slipway(&["plugin", "check", guest("fs-reader")], "");
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stderr),
        "error: cannot load plugin `fs-reader@1.0.0`: imports `wasi:filesystem/types@0.2.6`: plugins get no filesystem access\n"
    );
    let out = slipway(&["plugin", "check", env!("CARGO_MANIFEST_DIR")], "");
    assert!(!out.status.success());
    assert_eq!(text(&out.stderr).lines().count(), 1);
}

#[test]
fn run_invokes_a_node_in_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let file = builtin_file(&dir, "transform");
    let input =
        r#"{"config": {"expression": "{total: (.items | add)}"}, "body": {"items": [1, 2, 3]}}"#;
    let out = slipway(
        &["plugin", "run", file.to_str().unwrap(), "--call", "invoke"],
        input,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["port"], "out");
    assert_eq!(result["body"], json!({"total": 6}));

    let out = slipway(
        &[
            "plugin",
            "run",
            file.to_str().unwrap(),
            "--call",
            "validate",
        ],
        r#"{"expression": ".a |"}"#,
    );
    assert_eq!(out.status.code(), Some(1), "invalid config exits 1");
    let problems: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        problems,
        json!([{"path": "/expression", "message": "expected term at the end"}])
    );
}

#[test]
fn run_reports_a_stopped_plugin() {
    let out = slipway(
        &["plugin", "run", guest("hostile"), "--call", "invoke"],
        r#"{"config": {"mode": "spin"}}"#,
    );
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stderr),
        "error: plugin `hostile@1.0.0` ran past its 200 ms deadline and was stopped (in `invoke`)\n"
    );
}

#[test]
fn run_grants_settings_and_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("settings.json");
    std::fs::write(
        &settings,
        r#"{"registry": "r.example.com", "prefix": "team", "username": "ci"}"#,
    )
    .unwrap();
    let resolve = slipway(
        &[
            "plugin",
            "run",
            guest("registry-fixed"),
            "--call",
            "resolve",
            "--settings",
            settings.to_str().unwrap(),
        ],
        r#"{"repository": "orders", "tag": "7"}"#,
    );
    assert!(resolve.status.success(), "{}", text(&resolve.stderr));
    let result: Value = serde_json::from_slice(&resolve.stdout).unwrap();
    assert_eq!(result["reference"], "r.example.com/team/orders:7");
}

#[test]
fn pack_adds_a_manifest_to_a_bare_component() {
    let dir = tempfile::tempdir().unwrap();
    // The smallest component: a header and nothing else.
    let bare = dir.path().join("bare.wasm");
    std::fs::write(&bare, b"\0asm\x0d\0\x01\0").unwrap();
    let out = slipway(&["plugin", "check", bare.to_str().unwrap()], "");
    assert!(
        text(&out.stderr).contains("no `slipway:manifest` section"),
        "{}",
        text(&out.stderr)
    );

    let manifest = dir.path().join("plugin.toml");
    std::fs::write(
        &manifest,
        "kind = \"node-type\"\nname = \"bare\"\nversion = \"0.1.0\"\n",
    )
    .unwrap();
    let packed = dir.path().join("packed.wasm");
    let out = slipway(
        &[
            "plugin",
            "pack",
            bare.to_str().unwrap(),
            "--manifest",
            manifest.to_str().unwrap(),
            "-o",
            packed.to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The manifest is read now; the component still exports nothing.
    let out = slipway(&["plugin", "check", packed.to_str().unwrap()], "");
    assert_eq!(
        text(&out.stderr),
        "error: cannot load plugin `bare@0.1.0`: declares kind `node-type` but does not export `slipway:plugin/node@0.1.0` (it exports: nothing)\n"
    );
}

#[test]
fn builtins_all_load() {
    let out = slipway(&["plugin", "builtins", "--json"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["manifest"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "http-trigger",
            "http-call",
            "transform",
            "choice",
            "log",
            "rust-code",
            "distribution",
            "harbor",
            "gcr",
            "acr",
            "ecr",
            "ocir",
            "docker",
            "kubernetes"
        ]
    );
}

#[test]
fn a_short_admin_token_is_refused_at_start_from_a_flag_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let listen = ["--listen", "127.0.0.1:0"];
    for (flag, env) in [(Some("short"), None), (None, Some("  also-short  "))] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_slipway"));
        command.args(["serve", "--data-dir", data]).args(listen);
        if let Some(token) = flag {
            command.args(["--admin-token", token]);
        }
        if let Some(token) = env {
            command.env("SLIPWAY_ADMIN_TOKEN", token);
        }
        let out = command.stdin(Stdio::null()).output().unwrap();
        assert!(!out.status.success(), "it started with {flag:?} {env:?}");
        let said = text(&out.stderr);
        assert!(
            said.contains("admin-token must be at least 16 characters"),
            "{said}"
        );
        assert!(!dir.path().join("data/db").exists(), "nothing was created");
    }
}
