//! Issue 4 end to end: the real binary as PID 1 loads the eBPF probe, and its `exited` events
//! (and `supervisor why`) name who sent the fatal signal, from inside or outside the
//! container; a kernel fault and a supervisor stop are told apart; without the capabilities
//! the supervisor still runs and says once why the probe is off.

use std::process::Command;
use std::time::Duration;

use e2e::*;

const T: Duration = Duration::from_secs(20);

fn conf(dir: &TempDir) -> std::path::PathBuf {
    dir.write(
        "s.conf",
        "[program:web]\ncommand=sleep 1000\nstartsecs=0\n\n\
         [program:crasher]\ncommand=sh -c 'sleep 0.5; exec python3 -c \"import ctypes; ctypes.string_at(0)\"'\nstartsecs=0\nautorestart=false\n\n\
         [program:other]\ncommand=sleep 1000\nstartsecs=0\n\n\
         [program:stoic]\ncommand=sh -c 'trap \"\" TERM; exec sleep 1000'\nstartsecs=0\nstopsignal=KILL\n",
    )
}

#[test]
fn exits_name_who_killed_them() {
    let dir = TempDir::new("probe");
    let conf = conf(&dir);
    let sock = dir.path().join("s.sock");
    // The killer: a copy of kill(1) with a name of its own.
    let assassin = dir.path().join("assassin");
    std::fs::copy("/bin/kill", &assassin).expect("copy /bin/kill");
    let addr = format!("127.0.0.1:{}", free_port());
    let conf_s = conf.to_str().unwrap();
    let sock_s = sock.to_str().unwrap();
    let args = [
        "run",
        "-c",
        conf_s,
        "--metrics-addr",
        &addr,
        "--probe",
        "on",
        "--socket",
        sock_s,
    ];
    let mut sup = Sup::start(Mode::Pid1, dir.path(), &args);
    let loaded = sup.wait_event("probe loaded", T, |e| {
        msg(e).starts_with("eBPF probe loaded")
    });
    assert_eq!(kind(&loaded), "notice");
    let web = sup.wait_event("web running", T, |e| is(e, "running", "web"));
    let host = sup.host_pid().to_string();
    // Runs `sh -c 'assassin -SIG PID'` inside the supervisor's PID and mount namespaces.
    let inside = |sig: &str, target: u32| {
        let script = format!("{} -{sig} {target}; true", assassin.display());
        let status = Command::new("nsenter")
            .args(["-t", &host, "-p", "-m", "--", "sh", "-c", &script])
            .status()
            .expect("nsenter");
        assert!(status.success());
    };

    // 1. From inside the container: `sh` runs `assassin`.
    inside("TERM", pid(&web));
    let e = sup.wait_event("web exited", T, |e| is(e, "exited", "web"));
    assert_eq!(e["origin"], "signal_from_process", "{e}");
    let k = &e["killed_by"][0];
    assert_eq!(k["signal"], "SIGTERM", "{e}");
    assert_eq!(k["sender_comm"], "assassin", "{e}");
    assert_eq!(k["sender_parent_comm"], "sh", "{e}");
    assert_eq!(k["sender_uid"], 0);
    assert_eq!(k["outside_namespace"], false);
    assert_eq!(k["code"], "SI_USER");
    let kill_pid = k["sender_pid"].as_u64().unwrap();
    assert!(
        kill_pid > 1,
        "the sender's pid as the container sees it: {e}"
    );
    assert!(k["sender_ppid"].as_u64().unwrap() > 1, "{e}");
    assert_eq!(
        msg(&e),
        format!("exited: web (terminated by SIGTERM; not expected) after SIGTERM from pid {kill_pid} 'assassin' uid 0")
    );
    let body = http_get(&addr, "/metrics").body;
    let series = "supervisor_program_signals_total{program=\"web\",signal=\"SIGTERM\",sender=\"assassin\",origin=\"inside\"} 1";
    assert!(body.contains(series), "{body}");

    // 2. A signal the program ignores: recorded as received (ignored), and no exit.
    let stoic = sup.wait_event("stoic running", T, |e| is(e, "running", "stoic"));
    inside("TERM", pid(&stoic));
    let seen = sup.wait_event("signal to stoic", T, |e| is(e, "signal_observed", "stoic"));
    assert_eq!(seen["killed_by"][0]["result"], "ignored", "{seen}");
    assert_eq!(seen["sender"], "assassin", "{seen}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !sup.events().iter().any(|e| is(e, "exited", "stoic")),
        "stoic kept running"
    );

    // 3. From outside the container (this test process): pid 0, outside.
    let web2 = sup.wait_nth("web running again", 2, T, |e| is(e, "running", "web"));
    sup.signal_program_pid(pid(&web2), libc::SIGKILL);
    let e = sup.wait_nth("web exited again", 2, T, |e| is(e, "exited", "web"));
    let k = &e["killed_by"][0];
    let got = (
        k["signal"].as_str(),
        k["sender_pid"].as_u64(),
        k["outside_namespace"].as_bool(),
    );
    assert_eq!(got, (Some("SIGKILL"), Some(0), Some(true)), "{e}");
    assert!(
        k["text"]
            .as_str()
            .unwrap()
            .contains("outside the container"),
        "{e}"
    );
    let comm = k["sender_comm"].as_str().unwrap_or("");
    assert!(!comm.is_empty(), "the outside sender is named: {e}");

    // 4. A real fault: the kernel sent SIGSEGV.
    let e = sup.wait_event("crasher exited", T, |e| is(e, "exited", "crasher"));
    assert_eq!(e["signal"], "SIGSEGV", "{e}");
    assert_eq!(e["origin"], "signal_from_kernel", "{e}");
    assert_eq!(e["killed_by"][0]["from_process"], false, "{e}");

    // 5. Stopped by the supervisor: not blamed on anyone.
    let (code, out, err) = ctl(&sock, &["stop", "other"]);
    assert_eq!(code, 0, "{out}{err}");
    let e = sup.wait_event("other stopped", T, |e| is(e, "stopped", "other"));
    assert_eq!(e["origin"], "stopped_by_supervisor", "{e}");
    assert_eq!(msg(&e), "stopped: other (terminated by SIGTERM)");

    // `supervisor why` tells the story, newest first.
    let (code, out, err) = ctl(&sock, &["why", "web"]);
    assert_eq!(code, 0, "{err}");
    let paragraphs: Vec<&str> = out.split("\n\n").filter(|p| !p.trim().is_empty()).collect();
    assert_eq!(paragraphs.len(), 2, "{out}");
    assert!(paragraphs[0].contains("was killed by SIGKILL"), "{out}");
    assert!(paragraphs[0].contains("outside the container"), "{out}");
    let named = format!("SIGTERM from pid {kill_pid} 'assassin' (uid 0), run by 'sh'");
    assert!(paragraphs[1].contains(&named), "{out}");
    assert!(
        paragraphs[1].contains("Then the supervisor started it again as pid"),
        "{out}"
    );
    let (code, _, err) = ctl(&sock, &["why", "nosuch"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("web"),
        "unknown names list the known ones: {err}"
    );
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(T), 0);
}

/// Without CAP_BPF/CAP_PERFMON (and CAP_SYS_ADMIN), `auto` runs without the probe and says once
/// what is missing; `on` refuses to start.
#[test]
fn without_capabilities_the_probe_is_optional() {
    let dir = TempDir::new("nocaps");
    let conf = conf(&dir);
    let bin = bin();
    let args = |mode: &str| -> Vec<String> {
        vec![
            "--bounding-set=-bpf,-perfmon,-sys_admin".into(),
            "--".into(),
            bin.to_str().unwrap().into(),
            "run".into(),
            "-c".into(),
            conf.to_str().unwrap().into(),
            "--metrics-addr".into(),
            "off".into(),
            "--socket".into(),
            dir.path()
                .join(format!("{mode}.sock"))
                .to_str()
                .unwrap()
                .into(),
            "--probe".into(),
            mode.into(),
        ]
    };
    let auto: Vec<String> = args("auto");
    let auto: Vec<&str> = auto.iter().map(String::as_str).collect();
    let mut sup = Sup::start_command(Mode::Child, dir.path(), "setpriv", &auto);
    sup.wait_event("web running", T, |e| is(e, "running", "web"));
    sup.wait_event("the probe's one line", T, |e| msg(e).contains("eBPF"));
    let notes: Vec<_> = sup
        .events()
        .into_iter()
        .filter(|e| msg(e).contains("eBPF"))
        .collect();
    assert_eq!(notes.len(), 1, "one line: {notes:?}");
    assert!(
        msg(&notes[0]).contains("--cap-add BPF --cap-add PERFMON"),
        "{}",
        msg(&notes[0])
    );
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(T), 0);

    let on: Vec<String> = args("on");
    let out = Command::new("setpriv").args(&on).output().expect("setpriv");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CAP_BPF") && err.contains("--probe auto"),
        "{err}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("\"spawned\""),
        "nothing started"
    );
}

/// Issue 14: the whole tree is watched, causes are exact, and a burst loses nothing silently.
fn tree_conf(dir: &TempDir) -> std::path::PathBuf {
    let ready = |name: &str| dir.path().join(name).display().to_string();
    // Handles SIGUSR1, then exits 0 on its own 1.5 s later.
    dir.write(
        "usr1.py",
        &format!(
            "import signal, time\ngot = []\nsignal.signal(signal.SIGUSR1, lambda *a: got.append(1))\n\
             open('{}', 'w').close()\nwhile not got:\n    time.sleep(0.02)\ntime.sleep(1.5)\n",
            ready("usr1.ready")
        ),
    );
    // Handles SIGUSR1 and runs until stopped.
    dir.write(
        "burst.py",
        &format!(
            "import signal, time\nsignal.signal(signal.SIGUSR1, lambda *a: None)\n\
             open('{}', 'w').close()\nwhile True:\n    time.sleep(1000)\n",
            ready("burst.ready")
        ),
    );
    let d = dir.path().display();
    dir.write(
        "tree.conf",
        &format!(
            "[program:wrap]\ncommand=sh -c 'sleep 1000; exit $?'\nstartsecs=0\nautorestart=false\n\n\
             [program:usr1]\ncommand=python3 {d}/usr1.py\nstartsecs=0\nautorestart=false\n\n\
             [program:pipe]\ncommand=sh -c 'sleep 0.5; exec python3 -c \"import os, signal; signal.signal(signal.SIGPIPE, signal.SIG_DFL); r, w = os.pipe(); os.close(r); os.write(w, b\\\"x\\\")\"'\nstartsecs=0\nautorestart=false\n\n\
             [program:burst]\ncommand=python3 {d}/burst.py\nstartsecs=0\nautorestart=false\n"
        ),
    )
}

fn wait_file(path: &std::path::Path) {
    let deadline = std::time::Instant::now() + T;
    while !path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The first child of a process, as the test (host) sees it.
fn first_child(host_pid: u32) -> u32 {
    let deadline = std::time::Instant::now() + T;
    loop {
        let kids = std::fs::read_to_string(format!("/proc/{host_pid}/task/{host_pid}/children"))
            .unwrap_or_default();
        if let Some(pid) = kids.split_whitespace().next().and_then(|p| p.parse().ok()) {
            return pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{host_pid} has no child"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sum of the samples of `metric` whose labels contain every one of `labels`.
fn metric_sum(body: &str, metric: &str, labels: &[&str]) -> u64 {
    body.lines()
        .filter(|l| l.starts_with(metric) && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn the_whole_tree_is_watched_and_causes_are_exact() {
    let dir = TempDir::new("probe-tree");
    let conf = tree_conf(&dir);
    let sock = dir.path().join("s.sock");
    let addr = format!("127.0.0.1:{}", free_port());
    let args = [
        "run",
        "-c",
        conf.to_str().unwrap(),
        "--metrics-addr",
        &addr,
        "--probe",
        "on",
        "--socket",
        sock.to_str().unwrap(),
    ];
    let sup = Sup::start(Mode::Pid1, dir.path(), &args);

    // 1. A wrapper script's child is SIGTERMed from outside: the wrapper's exit names it.
    let wrap = sup.wait_event("wrap running", T, |e| is(e, "running", "wrap"));
    let sleep_host = first_child(sup.to_host_pid(pid(&wrap)));
    // SAFETY: kill(2) on the wrapper's child, found just above.
    assert_eq!(unsafe { libc::kill(sleep_host as i32, libc::SIGTERM) }, 0);
    let killed = sup.wait_event("the child's death", T, |e| {
        is(e, "descendant_killed", "wrap")
    });
    let child = pid(&killed);
    assert_eq!(killed["signal"], "SIGTERM", "{killed}");
    assert_eq!(
        killed["killed_by"][0]["outside_namespace"], true,
        "{killed}"
    );
    assert!(
        msg(&killed).starts_with(&format!(
            "descendant: in wrap, its child sleep (pid {child}) was killed by SIGTERM from '"
        )),
        "{killed}"
    );
    let e = sup.wait_event("wrap exited", T, |e| is(e, "exited", "wrap"));
    assert_eq!(e["exit_code"], 143, "{e}");
    assert_eq!(e["origin"], "descendant_killed", "{e}");
    assert!(
        msg(&e).ends_with(&format!(
            "after its child sleep (pid {child}) was killed by SIGTERM from pid 0 '{}' uid 0 (outside the container)",
            killed["killed_by"][0]["sender_comm"].as_str().unwrap()
        )),
        "{e}"
    );
    let (code, out, err) = ctl(&sock, &["why", "wrap"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "Its child sleep (pid {child}) was killed by SIGTERM from '"
        )) && out.contains("outside the container, just before it exited: the likely cause."),
        "{out}"
    );
    assert!(!out.contains("No signal was involved"), "{out}");

    // 2. A handled SIGUSR1, then an exit of its own 1.5 s later: not blamed, but said.
    let usr1 = sup.wait_event("usr1 running", T, |e| is(e, "running", "usr1"));
    wait_file(&dir.path().join("usr1.ready"));
    sup.signal_program_pid(pid(&usr1), libc::SIGUSR1);
    let e = sup.wait_event("usr1 exited", T, |e| is(e, "exited", "usr1"));
    assert_eq!(e["exit_code"], 0, "{e}");
    assert_eq!(e["origin"], "exited", "{e}");
    let m = msg(&e);
    let after = m
        .split(" s after SIGUSR1 from pid 0 ")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|secs| secs.parse::<f64>().ok());
    assert!(
        after.is_some_and(|s| s >= 1.0),
        "how long after the signal: {m}"
    );
    let (_, out, _) = ctl(&sock, &["why", "usr1"]);
    assert!(
        out.contains("It exited on its own: no signal it received ended it."),
        "{out}"
    );

    // 3. A broken pipe is the kernel's, with the reason, and no sender.
    let e = sup.wait_event("pipe exited", T, |e| is(e, "exited", "pipe"));
    assert_eq!(e["signal"], "SIGPIPE", "{e}");
    assert_eq!(e["origin"], "signal_from_kernel", "{e}");
    let k = &e["killed_by"][0];
    assert_eq!(k["from_process"], false, "{e}");
    assert!(
        k["reason"].as_str().unwrap().starts_with("broken pipe"),
        "{e}"
    );
    for field in ["sender_pid", "sender_ppid", "sender_comm", "sender_uid"] {
        assert!(
            k.get(field).is_none(),
            "no {field} for a kernel-made signal: {e}"
        );
    }
    let (_, out, _) = ctl(&sock, &["why", "pipe"]);
    assert!(
        out.contains("The kernel signalled it: broken pipe"),
        "{out}"
    );

    // 4. 10,000 signals in a burst: records + folded counts + lost == sent.
    let burst = sup.wait_event("burst running", T, |e| is(e, "running", "burst"));
    wait_file(&dir.path().join("burst.ready"));
    let host = sup.to_host_pid(pid(&burst));
    const SENT: u64 = 10_000;
    for _ in 0..SENT {
        // SAFETY: kill(2) on the program, which handles SIGUSR1.
        assert_eq!(unsafe { libc::kill(host as i32, libc::SIGUSR1) }, 0);
    }
    // The stop signal, a different one, brings the folded count with it.
    let (code, out, err) = ctl(&sock, &["stop", "burst"]);
    assert_eq!(code, 0, "{out}{err}");
    sup.wait_event("burst stopped", T, |e| is(e, "stopped", "burst"));
    let body = http_get(&addr, "/metrics").body;
    let seen = metric_sum(
        &body,
        "supervisor_program_signals_total{",
        &["program=\"burst\"", "signal=\"SIGUSR1\""],
    );
    let lost = metric_sum(&body, "supervisor_probe_events_lost_total", &[]);
    assert_eq!(seen + lost, SENT, "seen {seen} + lost {lost}: {body}");
    let records = sup
        .events()
        .iter()
        .filter(|e| is(e, "signal_observed", "burst") && e["signal"] == "SIGUSR1")
        .count();
    assert!(
        records <= 20,
        "a handful of records for the burst, not {records}"
    );
    assert_eq!(
        metric_sum(
            &body,
            "supervisor_program_descendant_signals_total{",
            &["program=\"wrap\"", "signal=\"SIGTERM\""]
        ),
        1,
        "{body}"
    );
    let mut sup = sup;
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(T), 0);
}
