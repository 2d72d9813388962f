//! The stock `supervisorctl` (PyPI supervisor 4.3) driving our supervisor, running as PID 1,
//! over supervisord's XML-RPC: on the `[unix_http_server]` socket and the `[inet_http_server]`
//! port. Output is compared with real supervisord's on the same config (pids and uptimes
//! normalised): status, avail, the error lines, auth failure. Then every command a user or a
//! script runs: start/stop/restart NAME, start GROUP:*, signal, tail, tail -f, pid, reread +
//! update after an edit, shutdown.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::*;

const T: Duration = Duration::from_secs(30);

/// A config both supervisord and we run: one socket, one port (Basic auth), groups, a
/// `numprocs` pool, a manual program, one that fails for good.
fn config(dir: &Path, sock: &Path, port: u16) -> String {
    format!(
        "[unix_http_server]\nfile={sock}\nchmod=0700\n\n\
         [inet_http_server]\nport=127.0.0.1:{port}\nusername=user\npassword=s3cret\n\n\
         [supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\npidfile={d}/supervisord.pid\nchildlogdir={d}\n\n\
         [rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n\
         [supervisorctl]\nserverurl=unix://{sock}\n\n\
         [program:web]\ncommand=sh -c 'echo web-says-hello; trap \"echo got-hup\" HUP; while :; do sleep 0.2; done'\n\n\
         [program:idle]\ncommand=sleep 1000\nautostart=false\n\n\
         [program:crash]\ncommand=sh -c 'exit 3'\nstartretries=0\n\n\
         [program:worker]\ncommand=sleep 1000\nnumprocs=2\nprocess_name=%(program_name)s_%(process_num)02d\n\n\
         [group:g]\nprograms=a,b\n\n\
         [program:a]\ncommand=sleep 1000\n\n\
         [program:b]\ncommand=sleep 1000\n",
        sock = sock.display(),
        d = dir.display(),
    )
}

/// `supervisorctl ARGS` from the venv: (exit code, stdout + stderr).
fn ctl(args: &[&str]) -> (i32, String) {
    let out = Command::new(venv_tool("supervisorctl"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run supervisorctl");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn ctl_c(conf: &Path, args: &[&str]) -> (i32, String) {
    let mut full = vec!["-c", conf.to_str().unwrap()];
    full.extend_from_slice(args);
    ctl(&full)
}

/// Pids and uptimes replaced, so two servers' outputs compare.
fn normalise(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("pid ") {
            Some(i) if l.contains(", uptime ") => format!("{}pid PID, uptime UPTIME", &l[..i]),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until `status` shows every program settled (nothing STARTING, BACKOFF or STOPPING)
/// and as many lines as `n`; returns it.
fn settled(conf: &Path, n: usize) -> String {
    let deadline = Instant::now() + T;
    loop {
        let (_, out) = ctl_c(conf, &["status"]);
        let lines: Vec<&str> = out.lines().collect();
        if lines.len() == n
            && lines.iter().all(|l| {
                [" RUNNING ", " STOPPED ", " FATAL ", " EXITED "]
                    .iter()
                    .any(|s| l.contains(s))
            })
        {
            return out;
        }
        assert!(Instant::now() < deadline, "status did not settle:\n{out}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_for(what: &str, mut check: impl FnMut() -> Option<String>) -> String {
    let deadline = Instant::now() + T;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ours(dir: &TempDir, conf: &Path) -> Sup {
    Sup::start(
        Mode::Pid1,
        dir.path(),
        &[
            "run",
            "-c",
            conf.to_str().unwrap(),
            "--metrics-addr",
            "off",
            "--probe",
            "off",
            "--socket",
            dir.path().join("ctl.sock").to_str().unwrap(),
        ],
    )
}

fn wait_answering(conf: &Path) {
    wait_for("supervisorctl to get an answer", || {
        let (_, out) = ctl_c(conf, &["pid"]);
        out.trim().parse::<u32>().ok().map(|_| out)
    });
}

/// What the same commands print against real supervisord and against us.
struct Run {
    status: String,
    avail: String,
    answers: Vec<(String, i32, String)>,
}

const COMMANDS: &[&[&str]] = &[
    &["start", "nosuch"],
    &["status", "nosuch"],
    &["stop", "idle"],
    &["start", "web"],
    &["start", "crash"],
    &["stop", "g:*"],
    &["start", "g:*"],
    &["start", "g:a"],
    &["restart", "worker:worker_01"],
    &["signal", "HUP", "nosuch"],
    &["signal", "HUP", "idle"],
    &["tail", "nosuch"],
];

fn exercise(conf: &Path, port: u16) -> Run {
    wait_answering(conf);
    let status = normalise(&settled(conf, 7));
    let (_, avail) = ctl_c(conf, &["avail"]);
    let mut answers = Vec::new();
    for args in COMMANDS {
        let (code, out) = ctl_c(conf, args);
        answers.push((args.join(" "), code, normalise(&out)));
    }
    let url = format!("http://127.0.0.1:{port}");
    for (user, pass) in [("user", "wrong"), ("nobody", "s3cret")] {
        let (code, out) = ctl(&["-s", &url, "-u", user, "-p", pass, "status"]);
        // The traceback line names Python's file: keep the first line only.
        answers.push((
            format!("inet {user}:{pass} status"),
            code,
            out.lines().next().unwrap_or("").to_string(),
        ));
    }
    let (code, out) = ctl(&["-s", &url, "-u", "user", "-p", "s3cret", "status", "web"]);
    answers.push(("inet status web".into(), code, normalise(&out)));
    Run {
        status,
        avail,
        answers,
    }
}

#[test]
fn status_and_answers_match_real_supervisord() {
    // The oracle: real supervisord on the same config (its own socket and port).
    let odir = TempDir::new("ctl-oracle");
    let osock = odir.path().join("rpc.sock");
    let oport = free_port();
    let oconf = odir.write("s.conf", &config(odir.path(), &osock, oport));
    let supervisord = venv_tool("supervisord");
    let _oracle = Sup::start_command(
        Mode::Child,
        odir.path(),
        supervisord.to_str().unwrap(),
        &["-n", "-c", oconf.to_str().unwrap()],
    );
    let want = exercise(&oconf, oport);

    let dir = TempDir::new("ctl-ours");
    let sock = dir.path().join("rpc.sock");
    let port = free_port();
    let conf = dir.write("s.conf", &config(dir.path(), &sock, port));
    let sup = ours(&dir, &conf);
    let got = exercise(&conf, port);
    let log = || tail(&sup.log_text(), 40);

    let want_lines: Vec<&str> = want.status.lines().collect();
    let got_lines: Vec<&str> = got.status.lines().collect();
    assert_eq!(
        got_lines,
        want_lines,
        "status differs from supervisord's\n{}",
        log()
    );
    // Same lines; supervisord lists [group:x] groups before the others, which the engine's
    // status does not tell apart from numprocs pools.
    let sorted = |t: &str| {
        let mut v: Vec<String> = t.lines().map(String::from).collect();
        v.sort();
        v
    };
    assert_eq!(
        sorted(&got.avail),
        sorted(&want.avail),
        "avail differs from supervisord's"
    );
    for (w, g) in want.answers.iter().zip(&got.answers) {
        // A group's members of one priority answer in no fixed order (supervisord's from its
        // dict, ours from when each settled): compare those answers as sets of lines.
        let (w, g) = if w.0.contains(":*") {
            let set = |a: &(String, i32, String)| (a.0.clone(), a.1, sorted(&a.2).join("\n"));
            (set(w), set(g))
        } else {
            (w.clone(), g.clone())
        };
        assert_eq!(
            g,
            w,
            "`supervisorctl {}` differs from supervisord's\n{}",
            w.0,
            log()
        );
    }
    // The socket has the config's mode, set before anyone could connect.
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700);
}

#[test]
fn every_command_over_the_socket_and_the_port() {
    let dir = TempDir::new("ctl-cmds");
    let sock = dir.path().join("rpc.sock");
    let port = free_port();
    let text = config(dir.path(), &sock, port);
    let conf = dir.write("s.conf", &text);
    let mut sup = ours(&dir, &conf);
    wait_answering(&conf);
    settled(&conf, 7);
    let url = format!("http://127.0.0.1:{port}");
    let inet = |args: &[&str]| {
        let mut full = vec!["-s", url.as_str(), "-u", "user", "-p", "s3cret"];
        full.extend_from_slice(args);
        ctl(&full)
    };

    // pid: we are PID 1 of the namespace.
    assert_eq!(ctl_c(&conf, &["pid"]).1.trim(), "1");
    assert_eq!(inet(&["pid"]).1.trim(), "1");
    let pid_of = |name: &str| -> u32 {
        let (_, out) = ctl_c(&conf, &["pid", name]);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("pid {name}: {out}"))
    };

    // stop / start / restart by name, over both transports.
    assert_eq!(ctl_c(&conf, &["stop", "web"]), (0, "web: stopped\n".into()));
    assert!(ctl_c(&conf, &["status", "web"]).1.contains(" STOPPED "));
    assert_eq!(inet(&["start", "web"]), (0, "web: started\n".into()));
    let before = pid_of("web");
    assert_eq!(
        ctl_c(&conf, &["restart", "web"]).1,
        "web: stopped\nweb: started\n"
    );
    assert_ne!(pid_of("web"), before);

    // GROUP:* names the whole group.
    assert_eq!(inet(&["stop", "g:*"]).1, "g:a: stopped\ng:b: stopped\n");
    assert_eq!(
        ctl_c(&conf, &["start", "g:*"]).1,
        "g:a: started\ng:b: started\n"
    );

    // signal reaches the program: its trap writes a line that `tail` then shows.
    assert_eq!(
        ctl_c(&conf, &["signal", "HUP", "web"]).1,
        "web: signalled\n"
    );
    wait_for("got-hup in `tail web`", || {
        let (_, out) = ctl_c(&conf, &["tail", "web"]);
        out.contains("got-hup").then_some(out)
    });
    let (_, out) = inet(&["tail", "web"]);
    assert!(out.contains("web-says-hello"), "{out}");

    // tail -f streams what the program writes next.
    let mut follower = Command::new(venv_tool("supervisorctl"))
        .args(["-c", conf.to_str().unwrap(), "tail", "-f", "web"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("supervisorctl tail -f");
    let mut stdout = follower.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        while seen.matches("got-hup").count() < 3 {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        seen
    });
    // Each HUP adds one line; the follower sees the ones sent after it connected.
    let deadline = Instant::now() + T;
    while !reader.is_finished() && Instant::now() < deadline {
        ctl_c(&conf, &["signal", "HUP", "web"]);
        std::thread::sleep(Duration::from_millis(300));
    }
    // SAFETY: kill(2) on the child we spawned.
    unsafe { libc::kill(follower.id() as i32, libc::SIGTERM) };
    let _ = follower.wait();
    let seen = reader.join().unwrap();
    assert!(seen.contains("==> Press Ctrl-C to exit <=="), "{seen}");
    assert!(seen.matches("got-hup").count() >= 3, "tail -f saw: {seen}");

    // reread + update after an edit: one program added, one removed, one changed.
    let edited =
        text.replace(
            "[program:idle]\ncommand=sleep 1000\nautostart=false\n\n",
            "",
        )
        .replace(
            "[program:b]\ncommand=sleep 1000\n",
            "[program:b]\ncommand=sleep 2000\n",
        ) + "\n[program:fresh]\ncommand=sleep 1000\n";
    std::fs::write(&conf, edited).unwrap();
    let (code, out) = ctl_c(&conf, &["reread"]);
    assert_eq!(code, 0, "{out}");
    for line in ["fresh: available", "idle: disappeared", "g: changed"] {
        assert!(
            out.contains(line),
            "reread: {out}\n{}",
            tail(&sup.log_text(), 30)
        );
    }
    let (code, out) = ctl_c(&conf, &["update"]);
    assert_eq!(code, 0, "update: {out}");
    let status = wait_for("fresh RUNNING and idle gone", || {
        let (_, s) = ctl_c(&conf, &["status"]);
        let fresh_running = s
            .lines()
            .any(|l| l.starts_with("fresh ") && l.contains(" RUNNING "));
        (fresh_running && !s.contains("idle ")).then_some(s)
    });
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("fresh ") && l.contains(" RUNNING ")),
        "{status}"
    );
    wait_for("g:b running its new command", || {
        let (_, s) = ctl_c(&conf, &["status", "g:b"]);
        s.contains(" RUNNING ").then_some(s)
    });
    assert_eq!(
        ctl_c(&conf, &["avail"])
            .1
            .lines()
            .filter(|l| l.starts_with("fresh "))
            .count(),
        1
    );

    // shutdown stops everything and the supervisor exits.
    let (code, out) = ctl_c(&conf, &["shutdown"]);
    assert_eq!((code, out.as_str()), (0, "Shut down\n"));
    assert_eq!(sup.wait_exit(T), 0, "{}", tail(&sup.log_text(), 30));
    assert!(!sock.exists(), "the socket is removed on exit");
}

/// One raw `POST /RPC2` over the unix socket: (HTTP status, body).
fn post(sock: &Path, body: &[u8]) -> (u16, String) {
    use std::io::Write;
    let mut s = std::os::unix::net::UnixStream::connect(sock).expect("connect");
    s.set_read_timeout(Some(T)).unwrap();
    let head = format!(
        "POST /RPC2 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    // The server may answer (413) and close before the whole body is sent.
    let _ = s.write_all(head.as_bytes()).and_then(|_| s.write_all(body));
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn call(method: &str, params: &str) -> Vec<u8> {
    format!("<?xml version='1.0'?><methodCall><methodName>{method}</methodName><params>{params}</params></methodCall>").into_bytes()
}

fn fault_code(body: &str) -> Option<i64> {
    let i = body.find("<name>faultCode</name><value><int>")? + 34;
    body[i..].split('<').next()?.parse().ok()
}

#[test]
fn bad_requests_get_faults_and_change_nothing() {
    let dir = TempDir::new("ctl-bad");
    let sock = dir.path().join("rpc.sock");
    let conf = dir.write(
        "s.conf",
        &format!(
            "[unix_http_server]\nfile={}\nchmod=0660\n\n[supervisorctl]\nserverurl=unix://{}\n\n\
             [program:web]\ncommand=sleep 1000\n",
            sock.display(),
            sock.display()
        ),
    );
    let sup = ours(&dir, &conf);
    wait_answering(&conf);
    settled(&conf, 1);
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o660, "chmod= of [unix_http_server]");
    let pid = ctl_c(&conf, &["pid", "web"]).1;

    let deep = format!(
        "<param>{}{}</param>",
        "<value><array><data>".repeat(2000),
        "</data></array></value>".repeat(2000)
    );
    for (what, body, status, contains) in [
        (
            "malformed",
            b"<methodCall><methodName>x".to_vec(),
            400,
            "not an XML-RPC call",
        ),
        (
            "not XML",
            b"\x00\xff garbage".to_vec(),
            400,
            "not an XML-RPC call",
        ),
        (
            "deeply nested",
            call("supervisor.getPID", &deep),
            400,
            "nested",
        ),
        (
            "entity expansion",
            b"<!DOCTYPE a [<!ENTITY x 'xx'>]><methodCall/>".to_vec(),
            400,
            "DOCTYPE",
        ),
        ("huge", vec![b'x'; 2 << 20], 413, "over"),
    ] {
        let (got, text) = post(&sock, &body);
        assert_eq!(got, status, "{what}: {text}");
        assert!(text.contains(contains), "{what}: {text}");
    }
    for (what, body, code) in [
        ("unknown method", call("supervisor.nosuch", ""), 1),
        ("a dynamic name", call("supervisor._getGroupAndProcess", ""), 1),
        ("wrong type", call("supervisor.startProcess", "<param><value><int>3</int></value></param>"), 2),
        ("too many params", call("supervisor.getPID", "<param><value>x</value></param>"), 2),
        ("no such process", call("supervisor.getProcessInfo", "<param><value>nosuch</value></param>"), 10),
        ("bad signal", call("supervisor.signalProcess", "<param><value>web</value></param><param><value>NOPE</value></param>"), 11),
        ("bad offsets", call("supervisor.readProcessStdoutLog", "<param><value>web</value></param><param><value><int>-5</int></value></param><param><value><int>5</int></value></param>"), 3),
    ] {
        let (status, text) = post(&sock, &body);
        assert_eq!((status, fault_code(&text)), (200, Some(code)), "{what}: {text}");
    }
    // multicall: each result in place, a fault as a struct.
    let (status, text) = post(
        &sock,
        &call(
            "system.multicall",
            "<param><value><array><data>\
             <value><struct><member><name>methodName</name><value>supervisor.getPID</value></member></struct></value>\
             <value><struct><member><name>methodName</name><value>nope</value></member></struct></value>\
             </data></array></value></param>",
        ),
    );
    assert_eq!(status, 200);
    assert!(
        text.contains("<array><data><value><int>1</int></value></data></array>"),
        "{text}"
    );
    assert_eq!(fault_code(&text), Some(1), "{text}");

    // Unharmed: the same process, still answering.
    assert_eq!(ctl_c(&conf, &["pid", "web"]).1, pid);
    assert!(ctl_c(&conf, &["status"]).1.contains(" RUNNING "));
    drop(sup);
}
