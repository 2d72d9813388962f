//! The control protocol, version 1: what a request may say, decoded and validated in one pure
//! function ([`decode`]) that the server, the tests and the fuzz target share.
//!
//! The vocabulary is deliberately small: program names (or `GROUP:*`, `GROUP:NAME`, `all`),
//! signal names, numbers and flags. Nothing in a request can name a command, a file or a config
//! path, so no request can make the supervisor run or read anything it was not configured with.
//!
//! | request                          | body (JSON)                                   |
//! |----------------------------------|-----------------------------------------------|
//! | `GET  /v1/ping`                  |                                               |
//! | `GET  /v1/status?name=N...`      |                                               |
//! | `POST /v1/start\|stop\|restart`  | `{"names":[..],"wait":true,"timeout_s":120}`  |
//! | `POST /v1/signal`                | `{"signal":"HUP","names":[..]}`               |
//! | `GET  /v1/tail?name=N&stream=stdout\|stderr&bytes=N&follow=1` |                  |
//! | `GET  /v1/events?program=N&limit=N&follow=1` |                                   |
//! | `POST /v1/reload`, `POST /v1/shutdown` |                                         |

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::handle::Control;
use crate::output::Stream;

/// The largest request body accepted.
pub const MAX_BODY: usize = 64 << 10;
/// The most names one request may carry, and the longest name.
pub const MAX_NAMES: usize = 1024;
pub const MAX_NAME_LEN: usize = 256;
/// Waiting for start/stop outcomes: the default and the longest a client may ask for.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(120);
pub const MAX_WAIT: Duration = Duration::from_secs(3600);
/// Events sent before the live ones when no limit is given, and the most.
pub const DEFAULT_EVENTS: usize = 20;
pub const MAX_EVENTS: usize = 10_000;

/// A decoded, validated request.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Ping,
    Status {
        names: Vec<String>,
    },
    Action {
        action: Control,
        names: Vec<String>,
        wait: bool,
        timeout: Duration,
    },
    Signal {
        signo: i32,
        names: Vec<String>,
    },
    Tail {
        name: String,
        stream: Stream,
        bytes: usize,
        follow: bool,
    },
    Events {
        program: Option<String>,
        limit: usize,
        follow: bool,
    },
    Reload,
    Shutdown,
}

/// Why a request was refused: an HTTP status and a sentence for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: String,
}

fn reject(status: u16, reason: impl Into<String>) -> Rejection {
    Rejection {
        status,
        reason: reason.into(),
    }
}

/// The body of `start`, `stop` and `restart`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    pub names: Vec<String>,
    #[serde(default = "yes")]
    pub wait: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<f64>,
}

fn yes() -> bool {
    true
}

/// The body of `signal`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalBody {
    pub signal: String,
    pub names: Vec<String>,
}

/// One program's outcome of `start`, `stop` or `restart`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    pub name: String,
    /// False when the program did not reach the state asked for.
    pub ok: bool,
    /// Its state when the outcome was known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// What supervisorctl would print after `name: `, e.g. `started`, `ERROR (spawn error)`.
    pub msg: String,
}

/// Decodes one request. Pure: no I/O, no panics on any input.
pub fn decode(method: &str, path: &str, query: Option<&str>, body: &[u8]) -> Result<Op, Rejection> {
    if body.len() > MAX_BODY {
        return Err(reject(413, format!("request body over {MAX_BODY} bytes")));
    }
    let Some(route) = path.strip_prefix("/v1/") else {
        return Err(reject(
            404,
            "unknown path: this is the supervisor control API, version 1 (/v1/...)",
        ));
    };
    let get = || expect_method(method, "GET", path).and_then(|_| no_body(body));
    let post = || expect_method(method, "POST", path);
    let query = query.unwrap_or("");
    match route {
        "ping" => {
            get()?;
            no_query(query)?;
            Ok(Op::Ping)
        }
        "status" => {
            get()?;
            let mut names = Vec::new();
            for (k, v) in pairs(query)? {
                match k.as_str() {
                    "name" => names.push(v),
                    other => return Err(unknown_param(other, "name")),
                }
            }
            check_names(&names, false)?;
            Ok(Op::Status { names })
        }
        "start" | "stop" | "restart" => {
            post()?;
            no_query(query)?;
            let action = match route {
                "start" => Control::Start,
                "stop" => Control::Stop,
                _ => Control::Restart,
            };
            let b: ActionBody = json_body(body)?;
            check_names(&b.names, true)?;
            let timeout = match b.timeout_s {
                None => DEFAULT_WAIT,
                Some(s) if s > 0.0 && s <= MAX_WAIT.as_secs_f64() => Duration::from_secs_f64(s),
                Some(s) => {
                    return Err(reject(
                        400,
                        format!(
                            "timeout_s {s}: expected a number of seconds above 0 and at most {}",
                            MAX_WAIT.as_secs()
                        ),
                    ))
                }
            };
            Ok(Op::Action {
                action,
                names: b.names,
                wait: b.wait,
                timeout,
            })
        }
        "signal" => {
            post()?;
            no_query(query)?;
            let b: SignalBody = json_body(body)?;
            check_names(&b.names, true)?;
            let signo = parse_signal(&b.signal).map_err(|e| reject(400, e))?;
            Ok(Op::Signal {
                signo,
                names: b.names,
            })
        }
        "tail" => {
            get()?;
            let mut name = None;
            let mut stream = Stream::Stdout;
            let mut bytes = crate::output::ring::RING_BYTES;
            let mut follow = false;
            for (k, v) in pairs(query)? {
                match k.as_str() {
                    "name" => name = Some(v),
                    "stream" => {
                        stream = match v.as_str() {
                            "stdout" => Stream::Stdout,
                            "stderr" => Stream::Stderr,
                            _ => return Err(reject(400, format!("stream={v}: expected stdout or stderr"))),
                        }
                    }
                    "bytes" => bytes = number(&k, &v)?,
                    "follow" => follow = flag(&k, &v)?,
                    other => return Err(unknown_param(other, "name, stream, bytes, follow")),
                }
            }
            let name = name.ok_or_else(|| reject(400, "tail needs name=PROGRAM"))?;
            check_names(std::slice::from_ref(&name), true)?;
            Ok(Op::Tail {
                name,
                stream,
                bytes,
                follow,
            })
        }
        "events" => {
            get()?;
            let mut program = None;
            let mut limit = DEFAULT_EVENTS;
            let mut follow = false;
            for (k, v) in pairs(query)? {
                match k.as_str() {
                    "program" => program = Some(v),
                    "limit" => limit = number(&k, &v)?.min(MAX_EVENTS),
                    "follow" => follow = flag(&k, &v)?,
                    other => return Err(unknown_param(other, "program, limit, follow")),
                }
            }
            if let Some(p) = &program {
                check_names(std::slice::from_ref(p), true)?;
            }
            Ok(Op::Events {
                program,
                limit,
                follow,
            })
        }
        "reload" | "shutdown" => {
            post()?;
            no_query(query)?;
            if !body.is_empty() && body.iter().any(|b| !b.is_ascii_whitespace()) && body != b"{}" {
                return Err(reject(400, format!("/v1/{route} takes no body")));
            }
            Ok(if route == "reload" {
                Op::Reload
            } else {
                Op::Shutdown
            })
        }
        _ => Err(reject(
            404,
            "unknown request; known: ping, status, start, stop, restart, signal, tail, events, reload, shutdown",
        )),
    }
}

fn expect_method(method: &str, want: &str, path: &str) -> Result<(), Rejection> {
    if method == want {
        Ok(())
    } else {
        Err(reject(405, format!("{path} takes {want}, not {method}")))
    }
}

fn no_body(body: &[u8]) -> Result<(), Rejection> {
    if body.is_empty() {
        Ok(())
    } else {
        Err(reject(400, "a GET request carries no body"))
    }
}

fn no_query(query: &str) -> Result<(), Rejection> {
    if query.is_empty() {
        Ok(())
    } else {
        Err(reject(400, "this request takes no query parameters"))
    }
}

fn pairs(query: &str) -> Result<Vec<(String, String)>, Rejection> {
    if query.len() > MAX_BODY {
        return Err(reject(414, "query too long"));
    }
    crate::http::parse_query(query).map_err(|e| reject(400, e))
}

fn unknown_param(name: &str, known: &str) -> Rejection {
    let shown: String = name.chars().take(64).collect();
    reject(
        400,
        format!("unknown parameter `{shown}`; this request takes {known}"),
    )
}

fn number(key: &str, v: &str) -> Result<usize, Rejection> {
    v.parse()
        .map_err(|_| reject(400, format!("{key}: expected a number")))
}

fn flag(key: &str, v: &str) -> Result<bool, Rejection> {
    match v {
        "" | "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(reject(400, format!("{key}: expected 1 or 0"))),
    }
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Rejection> {
    serde_json::from_slice(body).map_err(|e| reject(400, format!("bad JSON body: {e}")))
}

/// Names are matched against the configured programs only; these bounds keep a hostile
/// request from costing more than a glance.
fn check_names(names: &[String], need_one: bool) -> Result<(), Rejection> {
    if need_one && names.is_empty() {
        return Err(reject(400, "name at least one program, GROUP:*, or all"));
    }
    if names.len() > MAX_NAMES {
        return Err(reject(400, format!("more than {MAX_NAMES} names")));
    }
    for n in names {
        if n.is_empty() || n.len() > MAX_NAME_LEN || n.chars().any(char::is_control) {
            return Err(reject(
                400,
                format!(
                    "`{}` is not a program name (1 to {MAX_NAME_LEN} printable characters)",
                    n.chars()
                        .filter(|c| !c.is_control())
                        .take(64)
                        .collect::<String>()
                ),
            ));
        }
    }
    Ok(())
}

/// The fuzzing entry point: `METHOD\nPATH\nQUERY\nBODY` → [`decode`]. Shared by the cargo-fuzz
/// target (`fuzz/fuzz_targets/control_request.rs`) and the seeded test that runs on stable.
pub fn decode_fuzz_input(data: &[u8]) -> Result<Op, Rejection> {
    let mut parts = data.splitn(4, |&b| b == b'\n');
    let mut text = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let (method, path, query) = (text(), text(), text());
    let body = parts.next().unwrap_or_default();
    let query = (!query.is_empty()).then_some(query.as_str());
    decode(&method, &path, query, body)
}

/// `HUP`, `SIGHUP`, `sighup` or `1` → 1.
pub fn parse_signal(s: &str) -> Result<i32, String> {
    let t = s.trim();
    let bad = || {
        format!(
            "`{}` is not a signal: use a name like HUP, TERM, USR1 or a number",
            t.chars().take(32).collect::<String>()
        )
    };
    if let Ok(n) = t.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n)
            .map(|s| s as i32)
            .map_err(|_| bad());
    }
    let upper = t.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_requests_the_cli_sends() {
        assert_eq!(decode("GET", "/v1/ping", None, b""), Ok(Op::Ping));
        assert_eq!(
            decode("GET", "/v1/status", Some("name=web&name=db"), b""),
            Ok(Op::Status {
                names: vec!["web".into(), "db".into()]
            })
        );
        assert_eq!(
            decode(
                "POST",
                "/v1/stop",
                None,
                br#"{"names":["all"],"wait":false}"#
            ),
            Ok(Op::Action {
                action: Control::Stop,
                names: vec!["all".into()],
                wait: false,
                timeout: DEFAULT_WAIT
            })
        );
        assert_eq!(
            decode(
                "POST",
                "/v1/signal",
                None,
                br#"{"signal":"hup","names":["web"]}"#
            ),
            Ok(Op::Signal {
                signo: libc::SIGHUP,
                names: vec!["web".into()]
            })
        );
        assert_eq!(
            decode(
                "GET",
                "/v1/tail",
                Some("name=web&stream=stderr&follow=1"),
                b""
            ),
            Ok(Op::Tail {
                name: "web".into(),
                stream: Stream::Stderr,
                bytes: crate::output::ring::RING_BYTES,
                follow: true
            })
        );
        assert_eq!(decode("POST", "/v1/reload", None, b""), Ok(Op::Reload));
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        let status = |m, p, q, b: &[u8]| decode(m, p, q, b).unwrap_err().status;
        assert_eq!(status("GET", "/v1/stop", None, b""), 405);
        assert_eq!(status("POST", "/v1/stop", None, b"{"), 400);
        assert_eq!(status("POST", "/v1/stop", None, br#"{"names":[]}"#), 400);
        assert_eq!(
            status(
                "POST",
                "/v1/stop",
                None,
                br#"{"names":["a"],"command":"sh"}"#
            ),
            400
        );
        assert_eq!(
            status(
                "POST",
                "/v1/stop",
                None,
                br#"{"names":["a"],"timeout_s":-1}"#
            ),
            400
        );
        for huge in [
            &br#"{"names":["a"],"timeout_s":1e300}"#[..],
            br#"{"names":["a"],"timeout_s":3600.5}"#,
        ] {
            assert_eq!(
                status("POST", "/v1/stop", None, huge),
                400,
                "no clamping: the range is said"
            );
        }
        assert_eq!(
            status(
                "POST",
                "/v1/signal",
                None,
                br#"{"signal":"NOPE","names":["a"]}"#
            ),
            400
        );
        assert_eq!(
            status("GET", "/v1/tail", Some("name=a&file=/etc/passwd"), b""),
            400
        );
        assert_eq!(status("GET", "/v1/exec", None, b""), 404);
        assert_eq!(status("GET", "/RPC2", None, b""), 404);
        assert_eq!(
            status("POST", "/v1/reload", None, br#"{"config":"/tmp/x"}"#),
            400
        );
        assert_eq!(status("GET", "/v1/status", Some("name=%00"), b""), 400);
        assert_eq!(status("GET", "/v1/status", Some("name=%ZZ"), b""), 400);
        assert_eq!(
            status("POST", "/v1/start", None, &vec![b' '; MAX_BODY + 1]),
            413
        );
    }

    /// What the fuzz targets run, as a seeded test on stable Rust: random and mutated requests
    /// through [`decode`], random and mutated configs through both config parsers. No panic,
    /// and whatever is accepted is within bounds.
    #[test]
    fn seeded_fuzz_requests_and_configs() {
        let seeds: &[&[u8]] = &[
            b"GET\n/v1/status\nname=web&name=db\n",
            b"POST\n/v1/stop\n\n{\"names\":[\"all\"],\"wait\":false,\"timeout_s\":1.5}",
            b"POST\n/v1/signal\n\n{\"signal\":\"SIGHUP\",\"names\":[\"g:*\"]}",
            b"GET\n/v1/tail\nname=web&stream=stderr&bytes=100&follow=1\n",
            b"GET\n/v1/events\nprogram=x&limit=5&follow=0\n",
            b"POST\n/v1/reload\n\n{}",
        ];
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        for i in 0..20_000 {
            let input = if i % 5 == 0 {
                rng.bytes(300)
            } else {
                rng.mutate(seeds[i % seeds.len()])
            };
            if let Ok(op) = decode_fuzz_input(&input) {
                check_bounds(&op);
            }
        }
        let configs = [
            "[supervisord]\nnodaemon=true\n[program:web]\ncommand=sleep 1 %(program_name)s\nnumprocs=2\nprocess_name=%(program_name)s_%(process_num)02d\npriority=5\nenvironment=A=\"1\",B=2\n[group:g]\nprograms=web\n",
            "[supervisor]\nsocket = \"/run/s.sock\"\n[program.web]\ncommand = [\"sleep\", \"1\"]\nstartsecs = 1\nstopsignal = \"HUP\"\n",
        ];
        let path = std::path::Path::new("/nonexistent-fuzz-dir/s.conf");
        let toml_path = std::path::Path::new("/nonexistent-fuzz-dir/s.toml");
        for i in 0..4_000 {
            let text = String::from_utf8_lossy(&rng.mutate(configs[i % 2].as_bytes())).into_owned();
            let _ = crate::config::ini_format::parse(path, &text);
            let _ = crate::config::toml_format::parse(toml_path, &text);
        }
    }

    fn check_bounds(op: &Op) {
        let names: &[String] = match op {
            Op::Status { names } | Op::Action { names, .. } | Op::Signal { names, .. } => names,
            Op::Tail { name, .. } => std::slice::from_ref(name),
            _ => &[],
        };
        assert!(names.len() <= MAX_NAMES);
        assert!(names
            .iter()
            .all(|n| !n.is_empty() && n.len() <= MAX_NAME_LEN));
        if let Op::Action { timeout, .. } = op {
            assert!(*timeout <= MAX_WAIT);
        }
    }

    /// xorshift64: deterministic, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
        fn bytes(&mut self, max: usize) -> Vec<u8> {
            let n = self.below(max);
            (0..n).map(|_| self.next() as u8).collect()
        }
        fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
            const SPICE: &[&[u8]] = &[
                b"\n",
                b"\"",
                b"%",
                b"%00",
                b"[",
                b"]",
                b"{",
                b"}",
                b"=",
                b"\\",
                b"\xff",
                b"\xc3",
                b"9999999999999999999999",
                b"-1",
                b"1e400",
                b"NaN",
                b":",
                b"*",
                b"%(",
                b")s",
            ];
            let mut v = seed.to_vec();
            for _ in 0..=self.below(4) {
                let at = self.below(v.len() + 1);
                match self.below(4) {
                    0 => {
                        let s = SPICE[self.below(SPICE.len())];
                        v.splice(at..at, s.iter().copied());
                    }
                    1 => v.truncate(at),
                    2 if at < v.len() => v[at] = self.next() as u8,
                    _ => {
                        let end = (at + self.below(8)).min(v.len());
                        v.drain(at..end);
                    }
                }
            }
            v
        }
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("TERM"), Ok(libc::SIGTERM));
        assert_eq!(parse_signal("SIGUSR1"), Ok(libc::SIGUSR1));
        assert_eq!(parse_signal("9"), Ok(libc::SIGKILL));
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("999").is_err());
        assert!(parse_signal("").is_err());
    }
}
