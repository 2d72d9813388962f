//! End-to-end test harness: runs the real `supervisor` binary — as PID 1 in a fresh PID
//! namespace (`unshare --pid --fork --mount-proc`) or as a plain child (subreaper mode) — and
//! reads its JSON log as the user would.
//!
//! Every started supervisor is killed (its whole process group) when its [`Sup`] is dropped,
//! so a hung binary fails its test instead of hanging CI.

use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The supervisor binary under test: `$SUPERVISOR_BIN`, else target/release, else target/debug.
pub fn bin() -> PathBuf {
    if let Ok(p) = std::env::var("SUPERVISOR_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    for profile in ["release", "debug"] {
        let p = root.join("target").join(profile).join("supervisor");
        if p.exists() {
            return p;
        }
    }
    panic!("supervisor binary not found: run `cargo build --release -p supervisor` or set SUPERVISOR_BIN");
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let base =
            std::env::temp_dir().join(format!("sup-e2e-{tag}-{}-{}", std::process::id(), unique()));
        fs::create_dir_all(&base).expect("create temp dir");
        TempDir(base)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    /// Writes `text` to `name` inside the directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("create dir");
        }
        fs::write(&p, text).expect("write file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// How to run the supervisor.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// PID 1 of a new PID namespace.
    Pid1,
    /// A plain child of the test (child subreaper).
    Child,
}

/// A running supervisor.
pub struct Sup {
    child: Child,
    pub log_path: PathBuf,
    pub err_path: PathBuf,
    pub mode: Mode,
    exit: Option<i32>,
    _dir: Option<TempDir>,
}

impl Sup {
    /// Starts `supervisor <args>` with stdout/stderr going to files in `dir`.
    pub fn start(mode: Mode, dir: &Path, args: &[&str]) -> Sup {
        let bin = bin();
        match mode {
            Mode::Pid1 => {
                let mut full = vec![
                    "--pid",
                    "--fork",
                    "--mount-proc",
                    "--kill-child",
                    bin.to_str().expect("utf-8 path"),
                ];
                full.extend_from_slice(args);
                Sup::start_command(mode, dir, "unshare", &full)
            }
            Mode::Child => Sup::start_command(mode, dir, bin.to_str().expect("utf-8 path"), args),
        }
    }

    /// Starts `program args` (which must exec the supervisor, keeping its pid) as a plain child.
    pub fn start_command(mode: Mode, dir: &Path, program: &str, args: &[&str]) -> Sup {
        let log_path = dir.join(format!("supervisor-{}.log", unique()));
        let err_path = dir.join(format!("supervisor-{}.err", unique()));
        let out = fs::File::create(&log_path).expect("create log file");
        let err = fs::File::create(&err_path).expect("create err file");
        let mut cmd = Command::new(program);
        // Tests run in parallel: each supervisor gets its own control socket unless the test
        // names one (`--socket` wins over the environment).
        cmd.env(
            "SUPERVISOR_SOCKET",
            dir.join(format!("control-{}.sock", unique())),
        );
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd.spawn().expect("spawn supervisor");
        Sup {
            child,
            log_path,
            err_path,
            mode,
            exit: None,
            _dir: None,
        }
    }

    /// Starts `supervisor <args>` (as a plain child) inside the memory cgroup `cg`, from its
    /// very first instruction.
    pub fn start_in_cgroup(cg: &MemoryCgroup, dir: &Path, args: &[&str]) -> Sup {
        let procs = cg.dir.join("cgroup.procs");
        let script = format!("echo $$ > {} && exec \"$@\"", procs.display());
        let bin = bin();
        let mut full = vec![
            "-c",
            script.as_str(),
            "sh",
            bin.to_str().expect("utf-8 path"),
        ];
        full.extend_from_slice(args);
        // `exec` keeps the pid: the supervisor is the child we started.
        Sup::start_command(Mode::Child, dir, "sh", &full)
    }

    /// Starts the supervisor on a config file with metrics off.
    pub fn with_config(mode: Mode, dir: &Path, config: &Path) -> Sup {
        Sup::start(
            mode,
            dir,
            &[
                "run",
                "-c",
                config.to_str().unwrap(),
                "--metrics-addr",
                "off",
            ],
        )
    }

    /// The supervisor's pid as seen from the test (outside its namespace).
    pub fn host_pid(&self) -> u32 {
        match self.mode {
            Mode::Child => self.child.id(),
            Mode::Pid1 => {
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    let kids =
                        fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.child.id()))
                            .unwrap_or_default();
                    if let Some(pid) = kids.split_whitespace().next().and_then(|p| p.parse().ok()) {
                        return pid;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "the supervisor did not start under unshare"
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// Maps a pid as the supervisor sees it to the pid as the test sees it.
    pub fn to_host_pid(&self, pid: u32) -> u32 {
        if self.mode == Mode::Child {
            return pid;
        }
        let ns = fs::read_link(format!("/proc/{}/ns/pid", self.host_pid()))
            .expect("pid ns of the supervisor");
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let Some(host) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if fs::read_link(format!("/proc/{host}/ns/pid")).ok().as_ref() != Some(&ns) {
                continue;
            }
            let status = fs::read_to_string(format!("/proc/{host}/status")).unwrap_or_default();
            if let Some(line) = status.lines().find(|l| l.starts_with("NSpid:")) {
                if line
                    .split_whitespace()
                    .last()
                    .and_then(|s| s.parse::<u32>().ok())
                    == Some(pid)
                {
                    return host;
                }
            }
        }
        panic!("pid {pid} not found in the supervisor's namespace");
    }

    /// Sends `sig` to the supervisor itself from outside.
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on a pid we own.
        let rc = unsafe { libc::kill(self.host_pid() as i32, sig) };
        assert_eq!(rc, 0, "kill({}) failed", self.host_pid());
    }

    /// Sends `sig` to the process the supervisor knows as `pid`, from outside.
    pub fn signal_program_pid(&self, pid: u32, sig: i32) {
        let host = self.to_host_pid(pid);
        // SAFETY: plain kill(2).
        let rc = unsafe { libc::kill(host as i32, sig) };
        assert_eq!(rc, 0, "kill({host}) failed");
    }

    /// Every JSON line of the log so far (non-JSON lines are skipped).
    pub fn events(&self) -> Vec<Value> {
        let text = fs::read_to_string(&self.log_path).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("event").is_some())
            .collect()
    }

    /// The log's raw text.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until an event satisfying `pred` is in the log; returns it.
    pub fn wait_event(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            if Instant::now() > deadline {
                panic!("timed out after {timeout:?} waiting for {what}\n--- log ---\n{}\n--- stderr ---\n{}", self.log_text(), fs::read_to_string(&self.err_path).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the `n`-th event (1-based) satisfying `pred`.
    pub fn wait_nth(
        &self,
        what: &str,
        n: usize,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let found: Vec<Value> = self.events().into_iter().filter(|e| pred(e)).collect();
            if found.len() >= n {
                return found[n - 1].clone();
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what} #{n} (saw {})\n--- log ---\n{}",
                    found.len(),
                    tail(&self.log_text(), 60)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the supervisor to exit; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        if let Some(c) = self.exit {
            return c;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let code = status.code().unwrap_or_else(|| {
                    128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
                });
                self.exit = Some(code);
                return code;
            }
            if Instant::now() > deadline {
                panic!(
                    "the supervisor did not exit within {timeout:?}\n--- log ---\n{}",
                    tail(&self.log_text(), 60)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the supervisor process is still running.
    pub fn running(&mut self) -> bool {
        self.exit.is_none() && self.child.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Sup {
    fn drop(&mut self) {
        if self.exit.is_none() {
            // SAFETY: kill(2) on the process group we created for this supervisor.
            unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
            if let Some(pid) =
                fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.child.id()))
                    .ok()
                    .and_then(|k| {
                        k.split_whitespace()
                            .next()
                            .and_then(|p| p.parse::<i32>().ok())
                    })
            {
                // SAFETY: as above, the supervisor under unshare.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            let _ = self.child.wait();
        }
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Field accessors for log events.
pub fn kind(e: &Value) -> &str {
    e["event"].as_str().unwrap_or("")
}
pub fn program(e: &Value) -> &str {
    e["program"].as_str().unwrap_or("")
}
pub fn msg(e: &Value) -> &str {
    e["msg"].as_str().unwrap_or("")
}
pub fn pid(e: &Value) -> u32 {
    e["pid"].as_u64().expect("event has a pid") as u32
}
/// Matches events of `kind` about `prog`.
pub fn is(e: &Value, k: &str, prog: &str) -> bool {
    kind(e) == k && program(e) == prog
}

/// Runs `supervisor ARGS` to completion; returns (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("run supervisor");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Appends `text` to a file (to edit configs in reload tests).
pub fn append(path: &Path, text: &str) {
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(text.as_bytes()).expect("append");
}

/// Zombie processes in the namespace of `sup` (as the test sees them).
pub fn zombies_in_ns_of(host_pid: u32) -> Vec<u32> {
    let ns = match fs::read_link(format!("/proc/{host_pid}/ns/pid")) {
        Ok(ns) => ns,
        Err(_) => return vec![],
    };
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| fs::read_link(format!("/proc/{p}/ns/pid")).ok().as_ref() == Some(&ns))
        .filter(|p| {
            fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, r)| r.trim_start().starts_with('Z'))
                })
                .unwrap_or(false)
        })
        .collect()
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// An HTTP response read to the end of the connection.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends `raw` to `addr` (loopback only) and reads the response until the server closes the
/// connection; `None` when the connection fails or no HTTP response comes within 10 s.
pub fn http_raw(addr: &str, raw: &[u8]) -> Option<HttpReply> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let _ = s.write_all(raw);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(HttpReply {
        status,
        headers,
        body: body.to_string(),
    })
}

/// `GET path` as HTTP/1.0 (so no chunked encoding comes back); panics when nothing answers.
pub fn http_get(addr: &str, path: &str) -> HttpReply {
    http_raw(
        addr,
        format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes(),
    )
    .unwrap_or_else(|| panic!("no HTTP response from {addr}{path}"))
}

/// A memory cgroup (v2, or the v1 memory controller) with a limit, removed on drop.
pub struct MemoryCgroup {
    dir: PathBuf,
}

impl MemoryCgroup {
    /// Creates a child of the test's own memory cgroup limited to `limit` bytes (no swap).
    pub fn create(tag: &str, limit: u64) -> Option<MemoryCgroup> {
        let cgroups = fs::read_to_string("/proc/self/cgroup").ok()?;
        let name = format!("sup-e2e-{tag}-{}", std::process::id());
        for line in cgroups.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let rel = path.trim_start_matches('/');
            let (base, files): (PathBuf, &[&str]) = if controllers.is_empty() {
                (
                    PathBuf::from("/sys/fs/cgroup").join(rel),
                    &["memory.max", "memory.swap.max"],
                )
            } else if controllers.split(',').any(|c| c == "memory") {
                (
                    PathBuf::from("/sys/fs/cgroup/memory").join(rel),
                    &["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"],
                )
            } else {
                continue;
            };
            if !base.join(files[0]).exists() && !base.join("cgroup.procs").exists() {
                continue;
            }
            let dir = base.join(&name);
            if fs::create_dir(&dir).is_err() || !dir.join(files[0]).exists() {
                let _ = fs::remove_dir(&dir);
                continue;
            }
            for f in files {
                let value = if f.contains("swap") {
                    "0".to_string()
                } else {
                    limit.to_string()
                };
                let _ = fs::write(dir.join(f), value);
            }
            return Some(MemoryCgroup { dir });
        }
        None
    }

    /// Moves `pid` into the cgroup.
    pub fn add(&self, pid: u32) {
        fs::write(self.dir.join("cgroup.procs"), pid.to_string()).expect("move into cgroup");
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // The cgroup can be removed once its processes are gone; retry briefly.
        for _ in 0..50 {
            if fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Runs `supervisor ARGS` against the control socket `sock` (via `SUPERVISOR_SOCKET`); returns
/// (exit code, stdout, stderr).
pub fn ctl(sock: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .env("SUPERVISOR_SOCKET", sock)
        .output()
        .expect("run supervisor");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Waits until the control socket `sock` answers `supervisor status` (any exit but 4).
pub fn wait_socket(sock: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let (code, _, err) = ctl(sock, &["status"]);
        if code != 4 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the control socket {} did not answer within {timeout:?}: {err}",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Python tool from the test venv (`supervisord`, `supervisorctl`, `httpok`, `memmon`,
/// `kubernetes-validate`, `python`): `$SUPERVISOR_VENV/bin/NAME`, else the venv that
/// `cargo xtask venv` makes under target/. Panics with the way to get it when it is missing:
/// these tests never skip.
pub fn venv_tool(name: &str) -> PathBuf {
    let dir = match std::env::var_os("SUPERVISOR_VENV") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root")
            .join("target/xtask/venv"),
    };
    let tool = dir.join("bin").join(name);
    assert!(
        tool.exists(),
        "{} is missing: run `cargo xtask venv` (it installs supervisor, superlance and \
         kubernetes-validate from PyPI into {}), or run the tests with `cargo xtask test`",
        tool.display(),
        dir.display()
    );
    tool
}

/// The Python side of [`yaml_docs`] and [`schema_errors`]: PyYAML and `jsonschema`, which the
/// test venv has (kubernetes-validate depends on both).
const PY_SCHEMA_TOOL: &str = r#"
import json, sys
import yaml, jsonschema

def close(s):
    # What `kubectl apply --validate=strict` does with a CRD's structural schema: an object
    # with listed properties takes no others, unless it says it keeps unknown fields.
    if isinstance(s, dict):
        if ("properties" in s and "additionalProperties" not in s
                and not s.get("x-kubernetes-preserve-unknown-fields")):
            s["additionalProperties"] = False
        for v in s.values():
            close(v)
    elif isinstance(s, list):
        for v in s:
            close(v)

mode = sys.argv[1]
if mode == "yaml":
    docs = [d for d in yaml.safe_load_all(sys.stdin.read()) if d is not None]
    json.dump(docs, sys.stdout)
else:
    schema = json.load(open(sys.argv[2]))
    if mode == "strict":
        close(schema)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    errors = cls(schema).iter_errors(json.load(sys.stdin))
    for e in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
        print("/".join(str(p) for p in e.absolute_path) or "(root)", ":", e.message)
"#;

/// Runs [`PY_SCHEMA_TOOL`] with the venv's Python: `args`, `input` on stdin; its stdout.
fn py_schema_tool(args: &[&str], input: &str) -> String {
    let python = venv_tool("python3");
    let mut child = Command::new(&python)
        .arg("-c")
        .arg(PY_SCHEMA_TOOL)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write to python");
    let out = child.wait_with_output().expect("wait for python");
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}): {}",
        python.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every document of a YAML text, as JSON (PyYAML's safe loader: a real YAML parser).
pub fn yaml_docs(text: &str) -> Vec<Value> {
    let json = py_schema_tool(&["yaml"], text);
    match serde_json::from_str::<Value>(&json) {
        Ok(Value::Array(docs)) => docs,
        other => panic!("PyYAML gave no list of documents: {other:?}"),
    }
}

/// What the JSON schema in `schema` (a file) finds wrong with `instance`, one line per error
/// (`path : message`); empty when it is valid. `strict` closes the schema's objects first, as
/// the API server's strict field validation does for a CRD (tests/fixtures/schemas/README.md).
pub fn schema_errors(schema: &Path, instance: &Value, strict: bool) -> Vec<String> {
    let mode = if strict { "strict" } else { "as-is" };
    let schema = schema.to_str().expect("utf-8 path");
    py_schema_tool(&[mode, schema], &instance.to_string())
        .lines()
        .map(String::from)
        .collect()
}
