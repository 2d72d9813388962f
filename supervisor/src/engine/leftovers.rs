//! Processes a program leaves running when its process exits (it daemonized): found at that
//! exit — no polling —, named in one warning with what to do, and stopped with the program when
//! `stopasgroup`/`killasgroup` say so.
//!
//! Found are the processes still in the exited process's group (`sh -c 'daemon &'`, a server
//! that forks without `setsid`), and the supervisor's own unknown children: as PID 1 or
//! subreaper it inherits the orphans of a double fork (`fork`, `setsid`, `fork`, as nginx,
//! apache2 and php-fpm do by default). The second kind cannot be tied to a program for sure
//! (several may exit at once); each is named once, at the first exit after it appeared.
//!
//! Each one is held by a pidfd, opened when found and checked against /proc again, so a later
//! signal can never reach a process that merely reused its pid (invariant 2). At most
//! [`MAX_HELD`] are held per program.

use std::os::fd::OwnedFd;

use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};

/// Left-behind processes held per program (the oldest are let go first).
pub const MAX_HELD: usize = 32;

/// A process left running by a program.
pub struct Leftover {
    pub pid: u32,
    pub comm: String,
    pidfd: OwnedFd,
}

impl Leftover {
    /// Sends `signo` through the pidfd; false when it is gone already.
    pub fn signal(&self, signo: i32) -> bool {
        match Signal::from_named_raw(signo) {
            Some(sig) => pidfd_send_signal(&self.pidfd, sig).is_ok(),
            None => false,
        }
    }
}

/// `pid`'s comm, state, parent and process group, from /proc.
fn stat(pid: u32) -> Option<(String, char, u32, u32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s.get(open + 1..close)?.to_string();
    let mut rest = s.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let pgrp = rest.next()?.parse().ok()?;
    Some((comm, state, ppid, pgrp))
}

/// Whether process group `pgid` still has a member (one `kill(-pgid, 0)`).
fn group_alive(pgid: u32) -> bool {
    let Some(pid) = Pid::from_raw(pgid as i32) else {
        return false;
    };
    rustix::process::test_kill_process_group(pid).is_ok()
}

/// The processes left by the exited process `pgid` (a group leader, reaped already): the live
/// members of its group, and the supervisor's live children that are not in `known` (every
/// supervised or check process, and every left-behind process named before).
pub fn find(pgid: u32, known: &dyn Fn(u32) -> bool) -> Vec<Leftover> {
    let me = std::process::id();
    let mut pids: Vec<u32> = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|&p| !known(p))
        .collect();
    if group_alive(pgid) {
        if let Ok(dir) = std::fs::read_dir("/proc") {
            pids.extend(
                dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                    .filter(|&p| p != me && !known(p) && stat(p).is_some_and(|s| s.3 == pgid)),
            );
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids.into_iter()
        .filter_map(|pid| {
            let pidfd = pidfd_open(Pid::from_raw(pid as i32)?, PidfdFlags::empty()).ok()?;
            // Checked again with the pidfd held: it is the process that was found.
            let (comm, state, ppid, pgrp) = stat(pid)?;
            let ours = ppid == me || (me == 1 && ppid == 1) || pgrp == pgid;
            (ours && state != 'Z').then_some(Leftover { pid, comm, pidfd })
        })
        .take(MAX_HELD)
        .collect()
}

/// The warning for `program`'s process `pid` that left `left` running.
pub fn warning(program: &str, pid: u32, left: &[Leftover]) -> String {
    let names: Vec<String> = left
        .iter()
        .map(|l| format!("{} ({})", l.pid, l.comm))
        .collect();
    format!(
        "daemonized: {program} (pid {pid}) exited and left {} process(es) running: {}; the \
         supervisor cannot watch a program that forks into the background — run it in the \
         foreground (e.g. `nginx -g 'daemon off;'`, `apache2 -DFOREGROUND`, `php-fpm -F`); with \
         stopasgroup or killasgroup they are stopped with the program",
        left.len(),
        names.join(", ")
    )
}

/// The signal left-behind processes get when their program is stopped or gives up: the stop
/// signal with `stopasgroup`, SIGKILL with `killasgroup` alone, none otherwise (supervisord
/// signals only the program's own process then).
pub fn stop_signal(stopasgroup: bool, killasgroup: bool, stopsignal: i32) -> Option<i32> {
    if stopasgroup {
        Some(stopsignal)
    } else if killasgroup {
        Some(libc::SIGKILL)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_flags_choose_the_signal() {
        assert_eq!(stop_signal(true, false, libc::SIGTERM), Some(libc::SIGTERM));
        assert_eq!(stop_signal(true, true, libc::SIGINT), Some(libc::SIGINT));
        assert_eq!(stop_signal(false, true, libc::SIGTERM), Some(libc::SIGKILL));
        assert_eq!(stop_signal(false, false, libc::SIGTERM), None);
    }

    #[test]
    fn our_own_process_is_read_from_proc() {
        let (comm, state, _, _) = stat(std::process::id()).expect("own stat");
        assert!(!comm.is_empty());
        assert_ne!(state, 'Z');
        assert!(stat(u32::MAX).is_none());
    }
}
