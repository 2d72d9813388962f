//! The eBPF probe on the real kernel, through its loader: load it (as root), watch real
//! processes, kill them in real ways, and check what the probe says about who did it.
//!
//! Until the engine joins probe records onto its `exited` events, these tests drive
//! `supervisor::probe` directly. Processes that need custom behaviour (fault, eat memory, be
//! PID 1 of a new namespace) are this test binary again, started with `PROBE_TEST_ROLE` set
//! and filtered to the [`role`] test, which does nothing in a normal run.
//!
//! Every test skips, loudly, only when not root; as root they must pass.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use supervisor::config::ProbeMode;
use supervisor::probe::{
    describe, Probe, ProbeError, ProbeReader, ProbeRecord, ProbeStatus, RESULT_DELIVERED,
    RESULT_IGNORED, SI_KERNEL, SI_USER,
};

const ROLE: &str = "PROBE_TEST_ROLE";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Returns early (the test passes) when not root, saying so loudly.
macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!(
                "\n!!! SKIPPED: this probe test needs root (CAP_BPF + CAP_PERFMON); run it as \
                 root to test the eBPF probe !!!\n"
            );
            return;
        }
    };
}

fn load() -> (Probe, ProbeReader) {
    let (probe, status) =
        Probe::load(ProbeMode::On).unwrap_or_else(|e| panic!("as root the probe must load: {e}"));
    assert_eq!(status, ProbeStatus::Loaded);
    let mut probe = probe.expect("mode on + Loaded gives a probe");
    assert!(
        probe.notes().is_empty(),
        "all programs load here: {:?}",
        probe.notes()
    );
    let reader = probe.take_reader();
    (probe, reader)
}

/// The records about `pid` among `records`.
fn about(records: &[ProbeRecord], pid: u32) -> Vec<ProbeRecord> {
    records.iter().filter(|r| r.pid() == pid).cloned().collect()
}

/// The `kill` program (procps), not the shell builtin: its comm is `kill`.
fn kill_program() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join("kill"))
        .find(|p| p.is_file())
        .expect("no `kill` program on PATH: install procps")
}

/// `sh -c "kill -SIG PID; exit 0"`: the `exit` keeps sh from exec'ing kill, so kill's parent
/// is that sh. Returns the pid of the sh.
fn kill_from_sh(sig: &str, pid: u32) -> u32 {
    let script = format!("'{}' -{sig} {pid}; exit 0", kill_program().display());
    let mut sh = Command::new("sh")
        .args(["-c", &script])
        .spawn()
        .expect("spawn sh");
    let sh_pid = sh.id();
    assert!(sh.wait().expect("wait sh").success(), "{script} failed");
    sh_pid
}

fn sleeper() -> Child {
    Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("spawn sleep")
}

/// Waits for `child` to exit, killing it after `limit`.
fn wait_for(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pid {} did not exit within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// This test binary again, playing `role` (see [`role`]); stdin is a pipe: one byte says go.
fn spawn_role(role: &str) -> Child {
    Command::new(std::env::current_exe().expect("current_exe"))
        .args([
            "--exact",
            "role",
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ])
        .env(ROLE, role)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn role")
}

fn go(child: &mut Child) {
    child
        .stdin
        .as_mut()
        .expect("piped stdin")
        .write_all(b"g")
        .expect("write go byte");
}

fn signal_fields(r: &ProbeRecord) -> (i32, i32, i32) {
    match r {
        ProbeRecord::Signal {
            signo,
            code,
            result,
            ..
        } => (*signo, *code, *result),
        other => panic!("expected a signal record, got {other:?}"),
    }
}

#[test]
fn kill_from_a_shell_names_kill_its_parent_and_uid() {
    require_root!();
    let (probe, mut reader) = load();
    let mut target = sleeper();
    let mut bystander = sleeper();
    let pid = target.id();
    probe.watch(pid).expect("watch");

    let sh_pid = kill_from_sh("TERM", pid);
    let status = wait_for(&mut target, Duration::from_secs(10));
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    // The bystander is not watched: its death must leave no trace.
    let _ = bystander.kill();
    wait_for(&mut bystander, Duration::from_secs(10));

    // The exit has been reaped: drain() alone must already hold both records, no waiting.
    let records = reader.drain();
    assert!(about(&records, bystander.id()).is_empty(), "{records:?}");
    let mine = about(&records, pid);
    assert_eq!(mine.len(), 2, "one signal, then one exit: {mine:?}");
    match &mine[0] {
        ProbeRecord::Signal {
            target_pid,
            target_tid,
            signo,
            code,
            result,
            sender_pid,
            sender_tid,
            sender_comm,
            sender_uid,
            sender_ppid,
            sender_parent_comm,
            sender_outside_ns,
            ..
        } => {
            assert_eq!((*target_pid, *target_tid), (pid, pid));
            assert_eq!(
                (*signo, *code, *result),
                (libc::SIGTERM, SI_USER, RESULT_DELIVERED)
            );
            assert_eq!(sender_comm, "kill");
            assert_eq!(*sender_uid, 0);
            assert_eq!(sender_parent_comm, "sh");
            assert_eq!(*sender_ppid, sh_pid, "kill's parent is the sh we ran");
            assert!(*sender_pid != 0 && *sender_pid != sh_pid && sender_tid == sender_pid);
            assert!(!sender_outside_ns);
            let text = describe(&mine[0]);
            let want =
                format!("SIGTERM from pid {sender_pid} 'kill' (uid 0), run by 'sh' (pid {sh_pid})");
            assert!(text.starts_with(&want), "{text}");
        }
        other => panic!("expected the SIGTERM first, got {other:?}"),
    }
    match &mine[1] {
        ProbeRecord::Exit {
            pid: p, exit_code, ..
        } => {
            assert_eq!(
                (*p, *exit_code),
                (pid, libc::SIGTERM),
                "wait status of a SIGTERM death"
            );
        }
        other => panic!("expected the exit second, got {other:?}"),
    }
    assert!(mine[0].ktime_ns() <= mine[1].ktime_ns());
    assert_eq!(probe.lost_events(), 0);
    probe.unwatch(pid);
}

#[test]
fn a_plain_exit_has_only_its_exit_record_not_its_childrens_sigchld() {
    require_root!();
    let (probe, mut reader) = load();
    let true_program = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("true"))
        .find(|p| p.is_file())
        .expect("a `true` program (coreutils)");
    let script = format!("read go; '{}'; exit 3", true_program.display());
    let mut sh = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let pid = sh.id();
    probe.watch(pid).expect("watch");
    sh.stdin
        .as_mut()
        .expect("piped")
        .write_all(b"go\n")
        .expect("go");
    let status = wait_for(&mut sh, Duration::from_secs(10));
    assert_eq!(status.code(), Some(3));
    // The sh got a SIGCHLD (CLD_EXITED) from its child: routine, filtered in the kernel.
    let mine = about(&reader.drain(), pid);
    assert_eq!(mine.len(), 1, "only the exit: {mine:?}");
    assert!(
        matches!(mine[0], ProbeRecord::Exit { exit_code, .. } if exit_code == 3 << 8),
        "wait status of exit(3): {mine:?}"
    );
    assert_eq!(
        describe(&mine[0]),
        format!("pid {pid} exited with status 3")
    );
}

#[test]
fn an_ignored_signal_is_recorded_and_next_waits_for_records() {
    require_root!();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (probe, mut reader) = load();
    // A program that ignores SIGTERM (the disposition survives the exec).
    let mut target = Command::new("sh")
        .args(["-c", "trap '' TERM; exec sleep 60"])
        .spawn()
        .expect("spawn sh");
    let pid = target.id();
    wait_until(
        || comm_of(pid).as_deref() == Some("sleep"),
        "the exec of sleep",
    );
    probe.watch(pid).expect("watch");
    let me = std::process::id();

    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    let first = runtime.block_on(next_within(&mut reader, Duration::from_secs(5)));
    assert_eq!(
        signal_fields(&first),
        (libc::SIGTERM, SI_USER, RESULT_IGNORED)
    );
    let ProbeRecord::Signal { sender_pid, .. } = &first else {
        unreachable!()
    };
    assert_eq!(
        *sender_pid, me,
        "the sender is this test process (as a supervisor's stop is)"
    );
    assert!(
        describe(&first).ends_with("(ignored)"),
        "{}",
        describe(&first)
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        target.try_wait().expect("try_wait").is_none(),
        "it ignores SIGTERM"
    );
    assert!(reader.drain().is_empty(), "no exit while it runs");

    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let kill = runtime.block_on(next_within(&mut reader, Duration::from_secs(5)));
    assert_eq!(
        signal_fields(&kill),
        (libc::SIGKILL, SI_USER, RESULT_DELIVERED)
    );
    let exit = runtime.block_on(next_within(&mut reader, Duration::from_secs(5)));
    assert!(
        matches!(exit, ProbeRecord::Exit { pid: p, exit_code: 9, .. } if p == pid),
        "{exit:?}"
    );
    wait_for(&mut target, Duration::from_secs(5));
}

async fn next_within(reader: &mut ProbeReader, limit: Duration) -> ProbeRecord {
    tokio::time::timeout(limit, reader.next())
        .await
        .unwrap_or_else(|_| panic!("no probe record within {limit:?}"))
}

fn comm_of(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

fn wait_until(cond: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn watch_and_unwatch_keep_the_kernel_filter_exact() {
    require_root!();
    let (probe, mut reader) = load();
    let mut target = Command::new("sh")
        .args(["-c", "trap '' USR1; exec sleep 60"])
        .spawn()
        .expect("spawn sh");
    let pid = target.id();
    wait_until(
        || comm_of(pid).as_deref() == Some("sleep"),
        "the exec of sleep",
    );
    // signal_generate runs inside kill(2): once kill returns, its record is in the ring.
    let poke = |reader: &mut ProbeReader| {
        // SAFETY: kill(2) on our own child, which ignores SIGUSR1.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGUSR1) }, 0);
        about(&reader.drain(), pid).len()
    };
    assert_eq!(poke(&mut reader), 0, "not watched yet");
    // Repeats, and another pid in the same kernel bucket, must not confuse the filter.
    let neighbour = pid + 4096;
    probe.watch(pid).expect("watch");
    probe.watch(pid).expect("watch again");
    probe
        .watch(neighbour)
        .expect("watch a pid in the same bucket");
    probe.unwatch(neighbour);
    probe.unwatch(neighbour);
    assert_eq!(poke(&mut reader), 1, "still watched");
    probe.unwatch(pid);
    assert_eq!(poke(&mut reader), 0, "unwatched");
    probe.unwatch(pid);
    probe.watch(pid).expect("watch anew");
    assert_eq!(poke(&mut reader), 1, "watched again");
    let _ = target.kill();
    wait_for(&mut target, Duration::from_secs(5));
}

#[test]
fn a_fault_is_a_signal_from_the_kernel() {
    require_root!();
    let (probe, mut reader) = load();
    let mut child = spawn_role("fault");
    let pid = child.id();
    probe.watch(pid).expect("watch");
    go(&mut child);
    let status = wait_for(&mut child, Duration::from_secs(10));
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");

    let mine = about(&reader.drain(), pid);
    let segv = mine
        .iter()
        .find(|r| signal_fields(r).0 == libc::SIGSEGV)
        .unwrap_or_else(|| panic!("no SIGSEGV record: {mine:?}"));
    const SEGV_ACCERR: i32 = 2;
    assert_eq!(signal_fields(segv).1, SEGV_ACCERR, "{segv:?}");
    assert_eq!(
        describe(segv),
        "SIGSEGV from the kernel (SEGV_ACCERR: invalid permissions for mapped object)"
    );
    match mine.last() {
        Some(ProbeRecord::Exit { exit_code, .. }) => {
            assert_eq!(exit_code & 0x7f, libc::SIGSEGV);
            assert_eq!(
                exit_code & 0x80 != 0,
                status.core_dumped(),
                "core flag as the kernel set it"
            );
        }
        other => panic!("expected the exit last, got {other:?}"),
    }
}

#[test]
fn a_full_ring_buffer_counts_every_lost_record() {
    require_root!();
    let (probe, mut reader) = load();
    let mut target = Command::new("sh")
        .args(["-c", "trap '' USR1 USR2; exec sleep 60"])
        .spawn()
        .expect("spawn sh");
    let pid = target.id();
    wait_until(
        || comm_of(pid).as_deref() == Some("sleep"),
        "the exec of sleep",
    );
    probe.watch(pid).expect("watch");
    // Far more ignored signals than the ring buffer holds, none read meanwhile; alternating,
    // so that the kernel cannot fold them.
    const SENT: u64 = 6000;
    for n in 0..SENT {
        let sig = if n % 2 == 0 {
            libc::SIGUSR1
        } else {
            libc::SIGUSR2
        };
        // SAFETY: kill(2) on our own child, which ignores both signals.
        assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
    }
    let mut records = reader.drain();
    let lost = probe.lost_events();
    assert!(lost > 0, "{SENT} records cannot all fit");
    // Once there is room again, the next record is preceded by the news of the loss; the exit
    // brings the repeats folded since the last record.
    let _ = target.kill();
    wait_for(&mut target, Duration::from_secs(5));
    records.extend(reader.drain());
    let lost = probe.lost_events();
    let read = signal_count(&about(&records, pid)) - 1; // the SIGKILL
    assert_eq!(
        read + lost,
        SENT,
        "read {read} + lost {lost}: none silently dropped"
    );
    let told: u64 = records
        .iter()
        .map(|r| match r {
            ProbeRecord::Lost { count, .. } => *count,
            _ => 0,
        })
        .sum();
    assert_eq!(told, lost, "every loss is told");
}

/// The count of signals a set of records stands for (folded repeats included).
fn signal_count(records: &[ProbeRecord]) -> u64 {
    records
        .iter()
        .map(|r| match r {
            ProbeRecord::Signal { count, .. } => *count,
            _ => 0,
        })
        .sum()
}

#[test]
fn a_burst_of_one_signal_is_folded_into_a_count() {
    require_root!();
    let (probe, mut reader) = load();
    let mut target = Command::new("sh")
        .args(["-c", "trap '' USR1; exec sleep 60"])
        .spawn()
        .expect("spawn sh");
    let pid = target.id();
    wait_until(
        || comm_of(pid).as_deref() == Some("sleep"),
        "the exec of sleep",
    );
    probe.watch(pid).expect("watch");
    const SENT: u64 = 10_000;
    for _ in 0..SENT {
        // SAFETY: kill(2) on our own child, which ignores SIGUSR1.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGUSR1) }, 0);
    }
    // The fatal one is never crowded out, and its exit brings the folded count.
    let _ = target.kill();
    wait_for(&mut target, Duration::from_secs(5));
    let mine = about(&reader.drain(), pid);
    let usr1: Vec<&ProbeRecord> = mine
        .iter()
        .filter(|r| {
            matches!(
                r,
                ProbeRecord::Signal {
                    signo: libc::SIGUSR1,
                    ..
                }
            )
        })
        .collect();
    let counted: u64 = usr1
        .iter()
        .map(|r| match r {
            ProbeRecord::Signal { count, .. } => *count,
            _ => 0,
        })
        .sum();
    assert_eq!(probe.lost_events(), 0);
    assert_eq!(counted, SENT, "{usr1:?}");
    assert!(usr1.len() < 50, "a handful of records: {}", usr1.len());
    assert!(
        mine.iter().any(|r| matches!(
            r,
            ProbeRecord::Signal {
                signo: libc::SIGKILL,
                ..
            }
        )),
        "{mine:?}"
    );
    assert!(
        matches!(mine.last(), Some(ProbeRecord::Exit { .. })),
        "{mine:?}"
    );
}

#[test]
fn a_tree_forked_before_the_probe_loaded_is_seeded_from_proc() {
    require_root!();
    // The tree exists before the probe: the kernel never saw these forks.
    let mut wrapper = Command::new("sh")
        .args(["-c", "sh -c 'sleep 62; exit $?'; exit $?"])
        .spawn()
        .expect("spawn sh");
    let root = wrapper.id();
    let grandchild = find_cmdline("sleep\x0062\x00");
    let (probe, mut reader) = load();
    assert_eq!(
        probe.watch_tree(root).expect("watch"),
        2,
        "the inner sh and its sleep"
    );
    // SAFETY: kill(2) on a process of our own tree.
    assert_eq!(unsafe { libc::kill(grandchild as i32, libc::SIGTERM) }, 0);
    let status = wait_for(&mut wrapper, Duration::from_secs(10));
    assert_eq!(status.code(), Some(143));
    let records = reader.drain();
    assert!(
        records.iter().any(|r| matches!(r,
            ProbeRecord::Exit { pid, root_pid, exit_code: libc::SIGTERM, .. }
                if *pid == grandchild && *root_pid == root)),
        "the seeded grandchild's death: {records:?}"
    );
    probe.unwatch(root);
}

/// The pid of the one process whose `/proc/PID/cmdline` is `cmdline` (waits up to 10 s).
fn find_cmdline(cmdline: &str) -> u32 {
    let started = std::time::Instant::now();
    loop {
        let found = std::fs::read_dir("/proc").ok().and_then(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .find(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                        .is_ok_and(|c| c == cmdline)
                })
        });
        if let Some(p) = found {
            return p;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no process {cmdline:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_watched_process_tree_is_followed_and_its_killed_children_reported() {
    require_root!();
    let (probe, mut reader) = load();
    // Watched at once, before sh has forked anything.
    let mut wrapper = Command::new("sh")
        .args(["-c", "sleep 0.3; sh -c 'sleep 61; exit $?'; exit $?"])
        .spawn()
        .expect("spawn sh");
    let root = wrapper.id();
    probe.watch(root).expect("watch");
    // The grandchild: sleep 60, under the inner sh.
    let grandchild = {
        let started = std::time::Instant::now();
        loop {
            let found = std::fs::read_dir("/proc").ok().and_then(|dir| {
                dir.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                    .find(|p| {
                        std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                            .is_ok_and(|c| c == "sleep\x0061\x00")
                    })
            });
            if let Some(p) = found {
                break p;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "no sleep 61");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // SAFETY: kill(2) on a process of our own tree.
    assert_eq!(unsafe { libc::kill(grandchild as i32, libc::SIGTERM) }, 0);
    let status = wait_for(&mut wrapper, Duration::from_secs(10));
    assert_eq!(
        status.code(),
        Some(143),
        "the inner sh reports its child's death"
    );
    let records = reader.drain();
    let signal = records.iter().find(|r| {
        matches!(r, ProbeRecord::Signal { target_pid, signo: libc::SIGTERM, .. } if *target_pid == grandchild)
    });
    match signal {
        Some(ProbeRecord::Signal {
            root_pid,
            target_comm,
            target_ppid,
            ..
        }) => {
            assert_eq!(*root_pid, root);
            assert_eq!(target_comm, "sleep");
            assert_ne!(
                *target_ppid, root,
                "a grandchild: its parent is the inner sh"
            );
        }
        _ => panic!("no SIGTERM record for the grandchild {grandchild}: {records:?}"),
    }
    assert!(
        records.iter().any(|r| matches!(r,
            ProbeRecord::Exit { pid, root_pid, exit_code: libc::SIGTERM, comm, .. }
                if *pid == grandchild && *root_pid == root && comm == "sleep")),
        "the grandchild's death: {records:?}"
    );
    // Its normally exiting relatives (the first sleep, the inner sh) send no exit records.
    let exits: Vec<_> = records
        .iter()
        .filter(|r| matches!(r, ProbeRecord::Exit { root_pid, .. } if *root_pid == root))
        .collect();
    assert_eq!(
        exits.len(),
        2,
        "the grandchild's and the wrapper's: {exits:?}"
    );
    probe.unwatch(root);
}

#[test]
fn an_oom_kill_is_named_with_the_memory_limit() {
    require_root!();
    let Some(cgroup) = MemoryCgroup::create(64 << 20) else {
        return;
    };
    let (probe, mut reader) = load();
    let mut child = spawn_role("hog");
    let pid = child.id();
    probe.watch(pid).expect("watch");
    cgroup.add(pid);
    go(&mut child);
    let status = wait_for(&mut child, Duration::from_secs(60));
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");

    let mine = about(&reader.drain(), pid);
    let kinds: Vec<&str> = mine
        .iter()
        .map(|r| match r {
            ProbeRecord::Signal { .. } => "signal",
            ProbeRecord::Exit { .. } => "exit",
            ProbeRecord::OomVictim { .. } => "oom",
            ProbeRecord::Lost { .. } => "lost",
        })
        .collect();
    assert_eq!(kinds, ["signal", "oom", "exit"], "{mine:?}");
    assert_eq!(
        signal_fields(&mine[0]),
        (libc::SIGKILL, SI_KERNEL, RESULT_DELIVERED)
    );
    assert!(
        matches!(&mine[1], ProbeRecord::OomVictim { pid: p, memory_limit_bytes: Some(l), .. }
            if *p == pid && *l == 64 << 20),
        "{mine:?}"
    );
    assert!(
        matches!(mine[2], ProbeRecord::Exit { exit_code: 9, .. }),
        "{mine:?}"
    );
}

/// A memory cgroup (v2, else v1) made for one test, removed on drop.
struct MemoryCgroup {
    dir: PathBuf,
}

impl MemoryCgroup {
    /// `None` (after saying why, loudly) when no writable memory cgroup hierarchy exists.
    fn create(limit: u64) -> Option<MemoryCgroup> {
        let name = format!("supervisor-probe-test-{}", std::process::id());
        let v2 = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"));
        let (dir, files): (PathBuf, &[&str]) = if v2 {
            (
                Path::new("/sys/fs/cgroup").join(&name),
                &["memory.max", "memory.swap.max"],
            )
        } else if Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists() {
            (
                Path::new("/sys/fs/cgroup/memory").join(&name),
                &["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"],
            )
        } else {
            eprintln!("\n!!! SKIPPED the OOM test: no memory cgroup controller (v2 or v1) !!!\n");
            return None;
        };
        if let Err(err) = std::fs::create_dir(&dir) {
            eprintln!(
                "\n!!! SKIPPED the OOM test: cannot create {} ({err}) !!!\n",
                dir.display()
            );
            return None;
        }
        let cgroup = MemoryCgroup { dir };
        // The limit must hold; the swap limit (v2 swap.max = 0, v1 memsw = limit) only exists
        // with swap accounting, and without swap nothing needs it.
        let write = |file: &str, value: &str| std::fs::write(cgroup.dir.join(file), value);
        write(files[0], &limit.to_string()).expect("set the memory limit");
        let swap = if v2 {
            "0".to_string()
        } else {
            limit.to_string()
        };
        let _ = write(files[1], &swap);
        Some(cgroup)
    }

    fn add(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).expect("join the cgroup");
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // The killed process leaves the cgroup a moment after it is reaped.
        for _ in 0..100 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("warning: could not remove {}", self.dir.display());
    }
}

#[test]
fn pids_are_the_namespace_pids_and_outside_senders_are_flagged() {
    require_root!();
    let mut inner = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(std::env::current_exe().expect("current_exe"))
        .args([
            "--exact",
            "role",
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ])
        .env(ROLE, "pidns")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn unshare (util-linux)");
    let unshare_pid = inner.id();
    let mut stdout = BufReader::new(inner.stdout.take().expect("piped"));
    // The inner supervisor-to-be says which pid (in its namespace) to kill from outside.
    let mut line = String::new();
    let ns_pid: u32 = loop {
        line.clear();
        if stdout.read_line(&mut line).expect("read inner stdout") == 0 {
            let status = wait_for(&mut inner, Duration::from_secs(10));
            let mut err = String::new();
            let _ = inner.stderr.take().expect("piped").read_to_string(&mut err);
            panic!("the inner test ended before READY ({status:?}):\n{err}");
        }
        if let Some(n) = line.trim().strip_prefix("READY ") {
            break n.parse().expect("READY <pid>");
        }
    };
    let host_pid = host_pid_of(unshare_pid, ns_pid);
    assert_ne!(
        host_pid, ns_pid,
        "a new namespace numbers its processes anew"
    );
    kill_from_sh("TERM", host_pid);

    let status = wait_for(&mut inner, Duration::from_secs(30));
    let mut rest = String::new();
    let _ = stdout.read_to_string(&mut rest);
    let mut err = String::new();
    let _ = inner.stderr.take().expect("piped").read_to_string(&mut err);
    assert!(
        status.success(),
        "the inner test failed ({status:?}):\n{rest}\n{err}"
    );
    assert!(rest.contains("INNER OK"), "{rest}\n{err}");
}

/// The host pid of the process numbered `ns_pid` in the namespace whose init is the child of
/// `unshare_pid`.
fn host_pid_of(unshare_pid: u32, ns_pid: u32) -> u32 {
    let children =
        std::fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children"))
            .expect("children of unshare");
    let init: u32 = children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("unshare forked the namespace's init");
    let ns = std::fs::read_link(format!("/proc/{init}/ns/pid")).expect("pid ns of init");
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if std::fs::read_link(format!("/proc/{pid}/ns/pid"))
            .ok()
            .as_ref()
            != Some(&ns)
        {
            continue;
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let last = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|l| l.split_whitespace().last()?.parse::<u32>().ok());
        if last == Some(ns_pid) {
            return pid;
        }
    }
    panic!("pid {ns_pid} of the inner namespace not found from outside");
}

/// The inner half: PID 1 of a fresh PID namespace, loads the probe there and checks the pids.
fn pidns_inner() {
    assert_eq!(std::process::id(), 1, "runs as PID 1 of its own namespace");
    let (probe, mut reader) = load();

    // A: killed from outside the namespace by the outer test.
    let mut a = sleeper();
    let a_pid = a.id();
    probe.watch(a_pid).expect("watch a");
    println!("READY {a_pid}");
    std::io::stdout().flush().expect("flush");
    let status = wait_for(&mut a, Duration::from_secs(20));
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    let recs = about(&reader.drain(), a_pid);
    assert_eq!(recs.len(), 2, "{recs:?}");
    match &recs[0] {
        ProbeRecord::Signal {
            target_pid,
            sender_pid,
            sender_tid,
            sender_ppid,
            sender_comm,
            sender_parent_comm,
            sender_outside_ns,
            ..
        } => {
            assert_eq!(*target_pid, a_pid);
            assert!(*sender_outside_ns, "{:?}", recs[0]);
            assert_eq!((*sender_pid, *sender_tid, *sender_ppid), (0, 0, 0));
            assert_eq!(
                (sender_comm.as_str(), sender_parent_comm.as_str()),
                ("kill", "sh")
            );
            assert_eq!(
                describe(&recs[0]),
                "SIGTERM from 'kill' (uid 0), run by 'sh', outside the container"
            );
        }
        other => panic!("expected the signal first, got {other:?}"),
    }
    assert!(
        matches!(recs[1], ProbeRecord::Exit { pid, exit_code: libc::SIGTERM, .. } if pid == a_pid),
        "{:?}",
        recs[1]
    );

    // B: killed from inside; every pid is the namespace's.
    let mut b = sleeper();
    let b_pid = b.id();
    probe.watch(b_pid).expect("watch b");
    let sh_pid = kill_from_sh("TERM", b_pid);
    wait_for(&mut b, Duration::from_secs(10));
    let recs = about(&reader.drain(), b_pid);
    match recs.first() {
        Some(ProbeRecord::Signal {
            target_pid,
            sender_pid,
            sender_ppid,
            sender_comm,
            sender_outside_ns,
            ..
        }) => {
            assert_eq!(*target_pid, b_pid);
            assert!(!sender_outside_ns);
            assert_eq!(sender_comm, "kill");
            assert_eq!(
                *sender_ppid, sh_pid,
                "the sh's pid as this namespace numbers it"
            );
            assert!(
                *sender_pid > sh_pid && *sender_pid < 1000,
                "namespace pid: {sender_pid}"
            );
            assert!(describe(&recs[0]).ends_with(", inside the container"));
        }
        other => panic!("expected the signal first, got {other:?}"),
    }
    println!("INNER OK");
}

#[test]
fn without_capabilities_auto_says_how_to_grant_and_on_refuses() {
    require_root!();
    // Capabilities are per thread: drop them in a thread of its own.
    std::thread::spawn(|| {
        drop_bpf_capabilities();
        let (probe, status) = Probe::load(ProbeMode::Auto).expect("auto never fails");
        assert!(probe.is_none());
        let ProbeStatus::Off(line) = status else {
            panic!("auto without CAP_BPF must be off")
        };
        assert_eq!(
            line,
            "eBPF probe needs CAP_BPF and CAP_PERFMON: grant with \
             `docker run --cap-add BPF --cap-add PERFMON` (or CAP_SYS_ADMIN)"
        );
        match Probe::load(ProbeMode::On) {
            Err(ProbeError::NoCapability { missing }) => {
                assert_eq!(missing, "CAP_BPF and CAP_PERFMON")
            }
            Err(other) => panic!("wrong error: {other}"),
            Ok(_) => panic!("on without CAP_BPF must refuse"),
        }
        let (probe, status) = Probe::load(ProbeMode::Off).expect("off never fails");
        assert!(probe.is_none() && matches!(status, ProbeStatus::Off(_)));
    })
    .join()
    .expect("the capability-less thread");
}

/// Drops CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN from the calling thread (effective and
/// permitted), as `--cap-drop` would.
fn drop_bpf_capabilities() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget with a v3 header and room for the two data words v3 uses.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    assert_eq!(rc, 0, "capget");
    for cap in [21u32, 38, 39] {
        let (word, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
        data[word].effective &= !bit;
        data[word].permitted &= !bit;
    }
    // SAFETY: as above; pid 0 is the calling thread only.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    assert_eq!(rc, 0, "capset");
}

/// The roles this binary plays when started by the tests above; a no-op in a normal run.
#[test]
fn role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    match role.as_str() {
        "pidns" => pidns_inner(),
        "fault" => {
            wait_for_go();
            fault();
        }
        "hog" => {
            wait_for_go();
            hog();
        }
        other => panic!("unknown {ROLE} {other}"),
    }
}

fn wait_for_go() {
    let mut byte = [0u8; 1];
    std::io::stdin().read_exact(&mut byte).expect("go byte");
}

/// Reads a page mapped without access: SIGSEGV with SEGV_ACCERR from the kernel.
fn fault() {
    // SAFETY: a fresh anonymous mapping; reading it faults on purpose (PROT_NONE), which is
    // the point of this role: the process dies of SIGSEGV.
    unsafe {
        let page = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(page, libc::MAP_FAILED);
        std::ptr::read_volatile(page.cast::<u8>());
    }
    unreachable!("the read faults");
}

/// Touches memory until the cgroup's OOM killer ends this process.
fn hog() {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    for _ in 0..4096 {
        chunks.push(vec![1u8; 1 << 20]);
    }
    panic!(
        "allocated 4 GiB without being OOM-killed ({} chunks)",
        chunks.len()
    );
}
