//! The server process: state, start-up (bootstrap, plugins), serving and shutdown.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::time::Duration;

use anyhow::Context;
use slipway_runtime::{Egress, PluginCache, Runtime, RuntimeConfig};

pub use crate::api::router;
use crate::config::Config;
use crate::image::user_code::UserCodeCompiler;
use crate::image::{Compiler, CompilerConfig};
use crate::plugins::Plugins;
use crate::registry::{BlobIndex, Registry, RegistrySettings};
use crate::releases::ReleaseQueue;
use slipway_store::{Store, StoredRegistry};

/// Who set a registry that came from the configuration file.
pub const CONFIGURATION: &str = "configuration";

/// What every request handler shares.
pub struct AppState {
    /// The database.
    pub store: Store,
    /// The plugins: built-in and uploaded.
    pub plugins: Plugins,
    /// The release queue and its events.
    pub releases: ReleaseQueue,
    /// Builds release images.
    pub compiler: Compiler,
    /// Compiles `rust-code` nodes.
    pub user_code: UserCodeCompiler,
    /// Where pushed blobs are, for cross-repository mounts.
    pub blobs: BlobIndex,
    /// The client that pushes to registries.
    pub http: reqwest::Client,
    /// What plugins keep between calls (registry adapters' access tokens).
    pub plugin_cache: Arc<PluginCache>,
    pub(crate) ready: AtomicBool,
}

impl AppState {
    /// State over an open store and a runtime, set up as `config` says; not
    /// ready until [`AppState::load_plugins`].
    pub fn new(store: Store, runtime: Runtime, config: &Config) -> Arc<AppState> {
        let compiler = Compiler::new(CompilerConfig {
            engine_binary: config.engine_binary.clone(),
            ca_certificates: config.ca_certificates(),
            work_dir: config.data_dir.join("build"),
            epoch: crate::image::source_date_epoch(),
        });
        let http = crate::registry::client(runtime.egress().clone());
        Arc::new(AppState {
            store,
            plugins: Plugins::new(runtime),
            releases: ReleaseQueue::new(config.release_concurrency),
            compiler,
            user_code: UserCodeCompiler::new(
                config.user_code_dir(),
                Duration::from_secs(config.user_code_time_limit_secs),
            ),
            blobs: BlobIndex::default(),
            http,
            plugin_cache: Arc::default(),
            ready: AtomicBool::new(false),
        })
    }

    /// The adapter `settings` name, as `organisation` would push with it.
    pub fn registry(
        &self,
        organisation: u64,
        settings: RegistrySettings,
    ) -> Result<Registry, String> {
        Registry::resolve(
            &self.plugins.of(organisation),
            organisation,
            Arc::new(settings),
            &self.plugin_cache,
        )
    }

    /// Sets the registry of the configured organisation from the file, unless
    /// an org-admin has set one through the API.
    pub fn apply_configured_registry(&self, config: &Config) -> anyhow::Result<()> {
        let Some(settings) = &config.registry else {
            return Ok(());
        };
        let Some(organisation) = self.store.organisation_named(&config.organisation)? else {
            return Ok(());
        };
        let current = self.store.registry(organisation.id)?;
        if current
            .as_ref()
            .is_some_and(|c| c.changed_by != CONFIGURATION)
        {
            tracing::info!(organisation = %organisation.name, "the registry set through the API stays; the configuration's is not applied");
            return Ok(());
        }
        let stored = settings.to_stored();
        if current.is_none_or(|c| c.settings != stored) {
            self.store.put_registry(
                organisation.id,
                &StoredRegistry {
                    settings: stored,
                    resolved: None,
                    code: None,
                    changed_by: CONFIGURATION.into(),
                    changed_ms: slipway_store::now_ms(),
                },
            )?;
            tracing::info!(organisation = %organisation.name, adapter = %settings.adapter, "registry set from the configuration");
        }
        Ok(())
    }

    /// Installs the built-in plugins and every uploaded one, then reports
    /// ready. An upload that no longer loads is logged and skipped.
    pub async fn load_plugins(&self) -> anyhow::Result<()> {
        for (name, wasm) in slipway_plugin_artifacts::BUILTIN {
            self.plugins
                .install_builtin(wasm)
                .await
                .with_context(|| format!("the built-in plugin `{name}` does not load"))?;
        }
        for stored in self.store.stored_plugins()? {
            let Some(component) = self.store.component(&stored.sha256)? else {
                tracing::error!(plugin = %stored.name, sha256 = %stored.sha256, "uploaded plugin has no component");
                continue;
            };
            if slipway_runtime::Kind::named(&stored.kind)
                .is_some_and(|kind| self.plugins.is_builtin_name(kind, &stored.name))
            {
                // Stored before uploads could not take a built-in's name.
                tracing::error!(plugin = %stored.name, version = %stored.version, organisation = stored.organisation, "uploaded plugin takes a built-in's name; not loaded");
                continue;
            }
            match self
                .plugins
                .load_upload(&self.store, stored.organisation, &component)
                .await
            {
                Ok(plugin) => {
                    self.plugins.uploaded(stored.organisation).insert(plugin);
                }
                Err(err) => tracing::error!(error = %err, "uploaded plugin does not load"),
            }
        }
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    async fn start_logged(self: Arc<Self>) {
        if let Err(err) = self.start().await {
            tracing::error!(error = %format!("{err:#}"), "not ready");
        }
    }

    /// Loads the plugins, requeues interrupted releases and works the
    /// release queue; run it in a task of its own.
    pub async fn start(self: Arc<Self>) -> anyhow::Result<()> {
        self.load_plugins().await?;
        let requeued = crate::releases::recover(&self)?;
        if requeued > 0 {
            tracing::info!(
                requeued,
                "releases interrupted by the last stop are queued again"
            );
        }
        tracing::info!("plugins loaded; ready");
        crate::releases::run(self).await;
        Ok(())
    }
}

/// How long a stopping server waits for requests in flight (an event
/// stream may never end).
pub const DRAIN: Duration = Duration::from_secs(10);

/// Runs the server until `shutdown` completes, then finishes requests in
/// flight (for at most [`DRAIN`]) and flushes the database.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let store = Store::open(&config.data_dir.join("db"))
        .with_context(|| format!("cannot open the database in {}", config.data_dir.display()))?;
    if let Some(made) = store.bootstrap(&config.organisation, config.admin_token.as_deref())? {
        if config.admin_token.is_some() {
            println!(
                "created organisation `{}` with the configured admin token",
                made.organisation.name
            );
        } else {
            println!(
                "created organisation `{}`; admin token (shown once, keep it): {}",
                made.organisation.name, made.token
            );
        }
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(config.data_dir.join("code-cache")),
        // Granted by the operator: plugins never reach this server itself.
        egress: Egress {
            allowed: config.egress_networks().map_err(anyhow::Error::msg)?,
            own: vec![address],
            any: false,
        },
        ..RuntimeConfig::default()
    })?;
    let state = AppState::new(store.clone(), runtime, &config);
    state.apply_configured_registry(&config)?;
    println!("listening on http://{address}");
    tracing::info!(%address, data_dir = %config.data_dir.display(), "slipway serving");

    tokio::spawn(state.clone().start_logged());
    slipway_serve::serve(
        listener,
        router(state),
        config.connection_limits(),
        shutdown,
        DRAIN,
    )
    .await;
    store.flush()?;
    tracing::info!("stopped; database flushed");
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    slipway_serve::shutdown_signal().await;
    tracing::info!("shutting down: finishing requests in flight");
}
