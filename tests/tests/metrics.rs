//! Issue 3 end to end: the real binary's HTTP endpoint, scraped by a real Prometheus and
//! checked by `promtool`, its health and JSON endpoints, and its robustness against hostile
//! clients while programs keep being restarted on time. Loopback only.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use e2e::*;

const T: Duration = Duration::from_secs(20);

/// Starts the supervisor on `conf` with its HTTP endpoint on a free loopback port; returns it
/// and the endpoint's address once it is listening.
fn start(dir: &Path, conf: &Path) -> (Sup, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let sup = Sup::start(
        Mode::Pid1,
        dir,
        &["run", "-c", conf.to_str().unwrap(), "--metrics-addr", &addr],
    );
    sup.wait_event("the HTTP endpoint", T, |e| {
        kind(e) == "notice" && msg(e).starts_with("HTTP endpoint listening")
    });
    (sup, addr)
}

/// `promtool check metrics` on `text`: its complaints (empty when all is well).
fn promtool(text: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (Debian's prometheus package; `cargo xtask deps` installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The value of the exposition sample `series` (name with its exact label text).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A real Prometheus server, stopped (by its pid) when dropped.
struct Prometheus {
    child: Child,
    addr: String,
    log: std::path::PathBuf,
}

impl Prometheus {
    fn start(dir: &Path, target: &str) -> Prometheus {
        let addr = format!("127.0.0.1:{}", free_port());
        let conf = dir.join("prometheus.yml");
        std::fs::write(
            &conf,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: supervisor\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(std::fs::File::create(dir.join("prometheus.err")).expect("err file"))
            .spawn()
            .expect(
                "start prometheus (Debian's prometheus package; `cargo xtask deps` installs it)",
            );
        let p = Prometheus { child, addr, log };
        let deadline = Instant::now() + T;
        while http_raw(
            &p.addr,
            format!("GET /-/ready HTTP/1.0\r\nHost: {}\r\n\r\n", p.addr).as_bytes(),
        )
        .map(|r| r.status)
            != Some(200)
        {
            assert!(
                Instant::now() < deadline,
                "Prometheus did not become ready:\n{}",
                p.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    fn logs(&self) -> String {
        let err = self.log.with_extension("err");
        format!(
            "{}{}",
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            std::fs::read_to_string(err).unwrap_or_default()
        )
    }

    /// Evaluates an instant PromQL query; the value of its single result, if any.
    fn query(&self, promql: &str) -> Option<f64> {
        let r = http_get(
            &self.addr,
            &format!("/api/v1/query?query={}", url_encode(promql)),
        );
        let v = r.json();
        assert_eq!(v["status"], "success", "{promql}: {}", r.body);
        let result = v["data"]["result"].as_array()?;
        assert!(
            result.len() <= 1,
            "{promql} has {} series: {}",
            result.len(),
            r.body
        );
        result.first()?["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `promql` evaluates to something `ok` accepts; returns it.
    fn wait_for(&self, promql: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.query(promql);
            if let Some(v) = v.filter(|v| ok(*v)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{promql} stayed at {v:?}\n{}",
                tail(&self.logs(), 20)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of the child this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The pid of `prog`'s current process, from its last `spawned` event.
fn current_pid(sup: &Sup, prog: &str) -> u32 {
    pid(sup
        .events()
        .iter()
        .rev()
        .find(|e| is(e, "spawned", prog))
        .expect("spawned event"))
}

/// The seed scenario seen through Prometheus: two programs, one killed three times.
#[test]
fn prometheus_sees_three_restarts() {
    let dir = TempDir::new("prom");
    let conf = dir.write(
        "supervisord.conf",
        "[supervisord]\nnodaemon=true\n\n\
         [program:web]\ncommand=sleep 1000\nstartsecs=2\n\n\
         [program:db]\ncommand=sleep 2000\nstartsecs=1\n",
    );
    let (sup, addr) = start(dir.path(), &conf);
    sup.wait_event("web RUNNING", T, |e| is(e, "running", "web"));
    sup.wait_event("db RUNNING", T, |e| is(e, "running", "db"));

    // A real scrape passes promtool's lint without a word, and has every series from the start.
    let scrape = http_get(&addr, "/metrics");
    assert_eq!(scrape.status, 200);
    assert_eq!(
        promtool(&scrape.body),
        "",
        "promtool check metrics complained"
    );
    for prog in ["web", "db"] {
        assert_eq!(
            sample(
                &scrape.body,
                &format!("supervisor_program_restarts_total{{program=\"{prog}\"}}")
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &scrape.body,
                &format!("supervisor_program_up{{program=\"{prog}\"}}")
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &scrape.body,
                &format!("supervisor_program_processes{{program=\"{prog}\"}}")
            ),
            Some(1.0)
        );
        let rss = sample(
            &scrape.body,
            &format!("supervisor_program_resident_memory_bytes{{program=\"{prog}\"}}"),
        );
        assert!(rss.unwrap_or(0.0) > 0.0, "{prog} rss {rss:?}");
    }
    // The eBPF probe loads when the test runs as root (it does here): the gauge says so.
    let loaded = sup.log_text().contains("eBPF probe loaded");
    assert_eq!(
        sample(&scrape.body, "supervisor_probe_loaded"),
        Some(if loaded { 1.0 } else { 0.0 })
    );

    let prom = Prometheus::start(dir.path(), &addr);
    prom.wait_for(r#"supervisor_program_up{program="web"}"#, |v| v == 1.0);
    // A few scrapes before the first kill, so that increase() has a baseline.
    std::thread::sleep(Duration::from_secs(3));
    for n in 1..=3 {
        sup.signal_program_pid(current_pid(&sup, "web"), libc::SIGKILL);
        sup.wait_nth("web RUNNING again", n + 1, T, |e| is(e, "running", "web"));
    }

    prom.wait_for(r#"supervisor_program_restarts_total{program="web"}"#, |v| {
        v == 3.0
    });
    assert_eq!(
        prom.query(r#"supervisor_program_restarts_total{program="db"}"#),
        Some(0.0)
    );
    assert_eq!(
        prom.query(r#"supervisor_program_exits_total{program="web",cause="signaled"}"#),
        Some(3.0)
    );
    assert_eq!(
        prom.query(r#"supervisor_program_last_signal{program="web"}"#),
        Some(9.0)
    );
    // increase() extrapolates a little past the samples it has: about 3, never 2 or 4.
    let inc = prom
        .query(r#"increase(supervisor_program_restarts_total{program="web"}[1m])"#)
        .expect("increase");
    assert!((2.5..4.0).contains(&inc), "increase over 1m = {inc}");
    assert_eq!(
        prom.query(r#"increase(supervisor_program_restarts_total{program="db"}[1m])"#),
        Some(0.0)
    );
    // Each restart kept web out of RUNNING for startsecs (2 s, two scrapes): up dipped to 0.
    prom.wait_for(r#"supervisor_program_up{program="web"}"#, |v| v == 1.0);
    assert_eq!(
        prom.query(r#"min_over_time(supervisor_program_up{program="web"}[1m])"#),
        Some(0.0)
    );
    let changes = prom
        .query(r#"changes(supervisor_program_up{program="web"}[1m])"#)
        .expect("changes");
    assert!(changes >= 2.0, "up changed {changes} times");
    assert_eq!(
        prom.query(r#"changes(supervisor_program_up{program="db"}[1m])"#),
        Some(0.0)
    );
    assert_eq!(
        prom.query(r#"min_over_time(supervisor_program_up{program="db"}[1m])"#),
        Some(1.0)
    );
    // Prometheus found nothing wrong with any scrape.
    assert_eq!(prom.query(r#"up{job="supervisor"}"#), Some(1.0));
}

/// /readyz: 503 naming the programs still STARTING, 200 once all are RUNNING, 503 again when
/// one goes FATAL. The JSON endpoints agree with the log.
#[test]
fn readiness_and_the_json_endpoints() {
    let dir = TempDir::new("readyz");
    let flag = dir.path().join("broken");
    let conf = dir.write(
        "s.conf",
        &format!(
            "[program:web]\ncommand=sleep 1000\nstartsecs=3\n\n\
             [program:flaky]\ncommand=sh -c 'if [ -e {} ]; then exit 1; fi; exec sleep 1000'\nstartsecs=1\nstartretries=1\n\n\
             [program:manual]\ncommand=sleep 1000\nautostart=false\n",
            flag.display()
        ),
    );
    let (sup, addr) = start(dir.path(), &conf);
    let r = http_get(&addr, "/readyz");
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let not_ready: Vec<Value> = r.json()["not_ready"].as_array().expect("not_ready").clone();
    assert!(not_ready.iter().any(|p| p["name"] == "web"), "{}", r.body);
    assert!(
        !not_ready.iter().any(|p| p["name"] == "manual"),
        "autostart=false counts: {}",
        r.body
    );

    sup.wait_event("web RUNNING", T, |e| is(e, "running", "web"));
    sup.wait_event("flaky RUNNING", T, |e| is(e, "running", "flaky"));
    let r = http_get(&addr, "/readyz");
    assert_eq!(
        (r.status, r.json()),
        (200, serde_json::json!({"ready": true}))
    );
    assert_eq!(http_get(&addr, "/healthz").status, 200);

    std::fs::write(&flag, "").unwrap();
    sup.signal_program_pid(current_pid(&sup, "flaky"), libc::SIGTERM);
    sup.wait_event("flaky FATAL", T, |e| is(e, "fatal", "flaky"));
    let r = http_get(&addr, "/readyz");
    assert_eq!(r.status, 503);
    assert_eq!(
        r.json()["not_ready"],
        serde_json::json!([{"name": "flaky", "state": "FATAL"}])
    );

    // /api/programs: what the engine knows, with the last exit and its cause.
    let programs = http_get(&addr, "/api/programs").json();
    let by_name = |n: &str| {
        programs
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == n)
            .cloned()
            .expect(n)
    };
    let web = by_name("web");
    assert_eq!(web["state"], "RUNNING");
    assert_eq!(
        web["pid"].as_u64().unwrap() as u32,
        current_pid(&sup, "web")
    );
    assert_eq!(web["restarts"], 0);
    assert!(web["uptime_s"].as_f64().unwrap() > 0.0);
    assert!(web["start_time"].as_str().unwrap().ends_with('Z'));
    let flaky = by_name("flaky");
    assert_eq!(flaky["state"], "FATAL");
    assert_eq!(flaky["restarts"], 2);
    assert_eq!(flaky["last_exit"]["cause"], "exited");
    assert_eq!(flaky["last_exit"]["exit_code"], 1);
    assert_eq!(by_name("manual")["state"], "STOPPED");

    // /api/events: the same objects as the log lines, oldest first.
    let events = http_get(&addr, "/api/events?program=flaky&limit=1000").json();
    let events = events.as_array().unwrap();
    assert!(events
        .windows(2)
        .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()));
    assert!(events.iter().all(|e| e["program"] == "flaky"));
    let log = sup.events();
    let mut compared = 0;
    for e in events {
        if let Some(line) = log.iter().find(|l| l["seq"] == e["seq"]) {
            assert_eq!(line, e);
            compared += 1;
        }
    }
    assert!(compared >= 5, "only {compared} events matched the log");
    let last_two = http_get(&addr, "/api/events?program=flaky&limit=2").json();
    assert_eq!(
        last_two.as_array().unwrap().last().unwrap()["event"],
        "fatal"
    );
    let since = events[events.len() - 2]["seq"].as_u64().unwrap();
    let after = http_get(&addr, &format!("/api/events?program=flaky&since={since}")).json();
    assert_eq!(after.as_array().unwrap().len(), 1);
    assert_eq!(http_get(&addr, "/api/events?limit=oops").status, 400);

    // The metrics agree.
    let m = http_get(&addr, "/metrics").body;
    assert_eq!(
        sample(
            &m,
            r#"supervisor_program_state{program="flaky",state="FATAL"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"supervisor_program_exits_total{program="flaky",cause="exited"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"supervisor_program_exits_total{program="flaky",cause="signaled"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, r#"supervisor_program_last_exit_code{program="flaky"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, r#"supervisor_program_restarts_total{program="flaky"}"#),
        Some(2.0)
    );
    assert_eq!(
        sample(&m, r#"supervisor_program_up{program="manual"}"#),
        Some(0.0)
    );
}

/// Hostile clients — slowloris, 2,000 concurrent connections, a 1 MiB header, scrapes in a
/// loop — while a program exits every half second: every restart still follows its exit
/// within milliseconds, and the endpoint serves again afterwards.
#[test]
fn restarts_stay_on_time_under_hostile_http_load() {
    let dir = TempDir::new("load");
    let conf = dir.write(
        "s.conf",
        "[program:flap]\ncommand=sleep 0.5\nstartsecs=0\nautorestart=true\n\n[program:web]\ncommand=sleep 1000\n",
    );
    let (sup, addr) = start(dir.path(), &conf);
    sup.wait_nth("flap cycling", 3, T, |e| is(e, "spawned", "flap"));
    let started = Instant::now();

    // Slowloris: 50 clients that send half a request head and stall.
    let mut slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).expect("connect");
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .expect("half a head");
            s
        })
        .collect();
    // A 1 MiB header: refused with 431 (or a reset mid-upload), never buffered.
    let big = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    if let Some(r) = http_raw(&addr, big.as_bytes()) {
        assert_eq!(r.status, 431);
    }
    // 2,000 connections open at once, each sending a request: served (200), refused (503),
    // or closed; none hangs.
    let mut flood: Vec<TcpStream> = Vec::with_capacity(2000);
    for _ in 0..2000 {
        match TcpStream::connect(&addr) {
            Ok(s) => flood.push(s),
            Err(e) => panic!("connect #{} failed: {e}", flood.len()),
        }
    }
    for s in &mut flood {
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    }
    let mut outcome = std::collections::BTreeMap::<String, usize>::new();
    for mut s in flood {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut out = Vec::new();
        let key = match s.read_to_end(&mut out) {
            Ok(_) if out.starts_with(b"HTTP/1.1 200") => "200".to_string(),
            Ok(_) if out.starts_with(b"HTTP/1.1 503") => "503".to_string(),
            Ok(_) if out.is_empty() => "closed".to_string(),
            Ok(_) => format!(
                "other: {}",
                String::from_utf8_lossy(&out[..out.len().min(40)])
            ),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => "reset".to_string(),
            Err(e) => format!("error: {e}"),
        };
        *outcome.entry(key).or_default() += 1;
    }
    eprintln!("2,000 connections: {outcome:?}");
    assert!(
        outcome
            .keys()
            .all(|k| ["200", "503", "closed", "reset"].contains(&k.as_str())),
        "{outcome:?}"
    );
    assert!(
        outcome.get("200").copied().unwrap_or(0) >= 10,
        "{outcome:?}"
    );
    // Scrapes in a loop for a while longer.
    let until = Instant::now() + Duration::from_secs(3);
    let mut scrapes = 0;
    while Instant::now() < until {
        if let Some(r) = http_raw(&addr, b"GET /metrics HTTP/1.0\r\n\r\n") {
            assert!(matches!(r.status, 200 | 503), "{}", r.status);
            scrapes += usize::from(r.status == 200);
        }
    }
    assert!(scrapes > 0);

    // The stalled clients were cut off by the header timeout (5 s).
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        assert!(
            s.read_to_end(&mut buf).is_ok(),
            "a slowloris client was not disconnected"
        );
    }
    let load = started.elapsed();

    // Every exit of flap during the load was followed by its respawn within milliseconds.
    let events = sup.events();
    let flap: Vec<&Value> = events
        .iter()
        .filter(|e| program(e) == "flap" && ["exited", "spawned"].contains(&kind(e)))
        .collect();
    let ts = |e: &Value| humantime_ms(e["ts"].as_str().unwrap());
    let mut gaps = Vec::new();
    for w in flap.windows(2) {
        if kind(w[0]) == "exited" && kind(w[1]) == "spawned" {
            gaps.push(ts(w[1]) - ts(w[0]));
        }
    }
    let worst = gaps.iter().copied().max().unwrap_or(0);
    eprintln!(
        "{} restarts in {load:?} of load; worst exit→spawn gap {worst} ms",
        gaps.len()
    );
    assert!(
        gaps.len() as f64 >= load.as_secs_f64() / 0.5 * 0.7,
        "only {} restarts in {load:?}",
        gaps.len()
    );
    assert!(worst <= 100, "a restart waited {worst} ms");
    assert_eq!(http_get(&addr, "/healthz").status, 200);
    assert_eq!(http_get(&addr, "/api/programs").status, 200);
}

/// Milliseconds since the epoch of an RFC 3339 UTC timestamp with milliseconds
/// (`2026-11-25T14:36:38.123Z`), enough for differences between events.
fn humantime_ms(ts: &str) -> i64 {
    let (date, time) = ts.trim_end_matches('Z').split_once('T').expect("RFC 3339");
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (hms, ms) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + t[0]) * 60 + t[1]) * 60_000 + t[2] * 1000 + ms.parse::<i64>().unwrap()
}

/// A port already taken: the supervisor says which address failed and how to change it, and
/// supervises anyway. `off` starts no listener; a malformed address is an error naming the flag.
#[test]
fn a_taken_port_is_reported_and_supervision_goes_on() {
    let dir = TempDir::new("taken");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let conf = dir.write("s.conf", "[program:web]\ncommand=sleep 1000\n");
    let sup = Sup::start(
        Mode::Pid1,
        dir.path(),
        &["run", "-c", conf.to_str().unwrap(), "--metrics-addr", &addr],
    );
    let e = sup.wait_event("the bind error", T, |e| {
        kind(e) == "notice" && e["level"] == "error"
    });
    assert!(
        msg(&e).contains(&addr) && msg(&e).contains("--metrics-addr"),
        "{}",
        msg(&e)
    );
    sup.wait_event("web RUNNING", T, |e| is(e, "running", "web"));
    drop(sup);

    let off = Sup::with_config(Mode::Child, dir.path(), &conf);
    off.wait_event("web RUNNING", T, |e| is(e, "running", "web"));
    assert!(
        !off.log_text().contains("HTTP endpoint"),
        "{}",
        off.log_text()
    );
    drop(off);

    let (code, _, err) = run_cli(&[
        "run",
        "-c",
        conf.to_str().unwrap(),
        "--metrics-addr",
        "localhost",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--metrics-addr") && err.contains("IP:PORT"),
        "{err}"
    );
}
