//! Releases: queued, packaged in the background, followed live, recovered
//! after a stop. No registry is set here, so releases end after packaging;
//! `distribution.rs` takes them to `ready`.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use slipway::server::{AppState, router};
use slipway_store::{Role, Stage, Status, Store, now_ms};
use tower::ServiceExt;

struct Server {
    state: Arc<AppState>,
    admin: String,
    _dir: tempfile::TempDir,
}

/// A server on a fresh store with `setup` applied before it starts working.
async fn server(setup: impl FnOnce(&Store, u64)) -> Server {
    let server = stopped_server(setup);
    tokio::spawn(server.state.clone().start());
    server
}

/// The same, its plugins not loaded and its jobs not run until the test
/// starts it.
fn stopped_server(setup: impl FnOnce(&Store, u64)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let made = store.bootstrap("acme", None).unwrap().unwrap();
    add_orders(&store, made.organisation.id);
    let broken = serde_json::from_value(flow(".items |")).unwrap();
    store
        .add_canvas(made.organisation.id, "orders", &broken)
        .unwrap();
    setup(&store, made.organisation.id);
    let state = common::state(store);
    Server {
        state,
        admin: made.token,
        _dir: dir,
    }
}

/// The integration `orders` of `org`, whose version 1 sums the items.
fn add_orders(store: &Store, org: u64) {
    store.create_integration(org, "orders").unwrap();
    let canvas = serde_json::from_value(flow(".items | add")).unwrap();
    store.add_canvas(org, "orders", &canvas).unwrap();
}

fn flow(expression: &str) -> Value {
    json!({
        "nodes": [
            {"id": "in", "type": "http-trigger@^1", "config": {"method": "POST", "path": "/orders"}},
            {"id": "sum", "type": "transform@^1", "config": {"expression": expression}}
        ],
        "edges": [{"from": "in", "to": "sum"}]
    })
}

impl Server {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        common::call(
            &self.state,
            method,
            path,
            Some(token),
            "application/json",
            body,
        )
        .await
    }

    /// The release once its status is final.
    async fn settled(&self, id: u64) -> Value {
        for _ in 0..400 {
            let (_, release) = self
                .call(
                    "GET",
                    &format!("/api/v1/releases/{id}"),
                    &self.admin,
                    json!(null),
                )
                .await;
            if ["ready", "failed", "deleted"]
                .contains(&release["status"].as_str().unwrap_or_default())
            {
                return release;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("release {id} did not settle in 10 s");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_is_accepted_at_once_and_packaged_in_the_background() {
    let server = server(|_, _| {}).await;
    let admin = server.admin.clone();
    let (status, accepted) = server
        .call(
            "POST",
            "/api/v1/releases",
            &admin,
            common::release_body("orders", 1),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(accepted["status"], "queued");
    let id = accepted["id"].as_u64().unwrap();

    // Packaged; with no registry set, it cannot go further.
    let release = server.settled(id).await;
    assert_eq!(release["status"], "failed", "{release}");
    assert!(
        release["error"]
            .as_str()
            .unwrap()
            .contains("the organisation has no registry"),
        "{release}"
    );
    assert_eq!(release["stages"][0]["stage"], "packaging");
    assert!(
        release["stages"][0]["ended_ms"].as_u64().unwrap()
            >= release["stages"][0]["started_ms"].as_u64().unwrap()
    );
    let plugins = release["flow"]["plugins"].as_array().unwrap();
    let names: Vec<&str> = plugins
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["http-trigger", "transform"]);
    assert!(
        plugins
            .iter()
            .all(|p| p["sha256"].as_str().unwrap().len() == 64)
    );
    let log: Vec<&str> = release["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(log[0], "queued orders@1");
    assert!(
        log.iter()
            .any(|l| l.starts_with("packaged: 2 nodes, 2 plugins, 0 subflows")),
        "{log:?}"
    );
    assert!(release["flow"]["nodes"].is_array());
    assert!(release["image"].is_null(), "no image without a registry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_canvas_fails_the_release_with_its_diagnostics() {
    let server = server(|_, _| {}).await;
    let admin = server.admin.clone();
    let (_, accepted) = server
        .call(
            "POST",
            "/api/v1/releases",
            &admin,
            common::release_body("orders", 2),
        )
        .await;
    let release = server.settled(accepted["id"].as_u64().unwrap()).await;
    assert_eq!(release["status"], "failed");
    assert_eq!(release["error"], "the canvas has 1 problem(s)");
    assert_eq!(
        release["diagnostics"],
        json!([{"path": "/nodes/1/config/expression", "message": "expected term at the end"}])
    );

    let (_, failed) = server
        .call("GET", "/api/v1/releases?status=failed", &admin, json!(null))
        .await;
    assert_eq!(failed.as_array().unwrap().len(), 1);
    let (_, ready) = server
        .call("GET", "/api/v1/releases?status=ready", &admin, json!(null))
        .await;
    assert_eq!(ready, json!([]));
    let (status, body) = server
        .call("GET", "/api/v1/releases?status=bogus", &admin, json!(null))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "bad-query");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("query parameter `status`: unknown variant `bogus`"),
        "{body}"
    );
}

#[tokio::test]
async fn release_requests_are_checked() {
    let server = server(|_, _| {}).await;
    let admin = server.admin.clone();
    let (status, body) = server
        .call(
            "POST",
            "/api/v1/releases",
            &admin,
            common::release_body("nosuch", 1),
        )
        .await;
    assert_eq!(
        (status, body["error"]["path"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("/integration"))
    );
    let (status, body) = server
        .call(
            "POST",
            "/api/v1/releases",
            &admin,
            common::release_body("orders", 9),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["error"],
        json!({"code": "invalid", "message": "integration `orders` has no version 9", "path": "/version"})
    );

    let org = server
        .state
        .store
        .authenticate(&admin)
        .unwrap()
        .unwrap()
        .organisation
        .id;
    let viewer = server
        .state
        .store
        .create_user(org, "v", Role::Viewer)
        .unwrap()
        .1;
    let (status, _) = server
        .call(
            "POST",
            "/api/v1/releases",
            &viewer,
            common::release_body("orders", 1),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (_, accepted) = server
        .call(
            "POST",
            "/api/v1/releases",
            &admin,
            common::release_body("orders", 1),
        )
        .await;
    let path = format!("/api/v1/releases/{}", accepted["id"]);
    let other = server
        .state
        .store
        .create_organisation("globex")
        .unwrap()
        .token;
    assert_eq!(
        server.call("GET", &path, &other, json!(null)).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server.call("DELETE", &path, &other, json!(null)).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server.call("GET", &path, &viewer, json!(null)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        server.call("DELETE", &path, &admin, json!(null)).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        server.call("GET", &path, &admin, json!(null)).await.1["status"],
        "deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_follows_a_release_to_its_end() {
    // The jobs start once the stream is open, so it sees the release from
    // the queue to its end however fast that goes.
    let server = stopped_server(|_, _| {});
    let admin = server.admin.clone();
    let (_, accepted) = server
        .call(
            "POST",
            "/api/v1/releases",
            &admin,
            common::release_body("orders", 1),
        )
        .await;
    let request = Request::get(format!("/api/v1/releases/{}/events", accepted["id"]))
        .header("authorization", format!("Bearer {admin}"))
        .body(Body::empty())
        .unwrap();
    let response = router(server.state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    tokio::spawn(server.state.clone().start());
    let body = tokio::time::timeout(Duration::from_secs(30), response.into_body().collect())
        .await
        .expect("the stream ends when the release is final")
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    let statuses: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(statuses.last().unwrap(), "failed", "{text}");
    assert_eq!(statuses[0], "queued", "{statuses:?}");
    assert!(statuses.len() > 2, "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_in_flight_at_a_stop_is_picked_up_again() {
    let mut interrupted = 0;
    let server = server(|store, org| {
        // As a stop leaves it: claimed, half way through packaging.
        let mut release = store
            .create_release(org, common::new_release("orders", 1))
            .unwrap();
        release.stages.push(Stage {
            stage: "packaging".into(),
            started_ms: now_ms(),
            ended_ms: None,
        });
        common::in_flight(store, &release, Status::Packaging);
        interrupted = release.id;
    })
    .await;
    let release = server.settled(interrupted).await;
    assert_eq!(release["status"], "failed", "no registry is set");
    let log: Vec<&str> = release["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(log[1], "interrupted by a server stop; queued again");
    assert_eq!(
        log.iter().filter(|l| l.starts_with("packaged")).count(),
        1,
        "run once: {log:?}"
    );
    assert_eq!(
        release["stages"].as_array().unwrap().len(),
        2,
        "the interrupted stage and the new one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_pins_its_plugins_until_it_is_deleted() {
    let server = server(|store, org| {
        store.create_integration(org, "hello").unwrap();
        let canvas = serde_json::from_value(json!({
            "nodes": [
                {"id": "in", "type": "http-trigger@^1", "config": {"method": "GET", "path": "/"}},
                {"id": "hi", "type": "greeter@^1"}
            ],
            "edges": [{"from": "in", "to": "hi"}]
        }))
        .unwrap();
        store.add_canvas(org, "hello", &canvas).unwrap();
    })
    .await;
    let admin = server.admin.clone();
    let greeter =
        std::fs::read(slipway_plugin_artifacts::test_guest("greeter-v1").unwrap()).unwrap();
    let (status, _) = common::call(
        &server.state,
        "POST",
        "/api/v1/plugins",
        Some(&admin),
        "application/wasm",
        greeter,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, accepted) = server
        .call(
            "POST",
            "/api/v1/releases",
            &admin,
            common::release_body("hello", 1),
        )
        .await;
    let id = accepted["id"].as_u64().unwrap();
    assert_eq!(
        server.settled(id).await["status"],
        "failed",
        "no registry is set"
    );
    let holder = json!([format!("release {id}")]);

    let used_by = |state: Arc<AppState>, kind_name: &'static str| {
        let admin = admin.clone();
        async move {
            let path = format!("/api/v1/plugins/node-type/{kind_name}");
            let (_, shown) = common::call(&state, "GET", &path, Some(&admin), "", "").await;
            shown["versions"][0]["used_by"].clone()
        }
    };
    assert_eq!(used_by(server.state.clone(), "greeter").await, holder);
    assert_eq!(used_by(server.state.clone(), "http-trigger").await, holder);
    let (status, body) = server
        .call(
            "DELETE",
            "/api/v1/plugins/node-type/greeter/1.0.0",
            &admin,
            json!(null),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body["error"]["message"],
        format!("node-type `greeter@1.0.0` is still used by release {id}")
    );

    // A new process over the same database knows the pins again.
    let again = common::loaded(server.state.store.clone()).await;
    again.recover().unwrap();
    assert_eq!(used_by(again.clone(), "greeter").await, holder);

    let (status, _) = server
        .call(
            "DELETE",
            &format!("/api/v1/releases/{id}"),
            &admin,
            json!(null),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(used_by(server.state.clone(), "greeter").await, json!([]));
    let (status, _) = server
        .call(
            "DELETE",
            "/api/v1/plugins/node-type/greeter/1.0.0",
            &admin,
            json!(null),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_release_cut_off_by_a_stop_shows_as_interrupted_until_it_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let made = store.bootstrap("acme", None).unwrap().unwrap();
    let release = store
        .create_release(made.organisation.id, common::new_release("orders", 1))
        .unwrap();
    common::in_flight(&store, &release, Status::Packaging);
    assert!(store.queued_releases().unwrap().is_empty());

    let state = common::loaded(store).await;
    assert_eq!(state.recover().unwrap(), 1);
    let path = format!("/api/v1/releases/{}", release.id);
    let (_, shown) = common::call(&state, "GET", &path, Some(&made.token), "", "").await;
    assert_eq!(shown["status"], "interrupted");
    let waiting: Vec<u64> = state
        .store
        .queued_releases()
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(waiting, [release.id], "it waits in the queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_releases_run_at_once_than_configured() {
    for limit in [1, 3] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let org = store
            .bootstrap("acme", None)
            .unwrap()
            .unwrap()
            .organisation
            .id;
        store.create_integration(org, "orders").unwrap();
        // Twenty transforms: long enough to package that releases overlap.
        let mut nodes = vec![json!({"id": "in", "type": "http-trigger@^1",
            "config": {"method": "POST", "path": "/orders"}})];
        let mut edges = Vec::new();
        for i in 0..20 {
            nodes.push(json!({"id": format!("t{i}"), "type": "transform@^1",
                "config": {"expression": format!("{{step: {i}}}")}}));
            edges.push(json!({"from": nodes[i]["id"], "to": format!("t{i}")}));
        }
        let canvas = serde_json::from_value(json!({"nodes": nodes, "edges": edges})).unwrap();
        store.add_canvas(org, "orders", &canvas).unwrap();
        let ids: Vec<u64> = (0..8)
            .map(|_| {
                store
                    .create_release(org, common::new_release("orders", 1))
                    .unwrap()
                    .id
            })
            .collect();
        let state = common::state_running(store, limit);
        let mut events = state.releases.subscribe(org).unwrap();
        tokio::spawn(state.clone().start());

        let (mut running, mut most, mut done) = (0usize, 0usize, 0usize);
        while done < ids.len() {
            let event = tokio::time::timeout(Duration::from_secs(20), events.recv())
                .await
                .expect("every release ends")
                .unwrap();
            match event.status {
                Status::Packaging => running += 1,
                // Packaged, then stopped: no registry is set.
                Status::Failed => {
                    running -= 1;
                    done += 1;
                }
                other => panic!("unexpected {other:?}: {}", event.message),
            }
            most = most.max(running);
        }
        assert!(most <= limit, "{most} ran at once, more than {limit}");
        assert!(
            most >= limit.min(2),
            "{most} at once: the limit {limit} is not used"
        );
    }
}

#[tokio::test]
async fn a_release_in_flight_at_every_one_of_its_last_starts_fails_instead_of_running_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let made = store.bootstrap("acme", None).unwrap().unwrap();
    let release = store
        .create_release(made.organisation.id, common::new_release("orders", 1))
        .unwrap();
    common::in_flight(&store, &release, Status::Compiling);
    let state = common::loaded(store).await;
    let path = format!("/api/v1/releases/{}", release.id);
    // Each start finds it in flight, as if it had stopped the server.
    for start in 1..=3 {
        let requeued = state.recover().unwrap();
        let (_, shown) = common::call(&state, "GET", &path, Some(&made.token), "", "").await;
        if start < 3 {
            assert_eq!(
                (requeued, shown["status"].as_str()),
                (1, Some("interrupted"))
            );
            let again = state.store.release(release.id).unwrap().unwrap();
            common::in_flight(&state.store, &again, Status::Packaging);
        } else {
            assert_eq!(requeued, 0);
            assert_eq!(shown["status"], "failed");
            assert_eq!(
                shown["error"],
                "interrupted 3 times: a server stop cut it off in flight at each of its last 3 starts, so it is not run again"
            );
        }
    }
    assert!(state.store.queued_releases().unwrap().is_empty());
    state.recover().unwrap();
    let (_, shown) = common::call(&state, "GET", &path, Some(&made.token), "", "").await;
    assert_eq!(shown["status"], "failed", "it stays failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_of_an_oversized_flow_fails_at_once_and_stays_failed() {
    let mut id = 0;
    let server = server(|store, org| {
        let mut nodes = vec![json!({"id": "in", "type": "http-trigger@^1",
            "config": {"method": "POST", "path": "/orders"}})];
        nodes.extend((0..20_000).map(|i| json!({"id": format!("n{i}"), "type": "log@^1"})));
        let canvas = serde_json::from_value(json!({"nodes": nodes})).unwrap();
        let version = store.add_canvas(org, "orders", &canvas).unwrap();
        id = store
            .create_release(org, common::new_release("orders", version))
            .unwrap()
            .id;
    })
    .await;
    let release = server.settled(id).await;
    assert_eq!(release["status"], "failed");
    assert_eq!(
        release["diagnostics"],
        json!([{"path": "/nodes", "message": "a canvas has at most 10000 nodes, this one has 20001"}])
    );
    assert_eq!(server.state.recover().unwrap(), 0);
    assert_eq!(server.settled(id).await["status"], "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_that_falls_behind_still_ends_with_the_release() {
    let mut id = 0;
    let server = server(|store, org| {
        id = store
            .create_release(org, common::new_release("orders", 1))
            .unwrap()
            .id;
    })
    .await;
    let ready = server.settled(id).await;
    let mut release: slipway_store::Release = serde_json::from_value(ready).unwrap();
    // A stream opened while it still ran ...
    release.status = Status::Packaging;
    server.state.store.put_release(&release).unwrap();
    let request = Request::get(format!("/api/v1/releases/{id}/events"))
        .header("authorization", format!("Bearer {}", server.admin))
        .body(Body::empty())
        .unwrap();
    let response = router(server.state.clone()).oneshot(request).await.unwrap();
    // ... misses its final change among 2,000 of another release's.
    release.status = Status::Failed;
    server.state.releases.save(&release, "failed").unwrap();
    let mut other = server
        .state
        .store
        .create_release(release.organisation, common::new_release("orders", 2))
        .unwrap();
    other.status = Status::Failed;
    for _ in 0..2_000 {
        server.state.releases.save(&other, "noise").unwrap();
    }
    let body = tokio::time::timeout(Duration::from_secs(10), response.into_body().collect())
        .await
        .expect("the stream ends although it missed the final event")
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains(r#""status":"failed""#), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_has_a_well_formed_name_unique_among_those_not_deleted() {
    let server = server(|_, _| {}).await;
    let admin = server.admin.clone();
    let create = |body: Value| server.call("POST", "/api/v1/releases", &admin, body);
    let at_fault = |answer: (StatusCode, Value)| {
        assert_eq!(answer.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", answer.1);
        answer.1["error"]["path"].as_str().unwrap().to_string()
    };
    let long = format!("a{}", "b".repeat(100));
    for bad in [
        "",
        "9lives",
        "with space",
        "ends-",
        "under_score",
        "é",
        long.as_str(),
    ] {
        let answer = create(json!({"integration": "orders", "version": 1, "name": bad})).await;
        assert_eq!(at_fault(answer), "/name", "{bad:?}");
    }
    let answer = create(json!({"integration": "orders", "version": 1})).await;
    assert_eq!(at_fault(answer), "/name", "the name is required");
    let answer = create(json!({"integration": "orders", "version": 1, "name": "ok",
        "description": "x".repeat(1_001)}))
    .await;
    assert_eq!(at_fault(answer), "/description");

    let (status, first) = create(json!({"integration": "orders", "version": 2,
        "name": "Spring-launch-2", "description": "the spring price list"}))
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let answer =
        create(json!({"integration": "orders", "version": 1, "name": "Spring-launch-2"})).await;
    assert_eq!(at_fault(answer.clone()), "/name");
    assert_eq!(
        answer.1["error"]["message"],
        "the organisation has a release named `Spring-launch-2` already"
    );

    // Found by name as by id, in details, lists, events and deletes.
    let by_name = server.settled(first["id"].as_u64().unwrap()).await;
    let (status, shown) = server
        .call(
            "GET",
            "/api/v1/releases/Spring-launch-2",
            &admin,
            json!(null),
        )
        .await;
    assert_eq!((status, &shown), (StatusCode::OK, &by_name));
    assert_eq!(shown["name"], "Spring-launch-2");
    assert_eq!(shown["description"], "the spring price list");
    let (_, list) = server
        .call("GET", "/api/v1/releases", &admin, json!(null))
        .await;
    assert_eq!(
        list.as_array().unwrap().last().unwrap()["name"],
        "Spring-launch-2"
    );
    let (status, _) = server
        .call("GET", "/api/v1/releases/no-such-name", &admin, json!(null))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Not a name at all (too long, a path's worth of dots): not found, nothing looked up.
    for odd in ["x".repeat(10_000), "..%2F..".to_string(), "-1".to_string()] {
        let (status, body) = server
            .call(
                "GET",
                &format!("/api/v1/releases/{odd}"),
                &admin,
                json!(null),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{odd:.20}: {body}");
        assert_eq!(body["error"]["code"], "not-found");
    }
    let (status, _) = server
        .call(
            "DELETE",
            "/api/v1/releases/Spring-launch-2",
            &admin,
            json!(null),
        )
        .await;
    assert!(status.is_success(), "{status}");
    let (status, _) = server
        .call(
            "GET",
            "/api/v1/releases/Spring-launch-2",
            &admin,
            json!(null),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a deleted release holds no name"
    );

    // Deleted, its name is free again; the old one stays readable by id.
    let (status, again) =
        create(json!({"integration": "orders", "version": 1, "name": "Spring-launch-2"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_ne!(again["id"], first["id"]);
    let (_, old) = server
        .call(
            "GET",
            &format!("/api/v1/releases/{}", first["id"]),
            &admin,
            json!(null),
        )
        .await;
    assert_eq!(old["status"], "deleted");
}

#[tokio::test]
async fn another_organisations_release_names_are_not_found() {
    let server = server(|_, _| {}).await;
    let (status, _) = server
        .call(
            "POST",
            "/api/v1/releases",
            &server.admin,
            json!({"integration": "orders", "version": 1, "name": "shared-name"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let store = &server.state.store;
    let other = store.create_organisation("globex").unwrap();
    store
        .create_integration(other.organisation.id, "orders")
        .unwrap();
    let canvas = serde_json::from_value(flow(".items | add")).unwrap();
    store
        .add_canvas(other.organisation.id, "orders", &canvas)
        .unwrap();
    let (status, _) = server
        .call(
            "GET",
            "/api/v1/releases/shared-name",
            &other.token,
            json!(null),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Names are unique within an organisation only.
    let (status, mine) = server
        .call(
            "POST",
            "/api/v1/releases",
            &other.token,
            json!({"integration": "orders", "version": 1, "name": "shared-name"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{mine}");
    let (_, shown) = server
        .call(
            "GET",
            "/api/v1/releases/shared-name",
            &other.token,
            json!(null),
        )
        .await;
    assert_eq!(shown["id"], mine["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_capped_per_organisation_and_kept_alive() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let (mut ids, mut tokens) = (Vec::new(), Vec::new());
    for name in ["hog", "other"] {
        let made = store.create_organisation(name).unwrap();
        add_orders(&store, made.organisation.id);
        // No worker runs here: the release stays queued and its stream open.
        let release = store
            .create_release(made.organisation.id, common::new_release("orders", 1))
            .unwrap();
        ids.push(release.id);
        tokens.push(made.token);
    }
    let state = common::state(store);
    let open = |n: usize| {
        let request = Request::get(format!("/api/v1/releases/{}/events", ids[n]))
            .header("authorization", format!("Bearer {}", tokens[n]))
            .body(Body::empty())
            .unwrap();
        router(state.clone()).oneshot(request)
    };
    let mut held = Vec::new();
    for _ in 0..slipway_domain::releases::MAX_ORGANISATION_SUBSCRIBERS {
        let response = open(0).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        held.push(response);
    }
    let refused = open(0).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value =
        serde_json::from_slice(&refused.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"]["code"], "too-many-streams");
    assert_eq!(
        body["error"]["message"],
        "the organisation has 256 event streams open; close one or try again later"
    );

    // Another organisation still follows its release, and a quiet stream
    // gets keep-alive comments.
    let mut body = open(1).await.unwrap().into_body();
    let first = next_frame(&mut body).await;
    assert!(first.starts_with("event: status\n"), "{first}");
    assert!(first.contains(r#""status":"queued""#), "{first}");
    let started = std::time::Instant::now();
    let quiet = next_frame(&mut body).await;
    assert!(quiet.starts_with(':'), "a comment: {quiet:?}");
    assert!(started.elapsed() >= slipway::api::KEEP_ALIVE - Duration::from_secs(1));

    // A stream closed gives its place back.
    held.pop();
    assert_eq!(open(0).await.unwrap().status(), StatusCode::OK);
}

/// The next frame of an event stream, as text, within 20 s.
async fn next_frame(body: &mut Body) -> String {
    let frame = tokio::time::timeout(Duration::from_secs(20), body.frame())
        .await
        .expect("a frame within 20 s")
        .unwrap()
        .unwrap();
    String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_of_a_long_chain_or_an_exploding_subflow_fail_and_stay_failed() {
    let mut ids = Vec::new();
    let server = server(|store, org| {
        let canvas = |value: Value| serde_json::from_value(value).unwrap();
        // One chain of 100,000 nodes after the trigger, stored as data from
        // before the limits would be.
        let mut nodes = vec![json!({"id": "in", "type": "http-trigger@^1",
            "config": {"method": "POST", "path": "/c"}})];
        nodes.extend((0..100_000).map(|i| json!({"id": format!("n{i}"), "type": "log@^1"})));
        let edges: Vec<Value> = nodes
            .windows(2)
            .map(|w| json!({"from": w[0]["id"], "to": w[1]["id"]}))
            .collect();
        store.create_integration(org, "chain").unwrap();
        store
            .add_canvas(
                org,
                "chain",
                &canvas(json!({"nodes": nodes, "edges": edges})),
            )
            .unwrap();
        // Thirty integrations, each using the one before twice: 2^30 nodes.
        for level in 0..30 {
            let name = format!("deep{level}");
            store.create_integration(org, &name).unwrap();
            let value = if level == 0 {
                json!({"nodes": [{"id": "a", "type": "log@^1"}]})
            } else {
                let sub = json!({"integration": format!("deep{}", level - 1), "version": 1});
                json!({"nodes": [{"id": "a", "subflow": sub}, {"id": "b", "subflow": sub}],
                       "edges": [{"from": "a", "to": "b"}]})
            };
            store.add_canvas(org, &name, &canvas(value)).unwrap();
        }
        for integration in ["chain", "deep29"] {
            ids.push(
                store
                    .create_release(org, common::new_release(integration, 1))
                    .unwrap()
                    .id,
            );
        }
    })
    .await;
    for (id, expected) in ids.iter().zip([
        "a canvas has at most 10000 nodes, this one has 100001",
        "subflows nest deeper than 16 levels",
    ]) {
        let release = server.settled(*id).await;
        assert_eq!(release["status"], "failed", "{release}");
        let said = release["diagnostics"].to_string();
        assert!(said.contains(expected), "{said}");
    }
    // A start afterwards runs neither again.
    assert_eq!(server.state.recover().unwrap(), 0);
    for id in ids {
        assert_eq!(server.settled(id).await["status"], "failed");
    }
}

#[tokio::test]
async fn a_release_whose_build_the_runner_stops_or_gives_up_on_never_stays_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let made = store.bootstrap("acme", None).unwrap().unwrap();
    let org = made.organisation.id;
    // Queued, and stopped by a request before it ran.
    let stopped = store
        .create_release(org, common::new_release("orders", 1))
        .unwrap();
    // Queued, claimed, and cut off before it showed `packaging`, at each
    // of its last starts.
    let cut_off = store
        .create_release(org, common::new_release("orders", 1))
        .unwrap();
    let state = common::loaded(store).await;
    tokio::spawn(state.jobs.clone().run());
    let job = |id| {
        state
            .store
            .job_of(slipway_store::JobKind::BuildRelease, id)
            .unwrap()
            .unwrap()
    };
    // The runner is idle (nothing woke it), so the request finds it waiting.
    state
        .jobs
        .request(
            org,
            job(stopped.id).id,
            slipway_store::JobRequest::Stop,
            "ada",
        )
        .unwrap();
    for _ in 0..3 {
        state
            .store
            .update_job(job(cut_off.id).id, |j| {
                j.status = slipway_store::JobStatus::Running
            })
            .unwrap();
        state.recover().unwrap();
    }
    for (id, error) in [
        (stopped.id, "stopped by ada".to_string()),
        (
            cut_off.id,
            "interrupted 3 times: a server stop cut it off in flight at each of its last 3 starts, so it is not run again".to_string(),
        ),
    ] {
        let release = state.store.release(id).unwrap().unwrap();
        assert_eq!(release.status, Status::Failed, "release {id}");
        assert_eq!(release.error.as_deref(), Some(error.as_str()));
    }
}
