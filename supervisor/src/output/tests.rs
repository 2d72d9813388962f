//! Tests of child output forwarding, with real children (`sh -c`) writing into real pipes.

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::file::fit;
use super::reader::{split, Piece};
use super::writer::{format_lines, Mode, Tag};
use super::{Output, Stream, BUDGET, MAX_LINE};
use crate::config::{LogFormat, LogTarget};

/// An in-memory stand-in for fd 1 or fd 2, shared between writers and the test.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("shared buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn bytes(&self) -> Vec<u8> {
        self.0.lock().expect("shared buffer").clone()
    }
    fn text(&self) -> String {
        String::from_utf8(self.bytes()).expect("output is UTF-8")
    }
    fn json_lines(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:.200}")))
            .collect()
    }
}

/// Counts the newlines written; keeps nothing.
#[derive(Clone, Default)]
struct Counter(Arc<Mutex<(u64, u64)>>);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut c = self.0.lock().expect("counter");
        c.0 += buf.iter().filter(|&&b| b == b'\n').count() as u64;
        c.1 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Blocks every write until opened; counts lines.
#[derive(Clone, Default)]
struct Gate {
    open: Arc<(Mutex<bool>, Condvar)>,
    lines: Counter,
}

impl Gate {
    fn open(&self) {
        *self.open.0.lock().expect("gate") = true;
        self.open.1.notify_all();
    }
}

impl Write for Gate {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut open = self.open.0.lock().expect("gate");
        while !*open {
            open = self.open.1.wait(open).expect("gate");
        }
        drop(open);
        self.lines.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Fails every write with `error`; counts the attempts.
struct Failing {
    errno: i32,
    calls: Arc<Mutex<u32>>,
}

impl Write for Failing {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        *self.calls.lock().expect("calls") += 1;
        Err(io::Error::from_raw_os_error(self.errno))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A child running `script`, and the read end of its stdout.
fn sh(script: &str) -> (Child, OwnedFd) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let stdout = child.stdout.take().expect("piped stdout");
    (child, OwnedFd::from(stdout))
}

/// A fresh, empty directory for one test.
fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("supervisor-output-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

fn file(path: &Path, max_bytes: u64, backups: u32) -> LogTarget {
    LogTarget::File {
        path: path.to_path_buf(),
        max_bytes,
        backups,
    }
}

/// Waits until every pipe is read to EOF and written out, then reaps the children.
async fn finish(out: &Output, children: Vec<Child>) -> Vec<ExitStatus> {
    out.drain(Duration::from_secs(120)).await;
    assert_eq!(
        *out.inner.active.borrow(),
        0,
        "a pipe was not read to EOF within 120 s"
    );
    children
        .into_iter()
        .map(|mut c| c.wait().expect("wait for child"))
        .collect()
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn with_shared(format: LogFormat) -> (Output, Shared, Shared) {
    let (stdout, stderr) = (Shared::default(), Shared::default());
    let out = Output::with_writers(format, Box::new(stdout.clone()), Box::new(stderr.clone()));
    (out, stdout, stderr)
}

/// Checks that `data` is exactly the lines "1" … "n".
fn assert_numbered(data: &[u8], n: u64) {
    let mut expected = 1u64;
    for line in data
        .strip_suffix(b"\n")
        .expect("ends with a newline")
        .split(|&b| b == b'\n')
    {
        let got: u64 = std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "line {expected}: not a number: {:?}",
                    String::from_utf8_lossy(line)
                )
            });
        assert_eq!(got, expected, "a line is lost, repeated or out of order");
        expected += 1;
    }
    assert_eq!(expected - 1, n, "lines missing at the end");
}

#[tokio::test]
async fn file_target_keeps_20mb_of_lines_in_order() {
    let dir = tempdir("20mb");
    let path = dir.join("app.log");
    let (out, _, stderr) = with_shared(LogFormat::Json);
    let n = 2_700_000;
    let (child, fd) = sh(&format!("seq 1 {n}"));
    let start = Instant::now();
    out.attach("app", Stream::Stdout, fd, &file(&path, 0, 0));
    let status = finish(&out, vec![child]).await;
    let took = start.elapsed();
    assert!(status[0].success());
    let data = read(&path);
    eprintln!(
        "20 MB test: {} bytes in {took:?} ({:.0} MB/s)",
        data.len(),
        data.len() as f64 / took.as_secs_f64() / 1e6
    );
    assert!(data.len() > 20_000_000);
    assert_numbered(&data, n);
    assert_eq!(stderr.bytes(), b"", "no error expected");
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777 & !0o644, 0, "mode {mode:o} has more than 0644");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn json_to_stdout_keeps_every_line() {
    let lines = Counter::default();
    let out = Output::with_writers(
        LogFormat::Json,
        Box::new(lines.clone()),
        Box::new(io::sink()),
    );
    let (child, fd) = sh("seq 1 500000");
    out.attach("app", Stream::Stdout, fd, &LogTarget::Stdout);
    assert!(finish(&out, vec![child]).await[0].success());
    assert_eq!(lines.0.lock().expect("counter").0, 500_000);
}

const LONG_LINES: &str = "head -c 1048576 /dev/zero | tr '\\0' a; echo; \
                          head -c 3145728 /dev/zero | tr '\\0' b; echo; echo end";

#[tokio::test]
async fn long_lines_to_a_file_arrive_whole() {
    let dir = tempdir("long-file");
    let path = dir.join("long.log");
    let (out, _, _) = with_shared(LogFormat::Json);
    let (child, fd) = sh(LONG_LINES);
    out.attach("long", Stream::Stdout, fd, &file(&path, 0, 0));
    finish(&out, vec![child]).await;
    let mut expected = vec![b'a'; MAX_LINE];
    expected.push(b'\n');
    expected.extend(std::iter::repeat_n(b'b', 3 * MAX_LINE));
    expected.extend_from_slice(b"\nend\n");
    assert!(
        read(&path) == expected,
        "file content differs from what the child wrote"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn long_lines_in_json_come_in_marked_pieces() {
    let (out, stdout, _) = with_shared(LogFormat::Json);
    let (child, fd) = sh(LONG_LINES);
    out.attach("long", Stream::Stdout, fd, &LogTarget::Stdout);
    finish(&out, vec![child]).await;
    let lines = stdout.json_lines();
    let got: Vec<(char, usize, bool)> = lines
        .iter()
        .map(|v| {
            let line = v["line"].as_str().expect("line");
            let first = line.chars().next().expect("non-empty line");
            assert!(
                line == "end" || line.chars().all(|c| c == first),
                "a piece mixes lines"
            );
            (
                first,
                line.len(),
                v.get("partial") == Some(&serde_json::Value::Bool(true)),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ('a', MAX_LINE, false),
            ('b', MAX_LINE, true),
            ('b', MAX_LINE, true),
            ('b', MAX_LINE, false),
            ('e', 3, false)
        ]
    );
}

#[tokio::test]
async fn long_lines_in_text_are_tagged_pieces() {
    let (out, stdout, _) = with_shared(LogFormat::Text);
    let (child, fd) = sh(LONG_LINES);
    out.attach("long", Stream::Stdout, fd, &LogTarget::Stdout);
    finish(&out, vec![child]).await;
    let text = stdout.text();
    let lens: Vec<usize> = text
        .lines()
        .map(|l| l.strip_prefix("[long] ").expect("tag").len())
        .collect();
    assert_eq!(lens, [MAX_LINE, MAX_LINE, MAX_LINE, MAX_LINE, 3]);
}

#[tokio::test]
async fn last_line_without_newline_is_kept() {
    let dir = tempdir("last-line");
    let path = dir.join("last.log");
    let (out, stdout, _) = with_shared(LogFormat::Json);
    let (c1, fd1) = sh("printf 'one\\ntwo'");
    let (c2, fd2) = sh("printf 'one\\ntwo'");
    out.attach("p", Stream::Stdout, fd1, &file(&path, 0, 0));
    out.attach("p", Stream::Stdout, fd2, &LogTarget::Stdout);
    finish(&out, vec![c1, c2]).await;
    assert_eq!(read(&path), b"one\ntwo\n");
    let lines: Vec<_> = stdout
        .json_lines()
        .iter()
        .map(|v| v["line"].clone())
        .collect();
    assert_eq!(lines, ["one", "two"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn json_is_tagged_lossy_and_strips_cr() {
    let (out, stdout, _) = with_shared(LogFormat::Json);
    let (child, fd) = sh("printf 'ok\\n\\377\\376bad\\nx\\r\\n\"q\" \\\\ \\t\\n\\n'");
    out.attach("web", Stream::Stderr, fd, &LogTarget::Stdout);
    finish(&out, vec![child]).await;
    let lines = stdout.json_lines();
    let texts: Vec<&str> = lines
        .iter()
        .map(|v| v["line"].as_str().expect("line"))
        .collect();
    assert_eq!(texts, ["ok", "\u{fffd}\u{fffd}bad", "x", "\"q\" \\ \t", ""]);
    for v in &lines {
        let obj = v.as_object().expect("object");
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 4, "unexpected fields in {v}");
        assert_eq!(v["program"], "web");
        assert_eq!(v["stream"], "stderr");
        let ts = v["ts"].as_str().expect("ts");
        let parsed = humantime::parse_rfc3339(ts).expect("ts is RFC 3339");
        assert!(
            ts.ends_with('Z') && ts.len() == "2026-01-01T00:00:00.000Z".len(),
            "{ts}"
        );
        let age = SystemTime::now()
            .duration_since(parsed)
            .expect("ts in the past");
        assert!(age < Duration::from_secs(60));
    }
    // Field order as documented.
    assert!(stdout.text().starts_with("{\"ts\":\""));
    assert!(stdout
        .text()
        .lines()
        .next()
        .expect("a line")
        .contains(r#"","program":"web","stream":"stderr","line":"ok"}"#));
}

#[tokio::test]
async fn text_keeps_raw_bytes() {
    let (out, stdout, _) = with_shared(LogFormat::Text);
    let (child, fd) = sh("printf 'ok\\n\\377\\376bad\\nx\\r\\n'");
    out.attach("web", Stream::Stdout, fd, &LogTarget::Stdout);
    finish(&out, vec![child]).await;
    assert_eq!(stdout.bytes(), b"[web] ok\n[web] \xff\xfebad\n[web] x\r\n");
}

/// Lines of 100 kB from two programs and the supervisor's own log, all into one stdout.
#[tokio::test]
async fn concurrent_long_lines_never_interleave() {
    for format in [LogFormat::Json, LogFormat::Text] {
        let (out, stdout, _) = with_shared(format);
        let long =
            |c: char| format!("yes $(head -c 100000 /dev/zero | tr '\\0' {c}) | head -n 200");
        let (ca, fa) = sh(&long('a'));
        let (cb, fb) = sh(&long('b'));
        out.attach("a", Stream::Stdout, fa, &LogTarget::Stdout);
        out.attach("b", Stream::Stdout, fb, &LogTarget::Stdout);
        for n in 0..100 {
            out.log_line(format!(r#"{{"event":"test","n":{n}}}"#)).await;
            tokio::task::yield_now().await;
        }
        finish(&out, vec![ca, cb]).await;
        let text = stdout.text();
        let (mut a, mut b, mut own) = (0, 0, Vec::new());
        for line in text.lines() {
            let (program, body) = if line.starts_with(r#"{"event":"test""#) {
                let v: serde_json::Value = serde_json::from_str(line).expect("own line is JSON");
                own.push(v["n"].as_u64().expect("n"));
                continue;
            } else if format == LogFormat::Json {
                let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
                assert_eq!(v.get("partial"), None);
                (
                    v["program"].as_str().expect("program").to_string(),
                    v["line"].as_str().expect("line").to_string(),
                )
            } else {
                let (tag, body) = line.split_once(' ').expect("tag");
                (tag.trim_matches(['[', ']']).to_string(), body.to_string())
            };
            assert_eq!(body.len(), 100_000, "line of {program} cut or mixed");
            let c = program.chars().next().expect("program");
            assert!(
                body.chars().all(|x| x == c),
                "line of {program} holds another program's bytes"
            );
            match c {
                'a' => a += 1,
                'b' => b += 1,
                _ => panic!("unknown program {program}"),
            }
        }
        assert_eq!((a, b), (200, 200), "{format:?}");
        assert_eq!(
            own,
            (0..100).collect::<Vec<_>>(),
            "own log lines lost or reordered"
        );
    }
}

#[tokio::test]
async fn two_streams_into_one_file_keep_lines_whole() {
    let dir = tempdir("shared-file");
    let path = dir.join("both.log");
    let (out, _, _) = with_shared(LogFormat::Json);
    let long = |c: char| format!("yes $(head -c 50000 /dev/zero | tr '\\0' {c}) | head -n 300");
    let (ca, fa) = sh(&long('a'));
    let (cb, fb) = sh(&long('b'));
    out.attach("p", Stream::Stdout, fa, &file(&path, 0, 0));
    out.attach("p", Stream::Stderr, fb, &file(&path, 0, 0));
    finish(&out, vec![ca, cb]).await;
    let data = read(&path);
    let lines: Vec<&[u8]> = data
        .strip_suffix(b"\n")
        .expect("newline")
        .split(|&b| b == b'\n')
        .collect();
    assert_eq!(lines.len(), 600);
    for line in lines {
        assert_eq!(line.len(), 50_000);
        assert!(
            line.iter().all(|&x| x == line[0]),
            "two lines mixed in the file"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

const THOUSAND_LINES: &str =
    "i=1; while [ $i -le 1000 ]; do printf 'line %04d\\n' $i; i=$((i+1)); done";

fn numbered(from: u32, to: u32) -> Vec<u8> {
    (from..=to)
        .flat_map(|i| format!("line {i:04}\n").into_bytes())
        .collect()
}

#[tokio::test]
async fn rotation_keeps_the_newest_backups() {
    let dir = tempdir("rotate");
    let path = dir.join("r.log");
    let (out, _, stderr) = with_shared(LogFormat::Json);
    let (child, fd) = sh(THOUSAND_LINES);
    out.attach("r", Stream::Stdout, fd, &file(&path, 1000, 2));
    finish(&out, vec![child]).await;
    let backup = |n: u32| dir.join(format!("r.log.{n}"));
    assert!(!backup(3).exists(), "more backups kept than asked for");
    // Lines are 10 bytes: each file holds exactly 100 of them; the oldest 700 are gone.
    assert_eq!(read(&backup(2)), numbered(701, 800));
    assert_eq!(read(&backup(1)), numbered(801, 900));
    assert_eq!(read(&path), numbered(901, 1000));
    assert_eq!(stderr.bytes(), b"");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn rotation_at_line_boundaries_and_without_backups() {
    let dir = tempdir("rotate-odd");
    let (out, _, _) = with_shared(LogFormat::Json);
    // 1005 bytes is not a multiple of the 10-byte lines: files end at the last line that fits.
    let odd = dir.join("odd.log");
    let (c1, f1) = sh(THOUSAND_LINES);
    out.attach("r", Stream::Stdout, f1, &file(&odd, 1005, 3));
    // No backups: the file is emptied instead.
    let trunc = dir.join("trunc.log");
    let (c2, f2) = sh(THOUSAND_LINES);
    out.attach("r", Stream::Stdout, f2, &file(&trunc, 1000, 0));
    finish(&out, vec![c1, c2]).await;
    let kept: Vec<u8> = [3, 2, 1]
        .iter()
        .flat_map(|n| read(&dir.join(format!("odd.log.{n}"))))
        .chain(read(&odd))
        .collect();
    assert_eq!(kept, numbered(601, 1000));
    for n in 1..=3 {
        assert_eq!(read(&dir.join(format!("odd.log.{n}"))).len(), 1000);
    }
    assert!(!dir.join("odd.log.4").exists());
    assert_eq!(read(&trunc), numbered(901, 1000));
    assert!(!dir.join("trunc.log.1").exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn unopenable_file_is_reported_once_and_the_pipe_still_drained() {
    let dir = tempdir("no-dir");
    let path = dir.join("missing-dir").join("x.log");
    let (out, stdout, stderr) = with_shared(LogFormat::Json);
    // Each writes 2 MB: far more than a pipe holds, so an unread pipe would block them.
    let (c1, f1) = sh("seq 1 300000");
    let (c2, f2) = sh("seq 1 300000");
    out.attach("x", Stream::Stdout, f1, &file(&path, 0, 0));
    out.attach("x", Stream::Stderr, f2, &file(&path, 0, 0));
    let status = finish(&out, vec![c1, c2]).await;
    assert!(
        status.iter().all(ExitStatus::success),
        "a child was not drained: {status:?}"
    );
    let errors = stderr.json_lines();
    assert_eq!(
        errors.len(),
        1,
        "reported more than once: {}",
        stderr.text()
    );
    assert_eq!(errors[0]["level"], "error");
    assert_eq!(errors[0]["program"], "x");
    assert!(errors[0]["msg"]
        .as_str()
        .expect("msg")
        .contains(&path.display().to_string()));
    assert!(errors[0]["error"]
        .as_str()
        .expect("error")
        .contains("No such file"));
    assert_eq!(stdout.bytes(), b"");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn reopen_starts_a_new_file_after_logrotate() {
    let dir = tempdir("reopen");
    let path = dir.join("app.log");
    let (out, _, _) = with_shared(LogFormat::Json);
    let (rx, tx) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe");
    out.attach("app", Stream::Stdout, rx, &file(&path, 0, 0));
    rustix::io::write(&tx, b"before\n").expect("write");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read(&path).unwrap_or_default() != b"before\n" {
        assert!(
            Instant::now() < deadline,
            "first line never reached the file"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    std::fs::rename(&path, dir.join("app.log.old")).expect("rename");
    out.reopen();
    rustix::io::write(&tx, b"after\n").expect("write");
    drop(tx);
    finish(&out, vec![]).await;
    assert_eq!(read(&dir.join("app.log.old")), b"before\n");
    assert_eq!(read(&path), b"after\n");
    let _ = std::fs::remove_dir_all(dir);
}

/// A stuck stdout stops the readers, not the child's pipe from filling: the child blocks.
#[tokio::test]
async fn slow_stdout_pushes_back_into_the_pipe() {
    let gate = Gate::default();
    let out = Output::with_writers(
        LogFormat::Json,
        Box::new(gate.clone()),
        Box::new(io::sink()),
    );
    let n = 1_500_000; // about 10 MB, more than twice the budget
    let (mut child, fd) = sh(&format!("seq 1 {n}"));
    out.attach("seq", Stream::Stdout, fd, &LogTarget::Stdout);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the child was never held back"
    );
    assert!(
        out.inner.stdout.budget.available_permits() < BUDGET / 2,
        "the budget is not used"
    );
    gate.open();
    assert!(finish(&out, vec![child]).await[0].success());
    assert_eq!(gate.lines.0.lock().expect("counter").0, n);
}

#[tokio::test]
async fn closed_stdout_drops_lines_after_the_first_error() {
    for errno in [libc::EPIPE, libc::EBADF] {
        let calls = Arc::new(Mutex::new(0));
        let failing = Failing {
            errno,
            calls: calls.clone(),
        };
        let out = Output::with_writers(LogFormat::Text, Box::new(failing), Box::new(io::sink()));
        let (child, fd) = sh("seq 1 300000");
        out.attach("seq", Stream::Stdout, fd, &LogTarget::Stdout);
        out.log_line("own line".into()).await;
        assert!(finish(&out, vec![child]).await[0].success());
        out.log_line("after".into()).await;
        out.drain(Duration::from_secs(10)).await;
        assert_eq!(
            *calls.lock().expect("calls"),
            1,
            "errno {errno}: wrote after the first error"
        );
    }
}

#[tokio::test]
async fn discard_reads_everything() {
    let (out, stdout, stderr) = with_shared(LogFormat::Json);
    let (child, fd) = sh("head -c 10000000 /dev/zero");
    out.attach("null", Stream::Stdout, fd, &LogTarget::Discard);
    assert!(finish(&out, vec![child]).await[0].success());
    assert_eq!((stdout.bytes(), stderr.bytes()), (vec![], vec![]));
}

#[test]
fn split_cuts_lines_and_bounds_pending() {
    let whole = |s: &[u8]| Piece {
        data: s.to_vec(),
        partial: false,
    };
    let (mut pending, mut pieces) = (Vec::new(), Vec::new());
    split(b"a\nb", &mut pending, &mut pieces);
    assert_eq!(
        (std::mem::take(&mut pieces), &pending[..]),
        (vec![whole(b"a\n")], &b"b"[..])
    );
    split(b"c\nd\ne", &mut pending, &mut pieces);
    assert_eq!(std::mem::take(&mut pieces), [whole(b"bc\n"), whole(b"d\n")]);
    assert_eq!(pending, b"e");
    split(b"", &mut pending, &mut pieces);
    assert!(pieces.is_empty());

    // A line of exactly MAX_LINE bytes is whole, one more byte makes two pieces.
    for (len, expected) in [
        (MAX_LINE, vec![(MAX_LINE + 1, false)]),
        (MAX_LINE + 1, vec![(MAX_LINE, true), (2, false)]),
    ] {
        let (mut pending, mut pieces) = (Vec::new(), Vec::new());
        let mut line = vec![b'x'; len];
        line.push(b'\n');
        for chunk in line.chunks(65536) {
            split(chunk, &mut pending, &mut pieces);
            assert!(pending.len() <= MAX_LINE);
        }
        let got: Vec<_> = pieces.iter().map(|p| (p.data.len(), p.partial)).collect();
        assert_eq!(got, expected, "line of {len}");
        assert!(pending.is_empty());
    }
}

#[test]
fn fit_writes_whole_lines_that_fit() {
    assert_eq!(fit(b"aaaa\nbb\n", 0, 0), 8, "max 0: never rotate");
    assert_eq!(fit(b"aaaa\nbb\n", 2, 10), 8);
    assert_eq!(fit(b"aaaa\nbb\n", 3, 10), 5, "only the first line fits");
    assert_eq!(fit(b"aaaa\nbb\n", 6, 10), 0, "nothing fits: rotate");
    assert_eq!(
        fit(b"aaaaaaaaaaaa\nb\n", 0, 10),
        13,
        "an empty file takes an overlong line"
    );
    assert_eq!(fit(b"aaaaaaaaaaaa", 0, 10), 12, "and a piece");
    assert_eq!(fit(b"a\n", 20, 10), 0, "past max already");
}

#[test]
fn format_lines_json_pieces_and_text() {
    let tag = Tag::new("we\"b", Stream::Stdout, &super::fields::LogFields::EMPTY);
    let ts = SystemTime::UNIX_EPOCH + Duration::from_millis(1_500);
    let mut out = Vec::new();
    format_lines(
        Mode::Json,
        &mut out,
        &tag,
        ts,
        b"x\r",
        true,
        &mut |_: &mut Vec<u8>| {},
    );
    format_lines(
        Mode::Json,
        &mut out,
        &tag,
        ts,
        b"y\r\n\n",
        false,
        &mut |_: &mut Vec<u8>| {},
    );
    let expected = concat!(
        r#"{"ts":"1970-01-01T00:00:01.500Z","program":"we\"b","stream":"stdout","line":"x\r","partial":true}"#,
        "\n",
        r#"{"ts":"1970-01-01T00:00:01.500Z","program":"we\"b","stream":"stdout","line":"y"}"#,
        "\n",
        r#"{"ts":"1970-01-01T00:00:01.500Z","program":"we\"b","stream":"stdout","line":""}"#,
        "\n",
    );
    assert_eq!(String::from_utf8_lossy(&out), expected);
    let mut out = Vec::new();
    format_lines(
        Mode::Text,
        &mut out,
        &tag,
        ts,
        b"piece",
        true,
        &mut |_: &mut Vec<u8>| {},
    );
    format_lines(
        Mode::Text,
        &mut out,
        &tag,
        ts,
        b"a\r\nb\n",
        false,
        &mut |_: &mut Vec<u8>| {},
    );
    format_lines(
        Mode::Raw,
        &mut out,
        &tag,
        ts,
        b"raw",
        true,
        &mut |_: &mut Vec<u8>| {},
    );
    assert_eq!(out, b"[we\"b] piece\n[we\"b] a\r\n[we\"b] b\nraw");
}

/// 200 MB as fast as a child can write it: nothing lost, memory bounded.
/// `cargo test --release -p supervisor output::tests::fast_writer -- --ignored --nocapture`
/// (alone: it reads the peak RSS of the whole test process).
#[tokio::test]
#[ignore = "slow; measures the peak RSS of the whole process"]
async fn fast_writer_memory_stays_bounded() {
    let lines = Counter::default();
    let out = Output::with_writers(
        LogFormat::Json,
        Box::new(lines.clone()),
        Box::new(io::sink()),
    );
    let script = "head -c 200000000 /dev/zero | tr '\\0' a | fold -w 100";
    let start = Instant::now();
    let (child, fd) = sh(script);
    out.attach("fast", Stream::Stdout, fd, &LogTarget::Stdout);
    assert!(finish(&out, vec![child]).await[0].success());
    let took = start.elapsed();
    let (n, bytes) = *lines.0.lock().expect("counter");
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .expect("VmHWM")
        .to_string();
    eprintln!("{n} lines, {bytes} bytes of JSON in {took:?}; {hwm}");
    assert_eq!(n, 2_000_000, "lines lost");
    let kb: u64 = hwm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("kB");
    assert!(kb < 64 * 1024, "peak RSS {kb} kB");
}
