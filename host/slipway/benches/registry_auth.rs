//! Time each registry adapter's authentication adds to a warm release (a
//! new canvas version of a flow already pushed): with its provider token
//! kept from the release before, and with the adapter's cache emptied first
//! (as on the first push after a start). Beside the same release to an
//! anonymous CNCF registry, in the same run. The cloud control planes are
//! the test fakes on loopback, in front of a token-auth CNCF registry, so
//! the figures are the adapters' and the host's work plus loopback round
//! trips, not a cloud's latency.
//!
//! Needs `docker-registry` (Debian) and what `tests/support/src/static_engine.rs`
//! needs. `cargo bench -p slipway --bench registry_auth`

use slipway_test_support::aws;
use slipway_test_support::azure;
use slipway_test_support::google;
use slipway_test_support::oracle;
use slipway_test_support::registry;
use slipway_test_support::static_engine;
use slipway_test_support::token_server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use registry::TestRegistry;
use serde_json::{Value, json};
use slipway::config::Config;
use slipway::server::AppState;
use slipway_domain::registry::RegistrySettings;
use slipway_runtime::{Runtime, RuntimeConfig};
use slipway_store::{Status, Store, StoredRegistry, now_ms};
use token_server::{ISSUER, SERVICE, TokenIssuer};

/// Releases timed per adapter and cache state.
const RUNS: u32 = 9;

/// A trigger and three transforms.
fn canvas(step: u32) -> slipway_flow::canvas::Canvas {
    serde_json::from_value(json!({
        "nodes": [
            {"id": "in", "type": "http-trigger@^1", "config": {"method": "POST", "path": "/orders"}},
            {"id": "a", "type": "transform@^1", "config": {"expression": format!("{{n: {step}}}")}},
            {"id": "b", "type": "transform@^1", "config": {"expression": "{n: (.n + 1)}"}},
            {"id": "c", "type": "transform@^1", "config": {"expression": "{n: (.n * 2)}"}}
        ],
        "edges": [{"from": "in", "to": "a"}, {"from": "a", "to": "b"}, {"from": "b", "to": "c"}]
    }))
    .unwrap()
}

struct Bench {
    state: Arc<AppState>,
    org: u64,
    step: u32,
    _dir: tempfile::TempDir,
}

impl Bench {
    async fn start() -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let org = store
            .bootstrap("bench", None)
            .unwrap()
            .unwrap()
            .organisation
            .id;
        store.create_integration(org, "orders").unwrap();
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: Some(dir.path().join("code-cache")),
            // The registry (and the fakes) listen on loopback, as an
            // operator's `egress-allow` would let them be reached.
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
        Bench {
            state,
            org,
            step: 0,
            _dir: dir,
        }
    }

    fn use_registry(&self, change: Value) {
        let settings: RegistrySettings = serde_json::from_value(change).unwrap();
        let stored = StoredRegistry {
            settings: settings.to_stored(),
            resolved: None,
            code: None,
            changed_by: "bench".into(),
            changed_ms: now_ms(),
        };
        self.state.store.put_registry(self.org, &stored).unwrap();
    }

    /// A new canvas version released; the time from request to `ready`.
    async fn release(&mut self) -> Duration {
        self.step += 1;
        let store = &self.state.store;
        let version = store
            .add_canvas(self.org, "orders", &canvas(self.step))
            .unwrap();
        let started = Instant::now();
        let id = store
            .create_release(
                self.org,
                slipway_store::NewRelease::proposed("orders", version),
            )
            .unwrap()
            .id;
        self.state.jobs.wake();
        loop {
            let release = store.release(id).unwrap().unwrap();
            match release.status {
                Status::Ready => return started.elapsed(),
                Status::Failed => panic!("release failed: {:?}", release.error),
                _ => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    }

    /// Median warm release with the adapter's tokens kept, and with them
    /// dropped before each release.
    async fn measure(&mut self, change: Value) -> (Duration, Duration) {
        self.use_registry(change);
        self.release().await; // The first push: repository, layers.
        let mut kept = Vec::new();
        let mut cold = Vec::new();
        for _ in 0..RUNS {
            kept.push(self.release().await);
            self.state.registries.cache().clear();
            cold.push(self.release().await);
        }
        (median(kept), median(cold))
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap().to_string()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    static_engine::static_engine(env!("CARGO_TARGET_TMPDIR"));
    let anonymous = TestRegistry::anonymous();
    let issuer = TokenIssuer::new(&[("ci", "ci-password")]);
    let realm = issuer.serve().await;
    let registry = TestRegistry::token(&realm, SERVICE, ISSUER, &issuer.cert_pem);
    let google = google::FakeGoogle::start(&issuer).await;
    google
        .repositories
        .lock()
        .unwrap()
        .insert("projects/acme-flows/locations/europe-west1/repositories/flows".into());
    let ecr = aws::FakeEcr::start(&issuer, &format!("http://{}", registry.address)).await;
    let azure = azure::FakeAzure::start(&issuer).await;
    let ocir_issuer = TokenIssuer::new(&[]);
    let ocir = oracle::FakeOcir::start_token_service(&ocir_issuer).await;
    let ocir_registry = TestRegistry::token(&ocir.realm(), SERVICE, ISSUER, &ocir_issuer.cert_pem);
    ocir.start_front(&format!("http://{}", ocir_registry.address))
        .await;
    let ocir_user = format!("{}/bench", oracle::NAMESPACE);
    ocir_issuer.add_user(&ocir_user, "auth-token");

    let cases: Vec<(&str, Value)> = vec![
        (
            "distribution, anonymous (baseline)",
            json!({
                "adapter": "distribution",
                "settings": {"url": format!("http://{}", anonymous.address), "namespace": "flows"}
            }),
        ),
        (
            "distribution, token realm",
            json!({
                "adapter": "distribution",
                "settings": {"url": format!("http://{}", registry.address), "namespace": "dist", "username": "ci"},
                "secrets": {"password": "ci-password"}, "allowed-hosts": [host_of(&realm)]
            }),
        ),
        (
            "gcr (service-account key)",
            json!({
                "adapter": "gcr",
                "settings": {"registry": "europe-west1-docker.pkg.dev", "project": "acme-flows", "repository": "flows",
                             "endpoints": {"registry": format!("http://{}", registry.address), "token": google.token_url(), "artifact-registry": google.url}},
                "secrets": {"service-account-key": google::key_file(google::PRIVATE_KEY)},
                "allowed-hosts": [host_of(&realm), host_of(&google.url)]
            }),
        ),
        (
            "ecr (SigV4)",
            json!({
                "adapter": "ecr",
                "settings": {"account-id": aws::ACCOUNT, "region": aws::REGION, "access-key-id": aws::ACCESS_KEY_ID, "namespace": "flows",
                             "endpoints": {"api": ecr.api, "registry": format!("http://{}", ecr.registry())}},
                "secrets": {"secret-access-key": aws::SECRET_ACCESS_KEY},
                "allowed-hosts": [host_of(&ecr.api)]
            }),
        ),
        (
            "acr (service principal)",
            json!({
                "adapter": "acr",
                "settings": {"registry": azure::LOGIN_SERVER, "namespace": "acr", "tenant-id": azure::TENANT, "client-id": azure::CLIENT_ID,
                             "endpoints": {"registry": format!("http://{}", registry.address), "authority": azure.url, "token-server": azure.url}},
                "secrets": {"client-secret": azure::CLIENT_SECRET},
                "allowed-hosts": [host_of(&azure.url)]
            }),
        ),
        (
            "ocir (auth token)",
            json!({
                "adapter": "ocir",
                "settings": {"region": "iad", "namespace": oracle::NAMESPACE, "username": ocir_user, "prefix": "flows",
                             "endpoints": {"registry": format!("http://{}", ocir.registry())}},
                "secrets": {"auth-token": "auth-token"},
                "allowed-hosts": [host_of(&ocir.url)]
            }),
        ),
    ];

    let mut bench = Bench::start().await;
    println!("warm release, median of {RUNS}; added = over the anonymous baseline");
    println!("| adapter | token kept | added | first push (cache empty) | added |");
    println!("|---|---:|---:|---:|---:|");
    let mut baseline = None;
    for (name, change) in cases {
        let (kept, cold) = bench.measure(change).await;
        let base = *baseline.get_or_insert(kept);
        let added = |d: Duration| ms(d.saturating_sub(base));
        println!(
            "| {name} | {} | {} | {} | {} |",
            ms(kept),
            added(kept),
            ms(cold),
            added(cold)
        );
    }
}
