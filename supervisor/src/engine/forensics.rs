//! Joining what the eBPF probe saw onto the exit it explains.
//!
//! The probe's records arrive through its ring buffer; the engine stores the signals sent to
//! each watched process (a few per pid) and what happened in its process tree, and when the
//! pidfd says a process died it first drains the ring buffer, so the record of the fatal
//! signal has been read before the `exited` event is emitted. Without the probe, the origin is
//! still classified from the exit status (a fault signal is the kernel's), with no `killed_by`.
//!
//! # What counts as the cause
//!
//! - Killed by a signal: the last record of that signal; `signal_from_kernel` when the kernel
//!   made it ([`probe::kernel_reason`]: faults, a broken pipe, a limit), else
//!   `signal_from_process`.
//! - Exited with a code: `signal_from_process` only for a signal from a process that can end a
//!   process ([`probe::can_end_a_process`]: never CHLD, CONT, URG, WINCH or the stop signals),
//!   that it did not ignore, and that was its stop signal (whenever it came: a graceful
//!   shutdown takes its time) or came [`SHORTLY`] before the exit. Likewise
//!   `signal_from_kernel` for such a signal from the kernel. Otherwise, a descendant killed by
//!   a signal `SHORTLY` before the exit is `descendant_killed` (a wrapper script exits with its
//!   child's status). Otherwise `exited`, and the sentence still says how long after the last
//!   signal that could have ended it the exit came.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use super::machine::ExitStatus;
use crate::config::signal_name;
use crate::event::{Event, KilledBy, Origin};
use crate::probe::{self, Probe, ProbeReader, ProbeRecord};

/// Signals kept per watched process (the last ones matter).
const KEPT: usize = 8;
/// Signals to descendants kept per program process.
const KEPT_TREE: usize = 16;
/// Descendant deaths kept per program process.
const KEPT_DEATHS: usize = 4;
/// How close before an exit a signal (other than the stop signal) or a descendant's death
/// must come to be taken as its cause: 1 s. A program that handles a signal and exits later
/// on its own exited for its own reasons; one that exits within a second of a terminating
/// signal almost always exited because of it.
pub const SHORTLY_NS: u64 = 1_000_000_000;
/// [`SHORTLY_NS`] in words, for documentation and messages.
pub const SHORTLY: &str = "1 s";
/// Lost-record notices closer than this to the previous one belong to the same burst.
const BURST_GAP: std::time::Duration = std::time::Duration::from_secs(1);

/// The probe (if loaded) and what it has told about live processes.
#[derive(Default)]
pub struct Forensics {
    probe: Option<Probe>,
    reader: Option<ProbeReader>,
    /// Signals to each program's own process.
    signals: HashMap<u32, VecDeque<ProbeRecord>>,
    /// What happened in each program process's tree.
    trees: HashMap<u32, Tree>,
    oom_victims: HashSet<u32>,
    /// When the probe saw each program process exit (`CLOCK_MONOTONIC` ns).
    exits: HashMap<u32, u64>,
    /// When the last lost-record record came (a burst continues within [`BURST_GAP`]).
    last_lost: Option<Instant>,
}

/// Signals to and deaths of one program process's descendants.
#[derive(Default)]
struct Tree {
    signals: VecDeque<ProbeRecord>,
    deaths: VecDeque<DescendantDeath>,
}

/// A descendant killed by a signal.
#[derive(Debug, Clone)]
pub struct DescendantDeath {
    pub pid: u32,
    /// "its child sleep (pid 52)" or "its descendant sleep (pid 52)".
    pub who: String,
    pub signal: String,
    pub core_dumped: bool,
    /// The signal that killed it, when the probe saw it sent.
    pub killed_by: Option<KilledBy>,
    pub ktime_ns: u64,
}

impl DescendantDeath {
    /// "its child sleep (pid 52) was killed by SIGTERM from 'kill' (uid 0), outside the
    /// container".
    pub fn sentence(&self) -> String {
        match &self.killed_by {
            Some(k) => format!("{} was killed by {}", self.who, k.text),
            None => format!("{} was killed by {}", self.who, self.signal),
        }
    }
}

/// What a record means for the engine.
pub enum Absorbed {
    Nothing,
    /// A signal to a program's own process (`signal_observed`).
    Signal(u32, KilledBy),
    /// A signal to a descendant of program process `.0` (`descendant_signaled`).
    DescendantSignal(u32, KilledBy),
    /// A descendant of program process `.0` was killed (`descendant_killed`).
    DescendantKilled(u32, DescendantDeath),
    /// Records were lost, and this is the first news of the burst: say it once.
    LostNotice(u64),
}

/// How a death is explained.
pub struct Explanation {
    pub killed_by: Vec<KilledBy>,
    pub origin: Origin,
    /// What the sentence names (" after SIGTERM from ...").
    pub blame: Option<String>,
}

impl Forensics {
    pub fn new(mut probe: Option<Probe>) -> Self {
        let reader = probe.as_mut().map(Probe::take_reader);
        Forensics {
            probe,
            reader,
            ..Default::default()
        }
    }

    pub fn loaded(&self) -> bool {
        self.probe.is_some()
    }

    /// Records lost by the ring buffer (or undecodable).
    pub fn lost_events(&self) -> u64 {
        self.probe.as_ref().map_or(0, Probe::lost_events)
    }

    /// Starts watching a new process; an error is returned for the caller to report.
    pub fn watch(&self, pid: u32) -> Result<(), String> {
        match &self.probe {
            Some(p) => p.watch(pid).map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// Starts watching a process that may have forked already (the probe arrived after it was
    /// spawned): its live descendants are watched too.
    pub fn watch_tree(&self, pid: u32) -> Result<(), String> {
        match &self.probe {
            Some(p) => p.watch_tree(pid).map(drop).map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// The next record from the kernel (never resolves without a probe).
    pub async fn next(reader: &mut Option<ProbeReader>) -> ProbeRecord {
        match reader {
            Some(r) => r.next().await,
            None => std::future::pending().await,
        }
    }

    pub fn reader(&mut self) -> &mut Option<ProbeReader> {
        &mut self.reader
    }

    /// Keeps what a record says about a live process, and says what to tell about it.
    pub fn absorb(&mut self, record: ProbeRecord) -> Absorbed {
        if let ProbeRecord::Lost { count, .. } = record {
            let now = Instant::now();
            let new_burst = self
                .last_lost
                .is_none_or(|at| now.saturating_duration_since(at) > BURST_GAP);
            self.last_lost = Some(now);
            return if new_burst {
                Absorbed::LostNotice(count)
            } else {
                Absorbed::Nothing
            };
        }
        if self.probe.as_ref().is_some_and(|p| !p.current(&record)) {
            return Absorbed::Nothing; // about an earlier process whose pid was reused
        }
        let Some((root, _)) = record.root() else {
            return Absorbed::Nothing;
        };
        let descendant = record.about_descendant();
        match &record {
            ProbeRecord::Signal { .. } => {
                let Some(k) = killed_by(&record, root) else {
                    return Absorbed::Nothing;
                };
                if descendant {
                    let tree = self.trees.entry(root).or_default();
                    keep(&mut tree.signals, record, KEPT_TREE);
                    Absorbed::DescendantSignal(root, k)
                } else {
                    keep(self.signals.entry(root).or_default(), record, KEPT);
                    Absorbed::Signal(root, k)
                }
            }
            ProbeRecord::OomVictim { pid, .. } => {
                self.oom_victims.insert(*pid);
                Absorbed::Nothing
            }
            ProbeRecord::Exit {
                pid,
                ppid,
                comm,
                exit_code,
                ktime_ns,
                ..
            } => {
                if !descendant {
                    // The exit status comes from waitid, which is authoritative; the time is
                    // the kernel's.
                    self.exits.insert(*pid, *ktime_ns);
                    return Absorbed::Nothing;
                }
                let signo = exit_code & 0x7f;
                if signo == 0 {
                    return Absorbed::Nothing;
                }
                let tree = self.trees.entry(root).or_default();
                let fatal = tree
                    .signals
                    .iter()
                    .rev()
                    .find(|r| {
                        matches!(r, ProbeRecord::Signal { target_pid, signo: s, .. }
                            if target_pid == pid && *s == signo)
                    })
                    .and_then(|r| killed_by(r, root));
                let kin = if *ppid == root { "child" } else { "descendant" };
                let oom = self.oom_victims.remove(pid);
                let death = DescendantDeath {
                    pid: *pid,
                    who: format!("its {kin} {comm} (pid {pid})"),
                    signal: if oom {
                        format!("{} (the OOM killer chose it)", signal_name(signo))
                    } else {
                        signal_name(signo)
                    },
                    core_dumped: exit_code & 0x80 != 0,
                    killed_by: fatal,
                    ktime_ns: *ktime_ns,
                };
                if tree.deaths.len() == KEPT_DEATHS {
                    tree.deaths.pop_front();
                }
                tree.deaths.push_back(death.clone());
                tree.signals.retain(|r| r.pid() != *pid);
                Absorbed::DescendantKilled(root, death)
            }
            ProbeRecord::Lost { .. } => Absorbed::Nothing,
        }
    }

    /// Every record already in the ring buffer (the engine absorbs each, so the signals that
    /// preceded an exit are read before the exit is reported).
    pub fn pending(&mut self) -> Vec<ProbeRecord> {
        self.reader
            .as_mut()
            .map(ProbeReader::drain)
            .unwrap_or_default()
    }

    /// Whether the probe saw the OOM killer choose `pid` (call after absorbing [`Forensics::pending`]).
    pub fn oom_victim(&self, pid: u32) -> bool {
        self.oom_victims.contains(&pid)
    }

    /// Explains the death of `pid` and forgets it: the signals it was sent, the origin, and
    /// what the sentence blames. `stopping`: the supervisor had asked it to stop. `oom`: an
    /// OOM kill is known. `stopsignal`: the program's stop signal.
    pub fn explain(
        &mut self,
        pid: u32,
        status: ExitStatus,
        stopping: bool,
        oom: bool,
        stopsignal: i32,
    ) -> Explanation {
        let records = self.signals.remove(&pid).unwrap_or_default();
        let tree = self.trees.remove(&pid).unwrap_or_default();
        let oom = self.oom_victims.remove(&pid) || oom;
        let exit_ns = self.exits.remove(&pid).unwrap_or_else(probe::monotonic_ns);
        if let Some(p) = &self.probe {
            p.unwatch(pid);
        }
        let before = |r: &ProbeRecord| exit_ns.saturating_sub(r.ktime_ns());
        let mut signals: Vec<KilledBy> = Vec::with_capacity(records.len());
        for r in &records {
            if let Some(mut k) = killed_by(r, pid) {
                k.before_exit_s = Some(secs(before(r)));
                signals.push(k);
            }
        }
        let mut killed_by = signals;
        // Candidates: signals that can end a process and that it did not ignore.
        let can_end = |r: &ProbeRecord| match r {
            ProbeRecord::Signal { signo, result, .. } => {
                probe::can_end_a_process(*signo) && *result != probe::RESULT_IGNORED
            }
            _ => false,
        };
        let index_of = |want: &dyn Fn(&ProbeRecord) -> bool| records.iter().rposition(want);
        let mut blame = None;
        let origin = if oom {
            Origin::OomKilled
        } else if stopping {
            Origin::StoppedBySupervisor
        } else {
            match status {
                ExitStatus::Signal { signo, .. } => {
                    match index_of(
                        &|r| matches!(r, ProbeRecord::Signal { signo: s, .. } if *s == signo),
                    ) {
                        Some(i) => {
                            blame = Some(blame_text(&killed_by[i], before(&records[i]), true));
                            if killed_by[i].from_process {
                                Origin::SignalFromProcess
                            } else {
                                Origin::SignalFromKernel
                            }
                        }
                        // No record (probe off): the fault signals are the kernel's.
                        None if is_fault(signo) => Origin::SignalFromKernel,
                        None => Origin::SignalFromProcess,
                    }
                }
                ExitStatus::Code(_) => {
                    let cause = index_of(&|r| {
                        can_end(r)
                            && (matches!(r, ProbeRecord::Signal { signo, .. } if *signo == stopsignal)
                                || before(r) <= SHORTLY_NS)
                    });
                    let death = tree
                        .deaths
                        .iter()
                        .rev()
                        .find(|d| exit_ns.saturating_sub(d.ktime_ns) <= SHORTLY_NS);
                    match (cause, death) {
                        (Some(i), _) => {
                            blame = Some(blame_text(&killed_by[i], before(&records[i]), true));
                            if killed_by[i].from_process {
                                Origin::SignalFromProcess
                            } else {
                                Origin::SignalFromKernel
                            }
                        }
                        (None, Some(d)) => {
                            blame = Some(format!(" after {}", sender_words(d)));
                            if let Some(k) = &d.killed_by {
                                let mut k = k.clone();
                                k.before_exit_s = Some(secs(exit_ns.saturating_sub(d.ktime_ns)));
                                killed_by.push(k);
                            }
                            Origin::DescendantKilled
                        }
                        (None, None) => {
                            // Not the cause, but worth saying how long before it came.
                            if let Some(i) = index_of(&can_end) {
                                blame = Some(blame_text(&killed_by[i], before(&records[i]), false));
                            }
                            Origin::Exited
                        }
                    }
                }
            }
        };
        Explanation {
            killed_by,
            origin,
            blame,
        }
    }
}

/// Appends `record`, folding it into the last kept record of the same signal from the same
/// sender (the kernel sends folded repeats as one record with a count).
fn keep(kept: &mut VecDeque<ProbeRecord>, record: ProbeRecord, max: usize) {
    if let ProbeRecord::Signal { count: n, .. } = &record {
        if *n > 1 {
            if let Some(ProbeRecord::Signal { count, .. }) =
                kept.iter_mut().rev().find(|r| same_signal(r, &record))
            {
                *count = count.saturating_add(*n);
                return;
            }
        }
    }
    if kept.len() == max {
        kept.pop_front();
    }
    kept.push_back(record);
}

fn same_signal(a: &ProbeRecord, b: &ProbeRecord) -> bool {
    match (a, b) {
        (
            ProbeRecord::Signal {
                target_pid: t1,
                signo: s1,
                code: c1,
                sender_pid: p1,
                sender_comm: n1,
                sender_outside_ns: o1,
                ..
            },
            ProbeRecord::Signal {
                target_pid: t2,
                signo: s2,
                code: c2,
                sender_pid: p2,
                sender_comm: n2,
                sender_outside_ns: o2,
                ..
            },
        ) => t1 == t2 && s1 == s2 && c1 == c2 && p1 == p2 && n1 == n2 && o1 == o2,
        _ => false,
    }
}

fn secs(ns: u64) -> f64 {
    (ns / 1_000_000) as f64 / 1000.0
}

/// " after SIGTERM from pid 842 'kill' uid 0" for the cause (", 5.0 s earlier" when it came a
/// second or more before the exit); " 1.5 s after SIGUSR1 from ..." for a signal that was not.
fn blame_text(k: &KilledBy, before_ns: u64, cause: bool) -> String {
    let when = if cause {
        " after".to_string()
    } else {
        format!(" {:.1} s after", secs(before_ns))
    };
    // The cause came a while before (a stop signal and a long graceful shutdown): say so.
    let earlier = if cause && before_ns >= SHORTLY_NS {
        format!(", {:.1} s earlier", secs(before_ns))
    } else {
        String::new()
    };
    if k.from_process {
        format!(
            "{when} {} from pid {} '{}' uid {}{}{earlier}",
            k.signal,
            k.sender_pid.unwrap_or(0),
            k.sender_comm.as_deref().unwrap_or(""),
            k.sender_uid.unwrap_or(0),
            if k.outside_namespace == Some(true) {
                " (outside the container)"
            } else {
                ""
            }
        )
    } else {
        format!("{when} {}{earlier}", k.text)
    }
}

/// "its child sleep (pid 52) was killed by SIGTERM from pid 0 'kill' uid 0 (outside the
/// container)".
fn sender_words(d: &DescendantDeath) -> String {
    match &d.killed_by {
        Some(k) => format!(
            "{} was killed by{}",
            d.who,
            blame_text(k, 0, true).trim_start_matches(" after")
        ),
        None => format!("{} was killed by {}", d.who, d.signal),
    }
}

/// Attaches an explanation to the `exited`/`stopped` event of the process.
pub fn annotate(event: &mut Event, explanation: Explanation) {
    let Explanation {
        killed_by,
        origin,
        blame,
    } = explanation;
    // The supervisor's own stop needs no blame: supervisord's sentence says enough.
    if origin == Origin::OomKilled {
        event.msg.push_str(" (killed by the kernel's OOM killer)");
    } else if let Some(b) = blame.filter(|_| origin != Origin::StoppedBySupervisor) {
        event.msg.push_str(&b);
    }
    event.origin = Some(origin);
    if !killed_by.is_empty() {
        event.killed_by = Some(killed_by);
    }
}

fn is_fault(signo: i32) -> bool {
    matches!(
        signo,
        libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE | libc::SIGTRAP | libc::SIGSYS
    )
}

/// A signal record as the events carry it; `root` is the program's process (a signal to
/// anything else names its target).
fn killed_by(r: &ProbeRecord, root: u32) -> Option<KilledBy> {
    let ProbeRecord::Signal {
        target_pid,
        target_ppid,
        target_comm,
        signo,
        code,
        result,
        sender_pid,
        sender_comm,
        sender_uid,
        sender_ppid,
        sender_parent_comm,
        sender_outside_ns,
        count,
        ..
    } = r
    else {
        return None;
    };
    let from_itself = !*sender_outside_ns && sender_pid == target_pid;
    let reason = probe::kernel_reason(*signo, *code, from_itself);
    let from_process = reason.is_none();
    let sender = |v| from_process.then_some(v);
    let target = (*target_pid != root).then(|| {
        let kin = if *target_ppid == root {
            "child"
        } else {
            "descendant"
        };
        format!("its {kin} {target_comm} (pid {target_pid})")
    });
    Some(KilledBy {
        signal: signal_name(*signo),
        code: probe::si_code_name(*signo, *code).to_string(),
        result: probe::result_name(*result).to_string(),
        sender_pid: sender(*sender_pid),
        sender_comm: from_process.then(|| sender_comm.clone()),
        sender_uid: sender(*sender_uid),
        sender_ppid: sender(*sender_ppid),
        sender_parent_comm: from_process.then(|| sender_parent_comm.clone()),
        outside_namespace: from_process.then_some(*sender_outside_ns),
        from_process,
        reason: reason.filter(|r| !r.is_empty()),
        count: *count,
        target_pid: target.is_some().then_some(*target_pid),
        target,
        before_exit_s: None,
        text: probe::describe(r),
    })
}

#[cfg(test)]
#[path = "forensics_tests.rs"]
mod tests;
