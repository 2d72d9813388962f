//! The command line: parsing only (no system is touched here).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{LogFormat, ProbeMode};

/// A process supervisor for containers: runs as PID 1, reads supervisord's .conf files and its
/// own TOML, restarts programs the instant they die, and tells you why they died.
#[derive(Debug, Parser)]
#[command(name = "supervisor", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Supervise the programs of a config file (`-c FILE`), or one command (`-- CMD ARGS...`).
    ///
    /// Examples:
    ///   supervisor run -c /etc/supervisor/supervisord.conf
    ///   supervisor run -c supervisor.toml --metrics-addr 127.0.0.1:9469
    ///   supervisor run --restart on-failure -- my-server --port 8080
    Run(RunArgs),
    /// Validate a config file and print the effective programs; exit 2 on any error.
    Check {
        /// The config file (.toml, or supervisord .conf/.ini).
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The config file (.toml, or supervisord .conf/.ini).
    #[arg(short = 'c', long = "config", conflicts_with = "cmd")]
    pub config: Option<PathBuf>,

    /// Where the HTTP endpoint (/metrics, /healthz, /readyz, /api/...) listens, or `off`.
    #[arg(long, value_name = "ADDR|off")]
    pub metrics_addr: Option<String>,

    /// The control socket path.
    #[arg(long, env = "SUPERVISOR_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Log format: one JSON object per line, or supervisord-style text.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,

    /// eBPF forensics probe: load when permitted (auto), require it (on), or never (off).
    #[arg(long, value_enum)]
    pub probe: Option<ProbeMode>,

    /// Budget in seconds for stopping everything on SIGTERM (default 9, below Docker's 10).
    #[arg(long, value_name = "SECS")]
    pub shutdown_timeout: Option<f64>,

    /// Also print debug events (program added/removed ...).
    #[arg(long)]
    pub debug: bool,

    /// One-command mode: when to restart the command.
    #[arg(long, value_enum, default_value_t = Restart::Never, requires = "cmd")]
    pub restart: Restart,

    /// Accepted for `supervisord -n` compatibility; the supervisor always runs in the foreground.
    #[arg(short = 'n', long = "nodaemon", hide = true)]
    pub nodaemon: bool,

    /// One-command mode: the command and its arguments.
    #[arg(last = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Restart {
    Always,
    OnFailure,
    Never,
}
