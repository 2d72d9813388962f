//! The figures of one run, their targets, and the two ways they are shown: a terminal table and
//! BENCHMARKS.md (with what ran, where, and how it was measured).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::measure::MIN_AGE;
use super::peers::Peer;
use super::{RESTART_POOL, SETTLE};
use crate::util::output_of;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    RestartP50,
    RestartP90,
    RestartP99,
    RestartN,
    Idle,
    IdleHealth,
    Rss2,
    Pss2,
    Rss100,
    Pss100,
    Start100,
    Stop2,
    Stop100,
}

impl Metric {
    const ALL: [Metric; 13] = [
        Metric::RestartP50,
        Metric::RestartP90,
        Metric::RestartP99,
        Metric::RestartN,
        Metric::Idle,
        Metric::IdleHealth,
        Metric::Rss2,
        Metric::Pss2,
        Metric::Rss100,
        Metric::Pss100,
        Metric::Start100,
        Metric::Stop2,
        Metric::Stop100,
    ];

    fn label(self) -> &'static str {
        match self {
            Metric::RestartP50 => "restart latency p50 (ms)",
            Metric::RestartP90 => "restart latency p90 (ms)",
            Metric::RestartP99 => "restart latency p99 (ms)",
            Metric::RestartN => "restart: kills measured",
            Metric::Idle => "idle wakeups/s (2 programs)",
            Metric::IdleHealth => "wakeups/s, one HTTP health check every 1 s",
            Metric::Rss2 => "RSS, 2 programs (MiB)",
            Metric::Pss2 => "PSS, 2 programs (MiB)",
            Metric::Rss100 => "RSS, 100 programs (MiB)",
            Metric::Pss100 => "PSS, 100 programs (MiB)",
            Metric::Start100 => "start 100 programs (ms)",
            Metric::Stop2 => "SIGTERM → all gone, 2 programs (ms)",
            Metric::Stop100 => "SIGTERM → all gone, 100 programs (ms)",
        }
    }

    fn format(self, v: f64) -> String {
        match self {
            Metric::RestartN => format!("{v:.0}"),
            Metric::Idle
            | Metric::IdleHealth
            | Metric::Rss2
            | Metric::Pss2
            | Metric::Rss100
            | Metric::Pss100 => {
                format!("{v:.1}")
            }
            _ if v < 10.0 => format!("{v:.2}"),
            _ if v < 100.0 => format!("{v:.1}"),
            _ => format!("{v:.0}"),
        }
    }

    /// Our target for this metric, as text, and whether `ours` meets it (None: unknown).
    fn target(self, results: &Results, ours: Option<f64>) -> Option<(String, Option<bool>)> {
        let limit = |max: f64, text: String| Some((text, ours.map(|v| v <= max)));
        match self {
            Metric::RestartP50 => match results.get(Peer::Shell, Metric::RestartP50) {
                Some(floor) => limit(1.2 * floor, format!("≤ {:.2} (1.2× shell)", 1.2 * floor)),
                None => Some(("≤ 1.2× shell loop".to_string(), None)),
            },
            Metric::RestartP99 => limit(10.0, "≤ 10".into()),
            // Zero means not one context switch in the whole window.
            Metric::Idle => Some(("0".into(), ours.map(|v| v == 0.0))),
            // One check = a timer, the connect, the response: a few context switches each.
            Metric::IdleHealth => limit(5.0, "a few per check".into()),
            Metric::Rss2 => limit(5.0, "≤ 5".into()),
            Metric::Start100 => limit(100.0, "≤ 100".into()),
            Metric::Stop2 | Metric::Stop100 => limit(20.0, "≤ 20".into()),
            _ => None,
        }
    }
}

/// Every figure of the run, and why some are missing.
#[derive(Default)]
pub struct Results {
    values: BTreeMap<(Peer, Metric), f64>,
    pub failures: Vec<(Peer, String)>,
}

impl Results {
    pub fn set(&mut self, peer: Peer, metric: Metric, value: f64) {
        self.values.insert((peer, metric), value);
    }

    pub fn get(&self, peer: Peer, metric: Metric) -> Option<f64> {
        self.values.get(&(peer, metric)).copied()
    }

    pub fn fail(&mut self, peer: Peer, why: String) {
        self.failures.push((peer, why));
    }

    /// Rows of cells: metric, ours, target, then the other peers.
    fn rows(&self, peers: &[Peer]) -> (Vec<String>, Vec<Vec<String>>) {
        let others: Vec<Peer> = peers.iter().copied().filter(|&p| p != Peer::Ours).collect();
        let with_ours = peers.contains(&Peer::Ours);
        let mut header = vec!["metric".to_string()];
        if with_ours {
            header.push(Peer::Ours.label().to_string());
            header.push("target".to_string());
        }
        header.extend(others.iter().map(|p| p.label().to_string()));
        let cell = |peer: Peer, metric: Metric| {
            self.get(peer, metric)
                .map_or("n/a".to_string(), |v| metric.format(v))
        };
        let rows = Metric::ALL
            .iter()
            .map(|&metric| {
                let mut row = vec![metric.label().to_string()];
                if with_ours {
                    row.push(cell(Peer::Ours, metric));
                    let ours = self.get(Peer::Ours, metric);
                    row.push(match metric.target(self, ours) {
                        Some((text, Some(true))) => format!("{text} ✓"),
                        Some((text, Some(false))) => format!("{text} ✗"),
                        Some((text, None)) => text,
                        None => String::new(),
                    });
                }
                row.extend(others.iter().map(|&p| cell(p, metric)));
                row
            })
            .collect();
        (header, rows)
    }
}

/// A plain table for the terminal.
pub fn text_table(results: &Results, peers: &[Peer]) -> String {
    let (header, rows) = results.rows(peers);
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, &w))| {
                let pad = w - c.chars().count();
                if i == 0 {
                    format!("{c}{}", " ".repeat(pad))
                } else {
                    format!("{}{c}", " ".repeat(pad))
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = line(&header);
    for row in &rows {
        out.push('\n');
        out.push_str(&line(row));
    }
    out
}

/// Where and how the figures were obtained.
pub struct SystemInfo {
    command: String,
    date: String,
    kernel: String,
    cpu: String,
    versions: Vec<(Peer, String)>,
    idle_window: Duration,
    /// Share of the machine's CPU time that was busy during the measurements.
    busy: Option<f64>,
    /// Most and fewest kills per peer for the restart figure.
    kills: (usize, usize),
}

impl SystemInfo {
    pub fn collect(
        command: String,
        peers: &[Peer],
        idle_window: Duration,
        busy: Option<f64>,
        kills: (usize, usize),
    ) -> SystemInfo {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|m| m.trim_start_matches([' ', '\t', ':']).trim().to_string())
            .unwrap_or_else(|| "unknown CPU".into());
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let versions = peers
            .iter()
            .map(|&peer| {
                let version = match peer.package() {
                    Some(pkg) => output_of("dpkg-query", &["-W", "-f=${Version}", pkg])
                        .map(|v| format!("{pkg} {v} (Debian)")),
                    None => our_version(),
                };
                (peer, version.unwrap_or_else(|| "unknown".into()))
            })
            .collect();
        SystemInfo {
            command,
            date: output_of("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default(),
            kernel: output_of("uname", &["-sr"]).unwrap_or_default(),
            cpu: format!("{model}, {cores} cores"),
            versions,
            idle_window,
            busy,
            kills,
        }
    }

    /// Says so when something else kept the CPU busy during the run.
    pub fn load_warning(&self) -> Option<String> {
        let busy = self.busy?;
        (busy > 0.25).then(|| {
            format!(
                "the CPU was {:.0}% busy during the measurements (other load on the machine): \
                 latencies are noisier and higher than on a quiet machine",
                busy * 100.0
            )
        })
    }
}

/// The commit our binary was built from, and whether the tree had changes.
fn our_version() -> Option<String> {
    let commit = output_of("git", &["rev-parse", "--short", "HEAD"])?;
    let dirty = output_of("git", &["status", "--porcelain", "--", "supervisor"])
        .is_some_and(|s| !s.is_empty());
    Some(format!(
        "commit {commit}{}, release profile",
        if dirty { " + uncommitted changes" } else { "" }
    ))
}

/// "2.5 s".
fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// BENCHMARKS.md.
pub fn markdown(results: &Results, peers: &[Peer], info: &SystemInfo) -> String {
    let mut md = String::new();
    let (header, rows) = results.rows(peers);
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Generated by `cargo xtask bench` (`xtask/src/bench/`); do not edit by hand, run it again.\n"
    );
    let _ = writeln!(md, "- Command: `{}`", info.command);
    let _ = writeln!(md, "- Date: {}", info.date);
    let _ = writeln!(md, "- Kernel: {}", info.kernel);
    let _ = writeln!(md, "- CPU: {}", info.cpu);
    if let Some(busy) = info.busy {
        let _ = writeln!(
            md,
            "- CPU busy during the measurements: {:.0}%",
            busy * 100.0
        );
    }
    for (peer, version) in &info.versions {
        let _ = writeln!(md, "- {}: {version} — {}", peer.label(), peer.describe());
    }
    let _ = writeln!(md, "\n## Results\n");
    if let Some(warning) = info.load_warning() {
        let _ = writeln!(md, "**Warning**: {warning}.\n");
    }
    let _ = writeln!(md, "| {} |", header.join(" | "));
    let align: Vec<&str> = (0..header.len())
        .map(|i| if i == 0 { "---" } else { "---:" })
        .collect();
    let _ = writeln!(md, "| {} |", align.join(" | "));
    for row in &rows {
        let _ = writeln!(md, "| {} |", row.join(" | "));
    }
    if !results.failures.is_empty() {
        let _ = writeln!(md, "\nMissing figures (`n/a`):\n");
        for (peer, why) in &results.failures {
            let why = why.replace('\n', " ");
            let _ = writeln!(md, "- {}: {why}", peer.label());
        }
    }
    let _ = write!(
        md,
        "
## Method

All peers run on the same machine in the same run, one at a time, as plain child processes of
the harness (no container, no PID namespace). Every supervised program is `stamp`
(`xtask/src/bin/stamp.rs`): its first action reads `CLOCK_MONOTONIC`, writes `NAME PID NS` into
a FIFO the harness reads, then it sleeps in `pause()`. Ours and supervisord exec it directly; for
s6 and runit each service's `run` is a symlink to it, so no shell runs in between; the shell loop
forks and execs it. Programs are configured to restart on any exit (`autorestart = true`,
`startsecs = 1` for ours and supervisord).

- **Restart latency**: {RESTART_POOL} programs run; each must have been up for {min_age} before it
  is killed (past `startsecs` and past the next tick of supervisord's one-second loop, so its
  death is a crash of a RUNNING program, not a failed start that would back off). The harness
  reads the clock, SIGKILLs one program through a pidfd, and waits for the new instance's record:
  latency = new instance's start − kill time. Programs are killed one at a time, round-robin,
  10 ms apart; up to {max_kills} kills, fewer (at least {min_kills}) for peers that take about a second each
  (supervisord notices a death and restarts on the ticks of its one-second loop, 1–2 s;
  s6-supervise waits a second before starting `run` again).
- **Idle wakeups/s**: 2 programs, {settle} after they started, nothing happening; voluntary +
  involuntary context switches of every thread of every supervisor process
  (`/proc/PID/task/*/status`), over {idle}. Supervisor processes are the peer's process tree
  minus the programs: ours and supervisord one process; s6 `s6-svscan` + one `s6-supervise` per
  program; runit `runsvdir` + one `runsv` per program; the shell loop its shells.
- **RSS / PSS**: `Rss` and `Pss` of `/proc/PID/smaps_rollup`, summed over the same supervisor
  processes (programs excluded), with 2 and with 100 programs.
- **Start 100 programs**: from just before the supervisor is spawned to the last of the 100
  programs' own start timestamps. Configuration files are dated a minute back, as on a real
  system (runsvdir postpones reading a directory modified within the current second).
- **SIGTERM → all gone**: the documented stop request, then wait (pidfds) until the supervisor
  and every process it started have exited. Ours, supervisord, s6-svscan: SIGTERM. runit:
  SIGHUP to `runsvdir` (on SIGTERM it exits and leaves everything running). Shell loop: SIGTERM
  to its process group.

Targets (beside our figures): restart p50 ≤ 1.2× the shell loop and p99 ≤ 10 ms; 0 wakeups/s
when idle; RSS ≤ 5 MiB with 2 programs; 100 programs started ≤ 100 ms; stop ≤ 20 ms.
",
        idle = secs(info.idle_window),
        min_age = secs(MIN_AGE),
        max_kills = info.kills.0,
        min_kills = info.kills.1,
        settle = secs(SETTLE),
    );
    md
}
