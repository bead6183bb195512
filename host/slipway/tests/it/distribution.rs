//! Compilation and distribution against real parts: the static engine, the
//! CNCF distribution registry on 127.0.0.1, skopeo, and this machine's
//! Docker Engine. A release goes from canvas to an image in the registry,
//! and that image runs the flow.
//!
//! Needs `docker-registry` and `skopeo` (Debian), Docker, and what
//! `tests/support/src/static_engine.rs` needs.

use crate::common;
use crate::releasing;
use slipway_test_support::docker;
use slipway_test_support::registry;
use slipway_test_support::static_engine;
use slipway_test_support::token_server;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use docker::Docker;
use registry::{TestRegistry, skopeo_inspect};
use releasing::{Releaser as Hostile, canvas};
use serde_json::{Value, json};
use static_engine::static_engine;
use token_server::TokenIssuer;

pub(crate) const USER: &str = "ci";
pub(crate) const PASSWORD: &str = "hunter2-registry";

/// `slipway serve` as an operator installs it: a configuration file naming
/// the engine and the registry. Its log goes to a file the test reads.
pub(crate) struct Served {
    child: Child,
    pub(crate) url: String,
    log: std::path::PathBuf,
    http: reqwest::Client,
    dir: tempfile::TempDir,
}

pub(crate) const ADMIN: &str = "slw_distribution_test";

impl Served {
    pub(crate) async fn start(registry: &TestRegistry) -> Served {
        Served::start_with(&format!(
            "# The registry runs on this machine.\n\
             egress-allow = [\"127.0.0.1/32\"]\n\n\
             [registry]\nadapter = \"distribution\"\nversion = \"^1\"\n\
             settings = {{ url = \"http://{address}\", namespace = \"flows\", username = \"{USER}\" }}\n\
             secrets = {{ password = \"{PASSWORD}\" }}\n",
            address = registry.address,
        ))
        .await
    }

    /// The same, with `settings` (TOML) after the data directory, the
    /// listen address, the admin token and the engine.
    pub(crate) async fn start_with(settings: &str) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("slipway.toml");
        std::fs::write(
            &config,
            format!(
                "data-dir = {data:?}\nlisten = \"127.0.0.1:0\"\nadmin-token = \"{ADMIN}\"\n\
                 engine-binary = {engine:?}\n{settings}",
                data = dir.path().join("data").display().to_string(),
                engine = static_engine(env!("CARGO_TARGET_TMPDIR"))
                    .display()
                    .to_string(),
            ),
        )
        .unwrap();
        let log = dir.path().join("server.log");
        let (child, url) = Served::spawn(&config, &log);
        let served = Served {
            child,
            url,
            log,
            http: reqwest::Client::new(),
            dir,
        };
        served.ready().await;
        served
    }

    /// `slipway serve` with `config`, its log appended to `log`; its
    /// address once it listens.
    fn spawn(config: &std::path::Path, log: &std::path::Path) -> (Child, String) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_slipway"))
            .arg("serve")
            .env("SLIPWAY_CONFIG", config)
            .env("SLIPWAY_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let url = loop {
            let mut line = String::new();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "serve exited early"
            );
            if let Some(url) = line.trim().strip_prefix("listening on ") {
                break url.to_string();
            }
        };
        (child, url)
    }

    async fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.call("GET", "/readyz", Value::Null).await.0 != 200 {
            assert!(Instant::now() < deadline, "the server did not get ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the server with SIGKILL, as a crash would, and starts it
    /// again on the same data (on another port).
    pub(crate) async fn kill_and_restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let (child, url) = Served::spawn(&self.dir.path().join("slipway.toml"), &self.log);
        (self.child, self.url) = (child, url);
        self.ready().await;
    }

    pub(crate) async fn call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.url))
            .bearer_auth(ADMIN);
        if !body.is_null() {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub(crate) async fn settled(&self, id: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let (_, release) = self
                .call("GET", &format!("/api/v1/releases/{id}"), Value::Null)
                .await;
            if ["ready", "failed", "deleted"].contains(&release["status"].as_str().unwrap_or("")) {
                return release;
            }
            assert!(
                Instant::now() < deadline,
                "release {id} did not settle: {release}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Where it keeps its state.
    pub(crate) fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// The CLI, as a CI pipeline calls it.
    pub(crate) fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(args)
            .env("SLIPWAY_SERVER", &self.url)
            .env("SLIPWAY_TOKEN", ADMIN)
            .env("SLIPWAY_CLIENT_CONFIG", self.dir.path().join("client.toml"))
            .output()
            .unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_is_pushed_to_the_registry_and_runs_on_docker() {
    let registry = TestRegistry::htpasswd(USER, PASSWORD);
    let server = Served::start(&registry).await;
    let (status, _) = server
        .call("POST", "/api/v1/integrations", json!({"name": "orders"}))
        .await;
    assert_eq!(status, 201);
    for threshold in [100, 50] {
        let (status, body) = server
            .call(
                "POST",
                "/api/v1/integrations/orders/versions",
                canvas(threshold),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    // The registry came from the configuration file; the secret is not shown.
    let (status, shown) = server.call("GET", "/api/v1/registry", Value::Null).await;
    assert_eq!(status, 200);
    assert_eq!(shown["resolved"], "distribution@1.0.0");
    assert_eq!(shown["secrets"], json!(["password"]));
    assert_eq!(shown["changed-by"], "configuration");

    // A CI pipeline releases version 1 and follows it to the end.
    let out = server.cli(&["release", "create", "orders", "--version", "1", "--follow"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The stream starts at whatever status the release has reached by then,
    // so earlier stages may be behind it; what it shows comes in order.
    let order = ["queued", "packaging", "compiling", "distributing", "ready"];
    let seen: Vec<usize> = text
        .lines()
        .filter_map(|line| line.split_once("] ")?.1.split_whitespace().next())
        .map(|status| order.iter().position(|o| *o == status).expect(status))
        .collect();
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{text}");
    assert_eq!(seen.last(), Some(&4), "{text}");
    let (_, list) = server.call("GET", "/api/v1/releases", Value::Null).await;
    let first = list[0]["id"].as_u64().unwrap();
    let release = server.settled(first).await;
    assert_eq!(release["status"], "ready", "{release}");
    let image = &release["image"];
    let reference = format!("{}/flows/orders:v1", registry.address);
    assert_eq!(image["reference"], reference);
    let digest = image["digest"].as_str().unwrap().to_string();
    assert_eq!(
        image["push"]["uploaded"], 4,
        "3 layers and the config: {image}"
    );
    let stages: Vec<&str> = release["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["packaging", "compiling", "distributing"]);

    // skopeo, an independent client, sees the same image.
    let creds = format!("{USER}:{PASSWORD}");
    let inspected = skopeo_inspect(&reference, Some(&creds)).unwrap();
    assert_eq!(inspected["Digest"], digest);
    assert_eq!(
        inspected["Labels"]["org.opencontainers.image.title"],
        "orders"
    );
    assert_eq!(inspected["Labels"]["org.opencontainers.image.version"], "1");
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 3);
    assert!(skopeo_inspect(&reference, Some("ci:wrong")).is_err());

    // Docker pulls it by digest and runs it; the flow answers.
    let pinned = format!("{}/flows/orders@{digest}", registry.address);
    let answer = run_image(&registry, &pinned, "/orders", json!({"items": [40, 30]})).await;
    assert_eq!(answer, json!({"total": 70, "size": "small"}));

    // The same version again: the same image, nothing new uploaded.
    let (_, again) = server
        .call(
            "POST",
            "/api/v1/releases",
            common::release_body("orders", 1),
        )
        .await;
    let again = server.settled(again["id"].as_u64().unwrap()).await;
    assert_eq!(again["image"]["digest"], digest, "reproducible");
    assert_eq!(again["image"]["push"]["uploaded"], 0, "{again}");

    // Version 2 changed only the canvas: only the flow layer and the config go up.
    let (_, second) = server
        .call(
            "POST",
            "/api/v1/releases",
            common::release_body("orders", 2),
        )
        .await;
    let second = server.settled(second["id"].as_u64().unwrap()).await;
    assert_eq!(second["status"], "ready", "{second}");
    let push = &second["image"]["push"];
    assert_eq!(
        (push["uploaded"].as_u64(), push["present"].as_u64()),
        (Some(2), Some(2)),
        "{push}"
    );
    let flow_layer = second["image"]["layers"][2]["size"].as_u64().unwrap();
    assert!(
        push["bytes_uploaded"].as_u64().unwrap() < flow_layer + 4096,
        "only the flow layer, config and manifest: {push}"
    );
    for layer in [0, 1] {
        assert_eq!(
            second["image"]["layers"][layer]["digest"],
            release["image"]["layers"][layer]["digest"]
        );
    }

    // Deleting a release whose image another release shares keeps the image.
    let (status, _) = server
        .call("DELETE", &format!("/api/v1/releases/{first}"), Value::Null)
        .await;
    assert_eq!(status, 202);
    let deleted = server.settled(first).await;
    let last = deleted["log"].as_array().unwrap().last().unwrap()["message"].clone();
    assert!(
        last.as_str().unwrap().contains("has the same one"),
        "{last}"
    );
    assert!(skopeo_inspect(&pinned, Some(&creds)).is_ok());
    // Deleting the last one deletes the manifest.
    let (status, _) = server
        .call(
            "DELETE",
            &format!("/api/v1/releases/{}", again["id"]),
            Value::Null,
        )
        .await;
    assert_eq!(status, 202);
    let deleted = server.settled(again["id"].as_u64().unwrap()).await;
    assert_eq!(deleted["status"], "deleted");
    let last = deleted["log"].as_array().unwrap().last().unwrap()["message"].clone();
    assert!(
        last.as_str().unwrap().contains("from the registry"),
        "{last}"
    );
    assert!(skopeo_inspect(&pinned, Some(&creds)).is_err());

    // The password never reached the log, the API or the CLI.
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(log.contains("registry set from the configuration"), "{log}");
    for text in [log, text, release.to_string(), shown.to_string()] {
        assert!(!text.contains(PASSWORD));
    }
}

/// A TCP proxy in front of the registry that can cut a connection once
/// after some bytes of upload, or go down.
#[derive(Clone)]
struct Proxy {
    address: String,
    mode: Arc<Mutex<Mode>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Pass,
    /// Cut the first connection that sends more than this many bytes.
    CutOnceAfter(usize),
    /// After this many bytes of one connection, refuse everything.
    DownAfter(usize),
    Down,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Proxy {
            address: listener.local_addr().unwrap().to_string(),
            mode: Arc::new(Mutex::new(Mode::Pass)),
        };
        let mode = proxy.mode.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if *mode.lock().unwrap() == Mode::Down {
                    continue;
                }
                tokio::spawn(relay(client, upstream.clone(), mode.clone()));
            }
        });
        proxy
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

async fn relay(client: tokio::net::TcpStream, upstream: String, mode: Arc<Mutex<Mode>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let back = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    });
    let mut sent = 0;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match client_read.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        sent += n;
        let cut = {
            let mut mode = mode.lock().unwrap();
            match *mode {
                Mode::CutOnceAfter(limit) if sent > limit => {
                    *mode = Mode::Pass;
                    true
                }
                Mode::DownAfter(limit) if sent > limit => {
                    *mode = Mode::Down;
                    true
                }
                Mode::Down => true,
                _ => false,
            }
        };
        if cut || server_write.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    back.abort();
}

/// Pulls `pinned` from the test registry into Docker, runs it, and answers
/// what the flow replies to `body` posted at `path`. The container and the
/// image are removed before it returns.
async fn run_image(registry: &TestRegistry, pinned: &str, path: &str, body: Value) -> Value {
    let docker = Docker::new();
    let digest = pinned.rsplit(':').next().unwrap();
    let container = format!("slipway-test-{}-{}", &digest[..12], std::process::id());
    let _cleanup = docker.cleanup(&container, pinned);
    docker.login(&registry.address, USER, PASSWORD);
    docker.run(&["pull", "-q", pinned]);
    docker.run(&[
        "run",
        "-d",
        "--name",
        &container,
        "-p",
        "127.0.0.1::8080",
        pinned,
    ]);
    let address = docker.ready(&container).await;
    reqwest::Client::new()
        .post(format!("http://{address}{path}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The `distribution` adapter's settings for these tests.
trait DistributionRegistry {
    async fn set_registry(&self, address: &str, password: &str);
    async fn set_registry_allowing(&self, address: &str, password: &str, allowed_hosts: &[&str]);
}

impl DistributionRegistry for Hostile {
    async fn set_registry(&self, address: &str, password: &str) {
        self.set_registry_allowing(address, password, &[]).await;
    }

    /// The registry at `address`, its adapter also granted `allowed_hosts`.
    async fn set_registry_allowing(&self, address: &str, password: &str, allowed_hosts: &[&str]) {
        let (status, body) = self
            .call(
                "PUT",
                "/api/v1/registry",
                json!({"adapter": "distribution", "settings": {"url": format!("http://{address}"), "namespace": "flows", "username": USER},
                       "secrets": {"password": password}, "allowed-hosts": allowed_hosts}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_registry_settings_are_refused_with_the_field_at_fault() {
    let server = Hostile::start().await;
    let cases = [
        (json!({"adapter": "nope"}), "/adapter"),
        (
            json!({"adapter": "distribution", "settings": {"url": "ftp://x"}}),
            "/settings/url",
        ),
        (
            json!({"adapter": "distribution", "settings": {"url": "http://x", "namespace": "Flows"}}),
            "/settings/namespace",
        ),
        (
            json!({"adapter": "distribution", "settings": {"url": "http://x", "colour": "blue"}}),
            "/settings/colour",
        ),
        (
            json!({"adapter": "distribution", "settings": {"url": "http://x"}, "secrets": {"token": "t"}}),
            "/secrets/token",
        ),
        (
            json!({"adapter": "distribution", "version": "^2", "settings": {"url": "http://x"}}),
            "/adapter",
        ),
    ];
    for (body, path) in cases {
        let (status, error) = server.call("PUT", "/api/v1/registry", body.clone()).await;
        assert_eq!(status, 422, "{body}: {error}");
        assert_eq!(error["error"]["path"], path, "{body}: {error}");
    }
    let (status, _) = server.call("GET", "/api/v1/registry", Value::Null).await;
    assert_eq!(status, 404, "nothing was stored");

    // A viewer reads the registry but cannot change it.
    let (_, viewer) = server
        .call(
            "POST",
            "/api/v1/users",
            json!({"name": "vera", "role": "viewer"}),
        )
        .await;
    let token = viewer["token"].as_str().unwrap();
    let (status, _) = common::call(
        &server.state,
        "PUT",
        "/api/v1/registry",
        Some(token),
        "application/json",
        json!({"adapter": "distribution", "settings": {"url": "http://x"}}).to_string(),
    )
    .await;
    assert_eq!(status.as_u16(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_registries_fail_releases_clearly_and_retries_recover() {
    let registry = TestRegistry::htpasswd(USER, PASSWORD);
    let proxy = Proxy::start(registry.address.clone()).await;
    let server = Hostile::start().await;

    // Wrong credentials: a clear error that does not carry the secret.
    server
        .set_registry(&proxy.address, "not-the-password")
        .await;
    let release = server.release("orders").await;
    assert_eq!(release["status"], "failed");
    let error = release["error"].as_str().unwrap();
    assert!(
        error.contains("refused the password of user `ci`"),
        "{error}"
    );
    assert!(
        !release.to_string().contains("not-the-password"),
        "{release}"
    );

    // A repository name the adapter's rules refuse fails before any upload.
    server.set_registry(&proxy.address, PASSWORD).await;
    let release = server.release("orders-").await;
    assert_eq!(release["status"], "failed");
    let error = release["error"].as_str().unwrap();
    assert!(error.contains("repository `flows/orders-`"), "{error}");

    // An upload cut off half way is retried on a new upload session.
    proxy.set(Mode::CutOnceAfter(1 << 20));
    let release = server.release("orders").await;
    assert_eq!(release["status"], "ready", "{release}");
    assert_eq!(*proxy.mode.lock().unwrap(), Mode::Pass, "the cut happened");
    let digest = release["image"]["digest"].as_str().unwrap();
    let reference = format!("{}/flows/orders@{digest}", registry.address);
    let creds = format!("{USER}:{PASSWORD}");
    assert_eq!(
        skopeo_inspect(&reference, Some(&creds)).unwrap()["Digest"],
        digest
    );

    // The registry goes down mid-push: the release fails, saying so ...
    let fresh = TestRegistry::htpasswd(USER, PASSWORD);
    let proxy = Proxy::start(fresh.address.clone()).await;
    server.set_registry(&proxy.address, PASSWORD).await;
    proxy.set(Mode::DownAfter(1 << 20));
    let release = server.release("orders").await;
    assert_eq!(release["status"], "failed", "{release}");
    let error = release["error"].as_str().unwrap();
    assert!(error.contains("unavailable"), "{error}");
    // ... and once it is back, a new release of the same version succeeds.
    proxy.set(Mode::Pass);
    let release = server.release("orders").await;
    assert_eq!(release["status"], "ready", "{release}");
    assert_eq!(release["image"]["digest"], digest, "the same image");
}

/// A registry with token authentication, as the issuer at `realm` signs them.
fn token_registry(issuer: &TokenIssuer, realm: &str) -> TestRegistry {
    use token_server::{ISSUER, SERVICE};
    TestRegistry::token(realm, SERVICE, ISSUER, &issuer.cert_pem)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_registries_get_scoped_tokens_renewed_when_refused() {
    use std::sync::atomic::Ordering;
    let issuer = TokenIssuer::new(&[(USER, PASSWORD)]);
    let realm = issuer.serve().await;
    let registry = token_registry(&issuer, &realm);
    let server = Hostile::start().await;
    // The token service is on another host than the registry: the adapter
    // may call it only once an operator allows it.
    let realm_host = realm
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    server.set_registry(&registry.address, PASSWORD).await;
    let release = server.release("orders").await;
    assert_eq!(release["status"], "failed", "{release}");
    let error = release["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("`{realm_host}` is not among the hosts")),
        "{error}"
    );

    // A wrong password is refused by the token realm: a clear error, no secret.
    server
        .set_registry_allowing(&registry.address, "not-the-password", &[&realm_host])
        .await;
    let release = server.release("orders").await;
    assert_eq!(release["status"], "failed", "{release}");
    let error = release["error"].as_str().unwrap();
    assert!(error.contains("refused"), "{error}");
    assert!(!release.to_string().contains("not-the-password"));

    // The adapter asks the realm for push and pull on the repository.
    server
        .set_registry_allowing(&registry.address, PASSWORD, &[&realm_host])
        .await;
    let release = server.release("orders").await;
    assert_eq!(release["status"], "ready", "{release}");
    assert!(
        issuer
            .asked
            .lock()
            .unwrap()
            .contains(&"repository:flows/orders:pull,push".to_string())
    );
    let digest = release["image"]["digest"].as_str().unwrap();
    let reference = format!("{}/flows/orders@{digest}", registry.address);
    let creds = format!("{USER}:{PASSWORD}");
    assert_eq!(
        skopeo_inspect(&reference, Some(&creds)).unwrap()["Digest"],
        digest,
        "skopeo gets its own token and sees the image"
    );

    // A token the registry no longer accepts is renewed mid-push; shared
    // layers are mounted, with pull asked on the repository they come from.
    issuer.stale.store(1, Ordering::SeqCst);
    let issued = issuer.issued.load(Ordering::SeqCst);
    let release = server.release("billing").await;
    assert_eq!(release["status"], "ready", "{release}");
    assert_eq!(
        issuer.stale.load(Ordering::SeqCst),
        0,
        "the stale token was used"
    );
    assert!(issuer.issued.load(Ordering::SeqCst) >= issued + 2);
    assert_eq!(release["image"]["push"]["mounted"], 2, "{release}");
    assert!(
        issuer
            .asked
            .lock()
            .unwrap()
            .contains(&"repository:flows/orders:pull".to_string())
    );

    // Without pull rights on the sources the registry refuses the mounts;
    // the push uploads instead.
    *issuer.unreadable.lock().unwrap() = vec!["flows/orders".into(), "flows/billing".into()];
    let release = server.release("shipping").await;
    assert_eq!(release["status"], "ready", "{release}");
    assert_eq!(release["image"]["push"]["mounted"], 0, "{release}");
    assert_eq!(release["image"]["push"]["uploaded"], 4, "{release}");
}

/// Harbor's project API as the `harbor` adapter uses it: HEAD (or GET)
/// `/api/v2.0/projects?project_name=`, POST `/api/v2.0/projects`, with
/// basic authentication; `ci` may create projects, robot accounts may not.
/// It also serves the registry's token realm, `/service/token`, as Harbor does.
struct FakeHarbor {
    address: String,
    created: Arc<Mutex<Vec<String>>>,
}

impl FakeHarbor {
    async fn start(issuer: &Arc<TokenIssuer>) -> FakeHarbor {
        use axum::extract::{Query, State};
        use axum::http::{HeaderMap, StatusCode};
        use axum::routing::get;
        use base64::Engine as _;

        type Projects = Arc<Mutex<Vec<String>>>;
        fn user(headers: &HeaderMap) -> Option<String> {
            let value = headers.get("authorization")?.to_str().ok()?;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(value.strip_prefix("Basic ")?)
                .ok()?;
            let (user, password) = String::from_utf8(decoded)
                .ok()?
                .split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))?;
            let known = (user == USER && password == PASSWORD)
                || (user.starts_with("robot$") && password == "robot-secret");
            known.then_some(user)
        }
        async fn check(
            State(projects): State<Projects>,
            headers: HeaderMap,
            Query(query): Query<std::collections::HashMap<String, String>>,
        ) -> StatusCode {
            if user(&headers).is_none() {
                return StatusCode::UNAUTHORIZED;
            }
            let name = query.get("project_name").cloned().unwrap_or_default();
            if projects.lock().unwrap().contains(&name) {
                StatusCode::OK
            } else {
                StatusCode::NOT_FOUND
            }
        }
        async fn create(
            State(projects): State<Projects>,
            headers: HeaderMap,
            body: axum::Json<Value>,
        ) -> StatusCode {
            match user(&headers) {
                None => StatusCode::UNAUTHORIZED,
                Some(user) if user.starts_with("robot$") => StatusCode::FORBIDDEN,
                Some(_) => {
                    let name = body["project_name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let mut projects = projects.lock().unwrap();
                    if projects.contains(&name) {
                        return StatusCode::CONFLICT;
                    }
                    projects.push(name);
                    StatusCode::CREATED
                }
            }
        }
        let created: Projects = Arc::default();
        let app = axum::Router::new()
            .route("/api/v2.0/projects", get(check).post(create))
            .with_state(created.clone())
            .merge(issuer.router());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeHarbor { address, created }
    }

    fn settings(
        &self,
        registry: &TestRegistry,
        project: &str,
        user: &str,
        password: &str,
        create: bool,
    ) -> Value {
        json!({
            "adapter": "harbor",
            "settings": {"url": format!("http://{}", registry.address), "api-url": format!("http://{}", self.address),
                         "project": project, "username": user, "create-project": create},
            "secrets": {"password": password},
            "allowed-hosts": [self.address],
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harbor_projects_are_checked_or_created_before_the_push() {
    let issuer = TokenIssuer::new(&[(USER, PASSWORD), ("robot$team-b+ci", "robot-secret")]);
    let harbor = FakeHarbor::start(&issuer).await;
    let realm = format!("http://{}{}", harbor.address, token_server::TOKEN_PATH);
    let registry = token_registry(&issuer, &realm);
    let server = Hostile::start().await;
    let set = async |settings: Value| {
        let (status, body) = server.call("PUT", "/api/v1/registry", settings).await;
        assert_eq!(status, 200, "{body}");
    };

    // A user that may create projects: the missing project is made, then pushed to.
    set(harbor.settings(&registry, "team-a", USER, PASSWORD, true)).await;
    let release = server.release("orders").await;
    assert_eq!(release["status"], "ready", "{release}");
    assert_eq!(
        release["image"]["reference"],
        format!("{}/team-a/orders:v1", registry.address)
    );
    assert_eq!(*harbor.created.lock().unwrap(), ["team-a"]);
    assert!(
        issuer
            .asked
            .lock()
            .unwrap()
            .contains(&"repository:team-a/orders:pull,push".to_string()),
        "the push token came from Harbor's realm"
    );
    let creds = format!("{USER}:{PASSWORD}");
    let reference = format!("{}/team-a/orders:v1", registry.address);
    assert_eq!(
        skopeo_inspect(&reference, Some(&creds)).unwrap()["Digest"],
        release["image"]["digest"]
    );

    // A robot account may not create projects: the error says so.
    set(harbor.settings(&registry, "team-b", "robot$team-b+ci", "robot-secret", true)).await;
    let release = server.release("orders").await;
    assert_eq!(release["status"], "failed");
    let error = release["error"].as_str().unwrap();
    assert!(
        error.contains("robot account `robot$team-b+ci` may not create projects"),
        "{error}"
    );
    assert!(!release.to_string().contains("robot-secret"));

    // With creation off, the missing project is named.
    set(harbor.settings(&registry, "team-c", USER, PASSWORD, false)).await;
    let release = server.release("orders").await;
    let error = release["error"].as_str().unwrap();
    assert!(
        error.contains("project `team-c` does not exist in Harbor"),
        "{error}"
    );
    assert_eq!(harbor.created.lock().unwrap().len(), 1);
}

/// A `rust-code` node's source: doubles `total`, in the settings' unit.
const DOUBLER: &str = r#"
pub fn process(mut input: Message, settings: &Value) -> Result<Output, NodeError> {
    let body: Value = input
        .body_json()
        .map_err(|e| NodeError::new("bad-input", e.to_string()).with_status(400))?;
    let total = body["total"].as_i64().unwrap_or(0);
    input.set_json(&json!({"doubled": total * 2, "unit": settings["unit"]}));
    Ok(Output::out(input))
}
"#;

fn code_canvas(source: &str) -> Value {
    json!({
        "nodes": [
            {"id": "in", "type": "http-trigger@^1", "config": {"method": "POST", "path": "/double"}},
            {"id": "sum", "type": "transform@^1", "config": {"expression": "{total: (.items | add)}"}},
            {"id": "double", "type": "rust-code@^1", "config": {"source": source, "settings": {"unit": "EUR"}}}
        ],
        "edges": [{"from": "in", "to": "sum"}, {"from": "sum", "to": "double"}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_code_nodes_are_compiled_into_the_image_or_fail_with_the_compiler_message() {
    let registry = TestRegistry::htpasswd(USER, PASSWORD);
    let server = Hostile::start().await;
    server.set_registry(&registry.address, PASSWORD).await;
    let (status, _) = server
        .call("POST", "/api/v1/integrations", json!({"name": "doubler"}))
        .await;
    assert_eq!(status, 201);
    let broken = DOUBLER.replace("total * 2", "totl * 2");
    for source in [DOUBLER, broken.as_str()] {
        let (status, body) = server
            .call(
                "POST",
                "/api/v1/integrations/doubler/versions",
                code_canvas(source),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    // Version 1 compiles; the image runs the code.
    let release = server.release_version("doubler", 1).await;
    assert_eq!(release["status"], "ready", "{release}");
    let log = release["log"].to_string();
    assert!(
        log.contains("node `double`: Rust source compiled to user-code@0.0.0+"),
        "{log}"
    );
    let digest = release["image"]["digest"].as_str().unwrap();
    let pinned = format!("{}/flows/doubler@{digest}", registry.address);
    let answer = run_image(&registry, &pinned, "/double", json!({"items": [2, 3]})).await;
    assert_eq!(answer, json!({"doubled": 10, "unit": "EUR"}));

    // Version 2 does not compile: the release fails with the compiler's
    // message, pointing into the node's source.
    let release = server.release_version("doubler", 2).await;
    assert_eq!(release["status"], "failed", "{release}");
    let error = release["error"].as_str().unwrap();
    assert!(
        error.contains("the Rust source of node `double` does not compile"),
        "{error}"
    );
    assert!(error.contains("source:7:"), "{error}");
    assert!(error.contains("E0425"), "{error}");
    assert!(error.contains("`totl`"), "{error}");
}

#[tokio::test]
async fn user_code_builds_stop_at_their_time_limit() {
    use slipway_domain::image::user_code::{UserCodeCompiler, UserCodeError};
    // A fresh directory: the SDK's dependencies alone take longer than this.
    let dir = tempfile::tempdir().unwrap();
    let compiler = UserCodeCompiler::new(dir.path().to_path_buf(), Duration::from_secs(1));
    let started = Instant::now();
    match compiler.compile("double", DOUBLER).await {
        Err(UserCodeError::TimedOut { node, limit }) => {
            assert_eq!((node.as_str(), limit), ("double", Duration::from_secs(1)));
        }
        other => panic!("expected a time-out: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        !dir.path().join("components").exists(),
        "nothing kept from a stopped build"
    );
}

/// The variable the server's environment holds in the test below.
const CANARY: &str = "SLIPWAY_TEST_CANARY";

/// User code is compiled in a sandbox: at compile time it reads nothing of
/// the server's environment, its data directory or other builds' files.
#[tokio::test]
async fn user_code_sees_nothing_of_the_server_when_it_is_compiled() {
    use slipway_domain::image::user_code::{UserCodeCompiler, UserCodeError};
    let Some(canary) = std::env::var(CANARY).ok() else {
        // Run again in a process whose environment holds the canary, as a
        // server's environment holds its secrets.
        let done = tempfile::tempdir().unwrap();
        // The test's name within the test binary: its module path without the crate.
        let module = module_path!().split_once("::").map_or("", |(_, m)| m);
        let name = format!("{module}::user_code_sees_nothing_of_the_server_when_it_is_compiled");
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &name, "--nocapture"])
            .env(CANARY, "canary-7f3a9c1e")
            .env("SLIPWAY_TEST_DONE", done.path().join("done"))
            .status()
            .unwrap();
        assert!(status.success());
        assert!(done.path().join("done").exists(), "the test ran");
        return;
    };
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("user-code");
    // What a server keeps beside user code: its database, and what other
    // organisations' builds made.
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(data.path().join("db")).unwrap();
    std::fs::write(data.path().join("db/db"), "registry-password-31f2").unwrap();
    std::fs::create_dir_all(dir.join("components")).unwrap();
    std::fs::write(dir.join("components/other.wasm"), "other-tenant-9d0c").unwrap();
    let compiler = UserCodeCompiler::new(dir.clone(), Duration::from_secs(300));

    let reads_env = format!(
        r#"pub fn process(mut input: Message, _: &Value) -> Result<Output, NodeError> {{
            let found = option_env!("{CANARY}").unwrap_or("canary-absent");
            let environ = String::from_utf8_lossy(include_bytes!("/proc/self/environ"));
            input.set_json(&json!({{"canary": found, "environ": environ}}));
            Ok(Output::out(input))
        }}"#
    );
    let built = compiler.compile("env", &reads_env).await.unwrap();
    let contains = |haystack: &[u8], needle: &str| {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    };
    assert!(
        contains(&built.component, "canary-absent"),
        "it compiled as written"
    );
    assert!(!contains(&built.component, &canary), "the canary stays out");

    for path in [
        data.path().join("db/db").display().to_string(),
        dir.join("components/other.wasm").display().to_string(),
        "../../../components/other.wasm".to_string(),
    ] {
        let source = format!(
            r#"pub fn process(mut input: Message, _: &Value) -> Result<Output, NodeError> {{
                input.body = include_bytes!("{path}").to_vec();
                Ok(Output::out(input))
            }}"#
        );
        match compiler.compile("file", &source).await {
            Err(UserCodeError::Rejected { message, .. }) => {
                assert!(message.contains("couldn't read"), "{path}: {message}");
            }
            other => panic!("{path} was readable: {other:?}"),
        }
    }
    for entry in std::fs::read_dir(dir.join("components")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        for secret in [canary.as_str(), "registry-password-31f2"] {
            assert!(!contains(&bytes, secret));
        }
    }
    std::fs::write(std::env::var("SLIPWAY_TEST_DONE").unwrap(), "").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organisation_never_mounts_from_another_organisations_repositories() {
    let registry = TestRegistry::htpasswd(USER, PASSWORD);
    let server = Hostile::start().await;
    server.set_registry(&registry.address, PASSWORD).await;
    let first = server.release("orders").await;
    assert_eq!(first["status"], "ready", "{first}");

    // Another organisation pushes the same layers to the same registry, in
    // its own namespace: it learns nothing of `flows/orders`.
    let other = server.state.store.create_organisation("beta").unwrap();
    let org = other.organisation.id;
    server
        .state
        .store
        .create_integration(org, "billing")
        .unwrap();
    let canvas = serde_json::from_value(canvas(100)).unwrap();
    server
        .state
        .store
        .add_canvas(org, "billing", &canvas)
        .unwrap();
    let as_other = |method: &'static str, path: &'static str, body: Value| {
        let state = server.state.clone();
        let token = other.token.clone();
        async move {
            common::call(
                &state,
                method,
                path,
                Some(&token),
                "application/json",
                body.to_string(),
            )
            .await
        }
    };
    let (status, set) = as_other(
        "PUT",
        "/api/v1/registry",
        json!({"adapter": "distribution",
               "settings": {"url": format!("http://{}", registry.address), "namespace": "beta", "username": USER},
               "secrets": {"password": PASSWORD}}),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    let (_, accepted) = as_other(
        "POST",
        "/api/v1/releases",
        common::release_body("billing", 1),
    )
    .await;
    let id = accepted["id"].as_u64().unwrap();
    let release = loop {
        let (_, release) = common::call(
            &server.state,
            "GET",
            &format!("/api/v1/releases/{id}"),
            Some(&other.token),
            "",
            "",
        )
        .await;
        if ["ready", "failed"].contains(&release["status"].as_str().unwrap_or("")) {
            break release;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(release["status"], "ready", "{release}");
    let push = &release["image"]["push"];
    assert_eq!(push["mounted"], 0, "{release}");
    assert_eq!(push["uploaded"], 4, "{release}");
    assert!(!release.to_string().contains("flows/orders"));

    // Within one organisation, mounts still save the upload.
    let again = server.release("billing").await;
    assert_eq!(again["image"]["push"]["mounted"], 2, "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_release_never_sends_the_current_registrys_credentials_to_an_old_one() {
    let first = TestRegistry::htpasswd(USER, PASSWORD);
    let second = TestRegistry::htpasswd(USER, "second-password-8c1");
    let server = Hostile::start().await;
    server.set_registry(&first.address, PASSWORD).await;
    let release = server.release("orders").await;
    assert_eq!(release["status"], "ready", "{release}");
    let pinned = format!(
        "{}/flows/orders@{}",
        first.address,
        release["image"]["digest"].as_str().unwrap()
    );
    // The organisation moves to another registry, then deletes the release.
    server
        .set_registry(&second.address, "second-password-8c1")
        .await;
    let id = release["id"].as_u64().unwrap();
    let (status, _) = server
        .call("DELETE", &format!("/api/v1/releases/{id}"), Value::Null)
        .await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    let deleted = loop {
        let stored = server.state.store.release(id).unwrap().unwrap();
        if stored.status == slipway_store::Status::Deleted {
            break stored;
        }
        assert!(
            Instant::now() < deadline,
            "not deleted: {:?}",
            stored.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let last = &deleted.log.last().unwrap().message;
    assert!(
        last.contains(&format!("the image stays in {}", first.address))
            && last.contains("whose credentials are not sent elsewhere"),
        "{last}"
    );
    let creds = format!("{USER}:{PASSWORD}");
    assert!(
        skopeo_inspect(&pinned, Some(&creds)).is_ok(),
        "the image is still there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_pushes_to_no_internal_address_the_operator_did_not_allow() {
    // An adapter that names the registry and makes no call of its own: the
    // push is the server's, to wherever the adapter said.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let server = Hostile::start_reaching(slipway_runtime::Egress::default()).await;
    let fixed =
        std::fs::read(slipway_plugin_artifacts::test_guest("registry-fixed").unwrap()).unwrap();
    let state = server.state.clone();
    let (status, uploaded) = common::call(
        &state,
        "POST",
        "/api/v1/plugins",
        Some(&server.admin),
        "application/wasm",
        fixed,
    )
    .await;
    assert_eq!(status, 201, "{uploaded}");
    let (status, set) = server
        .call(
            "PUT",
            "/api/v1/registry",
            json!({"adapter": "registry-fixed",
                   "settings": {"registry": format!("127.0.0.1:{port}"), "prefix": "flows", "username": USER},
                   "secrets": {"password": PASSWORD}}),
        )
        .await;
    assert_eq!(status, 200, "{set}");
    let release = server.release("orders").await;
    assert_eq!(release["status"], "failed", "{release}");
    let error = release["error"].as_str().unwrap();
    assert!(
        error.contains("is on an internal address the operator did not allow"),
        "{error}"
    );
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_secrets_go_only_to_the_adapter_code_they_were_set_with() {
    let registry = TestRegistry::htpasswd(USER, PASSWORD);
    let server = Hostile::start().await;
    let upload = async |guest: &str| {
        let wasm = std::fs::read(slipway_plugin_artifacts::test_guest(guest).unwrap()).unwrap();
        let (status, body) = common::call(
            &server.state,
            "POST",
            "/api/v1/plugins",
            Some(&server.admin),
            "application/wasm",
            wasm,
        )
        .await;
        assert_eq!(status, 201, "{body}");
    };
    let fixed = json!({"adapter": "registry-fixed", "version": "^1",
        "settings": {"registry": registry.address, "prefix": "flows", "username": USER},
        "secrets": {"password": PASSWORD}});
    let changes = async || {
        let (status, changes) = server
            .call("GET", "/api/v1/registry/changes", Value::Null)
            .await;
        assert_eq!(status, 200);
        changes.as_array().unwrap().clone()
    };

    upload("registry-fixed").await;
    let (status, body) = server.call("PUT", "/api/v1/registry", fixed.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.release("orders").await["status"], "ready");
    let set = changes().await;
    assert_eq!(set.len(), 1);
    assert_eq!(set[0]["to"]["resolved"], "registry-fixed@1.0.0");
    assert_eq!(set[0]["to"]["code"]["origin"], "upload");

    // A newer upload matches `^1`, but the secrets are not handed to it.
    upload("registry-fixed-v2").await;
    let release = server.release("orders").await;
    assert_eq!(release["status"], "failed", "{release}");
    let error = release["error"].as_str().unwrap();
    assert!(
        error.contains("now resolves to `registry-fixed@1.1.0` (uploaded")
            && error.contains("an org-admin sets the registry again"),
        "{error}"
    );
    assert_eq!(changes().await.len(), 1);

    // An org-admin setting the registry again is the recorded change.
    let (status, body) = server.call("PUT", "/api/v1/registry", fixed).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.release("orders").await["status"], "ready");
    let set = changes().await;
    assert_eq!(set.len(), 2);
    assert_eq!(set[1]["from"]["resolved"], "registry-fixed@1.0.0");
    assert_eq!(set[1]["to"]["resolved"], "registry-fixed@1.1.0");

    // A built-in whose code changed under the settings (a new server) is
    // followed, and the change recorded as the server's.
    server.set_registry(&registry.address, PASSWORD).await;
    let organisation = server
        .state
        .store
        .organisation_named("acme")
        .unwrap()
        .unwrap()
        .id;
    let store = &server.state.store;
    // Stores the registry as `edit` leaves it, releases, and answers the
    // change the release recorded (by the server).
    let released_after = async |edit: &dyn Fn(&mut slipway_store::StoredRegistry)| {
        let mut stored = store.registry(organisation).unwrap().unwrap();
        edit(&mut stored);
        store.put_registry(organisation, &stored).unwrap();
        assert_eq!(server.release("orders").await["status"], "ready");
        let last = changes().await.last().unwrap().clone();
        assert_eq!(last["by"], "server");
        last
    };
    let sha256 = store
        .registry(organisation)
        .unwrap()
        .unwrap()
        .code
        .unwrap()
        .sha256;
    let last =
        released_after(&|stored| stored.code.as_mut().unwrap().sha256 = "0".repeat(64)).await;
    assert_eq!(last["from"]["code"]["sha256"], "0".repeat(64));
    assert_eq!(last["to"]["code"]["sha256"], sha256);
    assert_eq!(last["to"]["code"]["origin"], "built-in");

    // A registry set before pins were kept is pinned at its first use.
    let last = released_after(&|stored| (stored.resolved, stored.code) = (None, None)).await;
    assert_eq!(last["from"]["code"], Value::Null);
    assert_eq!(last["to"]["code"]["sha256"], sha256);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_moved_to_another_host_never_gets_the_old_password() {
    use base64::Engine as _;
    // A host that asks every request for credentials and keeps what it got.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mock = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let heads = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let heads = heads.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match client.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                heads
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let _ = client
                    .write_all(
                        b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"mock\"\r\n\
                          Content-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await;
            });
        }
    });
    let registry = TestRegistry::htpasswd(USER, PASSWORD);
    let server = Hostile::start().await;
    server.set_registry(&registry.address, PASSWORD).await;
    assert_eq!(server.release("orders").await["status"], "ready");

    // The url changes and no secrets come with it. Were the old password
    // kept, the adapter would answer the host's challenge with it.
    let (status, moved) = server
        .call(
            "PUT",
            "/api/v1/registry",
            json!({"adapter": "distribution",
                   "settings": {"url": format!("http://{mock}"), "namespace": "flows", "username": USER}}),
        )
        .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["secrets"], json!([]));
    let release = server.release("orders").await;
    assert_eq!(release["status"], "failed", "{release}");
    assert_eq!(
        release["error"],
        "the registry refused the credentials: user `ci` is configured but the `password` secret is not granted"
    );
    let heads = seen.lock().unwrap().clone();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    for head in &heads {
        assert!(
            !head.contains(PASSWORD) && !head.contains(&basic),
            "the new host got the old password: {head}"
        );
    }
}
