//! Our supervisor's HTTP side: how long a `/metrics` scrape takes, `wrk` as the load that
//! hammers it while restarts are measured, and the probes through a connection flood (the
//! `flood` load generator of the e2e crate: 2,000 idle connections, 100 slowloris clients and
//! 10,000 garbage requests while `/healthz` and `/readyz` are probed on fresh connections).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::session::unblock_signals;
use crate::procs::PidFd;
use crate::util::monotonic_ns;

const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// One `GET /metrics` over a fresh loopback connection, read to the end: (milliseconds from
/// before `connect` to the last byte, body).
pub fn scrape(port: u16) -> Result<(f64, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: xtask-bench\r\n\
         Accept: text/plain\r\nConnection: close\r\n\r\n"
    );
    let t0 = monotonic_ns();
    let mut conn = TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT)
        .with_context(|| format!("cannot connect to {addr}"))?;
    conn.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
    conn.set_nodelay(true)?;
    conn.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    conn.read_to_end(&mut response)
        .context("reading the /metrics response")?;
    let t1 = monotonic_ns();
    let text = String::from_utf8_lossy(&response);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("malformed HTTP response ({} bytes)", response.len());
    };
    let status = head.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 200") {
        bail!("GET /metrics answered `{status}`");
    }
    Ok(((t1 - t0) as f64 / 1e6, body.to_string()))
}

/// `count` sequential scrapes (after two unmeasured ones), each checked to list `programs`
/// programs; returns their latencies in ms.
pub fn scrape_latencies(port: u16, count: usize, programs: usize) -> Result<Vec<f64>> {
    for _ in 0..2 {
        let (_, body) = scrape(port)?;
        let listed = body
            .lines()
            .filter(|l| l.starts_with("supervisor_program_up{"))
            .count();
        if listed != programs {
            bail!("/metrics lists {listed} programs in supervisor_program_up, expected {programs}");
        }
    }
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        samples.push(scrape(port)?.0);
        // Not back to back: a scraper waits between scrapes, and the supervisor gets to idle.
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(samples)
}

/// `wrk -t1 -c8` on `/metrics`, running until stopped.
pub struct Wrk {
    child: Child,
    pidfd: PidFd,
    out: std::path::PathBuf,
}

impl Wrk {
    /// Starts it (its output goes to `dir/wrk.log`) and gives it a moment to connect.
    pub fn start(port: u16, dir: &Path) -> Result<Wrk> {
        let out = dir.join("wrk.log");
        let log = File::create(&out)?;
        let mut cmd = Command::new("wrk");
        cmd.args(["-t1", "-c8", "-d600s", "--latency"])
            .arg(format!("http://127.0.0.1:{port}/metrics"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        unblock_signals(&mut cmd);
        let mut child = cmd
            .spawn()
            .context("cannot run `wrk` (Debian package wrk)")?;
        let pidfd = match PidFd::open(child.id() as i32) {
            Ok(fd) => fd,
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(err).context("pidfd_open");
            }
        };
        let mut wrk = Wrk { child, pidfd, out };
        std::thread::sleep(Duration::from_millis(300));
        if let Some(status) = wrk.child.try_wait()? {
            bail!("wrk exited at once ({status}): {}", wrk.log());
        }
        Ok(wrk)
    }

    /// Stops it with SIGINT (wrk then prints its summary); returns its requests per second and
    /// its error lines (socket errors, non-2xx answers), if any.
    pub fn stop(mut self) -> Result<(f64, Vec<String>)> {
        self.pidfd.signal(libc::SIGINT)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                bail!("wrk did not stop within 5 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = std::fs::read_to_string(&self.out).unwrap_or_default();
        let rate = log
            .lines()
            .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .with_context(|| format!("no Requests/sec in wrk's output: {}", self.log()))?;
        let errors = log
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("Socket errors") || l.starts_with("Non-2xx"))
            .map(String::from)
            .collect();
        Ok((rate, errors))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .trim()
            .replace('\n', " / ")
    }
}

impl Drop for Wrk {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.pidfd.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Builds the `flood` load generator (`tests/src/bin/flood.rs`).
pub fn build_flood() -> Result<std::path::PathBuf> {
    println!("==> cargo build --release -p e2e --bin flood");
    let status = crate::util::cargo()
        .args(["build", "--release", "-p", "e2e", "--bin", "flood"])
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("building the flood load generator failed ({status})");
    }
    Ok(crate::util::target_dir().join("release").join("flood"))
}

/// What the probes saw during a flood.
#[derive(Debug, Clone, Copy)]
pub struct FloodFigures {
    /// Probes of /healthz and /readyz sent.
    pub probes: u64,
    /// Percent of them answered 200 within the kubelet's default timeout (1 s).
    pub success_pct: f64,
    /// The worst p99 and max latency of the two paths (ms).
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Runs `flood` for `seconds` against our supervisor on `port` (every program ready, so every
/// probe should answer 200).
pub fn flood(flood_bin: &Path, port: u16, seconds: f64) -> Result<FloodFigures> {
    let out = Command::new(flood_bin)
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .args(["--idle", "2000", "--slowloris", "100", "--garbage", "10000"])
        .args(["--seconds", &seconds.to_string()])
        .args([
            "--probe",
            "/healthz",
            "--probe",
            "/readyz",
            "--timeout-ms",
            "1000",
        ])
        .arg("--lines")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", flood_bin.display()))?;
    if !out.status.success() {
        bail!(
            "flood failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut figures = FloodFigures {
        probes: 0,
        success_pct: 0.0,
        p99_ms: 0.0,
        max_ms: 0.0,
    };
    let mut ok = 0;
    for line in text.lines().filter(|l| l.starts_with("probe ")) {
        let field = |key: &str| -> Result<f64> {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("no {key} in flood's line `{line}`"))
        };
        figures.probes += field("count")? as u64;
        ok += field("ok200")? as u64;
        figures.p99_ms = figures.p99_ms.max(field("p99_ms")?);
        figures.max_ms = figures.max_ms.max(field("max_ms")?);
    }
    if figures.probes == 0 {
        bail!("flood sent no probes: {}", text.trim());
    }
    figures.success_pct = 100.0 * ok as f64 / figures.probes as f64;
    Ok(figures)
}
