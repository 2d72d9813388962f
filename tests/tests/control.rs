//! The control socket, end to end: the real CLI against a real supervisor running as PID 1 in a
//! fresh PID namespace. Every subcommand, the ordering of `restart all`, SIGKILL escalation of
//! `stop`, `tail -f` across a restart, `reload` after an edit, and the socket's defences
//! (mode 0600, other users refused, 10,000 hostile requests changing nothing).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(20);

fn start(dir: &TempDir, conf: &Path) -> (Sup, std::path::PathBuf) {
    let sock = dir.path().join("ctl.sock");
    let sup = Sup::start(
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
            sock.to_str().unwrap(),
        ],
    );
    wait_socket(&sock, T);
    (sup, sock)
}

fn status_json(sock: &Path) -> Vec<Value> {
    let (_, out, err) = ctl(sock, &["status", "--json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("status --json: {e}: {out} {err}"))
}

fn pid_of(sock: &Path, name: &str) -> Option<u64> {
    status_json(sock)
        .into_iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["pid"].as_u64())
}

fn wait_running(sock: &Path, names: &[&str]) {
    let deadline = Instant::now() + T;
    loop {
        let all = status_json(sock);
        if names.iter().all(|n| {
            all.iter()
                .any(|p| p["name"] == *n && p["state"] == "RUNNING")
        }) {
            return;
        }
        assert!(Instant::now() < deadline, "not all RUNNING: {all:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn seq(e: &Value) -> u64 {
    e["seq"].as_u64().unwrap()
}

#[test]
fn every_subcommand_against_a_real_supervisor() {
    let dir = TempDir::new("ctl-all");
    let conf = dir.write(
        "s.conf",
        "[program:web]\ncommand=sh -c 'echo out-$$; echo err-$$ >&2; exec sleep 1000'\nstartsecs=0\n\n\
         [program:db]\ncommand=sleep 1000\nstartsecs=0\n\n\
         [program:broken]\ncommand=sh -c 'exit 1'\nautostart=false\nstartretries=0\nstartsecs=1\n",
    );
    let (mut sup, sock) = start(&dir, &conf);
    wait_running(&sock, &["web", "db"]);

    // status: all shown RUNNING → 0; the table; only the named; not RUNNING → 3.
    let (code, out, _) = ctl(&sock, &["status", "web", "db"]);
    assert_eq!(code, 0, "{out}");
    let web_line = out.lines().find(|l| l.starts_with("web ")).expect(&out);
    assert!(
        web_line.contains("RUNNING")
            && web_line.contains("pid ")
            && web_line.contains("uptime 0:00:"),
        "{out}"
    );
    let (code, out, _) = ctl(&sock, &["status"]);
    assert_eq!(code, 3, "broken is STOPPED: {out}");
    assert!(out.contains("broken") && out.contains("STOPPED"), "{out}");
    // Unknown names are an error listing the known ones.
    let (code, _, err) = ctl(&sock, &["status", "nope"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no such program: nope") && err.contains("known: broken, db, web"),
        "{err}"
    );

    // start that fails: reported, exit 1, and status stays non-zero.
    let (code, out, _) = ctl(&sock, &["start", "broken"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("broken: ERROR"), "{out}");

    // stop / start with waiting; status follows.
    let (code, out, _) = ctl(&sock, &["stop", "db"]);
    assert_eq!((code, out.as_str()), (0, "db: stopped\n"));
    assert_eq!(ctl(&sock, &["status", "db"]).0, 3);
    let (code, out, _) = ctl(&sock, &["start", "db"]);
    assert_eq!((code, out.as_str()), (0, "db: started\n"));
    assert_eq!(ctl(&sock, &["status", "db"]).0, 0);
    let (code, out, _) = ctl(&sock, &["start", "db"]);
    assert_eq!((code, out.as_str()), (0, "db: ERROR (already started)\n"));

    // --no-wait returns at once; --json is machine-readable.
    let (code, out, _) = ctl(&sock, &["stop", "--no-wait", "--json", "db"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["name"], "db");
    sup.wait_event("db stopped", T, |e| is(e, "stopped", "db"));
    ctl(&sock, &["start", "db"]);

    // signal
    let db = pid_of(&sock, "db").unwrap();
    let (code, out, _) = ctl(&sock, &["signal", "USR1", "db"]);
    assert_eq!((code, out.as_str()), (0, "db: signalled\n"));
    sup.wait_event("signaled", T, |e| {
        is(e, "signaled", "db") && e["signal"] == "SIGUSR1"
    });
    assert_ne!(pid_of(&sock, "db"), None);
    let _ = db;
    let (code, _, err) = ctl(&sock, &["signal", "NOSUCH", "db"]);
    assert_eq!(code, 2, "{err}");

    // tail: stdout and stderr kept apart.
    let web = pid_of(&sock, "web").unwrap();
    let (code, out, _) = ctl(&sock, &["tail", "web"]);
    assert_eq!((code, out.trim()), (0, format!("out-{web}").as_str()));
    let (_, err_out, _) = ctl(&sock, &["tail", "--stderr", "web"]);
    assert_eq!(err_out.trim(), format!("err-{web}"));

    // events: history as text lines, or JSON lines.
    let (code, out, _) = ctl(&sock, &["events", "-n", "5"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 5, "{out}");
    let (_, out, _) = ctl(&sock, &["events", "--json", "--program", "db", "-n", "100"]);
    let evs: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(evs.iter().all(|e| e["program"] == "db") && evs.iter().any(|e| kind(e) == "signaled"));

    // reload after editing the file: added / removed are printed.
    std::fs::write(
        &conf,
        "[program:web]\ncommand=sh -c 'echo out-$$; echo err-$$ >&2; exec sleep 1000'\nstartsecs=0\n\n\
         [program:db]\ncommand=sleep 1000\nstartsecs=0\n\n[program:new]\ncommand=sleep 1000\nstartsecs=0\n",
    )
    .unwrap();
    let (code, out, _) = ctl(&sock, &["reload"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("new: added") && out.contains("broken: removed"),
        "{out}"
    );
    wait_running(&sock, &["new"]);
    assert_eq!(
        pid_of(&sock, "web"),
        Some(web),
        "unchanged program restarted"
    );

    // shutdown: the supervisor stops everything, exits, and removes its socket.
    let (code, out, _) = ctl(&sock, &["shutdown"]);
    assert_eq!((code, out.as_str()), (0, "Shut down\n"));
    sup.wait_exit(T);
    assert!(!sock.exists(), "socket left behind");
    // Nobody answering: exit 4 with a hint.
    let (code, _, err) = ctl(&sock, &["status"]);
    assert_eq!(code, 4);
    assert!(err.contains("is the supervisor running?"), "{err}");
}

#[test]
fn restart_all_stops_in_reverse_priority_then_starts_in_priority() {
    let dir = TempDir::new("ctl-order");
    let conf = dir.write(
        "s.conf",
        "[program:a]\ncommand=sleep 1000\npriority=1\nstartsecs=1\n\n\
         [program:b]\ncommand=sleep 1000\npriority=2\nstartsecs=1\n\n\
         [program:c]\ncommand=sh -c 'trap \"sleep 0.3; exit 0\" TERM; sleep 1000 & wait'\npriority=3\nstartsecs=1\n",
    );
    let (sup, sock) = start(&dir, &conf);
    wait_running(&sock, &["a", "b", "c"]);
    let before = sup.events().last().map(seq).unwrap();
    let (code, out, _) = ctl(&sock, &["restart", "all"]);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "c: stopped\nb: stopped\na: stopped\na: started\nb: started\nc: started\n"
        )
    );
    let evs: Vec<Value> = sup
        .events()
        .into_iter()
        .filter(|e| seq(e) > before)
        .collect();
    let at = |k: &str, p: &str| {
        evs.iter()
            .find(|e| is(e, k, p))
            .map(seq)
            .unwrap_or_else(|| panic!("no {k} of {p}"))
    };
    // Each level fully stopped before the next is asked to stop ...
    assert!(at("stopped", "c") < at("stopping", "b"));
    assert!(at("stopped", "b") < at("stopping", "a"));
    // ... all stopped before any start, and each level RUNNING before the next is spawned.
    assert!(at("stopped", "a") < at("spawned", "a"));
    assert!(at("running", "a") < at("spawned", "b"));
    assert!(at("running", "b") < at("spawned", "c"));
}

#[test]
fn stop_escalates_to_sigkill_for_a_program_ignoring_sigterm() {
    let dir = TempDir::new("ctl-stubborn");
    let conf = dir.write(
        "s.conf",
        "[program:stubborn]\ncommand=sh -c 'trap \"\" TERM; exec sleep 1000'\nstopwaitsecs=1\nstartsecs=0\n",
    );
    let (sup, sock) = start(&dir, &conf);
    wait_running(&sock, &["stubborn"]);
    let t0 = Instant::now();
    let (code, out, _) = ctl(&sock, &["stop", "stubborn"]);
    let took = t0.elapsed();
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        "stubborn: stopped (killed with SIGKILL after stopwaitsecs)\n"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    sup.wait_event("killing", T, |e| is(e, "killing", "stubborn"));
    let (_, out, _) = ctl(&sock, &["status", "stubborn"]);
    assert!(
        out.contains("STOPPED") && out.contains("killed by SIGKILL"),
        "{out}"
    );
}

#[test]
fn tail_follow_carries_on_across_a_restart() {
    let dir = TempDir::new("ctl-tail");
    let conf = dir.write(
        "s.conf",
        "[program:talker]\ncommand=sh -c 'while true; do echo tick-$$; sleep 0.1; done'\nstartsecs=0\nstopwaitsecs=1\n",
    );
    let (_sup, sock) = start(&dir, &conf);
    wait_running(&sock, &["talker"]);
    let first = pid_of(&sock, "talker").unwrap();
    let out_path = dir.path().join("tail.out");
    let mut follower = Command::new(bin())
        .args(["tail", "-f", "talker"])
        .env("SUPERVISOR_SOCKET", &sock)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let wait_for = |needle: &str| {
        let deadline = Instant::now() + T;
        loop {
            if std::fs::read_to_string(&out_path)
                .unwrap_or_default()
                .contains(needle)
            {
                return;
            }
            assert!(Instant::now() < deadline, "tail -f never showed {needle}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(&format!("tick-{first}"));
    let (code, out, _) = ctl(&sock, &["restart", "talker"]);
    assert_eq!(code, 0, "{out}");
    let second = pid_of(&sock, "talker").unwrap();
    assert_ne!(first, second);
    wait_for(&format!("tick-{second}"));
    assert!(
        follower.try_wait().unwrap().is_none(),
        "tail -f ended on restart"
    );
    let _ = follower.kill();
    let _ = follower.wait();
    // Lines stay whole.
    let text = std::fs::read_to_string(&out_path).unwrap();
    assert!(text.lines().all(|l| l.starts_with("tick-")), "{text}");
}

#[test]
fn socket_is_0600_and_other_users_are_refused() {
    let dir = TempDir::new("ctl-perm");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let conf = dir.write("s.conf", "[program:web]\ncommand=sleep 1000\nstartsecs=0\n");
    let (sup, sock) = start(&dir, &conf);
    let meta = std::fs::metadata(&sock).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.uid(), unsafe { libc::geteuid() });

    let as_nobody = |args: &[&str]| {
        let out = Command::new("setpriv")
            .args(["--reuid", "nobody", "--regid", "nogroup", "--clear-groups"])
            .arg(bin())
            .args(args)
            .env("SUPERVISOR_SOCKET", &sock)
            .output()
            .expect("setpriv");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = as_nobody(&["stop", "web"]);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("Permission denied") && err.contains("only root"),
        "{err}"
    );

    // Even with the mode opened up, the peer check refuses another user.
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, err) = as_nobody(&["stop", "web"]);
    assert_eq!(code, 4, "{err}");
    let web = pid_of(&sock, "web");
    assert!(web.is_some());
    assert!(
        !sup.events().iter().any(|e| kind(e) == "stopping"),
        "nobody stopped web"
    );
}

/// One raw exchange: write, half-close, read whatever comes back (bounded in time).
fn raw(sock: &Path, bytes: &[u8]) -> Vec<u8> {
    exchange(sock, bytes, true)
}

/// Like [`raw`]; without `half_close` the request must be complete (HTTP/1.0: the server
/// closes after answering).
fn exchange(sock: &Path, bytes: &[u8], half_close: bool) -> Vec<u8> {
    let Ok(mut s) = UnixStream::connect(sock) else {
        return vec![];
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    if half_close {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn status_code(reply: &[u8]) -> u16 {
    std::str::from_utf8(reply)
        .ok()
        .and_then(|t| t.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn ten_thousand_hostile_requests_change_nothing() {
    let dir = TempDir::new("ctl-garbage");
    let conf = dir.write(
        "s.conf",
        "[program:web]\ncommand=sleep 1000\nstartsecs=0\n\n[program:db]\ncommand=sleep 1000\nstartsecs=0\n",
    );
    let (sup, sock) = start(&dir, &conf);
    wait_running(&sock, &["web", "db"]);
    let pids = (pid_of(&sock, "web"), pid_of(&sock, "db"));
    let events_before = sup.events().len();

    // Specific refusals carry a reason.
    let post = |path: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.0\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    for (req, want) in [
        (
            post("/v1/stop", "{\"names\":[\"web\"],\"command\":\"rm -rf /\"}"),
            400,
        ),
        (post("/v1/stop", "{\"names\":"), 400),
        (post("/v1/reload", "{\"config\":\"/etc/shadow\"}"), 400),
        (post("/RPC2", "<methodCall/>"), 404),
        (
            "GET /v1/tail?name=web&path=/etc/passwd HTTP/1.0\r\n\r\n".to_string(),
            400,
        ),
        ("DELETE /v1/status HTTP/1.0\r\n\r\n".to_string(), 405),
        (
            post(
                "/v1/signal",
                "{\"signal\":\"KILL\",\"names\":[\"web\\u0000\"]}",
            ),
            400,
        ),
        (post("/v1/start", &" ".repeat(70_000)), 413),
    ] {
        let reply = raw(&sock, req.as_bytes());
        assert_eq!(
            status_code(&reply),
            want,
            "{req:.80}: {}",
            String::from_utf8_lossy(&reply)
        );
        assert!(String::from_utf8_lossy(&reply).contains("\"error\""));
    }

    // Then volume: 10,000 garbage, oversized and truncated requests from 8 clients.
    let kinds = 6u64;
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let sock = sock.clone();
            std::thread::spawn(move || {
                let mut rng = 0x9E3779B97F4A7C15u64 ^ t;
                let mut next = move || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                for i in 0..1250u64 {
                    let n = next();
                    let req: Vec<u8> = match (i + t) % kinds {
                        0 => (0..(n % 512)).map(|_| next() as u8).collect(),
                        1 => {
                            let mut r = b"GET /v1/status HTTP/1.1\r\nx: ".to_vec();
                            r.extend(std::iter::repeat_n(b'a', 20_000));
                            r.extend_from_slice(b"\r\n\r\n");
                            r
                        }
                        2 => {
                            let full = b"POST /v1/stop HTTP/1.1\r\ncontent-length: 30\r\n\r\n{\"names\":[\"web\"],\"wait\":true}";
                            full[..(n as usize % full.len())].to_vec()
                        }
                        3 => {
                            let mut body: Vec<u8> = b"{\"names\":[\"".to_vec();
                            body.extend((0..(n % 300)).map(|_| b"aw:*e\\\"b{}[],"[next() as usize % 13]));
                            let mut r = format!("POST /v1/{} HTTP/1.0\r\ncontent-length: {}\r\n\r\n", ["signal", "status", "tail", "reload"][n as usize % 4], body.len()).into_bytes();
                            r.extend(body);
                            r
                        }
                        4 => format!("GET /v1/tail?name=%{:02x}%&bytes=-{} HTTP/1.0\r\n\r\n", n % 256, n).into_bytes(),
                        _ => b"POST /v1/start HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nffffffff\r\n".to_vec(),
                    };
                    let reply = raw(&sock, &req);
                    let code = status_code(&reply);
                    assert!(code == 0 || (400..500).contains(&code) || code == 503, "request {i}/{t} got {code}");
                }
            })
        })
        .collect();
    let t0 = Instant::now();
    for t in threads {
        t.join().unwrap();
    }
    eprintln!("10,000 hostile requests in {:?}", t0.elapsed());

    assert_eq!(
        (pid_of(&sock, "web"), pid_of(&sock, "db")),
        pids,
        "programs were touched"
    );
    assert_eq!(
        sup.events().len(),
        events_before,
        "events were emitted: {}",
        tail(&sup.log_text(), 10)
    );
    assert_eq!(ctl(&sock, &["status"]).0, 0);
}

#[test]
fn stale_socket_is_replaced_live_one_is_left_alone_and_a_bad_path_is_survived() {
    let dir = TempDir::new("ctl-stale");
    let conf = dir.write("s.conf", "[program:web]\ncommand=sleep 1000\nstartsecs=0\n");
    let sock = dir.path().join("ctl.sock");
    // A socket file nobody listens on: what a killed supervisor leaves.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let (first, sock) = start(&dir, &conf);
    assert_eq!(ctl(&sock, &["status"]).0, 0);

    // A second supervisor on the same path leaves the live one alone and still supervises.
    let second = Sup::start(
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
            sock.to_str().unwrap(),
        ],
    );
    let e = second.wait_event("socket refused", T, |e| {
        msg(e).contains("another supervisor is answering")
    });
    assert_eq!(e["level"], "error");
    second.wait_event("web running", T, |e| is(e, "running", "web"));
    let (_, out, _) = ctl(&sock, &["events", "--json", "-n", "1000"]);
    let host_pid = first.host_pid();
    assert!(
        out.contains("control socket listening"),
        "first supervisor lost its socket"
    );
    let _ = host_pid;
    drop(second);
    assert_eq!(
        ctl(&sock, &["status"]).0,
        0,
        "the first supervisor's socket was removed"
    );

    // An unusable directory: one error event, supervision goes on.
    let third = Sup::start(
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
            "/nonexistent/dir/s.sock",
        ],
    );
    third.wait_event("socket error", T, |e| {
        e["level"] == "error" && msg(e).contains("/nonexistent/dir/s.sock")
    });
    third.wait_event("web running", T, |e| is(e, "running", "web"));
}

#[test]
fn status_round_trip_is_fast() {
    let dir = TempDir::new("ctl-speed");
    let conf = dir.write("s.conf", "[program:web]\ncommand=sleep 1000\nstartsecs=0\n");
    let (_sup, sock) = start(&dir, &conf);
    // The request itself, without process start-up: raw exchanges.
    let n = 200;
    let t0 = Instant::now();
    for _ in 0..n {
        let reply = exchange(&sock, b"GET /v1/status HTTP/1.0\r\n\r\n", false);
        assert_eq!(status_code(&reply), 200);
    }
    let per = t0.elapsed() / n;
    // And through the CLI, process start included.
    let t0 = Instant::now();
    for _ in 0..20 {
        assert_eq!(ctl(&sock, &["status"]).0, 0);
    }
    let cli = t0.elapsed() / 20;
    eprintln!("status round trip: {per:?} per request, {cli:?} per `supervisor status`");
    assert!(per < Duration::from_millis(50), "{per:?}");
}

// ---------------------------------------------------------------------------------------------
// Remote control over TCP (off by default; bearer token required).

const TOKEN: &str = "Zm9vYmFyLXJlbW90ZS1jb250cm9sLXRva2VuLTAxMjM0NTY3";

/// Writes `text` as a 0600 token file.
fn token_file(dir: &TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.write(name, text);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// `supervisor ARGS --url URL [--token-file PATH]` (the socket variable pointing nowhere, so
/// only TCP can answer).
fn ctl_url(url: &str, token: Option<&Path>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .args(["--url", url])
        .env("SUPERVISOR_SOCKET", "/nonexistent/no.sock")
        .env_remove("SUPERVISOR_TOKEN_FILE")
        .env_remove("SUPERVISOR_URL");
    if let Some(t) = token {
        cmd.arg("--token-file").arg(t);
    }
    let out = cmd.output().expect("run supervisor");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// The TCP ports the process `host_pid` listens on (its own sockets only).
fn listening_ports(host_pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{host_pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    l.strip_prefix("socket:[")
                        .and_then(|r| r.strip_suffix(']'))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text =
            std::fs::read_to_string(format!("/proc/{host_pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                let port = f[1].rsplit(':').next().unwrap();
                ports.push(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports.sort_unstable();
    ports
}

/// A raw HTTP/1.0 request to remote control with an optional Authorization header.
fn remote_raw(addr: &str, method: &str, path: &str, auth: Option<&str>, body: &str) -> HttpReply {
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    http_raw(addr, req.as_bytes()).unwrap_or_else(|| panic!("no answer from {addr}{path}"))
}

#[test]
fn remote_control_over_tcp_answers_only_with_the_token() {
    let dir = TempDir::new("ctl-remote");
    let tok = token_file(&dir, "token", &format!("{TOKEN}\n"));
    // Token file in the config, address on the command line.
    let conf = dir.write(
        "s.conf",
        "[supervisord]\ncontrol_token_file=%(here)s/token\n\n\
         [program:web]\ncommand=sleep 1000\nstartsecs=0\n\n[program:db]\ncommand=sleep 1000\nstartsecs=0\n",
    );
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let url = format!("http://{addr}");
    let sock = dir.path().join("ctl.sock");
    let sup = Sup::start(
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
            sock.to_str().unwrap(),
            "--control-addr",
            &addr,
        ],
    );
    let notice = sup.wait_event("remote control notice", T, |e| {
        msg(e).starts_with("remote control listening")
    });
    assert!(
        msg(&notice).contains(&url) && msg(&notice).contains("token required"),
        "{notice}"
    );
    assert!(!msg(&notice).contains(TOKEN), "the token was logged");
    wait_socket(&sock, T);
    wait_running(&sock, &["web", "db"]);
    // It listens on the control port only (metrics are off).
    assert_eq!(listening_ports(sup.host_pid()), vec![port]);

    // The right token: the same API as the socket, through the CLI.
    let (code, out, err) = ctl_url(&url, Some(&tok), &["status"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("web") && out.contains("RUNNING"), "{out}");
    let (code, out, _) = ctl_url(&url, Some(&tok), &["status", "--json", "db"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["name"], "db");
    // ... and through the environment variables.
    let out = Command::new(bin())
        .args(["status", "web"])
        .env("SUPERVISOR_SOCKET", "/nonexistent/no.sock")
        .env("SUPERVISOR_URL", &url)
        .env("SUPERVISOR_TOKEN_FILE", &tok)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let ok = remote_raw(
        &addr,
        "GET",
        "/v1/status",
        Some(&format!("Bearer {TOKEN}")),
        "",
    );
    assert_eq!(ok.status, 200, "{}", ok.body);

    let pids = (pid_of(&sock, "web"), pid_of(&sock, "db"));
    let events_before = sup.events().len();

    // Wrong, missing, one byte changed, truncated, extended, other scheme: 401, nothing done.
    let mut changed = TOKEN.as_bytes().to_vec();
    changed[TOKEN.len() / 2] ^= 1;
    let changed = String::from_utf8(changed).unwrap();
    let auths: Vec<Option<String>> = vec![
        None,
        Some("Bearer wrong".into()),
        Some(format!("Bearer {changed}")),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Basic {TOKEN}")),
        Some(TOKEN.to_string()),
        Some("Bearer ".into()),
    ];
    for auth in &auths {
        for (method, path, body) in [
            ("GET", "/v1/status", ""),
            ("POST", "/v1/stop", "{\"names\":[\"all\"],\"wait\":false}"),
            (
                "POST",
                "/v1/signal",
                "{\"signal\":\"KILL\",\"names\":[\"web\"]}",
            ),
            ("POST", "/v1/shutdown", ""),
            ("GET", "/v1/nonexistent", ""),
        ] {
            let r = remote_raw(&addr, method, path, auth.as_deref(), body);
            assert_eq!(r.status, 401, "{auth:?} {method} {path}: {}", r.body);
            assert!(
                r.header("www-authenticate")
                    .is_some_and(|h| h.starts_with("Bearer")),
                "{:?}",
                r.headers
            );
            assert!(r.body.contains("\"error\""), "{}", r.body);
            assert!(!r.body.contains(TOKEN));
        }
    }
    // The CLI: a wrong token file, none at all.
    let wrong = token_file(&dir, "wrong", &format!("{changed}\n"));
    let (code, _, err) = ctl_url(&url, Some(&wrong), &["stop", "web"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("refused the token"), "{err}");
    let (code, _, err) = ctl_url(&url, None, &["shutdown"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("requires a token") && err.contains("--token-file"),
        "{err}"
    );

    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        (pid_of(&sock, "web"), pid_of(&sock, "db")),
        pids,
        "programs were touched"
    );
    assert_eq!(
        sup.events().len(),
        events_before,
        "events were emitted: {}",
        tail(&sup.log_text(), 10)
    );

    // With the token, actions work over TCP too.
    let (code, out, err) = ctl_url(&url, Some(&tok), &["stop", "web"]);
    assert_eq!((code, out.as_str()), (0, "web: stopped\n"), "{err}");
    let (code, out, _) = ctl_url(&url, Some(&tok), &["events", "--json", "-n", "3"]);
    assert_eq!(code, 0);
    assert!(out.contains("\"stopped\""), "{out}");
}

#[test]
fn remote_control_from_toml_and_its_start_up_errors() {
    let dir = TempDir::new("ctl-remote-conf");
    let tok = token_file(&dir, "token", TOKEN);
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    // Both settings in a TOML config.
    let conf = dir.write(
        "s.toml",
        &format!(
            "[supervisor]\ncontrol_addr = \"127.0.0.1:{port}\"\ncontrol_token_file = \"{}\"\n\n\
             [programs.web]\ncommand = \"sleep 1000\"\nstartsecs = 0\n",
            tok.display()
        ),
    );
    let sock = dir.path().join("ctl.sock");
    let run = |conf: &Path, extra: &[&str]| {
        let mut args = vec![
            "run",
            "-c",
            conf.to_str().unwrap(),
            "--metrics-addr",
            "off",
            "--probe",
            "off",
            "--socket",
            sock.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        Sup::start(Mode::Pid1, dir.path(), &args)
    };
    {
        let sup = run(&conf, &[]);
        sup.wait_event("web running", T, |e| is(e, "running", "web"));
        sup.wait_event("remote control", T, |e| {
            msg(e).starts_with("remote control listening")
        });
        let (code, out, err) = ctl_url(&url, Some(&tok), &["status", "web"]);
        assert_eq!(code, 0, "{out}{err}");
        // --control-addr off overrides the config.
    }
    {
        let port2 = free_port();
        let metrics = format!("127.0.0.1:{port2}");
        let mut sup = Sup::start(
            Mode::Pid1,
            dir.path(),
            &[
                "run",
                "-c",
                conf.to_str().unwrap(),
                "--metrics-addr",
                &metrics,
                "--socket",
                sock.to_str().unwrap(),
                "--control-addr",
                "off",
            ],
        );
        sup.wait_event("web running", T, |e| is(e, "running", "web"));
        sup.wait_event("http", T, |e| msg(e).starts_with("HTTP endpoint listening"));
        // Nothing listens on TCP but the metrics port.
        assert_eq!(listening_ports(sup.host_pid()), vec![port2]);
        assert!(!sup
            .events()
            .iter()
            .any(|e| msg(e).contains("remote control")));
        assert!(sup.running());
    }

    // control_addr without a token file: exit 2, file:line, nothing started.
    for (name, text, at) in [
        (
            "bad.toml",
            "[supervisor]\nsocket = \"/tmp/x.sock\"\ncontrol_addr = \"127.0.0.1:9470\"\n\n[programs.web]\ncommand = \"sleep 1000\"\n",
            "bad.toml:3",
        ),
        (
            "bad.conf",
            "[supervisord]\ncontrol_addr=127.0.0.1:9470\n\n[program:web]\ncommand=sleep 1000\n",
            "bad.conf:2",
        ),
    ] {
        let bad = dir.write(name, text);
        let mut sup = run(&bad, &[]);
        assert_eq!(sup.wait_exit(T), 2, "{name}");
        let err = std::fs::read_to_string(&sup.err_path).unwrap();
        assert!(
            err.contains(at) && err.contains("control_addr") && err.contains("control_token_file"),
            "{name}: {err}"
        );
        assert!(!sup.events().iter().any(|e| kind(e) == "spawned"), "{name}");
        let (code, _, err) = run_cli(&["check", "-c", bad.to_str().unwrap()]);
        assert_eq!(code, 2);
        assert!(err.contains(at), "{err}");
    }

    // The flag without any token file; an empty and a missing token file: exit 2, saying
    // what and where.
    let plain = dir.write("plain.conf", "[program:web]\ncommand=sleep 1000\n");
    let empty = token_file(&dir, "empty", "\n");
    let missing = dir.path().join("missing-token");
    let flag_addr = format!("127.0.0.1:{}", free_port());
    let cases: Vec<(Vec<&str>, Vec<String>)> = vec![
        (
            vec!["--control-addr", &flag_addr],
            vec!["--control-token-file".into()],
        ),
        (
            vec![
                "--control-addr",
                &flag_addr,
                "--control-token-file",
                empty.to_str().unwrap(),
            ],
            vec!["empty".into(), empty.display().to_string()],
        ),
        (
            vec![
                "--control-addr",
                &flag_addr,
                "--control-token-file",
                missing.to_str().unwrap(),
            ],
            vec!["cannot read".into(), missing.display().to_string()],
        ),
    ];
    for (extra, wants) in cases {
        let mut sup = run(&plain, &extra);
        assert_eq!(sup.wait_exit(T), 2, "{extra:?}");
        let err = std::fs::read_to_string(&sup.err_path).unwrap();
        for w in wants {
            assert!(err.contains(&w), "{extra:?}: {err}");
        }
        assert!(!sup.events().iter().any(|e| kind(e) == "spawned"));
    }
}
