//! Recent output, kept in memory for `supervisor tail`: a ring of the last [`RING_BYTES`] bytes
//! of each program's stdout and stderr, plus a live feed for `tail -f`.
//!
//! Readers record what they read before handing it to the writer, so `tail` shows output even
//! when it goes to a file or nowhere else. Recording never waits: the ring is a short critical
//! section under a plain mutex, and the live feed is a broadcast channel that drops the oldest
//! chunks for a follower that falls behind (the follower is told). A ring belongs to a program
//! name, not to a process, so a follower keeps following across restarts.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use hyper::body::Bytes;
use tokio::sync::broadcast;

use super::{lock, Stream};

/// Bytes kept per program and stream.
pub const RING_BYTES: usize = 64 << 10;

/// Chunks a live follower may fall behind before it misses some.
const LIVE_CHUNKS: usize = 256;

/// The most rings kept; past that, rings of programs nobody follows are dropped first (a
/// reload that renames programs over and over must not grow memory without end).
const MAX_RINGS: usize = 4096;

/// The recent output of one program's stream.
pub struct Ring {
    /// The last bytes, at most [`RING_BYTES`], starting at a line boundary when trimmed.
    buf: Mutex<VecDeque<u8>>,
    /// Live chunks for followers.
    live: broadcast::Sender<Bytes>,
}

impl Ring {
    fn new() -> Ring {
        Ring {
            buf: Mutex::new(VecDeque::new()),
            live: broadcast::channel(LIVE_CHUNKS).0,
        }
    }

    /// Records output just read. Never blocks on a consumer.
    pub fn record(&self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        {
            let mut buf = lock(&self.buf);
            let data = &data[data.len().saturating_sub(RING_BYTES)..];
            buf.extend(data);
            if buf.len() > RING_BYTES {
                let excess = buf.len() - RING_BYTES;
                buf.drain(..excess);
                // Start at a line boundary, unless the next one is far off (a huge line).
                let next = buf.iter().take(4096).position(|&b| b == b'\n');
                if let Some(i) = next {
                    buf.drain(..=i);
                }
            }
        }
        if self.live.receiver_count() > 0 {
            // Err: every follower left meanwhile.
            let _ = self.live.send(Bytes::copy_from_slice(data));
        }
    }

    /// The last `max` bytes kept (whole lines where possible) and a subscription to what comes
    /// after them: nothing is lost or repeated between the two.
    pub fn snapshot(&self, max: usize) -> (Vec<u8>, broadcast::Receiver<Bytes>) {
        let buf = lock(&self.buf);
        // Subscribing under the lock: `record` sends after appending, so no chunk falls between.
        let rx = self.live.subscribe();
        let skip = buf.len().saturating_sub(max);
        let mut out: Vec<u8> = buf.iter().skip(skip).copied().collect();
        if skip > 0 {
            if let Some(i) = out.iter().take(4096).position(|&b| b == b'\n') {
                out.drain(..=i);
            }
        }
        (out, rx)
    }
}

/// Every ring, by program and stream.
#[derive(Default)]
pub struct Rings {
    rings: Mutex<HashMap<(String, Stream), Arc<Ring>>>,
}

impl Rings {
    /// The ring of `program`'s `stream`, created if new.
    pub fn get(&self, program: &str, stream: Stream) -> Arc<Ring> {
        let mut rings = lock(&self.rings);
        if let Some(r) = rings.get(&(program.to_string(), stream)) {
            return r.clone();
        }
        if rings.len() >= MAX_RINGS {
            rings.retain(|_, r| Arc::strong_count(r) > 1 || r.live.receiver_count() > 0);
        }
        let r = Arc::new(Ring::new());
        rings.insert((program.to_string(), stream), r.clone());
        r
    }

    /// The ring of `program`'s `stream` if it ever had output or a reader.
    pub fn find(&self, program: &str, stream: Stream) -> Option<Arc<Ring>> {
        lock(&self.rings)
            .get(&(program.to_string(), stream))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_bytes_from_a_line_start() {
        let r = Ring::new();
        for i in 0..10_000 {
            r.record(format!("line {i}\n").as_bytes());
        }
        let (text, _) = r.snapshot(usize::MAX);
        assert!(text.len() <= RING_BYTES);
        assert!(text.starts_with(b"line "), "starts mid-line");
        assert!(text.ends_with(b"line 9999\n"));
        let (small, _) = r.snapshot(20);
        assert_eq!(small, b"line 9999\n");
    }

    #[test]
    fn followers_get_what_comes_after_the_snapshot() {
        let r = Ring::new();
        r.record(b"before\n");
        let (old, mut rx) = r.snapshot(usize::MAX);
        assert_eq!(old, b"before\n");
        r.record(b"after\n");
        assert_eq!(rx.try_recv().unwrap(), Bytes::from_static(b"after\n"));
    }

    #[test]
    fn a_huge_record_is_trimmed() {
        let r = Ring::new();
        r.record(&vec![b'x'; 3 * RING_BYTES]);
        let (text, _) = r.snapshot(usize::MAX);
        assert_eq!(text.len(), RING_BYTES);
    }
}
