//! The runtime: one wasmtime engine with a pooling allocator and epoch
//! interruption, the linker with the host imports, the code cache and the
//! catalog of loaded plugins.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings::node::NodeType;
use crate::cache::{CodeCache, CodeSource, engine_hash};
use crate::catalog::Catalog;
use crate::context::CallContext;
use crate::egress::{CheckedResolver, Egress};
use crate::error::{LoadError, LoadFailure};
use crate::inspect::inspect;
use crate::kinds::{describe_node, describe_registry, describe_target};
use crate::manifest::HostPattern;
use crate::plugin::{Plugin, Pre, Session};
use crate::shares::Shares;
use crate::state::{CallLimits, CallState};

/// Linear memory a pool slot keeps resident (zeroed in place) between calls;
/// the rest is returned to the kernel. Covers a typical Rust plugin's stack,
/// data and small heap, sparing page faults on every call (see BENCHMARKS.md).
pub const KEEP_RESIDENT: usize = 4 << 20;

/// How often the epoch advances: the resolution of deadlines.
const TICK: Duration = Duration::from_millis(2);

/// Settings of a [`Runtime`]. The defaults suit a server on a small machine.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled code is cached; `None` compiles at every load.
    pub cache_dir: Option<PathBuf>,
    /// Time a plugin's code may run per call, unless its manifest says otherwise.
    pub default_deadline: Duration,
    /// The longest deadline a manifest may ask for.
    pub max_deadline: Duration,
    /// The longest one call may take in all, time waiting on the host
    /// (HTTP, sleeps) included.
    pub call_time_limit: Duration,
    /// Linear memory per call, unless the manifest says otherwise.
    pub default_memory_mib: u64,
    /// The most memory a manifest may ask for.
    pub max_memory_mib: u64,
    /// Calls running at once; more wait for a slot.
    pub max_concurrent_calls: u32,
    /// Calls of one tenant (a [`CallContext::tenant`]) running at once; its
    /// further calls wait without holding up other tenants'.
    pub max_calls_per_tenant: u32,
    /// Linear memory every running call holds together, in MiB; growth past
    /// it is refused.
    pub memory_budget_mib: u64,
    /// The part of it one tenant's running calls may hold, in MiB.
    pub tenant_memory_mib: u64,
    /// The longest an outbound HTTP call from a plugin may take.
    pub http_timeout: Duration,
    /// The largest HTTP response body a plugin may receive.
    pub max_http_body: usize,
    /// Which addresses plugins' HTTP may connect to.
    pub egress: Egress,
    /// Whether pool slots are reset with Linux's `PAGEMAP_SCAN` (only the
    /// pages a call dirtied) rather than by clearing all they keep resident.
    /// Off by default where swap is configured: wasmtime's scan does not
    /// reset a dirty page that was swapped out (its PR #14357), so a later
    /// call in the slot could read it.
    pub pagemap_scan: bool,
}

/// Whether the machine has swap configured (`/proc/swaps` lists a device or
/// file); unknown counts as yes.
pub fn swap_configured() -> bool {
    std::fs::read_to_string("/proc/swaps").map_or(true, |swaps| swaps.lines().count() > 1)
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: None,
            default_deadline: Duration::from_secs(1),
            max_deadline: Duration::from_secs(30),
            call_time_limit: Duration::from_secs(60),
            default_memory_mib: 64,
            max_memory_mib: 512,
            max_concurrent_calls: 256,
            max_calls_per_tenant: 32,
            memory_budget_mib: 8 << 10,
            tenant_memory_mib: 2 << 10,
            http_timeout: Duration::from_secs(30),
            max_http_body: 16 << 20,
            egress: Egress::default(),
            pagemap_scan: !swap_configured(),
        }
    }
}

/// What the runtime shares with every loaded plugin.
pub(crate) struct Shared {
    pub engine: Engine,
    pub linker: Linker<CallState>,
    pub http: reqwest::Client,
    pub egress: Arc<Egress>,
    pub shares: Shares,
    pub config: RuntimeConfig,
    _ticker: Ticker,
}

/// The plugin runtime. Create one per process and share it.
pub struct Runtime {
    shared: Arc<Shared>,
    cache: Option<CodeCache>,
    catalog: Catalog,
}

/// A plugin placed in the catalog, and the one it replaced.
#[derive(Debug)]
pub struct Installed {
    /// The new plugin.
    pub plugin: Arc<Plugin>,
    /// The same kind, name and version loaded before, if any.
    pub replaced: Option<Arc<Plugin>>,
}

/// The runtime could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the plugin runtime: {0}")]
pub struct StartError(String);

impl Runtime {
    /// Builds the engine, the linker and the cache.
    pub fn new(config: RuntimeConfig) -> Result<Runtime, StartError> {
        let fail = |e: &dyn std::fmt::Display| StartError(e.to_string());
        let engine = Engine::new(&engine_config(&config)).map_err(|e| fail(&e))?;
        let linker = linker(&engine).map_err(|e| fail(&e))?;
        let cache = match &config.cache_dir {
            Some(dir) => Some(CodeCache::new(dir, &engine).map_err(|e| {
                StartError(format!(
                    "cannot create the code cache {}: {e}",
                    dir.display()
                ))
            })?),
            None => None,
        };
        let egress = Arc::new(config.egress.clone());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve names where this host cannot check them.
            .no_proxy()
            .dns_resolver(Arc::new(CheckedResolver(egress.clone())))
            .build()
            .map_err(|e| fail(&e))?;
        let shared = Arc::new(Shared {
            _ticker: Ticker::start(engine.clone()),
            engine,
            linker,
            http,
            egress,
            shares: Shares::new(
                config.max_concurrent_calls as usize,
                (config.memory_budget_mib as usize) << 20,
                config.max_calls_per_tenant as usize,
                (config.tenant_memory_mib as usize) << 20,
            ),
            config,
        });
        Ok(Runtime {
            shared,
            cache,
            catalog: Catalog::default(),
        })
    }

    /// Which addresses plugins may connect to (the host's own outbound
    /// clients apply the same rules).
    pub fn egress(&self) -> &Arc<Egress> {
        &self.shared.egress
    }

    /// The loaded plugins.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The wasmtime engine's compatibility hash: compiled code is valid only
    /// for an engine with the same one.
    pub fn engine_hash(&self) -> String {
        engine_hash(&self.shared.engine)
    }

    /// Loads a component: checks its manifest, imports and world, compiles it
    /// (or reads cached code), and calls `describe` (with no HTTP).
    /// Registers nothing. Its HTTP may go to the hosts its manifest names: for
    /// a component an operator installed; see [`Runtime::load_upload`].
    pub async fn load(&self, wasm: &[u8]) -> Result<Arc<Plugin>, LoadError> {
        self.load_with(wasm, None, None).await
    }

    /// Loads a component `tenant` uploaded: its HTTP goes nowhere until an
    /// operator grants hosts with [`Plugin::grant_hosts`], whatever its
    /// manifest names; its `describe` counts against the tenant's share.
    pub async fn load_upload(&self, wasm: &[u8], tenant: u64) -> Result<Arc<Plugin>, LoadError> {
        self.load_with(wasm, Some(Arc::from([])), Some(tenant))
            .await
    }

    async fn load_with(
        &self,
        wasm: &[u8],
        grant: Option<Arc<[HostPattern]>>,
        tenant: Option<u64>,
    ) -> Result<Arc<Plugin>, LoadError> {
        let inspection = inspect(wasm).map_err(|(id, failure)| failure.of(id))?;
        let manifest = Arc::new(inspection.manifest.clone());
        let id: Arc<str> = Arc::from(manifest.id());
        let fail = |failure: LoadFailure| failure.of(Some(id.to_string()));
        let limits = self.limits(&manifest).map_err(fail)?;
        let sha256 = hex::encode(Sha256::digest(wasm));

        let (component, code_source) = self.compile(wasm, &sha256).await.map_err(fail)?;
        let instance_pre = self
            .shared
            .linker
            .instantiate_pre(&component)
            .map_err(|e| fail(incompatible(manifest.kind, &e)))?;
        let pre = Pre::new(manifest.kind, instance_pre)
            .map_err(|e| fail(incompatible(manifest.kind, &e)))?;

        // `describe` says what the plugin is; it has no business on the network.
        let offline = CallContext {
            allowed_hosts: Some(Arc::from([])),
            tenant,
            ..CallContext::default()
        };
        let session = Session::start(
            &self.shared,
            &manifest,
            &id,
            limits,
            &offline,
            None,
            "describe",
        )
        .await;
        let description = match &pre {
            Pre::Node(p) => describe_node(session, p).await,
            Pre::Registry(p) => describe_registry(session, p).await,
            Pre::Target(p) => describe_target(session, p).await,
        }
        .map_err(|e| fail(LoadFailure::Describe(e)))?;
        if description.id() != *id {
            return Err(fail(LoadFailure::IdentityMismatch {
                expected: id.to_string(),
                found: description.id(),
            }));
        }
        Ok(Arc::new(Plugin {
            manifest,
            id,
            sha256,
            inspection,
            code_source,
            description,
            pre,
            limits,
            grant: std::sync::RwLock::new(grant),
            shared: self.shared.clone(),
        }))
    }

    /// Reads and loads a `.wasm` file.
    pub async fn load_file(&self, path: &Path) -> Result<Arc<Plugin>, LoadError> {
        let wasm = tokio::fs::read(path).await.map_err(|e| {
            LoadFailure::Io(format!("cannot read {}: {e}", path.display())).of(None)
        })?;
        self.load(&wasm).await
    }

    /// Loads a component and puts it in the catalog, replacing the same version.
    pub async fn install(&self, wasm: &[u8]) -> Result<Installed, LoadError> {
        let plugin = self.load(wasm).await?;
        let replaced = self.catalog.insert(plugin.clone());
        tracing::info!(plugin = %plugin.id(), sha256 = %plugin.sha256(), source = ?plugin.code_source(), replaced = replaced.is_some(), "plugin installed");
        Ok(Installed { plugin, replaced })
    }

    /// Installs every `*.wasm` file of a directory, in name order. One bad
    /// file does not stop the others; each outcome is returned.
    pub async fn install_dir(
        &self,
        dir: &Path,
    ) -> std::io::Result<Vec<(PathBuf, Result<Installed, LoadError>)>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .collect();
        paths.sort();
        let mut outcomes = Vec::with_capacity(paths.len());
        for path in paths {
            let outcome = match tokio::fs::read(&path).await {
                Ok(wasm) => self.install(&wasm).await,
                Err(e) => {
                    Err(LoadFailure::Io(format!("cannot read {}: {e}", path.display())).of(None))
                }
            };
            outcomes.push((path, outcome));
        }
        Ok(outcomes)
    }

    fn limits(&self, manifest: &crate::manifest::Manifest) -> Result<CallLimits, LoadFailure> {
        let config = &self.shared.config;
        let memory_mib = manifest
            .limits
            .memory_mib
            .unwrap_or(config.default_memory_mib);
        if memory_mib > config.max_memory_mib {
            return Err(LoadFailure::MemoryTooLarge {
                asked: memory_mib,
                max: config.max_memory_mib,
            });
        }
        let deadline = manifest
            .limits
            .deadline_ms
            .map(Duration::from_millis)
            .unwrap_or(config.default_deadline);
        if deadline > config.max_deadline {
            return Err(LoadFailure::DeadlineTooLong {
                asked: deadline.as_millis() as u64,
                max: config.max_deadline.as_millis() as u64,
            });
        }
        Ok(CallLimits {
            deadline,
            wall: config.call_time_limit,
            memory_bytes: (memory_mib as usize) << 20,
            http_timeout_cap: config.http_timeout,
            max_http_body: config.max_http_body,
        })
    }

    async fn compile(
        &self,
        wasm: &[u8],
        sha256: &str,
    ) -> Result<(Component, CodeSource), LoadFailure> {
        let engine = self.shared.engine.clone();
        let cache = self.cache.clone();
        let wasm = wasm.to_vec();
        let sha256 = sha256.to_string();
        tokio::task::spawn_blocking(move || match cache {
            Some(cache) => cache.load(&engine, &sha256, &wasm),
            None => Component::new(&engine, &wasm).map(|c| (c, CodeSource::Compiled)),
        })
        .await
        .map_err(|e| LoadFailure::Compile(e.to_string()))?
        .map_err(|e| LoadFailure::Compile(format!("{e:#}")))
    }
}

fn incompatible(kind: crate::manifest::Kind, err: &wasmtime::Error) -> LoadFailure {
    LoadFailure::Incompatible {
        kind,
        detail: format!("{err:#}"),
    }
}

fn engine_config(config: &RuntimeConfig) -> Config {
    let slots = config.max_concurrent_calls + 16;
    let mut pool = PoolingAllocationConfig::default();
    // Per component at most what the totals give each slot, so no tenant's
    // calls can take more of the pool than their slots' part.
    pool.total_component_instances(slots)
        .total_core_instances(slots * 8)
        .max_core_instances_per_component(8)
        .total_memories(slots * 2)
        .max_memories_per_component(2)
        .total_tables(slots * 4)
        .max_tables_per_component(4)
        .total_stacks(slots)
        .max_memory_size((config.max_memory_mib as usize) << 20)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .pagemap_scan(if config.pagemap_scan {
            wasmtime::Enabled::Auto
        } else {
            wasmtime::Enabled::No
        })
        .table_keep_resident(64 << 10);
    let mut wasm = Config::new();
    wasm.epoch_interruption(true)
        .wasm_component_model(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    wasm
}

fn linker(engine: &Engine) -> wasmtime::Result<Linker<CallState>> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::p2::bindings::{cli, clocks, random};
    use wasmtime_wasi::random::{WasiRandom, WasiRandomView};

    let mut linker = Linker::new(engine);
    // The Slipway imports; the three worlds import the same interfaces.
    NodeType::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
    // The WASI pieces Rust's standard library links; see `inspect::ALLOWED`.
    let l = &mut linker;
    wasmtime_wasi_io::add_to_linker_async(l)?;
    cli::exit::add_to_linker::<_, WasiCli>(l, CallState::cli)?;
    cli::environment::add_to_linker::<_, WasiCli>(l, CallState::cli)?;
    cli::stdin::add_to_linker::<_, WasiCli>(l, CallState::cli)?;
    cli::stdout::add_to_linker::<_, WasiCli>(l, CallState::cli)?;
    cli::stderr::add_to_linker::<_, WasiCli>(l, CallState::cli)?;
    cli::terminal_input::add_to_linker::<_, WasiCli>(l, CallState::cli)?;
    cli::terminal_output::add_to_linker::<_, WasiCli>(l, CallState::cli)?;
    cli::terminal_stdin::add_to_linker::<_, WasiCli>(l, CallState::cli)?;
    cli::terminal_stdout::add_to_linker::<_, WasiCli>(l, CallState::cli)?;
    cli::terminal_stderr::add_to_linker::<_, WasiCli>(l, CallState::cli)?;
    clocks::wall_clock::add_to_linker::<_, WasiClocks>(l, CallState::clocks)?;
    clocks::monotonic_clock::add_to_linker::<_, WasiClocks>(l, CallState::clocks)?;
    random::random::add_to_linker::<_, WasiRandom>(l, <CallState as WasiRandomView>::random)?;
    random::insecure::add_to_linker::<_, WasiRandom>(l, <CallState as WasiRandomView>::random)?;
    random::insecure_seed::add_to_linker::<_, WasiRandom>(
        l,
        <CallState as WasiRandomView>::random,
    )?;
    Ok(linker)
}

/// Advances the engine's epoch every [`TICK`] until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("slipway-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawn the epoch thread");
        Ticker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
