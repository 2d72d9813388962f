//! What the probe tells: [`ProbeRecord`]s decoded from the kernel's [`RawEvent`]s, and the
//! words for them (`si_code` names, delivery results, [`describe`]).

use std::time::{Duration, SystemTime};

use supervisor_ebpf::{RawEvent, KIND_EXIT, KIND_LOST, KIND_OOM, KIND_SIGNAL};

use crate::config::signal_name;

/// One thing the kernel saw happen to a watched process: a program's own process, or one of
/// its descendants (then `root_pid` is the program's process). Pids are the supervisor's view
/// (its own PID namespace); `ktime_ns` is `CLOCK_MONOTONIC` ([`wall_time`] converts it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeRecord {
    /// A signal was generated for a watched process (`signal_generate`). Routine `SIGCHLD`s
    /// from its own children (`CLD_*` codes) are filtered out in the kernel.
    Signal {
        /// The watched process.
        target_pid: u32,
        /// The thread it was sent to (equals `target_pid` for process-directed signals).
        target_tid: u32,
        /// The program's process whose tree the target is in (`target_pid` itself for it).
        root_pid: u32,
        /// The loader's tag of `root_pid` (see [`crate::probe::Probe::current`]).
        tag: u32,
        /// The target's parent process.
        target_ppid: u32,
        /// The target's command name.
        target_comm: String,
        /// How many identical signals (same sender, signal, `si_code`) this record stands
        /// for: 1, or the repeats the kernel folded since the previous record of the signal.
        count: u64,
        signo: i32,
        /// `si_code`: [`SI_USER`] for kill(2), [`SI_KERNEL`] or a fault code for the kernel,
        /// see [`si_code_name`].
        code: i32,
        /// `TRACE_SIGNAL_*`: [`RESULT_DELIVERED`], [`RESULT_IGNORED`], [`RESULT_PENDING`]...
        result: i32,
        /// Sender process; 0 when it is outside the supervisor's PID namespace.
        sender_pid: u32,
        /// Sender thread; 0 when outside.
        sender_tid: u32,
        /// Sender's command name (of the sending thread). For signals that are not
        /// [`from_process`] this is whichever task the kernel ran at the time: ignore it.
        sender_comm: String,
        /// Sender's real uid (in the initial user namespace).
        sender_uid: u32,
        /// Sender's parent process; 0 when it is not visible in the supervisor's namespace.
        sender_ppid: u32,
        /// Sender's parent's command name.
        sender_parent_comm: String,
        /// The sender's process is not visible in the supervisor's PID namespace.
        sender_outside_ns: bool,
        ktime_ns: u64,
    },
    /// The last thread of a watched process exited (`sched_process_exit`): always for a
    /// program's own process, for a descendant only when a signal killed it.
    Exit {
        pid: u32,
        /// The program's process whose tree it is in (`pid` itself for it).
        root_pid: u32,
        tag: u32,
        /// Its parent process when it exited.
        ppid: u32,
        /// Its command name.
        comm: String,
        /// The kernel's `task->exit_code`: a wait(2) status (exit status << 8, or the signal
        /// number with 0x80 when a core was dumped).
        exit_code: i32,
        ktime_ns: u64,
    },
    /// The OOM killer chose a watched process (`mark_victim`); its SIGKILL (code
    /// [`SI_KERNEL`]) comes just before.
    OomVictim {
        pid: u32,
        root_pid: u32,
        tag: u32,
        /// Its command name.
        comm: String,
        /// Smallest memory limit of the victim's memory cgroup and its ancestors; `None` when
        /// unlimited or unreadable.
        memory_limit_bytes: Option<u64>,
        ktime_ns: u64,
    },
    /// The ring buffer was full: this many records (or signals of folded records) of one CPU
    /// were lost since its previous `Lost` record.
    Lost { count: u64, ktime_ns: u64 },
}

impl ProbeRecord {
    /// The watched process the record is about (0 for [`ProbeRecord::Lost`]).
    pub fn pid(&self) -> u32 {
        match self {
            ProbeRecord::Signal { target_pid, .. } => *target_pid,
            ProbeRecord::Exit { pid, .. } | ProbeRecord::OomVictim { pid, .. } => *pid,
            ProbeRecord::Lost { .. } => 0,
        }
    }

    /// The program's process whose tree the record is about, and its tag.
    pub fn root(&self) -> Option<(u32, u32)> {
        match self {
            ProbeRecord::Signal { root_pid, tag, .. }
            | ProbeRecord::Exit { root_pid, tag, .. }
            | ProbeRecord::OomVictim { root_pid, tag, .. } => Some((*root_pid, *tag)),
            ProbeRecord::Lost { .. } => None,
        }
    }

    /// Whether the record is about a descendant of a program's process, not that process.
    pub fn about_descendant(&self) -> bool {
        self.root().is_some_and(|(root, _)| root != self.pid())
    }

    /// `CLOCK_MONOTONIC` nanoseconds at which the kernel saw it.
    pub fn ktime_ns(&self) -> u64 {
        match self {
            ProbeRecord::Signal { ktime_ns, .. }
            | ProbeRecord::Exit { ktime_ns, .. }
            | ProbeRecord::OomVictim { ktime_ns, .. }
            | ProbeRecord::Lost { ktime_ns, .. } => *ktime_ns,
        }
    }

    /// Decodes one ring-buffer record (`struct probe_event`).
    pub fn decode(bytes: &[u8]) -> Result<ProbeRecord, DecodeError> {
        if bytes.len() < std::mem::size_of::<RawEvent>() {
            return Err(DecodeError::Short(bytes.len()));
        }
        // SAFETY: the slice holds at least size_of::<RawEvent>() bytes (checked above);
        // RawEvent is repr(C) with integer fields only, so every bit pattern is a valid value;
        // read_unaligned copes with any alignment of the slice.
        let raw = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<RawEvent>()) };
        Self::from_raw(&raw)
    }

    /// Turns a raw kernel record into a record.
    pub fn from_raw(raw: &RawEvent) -> Result<ProbeRecord, DecodeError> {
        match raw.kind {
            KIND_SIGNAL => Ok(ProbeRecord::Signal {
                target_pid: raw.target_pid,
                target_tid: raw.target_tid,
                root_pid: raw.root_pid,
                tag: raw.tag,
                target_ppid: raw.target_ppid,
                target_comm: comm(&raw.target_comm),
                count: raw.count.max(1),
                signo: raw.signo,
                code: raw.code,
                result: raw.result,
                sender_pid: raw.sender_pid,
                sender_tid: raw.sender_tid,
                sender_comm: comm(&raw.sender_comm),
                sender_uid: raw.sender_uid,
                sender_ppid: raw.sender_ppid,
                sender_parent_comm: comm(&raw.sender_parent_comm),
                sender_outside_ns: raw.sender_outside_ns != 0,
                ktime_ns: raw.ktime_ns,
            }),
            KIND_EXIT => Ok(ProbeRecord::Exit {
                pid: raw.target_pid,
                root_pid: raw.root_pid,
                tag: raw.tag,
                ppid: raw.target_ppid,
                comm: comm(&raw.target_comm),
                exit_code: raw.exit_code,
                ktime_ns: raw.ktime_ns,
            }),
            KIND_OOM => Ok(ProbeRecord::OomVictim {
                pid: raw.target_pid,
                root_pid: raw.root_pid,
                tag: raw.tag,
                comm: comm(&raw.target_comm),
                memory_limit_bytes: limit_bytes(raw.memory_limit_pages, page_size()),
                ktime_ns: raw.ktime_ns,
            }),
            KIND_LOST => Ok(ProbeRecord::Lost {
                count: raw.count,
                ktime_ns: raw.ktime_ns,
            }),
            other => Err(DecodeError::Kind(other)),
        }
    }
}

/// A ring-buffer record that is not a [`ProbeRecord`] (counted with the lost events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("probe record of {0} bytes is too short")]
    Short(usize),
    #[error("probe record of unknown kind {0}")]
    Kind(u32),
}

fn comm(bytes: &[u8; 16]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Bytes of a page-counter limit; `None` for 0 (unreadable) and for the kernel's "max"
/// (`PAGE_COUNTER_MAX`, `LONG_MAX / PAGE_SIZE`).
fn limit_bytes(pages: u64, page_size: u64) -> Option<u64> {
    let unlimited = i64::MAX as u64 / page_size.max(1);
    (pages != 0 && pages < unlimited).then(|| pages.saturating_mul(page_size))
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as u64
    } else {
        4096
    }
}

/// The wall-clock time of a `CLOCK_MONOTONIC` timestamp from the kernel.
pub fn wall_time(ktime_ns: u64) -> SystemTime {
    let now_wall = SystemTime::now();
    let now_mono = monotonic_ns();
    if now_mono >= ktime_ns {
        now_wall - Duration::from_nanos(now_mono - ktime_ns)
    } else {
        now_wall + Duration::from_nanos(ktime_ns - now_mono)
    }
}

/// `CLOCK_MONOTONIC` now, in nanoseconds (the clock of the kernel's records).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

// ---- si_code ----

/// kill(2), raise(3), pidfd_send_signal(2): sent by a process.
pub const SI_USER: i32 = 0;
/// Sent by the kernel itself (OOM killer, tty, itimers, `SEND_SIG_PRIV`).
pub const SI_KERNEL: i32 = 0x80;
/// sigqueue(3), rt_sigqueueinfo(2).
pub const SI_QUEUE: i32 = -1;
/// A POSIX timer expired.
pub const SI_TIMER: i32 = -2;
/// A POSIX message queue got a message.
pub const SI_MESGQ: i32 = -3;
/// Asynchronous I/O completed.
pub const SI_ASYNCIO: i32 = -4;
/// Queued SIGIO.
pub const SI_SIGIO: i32 = -5;
/// tkill(2), tgkill(2) (also abort(3) and pthread_kill(3)).
pub const SI_TKILL: i32 = -6;
/// Another thread called execve(2).
pub const SI_DETHREAD: i32 = -7;

/// `(signal or 0 for any, si_code, name, meaning)`.
const SI_CODES: &[(i32, i32, &str, &str)] = &[
    (0, SI_USER, "SI_USER", "user kill"),
    (0, SI_KERNEL, "SI_KERNEL", "kernel"),
    (0, SI_QUEUE, "SI_QUEUE", "sigqueue"),
    (0, SI_TIMER, "SI_TIMER", "timer"),
    (0, SI_MESGQ, "SI_MESGQ", "message queue"),
    (0, SI_ASYNCIO, "SI_ASYNCIO", "async I/O"),
    (0, SI_SIGIO, "SI_SIGIO", "queued SIGIO"),
    (0, SI_TKILL, "SI_TKILL", "tkill"),
    (0, SI_DETHREAD, "SI_DETHREAD", "exec in another thread"),
    (0, -60, "SI_ASYNCNL", "async name lookup"),
    (libc::SIGILL, 1, "ILL_ILLOPC", "illegal opcode"),
    (libc::SIGILL, 2, "ILL_ILLOPN", "illegal operand"),
    (libc::SIGILL, 3, "ILL_ILLADR", "illegal addressing mode"),
    (libc::SIGILL, 4, "ILL_ILLTRP", "illegal trap"),
    (libc::SIGILL, 5, "ILL_PRVOPC", "privileged opcode"),
    (libc::SIGILL, 6, "ILL_PRVREG", "privileged register"),
    (libc::SIGILL, 7, "ILL_COPROC", "coprocessor error"),
    (libc::SIGILL, 8, "ILL_BADSTK", "internal stack error"),
    (libc::SIGFPE, 1, "FPE_INTDIV", "integer divide by zero"),
    (libc::SIGFPE, 2, "FPE_INTOVF", "integer overflow"),
    (
        libc::SIGFPE,
        3,
        "FPE_FLTDIV",
        "floating-point divide by zero",
    ),
    (libc::SIGFPE, 4, "FPE_FLTOVF", "floating-point overflow"),
    (libc::SIGFPE, 5, "FPE_FLTUND", "floating-point underflow"),
    (
        libc::SIGFPE,
        6,
        "FPE_FLTRES",
        "floating-point inexact result",
    ),
    (
        libc::SIGFPE,
        7,
        "FPE_FLTINV",
        "invalid floating-point operation",
    ),
    (libc::SIGFPE, 8, "FPE_FLTSUB", "subscript out of range"),
    (libc::SIGSEGV, 1, "SEGV_MAPERR", "address not mapped"),
    (
        libc::SIGSEGV,
        2,
        "SEGV_ACCERR",
        "invalid permissions for mapped object",
    ),
    (
        libc::SIGSEGV,
        3,
        "SEGV_BNDERR",
        "failed address bound checks",
    ),
    (
        libc::SIGSEGV,
        4,
        "SEGV_PKUERR",
        "protection key check failed",
    ),
    (libc::SIGBUS, 1, "BUS_ADRALN", "invalid address alignment"),
    (
        libc::SIGBUS,
        2,
        "BUS_ADRERR",
        "nonexistent physical address",
    ),
    (
        libc::SIGBUS,
        3,
        "BUS_OBJERR",
        "object-specific hardware error",
    ),
    (
        libc::SIGBUS,
        4,
        "BUS_MCEERR_AR",
        "hardware memory error, action required",
    ),
    (
        libc::SIGBUS,
        5,
        "BUS_MCEERR_AO",
        "hardware memory error, action optional",
    ),
    (libc::SIGTRAP, 1, "TRAP_BRKPT", "breakpoint"),
    (libc::SIGTRAP, 2, "TRAP_TRACE", "trace trap"),
    (libc::SIGTRAP, 3, "TRAP_BRANCH", "branch trap"),
    (libc::SIGTRAP, 4, "TRAP_HWBKPT", "hardware breakpoint"),
    (libc::SIGCHLD, 1, "CLD_EXITED", "child exited"),
    (libc::SIGCHLD, 2, "CLD_KILLED", "child killed"),
    (libc::SIGCHLD, 3, "CLD_DUMPED", "child dumped core"),
    (libc::SIGCHLD, 4, "CLD_TRAPPED", "traced child trapped"),
    (libc::SIGCHLD, 5, "CLD_STOPPED", "child stopped"),
    (libc::SIGCHLD, 6, "CLD_CONTINUED", "child continued"),
    (libc::SIGIO, 1, "POLL_IN", "input available"),
    (libc::SIGIO, 2, "POLL_OUT", "output buffers available"),
    (libc::SIGIO, 3, "POLL_MSG", "input message available"),
    (libc::SIGIO, 4, "POLL_ERR", "I/O error"),
    (libc::SIGIO, 5, "POLL_PRI", "high priority input available"),
    (libc::SIGIO, 6, "POLL_HUP", "device disconnected"),
    (libc::SIGSYS, 1, "SYS_SECCOMP", "seccomp"),
    (
        libc::SIGSYS,
        2,
        "SYS_USER_DISPATCH",
        "syscall user dispatch",
    ),
];

fn si_code_entry(signo: i32, code: i32) -> Option<&'static (i32, i32, &'static str, &'static str)> {
    // Codes <= 0 and SI_KERNEL mean the same for every signal; the others depend on it.
    SI_CODES
        .iter()
        .find(|(s, c, _, _)| *c == code && (*s == 0 || *s == signo))
}

/// The C name of an `si_code` (`SI_USER`, `SI_KERNEL`, `SEGV_MAPERR`...); positive codes
/// depend on the signal. `"SI_?"` when unknown.
pub fn si_code_name(signo: i32, code: i32) -> &'static str {
    si_code_entry(signo, code).map_or("SI_?", |e| e.2)
}

/// What an `si_code` means in a few words (`"user kill"`, `"kernel"`, `"address not
/// mapped"`...).
pub fn si_code_meaning(signo: i32, code: i32) -> &'static str {
    si_code_entry(signo, code).map_or(if code > 0 { "kernel" } else { "unknown origin" }, |e| e.3)
}

/// Whether the `si_code` says a process sent the signal (kill, sigqueue, tkill). A process
/// may still not have meant it: see [`kernel_reason`] for the kernel's signals with
/// [`SI_USER`] (a broken pipe is "sent" by the writer itself).
pub fn from_process(code: i32) -> bool {
    matches!(code, SI_USER | SI_QUEUE | SI_TKILL)
}

/// Why the kernel generated a signal, in words (empty when the kernel says no more, as for
/// the OOM killer's `SIGKILL`); `None` when a process sent it on purpose.
///
/// Kernel-made are: every `si_code` other than kill/sigqueue/tkill (faults, `SI_KERNEL`,
/// timers...), and `SIGPIPE`, `SIGXFSZ`, `SIGXCPU`, `SIGSYS` "sent" by the target to itself
/// with `SI_USER`, which is how the kernel sends a broken pipe or a file-size limit
/// (`send_sig(sig, current, 0)`). `from_itself`: the sender is the target process.
pub fn kernel_reason(signo: i32, code: i32, from_itself: bool) -> Option<String> {
    let limit_signal = matches!(
        signo,
        libc::SIGPIPE | libc::SIGXFSZ | libc::SIGXCPU | libc::SIGSYS
    );
    if from_process(code) && !(code == SI_USER && from_itself && limit_signal) {
        return None;
    }
    let words = match signo {
        libc::SIGPIPE => "broken pipe: it wrote to a pipe or socket that nobody reads",
        libc::SIGXCPU => "CPU time limit exceeded (RLIMIT_CPU)",
        libc::SIGXFSZ => "file size limit exceeded (RLIMIT_FSIZE)",
        libc::SIGSYS if code == 1 => "bad system call, refused by seccomp",
        libc::SIGSYS => "bad system call",
        _ if code > 0 && code != SI_KERNEL => {
            return Some(format!(
                "{}: {}",
                si_code_name(signo, code),
                si_code_meaning(signo, code)
            ))
        }
        _ if code == SI_TIMER => "a timer expired",
        libc::SIGALRM => "an alarm or interval timer expired",
        libc::SIGHUP => "its terminal hung up",
        _ => "",
    };
    Some(words.to_string())
}

/// Whether a signal can end a process when not handled: its default action terminates (or
/// dumps core). `SIGCHLD`, `SIGCONT`, `SIGURG`, `SIGWINCH` (ignored by default) and the stop
/// signals cannot, so they are never the cause of a death.
pub fn can_end_a_process(signo: i32) -> bool {
    !matches!(
        signo,
        libc::SIGCHLD
            | libc::SIGCONT
            | libc::SIGURG
            | libc::SIGWINCH
            | libc::SIGSTOP
            | libc::SIGTSTP
            | libc::SIGTTIN
            | libc::SIGTTOU
    ) && signo > 0
}

/// Delivery results of `signal_generate` (`TRACE_SIGNAL_*`).
pub const RESULT_DELIVERED: i32 = 0;
/// The target ignores the signal: it was discarded.
pub const RESULT_IGNORED: i32 = 1;
/// The same non-realtime signal was already pending: merged into it.
pub const RESULT_PENDING: i32 = 2;
/// The realtime signal queue was full.
pub const RESULT_OVERFLOW_FAIL: i32 = 3;
/// Delivered, but without its siginfo (queue full).
pub const RESULT_LOSE_INFO: i32 = 4;

/// The words for a delivery result.
pub fn result_name(result: i32) -> &'static str {
    match result {
        RESULT_DELIVERED => "delivered",
        RESULT_IGNORED => "ignored",
        RESULT_PENDING => "already pending",
        RESULT_OVERFLOW_FAIL => "dropped (queue full)",
        RESULT_LOSE_INFO => "delivered without info (queue full)",
        _ => "unknown result",
    }
}

/// The words for a wait status as the kernel keeps it (`task->exit_code`).
pub fn describe_exit_code(exit_code: i32) -> String {
    let sig = exit_code & 0x7f;
    if sig == 0 {
        format!("exited with status {}", (exit_code >> 8) & 0xff)
    } else if exit_code & 0x80 != 0 {
        format!("killed by {} (core dumped)", signal_name(sig))
    } else {
        format!("killed by {}", signal_name(sig))
    }
}

/// One readable sentence for a record, e.g. `SIGTERM from pid 842 'kill' (uid 0), run by
/// 'sh' (pid 840), inside the container`.
pub fn describe(record: &ProbeRecord) -> String {
    describe_in(record, in_container())
}

/// [`describe`], saying "inside/outside the container" only when `container` (the supervisor
/// runs in a PID namespace of its own: otherwise every process is visible).
pub fn describe_in(record: &ProbeRecord, container: bool) -> String {
    match record {
        ProbeRecord::Signal {
            target_pid,
            signo,
            code,
            result,
            sender_pid,
            sender_comm,
            sender_uid,
            sender_ppid,
            sender_parent_comm,
            sender_outside_ns,
            count,
            ..
        } => {
            let sig = signal_name(*signo);
            let from_itself = !*sender_outside_ns && sender_pid == target_pid;
            let mut s = if let Some(reason) = kernel_reason(*signo, *code, from_itself) {
                if reason.is_empty() {
                    format!("{sig} from the kernel")
                } else {
                    format!("{sig} from the kernel ({reason})")
                }
            } else if from_itself {
                format!("{sig} from itself (pid {sender_pid} '{sender_comm}')")
            } else {
                let mut s = if *sender_outside_ns {
                    format!("{sig} from '{sender_comm}' (uid {sender_uid})")
                } else {
                    format!("{sig} from pid {sender_pid} '{sender_comm}' (uid {sender_uid})")
                };
                if !sender_parent_comm.is_empty() {
                    s += &format!(", run by '{sender_parent_comm}'");
                    if *sender_ppid != 0 {
                        s += &format!(" (pid {sender_ppid})");
                    }
                }
                if *sender_outside_ns {
                    s += if container {
                        ", outside the container"
                    } else {
                        ", outside the supervisor's PID namespace"
                    };
                } else if container {
                    s += ", inside the container";
                }
                if *code != SI_USER {
                    s += &format!(", via {}", si_code_meaning(*signo, *code));
                }
                s
            };
            if *count > 1 {
                s += &format!(", {count} times");
            }
            if *result != RESULT_DELIVERED {
                s += &format!(" ({})", result_name(*result));
            }
            s
        }
        ProbeRecord::Exit { pid, exit_code, .. } => {
            format!("pid {pid} {}", describe_exit_code(*exit_code))
        }
        ProbeRecord::Lost { count, .. } => {
            format!("{count} probe records lost (ring buffer full)")
        }
        ProbeRecord::OomVictim {
            pid,
            memory_limit_bytes,
            ..
        } => match memory_limit_bytes {
            Some(limit) => format!(
                "pid {pid} chosen by the OOM killer (memory limit {})",
                bytes_text(*limit)
            ),
            None => format!("pid {pid} chosen by the OOM killer (no memory limit)"),
        },
    }
}

fn bytes_text(n: u64) -> String {
    const MIB: u64 = 1 << 20;
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{} GiB", n >> 30),
        n if n >= MIB && n % MIB == 0 => format!("{} MiB", n / MIB),
        n => format!("{n} bytes"),
    }
}

/// Whether the supervisor runs in a PID namespace other than the initial one.
fn in_container() -> bool {
    use std::sync::OnceLock;
    /// `PROC_PID_INIT_INO`: the inode number of the initial PID namespace.
    const INIT_PIDNS_INO: u64 = 0xEFFF_FFFC;
    static IN: OnceLock<bool> = OnceLock::new();
    *IN.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self/ns/pid").map_or(true, |m| m.ino() != INIT_PIDNS_INO)
    })
}

#[cfg(test)]
mod tests;
