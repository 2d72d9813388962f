//! The supervisor's own event log on stdout: every event formatted as it is emitted, written
//! in batches.
//!
//! [`EventLog`] is an [`EventSink`], called by [`crate::event::EventBus::emit`] on the engine's
//! thread: it formats the event (JSON or text) straight into a shared byte queue — no
//! allocation per event, no task to schedule, so it cannot fall behind the engine the way a
//! broadcast subscriber on the same thread did — and, when the queue goes from empty to not
//! empty, wakes the stdout writer thread. The writer takes the whole queue at once and writes
//! it with one `write`: as many events per write as arrived while the last one was written.
//!
//! Policy: the queue holds at most [`QUEUE_BYTES`]; the writer holds at most one more batch.
//! Only a reader that stops reading fills that much (a regular file, a pipe read by `cat`, or
//! `docker logs` take a crash-loop storm's log with the queue nearly empty). Then the engine
//! still never waits: events that find the queue full are dropped, counted in
//! `supervisor_log_events_dropped_total`, and said in one notice — the first line written once
//! there is room again, with how many were lost and since when.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::fields::{self, LogFields};
use super::lock;
use super::writer::Sink;
use crate::config::LogFormat;
use crate::event::{Event, EventSink, Kind, Level};
use crate::metrics::Metrics;

/// Bytes of formatted events that may wait for the writer (some 4,000 events).
pub const QUEUE_BYTES: usize = 1 << 20;

/// A batch buffer larger than this is given back to the allocator after it is written.
const KEEP_CAPACITY: usize = 256 << 10;

/// The events waiting for the stdout writer, shared by [`EventLog`] and that writer.
#[derive(Default)]
pub(super) struct Queue {
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    /// Formatted lines, each ending in `\n`.
    buf: Vec<u8>,
    /// An emptied batch buffer handed back by the writer, reused for the next batch.
    spare: Vec<u8>,
    /// Events dropped since the last notice (the current burst).
    dropped: u64,
    /// When the current burst began.
    dropped_since: Option<SystemTime>,
}

impl Queue {
    /// Takes everything queued (the writer, once per wake-up).
    pub(super) fn take(&self) -> Vec<u8> {
        let mut q = lock(&self.state);
        let spare = std::mem::take(&mut q.spare);
        std::mem::replace(&mut q.buf, spare)
    }

    /// Hands an emptied batch buffer back for reuse, unless it grew large.
    pub(super) fn give_back(&self, mut batch: Vec<u8>) {
        if batch.capacity() > KEEP_CAPACITY {
            return;
        }
        batch.clear();
        let mut q = lock(&self.state);
        if q.spare.capacity() < batch.capacity() {
            q.spare = batch;
        }
    }
}

/// The log sink: every event at or above its level, one line each, on stdout.
pub struct EventLog {
    queue: Arc<Queue>,
    /// The writer of fd 1 (shared with programs' output forwarded to stdout).
    sink: Arc<Sink>,
    format: LogFormat,
    min_level: Level,
    /// Counts what a stalled reader made us drop.
    metrics: Arc<Metrics>,
    /// `--log-field`s, appended to every JSON line.
    fields: LogFields,
}

impl EventLog {
    pub(super) fn new(
        sink: Arc<Sink>,
        format: LogFormat,
        min_level: Level,
        metrics: Arc<Metrics>,
        fields: LogFields,
    ) -> EventLog {
        EventLog {
            queue: Arc::default(),
            sink,
            format,
            min_level,
            metrics,
            fields,
        }
    }
}

impl EventSink for EventLog {
    fn record(&self, event: &Event) {
        if event.level < self.min_level {
            return;
        }
        let mut q = lock(&self.queue.state);
        if q.buf.len() >= QUEUE_BYTES {
            q.dropped += 1;
            q.dropped_since.get_or_insert(event.ts);
            drop(q);
            self.metrics.add_log_events_dropped(1);
            return;
        }
        let was_empty = q.buf.is_empty();
        if q.dropped > 0 {
            let notice = lost_notice(q.dropped, q.dropped_since.unwrap_or(event.ts));
            format_event(&mut q.buf, &notice, self.format, &self.fields);
            q.dropped = 0;
            q.dropped_since = None;
        }
        format_event(&mut q.buf, event, self.format, &self.fields);
        drop(q);
        if was_empty {
            self.sink.wake_log(&self.queue);
        }
    }
}

/// The one notice of a burst of drops.
fn lost_notice(n: u64, since: SystemTime) -> Event {
    Event::new(
        Level::Warn,
        Kind::Notice,
        format!(
            "{n} events were not logged since {}: stdout was not read (the log keeps {} KiB \
             waiting, then drops events rather than delay the programs; \
             supervisor_log_events_dropped_total counts them, /api/events and `supervisor why` \
             still have them)",
            humantime::format_rfc3339_millis(since),
            QUEUE_BYTES >> 10
        ),
    )
}

/// Appends `event` as one line in `format`, newline included; JSON lines end with `fields`.
pub(super) fn format_event(
    out: &mut Vec<u8>,
    event: &Event,
    format: LogFormat,
    fields: &LogFields,
) {
    match format {
        LogFormat::Json => {
            let start = out.len();
            if serde_json::to_writer(&mut *out, event).is_err() {
                // Cannot happen (no maps, no foreign types); keep the line valid JSON anyway.
                out.truncate(start);
                out.extend_from_slice(br#"{"event":"notice","msg":"unserializable event"}"#);
            }
            fields::append(out, fields);
        }
        LogFormat::Text => {
            // supervisord's `2026-11-25 14:36:38,123 INFO msg`, from RFC 3339's
            // `2026-11-25T14:36:38.123Z`.
            let start = out.len();
            let _ = write!(out, "{}", humantime::format_rfc3339_millis(event.ts));
            let ts = &mut out[start..];
            if let Some(t) = ts.iter().position(|&b| b == b'T') {
                ts[t] = b' ';
            }
            if let Some(d) = ts.iter().position(|&b| b == b'.') {
                ts[d] = b',';
            }
            while out.len() > start && out.last() == Some(&b'Z') {
                out.pop();
            }
            let level = match event.level {
                Level::Debug => "DEBG",
                Level::Info => "INFO",
                Level::Warn => "WARN",
                Level::Error => "CRIT",
            };
            out.push(b' ');
            out.extend_from_slice(level.as_bytes());
            out.push(b' ');
            out.extend_from_slice(event.msg.as_bytes());
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use std::io::{self, Write};
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::output::Output;

    /// Stands in for a stdout whose reader is away until the gate opens.
    #[derive(Clone)]
    struct Gated {
        /// Told when the first write begins (the writer is then stuck in it).
        entered: mpsc::Sender<()>,
        gate: Arc<Mutex<Option<mpsc::Receiver<()>>>>,
        out: Arc<Mutex<Vec<u8>>>,
        writes: Arc<Mutex<usize>>,
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Some(rx) = lock(&self.gate).take() {
                let _ = self.entered.send(());
                let _ = rx.recv();
            }
            lock(&self.out).extend_from_slice(buf);
            *lock(&self.writes) += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn event(n: usize) -> Event {
        let mut e = Event::new(
            Level::Info,
            Kind::Exited,
            format!("exited: p{n} (exit status 1; not expected)"),
        );
        e.program = Some(format!("p{n}"));
        e.pid = Some(n as u32);
        e
    }

    #[test]
    fn text_lines_are_supervisords() {
        let mut e = event(3);
        e.ts = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
        let mut out = Vec::new();
        format_event(&mut out, &e, LogFormat::Text, &LogFields::EMPTY);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{}\n", e.to_text())
        );
        let mut out = Vec::new();
        format_event(&mut out, &e, LogFormat::Json, &LogFields::EMPTY);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{}\n", e.to_json())
        );
    }

    #[tokio::test]
    async fn keeps_everything_at_speed_and_counts_a_stall_once() {
        let (open, gate) = mpsc::channel();
        let (entered, stuck) = mpsc::channel();
        let stdout = Gated {
            entered,
            gate: Arc::new(Mutex::new(Some(gate))),
            out: Arc::default(),
            writes: Arc::default(),
        };
        let output = Output::with_writers(
            LogFormat::Json,
            Box::new(stdout.clone()),
            Box::new(io::sink()),
        );
        let metrics = Arc::new(Metrics::new());
        let log = output.event_log(Level::Info, metrics.clone());
        // The reader is away: the first batch waits in the writer, the queue fills, the rest
        // is dropped and counted.
        log.record(&event(0));
        stuck.recv().unwrap();
        let total = 20_000;
        for n in 1..total {
            log.record(&event(n));
        }
        let dropped = metrics.log_events_dropped();
        assert!(dropped > 0, "nothing was dropped while nobody read");
        open.send(()).unwrap();
        output.drain(Duration::from_secs(5)).await;
        // What waited went out in two writes: the batch the writer was stuck in, then the
        // whole queue.
        assert_eq!(*lock(&stdout.writes), 2);
        // Back at speed: nothing more is lost, and the burst is said once.
        for n in total..total + 1000 {
            log.record(&event(n));
        }
        output.drain(Duration::from_secs(5)).await;
        assert_eq!(metrics.log_events_dropped(), dropped);
        let text = String::from_utf8(lock(&stdout.out).clone()).unwrap();
        let notices: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("events were not logged"))
            .collect();
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert!(notices[0].contains(&format!(
            "\"msg\":\"{dropped} events were not logged since "
        )));
        let exited = text
            .lines()
            .filter(|l| l.contains("\"event\":\"exited\""))
            .count() as u64;
        assert_eq!(exited + dropped, (total + 1000) as u64);
        // All the lines after the stall were written.
        assert!(text.contains(&format!("\"program\":\"p{}\"", total + 999)));
    }
}
