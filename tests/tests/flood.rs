//! Issue 11, "probes always answer": the real binary as PID 1 while 2,000 idle connections,
//! 100 slowloris clients and 10,000 garbage requests hit its HTTP port (loopback, bounded: a
//! few seconds) — `/healthz` and `/readyz` keep answering by their meaning on fresh
//! connections, as a kubelet probes, and a crash-looping program keeps being restarted.
//!
//! The load comes from `flood` (`tests/src/bin/flood.rs`), std threads and blocking sockets.

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use e2e::*;

const T: Duration = Duration::from_secs(20);
/// How long each flood runs.
const FLOOD_SECONDS: f64 = 6.0;
/// A kubelet's default probe timeout (`timeoutSeconds: 1`).
const PROBE_TIMEOUT_MS: u64 = 1000;

/// One flood at a time: two at once would measure each other.
static FLOODS: Mutex<()> = Mutex::new(());

fn start(dir: &std::path::Path, conf: &std::path::Path) -> (Sup, String) {
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

/// Runs `flood` against `addr`, probing /healthz and /readyz; returns its summary.
fn flood(addr: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_flood"))
        .args(["--addr", addr, "--idle", "2000", "--slowloris", "100"])
        .args([
            "--garbage",
            "10000",
            "--seconds",
            &FLOOD_SECONDS.to_string(),
        ])
        .args(["--probe", "/healthz", "--probe", "/readyz"])
        .args([
            "--interval-ms",
            "20",
            "--timeout-ms",
            &PROBE_TIMEOUT_MS.to_string(),
        ])
        .output()
        .expect("run the flood load generator");
    assert!(
        out.status.success(),
        "flood failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("flood's summary is not JSON ({e}): {:?}", out.stdout));
    eprintln!("flood summary: {summary}");
    summary
}

/// The flood really happened: every garbage request was sent and answered (400, or closed),
/// 2,000 idle connections and 100 slowloris clients were opened.
fn assert_flooded(s: &Value) {
    assert_eq!(s["garbage"]["sent"], 10_000, "{s}");
    let answered_400 = s["garbage"]["outcomes"]["400"].as_u64().unwrap_or(0);
    assert!(answered_400 >= 9_000, "garbage mostly answered 400: {s}");
    assert!(s["idle"]["opened"].as_u64().unwrap_or(0) >= 2000, "{s}");
    assert!(s["slowloris"]["opened"].as_u64().unwrap_or(0) >= 100, "{s}");
}

/// Every probe of `path` answered `code` within the probe timeout; there were enough of them.
fn assert_probes(s: &Value, path: &str, code: &str) {
    let p = &s["probes"][path];
    let count = p["count"].as_u64().unwrap_or(0);
    assert!(
        count as f64 >= FLOOD_SECONDS * 5.0,
        "only {count} probes of {path}: {p}"
    );
    assert_eq!(
        p["outcomes"],
        serde_json::json!({ code: count }),
        "every probe of {path} must answer {code}: {p}"
    );
    eprintln!(
        "{path}: {count} probes, all {code}; p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        p["p50_ms"].as_f64().unwrap_or(0.0),
        p["p99_ms"].as_f64().unwrap_or(0.0),
        p["max_ms"].as_f64().unwrap_or(0.0)
    );
}

/// Everything ready: both probes answer 200 through the flood, and the endpoint serves
/// normally afterwards.
#[test]
fn healthy_probes_answer_200_through_a_connection_flood() {
    let _one = FLOODS.lock().unwrap_or_else(|p| p.into_inner());
    let dir = TempDir::new("flood-ok");
    let conf = dir.write(
        "s.conf",
        "[program:web]\ncommand=sleep 1000\nstartsecs=0\n\n[program:worker]\ncommand=sleep 1000\nstartsecs=0\n",
    );
    let (mut sup, addr) = start(dir.path(), &conf);
    sup.wait_event("worker RUNNING", T, |e| is(e, "running", "worker"));
    sup.wait_event("web RUNNING", T, |e| is(e, "running", "web"));
    let deadline = Instant::now() + T;
    while http_get(&addr, "/readyz").status != 200 {
        assert!(Instant::now() < deadline, "/readyz never became 200");
        std::thread::sleep(Duration::from_millis(20));
    }

    let s = flood(&addr);
    assert_flooded(&s);
    assert_probes(&s, "/healthz", "200");
    assert_probes(&s, "/readyz", "200");

    assert!(sup.running(), "the supervisor died under the flood");
    assert_eq!(http_get(&addr, "/healthz").status, 200);
    assert_eq!(http_get(&addr, "/metrics").status, 200);
    assert_eq!(http_get(&addr, "/api/programs").status, 200);
}

/// A program that never becomes ready and one that crash-loops: through the flood /healthz
/// answers 200 and /readyz 503 every time, and the crash loop goes on being restarted.
#[test]
fn readyz_says_not_ready_and_restarts_go_on_through_a_connection_flood() {
    let _one = FLOODS.lock().unwrap_or_else(|p| p.into_inner());
    let dir = TempDir::new("flood-notready");
    // Nothing listens on `closed`: db's readiness check never passes.
    let closed = free_port();
    let conf = dir.write(
        "s.toml",
        &format!(
            r#"
[programs.web]
command = "sleep 1000"
startsecs = 0

[programs.db]
command = "sleep 1000"
ready = "tcp:127.0.0.1:{closed}"
ready_timeout = 600

[programs.crash]
command = "sh -c 'sleep 0.2; exit 1'"
startsecs = 0
autorestart = true
"#
        ),
    );
    let (mut sup, addr) = start(dir.path(), &conf);
    sup.wait_event("web RUNNING", T, |e| is(e, "running", "web"));
    sup.wait_event("db spawned", T, |e| is(e, "spawned", "db"));
    sup.wait_nth("crash looping", 3, T, |e| is(e, "exited", "crash"));
    let r = http_get(&addr, "/readyz");
    assert_eq!(r.status, 503, "{}", r.body);

    let exits = |sup: &Sup| {
        sup.events()
            .iter()
            .filter(|e| is(e, "exited", "crash"))
            .count()
    };
    let before = exits(&sup);
    let t = Instant::now();
    let s = flood(&addr);
    let during = exits(&sup) - before;
    let elapsed = t.elapsed();
    assert_flooded(&s);
    assert_probes(&s, "/healthz", "200");
    assert_probes(&s, "/readyz", "503");

    // `sleep 0.2` then a respawn: about four exits a second; allow for a loaded machine.
    eprintln!("crash exited {during} times in {elapsed:?} of flood");
    assert!(
        during as f64 >= elapsed.as_secs_f64() * 1.5,
        "only {during} restarts of crash in {elapsed:?} of flood"
    );
    // Each exit was followed by a spawn: the crash loop still turns after the flood.
    let after = exits(&sup);
    sup.wait_nth("crash still looping", after + 2, T, |e| {
        is(e, "exited", "crash")
    });
    let r = http_get(&addr, "/readyz");
    assert_eq!(r.status, 503);
    assert!(
        r.json()["not_ready"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "db" && p["state"] == "STARTING"),
        "{}",
        r.body
    );
    assert!(sup.running(), "the supervisor died under the flood");
}
