//! The measurements, each a function of one running [`Session`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::session::{no_restart, Session};
use crate::procs::{self, PidFd};
use crate::util::monotonic_ns;

/// A program must have been up this long before it is killed, so that its death is a crash of a
/// RUNNING program (restart at once), not a failed start (back off): past `startsecs` (1 s), and
/// past the loop tick (up to 1 s later) at which supervisord notices that `startsecs` elapsed.
pub const MIN_AGE: Duration = Duration::from_millis(2500);
/// Quiet time after each restart before the next kill, so one restart's aftermath (logging,
/// state files) is not counted in the next.
const GAP: Duration = Duration::from_millis(10);
/// A program not back within this is reported as a failure.
const RESTART_TIMEOUT: Duration = Duration::from_secs(5);

/// How many kills for the restart-latency figure.
pub struct RestartPlan {
    /// Stop after this many samples...
    pub max: usize,
    /// ...or once this much time went by, provided there are at least `min` samples.
    pub budget: Duration,
    pub min: usize,
}

/// Kills the programs' processes one at a time, round-robin, with SIGKILL; each latency is
/// (the new instance's own start timestamp) − (the moment just before the kill), in ms.
pub fn restart_latencies(s: &mut Session, plan: &RestartPlan) -> Result<Vec<f64>> {
    let names: Vec<String> = s.current.keys().cloned().collect();
    let started = Instant::now();
    let mut samples = Vec::new();
    for name in names.iter().cycle() {
        let enough = samples.len() >= plan.max
            || (samples.len() >= plan.min && started.elapsed() >= plan.budget);
        if enough {
            break;
        }
        let victim = s.current[name].clone();
        let age = Duration::from_nanos(monotonic_ns().saturating_sub(victim.ns));
        std::thread::sleep(MIN_AGE.saturating_sub(age));
        s.absorb();
        s.ensure_alive()?;
        if s.current[name].pid != victim.pid {
            bail!(
                "{name} restarted by itself (pid {} → {})",
                victim.pid,
                s.current[name].pid
            );
        }
        let pidfd = PidFd::open(victim.pid)?;
        let kill_ns = monotonic_ns();
        pidfd.signal(libc::SIGKILL)?;
        let deadline = Instant::now() + RESTART_TIMEOUT;
        loop {
            let Some(record) = s.next_record(deadline)? else {
                return Err(no_restart(name, RESTART_TIMEOUT));
            };
            if record.name == *name && record.pid != victim.pid && record.ns >= kill_ns {
                samples.push((record.ns - kill_ns) as f64 / 1e6);
                break;
            }
        }
        std::thread::sleep(GAP);
    }
    Ok(samples)
}

/// Wakeups per second of the supervisor's own processes and threads over `window`, while
/// nothing happens.
pub fn idle_wakeups(s: &mut Session, window: Duration) -> Result<f64> {
    let pids = s.supervisor_pids();
    let sample = |pids: &[i32]| -> BTreeMap<i32, u64> {
        pids.iter()
            .filter_map(|&pid| Some((pid, procs::context_switches(pid)?)))
            .collect()
    };
    s.absorb();
    let before = sample(&pids);
    let t0 = Instant::now();
    std::thread::sleep(window);
    let after = sample(&pids);
    let secs = t0.elapsed().as_secs_f64();
    s.ensure_alive()?;
    let restarts = s.absorb();
    if restarts > 0 {
        bail!("{restarts} programs (re)started during the idle window");
    }
    let delta: u64 = before
        .iter()
        .filter_map(|(pid, b)| Some(after.get(pid)?.saturating_sub(*b)))
        .sum();
    Ok(delta as f64 / secs)
}

/// RSS and PSS summed over the supervisor's own processes, in MiB.
pub fn memory(s: &Session) -> Result<(f64, f64)> {
    let (mut rss, mut pss) = (0, 0);
    let mut seen = 0;
    for pid in s.supervisor_pids() {
        if let Some((r, p)) = procs::memory_kib(pid) {
            rss += r;
            pss += p;
            seen += 1;
        }
    }
    if seen == 0 {
        bail!("cannot read /proc/PID/smaps_rollup of any supervisor process");
    }
    Ok((rss as f64 / 1024.0, pss as f64 / 1024.0))
}

/// Nearest-rank percentile of `samples` (not empty).
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
