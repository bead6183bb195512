//! Deploying a release as a service of two replicas on this machine's
//! Docker Engine, beside the Docker CLI doing the same in the same run: a
//! network and two `docker run`s. Timed twice each way:
//!
//! - until both run: Slipway with no health check (running is healthy),
//!   the CLI until the engine says both are running;
//! - until both are ready: Slipway with a health check on `/readyz` every
//!   second (the engine's own check, which is how Slipway knows), the CLI
//!   polling `/readyz` on each container's address every 20 ms (the CLI's
//!   `--health-cmd` runs in a shell, which `FROM scratch` images lack).
//!
//! The image is pulled before either is timed.
//!
//! Then a sequential restart of a 3-replica service under a steady load
//! (100 requests/s) to its DNS alias from another container: a caller
//! service whose flow posts each request it gets to `http://orders:8080`,
//! loaded from the host; the requests that failed and the time the restart
//! took, beside the same load as long with no restart.
//!
//! Then a deploy plan of 20 services in 4 waves of 5 (RESTART, STOP,
//! START, RESTART): the execution's wall time beside, in the same run, the
//! same operations run directly wave by wave, summing each wave's slowest.
//!
//! Needs `docker-registry` (Debian), Docker, and what
//! `tests/support/src/static_engine.rs` needs.
//! `cargo bench --workspace --bench deploy`

use slipway_test_support::registry;
use slipway_test_support::static_engine;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use registry::TestRegistry;
use serde_json::json;
use slipway::config::Config;
use slipway::server::AppState;
use slipway_domain::registry::RegistrySettings;
use slipway_domain::services::spec::ServiceSpec;
use slipway_domain::services::{NewService, Operation, OperationRequest};
use slipway_runtime::{Runtime, RuntimeConfig};
use slipway_store::{JobStatus, Status, Store, StoredRegistry, now_ms};

/// Deploys timed each way.
const RUNS: usize = 7;
fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `docker run` twice on a new network, then waits for both running, or
/// for both to answer `/readyz`.
async fn baseline(image: &str, run: usize, ready: bool) -> Duration {
    let network = format!("slipway-bench-{}-{run}-{ready}", std::process::id());
    let names: Vec<String> = (0..2).map(|i| format!("{network}-{i}")).collect();
    let started = Instant::now();
    docker(&["network", "create", "--label", "slipway.bench=1", &network]);
    for name in &names {
        docker(&[
            "run",
            "-d",
            "--label",
            "slipway.bench=1",
            "--name",
            name,
            "--network",
            &network,
            "--network-alias",
            "orders",
            image,
        ]);
    }
    let http = reqwest::Client::new();
    for name in &names {
        loop {
            let state = docker(&[
                "inspect",
                "--format",
                "{{.State.Running}} {{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                name,
            ]);
            let (running, address) = state.split_once(' ').unwrap_or((&state, ""));
            if running == "true" && !ready {
                break;
            }
            if running == "true" && !address.is_empty() {
                let answer = http
                    .get(format!("http://{address}:8080/readyz"))
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await;
                if answer.is_ok_and(|a| a.status().is_success()) {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let took = started.elapsed();
    for name in &names {
        docker(&["rm", "-f", name]);
    }
    docker(&["network", "rm", &network]);
    took
}

struct Bench {
    state: Arc<AppState>,
    org: u64,
    _dir: tempfile::TempDir,
}

impl Bench {
    async fn start(registry: &TestRegistry) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let org = store
            .bootstrap("bench", None)
            .unwrap()
            .unwrap()
            .organisation
            .id;
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: Some(dir.path().join("code-cache")),
            egress: slipway_runtime::Egress::loopback(),
            ..RuntimeConfig::default()
        })
        .unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            engine_binary: Some(static_engine::static_engine(env!("CARGO_TARGET_TMPDIR"))),
            ..Config::default()
        };
        let state = AppState::new(store, runtime, &config);
        state.load_plugins().await.unwrap();
        tokio::spawn(state.clone().start());
        let settings: RegistrySettings = serde_json::from_value(json!({
            "adapter": "distribution",
            "settings": {"url": format!("http://{}", registry.address), "namespace": "flows"}
        }))
        .unwrap();
        let stored = StoredRegistry {
            settings: settings.to_stored(),
            resolved: None,
            code: None,
            changed_by: "bench".into(),
            changed_ms: now_ms(),
        };
        state.store.put_registry(org, &stored).unwrap();
        Bench {
            state,
            org,
            _dir: dir,
        }
    }

    /// Releases `canvas` as integration `integration`; answers the
    /// release's name and pinned image.
    async fn release(&self, integration: &str, canvas: serde_json::Value) -> (String, String) {
        let store = &self.state.store;
        if store.integration(self.org, integration).is_err() {
            store.create_integration(self.org, integration).unwrap();
        }
        let canvas = serde_json::from_value(canvas).unwrap();
        let version = store.add_canvas(self.org, integration, &canvas).unwrap();
        let release = store
            .create_release(
                self.org,
                slipway_store::NewRelease::proposed(integration, version),
            )
            .unwrap();
        self.state.jobs.wake();
        loop {
            let release = store.release(release.id).unwrap().unwrap();
            match release.status {
                Status::Ready => {
                    return (release.name, release.image.unwrap().pinned());
                }
                Status::Failed => panic!("the release failed: {:?}", release.error),
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    async fn operate(&self, service: u64, operation: Operation) -> Duration {
        self.operate_with(service, operation, OperationRequest::default())
            .await
    }

    async fn operate_with(
        &self,
        service: u64,
        operation: Operation,
        request: OperationRequest,
    ) -> Duration {
        let started = Instant::now();
        let job = self
            .state
            .services
            .operate(self.org, service, operation, request, "bench")
            .unwrap();
        loop {
            let job = self.state.store.job(job.id).unwrap().unwrap();
            match job.status {
                JobStatus::Succeeded => return started.elapsed(),
                JobStatus::Failed | JobStatus::Stopped => {
                    panic!("{operation:?} ended {:?}: {:?}", job.status, job.error)
                }
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    /// Creates service `spec`; its id.
    async fn create(&self, spec: serde_json::Value) -> u64 {
        let spec = ServiceSpec::parse(spec).unwrap();
        self.state
            .services
            .create(self.org, NewService::from_spec(spec).unwrap(), "bench")
            .unwrap()
            .id
    }

    /// Creates the service and deploys it: the call to both healthy, with
    /// a check of its own on `/readyz` every second, or the engine's.
    async fn deploy(&self, release: &str, run: usize, checked: bool) -> Duration {
        let mut spec = json!({
            "name": format!("orders-{run}-{checked}"),
            "target": "local-docker",
            "release": release,
            "replicas": 2,
        });
        if checked {
            spec["health_check"] = json!({"http": {"path": "/readyz", "port": 8080}, "interval_s": 1, "timeout_s": 3, "retries": 3});
        }
        let spec = ServiceSpec::parse(spec).unwrap();
        let started = Instant::now();
        let service = self
            .state
            .services
            .create(self.org, NewService::from_spec(spec).unwrap(), "bench")
            .unwrap();
        self.operate(service.id, Operation::Deploy).await;
        let took = started.elapsed();
        self.operate(service.id, Operation::Delete).await;
        took
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    static_engine::static_engine(env!("CARGO_TARGET_TMPDIR"));
    let registry = TestRegistry::anonymous();
    let bench = Bench::start(&registry).await;
    let orders = json!({
        "nodes": [
            {"id": "in", "type": "http-trigger@^1", "config": {"method": "POST", "path": "/orders"}},
            {"id": "sum", "type": "transform@^1", "config": {"expression": "{total: (.items | add)}"}}
        ],
        "edges": [{"from": "in", "to": "sum"}]
    });
    let (release, image) = bench.release("orders", orders).await;
    docker(&["pull", "-q", &image]);
    let mut rows = Vec::new();
    // A release's service with no check of its own runs with the engine's
    // (`/readyz`): both wait for the same readiness as the baseline.
    for (label, checked) in [
        ("both ready, the engine's own check (none set)", false),
        ("both ready, a check every second", true),
    ] {
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for run in 0..RUNS {
            ours.push(bench.deploy(&release, run, checked).await);
            theirs.push(baseline(&image, run, true).await);
        }
        rows.push((label, median(ours), median(theirs)));
    }
    let restart = restart_under_load(&bench, &release).await;
    let plan = plan_beside_its_operations(&bench, &release).await;
    docker(&["rmi", "-f", &image]);
    println!("two replicas, from the call, median of {RUNS}");
    println!("| until | Slipway | Docker CLI (baseline) | ratio |");
    println!("|---|---:|---:|---:|");
    for (label, ours, theirs) in rows {
        println!(
            "| {label} | {} | {} | {:.2}× |",
            ms(ours),
            ms(theirs),
            ours.as_secs_f64() / theirs.as_secs_f64()
        );
    }

    println!();
    println!(
        "a sequential restart of 3 replicas under {} requests/s to their DNS alias from another container",
        1000 / LOAD_EVERY.as_millis()
    );
    println!("| | time | requests | failed |");
    println!("|---|---:|---:|---:|");
    for (label, took, (sent, failed)) in restart {
        println!("| {label} | {} | {sent} | {failed} |", ms(took));
    }

    println!();
    println!(
        "a plan of 20 services in 4 waves of 5 (RESTART, STOP, START, RESTART), median of {PLAN_RUNS}"
    );
    println!("| | time |");
    println!("|---|---:|");
    let (execution, direct) = plan;
    println!(
        "| the execution, from the call to `succeeded` | {} |",
        ms(execution)
    );
    println!(
        "| the same operations run directly, each wave's slowest summed (baseline) | {} |",
        ms(direct)
    );
    println!(
        "| over the baseline | {} ({:.1}%) |",
        ms(execution.saturating_sub(direct)),
        (execution.as_secs_f64() / direct.as_secs_f64() - 1.0) * 100.0
    );
}

/// Plan executions timed, and their operations run directly as often.
const PLAN_RUNS: usize = 5;

/// 20 services of `release`; a plan of four waves over them, timed beside
/// its operations run directly wave by wave (the sum of each wave's
/// slowest), alternately, each from the same starting state.
async fn plan_beside_its_operations(bench: &Bench, release: &str) -> (Duration, Duration) {
    let mut ids = Vec::new();
    for i in 0..20 {
        let id = bench
            .create(json!({"name": format!("p{i}"), "target": "local-docker", "release": release}))
            .await;
        bench.operate(id, Operation::Deploy).await;
        ids.push(id);
    }
    let waves: [(Operation, &[u64]); 4] = [
        (Operation::Restart, &ids[0..5]),
        (Operation::Stop, &ids[5..10]),
        (Operation::Start, &ids[10..15]),
        (Operation::Restart, &ids[15..20]),
    ];
    let mut yaml = String::from("comment: bench\ndeployPlanItems:\n");
    for (n, (operation, services)) in waves.iter().enumerate() {
        let deployment = match operation {
            Operation::Restart => "RESTART",
            Operation::Stop => "STOP",
            _ => "START",
        };
        for id in *services {
            yaml.push_str(&format!(
                "  - {{serviceId: {id}, priority: {}, deployment: {deployment}}}\n",
                4 - n
            ));
        }
    }
    let plan = bench
        .state
        .plans
        .create(bench.org, &yaml, "bench")
        .unwrap()
        .id;
    // Before each run: the services the plan stops run, those it starts do not.
    let reset = || async {
        let mut ops = Vec::new();
        for id in &ids[5..10] {
            ops.push(bench.operate(*id, Operation::Start));
        }
        for id in &ids[10..15] {
            ops.push(bench.operate(*id, Operation::Stop));
        }
        futures::future::join_all(ops).await;
    };
    let mut executions = Vec::new();
    let mut directs = Vec::new();
    for _ in 0..PLAN_RUNS {
        reset().await;
        let mut direct = Duration::ZERO;
        for (operation, services) in &waves {
            let took =
                futures::future::join_all(services.iter().map(|id| bench.operate(*id, *operation)))
                    .await;
            direct += took.into_iter().max().unwrap();
        }
        directs.push(direct);
        reset().await;
        let started = Instant::now();
        let execution = bench.state.plans.run(bench.org, plan, "bench").unwrap().id;
        loop {
            let job = bench.state.store.job(execution).unwrap().unwrap();
            match job.status {
                JobStatus::Succeeded => break,
                JobStatus::Failed | JobStatus::Stopped => {
                    panic!("the execution ended {:?}: {:?}", job.status, job.error)
                }
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        executions.push(started.elapsed());
    }
    for id in ids {
        bench.operate(id, Operation::Delete).await;
    }
    (median(executions), median(directs))
}

/// Between two requests of the steady load.
const LOAD_EVERY: Duration = Duration::from_millis(10);

/// Requests sent at a steady rate, each in a task of its own, counted.
struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<(u64, u64)>,
}

impl Load {
    /// Posts an order to the caller on `port` every [`LOAD_EVERY`].
    fn start(port: u16) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut sent = tokio::task::JoinSet::new();
            let mut tick = tokio::time::interval(LOAD_EVERY);
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                let http = http.clone();
                sent.spawn(async move {
                    let answer = http
                        .post(format!("http://127.0.0.1:{port}/call"))
                        .body(r#"{"items": [40, 30]}"#)
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    match answer {
                        Ok(a) if a.status().is_success() => {
                            a.text().await.is_ok_and(|t| t.contains("70"))
                        }
                        _ => false,
                    }
                });
            }
            let (mut total, mut failed) = (0, 0);
            while let Some(ok) = sent.join_next().await {
                total += 1;
                if !ok.unwrap_or(false) {
                    failed += 1;
                }
            }
            (total, failed)
        });
        Load { stop, task }
    }

    /// Stops sending; answers requests sent and failed once all ended.
    async fn stop(self) -> (u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// A free port on this machine, 1024 or above.
fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `orders` with 3 replicas and a caller whose flow posts to
/// `http://orders:8080/orders` on the target's network; the host loads the
/// caller while `orders` restarts one replica at a time, then the same load
/// as long without a restart (the baseline).
async fn restart_under_load(
    bench: &Bench,
    orders: &str,
) -> Vec<(&'static str, Duration, (u64, u64))> {
    let caller = json!({
        "nodes": [
            {"id": "in", "type": "http-trigger@^1", "config": {"method": "POST", "path": "/call"}},
            {"id": "call", "type": "http-call@^1", "config": {"url": "http://orders:8080/orders", "method": "POST", "timeoutMs": 5000}}
        ],
        "edges": [{"from": "in", "to": "call"}]
    });
    let (caller, caller_image) = bench.release("caller", caller).await;
    let check = json!({"http": {"path": "/readyz", "port": 8080}, "interval_s": 1, "timeout_s": 3, "retries": 3});
    let orders = bench
        .create(json!({"name": "orders", "target": "local-docker", "release": orders, "replicas": 3, "health_check": check}))
        .await;
    let port = free_port();
    let caller = bench
        .create(json!({
            "name": "caller", "target": "local-docker", "release": caller, "health_check": check,
            "ports": [{"container": 8080, "service": port}], "service_type": "NodePort",
        }))
        .await;
    bench.operate(orders, Operation::Deploy).await;
    bench.operate(caller, Operation::Deploy).await;
    let settle = Duration::from_secs(1);
    let load = Load::start(port);
    tokio::time::sleep(settle).await;
    let sequential = OperationRequest {
        sequential: true,
        ..OperationRequest::default()
    };
    let took = bench
        .operate_with(orders, Operation::Restart, sequential)
        .await;
    tokio::time::sleep(settle).await;
    let restarted = load.stop().await;
    let load = Load::start(port);
    tokio::time::sleep(took + settle * 2).await;
    let steady = load.stop().await;
    bench.operate(caller, Operation::Delete).await;
    bench.operate(orders, Operation::Delete).await;
    docker(&["rmi", "-f", &caller_image]);
    vec![
        (
            "restart, with 1 s of load before and after",
            took,
            restarted,
        ),
        ("no restart, as long (baseline)", took + settle * 2, steady),
    ]
}
