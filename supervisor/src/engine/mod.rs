//! The engine: one task that owns every program's state.
//!
//! Inputs arrive through one `select!`: a pidfd became readable (a child exited), a signal
//! for the supervisor (signalfd), a request from the API, or the earliest program deadline.
//! Each input is handed to the pure state machine ([`machine`]); the actions it returns (spawn,
//! signal) are performed here and the events it returns are emitted on the bus. Nothing else
//! mutates program state, and there is no periodic tick: with every program RUNNING the engine
//! sleeps until the kernel wakes it.
//!
//! Reaping has one owner: this task. A supervised child is reaped through its pidfd; on SIGCHLD
//! the engine peeks (`WNOWAIT`) at exited children and reaps only the ones it does not
//! supervise, so an orphan reap can never consume a supervised child's status.
//!
//! What a program holds is bounded whatever its restart rate: the pidfd of its live process
//! (polled by the engine itself, closed when reaped — no watcher task that could outlive it),
//! the output pipes of at most one process (the next spawn waits until the previous process's
//! pipes reach EOF, or closes them [`pipes::DRAIN_GRACE`] after the spawn was due; see
//! [`pipes`]), one readiness and one health task, and at most [`leftovers::MAX_HELD`] pidfds of
//! processes it left running. Waiting on those closes also keeps a crash loop from starving the
//! other tasks of the (single-threaded) runtime. Every deadline is computed with
//! [`plan::deadline_after`] (checked, never panics).

pub mod checks;
pub mod forensics;
pub mod handle;
pub mod leftovers;
pub mod machine;
pub mod oom;
pub mod pipes;
pub mod plan;
pub mod signals;
pub mod spawn;
pub mod wait;

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use crate::config::{self, signal_name, Config, ProgramSpec};
use crate::event::{Event, EventBus, Kind, Level, State};
use crate::output::{Output, Stream};
use handle::{EngineHandle, Request};
use machine::{Action, AfterStop, ExitStatus, Program};
use plan::deadline_after;

/// How long the engine may be busy before a request is considered unanswered.
pub const REQUEST_QUEUE: usize = 256;

/// How long orphans left at shutdown get between SIGTERM and SIGKILL.
const ORPHAN_TERM_GRACE: Duration = Duration::from_secs(2);
/// How long past the shutdown budget the supervisor still waits for orphans to be reaped.
const HARD_STOP_GRACE: Duration = Duration::from_millis(500);

/// Everything the engine needs to run.
pub struct Setup {
    pub config: Config,
    /// The file to re-read on SIGHUP (`None` in one-command mode).
    pub config_path: Option<PathBuf>,
    /// The global budget for stopping everything.
    pub shutdown_timeout: Duration,
    /// One-command mode (`supervisor run -- CMD`): exit with the command's own status, and
    /// forward signals that are not about stopping to it (like tini).
    pub one_command: bool,
    /// The eBPF probe: loaded already, or arriving once loaded.
    pub probe: ProbeSetup,
}

/// The eBPF probe as the engine gets it.
pub enum ProbeSetup {
    /// Loaded (or known to be off) before the programs start.
    Ready(Option<Box<crate::probe::Probe>>),
    /// Loading meanwhile; the programs already running are watched once it arrives (a signal
    /// sent to them before that is not seen).
    Later(tokio::sync::oneshot::Receiver<Option<crate::probe::Probe>>),
}

/// A program and the kernel objects of its current process.
struct Slot {
    prog: Program,
    /// The pidfd of the live process; the engine polls it itself (no watcher task), so it is
    /// closed the moment the process is reaped.
    pidfd: Option<AsyncFd<OwnedFd>>,
    /// Identifies the current process for its watcher's message (pids can be reused).
    serial: u64,
    /// The readiness check task of the current process (only while STARTING).
    ready_task: Option<tokio::task::JoinHandle<()>>,
    /// The health check task (only while RUNNING with a `health` setting).
    health_task: Option<tokio::task::JoinHandle<()>>,
    /// The output pipes of the latest process, and a spawn waiting for them to close.
    pipes: pipes::Pipes,
    /// Processes its exited processes left running (it daemonized), held by pidfd.
    leftovers: Vec<leftovers::Leftover>,
}

impl Slot {
    fn new(prog: Program) -> Slot {
        Slot {
            prog,
            pidfd: None,
            serial: 0,
            ready_task: None,
            health_task: None,
            pipes: pipes::Pipes::default(),
            leftovers: Vec::new(),
        }
    }
}

/// A process the engine runs for an `exec:` check.
struct Aux {
    serial: u64,
    pid: u32,
    pidfd: AsyncFd<OwnedFd>,
    deadline: Instant,
    reply: Option<tokio::sync::oneshot::Sender<Result<(), String>>>,
}

struct Shutdown {
    deadline: Instant,
    exit_code: i32,
    /// Orphans were sent SIGTERM at this time (phase 2, after every program is down).
    orphans_termed: Option<Instant>,
    orphans_killed: bool,
}

/// The engine task's state.
pub struct Engine {
    slots: Vec<Slot>,
    bus: EventBus,
    output: Output,
    config_path: Option<PathBuf>,
    shutdown_timeout: Duration,
    one_command: bool,
    is_pid1: bool,
    /// Output pipes report here (by process serial) when they are closed.
    pipes_tx: mpsc::UnboundedSender<u64>,
    pipes_rx: mpsc::UnboundedReceiver<u64>,
    requests: mpsc::Receiver<Request>,
    next_serial: u64,
    shutdown: Option<Shutdown>,
    /// Some program had to be SIGKILLed during shutdown.
    killed_any: bool,
    orphans_reaped: u64,
    /// Tells OOM kills from other SIGKILLs.
    oom: oom::OomCounter,
    /// Results of readiness and health checks.
    checks_tx: checks::CheckTx,
    checks_rx: mpsc::UnboundedReceiver<checks::CheckMsg>,
    /// Processes run for `exec:` checks (reaped here like everything else).
    aux: Vec<Aux>,
    /// What the eBPF probe says about deaths.
    forensics: forensics::Forensics,
    /// The probe, while it is still loading.
    probe_later: Option<tokio::sync::oneshot::Receiver<Option<crate::probe::Probe>>>,
}

impl Engine {
    /// Creates the engine and the handle through which the rest of the process talks to it.
    pub fn new(
        setup: Setup,
        bus: EventBus,
        history: Arc<crate::event::History>,
        output: Output,
    ) -> (Engine, EngineHandle) {
        let (req_tx, req_rx) = mpsc::channel(REQUEST_QUEUE);
        let (pipes_tx, pipes_rx) = mpsc::unbounded_channel();
        let (checks_tx, checks_rx) = mpsc::unbounded_channel();
        let mut probe_setup = setup.probe;
        let slots = setup
            .config
            .programs
            .into_iter()
            .map(|spec| Slot::new(Program::new(spec)))
            .collect();
        let engine = Engine {
            slots,
            bus: bus.clone(),
            output,
            config_path: setup.config_path,
            shutdown_timeout: setup.shutdown_timeout,
            one_command: setup.one_command,
            is_pid1: std::process::id() == 1,
            pipes_tx,
            pipes_rx,
            requests: req_rx,
            next_serial: 0,
            shutdown: None,
            killed_any: false,
            orphans_reaped: 0,
            oom: oom::OomCounter::new(),
            checks_tx,
            checks_rx,
            aux: Vec::new(),
            forensics: forensics::Forensics::new(match &mut probe_setup {
                ProbeSetup::Ready(p) => p.take().map(|p| *p),
                ProbeSetup::Later(_) => None,
            }),
            probe_later: match probe_setup {
                ProbeSetup::Later(rx) => Some(rx),
                ProbeSetup::Ready(_) => None,
            },
        };
        (
            engine,
            EngineHandle {
                tx: req_tx,
                bus,
                history,
            },
        )
    }

    /// Runs until everything is stopped; returns the process exit code.
    pub async fn run(mut self, signals: signals::Signals) -> i32 {
        /// Inputs handled between two turns given to the runtime's other tasks.
        const YIELD_EVERY: u32 = 16;
        if !self.is_pid1 {
            if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
                self.notice(Level::Warn, format!("could not become a child subreaper ({e}); orphans of programs will not be reaped by the supervisor"));
            }
        }
        for i in 0..self.slots.len() {
            self.bus.emit(self.added_event(i));
        }
        for i in 0..self.slots.len() {
            if self.slots[i].prog.spec.autostart {
                let actions = self.slots[i].prog.start();
                self.perform(i, actions);
            }
        }
        let mut inputs: u32 = 0;
        loop {
            self.after_step();
            if let Some(code) = self.finished() {
                return code;
            }
            // In a crash loop some input is always ready (the pidfds are polled here, outside
            // tokio's cooperative budget): give the runtime's other tasks — HTTP, the control
            // socket, output readers, a scrape's result — their turn every so many inputs.
            inputs = inputs.wrapping_add(1);
            if inputs % YIELD_EVERY == 0 {
                tokio::task::yield_now().await;
            }
            let deadline = self.next_deadline();
            tokio::select! {
                serial = exited(&self.slots, &self.aux) => self.on_pidfd_ready(serial),
                Some(serial) = self.pipes_rx.recv() => self.on_pipe_closed(serial),
                sig = signals.recv() => match sig {
                    Ok(sig) => self.on_signal(sig),
                    Err(e) => self.notice(Level::Error, format!("reading signals failed: {e}")),
                },
                Some(req) = self.requests.recv() => self.on_request(req),
                Some(msg) = self.checks_rx.recv() => self.on_check(msg),
                rec = forensics::Forensics::next(self.forensics.reader()) => self.on_probe_record(rec),
                probe = probe_arrives(&mut self.probe_later) => self.attach_probe(probe),
                _ = sleep_until(deadline) => self.on_timer(),
            }
        }
    }

    fn notice(&self, level: Level, msg: String) {
        self.bus.emit(Event::new(level, Kind::Notice, msg));
    }

    fn added_event(&self, i: usize) -> Event {
        let p = &self.slots[i].prog;
        let mut e = p.event(
            Level::Debug,
            Kind::Added,
            p.state,
            format!("added: {}", p.spec.name),
        );
        e.restarts = Some(p.restarts);
        e
    }

    fn emit_all(&self, events: Vec<Event>) {
        for e in events {
            self.bus.emit(e);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let programs = self
            .slots
            .iter()
            .flat_map(|s| [s.prog.deadline, s.pipes.deadline()])
            .flatten()
            .chain(self.aux.iter().map(|a| a.deadline));
        let shutdown = self.shutdown.as_ref().map(|s| match s.orphans_termed {
            Some(t) if !s.orphans_killed => s.deadline.min(deadline_after(t, ORPHAN_TERM_GRACE)),
            Some(_) => deadline_after(s.deadline, HARD_STOP_GRACE),
            None => s.deadline,
        });
        programs.chain(shutdown).min()
    }

    // ----- inputs -----

    fn on_pidfd_ready(&mut self, serial: u64) {
        if let Some(k) = self.aux.iter().position(|a| a.serial == serial) {
            self.reap_aux(k);
            return;
        }
        if let Some(i) = self
            .slots
            .iter()
            .position(|s| s.serial == serial && s.prog.pid.is_some())
        {
            self.reap_supervised(i);
        }
    }

    /// An output pipe of process `serial` is closed; a spawn waiting for it goes now.
    fn on_pipe_closed(&mut self, serial: u64) {
        if let Some(i) = self.slots.iter().position(|s| s.serial == serial) {
            if self.slots[i].pipes.closed(serial) {
                self.perform(i, vec![Action::Spawn]);
            }
        }
    }

    /// Reaps slot `i`'s process if it has exited, and runs the state machine on it.
    fn reap_supervised(&mut self, i: usize) -> bool {
        let Some(fd) = &self.slots[i].pidfd else {
            return false;
        };
        match wait::reap_pidfd(fd.get_ref().as_fd()) {
            Ok(Some(status)) => {
                self.slots[i].pidfd = None;
                self.on_exit(i, status);
                true
            }
            Ok(None) => false,
            Err(e) => {
                self.notice(
                    Level::Error,
                    format!("waitid on pid {:?} failed: {e}", self.slots[i].prog.pid),
                );
                false
            }
        }
    }

    /// The probe finished loading: watch every live program from now on.
    fn attach_probe(&mut self, probe: Option<crate::probe::Probe>) {
        self.probe_later = None;
        let Some(probe) = probe else { return };
        self.forensics = forensics::Forensics::new(Some(probe));
        for s in &self.slots {
            if let Some(pid) = s.prog.pid {
                // It may have forked already: what it forked is watched too.
                if let Err(e) = self.forensics.watch_tree(pid) {
                    self.notice(
                        Level::Warn,
                        format!(
                            "{e}; the death of {} (pid {pid}) will not be explained",
                            s.prog.spec.name
                        ),
                    );
                }
            }
        }
    }

    /// A record from the eBPF probe: kept for the exit it may explain; a signal to a program
    /// (or to a process of its tree) is also an event of its own (and a metric), whether or
    /// not the program dies of it; records lost in a burst are said once.
    fn on_probe_record(&mut self, record: crate::probe::ProbeRecord) {
        use forensics::Absorbed;
        let (pid, kind, k) = match self.forensics.absorb(record) {
            Absorbed::Nothing => return,
            Absorbed::LostNotice(n) => {
                self.notice(
                    Level::Warn,
                    format!(
                        "eBPF probe: its ring buffer was full and {n} records were lost; what \
                         else this burst loses is counted in supervisor_probe_events_lost_total"
                    ),
                );
                return;
            }
            Absorbed::Signal(pid, k) => (pid, Kind::SignalObserved, k),
            Absorbed::DescendantSignal(pid, k) => (pid, Kind::DescendantSignaled, k),
            Absorbed::DescendantKilled(pid, d) => {
                let Some(i) = self.slots.iter().position(|s| s.prog.pid == Some(pid)) else {
                    return;
                };
                let p = &self.slots[i].prog;
                // Routine when the program's own process or the supervisor did it (a master
                // stopping its workers, a stop): debug; anyone else, or the kernel: info.
                let own = if self.is_pid1 { 1 } else { std::process::id() };
                let routine = p.state == State::Stopping
                    || d.killed_by.as_ref().is_some_and(|k| {
                        k.outside_namespace == Some(false)
                            && (k.sender_pid == Some(pid) || k.sender_pid == Some(own))
                    });
                let level = if routine { Level::Debug } else { Level::Info };
                let mut e = p.event(
                    level,
                    Kind::DescendantKilled,
                    p.state,
                    format!("descendant: in {}, {}", p.spec.name, d.sentence()),
                );
                e.pid = Some(d.pid);
                e.signal = Some(d.signal.clone());
                e.core_dumped = Some(d.core_dumped);
                e.killed_by = d.killed_by.map(|k| vec![k]);
                self.bus.emit(e);
                return;
            }
        };
        let Some(i) = self.slots.iter().position(|s| s.prog.pid == Some(pid)) else {
            return;
        };
        let p = &self.slots[i].prog;
        let own = if self.is_pid1 { 1 } else { std::process::id() };
        let sender = if !k.from_process {
            "kernel".to_string()
        } else if k.sender_pid == Some(own) && k.outside_namespace == Some(false) {
            "supervisor".to_string()
        } else {
            k.sender_comm.clone().unwrap_or_default()
        };
        // The supervisor's own stop signals are already in the log as `stopping`; signals
        // inside a program's tree are routine for many (a master signalling its workers).
        let level = if sender == "supervisor" || kind == Kind::DescendantSignaled {
            Level::Debug
        } else {
            Level::Info
        };
        let msg = match &k.target {
            Some(target) => format!(
                "signal: {target} of {} got {} ({})",
                p.spec.name, k.text, k.result
            ),
            None => format!(
                "signal: {} (pid {pid}) got {} ({})",
                p.spec.name, k.text, k.result
            ),
        };
        let mut e = p.event(level, kind, p.state, msg);
        if let Some(target) = k.target_pid {
            e.pid = Some(target);
        }
        e.signal = Some(k.signal.clone());
        e.sender_pid = k.sender_pid;
        e.sender_uid = k.sender_uid;
        e.sender = Some(sender);
        e.killed_by = Some(vec![k]);
        self.bus.emit(e);
    }

    fn on_exit(&mut self, i: usize, status: ExitStatus) {
        // Read what the probe has queued first, so the signal that explains the death is known.
        for record in self.forensics.pending() {
            self.on_probe_record(record);
        }
        let pid = self.slots[i].prog.pid.unwrap_or(0);
        let sigkill = matches!(
            status,
            ExitStatus::Signal {
                signo: libc::SIGKILL,
                ..
            }
        );
        let stopping = self.slots[i].prog.state == State::Stopping;
        // The probe names an OOM victim directly; otherwise the memory cgroup's counter tells.
        // The counter is read on every SIGKILL death either way, so it never lags behind.
        let counted = sigkill && !self.slots[i].prog.killed && self.oom.claim();
        let oom_killed = if self.forensics.loaded() {
            sigkill && self.forensics.oom_victim(pid)
        } else {
            counted
        };
        let stopsignal = self.slots[i].prog.spec.stopsignal;
        let explanation = self
            .forensics
            .explain(pid, status, stopping, oom_killed, stopsignal);
        let (mut events, actions) =
            self.slots[i]
                .prog
                .exited(status, oom_killed, Instant::now(), SystemTime::now());
        if let Some(e) = events
            .iter_mut()
            .find(|e| matches!(e.kind, Kind::Exited | Kind::Stopped))
        {
            forensics::annotate(e, explanation);
        }
        self.emit_all(events);
        self.note_leftovers(i, pid);
        self.perform(i, actions);
        if self.slots[i].prog.state == State::Fatal {
            self.stop_leftovers(i);
        }
        self.check_critical(i);
    }

    /// Names what slot `i`'s exited process `pid` left running (see `leftovers`).
    fn note_leftovers(&mut self, i: usize, pid: u32) {
        let known = |p: u32| {
            self.slots
                .iter()
                .any(|s| s.prog.pid == Some(p) || s.leftovers.iter().any(|l| l.pid == p))
                || self.aux.iter().any(|a| a.pid == p)
        };
        let left = leftovers::find(pid, &known);
        if left.is_empty() {
            return;
        }
        let p = &self.slots[i].prog;
        let mut e = p.event(
            Level::Warn,
            Kind::Notice,
            p.state,
            leftovers::warning(&p.spec.name, pid, &left),
        );
        e.pid = Some(pid);
        self.bus.emit(e);
        let held = &mut self.slots[i].leftovers;
        held.extend(left);
        let excess = held.len().saturating_sub(leftovers::MAX_HELD);
        held.drain(..excess);
    }

    /// Slot `i` is stopped or gave up: what its processes left running is stopped with it when
    /// `stopasgroup`/`killasgroup` say so, and let go either way.
    fn stop_leftovers(&mut self, i: usize) {
        let held = std::mem::take(&mut self.slots[i].leftovers);
        let spec = &self.slots[i].prog.spec;
        let Some(signo) =
            leftovers::stop_signal(spec.stopasgroup, spec.killasgroup, spec.stopsignal)
        else {
            return;
        };
        let sent: Vec<String> = held
            .iter()
            .filter(|l| l.signal(signo))
            .map(|l| format!("{} ({})", l.pid, l.comm))
            .collect();
        if sent.is_empty() {
            return;
        }
        let p = &self.slots[i].prog;
        let mut e = p.event(
            Level::Info,
            Kind::Notice,
            p.state,
            format!(
                "stopping what {} left running with {}: {}",
                p.spec.name,
                signal_name(signo),
                sent.join(", ")
            ),
        );
        e.signal = Some(signal_name(signo));
        self.bus.emit(e);
    }

    /// A critical program that is down for good stops the supervisor with its status.
    fn check_critical(&mut self, i: usize) {
        let p = &self.slots[i].prog;
        // A restart waiting for the old process's pipes is not "down for good".
        if !p.spec.critical || self.shutdown.is_some() || self.slots[i].pipes.spawn_pending {
            return;
        }
        if matches!(p.state, State::Fatal | State::Exited) {
            let code = p.last_exit.as_ref().map_or(1, |e| e.status);
            let reason = format!(
                "critical program {} is {} (status {code})",
                p.spec.name, p.state
            );
            self.begin_shutdown(&reason, code);
        }
    }

    /// Reaps every exited child: supervised ones through their pidfd, orphans by pid.
    fn reap_children(&mut self) {
        while let Some(pid) = wait::peek_any() {
            if let Some(k) = self.aux.iter().position(|a| a.pid == pid) {
                if !self.reap_aux(k) {
                    break;
                }
                continue;
            }
            if let Some(i) = self.slots.iter().position(|s| s.prog.pid == Some(pid)) {
                if !self.reap_supervised(i) {
                    break;
                }
                continue;
            }
            match wait::reap_pid(pid) {
                Ok(Some(status)) => {
                    self.orphans_reaped += 1;
                    let mut e = Event::new(
                        Level::Info,
                        Kind::OrphanReaped,
                        format!("reaped unknown pid {pid} ({})", status.describe()),
                    );
                    e.pid = Some(pid);
                    if let ExitStatus::Code(c) = status {
                        e.exit_code = Some(c);
                    } else if let ExitStatus::Signal { signo, .. } = status {
                        e.signal = Some(signal_name(signo));
                    }
                    self.bus.emit(e);
                }
                Ok(None) | Err(_) => break,
            }
        }
    }

    fn on_signal(&mut self, sig: signals::Received) {
        if sig.signo == libc::SIGCHLD {
            self.reap_children();
            return;
        }
        let name = signal_name(sig.signo);
        let from = signals::describe_sender(&sig);
        let what = match sig.signo {
            libc::SIGTERM | libc::SIGINT | libc::SIGQUIT => "stopping all programs",
            libc::SIGHUP if self.config_path.is_some() => "reloading the configuration",
            libc::SIGUSR1 => "reopening log files",
            _ if self.one_command => "forwarding it to the program",
            _ => "ignored (use `supervisor signal SIG NAME` to signal a program)",
        };
        let mut e = Event::new(
            Level::Info,
            Kind::SignalReceived,
            format!("received {name} {from}; {what}"),
        );
        e.signal = Some(name.clone());
        e.sender_pid = Some(sig.pid);
        e.sender_uid = Some(sig.uid);
        self.bus.emit(e);
        match sig.signo {
            libc::SIGTERM | libc::SIGINT | libc::SIGQUIT => {
                self.begin_shutdown(&format!("{name} {from}"), 0)
            }
            libc::SIGHUP if self.config_path.is_some() => {
                // Failures are logged by `reload` itself.
                let _ = self.reload();
            }
            libc::SIGUSR1 => self.output.reopen(),
            other if self.one_command => {
                for i in 0..self.slots.len() {
                    self.send_signal(i, other, false);
                }
            }
            _ => {}
        }
    }

    fn on_request(&mut self, req: Request) {
        match req {
            Request::Status(reply) => {
                let now = Instant::now();
                let _ = reply.send(self.slots.iter().map(|s| s.prog.status(now)).collect());
            }
            Request::Shutdown { reason } => self.begin_shutdown(&reason, 0),
            Request::Control {
                action,
                names,
                reply,
            } => {
                let result = self.resolve(&names).map(|found| {
                    self.control(action, &found);
                    found
                        .iter()
                        .map(|&i| self.slots[i].prog.spec.name.clone())
                        .collect()
                });
                let _ = reply.send(result);
            }
            Request::Signal {
                signo,
                names,
                reply,
            } => {
                let result = self.resolve(&names).and_then(|found| {
                    if rustix::process::Signal::from_named_raw(signo).is_none() {
                        return Err(format!("signal {signo} is not a standard signal"));
                    }
                    let mut sent = Vec::new();
                    for &i in &found {
                        let p = &self.slots[i].prog;
                        if p.pid.is_none() {
                            continue;
                        }
                        let mut e = p.event(
                            Level::Info,
                            Kind::Signaled,
                            p.state,
                            format!(
                                "signaled: {} (pid {}) with {} on request",
                                p.spec.name,
                                p.pid.unwrap_or(0),
                                signal_name(signo)
                            ),
                        );
                        e.signal = Some(signal_name(signo));
                        self.bus.emit(e);
                        self.send_signal(i, signo, false);
                        sent.push(self.slots[i].prog.spec.name.clone());
                    }
                    Ok(sent)
                });
                let _ = reply.send(result);
            }
            Request::Reload(reply) => {
                let _ = reply.send(self.reload());
            }
        }
    }

    fn on_check(&mut self, msg: checks::CheckMsg) {
        match msg {
            checks::CheckMsg::Ready { serial, detail } => {
                if let Some(i) = self
                    .slots
                    .iter()
                    .position(|s| s.serial == serial && s.prog.pid.is_some())
                {
                    let events = self.slots[i].prog.ready_ok(&detail);
                    self.emit_all(events);
                }
            }
            checks::CheckMsg::Health { serial, ok, detail } => {
                if let Some(i) = self
                    .slots
                    .iter()
                    .position(|s| s.serial == serial && s.prog.pid.is_some())
                {
                    let (events, actions) =
                        self.slots[i]
                            .prog
                            .health_result(ok, &detail, Instant::now());
                    self.emit_all(events);
                    self.perform(i, actions);
                }
            }
            checks::CheckMsg::Exec {
                argv,
                timeout,
                reply,
            } => self.spawn_aux(argv, timeout, reply),
        }
    }

    /// Runs an `exec:` check's command; the reply carries its outcome.
    fn spawn_aux(
        &mut self,
        argv: Vec<String>,
        timeout: Duration,
        reply: tokio::sync::oneshot::Sender<Result<(), String>>,
    ) {
        let mut spec = ProgramSpec::new(
            "check",
            argv.clone(),
            config::Location {
                file: "<check>".into(),
                line: 0,
            },
        );
        spec.stdout = config::LogTarget::Discard;
        spec.stderr = config::LogTarget::Discard;
        let child = match spawn::spawn(&spec) {
            Ok(c) => c,
            Err(e) => {
                let _ = reply.send(Err(format!("{}: {e}", argv.join(" "))));
                return;
            }
        };
        let afd = match watch_readable(child.pidfd) {
            Ok(afd) => afd,
            Err(e) => {
                let _ = reply.send(Err(format!("cannot watch the check process: {e}")));
                return;
            }
        };
        self.next_serial += 1;
        let serial = self.next_serial;
        self.aux.push(Aux {
            serial,
            pid: child.pid,
            pidfd: afd,
            deadline: deadline_after(Instant::now(), timeout),
            reply: Some(reply),
        });
    }

    /// Reaps check process `k` if it has exited and replies with its outcome.
    fn reap_aux(&mut self, k: usize) -> bool {
        match wait::reap_pidfd(self.aux[k].pidfd.get_ref().as_fd()) {
            Ok(Some(status)) => {
                let mut aux = self.aux.swap_remove(k);
                if let Some(reply) = aux.reply.take() {
                    let _ = reply.send(match status {
                        ExitStatus::Code(0) => Ok(()),
                        other => Err(other.describe()),
                    });
                }
                true
            }
            _ => false,
        }
    }

    /// The dependencies of slot `i` that are not ready yet.
    fn unready_dependencies(&self, i: usize) -> Vec<String> {
        self.slots[i]
            .prog
            .spec
            .depends_on
            .iter()
            .filter(|d| {
                !self
                    .slots
                    .iter()
                    .any(|s| &s.prog.spec.name == *d && s.prog.ready)
            })
            .cloned()
            .collect()
    }

    /// Starts waiting programs whose dependencies became ready; keeps each program's check
    /// tasks in step with its state (a readiness task only while STARTING, a health task only
    /// while RUNNING).
    fn sync_checks(&mut self) {
        for i in 0..self.slots.len() {
            if self.slots[i].prog.waiting
                && self.shutdown.is_none()
                && self.unready_dependencies(i).is_empty()
            {
                self.slots[i].prog.waiting = false;
                self.spawn(i);
            }
            let slot = &mut self.slots[i];
            if slot.prog.state != State::Starting {
                if let Some(t) = slot.ready_task.take() {
                    t.abort();
                }
            }
            let wants_health = slot.prog.state == State::Running && slot.prog.spec.health.is_some();
            if !wants_health {
                if let Some(t) = slot.health_task.take() {
                    t.abort();
                }
            } else if slot.health_task.is_none() {
                if let Some(check) = slot.prog.spec.health.clone() {
                    let spec = &slot.prog.spec;
                    slot.health_task = Some(tokio::spawn(checks::health(
                        slot.serial,
                        check,
                        spec.health_interval,
                        spec.health_timeout,
                        self.checks_tx.clone(),
                    )));
                }
            }
        }
    }

    /// Resolves program names (`name`, `GROUP:*`, `GROUP:NAME`, `all`) to slot indices in
    /// priority order; an unknown name is an error listing the known ones.
    fn resolve(&self, names: &[String]) -> Result<Vec<usize>, String> {
        let programs: Vec<(&str, Option<&str>)> = self
            .slots
            .iter()
            .map(|s| (s.prog.spec.name.as_str(), s.prog.spec.group.as_deref()))
            .collect();
        handle::select(&programs, names)
    }

    fn control(&mut self, action: handle::Control, found: &[usize]) {
        if self.shutdown.is_some() {
            return;
        }
        let now = Instant::now();
        for &i in found {
            let (events, actions) = match action {
                handle::Control::Start => (vec![], self.slots[i].prog.start()),
                handle::Control::Stop => {
                    self.slots[i].prog.waiting = false;
                    let mut events = if self.slots[i].pipes.cancel_spawn() {
                        self.slots[i].prog.restart_cancelled()
                    } else {
                        vec![]
                    };
                    self.stop_leftovers(i);
                    let (more, actions) = self.slots[i].prog.stop(now, AfterStop::Stay);
                    events.extend(more);
                    (events, actions)
                }
                handle::Control::Restart => self.slots[i].prog.stop(now, AfterStop::Start),
            };
            self.emit_all(events);
            self.perform(i, actions);
        }
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        for a in self.aux.iter_mut().filter(|a| a.deadline <= now) {
            if let Some(sig) = rustix::process::Signal::from_named_raw(libc::SIGKILL) {
                let _ = rustix::process::pidfd_send_signal(a.pidfd.get_ref(), sig);
            }
            if let Some(reply) = a.reply.take() {
                let _ = reply.send(Err("timed out".to_string()));
            }
            // It is reaped when it dies; no second kill.
            a.deadline = deadline_after(now, Duration::from_secs(3600));
        }
        for i in 0..self.slots.len() {
            let held = self.slots[i].pipes.timer(now);
            if held > 0 {
                let p = &self.slots[i].prog;
                let e = p.event(
                    Level::Debug,
                    Kind::Notice,
                    p.state,
                    format!(
                        "closing {held} output pipe(s) of {}'s previous process: still open {}s after the next start was due (a process it left running holds them)",
                        p.spec.name,
                        pipes::DRAIN_GRACE.as_secs_f64()
                    ),
                );
                self.bus.emit(e);
            }
            if self.slots[i].prog.deadline.is_some_and(|d| d <= now) {
                let (events, actions) = self.slots[i].prog.timer(now);
                if self.slots[i].prog.killed && self.shutdown.is_some() {
                    self.killed_any = true;
                }
                self.emit_all(events);
                self.perform(i, actions);
            }
        }
        self.shutdown_timer(now);
    }

    // ----- actions -----

    fn perform(&mut self, i: usize, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Spawn if self.shutdown.is_some() => {}
                Action::Spawn => match self.unready_dependencies(i) {
                    deps if deps.is_empty() => self.spawn(i),
                    deps => {
                        if !self.slots[i].prog.waiting {
                            self.slots[i].prog.waiting = true;
                            let p = &self.slots[i].prog;
                            let e = p.event(
                                Level::Info,
                                Kind::Waiting,
                                p.state,
                                format!(
                                    "waiting: {} starts when {} {} ready",
                                    p.spec.name,
                                    deps.join(", "),
                                    if deps.len() == 1 { "is" } else { "are" }
                                ),
                            );
                            self.bus.emit(e);
                        }
                    }
                },
                Action::Signal { signo, group } => self.send_signal(i, signo, group),
            }
        }
    }

    fn spawn(&mut self, i: usize) {
        let now = Instant::now();
        let wall = SystemTime::now();
        // The previous process's pipes are closed first (see `pipes`): bounded per program.
        if self.slots[i].pipes.hold_spawn(now) {
            return;
        }
        if let Some(t) = self.slots[i].ready_task.take() {
            t.abort();
        }
        let spec = &self.slots[i].prog.spec;
        // Subscribe to the output before the program can write its first line.
        let log_watch = match &spec.ready {
            Some(config::check::Check::Log(re)) => Some((
                re.clone(),
                vec![
                    self.output.follow(&spec.name, Stream::Stdout, 0).1,
                    self.output.follow(&spec.name, Stream::Stderr, 0).1,
                ],
            )),
            _ => None,
        };
        let notify = match &spec.ready {
            Some(config::check::Check::Notify) => {
                match rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC) {
                    Ok(pair) => Ok(Some(pair)),
                    Err(e) => Err(spawn::SpawnError::Resources {
                        what: "the readiness (notify) pipe",
                        source: e.into(),
                    }),
                }
            }
            _ => Ok(None),
        };
        let spawned = notify.and_then(|notify| {
            spawn::spawn_with(&self.slots[i].prog.spec, notify.as_ref().map(|(_, w)| w))
                .map(|child| (child, notify))
        });
        match spawned {
            Ok((child, notify)) => {
                self.next_serial += 1;
                let serial = self.next_serial;
                let name = self.slots[i].prog.spec.name.clone();
                let tx = self.checks_tx.clone();
                self.slots[i].ready_task = match (&self.slots[i].prog.spec.ready, log_watch, notify)
                {
                    (_, Some((re, streams)), _) => {
                        Some(tokio::spawn(checks::watch_log(serial, re, streams, tx)))
                    }
                    (_, _, Some((r, _w))) => {
                        Some(tokio::spawn(checks::watch_notify(serial, r, tx)))
                    }
                    (
                        Some(
                            c @ (config::check::Check::Tcp(_)
                            | config::check::Check::Http(_)
                            | config::check::Check::Exec(_)),
                        ),
                        _,
                        _,
                    ) => Some(tokio::spawn(checks::poll_ready(serial, c.clone(), tx))),
                    _ => None,
                };
                match watch_readable(child.pidfd) {
                    Ok(afd) => self.slots[i].pidfd = Some(afd),
                    Err(e) => self.notice(Level::Error, format!("cannot watch pid {} of {name}: {e}; its exit will be noticed through SIGCHLD", child.pid)),
                }
                self.slots[i].serial = serial;
                for (stream, fd) in [
                    (Stream::Stdout, child.stdout),
                    (Stream::Stderr, child.stderr),
                ] {
                    let Some(fd) = fd else { continue };
                    let spec = &self.slots[i].prog.spec;
                    let target = match stream {
                        Stream::Stdout => &spec.stdout,
                        Stream::Stderr => &spec.stderr,
                    };
                    let tx = self.pipes_tx.clone();
                    let handle = self
                        .output
                        .attach_watched(&name, stream, fd, target, move || {
                            let _ = tx.send(serial);
                        });
                    self.slots[i].pipes.attached(serial, handle);
                }
                if let Err(e) = self.forensics.watch(child.pid) {
                    self.notice(
                        Level::Warn,
                        format!(
                            "{e}; the death of {name} (pid {}) will not be explained",
                            child.pid
                        ),
                    );
                }
                let events = self.slots[i].prog.spawned(child.pid, now, wall);
                self.emit_all(events);
            }
            Err(e) => {
                let events = self.slots[i].prog.spawn_failed(&e, now, wall);
                self.emit_all(events);
                if self.slots[i].prog.state == State::Fatal {
                    self.stop_leftovers(i);
                }
                self.check_critical(i);
            }
        }
    }

    /// Sends `signo` to slot `i`'s live process through its pidfd, or to its process group
    /// (which exists as long as the leader is unreaped, and it is: we hold its pid).
    fn send_signal(&mut self, i: usize, signo: i32, group: bool) {
        let (Some(pid), Some(fd)) = (self.slots[i].prog.pid, self.slots[i].pidfd.as_ref()) else {
            return;
        };
        let Some(sig) = rustix::process::Signal::from_named_raw(signo) else {
            self.notice(
                Level::Error,
                format!("cannot send signal {signo}: not a standard signal"),
            );
            return;
        };
        let result = if group {
            match rustix::process::Pid::from_raw(pid as i32) {
                Some(pgid) => rustix::process::kill_process_group(pgid, sig),
                None => return,
            }
        } else {
            rustix::process::pidfd_send_signal(fd.get_ref(), sig)
        };
        if let Err(e) = result {
            if e != rustix::io::Errno::SRCH {
                let p = &self.slots[i].prog;
                let mut ev = p.event(
                    Level::Error,
                    Kind::Notice,
                    p.state,
                    format!(
                        "sending {} to {} (pid {pid}) failed: {e}",
                        signal_name(signo),
                        p.spec.name
                    ),
                );
                ev.error = Some(e.to_string());
                self.bus.emit(ev);
            }
        }
    }

    // ----- reload -----

    fn reload(&mut self) -> Result<handle::ReloadSummary, String> {
        let Some(path) = self.config_path.clone() else {
            return Err(
                "nothing to reload: the supervisor runs one command, not a config file".to_string(),
            );
        };
        let new = match config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("reload failed, keeping the running configuration: {e}");
                self.notice(Level::Error, msg.clone());
                return Err(msg);
            }
        };
        let hash = new.hash();
        let now = Instant::now();
        let (mut added, mut changed, mut removed, mut unchanged) = (vec![], vec![], vec![], vec![]);
        for i in 0..self.slots.len() {
            let name = self.slots[i].prog.spec.name.clone();
            match new.programs.iter().find(|s| s.name == name) {
                Some(spec) if spec.same_as(&self.slots[i].prog.spec) => unchanged.push(name),
                Some(spec) => {
                    changed.push(name);
                    let (ev, act) = self.slots[i]
                        .prog
                        .stop(now, AfterStop::Replace(Box::new(spec.clone())));
                    self.emit_all(ev);
                    self.perform(i, act);
                }
                None => {
                    removed.push(name);
                    let (ev, act) = self.slots[i].prog.stop(now, AfterStop::Remove);
                    self.emit_all(ev);
                    self.perform(i, act);
                }
            }
        }
        let new_specs: Vec<ProgramSpec> = new
            .programs
            .into_iter()
            .filter(|s| !self.slots.iter().any(|slot| slot.prog.spec.name == s.name))
            .collect();
        for spec in new_specs {
            added.push(spec.name.clone());
            self.slots.push(Slot::new(Program::new(spec)));
            let i = self.slots.len() - 1;
            self.bus.emit(self.added_event(i));
        }
        self.sort_slots();
        for i in 0..self.slots.len() {
            if added.contains(&self.slots[i].prog.spec.name) && self.slots[i].prog.spec.autostart {
                let actions = self.slots[i].prog.start();
                self.perform(i, actions);
            }
        }
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        let mut e = Event::new(
            Level::Info,
            Kind::Reloaded,
            format!(
                "reloaded {}: added {}; changed {}; removed {}; unchanged {}",
                path.display(),
                list(&added),
                list(&changed),
                list(&removed),
                unchanged.len()
            ),
        );
        e.config_hash = Some(hash);
        self.bus.emit(e);
        Ok(handle::ReloadSummary {
            added,
            changed,
            removed,
            unchanged,
        })
    }

    /// Keeps programs in start order (a reload may change priorities).
    fn sort_slots(&mut self) {
        self.slots
            .sort_by(|a, b| plan::start_key(&a.prog.spec).cmp(&plan::start_key(&b.prog.spec)));
    }

    /// Housekeeping after every input: forget removed programs, move a shutdown along.
    fn after_step(&mut self) {
        let before = self.slots.len();
        let removed: Vec<String> = self
            .slots
            .iter()
            .filter(|s| s.prog.after_stop == AfterStop::Remove && s.prog.is_down())
            .map(|s| s.prog.spec.name.clone())
            .collect();
        if !removed.is_empty() {
            self.slots
                .retain(|s| !(s.prog.after_stop == AfterStop::Remove && s.prog.is_down()));
            for name in removed {
                let mut e = Event::new(Level::Debug, Kind::Removed, format!("removed: {name}"));
                e.program = Some(name);
                self.bus.emit(e);
            }
        }
        debug_assert!(self.slots.len() <= before);
        self.sync_checks();
        self.sort_slots();
        self.advance_shutdown();
    }

    // ----- shutdown -----

    fn begin_shutdown(&mut self, reason: &str, exit_code: i32) {
        if self.shutdown.is_some() {
            return;
        }
        let now = Instant::now();
        let deadline = deadline_after(now, self.shutdown_timeout);
        // Leave time to SIGKILL and reap before the budget ends.
        let cap = self
            .shutdown_timeout
            .saturating_sub(Duration::from_millis(300));
        for s in &mut self.slots {
            s.prog.cap_stop_wait(cap, now);
            if s.prog.after_stop != AfterStop::Remove {
                s.prog.after_stop = AfterStop::Stay;
            }
        }
        self.shutdown = Some(Shutdown {
            deadline,
            exit_code,
            orphans_termed: None,
            orphans_killed: false,
        });
        let mut e = Event::new(
            Level::Info,
            Kind::ShuttingDown,
            format!(
                "shutting down ({reason}): stopping programs in reverse priority order within {}s",
                self.shutdown_timeout.as_secs_f64()
            ),
        );
        e.exit_code = Some(exit_code);
        self.bus.emit(e);
    }

    /// Stops the programs of the highest priority that still has any running; when none is
    /// left, deals with the remaining orphans.
    fn advance_shutdown(&mut self) {
        if self.shutdown.is_none() {
            return;
        }
        let now = Instant::now();
        // BACKOFF programs have no process: stop them at once.
        for i in 0..self.slots.len() {
            if self.slots[i].prog.state == State::Backoff {
                let (ev, act) = self.slots[i].prog.stop(now, AfterStop::Stay);
                self.emit_all(ev);
                self.perform(i, act);
            }
        }
        for s in &mut self.slots {
            s.prog.waiting = false;
            s.pipes.cancel_spawn();
        }
        // Dependents stop before what they depend on; among the programs free to stop, the
        // highest priority goes first.
        let live: Vec<bool> = self.slots.iter().map(|s| !s.prog.is_down()).collect();
        if live.iter().any(|&l| l) {
            let has_live_dependent = |i: usize| {
                let name = &self.slots[i].prog.spec.name;
                self.slots
                    .iter()
                    .enumerate()
                    .any(|(j, s)| live[j] && s.prog.spec.depends_on.contains(name))
            };
            let free: Vec<usize> = (0..self.slots.len())
                .filter(|&i| live[i] && !has_live_dependent(i))
                .collect();
            let top = free.iter().map(|&i| self.slots[i].prog.spec.priority).max();
            for i in free {
                let p = &self.slots[i].prog;
                if Some(p.spec.priority) == top
                    && matches!(p.state, State::Starting | State::Running)
                {
                    let (ev, act) = self.slots[i].prog.stop(now, AfterStop::Stay);
                    self.emit_all(ev);
                    self.perform(i, act);
                }
            }
            return;
        }
        // Every program is down. Anything left is an orphan (PID 1 / subreaper duty).
        self.reap_children();
        let Some(sd) = self.shutdown.as_mut() else {
            return;
        };
        if sd.orphans_termed.is_none() && wait::has_children() {
            sd.orphans_termed = Some(now);
            let n = signal_orphans(self.is_pid1, libc::SIGTERM);
            self.notice(
                Level::Info,
                format!("sent SIGTERM to {n} remaining process(es) not managed as programs"),
            );
        }
    }

    fn shutdown_timer(&mut self, now: Instant) {
        let Some(sd) = self.shutdown.as_mut() else {
            return;
        };
        if let Some(t) = sd.orphans_termed {
            if !sd.orphans_killed
                && (now >= deadline_after(t, ORPHAN_TERM_GRACE) || now >= sd.deadline)
            {
                sd.orphans_killed = true;
                self.killed_any = true;
                let n = signal_orphans(self.is_pid1, libc::SIGKILL);
                self.notice(
                    Level::Warn,
                    format!("sent SIGKILL to {n} remaining process(es) that ignored SIGTERM"),
                );
            }
            return;
        }
        if now >= sd.deadline {
            // The budget ran out with programs still up (their own kill did not finish).
            for i in 0..self.slots.len() {
                if self.slots[i].prog.pid.is_some() {
                    self.killed_any = true;
                    let group = self.slots[i].prog.spec.killasgroup;
                    self.send_signal(i, libc::SIGKILL, group);
                }
            }
        }
    }

    /// The exit code once everything is stopped; `None` while work remains.
    fn finished(&mut self) -> Option<i32> {
        let sd = self.shutdown.as_ref()?;
        if self.slots.iter().any(|s| !s.prog.is_down()) {
            return None;
        }
        let orphans_left = sd.orphans_termed.is_some() && wait::has_children();
        let hard_stop = Instant::now() >= deadline_after(sd.deadline, HARD_STOP_GRACE);
        if orphans_left && !hard_stop {
            return None;
        }
        let code = if self.one_command {
            self.slots
                .first()
                .and_then(|s| s.prog.last_exit.as_ref())
                .map_or(0, |e| e.status)
        } else if sd.exit_code != 0 {
            sd.exit_code
        } else if self.killed_any {
            1
        } else {
            0
        };
        let mut e = Event::new(
            Level::Info,
            Kind::Exiting,
            format!(
                "exiting with status {code}{}; reaped {} orphan(s) in total",
                if self.killed_any {
                    " (some processes had to be killed)"
                } else {
                    ""
                },
                self.orphans_reaped
            ),
        );
        e.exit_code = Some(code);
        self.bus.emit(e);
        Some(code)
    }
}

/// Registers an owned fd with tokio for readability.
pub(crate) fn watch_readable<T: std::os::fd::AsRawFd + AsFd>(fd: T) -> std::io::Result<AsyncFd<T>> {
    // SAFETY: `fd` is an owned, open descriptor moved into the AsyncFd, so it stays open and
    // refers to the same file description for the AsyncFd's whole life.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

/// The probe once it is loaded (never resolves when there is nothing to wait for).
async fn probe_arrives(
    rx: &mut Option<tokio::sync::oneshot::Receiver<Option<crate::probe::Probe>>>,
) -> Option<crate::probe::Probe> {
    match rx {
        Some(rx) => rx.await.ok().flatten(),
        None => std::future::pending().await,
    }
}

/// The serial of a watched process (program or check) whose pidfd became readable: it exited.
/// Polled by the engine itself, so a pidfd needs no task and is closed as soon as it is reaped.
async fn exited(slots: &[Slot], aux: &[Aux]) -> u64 {
    std::future::poll_fn(|cx| {
        let fds = slots
            .iter()
            .filter_map(|s| s.pidfd.as_ref().map(|fd| (s.serial, fd)))
            .chain(aux.iter().map(|a| (a.serial, &a.pidfd)));
        for (serial, fd) in fds {
            if let std::task::Poll::Ready(ready) = fd.poll_read_ready(cx) {
                // The readiness is taken: a reap that finds nothing (the SIGCHLD path got there
                // first) must not make this branch fire again and again.
                if let Ok(mut guard) = ready {
                    guard.clear_ready();
                }
                return std::task::Poll::Ready(serial);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Signals every process left that is not a program: as PID 1, everything in the namespace;
/// as a subreaper, our direct children. Returns how many were signaled (or -1 style 0 when
/// unknown).
fn signal_orphans(is_pid1: bool, signo: i32) -> usize {
    let me = std::process::id();
    let children = child_pids(me);
    if is_pid1 {
        // SAFETY: kill(2) with pid -1 signals every process we may signal except ourselves.
        unsafe { libc::kill(-1, signo) };
        return children.len();
    }
    for pid in &children {
        // SAFETY: plain kill(2). These are our own unreaped children (reparented to us as
        // subreaper), so their pids cannot have been reused.
        unsafe { libc::kill(*pid as i32, signo) };
    }
    children.len()
}

/// The pids whose parent is `parent`, from /proc.
fn child_pids(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit_once(')')?.1;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}
