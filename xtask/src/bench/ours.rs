//! Figures only our supervisor has: what its HTTP endpoint costs (a `/metrics` scrape with 10
//! and 1,000 programs; restarts while `wrk` hammers `/metrics`) and what its eBPF probe costs
//! (kill(2) between unrelated processes, and restarts, with the probe loaded vs not).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::measure::{self, percentile};
use super::peers::Peer;
use super::report::{Metric, Results};
use super::session::{OursOptions, Session};
use super::{http, settle, signals, Plan, RESTART_POOL, START_TIMEOUT, STOP_TIMEOUT};

/// The programs of the scrape sessions.
pub const SCRAPE_SMALL: usize = 10;
pub const SCRAPE_LARGE: usize = 1000;
/// Programs running under the supervisor during the kill(2) windows.
pub const KILL_PROGRAMS: usize = 2;

pub fn bench(ours: &Path, stamp: &Path, dir: &Path, plan: &Plan, results: &mut Results) {
    let mut attempt = |what: &str, f: &mut dyn FnMut(&mut Results) -> Result<()>| {
        if let Err(err) = f(results) {
            println!("    {what}: n/a ({err:#})");
            results.fail(Peer::Ours, format!("{what}: {err:#}"));
        }
    };

    for (n, p50, p99) in [
        (SCRAPE_SMALL, Metric::Scrape10P50, Metric::Scrape10P99),
        (SCRAPE_LARGE, Metric::Scrape1000P50, Metric::Scrape1000P99),
    ] {
        attempt(&format!("/metrics scrape, {n} programs"), &mut |results| {
            let samples = scrape_session(ours, stamp, &dir.join(format!("scrape-{n}")), n, plan)?;
            let (a, b) = (percentile(&samples, 50.0), percentile(&samples, 99.0));
            results.set(Peer::Ours, p50, a);
            results.set(Peer::Ours, p99, b);
            println!(
                "    /metrics scrape, {n} programs ({} scrapes): p50 {a:.2} ms, p99 {b:.2} ms",
                samples.len()
            );
            Ok(())
        });
    }

    attempt("restart under HTTP load", &mut |results| {
        let (quiet, loaded, rate) = restart_under_wrk(ours, stamp, &dir.join("wrk"), plan)?;
        let q = [percentile(&quiet, 50.0), percentile(&quiet, 99.0)];
        let l = [percentile(&loaded, 50.0), percentile(&loaded, 99.0)];
        results.set(Peer::Ours, Metric::RestartQuietP50, q[0]);
        results.set(Peer::Ours, Metric::RestartQuietP99, q[1]);
        results.set(Peer::Ours, Metric::RestartWrkP50, l[0]);
        results.set(Peer::Ours, Metric::RestartWrkP99, l[1]);
        results.set(Peer::Ours, Metric::WrkRate, rate);
        println!(
            "    restart, HTTP quiet ({} kills): p50 {:.2} ms, p99 {:.2} ms",
            quiet.len(),
            q[0],
            q[1]
        );
        println!(
            "    restart, wrk on /metrics at {rate:.0} req/s ({} kills): p50 {:.2} ms, p99 {:.2} ms",
            loaded.len(),
            l[0],
            l[1]
        );
        Ok(())
    });

    attempt("probes under a connection flood", &mut |results| {
        let f = flood_session(ours, stamp, &dir.join("flood"), plan)?;
        results.set(Peer::Ours, Metric::FloodProbeOk, f.success_pct);
        results.set(Peer::Ours, Metric::FloodProbeP99, f.p99_ms);
        println!(
            "    probes through 2,000 idle + 100 slowloris + 10,000 garbage ({} probes): \
             {:.1} % answered 200, p99 {:.1} ms, max {:.1} ms",
            f.probes, f.success_pct, f.p99_ms, f.max_ms
        );
        Ok(())
    });

    attempt("kill(2) rate with the probe", &mut |results| {
        let [off_a, on, off_b] = kill_rates(ours, stamp, &dir.join("kill"), plan)?;
        let off_all: Vec<f64> = off_a.iter().chain(&off_b).copied().collect();
        let off = percentile(&off_all, 50.0);
        let on = percentile(&on, 50.0);
        let noise = percentile(&off_b, 50.0) / percentile(&off_a, 50.0);
        results.set(Peer::Ours, Metric::KillRateOff, off / 1e3);
        results.set(Peer::Ours, Metric::KillRateOn, on / 1e3);
        results.set(Peer::Ours, Metric::KillRatio, on / off);
        results.set(Peer::Ours, Metric::KillNoise, noise);
        results.set(Peer::Ours, Metric::KillCostNs, 1e9 / on - 1e9 / off);
        println!(
            "    kill(2) between unrelated processes: {:.0} k/s probe off, {:.0} k/s probe on: \
             ratio {:.3} (off vs off: {noise:.3}); ≈ {:.0} ns per signal",
            off / 1e3,
            on / 1e3,
            on / off,
            (1e9 / on - 1e9 / off)
        );
        Ok(())
    });

    attempt("restart with the probe", &mut |results| {
        let [off, on] = restart_with_probe(ours, stamp, &dir.join("probe-restart"), plan)?;
        for (samples, p50, p99, what) in [
            (
                &off,
                Metric::RestartProbeOffP50,
                Metric::RestartProbeOffP99,
                "off",
            ),
            (
                &on,
                Metric::RestartProbeOnP50,
                Metric::RestartProbeOnP99,
                "on",
            ),
        ] {
            let (a, b) = (percentile(samples, 50.0), percentile(samples, 99.0));
            results.set(Peer::Ours, p50, a);
            results.set(Peer::Ours, p99, b);
            println!(
                "    restart, probe {what} ({} kills): p50 {a:.2} ms, p99 {b:.2} ms",
                samples.len()
            );
        }
        Ok(())
    });
}

/// `n` programs, all started and settled; then `plan.scrapes` sequential scrapes.
fn scrape_session(
    ours: &Path,
    stamp: &Path,
    dir: &Path,
    n: usize,
    plan: &Plan,
) -> Result<Vec<f64>> {
    let mut s = Session::launch(Peer::Ours, ours, stamp, dir, n)?;
    let last = s.wait_started(n, START_TIMEOUT)?;
    settle(last);
    let port = s.metrics_port.context("no metrics port")?;
    let samples = http::scrape_latencies(port, plan.scrapes, n)?;
    s.ensure_alive()?;
    s.stop(STOP_TIMEOUT)?;
    Ok(samples)
}

/// One session of [`RESTART_POOL`] programs; rounds of restarts with HTTP quiet, then with
/// `wrk` on `/metrics`. Returns (quiet samples, loaded samples, wrk's mean requests/s).
fn restart_under_wrk(
    ours: &Path,
    stamp: &Path,
    dir: &Path,
    plan: &Plan,
) -> Result<(Vec<f64>, Vec<f64>, f64)> {
    let mut s = Session::launch(Peer::Ours, ours, stamp, dir, RESTART_POOL)?;
    s.wait_started(RESTART_POOL, START_TIMEOUT)?;
    let port = s.metrics_port.context("no metrics port")?;
    let (mut quiet, mut loaded, mut rates) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..plan.compare_rounds {
        quiet.extend(measure::restart_latencies(&mut s, &plan.compare)?);
        let wrk = http::Wrk::start(port, dir)?;
        let samples = measure::restart_latencies(&mut s, &plan.compare);
        let (rate, errors) = wrk.stop()?;
        loaded.extend(samples?);
        if !errors.is_empty() {
            println!("    (wrk: {})", errors.join("; "));
        }
        rates.push(rate);
    }
    s.ensure_alive()?;
    s.stop(STOP_TIMEOUT)?;
    let rate = rates.iter().sum::<f64>() / rates.len().max(1) as f64;
    Ok((quiet, loaded, rate))
}

/// [`RESTART_POOL`] programs, all started; then a connection flood while the probes are
/// measured (3 s with `--quick`, 6 s otherwise).
fn flood_session(ours: &Path, stamp: &Path, dir: &Path, plan: &Plan) -> Result<http::FloodFigures> {
    let flood_bin = http::build_flood()?;
    let mut s = Session::launch(Peer::Ours, ours, stamp, dir, RESTART_POOL)?;
    let last = s.wait_started(RESTART_POOL, START_TIMEOUT)?;
    settle(last);
    let port = s.metrics_port.context("no metrics port")?;
    let seconds = if plan.compare_rounds > 1 { 6.0 } else { 3.0 };
    let figures = http::flood(&flood_bin, port, seconds)?;
    s.ensure_alive()?;
    s.stop(STOP_TIMEOUT)?;
    Ok(figures)
}

/// kill(2) rates (calls per CPU-second of the sender) in windows of `plan.kill_window`, each
/// with a fresh supervisor running [`KILL_PROGRAMS`] programs: round after round of probe off
/// (A), probe on, probe off (B). A vs B is the empty comparison: what noise alone gives.
fn kill_rates(ours: &Path, stamp: &Path, dir: &Path, plan: &Plan) -> Result<[Vec<f64>; 3]> {
    let receiver = signals::Receiver::start()?;
    let arms = ["off", "on", "off"];
    let mut rates: [Vec<f64>; 3] = Default::default();
    for round in 0..plan.kill_rounds {
        for (arm, mode) in arms.iter().enumerate() {
            let options = OursOptions {
                probe: Some(mode),
                ..OursOptions::default()
            };
            let sub = dir.join(format!("r{round}-{arm}-{mode}"));
            let mut s =
                Session::launch_with(Peer::Ours, ours, stamp, &sub, KILL_PROGRAMS, options)?;
            s.wait_started(KILL_PROGRAMS, START_TIMEOUT)?;
            std::thread::sleep(Duration::from_millis(200));
            let rate = signals::kill_rate(&receiver, plan.kill_window)?;
            s.ensure_alive()?;
            s.stop(STOP_TIMEOUT)?;
            rates[arm].push(rate);
        }
    }
    Ok(rates)
}

/// Restart latencies with `--probe off` and `--probe on`, a fresh session of [`RESTART_POOL`]
/// programs each, alternating for `plan.compare_rounds` rounds.
fn restart_with_probe(ours: &Path, stamp: &Path, dir: &Path, plan: &Plan) -> Result<[Vec<f64>; 2]> {
    let mut samples: [Vec<f64>; 2] = Default::default();
    for round in 0..plan.compare_rounds {
        for (arm, mode) in ["off", "on"].iter().enumerate() {
            let options = OursOptions {
                probe: Some(mode),
                ..OursOptions::default()
            };
            let sub = dir.join(format!("r{round}-{mode}"));
            let mut s = Session::launch_with(Peer::Ours, ours, stamp, &sub, RESTART_POOL, options)?;
            s.wait_started(RESTART_POOL, START_TIMEOUT)?;
            samples[arm].extend(measure::restart_latencies(&mut s, &plan.compare)?);
            s.ensure_alive()?;
            s.stop(STOP_TIMEOUT)?;
        }
    }
    Ok(samples)
}
