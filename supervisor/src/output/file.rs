//! Log files: raw lines appended to a file, rotated the way supervisord does it.
//!
//! The file is opened on the first write (created 0644; its directory must exist) and rotated
//! before a write would make it exceed `max_bytes`, at a line boundary: `file` → `file.1` →
//! `file.2` … up to `backups`; with no backups it is truncated instead. A line longer than
//! `max_bytes` gets a file to itself. Errors are reported once on stderr and the output dropped;
//! an open that failed is retried when data comes, at most every [`RETRY_OPEN`].

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::writer::{Destination, Reporter};

/// How long after a failed open the next attempt may come (only when there is output to write:
/// no timer).
const RETRY_OPEN: Duration = Duration::from_secs(5);

pub(super) struct RotatingFile {
    path: PathBuf,
    /// Rotate before the file would grow past this; 0: never.
    max_bytes: u64,
    /// How many rotated files to keep; 0: truncate instead.
    backups: u32,
    file: Option<File>,
    /// Size of `file` as far as we know (what it had when opened plus what we wrote).
    size: u64,
    /// When opening last failed: no new attempt before [`RETRY_OPEN`].
    open_failed_at: Option<Instant>,
    /// A write error was reported and no write succeeded since.
    write_failing: bool,
    /// A rotation error was reported and no rotation succeeded since.
    rotate_failing: bool,
    reporter: Reporter,
}

impl RotatingFile {
    pub(super) fn new(path: PathBuf, max_bytes: u64, backups: u32, reporter: Reporter) -> Self {
        RotatingFile {
            path,
            max_bytes,
            backups,
            file: None,
            size: 0,
            open_failed_at: None,
            write_failing: false,
            rotate_failing: false,
            reporter,
        }
    }

    /// Opens the file if it is not open; false if it cannot be (now).
    fn ensure_open(&mut self) -> bool {
        if self.file.is_some() {
            return true;
        }
        if self
            .open_failed_at
            .is_some_and(|at| at.elapsed() < RETRY_OPEN)
        {
            return false;
        }
        let opened = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o644)
            .open(&self.path);
        match opened {
            Ok(file) => {
                self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
                self.file = Some(file);
                self.open_failed_at = None;
                self.reporter.opened(&self.path);
                true
            }
            Err(e) => {
                self.open_failed_at = Some(Instant::now());
                self.reporter.open_failed(&self.path, &e);
                false
            }
        }
    }

    /// `path` with `.n` appended.
    fn backup(&self, n: u32) -> PathBuf {
        let mut name = OsString::from(self.path.as_os_str());
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Moves the full file aside (or empties it); the next write opens a new one.
    fn rotate(&mut self) {
        let result = if self.backups == 0 {
            match &self.file {
                Some(file) => file.set_len(0).map(|()| self.size = 0),
                None => Ok(()),
            }
        } else {
            self.file = None;
            let mut result = Ok(());
            for n in (1..self.backups).rev() {
                result = result.and(rename_if_exists(&self.backup(n), &self.backup(n + 1)));
            }
            result.and(rename_if_exists(&self.path, &self.backup(1)))
        };
        match result {
            Ok(()) => self.rotate_failing = false,
            Err(e) if !self.rotate_failing => {
                self.rotate_failing = true;
                let msg = format!(
                    "cannot rotate log file {}: writing on past its max size",
                    self.path.display()
                );
                self.reporter.error(&msg, Some(&e));
            }
            Err(_) => {}
        }
    }
}

fn rename_if_exists(from: &std::path::Path, to: &std::path::Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// How much of `data` to write into a file holding `size` of `max_bytes` bytes: all of it if it
/// fits, else the complete lines that fit; 0 means rotate first. An empty file takes at least
/// one line, however long.
pub(super) fn fit(data: &[u8], size: u64, max_bytes: u64) -> usize {
    let room = max_bytes.saturating_sub(size);
    if max_bytes == 0 || data.len() as u64 <= room {
        return data.len();
    }
    // room < data.len(), so it fits in a usize.
    if let Some(i) = data[..room as usize].iter().rposition(|&b| b == b'\n') {
        return i + 1;
    }
    if size > 0 {
        return 0;
    }
    first_line_len(data)
}

fn first_line_len(data: &[u8]) -> usize {
    data.iter()
        .position(|&b| b == b'\n')
        .map_or(data.len(), |i| i + 1)
}

impl Destination for RotatingFile {
    fn write(&mut self, mut data: &[u8]) {
        let mut rotated = false;
        while !data.is_empty() {
            if !self.ensure_open() {
                return;
            }
            let mut n = fit(data, self.size, self.max_bytes);
            if n == 0 {
                if !rotated {
                    self.rotate();
                    rotated = true;
                    continue;
                }
                // Rotation failed: the file stays, and grows.
                n = first_line_len(data);
            }
            let Some(file) = self.file.as_mut() else {
                return;
            };
            match file.write_all(&data[..n]) {
                Ok(()) => {
                    self.size += n as u64;
                    self.write_failing = false;
                }
                Err(e) => {
                    // Part of it may be in: ask the file how big it is now.
                    self.size = file.metadata().map(|m| m.len()).unwrap_or(self.size);
                    if !self.write_failing {
                        self.write_failing = true;
                        let msg = format!(
                            "cannot write log file {}: output to it is dropped until a write \
                             succeeds",
                            self.path.display()
                        );
                        self.reporter.error(&msg, Some(&e));
                    }
                    return;
                }
            }
            data = &data[n..];
            rotated = false;
        }
    }

    fn reopen(&mut self) {
        self.file = None;
        self.open_failed_at = None;
    }
}
