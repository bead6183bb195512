//! Command-line arguments and dispatch.

mod admin;
mod client;
mod deploy;
mod plans;
mod plugin;
mod remote;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use slipway::config::Config;

/// Slipway: packages integration flows into images, pushes and deploys them.
#[derive(Debug, Parser)]
#[command(name = "slipway", version, about)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    /// Print JSON for scripts instead of text for people.
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    target: remote::Target,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: sled in the data directory, built-in plugins loaded.
    Serve(ServeArgs),
    /// Save a server URL and API token for the commands below.
    Login {
        /// The server's URL, e.g. http://127.0.0.1:7420.
        #[arg(long, env = "SLIPWAY_SERVER")]
        server: String,
        /// The API token [default: read from standard input].
        #[arg(long, env = "SLIPWAY_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Push plugins to the server; check, run and pack them locally.
    #[command(subcommand)]
    Plugin(plugin::Command),
    /// Integrations and their canvas versions.
    #[command(subcommand)]
    Integration(remote::Integration),
    /// Releases: create and follow, list, show, delete.
    #[command(subcommand)]
    Release(remote::Release),
    /// The organisation's registry: show, set, its changes.
    #[command(subcommand)]
    Registry(admin::Registry),
    /// The organisation's users and their tokens.
    #[command(subcommand)]
    User(admin::User),
    /// Deploy targets: list, show, set, delete.
    #[command(subcommand)]
    Target(deploy::Target),
    /// Services: create, revise, list, show, and deploy, start, stop, restart, delete.
    #[command(subcommand)]
    Service(deploy::Service),
    /// Deploy plans: create from a YAML file, list, show, delete, run.
    #[command(subcommand)]
    Plan(plans::Plan),
    /// Plan executions: follow, pause, stop, resume, report, delete.
    #[command(subcommand)]
    Execution(plans::Execution),
    /// Print a completion script for a shell, e.g. `slipway completions bash > /etc/bash_completion.d/slipway`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

impl Args {
    /// Whether this runs the server.
    pub fn is_serve(&self) -> bool {
        matches!(self.command, Command::Serve(_))
    }
}

/// Runs the command; the exit code says whether it succeeded.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Serve(serve) => {
            slipway::server::serve(serve.config()?, slipway::server::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Login { server, token } => remote::login(server, token, args.json).await,
        Command::Plugin(command) => plugin::run(command, &args.target, args.json).await,
        Command::Integration(command) => {
            remote::integration(args.target.connect()?, command, args.json).await
        }
        Command::Release(command) => {
            remote::release(args.target.connect()?, command, args.json).await
        }
        Command::Registry(command) => {
            admin::registry(args.target.connect()?, command, args.json).await
        }
        Command::User(command) => admin::user(args.target.connect()?, command, args.json).await,
        Command::Target(command) => {
            deploy::target(args.target.connect()?, command, args.json).await
        }
        Command::Service(command) => {
            deploy::service(args.target.connect()?, command, args.json).await
        }
        Command::Plan(command) => plans::plan(args.target.connect()?, command, args.json).await,
        Command::Execution(command) => {
            plans::execution(args.target.connect()?, command, args.json).await
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Args::command(),
                "slipway",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Settings of `slipway serve`: defaults, then `--config`, then these flags
/// (or their environment variables).
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// A TOML file with any of: data-dir, listen, organisation, admin-token,
    /// release-concurrency, engine-binary, ca-certificates, user-code-dir,
    /// user-code-time-limit-secs, egress-allow, max-connections,
    /// header-read-timeout-secs, request-timeout-secs, and a [registry] table.
    #[arg(long, env = "SLIPWAY_CONFIG")]
    config: Option<PathBuf>,
    /// Where the database and the code cache live [default: ./slipway-data].
    #[arg(long, env = "SLIPWAY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7420].
    #[arg(long, env = "SLIPWAY_LISTEN")]
    listen: Option<SocketAddr>,
    /// Name of the organisation made on first start [default: default].
    #[arg(long, env = "SLIPWAY_ORGANISATION")]
    organisation: Option<String>,
    /// The first admin's token, for automation [default: a random one, printed once].
    #[arg(long, env = "SLIPWAY_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// How many releases run at once; more wait in the queue [default: 2].
    #[arg(long, env = "SLIPWAY_RELEASE_CONCURRENCY")]
    release_concurrency: Option<usize>,
    /// The static `slipway-engine` baked into images [default: found beside this binary].
    #[arg(long, env = "SLIPWAY_ENGINE_BINARY")]
    engine_binary: Option<PathBuf>,
    /// Internal networks plugins may reach, comma-separated (`127.0.0.1/32`)
    /// [default: none: loopback, link-local and private addresses are refused].
    #[arg(long, env = "SLIPWAY_EGRESS_ALLOW", value_delimiter = ',')]
    egress_allow: Option<Vec<String>>,
    /// Connections the API serves at once; more wait until one closes [default: 10000].
    #[arg(long, env = "SLIPWAY_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Seconds a client has to send a request's headers [default: 10].
    #[arg(long, env = "SLIPWAY_HEADER_READ_TIMEOUT_SECS")]
    header_read_timeout_secs: Option<u64>,
    /// Seconds a request may take to be answered, its body included [default: 120].
    #[arg(long, env = "SLIPWAY_REQUEST_TIMEOUT_SECS")]
    request_timeout_secs: Option<u64>,
}

impl ServeArgs {
    fn config(self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(dir) = self.data_dir {
            config.data_dir = dir;
        }
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(organisation) = self.organisation {
            config.organisation = organisation;
        }
        if let Some(token) = self.admin_token {
            config.admin_token = Some(token);
        }
        if let Some(concurrency) = self.release_concurrency {
            config.release_concurrency = concurrency;
        }
        if let Some(engine) = self.engine_binary {
            config.engine_binary = Some(engine);
        }
        if let Some(networks) = self.egress_allow {
            config.egress_allow = networks;
        }
        if let Some(connections) = self.max_connections {
            config.max_connections = connections;
        }
        if let Some(secs) = self.header_read_timeout_secs {
            config.header_read_timeout_secs = secs;
        }
        if let Some(secs) = self.request_timeout_secs {
            config.request_timeout_secs = secs;
        }
        config.check().map_err(anyhow::Error::msg)?;
        Ok(config)
    }
}
