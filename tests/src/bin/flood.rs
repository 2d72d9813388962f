//! `flood`: a bounded, loopback-only load generator for the HTTP endpoint, used by
//! `tests/tests/flood.rs` and `cargo xtask bench`. It holds idle connections, runs slowloris
//! clients and sends garbage requests at one address while probing paths on fresh connections
//! (as a kubelet does), then prints one JSON summary on stdout.
//!
//! ```text
//! flood --addr 127.0.0.1:9469 [--idle 2000] [--slowloris 100] [--garbage 10000]
//!       [--seconds 5] [--probe /healthz] [--probe /readyz] [--interval-ms 20] [--timeout-ms 1000]
//!       [--lines]
//! ```
//!
//! `--lines` prints, instead of the JSON, one line per probed path for tools without a JSON
//! parser: `probe /healthz count=90 ok200=90 p50_ms=0.31 p99_ms=12.10 max_ms=15.02`.
//!
//! Only std threads and blocking sockets: the load must not depend on the runtime under test.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Args {
    addr: SocketAddr,
    idle: usize,
    slowloris: usize,
    garbage: usize,
    seconds: f64,
    probes: Vec<String>,
    interval: Duration,
    timeout: Duration,
    lines: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 9469)),
        idle: 2000,
        slowloris: 100,
        garbage: 10_000,
        seconds: 5.0,
        probes: Vec::new(),
        interval: Duration::from_millis(20),
        timeout: Duration::from_millis(1000),
        lines: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--lines" {
            a.lines = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag} {v}: not a number"))
        };
        match flag.as_str() {
            "--addr" => {
                a.addr = value
                    .parse()
                    .map_err(|_| format!("--addr {value}: expected IP:PORT"))?
            }
            "--idle" => a.idle = num(&value)? as usize,
            "--slowloris" => a.slowloris = num(&value)? as usize,
            "--garbage" => a.garbage = num(&value)? as usize,
            "--seconds" => {
                a.seconds = value
                    .parse()
                    .map_err(|_| format!("--seconds {value}: not a number"))?
            }
            "--probe" => a.probes.push(value),
            "--interval-ms" => a.interval = Duration::from_millis(num(&value)?),
            "--timeout-ms" => a.timeout = Duration::from_millis(num(&value)?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    // Never anything but loopback.
    if !a.addr.ip().is_loopback() {
        return Err(format!("--addr {}: only loopback addresses", a.addr));
    }
    if !(0.1..=120.0).contains(&a.seconds) {
        return Err("--seconds: between 0.1 and 120".to_string());
    }
    if a.idle + a.slowloris > 50_000 || a.garbage > 1_000_000 {
        return Err("the load is bounded: at most 50,000 connections, 1,000,000 requests".into());
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("flood: {e}");
            std::process::exit(2);
        }
    };
    raise_nofile(args.idle + args.slowloris + 512);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(args.seconds);

    let probes = {
        let (paths, addr, stop) = (args.probes.clone(), args.addr, stop.clone());
        let (interval, timeout) = (args.interval, args.timeout);
        thread::spawn(move || probe_loop(addr, &paths, interval, timeout, &stop))
    };
    let idle = {
        let (n, addr, stop) = (args.idle, args.addr, stop.clone());
        thread::spawn(move || idle_loop(addr, n, &stop))
    };
    let slow = {
        let (n, addr, stop) = (args.slowloris, args.addr, stop.clone());
        thread::spawn(move || slowloris_loop(addr, n, &stop))
    };
    let garbage_left = Arc::new(AtomicU64::new(args.garbage as u64));
    let garbage_codes = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let garbage: Vec<_> = (0..4)
        .map(|seed| {
            let (addr, stop) = (args.addr, stop.clone());
            let (left, codes) = (garbage_left.clone(), garbage_codes.clone());
            thread::spawn(move || garbage_loop(addr, seed, &left, &codes, &stop))
        })
        .collect();

    while Instant::now() < until {
        thread::sleep(Duration::from_millis(20));
    }
    let flood_s = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let probes = probes.join().unwrap_or_default();
    let idle = idle.join().unwrap_or_default();
    let slow = slow.join().unwrap_or_default();
    for g in garbage {
        let _ = g.join();
    }
    let garbage_sent = args.garbage as u64 - garbage_left.load(Ordering::Relaxed);
    let codes = garbage_codes.lock().map(|c| c.clone()).unwrap_or_default();
    let summary = json!({
        "seconds": flood_s,
        "probes": summarize(&args.probes, &probes),
        "idle": idle,
        "slowloris": slow,
        "garbage": {"sent": garbage_sent, "outcomes": codes},
    });
    if !args.lines {
        println!("{summary}");
        return;
    }
    for (path, p) in summary["probes"].as_object().into_iter().flatten() {
        println!(
            "probe {path} count={} ok200={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
            p["count"],
            p["outcomes"]["200"].as_u64().unwrap_or(0),
            p["p50_ms"].as_f64().unwrap_or(0.0),
            p["p99_ms"].as_f64().unwrap_or(0.0),
            p["max_ms"].as_f64().unwrap_or(0.0)
        );
    }
}

/// Raises this process's soft RLIMIT_NOFILE to `want` (or the hard limit, if lower).
fn raise_nofile(want: usize) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < want as u64 {
            lim.rlim_cur = (want as u64).min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// One probe: what it got (`200`, `503`, `timeout`, `refused`...) and how long it took.
struct Probe {
    path: usize,
    outcome: String,
    ms: f64,
}

fn probe_loop(
    addr: SocketAddr,
    paths: &[String],
    interval: Duration,
    timeout: Duration,
    stop: &AtomicBool,
) -> Vec<Probe> {
    let mut out = Vec::new();
    if paths.is_empty() {
        return out;
    }
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let path = i % paths.len();
        let t = Instant::now();
        let outcome = get(addr, &paths[path], timeout);
        out.push(Probe {
            path,
            outcome,
            ms: t.elapsed().as_secs_f64() * 1e3,
        });
        i += 1;
        thread::sleep(interval);
    }
    out
}

/// `GET path` on a fresh connection with `Connection: close`, all within `timeout`: the status
/// code, or what went wrong.
fn get(addr: SocketAddr, path: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut s = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::TimedOut => return "connect timeout".into(),
        Err(e) => return format!("connect: {}", e.kind()),
    };
    let _ = s.set_nodelay(true);
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.31\r\nConnection: close\r\n\r\n");
    let _ = s.set_write_timeout(Some(left()));
    if s.write_all(req.as_bytes()).is_err() {
        return "write failed".into();
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let _ = s.set_read_timeout(Some(left()));
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return "read timeout".into()
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return format!("read: {}", e.kind()),
        }
        if Instant::now() >= deadline {
            return "read timeout".into();
        }
    }
    status_of(&buf)
}

fn status_of(buf: &[u8]) -> String {
    if buf.is_empty() {
        return "closed".into();
    }
    let text = String::from_utf8_lossy(&buf[..buf.len().min(64)]);
    match text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
    {
        Some(rest) => rest.chars().take(3).collect(),
        None => "not http".into(),
    }
}

fn summarize(paths: &[String], probes: &[Probe]) -> Value {
    let mut out = serde_json::Map::new();
    for (i, path) in paths.iter().enumerate() {
        let mine: Vec<&Probe> = probes.iter().filter(|p| p.path == i).collect();
        let mut outcomes = BTreeMap::<&str, u64>::new();
        for p in &mine {
            *outcomes.entry(p.outcome.as_str()).or_default() += 1;
        }
        let mut ms: Vec<f64> = mine.iter().map(|p| p.ms).collect();
        ms.sort_by(f64::total_cmp);
        let pct = |q: f64| -> f64 {
            if ms.is_empty() {
                return 0.0;
            }
            let rank = ((q / 100.0) * ms.len() as f64).ceil() as usize;
            ms[rank.clamp(1, ms.len()) - 1]
        };
        out.insert(
            path.clone(),
            json!({
                "count": mine.len(),
                "outcomes": outcomes,
                "p50_ms": pct(50.0),
                "p99_ms": pct(99.0),
                "max_ms": ms.last().copied().unwrap_or(0.0),
            }),
        );
    }
    Value::Object(out)
}

/// Whether the server has closed `s` (EOF or an error), without blocking.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 512];
    if s.set_nonblocking(true).is_err() {
        return true;
    }
    let closed = loop {
        match s.read(&mut b) {
            Ok(0) => break true,
            // A response (e.g. 408 or 400): keep reading to the close.
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break true,
        }
    };
    let _ = s.set_nonblocking(false);
    closed
}

/// Holds `n` connections that send nothing; reopens those the server closes.
fn idle_loop(addr: SocketAddr, n: usize, stop: &AtomicBool) -> Value {
    let (mut opened, mut closed, mut connect_errors) = (0u64, 0u64, 0u64);
    let mut conns: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    let mut max_open = 0usize;
    let mut error_kinds = BTreeMap::<String, u64>::new();
    while !stop.load(Ordering::Relaxed) {
        for slot in conns.iter_mut() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if let Some(s) = slot {
                if closed_by_server(s) {
                    closed += 1;
                    *slot = None;
                }
            }
            if slot.is_none() {
                match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                    Ok(s) => {
                        opened += 1;
                        *slot = Some(s);
                    }
                    Err(e) => {
                        connect_errors += 1;
                        *error_kinds.entry(e.kind().to_string()).or_default() += 1;
                    }
                }
            }
        }
        max_open = max_open.max(conns.iter().filter(|c| c.is_some()).count());
        thread::sleep(Duration::from_millis(200));
    }
    json!({"opened": opened, "closed_by_server": closed, "connect_errors": connect_errors, "errors": error_kinds, "max_open": max_open})
}

/// `n` clients that each send one header byte per second and never finish their head;
/// reopened when the server cuts them off.
fn slowloris_loop(addr: SocketAddr, n: usize, stop: &AtomicBool) -> Value {
    let (mut opened, mut closed, mut connect_errors, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    let mut conns: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    let mut next_byte = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let send_now = Instant::now() >= next_byte;
        for slot in conns.iter_mut() {
            if let Some(s) = slot {
                if closed_by_server(s) {
                    closed += 1;
                    *slot = None;
                } else if send_now {
                    let _ = s.set_write_timeout(Some(Duration::from_millis(100)));
                    if s.write_all(b"x").is_ok() {
                        bytes += 1;
                    }
                }
            }
            if slot.is_none() {
                match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                    Ok(mut s) => {
                        opened += 1;
                        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: slow\r\nX-Slow: ");
                        *slot = Some(s);
                    }
                    Err(_) => connect_errors += 1,
                }
            }
        }
        if send_now {
            next_byte += Duration::from_secs(1);
        }
        thread::sleep(Duration::from_millis(100));
    }
    json!({"opened": opened, "closed_by_server": closed, "connect_errors": connect_errors, "bytes_sent": bytes})
}

/// Garbage requests, each on its own connection, until `left` runs out or `stop`: what came
/// back, by status code (or `closed`, `reset`, `timeout`).
fn garbage_loop(
    addr: SocketAddr,
    seed: u64,
    left: &AtomicU64,
    codes: &Mutex<BTreeMap<String, u64>>,
    stop: &AtomicBool,
) {
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (seed + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let mut local = BTreeMap::<String, u64>::new();
    while !stop.load(Ordering::Relaxed) {
        if left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_err()
        {
            break;
        }
        let payload = garbage(&mut rng);
        let outcome = match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(mut s) => {
                let _ = s.set_write_timeout(Some(Duration::from_millis(500)));
                let _ = s.write_all(&payload);
                let _ = s.shutdown(Shutdown::Write);
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = Vec::new();
                match s.read_to_end(&mut buf) {
                    Ok(_) => status_of(&buf),
                    Err(e) if e.kind() == ErrorKind::ConnectionReset => "reset".into(),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        "timeout".into()
                    }
                    Err(e) => format!("read: {}", e.kind()),
                }
            }
            Err(e) => format!("connect: {}", e.kind()),
        };
        *local.entry(outcome).or_default() += 1;
    }
    if let Ok(mut all) = codes.lock() {
        for (k, v) in local {
            *all.entry(k).or_default() += v;
        }
    }
}

/// One garbage request: random bytes, a broken request line, or a head with bad headers.
fn garbage(rng: &mut u64) -> Vec<u8> {
    let mut next = || {
        // xorshift64*
        *rng ^= *rng >> 12;
        *rng ^= *rng << 25;
        *rng ^= *rng >> 27;
        rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    match next() % 4 {
        0 => (0..(16 + next() % 240)).map(|_| next() as u8).collect(),
        1 => b"GET /healthz HTTP/9.9\r\n\r\n".to_vec(),
        2 => b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not tls\r\n\r\n".to_vec(),
        _ => b"GET /metrics HTTP/1.1\r\nHost: x\r\nBad Header\0: y\r\n\r\n".to_vec(),
    }
}
