//! `pidmesh`: run a registry node from a config file, make its certificates, and inspect a
//! running cluster through a node's admin API. See `docs/operations.md`.
//!
//! Exit codes: 0 success, 1 runtime failure (cannot bind, cannot reach the admin API...),
//! 2 bad configuration or usage (nothing was started).

#![forbid(unsafe_code)]

mod api;
mod certs;
mod client;
mod config;
mod metrics;
mod node;
mod server;
mod sidecar;
mod singletons;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// A partition-tolerant registry of names and groups: node, certificates and inspection.
#[derive(Debug, Parser)]
#[command(name = "pidmesh", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Make certificates (a cluster CA, node certificates) as PEM files.
    #[command(subcommand)]
    Cert(CertCmd),
    /// Run a node. Settings come from the config file, then PIDMESH_* variables, then flags.
    Run {
        /// TOML config file (every field is optional there; see docs/operations.md).
        #[arg(long, short, env = "PIDMESH_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        fields: Box<config::Fields>,
    },
    /// List the cluster members a node sees.
    Members(Inspect),
    /// List names and groups whose key starts with PREFIX.
    Ls {
        #[arg(default_value = "")]
        prefix: String,
        #[command(flatten)]
        target: Inspect,
    },
    /// Show the entry holding a unique name.
    Get {
        name: String,
        #[command(flatten)]
        target: Inspect,
    },
    /// Show the members of a group.
    Group {
        name: String,
        #[command(flatten)]
        target: Inspect,
    },
    /// Print registry events live (keys starting with PREFIX; node events always).
    Watch {
        #[arg(default_value = "")]
        prefix: String,
        #[command(flatten)]
        target: Inspect,
    },
    /// Show a node's counters.
    Stats(Inspect),
}

#[derive(Debug, Subcommand)]
enum CertCmd {
    /// Create a cluster CA: DIR/ca.pem and DIR/ca.key (mode 0600).
    Ca {
        #[arg(long)]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issue a certificate for node NAME signed by the CA in --ca: DIR/NAME.pem and DIR/NAME.key (0600).
    Node {
        name: String,
        /// Directory holding ca.pem and ca.key.
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Extra subject alternative names (IP addresses or DNS names), comma-separated.
        #[arg(long, value_delimiter = ',')]
        san: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
}

/// How to reach a node's admin API.
#[derive(Debug, clap::Args)]
struct Inspect {
    /// Admin API address (host:port or URL).
    #[arg(long, env = "PIDMESH_ADMIN", default_value = config::DEFAULT_ADMIN)]
    admin: String,
    /// Bearer token.
    #[arg(long, env = "PIDMESH_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("pidmesh: cannot start the async runtime: {e}");
            ExitCode::from(1)
        })
}

fn inspect(target: Inspect, cmd: client::Command) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(c) => return c,
    };
    let t = client::Target {
        base: target.admin,
        token: target.token,
    };
    match rt.block_on(client::run(&t, cmd, target.json)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pidmesh: {e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match cli.cmd {
        Cmd::Cert(CertCmd::Ca { out, days }) => match certs::make_ca(&out, days) {
            Ok(files) => {
                for f in files {
                    println!("wrote {}", f.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("pidmesh: {e}");
                ExitCode::from(1)
            }
        },
        Cmd::Cert(CertCmd::Node {
            name,
            ca,
            out,
            san,
            days,
        }) => match certs::make_node(&name, &ca, &out, &san, days) {
            Ok(files) => {
                for f in files {
                    println!("wrote {}", f.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("pidmesh: {e}");
                ExitCode::from(1)
            }
        },
        Cmd::Run { config, fields } => {
            let run_matches = matches.subcommand_matches("run");
            let cfg = match config::load(config.as_deref(), &fields, run_matches) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("pidmesh: {e}");
                    return ExitCode::from(2);
                }
            };
            init_tracing(&cfg.log);
            let handle = match metrics::install() {
                Ok(h) => Some(h),
                Err(e) => {
                    eprintln!("pidmesh: metrics disabled: {e}");
                    None
                }
            };
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(c) => return c,
            };
            match rt.block_on(node::run(cfg, handle)) {
                Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
                Err(e) => {
                    eprintln!("pidmesh: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Members(t) => inspect(t, client::Command::Members),
        Cmd::Ls { prefix, target } => inspect(target, client::Command::Ls(prefix)),
        Cmd::Get { name, target } => inspect(target, client::Command::Get(name)),
        Cmd::Group { name, target } => inspect(target, client::Command::Group(name)),
        Cmd::Watch { prefix, target } => inspect(target, client::Command::Watch(prefix)),
        Cmd::Stats(t) => inspect(t, client::Command::Stats),
    }
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

#[cfg(test)]
mod server_tests;
