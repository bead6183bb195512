//! The packaging stage with the real built-in plugins.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};
use slipway_flow::canvas::{Canvas, SubflowRef};
use slipway_flow::package::{Canvases, Lookup, Packager};
use slipway_runtime::{Runtime, RuntimeConfig};

/// Canvases by integration and version.
#[derive(Default)]
struct Library(BTreeMap<(String, u32), Canvas>);

impl Library {
    fn with(mut self, integration: &str, version: u32, canvas: Value) -> Self {
        self.0.insert(
            (integration.into(), version),
            serde_json::from_value(canvas).unwrap(),
        );
        self
    }
}

impl Canvases for Library {
    fn lookup(&self, integration: &str, version: u32) -> Lookup {
        if integration == "unreadable" {
            return Lookup::Unreadable("the disk failed".into());
        }
        if let Some(canvas) = self.0.get(&(integration.to_string(), version)) {
            return Lookup::Found(canvas.clone());
        }
        let latest = self
            .0
            .keys()
            .filter(|(i, _)| i == integration)
            .map(|(_, v)| *v)
            .max();
        match latest {
            None => Lookup::NoIntegration,
            Some(v) => Lookup::NoVersion { latest: Some(v) },
        }
    }
}

async fn runtime() -> Runtime {
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("code-cache")),
        ..RuntimeConfig::default()
    })
    .unwrap();
    for (_, wasm) in slipway_plugin_artifacts::BUILTIN {
        runtime.install(wasm).await.unwrap();
    }
    runtime
}

fn root() -> SubflowRef {
    SubflowRef {
        integration: "orders".into(),
        version: 1,
    }
}

async fn package(
    library: &Library,
    canvas: Value,
) -> Result<slipway_flow::FlowDocument, Vec<(String, String)>> {
    let runtime = runtime().await;
    let canvas: Canvas = serde_json::from_value(canvas).unwrap();
    Packager::new(runtime.catalog(), library)
        .package(&root(), &canvas)
        .await
        .map_err(|problems| problems.into_iter().map(|d| (d.path, d.message)).collect())
}

fn enrich() -> Value {
    json!({
        "nodes": [
            {"id": "add", "type": "transform@^1", "config": {"expression": ". + {enriched: true}"}},
            {"id": "note", "type": "log@^1", "config": {"message": "enriched"}}
        ],
        "edges": [{"from": "add", "to": "note"}]
    })
}

#[tokio::test]
async fn a_flow_with_a_subflow_packages_into_one_graph() {
    let library = Library::default().with("enrich", 3, enrich());
    let flow = package(&library, json!({
        "nodes": [
            {"id": "in", "type": "http-trigger@^1", "config": {"method": "POST", "path": "/orders"}},
            {"id": "route", "type": "choice@^1", "config": {"routes": [{"when": ".total > 100", "port": "large"}], "otherwise": "small"}},
            {"id": "big", "subflow": {"integration": "enrich", "version": 3}},
            {"id": "reply", "type": "transform@^1", "config": {"expression": "{ok: true}"}}
        ],
        "edges": [
            {"from": "in", "to": "route"},
            {"from": "route", "port": "large", "to": "big"},
            {"from": "route", "port": "small", "to": "reply"},
            {"from": "big", "to": "reply"}
        ]
    }))
    .await
    .unwrap();

    let ids: Vec<&str> = flow.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["in", "route", "big/add", "big/note", "reply"]);
    let edges: Vec<(String, String, String)> = flow
        .edges
        .iter()
        .map(|e| (e.from.clone(), e.port.clone(), e.to.clone()))
        .collect();
    let edge = |f: &str, p: &str, t: &str| (f.to_string(), p.to_string(), t.to_string());
    assert_eq!(
        edges,
        [
            edge("big/add", "out", "big/note"),
            edge("in", "out", "route"),
            edge("route", "large", "big/add"),
            edge("route", "small", "reply"),
            edge("big/note", "out", "reply"),
        ]
    );
    assert!(flow.nodes[0].trigger);
    assert_eq!(flow.nodes[1].outputs, ["large", "small"]);
    assert_eq!(
        flow.nodes[0].node,
        json!({"method": "POST", "path": "/orders"})
    );
    let plugins: Vec<&str> = flow.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(plugins, ["choice", "http-trigger", "log", "transform"]);
    assert!(
        flow.plugins
            .iter()
            .all(|p| p.version == "1.0.0" && p.sha256.len() == 64)
    );
    assert_eq!(
        flow.subflows,
        [SubflowRef {
            integration: "enrich".into(),
            version: 3
        }]
    );
}

#[tokio::test]
async fn every_problem_is_reported_at_once_with_its_pointer() {
    let problems = package(&Library::default(), json!({
        "nodes": [
            {"id": "in", "type": "http-trigger@^1", "config": {"method": "POST", "path": "/orders"}},
            {"id": "map", "type": "transform@^1", "config": {"expression": ".a |"}},
            {"id": "map", "type": "log@^1", "config": {"message": "dup"}},
            {"id": "x", "type": "nosuch@^1"},
            {"id": "old", "type": "transform@^2", "config": {"expression": "."}},
            {"id": "bad", "type": "transform"},
            {"id": "route", "type": "choice@^1", "config": {"routes": [{"when": ".a", "port": "yes"}]}}
        ],
        "edges": [
            {"from": "in", "to": "ghost"},
            {"from": "route", "port": "no", "to": "in"},
            {"from": "route", "port": "yes", "to": "in"}
        ]
    }))
    .await
    .unwrap_err();
    let expected = [
        ("/nodes/2/id", "duplicate id `map` (also /nodes/1)"),
        ("/nodes/1/config/expression", "expected term at the end"),
        (
            "/nodes/3/type",
            "no node-type plugin named `nosuch` is loaded",
        ),
        (
            "/nodes/4/type",
            "no version of node-type `transform` matches `^2` (loaded: 1.0.0)",
        ),
        (
            "/nodes/5/type",
            "`transform` is not `name@version-requirement`, e.g. `transform@^1`",
        ),
        ("/edges/0/to", "no node `ghost`"),
        (
            "/edges/1/port",
            "`route` has no output `no` (it has: yes, and `error` for failures)",
        ),
        ("/edges/2/to", "`in` is a trigger: nothing can flow into it"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(p, m)| (p.to_string(), m.to_string()))
        .collect();
    assert_eq!(problems, expected);
}

#[tokio::test]
async fn a_cycle_of_nodes_is_reported() {
    let problems = package(
        &Library::default(),
        json!({
            "nodes": [
                {"id": "in", "type": "http-trigger@^1", "config": {"method": "GET", "path": "/"}},
                {"id": "a", "type": "log@^1", "config": {"message": "a"}},
                {"id": "b", "type": "log@^1", "config": {"message": "b"}}
            ],
            "edges": [{"from": "in", "to": "a"}, {"from": "a", "to": "b"}, {"from": "b", "to": "a"}]
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(
        problems,
        [(
            "/edges/2".to_string(),
            "closes a cycle: a → b → a".to_string()
        )]
    );
}

#[tokio::test]
async fn subflow_problems_name_the_integration_and_the_chain() {
    let library = Library::default()
        .with("a", 1, json!({"nodes": [{"id": "to-b", "subflow": {"integration": "b", "version": 2}}]}))
        .with("b", 2, json!({"nodes": [{"id": "to-a", "subflow": {"integration": "a", "version": 1}}]}))
        .with("broken", 1, json!({"nodes": [{"id": "t", "type": "transform@^1", "config": {"expression": "nosuch"}}]}))
        .with("triggered", 1, json!({"nodes": [{"id": "t", "type": "http-trigger@^1", "config": {"method": "GET", "path": "/"}}]}));
    let trigger =
        json!({"id": "in", "type": "http-trigger@^1", "config": {"method": "GET", "path": "/"}});
    let problems = package(
        &library,
        json!({
            "nodes": [
                trigger,
                {"id": "s1", "subflow": {"integration": "a", "version": 1}},
                {"id": "s2", "subflow": {"integration": "missing", "version": 1}},
                {"id": "s3", "subflow": {"integration": "a", "version": 9}},
                {"id": "s4", "subflow": {"integration": "broken", "version": 1}},
                {"id": "s5", "subflow": {"integration": "triggered", "version": 1}},
                {"id": "s6", "subflow": {"integration": "orders", "version": 1}}
            ]
        }),
    )
    .await
    .unwrap_err();
    let expected = [
        (
            "/nodes/1/subflow",
            "in subflow a@1 at /nodes/0/subflow: in subflow b@2 at /nodes/0/subflow: subflows form a cycle: orders@1 → a@1 → b@2 → a@1",
        ),
        (
            "/nodes/2/subflow/integration",
            "no integration named `missing`",
        ),
        (
            "/nodes/3/subflow/version",
            "integration `a` has no version 9: its latest is 1",
        ),
        (
            "/nodes/4/subflow",
            "in subflow broken@1 at /nodes/0/config/expression: undefined filter `nosuch` at character 1",
        ),
        (
            "/nodes/5/subflow",
            "in subflow triggered@1 at /nodes/0/type: a subflow cannot contain a trigger: its parent starts it",
        ),
        (
            "/nodes/6/subflow",
            "subflows form a cycle: orders@1 → orders@1",
        ),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(p, m)| (p.to_string(), m.to_string()))
        .collect();
    assert_eq!(problems, expected);
}

#[tokio::test]
async fn a_subflow_that_cannot_be_read_is_not_reported_as_missing() {
    let trigger =
        json!({"id": "in", "type": "http-trigger@^1", "config": {"method": "GET", "path": "/"}});
    let problems = package(
        &Library::default(),
        json!({"nodes": [trigger, {"id": "s", "subflow": {"integration": "unreadable", "version": 1}}]}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        problems,
        vec![(
            "/nodes/1/subflow/integration".to_string(),
            "integration `unreadable` could not be read: the disk failed".to_string()
        )]
    );
}

#[tokio::test]
async fn a_flow_needs_a_trigger() {
    let problems = package(
        &Library::default(),
        json!({
            "nodes": [{"id": "a", "type": "log@^1", "config": {"message": "a"}}]
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(
        problems,
        [(
            "/nodes".to_string(),
            "a flow needs a trigger node, e.g. http-trigger".to_string()
        )]
    );
}
