//! Issue 8 end to end: start-up dependencies, readiness checks (tcp, log, notify, exec) and
//! health checks, through the real binary as PID 1.

use std::time::Duration;

use e2e::*;

const T: Duration = Duration::from_secs(20);

fn seq(e: &serde_json::Value) -> u64 {
    e["seq"].as_u64().expect("seq")
}

/// `web` depends on `db`, whose readiness is a TCP port it opens after 2 s: `web` is spawned
/// only once the port accepts; on shutdown `web` stops before `db`.
#[test]
fn web_waits_for_db_to_accept_connections_and_stops_first() {
    let dir = TempDir::new("deps");
    let port = free_port();
    let conf = dir.write(
        "s.toml",
        &format!(
            r#"
[programs.db]
command = "sh -c 'sleep 2; exec python3 -m http.server --bind 127.0.0.1 {port}'"
ready = "tcp:127.0.0.1:{port}"
ready_timeout = 20
priority = 900

[programs.web]
command = "sleep 1000"
depends_on = ["db"]
priority = 10
startsecs = 0
"#
        ),
    );
    let mut sup = Sup::with_config(Mode::Pid1, dir.path(), &conf);
    let web_spawned = sup.wait_event("web spawned", T, |e| is(e, "spawned", "web"));
    let events = sup.events();
    let db_spawned = events
        .iter()
        .find(|e| is(e, "spawned", "db"))
        .expect("db spawned");
    let waiting = events
        .iter()
        .find(|e| is(e, "waiting", "web"))
        .expect("web waited");
    assert_eq!(msg(waiting), "waiting: web starts when db is ready");
    let ready = events
        .iter()
        .find(|e| is(e, "ready", "db"))
        .expect("db ready");
    assert_eq!(msg(ready), format!("ready: db (tcp:127.0.0.1:{port})"));
    // web (priority 10) comes first and waits; db is spawned, becomes ready, then web starts.
    assert!(
        seq(waiting) < seq(ready) && seq(db_spawned) < seq(ready) && seq(ready) < seq(&web_spawned)
    );
    let db_running = events.iter().find(|e| is(e, "running", "db")).unwrap();
    assert!(msg(db_running).starts_with("success: db entered RUNNING state, ready check passed"));
    // db's priority (900) alone would stop it first; the dependency wins.
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(T), 0);
    let events = sup.events();
    let stopped: Vec<&str> = events
        .iter()
        .filter(|e| kind(e) == "stopped")
        .map(program)
        .collect();
    assert_eq!(stopped, vec!["web", "db"]);
}

/// `log:` and `notify` readiness with real programs, and `exec:` readiness run (and reaped) by
/// the supervisor.
#[test]
fn log_notify_and_exec_readiness() {
    let dir = TempDir::new("ready");
    let flag = dir.path().join("flag");
    let conf = dir.write(
        "s.toml",
        &format!(
            r#"
[programs.logged]
command = "sh -c 'sleep 0.5; echo starting; echo \"2026 [Note] mysqld: ready for connections.\" >&2; exec sleep 1000'"
ready = "log:ready for connections"

[programs.notified]
command = "sh -c 'sleep 0.5; echo READY >&$SUPERVISOR_READY_FD; exec sleep 1000'"
ready = "notify"

[programs.execd]
command = "sh -c 'sleep 0.5; touch {flag}; exec sleep 1000'"
ready = "exec:test -e {flag}"
"#,
            flag = flag.display()
        ),
    );
    let mut sup = Sup::with_config(Mode::Pid1, dir.path(), &conf);
    let r = sup.wait_event("logged ready", T, |e| is(e, "ready", "logged"));
    assert_eq!(
        msg(&r),
        "ready: logged (log line matched /ready for connections/)"
    );
    let r = sup.wait_event("notified ready", T, |e| is(e, "ready", "notified"));
    assert_eq!(
        msg(&r),
        "ready: notified (notified on $SUPERVISOR_READY_FD)"
    );
    let r = sup.wait_event("execd ready", T, |e| is(e, "ready", "execd"));
    assert_eq!(
        msg(&r),
        format!("ready: execd (exec:test -e {})", flag.display())
    );
    // The exec checks' processes were reaped by the supervisor, not as unknown orphans.
    assert!(
        !sup.events().iter().any(|e| kind(e) == "orphan_reaped"),
        "{}",
        sup.log_text()
    );
    assert!(zombies_in_ns_of(sup.host_pid()).is_empty());
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(T), 0);
}

/// A program that never becomes ready: the timeout is a failed start → BACKOFF → FATAL.
#[test]
fn readiness_timeout_backs_off_then_fatal() {
    let dir = TempDir::new("notready");
    let port = free_port();
    let conf = dir.write(
        "s.toml",
        &format!(
            "[programs.never]\ncommand = \"sleep 1000\"\nready = \"tcp:127.0.0.1:{port}\"\nready_timeout = 1\nstartretries = 1\n"
        ),
    );
    let sup = Sup::with_config(Mode::Pid1, dir.path(), &conf);
    let fatal = sup.wait_event("FATAL", T, |e| is(e, "fatal", "never"));
    assert_eq!(
        msg(&fatal),
        "gave up: never entered FATAL state, too many start retries too quickly"
    );
    let events = sup.events();
    let killing: Vec<_> = events
        .iter()
        .filter(|e| is(e, "killing", "never"))
        .collect();
    assert_eq!(killing.len(), 2, "one kill per failed start");
    assert!(msg(killing[0]).contains("did not pass its readiness check within 1 seconds"));
    let exited = events.iter().find(|e| is(e, "exited", "never")).unwrap();
    assert_eq!(exited["state"], "BACKOFF");
    assert!(!events.iter().any(|e| is(e, "running", "never")));
}

/// A program that stays alive but stops answering its HTTP health check is restarted after
/// `health_retries` failures, with cause `unhealthy` in the log and the metrics.
#[test]
fn unanswering_program_is_restarted_as_unhealthy() {
    let dir = TempDir::new("health");
    let port = free_port();
    let metrics = free_port();
    let conf = dir.write(
        "s.toml",
        &format!(
            r#"
[programs.api]
command = ["python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"]
directory = "/"
ready = "tcp:127.0.0.1:{port}"
health = "http://127.0.0.1:{port}/"
health_interval = 0.5
health_timeout = 0.5
health_retries = 2
stopwaitsecs = 1
"#
        ),
    );
    let addr = format!("127.0.0.1:{metrics}");
    let sup = Sup::start(
        Mode::Pid1,
        dir.path(),
        &["run", "-c", conf.to_str().unwrap(), "--metrics-addr", &addr],
    );
    let ready = sup.wait_event("api ready", T, |e| is(e, "ready", "api"));
    std::thread::sleep(Duration::from_millis(1200)); // a couple of passing checks
    let body = http_get(&addr, "/metrics").body;
    assert!(
        body.contains("supervisor_program_health_checks_total{program=\"api\",result=\"success\"}"),
        "{body}"
    );
    assert!(
        body.contains("supervisor_program_ready{program=\"api\"} 1"),
        "{body}"
    );
    // Alive but wedged: SIGSTOP.
    sup.signal_program_pid(pid(&ready), libc::SIGSTOP);
    let u = sup.wait_event("unhealthy", T, |e| is(e, "unhealthy", "api"));
    assert!(
        msg(&u).starts_with("unhealthy: api failed 2 health checks in a row"),
        "{}",
        msg(&u)
    );
    let stopped = sup.wait_event("api stopped", T, |e| is(e, "stopped", "api"));
    assert_eq!(stopped["cause"], "unhealthy");
    sup.wait_nth("api ready again", 2, T, |e| is(e, "ready", "api"));
    let body = http_get(&addr, "/metrics").body;
    assert!(
        body.contains("supervisor_program_exits_total{program=\"api\",cause=\"unhealthy\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("supervisor_program_restarts_total{program=\"api\"} 1"),
        "{body}"
    );
}
