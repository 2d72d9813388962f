//! `stamp`: the program every supervisor runs in `cargo xtask bench`.
//!
//! The first thing it does is read `CLOCK_MONOTONIC`; then it writes one line
//! `NAME PID NANOSECONDS` into the harness's FIFO and waits for a signal forever. The harness
//! compares that timestamp with the moment it killed the previous instance (restart latency) or
//! launched the supervisor (start-up time). It does no other work, so what is measured is the
//! supervisor, plus one `execve` of a small binary that every peer pays alike.
//!
//! Usage: `stamp [NAME [FIFO]]`. Without FIFO, `$STAMP_FIFO` is used; without NAME, the current
//! directory's last component. That lets a service directory's `run` be a symlink to this binary,
//! with no shell in between (s6-supervise runs `./run NAME`, runsv runs `./run`).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

fn main() {
    let ns = monotonic_ns();
    let mut args = std::env::args_os().skip(1);
    let name = args.next();
    let fifo = args.next().or_else(|| std::env::var_os("STAMP_FIFO"));
    let name = match name {
        Some(name) => name.to_string_lossy().into_owned(),
        None => std::env::current_dir()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "?".to_string()),
    };
    if let Some(fifo) = fifo {
        // Non-blocking: if the harness has gone away (no reader), opening fails with ENXIO
        // instead of hanging, and the record is simply dropped.
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo)
        {
            // One write of less than PIPE_BUF bytes: atomic, so concurrent stamps never interleave.
            let _ = f.write_all(format!("{name} {} {ns}\n", std::process::id()).as_bytes());
        }
    }
    loop {
        // SAFETY: pause() has no preconditions; it returns only after a caught signal.
        unsafe { libc::pause() };
    }
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
