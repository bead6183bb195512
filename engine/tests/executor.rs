//! The engine running flows that the real packaging stage produced, with
//! the built-in plugins loaded from a bundle directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use slipway::packaging::canvas::{Canvas, SubflowRef};
use slipway::packaging::{Canvases, Lookup, Packager};
use slipway_engine::flow::FlowDocument;
use slipway_engine::loader::{LoadError, component_path, load_plugins};
use slipway_engine::{Executor, Outcome};
use slipway_runtime::{Message, Runtime, RuntimeConfig};

/// Canvases by integration (version 1 each).
#[derive(Default)]
struct Library(BTreeMap<String, Canvas>);

impl Canvases for Library {
    fn lookup(&self, integration: &str, version: u32) -> Lookup {
        match self.0.get(integration) {
            Some(canvas) if version == 1 => Lookup::Found(canvas.clone()),
            Some(_) => Lookup::NoVersion { latest: Some(1) },
            None => Lookup::NoIntegration,
        }
    }
}

fn runtime(dir: &Path) -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.to_path_buf()),
        ..RuntimeConfig::default()
    })
    .unwrap()
}

fn shared_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("code-cache")
}

/// Packages `root` (with `subflows`) and writes a bundle: the built-in
/// components as `<name>@<version>.wasm`.
async fn bundle(root: Value, subflows: &[(&str, Value)]) -> (FlowDocument, tempfile::TempDir) {
    let runtime = runtime(&shared_cache());
    for (_, wasm) in slipway_plugin_artifacts::BUILTIN {
        runtime.install(wasm).await.unwrap();
    }
    let mut library = Library::default();
    for (name, canvas) in subflows {
        library.0.insert(
            name.to_string(),
            serde_json::from_value(canvas.clone()).unwrap(),
        );
    }
    let canvas: Canvas = serde_json::from_value(root).unwrap();
    let flow = Packager::new(runtime.catalog(), &library)
        .package(
            &SubflowRef {
                integration: "orders".into(),
                version: 1,
            },
            &canvas,
        )
        .await
        .unwrap_or_else(|d| panic!("packaging failed: {d:?}"));
    let dir = tempfile::tempdir().unwrap();
    for (_, wasm) in slipway_plugin_artifacts::BUILTIN {
        let plugin = runtime.load(wasm).await.unwrap();
        if let Some(wanted) = flow.plugins.iter().find(|p| p.sha256 == plugin.sha256()) {
            std::fs::write(component_path(dir.path(), wanted), wasm).unwrap();
        }
    }
    (flow, dir)
}

async fn executor(flow: &FlowDocument, dir: &Path) -> Arc<Executor> {
    let plugins = load_plugins(&runtime(&shared_cache()), flow, dir)
        .await
        .unwrap();
    Arc::new(Executor::new(flow, &plugins).unwrap())
}

fn request(method: &str, body: Value) -> Message {
    Message {
        body: body.to_string().into_bytes(),
        headers: vec![("content-type".into(), "application/json".into())],
        attributes: vec![("http.method".into(), method.into())],
    }
}

async fn reply(executor: &Arc<Executor>, message: Message) -> Value {
    let start = executor.routes()[0].node;
    match executor.run(start, message, &|_, _, _| {}).await {
        Outcome::Reply(message) => serde_json::from_slice(&message.body).unwrap(),
        Outcome::Failed(failure) => panic!("failed: {failure:?}"),
    }
}

fn trigger() -> Value {
    json!({"id": "in", "type": "http-trigger@^1", "config": {"method": "POST", "path": "/orders"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transform_chain_answers_with_the_last_message() {
    let (flow, dir) = bundle(
        json!({
            "nodes": [trigger(),
                {"id": "sum", "type": "transform@^1", "config": {"expression": "{total: (.items | add)}"}},
                {"id": "double", "type": "transform@^1", "config": {"expression": "{total: (.total * 2)}"}}],
            "edges": [{"from": "in", "to": "sum"}, {"from": "sum", "to": "double"}]
        }),
        &[],
    )
    .await;
    let executor = executor(&flow, dir.path()).await;
    assert_eq!(executor.routes()[0].path, "/orders");
    let answer = reply(&executor, request("POST", json!({"items": [1, 2, 3]}))).await;
    assert_eq!(answer, json!({"total": 12}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_choice_sends_each_message_down_one_branch() {
    let (flow, dir) = bundle(
        json!({
            "nodes": [trigger(),
                {"id": "route", "type": "choice@^1", "config": {"routes": [{"when": ".total > 100", "port": "large"}], "otherwise": "small"}},
                {"id": "big", "type": "transform@^1", "config": {"expression": "{size: \"large\"}"}},
                {"id": "little", "type": "transform@^1", "config": {"expression": "{size: \"small\"}"}}],
            "edges": [{"from": "in", "to": "route"},
                      {"from": "route", "port": "large", "to": "big"},
                      {"from": "route", "port": "small", "to": "little"}]
        }),
        &[],
    )
    .await;
    let executor = executor(&flow, dir.path()).await;
    let large = reply(&executor, request("POST", json!({"total": 500}))).await;
    let small = reply(&executor, request("POST", json!({"total": 5}))).await;
    assert_eq!(
        (large, small),
        (json!({"size": "large"}), json!({"size": "small"}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subflow_runs_as_part_of_the_flow() {
    let (flow, dir) = bundle(
        json!({
            "nodes": [trigger(),
                {"id": "enrich", "subflow": {"integration": "enrich", "version": 1}},
                {"id": "reply", "type": "transform@^1", "config": {"expression": "{tagged: .tag, total}"}}],
            "edges": [{"from": "in", "to": "enrich"}, {"from": "enrich", "to": "reply"}]
        }),
        &[(
            "enrich",
            json!({"nodes": [{"id": "tag", "type": "transform@^1", "config": {"expression": ". + {tag: \"vip\"}"}}]}),
        )],
    )
    .await;
    assert!(flow.nodes.iter().any(|n| n.id == "enrich/tag"));
    let executor = executor(&flow, dir.path()).await;
    let answer = reply(&executor, request("POST", json!({"total": 7}))).await;
    assert_eq!(answer, json!({"tagged": "vip", "total": 7}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_node_is_named_unless_the_flow_routes_its_error() {
    let nodes = json!([trigger(),
        {"id": "sum", "type": "transform@^1", "config": {"expression": "{total: (.items | add)}"}},
        {"id": "sorry", "type": "transform@^1", "config": {"expression": "{ok: false, failed: .error.node, code: .error.code}"}}]);
    let (flow, dir) = bundle(
        json!({"nodes": nodes, "edges": [{"from": "in", "to": "sum"}]}),
        &[],
    )
    .await;
    let executor = executor(&flow, dir.path()).await;
    let mut broken = request("POST", json!(null));
    broken.body = b"not json".to_vec();
    let start = executor.routes()[0].node;
    match executor.run(start, broken.clone(), &|_, _, _| {}).await {
        Outcome::Failed(failure) => {
            assert_eq!(failure.node, "sum");
            assert_eq!(failure.code, "transform-failed");
            assert_eq!(failure.status, 400, "{failure:?}");
        }
        Outcome::Reply(m) => panic!("replied {:?}", String::from_utf8_lossy(&m.body)),
    }
    // Wrong method: the trigger itself answers 405.
    match executor
        .run(start, request("GET", json!({})), &|_, _, _| {})
        .await
    {
        Outcome::Failed(failure) => {
            assert_eq!((failure.node.as_str(), failure.status), ("in", 405))
        }
        Outcome::Reply(_) => panic!("a GET passed a POST trigger"),
    }

    let (flow, dir) = bundle(
        json!({"nodes": nodes, "edges": [{"from": "in", "to": "sum"},
                                          {"from": "sum", "port": "error", "to": "sorry"}]}),
        &[],
    )
    .await;
    let executor = self::executor(&flow, dir.path()).await;
    assert_eq!(
        reply(&executor, broken).await,
        json!({"ok": false, "failed": "sum", "code": "transform-failed"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_that_is_not_the_pinned_one_is_refused() {
    let (flow, dir) = bundle(json!({"nodes": [trigger()]}), &[]).await;
    let path = component_path(dir.path(), &flow.plugins[0]);
    let other = slipway_plugin_artifacts::BUILTIN
        .iter()
        .find(|(name, _)| *name != "http-trigger")
        .unwrap()
        .1;
    std::fs::write(&path, other).unwrap();
    let err = load_plugins(&runtime(&shared_cache()), &flow, dir.path())
        .await
        .unwrap_err();
    assert!(matches!(err, LoadError::Digest { .. }), "{err}");
    std::fs::remove_file(&path).unwrap();
    let err = load_plugins(&runtime(&shared_cache()), &flow, dir.path())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("plugin http-trigger@1.0.0: cannot read "),
        "{err}"
    );
}
