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
    ///
    /// Keys and sections supervisord ignores (typos, misplaced keys) are warnings: printed, and
    /// ignored here too, unless --strict makes them errors.
    Check {
        /// The config file (.toml, or supervisord .conf/.ini).
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
        /// Treat warnings (unknown or misplaced keys, unknown sections) as errors: exit 2.
        #[arg(long)]
        strict: bool,
        /// Print the effective configuration as JSON (environment values included).
        #[arg(long)]
        json: bool,
    },
    /// Show the state of programs (all, or those named); exit 0 only if all shown are RUNNING.
    ///
    /// Usable as a Docker HEALTHCHECK: `HEALTHCHECK CMD supervisor status`.
    ///
    /// Exit codes: 0 all RUNNING, 3 some not RUNNING, 2 unknown name or bad request,
    /// 4 no supervisor answering on the socket.
    Status {
        /// Programs: NAME, GROUP:NAME, GROUP:* or all (default: every program).
        #[arg(value_name = "NAME")]
        names: Vec<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Start programs in priority order, waiting until each is RUNNING (or failed).
    ///
    /// Exit codes: 0 all started (or already running), 1 some failed, 2 unknown name,
    /// 4 no supervisor answering.
    Start(ActionArgs),
    /// Stop programs in reverse priority order, waiting until each has stopped.
    ///
    /// A program that ignores its stop signal is killed after its stopwaitsecs.
    Stop(ActionArgs),
    /// Stop programs (reverse priority order), then start them (priority order).
    Restart(ActionArgs),
    /// Send a signal to programs' processes, e.g. `supervisor signal HUP web`.
    Signal {
        /// Signal name (HUP, SIGUSR1, ...) or number.
        #[arg(value_name = "SIGNAL")]
        signal: String,
        /// Programs: NAME, GROUP:NAME, GROUP:* or all.
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Print a program's recent output (the last 64 KiB kept in memory), then follow it with -f.
    Tail {
        /// Keep printing what the program writes, across restarts, until interrupted.
        #[arg(short = 'f', long)]
        follow: bool,
        /// The program's stderr instead of its stdout.
        #[arg(long)]
        stderr: bool,
        /// Print at most the last N bytes of the kept output.
        #[arg(short = 'c', long, value_name = "N")]
        bytes: Option<usize>,
        /// The program: NAME or GROUP:NAME.
        #[arg(value_name = "NAME")]
        name: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Print recent lifecycle events, then follow new ones with -f.
    Events {
        /// Keep printing new events until interrupted.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the events of this program.
        #[arg(long, value_name = "NAME")]
        program: Option<String>,
        /// How many past events to print first (at most 10000).
        #[arg(short = 'n', long, value_name = "N", default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Why did NAME die? Its last deaths, newest first: when, how long it had run, how it
    /// died, who sent which signal from where (eBPF probe), and what the supervisor did next.
    Why {
        /// The program.
        #[arg(value_name = "NAME")]
        name: String,
        /// How many deaths to show.
        #[arg(long, value_name = "N", default_value_t = 5)]
        last: usize,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Re-read the config file and apply the changes (same as SIGHUP); prints what changed.
    Reload {
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Stop every program (reverse priority order) and exit the supervisor.
    Shutdown {
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Print a shell completion script: `supervisor completions bash > /etc/bash_completion.d/supervisor`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// How to reach the running supervisor, and how to print.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// The control socket of the running supervisor.
    #[arg(long, env = "SUPERVISOR_SOCKET", value_name = "PATH", default_value = crate::config::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Remote control instead of the socket: the supervisor's control_addr, as http://HOST:PORT.
    #[arg(long, env = "SUPERVISOR_URL", value_name = "URL")]
    pub url: Option<String>,
    /// With --url: the file holding the bearer token (the supervisor's control_token_file).
    #[arg(long, env = "SUPERVISOR_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Machine-readable output (JSON).
    #[arg(long)]
    pub json: bool,
}

/// `start`, `stop`, `restart`.
#[derive(Debug, Clone, Args)]
pub struct ActionArgs {
    /// Programs: NAME, GROUP:NAME, GROUP:* or all.
    #[arg(value_name = "NAME", required = true)]
    pub names: Vec<String>,
    /// Return once the request is applied, without waiting for the outcome.
    #[arg(long)]
    pub no_wait: bool,
    /// Give up waiting after this many seconds (the programs carry on).
    #[arg(long, value_name = "SECS", default_value_t = 120.0)]
    pub timeout: f64,
    #[command(flatten)]
    pub conn: ConnArgs,
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

    /// Remote control over TCP (HTTP, bearer token required), or `off` (the default).
    /// Needs a token file: --control-token-file or control_token_file in the config.
    #[arg(long, value_name = "ADDR|off")]
    pub control_addr: Option<String>,

    /// The file holding the bearer token for remote control (read once at start).
    #[arg(long, value_name = "PATH")]
    pub control_token_file: Option<PathBuf>,

    /// Log format: one JSON object per line, or supervisord-style text.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,

    /// An extra field on every JSON log line, e.g. `--log-field pod=$(POD_NAME)` with the
    /// Kubernetes Downward API (repeatable; text lines do not carry it).
    #[arg(long = "log-field", value_name = "KEY=VALUE")]
    pub log_fields: Vec<String>,

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
