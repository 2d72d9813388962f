//! Issue 11 (item 2) end to end: the JSON log on stdout keeps every event of a crash-loop
//! storm when its reader reads at normal speed (a regular file, a pipe read by `cat`), and
//! when the reader stalls the engine goes on restarting while the log drops, counts
//! (`supervisor_log_events_dropped_total`) and says so in one notice per burst.
//!
//! The storm: 50 programs `sh -c 'exit 1'` with `startsecs=0` and `autorestart=true`, run by
//! the real binary as PID 1, bounded in time and in deaths, then `supervisor stop all`; the log
//! is compared with the metrics scraped once everything is stopped, and every spawned pid must
//! have exactly one death (`exited` or `stopped`) in the log.

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

use e2e::*;

const PROGRAMS: usize = 50;
/// How long a storm lasts at most.
const STORM: Duration = Duration::from_secs(12);
/// Deaths after which a storm ends sooner (enough for thousands of events, few enough to stay
/// far from the fd limit on slow machines).
const DEATHS: usize = 2500;
/// How long nobody reads in the stalled storm (long enough to fill the pipe and the queue).
const STALL: Duration = Duration::from_secs(8);
const T: Duration = Duration::from_secs(60);

/// A supervisor running the storm as PID 1, with its stdout wherever the test says.
struct Storm {
    child: Child,
    addr: String,
    sock: PathBuf,
}

impl Storm {
    fn start(dir: &Path, stdout: Stdio) -> Storm {
        let conf = dir.join("storm.conf");
        fs::write(&conf, conf_text()).expect("write the storm config");
        let addr = format!("127.0.0.1:{}", free_port());
        let sock = dir.join("control.sock");
        let bin = bin();
        let child = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
            .arg(&bin)
            .args(["run", "-c", conf.to_str().unwrap(), "--metrics-addr", &addr])
            .arg("--socket")
            .arg(&sock)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(File::create(dir.join("supervisor.err")).expect("create the stderr file"))
            .process_group(0)
            .spawn()
            .expect("spawn unshare");
        let storm = Storm { child, addr, sock };
        let deadline = Instant::now() + T;
        while http_raw(&storm.addr, b"GET /healthz HTTP/1.0\r\n\r\n").is_none() {
            assert!(
                Instant::now() < deadline,
                "the HTTP endpoint did not come up"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        storm
    }

    fn metrics(&self) -> String {
        let reply = http_get(&self.addr, "/metrics");
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body
    }

    /// The supervisor's pid outside its namespace.
    fn host_pid(&self) -> i32 {
        let deadline = Instant::now() + T;
        loop {
            let kids = fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.child.id()))
                .unwrap_or_default();
            if let Some(pid) = kids.split_whitespace().next().and_then(|p| p.parse().ok()) {
                return pid;
            }
            assert!(Instant::now() < deadline, "no supervisor under unshare");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Scrapes until `until` holds or `limit` is up; returns the last scrape and whether it held.
    fn scrape_until(&self, limit: Duration, until: impl Fn(&str) -> bool) -> (String, bool) {
        let deadline = Instant::now() + limit;
        loop {
            let m = self.metrics();
            if until(&m) {
                return (m, true);
            }
            if Instant::now() > deadline {
                return (m, false);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Scrapes until `until` holds; panics after [`T`].
    fn wait_metrics(&self, what: &str, until: impl Fn(&str) -> bool) -> String {
        match self.scrape_until(T, until) {
            (m, true) => m,
            (m, false) => panic!("timed out waiting for {what}\n{}", metric_lines(&m)),
        }
    }

    /// `supervisor stop all`, then waits until no program can die any more (STOPPED, or FATAL
    /// if spawning failed); returns the metrics.
    fn stop_all(&self) -> String {
        let (code, out, err) = ctl(&self.sock, &["stop", "all"]);
        self.wait_metrics(
            &format!("every program stopped (stop all: {code} {out}{err})"),
            |m| {
                sum(m, "supervisor_program_state", Some("state=\"STOPPED\""))
                    + sum(m, "supervisor_program_state", Some("state=\"FATAL\""))
                    == PROGRAMS as f64
            },
        )
    }

    /// SIGTERM, then waits for the supervisor to exit (so its log is complete).
    fn finish(mut self) {
        // SAFETY: kill(2) on the supervisor this test started.
        assert_eq!(unsafe { libc::kill(self.host_pid(), libc::SIGTERM) }, 0);
        let deadline = Instant::now() + T;
        while self.child.try_wait().expect("try_wait").is_none() {
            assert!(Instant::now() < deadline, "the supervisor did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Storm {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: kill(2) on the process group this test created (unshare and supervisor).
            unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
            let _ = self.child.wait();
        }
    }
}

fn conf_text() -> String {
    (0..PROGRAMS)
        .map(|i| {
            format!("[program:p{i}]\ncommand=sh -c 'exit 1'\nstartsecs=0\nautorestart=true\n\n")
        })
        .collect()
}

/// The sum of the samples of `family` (whose labels contain `label`, if given).
fn sum(text: &str, family: &str, label: Option<&str>) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let name = series.split('{').next()?;
            (name == family && label.is_none_or(|lb| series.contains(lb))).then_some(value)
        })
        .filter_map(|v| v.parse::<f64>().ok())
        .sum()
}

fn metric_lines(m: &str) -> String {
    [
        "supervisor_program_exits_total",
        "supervisor_program_restarts_total",
        "supervisor_log_events_dropped_total",
    ]
    .iter()
    .map(|f| format!("{f} = {}", sum(m, f, None)))
    .collect::<Vec<_>>()
    .join("\n")
}

/// Lets the storm run until [`STORM`] is up or the log at `log` holds [`DEATHS`] spawns.
/// (Paced by the log, not by scrapes: while the engine restarts 50 programs back to back, an
/// HTTP request waits seconds for its turn on the runtime thread.)
fn storm(log: &Path) {
    let deadline = Instant::now() + STORM;
    while Instant::now() < deadline {
        let text = fs::read_to_string(log).unwrap_or_default();
        if text.matches("\"event\":\"spawned\"").count() >= DEATHS {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One storm at a time: each one loads both cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

fn events(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {l}"))
        })
        .collect()
}

/// Checks the log of a storm against the final metrics: nothing dropped, every death logged
/// once, the same number of ends as the metrics count. Returns (spawned, ends) for the report.
fn assert_lossless(log: &str, m: &str) -> (usize, usize) {
    let evs = events(log);
    assert_eq!(
        sum(m, "supervisor_log_events_dropped_total", None),
        0.0,
        "{}",
        metric_lines(m)
    );
    let notices: Vec<&Value> = evs
        .iter()
        .filter(|e| msg(e).contains("events were not logged"))
        .collect();
    assert!(notices.is_empty(), "events were dropped: {notices:?}");
    // pid → (spawned lines, death lines); a pid may come round again, but each time it does
    // it is spawned once and dies once.
    let mut pids: HashMap<u32, (u32, u32)> = HashMap::new();
    let (mut spawned, mut ends) = (0, 0);
    for e in &evs {
        match kind(e) {
            "spawned" => {
                spawned += 1;
                pids.entry(pid(e)).or_default().0 += 1;
            }
            "exited" | "stopped" | "spawn_failed" => {
                ends += 1;
                if let Some(p) = e["pid"].as_u64() {
                    if kind(e) != "spawn_failed" {
                        pids.entry(p as u32).or_default().1 += 1;
                    }
                }
            }
            _ => {}
        }
    }
    let unmatched: Vec<_> = pids.iter().filter(|(_, (s, d))| s != d).take(10).collect();
    assert!(
        unmatched.is_empty(),
        "pids spawned and died a different number of times (pid, (spawned, died)): {unmatched:?}"
    );
    assert_eq!(
        ends as f64,
        sum(m, "supervisor_program_exits_total", None),
        "the log's exited/stopped/spawn_failed lines differ from the exits the metrics counted\n{}",
        metric_lines(m)
    );
    assert!(
        spawned >= 500,
        "the storm was too small to prove anything: {spawned} spawns"
    );
    (spawned, ends)
}

#[test]
fn storm_to_a_regular_file_loses_nothing() {
    let dir = TempDir::new("logstorm-file");
    let log = dir.path().join("stdout.log");
    let _one = one_at_a_time();
    let s = Storm::start(
        dir.path(),
        Stdio::from(File::create(&log).expect("create the log")),
    );
    storm(&log);
    let m = s.stop_all();
    s.finish();
    let (spawned, ends) = assert_lossless(&fs::read_to_string(&log).expect("read the log"), &m);
    eprintln!("regular file: {spawned} spawned, {ends} ends logged, 0 dropped");
}

#[test]
fn storm_to_a_pipe_read_by_cat_loses_nothing() {
    let _one = one_at_a_time();
    let dir = TempDir::new("logstorm-pipe");
    let log = dir.path().join("stdout.log");
    let mut cat = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(File::create(&log).expect("create the log"))
        .spawn()
        .expect("spawn cat");
    let pipe = cat.stdin.take().expect("cat's stdin");
    let s = Storm::start(dir.path(), Stdio::from(pipe));
    storm(&log);
    let m = s.stop_all();
    s.finish();
    // cat sees EOF once the supervisor is gone.
    let status = cat.wait().expect("wait for cat");
    assert!(status.success(), "cat: {status}");
    let (spawned, ends) = assert_lossless(&fs::read_to_string(&log).expect("read the log"), &m);
    eprintln!("pipe to cat: {spawned} spawned, {ends} ends logged, 0 dropped");
}

#[test]
fn stalled_reader_costs_the_log_not_the_programs() {
    let _one = one_at_a_time();
    let dir = TempDir::new("logstorm-stall");
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array on success.
    assert_eq!(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) },
        0,
        "pipe2"
    );
    // SAFETY: both fds were just created and are owned by nobody else.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let s = Storm::start(dir.path(), Stdio::from(write_end));

    // Nobody reads: the log fills the pipe and its queue, then drops, while the engine goes
    // on restarting the programs. (A storm of fixed length: the log cannot pace it.)
    std::thread::sleep(STALL);

    // The reader comes back: one notice for the whole burst, then nothing more is lost.
    let log = dir.path().join("stdout.log");
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut src = File::from(read_end);
            let mut dst = File::create(&log).expect("create the log");
            std::io::copy(&mut src, &mut dst).expect("copy the log");
        })
    };
    let deadline = Instant::now() + T;
    while !fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("events were not logged")
    {
        assert!(
            Instant::now() < deadline,
            "no notice of the dropped events once stdout was read"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = s.stop_all();
    s.finish();
    reader.join().expect("the reader thread");

    let text = fs::read_to_string(&log).expect("read the log");
    let evs = events(&text);
    let total = sum(&m, "supervisor_log_events_dropped_total", None);
    assert!(
        total > 0.0,
        "nothing was dropped while nobody read stdout\n{}",
        metric_lines(&m)
    );
    // The engine did not wait for the log: it spawned far more than the log could take.
    let spawns = sum(&m, "supervisor_program_restarts_total", None) + PROGRAMS as f64;
    let logged = evs.iter().filter(|e| kind(e) == "spawned").count() as f64;
    assert!(
        spawns > logged + 100.0,
        "{spawns} spawns, {logged} logged: the programs waited for the log?"
    );
    let notices: Vec<&Value> = evs
        .iter()
        .filter(|e| msg(e).contains("events were not logged"))
        .collect();
    assert_eq!(notices.len(), 1, "one notice per burst: {notices:?}");
    assert_eq!(notices[0]["level"], "warn");
    let said: f64 = msg(notices[0])
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {}", msg(notices[0])));
    assert_eq!(
        said,
        total,
        "the notice and the metric disagree: {}",
        msg(notices[0])
    );
    // Everything after the notice was logged: each process spawned after it dies once in it.
    let after = text
        .lines()
        .skip_while(|l| !l.contains("events were not logged"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut pids: HashMap<u32, (u32, u32)> = HashMap::new();
    for e in events(&after) {
        match kind(&e) {
            "spawned" => pids.entry(pid(&e)).or_default().0 += 1,
            "exited" | "stopped" if e["pid"].is_u64() => {
                if let Some(p) = pids.get_mut(&pid(&e)) {
                    p.1 += 1;
                }
            }
            _ => {}
        }
    }
    let unmatched: Vec<_> = pids.iter().filter(|(_, (s, d))| s != d).take(10).collect();
    assert!(
        unmatched.is_empty(),
        "after the notice, some deaths are missing: {unmatched:?}"
    );
    eprintln!(
        "stalled reader: {spawns} spawns, {logged} logged, {total} events dropped, one notice; {} spawns logged after it",
        pids.len()
    );
}
