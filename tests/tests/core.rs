//! Issue 2 end to end: the real binary as PID 1 (and as subreaper) supervising real programs.

use std::time::{Duration, Instant};

use e2e::*;

const T: Duration = Duration::from_secs(15);

/// The seed scenario: two programs from a supervisord .conf; SIGTERM one from outside.
#[test]
fn killed_program_is_restarted_and_the_other_is_untouched() {
    let dir = TempDir::new("seed");
    let conf = dir.write(
        "supervisord.conf",
        "[supervisord]\nnodaemon=true\n\n[program:web]\ncommand=sleep 1000\n\n[program:db]\ncommand=sleep 2000\nstartsecs=1\n",
    );
    let sup = Sup::with_config(Mode::Pid1, dir.path(), &conf);
    let web = sup.wait_event("web RUNNING", T, |e| is(e, "running", "web"));
    let db = sup.wait_event("db RUNNING", T, |e| is(e, "running", "db"));
    assert_eq!(
        msg(&web),
        "success: web entered RUNNING state, process has stayed up for > than 1 seconds (startsecs)"
    );
    let web_pid = pid(&web);
    sup.signal_program_pid(web_pid, libc::SIGTERM);
    let exited = sup.wait_event("web exited", T, |e| is(e, "exited", "web"));
    // With the eBPF probe loaded (root), the sentence goes on: "after SIGTERM from pid 0 ...".
    assert!(
        msg(&exited).starts_with("exited: web (terminated by SIGTERM; not expected)"),
        "{}",
        msg(&exited)
    );
    assert_eq!(exited["signal"], "SIGTERM");
    assert_eq!(pid(&exited), web_pid);
    let spawned = sup.wait_nth("web respawned", 2, T, |e| is(e, "spawned", "web"));
    let new_pid = pid(&spawned);
    assert_ne!(new_pid, web_pid);
    assert_eq!(msg(&spawned), format!("spawned: 'web' with pid {new_pid}"));
    assert_eq!(spawned["restarts"], 1);
    sup.wait_nth("web RUNNING again", 2, T, |e| is(e, "running", "web"));
    // The other program was not touched: one spawn, no exit, same pid.
    let events = sup.events();
    assert_eq!(events.iter().filter(|e| is(e, "spawned", "db")).count(), 1);
    assert!(!events
        .iter()
        .any(|e| program(e) == "db" && ["exited", "stopped", "stopping"].contains(&kind(e))));
    assert_eq!(
        pid(&db),
        pid(events.iter().find(|e| is(e, "spawned", "db")).unwrap())
    );
    // Ordering in the log: exited, then spawned, then success.
    let pos = |k: &str, n: usize| {
        events
            .iter()
            .enumerate()
            .filter(|(_, e)| is(e, k, "web"))
            .nth(n)
            .map(|(i, _)| i)
            .unwrap()
    };
    assert!(pos("exited", 0) < pos("spawned", 1) && pos("spawned", 1) < pos("running", 1));
}

/// An expected exit (exitcodes) with autorestart=unexpected stays EXITED; the log says so.
#[test]
fn expected_exit_is_not_restarted_by_default() {
    let dir = TempDir::new("expected");
    let conf = dir.write("s.conf", "[program:job]\ncommand=sh -c 'sleep 1.3; exit 3'\nexitcodes=0,3\n\n[program:keep]\ncommand=sleep 1000\n");
    let sup = Sup::with_config(Mode::Pid1, dir.path(), &conf);
    let e = sup.wait_event("job exited", T, |e| is(e, "exited", "job"));
    assert_eq!(msg(&e), "exited: job (exit status 3; expected)");
    assert_eq!(e["exit_code"], 3);
    assert_eq!(e["expected"], true);
    assert_eq!(e["state"], "EXITED");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        sup.events()
            .iter()
            .filter(|e| is(e, "spawned", "job"))
            .count(),
        1
    );
}

/// A program that double-forks leaves orphans: PID 1 reaps them, and a storm of 1,000 orphan
/// exits interleaved with supervised exits loses or misattributes no status.
#[test]
fn orphan_storm_loses_no_supervised_status() {
    let dir = TempDir::new("orphans");
    let conf = dir.write(
        "s.conf",
        "[program:storm]\n\
         command=sh -c 'i=0; while [ $i -lt 1000 ]; do (true &); i=$((i+1)); done; exit 7'\n\
         startsecs=0\nautorestart=false\n\n\
         [program:quick]\ncommand=sh -c 'exit 5'\nstartsecs=0\nautorestart=true\nexitcodes=0\n\n\
         [program:double]\ncommand=sh -c '(sleep 0.3 &); exec sleep 1000'\n",
    );
    let mut sup = Sup::with_config(Mode::Pid1, dir.path(), &conf);
    sup.wait_event("storm exited", Duration::from_secs(60), |e| {
        is(e, "exited", "storm")
    });
    // Let the quick program cycle through many exits while orphans are reaped.
    sup.wait_nth("quick exits", 50, Duration::from_secs(60), |e| {
        is(e, "exited", "quick")
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reaped = sup
            .events()
            .iter()
            .filter(|e| kind(e) == "orphan_reaped")
            .count();
        if reaped >= 1001 {
            break;
        }
        assert!(Instant::now() < deadline, "only {reaped} orphans reaped");
        std::thread::sleep(Duration::from_millis(50));
    }
    let events = sup.events();
    let storm: Vec<_> = events.iter().filter(|e| is(e, "exited", "storm")).collect();
    assert_eq!(storm.len(), 1);
    assert_eq!(
        storm[0]["exit_code"], 7,
        "storm's own status survived the orphan storm"
    );
    let quick: Vec<_> = events.iter().filter(|e| is(e, "exited", "quick")).collect();
    assert!(
        quick.iter().all(|e| e["exit_code"] == 5),
        "every quick exit carries status 5"
    );
    // Every supervised exit matches a spawn of the same pid, and no orphan was a supervised pid.
    let spawned: std::collections::HashSet<u32> = events
        .iter()
        .filter(|e| kind(e) == "spawned")
        .map(pid)
        .collect();
    for e in events.iter().filter(|e| kind(e) == "exited") {
        assert!(spawned.contains(&pid(e)), "exit of unknown pid: {e}");
    }
    for e in events.iter().filter(|e| kind(e) == "orphan_reaped") {
        assert!(
            !spawned.contains(&pid(e))
                || events
                    .iter()
                    .filter(|x| kind(x) == "spawned" && pid(x) == pid(e))
                    .count()
                    == 0,
            "a supervised pid was reaped as an orphan: {e}"
        );
    }
    // `quick` keeps exiting, so a zombie may exist for an instant before it is reaped; a leak
    // is a zombie that is still there a second later.
    let host = sup.host_pid();
    let first = zombies_in_ns_of(host);
    std::thread::sleep(Duration::from_secs(1));
    let left: Vec<u32> = zombies_in_ns_of(host)
        .into_iter()
        .filter(|z| first.contains(z))
        .collect();
    assert!(left.is_empty(), "zombies left: {left:?}");
    sup.signal(libc::SIGTERM);
    sup.wait_exit(T);
}

/// SIGTERM to PID 1 stops programs in reverse priority; one that ignores SIGTERM is SIGKILLed
/// after its stopwaitsecs; the supervisor exits within the budget.
#[test]
fn sigterm_stops_in_reverse_priority_and_escalates() {
    let dir = TempDir::new("shutdown");
    let conf = dir.write(
        "s.conf",
        "[program:first]\ncommand=sleep 1000\npriority=1\nstartsecs=0\n\n\
         [program:second]\ncommand=sleep 1000\npriority=2\nstartsecs=0\n\n\
         [program:stubborn]\ncommand=sh -c 'trap \"\" TERM; exec sleep 1000'\npriority=3\nstopwaitsecs=1\nstartsecs=0\n",
    );
    let mut sup = Sup::with_config(Mode::Pid1, dir.path(), &conf);
    for p in ["first", "second", "stubborn"] {
        sup.wait_event("running", T, |e| is(e, "running", p));
    }
    let t0 = Instant::now();
    sup.signal(libc::SIGTERM);
    let code = sup.wait_exit(Duration::from_secs(12));
    let took = t0.elapsed();
    let events = sup.events();
    let received = events
        .iter()
        .find(|e| kind(e) == "signal_received")
        .expect("signal logged");
    assert!(
        msg(received).starts_with("received SIGTERM from pid 0 (outside this PID namespace)"),
        "{}",
        msg(received)
    );
    let stopped: Vec<&str> = events
        .iter()
        .filter(|e| kind(e) == "stopped")
        .map(program)
        .collect();
    assert_eq!(
        stopped,
        vec!["stubborn", "second", "first"],
        "reverse priority order"
    );
    let killing = events
        .iter()
        .find(|e| kind(e) == "killing")
        .expect("SIGKILL escalation logged");
    assert_eq!(program(killing), "stubborn");
    let st = events
        .iter()
        .find(|e| is(e, "stopped", "stubborn"))
        .unwrap();
    assert_eq!(msg(st), "stopped: stubborn (terminated by SIGKILL)");
    assert_eq!(code, 1, "something had to be killed: non-zero exit");
    assert!(took < Duration::from_secs(9), "shutdown took {took:?}");
    assert_eq!(kind(events.last().unwrap()), "exiting");
}

/// A clean shutdown exits 0 and leaves no process behind (subreaper mode: orphans are ours).
#[test]
fn clean_shutdown_as_subreaper_leaves_nothing_behind() {
    let dir = TempDir::new("subreaper");
    let marker = format!("sup-e2e-orphan-{}", std::process::id());
    let conf = dir.write(
        "s.conf",
        &format!("[program:daemonizer]\ncommand=sh -c '(exec -a {marker} sleep 1000 &); exec sleep 1000'\nstartsecs=0\n"),
    );
    let mut sup = Sup::with_config(Mode::Child, dir.path(), &conf);
    sup.wait_event("running", T, |e| is(e, "running", "daemonizer"));
    std::thread::sleep(Duration::from_millis(300));
    sup.signal(libc::SIGTERM);
    let code = sup.wait_exit(T);
    assert_eq!(code, 0, "{}", sup.log_text());
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("cmdline")).ok())
        .filter(|c| c.contains(&marker))
        .collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

/// A command that exits at once reaches FATAL after startretries, with growing backoff; a
/// missing binary reaches FATAL with the OS error in the event.
#[test]
fn crash_loop_and_missing_binary_reach_fatal() {
    let dir = TempDir::new("fatal");
    let conf = dir.write(
        "s.conf",
        "[program:crash]\ncommand=sh -c 'exit 1'\nstartretries=2\n\n[program:missing]\ncommand=/nonexistent/bin/x\nstartretries=1\n",
    );
    let sup = Sup::with_config(Mode::Pid1, dir.path(), &conf);
    let fatal = sup.wait_event("crash FATAL", Duration::from_secs(20), |e| {
        is(e, "fatal", "crash")
    });
    assert_eq!(
        msg(&fatal),
        "gave up: crash entered FATAL state, too many start retries too quickly"
    );
    let events = sup.events();
    assert_eq!(
        events.iter().filter(|e| is(e, "spawned", "crash")).count(),
        3,
        "1 start + 2 retries"
    );
    let retries: Vec<f64> = events
        .iter()
        .filter(|e| is(e, "exited", "crash"))
        .filter_map(|e| e["retry_in_s"].as_f64())
        .collect();
    assert_eq!(retries, vec![1.0, 2.0], "growing backoff");
    sup.wait_event("missing FATAL", Duration::from_secs(20), |e| {
        is(e, "fatal", "missing")
    });
    let err = sup
        .events()
        .into_iter()
        .find(|e| is(e, "spawn_failed", "missing"))
        .unwrap();
    assert_eq!(
        msg(&err),
        "spawnerr: can't find command '/nonexistent/bin/x'"
    );
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("No such file or directory"),
        "{err}"
    );
}

/// A critical program that stops for good stops everything; the supervisor exits with its code.
#[test]
fn critical_program_exit_code_becomes_the_supervisor_exit_code() {
    let dir = TempDir::new("critical");
    let conf = dir.write(
        "s.conf",
        "[program:main]\ncommand=sh -c 'sleep 1.2; exit 42'\nautorestart=false\ncritical=true\n\n[program:side]\ncommand=sleep 1000\n",
    );
    let mut sup = Sup::with_config(Mode::Pid1, dir.path(), &conf);
    let code = sup.wait_exit(T);
    assert_eq!(code, 42, "{}", sup.log_text());
    assert!(
        sup.events().iter().any(|e| is(e, "stopped", "side")),
        "the other program was stopped first"
    );
}

/// One-command mode: the tini use case.
#[test]
fn one_command_mode_exits_with_the_command_status() {
    let dir = TempDir::new("onecmd");
    let mut sup = Sup::start(
        Mode::Pid1,
        dir.path(),
        &["run", "--metrics-addr", "off", "--", "sh", "-c", "exit 5"],
    );
    assert_eq!(sup.wait_exit(T), 5, "{}", sup.log_text());
    let mut sup = Sup::start(
        Mode::Pid1,
        dir.path(),
        &[
            "run",
            "--metrics-addr",
            "off",
            "--restart",
            "on-failure",
            "--",
            "sh",
            "-c",
            "sleep 1.2; exit 1",
        ],
    );
    sup.wait_nth("restart", 2, T, |e| kind(e) == "spawned");
    sup.signal(libc::SIGTERM);
    let code = sup.wait_exit(T);
    assert_eq!(code, 143, "terminated by SIGTERM, like tini reports it");
}

/// SIGHUP applies the difference: added starts, removed stops, changed restarts, unchanged is
/// untouched.
#[test]
fn sighup_reload_applies_only_the_difference() {
    let dir = TempDir::new("reload");
    let conf = dir.write(
        "s.conf",
        "[program:same]\ncommand=sleep 1000\nstartsecs=0\n\n[program:changed]\ncommand=sleep 1000\nstartsecs=0\n\n[program:gone]\ncommand=sleep 1000\nstartsecs=0\n",
    );
    let sup = Sup::with_config(Mode::Pid1, dir.path(), &conf);
    for p in ["same", "changed", "gone"] {
        sup.wait_event("running", T, |e| is(e, "running", p));
    }
    std::fs::write(
        &conf,
        "[program:same]\ncommand=sleep 1000\nstartsecs=0\n\n[program:changed]\ncommand=sleep 1001\nstartsecs=0\n\n[program:new]\ncommand=sleep 1000\nstartsecs=0\n",
    )
    .unwrap();
    sup.signal(libc::SIGHUP);
    let r = sup.wait_event("reloaded", T, |e| kind(e) == "reloaded");
    assert!(
        msg(&r).contains("added new; changed changed; removed gone; unchanged 1"),
        "{}",
        msg(&r)
    );
    sup.wait_event("new running", T, |e| is(e, "running", "new"));
    sup.wait_event("gone stopped", T, |e| is(e, "stopped", "gone"));
    sup.wait_nth("changed respawned", 2, T, |e| is(e, "spawned", "changed"));
    let events = sup.events();
    assert_eq!(
        events.iter().filter(|e| is(e, "spawned", "same")).count(),
        1,
        "unchanged program untouched"
    );
    // A broken config on reload keeps the running one.
    std::fs::write(&conf, "[program:x]\nautostart=maybe\n").unwrap();
    sup.signal(libc::SIGHUP);
    let err = sup.wait_event("reload failure", T, |e| msg(e).starts_with("reload failed"));
    assert!(
        msg(&err).contains("s.conf:"),
        "names file:line: {}",
        msg(&err)
    );
}

/// `--log-format text` prints supervisord-style lines.
#[test]
fn text_log_format_looks_like_supervisord() {
    let dir = TempDir::new("text");
    let conf = dir.write("s.conf", "[program:web]\ncommand=sleep 1000\nstartsecs=0\n");
    let mut sup = Sup::start(
        Mode::Pid1,
        dir.path(),
        &[
            "run",
            "-c",
            conf.to_str().unwrap(),
            "--metrics-addr",
            "off",
            "--log-format",
            "text",
        ],
    );
    let deadline = Instant::now() + T;
    while !sup
        .log_text()
        .contains("INFO success: web entered RUNNING state")
    {
        assert!(
            Instant::now() < deadline,
            "no text line: {}",
            sup.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let line = sup
        .log_text()
        .lines()
        .find(|l| l.contains("spawned: 'web' with pid"))
        .unwrap()
        .to_string();
    // 2026-11-25 14:36:38,123 INFO spawned: 'web' with pid 2
    assert_eq!(&line[10..11], " ", "{line}");
    assert_eq!(&line[19..20], ",", "{line}");
    assert!(
        line[23..].starts_with(" INFO spawned: 'web' with pid "),
        "{line}"
    );
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(T), 0);
}

/// user= drops privileges; environment= and directory= apply.
#[test]
fn user_environment_directory_and_umask_apply() {
    let dir = TempDir::new("user");
    let out = dir.path().join("out.txt");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let conf = dir.write(
        "s.conf",
        &format!(
            "[program:who]\ncommand=sh -c 'echo \"$(id -u) $(id -g) $FOO $(pwd) $(umask) $HOME\" > {}; exec sleep 1000'\nuser=nobody\nenvironment=FOO=\"bar baz\"\ndirectory=/tmp\numask=027\nstartsecs=0\n",
            out.display()
        ),
    );
    let sup = Sup::with_config(Mode::Pid1, dir.path(), &conf);
    sup.wait_event("running", T, |e| is(e, "running", "who"));
    let deadline = Instant::now() + T;
    while !out.exists() || std::fs::read_to_string(&out).unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "program did not write its identity"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.trim(), "65534 65534 bar baz /tmp 0027 /nonexistent");
}

/// Config errors: exit 2 before anything starts, naming file:line.
#[test]
fn config_errors_name_file_and_line_and_start_nothing() {
    let dir = TempDir::new("cfgerr");
    let conf = dir.write(
        "bad.conf",
        "[program:a]\ncommand=sleep 1\n\n[program:b]\ncommand=sleep 1\nautorestart=sometimes\n",
    );
    let (code, _out, err) =
        run_cli(&["run", "-c", conf.to_str().unwrap(), "--metrics-addr", "off"]);
    assert_eq!(code, 2);
    assert!(err.contains("bad.conf:6"), "{err}");
    assert!(err.contains("autorestart"), "{err}");
    let (code, _, err) = run_cli(&["check", "-c", conf.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("bad.conf:6"), "{err}");
    let ok = dir.write("ok.conf", "[program:a]\ncommand=sleep 1\n");
    let (code, out, _) = run_cli(&["check", "-c", ok.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("sleep"), "{out}");
}

/// Debian's own supervisord.conf with a conf.d include loads unchanged.
#[test]
fn debian_supervisord_conf_with_includes_loads() {
    let dir = TempDir::new("debian");
    let debian = include_str!("fixtures/debian-supervisord.conf")
        .replace("/etc/supervisor/conf.d/*.conf", "conf.d/*.conf");
    let conf = dir.write("supervisord.conf", &debian);
    dir.write("conf.d/apache2.conf", "[program:apache2]\ncommand=/bin/sleep 1000\nautorestart=true\nstdout_logfile=/dev/stdout\nstdout_logfile_maxbytes=0\n");
    dir.write(
        "conf.d/mysqld.conf",
        "[program:mysqld]\ncommand=/bin/sleep 2000\npriority=10\n",
    );
    let (code, out, err) = run_cli(&["check", "-c", conf.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("apache2") && out.contains("mysqld"), "{out}");
}

/// A SIGKILL from the kernel's OOM killer is told apart from any other SIGKILL (memory cgroup
/// counter, no eBPF needed): cause `oom_killed`.
#[test]
fn oom_kill_is_named_as_such() {
    let Some(cg) = MemoryCgroup::create("oom", 64 << 20) else {
        panic!("cannot create a memory cgroup here (need root and a writable cgroup fs)");
    };
    let dir = TempDir::new("oom");
    let victim = "[program:victim]\ncommand=sleep 1000\nstartsecs=0\n\n";
    let conf = dir.write("s.conf", victim);
    let conf_s = conf.to_str().unwrap();
    let mut sup = Sup::start_in_cgroup(
        &cg,
        dir.path(),
        &["run", "-c", conf_s, "--metrics-addr", "off"],
    );
    sup.wait_event("victim running", T, |e| is(e, "running", "victim"));
    // The memory hog comes with a reload, once the victim is up.
    std::fs::write(
        &conf,
        format!("{victim}[program:hog]\ncommand=python3 -c \"b = b'x' * (256 << 20)\"\nstartsecs=0\nautorestart=false\n"),
    )
    .unwrap();
    sup.signal(libc::SIGHUP);
    let e = sup.wait_event("hog exited", T, |e| is(e, "exited", "hog"));
    assert_eq!(e["signal"], "SIGKILL", "{e}");
    assert_eq!(e["cause"], "oom_killed", "{e}");
    // An ordinary SIGKILL is not an OOM kill.
    let v = sup.wait_event("victim running", T, |e| is(e, "running", "victim"));
    sup.signal_program_pid(pid(&v), libc::SIGKILL);
    let e = sup.wait_event("victim exited", T, |e| is(e, "exited", "victim"));
    assert_eq!(e["cause"], "signaled", "{e}");
    sup.signal(libc::SIGTERM);
    sup.wait_exit(T);
}
