//! `slipway-engine`: serves one packaged flow over HTTP.
//!
//! ```text
//! slipway-engine --bundle DIR                   serve (flow.json, plugins/, code/)
//! slipway-engine --flow FILE --plugins DIR      serve, code compiled into DIR
//! slipway-engine precompile --bundle DIR        compile every component into code/
//! slipway-engine probe http://127.0.0.1:8080/readyz   exit 0 when it answers 2xx or 3xx
//! ```
//!
//! `probe` is the health check of a container running a release image,
//! which is `FROM scratch` and so has no other HTTP client.
//!
//! Logs are JSON lines on standard output; `SLIPWAY_LOG` filters them
//! (`info` by default).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use slipway_engine::server::DEFAULT_MAX_BODY;
use slipway_engine::{Bundle, ConnectionLimits, Engine, Stopped, loader, serve};
use slipway_runtime::{Egress, Runtime, RuntimeConfig};
use slipway_serve::shutdown_signal;

#[derive(Parser)]
#[command(version, about = "Serves a packaged Slipway flow over HTTP.")]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Compiles every component the flow names into the code directory, so
    /// the engine starts without compiling.
    Precompile(Source),
    /// GETs a plain-HTTP URL; exits 0 when it answers 2xx or 3xx within 5 s.
    Probe {
        /// `http://host:port/path`.
        url: String,
    },
}

/// Where the flow and its components are.
#[derive(Args)]
struct Source {
    /// A bundle directory: `flow.json`, `plugins/`, `code/`.
    #[arg(long, conflicts_with_all = ["flow", "plugins"], required_unless_present_all = ["flow", "plugins"])]
    bundle: Option<PathBuf>,
    /// The flow document.
    #[arg(long, requires = "plugins")]
    flow: Option<PathBuf>,
    /// The directory of `<name>@<version>.wasm` components.
    #[arg(long, requires = "flow")]
    plugins: Option<PathBuf>,
    /// Compiled code (default: the plugins directory, or the bundle's `code/`).
    #[arg(long)]
    code: Option<PathBuf>,
}

impl Source {
    fn bundle(&self) -> Bundle {
        let mut bundle = match (&self.bundle, &self.flow, &self.plugins) {
            (Some(dir), _, _) => Bundle::at(dir),
            (None, Some(flow), Some(plugins)) => Bundle {
                flow: flow.clone(),
                plugins: plugins.clone(),
                code: plugins.clone(),
            },
            _ => unreachable!("clap requires --bundle or --flow with --plugins"),
        };
        if let Some(code) = &self.code {
            bundle.code = code.clone();
        }
        bundle
    }
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    source: Source,
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,
    /// Address to listen on.
    #[arg(long, env = "SLIPWAY_BIND", default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Seconds to answer requests in flight after SIGTERM before exiting.
    #[arg(long, env = "SLIPWAY_DRAIN_SECONDS", default_value_t = 10)]
    drain_seconds: u64,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "SLIPWAY_MAX_BODY", default_value_t = DEFAULT_MAX_BODY)]
    max_body: usize,
    /// Connections served at once; more wait until one closes.
    #[arg(long, env = "SLIPWAY_MAX_CONNECTIONS", default_value_t = ConnectionLimits::default().max_connections as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Seconds a client has to send a request's headers (and to start the
    /// next request on a kept-alive connection).
    #[arg(long, env = "SLIPWAY_HEADER_READ_TIMEOUT_SECS", default_value_t = ConnectionLimits::default().header_read_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    header_read_timeout_secs: u64,
    /// Seconds a request may take to be answered, its body included.
    #[arg(long, env = "SLIPWAY_REQUEST_TIMEOUT_SECS", default_value_t = ConnectionLimits::default().request_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout_secs: u64,
}

impl ServeArgs {
    fn limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: self.max_connections as usize,
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            request_timeout: Duration::from_secs(self.request_timeout_secs),
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLIPWAY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("start the async runtime");
    let result = match cli.command {
        Some(Command::Precompile(source)) => runtime.block_on(precompile(source.bundle())),
        Some(Command::Probe { url }) => probe(&url),
        None => runtime.block_on(run(cli.serve.source.bundle(), &cli.serve)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// A health probe: one HTTP/1.0 GET of `url`, its status line read.
fn probe(url: &str) -> Result<(), String> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    const TIMEOUT: Duration = Duration::from_secs(5);
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{url}` is not an http:// URL"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let address = authority
        .to_socket_addrs()
        .map_err(|e| format!("`{authority}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{authority}` has no address"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&address, TIMEOUT)
        .map_err(|e| format!("{url}: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n")
        .map_err(|e| format!("{url}: {e}"))?;
    let mut head = [0u8; 12];
    stream
        .read_exact(&mut head)
        .map_err(|e| format!("{url}: {e}"))?;
    let status = std::str::from_utf8(&head[9..12]).unwrap_or("");
    match status.as_bytes().first() {
        Some(b'2' | b'3') => Ok(()),
        _ => Err(format!("{url} answered {status}")),
    }
}

/// A plugin runtime caching compiled code in `bundle.code`, or compiling
/// every time when that directory cannot be created.
fn plugin_runtime(bundle: &Bundle) -> Result<Runtime, String> {
    let cache_dir = match std::fs::create_dir_all(&bundle.code) {
        Ok(()) => Some(bundle.code.clone()),
        Err(err) => {
            tracing::warn!(code = %bundle.code.display(), error = %err, "no code directory: every component is compiled at start");
            None
        }
    };
    Runtime::new(RuntimeConfig {
        cache_dir,
        // The flow runs in the user's own deployment, on the user's network.
        egress: Egress::any(),
        ..RuntimeConfig::default()
    })
    .map_err(|e| e.to_string())
}

async fn run(bundle: Bundle, args: &ServeArgs) -> Result<(), String> {
    let flow = bundle.read_flow().map_err(|e| e.to_string())?;
    let engine = Engine::new(&flow, args.max_body).map_err(|e| e.to_string())?;
    let address = SocketAddr::new(args.bind, args.port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(
        %address,
        integration = %flow.integration,
        version = env!("CARGO_PKG_VERSION"),
        "listening"
    );
    let runtime = plugin_runtime(&bundle)?;
    let drain = Duration::from_secs(args.drain_seconds);
    let serving = serve(
        listener,
        engine.clone(),
        args.limits(),
        shutdown_signal(),
        drain,
    );
    let loading = engine.load(&runtime, &flow, &bundle.plugins);
    tokio::pin!(serving);
    tokio::select! {
        loaded = loading => loaded.map_err(|e| e.to_string())?,
        stopped = &mut serving => return stopped_log(stopped),
    }
    stopped_log(serving.await)
}

fn stopped_log(stopped: Stopped) -> Result<(), String> {
    match stopped {
        Stopped::Drained => tracing::info!("stopped: every request answered"),
        Stopped::CutOff(in_flight) => {
            tracing::warn!(in_flight, "stopped: drain time ran out, requests cut off")
        }
    }
    Ok(())
}

async fn precompile(bundle: Bundle) -> Result<(), String> {
    let flow = bundle.read_flow().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&bundle.code)
        .map_err(|e| format!("cannot create {}: {e}", bundle.code.display()))?;
    let runtime = plugin_runtime(&bundle)?;
    let loaded = loader::load_plugins(&runtime, &flow, &bundle.plugins)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(
        plugins = loaded.len(),
        code = %bundle.code.display(),
        engine_hash = runtime.engine_hash(),
        "precompiled"
    );
    Ok(())
}
