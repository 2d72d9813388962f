//! Telling an OOM kill from any other SIGKILL, without eBPF: the memory cgroup counts the kills
//! its OOM killer made (`oom_kill` in `memory.events` on cgroup v2, in `memory.oom_control` on
//! v1). A program that dies of SIGKILL while that counter went up was OOM-killed.
//!
//! The counter is read only when a program dies of SIGKILL: no polling.

use std::path::PathBuf;

/// The supervisor's memory cgroup OOM-kill counter.
pub struct OomCounter {
    file: Option<PathBuf>,
    /// Kills counted so far that no exit has claimed yet are `read() - seen`.
    seen: u64,
}

impl OomCounter {
    /// Finds the counter of the cgroup the supervisor (and so its programs) runs in.
    pub fn new() -> Self {
        let file = counter_file();
        let mut c = OomCounter { file, seen: 0 };
        c.seen = c.read().unwrap_or(0);
        c
    }

    fn read(&self) -> Option<u64> {
        let text = std::fs::read_to_string(self.file.as_ref()?).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
    }

    /// Whether a SIGKILL death just now is explained by an OOM kill not yet attributed.
    pub fn claim(&mut self) -> bool {
        match self.read() {
            Some(now) if now > self.seen => {
                self.seen += 1;
                true
            }
            Some(now) => {
                self.seen = now;
                false
            }
            None => false,
        }
    }
}

impl Default for OomCounter {
    fn default() -> Self {
        Self::new()
    }
}

/// `memory.events` (v2) or `memory.oom_control` (v1) of our own cgroup.
fn counter_file() -> Option<PathBuf> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let rel = path.trim_start_matches('/');
        let candidate = if controllers.is_empty() {
            PathBuf::from("/sys/fs/cgroup")
                .join(rel)
                .join("memory.events")
        } else if controllers.split(',').any(|c| c == "memory") {
            PathBuf::from("/sys/fs/cgroup/memory")
                .join(rel)
                .join("memory.oom_control")
        } else {
            continue;
        };
        if candidate.exists() {
            return Some(candidate);
        }
    }
    None
}
