//! The integrations API through the router, as an integrator's client uses it.

use crate::common;

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{Value, json};
use slipway::server::AppState;
use slipway_store::{Role, Store};

async fn start(store: Store) -> Arc<AppState> {
    common::loaded(store).await
}

struct Api {
    state: Arc<AppState>,
    admin: String,
    dir: tempfile::TempDir,
}

impl Api {
    async fn new() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let admin = store.bootstrap("acme", None).unwrap().unwrap().token;
        let state = start(store).await;
        Api { state, admin, dir }
    }

    /// The same data directory in a new server, as after a restart.
    async fn restart(self) -> Api {
        let Api { state, admin, dir } = self;
        drop(Arc::try_unwrap(state).ok().expect("no other handle"));
        let store = Store::open(&dir.path().join("db")).unwrap();
        Api {
            state: start(store).await,
            admin,
            dir,
        }
    }

    fn user(&self, role: Role) -> String {
        self.state
            .store
            .create_user(self.organisation(), "someone", role)
            .unwrap()
            .1
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        content_type: &str,
        body: impl Into<Vec<u8>>,
    ) -> (StatusCode, Value) {
        common::call(&self.state, method, path, Some(token), content_type, body).await
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call("GET", path, token, "application/json", "").await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call("POST", path, token, "application/json", body.to_string())
            .await
    }

    /// The organisation's id.
    fn organisation(&self) -> u64 {
        self.state
            .store
            .authenticate(&self.admin)
            .unwrap()
            .unwrap()
            .organisation
            .id
    }

    /// Uploads a plugin's component as `token`.
    async fn upload(&self, token: &str, wasm: Vec<u8>) -> (StatusCode, Value) {
        self.call("POST", "/api/v1/plugins", token, "application/wasm", wasm)
            .await
    }

    /// Validates `integration` at `version`, answered 200 within 5 s.
    async fn validate_soon(
        &self,
        integration: &str,
        version: impl std::fmt::Display,
        token: &str,
    ) -> Value {
        let started = std::time::Instant::now();
        let path = format!("/api/v1/integrations/{integration}/versions/{version}/validate");
        let (status, answer) = self.post(&path, token, json!(null)).await;
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer
    }
}

fn flow() -> Value {
    json!({
        "nodes": [
            {"id": "in", "type": "http-trigger@^1", "config": {"method": "POST", "path": "/orders"}},
            {"id": "map", "type": "transform@^1", "config": {"expression": "{total: (.items | add)}"}}
        ],
        "edges": [{"from": "in", "to": "map"}]
    })
}

#[tokio::test]
async fn integrations_and_immutable_canvas_versions() {
    let api = Api::new().await;
    let admin = api.admin.clone();
    let (status, created) = api
        .post("/api/v1/integrations", &admin, json!({"name": "orders"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["name"], "orders");
    assert_eq!(created["latest_version"], 0);

    let (status, body) = api
        .post("/api/v1/integrations", &admin, json!({"name": "orders"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body,
        json!({"error": {"code": "conflict", "message": "an integration named `orders` exists"}})
    );

    let (status, body) = api
        .post("/api/v1/integrations/orders/versions", &admin, flow())
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::CREATED,
            json!({"integration": "orders", "version": 1})
        )
    );
    let yaml =
        "nodes:\n  - id: in\n    type: http-trigger@^1\n    config: {method: GET, path: /}\n";
    let (status, body) = api
        .call(
            "POST",
            "/api/v1/integrations/orders/versions",
            &admin,
            "application/yaml",
            yaml,
        )
        .await;
    assert_eq!(
        (status, body["version"].clone()),
        (StatusCode::CREATED, json!(2))
    );

    let (status, canvas) = api
        .get("/api/v1/integrations/orders/versions/1", &admin)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        canvas["nodes"][1]["config"]["expression"],
        "{total: (.items | add)}"
    );
    assert_eq!(
        canvas["edges"][0],
        json!({"from": "in", "port": "out", "to": "map"})
    );
    let (_, versions) = api
        .get("/api/v1/integrations/orders/versions", &admin)
        .await;
    assert_eq!(versions, json!([{"version": 1}, {"version": 2}]));
    let (status, body) = api
        .get("/api/v1/integrations/orders/versions/3", &admin)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body["error"]["message"],
        "integration `orders` has no version 3"
    );
    let (_, list) = api.get("/api/v1/integrations", &admin).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["latest_version"], 2);
}

#[tokio::test]
async fn bad_bodies_get_precise_errors_and_change_nothing() {
    let api = Api::new().await;
    let admin = api.admin.clone();
    let (status, body) = api
        .post("/api/v1/integrations", &admin, json!({"name": "Bad Name"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["path"], "/name");
    let (status, body) = api.post("/api/v1/integrations", &admin, json!({})).await;
    assert_eq!(
        (status, body["error"]["path"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("/name"))
    );
    let (status, body) = api
        .call(
            "POST",
            "/api/v1/integrations",
            &admin,
            "application/json",
            "{",
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("bad-json"))
    );

    api.post("/api/v1/integrations", &admin, json!({"name": "orders"}))
        .await;
    let bad_canvas = json!({"nodes": [{"id": "a", "type": "log@^1", "colour": "red"}]});
    let (status, body) = api
        .post("/api/v1/integrations/orders/versions", &admin, bad_canvas)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["path"], "/nodes/0/colour");
    let (status, _) = api
        .call(
            "POST",
            "/api/v1/integrations/orders/versions",
            &admin,
            "text/plain",
            "x",
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge = format!("{{\"nodes\": [], \"pad\": \"{}\"}}", "x".repeat(5 << 20));
    let (status, body) = api
        .call(
            "POST",
            "/api/v1/integrations/orders/versions",
            &admin,
            "application/json",
            huge,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, json!("too-large"))
    );

    let (_, integration) = api.get("/api/v1/integrations/orders", &admin).await;
    assert_eq!(integration["latest_version"], 0, "no version was written");
}

#[tokio::test]
async fn validate_runs_the_packaging_stage() {
    let api = Api::new().await;
    let admin = api.admin.clone();
    api.post("/api/v1/integrations", &admin, json!({"name": "orders"}))
        .await;
    api.post("/api/v1/integrations/orders/versions", &admin, flow())
        .await;
    let mut broken = flow();
    broken["nodes"][1]["config"]["expression"] = json!(".a |");
    api.post("/api/v1/integrations/orders/versions", &admin, broken)
        .await;

    let (status, ok) = api
        .post(
            "/api/v1/integrations/orders/versions/1/validate",
            &admin,
            json!(null),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ok["valid"], true);
    assert_eq!(ok["flow"]["nodes"][1]["id"], "map");
    let (_, bad) = api
        .post(
            "/api/v1/integrations/orders/versions/2/validate",
            &admin,
            json!(null),
        )
        .await;
    assert_eq!(bad["valid"], false);
    assert_eq!(
        bad["diagnostics"],
        json!([{"path": "/nodes/1/config/expression", "message": "expected term at the end"}])
    );
}

#[tokio::test]
async fn roles_and_organisations_bound_what_a_token_can_do() {
    let api = Api::new().await;
    let admin = api.admin.clone();
    api.post("/api/v1/integrations", &admin, json!({"name": "orders"}))
        .await;

    let viewer = api.user(Role::Viewer);
    let (status, body) = api
        .post("/api/v1/integrations", &viewer, json!({"name": "mine"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body["error"]["message"],
        "the `viewer` role cannot do this; it needs org-admin or api-provider"
    );
    assert_eq!(
        api.get("/api/v1/integrations/orders", &viewer).await.0,
        StatusCode::OK,
        "viewers read"
    );
    let (status, _) = api
        .call(
            "DELETE",
            "/api/v1/integrations/orders",
            &viewer,
            "application/json",
            "",
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let provider = api.user(Role::ApiProvider);
    assert_eq!(
        api.post("/api/v1/integrations", &provider, json!({"name": "mine"}))
            .await
            .0,
        StatusCode::CREATED
    );

    // Another organisation's integration does not exist for this one.
    let other = api.state.store.create_organisation("globex").unwrap().token;
    let (status, body) = api.get("/api/v1/integrations/orders", &other).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["message"], "no integration named `orders`");
    let (status, _) = api
        .call(
            "DELETE",
            "/api/v1/integrations/orders",
            &other,
            "application/json",
            "",
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(api.get("/api/v1/integrations", &other).await.1, json!([]));
    assert_eq!(
        api.get("/api/v1/integrations/orders", &admin).await.0,
        StatusCode::OK,
        "still there"
    );
}

fn greeter() -> Vec<u8> {
    std::fs::read(slipway_plugin_artifacts::test_guest("greeter-v1").unwrap()).unwrap()
}

fn greeter_flow() -> Value {
    json!({
        "nodes": [
            {"id": "in", "type": "http-trigger@^1", "config": {"method": "GET", "path": "/"}},
            {"id": "hi", "type": "greeter@^1"}
        ],
        "edges": [{"from": "in", "to": "hi"}]
    })
}

#[tokio::test]
async fn an_uploaded_plugin_works_at_once_and_after_a_restart() {
    let api = Api::new().await;
    let admin = api.admin.clone();
    let (status, uploaded) = api
        .call(
            "POST",
            "/api/v1/plugins",
            &admin,
            "application/wasm",
            greeter(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{uploaded}");
    assert_eq!(
        (uploaded["name"].clone(), uploaded["version"].clone()),
        (json!("greeter"), json!("1.0.0"))
    );
    assert_eq!(uploaded["builtin"], false);

    let (_, list) = api.get("/api/v1/plugins", &admin).await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "choice",
            "http-call",
            "http-trigger",
            "log",
            "rust-code",
            "transform",
            "acr",
            "distribution",
            "ecr",
            "gcr",
            "harbor",
            "ocir",
            "docker",
            "kubernetes",
            "greeter"
        ]
    );

    api.post("/api/v1/integrations", &admin, json!({"name": "hello"}))
        .await;
    api.post(
        "/api/v1/integrations/hello/versions",
        &admin,
        greeter_flow(),
    )
    .await;
    let (_, checked) = api
        .post(
            "/api/v1/integrations/hello/versions/1/validate",
            &admin,
            json!(null),
        )
        .await;
    assert_eq!(checked["valid"], true, "{checked}");
    assert_eq!(checked["flow"]["plugins"][0]["name"], "greeter");

    let api = api.restart().await;
    let (status, shown) = api.get("/api/v1/plugins/node-type/greeter", &admin).await;
    assert_eq!(status, StatusCode::OK, "the upload survived the restart");
    assert_eq!(shown["versions"][0]["sha256"], uploaded["sha256"]);
    let (_, checked) = api
        .post(
            "/api/v1/integrations/hello/versions/1/validate",
            &admin,
            json!(null),
        )
        .await;
    assert_eq!(checked["valid"], true);
}

#[tokio::test]
async fn uploads_are_checked_scoped_and_removable() {
    let api = Api::new().await;
    let admin = api.admin.clone();
    let (status, body) = api
        .call(
            "POST",
            "/api/v1/plugins",
            &admin,
            "application/wasm",
            b"not wasm".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["error"],
        json!({"code": "invalid-plugin", "message": "cannot load plugin: not a WebAssembly binary"})
    );
    let viewer = api.user(Role::Viewer);
    let (status, _) = api
        .call(
            "POST",
            "/api/v1/plugins",
            &viewer,
            "application/wasm",
            greeter(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    api.call(
        "POST",
        "/api/v1/plugins",
        &admin,
        "application/wasm",
        greeter(),
    )
    .await;

    // Another organisation neither sees nor resolves it.
    let other = api.state.store.create_organisation("globex").unwrap().token;
    assert_eq!(
        api.get("/api/v1/plugins/node-type/greeter", &other).await.0,
        StatusCode::NOT_FOUND
    );
    api.post("/api/v1/integrations", &other, json!({"name": "hello"}))
        .await;
    api.post(
        "/api/v1/integrations/hello/versions",
        &other,
        greeter_flow(),
    )
    .await;
    let (_, checked) = api
        .post(
            "/api/v1/integrations/hello/versions/1/validate",
            &other,
            json!(null),
        )
        .await;
    assert_eq!(
        checked["diagnostics"],
        json!([{"path": "/nodes/1/type", "message": "no node-type plugin named `greeter` is loaded"}])
    );

    let (status, body) = api
        .call(
            "DELETE",
            "/api/v1/plugins/node-type/transform/1.0.0",
            &admin,
            "application/json",
            "",
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("builtin"))
    );

    let org = api.organisation();
    let v1 = semver::Version::new(1, 0, 0);
    api.state.plugins.uploaded(org).pin(
        slipway_runtime::Kind::NodeType,
        "greeter",
        &v1,
        "release 9",
    );
    let (status, body) = api
        .call(
            "DELETE",
            "/api/v1/plugins/node-type/greeter/1.0.0",
            &admin,
            "application/json",
            "",
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body["error"]["message"],
        "node-type `greeter@1.0.0` is still used by release 9"
    );
    let (_, shown) = api.get("/api/v1/plugins/node-type/greeter", &admin).await;
    assert_eq!(shown["versions"][0]["used_by"], json!(["release 9"]));

    api.state.plugins.uploaded(org).unpin(
        slipway_runtime::Kind::NodeType,
        "greeter",
        &v1,
        "release 9",
    );
    let (status, _) = api
        .call(
            "DELETE",
            "/api/v1/plugins/node-type/greeter/1.0.0",
            &admin,
            "application/json",
            "",
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.get("/api/v1/plugins/node-type/greeter", &admin).await.0,
        StatusCode::NOT_FOUND
    );
    let api = api.restart().await;
    assert_eq!(
        api.get("/api/v1/plugins/node-type/greeter", &admin).await.0,
        StatusCode::NOT_FOUND,
        "gone after a restart too"
    );
}

#[tokio::test]
async fn admins_manage_users_and_their_tokens() {
    let api = Api::new().await;
    let admin = api.admin.clone();
    let (status, made) = api
        .post(
            "/api/v1/users",
            &admin,
            json!({"name": "ci", "role": "api-provider"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (id, token) = (
        made["user"]["id"].as_u64().unwrap(),
        made["token"].as_str().unwrap().to_string(),
    );
    let (_, me) = api.get("/api/v1/me", &token).await;
    assert_eq!(me["user"]["role"], "api-provider");

    let (status, body) = api
        .post(
            "/api/v1/users",
            &admin,
            json!({"name": "x", "role": "root"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["path"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("/role"))
    );

    let (_, second) = api
        .post(&format!("/api/v1/users/{id}/tokens"), &admin, json!(null))
        .await;
    let second = second["token"].as_str().unwrap().to_string();
    assert_eq!(api.get("/api/v1/me", &second).await.0, StatusCode::OK);
    let (_, revoked) = api
        .call(
            "DELETE",
            &format!("/api/v1/users/{id}/tokens"),
            &admin,
            "application/json",
            "",
        )
        .await;
    assert_eq!(revoked["revoked"], 2);
    assert_eq!(
        api.get("/api/v1/me", &token).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.get("/api/v1/me", &second).await.0,
        StatusCode::UNAUTHORIZED
    );

    let (_, me) = api.get("/api/v1/me", &admin).await;
    let own = me["user"]["id"].as_u64().unwrap();
    let (status, _) = api
        .call(
            "DELETE",
            &format!("/api/v1/users/{own}"),
            &admin,
            "application/json",
            "",
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "an admin cannot delete itself"
    );
    let (status, _) = api
        .call(
            "DELETE",
            &format!("/api/v1/users/{id}"),
            &admin,
            "application/json",
            "",
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, users) = api.get("/api/v1/users", &admin).await;
    assert_eq!(users.as_array().unwrap().len(), 1);
}

/// `n` node ids of three characters: `aaa`, `aab`, ...
fn short_ids(n: usize) -> Vec<String> {
    const DIGITS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
    (0..n)
        .map(|i| {
            [i / 4096, i / 64 % 64, i % 64]
                .iter()
                .map(|&d| DIGITS[d] as char)
                .collect()
        })
        .collect()
}

/// A canvas that is one chain of `n` nodes after an http trigger, each of
/// `node_type` (none when empty).
fn chain(n: usize, node_type: &str) -> Value {
    let ids = short_ids(n);
    let nodes: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| match (i, node_type) {
            (0, _) => json!({"id": id, "type": "http-trigger@^1", "config": {"method": "POST", "path": "/c"}}),
            (_, "") => json!({"id": id}),
            (_, t) => json!({"id": id, "type": t, "config": {"message": "x"}}),
        })
        .collect();
    let edges: Vec<Value> = ids
        .windows(2)
        .map(|w| json!({"from": w[0], "to": w[1]}))
        .collect();
    json!({"nodes": nodes, "edges": edges})
}

/// Integrations `{prefix}0` .. `{prefix}{levels - 1}`, each using the one
/// before it twice, so the last expands to 2^levels nodes.
async fn doubling(api: &Api, prefix: &str, levels: usize) {
    let admin = api.admin.clone();
    for level in 0..levels {
        let name = format!("{prefix}{level}");
        api.post("/api/v1/integrations", &admin, json!({"name": name}))
            .await;
        let canvas = if level == 0 {
            json!({"nodes": [{"id": "a", "type": "log@^1", "config": {"message": "x"}}]})
        } else {
            let sub = json!({"integration": format!("{prefix}{}", level - 1), "version": 1});
            json!({"nodes": [{"id": "a", "subflow": sub}, {"id": "b", "subflow": sub}],
                   "edges": [{"from": "a", "to": "b"}]})
        };
        let (status, body) = api
            .post(
                &format!("/api/v1/integrations/{name}/versions"),
                &admin,
                canvas,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_canvases_are_refused_at_once_and_never_take_the_server_down() {
    let api = Api::new().await;
    let admin = api.admin.clone();
    let viewer = api.user(Role::Viewer);
    let org = api.organisation();
    api.post("/api/v1/integrations", &admin, json!({"name": "big"}))
        .await;

    // A 100,000-node chain fits in a request body, and is refused when stored.
    let long = chain(100_000, "");
    let bytes = long.to_string();
    assert!(bytes.len() < 4 << 20, "{} bytes", bytes.len());
    let (status, refused) = api
        .call(
            "POST",
            "/api/v1/integrations/big/versions",
            &admin,
            "application/json",
            bytes,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"]["path"], "/nodes");
    assert_eq!(
        refused["error"]["message"],
        "a canvas has at most 10000 nodes, this one has 100000"
    );

    // Stored all the same (as data from before the limit would be), the
    // chain and 40,000 plain nodes fail validation at once, for a viewer.
    let plain = json!({"nodes": short_ids(40_000).iter()
        .map(|id| json!({"id": id, "type": "log@^1", "config": {"message": "x"}})).collect::<Vec<_>>()});
    // Two nodes joined by 30,000 edges: past the edge limit.
    let dense = json!({
        "nodes": [{"id": "in", "type": "http-trigger@^1", "config": {"method": "GET", "path": "/"}},
                  {"id": "a", "type": "log@^1", "config": {"message": "x"}}],
        "edges": vec![json!({"from": "in", "to": "a"}); 30_000]
    });
    let (status, refused) = api
        .call(
            "POST",
            "/api/v1/integrations/big/versions",
            &admin,
            "application/json",
            dense.to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"]["path"], "/edges");
    for (canvas, path) in [(long, "/nodes"), (plain, "/nodes"), (dense, "/edges")] {
        let canvas = serde_json::from_value(canvas).unwrap();
        let version = api.state.store.add_canvas(org, "big", &canvas).unwrap();
        let answer = api.validate_soon("big", version, &viewer).await;
        assert_eq!(answer["valid"], false);
        assert_eq!(answer["diagnostics"][0]["path"], path);
        assert_eq!(answer["diagnostics"].as_array().unwrap().len(), 1);
    }

    // Thirty integrations each using the one before twice (2^30 nodes):
    // refused for their depth; fifteen (16,384 nodes): for their size.
    doubling(&api, "deep", 30).await;
    doubling(&api, "wide", 15).await;
    for (top, expected) in [
        ("deep29", "subflows nest deeper than 16 levels: big@"),
        (
            "wide14",
            "subflow wide14@1 expands to more than 10000 nodes",
        ),
    ] {
        let canvas = json!({"nodes": [
            {"id": "in", "type": "http-trigger@^1", "config": {"method": "POST", "path": "/c"}},
            {"id": "all", "subflow": {"integration": top, "version": 1}}],
            "edges": [{"from": "in", "to": "all"}]});
        let (status, stored) = api
            .post("/api/v1/integrations/big/versions", &admin, canvas)
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let version = stored["version"].as_u64().unwrap();
        let answer = api.validate_soon("big", version, &viewer).await;
        assert_eq!(answer["valid"], false);
        assert_eq!(answer["diagnostics"][0]["path"], "/nodes/1/subflow");
        let message = answer["diagnostics"][0]["message"].as_str().unwrap();
        assert!(message.starts_with(expected), "{message}");
    }

    // A long chain within the limits packages: every walk is iterative.
    let (status, stored) = api
        .post(
            "/api/v1/integrations/big/versions",
            &admin,
            chain(3_000, "log@^1"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{stored}");
    let version = stored["version"].as_u64().unwrap();
    let answer = api.validate_soon("big", version, &viewer).await;
    assert_eq!(answer["valid"], true, "{}", answer["diagnostics"]);
    assert_eq!(answer["flow"]["nodes"].as_array().unwrap().len(), 3_000);
}

/// A listener on loopback `port` that counts the connections reaching it
/// and answers each with an empty 200.
async fn counting_listener(port: u16) -> Arc<std::sync::atomic::AtomicUsize> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the prober's port is free");
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    hits
}

fn guest(name: &str) -> Vec<u8> {
    std::fs::read(slipway_plugin_artifacts::test_guest(name).unwrap()).unwrap()
}

/// A server whose plugins reach what `egress` allows.
async fn reaching(egress: slipway_runtime::Egress) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let admin = store.bootstrap("acme", None).unwrap().unwrap().token;
    let config = slipway::config::Config {
        data_dir: dir.path().join("data"),
        ..slipway::config::Config::default()
    };
    let state = common::state_reaching(store, &config, egress);
    state.load_plugins().await.unwrap();
    Api { state, admin, dir }
}

/// The prober's canvas: one node fetching from `validate`, one from
/// `translate`, by address and by a name for loopback.
fn probing() -> Value {
    json!({
        "nodes": [
            {"id": "in", "type": "http-trigger@^1", "config": {"method": "POST", "path": "/p"}},
            {"id": "v", "type": "prober@^1", "config": {"url": "http://127.0.0.1:17493/v", "stage": "validate"}},
            {"id": "t", "type": "prober@^1", "config": {"url": "http://localhost:17493/t", "stage": "translate"}}
        ],
        "edges": [{"from": "in", "to": "v"}, {"from": "v", "to": "t"}]
    })
}

/// What the prober's `validate` and `translate` said, in node order.
fn probed(answer: &Value) -> Vec<String> {
    let diagnostics = answer["diagnostics"].as_array().unwrap();
    let paths: Vec<&str> = diagnostics
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/nodes/1/config/url", "/nodes/2/config/url"]);
    diagnostics
        .iter()
        .map(|d| d["message"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_plugins_reach_only_granted_hosts_and_never_internal_addresses() {
    use std::sync::atomic::Ordering;
    let hits = counting_listener(17493).await;
    let api = reaching(slipway_runtime::Egress::default()).await;
    let admin = api.admin.clone();
    let provider = api.user(Role::ApiProvider);
    let viewer = api.user(Role::Viewer);

    // Its manifest names `*`, `127.0.0.1:17493` and `localhost:17493`; no
    // org-admin granted it anything, so `describe` at upload is refused.
    let (status, uploaded) = api.upload(&provider, guest("prober")).await;
    assert_eq!(status, StatusCode::CREATED, "{uploaded}");
    assert_eq!(uploaded["granted-hosts"], json!([]));
    let description = uploaded["describe"]["description"].as_str().unwrap();
    assert!(description.starts_with("probe denied: "), "{description}");

    api.post("/api/v1/integrations", &provider, json!({"name": "probe"}))
        .await;
    api.post("/api/v1/integrations/probe/versions", &provider, probing())
        .await;
    let answer = api.validate_soon("probe", 1, &viewer).await;
    assert_eq!(
        probed(&answer),
        [
            "denied: `127.0.0.1:17493` is not among the hosts this plugin may call",
            "denied: `localhost:17493` is not among the hosts this plugin may call",
        ]
    );

    // Granting is an org-admin's; granted, loopback is still refused, by
    // address and by a name that resolves to it, since the operator did not
    // allow it.
    let grant = json!({"allowed-hosts": ["127.0.0.1:17493", "localhost:17493"]});
    let path = "/api/v1/plugins/node-type/prober/allowed-hosts";
    let put = |token: String, body: Value| {
        let api = &api;
        async move {
            api.call("PUT", path, &token, "application/json", body.to_string())
                .await
        }
    };
    assert_eq!(
        put(provider.clone(), grant.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, bad) = put(
        admin.clone(),
        json!({"allowed-hosts": ["ok.example", "a b"]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad["error"]["path"], "/allowed-hosts/1");
    // Not even an org-admin grants every host.
    let (status, bad) = put(admin.clone(), json!({"allowed-hosts": ["ok.example", "*"]})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad["error"]["path"], "/allowed-hosts/1");
    assert_eq!(
        put(admin.clone(), grant.clone()).await,
        (StatusCode::OK, grant.clone())
    );
    let messages = probed(&api.validate_soon("probe", 1, &viewer).await);
    assert_eq!(
        messages[0],
        "denied: `127.0.0.1:17493` is 127.0.0.1, an internal address plugins may not reach unless the operator allows it (`egress-allow`)"
    );
    assert!(
        messages[1].starts_with("denied: `localhost:17493` is "),
        "{}",
        messages[1]
    );
    assert!(
        messages[1].contains("an internal address"),
        "{}",
        messages[1]
    );
    // Kept across a restart, and shown.
    let api = api.restart().await;
    let (_, shown) = api.get("/api/v1/plugins/node-type/prober", &viewer).await;
    assert_eq!(
        shown["versions"][0]["granted-hosts"],
        grant["allowed-hosts"]
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "nothing reached the listener"
    );

    // Where the operator allows loopback, the grant is what it reaches.
    let open = reaching(slipway_runtime::Egress::loopback()).await;
    let admin = open.admin.clone();
    open.upload(&admin, guest("prober")).await;
    open.call(
        "PUT",
        path,
        &admin,
        "application/json",
        json!({"allowed-hosts": ["127.0.0.1:17493"]}).to_string(),
    )
    .await;
    open.post("/api/v1/integrations", &admin, json!({"name": "probe"}))
        .await;
    open.post("/api/v1/integrations/probe/versions", &admin, probing())
        .await;
    let messages = probed(&open.validate_soon("probe", 1, &admin).await);
    assert_eq!(messages[0], "reached: 200");
    assert_eq!(
        messages[1],
        "denied: `localhost:17493` is not among the hosts this plugin may call"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // The grant goes with the plugin's last version.
    let (status, _) = open
        .call(
            "DELETE",
            "/api/v1/plugins/node-type/prober/1.0.0",
            &admin,
            "",
            "",
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, again) = open.upload(&admin, guest("prober")).await;
    assert_eq!(again["granted-hosts"], json!([]));
}

#[tokio::test]
async fn registry_adapters_come_from_org_admins_and_never_take_a_builtin_name() {
    let api = Api::new().await;
    let admin = api.admin.clone();
    let provider = api.user(Role::ApiProvider);
    // `distribution@1.99.0` would win over the built-in at `^1` and be
    // handed the registry's password.
    let impostor = guest("impostor");
    let (status, refused) = api.upload(&provider, impostor.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    let (status, refused) = api.upload(&admin, impostor).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(refused["error"]["code"], "builtin-name");
    let (_, listed) = api.get("/api/v1/plugins", &admin).await;
    let distributions: Vec<&Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "distribution")
        .collect();
    assert_eq!(distributions.len(), 1);
    assert_eq!(distributions[0]["builtin"], true);

    // One stored before these checks existed is not loaded again.
    let org = api.organisation();
    let stored = slipway_store::StoredPlugin {
        organisation: org,
        kind: "registry-adapter".into(),
        name: "distribution".into(),
        version: "1.99.0".into(),
        sha256: "0".repeat(64),
    };
    api.state
        .store
        .save_plugin(&stored, &guest("impostor"))
        .unwrap();
    let api = api.restart().await;
    let (_, listed) = api.get("/api/v1/plugins", &admin).await;
    let versions: Vec<&Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "distribution")
        .map(|p| &p["version"])
        .collect();
    assert_eq!(versions, [&json!("1.0.0")]);
}

#[tokio::test]
async fn a_registry_moved_elsewhere_without_its_secrets_loses_them() {
    let api = Api::new().await;
    let admin = api.admin.clone();
    let put = |body: Value| {
        let api = &api;
        let admin = admin.clone();
        async move {
            api.call(
                "PUT",
                "/api/v1/registry",
                &admin,
                "application/json",
                body.to_string(),
            )
            .await
        }
    };
    let settings = |url: &str| json!({"url": url, "username": "ci"});
    let (status, set) = put(json!({"adapter": "distribution",
        "settings": settings("http://127.0.0.1:5000"), "secrets": {"password": "hunter2-x9"}}))
    .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    // Nothing changes but the secrets left out: the password stays.
    let (_, same) = put(json!({"adapter": "distribution",
        "settings": settings("http://127.0.0.1:5000")}))
    .await;
    assert_eq!(same["secrets"], json!(["password"]));
    // Another URL, or another host granted: it goes.
    for change in [
        json!({"adapter": "distribution", "settings": settings("http://127.0.0.1:5999")}),
        json!({"adapter": "distribution", "settings": settings("http://127.0.0.1:5000"),
               "allowed-hosts": ["elsewhere.example:443"]}),
        json!({"adapter": "distribution", "version": "^1.0",
               "settings": settings("http://127.0.0.1:5000")}),
    ] {
        put(
            json!({"adapter": "distribution", "settings": settings("http://127.0.0.1:5000"),
            "secrets": {"password": "hunter2-x9"}}),
        )
        .await;
        let (status, moved) = put(change).await;
        assert_eq!(status, StatusCode::OK, "{moved}");
        assert_eq!(moved["secrets"], json!([]));
        let org = api.organisation();
        let stored = api.state.store.registry(org).unwrap().unwrap();
        assert!(stored.settings.secrets.is_empty());
    }
}

#[tokio::test]
async fn registry_secrets_are_sealed_at_rest() {
    let api = Api::new().await;
    let admin = api.admin.clone();
    let secret = "hunter2-scan-7d1e9b";
    let body = json!({"adapter": "distribution",
        "settings": {"url": "http://127.0.0.1:5000", "username": "ci"},
        "secrets": {"password": secret}});
    let (status, set) = api
        .call(
            "PUT",
            "/api/v1/registry",
            &admin,
            "application/json",
            body.to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    let org = api.organisation();
    api.state.store.flush().unwrap();
    // Usable where the server needs it ...
    let stored = api.state.store.registry(org).unwrap().unwrap();
    assert_eq!(stored.settings.secrets["password"], secret);
    // ... and nowhere on disk.
    let mut files = vec![api.dir.path().to_path_buf()];
    let mut scanned = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        scanned += bytes.len();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{} holds the secret",
            path.display()
        );
    }
    assert!(scanned > 0);
}

#[tokio::test]
async fn a_path_parameter_that_does_not_fit_answers_the_json_error() {
    let api = Api::new().await;
    let admin = api.admin.clone();
    for (method, path) in [
        ("DELETE", "/api/v1/users/-1"),
        ("POST", "/api/v1/users/abc/tokens"),
        ("GET", "/api/v1/integrations/orders/versions/x"),
        ("GET", "/api/v1/integrations/orders/versions/99999999999"),
    ] {
        let (status, body) = api.call(method, path, &admin, "application/json", "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "bad-path", "{method} {path}: {body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
}
