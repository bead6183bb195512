//! Deploying: the organisation's targets, and services with their
//! operations, followed live until they end.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::admin::{read_secret_file, read_secrets};
use super::client::Client;
use super::remote::{show, text};

/// Most bytes a service file may have.
const MAX_SPEC_FILE: u64 = 1 << 20;
/// Between two looks at an operation followed.
const POLL: Duration = Duration::from_millis(250);

/// `slipway target ...`
#[derive(Debug, Subcommand)]
pub enum Target {
    /// List the organisation's targets (`local-docker` when the server's Docker Engine answers).
    List,
    /// Show a target (secrets by name only).
    Show {
        /// The target.
        name: String,
    },
    /// Create or change a target (org-admin); its plugin checks the settings first.
    Set(Box<SetTarget>),
    /// Delete a target no service runs on (org-admin).
    Delete {
        /// The target.
        name: String,
    },
}

/// `slipway target set`: the target's plugin, settings, connection and
/// secrets.
#[derive(Debug, clap::Args)]
pub struct SetTarget {
    /// The target's name, a DNS label.
    name: String,
    /// The deploy-target plugin [default: `kubernetes` with `--server`,
    /// else `docker`].
    #[arg(long)]
    plugin: Option<String>,
    /// A semver requirement on its version.
    #[arg(long, default_value = "^1")]
    version: String,
    /// The plugin's settings, as JSON.
    #[arg(long, default_value = "{}")]
    settings: String,
    /// The Docker Engine: `local` (the server's own), or
    /// `tcp://host:2376` over TLS (with `--cert-path` or `--secrets`).
    #[arg(long, default_value = "local", conflicts_with = "server")]
    endpoint: String,
    /// A Kubernetes API server, `https://host:port`: the target is a
    /// cluster's namespace (with `--kubeconfig` or `--secrets`).
    #[arg(long, requires = "namespace")]
    server: Option<String>,
    /// The namespace services go to on the cluster.
    #[arg(long, requires = "server")]
    namespace: Option<String>,
    /// A file of the target's secrets as a JSON object of strings, or
    /// `-` for standard input [default: the current secrets are kept].
    #[arg(long, value_name = "FILE", conflicts_with_all = ["kubeconfig", "cert_path"])]
    secrets: Option<PathBuf>,
    /// A kubeconfig whose current context has inline credentials.
    #[arg(long, value_name = "FILE", requires = "server")]
    kubeconfig: Option<PathBuf>,
    /// A directory with `ca.pem`, `cert.pem` and `key.pem`, as
    /// `DOCKER_CERT_PATH` holds them, for a TLS endpoint.
    #[arg(long, value_name = "DIR", conflicts_with = "server")]
    cert_path: Option<PathBuf>,
}

/// `slipway service ...`
#[derive(Debug, Subcommand)]
pub enum Service {
    /// Create a service from a file (.json, .yaml or .yml) of its settings,
    /// `name` and `target` included; nothing runs until it is deployed.
    Create {
        /// The settings file.
        file: PathBuf,
    },
    /// Give a service new settings from a file, as its next revision.
    Revise {
        /// The service: its id, or its name.
        id: String,
        /// The settings file.
        file: PathBuf,
    },
    /// List the organisation's services.
    List,
    /// Show a service: its revisions and what its target shows now.
    Show {
        /// The service: its id, or its name.
        id: String,
    },
    /// Apply the newest revision.
    Deploy(Operate),
    /// Start what the running revision left stopped.
    Start(Operate),
    /// Stop the containers, keeping them.
    Stop(Operate),
    /// Restart the containers.
    Restart(Operate),
    /// Print what the service's containers write, each line after its
    /// container's name.
    Logs {
        /// The service: its id, or its name.
        id: String,
        /// Keep printing what they write next, until interrupted.
        #[arg(long)]
        follow: bool,
        /// Start from each container's last this many lines.
        #[arg(long, default_value_t = 100)]
        tail: u32,
    },
    /// Remove everything of the service from its target, then the service.
    Delete {
        /// The service: its id, or its name.
        id: String,
        /// Wait for it, showing each step.
        #[arg(long)]
        follow: bool,
    },
}

/// How an operation runs.
#[derive(Debug, clap::Args)]
pub struct Operate {
    /// The service: its id, or its name.
    id: String,
    /// One container at a time, each healthy before the next.
    #[arg(long)]
    sequential: bool,
    /// A label for the containers deployed, `key=value`; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Wait for it, showing each step; exits non-zero when it fails.
    #[arg(long)]
    follow: bool,
}

/// Runs a target command.
pub async fn target(client: Client, command: Target, as_json: bool) -> anyhow::Result<ExitCode> {
    match command {
        Target::List => {
            let targets = client.get("/api/v1/targets").await?;
            show(as_json, &targets, |targets| {
                for t in targets.as_array().into_iter().flatten() {
                    println!(
                        "{}\t{}\t{}",
                        text(&t["name"]),
                        text(&t["resolved"]),
                        text(&t["connection"]["endpoint"])
                    );
                }
            });
        }
        Target::Show { name } => {
            let target = client.get(&format!("/api/v1/targets/{name}")).await?;
            show(as_json, &target, print_target);
        }
        Target::Set(set) => {
            let SetTarget {
                name,
                plugin,
                version,
                settings,
                endpoint,
                server,
                namespace,
                secrets,
                kubeconfig,
                cert_path,
            } = *set;
            let settings: Value =
                serde_json::from_str(&settings).context("--settings is not JSON")?;
            let (connection, plugin) = match (server, namespace) {
                (Some(server), Some(namespace)) => (
                    json!({"driver": "kubernetes", "server": server, "namespace": namespace}),
                    plugin.unwrap_or_else(|| "kubernetes".into()),
                ),
                _ => (
                    json!({"driver": "docker", "endpoint": endpoint}),
                    plugin.unwrap_or_else(|| "docker".into()),
                ),
            };
            let text = |path: &std::path::Path| -> anyhow::Result<String> {
                let (bytes, what) = read_secret_file(path)?;
                String::from_utf8(bytes).with_context(|| format!("{what} is not text"))
            };
            let secrets = match (secrets, kubeconfig, cert_path) {
                (Some(path), _, _) => Some(read_secrets(&path)?),
                (_, Some(path), _) => Some(json!({"kubeconfig": text(&path)?})),
                (_, _, Some(dir)) => Some(json!({
                    "ca": text(&dir.join("ca.pem"))?,
                    "cert": text(&dir.join("cert.pem"))?,
                    "key": text(&dir.join("key.pem"))?,
                })),
                _ => None,
            };
            let mut body = json!({
                "plugin": plugin,
                "version": version,
                "settings": settings,
                "connection": connection,
            });
            if let Some(secrets) = secrets {
                body["secrets"] = secrets;
            }
            let bytes = serde_json::to_vec(&body).expect("JSON");
            let target = client
                .send(
                    Method::PUT,
                    &format!("/api/v1/targets/{name}"),
                    Some(("application/json", bytes)),
                )
                .await?;
            show(as_json, &target, print_target);
        }
        Target::Delete { name } => {
            client.delete(&format!("/api/v1/targets/{name}")).await?;
            if !as_json {
                println!("target {name} deleted");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_target(t: &Value) {
    println!("target {} ({})", text(&t["name"]), text(&t["resolved"]));
    println!("  connection: {}", t["connection"]);
    println!("  settings:   {}", t["settings"]);
    println!("  namespace:  {}", text(&t["namespace"]));
    println!(
        "  changed by {} at {}",
        text(&t["changed_by"]),
        text(&t["changed_ms"])
    );
}

/// A settings file as JSON: YAML by its extension, JSON otherwise.
fn spec_file(path: &PathBuf) -> anyhow::Result<Value> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MAX_SPEC_FILE + 1),
        &mut bytes,
    )?;
    if bytes.len() as u64 > MAX_SPEC_FILE {
        bail!("{} is larger than {MAX_SPEC_FILE} bytes", path.display());
    }
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    if yaml {
        serde_norway::from_slice(&bytes).with_context(|| format!("{} is not YAML", path.display()))
    } else {
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", path.display()))
    }
}

/// Runs a service command.
pub async fn service(client: Client, command: Service, as_json: bool) -> anyhow::Result<ExitCode> {
    let (id, operation, operate) = match command {
        Service::Create { file } => {
            let service = client.post("/api/v1/services", &spec_file(&file)?).await?;
            show(as_json, &service, |s| {
                println!(
                    "service {} ({}) created on {}; deploy it with `slipway service deploy {}`",
                    text(&s["id"]),
                    text(&s["name"]),
                    text(&s["target"]),
                    text(&s["name"])
                );
            });
            return Ok(ExitCode::SUCCESS);
        }
        Service::Revise { id, file } => {
            let id = service_id(&client, &id).await?;
            let bytes = serde_json::to_vec(&spec_file(&file)?).expect("JSON");
            let service = client
                .send(
                    Method::PUT,
                    &format!("/api/v1/services/{id}"),
                    Some(("application/json", bytes)),
                )
                .await?;
            show(as_json, &service, |s| {
                println!("service {id} is at revision {}", text(&s["revision"]));
            });
            return Ok(ExitCode::SUCCESS);
        }
        Service::List => {
            let services = client.get("/api/v1/services").await?;
            show(as_json, &services, |services| {
                for s in services.as_array().into_iter().flatten() {
                    println!(
                        "{}\t{}\t{}\trevision {} (running {})\t{}",
                        text(&s["id"]),
                        text(&s["name"]),
                        text(&s["target"]),
                        text(&s["revision"]),
                        text(&s["running"]),
                        text(&s["image"])
                    );
                }
            });
            return Ok(ExitCode::SUCCESS);
        }
        Service::Show { id } => {
            let id = service_id(&client, &id).await?;
            let service = client.get(&format!("/api/v1/services/{id}")).await?;
            show(as_json, &service, print_service);
            return Ok(ExitCode::SUCCESS);
        }
        Service::Logs { id, follow, tail } => {
            let id = service_id(&client, &id).await?;
            client
                .print_stream(&format!(
                    "/api/v1/services/{id}/logs?tail={tail}&follow={follow}"
                ))
                .await?;
            return Ok(ExitCode::SUCCESS);
        }
        Service::Delete { id, follow } => {
            let id = service_id(&client, &id).await?;
            let job = client.delete(&format!("/api/v1/services/{id}")).await?;
            return finish(&client, id, job, follow, as_json).await;
        }
        Service::Deploy(o) => (o.id.clone(), "deploy", o),
        Service::Start(o) => (o.id.clone(), "start", o),
        Service::Stop(o) => (o.id.clone(), "stop", o),
        Service::Restart(o) => (o.id.clone(), "restart", o),
    };
    let id = service_id(&client, &id).await?;
    let mut labels = serde_json::Map::new();
    for label in &operate.labels {
        let (key, value) = label
            .split_once('=')
            .with_context(|| format!("--label {label}: write key=value"))?;
        labels.insert(key.into(), value.into());
    }
    let body = json!({
        "operation": operation,
        "containers": if operate.sequential { "sequential" } else { "parallel" },
        "labels": labels,
    });
    let job = client
        .post(&format!("/api/v1/services/{id}/operations"), &body)
        .await?;
    finish(&client, id, job, operate.follow, as_json).await
}

/// The id of `service`: an id as it is, or the one service of that name
/// (names are unique per target, so one may be on several).
async fn service_id(client: &Client, service: &str) -> anyhow::Result<u64> {
    if let Ok(id) = service.parse() {
        return Ok(id);
    }
    let services = client.get("/api/v1/services").await?;
    let named: Vec<&Value> = services
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["name"] == service)
        .collect();
    match named.as_slice() {
        [one] => one["id"]
            .as_u64()
            .context("the server answered no service id"),
        [] => bail!("no service named `{service}`"),
        several => bail!(
            "`{service}` names services on several targets ({}): give the id",
            several
                .iter()
                .map(|s| format!("{} on {}", text(&s["id"]), text(&s["target"])))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Prints an operation queued, or follows it to its end.
async fn finish(
    client: &Client,
    service: u64,
    job: Value,
    follow: bool,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let id = job["id"]
        .as_u64()
        .context("the server answered no operation id")?;
    if !follow {
        show(as_json, &job, |_| {
            println!("operation {id} queued; follow it with --follow");
        });
        return Ok(ExitCode::SUCCESS);
    }
    let path = format!("/api/v1/services/{service}/operations/{id}");
    let mut seen = String::new();
    loop {
        let job = client.get(&path).await?;
        let message = text(&job["message"]);
        if message != seen && !as_json {
            println!("[{}] {message}", text(&job["status"]));
            seen = message;
        }
        match job["status"].as_str() {
            Some("succeeded") => {
                if as_json {
                    show(true, &job, |_| {});
                }
                return Ok(ExitCode::SUCCESS);
            }
            Some("failed" | "stopped") => {
                if as_json {
                    show(true, &job, |_| {});
                } else if let Some(error) = job["error"].as_str() {
                    eprintln!("error: {error}");
                }
                return Ok(ExitCode::FAILURE);
            }
            _ => tokio::time::sleep(POLL).await,
        }
    }
}

fn print_service(s: &Value) {
    println!(
        "service {} ({}) on {}: revision {}, running {}",
        text(&s["id"]),
        text(&s["name"]),
        text(&s["target"]),
        text(&s["revision"]),
        text(&s["running"])
    );
    println!("  image: {}", text(&s["image"]));
    let observed = &s["observed"];
    println!(
        "  {}: {} of {} ready, {} restarts{}",
        text(&observed["health"]),
        text(&observed["ready"]),
        text(&observed["replicas"]),
        text(&observed["restarts"]),
        observed["detail"]
            .as_str()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default()
    );
    for object in observed["objects"].as_array().into_iter().flatten() {
        let state = &object["state"];
        println!(
            "  {} {}: {} {} (revision {}, {} restarts)",
            text(&object["kind"]),
            text(&object["name"]),
            text(&state["status"]),
            text(&state["health"]),
            text(&state["revision"]),
            text(&state["restarts"])
        );
    }
}
