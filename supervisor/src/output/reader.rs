//! Readers: one tokio task per attached pipe, cutting what a child writes into lines.
//!
//! A read takes at most [`READ_CHUNK`] bytes into a buffer shared by all readers of the thread
//! (it is borrowed only while no task can run, so an idle stream owns no buffer). Complete lines
//! go to the writer as one batch per read; the start of an unfinished line waits in `pending`,
//! which never holds more than [`MAX_LINE`] bytes: past that the line goes out in pieces.

use std::cell::RefCell;
use std::io;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::net::unix::pipe;

use super::ring::Ring;
use super::writer::{Sink, Tag};
use super::MAX_LINE;

/// The most one read takes from a pipe (a pipe's default capacity).
const READ_CHUNK: usize = 64 << 10;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

/// Where a pipe's lines go.
pub(super) enum Route {
    /// Nowhere: the pipe is read and the bytes dropped.
    Discard,
    Lines {
        sink: Arc<Sink>,
        tag: Arc<Tag>,
    },
}

/// Some output cut at line boundaries: complete lines each ending in `\n`, or one piece of an
/// overlong line.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Piece {
    pub(super) data: Vec<u8>,
    pub(super) partial: bool,
}

/// Runs a callback once, when dropped: on every path out of a reader, cancellation included.
pub(super) struct Closed(Option<Box<dyn FnOnce() + Send>>);

impl Closed {
    pub(super) fn new(f: impl FnOnce() + Send + 'static) -> Closed {
        Closed(Some(Box::new(f)))
    }
}

impl Drop for Closed {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// A pipe's read end and the callback to run once it is closed; dropping it closes the fd
/// first, then runs the callback (fields drop in declaration order).
pub(super) struct Owned {
    rx: Option<pipe::Receiver>,
    closed: Closed,
}

impl Owned {
    pub(super) fn new(rx: pipe::Receiver, closed: Closed) -> Owned {
        Owned {
            rx: Some(rx),
            closed,
        }
    }

    /// Closes the read end now.
    fn close(&mut self) {
        self.rx = None;
        if let Some(f) = self.closed.0.take() {
            f();
        }
    }
}

/// Reads `pipe` until EOF (or an error, e.g. EIO from a tty) and sends its lines along `route`;
/// every chunk read is also recorded in `tap` (for `tail`), which never waits. The read end is
/// closed as soon as EOF is read, before the last lines are flushed.
pub(super) async fn pump(mut pipe: Owned, route: Route, tap: Option<Arc<Ring>>) {
    // The start of a line whose end has not been read yet.
    let mut pending = Vec::new();
    let mut pieces = Vec::new();
    while let Some(rx) = pipe.rx.as_ref() {
        if rx.readable().await.is_err() {
            break;
        }
        let read = SCRATCH.with_borrow_mut(|buf| {
            let read = rx.try_read(&mut buf[..]);
            if let (Ok(n), Some(tap)) = (&read, &tap) {
                tap.record(&buf[..*n]);
            }
            if let (Ok(n), Route::Lines { .. }) = (&read, &route) {
                split(&buf[..*n], &mut pending, &mut pieces);
            }
            read
        });
        let ts = SystemTime::now();
        match read {
            Ok(0) => break,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(_) => break,
        }
        send(&route, ts, &mut pieces).await;
    }
    pipe.close();
    if let Route::Lines { sink, .. } = &route {
        // The last line, even without its newline.
        if !pending.is_empty() {
            pending.push(b'\n');
            pieces.push(Piece {
                data: pending,
                partial: false,
            });
        }
        send(&route, SystemTime::now(), &mut pieces).await;
        // Counted as done only once its lines are written (see `Output::drain`).
        sink.flush().await;
    }
}

async fn send(route: &Route, ts: SystemTime, pieces: &mut Vec<Piece>) {
    if let Route::Lines { sink, tag } = route {
        for piece in pieces.drain(..) {
            sink.send_lines(tag, ts, piece.data, piece.partial).await;
        }
    }
}

/// Cuts `chunk`, which follows `pending`, into pieces; leaves the unfinished end in `pending`,
/// at most [`MAX_LINE`] bytes of it.
pub(super) fn split(mut chunk: &[u8], pending: &mut Vec<u8>, pieces: &mut Vec<Piece>) {
    if !pending.is_empty() {
        match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => {
                pending.extend_from_slice(&chunk[..=i]);
                chunk = &chunk[i + 1..];
                // With its newline, a line of MAX_LINE bytes is MAX_LINE + 1 long.
                while pending.len() > MAX_LINE + 1 {
                    cut_piece(pending, pieces);
                }
                pieces.push(Piece {
                    data: std::mem::take(pending),
                    partial: false,
                });
            }
            None => {
                pending.extend_from_slice(chunk);
                chunk = &[];
            }
        }
    }
    if let Some(j) = chunk.iter().rposition(|&b| b == b'\n') {
        pieces.push(Piece {
            data: chunk[..=j].to_vec(),
            partial: false,
        });
        chunk = &chunk[j + 1..];
    }
    pending.extend_from_slice(chunk);
    while pending.len() > MAX_LINE {
        cut_piece(pending, pieces);
    }
}

/// Moves the first [`MAX_LINE`] bytes of `pending` into a partial piece.
fn cut_piece(pending: &mut Vec<u8>, pieces: &mut Vec<Piece>) {
    let rest = pending.split_off(MAX_LINE);
    pieces.push(Piece {
        data: std::mem::replace(pending, rest),
        partial: true,
    });
}
