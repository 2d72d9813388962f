//! Writers: one thread per destination, fed through a channel bounded by bytes.
//!
//! A [`Sink`] is the sending side: it takes permits from the destination's byte budget (waiting,
//! asynchronously, while the budget is spent) and queues a message. The thread on the other side
//! sleeps in `recv` while there is nothing to do, formats what arrives (JSON, text or raw),
//! gathers up to [`COALESCE`] bytes of complete lines, writes them with one `write_all`, and only
//! then gives the permits back. The supervisor's own event log does not go through the budget:
//! it has its own bounded queue ([`super::log`]), which the stdout writer, woken by a
//! [`Msg::Log`], takes whole and writes at once.

use std::collections::HashSet;
use std::io::{self, Write};
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustix::io::Errno;
use tokio::sync::{oneshot, Semaphore};

use super::fields::LogFields;
use super::log::Queue;
use super::{lock, Stream, BUDGET};
use crate::config::LogFormat;
use crate::event::{Event, Kind, Level};

/// A writer gathers messages until it holds this many bytes, then writes them at once.
const COALESCE: usize = 64 << 10;

/// Stack of a writer thread: it formats lines and calls the file system, nothing deep.
const STACK_SIZE: usize = 256 << 10;

/// What a writer is asked to do, in order.
pub(super) enum Msg {
    /// Bytes ready to write (the supervisor's own log lines, error notices), newline included.
    Formatted { bytes: Vec<u8>, permits: u32 },
    /// Output of a child read at `ts`: complete lines each ending in `\n`, or, if `partial`, one
    /// piece (no newline) of a line longer than [`super::MAX_LINE`].
    Lines {
        tag: Arc<Tag>,
        ts: SystemTime,
        data: Vec<u8>,
        partial: bool,
        permits: u32,
    },
    /// The supervisor's event log has lines queued: take them all and write them at once.
    Log(Arc<Queue>),
    /// Close the file; the next write opens the path again.
    Reopen,
    /// Answer once everything queued before is written.
    Flush(oneshot::Sender<()>),
}

/// The sending side of one destination.
pub(super) struct Sink {
    tx: mpsc::Sender<Msg>,
    /// Bytes that may still be queued; the writer adds back what it wrote.
    pub(super) budget: Arc<Semaphore>,
}

impl Sink {
    /// Queues a child's output, waiting while the destination's byte budget is spent.
    pub(super) async fn send_lines(
        &self,
        tag: &Arc<Tag>,
        ts: SystemTime,
        data: Vec<u8>,
        partial: bool,
    ) {
        let Some(permits) = self.take(data.len()).await else {
            return;
        };
        let msg = Msg::Lines {
            tag: tag.clone(),
            ts,
            data,
            partial,
            permits,
        };
        self.queue(msg, permits);
    }

    /// Queues a formatted line, waiting while the destination's byte budget is spent.
    pub(super) async fn send_formatted(&self, bytes: Vec<u8>) {
        let Some(permits) = self.take(bytes.len()).await else {
            return;
        };
        self.queue(Msg::Formatted { bytes, permits }, permits);
    }

    /// Queues a formatted line at once, outside the budget: for rare notices sent from threads.
    pub(super) fn send_now(&self, bytes: Vec<u8>) {
        let _ = self.tx.send(Msg::Formatted { bytes, permits: 0 });
    }

    /// Tells the writer that `queue` went from empty to not empty (never waits).
    pub(super) fn wake_log(&self, queue: &Arc<Queue>) {
        let _ = self.tx.send(Msg::Log(queue.clone()));
    }

    pub(super) fn reopen(&self) {
        let _ = self.tx.send(Msg::Reopen);
    }

    /// Returns once everything queued before is written (at once if the writer is gone).
    pub(super) async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Flush(ack)).is_ok() {
            let _ = done.await;
        }
    }

    async fn take(&self, len: usize) -> Option<u32> {
        // A message larger than the whole budget waits for an empty queue instead of forever.
        let permits = len.min(BUDGET) as u32;
        // Err: the semaphore is never closed.
        self.budget.acquire_many(permits).await.ok()?.forget();
        Some(permits)
    }

    fn queue(&self, msg: Msg, permits: u32) {
        if self.tx.send(msg).is_err() {
            // No writer (it could not be started): drop the bytes, keep the budget whole.
            self.budget.add_permits(permits as usize);
        }
    }
}

/// A place bytes go to; owned by its writer thread.
pub(super) trait Destination: Send + 'static {
    /// Writes `bytes`, complete lines (or a piece of an overlong line); errors are handled here.
    fn write(&mut self, bytes: &[u8]);
    /// Closes and reopens what can be reopened.
    fn reopen(&mut self) {}
}

/// How a writer turns a child's lines into bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// One JSON object per line, tagged with program and stream.
    Json,
    /// `[program] line`, bytes as the child wrote them.
    Text,
    /// The bytes as the child wrote them, untagged (log files, like supervisord).
    Raw,
}

/// Starts the writer thread of `dest`. If no thread can be started, the sink drops what it is
/// given (and says so on stderr), so that readers keep draining their pipes.
pub(super) fn spawn(name: &str, mode: Mode, dest: impl Destination) -> Sink {
    let (tx, rx) = mpsc::channel();
    let budget = Arc::new(Semaphore::new(BUDGET));
    let thread_budget = budget.clone();
    let started = std::thread::Builder::new()
        .name(name.to_string())
        .stack_size(STACK_SIZE)
        .spawn(move || run(rx, &thread_budget, mode, dest));
    if let Err(e) = started {
        let line =
            format!("supervisor: cannot start the {name} thread ({e}); its output is dropped\n");
        let _ = io::stderr().write_all(line.as_bytes());
    }
    Sink { tx, budget }
}

fn run(rx: mpsc::Receiver<Msg>, budget: &Semaphore, mode: Mode, mut dest: impl Destination) {
    let mut out = Vec::new();
    let mut held = 0usize;
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Formatted { bytes, permits } => {
                    out.extend_from_slice(&bytes);
                    held += permits as usize;
                }
                Msg::Lines {
                    tag,
                    ts,
                    data,
                    partial,
                    permits,
                } => {
                    held += permits as usize;
                    // 64 kB of `y\n` is 2 MB of JSON: write it as it grows, not all at the end.
                    let mut spill = |out: &mut Vec<u8>| {
                        dest.write(out);
                        out.clear();
                    };
                    format_lines(mode, &mut out, &tag, ts, &data, partial, &mut spill);
                }
                Msg::Log(queue) => {
                    // After the lines gathered before it, in one write of its own.
                    write_out(&mut out, &mut held, budget, &mut dest);
                    let batch = queue.take();
                    if !batch.is_empty() {
                        dest.write(&batch);
                    }
                    queue.give_back(batch);
                }
                Msg::Reopen => {
                    write_out(&mut out, &mut held, budget, &mut dest);
                    dest.reopen();
                }
                Msg::Flush(ack) => {
                    write_out(&mut out, &mut held, budget, &mut dest);
                    let _ = ack.send(());
                }
            }
            next = if out.len() < COALESCE {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        write_out(&mut out, &mut held, budget, &mut dest);
        if out.capacity() > 4 * COALESCE {
            // Do not keep a long line's worth of memory around.
            out = Vec::new();
        }
    }
}

/// Writes what `out` holds, then gives back the budget it took.
fn write_out(out: &mut Vec<u8>, held: &mut usize, budget: &Semaphore, dest: &mut impl Destination) {
    if !out.is_empty() {
        dest.write(out);
        out.clear();
    }
    budget.add_permits(std::mem::take(held));
}

/// What a writer needs to tag one stream's lines.
pub(super) struct Tag {
    /// `","program":"web","stream":"stdout","pod":"p","line":` — the JSON between the ts and
    /// the line, `--log-field`s included.
    json_mid: Vec<u8>,
    /// `[web] `
    text_prefix: Vec<u8>,
}

impl Tag {
    pub(super) fn new(program: &str, stream: Stream, fields: &LogFields) -> Tag {
        let mut json_mid = br#"","program":"#.to_vec();
        push_json_str(&mut json_mid, program);
        json_mid.extend_from_slice(br#","stream":""#);
        json_mid.extend_from_slice(stream.as_str().as_bytes());
        json_mid.push(b'"');
        json_mid.extend_from_slice(fields.json());
        json_mid.extend_from_slice(br#","line":"#);
        Tag {
            json_mid,
            text_prefix: format!("[{program}] ").into_bytes(),
        }
    }
}

/// Appends the lines in `data` to `out` as `mode` wants them, handing `out` to `spill` whenever
/// it holds [`COALESCE`] bytes or more after a line.
pub(super) fn format_lines(
    mode: Mode,
    out: &mut Vec<u8>,
    tag: &Tag,
    ts: SystemTime,
    data: &[u8],
    partial: bool,
    spill: &mut impl FnMut(&mut Vec<u8>),
) {
    let lines = || {
        let body = if partial {
            data
        } else {
            data.strip_suffix(b"\n").unwrap_or(data)
        };
        body.split(|&b| b == b'\n')
    };
    match mode {
        Mode::Raw => out.extend_from_slice(data),
        Mode::Text => {
            for line in lines() {
                out.extend_from_slice(&tag.text_prefix);
                out.extend_from_slice(line);
                out.push(b'\n');
                if out.len() >= COALESCE {
                    spill(out);
                }
            }
        }
        Mode::Json => {
            let ts = humantime::format_rfc3339_millis(ts).to_string();
            for line in lines() {
                let line = if partial {
                    line
                } else {
                    line.strip_suffix(b"\r").unwrap_or(line)
                };
                out.extend_from_slice(br#"{"ts":""#);
                out.extend_from_slice(ts.as_bytes());
                out.extend_from_slice(&tag.json_mid);
                push_json_str(out, &String::from_utf8_lossy(line));
                if partial {
                    out.extend_from_slice(br#","partial":true"#);
                }
                out.extend_from_slice(b"}\n");
                if out.len() >= COALESCE {
                    spill(out);
                }
            }
        }
    }
}

/// Appends `s` as a JSON string literal.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail, and a &str always serializes.
    let _ = serde_json::to_writer(out, s);
}

/// Our own stdout or stderr, written without std's buffering or its silent EBADF.
pub(super) struct FdWriter(BorrowedFd<'static>);

impl FdWriter {
    pub(super) fn stdout() -> FdWriter {
        FdWriter(rustix::stdio::stdout())
    }

    pub(super) fn stderr() -> FdWriter {
        FdWriter(rustix::stdio::stderr())
    }
}

impl Write for FdWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut pause = Duration::from_millis(1);
        loop {
            match rustix::io::write(self.0, buf) {
                Ok(n) => return Ok(n),
                Err(Errno::INTR) => {}
                // Someone made our stdout non-blocking. This thread may block, but cannot poll
                // without unsafe: wait a little while the reader catches up.
                Err(Errno::AGAIN) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The supervisor's stdout or stderr (or a stand-in) as a destination.
pub(super) struct StreamDest {
    w: Box<dyn Write + Send>,
    /// Closed for good (EPIPE, EBADF): later lines are dropped without trying.
    dead: bool,
}

impl StreamDest {
    pub(super) fn new(w: Box<dyn Write + Send>) -> StreamDest {
        StreamDest { w, dead: false }
    }
}

impl Destination for StreamDest {
    fn write(&mut self, bytes: &[u8]) {
        if self.dead {
            return;
        }
        if let Err(e) = self.w.write_all(bytes).and_then(|()| self.w.flush()) {
            // Nobody reads our output any more: nothing to tell, nobody to tell it to.
            let gone = e.kind() == io::ErrorKind::BrokenPipe
                || matches!(Errno::from_io_error(&e), Some(Errno::PIPE | Errno::BADF));
            // Other errors (EIO, ENOSPC on a redirected file) may pass: drop these lines only.
            self.dead = gone;
        }
    }
}

/// Says what went wrong with a log file, on stderr, in the supervisor's log format.
pub(super) struct Reporter {
    pub(super) sink: Arc<Sink>,
    pub(super) format: LogFormat,
    /// The program the notices name (the first one that used the file).
    pub(super) program: String,
    /// Paths whose failure to open was reported and has not been fixed since.
    pub(super) failed: Arc<Mutex<HashSet<PathBuf>>>,
}

impl Reporter {
    pub(super) fn error(&self, msg: &str, error: Option<&io::Error>) {
        let mut event = Event::new(Level::Error, Kind::Notice, msg);
        event.program = Some(self.program.clone());
        event.error = error.map(|e| e.to_string());
        let mut line = match self.format {
            LogFormat::Json => event.to_json(),
            LogFormat::Text => match error {
                Some(e) => format!("{} ({e})", event.to_text()),
                None => event.to_text(),
            },
        }
        .into_bytes();
        line.push(b'\n');
        self.sink.send_now(line);
    }

    /// Reports that `path` cannot be opened, unless that was reported already.
    pub(super) fn open_failed(&self, path: &Path, error: &io::Error) {
        if lock(&self.failed).insert(path.to_path_buf()) {
            let msg = format!(
                "cannot open log file {} for {}: output to it is dropped until it can be opened \
                 (does the directory exist, and may the supervisor write there?)",
                path.display(),
                self.program
            );
            self.error(&msg, Some(error));
        }
    }

    pub(super) fn opened(&self, path: &Path) {
        lock(&self.failed).remove(path);
    }
}
