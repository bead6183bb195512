//! The built-in `kubernetes` deploy target, run in the sandbox like any
//! plugin: what it renders for services of every shape validates against
//! the official schemas of the pinned Kubernetes version
//! (`kubernetes-validate --strict`, PyPI), and it judges rollouts as
//! `kubectl rollout status` does.

use crate::common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;

use serde_json::{Value, json};
use slipway_domain::services::spec::{Placement, ServiceSpec};
use slipway_runtime::kinds::{Health, Observed, Rollout, Service};
use slipway_runtime::{CallContext, Kind, Plugin};
use slipway_test_support::kube_api::FakeKube;

/// The Kubernetes version manifests are validated against.
const KUBERNETES: &str = "1.33.0";
/// The pinned kubernetes-validate `.ci/run` installs.
const VALIDATOR: &str = "1.37.0";

fn service(spec: Value, rollout: Rollout) -> Service {
    let spec = ServiceSpec::parse(spec).unwrap();
    assert_eq!(spec.problems(), [], "the test's own service is valid");
    spec.to_target(Placement {
        id: 7,
        revision: 3,
        name: spec.name.as_deref().unwrap_or("web"),
        namespace: "shop",
        image: "registry.example:5000/shop/web@sha256:0a1b",
        release_image: true,
        labels: &BTreeMap::from([("deploy".to_string(), "canary".to_string())]),
        rollout,
    })
}

fn context(settings: Value) -> CallContext {
    CallContext {
        settings: Arc::from(settings.to_string()),
        ..CallContext::default()
    }
}

async fn plugin() -> Arc<Plugin> {
    let dir = tempfile::tempdir().unwrap();
    let store = slipway_store::Store::open(dir.path()).unwrap();
    let state = common::loaded(store).await;
    state
        .plugins
        .builtins()
        .resolve(Kind::DeployTarget, "kubernetes", &"^1".parse().unwrap())
        .unwrap()
}

#[tokio::test]
async fn rendered_manifests_validate_against_the_kubernetes_schemas() {
    let found = Command::new("kubernetes-validate")
        .arg("--version")
        .output();
    let version = found
        .as_ref()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string());
    assert!(
        version.as_ref().is_ok_and(|v| v.contains(VALIDATOR)),
        "kubernetes-validate {VALIDATOR} is on PATH (pip install kubernetes-validate=={VALIDATOR}); found {version:?}"
    );
    let plugin = plugin().await;
    assert_eq!(
        plugin.manifest().objects,
        Some(slipway_runtime::ObjectFamily::Kubernetes)
    );
    let services = [
        // Everything a long-running service can carry, published on every node.
        json!({
            "name": "web", "replicas": 3, "image": "registry.example:5000/shop/web:1",
            "requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"},
            "env": {"MODE": "production"}, "log_dir": "/var/log/web",
            "ports": [{"container": 8080, "service": 80}, {"container": 9090, "service": 9090, "protocol": "udp"}],
            "service_type": "NodePort",
            "mounts": [
                {"kind": "file", "host_path": "/etc/localtime", "container_path": "/etc/localtime", "read_only": true},
                {"kind": "character-device", "host_path": "/dev/ttyS0", "container_path": "/dev/ttyS0"},
                {"kind": "socket", "host_path": "/run/app.sock", "container_path": "/run/app.sock"},
                {"kind": "block-device", "host_path": "/dev/sdb", "container_path": "/dev/sdb"},
                {"kind": "directory", "host_path": "/srv/shared", "container_path": "/shared"}
            ],
            "labels": {"team": "payments"},
            "health_check": {"http": {"path": "/readyz", "port": 8080}, "interval_s": 5},
        }),
        // Storage: a StatefulSet with claims, behind a load balancer.
        json!({
            "name": "db", "image": "registry.example:5000/shop/db:16",
            "storage": [{"name": "data", "container_path": "/var/lib/db", "size": "10Gi"}],
            "ports": [{"container": 5432, "service": 5432}], "service_type": "LoadBalancer",
            "health_check": {"command": ["pg_isready"], "restart_on_failure": false},
        }),
        // Run once: a Job.
        json!({"name": "migrate", "kind": "run-once", "image": "registry.example:5000/shop/migrate:1", "host_network": true}),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut kinds = Vec::new();
    for (i, spec) in services.into_iter().enumerate() {
        let rollout = if i == 0 {
            Rollout::Sequential
        } else {
            Rollout::Parallel
        };
        let rendered = plugin
            .render(
                &context(json!({"storage-class": "fast"})),
                &service(spec, rollout),
            )
            .await
            .unwrap()
            .unwrap();
        for object in rendered {
            kinds.push(object.kind.clone());
            assert_eq!(
                object.body["metadata"]["namespace"], "shop",
                "{}",
                object.body
            );
            let path = dir
                .path()
                .join(format!("{i}-{}-{}.json", object.kind, object.name));
            std::fs::write(&path, object.body.to_string()).unwrap();
            files.push(path);
        }
    }
    assert_eq!(
        kinds,
        ["Deployment", "Service", "StatefulSet", "Service", "Job"]
    );
    let deployment: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(
        deployment["spec"]["strategy"]["rollingUpdate"],
        json!({"maxSurge": 1, "maxUnavailable": 0})
    );
    assert_eq!(pod["containers"][0]["resources"]["limits"]["cpu"], "1000m");
    assert_eq!(pod["volumes"][1]["hostPath"]["type"], "CharDevice");
    assert_eq!(
        deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "slipway"
    );
    assert_eq!(deployment["metadata"]["labels"]["deploy"], "canary");

    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", KUBERNETES])
        .args(&files)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");
    assert_eq!(
        report.matches(" passed for resource ").count(),
        files.len(),
        "{report}"
    );

    // A manifest the schemas refuse is refused: the check can fail.
    let wrong = dir.path().join("wrong.json");
    let mut broken = deployment.clone();
    broken["spec"]["replicas"] = json!("three");
    std::fs::write(&wrong, broken.to_string()).unwrap();
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", KUBERNETES])
        .arg(&wrong)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

fn observed(kind: &str, state: Value) -> Observed {
    Observed {
        kind: kind.into(),
        name: "web".into(),
        state: Some(state),
    }
}

#[tokio::test]
async fn rollouts_are_judged_as_kubectl_rollout_status_judges_them() {
    let plugin = plugin().await;
    let web = service(
        json!({"name": "web", "replicas": 2, "image": "registry.example/web:1"}),
        Rollout::Parallel,
    );
    let assess = |objects: Vec<Observed>| {
        let plugin = plugin.clone();
        let web = web.clone();
        async move {
            plugin
                .assess(&context(json!({})), &web, &objects)
                .await
                .unwrap()
        }
    };
    let deployment = |generation: i64, observed_generation: i64, status: Value| {
        let mut status = status;
        status["observedGeneration"] = json!(observed_generation);
        observed(
            "Deployment",
            json!({"metadata": {"generation": generation}, "spec": {"replicas": 2}, "status": status}),
        )
    };
    let progressing = |h: &Health| matches!(h, Health::Progressing(_));

    assert!(progressing(&assess(vec![]).await));
    // Counts from an older generation do not count, however good they look.
    let stale = deployment(
        2,
        1,
        json!({"replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
    );
    assert!(progressing(&assess(vec![stale]).await));
    let updating = deployment(
        2,
        2,
        json!({"replicas": 3, "updatedReplicas": 2, "availableReplicas": 2}),
    );
    assert!(
        progressing(&assess(vec![updating]).await),
        "an old replica still terminating"
    );
    let unavailable = deployment(
        2,
        2,
        json!({"replicas": 2, "updatedReplicas": 2, "availableReplicas": 1}),
    );
    assert!(progressing(&assess(vec![unavailable]).await));
    let done = deployment(
        2,
        2,
        json!({"replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
    );
    assert_eq!(assess(vec![done]).await, Health::Healthy);
    let stalled = deployment(
        2,
        2,
        json!({"conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}),
    );
    assert!(matches!(assess(vec![stalled]).await, Health::Failed(_)));

    // A pod the scheduler cannot place is named with its reason.
    let pending = observed(
        "Pod",
        json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False", "message": "0/3 nodes are available: 3 Insufficient memory."}]}}),
    );
    let updating = deployment(2, 2, json!({"replicas": 2, "updatedReplicas": 1}));
    match assess(vec![updating, pending]).await {
        Health::Progressing(detail) => assert!(detail.contains("Insufficient memory"), "{detail}"),
        other => panic!("{other:?}"),
    }

    // A Job ends complete or failed.
    let once = service(
        json!({"name": "migrate", "kind": "run-once", "image": "registry.example/m:1"}),
        Rollout::Parallel,
    );
    let job = |conditions: Value| {
        vec![observed(
            "Job",
            json!({"status": {"conditions": conditions}}),
        )]
    };
    let judge = |objects: Vec<Observed>| {
        let plugin = plugin.clone();
        let once = once.clone();
        async move {
            plugin
                .assess(&context(json!({})), &once, &objects)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        judge(job(json!([{"type": "Complete", "status": "True"}]))).await,
        Health::Healthy
    );
    assert!(matches!(
        judge(job(json!([{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]))).await,
        Health::Failed(m) if m.contains("BackoffLimitExceeded")
    ));
}

/// An organisation on a server whose jobs run, with a Kubernetes target
/// `cluster` on the test API server (namespace `shop`).
struct Cluster {
    state: Arc<slipway::server::AppState>,
    token: String,
    fake: Arc<FakeKube>,
    _dir: tempfile::TempDir,
}

const API_TOKEN: &str = "cluster-token";

impl Cluster {
    async fn start(settings: Value) -> Cluster {
        let fake = FakeKube::start(API_TOKEN).await;
        let dir = tempfile::tempdir().unwrap();
        let store = slipway_store::Store::open(dir.path()).unwrap();
        let token = store.bootstrap("acme", None).unwrap().unwrap().token;
        let state = common::state(store);
        state.load_plugins().await.unwrap();
        tokio::spawn(state.jobs.clone().run());
        let cluster = Cluster {
            state,
            token,
            fake,
            _dir: dir,
        };
        let (status, body) = cluster
            .call(
                "PUT",
                "/api/v1/targets/cluster",
                cluster.target(settings, API_TOKEN),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        cluster
    }

    fn target(&self, settings: Value, token: &str) -> Value {
        json!({
            "plugin": "kubernetes",
            "settings": settings,
            "connection": {"driver": "kubernetes", "server": self.fake.url, "namespace": "shop"},
            "secrets": {"token": token},
        })
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let (status, body) = common::call(
            &self.state,
            method,
            path,
            Some(&self.token),
            "application/json",
            body,
        )
        .await;
        (status.as_u16(), body)
    }

    /// Creates service `body` on `cluster`; its id.
    async fn service(&self, body: Value) -> u64 {
        let mut body = body;
        body["target"] = json!("cluster");
        let (status, service) = self.call("POST", "/api/v1/services", body).await;
        assert_eq!(status, 201, "{service}");
        service["id"].as_u64().unwrap()
    }

    /// Runs `operation` on service `id` and waits for its job to end.
    async fn operate(&self, id: u64, body: Value) -> Value {
        let (status, job) = self
            .call("POST", &format!("/api/v1/services/{id}/operations"), body)
            .await;
        assert_eq!(status, 202, "{job}");
        self.ended(id, job["id"].as_u64().unwrap()).await
    }

    /// Operation `job` of service `id` once it ended.
    async fn ended(&self, id: u64, job: u64) -> Value {
        let path = format!("/api/v1/services/{id}/operations/{job}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (_, job) = self.call("GET", &path, Value::Null).await;
            if ["succeeded", "failed", "stopped"].contains(&job["status"].as_str().unwrap_or("")) {
                return job;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the operation did not end: {job}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    fn pods(&self) -> Vec<String> {
        self.fake.names("pods", "shop")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_rolls_out_restarts_stops_and_goes_on_a_kubernetes_api_server() {
    let cluster = Cluster::start(json!({})).await;
    let id = cluster
        .service(json!({
            "name": "web",
            "image": "registry.example/shop/web:1",
            "replicas": 2,
            "requests": {"cpu": "100m", "memory": "64Mi"},
            "ports": [{"container": 8080, "service": 80}],
            "service_type": "NodePort",
            "labels": {"team": "payments"},
        }))
        .await;

    // Deployed: applied server-side as `slipway`, rolled out, observed.
    let job = cluster.operate(id, json!({"operation": "deploy"})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let applies = cluster.fake.requests_like("PATCH ");
    assert_eq!(applies.len(), 2, "a Service and a Deployment: {applies:?}");
    for apply in &applies {
        assert!(
            apply.contains("fieldManager=slipway")
                && apply.contains("force=true")
                && apply.ends_with("application/apply-patch+yaml"),
            "{apply}"
        );
    }
    let deployment = cluster.fake.object("deployments", "shop", "web").unwrap();
    assert_eq!(
        deployment["metadata"]["labels"]["slipway.dev/service"],
        id.to_string()
    );
    assert_eq!(deployment["metadata"]["labels"]["team"], "payments");
    assert_eq!(deployment["status"]["readyReplicas"], 2, "{deployment}");
    let service = cluster.fake.object("services", "shop", "web").unwrap();
    assert_eq!(service["spec"]["ports"][0]["port"], 80);
    assert!(
        service["spec"]["ports"][0]["nodePort"].is_u64(),
        "{service}"
    );
    let (_, shown) = cluster
        .call("GET", &format!("/api/v1/services/{id}"), Value::Null)
        .await;
    assert_eq!(shown["running"], 1, "{shown}");
    assert_eq!(
        (
            shown["observed"]["ready"].as_u64(),
            shown["observed"]["health"].as_str()
        ),
        (Some(2), Some("healthy")),
        "{shown}"
    );
    let pods_seen = shown["observed"]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["kind"] == "Pod")
        .count();
    assert_eq!(pods_seen, 2, "{shown}");
    let before = cluster.pods();

    // Deploying the same revision again changes no pod.
    let job = cluster.operate(id, json!({"operation": "deploy"})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(cluster.pods(), before);

    // A new revision, rolled one pod at a time.
    let (status, revised) = cluster
        .call(
            "PUT",
            &format!("/api/v1/services/{id}"),
            json!({
                "name": "web", "target": "cluster", "image": "registry.example/shop/web:2", "replicas": 2,
                "requests": {"cpu": "100m", "memory": "64Mi"},
                "ports": [{"container": 8080, "service": 80}], "service_type": "NodePort",
            }),
        )
        .await;
    assert_eq!(status, 200, "{revised}");
    let job = cluster
        .operate(
            id,
            json!({"operation": "deploy", "containers": "sequential"}),
        )
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let deployment = cluster.fake.object("deployments", "shop", "web").unwrap();
    assert_eq!(deployment["metadata"]["generation"], 2, "{deployment}");
    assert_eq!(
        deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
        1
    );
    assert_eq!(
        deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        0
    );
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example/shop/web:2"
    );
    let after = cluster.pods();
    assert_eq!(after.len(), 2);
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "{before:?} {after:?}"
    );

    // Restarted as `kubectl rollout restart` does, under a manager of its
    // own, so the next deploy keeps the annotation and rolls nothing.
    let job = cluster.operate(id, json!({"operation": "restart"})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let deployment = cluster.fake.object("deployments", "shop", "web").unwrap();
    assert!(
        deployment["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string(),
        "{deployment}"
    );
    let managers: Vec<&str> = deployment["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert_eq!(managers, ["slipway", "slipway-restart"]);
    let restarted = cluster.pods();
    assert!(
        restarted.iter().all(|p| !after.contains(p)),
        "{after:?} {restarted:?}"
    );
    let job = cluster.operate(id, json!({"operation": "deploy"})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(cluster.pods(), restarted);

    // Logs: each pod's lines after its name.
    let (status, logs) = cluster
        .call(
            "GET",
            &format!("/api/v1/services/{id}/logs?tail=5"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200);
    let logs = logs.as_str().unwrap().to_string();
    for pod in &restarted {
        assert!(
            logs.contains(&format!(
                "[{pod}] {pod} started registry.example/shop/web:2"
            )),
            "{logs}"
        );
    }

    // Stopped: no pods, the Deployment kept at zero; started again.
    let job = cluster.operate(id, json!({"operation": "stop"})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(cluster.pods(), Vec::<String>::new());
    let deployment = cluster.fake.object("deployments", "shop", "web").unwrap();
    assert_eq!(deployment["spec"]["replicas"], 0);
    let job = cluster.operate(id, json!({"operation": "start"})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(cluster.pods().len(), 2);

    // Deleted with foreground propagation: the pods went first, then the
    // objects, then the service.
    let (status, job) = cluster
        .call("DELETE", &format!("/api/v1/services/{id}"), Value::Null)
        .await;
    assert_eq!(status, 202, "{job}");
    let job = cluster.ended(id, job["id"].as_u64().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let deletes = cluster.fake.requests_like("DELETE ");
    assert_eq!(deletes.len(), 2, "{deletes:?}");
    assert!(
        deletes
            .iter()
            .all(|d| d.contains(r#""propagationPolicy":"Foreground""#)),
        "{deletes:?}"
    );
    assert_eq!(cluster.pods(), Vec::<String>::new());
    assert_eq!(
        cluster.fake.names("deployments", "shop"),
        Vec::<String>::new()
    );
    assert_eq!(cluster.fake.names("services", "shop"), Vec::<String>::new());
    let (status, _) = cluster
        .call("GET", &format!("/api/v1/services/{id}"), Value::Null)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_cluster_refuses_or_cannot_run_fails_the_operation_with_its_reason() {
    let cluster = Cluster::start(json!({"progress-deadline-s": 1})).await;

    // Pods that never turn ready: the rollout passes its deadline.
    let id = cluster
        .service(json!({"name": "crash", "image": "registry.example/shop/crash:1"}))
        .await;
    let job = cluster.operate(id, json!({"operation": "deploy"})).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("exceeded its progress deadline"),
        "{job}"
    );

    // More CPU than a node has: the scheduler's reason is the error.
    let id = cluster
        .service(json!({"name": "huge", "image": "registry.example/shop/huge:1", "requests": {"cpu": "64"}}))
        .await;
    let job = cluster.operate(id, json!({"operation": "deploy"})).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"].as_str().unwrap().contains("Insufficient cpu"),
        "{job}"
    );

    // A StatefulSet's claims cannot change: the API server's 422, verbatim.
    let storage = |size: &str| {
        json!({"name": "db", "target": "cluster", "image": "registry.example/shop/db:1",
               "storage": [{"name": "data", "container_path": "/data", "size": size}]})
    };
    let id = cluster.service(storage("1Gi")).await;
    let job = cluster.operate(id, json!({"operation": "deploy"})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        cluster.fake.names("persistentvolumeclaims", "shop"),
        ["data-db-0"]
    );
    let (status, body) = cluster
        .call("PUT", &format!("/api/v1/services/{id}"), storage("2Gi"))
        .await;
    assert_eq!(status, 200, "{body}");
    let job = cluster.operate(id, json!({"operation": "deploy"})).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("Forbidden: updates to statefulset spec"),
        "{job}"
    );
    assert!(job["error"].as_str().unwrap().contains("422"), "{job}");

    // An object of that name that is not the service's is left alone.
    let theirs = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "taken"},
        "spec": {"selector": {"matchLabels": {"app": "taken"}}, "template": {"metadata": {"labels": {"app": "taken"}}, "spec": {"containers": [{"name": "c", "image": "theirs:1"}]}}}});
    let made = reqwest::Client::new()
        .patch(format!(
            "{}/apis/apps/v1/namespaces/shop/deployments/taken?fieldManager=kubectl",
            cluster.fake.url
        ))
        .bearer_auth(API_TOKEN)
        .header("content-type", "application/apply-patch+yaml")
        .body(theirs.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 200);
    let id = cluster
        .service(json!({"name": "taken", "image": "registry.example/shop/taken:1"}))
        .await;
    let job = cluster.operate(id, json!({"operation": "deploy"})).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("is not this service's"),
        "{job}"
    );
    let kept = cluster.fake.object("deployments", "shop", "taken").unwrap();
    assert_eq!(
        kept["spec"]["template"]["spec"]["containers"][0]["image"],
        "theirs:1"
    );

    // A token the API server does not take.
    let (status, body) = cluster
        .call(
            "PUT",
            "/api/v1/targets/cluster",
            cluster.target(json!({}), "wrong"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id = cluster
        .service(json!({"name": "denied", "image": "registry.example/shop/denied:1"}))
        .await;
    let job = cluster.operate(id, json!({"operation": "deploy"})).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"].as_str().unwrap().contains("Unauthorized"),
        "{job}"
    );
}

/// A kubeconfig of one context: the cluster at `server`, and `user`'s
/// fields (YAML flow mapping entries).
fn kubeconfig(server: &str, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: shop\n\
         contexts:\n- name: shop\n  context: {{cluster: c, user: u, namespace: shop}}\n\
         clusters:\n- name: c\n  cluster: {{server: \"{server}\"}}\n\
         users:\n- name: u\n  user: {{{user}}}\n"
    )
}

#[tokio::test]
async fn kubernetes_targets_are_checked_before_they_are_kept() {
    let cluster = Cluster::start(json!({})).await;
    let set = |connection: Value, secrets: Value| json!({"plugin": "kubernetes", "connection": connection, "secrets": secrets});
    let cases = [
        (
            set(
                json!({"driver": "kubernetes", "server": "http://k8s.example:8080", "namespace": "shop"}),
                json!({}),
            ),
            "/connection/server",
        ),
        (
            set(
                json!({"driver": "kubernetes", "server": "https://169.254.169.254", "namespace": "shop"}),
                json!({}),
            ),
            "/connection/server",
        ),
        (
            set(
                json!({"driver": "kubernetes", "server": cluster.fake.url, "namespace": "Shop_1"}),
                json!({}),
            ),
            "/connection/namespace",
        ),
        (
            set(
                json!({"driver": "kubernetes", "server": cluster.fake.url, "namespace": "shop"}),
                json!({"password": "x"}),
            ),
            "/secrets/password",
        ),
        (
            set(
                json!({"driver": "kubernetes", "server": cluster.fake.url, "namespace": "shop"}),
                json!({"ca": "not a certificate"}),
            ),
            "/secrets/ca",
        ),
        (
            json!({"plugin": "docker", "connection": {"driver": "kubernetes", "server": cluster.fake.url, "namespace": "shop"}}),
            "/connection/driver",
        ),
        (
            set(
                json!({"driver": "kubernetes", "server": cluster.fake.url, "namespace": "shop"}),
                json!({"kubeconfig": kubeconfig(&cluster.fake.url, "exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: [-c, id]}")}),
            ),
            "/secrets/kubeconfig",
        ),
        (
            set(
                json!({"driver": "kubernetes", "server": cluster.fake.url, "namespace": "shop"}),
                json!({"kubeconfig": kubeconfig("https://elsewhere.example", &format!("token: {API_TOKEN}"))}),
            ),
            "/secrets/kubeconfig",
        ),
        (
            set(
                json!({"driver": "kubernetes", "server": cluster.fake.url, "namespace": "shop"}),
                json!({"kubeconfig": kubeconfig(&cluster.fake.url, "token: x"), "token": "y"}),
            ),
            "/secrets/kubeconfig",
        ),
    ];
    for (body, path) in cases {
        let (status, answer) = cluster
            .call("PUT", "/api/v1/targets/other", body.clone())
            .await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["error"]["path"], path, "{body}: {answer}");
    }
    let (status, _) = cluster
        .call("GET", "/api/v1/targets/other", Value::Null)
        .await;
    assert_eq!(status, 404);

    // A kubeconfig's inline token reaches the API server as the token does.
    let body = set(
        json!({"driver": "kubernetes", "server": cluster.fake.url, "namespace": "shop"}),
        json!({"kubeconfig": kubeconfig(&cluster.fake.url, &format!("token: {API_TOKEN}"))}),
    );
    let (status, answer) = cluster
        .call("PUT", "/api/v1/targets/configured", body)
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, service) = cluster
        .call(
            "POST",
            "/api/v1/services",
            json!({"name": "via", "target": "configured", "image": "registry.example/shop/via:1"}),
        )
        .await;
    assert_eq!(status, 201, "{service}");
    let job = cluster
        .operate(
            service["id"].as_u64().unwrap(),
            json!({"operation": "deploy"}),
        )
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(
        cluster
            .fake
            .names("deployments", "shop")
            .contains(&"via".to_string())
    );
    // Secrets are never shown.
    let (_, shown) = cluster
        .call("GET", "/api/v1/targets/cluster", Value::Null)
        .await;
    assert!(!shown.to_string().contains(API_TOKEN), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_an_earlier_server_made_is_updated_with_its_own_selector() {
    let cluster = Cluster::start(json!({})).await;
    let id = cluster
        .service(json!({"name": "legacy", "image": "registry.example/shop/legacy:1"}))
        .await;
    // As a server before the service's label went into selectors applied it.
    let selector =
        json!({"app.kubernetes.io/name": "legacy", "app.kubernetes.io/instance": "legacy"});
    let mut labels = selector.clone();
    labels["slipway.dev/service"] = json!(id.to_string());
    let old = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "legacy", "namespace": "shop", "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": selector},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "legacy", "image": "registry.example/shop/legacy:1"}]}}},
    });
    let applied = reqwest::Client::new()
        .patch(format!(
            "{}/apis/apps/v1/namespaces/shop/deployments/legacy?fieldManager=slipway&force=true",
            cluster.fake.url
        ))
        .bearer_auth(API_TOKEN)
        .header("content-type", "application/apply-patch+yaml")
        .body(old.to_string())
        .send()
        .await
        .unwrap();
    assert!(
        applied.status().is_success(),
        "{}",
        applied.text().await.unwrap()
    );

    let job = cluster.operate(id, json!({"operation": "deploy"})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let now = cluster
        .fake
        .object("deployments", "shop", "legacy")
        .unwrap();
    assert_eq!(
        now["spec"]["selector"]["matchLabels"], selector,
        "the selector it had"
    );
    assert_eq!(
        now["spec"]["template"]["spec"]["automountServiceAccountToken"], false,
        "the rest is the new plan's"
    );
}

impl Cluster {
    /// Stores `yaml` as a plan, runs it and waits for the execution to end.
    async fn run_plan(&self, yaml: &str) -> Value {
        let (status, plan) = common::call(
            &self.state,
            "POST",
            "/api/v1/plans",
            Some(&self.token),
            "application/yaml",
            yaml,
        )
        .await;
        assert_eq!(status, 201, "{plan}");
        let (status, execution) = self
            .call(
                "POST",
                &format!("/api/v1/plans/{}/executions", plan["id"]),
                Value::Null,
            )
            .await;
        assert_eq!(status, 202, "{execution}");
        let path = format!("/api/v1/executions/{}", execution["id"]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (_, execution) = self.call("GET", &path, Value::Null).await;
            if ["succeeded", "failed", "stopped"].contains(&execution["status"].as_str().unwrap()) {
                return execution;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the execution did not end: {execution}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_plan_rolls_out_wave_by_wave_on_a_kubernetes_api_server() {
    let cluster = Cluster::start(json!({})).await;
    let mut ids = BTreeMap::new();
    for (name, replicas) in [("db", 1), ("api", 2), ("web", 2)] {
        let id = cluster
            .service(json!({
                "name": name, "image": format!("registry.example/shop/{name}:1"), "replicas": replicas,
            }))
            .await;
        ids.insert(name, id);
    }
    let done = cluster
        .run_plan(&format!(
            "comment: the shop\ndeployPlanItems:\n  - {{serviceId: {db}, priority: 3, deployment: START, deployLabel: 'wave=first'}}\n  - {{serviceId: {api}, priority: 2, deployment: START, containerExecMethod: SEQUENTIAL}}\n  - {{serviceId: {web}, priority: 2, deployment: START}}\n",
            db = ids["db"],
            api = ids["api"],
            web = ids["web"]
        ))
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let waves = done["waves"].as_array().unwrap();
    let db = &waves[0]["items"][0];
    assert_eq!(
        (db["name"].as_str(), db["revision_after"].as_u64()),
        (Some("db"), Some(1))
    );
    for item in waves[1]["items"].as_array().unwrap() {
        assert!(
            item["started_ms"].as_u64() >= db["ended_ms"].as_u64(),
            "the second wave after the first: {done}"
        );
        assert_eq!(item["health"], "healthy", "{item}");
    }
    // The item's labels are on what it deployed.
    let deployment = cluster.fake.object("deployments", "shop", "db").unwrap();
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["labels"]["wave"], "first",
        "{deployment}"
    );
    assert_eq!(cluster.pods().len(), 5, "{:?}", cluster.pods());

    // Then web stops: scaled to zero, the others untouched.
    let done = cluster
        .run_plan(&format!(
            "deployPlanItems:\n  - {{serviceId: {}, deployment: STOP}}\n",
            ids["web"]
        ))
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let web = cluster.fake.object("deployments", "shop", "web").unwrap();
    assert_eq!(web["spec"]["replicas"], 0);
    assert_eq!(cluster.pods().len(), 3, "{:?}", cluster.pods());
}
