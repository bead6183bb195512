//! The client commands: log in, integrations and their canvases, releases.
//! People get readable text, scripts `--json`; a failure exits non-zero.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use super::client::{Client, Login, login_file};

/// Where to reach the server, overriding the saved login.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The server's URL [default: the one saved by `slipway login`].
    #[arg(long, global = true, env = "SLIPWAY_SERVER")]
    server: Option<String>,
    /// The API token [default: the one saved by `slipway login`].
    #[arg(long, global = true, env = "SLIPWAY_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl Target {
    /// A client for the saved login, with the flags' overrides.
    pub fn connect(&self) -> anyhow::Result<Client> {
        let saved = Login::load(&login_file()?)?;
        let server = self
            .server
            .clone()
            .or_else(|| saved.as_ref().map(|l| l.server.clone()));
        let token = self
            .token
            .clone()
            .or_else(|| saved.as_ref().map(|l| l.token.clone()));
        match (server, token) {
            (Some(server), Some(token)) => Ok(Client::new(Login { server, token })),
            _ => bail!("not logged in: run `slipway login --server URL` first"),
        }
    }
}

/// Prints a value for scripts, or as `human` renders it.
pub(super) fn show(as_json: bool, value: &Value, human: impl FnOnce(&Value)) {
    if as_json {
        println!("{}", serde_json::to_string_pretty(value).expect("JSON"));
    } else {
        human(value);
    }
}

/// A JSON value as text: strings bare, null as `-`.
pub(super) fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Checks a server URL and token, then saves them.
pub async fn login(
    server: String,
    token: Option<String>,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let token = match token {
        Some(token) => token,
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprint!("API token: ");
                std::io::stderr().flush().ok();
            }
            let mut line = String::new();
            stdin
                .lock()
                .read_line(&mut line)
                .context("cannot read the token")?;
            line.trim().to_string()
        }
    };
    if token.is_empty() {
        bail!("no token given: pass --token or type it on standard input");
    }
    let login = Login { server, token };
    let me = Client::new(login.clone())
        .get("/api/v1/me")
        .await
        .context("the login was refused")?;
    let path = login_file()?;
    login.save(&path)?;
    show(as_json, &me, |me| {
        println!(
            "logged in to {} as {} ({}) of organisation {}; saved in {}",
            login.server.trim_end_matches('/'),
            text(&me["user"]["name"]),
            text(&me["user"]["role"]),
            text(&me["organisation"]["name"]),
            path.display()
        );
    });
    Ok(ExitCode::SUCCESS)
}

/// `slipway integration ...`
#[derive(Debug, Subcommand)]
pub enum Integration {
    /// Create an integration.
    Create {
        /// Its name: lowercase letters, digits and dashes.
        name: String,
    },
    /// List the integrations.
    List,
    /// Show an integration and its versions.
    Show {
        /// The integration.
        name: String,
    },
    /// Delete an integration and its canvases.
    Delete {
        /// The integration.
        name: String,
    },
    /// Push a canvas file (.json, .yaml or .yml) as the integration's next version.
    Push {
        /// The integration.
        name: String,
        /// The canvas file.
        file: PathBuf,
    },
    /// Run the packaging stage on a version without releasing it.
    Validate {
        /// The integration.
        name: String,
        /// The version [default: the latest].
        #[arg(long)]
        version: Option<u32>,
    },
}

fn canvas_type(file: &Path) -> anyhow::Result<&'static str> {
    match file.extension().and_then(|e| e.to_str()) {
        Some("json") => Ok("application/json"),
        Some("yaml" | "yml") => Ok("application/yaml"),
        _ => bail!(
            "{}: a canvas file ends in .json, .yaml or .yml",
            file.display()
        ),
    }
}

/// `version`, or the integration's latest when none is given.
async fn version_or_latest(
    client: &Client,
    name: &str,
    version: Option<u32>,
) -> anyhow::Result<u32> {
    if let Some(version) = version {
        return Ok(version);
    }
    let integration = client.get(&format!("/api/v1/integrations/{name}")).await?;
    match integration["latest_version"].as_u64() {
        Some(0) | None => bail!("integration `{name}` has no canvas yet: push one first"),
        Some(v) => Ok(v as u32),
    }
}

/// Runs an integration command.
pub async fn integration(
    client: Client,
    command: Integration,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    match command {
        Integration::Create { name } => {
            let made = client
                .post("/api/v1/integrations", &json!({"name": name}))
                .await?;
            show(as_json, &made, |_| println!("created integration {name}"));
        }
        Integration::List => {
            let list = client.get("/api/v1/integrations").await?;
            show(as_json, &list, |list| {
                println!("{:<32} LATEST", "NAME");
                for i in list.as_array().into_iter().flatten() {
                    println!("{:<32} {}", text(&i["name"]), text(&i["latest_version"]));
                }
            });
        }
        Integration::Show { name } => {
            let shown = client.get(&format!("/api/v1/integrations/{name}")).await?;
            show(as_json, &shown, |i| {
                println!(
                    "integration {}: latest version {}",
                    text(&i["name"]),
                    text(&i["latest_version"])
                );
            });
        }
        Integration::Delete { name } => {
            client
                .delete(&format!("/api/v1/integrations/{name}"))
                .await?;
            show(as_json, &json!({"deleted": name}), |_| {
                println!("deleted integration {name}")
            });
        }
        Integration::Push { name, file } => {
            let content_type = canvas_type(&file)?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let pushed = client
                .send(
                    reqwest::Method::POST,
                    &format!("/api/v1/integrations/{name}/versions"),
                    Some((content_type, bytes)),
                )
                .await?;
            show(as_json, &pushed, |p| {
                println!("pushed {name} version {}", text(&p["version"]))
            });
        }
        Integration::Validate { name, version } => {
            let version = version_or_latest(&client, &name, version).await?;
            let result = client
                .post(
                    &format!("/api/v1/integrations/{name}/versions/{version}/validate"),
                    &Value::Null,
                )
                .await?;
            let valid = result["valid"] == true;
            show(as_json, &result, |r| {
                if valid {
                    let flow = &r["flow"];
                    println!(
                        "{name}@{version} is valid: {} nodes, {} plugins, {} subflows",
                        flow["nodes"].as_array().map_or(0, Vec::len),
                        flow["plugins"].as_array().map_or(0, Vec::len),
                        flow["subflows"].as_array().map_or(0, Vec::len)
                    );
                } else {
                    println!("{name}@{version} has problems:");
                    print_diagnostics(&r["diagnostics"]);
                }
            });
            if !valid {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_diagnostics(diagnostics: &Value) {
    for d in diagnostics.as_array().into_iter().flatten() {
        let path = d["path"].as_str().unwrap_or_default();
        let path = if path.is_empty() { "(canvas)" } else { path };
        println!("  {path}: {}", text(&d["message"]));
    }
}

/// `slipway release ...`
#[derive(Debug, Subcommand)]
pub enum Release {
    /// Release an integration version.
    Create {
        /// The integration.
        integration: String,
        /// The version [default: the latest].
        #[arg(long)]
        version: Option<u32>,
        /// Its name, unique among the organisation's releases [default:
        /// `<integration>-v<version>`].
        #[arg(long)]
        name: Option<String>,
        /// What it is for.
        #[arg(long)]
        description: Option<String>,
        /// Follow its progress until it ends; exit non-zero if it fails.
        #[arg(long)]
        follow: bool,
    },
    /// List releases, newest last.
    List {
        /// Only those with this status (queued, interrupted, packaging, compiling, distributing, ready, failed, deleting, deleted).
        #[arg(long)]
        status: Option<String>,
        /// Only those of this integration.
        #[arg(long)]
        integration: Option<String>,
    },
    /// Show a release: stages, log, problems.
    Show {
        /// The release's id or name.
        release: String,
    },
    /// Delete a release.
    Delete {
        /// The release's id or name.
        release: String,
    },
    /// Follow a release's progress until it ends; exit non-zero if it fails.
    Follow {
        /// The release's id or name.
        release: String,
    },
}

/// Runs a release command.
pub async fn release(client: Client, command: Release, as_json: bool) -> anyhow::Result<ExitCode> {
    match command {
        Release::Create {
            integration,
            version,
            name,
            description,
            follow: follow_it,
        } => {
            let version = version_or_latest(&client, &integration, version).await?;
            let name = name.unwrap_or_else(|| {
                let proposed = slipway_store::proposed_name(&integration, version);
                eprintln!("no --name given: naming the release `{proposed}`");
                proposed
            });
            let mut body = json!({"integration": integration, "version": version, "name": name});
            if let Some(description) = description {
                body["description"] = description.into();
            }
            let accepted = client.post("/api/v1/releases", &body).await?;
            let id = accepted["id"]
                .as_u64()
                .context("the server gave no release id")?;
            if !follow_it {
                show(as_json, &accepted, |_| {
                    println!(
                        "release {id} ({name}) of {integration}@{version} queued; follow it with `slipway release follow {name}`"
                    );
                });
                return Ok(ExitCode::SUCCESS);
            }
            if !as_json {
                println!("release {id} ({name}) of {integration}@{version}");
            }
            follow(&client, &id.to_string(), as_json).await
        }
        Release::List {
            status,
            integration,
        } => {
            let mut query = Vec::new();
            if let Some(status) = &status {
                query.push(format!("status={status}"));
            }
            if let Some(integration) = &integration {
                query.push(format!("integration={integration}"));
            }
            let path = if query.is_empty() {
                "/api/v1/releases".to_string()
            } else {
                format!("/api/v1/releases?{}", query.join("&"))
            };
            let list = client.get(&path).await?;
            show(as_json, &list, |list| {
                println!(
                    "{:<8} {:<32} {:<32} {:>7}  STATUS",
                    "ID", "NAME", "INTEGRATION", "VERSION"
                );
                for r in list.as_array().into_iter().flatten() {
                    println!(
                        "{:<8} {:<32} {:<32} {:>7}  {}",
                        text(&r["id"]),
                        text(&r["name"]),
                        text(&r["integration"]),
                        text(&r["version"]),
                        text(&r["status"])
                    );
                }
            });
            Ok(ExitCode::SUCCESS)
        }
        Release::Show { release } => {
            let release = client
                .get(&format!("/api/v1/releases/{}", reference(&release)?))
                .await?;
            show(as_json, &release, print_release);
            Ok(ExitCode::SUCCESS)
        }
        Release::Delete { release } => {
            client
                .delete(&format!("/api/v1/releases/{}", reference(&release)?))
                .await?;
            show(as_json, &json!({"deleted": release}), |_| {
                println!("deleted release {release}")
            });
            Ok(ExitCode::SUCCESS)
        }
        Release::Follow { release } => follow(&client, reference(&release)?, as_json).await,
    }
}

/// `release` as the API takes it in a path: an id or a well-formed name.
fn reference(release: &str) -> anyhow::Result<&str> {
    if release.parse::<u64>().is_err()
        && let Some(problem) = slipway_domain::releases::name_problem(release)
    {
        bail!("`{release}` is neither a release id nor a release name: {problem}");
    }
    Ok(release)
}

fn print_release(r: &Value) {
    println!(
        "release {} ({}): {}@{}, {}",
        text(&r["id"]),
        text(&r["name"]),
        text(&r["integration"]),
        text(&r["version"]),
        text(&r["status"])
    );
    if let Some(description) = r["description"].as_str() {
        println!("{description}");
    }
    if let Some(error) = r["error"].as_str() {
        println!("error: {error}");
    }
    if r["diagnostics"].as_array().is_some_and(|d| !d.is_empty()) {
        println!("problems:");
        print_diagnostics(&r["diagnostics"]);
    }
    println!("log:");
    for line in r["log"].as_array().into_iter().flatten() {
        println!("  {}", text(&line["message"]));
    }
}

/// Prints each status change as it comes; the exit code says how it ended.
async fn follow(client: &Client, id: &str, as_json: bool) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut last = String::new();
    client
        .events(&format!("/api/v1/releases/{id}/events"), |event| {
            last = text(&event["status"]);
            if as_json {
                println!("{event}");
            } else {
                println!(
                    "[{:>6.1}s] {:<10} {}",
                    started.elapsed().as_secs_f64(),
                    last,
                    text(&event["message"])
                );
            }
        })
        .await?;
    match last.as_str() {
        "failed" => {
            if !as_json {
                let release = client.get(&format!("/api/v1/releases/{id}")).await?;
                print_diagnostics(&release["diagnostics"]);
            }
            Ok(ExitCode::FAILURE)
        }
        "deleted" => {
            eprintln!("release {id} was deleted");
            Ok(ExitCode::FAILURE)
        }
        "ready" => Ok(ExitCode::SUCCESS),
        other => bail!("the event stream ended while the release was `{other}`"),
    }
}
