//! Child output: what supervised programs write on stdout and stderr, forwarded line by line.
//!
//! Each attached pipe is read by a small tokio task ([`reader`]) that cuts the bytes into lines
//! (at most [`MAX_LINE`] bytes each; longer lines go out in pieces) and hands them, in batches,
//! to the writer of its destination. A destination — the supervisor's own stdout, its stderr, or
//! one log file — has exactly one writer: a plain thread blocked on a channel ([`writer`]), which
//! formats the lines (JSON, text, or raw for files), writes complete lines only, and rotates files
//! ([`file`]). So lines never interleave mid-line, a slow disk or a full stdout pipe never blocks
//! the tokio thread, and an idle writer costs no wakeup.
//!
//! Memory is bounded by bytes, not messages: every channel has a byte budget ([`BUDGET`]), taken
//! by the reader before it sends and given back by the writer after it wrote. A reader that finds
//! the budget spent waits, stops reading, and the backpressure stays where it belongs: in the
//! child's pipe.
//!
//! A pipe's read end lives exactly as long as its reader task: it is closed at EOF (before the
//! last lines are flushed), on a read error, or when its owner closes it ([`Attached::close`]);
//! then the `on_closed` callback of [`Output::attach_watched`] runs, once. The engine uses that to
//! bound what a crash-looping program holds (see `engine`'s module doc).

pub mod fields;
mod file;
pub mod log;
mod reader;
pub mod ring;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use tokio::net::unix::pipe;
use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::config::{LogFormat, LogTarget};
use fields::LogFields;
use file::RotatingFile;
use reader::Route;
use writer::{Mode, Reporter, Sink, StreamDest, Tag};

/// The longest line emitted whole, newline excluded; longer lines are emitted in pieces this long.
pub const MAX_LINE: usize = 1 << 20;

/// Bytes that may wait in one destination's channel before readers have to wait.
pub const BUDGET: usize = 4 << 20;

/// Which stream of the child.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Cloneable handle; owns writer threads for the supervisor's own fd 1 and fd 2.
#[derive(Clone)]
pub struct Output {
    inner: Arc<Inner>,
}

struct Inner {
    /// The runtime the reader tasks run on, so that `attach` works from any thread.
    runtime: Option<Handle>,
    /// How lines forwarded to our stdout/stderr, and our own error notices, are formatted.
    format: LogFormat,
    /// The writer of our fd 1: forwarded lines and the supervisor's own log.
    stdout: Arc<Sink>,
    /// The writer of our fd 2: forwarded lines and the errors of this module.
    stderr: Arc<Sink>,
    /// Live file writers by path. Everything written to one path goes through one writer, so
    /// lines stay whole and rotation happens once; a writer ends when its last pipe is closed.
    files: Mutex<HashMap<PathBuf, Weak<Sink>>>,
    /// Log files whose opening failed and was reported: reported once, until it works again.
    failed: Arc<Mutex<HashSet<PathBuf>>>,
    /// How many attached pipes have not reached EOF yet (for [`Output::drain`]).
    active: watch::Sender<usize>,
    /// The recent output of every program, for `supervisor tail`.
    rings: ring::Rings,
    /// Extra fields on every JSON line (`--log-field`), set once at start.
    fields: OnceLock<LogFields>,
}

impl Output {
    /// Starts the writers. Must be called inside a tokio runtime.
    pub fn new(format: LogFormat) -> Output {
        Output::with_writers(
            format,
            Box::new(writer::FdWriter::stdout()),
            Box::new(writer::FdWriter::stderr()),
        )
    }

    /// Like [`Output::new`], with any writers standing in for fd 1 and fd 2 (tests, embedding).
    pub fn with_writers(
        format: LogFormat,
        stdout: Box<dyn Write + Send>,
        stderr: Box<dyn Write + Send>,
    ) -> Output {
        let mode = match format {
            LogFormat::Json => Mode::Json,
            LogFormat::Text => Mode::Text,
        };
        let stderr = Arc::new(writer::spawn(
            "output-stderr",
            mode,
            StreamDest::new(stderr),
        ));
        let stdout = Arc::new(writer::spawn(
            "output-stdout",
            mode,
            StreamDest::new(stdout),
        ));
        Output {
            inner: Arc::new(Inner {
                runtime: Handle::try_current().ok(),
                format,
                stdout,
                stderr,
                files: Mutex::new(HashMap::new()),
                failed: Arc::new(Mutex::new(HashSet::new())),
                active: watch::Sender::new(0),
                rings: ring::Rings::default(),
                fields: OnceLock::new(),
            }),
        }
    }

    /// Adds `fields` to every JSON line written from now on (the supervisor's events and the
    /// programs' forwarded lines); call once, before programs start. A second call is ignored.
    pub fn set_log_fields(&self, fields: LogFields) {
        let _ = self.inner.fields.set(fields);
    }

    fn fields(&self) -> &LogFields {
        static NONE: LogFields = LogFields::EMPTY;
        self.inner.fields.get().unwrap_or(&NONE)
    }

    /// The sink that writes the supervisor's own events (at or above `min_level`) to stdout,
    /// in this output's format; see [`log`]. Drops are counted in `metrics`.
    pub fn event_log(
        &self,
        min_level: crate::event::Level,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Arc<log::EventLog> {
        Arc::new(log::EventLog::new(
            self.inner.stdout.clone(),
            self.inner.format,
            min_level,
            metrics,
            self.fields().clone(),
        ))
    }

    /// Writes one already-formatted log line of the supervisor itself (the JSON event or text
    /// line, WITHOUT trailing newline) to stdout, after all earlier lines. Waits (async) while
    /// the writer's byte budget is full; never blocks the thread.
    pub async fn log_line(&self, line: String) {
        let mut bytes = line.into_bytes();
        bytes.push(b'\n');
        self.inner.stdout.send_formatted(bytes).await;
    }

    /// Takes the read end of a child's pipe and forwards what the child writes, line by line,
    /// to `target`, until EOF. Spawns a tokio task; returns at once. `program` is the process
    /// name used as tag.
    pub fn attach(&self, program: &str, stream: Stream, pipe: OwnedFd, target: &LogTarget) {
        let _ = self.attach_watched(program, stream, pipe, target, || {});
    }

    /// Like [`Output::attach`]; `on_closed` runs once the read end is closed — at EOF, on a read
    /// error, after [`Attached::close`], or at once if the pipe could not be watched — so the
    /// owner of the process can tell when its pipes are gone. The returned handle closes the pipe
    /// on request (`None` when it is closed already).
    pub fn attach_watched(
        &self,
        program: &str,
        stream: Stream,
        pipe: OwnedFd,
        target: &LogTarget,
        on_closed: impl FnOnce() + Send + 'static,
    ) -> Option<Attached> {
        let route = match target {
            LogTarget::Discard => Route::Discard,
            LogTarget::Stdout => Route::Lines {
                sink: self.inner.stdout.clone(),
                tag: Arc::new(Tag::new(program, stream, self.fields())),
            },
            LogTarget::Stderr => Route::Lines {
                sink: self.inner.stderr.clone(),
                tag: Arc::new(Tag::new(program, stream, self.fields())),
            },
            LogTarget::File {
                path,
                max_bytes,
                backups,
            } => {
                let sink = self.file_sink(program, path, *max_bytes, *backups);
                Route::Lines {
                    sink,
                    tag: Arc::new(Tag::new(program, stream, self.fields())),
                }
            }
        };
        let closed = reader::Closed::new(on_closed);
        let Some(runtime) = self
            .inner
            .runtime
            .clone()
            .or_else(|| Handle::try_current().ok())
        else {
            self.report(program, "no tokio runtime to read the output pipe on", None);
            return None;
        };
        // A pipe left blocking would stall the whole runtime on its first empty read.
        if let Err(e) = rustix::io::ioctl_fionbio(&pipe, true) {
            let msg = format!(
                "cannot make the {} pipe of {program} non-blocking",
                stream.as_str()
            );
            self.report(program, &msg, Some(&e.into()));
            return None;
        }
        let rx = {
            let _entered = runtime.enter();
            // Unchecked: a socket or a tty works as well as a pipe.
            pipe::Receiver::from_owned_fd_unchecked(pipe)
        };
        let rx = match rx {
            Ok(rx) => rx,
            Err(e) => {
                let msg = format!(
                    "cannot watch the {} pipe of {program}; its output is lost and the program \
                     gets EPIPE",
                    stream.as_str()
                );
                self.report(program, &msg, Some(&e));
                return None;
            }
        };
        self.inner.active.send_modify(|n| *n += 1);
        let active = ActiveGuard(self.inner.active.clone());
        let tap = self.inner.rings.get(program, stream);
        let task = runtime.spawn(async move {
            reader::pump(reader::Owned::new(rx, closed), route, Some(tap)).await;
            drop(active);
        });
        Some(Attached {
            task: task.abort_handle(),
        })
    }

    /// The last `max` bytes `program` wrote on `stream` (at most [`ring::RING_BYTES`]) and a
    /// subscription to what it writes next (across restarts). `None` if the program never had
    /// that stream attached: the caller says whether the name exists.
    pub fn tail(
        &self,
        program: &str,
        stream: Stream,
        max: usize,
    ) -> Option<(
        Vec<u8>,
        tokio::sync::broadcast::Receiver<hyper::body::Bytes>,
    )> {
        self.inner
            .rings
            .find(program, stream)
            .map(|r| r.snapshot(max))
    }

    /// Like [`Output::tail`], creating the (empty) ring of a program that has written nothing yet,
    /// so a follower sees its first output.
    pub fn follow(
        &self,
        program: &str,
        stream: Stream,
        max: usize,
    ) -> (
        Vec<u8>,
        tokio::sync::broadcast::Receiver<hyper::body::Bytes>,
    ) {
        self.inner.rings.get(program, stream).snapshot(max)
    }

    /// Reopens all file targets (SIGUSR1 / logrotate), best effort.
    pub fn reopen(&self) {
        // A failure seen before the reopen is reported again if it still happens.
        lock(&self.inner.failed).clear();
        for sink in self.live_files() {
            sink.reopen();
        }
    }

    /// Waits up to `grace` for every attached pipe to reach EOF and for every line read so far
    /// to be written (call before exiting, once the programs are stopped).
    pub async fn drain(&self, grace: Duration) {
        let all = async {
            let mut active = self.inner.active.subscribe();
            // Err: the sender lives in `self.inner`, it cannot be gone.
            let _ = active.wait_for(|n| *n == 0).await;
            for sink in self.live_files() {
                sink.flush().await;
            }
            self.inner.stderr.flush().await;
            self.inner.stdout.flush().await;
        };
        // Elapsed: a program (or an orphan of it) still holds a pipe, or stdout is stuck.
        let _ = tokio::time::timeout(grace, all).await;
    }

    /// The writer of `path`, started if none is running.
    fn file_sink(&self, program: &str, path: &Path, max_bytes: u64, backups: u32) -> Arc<Sink> {
        let mut files = lock(&self.inner.files);
        files.retain(|_, sink| sink.strong_count() > 0);
        if let Some(sink) = files.get(path).and_then(Weak::upgrade) {
            return sink;
        }
        let reporter = self.reporter(program);
        let dest = RotatingFile::new(path.to_path_buf(), max_bytes, backups, reporter);
        let sink = Arc::new(writer::spawn("output-file", Mode::Raw, dest));
        files.insert(path.to_path_buf(), Arc::downgrade(&sink));
        sink
    }

    fn live_files(&self) -> Vec<Arc<Sink>> {
        lock(&self.inner.files)
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    fn reporter(&self, program: &str) -> Reporter {
        Reporter {
            sink: self.inner.stderr.clone(),
            format: self.inner.format,
            program: program.to_string(),
            failed: self.inner.failed.clone(),
        }
    }

    fn report(&self, program: &str, msg: &str, error: Option<&std::io::Error>) {
        self.reporter(program).error(msg, error);
    }
}

/// An attached pipe, read by its own task. Dropping the handle leaves the reader running.
pub struct Attached {
    task: tokio::task::AbortHandle,
}

impl Attached {
    /// Closes the read end now, even before EOF: what the writer still writes gets EPIPE, and
    /// what is in the pipe or not yet handed to the writer is dropped. The `on_closed` callback
    /// runs once the runtime has dropped the reader (at its next turn).
    pub fn close(&self) {
        self.task.abort();
    }
}

/// Counts an attached pipe as active until the reader task is done (or dropped with the runtime).
struct ActiveGuard(watch::Sender<usize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Locks `m`; a panic elsewhere while holding it leaves plain data that is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
