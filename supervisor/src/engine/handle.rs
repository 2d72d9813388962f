//! The engine's front door: how everything outside the engine task asks it something.
//!
//! Requests travel over a bounded channel and are answered through a oneshot, so a caller
//! that goes away costs the engine nothing, and a full channel makes the caller wait — never
//! the engine.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::event::{EventBus, ExitCause, History, State};

/// A read-only view of one program, as the engine sees it right now.
#[derive(Debug, Clone, Serialize)]
pub struct ProgramStatus {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// When the current (or last) process was spawned.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_opt_ts")]
    pub start_time: Option<SystemTime>,
    /// Seconds the current process has been up (only while it is alive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_s: Option<f64>,
    /// Spawns after the first one.
    pub restarts: u64,
    pub autostart: bool,
    pub critical: bool,
    /// Start order (ascending) and stop order (descending).
    pub priority: i32,
    /// RUNNING and its readiness check (if any) has passed.
    pub ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<LastExit>,
    /// The process group the supervisor created for the current process (== pid), while alive.
    #[serde(skip)]
    pub pgid: Option<u32>,
}

/// How the last process of a program ended.
#[derive(Debug, Clone, Serialize)]
pub struct LastExit {
    #[serde(serialize_with = "ser_ts")]
    pub at: SystemTime,
    pub cause: ExitCause,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// The signal number (for the `last_signal` metric).
    #[serde(skip)]
    pub signo: Option<i32>,
    pub core_dumped: bool,
    pub expected: bool,
    /// The exit status as a shell would report it: the code, or 128 + signal.
    pub status: i32,
}

fn ser_ts<S: serde::Serializer>(ts: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*ts))
}

fn ser_opt_ts<S: serde::Serializer>(ts: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match ts {
        Some(ts) => ser_ts(ts, s),
        None => s.serialize_none(),
    }
}

/// Selects programs by the names a request gives: a program name, `GROUP:*`, `GROUP:NAME` or
/// `all`. `programs` are (name, group) in priority order; the result is the indices of the
/// selected ones, in that order, or an error naming the unknown names and listing the known.
pub fn select(programs: &[(&str, Option<&str>)], names: &[String]) -> Result<Vec<usize>, String> {
    if names.is_empty() {
        return Err("name at least one program, GROUP:*, or all".to_string());
    }
    let mut hit = vec![false; programs.len()];
    let mut unknown = Vec::new();
    for name in names {
        let mut any = false;
        for (i, &(program, group)) in programs.iter().enumerate() {
            let m = name == "all"
                || name == program
                || name
                    .strip_suffix(":*")
                    .is_some_and(|g| Some(g) == group || g == program)
                || name
                    .split_once(':')
                    .is_some_and(|(g, n)| Some(g) == group && n == program);
            if m {
                hit[i] = true;
                any = true;
            }
        }
        if !any {
            unknown.push(name.as_str());
        }
    }
    if !unknown.is_empty() {
        let known: Vec<&str> = programs.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "no such program: {} (known: {}; also GROUP:* and all)",
            unknown.join(", "),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ));
    }
    Ok((0..programs.len()).filter(|&i| hit[i]).collect())
}

/// What a control request does to the programs it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Control {
    Start,
    Stop,
    Restart,
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
}

/// The reply to a request that names programs: the names it resolved to (in priority order),
/// or an error saying which names are unknown and which exist.
pub type Reply<T> = oneshot::Sender<Result<T, String>>;

/// What can be asked of the engine.
#[derive(Debug)]
pub enum Request {
    /// Every program's status, in priority order.
    Status(oneshot::Sender<Vec<ProgramStatus>>),
    /// Stop everything in order and exit (SIGTERM does the same).
    Shutdown { reason: String },
    /// Start, stop or restart the named programs. Names: a program, `GROUP:*`, `GROUP:NAME`,
    /// or `all`. The reply comes once the request is applied, not when it has completed:
    /// watch the events (or poll the status) for the outcome.
    Control {
        action: Control,
        names: Vec<String>,
        reply: Reply<Vec<String>>,
    },
    /// Send `signo` to the named programs' processes.
    Signal {
        signo: i32,
        names: Vec<String>,
        reply: Reply<Vec<String>>,
    },
    /// Re-read the config file and apply the difference (same as SIGHUP).
    Reload(Reply<ReloadSummary>),
}

#[derive(Debug, thiserror::Error)]
#[error("the supervisor engine is not answering (shutting down or wedged)")]
pub struct EngineGone;

/// A cheap, cloneable handle on the running engine.
#[derive(Clone)]
pub struct EngineHandle {
    pub(crate) tx: mpsc::Sender<Request>,
    /// The event stream (subscribe for live events).
    pub bus: EventBus,
    /// Recent events, for `/api/events` and `why`.
    pub history: Arc<History>,
}

impl EngineHandle {
    /// Asks the engine for every program's status. Fails if the engine does not answer within
    /// `timeout` — which is how `/healthz` notices a wedged engine.
    pub async fn status(&self, timeout: Duration) -> Result<Vec<ProgramStatus>, EngineGone> {
        let (tx, rx) = oneshot::channel();
        let ask = async {
            self.tx
                .send(Request::Status(tx))
                .await
                .map_err(|_| EngineGone)?;
            rx.await.map_err(|_| EngineGone)
        };
        tokio::time::timeout(timeout, ask)
            .await
            .map_err(|_| EngineGone)?
    }

    /// Asks the engine to stop everything and exit.
    pub async fn shutdown(&self, reason: &str) -> Result<(), EngineGone> {
        self.tx
            .send(Request::Shutdown {
                reason: reason.to_string(),
            })
            .await
            .map_err(|_| EngineGone)
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| EngineGone.to_string())?;
        rx.await.map_err(|_| EngineGone.to_string())?
    }

    /// Starts, stops or restarts the named programs; returns the resolved names.
    pub async fn control(
        &self,
        action: Control,
        names: Vec<String>,
    ) -> Result<Vec<String>, String> {
        self.ask(|reply| Request::Control {
            action,
            names,
            reply,
        })
        .await
    }

    /// Sends a signal to the named programs; returns the resolved names.
    pub async fn signal(&self, signo: i32, names: Vec<String>) -> Result<Vec<String>, String> {
        self.ask(|reply| Request::Signal {
            signo,
            names,
            reply,
        })
        .await
    }

    /// Reloads the configuration file.
    pub async fn reload(&self) -> Result<ReloadSummary, String> {
        self.ask(Request::Reload).await
    }

    /// A handle with no engine behind it plus the receiving end, for tests of the consumers.
    pub fn detached(bus: EventBus, history: Arc<History>) -> (Self, mpsc::Receiver<Request>) {
        let (tx, rx) = mpsc::channel(64);
        (EngineHandle { tx, bus, history }, rx)
    }
}
