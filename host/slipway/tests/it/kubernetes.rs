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
