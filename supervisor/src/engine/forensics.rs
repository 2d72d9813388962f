//! Joining what the eBPF probe saw onto the exit it explains.
//!
//! The probe's records arrive through its ring buffer; the engine stores the signals sent to
//! each watched process (a few per pid), and when the pidfd says a process died it first
//! drains the ring buffer, so the record of the fatal signal has been read before the
//! `exited` event is emitted. Without the probe, the origin is still classified from the exit
//! status (a fault signal is the kernel's), with no `killed_by`.

use std::collections::{HashMap, HashSet};

use super::machine::ExitStatus;
use crate::config::signal_name;
use crate::event::{Event, KilledBy, Origin};
use crate::probe::{self, Probe, ProbeReader, ProbeRecord};

/// Signals kept per watched process (the last ones matter).
const KEPT: usize = 8;

/// The probe (if loaded) and what it has told about live processes.
#[derive(Default)]
pub struct Forensics {
    probe: Option<Probe>,
    reader: Option<ProbeReader>,
    signals: HashMap<u32, Vec<ProbeRecord>>,
    oom_victims: HashSet<u32>,
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

    /// Keeps what a record says about a live process; for a signal, returns the target pid
    /// and the signal's description (for the `signal_observed` event).
    pub fn absorb(&mut self, record: ProbeRecord) -> Option<(u32, KilledBy)> {
        match record {
            ProbeRecord::Signal { target_pid, .. } => {
                let seen = killed_by(&record).map(|k| (target_pid, k));
                let kept = self.signals.entry(target_pid).or_default();
                if kept.len() == KEPT {
                    kept.remove(0);
                }
                kept.push(record);
                seen
            }
            ProbeRecord::OomVictim { pid, .. } => {
                self.oom_victims.insert(pid);
                None
            }
            // The exit status comes from waitid, which is authoritative.
            ProbeRecord::Exit { .. } => None,
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

    /// Explains the death of `pid` and forgets it: the signals it was sent, and the origin.
    /// `stopping`: the supervisor had asked it to stop. `oom`: an OOM kill is known.
    pub fn explain(
        &mut self,
        pid: u32,
        status: ExitStatus,
        stopping: bool,
        oom: bool,
    ) -> (Vec<KilledBy>, Origin) {
        let records = self.signals.remove(&pid).unwrap_or_default();
        let oom = self.oom_victims.remove(&pid) || oom;
        if let Some(p) = &self.probe {
            p.unwatch(pid);
        }
        let killed_by: Vec<KilledBy> = records.iter().filter_map(killed_by).collect();
        let origin = if oom {
            Origin::OomKilled
        } else if stopping {
            Origin::StoppedBySupervisor
        } else {
            match status {
                ExitStatus::Signal { signo, .. } => match killed_by
                    .iter()
                    .rev()
                    .find(|k| k.signal == signal_name(signo))
                {
                    Some(k) if k.from_process => Origin::SignalFromProcess,
                    Some(_) => Origin::SignalFromKernel,
                    // No record (probe off): the fault signals are the kernel's.
                    None if is_fault(signo) => Origin::SignalFromKernel,
                    None => Origin::SignalFromProcess,
                },
                // Exited with a code, but after a signal from a process (a handled SIGTERM).
                ExitStatus::Code(_) if killed_by.iter().any(|k| k.from_process) => {
                    Origin::SignalFromProcess
                }
                ExitStatus::Code(_) => Origin::Exited,
            }
        };
        (killed_by, origin)
    }
}

/// Attaches an explanation to the `exited`/`stopped` event of the process.
pub fn annotate(event: &mut Event, killed_by: Vec<KilledBy>, origin: Origin) {
    // The last signal a process sent (the one that explains the death) goes in the sentence,
    // unless the supervisor itself stopped it (supervisord's sentence says enough).
    let blame = origin != Origin::StoppedBySupervisor;
    if let Some(k) = killed_by.iter().rev().find(|k| k.from_process && blame) {
        event.msg.push_str(&format!(
            " after {} from pid {} '{}' uid {}{}",
            k.signal,
            k.sender_pid,
            k.sender_comm,
            k.sender_uid,
            if k.outside_namespace {
                " (outside the container)"
            } else {
                ""
            }
        ));
    } else if origin == Origin::OomKilled {
        event.msg.push_str(" (killed by the kernel's OOM killer)");
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

fn killed_by(r: &ProbeRecord) -> Option<KilledBy> {
    let ProbeRecord::Signal {
        signo,
        code,
        result,
        sender_pid,
        sender_comm,
        sender_uid,
        sender_ppid,
        sender_parent_comm,
        sender_outside_ns,
        ..
    } = r
    else {
        return None;
    };
    let from_process = probe::from_process(*code);
    Some(KilledBy {
        signal: signal_name(*signo),
        code: probe::si_code_name(*signo, *code).to_string(),
        result: probe::result_name(*result).to_string(),
        sender_pid: *sender_pid,
        sender_comm: if from_process {
            sender_comm.clone()
        } else {
            String::new()
        },
        sender_uid: *sender_uid,
        sender_ppid: *sender_ppid,
        sender_parent_comm: if from_process {
            sender_parent_comm.clone()
        } else {
            String::new()
        },
        outside_namespace: *sender_outside_ns,
        from_process,
        text: probe::describe(r),
    })
}
