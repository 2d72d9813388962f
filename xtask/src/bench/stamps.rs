//! The FIFO through which every `stamp` process reports "I am NAME, pid PID, started at NS".
//!
//! A thread reads it line by line and hands the records over a channel, so the harness waits
//! without polling and the timestamps themselves come from the programs, not from when the
//! harness happened to look.

use std::ffi::CString;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// One program start.
#[derive(Debug, Clone)]
pub struct Record {
    pub name: String,
    pub pid: i32,
    /// `CLOCK_MONOTONIC` at the start of the program's `main`.
    pub ns: u64,
}

/// Marks the end of the stream (written by our own `Drop`).
const QUIT: &str = "-quit-";

pub struct StampFeed {
    path: PathBuf,
    records: Receiver<Record>,
    /// A write end of our own: it keeps the FIFO open for writers, and tells the reader to quit.
    writer: File,
}

impl StampFeed {
    /// Creates the FIFO at `path` and starts reading it.
    pub fn create(path: &Path) -> Result<StampFeed> {
        let c_path = CString::new(path.as_os_str().as_bytes())?;
        // SAFETY: a valid NUL-terminated path and a mode.
        if unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } != 0 {
            bail!(
                "mkfifo({}) failed: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        // Read and write: opening does not wait for a writer, and reads never see end-of-file
        // between two programs.
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let writer = reader.try_clone()?;
        let (tx, records) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                if line == QUIT {
                    break;
                }
                let mut f = line.split(' ');
                let (Some(name), Some(pid), Some(ns)) = (f.next(), f.next(), f.next()) else {
                    continue;
                };
                let (Ok(pid), Ok(ns)) = (pid.parse(), ns.parse()) else {
                    continue;
                };
                if tx
                    .send(Record {
                        name: name.to_string(),
                        pid,
                        ns,
                    })
                    .is_err()
                {
                    break;
                }
            }
        });
        Ok(StampFeed {
            path: path.to_path_buf(),
            records,
            writer,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next record, or `None` once `deadline` passes.
    pub fn next_until(&self, deadline: Instant) -> Option<Record> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.records.recv_timeout(left).ok()
    }

    /// Every record already received.
    pub fn drain(&self) -> Vec<Record> {
        self.records.try_iter().collect()
    }
}

impl Drop for StampFeed {
    fn drop(&mut self) {
        let _ = writeln!(self.writer, "{QUIT}");
    }
}
