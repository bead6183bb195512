//! Services on the server's own Docker Engine (`local-docker`): a release
//! deployed as a service of two replicas, healthy, answering on the ports it
//! publishes, held against deletion while it runs, restarted one container
//! at a time, and deleted with every container, volume and network it made.
//! And what the API refuses, each problem at its pointer.

use crate::common;
use crate::distribution::Served;
use crate::releasing::canvas;
use slipway_test_support::registry::TestRegistry;

use std::process::Command;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};

/// Removes what a service's namespace holds on the engine, and the images
/// it pulled, however the test ends.
pub(crate) struct Leftovers(pub(crate) String, pub(crate) Vec<String>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        let docker = |args: &[&str]| {
            Command::new("docker")
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        let filter = format!("name=^{}_", self.0);
        for id in docker(&["ps", "-aq", "--filter", &filter]).split_whitespace() {
            docker(&["rm", "-f", id]);
        }
        for volume in docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("name={}_", self.0),
        ])
        .split_whitespace()
        {
            docker(&["volume", "rm", "-f", volume]);
        }
        docker(&["network", "rm", &self.0]);
        for image in &self.1 {
            docker(&["rmi", "-f", image]);
        }
    }
}

/// The names of the engine's containers in `namespace`.
pub(crate) fn containers(namespace: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}", "--filter"])
        .arg(format!("name=^{namespace}_"))
        .output()
        .unwrap();
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// Two free ports in a row on this machine.
pub(crate) fn free_port_pair() -> u16 {
    loop {
        let first = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = first.local_addr().unwrap().port();
        if port < 65535 && std::net::TcpListener::bind(("0.0.0.0", port + 1)).is_ok() {
            return port;
        }
    }
}

impl Served {
    /// Runs an operation on service `id` and waits for its job to end.
    pub(crate) async fn operate(&self, id: u64, body: Value) -> Value {
        let (status, job) = self
            .call("POST", &format!("/api/v1/services/{id}/operations"), body)
            .await;
        assert_eq!(status, 202, "{job}");
        self.operation_ended(id, job["id"].as_u64().unwrap()).await
    }

    pub(crate) async fn operation_ended(&self, id: u64, job: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let (_, job) = self
                .call(
                    "GET",
                    &format!("/api/v1/services/{id}/operations/{job}"),
                    Value::Null,
                )
                .await;
            if ["succeeded", "failed", "stopped"].contains(&job["status"].as_str().unwrap_or("")) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "the operation did not end: {job}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Version 1 of the integration `orders`, released and ready.
pub(crate) async fn ready_release(server: &Served) -> Value {
    server
        .call("POST", "/api/v1/integrations", json!({"name": "orders"}))
        .await;
    let (status, body) = server
        .call("POST", "/api/v1/integrations/orders/versions", canvas(50))
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, release) = server
        .call(
            "POST",
            "/api/v1/releases",
            common::release_body("orders", 1),
        )
        .await;
    let release = server.settled(release["id"].as_u64().unwrap()).await;
    assert_eq!(release["status"], "ready", "{release}");
    release
}

pub(crate) async fn post_orders(port: u16, items: Value) -> Value {
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/orders"))
        .body(json!({ "items": items }).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_runs_as_a_service_on_the_local_docker_engine() {
    let registry = TestRegistry::htpasswd(crate::distribution::USER, crate::distribution::PASSWORD);
    let server = Served::start(&registry).await;
    let release = ready_release(&server).await;
    let name = release["name"].as_str().unwrap().to_string();

    // The server's Docker Engine is a target without any setting.
    let (status, target) = server
        .call("GET", "/api/v1/targets/local-docker", Value::Null)
        .await;
    assert_eq!(status, 200, "{target}");
    assert_eq!(target["resolved"], "docker@1.0.0");
    let namespace = target["namespace"].as_str().unwrap().to_string();
    let pinned = format!(
        "{}/flows/orders@{}",
        registry.address,
        release["image"]["digest"].as_str().unwrap()
    );
    let _leftovers = Leftovers(namespace.clone(), vec![pinned]);

    let port = free_port_pair();
    let (status, service) = server
        .call(
            "POST",
            "/api/v1/services",
            json!({
                "name": "orders",
                "target": "local-docker",
                "release": name,
                "replicas": 2,
                "service_type": "NodePort",
                "ports": [{"container": 8080, "service": port}],
                "requests": {"cpu": "50m", "memory": "16Mi"},
                "limits": {"cpu": "1", "memory": "256Mi"},
                "env": {"SLIPWAY_LOG": "info"},
                "log_dir": "/logs",
                "labels": {"team": "payments"},
                "health_check": {"http": {"path": "/readyz", "port": 8080}, "interval_s": 1},
            }),
        )
        .await;
    assert_eq!(status, 201, "{service}");
    let id = service["id"].as_u64().unwrap();
    let digest = release["image"]["digest"].as_str().unwrap();
    assert!(
        service["image"]
            .as_str()
            .unwrap()
            .ends_with(&format!("@{digest}")),
        "pinned by digest: {service}"
    );
    assert_eq!(service["revision"], 1);
    assert_eq!(service["running"], Value::Null);

    // Deployed: both replicas healthy, each on its own published port.
    let job = server.operate(id, json!({"operation": "deploy"})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let applied = job["state"]["applied"].as_array().unwrap();
    assert!(
        applied
            .iter()
            .filter(|a| a.as_str().unwrap().starts_with("started "))
            .count()
            == 2,
        "{job}"
    );
    let (_, shown) = server
        .call("GET", &format!("/api/v1/services/{id}"), Value::Null)
        .await;
    assert_eq!(shown["running"], 1, "{shown}");
    let observed = &shown["observed"];
    assert_eq!(
        (observed["ready"].as_u64(), observed["health"].as_str()),
        (Some(2), Some("healthy")),
        "{shown}"
    );
    for replica in 0..2 {
        let answer = post_orders(port + replica, json!([40, 30])).await;
        assert_eq!(answer, json!({"total": 70, "size": "large"}));
    }
    let names = containers(&namespace);
    assert_eq!(
        names,
        [
            format!("{namespace}_orders_r1_0"),
            format!("{namespace}_orders_r1_1")
        ]
    );
    let labels = Command::new("docker")
        .args(["inspect", "--format", "{{json .Config.Labels}}", &names[0]])
        .output()
        .unwrap();
    let labels: Value = serde_json::from_slice(&labels.stdout).unwrap();
    assert_eq!(labels["team"], "payments", "{labels}");
    assert_eq!(labels["slipway.service"], id.to_string());

    // What each container writes, after its name; the CLI prints the same.
    let logs = reqwest::Client::new()
        .get(format!("{}/api/v1/services/{id}/logs?tail=50", server.url))
        .bearer_auth(crate::distribution::ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in &names {
        assert!(
            logs.lines().any(|l| l.starts_with(&format!("[{name}] "))),
            "{logs}"
        );
    }
    let out = server.cli(&["service", "logs", &id.to_string(), "--tail", "5"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("[{}] ", names[1])));

    // Deploying the same revision again changes nothing.
    let again = server.operate(id, json!({"operation": "deploy"})).await;
    assert_eq!(again["status"], "succeeded", "{again}");
    assert!(
        again["message"]
            .as_str()
            .unwrap()
            .contains("nothing to change"),
        "{again}"
    );

    // The release runs: it cannot be deleted.
    let (status, refused) = server
        .call("DELETE", &format!("/api/v1/releases/{name}"), Value::Null)
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&id.to_string()),
        "{refused}"
    );

    // An operator restarts it from the CLI, one container at a time,
    // following each step; it ends healthy.
    let out = server.cli(&[
        "service",
        "restart",
        &id.to_string(),
        "--sequential",
        "--follow",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("restarted 1 of 2"), "{text}");
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("[succeeded] revision 1 is healthy"),
        "{text}"
    );
    assert_eq!(post_orders(port, json!([1])).await["total"], 1);
    let out = server.cli(&["target", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(listed.starts_with("local-docker\tdocker@1.0.0"), "{listed}");

    // Stopped, then started again: back on its network, healthy.
    let stopped = server.operate(id, json!({"operation": "stop"})).await;
    assert_eq!(stopped["status"], "succeeded", "{stopped}");
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
            .await
            .is_err()
    );
    let started = server.operate(id, json!({"operation": "start"})).await;
    assert_eq!(started["status"], "succeeded", "{started}");
    assert_eq!(post_orders(port + 1, json!([2])).await["total"], 2);
    let network = Command::new("docker")
        .args([
            "inspect",
            "--format",
            "{{json .NetworkSettings.Networks}}",
            &names[0],
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&network.stdout).contains(&namespace),
        "on its network again"
    );

    // Deleted: nothing of it stays on the engine, and the release is free.
    let (status, job) = server
        .call("DELETE", &format!("/api/v1/services/{id}"), Value::Null)
        .await;
    assert_eq!(status, 202, "{job}");
    let job = server
        .operation_ended(id, job["id"].as_u64().unwrap())
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(containers(&namespace), Vec::<String>::new());
    let volumes = Command::new("docker")
        .args(["volume", "ls", "-q", "--filter"])
        .arg(format!("name={namespace}-"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&volumes.stdout).trim(),
        "",
        "the log volume went too"
    );
    let (status, _) = server
        .call("GET", &format!("/api/v1/services/{id}"), Value::Null)
        .await;
    assert_eq!(status, 404);
    let (status, _) = server
        .call("DELETE", &format!("/api/v1/releases/{name}"), Value::Null)
        .await;
    assert!(status == 202 || status == 204, "{status}");
}

#[tokio::test]
async fn bad_services_are_refused_with_every_problem_at_its_pointer() {
    let dir = tempfile::tempdir().unwrap();
    let store = slipway_store::Store::open(dir.path()).unwrap();
    let token = store.bootstrap("acme", None).unwrap().unwrap().token;
    let state = common::loaded(store).await;
    let post = |body: Value| {
        let state = state.clone();
        let token = token.clone();
        async move {
            common::call(
                &state,
                "POST",
                "/api/v1/services",
                Some(&token),
                "application/json",
                body.to_string(),
            )
            .await
        }
    };

    let (status, body) = post(json!({
        "name": "Bad Name",
        "target": "local-docker",
        "image": "registry.example/app:1",
        "ports": [{"container": 0, "service": 80}],
        "mounts": [{"kind": "pipe", "host_path": "/a", "container_path": "/b"}],
    }))
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["path"], "/mounts/0/kind", "{body}");

    let (status, body) = post(json!({
        "name": "Bad Name",
        "target": "local-docker",
        "image": "registry.example/app:1",
        "replicas": 100,
        "ports": [{"container": 0, "service": 80}],
        "requests": {"memory": "2Gi"},
        "limits": {"memory": "1Gi"},
    }))
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let paths: Vec<&str> = body["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/name",
            "/replicas",
            "/requests/memory",
            "/ports/0/container"
        ],
        "{body}"
    );

    let (status, body) =
        post(json!({"name": "web", "target": "nowhere", "image": "registry.example/app:1"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["path"], "/target");
    let (status, body) =
        post(json!({"name": "web", "target": "local-docker", "release": "no-such-release"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["path"], "/release");

    // A key in the wrong case is unknown, not ignored.
    let (status, body) =
        post(json!({"name": "web", "target": "local-docker", "image": "a", "Replicas": 2})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["path"], "/Replicas");

    // Nothing was stored.
    let (status, list) = common::call(
        &state,
        "GET",
        "/api/v1/services",
        Some(&token),
        "application/json",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_whose_health_check_fails_is_restarted_until_it_is_failed() {
    let registry = TestRegistry::htpasswd(crate::distribution::USER, crate::distribution::PASSWORD);
    let server = Served::start(&registry).await;
    let release = ready_release(&server).await;

    // A target of its own whose plugin fails a service after one restart.
    let (status, target) = server
        .call(
            "PUT",
            "/api/v1/targets/flaky",
            json!({"plugin": "docker", "settings": {"max-restarts": 1}, "connection": {"driver": "docker", "endpoint": "local"}}),
        )
        .await;
    assert_eq!(status, 200, "{target}");
    let namespace = target["namespace"].as_str().unwrap().to_string();
    let pinned = format!(
        "{}/flows/orders@{}",
        registry.address,
        release["image"]["digest"].as_str().unwrap()
    );
    let _leftovers = Leftovers(namespace.clone(), vec![pinned]);
    let (status, service) = server
        .call(
            "POST",
            "/api/v1/services",
            json!({
                "name": "orders",
                "target": "flaky",
                "release": release["name"],
                // Nothing listens on port 9: the check fails every time.
                "health_check": {"command": ["/slipway-engine", "probe", "http://127.0.0.1:9/"], "interval_s": 1, "retries": 1},
            }),
        )
        .await;
    assert_eq!(status, 201, "{service}");
    let id = service["id"].as_u64().unwrap();

    // The server restarts the unhealthy container; past the target's limit
    // the deploy fails, saying so.
    let job = server.operate(id, json!({"operation": "deploy"})).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"].as_str().unwrap().contains("restarted 2 times"),
        "{job}"
    );
    let (_, shown) = server
        .call("GET", &format!("/api/v1/services/{id}"), Value::Null)
        .await;
    assert!(
        shown["observed"]["restarts"].as_u64().unwrap() >= 2,
        "{shown}"
    );

    let (status, job) = server
        .call("DELETE", &format!("/api/v1/services/{id}"), Value::Null)
        .await;
    assert_eq!(status, 202, "{job}");
    let job = server
        .operation_ended(id, job["id"].as_u64().unwrap())
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(containers(&namespace), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_docker_engine_is_reached_over_tls_with_the_targets_certificates() {
    let engine = slipway_test_support::docker_tls::DockerTls::start().await;
    // The engine's TLS front and the registry listen on loopback: the
    // operator allows it. (The server's own image store is for its own
    // engine only.)
    let registry = TestRegistry::htpasswd(crate::distribution::USER, crate::distribution::PASSWORD);
    let server = Served::start(&registry).await;
    let release = ready_release(&server).await;
    let endpoint = format!("tcp://localhost:{}", engine.address.port());
    let served = &server;
    let target = |name: &str, endpoint: &str, secrets: Value| {
        let body = json!({
            "plugin": "docker",
            "connection": {"driver": "docker", "endpoint": endpoint},
            "secrets": secrets,
        });
        let path = format!("/api/v1/targets/{name}");
        async move { served.call("PUT", &path, body).await }
    };
    let secrets = json!({"ca": engine.ca, "cert": engine.client.cert, "key": engine.client.key});

    // What cannot be a TLS engine is refused before it is kept, at its pointer.
    for (endpoint, secrets, pointer) in [
        (
            "tcp://localhost:1/v1.41",
            secrets.clone(),
            "/connection/endpoint",
        ),
        ("ssh://localhost", secrets.clone(), "/connection/endpoint"),
        (
            endpoint.as_str(),
            json!({"ca": engine.ca, "cert": engine.client.cert}),
            "/secrets/key",
        ),
        (
            endpoint.as_str(),
            json!({"ca": engine.ca, "cert": "no", "key": engine.client.key}),
            "/secrets/cert",
        ),
        (
            endpoint.as_str(),
            json!({"ca": "no", "cert": engine.client.cert, "key": engine.client.key}),
            "/secrets/ca",
        ),
        (
            endpoint.as_str(),
            json!({"ca": engine.ca, "cert": engine.client.cert, "key": engine.client.key, "token": "x"}),
            "/secrets/token",
        ),
    ] {
        let (status, refused) = target("edge", endpoint, secrets).await;
        assert_eq!(
            (status, refused["error"]["path"].as_str()),
            (422, Some(pointer)),
            "{refused}"
        );
    }
    // The CLI sets the same from a directory as DOCKER_CERT_PATH holds it.
    let certs = tempfile::tempdir().unwrap();
    for (file, pem) in [
        ("ca.pem", &engine.ca),
        ("cert.pem", &engine.client.cert),
        ("key.pem", &engine.client.key),
    ] {
        std::fs::write(certs.path().join(file), pem).unwrap();
    }
    let out = server.cli(&[
        "target",
        "set",
        "edge",
        "--endpoint",
        &endpoint,
        "--cert-path",
        certs.path().to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let set: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(set["connection"]["endpoint"], endpoint.as_str(), "{set}");
    let (status, shown) = target("edge", &endpoint, secrets).await;
    assert_eq!(status, 200, "{shown}");
    assert!(
        !shown.to_string().contains("PRIVATE KEY"),
        "secrets are never shown: {shown}"
    );
    let namespace = shown["namespace"].as_str().unwrap().to_string();
    let image = &release["image"];
    let pinned = format!(
        "{}/{}@{}",
        image["registry"].as_str().unwrap(),
        image["repository"].as_str().unwrap(),
        image["digest"].as_str().unwrap()
    );
    let _leftovers = Leftovers(namespace.clone(), vec![pinned]);

    let port = free_port_pair();
    let (status, service) = server
        .call(
            "POST",
            "/api/v1/services",
            json!({
                "name": "orders", "target": "edge", "release": release["name"],
                "service_type": "NodePort", "ports": [{"container": 8080, "service": port}],
            }),
        )
        .await;
    assert_eq!(status, 201, "{service}");
    let id = service["id"].as_u64().unwrap();
    let job = server.operate(id, json!({"operation": "deploy"})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        post_orders(port, json!([40, 30])).await,
        json!({"total": 70, "size": "large"})
    );
    assert!(
        engine.accepted.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the deploy went through the TLS endpoint"
    );
    assert_eq!(containers(&namespace), [format!("{namespace}_orders_r1_0")]);

    // A client certificate the engine's CA did not sign gets nothing done.
    let (status, _) = target(
        "stranger",
        &endpoint,
        json!({"ca": engine.ca, "cert": engine.stranger.cert, "key": engine.stranger.key}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, refused) = server
        .call(
            "POST",
            "/api/v1/services",
            json!({"name": "orders", "target": "stranger", "release": release["name"]}),
        )
        .await;
    let other = refused["id"].as_u64().unwrap();
    let job = server.operate(other, json!({"operation": "deploy"})).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{job}"
    );
    let (_, stranger) = server
        .call("GET", "/api/v1/targets/stranger", Value::Null)
        .await;
    let stranger = stranger["namespace"].as_str().unwrap().to_string();
    assert_eq!(containers(&stranger), Vec::<String>::new());

    // The CLI takes a service by name, unless the name is on two targets.
    let out = server.cli(&["service", "show", "orders"]);
    assert!(!out.status.success());
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(
        why.contains("several targets") && why.contains(&format!("{id} on edge")),
        "{why}"
    );
    let out = server.cli(&["service", "show", &id.to_string(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (status, job) = server
        .call("DELETE", &format!("/api/v1/services/{id}"), Value::Null)
        .await;
    assert_eq!(status, 202, "{job}");
    let job = server
        .operation_ended(id, job["id"].as_u64().unwrap())
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(containers(&namespace), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_cut_off_by_a_kill_runs_again_to_the_end_without_duplicates() {
    let registry = TestRegistry::htpasswd(crate::distribution::USER, crate::distribution::PASSWORD);
    let mut server = Served::start(&registry).await;
    let release = ready_release(&server).await;
    let (_, target) = server
        .call("GET", "/api/v1/targets/local-docker", Value::Null)
        .await;
    let namespace = target["namespace"].as_str().unwrap().to_string();
    let pinned = format!(
        "{}/flows/orders@{}",
        registry.address,
        release["image"]["digest"].as_str().unwrap()
    );
    let _leftovers = Leftovers(namespace.clone(), vec![pinned]);
    let (status, service) = server
        .call(
            "POST",
            "/api/v1/services",
            json!({"name": "orders", "target": "local-docker", "release": release["name"], "replicas": 3}),
        )
        .await;
    assert_eq!(status, 201, "{service}");
    let id = service["id"].as_u64().unwrap();

    // A sequential deploy, killed once its first replica is up.
    let (status, job) = server
        .call(
            "POST",
            &format!("/api/v1/services/{id}/operations"),
            json!({"operation": "deploy", "containers": "sequential"}),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let job = job["id"].as_u64().unwrap();
    let path = format!("/api/v1/services/{id}/operations/{job}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, seen) = server.call("GET", &path, Value::Null).await;
        if seen["state"]["done"].as_u64().unwrap_or(0) >= 1 {
            assert_eq!(seen["status"], "running", "{seen}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the deploy did not get going: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill_and_restart().await;

    // Found interrupted at the start, run again from its saved step, to the end.
    let ended = server.operation_ended(id, job).await;
    assert_eq!(ended["status"], "succeeded", "{ended}");
    assert_eq!(ended["interruptions"], 1, "{ended}");
    assert_eq!(
        containers(&namespace),
        (0..3)
            .map(|i| format!("{namespace}_orders_r1_{i}"))
            .collect::<Vec<_>>(),
        "each replica once"
    );
    // Applying the same revision again changes nothing.
    let again = server.operate(id, json!({"operation": "deploy"})).await;
    assert_eq!(again["status"], "succeeded", "{again}");
    assert!(
        !again["state"]["applied"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().unwrap().starts_with("started ")),
        "{again}"
    );

    let (status, job) = server
        .call("DELETE", &format!("/api/v1/services/{id}"), Value::Null)
        .await;
    assert_eq!(status, 202, "{job}");
    let job = server
        .operation_ended(id, job["id"].as_u64().unwrap())
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(containers(&namespace), Vec::<String>::new());
}
