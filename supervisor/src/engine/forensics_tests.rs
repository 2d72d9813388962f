//! What counts as the cause of a death, table-tested from hand-made probe records (no
//! kernel, no processes).

use super::*;

const ROOT: u32 = 40;
/// When the exit happens in these tests (`CLOCK_MONOTONIC` ns).
const EXIT_NS: u64 = 100_000_000_000;
const MS: u64 = 1_000_000;

fn signal(signo: i32, code: i32, sender_pid: u32, before_exit_ms: u64) -> ProbeRecord {
    ProbeRecord::Signal {
        target_pid: ROOT,
        target_tid: ROOT,
        root_pid: ROOT,
        tag: 0,
        target_ppid: 1,
        target_comm: "app".into(),
        count: 1,
        signo,
        code,
        result: probe::RESULT_DELIVERED,
        sender_pid,
        sender_tid: sender_pid,
        sender_comm: if sender_pid == ROOT { "app" } else { "kill" }.into(),
        sender_uid: 0,
        sender_ppid: 7,
        sender_parent_comm: "sh".into(),
        sender_outside_ns: false,
        ktime_ns: EXIT_NS - before_exit_ms * MS,
    }
}

fn exit_record() -> ProbeRecord {
    ProbeRecord::Exit {
        pid: ROOT,
        root_pid: ROOT,
        tag: 0,
        ppid: 1,
        comm: "app".into(),
        exit_code: 0,
        ktime_ns: EXIT_NS,
    }
}

/// The origin and the sentence's addition for `records` then an exit with `status`.
fn explain(records: Vec<ProbeRecord>, status: ExitStatus) -> (Origin, String) {
    let mut f = Forensics::default();
    for r in records {
        f.absorb(r);
    }
    f.absorb(exit_record());
    let e = f.explain(ROOT, status, false, false, libc::SIGTERM);
    (e.origin, e.blame.unwrap_or_default())
}

#[test]
fn causes_of_exits_with_a_code() {
    use Origin::*;
    let code0 = ExitStatus::Code(0);
    let table: Vec<(&str, Vec<ProbeRecord>, Origin, &str)> = vec![
        ("nothing", vec![], Exited, ""),
        (
            "the seed case: SIGTERM (its stop signal), graceful exit 0",
            vec![signal(libc::SIGTERM, probe::SI_USER, 842, 30)],
            SignalFromProcess,
            " after SIGTERM from pid 842 'kill' uid 0",
        ),
        (
            "its stop signal counts however long the shutdown took",
            vec![signal(libc::SIGTERM, probe::SI_USER, 842, 5_000)],
            SignalFromProcess,
            " after SIGTERM from pid 842 'kill' uid 0, 5.0 s earlier",
        ),
        (
            "a handled SIGUSR1, then an exit 1.5 s later: not the cause",
            vec![signal(libc::SIGUSR1, probe::SI_USER, 842, 1_500)],
            Exited,
            " 1.5 s after SIGUSR1 from pid 842 'kill' uid 0",
        ),
        (
            "SIGHUP shortly before: the cause",
            vec![signal(libc::SIGHUP, probe::SI_USER, 842, 200)],
            SignalFromProcess,
            " after SIGHUP from pid 842 'kill' uid 0",
        ),
        (
            "SIGCHLD, SIGWINCH, SIGCONT, SIGURG can never end it",
            vec![
                signal(libc::SIGCHLD, probe::SI_USER, 842, 10),
                signal(libc::SIGWINCH, probe::SI_USER, 842, 10),
                signal(libc::SIGCONT, probe::SI_USER, 842, 10),
                signal(libc::SIGURG, probe::SI_USER, 842, 10),
            ],
            Exited,
            "",
        ),
        (
            "a handled broken pipe just before: the kernel",
            vec![signal(libc::SIGPIPE, probe::SI_USER, ROOT, 10)],
            SignalFromKernel,
            " after SIGPIPE from the kernel (broken pipe: it wrote to a pipe or socket that nobody reads)",
        ),
    ];
    for (what, records, origin, blame) in table {
        assert_eq!(
            explain(records, code0),
            (origin, blame.to_string()),
            "{what}"
        );
    }
}

#[test]
fn causes_of_signal_deaths() {
    let killed = |signo| ExitStatus::Signal {
        signo,
        core_dumped: false,
    };
    let (origin, blame) = explain(
        vec![signal(libc::SIGPIPE, probe::SI_USER, ROOT, 1)],
        killed(libc::SIGPIPE),
    );
    assert_eq!(origin, Origin::SignalFromKernel);
    assert!(blame.contains("broken pipe"), "{blame}");
    let (origin, blame) = explain(
        vec![
            signal(libc::SIGUSR1, probe::SI_USER, 842, 50),
            signal(libc::SIGKILL, probe::SI_USER, 900, 1),
        ],
        killed(libc::SIGKILL),
    );
    assert_eq!(origin, Origin::SignalFromProcess);
    assert_eq!(blame, " after SIGKILL from pid 900 'kill' uid 0");
    // Without a record (no probe): a fault is the kernel's.
    assert_eq!(
        explain(vec![], killed(libc::SIGSEGV)).0,
        Origin::SignalFromKernel
    );
}

#[test]
fn kernel_signals_carry_no_sender_fields() {
    let mut f = Forensics::default();
    let Absorbed::Signal(_, k) = f.absorb(signal(libc::SIGPIPE, probe::SI_USER, ROOT, 1)) else {
        panic!("a signal to the program")
    };
    assert!(!k.from_process);
    assert_eq!(k.sender_pid, None);
    assert_eq!(k.sender_comm, None);
    assert!(k.reason.as_deref().unwrap().contains("broken pipe"));
    let json = serde_json::to_value(&k).unwrap();
    assert!(json.get("sender_pid").is_none(), "{json}");
    assert!(json.get("count").is_none(), "absent when 1: {json}");
}

#[test]
fn a_killed_child_is_the_likely_cause_of_a_wrappers_exit() {
    let mut f = Forensics::default();
    let child = 52;
    let mut to_child = signal(libc::SIGKILL, probe::SI_USER, 0, 20);
    if let ProbeRecord::Signal {
        target_pid,
        target_tid,
        target_ppid,
        target_comm,
        sender_ppid,
        sender_outside_ns,
        ..
    } = &mut to_child
    {
        (*target_pid, *target_tid, *target_ppid) = (child, child, ROOT);
        *target_comm = "mariadbd".into();
        *sender_ppid = 0;
        *sender_outside_ns = true;
    }
    assert!(matches!(
        f.absorb(to_child),
        Absorbed::DescendantSignal(ROOT, _)
    ));
    let died = ProbeRecord::Exit {
        pid: child,
        root_pid: ROOT,
        tag: 0,
        ppid: ROOT,
        comm: "mariadbd".into(),
        exit_code: libc::SIGKILL,
        ktime_ns: EXIT_NS - 10 * MS,
    };
    let Absorbed::DescendantKilled(ROOT, death) = f.absorb(died) else {
        panic!("a descendant's death")
    };
    // "outside the container" or "outside the supervisor's PID namespace", as this test runs.
    let sentence = death.sentence();
    assert!(
        sentence.starts_with(
            "its child mariadbd (pid 52) was killed by SIGKILL from 'kill' (uid 0), run by 'sh', outside the "
        ),
        "{sentence}"
    );
    f.absorb(exit_record());
    let e = f.explain(ROOT, ExitStatus::Code(137), false, false, libc::SIGTERM);
    assert_eq!(e.origin, Origin::DescendantKilled);
    assert_eq!(
        e.blame.as_deref(),
        Some(" after its child mariadbd (pid 52) was killed by SIGKILL from pid 0 'kill' uid 0 (outside the container)")
    );
    assert_eq!(e.killed_by[0].target_pid, Some(child));
}

#[test]
fn folded_repeats_add_up_and_lost_records_are_told_once_per_burst() {
    let mut f = Forensics::default();
    f.absorb(signal(libc::SIGUSR1, probe::SI_USER, 842, 900));
    let mut folded = signal(libc::SIGUSR1, probe::SI_USER, 842, 800);
    if let ProbeRecord::Signal { count, .. } = &mut folded {
        *count = 9_999;
    }
    let Absorbed::Signal(_, k) = f.absorb(folded) else {
        panic!("a signal")
    };
    assert_eq!(
        k.count, 9_999,
        "the event carries the repeats it stands for"
    );
    f.absorb(exit_record());
    let e = f.explain(ROOT, ExitStatus::Code(0), false, false, libc::SIGTERM);
    assert_eq!(e.killed_by.len(), 1, "one entry for the whole burst");
    assert_eq!(e.killed_by[0].count, 10_000);
    let lost = |count| ProbeRecord::Lost { count, ktime_ns: 0 };
    assert!(matches!(f.absorb(lost(5)), Absorbed::LostNotice(5)));
    assert!(matches!(f.absorb(lost(7)), Absorbed::Nothing), "same burst");
}
