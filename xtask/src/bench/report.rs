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
    // Ours only: the HTTP endpoint.
    Scrape10P50,
    Scrape10P99,
    Scrape1000P50,
    Scrape1000P99,
    RestartQuietP50,
    RestartQuietP99,
    RestartWrkP50,
    RestartWrkP99,
    WrkRate,
    FloodProbeOk,
    FloodProbeP99,
    // Ours only: the eBPF probe.
    KillRateOff,
    KillRateOn,
    KillRatio,
    KillNoise,
    KillCostNs,
    RestartProbeOffP50,
    RestartProbeOnP50,
    RestartProbeOffP99,
    RestartProbeOnP99,
}

impl Metric {
    const ALL: [Metric; 33] = [
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
        Metric::Scrape10P50,
        Metric::Scrape10P99,
        Metric::Scrape1000P50,
        Metric::Scrape1000P99,
        Metric::RestartQuietP50,
        Metric::RestartQuietP99,
        Metric::RestartWrkP50,
        Metric::RestartWrkP99,
        Metric::WrkRate,
        Metric::FloodProbeOk,
        Metric::FloodProbeP99,
        Metric::KillRateOff,
        Metric::KillRateOn,
        Metric::KillRatio,
        Metric::KillNoise,
        Metric::KillCostNs,
        Metric::RestartProbeOffP50,
        Metric::RestartProbeOnP50,
        Metric::RestartProbeOffP99,
        Metric::RestartProbeOnP99,
    ];

    /// Figures no other peer has (an HTTP endpoint, an eBPF probe): a table of their own.
    fn ours_only(self) -> bool {
        self >= Metric::Scrape10P50
    }

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
            Metric::Scrape10P50 => "/metrics scrape p50, 10 programs (ms)",
            Metric::Scrape10P99 => "/metrics scrape p99, 10 programs (ms)",
            Metric::Scrape1000P50 => "/metrics scrape p50, 1,000 programs (ms)",
            Metric::Scrape1000P99 => "/metrics scrape p99, 1,000 programs (ms)",
            Metric::RestartQuietP50 => "restart p50, HTTP quiet (ms)",
            Metric::RestartQuietP99 => "restart p99, HTTP quiet (ms)",
            Metric::RestartWrkP50 => "restart p50, wrk hammering /metrics (ms)",
            Metric::RestartWrkP99 => "restart p99, wrk hammering /metrics (ms)",
            Metric::WrkRate => "wrk's rate meanwhile (requests/s)",
            Metric::FloodProbeOk => {
                "/healthz + /readyz answered 200 within 1 s, connection flood (%)"
            }
            Metric::FloodProbeP99 => "/healthz + /readyz p99, connection flood (ms)",
            Metric::KillRateOff => "kill(2)/s between unrelated processes, probe off (thousands)",
            Metric::KillRateOn => "kill(2)/s between unrelated processes, probe on (thousands)",
            Metric::KillRatio => "kill(2) rate, probe on ÷ off",
            Metric::KillNoise => "kill(2) rate, probe off ÷ off (noise, empty comparison)",
            Metric::KillCostNs => "probe's cost per unrelated signal (ns)",
            Metric::RestartProbeOffP50 => "restart p50, probe off (ms)",
            Metric::RestartProbeOnP50 => "restart p50, probe on (ms)",
            Metric::RestartProbeOffP99 => "restart p99, probe off (ms)",
            Metric::RestartProbeOnP99 => "restart p99, probe on (ms)",
        }
    }

    fn format(self, v: f64) -> String {
        match self {
            Metric::RestartN | Metric::WrkRate | Metric::KillRateOff | Metric::KillRateOn => {
                format!("{v:.0}")
            }
            Metric::KillRatio | Metric::KillNoise => format!("{v:.3}"),
            Metric::KillCostNs => format!("{v:.0}"),
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
        // At most `factor` × our own figure `base` from the same run.
        let relative = |base: Metric, factor: f64, what: &str| match results.get(Peer::Ours, base) {
            Some(b) => limit(
                factor * b,
                format!("≤ {:.2} ({factor}× {what})", factor * b),
            ),
            None => Some((format!("≤ {factor}× {what}"), None)),
        };
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
            Metric::Scrape1000P50 | Metric::Scrape1000P99 => limit(5.0, "≤ 5".into()),
            Metric::RestartWrkP50 => relative(Metric::RestartQuietP50, 2.0, "quiet"),
            Metric::RestartWrkP99 => relative(Metric::RestartQuietP99, 2.0, "quiet"),
            Metric::KillRatio => Some(("≥ 0.95".into(), ours.map(|v| v >= 0.95))),
            Metric::FloodProbeOk => Some(("100".into(), ours.map(|v| v >= 100.0))),
            Metric::FloodProbeP99 => limit(100.0, "≤ 100".into()),
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

    /// Rows of cells: metric, ours, target, then the other peers; the metrics only ours has
    /// (`ours_only`: metric, ours, target) or the others.
    fn rows(&self, peers: &[Peer], ours_only: bool) -> (Vec<String>, Vec<Vec<String>>) {
        let others: Vec<Peer> = if ours_only {
            Vec::new()
        } else {
            peers.iter().copied().filter(|&p| p != Peer::Ours).collect()
        };
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
            .filter(|m| m.ours_only() == ours_only)
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

/// Plain tables for the terminal: all peers, then (with ours) the figures only ours has.
pub fn text_table(results: &Results, peers: &[Peer]) -> String {
    let mut out = one_text_table(results.rows(peers, false));
    if peers.contains(&Peer::Ours) {
        out.push_str("\n\n");
        out.push_str(&one_text_table(results.rows(peers, true)));
    }
    out
}

fn one_text_table((header, rows): (Vec<String>, Vec<Vec<String>>)) -> String {
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
    /// How the figures only ours has were sampled (set when ours ran).
    pub ours: Option<OursPlan>,
}

/// The sample sizes of the figures only ours has, for the method section.
pub struct OursPlan {
    pub scrapes: usize,
    /// Most restarts per arm and round, and rounds, of the two restart comparisons.
    pub compare_max: usize,
    pub compare_rounds: usize,
    pub kill_window: Duration,
    pub kill_rounds: usize,
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
            ours: None,
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

/// "1 round", "2 rounds".
fn rounds(n: usize) -> String {
    format!("{n} round{}", if n == 1 { "" } else { "s" })
}

/// "1,000".
fn thousands(n: usize) -> String {
    if n >= 1000 {
        format!("{},{:03}", n / 1000, n % 1000)
    } else {
        n.to_string()
    }
}

/// "2.5 s".
fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

fn md_table(md: &mut String, (header, rows): (Vec<String>, Vec<Vec<String>>)) {
    let _ = writeln!(md, "| {} |", header.join(" | "));
    let align: Vec<&str> = (0..header.len())
        .map(|i| if i == 0 { "---" } else { "---:" })
        .collect();
    let _ = writeln!(md, "| {} |", align.join(" | "));
    for row in rows {
        let _ = writeln!(md, "| {} |", row.join(" | "));
    }
}

/// BENCHMARKS.md.
pub fn markdown(results: &Results, peers: &[Peer], info: &SystemInfo) -> String {
    let mut md = String::new();
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
    md_table(&mut md, results.rows(peers, false));
    if peers.contains(&Peer::Ours) {
        let _ = writeln!(
            md,
            "\n### Ours only: the HTTP endpoint and the eBPF probe\n"
        );
        md_table(&mut md, results.rows(peers, true));
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
Ours runs with its defaults unless said otherwise, so its eBPF probe is loaded (`--probe auto`,
and the harness runs as root).
",
        idle = secs(info.idle_window),
        min_age = secs(MIN_AGE),
        max_kills = info.kills.0,
        min_kills = info.kills.1,
        settle = secs(SETTLE),
    );
    if let Some(plan) = &info.ours {
        let _ = write!(
            md,
            "
### Ours only

- **`/metrics` scrape**: {small} and {large} programs (`stamp`, configured as above), every one
  started and {settle} more; then 2 unmeasured scrapes (each checked to list every program in
  `supervisor_program_up`) and {scrapes} measured ones, 5 ms apart: a new loopback TCP connection,
  `GET /metrics HTTP/1.1` with `Connection: close`, read to the end; from before `connect` to
  the last byte.
- **Restart under HTTP load**: one session of {RESTART_POOL} programs, restarts measured as
  above (up to {compare_max} kills per arm and round, {compare_rounds}), alternating HTTP quiet and
  `wrk -t1 -c8 --latency http://127.0.0.1:PORT/metrics` running (started 0.3 s before the first
  kill, stopped with SIGINT after the last). On 2 cores wrk and the supervisor's HTTP side take
  a core each, so the restarts compete for the CPU as well.
- **kill(2) rate**: the harness sends SIGUSR1 with kill(2) in a tight loop to a `sleep` that
  ignores it (nothing is queued, the receiver never wakes: the cheapest signal, so the probe's
  share is the largest) and that no supervisor watches, for {kill_window} per window; the rate is
  calls per second of the sender thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), which is the
  wall-clock rate when it has a core to itself and stays comparable when other load takes
  turns. Every window has a fresh supervisor with {kill_programs} programs running, `--probe off`,
  `--probe on`, `--probe off` again, {kill_rounds}; the medians are compared. Probe off ÷ off
  (second off window of each round ÷ the first) is the empty comparison: the noise of the
  ratio; the cost per signal is 1/rate with the probe − 1/rate without. The probe's
  `signal_generate` program runs for every signal on the machine and discards, in the kernel,
  those whose target the supervisor does not watch (a few loads and a map lookup); most of what
  remains is the cost of the `tp_btf` dispatch itself.
- **Restart with the probe**: like the restart figure, with `--probe off` and `--probe on`,
  a fresh session of {RESTART_POOL} programs each, alternating, up to {compare_max} kills per arm and round,
  {compare_rounds}.

Targets: scrape ≤ 5 ms with 1,000 programs; restart under HTTP load within 2× of HTTP quiet
(same run); kill(2) rate with the probe ≥ 0.95 of without.
",
            small = super::ours::SCRAPE_SMALL,
            large = thousands(super::ours::SCRAPE_LARGE),
            settle = secs(SETTLE),
            scrapes = plan.scrapes,
            compare_max = plan.compare_max,
            compare_rounds = rounds(plan.compare_rounds),
            kill_window = secs(plan.kill_window),
            kill_rounds = rounds(plan.kill_rounds),
            kill_programs = super::ours::KILL_PROGRAMS,
        );
    }
    md
}
