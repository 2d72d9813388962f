//! The container story in a real Docker engine, driven through the `docker` CLI as a user would:
//! the `supervisor-lamp` image (apache2 + MariaDB under supervisor as PID 1) and
//! `supervisor-minimal` (busybox).
//!
//! The engine and the images come from `cargo xtask docker up` (which `cargo xtask test` runs
//! first, exporting `DOCKER_HOST` and `SUPERVISOR_DOCKER_IMAGES=1`); without them these tests
//! say so and pass without running. Every command line they run is in the README's "Docker"
//! section, word for word: [`Session::check_readme`] proves it.
//!
//! Containers use `--network host`: the image's ports (apache2 127.0.0.1:8081, MariaDB
//! 127.0.0.1:3307, metrics 127.0.0.1:9470; busybox httpd 127.0.0.1:8082, metrics :9471) are the
//! host's, checked free first.

use std::process::Command;
use std::time::{Duration, Instant};

use e2e::tail;
use serde_json::Value;

/// Skips (passing) unless the xtask prepared the engine and the images.
fn docker_ready() -> bool {
    if std::env::var_os("SUPERVISOR_DOCKER_IMAGES").is_some() {
        return true;
    }
    eprintln!(
        "skipped: no Docker engine prepared; run `cargo xtask test`, or `cargo xtask docker up` \
         and export DOCKER_HOST and SUPERVISOR_DOCKER_IMAGES=1"
    );
    false
}

/// Splits a command line the way sh does for the simple lines used here: words, and
/// single-quoted strings taken literally.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// What one command line gave.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs command lines and remembers them, to hold them against the README; removes its
/// container at the end whatever happens.
struct Session {
    container: &'static str,
    ran: Vec<String>,
}

impl Session {
    fn new(container: &'static str) -> Session {
        // A container left by an earlier, interrupted run.
        let _ = Command::new("docker")
            .args(["rm", "-f", container])
            .output();
        Session {
            container,
            ran: Vec::new(),
        }
    }

    /// Runs `line` (a README line) to completion.
    fn sh(&mut self, line: &str) -> Out {
        if !self.ran.iter().any(|l| l == line) {
            self.ran.push(line.to_string());
        }
        let w = words(line);
        let out = Command::new(&w[0])
            .args(&w[1..])
            .output()
            .unwrap_or_else(|e| panic!("cannot run `{line}`: {e}"));
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }

    /// Runs `line` and panics unless it exits 0.
    fn ok(&mut self, line: &str) -> String {
        let out = self.sh(line);
        assert_eq!(
            out.code,
            0,
            "`{line}` failed\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- container log ---\n{}",
            out.stdout,
            out.stderr,
            tail(&self.raw_logs(), 40)
        );
        out.stdout
    }

    /// Retries `line` until it exits 0 and its output satisfies `pred`.
    fn until(&mut self, line: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.sh(line);
            if out.code == 0 && pred(&out.stdout) {
                return out.stdout;
            }
            assert!(
                Instant::now() < deadline,
                "`{line}` did not succeed within {timeout:?} (last exit {}: {}{})\n--- container log ---\n{}",
                out.code,
                out.stdout,
                out.stderr,
                tail(&self.raw_logs(), 40)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `docker logs`, stdout and stderr together, without recording the line.
    fn raw_logs(&self) -> String {
        let out = Command::new("docker")
            .args(["logs", self.container])
            .output()
            .expect("docker logs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// The supervisor's events in `docker logs` (program output lines have no `event`).
    fn events(&mut self) -> Vec<Value> {
        let line = format!("docker logs {}", self.container);
        let out = self.sh(&line);
        out.stdout
            .lines()
            .chain(out.stderr.lines())
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("event").is_some())
            .collect()
    }

    /// Waits until `pred` holds for the events; returns them.
    fn wait_events(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.events();
            if pred(&events) {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}\n--- container log ---\n{}",
                tail(&self.raw_logs(), 60)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every command line run is in the README's Docker section, word for word.
    fn check_readme(&self) {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("read README.md");
        let section = readme
            .split("\n## Docker\n")
            .nth(1)
            .expect("README.md has a `## Docker` section")
            .split("\n## ")
            .next()
            .unwrap_or("");
        let missing: Vec<&String> = self
            .ran
            .iter()
            .filter(|l| {
                !section
                    .lines()
                    .any(|r| r.trim_start().starts_with(l.as_str()))
            })
            .collect();
        assert!(
            missing.is_empty(),
            "the README's Docker section lacks these lines the test runs: {missing:#?}"
        );
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", self.container])
            .output();
    }
}

fn kind(e: &Value) -> &str {
    e["event"].as_str().unwrap_or("")
}
fn program(e: &Value) -> &str {
    e["program"].as_str().unwrap_or("")
}
fn msg(e: &Value) -> &str {
    e["msg"].as_str().unwrap_or("")
}

/// Milliseconds since midnight of an event's `ts` (RFC 3339 with ms, UTC): enough to measure
/// a restart that does not straddle midnight.
fn ms_of_day(e: &Value) -> i64 {
    let ts = e["ts"].as_str().expect("event has ts");
    let time = ts.split('T').nth(1).expect("ts has a time");
    let h: i64 = time[0..2].parse().unwrap();
    let m: i64 = time[3..5].parse().unwrap();
    let s: f64 = time[6..].trim_end_matches('Z').parse().unwrap();
    (h * 3600 + m * 60) * 1000 + (s * 1000.0).round() as i64
}

/// Panics unless nothing on the host listens on 127.0.0.1:`port` (the container shares the
/// host's network).
fn assert_port_free(port: u16) {
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} is already in use on this host; the example images listen on it"
    );
}

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn lamp_under_supervisor() {
    if !docker_ready() {
        return;
    }
    for port in [8081, 3307, 9470] {
        assert_port_free(port);
    }
    let mut s = Session::new("lamp-test");

    // Start: the page is served and MariaDB answers.
    s.ok("docker run -d --network host --name lamp-test supervisor-lamp");
    let page = s.until("curl -s http://127.0.0.1:8081/", WAIT, |o| {
        o.contains("It works")
    });
    assert!(page.contains("under supervisor"), "{page}");
    let version = s.until(
        "docker exec lamp-test mysql -e 'SELECT VERSION()'",
        WAIT,
        |o| o.contains("MariaDB"),
    );
    eprintln!("MariaDB answers: {}", version.lines().last().unwrap_or(""));
    let events = s.wait_events("both programs RUNNING", WAIT, |ev| {
        ["apache2", "mysqld"]
            .iter()
            .all(|p| ev.iter().any(|e| kind(e) == "running" && program(e) == *p))
    });
    // apache2 waits for MariaDB to accept connections (depends_on + ready=tcp:).
    let at = |k: &str, p: &str| {
        events
            .iter()
            .position(|e| kind(e) == k && program(e) == p)
            .unwrap_or_else(|| panic!("no {k} event for {p}"))
    };
    assert!(
        at("ready", "mysqld") < at("spawned", "apache2"),
        "apache2 started before MariaDB was ready"
    );
    // Without the capabilities for eBPF the container runs, and the log says once why the
    // probe is off and how to grant it.
    let probe: Vec<&Value> = events
        .iter()
        .filter(|e| msg(e).contains("eBPF probe"))
        .collect();
    assert_eq!(probe.len(), 1, "one line about the probe: {probe:?}");
    assert!(msg(probe[0]).contains("--cap-add"), "{}", msg(probe[0]));

    // supervisor is PID 1, with its programs under it.
    let top = s.ok("docker top lamp-test");
    for name in ["supervisor run", "mysqld_safe", "mariadbd", "apache2"] {
        assert!(top.contains(name), "`docker top` lacks {name}:\n{top}");
    }
    let ps = s.ok("docker exec lamp-test ps -o pid,comm -A");
    let pid1 = ps
        .lines()
        .find(|l| l.split_whitespace().next() == Some("1"))
        .unwrap_or_else(|| panic!("no PID 1 in ps:\n{ps}"));
    assert!(
        pid1.contains("supervisor"),
        "PID 1 is not supervisor:\n{ps}"
    );

    // apache2 killed from inside: restarted at once, and the page comes back.
    let spawned_before: Vec<u64> = s
        .events()
        .iter()
        .filter(|e| kind(e) == "spawned" && program(e) == "apache2")
        .filter_map(|e| e["pid"].as_u64())
        .collect();
    let apache_pid = s.ok("docker exec lamp-test pgrep -o apache2");
    assert_eq!(
        apache_pid.trim().parse::<u64>().ok(),
        spawned_before.last().copied(),
        "the oldest apache2 is not the one supervisor spawned"
    );
    s.ok("docker exec lamp-test sh -c 'kill $(pgrep -o apache2)'");
    let events = s.wait_events("apache2 RUNNING again", WAIT, |ev| {
        ev.iter()
            .filter(|e| kind(e) == "running" && program(e) == "apache2")
            .count()
            >= 2
    });
    let apache: Vec<&Value> = events.iter().filter(|e| program(e) == "apache2").collect();
    let exited = apache
        .iter()
        .position(|e| kind(e) == "exited")
        .expect("an exited event for apache2");
    assert_eq!(
        msg(apache[exited]),
        "exited: apache2 (exit status 0; expected)"
    );
    let spawned = apache[exited + 1];
    assert_eq!(kind(spawned), "spawned", "{spawned}");
    let new_pid = spawned["pid"].as_u64().expect("pid");
    assert_eq!(
        msg(spawned),
        format!("spawned: 'apache2' with pid {new_pid}")
    );
    let running = apache[exited + 2];
    assert!(
        msg(running).starts_with("success: apache2 entered RUNNING state, "),
        "{running}"
    );
    let restart_ms = ms_of_day(spawned) - ms_of_day(apache[exited]);
    eprintln!("apache2 restart: exited -> spawned in {restart_ms} ms (from the log)");
    assert!(restart_ms < 2000, "restart took {restart_ms} ms");
    s.until("curl -s http://127.0.0.1:8081/", WAIT, |o| {
        o.contains("It works")
    });
    let metrics = s.ok("curl -s http://127.0.0.1:9470/metrics");
    assert!(
        metrics.contains("supervisor_program_restarts_total{program=\"apache2\"} 1"),
        "/metrics does not show the restart:\n{}",
        metrics
            .lines()
            .filter(|l| l.contains("restarts"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // SIGHUP reloads; an unchanged config touches no program.
    let spawns = |ev: &[Value]| ev.iter().filter(|e| kind(e) == "spawned").count();
    let spawns_before = spawns(&s.events());
    s.ok("docker kill --signal HUP lamp-test");
    let events = s.wait_events("reloaded", WAIT, |ev| {
        ev.iter().any(|e| kind(e) == "reloaded")
    });
    assert_eq!(
        spawns(&events),
        spawns_before,
        "a reload restarted a program"
    );

    // The control CLI, and the image's HEALTHCHECK (`supervisor status`) turning healthy.
    s.ok("docker exec lamp-test supervisor status");
    s.until(
        "docker inspect --format '{{.State.Health.Status}}' lamp-test",
        WAIT,
        |o| o.trim() == "healthy",
    );

    // docker stop: well inside Docker's 10 s, exit 0, nothing SIGKILLed, MariaDB shut down.
    let started = Instant::now();
    s.ok("docker stop lamp-test");
    let took = started.elapsed();
    eprintln!("docker stop took {:.2}s", took.as_secs_f64());
    assert!(took < Duration::from_secs(5), "docker stop took {took:?}");
    let code = s.ok("docker inspect --format '{{.State.ExitCode}}' lamp-test");
    assert_eq!(code.trim(), "0", "the supervisor's exit code");
    let events = s.events();
    let killing: Vec<&Value> = events.iter().filter(|e| kind(e) == "killing").collect();
    assert!(killing.is_empty(), "something was SIGKILLed: {killing:?}");
    assert!(
        events.iter().any(|e| kind(e) == "exiting"),
        "no `exiting` event"
    );

    // A second start needs no crash recovery: the first run ended with a normal shutdown.
    let apache_running = |ev: &[Value]| {
        ev.iter()
            .filter(|e| kind(e) == "running" && program(e) == "apache2")
            .count()
    };
    let before = apache_running(&s.events());
    s.ok("docker start lamp-test");
    s.until(
        "docker exec lamp-test mysql -e 'SELECT VERSION()'",
        WAIT,
        |o| o.contains("MariaDB"),
    );
    let log = s.ok("docker exec lamp-test cat /var/log/mysql/error.log");
    let runs: Vec<&str> = log.split("mysqld_safe Starting mariadbd").collect();
    assert_eq!(
        runs.len(),
        3,
        "expected two MariaDB starts in its log:\n{log}"
    );
    assert!(
        runs[1].contains("Normal shutdown") && runs[1].contains("Shutdown complete"),
        "the first run did not shut down normally:\n{}",
        runs[1]
    );
    for (i, run) in runs[1..].iter().enumerate() {
        assert!(
            !run.contains("crash recovery") && !run.contains("was not closed cleanly"),
            "MariaDB start #{} needed recovery:\n{run}",
            i + 1
        );
    }

    // A program gone FATAL makes the container unhealthy. apache2 starts once MariaDB is
    // ready, which is also when the query above first answers: wait until it runs again.
    s.wait_events("apache2 RUNNING in the second run", WAIT, |ev| {
        apache_running(ev) > before
    });
    s.ok("docker exec lamp-test chmod -x /usr/local/bin/apache2-foreground");
    s.ok("docker exec lamp-test sh -c 'kill $(pgrep -o apache2)'");
    s.wait_events("apache2 FATAL", WAIT, |ev| {
        ev.iter()
            .any(|e| kind(e) == "fatal" && program(e) == "apache2")
    });
    let out = s.sh("docker exec lamp-test supervisor status");
    assert_ne!(
        out.code, 0,
        "status exits 0 with apache2 FATAL:\n{}",
        out.stdout
    );
    s.until(
        "docker inspect --format '{{.State.Health.Status}}' lamp-test",
        WAIT,
        |o| o.trim() == "unhealthy",
    );

    let started = Instant::now();
    s.ok("docker stop lamp-test");
    eprintln!(
        "second docker stop took {:.2}s",
        started.elapsed().as_secs_f64()
    );
    s.ok("docker rm lamp-test");
    s.check_readme();

    // With the capabilities, `supervisor why` names the kill run through `docker exec`.
    // Debian's Docker 20.10 does not know CAP_BPF/CAP_PERFMON; its seccomp profile allows
    // bpf(2) with CAP_SYS_ADMIN, which the probe accepts too.
    let mut w = Session::new("lamp-why");
    w.ok("docker run -d --network host --cap-add SYS_ADMIN --name lamp-why supervisor-lamp");
    w.wait_events("apache2 RUNNING", WAIT, |ev| {
        ev.iter()
            .any(|e| kind(e) == "running" && program(e) == "apache2")
    });
    w.ok("docker exec lamp-why sh -c 'kill $(pgrep -o apache2)'");
    let events = w.wait_events("apache2 exited", WAIT, |ev| {
        ev.iter()
            .any(|e| kind(e) == "exited" && program(e) == "apache2")
    });
    let exited = events
        .iter()
        .find(|e| kind(e) == "exited" && program(e) == "apache2")
        .expect("exited");
    assert!(
        msg(exited)
            .starts_with("exited: apache2 (exit status 0; expected) after SIGTERM from pid "),
        "{exited}"
    );
    assert_eq!(exited["killed_by"][0]["sender_comm"], "sh", "{exited}");
    let why = w.ok("docker exec lamp-why supervisor why apache2");
    assert!(
        why.contains("SIGTERM from pid")
            && why.contains("'sh' (uid 0)")
            && why.contains("inside the container"),
        "{why}"
    );
    assert!(
        why.contains("Then the supervisor started it again"),
        "{why}"
    );
    w.ok("docker rm -f lamp-why");
    w.check_readme();
}

#[test]
fn minimal_image() {
    if !docker_ready() {
        return;
    }
    for port in [8082, 9471] {
        assert_port_free(port);
    }
    let mut s = Session::new("minimal-test");
    s.ok("docker run -d --network host --name minimal-test supervisor-minimal");
    s.until("curl -s http://127.0.0.1:8082/", WAIT, |o| {
        o.contains("supervisor-minimal")
    });
    s.wait_events("both programs RUNNING", WAIT, |ev| {
        ["httpd", "ticker"]
            .iter()
            .all(|p| ev.iter().any(|e| kind(e) == "running" && program(e) == *p))
    });
    let ps = s.ok("docker exec minimal-test ps");
    let pid1 = ps
        .lines()
        .find(|l| l.split_whitespace().next() == Some("1"))
        .unwrap_or_else(|| panic!("no PID 1 in ps:\n{ps}"));
    assert!(
        pid1.contains("supervisor"),
        "PID 1 is not supervisor:\n{ps}"
    );
    let started = Instant::now();
    s.ok("docker stop minimal-test");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "docker stop took {took:?}");
    let code = s.ok("docker inspect --format '{{.State.ExitCode}}' minimal-test");
    assert_eq!(code.trim(), "0", "the supervisor's exit code");
    assert!(
        !s.events().iter().any(|e| kind(e) == "killing"),
        "something was SIGKILLed"
    );
    s.ok("docker rm minimal-test");
    s.check_readme();
}

#[test]
fn words_split_like_sh() {
    assert_eq!(
        words("docker exec x sh -c 'kill $(pgrep -o apache2)'"),
        [
            "docker",
            "exec",
            "x",
            "sh",
            "-c",
            "kill $(pgrep -o apache2)"
        ]
    );
    assert_eq!(
        words("docker inspect --format '{{.State.ExitCode}}' x"),
        ["docker", "inspect", "--format", "{{.State.ExitCode}}", "x"]
    );
}
