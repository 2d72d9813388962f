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
    let series = "supervisor_program_signals_total{program=\"web\",signal=\"SIGTERM\",sender=\"assassin\"} 1";
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
