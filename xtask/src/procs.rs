//! Seeing and signalling process trees through `/proc` and pidfds.
//!
//! `test` kills a hung step's whole tree when the global timeout fires; `bench` finds each
//! supervisor's processes, measures them, and makes sure none is left behind. Both follow
//! parent pids, as the kernel does, whatever session or process group a process moved into.
//! Signals go through pidfds, so a pid recycled in the meantime is never hit.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Every live pid, from the entries of `/proc`.
fn all_pids() -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect()
}

/// The parent pid of `pid`, from `/proc/PID/stat`.
fn parent(pid: i32) -> Option<i32> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name sits in parentheses and may itself contain spaces or ')'.
    let rest = text.get(text.rfind(')')? + 2..)?;
    rest.split(' ').nth(1)?.parse().ok()
}

/// `root` and all its live descendants, parents before children; empty if `root` is gone.
pub fn tree(root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    let mut alive = false;
    for pid in all_pids() {
        alive |= pid == root;
        if let Some(ppid) = parent(pid) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    if !alive {
        return out;
    }
    let mut queue = VecDeque::from([root]);
    while let Some(pid) = queue.pop_front() {
        out.push(pid);
        if let Some(kids) = children.get(&pid) {
            queue.extend(kids);
        }
    }
    out
}

/// The executable `pid` runs.
pub fn exe(pid: i32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// The working directory of `pid`.
fn cwd(pid: i32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// Voluntary + involuntary context switches summed over every thread of `pid`: each is one
/// time a thread stopped running, so their rate counts wakeups.
pub fn context_switches(pid: i32) -> Option<u64> {
    let mut total = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let Ok(status) = fs::read_to_string(task.path().join("status")) else {
            continue; // the thread ended meanwhile
        };
        for line in status.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    Some(total)
}

/// Resident and proportional set size of `pid` in KiB, from `/proc/PID/smaps_rollup`.
pub fn memory_kib(pid: i32) -> Option<(u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some((field("Rss:")?, field("Pss:")?))
}

/// A pidfd: a handle on one process that cannot come to mean another one.
pub struct PidFd {
    fd: OwnedFd,
}

impl PidFd {
    pub fn open(pid: i32) -> io::Result<PidFd> {
        // SAFETY: pidfd_open(pid, flags) takes plain integers and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
        Ok(PidFd {
            fd: unsafe { OwnedFd::from_raw_fd(fd as i32) },
        })
    }

    /// Sends `sig`; a process that has already exited (ESRCH) is not an error.
    pub fn signal(&self, sig: i32) -> io::Result<()> {
        let null: *const libc::siginfo_t = std::ptr::null();
        // SAFETY: a valid pidfd, a signal number, a null siginfo (meaning "as kill(2)") and 0 flags.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                sig,
                null,
                0,
            )
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::ESRCH) {
                return Err(err);
            }
        }
        Ok(())
    }
}

/// Opens a pidfd on each pid that still exists.
pub fn open_all(pids: &[i32]) -> Vec<PidFd> {
    pids.iter()
        .filter_map(|&pid| PidFd::open(pid).ok())
        .collect()
}

/// Waits until every process behind `fds` has exited (a pidfd turns readable on exit, zombie or
/// not). Returns the number still running at `deadline` (0 on success).
pub fn wait_all_exited(fds: &[PidFd], deadline: Instant) -> usize {
    let mut pending: Vec<libc::pollfd> = fds
        .iter()
        .map(|p| libc::pollfd {
            fd: p.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: `pending` is a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(pending.as_mut_ptr(), pending.len() as libc::nfds_t, ms) };
        if n < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
        pending.retain(|p| p.revents == 0);
    }
    pending.len()
}

/// Ends `root` and all its descendants: SIGTERM, `grace` to exit, then SIGKILL.
pub fn kill_tree(root: i32, grace: Duration) {
    let fds = open_all(&tree(root));
    for fd in &fds {
        let _ = fd.signal(libc::SIGTERM);
    }
    if wait_all_exited(&fds, Instant::now() + grace) > 0 {
        // Descendants may have been born meanwhile: look again.
        let mut fds = fds;
        fds.extend(open_all(&tree(root)));
        for fd in &fds {
            let _ = fd.signal(libc::SIGKILL);
        }
    }
}

/// SIGKILLs every process that runs `exe`, or whose working directory is inside `dir`: a net for
/// whatever a benchmarked supervisor left behind (orphans are no longer in its tree).
pub fn kill_leftovers(dir: &Path, exe_path: &Path) -> usize {
    let me = std::process::id() as i32;
    let mut killed = 0;
    for pid in all_pids() {
        if pid == me {
            continue;
        }
        let ours =
            exe(pid).is_some_and(|e| e == exe_path) || cwd(pid).is_some_and(|c| c.starts_with(dir));
        if ours {
            if let Ok(fd) = PidFd::open(pid) {
                if fd.signal(libc::SIGKILL).is_ok() {
                    killed += 1;
                }
            }
        }
    }
    killed
}

/// Busy and total CPU time of the whole machine so far (in clock ticks), from `/proc/stat`.
pub fn cpu_times() -> Option<(u64, u64)> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = text
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

/// From now on SIGINT, SIGTERM and SIGHUP to this process run `cleanup` on a thread of its own
/// and then exit with 128 + the signal, instead of dying with child processes left running in
/// process groups of their own, which a Ctrl-C does not reach. Call it before starting other
/// threads: they inherit the blocked mask. So do spawned commands, through exec: unblock the
/// signals in the child (`pre_exec`) where that matters.
pub fn on_termination(cleanup: impl FnOnce() + Send + 'static) -> io::Result<()> {
    // SAFETY: an all-zero sigset_t is valid storage; sigemptyset initialises it properly.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is valid; the signal numbers are valid; pthread_sigmask with a null old set.
    let rc = unsafe {
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    std::thread::spawn(move || {
        let mut sig = 0;
        // SAFETY: `set` holds blocked signals; sigwait stores the one received in `sig`.
        if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
            cleanup();
            std::process::exit(128 + sig);
        }
    });
    Ok(())
}
