//! The supervisor's eBPF probe, kernel side: the compiled object and the record layout.
//!
//! `bpf/probe.bpf.c` (C with CO-RE, three `tp_btf` programs) is compiled by `build.rs` with
//! clang into an object that this crate embeds ([`object`]). The loader in
//! `supervisor::probe` loads it with aya, fills [`MAP_WATCHED`] with the pids it supervises and
//! reads [`RawEvent`]s from [`MAP_EVENTS`].
//!
//! [`RawEvent`] mirrors `struct probe_event` of `bpf/probe.h` field for field; the test
//! `layout_matches_the_c_header` compares both through the BTF type information that clang
//! writes into the object, so the two sides cannot drift apart silently.
//!
//! Without clang at build time the object is compiled out and [`object`] says why.

/// Record kinds ([`RawEvent::kind`]), as `PROBE_KIND_*` in `bpf/probe.h`.
pub const KIND_SIGNAL: u32 = 1;
/// The last thread of a watched process exited.
pub const KIND_EXIT: u32 = 2;
/// The OOM killer chose a watched process.
pub const KIND_OOM: u32 = 3;
/// Records one CPU could not queue (ring buffer full) since its last such record: `count`.
pub const KIND_LOST: u32 = 4;

/// Repeats of one signal (same sender process, target, signal, `si_code`) within this many
/// nanoseconds of the first are folded into one record's `count` (`PROBE_FOLD_WINDOW_NS`).
pub const FOLD_WINDOW_NS: u64 = 1_000_000_000;
/// Descendants followed per program process (`PROBE_MAX_TREE`).
pub const MAX_TREE: u32 = 1024;

/// Ring buffer of [`RawEvent`]s.
pub const MAP_EVENTS: &str = "EVENTS";
/// Hash map `u32 pid → u32 tag` of the programs' own processes (pids in the supervisor's PID
/// namespace; the tag, never 0, is the loader's).
pub const MAP_WATCHED: &str = "WATCHED";
/// Hash map of the programs' descendants (kept by the kernel alone).
pub const MAP_DESCENDANTS: &str = "DESCENDANTS";
/// Array `u32 bucket → u32 count` of [`MAP_WATCHED`] pids with `pid % WATCH_BUCKETS ==
/// bucket`: the kernel's cheap "not watched" answer, kept in step with [`MAP_WATCHED`].
pub const MAP_WATCH_BUCKETS: &str = "WATCH_BUCKETS";
/// Number of buckets in [`MAP_WATCH_BUCKETS`] (`PROBE_WATCH_BUCKETS`).
pub const WATCH_BUCKETS: u32 = 4096;
/// Per-CPU `u64` counters, indexed by `STAT_*`.
pub const MAP_STATS: &str = "STATS";
/// [`MAP_STATS`] slot: signals and records dropped because the ring buffer was full.
pub const STAT_LOST: u32 = 0;
/// [`MAP_STATS`] slot: forks not followed (a tree at [`MAX_TREE`], or a full map).
pub const STAT_UNFOLLOWED: u32 = 2;
/// `u32` global: inode number of the supervisor's PID namespace; set before loading.
pub const GLOBAL_PIDNS_INUM: &str = "PIDNS_INUM";
/// `u32` global: the supervisor's pid in that namespace (its children are followed from
/// their fork); set before loading.
pub const GLOBAL_SUPERVISOR_PID: &str = "SUPERVISOR_PID";

/// The programs: (function name in the object, tracepoint it attaches to as `tp_btf`,
/// required). `mark_victim` passes the victim's task only on recent kernels (older ones pass a
/// host pid): without it the probe still runs, and an OOM kill shows as a SIGKILL from the
/// kernel. Without `sched_process_fork` only the programs' own processes are watched.
pub const PROGRAMS: &[(&str, &str, bool)] = &[
    ("sig_generate", "signal_generate", true),
    ("proc_exit", "sched_process_exit", true),
    ("oom_victim", "mark_victim", false),
    ("proc_fork", "sched_process_fork", false),
];

/// One record from the ring buffer: `struct probe_event` of `bpf/probe.h`.
///
/// Every field is a fixed-width integer (any bit pattern is valid), widest first, with no
/// implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawEvent {
    /// `bpf_ktime_get_ns()`: `CLOCK_MONOTONIC` nanoseconds.
    pub ktime_ns: u64,
    /// OOM: smallest memory limit (pages) of the victim's memory cgroup and its ancestors;
    /// 0 when unreadable.
    pub memory_limit_pages: u64,
    /// Signals: how many identical signals the record stands for (1, or the repeats folded
    /// since the previous record of that signal); [`KIND_LOST`]: records lost.
    pub count: u64,
    /// [`KIND_SIGNAL`], [`KIND_EXIT`], [`KIND_OOM`] or [`KIND_LOST`].
    pub kind: u32,
    /// Target process id in the supervisor's PID namespace.
    pub target_pid: u32,
    /// Target thread id in the supervisor's PID namespace.
    pub target_tid: u32,
    /// The program's own process the target belongs to (`target_pid` for that process).
    pub root_pid: u32,
    /// The loader's tag for that process (as in [`MAP_WATCHED`]).
    pub tag: u32,
    /// The target's parent process.
    pub target_ppid: u32,
    /// Always 0 (explicit padding).
    pub reserved: u32,
    /// Signal number (`SIGKILL` for OOM records).
    pub signo: i32,
    /// `si_code` of the signal.
    pub code: i32,
    /// `TRACE_SIGNAL_*` delivery result.
    pub result: i32,
    /// Exit records: the kernel's `task->exit_code` (a wait status).
    pub exit_code: i32,
    /// Sender process id in the supervisor's PID namespace; 0 when not visible there.
    pub sender_pid: u32,
    /// Sender thread id in the supervisor's PID namespace; 0 when not visible there.
    pub sender_tid: u32,
    /// Sender's parent process id in the supervisor's PID namespace; 0 when not visible there.
    pub sender_ppid: u32,
    /// Sender's real uid.
    pub sender_uid: u32,
    /// 1 when the sender is outside the supervisor's PID namespace.
    pub sender_outside_ns: u32,
    /// Sender thread's command name, NUL-padded.
    pub sender_comm: [u8; 16],
    /// Sender's parent process's command name, NUL-padded.
    pub sender_parent_comm: [u8; 16],
    /// Target's command name, NUL-padded.
    pub target_comm: [u8; 16],
}

const _: () = assert!(std::mem::size_of::<RawEvent>() == 136);
const _: () = assert!(std::mem::align_of::<RawEvent>() == 8);

/// Why the probe is not in this build (set by `build.rs` when clang or a header was missing).
pub const MISSING: Option<&str> = option_env!("SUPERVISOR_EBPF_MISSING");

/// The compiled eBPF object, or why it was compiled out (e.g. "clang was missing at build
/// time").
pub fn object() -> Result<&'static [u8], &'static str> {
    #[cfg(probe_built)]
    {
        Ok(&OBJECT.0)
    }
    #[cfg(not(probe_built))]
    {
        Err(MISSING.unwrap_or("the probe was not built"))
    }
}

/// The object's bytes, 32-byte aligned: the ELF parser reads its headers in place.
#[cfg(probe_built)]
#[repr(C, align(32))]
struct Aligned<T: ?Sized>(T);

#[cfg(probe_built)]
static OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/probe.bpf.o")));

#[cfg(all(test, probe_built))]
mod btf;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_is_built_or_says_why() {
        match object() {
            Ok(bytes) => {
                assert_eq!(&bytes[..4], b"\x7fELF");
                assert_eq!(
                    bytes.as_ptr() as usize % 32,
                    0,
                    "object bytes must be aligned"
                );
            }
            Err(why) => assert!(why.contains("missing"), "unexpected reason: {why}"),
        }
    }

    /// The Rust mirror against the C header, through the BTF clang emitted for
    /// `struct probe_event`: same member names in the same order, same offsets, same size.
    #[cfg(probe_built)]
    #[test]
    fn layout_matches_the_c_header() {
        use std::mem::{offset_of, size_of};
        let rust: &[(&str, usize)] = &[
            ("ktime_ns", offset_of!(RawEvent, ktime_ns)),
            (
                "memory_limit_pages",
                offset_of!(RawEvent, memory_limit_pages),
            ),
            ("count", offset_of!(RawEvent, count)),
            ("kind", offset_of!(RawEvent, kind)),
            ("target_pid", offset_of!(RawEvent, target_pid)),
            ("target_tid", offset_of!(RawEvent, target_tid)),
            ("root_pid", offset_of!(RawEvent, root_pid)),
            ("tag", offset_of!(RawEvent, tag)),
            ("target_ppid", offset_of!(RawEvent, target_ppid)),
            ("reserved", offset_of!(RawEvent, reserved)),
            ("signo", offset_of!(RawEvent, signo)),
            ("code", offset_of!(RawEvent, code)),
            ("result", offset_of!(RawEvent, result)),
            ("exit_code", offset_of!(RawEvent, exit_code)),
            ("sender_pid", offset_of!(RawEvent, sender_pid)),
            ("sender_tid", offset_of!(RawEvent, sender_tid)),
            ("sender_ppid", offset_of!(RawEvent, sender_ppid)),
            ("sender_uid", offset_of!(RawEvent, sender_uid)),
            ("sender_outside_ns", offset_of!(RawEvent, sender_outside_ns)),
            ("sender_comm", offset_of!(RawEvent, sender_comm)),
            (
                "sender_parent_comm",
                offset_of!(RawEvent, sender_parent_comm),
            ),
            ("target_comm", offset_of!(RawEvent, target_comm)),
        ];
        let btf = btf::section(object().unwrap(), ".BTF").expect("the object has a .BTF section");
        let (size, members) =
            btf::struct_layout(btf, "probe_event").expect("BTF describes struct probe_event");
        let c: Vec<(&str, usize)> = members.iter().map(|(n, o)| (n.as_str(), *o)).collect();
        assert_eq!(c, rust, "bpf/probe.h and RawEvent disagree");
        assert_eq!(
            size,
            size_of::<RawEvent>(),
            "struct probe_event has another size"
        );
    }

    #[test]
    fn kinds_and_programs_match_the_c_source() {
        let src = include_str!("../bpf/probe.bpf.c");
        let header = include_str!("../bpf/probe.h");
        for (name, value) in [
            ("PROBE_KIND_SIGNAL", KIND_SIGNAL),
            ("PROBE_KIND_EXIT", KIND_EXIT),
            ("PROBE_KIND_OOM", KIND_OOM),
            ("PROBE_KIND_LOST", KIND_LOST),
        ] {
            assert!(
                header.contains(&format!("#define {name} {value} ")),
                "{name} != {value}"
            );
        }
        for (prog, tracepoint, _) in PROGRAMS {
            assert!(src.contains(&format!(
                "SEC(\"tp_btf/{tracepoint}\")\nint BPF_PROG({prog},"
            )));
        }
        assert!(header.contains(&format!("#define PROBE_WATCH_BUCKETS {WATCH_BUCKETS}\n")));
        assert!(header.contains(&format!("#define PROBE_MAX_TREE {MAX_TREE}\n")));
        assert!(header.contains(&format!(
            "#define PROBE_FOLD_WINDOW_NS {FOLD_WINDOW_NS}ULL\n"
        )));
        assert!(src.contains(&format!("#define STAT_LOST {STAT_LOST} ")));
        assert!(src.contains(&format!("#define STAT_UNFOLLOWED {STAT_UNFOLLOWED} ")));
        assert!(src.contains(&format!(
            "const volatile __u32 {GLOBAL_SUPERVISOR_PID} = 0;"
        )));
        for map in [
            MAP_EVENTS,
            MAP_WATCHED,
            MAP_WATCH_BUCKETS,
            MAP_STATS,
            MAP_DESCENDANTS,
        ] {
            assert!(
                src.contains(&format!("}} {map} SEC(\".maps\");")),
                "map {map}"
            );
        }
        assert!(src.contains(&format!("const volatile __u32 {GLOBAL_PIDNS_INUM} = 0;")));
    }
}
