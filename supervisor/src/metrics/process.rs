//! The supervisor's own `process_*` metrics, as Prometheus client libraries name them: read
//! from `/proc/self` at scrape time (one `stat` read, one `/proc/self/fd` listing, two
//! rlimits), written by the same text writer as the `supervisor_*` families.

use std::sync::OnceLock;

use rustix::fs::{openat, Dir, Mode, OFlags, CWD};
use rustix::process::{getrlimit, Resource};

use super::{family, FamilySpec, Text, Type};

pub(super) const CPU: FamilySpec = family(
    "process_cpu_seconds_total",
    Type::Counter,
    "Total user and system CPU time spent in seconds.",
);
pub(super) const OPEN_FDS: FamilySpec = family(
    "process_open_fds",
    Type::Gauge,
    "Number of open file descriptors.",
);
pub(super) const MAX_FDS: FamilySpec = family(
    "process_max_fds",
    Type::Gauge,
    "Maximum number of open file descriptors.",
);
pub(super) const VIRTUAL: FamilySpec = family(
    "process_virtual_memory_bytes",
    Type::Gauge,
    "Virtual memory size in bytes.",
);
pub(super) const VIRTUAL_MAX: FamilySpec = family(
    "process_virtual_memory_max_bytes",
    Type::Gauge,
    "Maximum amount of virtual memory available in bytes.",
);
pub(super) const RESIDENT: FamilySpec = family(
    "process_resident_memory_bytes",
    Type::Gauge,
    "Resident memory size in bytes.",
);
pub(super) const START_TIME: FamilySpec = family(
    "process_start_time_seconds",
    Type::Gauge,
    "Start time of the process since unix epoch in seconds.",
);
pub(super) const THREADS: FamilySpec = family(
    "process_threads",
    Type::Gauge,
    "Number of OS threads in the process.",
);

/// The fields of `/proc/self/stat` these metrics use.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct SelfStat {
    pub utime: u64,
    pub stime: u64,
    pub threads: u64,
    /// Clock ticks after boot.
    pub starttime: u64,
    pub vsize: u64,
    pub rss_pages: u64,
}

/// Parses `/proc/self/stat`, counting fields from the last `)` (the command name may hold
/// spaces and parentheses).
pub(super) fn parse_self_stat(line: &[u8]) -> Option<SelfStat> {
    let close = line.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(line.get(close + 1..)?).ok()?;
    let f: Vec<&str> = rest.split_ascii_whitespace().take(22).collect();
    // rest starts at field 3 (state): field k is f[k - 3].
    let num = |k: usize| f.get(k - 3).and_then(|s| s.parse::<u64>().ok());
    Some(SelfStat {
        utime: num(14)?,
        stime: num(15)?,
        threads: num(20)?,
        starttime: num(22)?,
        vsize: num(23)?,
        // Signed in the kernel's format; never negative in practice.
        rss_pages: f
            .get(24 - 3)
            .and_then(|s| s.parse::<i64>().ok())
            .map_or(0, |v| v.max(0) as u64),
    })
}

/// The boot time (`btime`) from `/proc/stat`.
pub(super) fn parse_btime(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn read(path: &str) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}

/// Open fds, not counting the one used to list them.
fn open_fds() -> Option<u64> {
    let dir = openat(
        CWD,
        "/proc/self/fd",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let listing = Dir::read_from(&dir).ok()?;
    let n = listing
        .flatten()
        .filter(|e| e.file_name().to_bytes().first() != Some(&b'.'))
        .count() as u64;
    Some(n.saturating_sub(1))
}

/// Writes the `process_*` families; a value that cannot be read is left out (as client
/// libraries do), never guessed.
pub(super) fn write(t: &mut Text<'_>) {
    let (page, ticks) = super::proc_scan::constants();
    let stat = read("/proc/self/stat").and_then(|s| parse_self_stat(&s));
    if let Some(s) = &stat {
        t.header(&CPU);
        t.sample(&CPU, "", None, (s.utime + s.stime) as f64 / ticks);
    }
    if let Some(n) = open_fds() {
        t.header(&OPEN_FDS);
        t.sample(&OPEN_FDS, "", None, n);
    }
    let nofile = getrlimit(Resource::Nofile);
    if let Some(max) = nofile.current {
        t.header(&MAX_FDS);
        t.sample(&MAX_FDS, "", None, max);
    }
    if let Some(s) = &stat {
        t.header(&VIRTUAL);
        t.sample(&VIRTUAL, "", None, s.vsize);
    }
    if let Some(max) = getrlimit(Resource::As).current {
        t.header(&VIRTUAL_MAX);
        t.sample(&VIRTUAL_MAX, "", None, max);
    }
    if let Some(s) = &stat {
        t.header(&RESIDENT);
        t.sample(&RESIDENT, "", None, s.rss_pages.saturating_mul(page));
        static BTIME: OnceLock<Option<u64>> = OnceLock::new();
        let btime = BTIME.get_or_init(|| {
            read("/proc/stat")
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|b| parse_btime(&b))
        });
        if let Some(btime) = *btime {
            t.header(&START_TIME);
            t.sample(
                &START_TIME,
                "",
                None,
                btime as f64 + s.starttime as f64 / ticks,
            );
        }
        t.header(&THREADS);
        t.sample(&THREADS, "", None, s.threads);
    }
}
