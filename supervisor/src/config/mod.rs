//! Configuration: what to supervise and how.
//!
//! Two front ends produce the same [`Config`]: native TOML ([`toml_format`]) and supervisord's
//! INI dialect ([`ini_format`]). Everything after parsing works only on these types, so the two
//! formats cannot behave differently. Parsing validates completely (file:line on every error)
//! before anything is started.

pub mod check;
pub mod describe;
pub mod expand;
pub mod ini_format;
pub mod rpc_servers;
pub mod toml_format;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

/// Default address of the HTTP endpoint (`/metrics`, `/healthz`, ...): reachable from outside the
/// container so Prometheus can scrape it.
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9469";
/// Default control socket: not supervisord's customary `/var/run/supervisor.sock` (`/var/run` is `/run`): a `.conf` that
/// serves XML-RPC there for `supervisorctl` keeps it, and our control socket lives beside it.
pub const DEFAULT_SOCKET: &str = "/run/supervisor-control.sock";
/// Default global shutdown budget: below Docker's 10 s so `docker stop` never needs SIGKILL.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(9);

/// A whole, validated configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The file this configuration was read from (the top-level one).
    pub source: PathBuf,
    /// Global settings (`[supervisor]` in TOML, `[supervisord]` in INI).
    pub settings: Settings,
    /// Every process to supervise, already expanded (`numprocs`), sorted by (priority, name).
    pub programs: Vec<ProgramSpec>,
    /// supervisord's `[eventlistener:x]` pools, read and checked (the engine does not run them
    /// yet: a notice says so).
    pub eventlisteners: Vec<EventListenerSpec>,
    /// Things accepted but ignored (one line each), logged once at start-up.
    pub notices: Vec<String>,
    /// Unknown keys and sections that supervisord ignores and so does this supervisor, each with
    /// file:line; logged at start-up; `check --strict` refuses them.
    pub warnings: Vec<String>,
}

impl Config {
    /// A short, stable fingerprint of the effective configuration (settings, programs, event
    /// listeners — not the notices), for `supervisor_build_info{config_hash}`: pods whose hash
    /// differs run different configs. FNV-1a 64 over its JSON form, as 16 hex digits.
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(&(&self.settings, &self.programs, &self.eventlisteners))
            .unwrap_or_default();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in json {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}

/// One `[eventlistener:x]` pool: supervisord's event listener processes and what they subscribe
/// to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventListenerSpec {
    /// The pool's name (`x` of `[eventlistener:x]`), its processes' group.
    pub pool: String,
    /// The event types subscribed to (`events=`), upper case, as written, without repeats.
    pub events: Vec<String>,
    /// Events kept for the pool while its listeners are busy (`buffer_size`, default 10).
    pub buffer_size: u32,
    /// `result_handler` (supervisord's default unless set).
    pub result_handler: String,
    /// The pool's priority (default -1: started first, stopped last).
    pub priority: i32,
    /// The pool's processes (`numprocs`), with every program setting.
    pub processes: Vec<ProgramSpec>,
    /// Where the section was opened.
    pub defined_at: Location,
}

/// Global settings. `None` means "not set in the file": the command line or the default applies.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Settings {
    /// `metrics_addr`: where the HTTP endpoint listens; `Some(None)` means `off`.
    pub metrics_addr: Option<Option<SocketAddr>>,
    /// `socket`: the control socket path.
    pub socket: Option<PathBuf>,
    /// `log_format`: `json` or `text`.
    pub log_format: Option<LogFormat>,
    /// `probe`: `auto`, `on` or `off` (eBPF forensics).
    pub probe: Option<ProbeMode>,
    /// `shutdown_timeout`: the global budget for stopping everything.
    pub shutdown_timeout: Option<Duration>,
    /// `control_addr`: where remote control over TCP listens (HTTP, bearer token required).
    /// Off unless set; a file that sets it must set `control_token_file` too.
    pub control_addr: Option<SocketAddr>,
    /// `control_token_file`: the file holding the bearer token remote control requires (read
    /// once at start).
    pub control_token_file: Option<PathBuf>,
    /// `[unix_http_server]` / `[inet_http_server]`: supervisord's XML-RPC for `supervisorctl`.
    pub rpc: rpc_servers::RpcServers,
}

/// The error for a `control_addr` without a `control_token_file` (both formats).
pub(crate) const CONTROL_TOKEN_NEEDED: &str = "remote control needs a token: also set \
     control_token_file to a file holding the bearer token (e.g. made with `head -c 32 /dev/urandom | base64 > FILE; chmod 600 FILE`), \
     or remove control_addr to keep control on the local socket only";

/// `control_addr`: `IP:PORT`, or `off`.
pub(crate) fn parse_control_addr(s: &str) -> Result<Option<SocketAddr>, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    t.parse().map(Some).map_err(|_| {
        format!("{s:?} is not allowed; use an IP address and port like 127.0.0.1:9470 or [::1]:9470, or off")
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ProbeMode {
    #[default]
    Auto,
    On,
    Off,
}

/// When a program that exited is started again (supervisord's `autorestart`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoRestart {
    /// `true`: always.
    Always,
    /// `false`: never.
    Never,
    /// `unexpected`: only when the exit code is not in `exitcodes`.
    Unexpected,
}

/// Where a program's stdout or stderr goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LogTarget {
    /// Forwarded line by line to the supervisor's own stdout, tagged with the program.
    Stdout,
    /// Forwarded line by line to the supervisor's own stderr, tagged with the program.
    Stderr,
    /// Discarded (`NONE`).
    Discard,
    /// Written to a file, rotated when it reaches `max_bytes` (0: never), keeping `backups` old files.
    File {
        path: PathBuf,
        max_bytes: u64,
        backups: u32,
    },
}

/// Where in which file something was written, for error messages and `check` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One supervised process (after `numprocs` expansion).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProgramSpec {
    /// The process name (`process_name` expanded; equal to the program name when numprocs = 1).
    pub name: String,
    /// The group it belongs to: `[group:x]`, or the program name when numprocs > 1.
    pub group: Option<String>,
    /// argv; `command[0]` is looked up in PATH when it contains no `/`.
    pub command: Vec<String>,
    pub directory: Option<PathBuf>,
    /// User (name or numeric uid) to run as; requires the supervisor to be root.
    pub user: Option<String>,
    /// Extra environment, added to the supervisor's own.
    pub environment: Vec<(String, String)>,
    pub umask: Option<u32>,
    pub autostart: bool,
    pub autorestart: AutoRestart,
    pub exitcodes: Vec<i32>,
    #[serde(with = "secs")]
    pub startsecs: Duration,
    pub startretries: u32,
    /// Signal number sent to stop the program.
    pub stopsignal: i32,
    #[serde(with = "secs")]
    pub stopwaitsecs: Duration,
    pub stopasgroup: bool,
    pub killasgroup: bool,
    pub priority: i32,
    pub redirect_stderr: bool,
    pub stdout: LogTarget,
    pub stderr: LogTarget,
    /// A critical program that stops for good makes the supervisor stop everything and exit with
    /// the program's exit code.
    pub critical: bool,
    /// Programs that must be ready before this one starts (and that stop after it).
    pub depends_on: Vec<String>,
    /// How readiness is known (`None`: supervisord's startsecs rule).
    pub ready: Option<check::Check>,
    /// How long readiness may take before the start counts as failed.
    #[serde(with = "secs")]
    pub ready_timeout: Duration,
    /// A periodic health check while RUNNING (`None`: none, and no timer).
    pub health: Option<check::Check>,
    #[serde(with = "secs")]
    pub health_interval: Duration,
    #[serde(with = "secs")]
    pub health_timeout: Duration,
    /// Consecutive failed health checks that make the program restart.
    pub health_retries: u32,
    /// Where the program was defined.
    pub defined_at: Location,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

impl ProgramSpec {
    /// Supervisord's defaults for a program called `name`, running `command`.
    pub fn new(name: &str, command: Vec<String>, defined_at: Location) -> Self {
        ProgramSpec {
            name: name.to_string(),
            group: None,
            command,
            directory: None,
            user: None,
            environment: Vec::new(),
            umask: None,
            autostart: true,
            autorestart: AutoRestart::Unexpected,
            exitcodes: vec![0],
            startsecs: Duration::from_secs(1),
            startretries: 3,
            stopsignal: libc::SIGTERM,
            stopwaitsecs: Duration::from_secs(10),
            stopasgroup: false,
            killasgroup: false,
            priority: 999,
            redirect_stderr: false,
            stdout: LogTarget::Stdout,
            stderr: LogTarget::Stderr,
            critical: false,
            depends_on: Vec::new(),
            ready: None,
            ready_timeout: check::READY_TIMEOUT,
            health: None,
            health_interval: check::HEALTH_INTERVAL,
            health_timeout: check::HEALTH_TIMEOUT,
            health_retries: check::HEALTH_RETRIES,
            defined_at,
        }
    }

    /// The same program except for things that do not need a restart to apply? No: any change
    /// to the spec restarts the program on reload; `defined_at` alone does not count.
    pub fn same_as(&self, other: &ProgramSpec) -> bool {
        let mut a = self.clone();
        a.defined_at = other.defined_at.clone();
        a == *other
    }
}

/// A configuration error: what, where (file:line), and what is allowed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{location}: {key}: {message}")]
    Invalid {
        location: Location,
        key: String,
        message: String,
    },
    /// A file that cannot be read: missing, unreadable, a loop of symbolic links, ...
    #[error("{}{}: {message}", .path.display(), included_by(.included_at.as_ref()))]
    Read {
        path: PathBuf,
        /// The `[include] files=` that named it, for an included file.
        included_at: Option<Location>,
        message: String,
    },
}

fn included_by(at: Option<&Location>) -> String {
    at.map(|at| format!(" (included by {at})"))
        .unwrap_or_default()
}

/// Reads a configuration file as UTF-8. Errors say which file (and, for an included one, which
/// `[include]` named it), what is wrong and what to do; bytes that are not UTF-8 are reported
/// with their line.
pub(crate) fn read_file(
    path: &Path,
    included_at: Option<&Location>,
) -> Result<String, ConfigError> {
    let fail = |message: String| ConfigError::Read {
        path: path.to_path_buf(),
        included_at: included_at.cloned(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| {
        fail(match e.raw_os_error() {
            Some(libc::ELOOP) => "cannot be read: the path is a loop of symbolic links (ELOOP); point the link at a real file"
                .to_string(),
            Some(libc::ENOENT) => "no such file (or a symbolic link to a missing file); check the path"
                .to_string(),
            Some(libc::EISDIR) => "is a directory, not a configuration file".to_string(),
            Some(libc::EACCES) => {
                format!("cannot be read: {e}; make it readable by the supervisor's user")
            }
            _ => format!("cannot be read: {e}"),
        })
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
        let column = 1 + valid.iter().rev().take_while(|&&b| b != b'\n').count();
        ConfigError::invalid(
            path,
            line,
            "encoding",
            format!(
                "byte {column} of this line is not valid UTF-8{}; save the file as UTF-8 (e.g. \
                 iconv -f latin1 -t utf-8 FILE)",
                included_by(included_at)
            ),
        )
    })
}

impl ConfigError {
    pub fn invalid(file: &Path, line: usize, key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            location: Location {
                file: file.to_path_buf(),
                line,
            },
            key: key.to_string(),
            message: message.into(),
        }
    }
}

/// Loads a configuration file, choosing the format by extension (`.toml` → TOML, `.conf`/`.ini`
/// → supervisord) or, for other names, by content (a `[program:` or `[supervisord]` section
/// means supervisord).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = read_file(path, None)?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let is_ini = match ext {
        "toml" => false,
        "conf" | "ini" => true,
        _ => text.lines().any(|l| {
            let l = l.trim_start();
            l.starts_with("[program:")
                || l.starts_with("[supervisord]")
                || l.starts_with("[include]")
        }),
    };
    if is_ini {
        ini_format::parse(path, &text)
    } else {
        toml_format::parse(path, &text)
    }
}

/// Parses a signal name as supervisord accepts it (`TERM`, `SIGTERM`, `term`, or a number).
pub fn parse_signal(s: &str) -> Option<i32> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let up = t.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    SIGNALS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// The name of a signal (`TERM` → `"SIGTERM"`), or `"SIG<n>"` for unnamed ones.
pub fn signal_name(sig: i32) -> String {
    match SIGNALS.iter().find(|(_, v)| *v == sig) {
        Some((n, _)) => format!("SIG{n}"),
        None if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&sig) => {
            format!("SIGRTMIN+{}", sig - libc::SIGRTMIN())
        }
        None => format!("SIG{sig}"),
    }
}

const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];
