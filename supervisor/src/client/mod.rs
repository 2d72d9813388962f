//! The control subcommands, client side: one HTTP/1.0 request over the control socket per
//! command, answered as an aligned table (like supervisorctl) or, with `--json`, as the
//! server's JSON.
//!
//! Plain blocking I/O: a client does one thing and exits, so it needs no runtime. Requests are
//! HTTP/1.0 so that a streamed answer (`tail -f`, `events -f`) simply runs until the connection
//! closes, with no chunked decoding.
//!
//! With `--url http://HOST:PORT` (or `SUPERVISOR_URL`) the same requests go over TCP to the
//! supervisor's remote control, carrying `Authorization: Bearer` with the token read from
//! `--token-file` (or `SUPERVISOR_TOKEN_FILE`).
//!
//! Exit codes: 0 done; 1 a program did not reach the state asked for; 2 a bad request (unknown
//! name, bad signal); 3 `status`: some program shown is not RUNNING; 4 no supervisor answers.

mod why;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::cli::{ActionArgs, Command, ConnArgs};
use crate::control::api::{ActionBody, Outcome, SignalBody};

/// Exit code: a program did not reach the state asked for.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: the request was refused (unknown name, bad signal ...).
pub const EXIT_BAD_REQUEST: u8 = 2;
/// Exit code of `status` when a program shown is not RUNNING (LSB "program is not running").
pub const EXIT_NOT_RUNNING: u8 = 3;
/// Exit code: nothing answers on the socket.
pub const EXIT_UNREACHABLE: u8 = 4;

/// A failed exchange: what to print, and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub msg: String,
}

type Result<T> = std::result::Result<T, Failure>;

/// Runs one control subcommand; returns the exit code. Errors are printed here.
pub fn run(cmd: Command) -> u8 {
    let result = match cmd {
        Command::Status { names, conn } => status(&conn, &names),
        Command::Start(a) => action("start", &a),
        Command::Stop(a) => action("stop", &a),
        Command::Restart(a) => action("restart", &a),
        Command::Signal {
            signal,
            names,
            conn,
        } => signal_cmd(&conn, signal, names),
        Command::Tail {
            follow,
            stderr,
            bytes,
            name,
            conn,
        } => tail(&conn, &name, stderr, bytes, follow),
        Command::Events {
            follow,
            program,
            limit,
            conn,
        } => events(&conn, program.as_deref(), limit, follow),
        Command::Why { name, last, conn } => why(&conn, &name, last),
        Command::Reload { conn } => reload(&conn),
        Command::Shutdown { conn } => shutdown(&conn),
        Command::Run(_) | Command::Check { .. } | Command::Completions { .. } => Ok(0),
    };
    match result {
        Ok(code) => code,
        Err(f) => {
            eprintln!("supervisor: {}", f.msg);
            f.code
        }
    }
}

/// A connection to the supervisor: the control socket, or TCP for remote control.
trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// A response whose head has been read; the body is still on the connection.
struct Reply {
    status: u16,
    body: BufReader<Box<dyn Stream>>,
}

impl Reply {
    fn text(mut self) -> Result<(u16, String)> {
        let mut s = String::new();
        self.body
            .read_to_string(&mut s)
            .map_err(|e| unreachable_err(&format!("reading the answer: {e}")))?;
        Ok((self.status, s))
    }
}

fn unreachable_err(msg: &str) -> Failure {
    Failure {
        code: EXIT_UNREACHABLE,
        msg: msg.to_string(),
    }
}

/// An open connection, with what to call it in messages and the headers it needs.
struct Conn {
    stream: Box<dyn Stream>,
    /// The socket path or the URL.
    shown: String,
    host: String,
    /// `Authorization: Bearer ...` for remote control with a token.
    auth: Option<String>,
    remote: bool,
}

/// Connects to the socket, or with `--url` to remote control (reading the token first).
fn connect(conn: &ConnArgs, timeout: Option<Duration>) -> Result<Conn> {
    let Some(url) = conn.url.as_deref() else {
        let path = &conn.socket;
        let s = UnixStream::connect(path).map_err(|e| connect_error(path, &e))?;
        let _ = s.set_read_timeout(timeout);
        let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
        return Ok(Conn {
            stream: Box::new(s),
            shown: path.display().to_string(),
            host: "supervisor".into(),
            auth: None,
            remote: false,
        });
    };
    let authority = parse_url(url).map_err(|msg| Failure {
        code: EXIT_BAD_REQUEST,
        msg,
    })?;
    let auth = match &conn.token_file {
        Some(path) => {
            let token = crate::control::remote::Token::read(path).map_err(|msg| Failure {
                code: EXIT_BAD_REQUEST,
                msg,
            })?;
            Some(format!("Bearer {}", token.secret_str()))
        }
        None => None,
    };
    let addrs: Vec<_> = authority
        .to_socket_addrs()
        .map_err(|e| unreachable_err(&format!("cannot resolve {authority} (from {url}): {e}")))?
        .collect();
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, Duration::from_secs(10)) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                let _ = s.set_read_timeout(timeout);
                let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
                return Ok(Conn {
                    stream: Box::new(s),
                    shown: url.to_string(),
                    host: authority,
                    auth,
                    remote: true,
                });
            }
            Err(e) => last = Some(e),
        }
    }
    let e = last.map_or_else(|| "no address".to_string(), |e| e.to_string());
    Err(unreachable_err(&format!(
        "cannot reach the supervisor at {url}: {e} (is remote control on? it listens only where its control_addr / --control-addr says)"
    )))
}

/// `http://HOST:PORT` (a final `/` allowed) → `HOST:PORT`.
fn parse_url(url: &str) -> std::result::Result<String, String> {
    let t = url.trim();
    let lower = t.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err(format!(
            "--url {t}: remote control speaks plain HTTP; for TLS put it behind a proxy or an SSH tunnel and give its http:// address"
        ));
    }
    let bad = || format!("--url {t}: expected http://HOST:PORT, e.g. http://127.0.0.1:9470");
    let rest = t
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("http://"))
        .map(|_| &t[7..])
        .ok_or_else(bad)?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let port_ok = authority
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if authority.contains(['/', '@', '?', '#']) || !port_ok {
        return Err(bad());
    }
    Ok(authority.to_string())
}

/// Sends one request; `timeout` bounds each read (None: wait forever, for followers).
fn call(
    conn: &ConnArgs,
    method: &str,
    target: &str,
    body: Option<Vec<u8>>,
    timeout: Option<Duration>,
) -> Result<Reply> {
    let Conn {
        mut stream,
        shown,
        host,
        auth,
        remote,
    } = connect(conn, timeout)?;
    let body = body.unwrap_or_default();
    let mut req = format!("{method} {target} HTTP/1.0\r\nhost: {host}\r\n");
    if let Some(a) = &auth {
        req.push_str(&format!("authorization: {a}\r\n"));
    }
    if method == "POST" {
        req.push_str("content-type: application/json\r\n");
        req.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(&body);
    stream
        .write_all(&bytes)
        .map_err(|e| unreachable_err(&format!("sending the request to {shown}: {e}")))?;
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line)
        .map_err(|e| unreachable_err(&format!("no answer from {shown}: {e}")))?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| unreachable_err(&format!("{shown} did not answer in HTTP")))?;
    loop {
        line.clear();
        let n = r
            .read_line(&mut line)
            .map_err(|e| unreachable_err(&format!("reading the answer: {e}")))?;
        if n == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    if remote && status == 401 {
        let msg = if auth.is_some() {
            format!("the supervisor at {shown} refused the token (401): check --token-file / SUPERVISOR_TOKEN_FILE against its control_token_file")
        } else {
            format!("the supervisor at {shown} requires a token (401): give the file holding it with --token-file PATH or SUPERVISOR_TOKEN_FILE")
        };
        return Err(Failure {
            code: EXIT_BAD_REQUEST,
            msg,
        });
    }
    Ok(Reply { status, body: r })
}

fn connect_error(path: &Path, e: &io::Error) -> Failure {
    let hint = match e.kind() {
        io::ErrorKind::PermissionDenied => {
            "only root and the user the supervisor runs as may use its control socket"
        }
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            "is the supervisor running? give its socket with --socket PATH or SUPERVISOR_SOCKET"
        }
        _ => "give the socket of a running supervisor with --socket PATH or SUPERVISOR_SOCKET",
    };
    unreachable_err(&format!(
        "cannot reach the supervisor at {}: {e} ({hint})",
        path.display()
    ))
}

/// The server's `{"error": ...}`, or the body as is.
fn refusal(status: u16, body: &str) -> Failure {
    let msg = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.trim().to_string());
    Failure {
        code: if (400..500).contains(&status) {
            EXIT_BAD_REQUEST
        } else {
            EXIT_FAILED
        },
        msg,
    }
}

/// Sends a request and returns the 200 body, or the refusal.
fn exchange(
    conn: &ConnArgs,
    method: &str,
    target: &str,
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<String> {
    let (status, text) = call(conn, method, target, body, Some(timeout))?.text()?;
    if status == 200 {
        Ok(text)
    } else {
        Err(refusal(status, &text))
    }
}

fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Failure {
        code: EXIT_FAILED,
        msg: format!("unexpected answer from the supervisor ({e}): {text}"),
    })
}

/// `a b` → `name=a&name=b`, percent-encoded.
fn query(key: &str, values: &[String]) -> String {
    values
        .iter()
        .map(|v| format!("{key}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~:*".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn status(conn: &ConnArgs, names: &[String]) -> Result<u8> {
    let target = if names.is_empty() {
        "/v1/status".to_string()
    } else {
        format!("/v1/status?{}", query("name", names))
    };
    let text = exchange(conn, "GET", &target, None, Duration::from_secs(30))?;
    let programs: Vec<Value> = parse(&text)?;
    if conn.json {
        print!("{text}");
    } else {
        print!("{}", status_table(&programs, SystemTime::now()));
    }
    let all_running = programs.iter().all(|p| p["state"] == "RUNNING");
    Ok(if all_running { 0 } else { EXIT_NOT_RUNNING })
}

/// `web   RUNNING   pid 12, uptime 0:01:02`, one line per program, columns aligned.
pub fn status_table(programs: &[Value], now: SystemTime) -> String {
    let rows: Vec<(String, String, String)> = programs
        .iter()
        .map(|p| {
            let name = p["name"].as_str().unwrap_or("?");
            let shown = match p["group"].as_str() {
                Some(g) => format!("{g}:{name}"),
                None => name.to_string(),
            };
            let state = p["state"].as_str().unwrap_or("?").to_string();
            (shown, state, describe(p, now))
        })
        .collect();
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0) + 3;
    let mut out = String::new();
    for (name, state, desc) in rows {
        out.push_str(format!("{name:<w$}{state:<10}{desc}").trim_end());
        out.push('\n');
    }
    out
}

fn describe(p: &Value, now: SystemTime) -> String {
    let restarts = p["restarts"].as_u64().unwrap_or(0);
    let restarts = if restarts > 0 {
        format!(", restarts {restarts}")
    } else {
        String::new()
    };
    if let Some(pid) = p["pid"].as_u64() {
        let up = p["uptime_s"].as_f64().unwrap_or(0.0);
        return format!("pid {pid}, uptime {}{restarts}", clock(up));
    }
    let e = &p["last_exit"];
    if e.is_null() {
        return "not started".to_string();
    }
    let how = match e["cause"].as_str().unwrap_or("") {
        "spawn_failed" => "could not be started".to_string(),
        "exited" => format!(
            "exited with status {} ({})",
            e["exit_code"].as_i64().unwrap_or(0),
            if e["expected"].as_bool().unwrap_or(false) {
                "expected"
            } else {
                "unexpected"
            }
        ),
        "oom_killed" => "killed by the OOM killer".to_string(),
        cause => format!(
            "killed by {}{}",
            e["signal"].as_str().unwrap_or("a signal"),
            if cause == "core_dumped" {
                " (core dumped)"
            } else {
                ""
            }
        ),
    };
    let ago = e["at"]
        .as_str()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .and_then(|at| now.duration_since(at).ok())
        .map(|d| format!(", {} ago", clock(d.as_secs_f64())))
        .unwrap_or_default();
    format!("{how}{ago}{restarts}")
}

/// Seconds as `H:MM:SS` (supervisorctl's uptime), with days when over a day.
fn clock(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d} days, {h}:{m:02}:{s:02}")
    } else {
        format!("{h}:{m:02}:{s:02}")
    }
}

fn action(verb: &str, a: &ActionArgs) -> Result<u8> {
    let max = crate::control::api::MAX_WAIT.as_secs_f64();
    if !(a.timeout > 0.0 && a.timeout <= max) {
        return Err(Failure {
            code: EXIT_BAD_REQUEST,
            msg: format!(
                "--timeout {}: expected a number of seconds above 0 and at most {max}",
                a.timeout
            ),
        });
    }
    let body = ActionBody {
        names: a.names.clone(),
        wait: !a.no_wait,
        timeout_s: Some(a.timeout),
    };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let read_timeout = Duration::from_secs_f64(a.timeout.min(max) + 30.0);
    let text = exchange(
        &a.conn,
        "POST",
        &format!("/v1/{verb}"),
        Some(body),
        read_timeout,
    )?;
    outcomes(&a.conn, &text)
}

fn outcomes(conn: &ConnArgs, text: &str) -> Result<u8> {
    let list: Vec<Outcome> = parse(text)?;
    if conn.json {
        print!("{text}");
    } else {
        for o in &list {
            println!("{}: {}", o.name, o.msg);
        }
    }
    Ok(if list.iter().all(|o| o.ok) {
        0
    } else {
        EXIT_FAILED
    })
}

fn signal_cmd(conn: &ConnArgs, signal: String, names: Vec<String>) -> Result<u8> {
    let body = serde_json::to_vec(&SignalBody { signal, names }).unwrap_or_default();
    let text = exchange(
        conn,
        "POST",
        "/v1/signal",
        Some(body),
        Duration::from_secs(30),
    )?;
    outcomes(conn, &text)
}

/// Copies a streamed body to stdout as it comes; a closed stdout ends it quietly.
fn pump(
    mut reply: Reply,
    mut each: impl FnMut(&[u8], &mut dyn Write) -> io::Result<()>,
) -> Result<u8> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match reply.body.read(&mut buf) {
            Ok(0) => return Ok(0),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(unreachable_err(&format!("the supervisor went away: {e}"))),
        };
        match each(&buf[..n], &mut out).and_then(|_| out.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(0),
            Err(e) => {
                return Err(Failure {
                    code: EXIT_FAILED,
                    msg: format!("writing to stdout: {e}"),
                })
            }
        }
    }
}

fn streamed(conn: &ConnArgs, target: &str, follow: bool) -> Result<Reply> {
    let timeout = if follow {
        None
    } else {
        Some(Duration::from_secs(30))
    };
    let reply = call(conn, "GET", target, None, timeout)?;
    if reply.status != 200 {
        let (status, text) = reply.text()?;
        return Err(refusal(status, &text));
    }
    Ok(reply)
}

fn tail(
    conn: &ConnArgs,
    name: &str,
    stderr: bool,
    bytes: Option<usize>,
    follow: bool,
) -> Result<u8> {
    let mut target = format!(
        "/v1/tail?name={}&stream={}",
        encode(name),
        if stderr { "stderr" } else { "stdout" }
    );
    if let Some(n) = bytes {
        target.push_str(&format!("&bytes={n}"));
    }
    if follow {
        target.push_str("&follow=1");
    }
    let reply = streamed(conn, &target, follow)?;
    pump(reply, |chunk, out| out.write_all(chunk))
}

fn events(conn: &ConnArgs, program: Option<&str>, limit: usize, follow: bool) -> Result<u8> {
    let mut target = format!("/v1/events?limit={limit}");
    if let Some(p) = program {
        target.push_str(&format!("&program={}", encode(p)));
    }
    if follow {
        target.push_str("&follow=1");
    }
    let reply = streamed(conn, &target, follow)?;
    if conn.json {
        return pump(reply, |chunk, out| out.write_all(chunk));
    }
    let mut partial: Vec<u8> = Vec::new();
    pump(reply, move |chunk, out| {
        partial.extend_from_slice(chunk);
        while let Some(i) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=i).collect();
            if let Ok(v) = serde_json::from_slice::<Value>(&line) {
                writeln!(out, "{}", event_text(&v))?;
            }
        }
        Ok(())
    })
}

/// supervisord's log line for a JSON event: `2026-11-25 14:36:38,123 INFO spawned: ...`.
pub fn event_text(v: &Value) -> String {
    let ts = v["ts"]
        .as_str()
        .unwrap_or("")
        .trim_end_matches('Z')
        .replacen('T', " ", 1)
        .replacen('.', ",", 1);
    let level = match v["level"].as_str().unwrap_or("") {
        "debug" => "DEBG",
        "warn" => "WARN",
        "error" => "CRIT",
        _ => "INFO",
    };
    format!("{ts} {level} {}", v["msg"].as_str().unwrap_or(""))
}

/// `supervisor why NAME`: the last `last` deaths, newest first.
fn why(conn: &ConnArgs, name: &str, last: usize) -> Result<u8> {
    // Validates the name (an unknown one is an error listing the known ones).
    exchange(
        conn,
        "GET",
        &format!("/v1/status?{}", query("name", &[name.to_string()])),
        None,
        Duration::from_secs(30),
    )?;
    let text = exchange(
        conn,
        "GET",
        &format!("/v1/events?limit=10000&program={}", encode(name)),
        None,
        Duration::from_secs(30),
    )?;
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let deaths = why::deaths(&events, last);
    if conn.json {
        for (death, _) in &deaths {
            println!("{death}");
        }
    } else if deaths.is_empty() {
        println!(
            "{name} has not died since the supervisor started (or its deaths left the history)."
        );
    } else {
        for (death, next) in &deaths {
            println!("{}\n", why::paragraph(death, next.as_ref()));
        }
    }
    Ok(0)
}

fn reload(conn: &ConnArgs) -> Result<u8> {
    let text = exchange(conn, "POST", "/v1/reload", None, Duration::from_secs(60))?;
    if conn.json {
        print!("{text}");
        return Ok(0);
    }
    let v: Value = parse(&text)?;
    let list = |k: &str| -> Vec<String> {
        v[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut any = false;
    for (key, what) in [
        ("added", "added"),
        ("changed", "changed (restarted)"),
        ("removed", "removed"),
    ] {
        for name in list(key) {
            println!("{name}: {what}");
            any = true;
        }
    }
    if !any {
        println!("no changes");
    }
    Ok(0)
}

fn shutdown(conn: &ConnArgs) -> Result<u8> {
    let text = exchange(conn, "POST", "/v1/shutdown", None, Duration::from_secs(30))?;
    if conn.json {
        print!("{text}");
    } else {
        println!("Shut down");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table_aligns_and_describes() {
        let now = SystemTime::now();
        let programs: Vec<Value> = serde_json::from_str(
            r#"[{"name":"web","state":"RUNNING","pid":12,"uptime_s":62.5,"restarts":0},
                {"name":"worker_00","group":"worker","state":"FATAL","restarts":3,
                 "last_exit":{"cause":"exited","exit_code":1,"expected":false}},
                {"name":"db","state":"STOPPED","restarts":0}]"#,
        )
        .unwrap();
        let t = status_table(&programs, now);
        assert_eq!(
            t,
            "web                RUNNING   pid 12, uptime 0:01:02\n\
             worker:worker_00   FATAL     exited with status 1 (unexpected), restarts 3\n\
             db                 STOPPED   not started\n"
        );
    }

    #[test]
    fn urls_are_http_host_port() {
        assert_eq!(
            parse_url("http://127.0.0.1:9470").unwrap(),
            "127.0.0.1:9470"
        );
        assert_eq!(parse_url("HTTP://localhost:1/").unwrap(), "localhost:1");
        assert_eq!(parse_url("http://[::1]:9470").unwrap(), "[::1]:9470");
        for bad in [
            "127.0.0.1:9470",
            "http://127.0.0.1",
            "http://:9470",
            "http://h:9470/v1",
            "http://u@h:1",
            "http://h:99999",
            "ftp://h:1",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        assert!(parse_url("https://h:1").unwrap_err().contains("plain HTTP"));
    }

    #[test]
    fn names_are_percent_encoded() {
        assert_eq!(
            query("name", &["a b".into(), "g:*".into()]),
            "name=a%20b&name=g:*"
        );
        assert_eq!(encode("x&y=z"), "x%26y%3Dz");
    }
}
