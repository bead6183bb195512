//! The Kubernetes target's costs, each beside a baseline in the same run:
//!
//! - `render` and `assess` of the built-in `kubernetes@1` per call, in its
//!   sandbox, beside `validate-settings` of `{}` (the smallest call into the
//!   same plugin: what entering the sandbox costs);
//! - applying 50 services (a Deployment and a Service each) to the test API
//!   server through the host's driver (the plugin's render, the driver's
//!   checks, the owner read and the server-side apply), beside the same 100
//!   apply requests sent straight to the server: Slipway's cost per object
//!   beside the server's own time.
//!
//! `cargo bench --workspace --bench kubernetes`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use slipway::config::Config;
use slipway::server::AppState;
use slipway_domain::services::spec::{Placement, ServiceSpec};
use slipway_domain::targets::kubernetes::{FIELD_MANAGER, KubernetesDriver, ObjectRef, plan};
use slipway_runtime::kinds::{Observed, Rollout, Service};
use slipway_runtime::{CallContext, Egress, Kind, Runtime, RuntimeConfig};
use slipway_store::Store;
use slipway_test_support::kube_api::FakeKube;

/// Calls timed of each plugin function.
const CALLS: usize = 300;
/// Services applied per round.
const SERVICES: u64 = 50;
/// Rounds of applies each way.
const ROUNDS: usize = 5;

fn service(id: u64) -> Service {
    let spec = ServiceSpec::parse(json!({
        "name": format!("web-{id}"),
        "image": "registry.example/shop/web:1",
        "replicas": 3,
        "requests": {"cpu": "100m", "memory": "64Mi"},
        "limits": {"cpu": "1", "memory": "256Mi"},
        "env": {"MODE": "production", "REGION": "eu"},
        "ports": [{"container": 8080, "service": 80}],
        "service_type": "NodePort",
        "labels": {"team": "payments"},
        "health_check": {"http": {"path": "/readyz", "port": 8080}},
    }))
    .unwrap();
    spec.to_target(Placement {
        id,
        revision: 1,
        name: spec.name.as_deref().unwrap(),
        namespace: "bench",
        image: "registry.example/shop/web:1",
        release_image: false,
        labels: &BTreeMap::new(),
        rollout: Rollout::Parallel,
    })
}

fn per_call(total: Duration, calls: usize) -> String {
    format!("{:.0} µs", total.as_secs_f64() * 1e6 / calls as f64)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.path().join("code-cache")),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let state = AppState::new(store, runtime, &config);
    state.load_plugins().await.unwrap();
    let plugin = state
        .plugins
        .builtins()
        .resolve(Kind::DeployTarget, "kubernetes", &"^1".parse().unwrap())
        .unwrap();
    let context = CallContext {
        settings: Arc::from("{}"),
        ..CallContext::default()
    };

    // Per call.
    let web = service(1);
    let rendered = plugin.render(&context, &web).await.unwrap().unwrap();
    let mut observed: Vec<Observed> = rendered
        .iter()
        .map(|o| {
            let mut state = o.body.clone();
            state["metadata"]["generation"] = json!(1);
            state["status"] = json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3});
            Observed {
                kind: o.kind.clone(),
                name: o.name.clone(),
                state: Some(state),
            }
        })
        .collect();
    for i in 0..3 {
        observed.push(Observed {
            kind: "Pod".into(),
            name: format!("web-1-{i}"),
            state: Some(json!({"metadata": {"name": format!("web-1-{i}")}, "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})),
        });
    }
    let settings = json!({});
    let mut rows = Vec::new();
    for _ in 0..20 {
        plugin.validate_settings(&context, &settings).await.unwrap();
    }
    let started = Instant::now();
    for _ in 0..CALLS {
        plugin.validate_settings(&context, &settings).await.unwrap();
    }
    let baseline = started.elapsed();
    let started = Instant::now();
    for _ in 0..CALLS {
        plugin.render(&context, &web).await.unwrap().unwrap();
    }
    rows.push(("render (Deployment + Service)", started.elapsed()));
    let started = Instant::now();
    for _ in 0..CALLS {
        plugin.assess(&context, &web, &observed).await.unwrap();
    }
    rows.push(("assess (Deployment, Service, 3 pods)", started.elapsed()));
    println!("kubernetes@1 per call, mean of {CALLS}");
    println!("| call | per call | baseline: validate-settings | ratio |");
    println!("|---|---:|---:|---:|");
    for (label, took) in rows {
        println!(
            "| {label} | {} | {} | {:.2}× |",
            per_call(took, CALLS),
            per_call(baseline, CALLS),
            took.as_secs_f64() / baseline.as_secs_f64()
        );
    }

    // Applying 50 services.
    let fake = FakeKube::start("bench-token").await;
    let secrets = BTreeMap::from([("token".to_string(), "bench-token".to_string())]);
    let driver = KubernetesDriver::new(&fake.url, "bench", &secrets, Egress::loopback()).unwrap();
    let http = reqwest::Client::new();
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut objects = 0;
    for round in 0..ROUNDS {
        // A new generation each round, so every apply changes something.
        let started = Instant::now();
        let mut bodies: Vec<Value> = Vec::new();
        for id in 1..=SERVICES {
            let mut service = service(id);
            service.env.push(("ROUND".into(), format!("{round}")));
            let rendered = plugin.render(&context, &service).await.unwrap().unwrap();
            for object in plan(&rendered, &service).unwrap() {
                driver.apply(id, &object, FIELD_MANAGER).await.unwrap();
                bodies.push(object);
            }
        }
        ours.push(started.elapsed());
        objects = bodies.len();
        // The same bodies, changed again, straight to the server.
        for body in &mut bodies {
            if let Some(env) = body
                .pointer_mut("/spec/template/spec/containers/0/env")
                .and_then(Value::as_array_mut)
            {
                env.push(json!({"name": "DIRECT", "value": format!("{round}")}));
            }
        }
        let started = Instant::now();
        for body in &bodies {
            let target = ObjectRef::of_value(body);
            let plural = match target.kind.as_str() {
                "Deployment" => "apis/apps/v1/namespaces/bench/deployments",
                _ => "api/v1/namespaces/bench/services",
            };
            let answer = http
                .patch(format!(
                    "{}/{plural}/{}?fieldManager=slipway&force=true",
                    fake.url, target.name
                ))
                .bearer_auth("bench-token")
                .header("content-type", "application/apply-patch+yaml")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert!(
                answer.status().is_success(),
                "{}",
                answer.text().await.unwrap()
            );
            answer.bytes().await.unwrap();
        }
        theirs.push(started.elapsed());
    }
    let (ours, theirs) = (median(ours), median(theirs));
    println!();
    println!(
        "{SERVICES} services ({objects} objects) applied to the test API server, median of {ROUNDS}"
    );
    println!("| way | total | per object |");
    println!("|---|---:|---:|");
    println!(
        "| Slipway (render, checks, owner read, apply) | {} | {} |",
        ms(ours),
        per_call(ours, objects)
    );
    println!(
        "| the same applies sent straight (baseline) | {} | {} |",
        ms(theirs),
        per_call(theirs, objects)
    );
    println!(
        "| Slipway's own cost | {} | {} |",
        ms(ours.saturating_sub(theirs)),
        per_call(ours.saturating_sub(theirs), objects)
    );
}
