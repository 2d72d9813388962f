//! One program's state machine, exactly supervisord's, as plain code.
//!
//! No processes, no clocks, no I/O: every method takes `now` and returns [`Action`]s for the
//! driver to perform (spawn, signal) together with the [`Event`]s that describe the change. The
//! only timers are [`Program::deadline`], set while STARTING (startsecs), BACKOFF (next attempt)
//! and STOPPING (stop wait) — a RUNNING program has none.

use std::time::{Duration, Instant, SystemTime};

use crate::config::{signal_name, AutoRestart, ProgramSpec};
use crate::engine::handle::{LastExit, ProgramStatus};
use crate::engine::plan::deadline_after;
use crate::engine::spawn::SpawnError;
use crate::event::{Event, ExitCause, Kind, Level, State};

/// How a process ended, as `waitid` reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal { signo: i32, core_dumped: bool },
}

impl ExitStatus {
    /// The status a shell would report: the code, or 128 + signal.
    pub fn as_shell_status(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal { signo, .. } => 128 + signo,
        }
    }

    /// supervisord's `decode_wait_status` wording.
    pub fn describe(self) -> String {
        match self {
            ExitStatus::Code(c) => format!("exit status {c}"),
            ExitStatus::Signal { signo, core_dumped } => format!(
                "terminated by {}{}",
                signal_name(signo),
                if core_dumped { " (core dumped)" } else { "" }
            ),
        }
    }

    pub fn cause(self) -> ExitCause {
        match self {
            ExitStatus::Code(_) => ExitCause::Exited,
            ExitStatus::Signal {
                core_dumped: true, ..
            } => ExitCause::CoreDumped,
            ExitStatus::Signal { .. } => ExitCause::Signaled,
        }
    }
}

/// What the driver must do for a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Fork and exec the program, then call [`Program::spawned`] or [`Program::spawn_failed`].
    Spawn,
    /// Send `signo` to the process (or to its process group when `group`).
    Signal { signo: i32, group: bool },
}

/// What to do once a stop requested by the supervisor has completed.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterStop {
    /// Nothing: stay STOPPED.
    Stay,
    /// Start again (restart).
    Start,
    /// Start again with a new spec (config reload).
    Replace(Box<ProgramSpec>),
    /// Forget the program (config reload removed it).
    Remove,
}

/// A supervised program and its current process.
#[derive(Debug)]
pub struct Program {
    pub spec: ProgramSpec,
    pub state: State,
    /// The live (not yet reaped) process.
    pub pid: Option<u32>,
    /// Failed starts in a row (supervisord's `backoff`).
    pub backoff: u32,
    /// When the current process was spawned (monotonic, and wall clock for display).
    pub started: Option<(Instant, SystemTime)>,
    /// The one timer of this program, if its state needs one.
    pub deadline: Option<Instant>,
    /// Spawns after the first one.
    pub restarts: u64,
    spawned_once: bool,
    /// The stop signal was escalated to SIGKILL.
    pub killed: bool,
    /// What to do when a stop we asked for completes.
    pub after_stop: AfterStop,
    /// The longest the supervisor may wait for this program to stop (shutdown budget).
    pub stop_wait_cap: Option<Duration>,
    pub last_exit: Option<LastExit>,
    /// RUNNING and its readiness check (if any) has passed.
    pub ready: bool,
    /// Failed health checks in a row.
    pub health_failures: u32,
    /// The readiness check timed out: the coming exit is a failed start.
    ready_failed: bool,
    /// The supervisor is restarting it because it is unhealthy.
    unhealthy: bool,
    /// A start is pending until its dependencies are ready.
    pub waiting: bool,
}

impl Program {
    pub fn new(spec: ProgramSpec) -> Self {
        Program {
            spec,
            state: State::Stopped,
            pid: None,
            backoff: 0,
            started: None,
            deadline: None,
            restarts: 0,
            spawned_once: false,
            killed: false,
            after_stop: AfterStop::Stay,
            stop_wait_cap: None,
            last_exit: None,
            ready: false,
            health_failures: 0,
            ready_failed: false,
            unhealthy: false,
            waiting: false,
        }
    }

    /// Whether readiness needs a check beyond supervisord's startsecs rule.
    pub fn has_ready_check(&self) -> bool {
        !matches!(
            self.spec.ready,
            None | Some(crate::config::check::Check::Started)
        )
    }

    /// True when no process is alive and none is about to be spawned by a timer.
    pub fn is_down(&self) -> bool {
        matches!(self.state, State::Stopped | State::Exited | State::Fatal)
    }

    /// An event about this program with the common fields filled in.
    pub fn event(&self, level: Level, kind: Kind, from: State, msg: String) -> Event {
        let mut e = Event::new(level, kind, msg);
        e.program = Some(self.spec.name.clone());
        e.group = self.spec.group.clone();
        e.pid = self.pid;
        e.state = Some(self.state);
        e.from_state = Some(from);
        e
    }

    /// A stop request found the program EXITED with its restart pending (waiting for the old
    /// process's pipes): the restart is dropped and the program is STOPPED.
    pub fn restart_cancelled(&mut self) -> Vec<Event> {
        if self.state != State::Exited {
            return vec![];
        }
        let from = self.set(State::Stopped);
        vec![self.event(
            Level::Info,
            Kind::Stopped,
            from,
            format!("stopped: {} (its restart was pending)", self.spec.name),
        )]
    }

    fn set(&mut self, state: State) -> State {
        std::mem::replace(&mut self.state, state)
    }

    /// A start request (autostart, `start`, restart after stop). Resets the retry count, as
    /// supervisorctl's start does.
    pub fn start(&mut self) -> Vec<Action> {
        match self.state {
            State::Stopped | State::Exited | State::Fatal | State::Backoff => {
                self.backoff = 0;
                self.deadline = None;
                vec![Action::Spawn]
            }
            State::Starting | State::Running | State::Stopping => vec![],
        }
    }

    /// The process was spawned with `pid`.
    pub fn spawned(&mut self, pid: u32, now: Instant, wall: SystemTime) -> Vec<Event> {
        if self.spawned_once {
            self.restarts += 1;
        }
        self.spawned_once = true;
        self.pid = Some(pid);
        self.started = Some((now, wall));
        self.killed = false;
        let from = self.set(State::Starting);
        let mut spawned = self.event(
            Level::Info,
            Kind::Spawned,
            from,
            format!("spawned: '{}' with pid {pid}", self.spec.name),
        );
        spawned.restarts = Some(self.restarts);
        let mut events = vec![spawned];
        self.ready = false;
        self.health_failures = 0;
        self.ready_failed = false;
        self.unhealthy = false;
        self.waiting = false;
        if self.has_ready_check() {
            self.deadline = Some(deadline_after(now, self.spec.ready_timeout));
        } else if self.spec.startsecs.is_zero() {
            events.push(self.enter_running());
        } else {
            self.deadline = Some(deadline_after(now, self.spec.startsecs));
        }
        events
    }

    /// The readiness check passed.
    pub fn ready_ok(&mut self, detail: &str) -> Vec<Event> {
        if self.state != State::Starting {
            return vec![];
        }
        let mut running = self.enter_running_because(format!("ready check passed ({detail})"));
        running.ok = Some(true);
        let from = self.state;
        let mut ready = self.event(
            Level::Info,
            Kind::Ready,
            from,
            format!("ready: {} ({detail})", self.spec.name),
        );
        ready.ok = Some(true);
        vec![running, ready]
    }

    /// One health check result; may restart the program (cause `unhealthy`).
    pub fn health_result(
        &mut self,
        ok: bool,
        detail: &str,
        now: Instant,
    ) -> (Vec<Event>, Vec<Action>) {
        if self.state != State::Running {
            return (vec![], vec![]);
        }
        let from = self.state;
        let mut check = self.event(
            Level::Debug,
            Kind::HealthCheck,
            from,
            format!(
                "health check of {} {}: {detail}",
                self.spec.name,
                if ok { "passed" } else { "failed" }
            ),
        );
        check.ok = Some(ok);
        if ok {
            self.health_failures = 0;
            return (vec![check], vec![]);
        }
        self.health_failures += 1;
        let mut events = vec![check];
        if self.health_failures < self.spec.health_retries.max(1) {
            return (events, vec![]);
        }
        let mut e = self.event(
            Level::Warn,
            Kind::Unhealthy,
            from,
            format!(
                "unhealthy: {} failed {} health checks in a row ({detail}); restarting it",
                self.spec.name, self.health_failures
            ),
        );
        e.cause = Some(ExitCause::Unhealthy);
        e.ok = Some(false);
        events.push(e);
        let (stop_events, actions) = self.stop(now, AfterStop::Start);
        self.unhealthy = true;
        events.extend(stop_events);
        (events, actions)
    }

    fn enter_running(&mut self) -> Event {
        let why = format!(
            "process has stayed up for > than {} seconds (startsecs)",
            fmt_secs(self.spec.startsecs)
        );
        let mut e = self.enter_running_because(why);
        e.ok = Some(true);
        e
    }

    fn enter_running_because(&mut self, why: String) -> Event {
        self.deadline = None;
        self.backoff = 0;
        self.ready = true;
        let from = self.set(State::Running);
        self.event(
            Level::Info,
            Kind::Running,
            from,
            format!("success: {} entered RUNNING state, {why}", self.spec.name),
        )
    }

    /// Forking or exec'ing failed with `error`.
    pub fn spawn_failed(
        &mut self,
        error: &SpawnError,
        now: Instant,
        wall: SystemTime,
    ) -> Vec<Event> {
        // supervisord's sentence for a missing command; the others name the step that failed.
        let what = match error {
            SpawnError::Exec { program, source }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                format!("can't find command '{program}'")
            }
            other => other.to_string(),
        };
        self.last_exit = Some(LastExit {
            at: wall,
            cause: ExitCause::SpawnFailed,
            exit_code: None,
            signal: None,
            signo: None,
            core_dumped: false,
            expected: false,
            status: error.shell_status(),
        });
        let from = self.state;
        self.backoff += 1;
        let mut events = Vec::new();
        let retry = self.enter_backoff(now);
        let mut e = self.event(
            Level::Error,
            Kind::SpawnFailed,
            from,
            format!("spawnerr: {what}"),
        );
        e.error = Some(error.os_error());
        e.cause = Some(ExitCause::SpawnFailed);
        // The status a shell reports for the same failure: 127 not found, 126 not executable.
        e.exit_code = self.last_exit.as_ref().map(|x| x.status);
        e.retry_in_s = retry.map(|d| d.as_secs_f64());
        events.push(e);
        events.extend(self.give_up_if_exhausted(State::Backoff));
        events
    }

    /// BACKOFF with the next attempt in `backoff` seconds (supervisord's growing delay);
    /// returns the delay, or `None` when the retries are exhausted.
    fn enter_backoff(&mut self, now: Instant) -> Option<Duration> {
        self.set(State::Backoff);
        if self.backoff > self.spec.startretries {
            self.deadline = None;
            return None;
        }
        let delay = Duration::from_secs(u64::from(self.backoff));
        self.deadline = Some(deadline_after(now, delay));
        Some(delay)
    }

    fn give_up_if_exhausted(&mut self, from: State) -> Option<Event> {
        if self.state == State::Backoff && self.backoff > self.spec.startretries {
            self.deadline = None;
            self.set(State::Fatal);
            return Some(self.event(
                Level::Error,
                Kind::Fatal,
                from,
                format!(
                    "gave up: {} entered FATAL state, too many start retries too quickly",
                    self.spec.name
                ),
            ));
        }
        None
    }

    /// The process died with `status` (already reaped); `oom_killed` when the kernel's OOM
    /// killer is known to have sent the SIGKILL.
    pub fn exited(
        &mut self,
        status: ExitStatus,
        oom_killed: bool,
        now: Instant,
        wall: SystemTime,
    ) -> (Vec<Event>, Vec<Action>) {
        let pid = self.pid;
        let cause = if oom_killed {
            ExitCause::OomKilled
        } else if self.unhealthy {
            ExitCause::Unhealthy
        } else {
            status.cause()
        };
        self.ready = false;
        self.health_failures = 0;
        self.unhealthy = false;
        let failed_start = std::mem::take(&mut self.ready_failed);
        let uptime = self
            .started
            .map(|(t, _)| now.saturating_duration_since(t))
            .unwrap_or_default();
        let code = match status {
            ExitStatus::Code(c) => Some(c),
            ExitStatus::Signal { .. } => None,
        };
        // supervisord decodes a signal death as exit status -1: never "expected".
        let expected = code.is_some_and(|c| self.spec.exitcodes.contains(&c));
        self.last_exit = Some(LastExit {
            at: wall,
            cause,
            exit_code: code,
            signal: match status {
                ExitStatus::Signal { signo, .. } => Some(signal_name(signo)),
                ExitStatus::Code(_) => None,
            },
            signo: match status {
                ExitStatus::Signal { signo, .. } => Some(signo),
                ExitStatus::Code(_) => None,
            },
            core_dumped: matches!(
                status,
                ExitStatus::Signal {
                    core_dumped: true,
                    ..
                }
            ),
            expected,
            status: status.as_shell_status(),
        });
        let decorate = |e: &mut Event| {
            e.pid = pid;
            e.exit_code = code;
            if let ExitStatus::Signal { signo, core_dumped } = status {
                e.signal = Some(signal_name(signo));
                e.core_dumped = Some(core_dumped);
            }
            e.cause = Some(cause);
            e.uptime_s = Some(round_ms(uptime));
        };
        self.pid = None;
        let from = self.state;
        let mut events = Vec::new();
        let mut actions = Vec::new();
        match from {
            State::Stopping => {
                self.deadline = None;
                self.stop_wait_cap = None;
                self.set(State::Stopped);
                let level = if expected { Level::Info } else { Level::Warn };
                let mut e = self.event(
                    level,
                    Kind::Stopped,
                    from,
                    format!("stopped: {} ({})", self.spec.name, status.describe()),
                );
                decorate(&mut e);
                e.expected = Some(expected);
                events.push(e);
                let then = std::mem::replace(&mut self.after_stop, AfterStop::Stay);
                actions.extend(self.follow_up(then));
            }
            State::Starting
                if failed_start || self.has_ready_check() || uptime < self.spec.startsecs =>
            {
                self.backoff += 1;
                let retry = self.enter_backoff(now);
                let mut e = self.event(
                    Level::Warn,
                    Kind::Exited,
                    from,
                    format!(
                        "exited: {} ({}; not expected)",
                        self.spec.name,
                        status.describe()
                    ),
                );
                decorate(&mut e);
                e.expected = Some(false);
                e.retry_in_s = retry.map(|d| d.as_secs_f64());
                events.push(e);
                events.extend(self.give_up_if_exhausted(State::Backoff));
            }
            _ => {
                // RUNNING (or STARTING whose startsecs just elapsed) → EXITED.
                self.deadline = None;
                self.backoff = 0;
                self.set(State::Exited);
                let level = if expected { Level::Info } else { Level::Warn };
                let mut e = self.event(
                    level,
                    Kind::Exited,
                    from,
                    format!(
                        "exited: {} ({}; {})",
                        self.spec.name,
                        status.describe(),
                        if expected { "expected" } else { "not expected" }
                    ),
                );
                decorate(&mut e);
                e.expected = Some(expected);
                events.push(e);
                let restart = match self.spec.autorestart {
                    AutoRestart::Always => true,
                    AutoRestart::Unexpected => !expected,
                    AutoRestart::Never => false,
                };
                if restart {
                    actions.push(Action::Spawn);
                }
            }
        }
        (events, actions)
    }

    /// The program's deadline passed.
    pub fn timer(&mut self, now: Instant) -> (Vec<Event>, Vec<Action>) {
        match self.deadline {
            Some(d) if d <= now => {}
            _ => return (vec![], vec![]),
        }
        self.deadline = None;
        match self.state {
            State::Starting if self.has_ready_check() => {
                // Not ready in time: a failed start. Kill it; its exit leads to BACKOFF.
                self.ready_failed = true;
                let from = self.state;
                let mut e = self.event(
                    Level::Warn,
                    Kind::Killing,
                    from,
                    format!(
                        "not ready: {} (pid {}) did not pass its readiness check within {} seconds; killing it with signal SIGKILL",
                        self.spec.name,
                        self.pid.unwrap_or(0),
                        fmt_secs(self.spec.ready_timeout)
                    ),
                );
                e.signal = Some("SIGKILL".into());
                (
                    vec![e],
                    vec![Action::Signal {
                        signo: libc::SIGKILL,
                        group: self.spec.killasgroup,
                    }],
                )
            }
            State::Starting => (vec![self.enter_running()], vec![]),
            State::Backoff => (vec![], vec![Action::Spawn]),
            State::Stopping => {
                self.killed = true;
                let from = self.state;
                let mut e = self.event(
                    Level::Warn,
                    Kind::Killing,
                    from,
                    format!(
                        "killing {} (pid {}) with signal SIGKILL",
                        self.spec.name,
                        self.pid.unwrap_or(0)
                    ),
                );
                e.signal = Some("SIGKILL".into());
                (
                    vec![e],
                    vec![Action::Signal {
                        signo: libc::SIGKILL,
                        group: self.spec.killasgroup,
                    }],
                )
            }
            _ => (vec![], vec![]),
        }
    }

    /// A stop request. `then` says what happens once it has stopped.
    pub fn stop(&mut self, now: Instant, then: AfterStop) -> (Vec<Event>, Vec<Action>) {
        match self.state {
            State::Starting | State::Running => {
                let from = self.set(State::Stopping);
                self.after_stop = then;
                let mut wait = self.spec.stopwaitsecs;
                if let Some(cap) = self.stop_wait_cap {
                    wait = wait.min(cap);
                }
                self.deadline = Some(deadline_after(now, wait));
                let mut e = self.event(
                    Level::Info,
                    Kind::Stopping,
                    from,
                    format!(
                        "killing {} (pid {}) with signal {}",
                        self.spec.name,
                        self.pid.unwrap_or(0),
                        signal_name(self.spec.stopsignal)
                    ),
                );
                e.signal = Some(signal_name(self.spec.stopsignal));
                (
                    vec![e],
                    vec![Action::Signal {
                        signo: self.spec.stopsignal,
                        group: self.spec.stopasgroup,
                    }],
                )
            }
            State::Stopping => {
                // Already on its way down; a later request may change what happens next.
                if then != AfterStop::Stay {
                    self.after_stop = then;
                }
                (vec![], vec![])
            }
            State::Backoff | State::Stopped | State::Exited | State::Fatal => {
                let mut events = Vec::new();
                if self.state == State::Backoff {
                    self.deadline = None;
                    let from = self.set(State::Stopped);
                    events.push(self.event(
                        Level::Info,
                        Kind::Stopped,
                        from,
                        format!("stopped: {} (was in BACKOFF state)", self.spec.name),
                    ));
                }
                (events, self.follow_up(then))
            }
        }
    }

    /// What happens once the program is down after a stop we asked for.
    fn follow_up(&mut self, then: AfterStop) -> Vec<Action> {
        match then {
            AfterStop::Stay => vec![],
            AfterStop::Start => self.start(),
            AfterStop::Replace(spec) => {
                self.spec = *spec;
                if self.spec.autostart {
                    self.start()
                } else {
                    vec![]
                }
            }
            AfterStop::Remove => {
                self.after_stop = AfterStop::Remove;
                vec![]
            }
        }
    }

    /// Shortens the stop wait to at most `cap` (the shutdown budget), also for a stop under way.
    pub fn cap_stop_wait(&mut self, cap: Duration, now: Instant) {
        self.stop_wait_cap = Some(cap);
        if self.state == State::Stopping && !self.killed {
            if let Some(d) = self.deadline {
                self.deadline = Some(d.min(deadline_after(now, cap)));
            }
        }
    }

    /// The status snapshot for the API.
    pub fn status(&self, now: Instant) -> ProgramStatus {
        ProgramStatus {
            name: self.spec.name.clone(),
            group: self.spec.group.clone(),
            state: self.state,
            pid: self.pid,
            start_time: self.started.map(|(_, w)| w),
            uptime_s: self
                .pid
                .and(self.started)
                .map(|(t, _)| round_ms(now.saturating_duration_since(t))),
            restarts: self.restarts,
            autostart: self.spec.autostart,
            critical: self.spec.critical,
            priority: self.spec.priority,
            ready: self.ready,
            last_exit: self.last_exit.clone(),
            pgid: self.pid,
        }
    }
}

/// Seconds with millisecond precision (no float noise in the log).
pub fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Seconds as supervisord prints them: `1`, or `0.5` for fractional values.
fn fmt_secs(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{}", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests;
