//! Tests of the metrics sink: events in, exposition out (checked by `promtool` where installed),
//! and the `/proc` scan on real process groups.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::proc_scan::{parse_stat, Scanner, Stat};
use super::*;
use crate::event::Level;

fn program_event(kind: Kind, name: &str, group: Option<&str>, state: State) -> Event {
    let mut e = Event::new(Level::Info, kind, format!("{kind:?}"));
    e.program = Some(name.to_string());
    e.group = group.map(str::to_string);
    e.state = Some(state);
    e
}

fn added(name: &str, group: Option<&str>) -> Event {
    let mut e = program_event(Kind::Added, name, group, State::Stopped);
    e.restarts = Some(0);
    e
}

fn spawned(name: &str, pid: u32, restarts: u64) -> Event {
    let mut e = program_event(Kind::Spawned, name, None, State::Starting);
    e.pid = Some(pid);
    e.restarts = Some(restarts);
    e
}

fn exited(name: &str, code: Option<i32>, signal: Option<&str>, cause: ExitCause) -> Event {
    let mut e = program_event(Kind::Exited, name, None, State::Backoff);
    e.exit_code = code;
    e.signal = signal.map(str::to_string);
    e.cause = Some(cause);
    e
}

fn render(m: &Metrics) -> String {
    String::from_utf8(m.render().expect("render")).expect("utf-8")
}

/// The value of the sample whose line starts with `series` (name plus exact label text).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Runs `promtool check metrics` on `text` when promtool is installed; returns its complaints.
pub(crate) fn promtool_complaints(text: &str) -> Option<String> {
    use std::io::Write;
    let promtool = Path::new("/usr/bin/promtool");
    if !promtool.exists() {
        eprintln!("promtool not installed: skipping the lint");
        return None;
    }
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool output");
    Some(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

#[test]
fn every_series_exists_as_soon_as_a_program_is_added() {
    let m = Metrics::new();
    m.record(&added("web", None));
    m.record(&added("db", Some("backend")));
    let text = render(&m);
    for f in FAMILIES {
        assert!(
            !f.help.contains(['\\', '\n']),
            "HELP of {} needs escaping",
            f.name
        );
        assert!(
            text.contains(&format!("# HELP {} ", f.name)),
            "no HELP for {}\n{text}",
            f.name
        );
        let ty = if f.kind == Type::Counter {
            "counter"
        } else {
            "gauge"
        };
        assert!(
            text.contains(&format!("# TYPE {} {ty}\n", f.name)),
            "no TYPE for {}",
            f.name
        );
    }
    assert_eq!(
        value(&text, r#"supervisor_program_restarts_total{program="web"}"#),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            r#"supervisor_program_restarts_total{program="db",group="backend"}"#
        ),
        Some(0.0)
    );
    for cause in ExitCause::ALL {
        let s = format!(
            r#"supervisor_program_exits_total{{program="web",cause="{}"}}"#,
            cause.as_str()
        );
        assert_eq!(value(&text, &s), Some(0.0), "{s}");
    }
    for state in State::ALL {
        let s =
            format!(r#"supervisor_program_state{{program="db",group="backend",state="{state}"}}"#);
        assert_eq!(
            value(&text, &s),
            Some(if state == State::Stopped { 1.0 } else { 0.0 }),
            "{s}"
        );
    }
    assert_eq!(
        value(&text, r#"supervisor_program_up{program="web"}"#),
        Some(0.0)
    );
    assert_eq!(value(&text, "supervisor_orphans_reaped_total"), Some(0.0));
    assert_eq!(value(&text, "supervisor_probe_loaded"), Some(0.0));
    assert_eq!(
        value(&text, "supervisor_log_events_dropped_total"),
        Some(0.0)
    );
    m.add_log_events_dropped(3);
    assert_eq!(
        value(&render(&m), "supervisor_log_events_dropped_total"),
        Some(3.0)
    );
    assert_eq!(
        value(
            &text,
            &format!(
                r#"supervisor_build_info{{version="{}",config_hash=""}}"#,
                env!("CARGO_PKG_VERSION")
            )
        ),
        Some(1.0)
    );
    assert!(
        text.contains("\nprocess_resident_memory_bytes "),
        "no process_* metrics:\n{text}"
    );
    assert!(text.contains("\nprocess_start_time_seconds "));
    if let Some(complaints) = promtool_complaints(&text) {
        assert_eq!(complaints, "", "promtool check metrics complained");
    }
}

#[test]
fn counters_and_states_follow_the_events() {
    let m = Metrics::new();
    m.record(&added("web", None));
    m.record(&spawned("web", 4_000_000, 0));
    m.record(&program_event(Kind::Running, "web", None, State::Running));
    let text = render(&m);
    assert_eq!(
        value(&text, r#"supervisor_program_up{program="web"}"#),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            r#"supervisor_program_state{program="web",state="RUNNING"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            r#"supervisor_program_state{program="web",state="STARTING"}"#
        ),
        Some(0.0)
    );
    let start = value(
        &text,
        r#"supervisor_program_start_time_seconds{program="web"}"#,
    )
    .expect("start time");
    let now = unix_seconds(SystemTime::now());
    assert!(
        start > now - 60.0 && start <= now,
        "start time {start} vs now {now}"
    );
    let uptime =
        value(&text, r#"supervisor_program_uptime_seconds{program="web"}"#).expect("uptime");
    assert!((0.0..60.0).contains(&uptime));

    m.record(&exited("web", None, Some("SIGTERM"), ExitCause::Signaled));
    m.record(&spawned("web", 4_000_001, 1));
    m.record(&exited("web", None, Some("SIGSEGV"), ExitCause::CoreDumped));
    m.record(&spawned("web", 4_000_002, 2));
    m.record(&exited("web", Some(3), None, ExitCause::Exited));
    let mut failed = program_event(Kind::SpawnFailed, "web", None, State::Backoff);
    failed.cause = Some(ExitCause::SpawnFailed);
    m.record(&failed);
    m.record(&program_event(Kind::Fatal, "web", None, State::Fatal));
    m.record(&Event::new(
        Level::Info,
        Kind::OrphanReaped,
        "reaped unknown pid 7",
    ));
    m.record(&Event::new(
        Level::Info,
        Kind::OrphanReaped,
        "reaped unknown pid 8",
    ));
    let text = render(&m);
    let get = |s: &str| value(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
    assert_eq!(
        get(r#"supervisor_program_restarts_total{program="web"}"#),
        2.0
    );
    assert_eq!(
        get(r#"supervisor_program_exits_total{program="web",cause="signaled"}"#),
        1.0
    );
    assert_eq!(
        get(r#"supervisor_program_exits_total{program="web",cause="core_dumped"}"#),
        1.0
    );
    assert_eq!(
        get(r#"supervisor_program_exits_total{program="web",cause="exited"}"#),
        1.0
    );
    assert_eq!(
        get(r#"supervisor_program_exits_total{program="web",cause="spawn_failed"}"#),
        1.0
    );
    assert_eq!(
        get(r#"supervisor_program_exits_total{program="web",cause="oom_killed"}"#),
        0.0
    );
    assert_eq!(
        get(r#"supervisor_program_last_exit_code{program="web"}"#),
        3.0
    );
    assert_eq!(get(r#"supervisor_program_last_signal{program="web"}"#), 0.0);
    assert_eq!(
        get(r#"supervisor_program_state{program="web",state="FATAL"}"#),
        1.0
    );
    assert_eq!(get(r#"supervisor_program_up{program="web"}"#), 0.0);
    assert_eq!(
        get(r#"supervisor_program_uptime_seconds{program="web"}"#),
        0.0
    );
    assert_eq!(get("supervisor_orphans_reaped_total"), 2.0);

    // A signal death reads as the shell reports it: 128 + signal.
    m.record(&spawned("web", 4_000_003, 3));
    m.record(&exited("web", None, Some("SIGKILL"), ExitCause::Signaled));
    let text = render(&m);
    assert_eq!(
        value(&text, r#"supervisor_program_last_exit_code{program="web"}"#),
        Some(137.0)
    );
    assert_eq!(
        value(&text, r#"supervisor_program_last_signal{program="web"}"#),
        Some(9.0)
    );

    // Removed by a reload: its series go.
    let mut removed = Event::new(Level::Debug, Kind::Removed, "removed: web");
    removed.program = Some("web".into());
    m.record(&removed);
    let text = render(&m);
    assert!(!text.contains(r#"program="web""#), "{text}");
}

#[test]
fn label_values_are_escaped() {
    let m = Metrics::new();
    m.record(&added("we\"ird\\na\nme", Some("g")));
    let text = render(&m);
    assert!(
        text.contains(r#"supervisor_program_up{program="we\"ird\\na\nme",group="g"} 0"#),
        "{text}"
    );
    if let Some(complaints) = promtool_complaints(&text) {
        assert_eq!(complaints, "");
    }
}

#[test]
fn stat_lines_parse_even_with_odd_command_names() {
    let line = "4242 (we ird) (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 150 50 7 3 20 0 1 0 12345 8392704 321 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
    assert_eq!(
        parse_stat(line.as_bytes()),
        Some(Stat {
            zombie: false,
            pgrp: 4242,
            cpu_ticks: 210,
            rss_pages: 321
        })
    );
    assert!(
        parse_stat(b"7 (z) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0")
            .is_some_and(|s| s.zombie)
    );
    assert_eq!(parse_stat(b"garbage"), None);
    assert_eq!(parse_stat(b"1 (x) S 1"), None);
}

/// A process group of `n` sleeping processes (`sh` plus `n - 1` children), killed on drop.
struct Group(std::process::Child);

impl Group {
    fn start(n: usize) -> Group {
        use std::os::unix::process::CommandExt;
        let script = format!(
            "for i in $(seq {}); do sleep 60 & done; exec sleep 61",
            n - 1
        );
        Group(
            Command::new("sh")
                .args(["-c", &script])
                .process_group(0)
                .spawn()
                .expect("spawn sh"),
        )
    }
    fn pgid(&self) -> u32 {
        self.0.id()
    }
    /// Waits until the scanner sees `n` processes in the group; returns the last usage.
    fn wait_for(&self, scanner: &mut Scanner, watched: &[u32], n: u32) -> proc_scan::Usage {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let u = scanner
                .usage(watched)
                .get(&self.pgid())
                .copied()
                .unwrap_or_default();
            if u.processes == n || Instant::now() > deadline {
                return u;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test created.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

#[test]
fn usage_is_summed_over_the_process_group() {
    let mut scanner = Scanner::default();
    let a = Group::start(3);
    let u = a.wait_for(&mut scanner, &[a.pgid()], 3);
    assert_eq!(u.processes, 3, "{u:?}");
    assert!(u.rss_bytes > 100 * 1024, "{u:?}");
    assert!(u.cpu_seconds >= 0.0);
    // Read again from the files kept open: same answer.
    assert_eq!(
        scanner
            .usage(&[a.pgid()])
            .get(&a.pgid())
            .map(|u| u.processes),
        Some(3)
    );

    // A group that existed (unwatched) at the last scan, then becomes watched: a restart
    // noticed by the scan before the metrics hear of it.
    let b = Group::start(2);
    b.wait_for(&mut scanner, &[a.pgid()], 0);
    std::thread::sleep(Duration::from_millis(100));
    let _ = scanner.usage(&[a.pgid()]);
    let u = b.wait_for(&mut scanner, &[a.pgid(), b.pgid()], 2);
    assert_eq!(u.processes, 2, "{u:?}");

    // The first group dies (its orphans become zombies of whoever reaps them): zero.
    let a_pgid = a.pgid();
    drop(a);
    // SIGKILL is delivered asynchronously: the killed members may run for an instant more.
    let deadline = Instant::now() + Duration::from_secs(10);
    let u = loop {
        let u = scanner.usage(&[a_pgid, b.pgid()]);
        if u.get(&a_pgid).map(|u| u.processes) == Some(0) || Instant::now() > deadline {
            break u;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(u.get(&a_pgid).map(|u| u.processes), Some(0), "{u:?}");
    assert_eq!(u.get(&b.pgid()).map(|u| u.processes), Some(2), "{u:?}");
    // Nothing watched: nothing held.
    assert!(scanner.usage(&[]).is_empty());
}

/// The cost of a scrape of 1,000 programs of one live process each: first (opening every
/// `stat` file) and then steady (re-reading open files). Run with `--ignored --nocapture`.
#[test]
#[ignore = "a benchmark: starts 1,000 processes"]
fn scrape_of_1000_live_programs() {
    use std::os::unix::process::CommandExt;
    let mut children: Vec<std::process::Child> = (0..1000)
        .map(|_| {
            Command::new("sleep")
                .arg("60")
                .process_group(0)
                .spawn()
                .expect("spawn sleep")
        })
        .collect();
    let m = Metrics::new();
    for (i, c) in children.iter().enumerate() {
        let name = format!("program-{i:04}");
        m.record(&added(&name, None));
        m.record(&spawned(&name, c.id(), 0));
        m.record(&program_event(Kind::Running, &name, None, State::Running));
    }
    let t = Instant::now();
    let text = render(&m);
    let first = t.elapsed();
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let _ = render(&m);
        times.push(t.elapsed());
    }
    times.sort();
    let scan = {
        let pids: Vec<u32> = children.iter().map(|c| c.id()).collect();
        let mut s = Scanner::default();
        let _ = s.usage(&pids);
        let t = Instant::now();
        let _ = s.usage(&pids);
        t.elapsed()
    };
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    assert_eq!(
        value(
            &text,
            r#"supervisor_program_processes{program="program-0999"}"#
        ),
        Some(1.0)
    );
    eprintln!(
        "scrape of 1000 live programs: first {first:?}, then median {:?} (scan alone {scan:?}), {} bytes",
        times[times.len() / 2],
        text.len()
    );
}

/// Scrape cost with many programs: the registry plus one `/proc` pass.
#[test]
fn scrape_of_1000_programs_is_quick() {
    let m = Metrics::new();
    for i in 0..1000u32 {
        let name = format!("program-{i:04}");
        m.record(&added(&name, None));
        // Pids far above pid_max: no such groups, but the /proc pass is made in full.
        m.record(&spawned(&name, 10_000_000 + i, 0));
        m.record(&program_event(Kind::Running, &name, None, State::Running));
    }
    let _ = render(&m);
    let runs = 5;
    let t = Instant::now();
    let mut len = 0;
    for _ in 0..runs {
        len = render(&m).len();
    }
    let each = t.elapsed() / runs;
    eprintln!("scrape of 1000 programs: {each:?}, {len} bytes");
    // Generous for a debug build on a loaded CI machine; the release figure is far lower.
    assert!(each < Duration::from_millis(500), "scrape took {each:?}");
}

#[test]
fn own_process_metrics_come_from_proc_self() {
    let line = b"42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 5 0 1234 11108352 1448 18446744073709551615";
    let s = process::parse_self_stat(line).expect("parse");
    assert_eq!(
        s,
        process::SelfStat {
            utime: 7,
            stime: 3,
            threads: 5,
            starttime: 1234,
            vsize: 11_108_352,
            rss_pages: 1448,
        }
    );
    assert_eq!(
        process::parse_btime("cpu  1 2\nbtime 1764000000\nprocesses 9\n"),
        Some(1_764_000_000)
    );
    assert_eq!(process::parse_self_stat(b"garbage"), None);

    let text = render(&Metrics::new());
    for f in [
        &process::CPU,
        &process::OPEN_FDS,
        &process::MAX_FDS,
        &process::VIRTUAL,
        &process::RESIDENT,
        &process::START_TIME,
        &process::THREADS,
    ] {
        assert!(
            text.contains(&format!("# HELP {} {}\n# TYPE {} ", f.name, f.help, f.name)),
            "no {} family:\n{text}",
            f.name
        );
    }
    // The values are this test process's own.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |k: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{k} in /proc/self/status"))
    };
    let rss = value(&text, "process_resident_memory_bytes").unwrap();
    assert!(
        rss > 0.0 && rss < 4.0 * field("VmHWM:") * 1024.0,
        "rss {rss}"
    );
    assert!(value(&text, "process_threads").unwrap() >= 1.0);
    let fds = value(&text, "process_open_fds").unwrap();
    let listed = std::fs::read_dir("/proc/self/fd").unwrap().count() as f64;
    assert!(
        (fds - listed).abs() <= 8.0,
        "open fds {fds} vs {listed} listed"
    );
    let start = value(&text, "process_start_time_seconds").unwrap();
    let now = unix_seconds(SystemTime::now());
    assert!(
        start > now - 3600.0 && start <= now + 1.0,
        "start {start}, now {now}"
    );
}

fn observed(name: &str, sender: &str, outside: Option<bool>) -> Event {
    let mut e = program_event(Kind::SignalObserved, name, None, State::Running);
    e.signal = Some("SIGTERM".into());
    e.sender = Some(sender.into());
    e.killed_by = Some(vec![crate::event::KilledBy {
        signal: "SIGTERM".into(),
        code: "SI_USER".into(),
        result: "delivered".into(),
        sender_pid: outside.map(|o| if o { 0 } else { 7 }),
        sender_comm: Some(sender.into()),
        sender_uid: Some(0),
        sender_ppid: None,
        sender_parent_comm: None,
        outside_namespace: outside,
        from_process: sender != "kernel",
        reason: None,
        count: 1,
        target: None,
        target_pid: None,
        before_exit_s: None,
        text: "SIGTERM".into(),
    }]);
    e
}

#[test]
fn signals_say_whether_they_came_from_outside_and_build_info_has_the_config_hash() {
    let m = Metrics::new();
    m.set_config_hash("00000000000000aa".into());
    m.record(&added("web", None));
    m.record(&observed("web", "kill", Some(true)));
    m.record(&observed("web", "kill", Some(true)));
    m.record(&observed("web", "kill", Some(false)));
    m.record(&observed("web", "supervisor", Some(false)));
    m.record(&observed("web", "kernel", None));
    let text = render(&m);
    let series = |sender: &str, origin: &str| {
        format!(
            r#"supervisor_program_signals_total{{program="web",signal="SIGTERM",sender="{sender}",origin="{origin}"}}"#
        )
    };
    assert_eq!(
        value(&text, &series("kill", "outside")),
        Some(2.0),
        "{text}"
    );
    assert_eq!(value(&text, &series("kill", "inside")), Some(1.0));
    assert_eq!(value(&text, &series("supervisor", "supervisor")), Some(1.0));
    assert_eq!(value(&text, &series("kernel", "kernel")), Some(1.0));
    let info = format!(
        r#"supervisor_build_info{{version="{}",config_hash="00000000000000aa"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(value(&text, &info), Some(1.0), "{text}");
    // A reload brings the new configuration's hash.
    let mut reloaded = Event::new(Level::Info, Kind::Reloaded, "reloaded".to_string());
    reloaded.config_hash = Some("00000000000000bb".into());
    m.record(&reloaded);
    let text = render(&m);
    assert_eq!(value(&text, &info.replace("aa", "bb")), Some(1.0), "{text}");
    if let Some(complaints) = promtool_complaints(&text) {
        assert!(complaints.is_empty(), "{complaints}");
    }
}
