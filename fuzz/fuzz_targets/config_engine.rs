//! Parsed configs through the engine's planning, not only the parser: every program of an
//! arbitrary INI or TOML config goes through the start order, the pipe-drain policy and the
//! state machine's timers (startsecs, ready_timeout, backoff, stopwaitsecs, the shutdown cap)
//! along a script of inputs taken from the fuzz data — no process is spawned. Any duration a
//! config accepts must give deadlines without a panic.
//!
//! Input layout: byte 0 picks the format (even: INI, odd: TOML), byte 1 is the script length
//! N, bytes 2..2+N the script, the rest the config text.
#![no_main]

use std::time::{Duration, Instant, SystemTime};

use libfuzzer_sys::fuzz_target;
use supervisor::engine::machine::{AfterStop, ExitStatus, Program};
use supervisor::engine::pipes::Pipes;
use supervisor::engine::plan;
use supervisor::engine::spawn::SpawnError;

fuzz_target!(|data: &[u8]| {
    let [format, n, rest @ ..] = data else { return };
    let n = usize::from(*n).min(rest.len());
    let (script, text) = rest.split_at(n);
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let parsed = if format % 2 == 0 {
        let path = std::path::Path::new("/nonexistent-fuzz-dir/supervisord.conf");
        supervisor::config::ini_format::parse(path, text)
    } else {
        let path = std::path::Path::new("/nonexistent-fuzz-dir/supervisor.toml");
        supervisor::config::toml_format::parse(path, text)
    };
    let Ok(config) = parsed else { return };
    let order = plan::start_order(&config.programs);
    assert_eq!(order.len(), config.programs.len());
    let wall = SystemTime::now();
    for &i in order.iter().take(8) {
        let mut p = Program::new(config.programs[i].clone());
        let mut pipes = Pipes::default();
        let mut now = Instant::now();
        let mut pid = 100;
        for (step, &b) in script.iter().enumerate() {
            // Time moves to the program's deadline, or by a small amount.
            now = match (b & 1, p.deadline) {
                (1, Some(d)) => d.max(now),
                _ => plan::deadline_after(now, Duration::from_millis(u64::from(b) * 7)),
            };
            let _ = match (b >> 1) % 10 {
                0 => (vec![], p.start()),
                1 if p.pid.is_none() => {
                    pid += 1;
                    pipes.attached(step as u64, None);
                    (p.spawned(pid, now, wall), vec![])
                }
                2 => p.timer(now),
                3 if p.pid.is_some() => p.exited(ExitStatus::Code(i32::from(b)), false, now, wall),
                4 if p.pid.is_some() => p.exited(
                    ExitStatus::Signal {
                        signo: 9,
                        core_dumped: false,
                    },
                    b > 200,
                    now,
                    wall,
                ),
                5 => p.stop(now, AfterStop::Start),
                6 => (p.ready_ok("fuzz"), vec![]),
                7 => p.health_result(b % 3 == 0, "fuzz", now),
                8 if p.pid.is_none() => {
                    let err = SpawnError::Exec {
                        program: "x".into(),
                        // ENOENT.
                        source: std::io::Error::from_raw_os_error(2),
                    };
                    (p.spawn_failed(&err, now, wall), vec![])
                }
                _ => {
                    p.cap_stop_wait(Duration::from_secs(u64::from(b)), now);
                    let _ = pipes.hold_spawn(now);
                    let _ = pipes.timer(now);
                    let _ = pipes.closed(step as u64);
                    (vec![], vec![])
                }
            };
            let _ = p.status(now);
        }
    }
});
