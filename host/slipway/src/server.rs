//! The server process: state, start-up (bootstrap, plugins), serving and shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::time::Duration;

use anyhow::Context;
use slipway_domain::image::user_code::UserCodeCompiler;
use slipway_domain::image::{Compiler, CompilerConfig};
use slipway_domain::images::Images;
use slipway_domain::jobs::Jobs;
use slipway_domain::plans::Plans;
use slipway_domain::plugins::Plugins;
use slipway_domain::registry::Registries;
use slipway_domain::releases::Releases;
use slipway_domain::services::Services;
use slipway_domain::services::source::Sources;
use slipway_domain::targets::{DockerDriver, DockerPolicy, Targets};
use slipway_runtime::{Egress, Runtime, RuntimeConfig};

pub use crate::api::router;
use crate::config::Config;
pub use slipway_domain::registry::CONFIGURATION;
use slipway_store::{JobKind, Store};

/// Plan executions running at once (my choice): they only wait on their
/// services' operations, which the deploy lane bounds.
const EXECUTION_LANE: usize = 64;

/// The services, composed once at start; what every request handler shares.
pub struct AppState {
    /// The database.
    pub store: Store,
    /// The plugins: built-in and uploaded.
    pub plugins: Arc<Plugins>,
    /// The organisations' registries.
    pub registries: Arc<Registries>,
    /// The releases and their events.
    pub releases: Arc<Releases>,
    /// The organisations' deploy targets.
    pub targets: Arc<Targets>,
    /// The services on them.
    pub services: Arc<Services>,
    /// Deploy plans and their executions.
    pub plans: Arc<Plans>,
    /// The job runner: release builds and deletions, service operations,
    /// plan executions.
    pub jobs: Arc<Jobs>,
    pub(crate) ready: AtomicBool,
}

impl AppState {
    /// State over an open store and a runtime, set up as `config` says; not
    /// ready until [`AppState::load_plugins`]. It keeps no images itself.
    pub fn new(store: Store, runtime: Runtime, config: &Config) -> Arc<AppState> {
        AppState::compose(store, runtime, config, None)
    }

    /// The same, listening on `address`, where it serves the images of
    /// organisations with no registry (kept under `<data-dir>/images`).
    pub fn listening(
        store: Store,
        runtime: Runtime,
        config: &Config,
        address: SocketAddr,
    ) -> Arc<AppState> {
        let images = Images::new(config.data_dir.join("images"), address).with_limit(
            config
                .images
                .max_mib_per_organisation
                .saturating_mul(1 << 20),
        );
        AppState::compose(store, runtime, config, Some(images))
    }

    fn compose(
        store: Store,
        runtime: Runtime,
        config: &Config,
        images: Option<Images>,
    ) -> Arc<AppState> {
        let compiler = Compiler::new(CompilerConfig {
            engine_binary: config.engine_binary.clone(),
            ca_certificates: config.ca_certificates(),
            work_dir: config.data_dir.join("build"),
            epoch: slipway_domain::image::source_date_epoch(),
        });
        let user_code = UserCodeCompiler::new(
            config.user_code_dir(),
            Duration::from_secs(config.user_code_time_limit_secs),
        );
        let plugins = Arc::new(Plugins::new(runtime));
        let registries = Arc::new(Registries::new(store.clone(), plugins.clone(), images));
        let jobs = Arc::new(
            Jobs::new(store.clone(), config.release_concurrency)
                .with_lane(&[JobKind::ServiceOperation], config.deploy_concurrency)
                .with_lane(&[JobKind::PlanExecution], EXECUTION_LANE),
        );
        let releases = Arc::new(Releases::new(
            store.clone(),
            plugins.clone(),
            registries.clone(),
            compiler,
            user_code,
            jobs.clone(),
        ));
        let docker = config.docker.local.then(|| {
            let policy = DockerPolicy {
                host_paths: config.docker.host_paths.clone(),
                host_network: config.docker.host_network,
            };
            DockerDriver::local(policy, &store.server_id())
        });
        let local = match docker {
            Some(Ok(driver)) => Some(driver),
            Some(Err(err)) => {
                tracing::warn!(error = %err, "no local Docker Engine: no `local-docker` target");
                None
            }
            None => None,
        };
        let targets = Arc::new(Targets::new(store.clone(), plugins.clone(), local));
        let sources = Sources::new(
            // Checked when the configuration was read.
            config.sources.patterns().unwrap_or_default(),
            config.sources.max_mib.saturating_mul(1 << 20),
            Duration::from_secs(config.sources.build_time_limit_secs),
            plugins.runtime().egress().clone(),
        );
        let services = Arc::new(Services::new(
            store.clone(),
            targets.clone(),
            releases.clone(),
            registries.clone(),
            jobs.clone(),
            sources,
        ));
        let plans = Arc::new(Plans::new(store.clone(), services.clone(), jobs.clone()));
        let mut works = releases.works();
        works.extend(services.works());
        works.extend(plans.works());
        jobs.register(works);
        Arc::new(AppState {
            store,
            plugins,
            registries,
            releases,
            targets,
            services,
            plans,
            jobs,
            ready: AtomicBool::new(false),
        })
    }

    /// Sets the registry of the configured organisation from the file, unless
    /// an org-admin has set one through the API.
    pub fn apply_configured_registry(&self, config: &Config) -> anyhow::Result<()> {
        if let Some(settings) = &config.registry {
            self.registries
                .apply_configured(&config.organisation, settings)?;
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
        self.plugins.load_uploads(&self.store).await?;
        self.targets.probe_local().await;
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    async fn start_logged(self: Arc<Self>) {
        if let Err(err) = self.start().await {
            tracing::error!(error = %format!("{err:#}"), "not ready");
        }
    }

    /// Takes up what the last stop left: the releases' pins and blobs, and
    /// jobs cut off in flight (interrupted, or failed when cut off too
    /// often). Answers how many jobs run again; call once, after the plugins
    /// load and before the jobs run.
    pub fn recover(&self) -> anyhow::Result<usize> {
        self.releases.recover()?;
        Ok(self.jobs.recover()?)
    }

    /// Loads the plugins, recovers and works the jobs; run it in a task of
    /// its own.
    pub async fn start(self: Arc<Self>) -> anyhow::Result<()> {
        self.load_plugins().await?;
        let requeued = self.recover()?;
        if requeued > 0 {
            tracing::info!(
                requeued,
                "jobs interrupted by the last stop are queued again"
            );
        }
        tracing::info!("plugins loaded; ready");
        tokio::spawn(Targets::supervise(Arc::downgrade(&self.targets)));
        self.jobs.clone().run().await;
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
    let runtime = Runtime::new(config.calls.apply(RuntimeConfig {
        cache_dir: Some(config.data_dir.join("code-cache")),
        // Granted by the operator: plugins never reach this server itself.
        egress: Egress {
            allowed: config.egress_networks().map_err(anyhow::Error::msg)?,
            own: vec![address],
            any: false,
        },
        ..RuntimeConfig::default()
    }))?;
    let state = AppState::listening(store.clone(), runtime, &config, address);
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
