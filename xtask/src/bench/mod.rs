//! `cargo xtask bench`: our supervisor side by side with supervisord, s6, runit and a bare shell
//! loop (the floor), measured in one run on one machine, printed and written to BENCHMARKS.md.
//!
//! Every supervisor runs the same tiny program, `stamp` (`src/bin/stamp.rs`), which writes its
//! own start time into a FIFO and sleeps. Per peer, three sessions:
//!
//! 1. 2 programs: RSS/PSS, idle wakeups over a quiet window, then SIGTERM → everything gone.
//! 2. 100 programs: launch → all 100 have started, RSS/PSS, SIGTERM → everything gone.
//! 3. 20 programs: restart latency, killing one program at a time round-robin.
//!
//! Then, for ours only (`ours.rs`): `/metrics` scrape latency with 10 and 1,000 programs,
//! restart latency while `wrk` hammers `/metrics` vs with HTTP quiet, and the eBPF probe's cost:
//! kill(2) between unrelated processes and restart latency, with the probe loaded vs not.
//!
//! A peer that fails to come up or misbehaves gets `n/a` (with the reason) and the run goes on.
//! Each session's processes are killed and checked for leftovers before the next one starts.

mod http;
mod measure;
mod ours;
mod peers;
mod report;
mod session;
mod signals;
mod stamps;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{deps, procs, util};
use measure::RestartPlan;
use peers::Peer;
use report::{Metric, Results};
use session::{OursOptions, Session};

/// Programs in the restart session: killing them round-robin lets each one age past
/// [`measure::MIN_AGE`] while the others are being killed, so 50 kills take seconds, not minutes.
const RESTART_POOL: usize = 20;
/// After the last program started, wait this long (past `startsecs`) before measuring.
const SETTLE: Duration = Duration::from_millis(1500);
/// How long a supervisor may take to start its programs, or to stop, before it is `n/a`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Command-line options.
struct Options {
    quick: bool,
    peers: Vec<Peer>,
    out: Option<PathBuf>,
}

/// How long and how often to measure; `--quick` trades precision for time.
struct Plan {
    idle: Duration,
    restart: RestartPlan,
    /// Sequential `/metrics` scrapes per scrape figure.
    scrapes: usize,
    /// Restarts per arm and round of the comparisons (HTTP quiet vs wrk, probe off vs on)...
    compare: RestartPlan,
    /// ...and how many rounds, alternating the arms.
    compare_rounds: usize,
    /// One kill(2) window, and how many rounds of (probe off, on, off) windows.
    kill_window: Duration,
    kill_rounds: usize,
}

pub fn run(args: &[String]) -> Result<ExitCode> {
    let opts = parse_args(args)?;
    let plan = if opts.quick {
        Plan {
            idle: Duration::from_secs(3),
            restart: RestartPlan {
                max: 20,
                budget: Duration::from_secs(4),
                min: 5,
            },
            scrapes: 20,
            compare: RestartPlan {
                max: 10,
                budget: Duration::from_secs(4),
                min: 5,
            },
            compare_rounds: 1,
            kill_window: Duration::from_millis(500),
            kill_rounds: 1,
        }
    } else {
        Plan {
            idle: Duration::from_secs(10),
            restart: RestartPlan {
                max: 50,
                budget: Duration::from_secs(10),
                min: 10,
            },
            scrapes: 50,
            compare: RestartPlan {
                max: 25,
                budget: Duration::from_secs(5),
                min: 10,
            },
            compare_rounds: 2,
            kill_window: Duration::from_secs(1),
            kill_rounds: 2,
        }
    };
    let mut results = Results::default();

    // The peers' packages, and wrk for our HTTP-load figure.
    let packages: Vec<&str> = deps::BENCH_PACKAGES
        .iter()
        .copied()
        .filter(|&pkg| {
            opts.peers
                .iter()
                .any(|p| p.package() == Some(pkg) || (*p == Peer::Ours && pkg == "wrk"))
        })
        .collect();
    if !packages.is_empty() {
        if let Err(err) = deps::ensure(&packages) {
            eprintln!("xtask: warning: {err:#}\n  (what is missing will show n/a)");
        }
    }
    let stamp_built = build_stamp()?;
    let ours = if opts.peers.contains(&Peer::Ours) {
        match util::build_release_supervisor() {
            Ok(bin) => Some(bin),
            Err(err) => {
                results.fail(Peer::Ours, format!("{err:#}"));
                None
            }
        }
    } else {
        None
    };

    let work = std::env::temp_dir().join(format!("xtask-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let work = work.canonicalize()?;
    let stamp = work.join("stamp");
    std::fs::copy(&stamp_built, &stamp).context("cannot copy the stamp helper")?;
    {
        let (work, stamp) = (work.clone(), stamp.clone());
        procs::on_termination(move || {
            eprintln!("\nxtask: interrupted: killing every benchmarked process");
            let me = std::process::id() as i32;
            let everything: Vec<i32> = procs::tree(me).into_iter().filter(|&p| p != me).collect();
            for fd in procs::open_all(&everything) {
                let _ = fd.signal(libc::SIGKILL);
            }
            procs::kill_leftovers(&work, &stamp);
            eprintln!(
                "xtask: logs of the interrupted run are in {}",
                work.display()
            );
        })?;
    }
    let ours_bin = ours.clone().unwrap_or_default();

    let cpu_before = procs::cpu_times();
    for &peer in &opts.peers {
        if peer == Peer::Ours && ours.is_none() {
            continue;
        }
        println!("\n==> {}", peer.label());
        let dir = work.join(peer.key());
        bench_peer(peer, &ours_bin, &stamp, &dir, &plan, &mut results);
    }

    let command = std::iter::once("cargo xtask bench".to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    // The harness and the peers are idle nearly all the time: a busy machine means someone
    // else's load, which makes latencies noisy.
    let busy = match (cpu_before, procs::cpu_times()) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => Some((b1 - b0) as f64 / (t1 - t0) as f64),
        _ => None,
    };
    let mut info = report::SystemInfo::collect(
        command,
        &opts.peers,
        plan.idle,
        busy,
        (plan.restart.max, plan.restart.min),
    );
    if ours.is_some() {
        info.ours = Some(report::OursPlan {
            scrapes: plan.scrapes,
            compare_max: plan.compare.max,
            compare_rounds: plan.compare_rounds,
            kill_window: plan.kill_window,
            kill_rounds: plan.kill_rounds,
        });
    }
    println!("\n{}", report::text_table(&results, &opts.peers));
    for (peer, why) in &results.failures {
        println!("n/a for {}: {why}", peer.label());
    }
    if let Some(warning) = info.load_warning() {
        println!("warning: {warning}");
    }
    if let Some(out) = &opts.out {
        std::fs::write(out, report::markdown(&results, &opts.peers, &info))
            .with_context(|| format!("cannot write {}", out.display()))?;
        println!("\nwrote {}", out.display());
    }
    if results.failures.is_empty() {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        println!("logs of this run kept in {}", work.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_args(args: &[String]) -> Result<Options> {
    let mut opts = Options {
        quick: false,
        peers: Peer::ALL.to_vec(),
        out: Some(util::workspace_root().join("BENCHMARKS.md")),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => opts.quick = true,
            "--no-write" => opts.out = None,
            "--out" => opts.out = Some(PathBuf::from(it.next().context("--out needs a path")?)),
            "--only" => {
                let list = it.next().context("--only needs a list, e.g. ours,s6")?;
                let mut peers = Vec::new();
                for key in list.split(',') {
                    match Peer::ALL.iter().find(|p| p.key() == key) {
                        Some(&p) => peers.push(p),
                        None => bail!(
                            "unknown peer `{key}` (known: {})",
                            Peer::ALL.map(Peer::key).join(", ")
                        ),
                    }
                }
                peers.sort();
                peers.dedup();
                opts.peers = peers;
            }
            other => bail!("unknown option for `bench`: {other}"),
        }
    }
    Ok(opts)
}

/// Builds the `stamp` helper (release, so its own start-up costs as little as possible).
fn build_stamp() -> Result<PathBuf> {
    println!("==> cargo build --release -p xtask --bin stamp");
    let status = util::cargo()
        .args(["build", "--release", "-p", "xtask", "--bin", "stamp"])
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("building the stamp helper failed ({status})");
    }
    Ok(util::target_dir().join("release").join("stamp"))
}

/// Runs the three sessions for one peer, recording figures and failures in `results`.
fn bench_peer(
    peer: Peer,
    ours: &Path,
    stamp: &Path,
    dir: &Path,
    plan: &Plan,
    results: &mut Results,
) {
    let mut attempt = |what: &str, f: &mut dyn FnMut(&mut Results) -> Result<()>| {
        if let Err(err) = f(results) {
            println!("    {what}: n/a ({err:#})");
            results.fail(peer, format!("{what}: {err:#}"));
        }
    };

    attempt("2 programs", &mut |results| {
        let mut s = Session::launch(peer, ours, stamp, &dir.join("two"), 2)?;
        let last = s.wait_started(2, START_TIMEOUT)?;
        settle(last);
        let (rss, pss) = measure::memory(&s)?;
        results.set(peer, Metric::Rss2, rss);
        results.set(peer, Metric::Pss2, pss);
        println!("    2 programs: RSS {rss:.1} MiB, PSS {pss:.1} MiB");
        let idle = measure::idle_wakeups(&mut s, plan.idle)?;
        results.set(peer, Metric::Idle, idle);
        println!(
            "    idle: {idle:.1} wakeups/s over {} s",
            plan.idle.as_secs()
        );
        let stop = s.stop(STOP_TIMEOUT)?;
        results.set(peer, Metric::Stop2, stop);
        println!("    stop (2 programs): {stop:.1} ms");
        Ok(())
    });

    if peer == Peer::Ours {
        attempt("idle with a health check", &mut |results| {
            // The checked server is a separate process (python's http.server), so only the
            // check's own cost lands on the supervisor.
            let port = peers::free_port()?;
            let mut server = std::process::Command::new("python3")
                .args([
                    "-m",
                    "http.server",
                    "--bind",
                    "127.0.0.1",
                    &port.to_string(),
                ])
                .current_dir(dir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()?;
            let url = format!("http://127.0.0.1:{port}/");
            let result = (|| -> Result<f64> {
                let options = OursOptions {
                    health: Some(&url),
                    ..OursOptions::default()
                };
                let mut s =
                    Session::launch_with(peer, ours, stamp, &dir.join("health"), 2, options)?;
                let last = s.wait_started(2, START_TIMEOUT)?;
                settle(last);
                let w = measure::idle_wakeups(&mut s, plan.idle)?;
                s.stop(STOP_TIMEOUT)?;
                Ok(w)
            })();
            let _ = server.kill();
            let _ = server.wait();
            let w = result?;
            results.set(peer, Metric::IdleHealth, w);
            println!("    one HTTP health check at 1 s: {w:.1} wakeups/s");
            Ok(())
        });
    }

    attempt("100 programs", &mut |results| {
        let mut s = Session::launch(peer, ours, stamp, &dir.join("hundred"), 100)?;
        let last = s.wait_started(100, START_TIMEOUT)?;
        let start = (last - s.launched_ns) as f64 / 1e6;
        results.set(peer, Metric::Start100, start);
        println!("    start 100 programs: {start:.1} ms");
        settle(last);
        let (rss, pss) = measure::memory(&s)?;
        results.set(peer, Metric::Rss100, rss);
        results.set(peer, Metric::Pss100, pss);
        println!("    100 programs: RSS {rss:.1} MiB, PSS {pss:.1} MiB");
        let stop = s.stop(STOP_TIMEOUT)?;
        results.set(peer, Metric::Stop100, stop);
        println!("    stop (100 programs): {stop:.1} ms");
        Ok(())
    });

    attempt("restart", &mut |results| {
        let mut s = Session::launch(peer, ours, stamp, &dir.join("restart"), RESTART_POOL)?;
        s.wait_started(RESTART_POOL, START_TIMEOUT)?;
        let samples = measure::restart_latencies(&mut s, &plan.restart)?;
        let [p50, p90, p99] = [50.0, 90.0, 99.0].map(|p| measure::percentile(&samples, p));
        results.set(peer, Metric::RestartP50, p50);
        results.set(peer, Metric::RestartP90, p90);
        results.set(peer, Metric::RestartP99, p99);
        results.set(peer, Metric::RestartN, samples.len() as f64);
        println!(
            "    restart ({} kills): p50 {p50:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms",
            samples.len()
        );
        s.stop(STOP_TIMEOUT)?;
        Ok(())
    });

    if peer == Peer::Ours {
        ours::bench(ours, stamp, dir, plan, results);
    }
}

/// Sleeps until `SETTLE` after the monotonic instant `last_start_ns`.
fn settle(last_start_ns: u64) {
    let until = last_start_ns + SETTLE.as_nanos() as u64;
    let now = util::monotonic_ns();
    if until > now {
        std::thread::sleep(Duration::from_nanos(until - now));
    }
}
