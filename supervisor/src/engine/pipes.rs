//! What a program's exited process may still hold: its output pipes, until EOF or a short grace.
//!
//! Policy (bounded per program, whatever the restart rate): a program's output pipes are read
//! until EOF, also after its process exited (a descendant may still write to them). The *next*
//! spawn of the program waits until the previous process's pipes are closed: at EOF, which for a
//! process that left nothing behind is at once, or [`DRAIN_GRACE`] after the spawn was due, when
//! the engine closes them itself (what a descendant still writes then gets EPIPE, as with
//! supervisord, which closes a process's pipes when it dies). So a program holds the pipes of at
//! most one process at a time — two, or one with `redirect_stderr` — and a crash loop can never
//! pile them up; `startsecs = 0` still restarts at once, since the pipes of a process that left
//! no descendant reach EOF as soon as it is reaped.

use std::time::{Duration, Instant};

use crate::output::Attached;

/// How long a due spawn waits for the previous process's pipes to reach EOF.
pub const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// The pipes of a program's latest process.
#[derive(Default)]
pub struct Pipes {
    /// The process (engine serial) the pipes belong to.
    serial: u64,
    /// Attached pipes not closed yet.
    open: usize,
    /// Handles to close them early.
    handles: Vec<Attached>,
    /// When a waiting spawn stops waiting and the pipes are closed.
    deadline: Option<Instant>,
    /// A spawn is due once the pipes are closed.
    pub spawn_pending: bool,
}

impl Pipes {
    /// A pipe of process `serial` was attached (`handle` is `None` when it is closed already;
    /// its close is still reported through [`Pipes::closed`]).
    pub fn attached(&mut self, serial: u64, handle: Option<Attached>) {
        if serial != self.serial {
            self.serial = serial;
            self.open = 0;
            self.handles.clear();
            self.deadline = None;
        }
        self.open += 1;
        self.handles.extend(handle);
    }

    /// A pipe of process `serial` was closed. True when that was the last one and a spawn was
    /// waiting for it (the caller spawns now).
    pub fn closed(&mut self, serial: u64) -> bool {
        if serial != self.serial || self.open == 0 {
            return false;
        }
        self.open -= 1;
        if self.open > 0 {
            return false;
        }
        self.handles.clear();
        self.deadline = None;
        std::mem::take(&mut self.spawn_pending)
    }

    /// A spawn is due at `now`: true when it must wait for the previous process's pipes (it is
    /// then pending, with a deadline [`DRAIN_GRACE`] later).
    pub fn hold_spawn(&mut self, now: Instant) -> bool {
        if self.open == 0 {
            return false;
        }
        self.spawn_pending = true;
        if self.deadline.is_none() {
            self.deadline = Some(super::plan::deadline_after(now, DRAIN_GRACE));
        }
        true
    }

    /// Forgets a pending spawn (the program was stopped meanwhile); true when one was pending.
    pub fn cancel_spawn(&mut self) -> bool {
        self.deadline = None;
        std::mem::take(&mut self.spawn_pending)
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The grace ran out: closes the pipes (their close is reported through [`Pipes::closed`]).
    /// Returns how many were still open, 0 when nothing was due.
    pub fn timer(&mut self, now: Instant) -> usize {
        match self.deadline {
            Some(d) if d <= now => {}
            _ => return 0,
        }
        self.deadline = None;
        for h in &self.handles {
            h.close();
        }
        self.open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spawn_waits_only_while_pipes_are_open() {
        let now = Instant::now();
        let mut p = Pipes::default();
        assert!(!p.hold_spawn(now), "no pipes: spawn at once");
        p.attached(1, None);
        p.attached(1, None);
        assert!(p.hold_spawn(now));
        assert_eq!(p.deadline(), Some(now + DRAIN_GRACE));
        assert!(!p.closed(7), "another process's pipe does not count");
        assert!(!p.closed(1), "one of two closed");
        assert!(p.closed(1), "last one closed: the pending spawn goes");
        assert_eq!(p.deadline(), None);
        assert!(!p.closed(1), "closing more than was open is ignored");
        assert!(!p.hold_spawn(now));
    }

    #[test]
    fn the_grace_closes_the_pipes_and_a_stop_cancels_the_spawn() {
        let now = Instant::now();
        let mut p = Pipes::default();
        p.attached(3, None);
        assert!(p.hold_spawn(now));
        assert_eq!(p.timer(now), 0, "not due yet");
        assert_eq!(p.timer(now + DRAIN_GRACE), 1);
        assert_eq!(p.deadline(), None);
        assert!(p.closed(3));
        p.attached(4, None);
        assert!(p.hold_spawn(now));
        p.cancel_spawn();
        assert!(!p.closed(4), "stopped: nothing to spawn");
        // A new process's pipes replace the old count.
        p.attached(5, None);
        p.attached(6, None);
        assert!(p.hold_spawn(now));
        assert!(p.closed(6));
    }
}
