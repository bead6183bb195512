//! The server's own image store: an organisation with no registry keeps
//! its release images in the server, pulled over the OCI distribution API
//! at `/v2/` by skopeo and the Docker Engine, each organisation reading its
//! own only; deleting the release removes the tag and collects the blobs.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use slipway::config::Config;
use slipway::server::{AppState, router};
use slipway_oci::artifact::{Artifact, Blob, IMAGE_CONFIG, IMAGE_LAYER, MANIFEST};
use slipway_runtime::{Runtime, RuntimeConfig};
use slipway_store::Store;
use slipway_test_support::registry::skopeo_inspect;
use tower::ServiceExt;

use crate::distribution::{ADMIN, Served};
use crate::services::{Leftovers, free_port_pair, post_orders, ready_release};

/// The blob files the store holds, every organisation's.
fn blob_files(data: &std::path::Path) -> usize {
    let Ok(organisations) = std::fs::read_dir(data.join("images")) else {
        return 0;
    };
    organisations
        .flatten()
        .filter_map(|o| std::fs::read_dir(o.path().join("blobs/sha256")).ok())
        .map(|blobs| blobs.count())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_with_no_registry_is_kept_pulled_and_run_from_the_server() {
    // No registry, and no `egress-allow` but for the TLS engine below: the
    // server's own store needs neither.
    let server = Served::start_with("egress-allow = [\"127.0.0.1/32\"]\n").await;
    let address = server.url.trim_start_matches("http://").to_string();
    let release = ready_release(&server).await;
    let image = &release["image"];
    let digest = image["digest"].as_str().unwrap().to_string();
    assert_eq!(
        image["reference"],
        format!("{address}/default/orders:v1"),
        "{release}"
    );
    assert_eq!(image["adapter"], "slipway-images");
    assert!(
        blob_files(&server.data_dir()) >= 5,
        "3 layers, a config and a manifest"
    );

    // skopeo pulls by tag and by digest with a Slipway token; not without.
    let creds = format!("ci:{ADMIN}");
    let by_tag = skopeo_inspect(&format!("{address}/default/orders:v1"), Some(&creds)).unwrap();
    assert_eq!(by_tag["Digest"], digest.as_str());
    assert_eq!(by_tag["Layers"].as_array().unwrap().len(), 3);
    let pinned = format!("{address}/default/orders@{digest}");
    assert_eq!(
        skopeo_inspect(&pinned, Some(&creds)).unwrap()["Digest"],
        digest.as_str()
    );
    let refused = skopeo_inspect(&pinned, None).unwrap_err();
    assert!(
        refused.contains("unauthorized") || refused.contains("401"),
        "{refused}"
    );
    let refused = skopeo_inspect(&pinned, Some("ci:not-a-token")).unwrap_err();
    assert!(
        refused.contains("unauthorized") || refused.contains("401"),
        "{refused}"
    );

    // The Docker Engine pulls it with a credential the server mints, and runs it.
    let (_, target) = server
        .call("GET", "/api/v1/targets/local-docker", Value::Null)
        .await;
    let namespace = target["namespace"].as_str().unwrap().to_string();
    let _leftovers = Leftovers(namespace, vec![pinned.clone()]);
    let port = free_port_pair();
    let (status, service) = server
        .call(
            "POST",
            "/api/v1/services",
            json!({
                "name": "orders",
                "target": "local-docker",
                "release": release["name"],
                "service_type": "NodePort",
                "ports": [{"container": 8080, "service": port}],
            }),
        )
        .await;
    assert_eq!(status, 201, "{service}");
    assert_eq!(service["image"], pinned.as_str());
    let id = service["id"].as_u64().unwrap();
    let job = server.operate(id, json!({"operation": "deploy"})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(
        job["state"]["applied"]
            .as_array()
            .unwrap()
            .contains(&json!(format!("pulled {pinned}"))),
        "{job}"
    );
    assert_eq!(
        post_orders(port, json!([40, 30])).await,
        json!({"total": 70, "size": "large"})
    );
    let (status, job) = server
        .call("DELETE", &format!("/api/v1/services/{id}"), Value::Null)
        .await;
    assert_eq!(status, 202, "{job}");
    let job = server
        .operation_ended(id, job["id"].as_u64().unwrap())
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");

    // Another engine cannot pull from the server's store: refused before
    // any password is handed to it.
    let engine = slipway_test_support::docker_tls::DockerTls::start().await;
    let (status, edge) = server
        .call(
            "PUT",
            "/api/v1/targets/edge",
            json!({"plugin": "docker",
                   "connection": {"driver": "docker", "endpoint": format!("tcp://localhost:{}", engine.address.port())},
                   "secrets": {"ca": engine.ca, "cert": engine.client.cert, "key": engine.client.key}}),
        )
        .await;
    assert_eq!(status, 200, "{edge}");
    let (_, elsewhere) = server
        .call(
            "POST",
            "/api/v1/services",
            json!({"name": "orders", "target": "edge", "release": release["name"]}),
        )
        .await;
    let elsewhere = elsewhere["id"].as_u64().unwrap();
    let job = server
        .operate(elsewhere, json!({"operation": "deploy"}))
        .await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("only the server's own Docker Engine pulls from"),
        "{job}"
    );
    let (status, job) = server
        .call(
            "DELETE",
            &format!("/api/v1/services/{elsewhere}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let job = server
        .operation_ended(elsewhere, job["id"].as_u64().unwrap())
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");

    // Deleting the release removes its tag and collects its blobs.
    let (status, _) = server
        .call(
            "DELETE",
            &format!("/api/v1/releases/{}", release["id"]),
            Value::Null,
        )
        .await;
    assert_eq!(status, 202);
    let deleted = server.settled(release["id"].as_u64().unwrap()).await;
    assert_eq!(deleted["status"], "deleted", "{deleted}");
    let last = deleted["log"].as_array().unwrap().last().unwrap()["message"].clone();
    assert_eq!(
        last,
        format!("deleted, and {pinned} from the image store"),
        "{deleted}"
    );
    let gone = skopeo_inspect(&format!("{address}/default/orders:v1"), Some(&creds)).unwrap_err();
    assert!(
        gone.contains("manifest unknown") || gone.contains("not found"),
        "{gone}"
    );
    assert_eq!(blob_files(&server.data_dir()), 0);
}

/// A server state keeping images, with two organisations' tokens.
struct TwoTenants {
    state: Arc<AppState>,
    /// `default`'s id and token.
    id: u64,
    default: String,
    beta: String,
    orders: Artifact,
}

async fn two_tenants(dir: &std::path::Path) -> TwoTenants {
    let store = Store::open(&dir.join("db")).unwrap();
    let made = store.bootstrap("default", None).unwrap().unwrap();
    let (id, default) = (made.organisation.id, made.token);
    let beta = store.create_organisation("beta").unwrap();
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    let state = AppState::listening(store, runtime, &config, "127.0.0.1:7420".parse().unwrap());
    let artifact = |layer: &[u8]| {
        Artifact::new(
            Blob::new(IMAGE_CONFIG, b"{}".to_vec()),
            vec![Blob::new(IMAGE_LAYER, layer.to_vec())],
            &Default::default(),
        )
    };
    let images = state.registries.images().unwrap();
    let orders = artifact(b"default's orders");
    images.put(id, "orders", "v1", &orders).await.unwrap();
    images
        .put(id, "orders", "v2", &artifact(b"v2"))
        .await
        .unwrap();
    images
        .put(
            beta.organisation.id,
            "orders",
            "v1",
            &artifact(b"beta's orders"),
        )
        .await
        .unwrap();
    TwoTenants {
        state,
        id,
        default,
        beta: beta.token,
        orders,
    }
}

impl TwoTenants {
    async fn get(
        &self,
        method: &str,
        path: &str,
        authorization: Option<String>,
    ) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let response = router(self.state.clone())
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, body.to_vec())
    }

    /// The OCI error code of an answer.
    async fn code(
        &self,
        method: &str,
        path: &str,
        authorization: Option<String>,
    ) -> (StatusCode, String) {
        let (status, _, body) = self.get(method, path, authorization).await;
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (
            status,
            body["errors"][0]["code"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    }
}

fn basic(user: &str, password: &str) -> Option<String> {
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    Some(format!("Basic {pair}"))
}

fn bearer(token: &str) -> Option<String> {
    Some(format!("Bearer {token}"))
}

#[tokio::test]
async fn each_organisation_pulls_its_own_images_only_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let tenants = two_tenants(dir.path()).await;
    let manifest = "/v2/default/orders/manifests/v1";

    // No credentials: the challenge Docker answers with `docker login`'s.
    let (status, headers, _) = tenants.get("GET", "/v2/", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Basic realm=\"slipway\"");
    assert_eq!(headers["docker-distribution-api-version"], "registry/2.0");
    assert_eq!(
        tenants.code("GET", manifest, None).await,
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED".into())
    );
    assert_eq!(
        tenants.code("GET", manifest, basic("ci", "guess")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, _, _) = tenants.get("GET", "/v2/", bearer(&tenants.default)).await;
    assert_eq!(status, StatusCode::OK);

    // By tag and digest, as Basic or Bearer, GET or HEAD.
    let orders = &tenants.orders;
    for authorization in [basic("anyone", &tenants.default), bearer(&tenants.default)] {
        let (status, headers, body) = tenants.get("GET", manifest, authorization).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], MANIFEST);
        assert_eq!(
            headers["docker-content-digest"],
            orders.manifest.digest.as_str()
        );
        assert_eq!(body, orders.manifest.bytes.to_vec());
    }
    let by_digest = format!("/v2/default/orders/manifests/{}", orders.manifest.digest);
    let (status, headers, body) = tenants
        .get("HEAD", &by_digest, bearer(&tenants.default))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["content-length"],
        orders.manifest.bytes.len().to_string().as_str()
    );
    assert!(body.is_empty());
    let layer = &orders.layers[0];
    let blob = format!("/v2/default/orders/blobs/{}", layer.digest);
    let (status, headers, body) = tenants.get("GET", &blob, bearer(&tenants.default)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["docker-content-digest"], layer.digest.as_str());
    assert_eq!(body, layer.bytes.to_vec());
    let (_, _, tags) = tenants
        .get(
            "GET",
            "/v2/default/orders/tags/list?n=1&last=v1",
            bearer(&tenants.default),
        )
        .await;
    assert_eq!(
        serde_json::from_slice::<Value>(&tags).unwrap(),
        json!({"name": "default/orders", "tags": ["v2"]})
    );

    // Another organisation's token reads nothing of it, not even by digest
    // through a repository of its own.
    let beta = || bearer(&tenants.beta);
    assert_eq!(
        tenants.code("GET", manifest, beta()).await,
        (StatusCode::NOT_FOUND, "NAME_UNKNOWN".into())
    );
    assert_eq!(tenants.code("GET", &blob, beta()).await.1, "NAME_UNKNOWN");
    let (status, _, _) = tenants
        .get("GET", "/v2/beta/orders/manifests/v1", beta())
        .await;
    assert_eq!(status, StatusCode::OK, "its own");
    let through_own = format!("/v2/beta/orders/blobs/{}", layer.digest);
    assert_eq!(
        tenants.code("GET", &through_own, beta()).await,
        (StatusCode::NOT_FOUND, "BLOB_UNKNOWN".into())
    );
    let through_own = format!("/v2/beta/orders/manifests/{}", orders.manifest.digest);
    assert_eq!(
        tenants.code("GET", &through_own, beta()).await.1,
        "MANIFEST_UNKNOWN"
    );

    // A password minted for a Docker Engine reads its organisation only.
    let images = tenants.state.registries.images().unwrap();
    let password = images.pull_password(tenants.id);
    let pull = || basic(slipway_domain::images::PULL_USER, &password);
    assert_eq!(tenants.get("GET", manifest, pull()).await.0, StatusCode::OK);
    assert_eq!(
        tenants
            .code("GET", "/v2/beta/orders/manifests/v1", pull())
            .await
            .1,
        "NAME_UNKNOWN"
    );
    assert_eq!(
        tenants
            .code(
                "GET",
                manifest,
                basic(slipway_domain::images::PULL_USER, &tenants.default)
            )
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "a token is no pull password"
    );

    // Paths out of the store, and writes, get nowhere.
    for path in [
        "/v2/default/..%2F..%2Fdb/manifests/v1",
        "/v2/default/orders/manifests/..%2F..%2F..%2Fdb",
        "/v2/default/orders/blobs/sha256:..%2F..%2Fdb",
        "/v2/default/orders/blobs/../../../db/manifests/v1",
        "/v2/default/orders/extra/manifests/v1",
    ] {
        let (status, _) = tenants.code("GET", path, bearer(&tenants.default)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    for method in ["PUT", "POST", "PATCH", "DELETE"] {
        assert_eq!(
            tenants
                .code(method, manifest, bearer(&tenants.default))
                .await,
            (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED".into()),
            "{method}"
        );
    }
    assert_eq!(
        tenants
            .get("GET", manifest, bearer(&tenants.default))
            .await
            .0,
        StatusCode::OK
    );
}
