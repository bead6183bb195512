//! The org-admin's commands: the organisation's registry and its users.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::Client;
use super::remote::{show, text};

/// Most bytes a secrets file may have.
const MAX_SECRETS_FILE: u64 = 1 << 20;

/// `slipway registry ...`
#[derive(Debug, Subcommand)]
pub enum Registry {
    /// Show the organisation's registry (secrets by name only).
    Show,
    /// Set the registry; the adapter checks the settings first.
    Set {
        /// The registry-adapter plugin, e.g. `distribution`, `gcr`, `ecr`.
        #[arg(long)]
        adapter: String,
        /// A semver requirement on its version [default: any].
        #[arg(long)]
        version: Option<String>,
        /// The adapter's settings, a JSON object, e.g. `{"url": "https://registry.example.com"}`.
        #[arg(long)]
        settings: Option<String>,
        /// A file holding the secrets as a JSON object of strings, or `-` for
        /// standard input; never given as arguments, which other users of
        /// the machine can read [default: the current secrets are kept].
        #[arg(long, value_name = "FILE")]
        secrets: Option<PathBuf>,
        /// A host the adapter may reach besides the registry, `host:port`; repeatable.
        #[arg(long = "allow-host", value_name = "HOST:PORT")]
        allowed_hosts: Vec<String>,
    },
    /// Every change of the registry, oldest first.
    Changes,
}

/// `slipway user ...`
#[derive(Debug, Subcommand)]
pub enum User {
    /// Add a user, with a first token (shown once).
    Create {
        /// Its name.
        name: String,
        /// `org-admin`, `api-provider` or `viewer`.
        #[arg(long)]
        role: String,
    },
    /// The organisation's users.
    List,
    /// Delete a user and revoke its tokens.
    Delete {
        /// The user's id.
        id: u64,
    },
    /// A user's tokens.
    #[command(subcommand)]
    Token(Token),
}

/// `slipway user token ...`
#[derive(Debug, Subcommand)]
pub enum Token {
    /// Issue a new token for a user (shown once).
    Issue {
        /// The user's id.
        id: u64,
    },
    /// Revoke every token of a user.
    Revoke {
        /// The user's id.
        id: u64,
    },
}

/// Runs a registry command.
pub async fn registry(
    client: Client,
    command: Registry,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    match command {
        Registry::Show => {
            let registry = client.get("/api/v1/registry").await?;
            show(as_json, &registry, print_registry);
        }
        Registry::Set {
            adapter,
            version,
            settings,
            secrets,
            allowed_hosts,
        } => {
            let mut change = json!({"adapter": adapter, "allowed-hosts": allowed_hosts});
            if let Some(version) = version {
                change["version"] = version.into();
            }
            if let Some(settings) = settings {
                change["settings"] =
                    serde_json::from_str(&settings).context("--settings is not JSON")?;
            }
            if let Some(path) = secrets {
                change["secrets"] = read_secrets(&path)?;
            }
            let bytes = serde_json::to_vec(&change).expect("JSON serializes");
            let registry = client
                .send(
                    Method::PUT,
                    "/api/v1/registry",
                    Some(("application/json", bytes)),
                )
                .await?;
            show(as_json, &registry, print_registry);
        }
        Registry::Changes => {
            let changes = client.get("/api/v1/registry/changes").await?;
            show(as_json, &changes, |changes| {
                for change in changes.as_array().into_iter().flatten() {
                    println!("{change}");
                }
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The secrets in `path` (`-`: standard input): a JSON object of strings.
pub(super) fn read_secrets(path: &std::path::Path) -> anyhow::Result<Value> {
    let (bytes, what) = read_secret_file(path)?;
    let secrets: std::collections::BTreeMap<String, String> = serde_json::from_slice(&bytes)
        .with_context(|| format!("the secrets in {what} are not a JSON object of strings"))?;
    Ok(json!(secrets))
}

/// A file of secrets (`-`: standard input), at most [`MAX_SECRETS_FILE`]
/// bytes, and what to call it in errors.
pub(super) fn read_secret_file(path: &std::path::Path) -> anyhow::Result<(Vec<u8>, String)> {
    let mut bytes = Vec::new();
    let what = if path == std::path::Path::new("-") {
        std::io::stdin()
            .take(MAX_SECRETS_FILE + 1)
            .read_to_end(&mut bytes)
            .context("cannot read the secrets from standard input")?;
        "standard input".to_string()
    } else {
        std::fs::File::open(path)
            .and_then(|file| file.take(MAX_SECRETS_FILE + 1).read_to_end(&mut bytes))
            .with_context(|| format!("cannot read the secrets from {}", path.display()))?;
        path.display().to_string()
    };
    if bytes.len() as u64 > MAX_SECRETS_FILE {
        bail!("the secrets in {what} are larger than {MAX_SECRETS_FILE} bytes");
    }
    Ok((bytes, what))
}

fn print_registry(r: &Value) {
    println!(
        "{} {} (next release: {}), set by {}",
        text(&r["adapter"]),
        text(&r["version"]),
        text(&r["resolved"]),
        text(&r["changed_by"])
    );
    println!("settings: {}", r["settings"]);
    println!("secrets: {}", r["secrets"]);
    if r["allowed_hosts"].as_array().is_some_and(|h| !h.is_empty()) {
        println!("allowed hosts: {}", r["allowed_hosts"]);
    }
}

/// Runs a user command.
pub async fn user(client: Client, command: User, as_json: bool) -> anyhow::Result<ExitCode> {
    match command {
        User::Create { name, role } => {
            let made = client
                .post("/api/v1/users", &json!({"name": name, "role": role}))
                .await?;
            show(as_json, &made, |made| {
                println!(
                    "user {} ({}, {}); its token, shown once: {}",
                    text(&made["user"]["id"]),
                    text(&made["user"]["name"]),
                    text(&made["user"]["role"]),
                    text(&made["token"])
                );
            });
        }
        User::List => {
            let users = client.get("/api/v1/users").await?;
            show(as_json, &users, |users| {
                println!("{:<8} {:<32} ROLE", "ID", "NAME");
                for u in users.as_array().into_iter().flatten() {
                    println!(
                        "{:<8} {:<32} {}",
                        text(&u["id"]),
                        text(&u["name"]),
                        text(&u["role"])
                    );
                }
            });
        }
        User::Delete { id } => {
            client.delete(&format!("/api/v1/users/{id}")).await?;
            show(as_json, &json!({"deleted": id}), |_| {
                println!("deleted user {id}")
            });
        }
        User::Token(Token::Issue { id }) => {
            let made = client
                .post(&format!("/api/v1/users/{id}/tokens"), &Value::Null)
                .await?;
            show(as_json, &made, |made| {
                println!(
                    "a new token for user {id}, shown once: {}",
                    text(&made["token"])
                );
            });
        }
        User::Token(Token::Revoke { id }) => {
            let revoked = client.delete(&format!("/api/v1/users/{id}/tokens")).await?;
            show(as_json, &revoked, |revoked| {
                println!(
                    "revoked {} token(s) of user {id}",
                    text(&revoked["revoked"])
                );
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
