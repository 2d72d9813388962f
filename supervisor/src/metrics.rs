//! The Prometheus registry: program metrics derived from the event stream, rendered at scrape time.
//!
//! [`Metrics`] is an [`EventSink`]: the engine hands it every event, and it updates a small
//! per-program record (state, pid, restarts, exits by cause, last exit) under a mutex — a few
//! field writes, never a wait. Counters and states therefore come from the same events as the
//! log and cannot disagree with it. Everything that changes without an event — uptime, memory
//! and CPU of each program's process group, the supervisor's own `process_*` metrics — is read
//! only when someone scrapes ([`Metrics::render`], blocking: run it off the runtime thread).
//! Nothing here runs between scrapes. The `supervisor_*` families are written straight into the
//! text exposition format — at 1,000 programs that is 20,000 samples, and building them as the
//! label/value objects of a client library first would cost several times the scrape budget —
//! and so are the supervisor's own `process_*` ones ([`process`], from `/proc/self`).
//!
//! Every labelled series exists as soon as a program is known: a program that never restarted
//! exports `supervisor_program_restarts_total 0`, and every exit cause and every state is there
//! with `0`, so dashboards and `increase()` work from the first scrape.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::event::{Event, EventSink, ExitCause, Kind, State};

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the metrics know about one program, kept up to date by its events.
#[derive(Debug, Clone)]
struct ProgramMetrics {
    /// The `group` label (absent when the program is in no group).
    group: Option<String>,
    state: State,
    /// The live process (= its process group id), for the memory/CPU scan at scrape time.
    pid: Option<u32>,
    /// When the current (or last) process was spawned.
    start_time: Option<SystemTime>,
    /// Spawns after the first one, as the engine counts them.
    restarts: u64,
    /// Process ends by cause, indexed like [`ExitCause::ALL`].
    exits: [u64; ExitCause::ALL.len()],
    /// The last exit status as a shell reports it (code, or 128 + signal).
    last_exit_status: Option<i32>,
    /// The signal that ended the last process (0 when it exited with a code).
    last_signal: Option<i32>,
    /// RUNNING and its readiness check (if any) has passed.
    ready: bool,
    /// Health checks that passed / failed.
    health_checks: [u64; 2],
    /// Signals the eBPF probe saw sent to the program, by (signal, sender, origin); at most
    /// [`MAX_SENDERS`] series, the rest counted under sender `other`.
    signals: BTreeMap<(String, String, &'static str), u64>,
    /// Signals the eBPF probe saw sent to the program's descendants, by signal (a bounded
    /// set of names).
    descendant_signals: BTreeMap<String, u64>,
}

/// Distinct (signal, sender) series per program (bounded cardinality).
const MAX_SENDERS: usize = 16;

impl Default for ProgramMetrics {
    fn default() -> Self {
        ProgramMetrics {
            group: None,
            state: State::Stopped,
            pid: None,
            start_time: None,
            restarts: 0,
            exits: [0; ExitCause::ALL.len()],
            last_exit_status: None,
            last_signal: None,
            ready: false,
            health_checks: [0; 2],
            signals: BTreeMap::new(),
            descendant_signals: BTreeMap::new(),
        }
    }
}

/// What the event sink keeps (shared by the engine's thread and scrapes).
#[derive(Debug, Default)]
struct Shared {
    programs: Mutex<BTreeMap<String, ProgramMetrics>>,
    orphans_reaped: AtomicU64,
    probe_loaded: std::sync::atomic::AtomicBool,
    /// Events the log dropped because its reader stalled (told by the log sink, not an event:
    /// the events themselves are what was lost).
    log_events_dropped: AtomicU64,
    /// The probe's count of lost records, read at scrape time (set once it is loaded).
    probe_lost: std::sync::OnceLock<LostCounter>,
    /// The running configuration's hash (`supervisor_build_info{config_hash}`): set at start,
    /// replaced by each `reloaded` event.
    config_hash: Mutex<String>,
}

/// The probe's lost-record counter, as [`Metrics::set_probe_lost_counter`] got it.
struct LostCounter(Box<dyn Fn() -> u64 + Send + Sync>);

impl std::fmt::Debug for LostCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LostCounter")
    }
}

/// The supervisor's metrics: an event sink that renders what it learnt when scraped.
pub struct Metrics {
    /// Updated by every event; copied out by each scrape.
    shared: Shared,
    /// What the `/proc` scan learnt on earlier scrapes (only scrapes take this lock).
    scanner: Mutex<proc_scan::Scanner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// The program metrics (empty until events arrive) and the supervisor's own.
    pub fn new() -> Metrics {
        Metrics {
            shared: Shared::default(),
            scanner: Mutex::new(proc_scan::Scanner::default()),
        }
    }

    /// The hash of the configuration the supervisor started with ([`crate::config::Config::hash`]).
    pub fn set_config_hash(&self, hash: String) {
        *self
            .shared
            .config_hash
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = hash;
    }

    /// Whether the eBPF probe was loaded (set once at start-up).
    pub fn set_probe_loaded(&self, loaded: bool) {
        self.shared.probe_loaded.store(loaded, Ordering::Relaxed);
    }

    /// Counts events the JSON/text log had to drop (its reader stalled).
    pub fn add_log_events_dropped(&self, n: u64) {
        self.shared
            .log_events_dropped
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Events the log dropped so far.
    pub fn log_events_dropped(&self) -> u64 {
        self.shared.log_events_dropped.load(Ordering::Relaxed)
    }

    /// Where to read the probe's lost-record count at scrape time (set once, when it loads).
    pub fn set_probe_lost_counter(&self, lost: impl Fn() -> u64 + Send + Sync + 'static) {
        let _ = self.shared.probe_lost.set(LostCounter(Box::new(lost)));
    }

    /// The text exposition of every metric. Reads `/proc`: call it from a blocking thread.
    /// It cannot fail (what `/proc` does not tell is left out); the `Result` keeps callers ready
    /// for a registry that can.
    pub fn render(&self) -> Result<Vec<u8>, std::convert::Infallible> {
        let mut out = String::new();
        self.write_supervisor_families(&mut out);
        process::write(&mut Text { out: &mut out });
        Ok(out.into_bytes())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl EventSink for Metrics {
    fn record(&self, event: &Event) {
        self.shared.record(event);
    }
}

impl Shared {
    fn record(&self, e: &Event) {
        if e.kind == Kind::OrphanReaped {
            self.orphans_reaped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let (Kind::Reloaded, Some(hash)) = (e.kind, &e.config_hash) {
            hash.clone_into(&mut self.config_hash.lock().unwrap_or_else(|p| p.into_inner()));
            return;
        }
        let Some(name) = e.program.as_deref() else {
            return;
        };
        let mut programs = self.programs.lock().unwrap_or_else(|p| p.into_inner());
        if e.kind == Kind::Removed {
            programs.remove(name);
            return;
        }
        // Every event that changes a program carries its new state; others are about it only.
        let Some(state) = e.state else { return };
        if !programs.contains_key(name) {
            programs.insert(name.to_owned(), ProgramMetrics::default());
        }
        let Some(p) = programs.get_mut(name) else {
            return;
        };
        p.state = state;
        p.ready = state == State::Running && (p.ready || e.ok == Some(true));
        if p.group != e.group {
            p.group.clone_from(&e.group);
        }
        match e.kind {
            Kind::Added => {
                if let Some(r) = e.restarts {
                    p.restarts = r;
                }
            }
            Kind::Spawned => {
                p.pid = e.pid;
                p.start_time = Some(e.ts);
                if let Some(r) = e.restarts {
                    p.restarts = r;
                }
            }
            Kind::Exited | Kind::Stopped => {
                p.pid = None;
                let signo = e.signal.as_deref().and_then(signal_number);
                let cause = e.cause.unwrap_or(if e.signal.is_some() {
                    ExitCause::Signaled
                } else {
                    ExitCause::Exited
                });
                p.exits[cause_index(cause)] += 1;
                p.last_signal = Some(signo.unwrap_or(0));
                p.last_exit_status = match (e.exit_code, signo) {
                    (Some(code), _) => Some(code),
                    (None, Some(sig)) => Some(128 + sig),
                    (None, None) => p.last_exit_status,
                };
            }
            Kind::HealthCheck => p.health_checks[usize::from(e.ok != Some(true))] += 1,
            Kind::SignalObserved => {
                let signal = e.signal.clone().unwrap_or_default();
                let sender = e.sender.clone().unwrap_or_default();
                let origin = signal_origin(e, &sender);
                let key = if p.signals.len() < MAX_SENDERS
                    || p.signals
                        .contains_key(&(signal.clone(), sender.clone(), origin))
                {
                    (signal, sender, origin)
                } else {
                    (signal, "other".to_string(), origin)
                };
                *p.signals.entry(key).or_default() += signal_count(e);
            }
            Kind::DescendantSignaled => {
                let signal = e.signal.clone().unwrap_or_default();
                *p.descendant_signals.entry(signal).or_default() += signal_count(e);
            }
            Kind::SpawnFailed => {
                p.pid = None;
                p.exits[cause_index(ExitCause::SpawnFailed)] += 1;
                // The status a shell would give (127/126), when the event carries one.
                if let Some(code) = e.exit_code {
                    p.last_exit_status = Some(code);
                    p.last_signal = Some(0);
                }
            }
            _ => {}
        }
    }
}

/// How many signals a `signal_observed`/`descendant_signaled` event stands for (the probe
/// folds identical repeats into one record).
fn signal_count(e: &Event) -> u64 {
    e.killed_by
        .as_ref()
        .and_then(|k| k.first())
        .map_or(1, |k| k.count.max(1))
}

fn cause_index(cause: ExitCause) -> usize {
    ExitCause::ALL.iter().position(|c| *c == cause).unwrap_or(0)
}

/// `SIGTERM` → 15, `SIGRTMIN+3` → its number, `SIG40` → 40.
fn signal_number(name: &str) -> Option<i32> {
    if let Some(n) = name.strip_prefix("SIGRTMIN+") {
        return n.parse::<i32>().ok().map(|n| libc::SIGRTMIN() + n);
    }
    crate::config::parse_signal(name)
}

/// One metric family: name, help, type.
struct FamilySpec {
    name: &'static str,
    help: &'static str,
    kind: Type,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Type {
    Counter,
    Gauge,
}

const fn family(name: &'static str, kind: Type, help: &'static str) -> FamilySpec {
    FamilySpec { name, help, kind }
}

const UP: FamilySpec = family(
    "supervisor_program_up",
    Type::Gauge,
    "1 when the program is RUNNING, else 0.",
);
const STATE: FamilySpec = family(
    "supervisor_program_state",
    Type::Gauge,
    "The program's supervisord state: 1 for the current state, 0 for the others.",
);
const RESTARTS: FamilySpec = family(
    "supervisor_program_restarts_total",
    Type::Counter,
    "Times the program was spawned again after its first spawn.",
);
const EXITS: FamilySpec = family(
    "supervisor_program_exits_total",
    Type::Counter,
    "Ends of the program's processes (and failed spawns), by cause.",
);
const READY: FamilySpec = family(
    "supervisor_program_ready",
    Type::Gauge,
    "1 when the program is RUNNING and its readiness check (if any) has passed, else 0.",
);
const HEALTH_CHECKS: FamilySpec = family(
    "supervisor_program_health_checks_total",
    Type::Counter,
    "Health checks run while the program was RUNNING, by result.",
);
const SIGNALS: FamilySpec = family(
    "supervisor_program_signals_total",
    Type::Counter,
    "Signals sent to the program's process, as the eBPF probe saw them, by signal, sender (its command, supervisor, or kernel) and origin (supervisor, kernel, inside or outside the container's PID namespace).",
);
const DESCENDANT_SIGNALS: FamilySpec = family(
    "supervisor_program_descendant_signals_total",
    Type::Counter,
    "Signals sent to processes the program's process forked (at any depth), as the eBPF probe saw them, by signal.",
);
const START_TIME: FamilySpec = family(
    "supervisor_program_start_time_seconds",
    Type::Gauge,
    "Unix time when the program's current or last process was spawned (0 if never).",
);
const UPTIME: FamilySpec = family(
    "supervisor_program_uptime_seconds",
    Type::Gauge,
    "Seconds since the program's current process was spawned (0 when no process is alive).",
);
const LAST_EXIT_CODE: FamilySpec = family(
    "supervisor_program_last_exit_code",
    Type::Gauge,
    "Exit status of the program's last process: its exit code, or 128 + signal number when a signal ended it (0 before any exit).",
);
const LAST_SIGNAL: FamilySpec = family(
    "supervisor_program_last_signal",
    Type::Gauge,
    "Number of the signal that ended the program's last process (0 if it exited with a code or never exited).",
);
const RSS: FamilySpec = family(
    "supervisor_program_resident_memory_bytes",
    Type::Gauge,
    "Resident memory of the processes in the program's process group, summed.",
);
const CPU: FamilySpec = family(
    "supervisor_program_cpu_seconds_total",
    Type::Counter,
    "CPU time (user + system, including waited-for children) of the processes in the program's current process group, summed; resets when the program restarts.",
);
const PROCESSES: FamilySpec = family(
    "supervisor_program_processes",
    Type::Gauge,
    "Processes in the program's process group.",
);
const ORPHANS: FamilySpec = family(
    "supervisor_orphans_reaped_total",
    Type::Counter,
    "Orphaned processes (not supervised programs) reaped by the supervisor.",
);
const BUILD_INFO: FamilySpec = family(
    "supervisor_build_info",
    Type::Gauge,
    "Always 1; the supervisor's version and the running configuration's hash (changes on reload) as labels.",
);
const PROBE_LOST: FamilySpec = family(
    "supervisor_probe_events_lost_total",
    Type::Counter,
    "Records of the eBPF probe lost because its ring buffer was full (a folded record counts for the signals it stood for), or undecodable.",
);
const PROBE_LOADED: FamilySpec = family(
    "supervisor_probe_loaded",
    Type::Gauge,
    "1 when the eBPF forensics probe is loaded (signal senders, OOM kills), else 0.",
);

const LOG_DROPPED: FamilySpec = family(
    "supervisor_log_events_dropped_total",
    Type::Counter,
    "Events left out of the supervisor's log on stdout because nobody read it for a while (the programs were never delayed; each burst is also said in one log line).",
);

/// Every family this module writes itself, in output order (the tests check each one).
#[cfg(test)]
const FAMILIES: [&FamilySpec; 20] = [
    &UP,
    &READY,
    &STATE,
    &RESTARTS,
    &EXITS,
    &HEALTH_CHECKS,
    &SIGNALS,
    &DESCENDANT_SIGNALS,
    &START_TIME,
    &UPTIME,
    &LAST_EXIT_CODE,
    &LAST_SIGNAL,
    &RSS,
    &CPU,
    &PROCESSES,
    &ORPHANS,
    &BUILD_INFO,
    &PROBE_LOADED,
    &LOG_DROPPED,
    &PROBE_LOST,
];

/// Where a signal came from, as a label value with four values: the supervisor, the kernel,
/// a process inside the supervisor's PID namespace, or one outside it (the host, another
/// container, a sidecar with its own namespace).
fn signal_origin(e: &Event, sender: &str) -> &'static str {
    match sender {
        "supervisor" => "supervisor",
        "kernel" => "kernel",
        _ => {
            let outside = e
                .killed_by
                .as_ref()
                .and_then(|k| k.first())
                .and_then(|k| k.outside_namespace)
                .unwrap_or(false);
            if outside {
                "outside"
            } else {
                "inside"
            }
        }
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Appends `s` as a label value (text format escaping: backslash, double quote, newline).
fn push_label_value(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The text exposition writer for the families above.
struct Text<'a> {
    out: &'a mut String,
}

impl Text<'_> {
    fn header(&mut self, f: &FamilySpec) {
        let kind = match f.kind {
            Type::Counter => "counter",
            Type::Gauge => "gauge",
        };
        // HELP texts are constants without backslashes or newlines: nothing to escape.
        let _ = write!(
            self.out,
            "# HELP {} {}\n# TYPE {} {kind}\n",
            f.name, f.help, f.name
        );
    }

    /// `name{labels[,key="value"]} value`; `labels` is already escaped.
    fn sample(
        &mut self,
        f: &FamilySpec,
        labels: &str,
        extra: Option<(&str, &str)>,
        value: impl std::fmt::Display,
    ) {
        self.out.push_str(f.name);
        if !labels.is_empty() || extra.is_some() {
            self.out.push('{');
            self.out.push_str(labels);
            if let Some((k, v)) = extra {
                if !labels.is_empty() {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                push_label_value(self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// What a program looks like at scrape time: its record plus what `/proc` says.
struct Row {
    /// `program="…"[,group="…"]`, escaped.
    labels: String,
    m: ProgramMetrics,
    usage: proc_scan::Usage,
}

impl Metrics {
    /// Writes every `supervisor_*` family in the text exposition format.
    fn write_supervisor_families(&self, out: &mut String) {
        // Copy out under the lock, then do the slow parts (/proc, formatting) without it, so
        // the engine's next event never waits for a scrape.
        let programs: Vec<(String, ProgramMetrics)> = {
            let map = self
                .shared
                .programs
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let pgids: Vec<u32> = programs.iter().filter_map(|(_, p)| p.pid).collect();
        let usage = self
            .scanner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .usage(&pgids);
        let now = SystemTime::now();
        let rows: Vec<Row> = programs
            .into_iter()
            .map(|(name, m)| {
                let mut labels = String::with_capacity(name.len() + 24);
                labels.push_str("program=\"");
                push_label_value(&mut labels, &name);
                labels.push('"');
                if let Some(g) = &m.group {
                    labels.push_str(",group=\"");
                    push_label_value(&mut labels, g);
                    labels.push('"');
                }
                let usage = m
                    .pid
                    .and_then(|pid| usage.get(&pid))
                    .copied()
                    .unwrap_or_default();
                Row { labels, m, usage }
            })
            .collect();
        out.reserve(rows.len() * 1500 + 2048);
        let mut t = Text { out };
        let one = |b: bool| u8::from(b);
        if !rows.is_empty() {
            t.header(&UP);
            for r in &rows {
                t.sample(&UP, &r.labels, None, one(r.m.state == State::Running));
            }
            t.header(&READY);
            for r in &rows {
                t.sample(&READY, &r.labels, None, one(r.m.ready));
            }
            t.header(&STATE);
            for r in &rows {
                for s in State::ALL {
                    t.sample(
                        &STATE,
                        &r.labels,
                        Some(("state", s.as_str())),
                        one(r.m.state == s),
                    );
                }
            }
            t.header(&RESTARTS);
            for r in &rows {
                t.sample(&RESTARTS, &r.labels, None, r.m.restarts);
            }
            t.header(&EXITS);
            for r in &rows {
                for (i, c) in ExitCause::ALL.iter().enumerate() {
                    t.sample(&EXITS, &r.labels, Some(("cause", c.as_str())), r.m.exits[i]);
                }
            }
            t.header(&HEALTH_CHECKS);
            for r in &rows {
                for (i, result) in ["success", "failure"].iter().enumerate() {
                    t.sample(
                        &HEALTH_CHECKS,
                        &r.labels,
                        Some(("result", result)),
                        r.m.health_checks[i],
                    );
                }
            }
            // Its label values appear as signals are seen: HELP/TYPE only until then.
            t.header(&SIGNALS);
            for r in &rows {
                for ((signal, sender, origin), n) in &r.m.signals {
                    let mut labels = r.labels.clone();
                    labels.push_str(",signal=\"");
                    push_label_value(&mut labels, signal);
                    labels.push_str("\",sender=\"");
                    push_label_value(&mut labels, sender);
                    labels.push('"');
                    t.sample(&SIGNALS, &labels, Some(("origin", origin)), n);
                }
            }
            t.header(&DESCENDANT_SIGNALS);
            for r in &rows {
                for (signal, n) in &r.m.descendant_signals {
                    t.sample(&DESCENDANT_SIGNALS, &r.labels, Some(("signal", signal)), n);
                }
            }
            t.header(&START_TIME);
            for r in &rows {
                t.sample(
                    &START_TIME,
                    &r.labels,
                    None,
                    r.m.start_time.map_or(0.0, unix_seconds),
                );
            }
            t.header(&UPTIME);
            for r in &rows {
                let up = match (r.m.pid, r.m.start_time) {
                    (Some(_), Some(s)) => now
                        .duration_since(s)
                        .map(|d| d.as_secs_f64())
                        .unwrap_or(0.0),
                    _ => 0.0,
                };
                t.sample(&UPTIME, &r.labels, None, up);
            }
            t.header(&LAST_EXIT_CODE);
            for r in &rows {
                t.sample(
                    &LAST_EXIT_CODE,
                    &r.labels,
                    None,
                    r.m.last_exit_status.unwrap_or(0),
                );
            }
            t.header(&LAST_SIGNAL);
            for r in &rows {
                t.sample(&LAST_SIGNAL, &r.labels, None, r.m.last_signal.unwrap_or(0));
            }
            t.header(&RSS);
            for r in &rows {
                t.sample(&RSS, &r.labels, None, r.usage.rss_bytes);
            }
            t.header(&CPU);
            for r in &rows {
                t.sample(&CPU, &r.labels, None, r.usage.cpu_seconds);
            }
            t.header(&PROCESSES);
            for r in &rows {
                t.sample(&PROCESSES, &r.labels, None, r.usage.processes);
            }
        }
        t.header(&ORPHANS);
        t.sample(
            &ORPHANS,
            "",
            None,
            self.shared.orphans_reaped.load(Ordering::Relaxed),
        );
        t.header(&BUILD_INFO);
        let mut labels = String::from("version=\"");
        push_label_value(&mut labels, env!("CARGO_PKG_VERSION"));
        labels.push('"');
        let hash = self
            .shared
            .config_hash
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        t.sample(&BUILD_INFO, &labels, Some(("config_hash", &hash)), 1);
        t.header(&PROBE_LOADED);
        t.sample(
            &PROBE_LOADED,
            "",
            None,
            u8::from(self.shared.probe_loaded.load(Ordering::Relaxed)),
        );
        t.header(&LOG_DROPPED);
        t.sample(
            &LOG_DROPPED,
            "",
            None,
            self.shared.log_events_dropped.load(Ordering::Relaxed),
        );
        t.header(&PROBE_LOST);
        t.sample(
            &PROBE_LOST,
            "",
            None,
            self.shared.probe_lost.get().map_or(0, |lost| (lost.0)()),
        );
    }
}

/// Memory and CPU of process groups, from `/proc/<pid>/stat`.
///
/// Opening a `/proc` file is what costs (about 10 µs, against 4 µs to re-read an open one), so
/// the scanner keeps what it learnt between scrapes: the process group of every pid it has
/// seen, and an open `stat` file for each process of a watched group. A scrape then lists
/// `/proc`, opens only pids it has not seen before, and re-reads the open files. An open `stat`
/// file belongs to one process for good: once that process is gone, reading it fails (ESRCH)
/// rather than describing a newer process that reuses the pid. Nothing runs between scrapes.
pub(crate) mod proc_scan {
    use std::collections::{HashMap, HashSet};
    use std::os::fd::OwnedFd;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use rustix::fs::{openat, Dir, Mode, OFlags, CWD};

    /// What the processes of one process group use right now.
    #[derive(Debug, Clone, Copy, Default, PartialEq)]
    pub struct Usage {
        pub rss_bytes: u64,
        /// utime + stime + cutime + cstime, in seconds.
        pub cpu_seconds: f64,
        pub processes: u32,
    }

    /// Open `stat` files kept at most (also capped at a quarter of RLIMIT_NOFILE); beyond that
    /// the files are opened afresh on each scrape, which is slower but still right.
    const MAX_HELD: usize = 4096;
    /// Re-reads get helper threads from this many on.
    const PARALLEL_FROM: usize = 256;
    /// Files re-read per grab from the shared work counter.
    const CHUNK: usize = 32;

    #[derive(Debug)]
    struct Known {
        pgrp: u32,
        /// Held only while the process belongs to a watched group.
        stat: Option<OwnedFd>,
        /// The held file is out being re-read during this scan.
        rereading: bool,
        /// The scan that last listed this pid (entries not listed any more are dropped).
        seen: u64,
    }

    /// Remembers pids between scrapes; see the module documentation.
    #[derive(Debug, Default)]
    pub struct Scanner {
        proc_dir: Option<OwnedFd>,
        known: HashMap<u32, Known>,
        scans: u64,
    }

    impl Scanner {
        /// The usage of every process group in `pgids` (groups with no process read as zero).
        pub fn usage(&mut self, pgids: &[u32]) -> HashMap<u32, Usage> {
            let mut out: HashMap<u32, Usage> =
                pgids.iter().map(|&g| (g, Usage::default())).collect();
            if pgids.is_empty() {
                // Nothing watched: let go of everything held.
                self.known.clear();
                return out;
            }
            let Some(dir) = self.proc_dir() else {
                return out;
            };
            let wanted: HashSet<u32> = pgids.iter().copied().collect();
            let max_held = max_held();
            self.scans += 1;
            let scan = self.scans;

            // Take out the open files of watched groups (others' are closed here) to re-read
            // them on helper threads while this one lists /proc and opens the new pids.
            let mut held: Vec<(u32, OwnedFd)> = Vec::new();
            for (pid, k) in self.known.iter_mut() {
                if let Some(fd) = k.stat.take() {
                    if wanted.contains(&k.pgrp) {
                        k.rereading = true;
                        held.push((*pid, fd));
                    }
                }
            }
            let next = AtomicUsize::new(0);
            let threads = std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(4);
            let helpers = if held.len() >= PARALLEL_FROM {
                threads - 1
            } else {
                0
            };
            let (reread, fresh) = std::thread::scope(|s| {
                let handles: Vec<_> = (0..helpers)
                    .map(|_| s.spawn(|| reread_share(&held, &next)))
                    .collect();
                let fresh = self.list(&dir, &wanted, scan, max_held.saturating_sub(held.len()));
                let mut results = reread_share(&held, &next);
                for h in handles {
                    results.extend(h.join().unwrap_or_default());
                }
                (results, fresh)
            });
            self.known.retain(|_, k| k.seen == scan);

            let (page, ticks) = constants();
            for stat in &fresh {
                add(&mut out, stat, page, ticks);
            }
            let mut stats: Vec<Option<Stat>> = (0..held.len()).map(|_| None).collect();
            for (i, stat) in reread {
                if let Some(slot) = stats.get_mut(i) {
                    *slot = Some(stat);
                }
            }
            let mut kept = self.known.values().filter(|k| k.stat.is_some()).count();
            for ((pid, fd), stat) in held.into_iter().zip(stats) {
                let known = self.known.get_mut(&pid);
                let Some(stat) = stat else {
                    // Gone since the last scan: the file is closed here.
                    if let Some(k) = known {
                        k.rereading = false;
                    }
                    continue;
                };
                let member = wanted.contains(&stat.pgrp);
                if member && !stat.zombie {
                    add(&mut out, &stat, page, ticks);
                }
                if let Some(k) = known {
                    k.rereading = false;
                    k.pgrp = stat.pgrp;
                    if member && kept < max_held {
                        k.stat = Some(fd);
                        kept += 1;
                    }
                }
            }
            out
        }

        /// Lists /proc: marks every pid seen, opens the ones not known yet (and known ones of a
        /// watched group without an open file). Returns the stats of watched, live processes.
        fn list(
            &mut self,
            dir: &OwnedFd,
            wanted: &HashSet<u32>,
            scan: u64,
            mut may_hold: usize,
        ) -> Vec<Stat> {
            let mut found = Vec::new();
            let Ok(listing) = Dir::read_from(dir) else {
                return found;
            };
            let mut buf = [0u8; 1024];
            for entry in listing.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .ok()
                    .and_then(|n| n.parse::<u32>().ok())
                else {
                    continue;
                };
                if let Some(k) = self.known.get_mut(&pid) {
                    k.seen = scan;
                    if k.rereading || k.stat.is_some() || !wanted.contains(&k.pgrp) {
                        continue;
                    }
                }
                let Some((fd, stat)) = open_stat(dir, pid, &mut buf) else {
                    continue;
                };
                let member = wanted.contains(&stat.pgrp);
                let keep = member && may_hold > 0;
                may_hold -= usize::from(keep);
                self.known.insert(
                    pid,
                    Known {
                        pgrp: stat.pgrp,
                        stat: keep.then_some(fd),
                        rereading: false,
                        seen: scan,
                    },
                );
                if member && !stat.zombie {
                    found.push(stat);
                }
            }
            found
        }

        fn proc_dir(&mut self) -> Option<OwnedFd> {
            if self.proc_dir.is_none() {
                self.proc_dir = openat(
                    CWD,
                    "/proc",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .ok();
            }
            self.proc_dir.as_ref().and_then(|d| d.try_clone().ok())
        }
    }

    /// Re-reads chunks of `held` until none is left; returns (index, stat) of the readable ones.
    fn reread_share(held: &[(u32, OwnedFd)], next: &AtomicUsize) -> Vec<(usize, Stat)> {
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let start = next.fetch_add(CHUNK, Ordering::Relaxed);
            let Some(chunk) = held
                .get(start..(start + CHUNK).min(held.len()))
                .filter(|c| !c.is_empty())
            else {
                return out;
            };
            for (i, (_, fd)) in chunk.iter().enumerate() {
                let Ok(n) = rustix::io::pread(fd, &mut buf, 0) else {
                    continue;
                };
                if let Some(stat) = buf.get(..n).and_then(parse_stat) {
                    out.push((start + i, stat));
                }
            }
        }
    }

    fn open_stat(dir: &OwnedFd, pid: u32, buf: &mut [u8]) -> Option<(OwnedFd, Stat)> {
        let fd = openat(
            dir,
            format!("{pid}/stat").as_str(),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let n = rustix::io::read(&fd, &mut *buf).ok()?;
        let stat = parse_stat(buf.get(..n)?)?;
        Some((fd, stat))
    }

    fn add(out: &mut HashMap<u32, Usage>, stat: &Stat, page: u64, ticks: f64) {
        if let Some(u) = out.get_mut(&stat.pgrp) {
            u.rss_bytes += stat.rss_pages.saturating_mul(page);
            u.cpu_seconds += stat.cpu_ticks as f64 / ticks;
            u.processes += 1;
        }
    }

    /// The page size and clock ticks per second.
    pub(super) fn constants() -> (u64, f64) {
        // SAFETY: sysconf has no preconditions; it only reads system constants.
        let (page, ticks) = unsafe {
            (
                libc::sysconf(libc::_SC_PAGESIZE),
                libc::sysconf(libc::_SC_CLK_TCK),
            )
        };
        (
            u64::try_from(page).unwrap_or(4096),
            if ticks > 0 { ticks as f64 } else { 100.0 },
        )
    }

    fn max_held() -> usize {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        usize::try_from(limit / 4)
            .unwrap_or(usize::MAX)
            .min(MAX_HELD)
    }

    /// The fields of `/proc/<pid>/stat` the metrics use.
    #[derive(Debug, PartialEq, Eq)]
    pub struct Stat {
        /// Dead, not yet reaped: uses nothing, is not a process of the program any more.
        pub zombie: bool,
        pub pgrp: u32,
        pub cpu_ticks: u64,
        pub rss_pages: u64,
    }

    /// Parses a stat line. The command name (field 2) may contain spaces, parentheses and
    /// bytes that are not UTF-8, so the fields are counted from the last `)`.
    pub fn parse_stat(line: &[u8]) -> Option<Stat> {
        let close = line.iter().rposition(|&b| b == b')')?;
        let rest = std::str::from_utf8(line.get(close + 1..)?).ok()?;
        let f: Vec<&str> = rest.split_ascii_whitespace().take(22).collect();
        // rest starts at field 3 (state): field k is f[k - 3].
        let num = |k: usize| f.get(k - 3).and_then(|s| s.parse::<u64>().ok());
        let zombie = matches!(f.first().copied(), Some("Z" | "X"));
        let pgrp = u32::try_from(num(5)?).ok()?;
        let cpu_ticks = num(14)? + num(15)? + num(16).unwrap_or(0) + num(17).unwrap_or(0);
        // rss is signed in the kernel's format; a negative value never happens in practice.
        let rss_pages = f
            .get(24 - 3)
            .and_then(|s| s.parse::<i64>().ok())
            .map_or(0, |v| v.max(0) as u64);
        Some(Stat {
            zombie,
            pgrp,
            cpu_ticks,
            rss_pages,
        })
    }
}

mod process;

#[cfg(test)]
pub(crate) mod tests;
