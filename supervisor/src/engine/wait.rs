//! Reading exit statuses with `waitid`, without ever taking one that is not ours to take.
//!
//! - [`reap_pidfd`]: a supervised child, through its pidfd.
//! - [`peek_any`]: which child (if any) has exited, without reaping it (`WNOWAIT`), so the
//!   engine can decide whether it is supervised (reap through its pidfd) or an orphan.
//! - [`reap_pid`]: an orphan, by pid, after a peek said it is one.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::machine::ExitStatus;

fn waitid(
    idtype: libc::idtype_t,
    id: libc::id_t,
    flags: libc::c_int,
) -> io::Result<Option<(u32, ExitStatus)>> {
    // SAFETY: siginfo_t is plain data; zeroed is a valid value and lets us detect "no child
    // has changed state" (si_pid stays 0 with WNOHANG).
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `info` is a valid, writable siginfo_t.
        let rc = unsafe { libc::waitid(idtype, id, &mut info, flags) };
        if rc == 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
    // SAFETY: waitid filled `info` for SIGCHLD, so the si_pid/si_status union arm is valid.
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    let status = match info.si_code {
        libc::CLD_EXITED => ExitStatus::Code(status),
        libc::CLD_DUMPED => ExitStatus::Signal {
            signo: status,
            core_dumped: true,
        },
        _ => ExitStatus::Signal {
            signo: status,
            core_dumped: false,
        },
    };
    Ok(Some((pid as u32, status)))
}

/// Reaps the process behind `pidfd` if it has exited.
pub fn reap_pidfd(pidfd: BorrowedFd<'_>) -> io::Result<Option<ExitStatus>> {
    Ok(waitid(
        libc::P_PIDFD,
        pidfd.as_raw_fd() as libc::id_t,
        libc::WEXITED | libc::WNOHANG,
    )?
    .map(|(_, s)| s))
}

/// The pid of some exited child, still unreaped; `None` when no child has exited (or there
/// are no children at all).
pub fn peek_any() -> Option<u32> {
    match waitid(
        libc::P_ALL,
        0,
        libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
    ) {
        Ok(found) => found.map(|(pid, _)| pid),
        Err(_) => None, // ECHILD: no children
    }
}

/// Reaps the exited child `pid` (an orphan).
pub fn reap_pid(pid: u32) -> io::Result<Option<ExitStatus>> {
    Ok(waitid(
        libc::P_PID,
        pid as libc::id_t,
        libc::WEXITED | libc::WNOHANG,
    )?
    .map(|(_, s)| s))
}

/// Whether we have any child process at all (exited or not).
pub fn has_children() -> bool {
    // SAFETY: as in `waitid`.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable siginfo_t.
    let rc = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    rc == 0
}
