//! `slipway plugin ...`: the plugin author's tools.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use slipway_runtime::harness::{Call, Harness};

use super::client::Client;
use super::remote::{Target, show};
use slipway_runtime::{CallContext, Plugin, Runtime, RuntimeConfig};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load a component in the sandbox and print its manifest, kind, world and exports.
    Check {
        /// The component (.wasm).
        file: PathBuf,
    },
    /// Run one call of a plugin in the real sandbox, JSON in and JSON out.
    Run {
        /// The component (.wasm).
        file: PathBuf,
        /// describe, validate, translate, invoke, validate-settings, resolve, render or assess.
        #[arg(long)]
        call: Call,
        /// The call's JSON input; `-` reads standard input.
        #[arg(long, default_value = "-")]
        input: PathBuf,
        /// The plugin's settings (a JSON file).
        #[arg(long)]
        settings: Option<PathBuf>,
        /// Grant a secret, as NAME=VALUE; repeatable.
        #[arg(long = "secret", value_name = "NAME=VALUE")]
        secrets: Vec<String>,
    },
    /// Add a manifest to a component built without the SDK.
    Pack {
        /// The component (.wasm).
        file: PathBuf,
        /// The manifest (TOML).
        #[arg(long)]
        manifest: PathBuf,
        /// Where to write the packed component.
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Load the built-in plugins in the sandbox and list them.
    Builtins,
    /// Upload a component to the server; it is usable at once.
    Push {
        /// The component (.wasm).
        file: PathBuf,
    },
    /// List the plugins the server has for your organisation.
    List,
}

pub async fn run(command: Command, target: &Target, json: bool) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check { file } => check(&file, json).await,
        Command::Run {
            file,
            call,
            input,
            settings,
            secrets,
        } => run_call(&file, call, &input, settings.as_deref(), &secrets).await,
        Command::Pack {
            file,
            manifest,
            output,
        } => pack(&file, &manifest, &output),
        Command::Builtins => builtins(json).await,
        Command::Push { file } => push(&target.connect()?, &file, json).await,
        Command::List => list(&target.connect()?, json).await,
    }
}

async fn push(client: &Client, file: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let wasm = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let pushed = client
        .send(
            reqwest::Method::POST,
            "/api/v1/plugins",
            Some(("application/wasm", wasm)),
        )
        .await?;
    show(as_json, &pushed, |pushed| {
        let replaced = match pushed["replaced"].as_str() {
            Some(sha) => format!(", replacing sha256 {sha}"),
            None => String::new(),
        };
        println!(
            "pushed {} {}@{} (sha256 {}){replaced}",
            pushed["kind"].as_str().unwrap_or_default(),
            pushed["name"].as_str().unwrap_or_default(),
            pushed["version"].as_str().unwrap_or_default(),
            pushed["sha256"].as_str().unwrap_or_default(),
        );
    });
    Ok(ExitCode::SUCCESS)
}

async fn list(client: &Client, as_json: bool) -> anyhow::Result<ExitCode> {
    let list = client.get("/api/v1/plugins").await?;
    show(as_json, &list, |list| {
        println!("{:<24} {:<18} {:<10} ORIGIN", "NAME", "KIND", "VERSION");
        for p in list.as_array().into_iter().flatten() {
            println!(
                "{:<24} {:<18} {:<10} {}",
                p["name"].as_str().unwrap_or_default(),
                p["kind"].as_str().unwrap_or_default(),
                p["version"].as_str().unwrap_or_default(),
                if p["builtin"] == true {
                    "built-in"
                } else {
                    "uploaded"
                }
            );
        }
    });
    Ok(ExitCode::SUCCESS)
}

async fn check(file: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let harness = Harness::load(file).await?;
    let plugin = harness.plugin();
    if as_json {
        println!("{}", serde_json::to_string_pretty(&summary(plugin))?);
    } else {
        print!("{}", human(plugin));
    }
    Ok(ExitCode::SUCCESS)
}

/// What `check --json` and `builtins --json` print for one plugin.
fn summary(plugin: &Plugin) -> Value {
    json!({
        "manifest": plugin.manifest(),
        "kind": plugin.manifest().kind,
        "world": format!("slipway:plugin@{}", plugin.world_version()),
        "sha256": plugin.sha256(),
        "exports": plugin.exports(),
        "imports": plugin.imports(),
        "limits": {
            "deadline_ms": plugin.deadline().as_millis() as u64,
            "memory_mib": (plugin.memory_cap() >> 20) as u64,
        },
        "describe": plugin.description(),
    })
}

fn human(plugin: &Plugin) -> String {
    let m = plugin.manifest();
    let list = |items: &[String]| {
        if items.is_empty() {
            "(none)".to_string()
        } else {
            items.join(", ")
        }
    };
    let hosts: Vec<String> = m.allowed_hosts.iter().map(ToString::to_string).collect();
    format!(
        "{id}  {kind}\n  description    {description}\n  world          slipway:plugin@{world}\n  sha256         {sha}\n  exports        {exports}\n  imports        {imports}\n  allowed hosts  {hosts}\n  secrets        {secrets}\n  limits         {deadline} ms per call, {memory} MiB memory\n",
        id = plugin.id(),
        kind = m.kind,
        description = m.description,
        world = plugin.world_version(),
        sha = plugin.sha256(),
        exports = list(plugin.exports()),
        imports = list(plugin.imports()),
        hosts = list(&hosts),
        secrets = list(&m.secrets),
        deadline = plugin.deadline().as_millis(),
        memory = plugin.memory_cap() >> 20,
    )
}

async fn run_call(
    file: &Path,
    call: Call,
    input: &Path,
    settings: Option<&Path>,
    secrets: &[String],
) -> anyhow::Result<ExitCode> {
    let input: Value = if call == Call::Describe {
        Value::Null
    } else {
        let text = if input == Path::new("-") {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            text
        } else {
            std::fs::read_to_string(input)
                .with_context(|| format!("cannot read {}", input.display()))?
        };
        serde_json::from_str(&text).context("the input is not JSON")?
    };
    let mut context = CallContext::default();
    if let Some(path) = settings {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let value: Value = serde_json::from_str(&text).context("the settings are not JSON")?;
        context.settings = Arc::from(value.to_string());
    }
    let mut granted = BTreeMap::new();
    for secret in secrets {
        let Some((name, value)) = secret.split_once('=') else {
            bail!("--secret takes NAME=VALUE, got `{secret}`");
        };
        granted.insert(name.to_string(), value.to_string());
    }
    context.secrets = Arc::new(granted);
    let harness = Harness::load(file).await?.with_context(context);
    let outcome = harness.call(call, &input).await?;
    println!("{}", serde_json::to_string_pretty(&outcome.value)?);
    Ok(if outcome.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn pack(file: &Path, manifest: &Path, output: &Path) -> anyhow::Result<ExitCode> {
    let wasm = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    let packed = slipway_runtime::inspect::pack(&wasm, &text)?;
    std::fs::write(output, packed).with_context(|| format!("cannot write {}", output.display()))?;
    Ok(ExitCode::SUCCESS)
}

async fn builtins(as_json: bool) -> anyhow::Result<ExitCode> {
    // A plugin author's own machine: any address.
    let runtime = Runtime::new(RuntimeConfig {
        egress: slipway_runtime::Egress::any(),
        ..RuntimeConfig::default()
    })?;
    let mut plugins = Vec::new();
    for (name, wasm) in slipway_plugin_artifacts::BUILTIN {
        let plugin = runtime
            .load(wasm)
            .await
            .with_context(|| format!("the built-in plugin `{name}` does not load"))?;
        plugins.push(plugin);
    }
    if as_json {
        let list: Vec<Value> = plugins.iter().map(|p| summary(p)).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        for plugin in &plugins {
            println!(
                "{:<24} {:<12} {}",
                plugin.id(),
                plugin.manifest().kind,
                plugin.manifest().description
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
