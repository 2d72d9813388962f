//! What the eBPF probe costs the rest of the system: the rate of kill(2) between two processes
//! the supervisor does not watch (the harness sends, a `sleep` that ignores the signal receives).
//!
//! The probe's `signal_generate` program runs for every signal on the machine and drops the
//! ones whose target is not watched (a hash-map lookup in the kernel), so this is the price any
//! unrelated process pays per signal. An ignored signal is the cheapest kill(2) there is
//! (nothing is queued, the receiver never wakes), so the probe's share of it is the largest:
//! the worst case.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::session::unblock_signals;

/// The signal sent; the receiver ignores it.
const SIGNAL: i32 = libc::SIGUSR1;

/// A process that ignores [`SIGNAL`] and sleeps; killed on drop.
pub struct Receiver {
    child: Child,
}

impl Receiver {
    pub fn start() -> Result<Receiver> {
        let mut cmd = Command::new("sleep");
        cmd.arg("100000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        unblock_signals(&mut cmd);
        // SAFETY: signal(2) is async-signal-safe; an ignored disposition survives exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                libc::signal(SIGNAL, libc::SIG_IGN);
                Ok(())
            });
        }
        let child = cmd.spawn().context("cannot run `sleep`")?;
        let receiver = Receiver { child };
        // Make sure the signal really is ignored (and not blocked, which would queue it).
        let status = std::fs::read_to_string(format!("/proc/{}/status", receiver.pid()))?;
        let mask = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .unwrap_or(0)
        };
        let bit = 1u64 << (SIGNAL - 1);
        if mask("SigIgn:") & bit == 0 || mask("SigBlk:") & bit != 0 {
            bail!("the receiver does not ignore SIGUSR1 as set up");
        }
        Ok(receiver)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time this thread has used, in seconds.
fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Sends the receiver `SIGNAL` in a tight loop for `window`; returns kill(2) calls per second
/// of this thread's CPU time (with the CPU to itself that is calls per second; other load on
/// the machine then takes wall time, not CPU time, so the figure stays comparable).
pub fn kill_rate(receiver: &Receiver, window: Duration) -> Result<f64> {
    let pid = receiver.pid();
    let mut calls: u64 = 0;
    let cpu0 = thread_cpu_secs();
    let until = Instant::now() + window;
    while Instant::now() < until {
        for _ in 0..1000 {
            // SAFETY: kill(2) with a pid and a signal number.
            if unsafe { libc::kill(pid, SIGNAL) } != 0 {
                return Err(std::io::Error::last_os_error()).context("kill(2)");
            }
        }
        calls += 1000;
    }
    let cpu = thread_cpu_secs() - cpu0;
    if cpu <= 0.0 {
        bail!("no CPU time measured");
    }
    Ok(calls as f64 / cpu)
}
