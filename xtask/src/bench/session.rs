//! One running supervisor under test, with its programs, from launch to verified cleanup.
//!
//! A `Session` starts the peer in a directory of its own, in a process group of its own, and
//! follows its programs through the stamp FIFO. Whatever happens (a measurement fails, the
//! harness returns early), dropping it kills the peer's whole tree and anything that escaped
//! it, so no run leaves processes behind.

use std::collections::BTreeMap;
use std::fs::{File, FileTimes};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context, Result};

use super::peers::{self, Peer, Setup};
use super::stamps::{Record, StampFeed};
use crate::procs::{self, PidFd};
use crate::util::monotonic_ns;

pub struct Session {
    peer: Peer,
    dir: PathBuf,
    stamp: PathBuf,
    child: Child,
    /// A handle on the supervisor itself, to signal it without a pid race.
    root: PidFd,
    feed: StampFeed,
    /// `CLOCK_MONOTONIC` just before the supervisor was spawned.
    pub launched_ns: u64,
    /// The latest start of every program seen so far, by name.
    pub current: BTreeMap<String, Record>,
    /// The first start of every program.
    pub first_start: BTreeMap<String, u64>,
    /// Ours only: the loopback port serving /metrics.
    pub metrics_port: Option<u16>,
}

/// Options only our supervisor has.
#[derive(Default, Clone, Copy)]
pub struct OursOptions<'a> {
    /// An HTTP health check (every second) on the first program.
    pub health: Option<&'a str>,
    /// `--probe auto|on|off`; none: the default (`auto`, which loads it when we are root).
    pub probe: Option<&'a str>,
}

impl Session {
    /// Starts `peer` with `n` programs in a fresh directory `dir`.
    pub fn launch(peer: Peer, ours: &Path, stamp: &Path, dir: &Path, n: usize) -> Result<Session> {
        Session::launch_with(peer, ours, stamp, dir, n, OursOptions::default())
    }

    /// Like [`Session::launch`], with options only ours has (ignored for the other peers).
    pub fn launch_with(
        peer: Peer,
        ours: &Path,
        stamp: &Path,
        dir: &Path,
        n: usize,
        options: OursOptions,
    ) -> Result<Session> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let feed = StampFeed::create(&dir.join("stamps.fifo"))?;
        let metrics_port = if peer == Peer::Ours {
            Some(peers::free_port()?)
        } else {
            None
        };
        let setup = Setup {
            stamp,
            ours,
            fifo: feed.path(),
            health: options.health,
            metrics_port: metrics_port.unwrap_or(0),
            probe: options.probe,
        };
        let mut cmd = peer.prepare(&setup, dir, n)?;
        let log = File::create(dir.join("output.log"))?;
        backdate(dir)?;
        cmd.current_dir(dir)
            .env("STAMP_FIFO", feed.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        unblock_signals(&mut cmd);
        let launched_ns = monotonic_ns();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
        let root = match PidFd::open(child.id() as i32) {
            Ok(fd) => fd,
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(err).context("pidfd_open");
            }
        };
        Ok(Session {
            peer,
            dir: dir.to_path_buf(),
            stamp: stamp.to_path_buf(),
            child,
            root,
            feed,
            launched_ns,
            current: BTreeMap::new(),
            first_start: BTreeMap::new(),
            metrics_port,
        })
    }

    fn note(&mut self, record: Record) {
        self.first_start
            .entry(record.name.clone())
            .or_insert(record.ns);
        self.current.insert(record.name.clone(), record);
    }

    /// The next record before `deadline`, failing early if the supervisor has exited.
    pub fn next_record(&mut self, deadline: Instant) -> Result<Option<Record>> {
        loop {
            let slice = deadline.min(Instant::now() + Duration::from_millis(200));
            if let Some(record) = self.feed.next_until(slice) {
                self.note(record.clone());
                return Ok(Some(record));
            }
            self.ensure_alive()?;
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// Waits until `n` distinct programs have started; returns the last first-start time.
    pub fn wait_started(&mut self, n: usize, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        while self.first_start.len() < n {
            if self.next_record(deadline)?.is_none() {
                bail!(
                    "only {} of {n} programs started within {timeout:?}{}",
                    self.first_start.len(),
                    self.log_tail()
                );
            }
        }
        Ok(self
            .first_start
            .values()
            .copied()
            .max()
            .unwrap_or(self.launched_ns))
    }

    /// Takes in records that arrived meanwhile; returns how many.
    pub fn absorb(&mut self) -> usize {
        let records = self.feed.drain();
        let n = records.len();
        for record in records {
            self.note(record);
        }
        n
    }

    /// Fails if the supervisor process has exited.
    pub fn ensure_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status}){}", self.peer.key(), self.log_tail());
        }
        Ok(())
    }

    /// The supervisor's own processes: its tree minus the supervised programs.
    pub fn supervisor_pids(&self) -> Vec<i32> {
        procs::tree(self.child.id() as i32)
            .into_iter()
            .filter(|&pid| procs::exe(pid).is_none_or(|exe| exe != self.stamp))
            .collect()
    }

    /// Sends the peer its stop request and measures until it and every process it started are
    /// gone; returns milliseconds.
    pub fn stop(&mut self, timeout: Duration) -> Result<f64> {
        self.ensure_alive()?;
        let everything = procs::open_all(&procs::tree(self.child.id() as i32));
        let t0 = monotonic_ns();
        self.peer.request_stop(&self.root, self.child.id() as i32)?;
        let left = procs::wait_all_exited(&everything, Instant::now() + timeout);
        let t1 = monotonic_ns();
        if left > 0 {
            bail!("{left} processes still running {timeout:?} after the stop request");
        }
        let _ = self.child.wait();
        Ok((t1 - t0) as f64 / 1e6)
    }

    /// The last lines of the supervisor's output, to explain a failure.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("output.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(5)..].join("\n      ");
        if tail.is_empty() {
            String::new()
        } else {
            format!("; its last output:\n      {tail}")
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let all = procs::open_all(&procs::tree(self.child.id() as i32));
            for p in &all {
                let _ = p.signal(libc::SIGKILL);
            }
            // SAFETY: the group leader is our unreaped child, so the group id is still ours.
            unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
            let _ = self.child.wait();
            procs::wait_all_exited(&all, Instant::now() + Duration::from_secs(5));
        }
        let escaped = procs::kill_leftovers(&self.dir, &self.stamp);
        if escaped > 0 {
            eprintln!(
                "    ({}: killed {escaped} leftover processes)",
                self.peer.key()
            );
        }
    }
}

/// Undoes, in the spawned child, the harness's blocked termination signals (see
/// `procs::on_termination`): a blocked mask survives exec, and a supervisor deaf to SIGTERM (or
/// a `wrk` deaf to SIGINT) cannot be stopped the ordinary way.
pub fn unblock_signals(cmd: &mut Command) {
    // SAFETY: the closure only calls sigemptyset and sigprocmask, both async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            Ok(())
        });
    }
}

/// Sets the modification time of every directory and regular file under `dir` a minute back, as
/// for a configuration written long before boot. runsvdir does not trust a directory modified
/// within the current second and rescans it a second later; a freshly written service directory
/// would charge runit for that second, which on a real system it does not pay.
fn backdate(dir: &Path) -> Result<()> {
    let then = SystemTime::now() - Duration::from_secs(60);
    let times = FileTimes::new().set_accessed(then).set_modified(then);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let kind = std::fs::symlink_metadata(&path)?.file_type();
        if kind.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        } else if !kind.is_file() {
            continue; // symlinks (the stamp itself) and the FIFO
        }
        File::open(&path)?
            .set_times(times)
            .with_context(|| format!("cannot set the times of {}", path.display()))?;
    }
    Ok(())
}

/// Error for a program that did not come back.
pub fn no_restart(name: &str, after: Duration) -> anyhow::Error {
    anyhow!("{name} was not restarted within {after:?} of being killed")
}
