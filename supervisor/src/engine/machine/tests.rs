//! Transition tests: the state machine as a table, no processes.

use super::*;
use crate::config::{Location, ProgramSpec};

fn spec() -> ProgramSpec {
    ProgramSpec::new(
        "web",
        vec!["/bin/true".into()],
        Location {
            file: "t.conf".into(),
            line: 1,
        },
    )
}

fn t0() -> (Instant, SystemTime) {
    (Instant::now(), SystemTime::now())
}

fn kinds(events: &[Event]) -> Vec<Kind> {
    events.iter().map(|e| e.kind).collect()
}

#[test]
fn start_spawn_then_running_after_startsecs() {
    let (now, wall) = t0();
    let mut p = Program::new(spec());
    assert_eq!(p.start(), vec![Action::Spawn]);
    let ev = p.spawned(42, now, wall);
    assert_eq!(kinds(&ev), vec![Kind::Spawned]);
    assert_eq!(ev[0].msg, "spawned: 'web' with pid 42");
    assert_eq!(p.state, State::Starting);
    assert_eq!(p.deadline, Some(now + Duration::from_secs(1)));
    // Too early: nothing.
    assert!(p.timer(now + Duration::from_millis(500)).0.is_empty());
    let (ev, act) = p.timer(now + Duration::from_secs(1));
    assert!(act.is_empty());
    assert_eq!(ev[0].msg, "success: web entered RUNNING state, process has stayed up for > than 1 seconds (startsecs)");
    assert_eq!(p.state, State::Running);
    assert_eq!(p.deadline, None, "a RUNNING program has no timer");
}

#[test]
fn startsecs_zero_is_running_at_once() {
    let (now, wall) = t0();
    let mut s = spec();
    s.startsecs = Duration::ZERO;
    let mut p = Program::new(s);
    p.start();
    let ev = p.spawned(1, now, wall);
    assert_eq!(kinds(&ev), vec![Kind::Spawned, Kind::Running]);
    assert_eq!(p.state, State::Running);
}

/// (exit status, autorestart, exitcodes) → (expected, restarted)
#[test]
fn exit_from_running_follows_autorestart_and_exitcodes() {
    let table: &[(ExitStatus, AutoRestart, &[i32], bool, bool)] = &[
        (
            ExitStatus::Code(0),
            AutoRestart::Unexpected,
            &[0],
            true,
            false,
        ),
        (
            ExitStatus::Code(1),
            AutoRestart::Unexpected,
            &[0],
            false,
            true,
        ),
        (
            ExitStatus::Code(2),
            AutoRestart::Unexpected,
            &[0, 2],
            true,
            false,
        ),
        (ExitStatus::Code(0), AutoRestart::Always, &[0], true, true),
        (ExitStatus::Code(1), AutoRestart::Never, &[0], false, false),
        (
            ExitStatus::Signal {
                signo: libc::SIGTERM,
                core_dumped: false,
            },
            AutoRestart::Unexpected,
            &[0],
            false,
            true,
        ),
        (
            ExitStatus::Signal {
                signo: libc::SIGSEGV,
                core_dumped: true,
            },
            AutoRestart::Never,
            &[0],
            false,
            false,
        ),
    ];
    for &(status, autorestart, codes, expected, restarted) in table {
        let (now, wall) = t0();
        let mut s = spec();
        s.autorestart = autorestart;
        s.exitcodes = codes.to_vec();
        let mut p = Program::new(s);
        p.start();
        p.spawned(7, now, wall);
        p.timer(now + Duration::from_secs(1));
        let (ev, act) = p.exited(status, false, now + Duration::from_secs(5), wall);
        assert_eq!(p.state, State::Exited, "{status:?}");
        assert_eq!(ev[0].kind, Kind::Exited);
        assert_eq!(ev[0].expected, Some(expected), "{status:?} {autorestart:?}");
        assert_eq!(
            act == vec![Action::Spawn],
            restarted,
            "{status:?} {autorestart:?}"
        );
        let word = if expected { "expected" } else { "not expected" };
        assert_eq!(
            ev[0].msg,
            format!("exited: web ({}; {word})", status.describe())
        );
        assert_eq!(ev[0].uptime_s, Some(5.0));
    }
}

#[test]
fn signal_wording_matches_supervisord() {
    assert_eq!(
        ExitStatus::Signal {
            signo: libc::SIGKILL,
            core_dumped: false
        }
        .describe(),
        "terminated by SIGKILL"
    );
    assert_eq!(
        ExitStatus::Signal {
            signo: libc::SIGSEGV,
            core_dumped: true
        }
        .describe(),
        "terminated by SIGSEGV (core dumped)"
    );
    assert_eq!(
        ExitStatus::Signal {
            signo: libc::SIGTERM,
            core_dumped: false
        }
        .as_shell_status(),
        143
    );
}

#[test]
fn quick_exits_back_off_with_growing_delay_then_fatal() {
    let (mut now, wall) = t0();
    let mut p = Program::new(spec()); // startretries = 3
    p.start();
    let mut delays = Vec::new();
    for attempt in 1..=4 {
        p.spawned(100 + attempt, now, wall);
        let (ev, act) = p.exited(
            ExitStatus::Code(1),
            false,
            now + Duration::from_millis(10),
            wall,
        );
        assert!(act.is_empty());
        assert!(ev[0].msg.ends_with("(exit status 1; not expected)"));
        if attempt <= 3 {
            assert_eq!(p.state, State::Backoff);
            let d = p.deadline.expect("backoff has a timer") - (now + Duration::from_millis(10));
            delays.push(d.as_secs());
            now = p.deadline.unwrap();
            assert_eq!(p.timer(now).1, vec![Action::Spawn]);
        } else {
            assert_eq!(p.state, State::Fatal);
            assert_eq!(ev.last().unwrap().kind, Kind::Fatal);
            assert_eq!(
                ev.last().unwrap().msg,
                "gave up: web entered FATAL state, too many start retries too quickly"
            );
            assert_eq!(p.deadline, None);
        }
    }
    assert_eq!(delays, vec![1, 2, 3]);
    assert_eq!(p.restarts, 3);
}

fn exec_error(errno: i32) -> SpawnError {
    SpawnError::Exec {
        program: "/bin/true".into(),
        source: std::io::Error::from_raw_os_error(errno),
    }
}

#[test]
fn spawn_errors_name_the_step_that_failed() {
    let (now, wall) = t0();
    let cases = [
        (
            SpawnError::Directory {
                path: "/no/such/dir".into(),
                source: std::io::Error::from_raw_os_error(libc::ENOENT),
            },
            "spawnerr: couldn't chdir to /no/such/dir: No such file or directory (os error 2)",
            126,
        ),
        (
            SpawnError::User {
                user: "nosuchuser".into(),
                reason: "no such user 'nosuchuser'".into(),
            },
            "spawnerr: couldn't run as user 'nosuchuser': no such user 'nosuchuser'",
            126,
        ),
        (
            exec_error(libc::ENOENT),
            "spawnerr: can't find command '/bin/true'",
            127,
        ),
    ];
    for (err, msg, status) in cases {
        let mut p = Program::new(spec());
        p.start();
        let ev = p.spawn_failed(&err, now, wall);
        assert_eq!(ev[0].msg, msg);
        assert_eq!(ev[0].exit_code, Some(status));
    }
    let mut p = Program::new(spec());
    p.start();
    let err = SpawnError::Resources {
        what: "the stdout pipe",
        source: std::io::Error::from_raw_os_error(libc::EMFILE),
    };
    let ev = p.spawn_failed(&err, now, wall);
    let msg = &ev[0].msg;
    assert!(
        msg.starts_with(
            "spawnerr: the supervisor could not create the stdout pipe: Too many open files"
        ) && msg.contains("RLIMIT_NOFILE")
            && msg.contains("ulimit -n")
            && !msg.contains("couldn't exec"),
        "{msg}"
    );
}

#[test]
fn spawn_failure_backs_off_then_fatal_with_os_error() {
    let (mut now, wall) = t0();
    let mut s = spec();
    s.startretries = 1;
    let mut p = Program::new(s);
    p.start();
    let err = exec_error(libc::ENOENT);
    let ev = p.spawn_failed(&err, now, wall);
    assert_eq!(kinds(&ev), vec![Kind::SpawnFailed]);
    assert_eq!(ev[0].msg, "spawnerr: can't find command '/bin/true'");
    assert!(ev[0].error.as_deref().unwrap().contains("No such file"));
    assert_eq!(p.state, State::Backoff);
    now = p.deadline.unwrap();
    assert_eq!(p.timer(now).1, vec![Action::Spawn]);
    let ev = p.spawn_failed(&exec_error(libc::EACCES), now, wall);
    assert_eq!(kinds(&ev), vec![Kind::SpawnFailed, Kind::Fatal]);
    assert!(ev[0]
        .msg
        .starts_with("spawnerr: couldn't exec /bin/true: Permission denied"));
    assert_eq!(p.state, State::Fatal);
    assert_eq!(p.last_exit.as_ref().unwrap().cause, ExitCause::SpawnFailed);
}

#[test]
fn stop_signals_then_escalates_to_sigkill_after_stopwaitsecs() {
    let (now, wall) = t0();
    let mut s = spec();
    s.stopasgroup = true;
    s.killasgroup = true;
    let mut p = Program::new(s);
    p.start();
    p.spawned(9, now, wall);
    p.timer(now + Duration::from_secs(1));
    let (ev, act) = p.stop(now + Duration::from_secs(2), AfterStop::Stay);
    assert_eq!(
        act,
        vec![Action::Signal {
            signo: libc::SIGTERM,
            group: true
        }]
    );
    assert_eq!(ev[0].msg, "killing web (pid 9) with signal SIGTERM");
    assert_eq!(p.state, State::Stopping);
    assert_eq!(p.deadline, Some(now + Duration::from_secs(12)));
    let (ev, act) = p.timer(now + Duration::from_secs(12));
    assert_eq!(
        act,
        vec![Action::Signal {
            signo: libc::SIGKILL,
            group: true
        }]
    );
    assert_eq!(ev[0].kind, Kind::Killing);
    let (ev, act) = p.exited(
        ExitStatus::Signal {
            signo: libc::SIGKILL,
            core_dumped: false,
        },
        false,
        now + Duration::from_secs(12),
        wall,
    );
    assert!(act.is_empty());
    assert_eq!(ev[0].msg, "stopped: web (terminated by SIGKILL)");
    assert_eq!(p.state, State::Stopped);
    assert!(p.killed);
}

#[test]
fn stop_wait_is_capped_by_the_shutdown_budget() {
    let (now, wall) = t0();
    let mut p = Program::new(spec()); // stopwaitsecs = 10
    p.start();
    p.spawned(9, now, wall);
    p.cap_stop_wait(Duration::from_secs(3), now);
    p.stop(now, AfterStop::Stay);
    assert_eq!(p.deadline, Some(now + Duration::from_secs(3)));
}

#[test]
fn restart_stops_then_starts() {
    let (now, wall) = t0();
    let mut p = Program::new(spec());
    p.start();
    p.spawned(9, now, wall);
    p.stop(now, AfterStop::Start);
    let (ev, act) = p.exited(
        ExitStatus::Code(0),
        false,
        now + Duration::from_millis(5),
        wall,
    );
    assert_eq!(ev[0].kind, Kind::Stopped);
    assert_eq!(act, vec![Action::Spawn]);
}

#[test]
fn stop_in_backoff_goes_to_stopped_without_a_timer() {
    let (now, wall) = t0();
    let mut p = Program::new(spec());
    p.start();
    p.spawned(9, now, wall);
    p.exited(ExitStatus::Code(1), false, now, wall);
    assert_eq!(p.state, State::Backoff);
    let (ev, act) = p.stop(now, AfterStop::Stay);
    assert!(act.is_empty());
    assert_eq!(ev[0].kind, Kind::Stopped);
    assert_eq!(p.state, State::Stopped);
    assert_eq!(p.deadline, None);
}

#[test]
fn start_request_is_ignored_while_running_or_stopping() {
    let (now, wall) = t0();
    let mut p = Program::new(spec());
    p.start();
    p.spawned(9, now, wall);
    assert!(p.start().is_empty());
    p.stop(now, AfterStop::Stay);
    assert!(p.start().is_empty());
}
