//! The server through its router (no socket) and as a process.

use crate::common;
use slipway_test_support::slow_clients;

use common::{start, start_with, stop};

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{Value, json};
use slipway::server::AppState;
use slipway_store::Store;

fn state(dir: &std::path::Path) -> (Arc<AppState>, String) {
    let store = Store::open(&dir.join("db")).unwrap();
    let token = store.bootstrap("acme", None).unwrap().unwrap().token;
    (common::state(store), token)
}

async fn get(state: &Arc<AppState>, path: &str, token: Option<&str>) -> (StatusCode, Value) {
    common::call(state, "GET", path, token, "application/json", "").await
}

#[tokio::test]
async fn health_and_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let (state, _) = state(dir.path());
    assert_eq!(
        get(&state, "/healthz", None).await,
        (StatusCode::OK, json!("ok"))
    );
    let (status, body) = get(&state, "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["ready"], false);
    state.load_plugins().await.unwrap();
    assert_eq!(
        get(&state, "/readyz", None).await,
        (StatusCode::OK, json!({"ready": true}))
    );
}

#[tokio::test]
async fn the_api_wants_a_known_token() {
    let dir = tempfile::tempdir().unwrap();
    let (state, token) = state(dir.path());
    let (status, body) = get(&state, "/api/v1/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({"error": {"code": "unauthorized", "message": "an `Authorization: Bearer <token>` header is required"}})
    );
    let (status, body) = get(&state, "/api/v1/me", Some("slw_wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["message"], "unknown token");

    let (status, body) = get(&state, "/api/v1/me", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["organisation"]["name"], "acme");
    assert_eq!(body["user"]["role"], "org-admin");

    let (status, body) = get(&state, "/api/v1/nothing-here", Some(&token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not-found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_bootstraps_once_and_restarts_on_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let (first, lines) = start(dir.path());
    assert!(
        lines
            .iter()
            .any(|l| l == "created organisation `default` with the configured admin token"),
        "{lines:?}"
    );
    let token = "slw_crash_test_token".to_string();
    let base = common::base_of(&lines);
    let client = reqwest::Client::new();
    let me = |base: String, token: String| {
        let client = client.clone();
        async move {
            client
                .get(format!("{base}/api/v1/me"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(me(base.clone(), token.clone()).await.status(), 200);
    // Ready once the built-in plugins are loaded.
    common::ready(&base).await;
    stop(first);

    let (second, lines) = start(dir.path());
    assert!(
        !lines.iter().any(|l| l.contains("admin token")),
        "no second token: {lines:?}"
    );
    let base = common::base_of(&lines);
    assert_eq!(
        me(base, token).await.status(),
        200,
        "the first token still works"
    );
    stop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_writes_leaves_the_database_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let canvas = serde_json::json!({
        "nodes": [{"id": "in", "type": "http-trigger@^1", "config": {"method": "GET", "path": "/"}}]
    });
    for round in 0..3 {
        let (mut child, lines) = start(dir.path());
        let base = common::base_of(&lines);
        let client = reqwest::Client::new();
        // Writers that create integrations and post versions until the process dies.
        let mut writers = Vec::new();
        for w in 0..4 {
            let (client, base, canvas) = (client.clone(), base.clone(), canvas.clone());
            writers.push(tokio::spawn(async move {
                for i in 0..10_000 {
                    let name = format!("r{round}-w{w}-{i}");
                    let created = client
                        .post(format!("{base}/api/v1/integrations"))
                        .bearer_auth("slw_crash_test_token")
                        .header("content-type", "application/json")
                        .body(serde_json::json!({"name": name}).to_string())
                        .send()
                        .await;
                    if created.is_err() {
                        return;
                    }
                    for _ in 0..3 {
                        let posted = client
                            .post(format!("{base}/api/v1/integrations/{name}/versions"))
                            .bearer_auth("slw_crash_test_token")
                            .header("content-type", "application/json")
                            .body(canvas.to_string())
                            .send()
                            .await;
                        if posted.is_err() {
                            return;
                        }
                    }
                }
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(300 + 150 * round)).await;
        child.kill().unwrap(); // SIGKILL: no shutdown, no flush
        child.wait().unwrap();
        for writer in writers {
            writer.await.unwrap();
        }
    }

    // Every integration that exists has every version it claims, and nothing else.
    let (server, lines) = start(dir.path());
    let base = common::base_of(&lines);
    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        async move {
            client
                .get(path)
                .bearer_auth("slw_crash_test_token")
                .send()
                .await
                .unwrap()
        }
    };
    let list = get(format!("{base}/api/v1/integrations"))
        .await
        .bytes()
        .await
        .unwrap();
    let list: Value = serde_json::from_slice(&list).unwrap();
    let list = list.as_array().unwrap();
    assert!(!list.is_empty(), "some writes landed before the kills");
    for integration in list {
        let name = integration["name"].as_str().unwrap();
        let latest = integration["latest_version"].as_u64().unwrap();
        assert!(latest <= 3, "{integration}");
        for version in 1..=latest {
            let response = get(format!(
                "{base}/api/v1/integrations/{name}/versions/{version}"
            ))
            .await;
            assert_eq!(response.status(), 200, "{name} claims version {version}");
        }
        let beyond = get(format!(
            "{base}/api/v1/integrations/{name}/versions/{}",
            latest + 1
        ))
        .await;
        assert_eq!(beyond.status(), 404);
    }
    stop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_stays_revoked_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let (mut child, lines) = start(dir.path());
    let mut base = common::base_of(&lines);
    // Once its plugins' code is cached, restarts compile nothing.
    common::ready(&base).await;
    let admin = "slw_crash_test_token";
    let canvas = json!({"nodes": [{"id": "in", "type": "http-trigger@^1",
        "config": {"method": "GET", "path": "/"}}]});
    let made = client
        .post(format!("{base}/api/v1/integrations"))
        .bearer_auth(admin)
        .json(&json!({"name": "orders"}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let added = client
        .post(format!("{base}/api/v1/integrations/orders/versions"))
        .bearer_auth(admin)
        .json(&canvas)
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201);
    // Each security-relevant write in turn, the server killed right after
    // its answer: a revoked token, a deleted user, a deleted release.
    for round in 0..6 {
        let created: Value = client
            .post(format!("{base}/api/v1/users"))
            .bearer_auth(admin)
            .json(&json!({"name": format!("leaver-{round}"), "role": "api-provider"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let (id, token) = (&created["user"]["id"], created["token"].as_str().unwrap());
        let release: Value = client
            .post(format!("{base}/api/v1/releases"))
            .bearer_auth(admin)
            .json(&json!({"integration": "orders", "version": 1, "name": format!("r{round}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let release = release["id"].as_u64().unwrap();
        let what = match round % 3 {
            0 => "revoked token",
            1 => "deleted user",
            _ => "deleted release",
        };
        let path = match round % 3 {
            0 => format!("{base}/api/v1/users/{id}/tokens"),
            1 => format!("{base}/api/v1/users/{id}"),
            _ => format!("{base}/api/v1/releases/{release}"),
        };
        let done = client.delete(path).bearer_auth(admin).send().await.unwrap();
        assert!(done.status().is_success(), "{what}: {}", done.status());
        // Killed right after the answer: no shutdown, no flush of its own.
        child.kill().unwrap();
        child.wait().unwrap();
        let (next, lines) = start(dir.path());
        child = next;
        base = common::base_of(&lines);
        if round % 3 == 2 {
            let shown: Value = client
                .get(format!("{base}/api/v1/releases/{release}"))
                .bearer_auth(admin)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(
                shown["status"], "deleted",
                "round {round}: the {what} came back"
            );
        } else {
            let me = client
                .get(format!("{base}/api/v1/me"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(
                me.status(),
                401,
                "round {round}: the {what}'s token came back"
            );
        }
    }
    stop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_neither_hold_the_api_nor_stop_healthz() {
    let dir = tempfile::tempdir().unwrap();
    // Long enough to open and trickle 5,000 clients on a loaded machine.
    let limits = [
        "--header-read-timeout-secs",
        "15",
        "--request-timeout-secs",
        "2",
    ];
    let (server, lines) = start_with(dir.path(), &limits);
    let address: std::net::SocketAddr = lines
        .last()
        .unwrap()
        .trim_start_matches("listening on http://")
        .parse()
        .unwrap();

    // A request whose body never comes is answered when its time is up.
    let mut stalled = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = "POST /api/v1/integrations HTTP/1.1\r\nHost: api\r\n\
                Authorization: Bearer slw_crash_test_token\r\n\
                Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{";
    tokio::io::AsyncWriteExt::write_all(&mut stalled, head.as_bytes())
        .await
        .unwrap();

    let slow = slow_clients::healthz_answers_beside_5000(address).await;

    let mut answer = Vec::new();
    let read = async {
        let mut chunk = [0u8; 1024];
        while !answer.ends_with(b"}}") {
            let n = tokio::io::AsyncReadExt::read(&mut stalled, &mut chunk)
                .await
                .unwrap();
            assert!(n > 0, "closed without an answer");
            answer.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .expect("the stalled request is answered");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains(r#""code":"request-timeout""#), "{answer}");

    let open = slow_clients::still_open_after(&slow, std::time::Duration::from_secs(30)).await;
    assert_eq!(open, 0, "the header-read timeout closed every slow client");
    stop(server);
}
