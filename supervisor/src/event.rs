//! The event stream: one [`Event`] type for everything that happens.
//!
//! The engine is the only producer. Every sink — the log, the Prometheus registry, the history
//! ring behind `/api/events` and `why`, live API subscribers — is fed from [`EventBus::emit`], so
//! they can never disagree. `emit` never blocks: the history and metrics are updated in place
//! (cheap, bounded), and the broadcast channel drops the oldest events for a subscriber that
//! falls behind (it is told how many it missed).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::broadcast;

/// supervisord's process states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Stopped,
    Starting,
    Running,
    Backoff,
    Stopping,
    Exited,
    Fatal,
}

impl State {
    pub const ALL: [State; 7] = [
        State::Stopped,
        State::Starting,
        State::Running,
        State::Backoff,
        State::Stopping,
        State::Exited,
        State::Fatal,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            State::Stopped => "STOPPED",
            State::Starting => "STARTING",
            State::Running => "RUNNING",
            State::Backoff => "BACKOFF",
            State::Stopping => "STOPPING",
            State::Exited => "EXITED",
            State::Fatal => "FATAL",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// What kind of thing happened. Serialized as the `event` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The supervisor started (config loaded).
    Started,
    /// A program's process was forked and exec'd.
    Spawned,
    /// Forking or exec'ing failed (`error` says why).
    SpawnFailed,
    /// STARTING → RUNNING after startsecs.
    Running,
    /// The process died on its own (not asked to stop).
    Exited,
    /// A stop was requested; the stop signal was sent.
    Stopping,
    /// The process died after a stop request.
    Stopped,
    /// The stop wait ran out: SIGKILL sent.
    Killing,
    /// Waiting before the next start attempt.
    Backoff,
    /// Too many failed starts: the supervisor gave up.
    Fatal,
    /// An orphaned process (not a supervised one) was reaped.
    OrphanReaped,
    /// A signal arrived for the supervisor itself.
    SignalReceived,
    /// A signal was sent to a program on request.
    Signaled,
    /// The configuration was reloaded (SIGHUP / `reload`).
    Reloaded,
    /// A program was added to or removed from supervision by a reload.
    Added,
    Removed,
    /// The supervisor is shutting down (`reason` says why).
    ShuttingDown,
    /// The supervisor has stopped everything and is about to exit.
    Exiting,
    /// A notice about the configuration or the environment.
    Notice,
    /// The program's readiness check passed (it is RUNNING and ready).
    Ready,
    /// The program waits for its dependencies to be ready before it starts.
    Waiting,
    /// One health check (debug level; counted in metrics, not kept in the history).
    HealthCheck,
    /// Too many failed health checks in a row: the program is restarted.
    Unhealthy,
    /// The eBPF probe saw a signal sent to the program (whether or not it died of it).
    SignalObserved,
    /// The eBPF probe saw a signal sent to a descendant of the program's process (debug level;
    /// counted in metrics).
    DescendantSignaled,
    /// A descendant of the program's process (a child of a wrapper script, a worker...) was
    /// killed by a signal.
    DescendantKilled,
}

/// Why a process ended (bounded set: a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitCause {
    /// Exited with a status code.
    Exited,
    /// Killed by a signal.
    Signaled,
    /// Killed by the kernel's OOM killer.
    OomKilled,
    /// Killed by a signal and dumped core.
    CoreDumped,
    /// Never ran: fork/exec failed.
    SpawnFailed,
    /// Stopped by the supervisor because its health check kept failing.
    Unhealthy,
}

impl ExitCause {
    pub const ALL: [ExitCause; 6] = [
        ExitCause::Exited,
        ExitCause::Signaled,
        ExitCause::OomKilled,
        ExitCause::CoreDumped,
        ExitCause::SpawnFailed,
        ExitCause::Unhealthy,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ExitCause::Exited => "exited",
            ExitCause::Signaled => "signaled",
            ExitCause::OomKilled => "oom_killed",
            ExitCause::CoreDumped => "core_dumped",
            ExitCause::SpawnFailed => "spawn_failed",
            ExitCause::Unhealthy => "unhealthy",
        }
    }
}

/// How a process came to die (the `origin` field of `exited`/`stopped` events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A process sent it a signal (kill, sigqueue, tkill).
    SignalFromProcess,
    /// The kernel generated the signal (a fault: SIGSEGV, SIGBUS, SIGILL, SIGFPE...).
    SignalFromKernel,
    /// The kernel's OOM killer chose it.
    OomKilled,
    /// The supervisor stopped it (stop, restart, shutdown, reload, unhealthy).
    StoppedBySupervisor,
    /// It exited on its own; no signal it received ended it.
    Exited,
    /// A process it forked was killed by a signal shortly before it exited (a wrapper script
    /// whose server was killed): the likely cause.
    DescendantKilled,
}

/// One signal sent to a process (or to one of its descendants) before it died.
#[derive(Debug, Clone, Serialize)]
pub struct KilledBy {
    pub signal: String,
    /// `si_code` name: SI_USER (kill), SI_QUEUE, SI_TKILL, SI_KERNEL, SEGV_MAPERR...
    pub code: String,
    /// Whether the signal reached it: delivered, ignored, already pending...
    pub result: String,
    /// The sender (0 when outside the supervisor's PID namespace). The sender fields are
    /// absent for a signal the kernel generated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_comm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_ppid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_parent_comm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outside_namespace: Option<bool>,
    /// Sent by a process (as opposed to generated by the kernel).
    pub from_process: bool,
    /// For a signal the kernel generated: why, in words ("broken pipe: ...").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How many identical signals this stands for (absent when 1).
    #[serde(skip_serializing_if = "is_one")]
    pub count: u64,
    /// For a signal to a descendant: which one ("its child sleep (pid 52)").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_pid: Option<u32>,
    /// In an `exited`/`stopped` event: seconds between the signal and the exit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before_exit_s: Option<f64>,
    /// One readable sentence.
    pub text: String,
}

fn is_one(n: &u64) -> bool {
    *n == 1
}

/// One thing that happened. Optional fields are present only where they apply.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// RFC 3339 with milliseconds, UTC.
    #[serde(serialize_with = "ser_ts")]
    pub ts: SystemTime,
    pub level: Level,
    #[serde(rename = "event")]
    pub kind: Kind,
    /// Sequence number, increasing by one per event (for `since=` and gap detection).
    pub seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The sentence supervisord would print.
    pub msg: String,
    /// The program's state after this event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_state: Option<State>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Signal name, e.g. `SIGTERM` (the one that killed it, or the one sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core_dumped: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<ExitCause>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarts: Option<u64>,
    /// OS error text (spawn failures, signal failures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For `signal_received`: who sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_uid: Option<u32>,
    /// For `signal_observed`: who sent it, as a metric label: the sender's command,
    /// `supervisor` or `kernel`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// For `backoff`: seconds until the next attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_in_s: Option<f64>,
    /// For `reloaded`: the new configuration's [`crate::config::Config::hash`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// For `health_check`: whether it passed; for `running`/`ready`: whether the program is ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    /// For `exited`/`stopped`: how the process came to die.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// For `exited`/`stopped`: the signals sent to the process before it died (eBPF probe).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub killed_by: Option<Vec<KilledBy>>,
}

fn ser_ts<S: serde::Serializer>(ts: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*ts))
}

impl Event {
    /// A new event with only the always-present fields set; `seq` is filled in by the bus.
    pub fn new(level: Level, kind: Kind, msg: impl Into<String>) -> Self {
        Event {
            ts: SystemTime::now(),
            level,
            kind,
            seq: 0,
            program: None,
            group: None,
            pid: None,
            msg: msg.into(),
            state: None,
            from_state: None,
            exit_code: None,
            signal: None,
            core_dumped: None,
            expected: None,
            cause: None,
            uptime_s: None,
            restarts: None,
            error: None,
            sender_pid: None,
            sender_uid: None,
            sender: None,
            retry_in_s: None,
            config_hash: None,
            ok: None,
            origin: None,
            killed_by: None,
        }
    }

    pub fn to_json(&self) -> String {
        // Serializing this struct cannot fail: no maps with non-string keys, no foreign types.
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"msg\":\"unserializable event: {e}\"}}"))
    }

    /// supervisord's text log line: `2026-11-25 14:36:38,123 INFO spawned: 'x' with pid 1`.
    pub fn to_text(&self) -> String {
        let ts = humantime::format_rfc3339_millis(self.ts).to_string();
        // 2026-11-25T14:36:38.123Z → 2026-11-25 14:36:38,123
        let ts = ts
            .trim_end_matches('Z')
            .replacen('T', " ", 1)
            .replacen('.', ",", 1);
        let level = match self.level {
            Level::Debug => "DEBG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "CRIT",
        };
        format!("{ts} {level} {}", self.msg)
    }
}

/// Something that wants every event, synchronously and cheaply (metrics, history).
pub trait EventSink: Send + Sync {
    fn record(&self, event: &Event);
}

/// The in-memory history of recent events (bounded; oldest dropped first).
pub struct History {
    capacity: usize,
    events: Mutex<VecDeque<Event>>,
}

impl History {
    pub fn new(capacity: usize) -> Self {
        History {
            capacity,
            events: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
        }
    }

    /// Events matching `program` (if given) with `seq > since`, the newest `limit`, oldest first.
    pub fn query(&self, program: Option<&str>, since: Option<u64>, limit: usize) -> Vec<Event> {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<Event> = events
            .iter()
            .rev()
            .filter(|e| program.is_none_or(|p| e.program.as_deref() == Some(p)))
            .filter(|e| since.is_none_or(|s| e.seq > s))
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        out
    }
}

impl EventSink for History {
    fn record(&self, event: &Event) {
        // Periodic checks, and the signals a program's processes send each other, would push
        // the lifecycle events out of the ring; they are counted in the metrics instead.
        if matches!(event.kind, Kind::HealthCheck | Kind::DescendantSignaled) {
            return;
        }
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.len() == self.capacity {
            events.pop_front();
        }
        events.push_back(event.clone());
    }
}

/// Fans events out to the synchronous sinks and to broadcast subscribers.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<BusInner>,
}

struct BusInner {
    seq: std::sync::atomic::AtomicU64,
    sinks: Vec<Arc<dyn EventSink>>,
    tx: broadcast::Sender<Arc<Event>>,
}

/// How many events a live subscriber may fall behind before it misses some.
pub const SUBSCRIBER_BUFFER: usize = 8192;

impl EventBus {
    pub fn new(sinks: Vec<Arc<dyn EventSink>>) -> Self {
        let (tx, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        EventBus {
            inner: Arc::new(BusInner {
                seq: 0.into(),
                sinks,
                tx,
            }),
        }
    }

    /// Numbers the event and hands it to every sink and subscriber. Never blocks.
    pub fn emit(&self, mut event: Event) {
        event.seq = self
            .inner
            .seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        for sink in &self.inner.sinks {
            sink.record(&event);
        }
        // No subscriber is not an error.
        let _ = self.inner.tx.send(Arc::new(event));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.tx.subscribe()
    }
}
