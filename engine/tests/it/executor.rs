//! The engine running flows that the real packaging stage produced, with
//! the built-in plugins loaded from a bundle directory.

use crate::common;

use std::path::Path;
use std::sync::Arc;

use common::{runtime, shared_cache, transform_chain, trigger, two_branches, with_subflow};
use serde_json::{Value, json};
use slipway_engine::Bundle;
use slipway_engine::loader::{LoadError, component_path, load_plugins};
use slipway_engine::{Executor, Outcome};
use slipway_flow::FlowDocument;
use slipway_runtime::Message;

async fn bundle(root: Value, subflows: &[(&str, Value)]) -> (FlowDocument, tempfile::TempDir) {
    common::bundle(root, subflows, &[]).await
}

async fn executor(flow: &FlowDocument, dir: &Path) -> Arc<Executor> {
    let plugins = load_plugins(&runtime(&shared_cache()), flow, &Bundle::at(dir).plugins)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transform_chain_answers_with_the_last_message() {
    let (flow, dir) = bundle(transform_chain(), &[]).await;
    let executor = executor(&flow, dir.path()).await;
    assert_eq!(executor.routes()[0].path, "/orders");
    let answer = reply(&executor, request("POST", json!({"items": [1, 2, 3]}))).await;
    assert_eq!(answer, json!({"total": 12}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_choice_sends_each_message_down_one_branch() {
    let (flow, dir) = bundle(two_branches(), &[]).await;
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
    let (root, enrich) = with_subflow();
    let (flow, dir) = bundle(root, &[("enrich", enrich)]).await;
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
    let plugins = Bundle::at(dir.path()).plugins;
    let path = component_path(&plugins, &flow.plugins[0]);
    let other = slipway_plugin_artifacts::BUILTIN
        .iter()
        .find(|(name, _)| *name != "http-trigger")
        .unwrap()
        .1;
    std::fs::write(&path, other).unwrap();
    let err = load_plugins(&runtime(&shared_cache()), &flow, &plugins)
        .await
        .unwrap_err();
    assert!(matches!(err, LoadError::Digest { .. }), "{err}");
    std::fs::remove_file(&path).unwrap();
    let err = load_plugins(&runtime(&shared_cache()), &flow, &plugins)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("plugin http-trigger@1.0.0: cannot read "),
        "{err}"
    );
}
