//! The eBPF forensics probe, user side: loads the kernel programs of `supervisor-ebpf` with
//! aya, keeps their map of watched pids, and reads what they saw — who signalled a supervised
//! process or any process of its tree, how it exited, whether the OOM killer chose it — as
//! [`ProbeRecord`]s.
//!
//! # How the engine uses it
//!
//! ```text
//! let (probe, status) = Probe::load(mode)?;     // Err only for `--probe on` without permission
//! log once: status (Loaded, or Off("<what is missing and how to grant it>")),
//!           and probe.notes() (what this kernel cannot do, e.g. name OOM victims)
//! let mut reader = probe.take_reader();          // once; inside the tokio runtime
//! on spawn:        probe.watch(pid)              // pid as the supervisor sees it
//! select! branch:  record = reader.next()        // cancel-safe
//!                  probe.current(&record)        // false: about an earlier process: drop it
//! on a pidfd exit: reader.drain()                // before emitting `exited`, then
//!                  probe.unwatch(pid)
//! metrics:         probe.lost_counter()          // read at scrape time
//! ```
//!
//! # The process tree
//!
//! The kernel follows `sched_process_fork`: every process a watched one forks, at any depth,
//! is watched too and tagged with its root (the program's process, [`ProbeRecord::root_pid`]).
//! Children of the supervisor are followed from their fork, before they exec, so a wrapper
//! script's first child is never missed. Descendants live in a map of their own that only the
//! kernel writes: at most [`supervisor_ebpf::MAX_TREE`] per program (a fork bomb fills its own
//! share), 8,192 in all; the programs' own processes are in another map that only the loader
//! writes, so nothing a program does can unwatch another one. Forks past a limit are not
//! followed, and counted ([`Probe::unfollowed_forks`]).
//!
//! # Bursts
//!
//! Identical signals (same sender process, target, signal and `si_code`) within
//! [`supervisor_ebpf::FOLD_WINDOW_NS`] of the first are folded in the kernel into one record's
//! `count`, sent with the next different signal to the target, the next repeat after the
//! window, or the target's exit. Whatever the ring buffer still cannot take is counted
//! ([`Probe::lost_events`]) and announced by a [`ProbeRecord::Lost`] record once there is room.
//!
//! # Guarantees
//!
//! - **Ordering.** The kernel runs `signal_generate` in the sender's `kill(2)` and
//!   `sched_process_exit` in the dying process's `do_exit()`, both before the exit is notified
//!   to the parent (pidfd readable, `SIGCHLD`). So once the engine has seen a pidfd become
//!   readable, [`ProbeReader::drain`] returns every record that explains that death: no wait,
//!   no timer.
//! - **Pids** are those of the supervisor's PID namespace, for targets, senders and their
//!   parents (translated in the kernel through `task->…->thread_pid->numbers[level]`). A sender
//!   that is not visible there has pid 0 and `sender_outside_ns`.
//! - **Cost.** Each program first maps its target to a namespace pid (plain loads through BTF
//!   pointers) and checks a bucket array, then the watched-pid hash map only when the bucket is
//!   not empty: about 8 ns per signal for a process that is not watched (measured with
//!   `kernel.bpf_stats_enabled`), under 400 ns for one that is.
//! - **Nothing silent.** A record the kernel could not queue (ring buffer full) or that does not
//!   decode is counted in [`Probe::lost_events`].
//!
//! # Permission
//!
//! Loading needs `CAP_BPF` and `CAP_PERFMON` (or `CAP_SYS_ADMIN`), a kernel with BTF
//! (`/sys/kernel/btf/vmlinux`) and a build that had clang ([`supervisor_ebpf::object`]). No
//! tracefs, no debugfs. [`ProbeMode::Auto`] turns any missing piece into one line
//! ([`ProbeStatus::Off`]); [`ProbeMode::On`] into an error.

mod record;

pub use record::{
    can_end_a_process, describe, describe_exit_code, describe_in, from_process, kernel_reason,
    monotonic_ns, result_name, si_code_meaning, si_code_name, wall_time, DecodeError, ProbeRecord,
    RESULT_DELIVERED, RESULT_IGNORED, RESULT_LOSE_INFO, RESULT_OVERFLOW_FAIL, RESULT_PENDING,
    SI_ASYNCIO, SI_DETHREAD, SI_KERNEL, SI_MESGQ, SI_QUEUE, SI_SIGIO, SI_TIMER, SI_TKILL, SI_USER,
};

use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aya::maps::{Array, HashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::BtfTracePoint;
use aya::{Btf, Ebpf, EbpfLoader};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::config::ProbeMode;

/// How to grant what the probe needs, in the words of `docker run`.
const GRANT: &str = "--cap-add BPF --cap-add PERFMON";

/// The loaded probe: its attached programs and its maps. Dropping it detaches everything.
pub struct Probe {
    /// Owns the programs and their links: they stay attached while this lives.
    _ebpf: Ebpf,
    /// The watched-pid maps. aya needs `&mut` to update a map; the lock lets
    /// [`Probe::watch`] take `&self` (it is never contended).
    watched: Mutex<Watched>,
    /// `STATS`: per-CPU counters (records the kernel could not queue, forks not followed);
    /// shared with the metrics' scrape.
    stats: Arc<PerCpuArray<MapData, u64>>,
    /// `EVENTS` until [`Probe::take_reader`] hands it out.
    ring: Option<RingBuf<MapData>>,
    /// Records that arrived but did not decode (shared with the reader).
    undecodable: Arc<AtomicU64>,
    /// How long loading and attaching took.
    load_time: Duration,
    /// What works less well on this kernel, one line each (see [`Probe::notes`]).
    notes: Vec<String>,
}

/// Whether the probe runs, as the supervisor reports it once at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeStatus {
    /// Loaded and attached.
    Loaded,
    /// Not running: one line saying what is missing and how to grant it.
    Off(String),
}

/// Why the probe could not be loaded or used. Each message is one line that names what is
/// missing and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("probe not built in ({0}); rebuild after `apt-get install -y clang libbpf-dev linux-libc-dev`")]
    NotBuiltIn(&'static str),
    #[error("eBPF probe needs {missing}: grant with `docker run {GRANT}` (or CAP_SYS_ADMIN)")]
    NoCapability {
        /// e.g. "CAP_BPF and CAP_PERFMON".
        missing: String,
    },
    #[error("eBPF probe: {what} was denied ({source}) although CAP_BPF and CAP_PERFMON are granted: a seccomp profile or LSM blocks bpf(2) (docker: `{GRANT}` with a seccomp profile that allows bpf and perf_event_open)")]
    Denied {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("eBPF probe needs a kernel with BTF (CONFIG_DEBUG_INFO_BTF): {0}")]
    NoBtf(String),
    #[error("eBPF probe: {what} failed: {detail}")]
    Load { what: String, detail: String },
    #[error("eBPF probe: cannot watch pid {pid}: {detail}")]
    Watch { pid: u32, detail: String },
}

impl Probe {
    /// Loads and attaches the probe, as `mode` asks: `Off` → `Ok((None, Off))`; `Auto` →
    /// `Ok((None, Off(reason)))` when anything is missing (permission, BTF, a build with
    /// clang); `On` → `Err` in that case.
    pub fn load(mode: ProbeMode) -> Result<(Option<Probe>, ProbeStatus), ProbeError> {
        if mode == ProbeMode::Off {
            return Ok((
                None,
                ProbeStatus::Off("eBPF probe off (--probe off)".into()),
            ));
        }
        match Probe::load_now() {
            Ok(probe) => Ok((Some(probe), ProbeStatus::Loaded)),
            Err(err) if mode == ProbeMode::Auto => Ok((None, ProbeStatus::Off(err.to_string()))),
            Err(err) => Err(err),
        }
    }

    fn load_now() -> Result<Probe, ProbeError> {
        let started = Instant::now();
        let object = supervisor_ebpf::object().map_err(ProbeError::NotBuiltIn)?;
        if let Some(missing) = missing_capabilities() {
            return Err(ProbeError::NoCapability { missing });
        }
        let btf = Btf::from_sys_fs().map_err(|e| ProbeError::NoBtf(chain(&e)))?;
        let pidns = std::fs::metadata("/proc/self/ns/pid").map_err(|e| ProbeError::Load {
            what: "stat(/proc/self/ns/pid)".into(),
            detail: e.to_string(),
        })?;
        // PID namespace inode numbers are 32-bit in the kernel (ns_common.inum).
        let inum = pidns.ino() as u32;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .override_global(supervisor_ebpf::GLOBAL_PIDNS_INUM, &inum, true)
            .override_global(
                supervisor_ebpf::GLOBAL_SUPERVISOR_PID,
                &std::process::id(),
                true,
            )
            .load(object)
            .map_err(|e| failure("loading the eBPF object", &e))?;
        let mut notes = Vec::new();
        for &(name, tracepoint, required) in supervisor_ebpf::PROGRAMS {
            match attach(&mut ebpf, &btf, name, tracepoint) {
                Ok(()) => {}
                Err(err) if required => return Err(err),
                Err(err) if name == "oom_victim" => notes.push(format!(
                    "eBPF probe: tp_btf/{tracepoint} is not available on this kernel, so OOM \
                     victims are not named (an OOM kill shows as SIGKILL from the kernel): {err}"
                )),
                Err(err) => notes.push(format!(
                    "eBPF probe: tp_btf/{tracepoint} is not available on this kernel, so only \
                     the programs' own processes are watched, not what they fork: {err}"
                )),
            }
        }
        let watched = Watched {
            pids: take_map(&mut ebpf, supervisor_ebpf::MAP_WATCHED, HashMap::try_from)?,
            buckets: take_map(
                &mut ebpf,
                supervisor_ebpf::MAP_WATCH_BUCKETS,
                Array::try_from,
            )?,
            descendants: take_map(
                &mut ebpf,
                supervisor_ebpf::MAP_DESCENDANTS,
                HashMap::try_from,
            )?,
            shadow: std::collections::HashMap::new(),
            seeded: std::collections::HashMap::new(),
            next_tag: 1,
        };
        let stats = take_map(&mut ebpf, supervisor_ebpf::MAP_STATS, PerCpuArray::try_from)?;
        let ring = take_map(&mut ebpf, supervisor_ebpf::MAP_EVENTS, RingBuf::try_from)?;
        Ok(Probe {
            _ebpf: ebpf,
            watched: Mutex::new(watched),
            stats: Arc::new(stats),
            ring: Some(ring),
            undecodable: Arc::new(AtomicU64::new(0)),
            load_time: started.elapsed(),
            notes,
        })
    }

    /// Starts reporting `pid` (as the supervisor sees it, i.e. in its own PID namespace). Call
    /// it right after the spawn: signals sent before are not seen.
    pub fn watch(&self, pid: u32) -> Result<(), ProbeError> {
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        watched.add(pid).map_err(|e| ProbeError::Watch {
            pid,
            detail: chain(&e),
        })
    }

    /// [`Probe::watch`] for a process that may have forked before the probe was loaded: its
    /// descendants alive now (found through `/proc/PID/task/TID/children`) are watched too;
    /// what they fork from now on the kernel follows by itself. Returns how many were found.
    pub fn watch_tree(&self, pid: u32) -> Result<usize, ProbeError> {
        self.watch(pid)?;
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        Ok(watched.seed(pid))
    }

    /// Whether a record is about a process watched now: its root is watched, with the tag the
    /// record carries. A record about an earlier process whose pid was reused (a descendant
    /// that outlived its program) is not.
    pub fn current(&self, record: &ProbeRecord) -> bool {
        let Some((root, tag)) = record.root() else {
            return true;
        };
        let watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        watched.shadow.get(&root) == Some(&tag)
    }

    /// Stops reporting `pid`; a pid that was not watched is fine. Call it once the exit has been
    /// handled (after [`ProbeReader::drain`]), before the pid can be reused.
    pub fn unwatch(&self, pid: u32) {
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        watched.remove(pid);
    }

    /// Takes the reader of the ring buffer. The first call gets it; a later one gets a reader
    /// that never yields.
    pub fn take_reader(&mut self) -> ProbeReader {
        ProbeReader {
            ring: match self.ring.take() {
                Some(ring) => Ring::Plain(ring),
                None => Ring::None,
            },
            undecodable: Arc::clone(&self.undecodable),
        }
    }

    /// Records lost so far: not queued by the kernel (ring buffer full; a folded record
    /// counts for the signals it stood for) plus not decodable.
    pub fn lost_events(&self) -> u64 {
        stat(&self.stats, supervisor_ebpf::STAT_LOST) + self.undecodable.load(Ordering::Relaxed)
    }

    /// [`Probe::lost_events`] as a function that the metrics call at scrape time.
    pub fn lost_counter(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let stats = Arc::clone(&self.stats);
        let undecodable = Arc::clone(&self.undecodable);
        move || stat(&stats, supervisor_ebpf::STAT_LOST) + undecodable.load(Ordering::Relaxed)
    }

    /// Forks the kernel did not follow (a program's tree at its limit, or the map full).
    pub fn unfollowed_forks(&self) -> u64 {
        stat(&self.stats, supervisor_ebpf::STAT_UNFOLLOWED)
    }

    /// How long loading and attaching took.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// Lines to log once next to [`ProbeStatus::Loaded`] when the probe runs with less than
    /// everything (e.g. no OOM victims on older kernels); empty on a recent kernel.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }
}

/// The sum over CPUs of one `STATS` slot (0 if unreadable).
fn stat(stats: &PerCpuArray<MapData, u64>, slot: u32) -> u64 {
    stats
        .get(&slot, 0)
        .map(|per_cpu| per_cpu.iter().sum::<u64>())
        .unwrap_or(0)
}

/// The kernel's two views of the watched pids, kept in step: `WATCHED` (the hash map that
/// decides) and `WATCH_BUCKETS` (per-bucket counts that let the kernel skip the hash lookup
/// for almost every process on the machine).
struct Watched {
    pids: HashMap<MapData, u32, u32>,
    buckets: Array<MapData, u32>,
    /// `DESCENDANTS` (`[root, tag, seeded]`): written by the kernel, and here only for the
    /// descendants of a process watched after it forked them (seeded).
    descendants: HashMap<MapData, u32, [u32; 3]>,
    /// Root → the descendants seeded for it (each counted in `buckets` until the root is
    /// unwatched).
    seeded: std::collections::HashMap<u32, Vec<u32>>,
    /// What `pids` holds (pid → tag), so that the bucket counts stay exact whatever the
    /// caller repeats.
    shadow: std::collections::HashMap<u32, u32>,
    /// The tag of the next watched pid (never 0: 0 means "none" in the kernel).
    next_tag: u32,
}

impl Watched {
    fn add(&mut self, pid: u32) -> Result<(), aya::maps::MapError> {
        if self.shadow.contains_key(&pid) {
            return Ok(());
        }
        let tag = self.next_tag;
        self.next_tag = self.next_tag.checked_add(1).unwrap_or(1);
        self.pids.insert(pid, tag, 0)?;
        // The hash first, then the bucket: the kernel never sees a bucket without its pid.
        if let Err(err) = self.bump(pid, 1) {
            let _ = self.pids.remove(&pid);
            return Err(err);
        }
        self.shadow.insert(pid, tag);
        Ok(())
    }

    /// Puts the live descendants of `root` (watched) into `DESCENDANTS`, breadth first, at
    /// most [`supervisor_ebpf::MAX_TREE`]; the kernel's own entries are left alone.
    fn seed(&mut self, root: u32) -> usize {
        let Some(&tag) = self.shadow.get(&root) else {
            return 0;
        };
        let mut queue = std::collections::VecDeque::from([root]);
        let mut found = Vec::new();
        while let Some(parent) = queue.pop_front() {
            for child in children(parent) {
                if found.len() >= supervisor_ebpf::MAX_TREE as usize {
                    break;
                }
                // Seen by the kernel already (forked after the root was watched): skip.
                if self.descendants.insert(child, [root, tag, 1], 1).is_err() {
                    continue;
                }
                if self.bump(child, 1).is_err() {
                    let _ = self.descendants.remove(&child);
                    continue;
                }
                found.push(child);
                queue.push_back(child);
            }
        }
        let n = found.len();
        if n > 0 {
            self.seeded.entry(root).or_default().extend(found);
        }
        n
    }

    fn remove(&mut self, pid: u32) {
        if let Some(seeded) = self.seeded.remove(&pid) {
            let tag = self.shadow.get(&pid).copied().unwrap_or(0);
            for child in seeded {
                let _ = self.bump(child, -1);
                // Still the entry seeded here (not a newer process that reuses the pid)?
                if self.descendants.get(&child, 0).ok() == Some([pid, tag, 1]) {
                    let _ = self.descendants.remove(&child);
                }
            }
        }
        if self.shadow.remove(&pid).is_none() {
            return;
        }
        // Neither can fail for a pid that was added (the bucket index is in range, the key is
        // present); a failure would only leave the kernel doing a useless hash lookup.
        let _ = self.bump(pid, -1);
        let _ = self.pids.remove(&pid);
    }

    fn bump(&mut self, pid: u32, by: i32) -> Result<(), aya::maps::MapError> {
        let bucket = pid % supervisor_ebpf::WATCH_BUCKETS;
        let count = self.buckets.get(&bucket, 0)?;
        self.buckets.set(bucket, count.saturating_add_signed(by), 0)
    }
}

/// The children of process `pid` (of each of its threads), from `/proc`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The stream of [`ProbeRecord`]s from the ring buffer.
pub struct ProbeReader {
    ring: Ring,
    /// Shared with [`Probe::lost_events`].
    undecodable: Arc<AtomicU64>,
}

/// The ring buffer, registered with tokio on the first [`ProbeReader::next`] (so a reader can
/// be taken and drained outside a runtime).
enum Ring {
    Plain(RingBuf<MapData>),
    Async(AsyncFd<RingBuf<MapData>>),
    /// Handed out by an earlier [`Probe::take_reader`]: nothing ever comes.
    None,
}

impl ProbeReader {
    /// The next record; waits (without polling) until the kernel queues one. Cancel-safe: a
    /// record is taken from the ring only when it is returned.
    pub async fn next(&mut self) -> ProbeRecord {
        loop {
            let Some(fd) = registered(&mut self.ring) else {
                // No tokio reactor, or the reader was already taken: nothing will come.
                return std::future::pending().await;
            };
            let Ok(mut guard) = fd.readable_mut().await else {
                // The reactor is gone (the runtime is shutting down).
                return std::future::pending().await;
            };
            if let Some(record) = next_record(guard.get_inner_mut(), &self.undecodable) {
                // Readiness stays set: the next call finds the next record without waiting.
                return record;
            }
            // Empty. tokio clears readiness only if no wakeup came since the guard was taken,
            // so a record queued meanwhile is not missed.
            guard.clear_ready();
        }
    }

    /// Every record already in the ring buffer, oldest first, without waiting. The engine calls
    /// this after a pidfd said a process exited and before it emits `exited`.
    pub fn drain(&mut self) -> Vec<ProbeRecord> {
        let ring = match &mut self.ring {
            Ring::Plain(ring) => ring,
            Ring::Async(fd) => fd.get_mut(),
            Ring::None => return Vec::new(),
        };
        std::iter::from_fn(|| next_record(ring, &self.undecodable)).collect()
    }
}

/// The ring buffer registered with tokio (done on first use); `None` when it cannot be.
fn registered(ring: &mut Ring) -> Option<&mut AsyncFd<RingBuf<MapData>>> {
    if let Ring::Plain(_) = ring {
        if tokio::runtime::Handle::try_current().is_err() {
            return None;
        }
        *ring = match std::mem::replace(ring, Ring::None) {
            // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged, until it is
            // dropped, which happens only together with the AsyncFd.
            Ring::Plain(rb) => {
                match unsafe { AsyncFd::register_with_interest(rb, Interest::READABLE) } {
                    Ok(fd) => Ring::Async(fd),
                    Err(err) => Ring::Plain(err.into_parts().0),
                }
            }
            other => other,
        };
    }
    match ring {
        Ring::Async(fd) => Some(fd),
        Ring::Plain(_) | Ring::None => None,
    }
}

/// The next decodable record, counting (and skipping) any that do not decode.
fn next_record(ring: &mut RingBuf<MapData>, undecodable: &AtomicU64) -> Option<ProbeRecord> {
    loop {
        let item = ring.next()?;
        match ProbeRecord::decode(&item) {
            Ok(record) => return Some(record),
            Err(_) => {
                undecodable.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The capabilities the probe needs that this thread lacks, as words for the user; `None`
/// when all are there (or the status file cannot tell: then loading itself will say).
fn missing_capabilities() -> Option<String> {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    // Capabilities are per thread; thread-self is the caller's, self the main thread's.
    let status = std::fs::read_to_string("/proc/thread-self/status")
        .or_else(|_| std::fs::read_to_string("/proc/self/status"))
        .ok()?;
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())?;
    let has = |cap: u32| eff & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) {
        return None;
    }
    let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|(cap, _)| !has(*cap))
        .map(|(_, name)| name)
        .collect();
    (!missing.is_empty()).then(|| missing.join(" and "))
}

/// Loads program `name` of the object and attaches it to `tp_btf/<tracepoint>`.
fn attach(ebpf: &mut Ebpf, btf: &Btf, name: &str, tracepoint: &str) -> Result<(), ProbeError> {
    let what = format!("program {name} (tp_btf/{tracepoint})");
    let program: &mut BtfTracePoint = ebpf
        .program_mut(name)
        .ok_or_else(|| failure_text(&what, "not in the object"))?
        .try_into()
        .map_err(|e| failure(&what, &e))?;
    program
        .load(tracepoint, btf)
        .map_err(|e| failure(&format!("loading {what}"), &e))?;
    program
        .attach()
        .map_err(|e| failure(&format!("attaching {what}"), &e))?;
    Ok(())
}

fn take_map<M, E: std::error::Error + 'static>(
    ebpf: &mut Ebpf,
    name: &str,
    convert: impl FnOnce(aya::maps::Map) -> Result<M, E>,
) -> Result<M, ProbeError> {
    let what = format!("map {name}");
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| failure_text(&what, "not in the object"))?;
    convert(map).map_err(|e| failure(&what, &e))
}

/// Classifies an aya error: EPERM/EACCES anywhere in its chain means permission.
fn failure(what: &str, err: &(dyn std::error::Error + 'static)) -> ProbeError {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if matches!(io.raw_os_error(), Some(libc::EPERM | libc::EACCES)) {
                return ProbeError::Denied {
                    what: what.to_string(),
                    source: io::Error::from_raw_os_error(io.raw_os_error().unwrap_or(libc::EPERM)),
                };
            }
        }
        cur = e.source();
    }
    failure_text(what, &chain(err))
}

fn failure_text(what: &str, detail: &str) -> ProbeError {
    ProbeError::Load {
        what: what.to_string(),
        detail: detail.to_string(),
    }
}

/// An error and its sources on one line; a verifier log is cut to its last line, which says
/// why the program was rejected.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        parts.push(e.to_string());
        cur = e.source();
    }
    let text = parts.join(": ");
    let last_lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    match last_lines.as_slice() {
        [] => String::new(),
        [one] => one.to_string(),
        [first, .., last] => format!("{first} … {last}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_and_reader_can_move_into_tasks() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<Probe>();
        send::<ProbeReader>();
    }

    #[test]
    fn off_is_off_without_touching_the_kernel() {
        let (probe, status) = Probe::load(ProbeMode::Off).expect("off never fails");
        assert!(probe.is_none());
        assert_eq!(
            status,
            ProbeStatus::Off("eBPF probe off (--probe off)".into())
        );
    }

    #[test]
    fn a_build_without_clang_says_so() {
        let Err(why) = supervisor_ebpf::object() else {
            return; // built with clang: the tests in tests/probe.rs load it
        };
        let (probe, status) = Probe::load(ProbeMode::Auto).expect("auto never fails");
        assert!(probe.is_none());
        assert_eq!(
            status,
            ProbeStatus::Off(ProbeError::NotBuiltIn(why).to_string())
        );
        assert!(matches!(
            Probe::load(ProbeMode::On),
            Err(ProbeError::NotBuiltIn(_))
        ));
    }

    #[test]
    fn messages_are_one_line_and_say_how_to_fix() {
        let errs = [
            ProbeError::NotBuiltIn("clang was missing at build time"),
            ProbeError::NoCapability {
                missing: "CAP_BPF and CAP_PERFMON".into(),
            },
            ProbeError::Denied {
                what: "loading program x".into(),
                source: io::Error::from_raw_os_error(libc::EPERM),
            },
        ];
        for e in errs {
            let text = e.to_string();
            assert!(!text.contains('\n'), "{text}");
            assert!(text.contains("apt-get") || text.contains(GRANT), "{text}");
        }
        assert_eq!(
            ProbeError::NotBuiltIn("clang was missing at build time").to_string(),
            "probe not built in (clang was missing at build time); rebuild after \
             `apt-get install -y clang libbpf-dev linux-libc-dev`"
        );
    }

    #[test]
    fn error_chains_fold_into_one_line() {
        let inner = io::Error::other("0: R1 type=ctx\n1: (85) call bpf_x\n\ninvalid access");
        assert_eq!(
            chain(&inner),
            "0: R1 type=ctx … invalid access",
            "first and last line of a verifier log"
        );
    }
}
