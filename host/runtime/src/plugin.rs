//! A loaded plugin: its manifest, identity, compiled code ready to instantiate,
//! and the machinery of one sandboxed call.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use wasmtime::component::InstancePre;
use wasmtime::{Store, UpdateDeadline};

use crate::bindings::{node, registry, target};
use crate::cache::CodeSource;
use crate::context::CallContext;
use crate::error::{CallError, CallFailure};
use crate::inspect::Inspection;
use crate::kinds::{NodeInfo, RegistryInfo, TargetInfo};
use crate::manifest::{HostPattern, Kind, Manifest};
use crate::runtime::Shared;
use crate::shares::Spent;
use crate::state::{CallLimits, CallState, CpuMeter};

/// Ready-to-instantiate code, typed by the world the component implements.
pub(crate) enum Pre {
    Node(node::NodeTypePre<CallState>),
    Registry(registry::RegistryAdapterPre<CallState>),
    Target(target::DeployTargetPre<CallState>),
}

impl Pre {
    pub fn new(kind: Kind, pre: InstancePre<CallState>) -> wasmtime::Result<Self> {
        Ok(match kind {
            Kind::NodeType => Pre::Node(node::NodeTypePre::new(pre)?),
            Kind::RegistryAdapter => Pre::Registry(registry::RegistryAdapterPre::new(pre)?),
            Kind::DeployTarget => Pre::Target(target::DeployTargetPre::new(pre)?),
        })
    }
}

/// What a plugin's `describe` returned, by kind.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Description {
    /// A node type.
    Node(NodeInfo),
    /// A registry adapter.
    Registry(RegistryInfo),
    /// A deploy target.
    Target(TargetInfo),
}

impl Description {
    /// `name@version` as the plugin describes itself.
    pub fn id(&self) -> String {
        let (name, version) = match self {
            Description::Node(i) => (&i.name, &i.version),
            Description::Registry(i) => (&i.name, &i.version),
            Description::Target(i) => (&i.name, &i.version),
        };
        format!("{name}@{version}")
    }
}

/// A loaded plugin version. Cheap to share; calls may run on it from many tasks.
pub struct Plugin {
    pub(crate) manifest: Arc<Manifest>,
    pub(crate) id: Arc<str>,
    pub(crate) sha256: String,
    pub(crate) inspection: Inspection,
    pub(crate) code_source: CodeSource,
    pub(crate) description: Description,
    pub(crate) pre: Pre,
    pub(crate) limits: CallLimits,
    /// The hosts an operator granted an upload; `None` for a plugin an
    /// operator installed, which its manifest's list binds alone.
    pub(crate) grant: RwLock<Option<Arc<[HostPattern]>>>,
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("id", &self.id)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// `name@version`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The plugin's identity: the sha256 of the component, in hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The component's top-level imports.
    pub fn imports(&self) -> &[String] {
        &self.inspection.imports
    }

    /// The component's top-level exports.
    pub fn exports(&self) -> &[String] {
        &self.inspection.exports
    }

    /// The `slipway:plugin` version of the world it implements.
    pub fn world_version(&self) -> &str {
        self.inspection.world_version().unwrap_or_default()
    }

    /// Whether the code came from the cache or was compiled at load.
    pub fn code_source(&self) -> CodeSource {
        self.code_source
    }

    /// What `describe` returned at load.
    pub fn description(&self) -> &Description {
        &self.description
    }

    /// The per-call deadline.
    pub fn deadline(&self) -> Duration {
        self.limits.deadline
    }

    /// The per-call memory cap in bytes.
    pub fn memory_cap(&self) -> usize {
        self.limits.memory_bytes
    }

    /// Grants an uploaded plugin HTTP to `hosts` (still within its
    /// manifest's list); calls that start later see the change. A plugin an
    /// operator installed keeps its manifest's list.
    pub fn grant_hosts(&self, hosts: Vec<HostPattern>) {
        let mut grant = self.grant.write().expect("grant lock");
        if grant.is_some() {
            *grant = Some(hosts.into());
        }
    }

    /// The hosts granted to an upload; `None` for an installed plugin.
    pub fn granted_hosts(&self) -> Option<Arc<[HostPattern]>> {
        self.grant.read().expect("grant lock").clone()
    }

    pub(crate) async fn session(&self, context: &CallContext, function: &'static str) -> Session {
        Session::start(
            &self.shared,
            &self.manifest,
            &self.id,
            self.limits,
            context,
            self.granted_hosts(),
            function,
        )
        .await
    }

    pub(crate) fn wrong_kind(&self, function: &'static str) -> CallError {
        CallError {
            plugin: self.id.to_string(),
            function,
            cause: CallFailure::WrongKind(self.manifest.kind),
        }
    }
}

/// A call stopped at its wall-clock cap.
#[derive(Debug, thiserror::Error)]
#[error("the call ran past its wall-clock cap")]
pub(crate) struct WallClock;

/// What bounds a call from outside its store: the wall-clock cap, and the
/// meter of the CPU time it uses.
#[derive(Clone)]
pub(crate) struct Bounds {
    wall: Duration,
    meter: Arc<CpuMeter>,
}

/// Runs `call` to its end, metering its CPU time, or stops it (dropping it,
/// and with it the instance) once the wall-clock cap has passed: the CPU
/// deadline does not count time waiting on the host, this does.
pub(crate) async fn within<R>(
    bounds: Bounds,
    call: impl std::future::Future<Output = wasmtime::Result<R>>,
) -> wasmtime::Result<R> {
    let mut call = std::pin::pin!(call);
    let metered = std::future::poll_fn(|cx| bounds.meter.poll(call.as_mut(), cx));
    tokio::time::timeout(bounds.wall, metered)
        .await
        .unwrap_or_else(|_| Err(wasmtime::Error::new(WallClock)))
}

/// One call: a fresh store with its limits and deadline, holding a slot of
/// the instance pool until it ends.
pub(crate) struct Session {
    pub store: Store<CallState>,
    id: Arc<str>,
    function: &'static str,
    limits: CallLimits,
}

impl Session {
    pub async fn start(
        shared: &Shared,
        manifest: &Arc<Manifest>,
        id: &Arc<str>,
        limits: CallLimits,
        context: &CallContext,
        grant: Option<Arc<[HostPattern]>>,
        function: &'static str,
    ) -> Session {
        let held = shared.shares.take(context.tenant).await;
        let state = CallState::new(
            manifest.clone(),
            id.clone(),
            context.clone(),
            grant,
            (shared.http.clone(), shared.egress.clone()),
            (limits, held),
        );
        let mut store = Store::new(&shared.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            if ctx.data_mut().clock.check() {
                Err(wasmtime::Trap::Interrupt.into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Session {
            store,
            id: id.clone(),
            function,
            limits,
        }
    }

    /// What bounds the call; see [`within`].
    pub fn bounds(&self) -> Bounds {
        Bounds {
            wall: self.limits.wall,
            meter: self.store.data().clock.meter.clone(),
        }
    }

    /// Maps a wasmtime result to the call's outcome, naming the cause of a failure.
    pub fn finish<R>(&self, result: wasmtime::Result<R>) -> Result<R, CallError> {
        let err = match result {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        let state = self.store.data();
        let cause = if err.is::<WallClock>() {
            CallFailure::WallClock(self.limits.wall.as_millis() as u64)
        } else if state.limiter.hit {
            CallFailure::MemoryCap((self.limits.memory_bytes >> 20) as u64)
        } else if let Some(spent) = state.limiter.spent {
            match spent {
                Spent::All(bytes) => CallFailure::MemoryBudget((bytes >> 20) as u64),
                Spent::Tenant(bytes) => CallFailure::TenantMemoryBudget((bytes >> 20) as u64),
            }
        } else if state.clock.expired {
            CallFailure::Deadline(self.limits.deadline.as_millis() as u64)
        } else if let Some(message) = &state.panic {
            CallFailure::Panic(message.clone())
        } else if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
            let stderr = state.stderr_text();
            match stderr.find("panicked at") {
                Some(at) => CallFailure::Panic(stderr[at..].to_string()),
                None => {
                    let text = trap.to_string();
                    CallFailure::Trap(
                        text.strip_prefix("wasm trap: ")
                            .unwrap_or(&text)
                            .to_string(),
                    )
                }
            }
        } else {
            CallFailure::Trap(format!("{err:#}"))
        };
        Err(CallError {
            plugin: self.id.to_string(),
            function: self.function,
            cause,
        })
    }

    /// A result the plugin returned that the host cannot use.
    /// `result` in the caller's terms: a failed call as [`Session::finish`]
    /// says, a value `convert` refuses as a bad result.
    pub fn conclude<R, T>(
        &self,
        result: wasmtime::Result<R>,
        convert: impl FnOnce(R) -> Result<T, String>,
    ) -> Result<T, CallError> {
        let raw = self.finish(result)?;
        convert(raw).map_err(|detail| self.bad_result(detail))
    }

    pub fn bad_result(&self, detail: String) -> CallError {
        CallError {
            plugin: self.id.to_string(),
            function: self.function,
            cause: CallFailure::BadResult(detail),
        }
    }
}
