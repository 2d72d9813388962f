//! Signals sent to the supervisor, read as data through a signalfd.
//!
//! The handled signals are blocked in every thread (call [`block`] before the runtime
//! starts, so its threads inherit the mask) and read from a signalfd registered with tokio.
//! A signalfd also tells who sent the signal (`ssi_pid`, `ssi_uid`). Children get an empty mask
//! back before exec (see `spawn`).

use std::io;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use tokio::io::unix::AsyncFd;

/// The signals the supervisor reads. Fault signals (SEGV, BUS, ...) stay unblocked.
const HANDLED: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
    Signal::SIGTERM,
    Signal::SIGCHLD,
    Signal::SIGWINCH,
    Signal::SIGTSTP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGPWR,
];

fn handled_set() -> SigSet {
    let mut set = SigSet::empty();
    for s in HANDLED {
        set.add(*s);
    }
    set
}

/// Blocks the handled signals in the calling thread (and every thread it creates later).
pub fn block() -> io::Result<()> {
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&handled_set()), None)?;
    Ok(())
}

/// One received signal and its sender as the kernel reported it.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub signo: i32,
    /// 0 when the sender is outside our PID namespace (or the kernel sent it).
    pub pid: u32,
    pub uid: u32,
    /// `si_code`: SI_USER (kill), SI_QUEUE, SI_TKILL, SI_KERNEL, ...
    pub code: i32,
}

/// The stream of signals.
pub struct Signals {
    fd: AsyncFd<SignalFd>,
}

impl Signals {
    pub fn new() -> io::Result<Self> {
        let sfd = SignalFd::with_flags(
            &handled_set(),
            SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
        )?;
        Ok(Signals {
            fd: super::watch_readable(sfd)?,
        })
    }

    /// The next signal.
    pub async fn recv(&self) -> io::Result<Received> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.get_inner().read_signal() {
                Ok(Some(info)) => {
                    return Ok(Received {
                        signo: info.ssi_signo as i32,
                        pid: info.ssi_pid,
                        uid: info.ssi_uid,
                        code: info.ssi_code,
                    })
                }
                Ok(None) => guard.clear_ready(),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// "from pid 0 (outside this PID namespace)" / "from pid 42 'kill' (uid 0)".
pub fn describe_sender(r: &Received) -> String {
    if r.code == libc::SI_KERNEL {
        return "from the kernel".to_string();
    }
    if r.pid == 0 {
        return "from pid 0 (outside this PID namespace)".to_string();
    }
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", r.pid))
        .map(|s| format!(" '{}'", s.trim_end()))
        .unwrap_or_default();
    format!("from pid {}{comm} (uid {})", r.pid, r.uid)
}
