//! The plugin author's test harness: load one component and call it with
//! JSON in and JSON out, in the real sandbox. `slipway plugin run` is a thin
//! shell over it; Rust tests can use it directly:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use slipway_runtime::harness::{Call, Harness};
//! let harness = Harness::load("target/wasm32-wasip2/release/my_node.wasm".as_ref()).await?;
//! let out = harness
//!     .call(Call::Invoke, &serde_json::json!({"config": {"expression": ".a"}, "body": {"a": 1}}))
//!     .await?;
//! assert_eq!(out.value["body"], 1);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::context::CallContext;
use crate::error::{CallError, LoadError};
use crate::kinds::{Message, Observed, Service};
use crate::plugin::Plugin;
use crate::runtime::{Runtime, RuntimeConfig};

/// The calls the harness can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Any kind: what `describe` returned.
    Describe,
    /// Node type: input is the config; output the diagnostics.
    Validate,
    /// Node type: input is the config; output `{node, outputs}` or the diagnostics.
    Translate,
    /// Node type: input `{config, body, headers?, attributes?}`; the config is
    /// translated first. Output `{port, body, headers, attributes}` or `{error}`.
    Invoke,
    /// Registry adapter or deploy target: input is the settings.
    ValidateSettings,
    /// Registry adapter: input `{repository, tag}`.
    Resolve,
    /// Deploy target: input is a service; output the objects.
    Render,
    /// Deploy target: input `{service, observed}`.
    Assess,
}

impl std::str::FromStr for Call {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "describe" => Call::Describe,
            "validate" => Call::Validate,
            "translate" => Call::Translate,
            "invoke" => Call::Invoke,
            "validate-settings" => Call::ValidateSettings,
            "resolve" => Call::Resolve,
            "render" => Call::Render,
            "assess" => Call::Assess,
            _ => {
                return Err(format!(
                    "unknown call `{s}`: use describe, validate, translate, invoke, validate-settings, resolve, render or assess"
                ));
            }
        })
    }
}

/// The result of one harness call.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The call's JSON output.
    pub value: Value,
    /// False when the plugin reported problems (diagnostics, a node error).
    pub ok: bool,
}

/// Why a harness call could not be made.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The component did not load.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The plugin trapped, panicked, timed out or hit its memory cap.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The input does not fit the call.
    #[error("bad input: {0}")]
    Input(String),
}

/// One plugin loaded in its own runtime.
pub struct Harness {
    _runtime: Runtime,
    plugin: Arc<Plugin>,
    context: CallContext,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvokeInput {
    config: Value,
    #[serde(default)]
    body: Value,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

impl Harness {
    /// Loads a component file with the default limits.
    pub async fn load(path: &Path) -> Result<Harness, LoadError> {
        let wasm = std::fs::read(path).map_err(|e| {
            crate::error::LoadFailure::Io(format!("cannot read {}: {e}", path.display())).of(None)
        })?;
        Harness::from_bytes(&wasm).await
    }

    /// Loads a component from bytes with the default limits.
    pub async fn from_bytes(wasm: &[u8]) -> Result<Harness, LoadError> {
        // A plugin author's own machine: any address.
        let runtime = Runtime::new(RuntimeConfig {
            egress: crate::Egress::any(),
            ..RuntimeConfig::default()
        })
        .map_err(|e| crate::error::LoadFailure::Compile(e.to_string()).of(None))?;
        let plugin = runtime.load(wasm).await?;
        Ok(Harness {
            _runtime: runtime,
            plugin,
            context: CallContext::default(),
        })
    }

    /// Grants these settings and secrets to every call.
    pub fn with_context(mut self, context: CallContext) -> Self {
        self.context = context;
        self
    }

    /// The loaded plugin.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// Makes one call; see [`Call`] for the input and output of each.
    pub async fn call(&self, call: Call, input: &Value) -> Result<Outcome, HarnessError> {
        let p = &self.plugin;
        let ctx = &self.context;
        Ok(match call {
            Call::Describe => Outcome {
                value: serde_json::to_value(p.description()).unwrap_or(Value::Null),
                ok: true,
            },
            Call::Validate => {
                let problems = p.validate(ctx, input).await?;
                Outcome {
                    ok: problems.is_empty(),
                    value: to_json(&problems),
                }
            }
            Call::Translate => match p.translate(ctx, input).await? {
                Ok(t) => Outcome {
                    value: to_json(&t),
                    ok: true,
                },
                Err(problems) => Outcome {
                    value: json!({ "diagnostics": problems }),
                    ok: false,
                },
            },
            Call::Invoke => {
                let input: InvokeInput = serde_json::from_value(input.clone())
                    .map_err(|e| HarnessError::Input(e.to_string()))?;
                let node = match p.translate(ctx, &input.config).await? {
                    Ok(t) => t.node.to_string(),
                    Err(problems) => {
                        return Ok(Outcome {
                            value: json!({ "diagnostics": problems }),
                            ok: false,
                        });
                    }
                };
                let body = match input.body {
                    Value::String(text) => text.into_bytes(),
                    other => other.to_string().into_bytes(),
                };
                let message = Message {
                    body,
                    headers: input.headers.into_iter().collect(),
                    attributes: input.attributes.into_iter().collect(),
                };
                match p.invoke(ctx, &node, message).await? {
                    Ok(out) => Outcome {
                        value: json!({
                            "port": out.port,
                            "body": body_json(&out.message.body),
                            "headers": out.message.headers,
                            "attributes": out.message.attributes,
                        }),
                        ok: true,
                    },
                    Err(e) => Outcome {
                        value: json!({ "error": e }),
                        ok: false,
                    },
                }
            }
            Call::ValidateSettings => {
                let problems = p.validate_settings(ctx, input).await?;
                Outcome {
                    ok: problems.is_empty(),
                    value: to_json(&problems),
                }
            }
            Call::Resolve => {
                let repository = input["repository"].as_str().unwrap_or_default();
                let tag = input["tag"].as_str().unwrap_or("latest");
                match p.resolve_image(ctx, repository, tag).await? {
                    Ok(image) => Outcome {
                        value: json!({ "image": image, "reference": image.reference() }),
                        ok: true,
                    },
                    Err(e) => Outcome {
                        value: json!({ "error": e.to_string() }),
                        ok: false,
                    },
                }
            }
            Call::Render => {
                let service = service(input)?;
                match p.render(ctx, &service).await? {
                    Ok(objects) => Outcome {
                        value: to_json(&objects),
                        ok: true,
                    },
                    Err(e) => Outcome {
                        value: json!({ "error": e.to_string() }),
                        ok: false,
                    },
                }
            }
            Call::Assess => {
                let service = service(&input["service"])?;
                let observed: Vec<Observed> = serde_json::from_value(input["observed"].clone())
                    .map_err(|e| HarnessError::Input(format!("observed: {e}")))?;
                let health = p.assess(ctx, &service, &observed).await?;
                Outcome {
                    value: to_json(&health),
                    ok: true,
                }
            }
        })
    }
}

/// A body as JSON when it parses, else as text.
fn body_json(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// A service from the harness's JSON form: `name`, `image` and optional
/// `replicas` and `env` (an object).
fn service(input: &Value) -> Result<Service, HarnessError> {
    use crate::kinds::{Resources, Rollout, ServiceKind, ServiceType};
    let text = |key: &str| {
        input[key]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| HarnessError::Input(format!("service: `{key}` is required")))
    };
    let none = Resources {
        cpu_millis: None,
        memory_bytes: None,
    };
    Ok(Service {
        id: input["id"].as_u64().unwrap_or(1),
        revision: 1,
        namespace: input["namespace"].as_str().unwrap_or("slipway").to_string(),
        name: text("name")?,
        kind: ServiceKind::LongRunning,
        image: text("image")?,
        release_image: false,
        replicas: input["replicas"].as_u64().unwrap_or(1) as u32,
        requests: none,
        limits: none,
        env: input["env"]
            .as_object()
            .map(|env| {
                env.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default(),
        log_dir: None,
        ports: Vec::new(),
        host_network: false,
        service_type: ServiceType::ClusterIp,
        host_mounts: Vec::new(),
        storage: Vec::new(),
        labels: Vec::new(),
        health_check: None,
        rollout: Rollout::Parallel,
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}
