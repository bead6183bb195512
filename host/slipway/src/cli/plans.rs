//! Deploy plans and their executions: stored from a YAML file, run and
//! followed live (waves, each service's status and current step), paused,
//! stopped, resumed and reported on.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

use super::client::Client;
use super::remote::{show, text};

/// Most bytes a plan file may have.
const MAX_PLAN_FILE: u64 = 4 << 20;
/// Between two looks at an execution followed.
const POLL: Duration = Duration::from_millis(250);

/// `slipway plan ...`
#[derive(Debug, Subcommand)]
pub enum Plan {
    /// Store a deploy plan from a YAML (or JSON) file, as seed 002 writes it.
    Create {
        /// The plan file.
        file: PathBuf,
    },
    /// List the organisation's plans.
    List,
    /// Show a plan, its defaults filled in.
    Show {
        /// The plan's id.
        id: u64,
    },
    /// Delete a plan; its executions stay.
    Delete {
        /// The plan's id.
        id: u64,
    },
    /// Run a plan: waves by priority, highest first.
    Run {
        /// The plan's id.
        id: u64,
        /// Follow it live until it ends; exits non-zero unless it succeeds.
        #[arg(long)]
        follow: bool,
    },
}

/// `slipway execution ...`
#[derive(Debug, Subcommand)]
pub enum Execution {
    /// List the organisation's executions.
    List,
    /// Show an execution: its waves and services.
    Show {
        /// The execution's id.
        id: u64,
    },
    /// Follow an execution live until it ends or rests.
    Follow {
        /// The execution's id.
        id: u64,
    },
    /// Pause: the services being deployed finish, no more start.
    Pause {
        /// The execution's id.
        id: u64,
    },
    /// Stop for good: the services being deployed finish, no more start.
    Stop {
        /// The execution's id.
        id: u64,
    },
    /// Resume a paused or interrupted execution.
    Resume {
        /// The execution's id.
        id: u64,
        /// Go on even though services still to deploy changed since.
        #[arg(long)]
        force: bool,
        /// Follow it live until it ends.
        #[arg(long)]
        follow: bool,
    },
    /// Roll back an ended execution: each service it left on another
    /// revision back on the one it ran before, in reverse wave order.
    Rollback {
        /// The execution's id.
        id: u64,
        /// Go on even though services changed since.
        #[arg(long)]
        force: bool,
        /// Follow the rollback live until it ends.
        #[arg(long)]
        follow: bool,
    },
    /// Print the report: each service's status, times, messages, and the
    /// timeline.
    Report {
        /// The execution's id.
        id: u64,
    },
    /// Delete an execution that is not running.
    Delete {
        /// The execution's id.
        id: u64,
    },
}

/// Runs a plan command.
pub async fn plan(client: Client, command: Plan, as_json: bool) -> anyhow::Result<ExitCode> {
    match command {
        Plan::Create { file } => {
            let bytes = read_plan(&file)?;
            let plan = client
                .send(
                    Method::POST,
                    "/api/v1/plans",
                    Some(("application/yaml", bytes)),
                )
                .await?;
            show(as_json, &plan, |p| {
                let items = p["plan"]["deployPlanItems"].as_array().map_or(0, Vec::len);
                println!(
                    "plan {} stored ({items} services); run it with `slipway plan run {}`",
                    text(&p["id"]),
                    text(&p["id"])
                );
            });
        }
        Plan::List => {
            let plans = client.get("/api/v1/plans").await?;
            show(as_json, &plans, |plans| {
                for p in plans.as_array().into_iter().flatten() {
                    println!(
                        "{}\t{} services\t{}\t{}",
                        text(&p["id"]),
                        p["plan"]["deployPlanItems"].as_array().map_or(0, Vec::len),
                        text(&p["created_by"]),
                        text(&p["plan"]["comment"])
                    );
                }
            });
        }
        Plan::Show { id } => {
            let plan = client.get(&format!("/api/v1/plans/{id}")).await?;
            show(as_json, &plan, |p| print!("{}", text(&p["source"])));
        }
        Plan::Delete { id } => {
            client.delete(&format!("/api/v1/plans/{id}")).await?;
            if !as_json {
                println!("plan {id} deleted");
            }
        }
        Plan::Run { id, follow } => {
            let execution = client
                .send(
                    Method::POST,
                    &format!("/api/v1/plans/{id}/executions"),
                    None,
                )
                .await?;
            let id = execution["id"]
                .as_u64()
                .context("the server answered no execution id")?;
            if follow {
                return follow_execution(&client, id, as_json).await;
            }
            show(as_json, &execution, |_| {
                println!("execution {id} started; follow it with `slipway execution follow {id}`");
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs an execution command.
pub async fn execution(
    client: Client,
    command: Execution,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let path = |id: u64, what: &str| format!("/api/v1/executions/{id}{what}");
    match command {
        Execution::List => {
            let executions = client.get("/api/v1/executions").await?;
            show(as_json, &executions, |all| {
                for e in all.as_array().into_iter().flatten() {
                    println!(
                        "{}\tplan {}\t{}\t{}",
                        text(&e["id"]),
                        text(&e["plan"]),
                        text(&e["status"]),
                        text(&e["message"])
                    );
                }
            });
        }
        Execution::Show { id } => {
            let execution = client.get(&path(id, "")).await?;
            show(as_json, &execution, |e| {
                for line in lines(e, &BTreeMap::new()) {
                    println!("{line}");
                }
            });
        }
        Execution::Follow { id } => return follow_execution(&client, id, as_json).await,
        Execution::Pause { id } | Execution::Stop { id } => {
            let what = if matches!(command, Execution::Pause { .. }) {
                "/pause"
            } else {
                "/stop"
            };
            let execution = client.send(Method::POST, &path(id, what), None).await?;
            show(as_json, &execution, |e| {
                println!(
                    "execution {id} is {}: the services in flight finish, no more start",
                    text(&e["status"])
                );
            });
        }
        Execution::Resume { id, force, follow } => {
            let execution = client
                .send(
                    Method::POST,
                    &path(id, &format!("/resume?force={force}")),
                    None,
                )
                .await?;
            if follow {
                return follow_execution(&client, id, as_json).await;
            }
            show(as_json, &execution, |_| println!("execution {id} resumed"));
        }
        Execution::Rollback { id, force, follow } => {
            let rollback = client
                .send(
                    Method::POST,
                    &path(id, &format!("/rollback?force={force}")),
                    None,
                )
                .await?;
            let rollback_id = rollback["id"]
                .as_u64()
                .context("the server answered no execution id")?;
            if follow {
                return follow_execution(&client, rollback_id, as_json).await;
            }
            show(as_json, &rollback, |_| {
                println!("execution {rollback_id} rolls back execution {id}");
            });
        }
        Execution::Report { id } => {
            if as_json {
                show(true, &client.get(&path(id, "/report")).await?, |_| {});
            } else {
                client
                    .print_stream(&path(id, "/report?format=text"))
                    .await?;
            }
        }
        Execution::Delete { id } => {
            client.delete(&path(id, "")).await?;
            if !as_json {
                println!("execution {id} deleted");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_plan(file: &PathBuf) -> anyhow::Result<Vec<u8>> {
    let size = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    anyhow::ensure!(
        size <= MAX_PLAN_FILE,
        "{} is larger than {MAX_PLAN_FILE} bytes",
        file.display()
    );
    std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
}

/// The execution as lines for people: its status, then each service by
/// wave with its status and, for those running, `steps`' current step.
fn lines(e: &Value, steps: &BTreeMap<u64, String>) -> Vec<String> {
    let mut lines = vec![format!(
        "[{}] execution {} of plan {}: {}",
        text(&e["status"]),
        text(&e["id"]),
        text(&e["plan"]),
        text(&e["message"])
    )];
    for (n, wave) in e["waves"].as_array().into_iter().flatten().enumerate() {
        for item in wave["items"].as_array().into_iter().flatten() {
            let status = text(&item["status"]);
            let what = match (&item["undo"]["revision"], item["undo"].as_str()) {
                (Value::Number(r), _) => format!("back to revision {r}"),
                (_, Some("stop")) => "STOP (no revision ran before)".into(),
                _ => text(&item["deployment"]),
            };
            let detail = match (status.as_str(), item["operation"].as_u64()) {
                ("running", Some(op)) => steps.get(&op).map(|s| format!(": {s}")),
                ("failed", _) => item["error"].as_str().map(|e| format!(": {e}")),
                _ => None,
            };
            lines.push(format!(
                "  wave {} (priority {}) {} ({}) {what}: {status}{}",
                n + 1,
                text(&wave["priority"]),
                text(&item["name"]),
                text(&item["service"]),
                detail.unwrap_or_default()
            ));
        }
    }
    lines
}

/// Follows execution `id` until it ends or rests (paused, interrupted),
/// printing each line that changed; exits non-zero unless it succeeded.
async fn follow_execution(client: &Client, id: u64, as_json: bool) -> anyhow::Result<ExitCode> {
    let mut printed: Vec<String> = Vec::new();
    loop {
        let execution = client.get(&format!("/api/v1/executions/{id}")).await?;
        let mut steps = BTreeMap::new();
        for wave in execution["waves"].as_array().into_iter().flatten() {
            for item in wave["items"].as_array().into_iter().flatten() {
                if let (Some("running"), Some(op), Some(service)) = (
                    item["status"].as_str(),
                    item["operation"].as_u64(),
                    item["service"].as_u64(),
                ) && let Ok(job) = client
                    .get(&format!("/api/v1/services/{service}/operations/{op}"))
                    .await
                {
                    steps.insert(op, text(&job["message"]));
                }
            }
        }
        let now = lines(&execution, &steps);
        if !as_json {
            for line in &now {
                if !printed.contains(line) {
                    println!("{line}");
                }
            }
        }
        printed = now;
        let status = execution["status"].as_str().unwrap_or_default();
        if ["succeeded", "failed", "stopped", "paused", "interrupted"].contains(&status) {
            if as_json {
                show(true, &execution, |_| {});
            } else if let Some(error) = execution["error"].as_str() {
                eprintln!("error: {error}");
            }
            return Ok(if status == "succeeded" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        tokio::time::sleep(POLL).await;
    }
}
