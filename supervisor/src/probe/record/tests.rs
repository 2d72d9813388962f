//! Decoding and wording of probe records, from hand-made kernel records.

use super::*;

fn comm16(s: &str) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..s.len()].copy_from_slice(s.as_bytes());
    b
}

fn bytes(raw: &RawEvent) -> Vec<u8> {
    // SAFETY: RawEvent is repr(C), integer fields only, no padding (asserted in
    // supervisor-ebpf): all of its size_of bytes are initialized.
    unsafe {
        std::slice::from_raw_parts(
            (raw as *const RawEvent).cast::<u8>(),
            std::mem::size_of::<RawEvent>(),
        )
    }
    .to_vec()
}

fn kill_from_sh() -> RawEvent {
    RawEvent {
        ktime_ns: 123_456_789,
        kind: KIND_SIGNAL,
        target_pid: 835,
        target_tid: 835,
        root_pid: 835,
        tag: 1,
        target_ppid: 1,
        target_comm: comm16("apache2"),
        count: 1,
        signo: libc::SIGTERM,
        code: SI_USER,
        result: RESULT_DELIVERED,
        sender_pid: 842,
        sender_tid: 842,
        sender_ppid: 840,
        sender_uid: 0,
        sender_comm: comm16("kill"),
        sender_parent_comm: comm16("sh"),
        ..RawEvent::default()
    }
}

#[test]
fn decodes_a_signal_record() {
    let record = ProbeRecord::decode(&bytes(&kill_from_sh())).unwrap();
    assert_eq!(
        record,
        ProbeRecord::Signal {
            target_pid: 835,
            target_tid: 835,
            root_pid: 835,
            tag: 1,
            target_ppid: 1,
            target_comm: "apache2".into(),
            count: 1,
            signo: 15,
            code: 0,
            result: 0,
            sender_pid: 842,
            sender_tid: 842,
            sender_comm: "kill".into(),
            sender_uid: 0,
            sender_ppid: 840,
            sender_parent_comm: "sh".into(),
            sender_outside_ns: false,
            ktime_ns: 123_456_789,
        }
    );
    assert_eq!(record.pid(), 835);
    assert_eq!(record.ktime_ns(), 123_456_789);
}

#[test]
fn decodes_exit_and_oom_records() {
    let exit = RawEvent {
        kind: KIND_EXIT,
        target_pid: 7,
        exit_code: 0x8b, // SIGSEGV, core dumped
        ktime_ns: 5,
        ..RawEvent::default()
    };
    assert_eq!(
        ProbeRecord::decode(&bytes(&exit)).unwrap(),
        ProbeRecord::Exit {
            pid: 7,
            root_pid: 0,
            tag: 0,
            ppid: 0,
            comm: String::new(),
            exit_code: 0x8b,
            ktime_ns: 5
        }
    );
    let oom = RawEvent {
        kind: KIND_OOM,
        target_pid: 9,
        memory_limit_pages: (64 << 20) / page_size(),
        ..RawEvent::default()
    };
    assert_eq!(
        ProbeRecord::decode(&bytes(&oom)).unwrap(),
        ProbeRecord::OomVictim {
            pid: 9,
            root_pid: 0,
            tag: 0,
            comm: String::new(),
            memory_limit_bytes: Some(64 << 20),
            ktime_ns: 0
        }
    );
}

#[test]
fn unlimited_or_unknown_memory_limits_are_none() {
    let max_pages = i64::MAX as u64 / 4096; // PAGE_COUNTER_MAX with 4 KiB pages
    assert_eq!(limit_bytes(max_pages, 4096), None);
    assert_eq!(limit_bytes(0, 4096), None);
    assert_eq!(limit_bytes(16384, 4096), Some(64 << 20));
}

#[test]
fn short_and_unknown_records_are_errors() {
    let full = bytes(&kill_from_sh());
    assert_eq!(
        ProbeRecord::decode(&full[..95]),
        Err(DecodeError::Short(95))
    );
    let odd = RawEvent {
        kind: 77,
        ..RawEvent::default()
    };
    assert_eq!(
        ProbeRecord::decode(&bytes(&odd)),
        Err(DecodeError::Kind(77))
    );
    // Longer records (a newer probe appending fields) still decode.
    let mut longer = full.clone();
    longer.extend_from_slice(&[0xff; 8]);
    assert!(ProbeRecord::decode(&longer).is_ok());
}

#[test]
fn decodes_at_any_alignment() {
    let mut buf = vec![0u8; 1];
    buf.extend(bytes(&kill_from_sh()));
    assert_eq!(ProbeRecord::decode(&buf[1..]).unwrap().pid(), 835);
}

#[test]
fn comm_stops_at_nul_and_tolerates_bad_utf8() {
    assert_eq!(comm(&comm16("nginx")), "nginx");
    let full = *b"0123456789abcdef";
    assert_eq!(comm(&full), "0123456789abcdef");
    let mut bad = comm16("ab");
    bad[2] = 0xff;
    assert_eq!(comm(&bad), "ab\u{fffd}");
}

#[test]
fn si_code_names_and_meanings() {
    let table = [
        (libc::SIGTERM, SI_USER, "SI_USER", "user kill"),
        (libc::SIGKILL, SI_KERNEL, "SI_KERNEL", "kernel"),
        (libc::SIGUSR1, SI_QUEUE, "SI_QUEUE", "sigqueue"),
        (libc::SIGABRT, SI_TKILL, "SI_TKILL", "tkill"),
        (libc::SIGALRM, SI_TIMER, "SI_TIMER", "timer"),
        (libc::SIGSEGV, 1, "SEGV_MAPERR", "address not mapped"),
        (
            libc::SIGSEGV,
            2,
            "SEGV_ACCERR",
            "invalid permissions for mapped object",
        ),
        (
            libc::SIGBUS,
            2,
            "BUS_ADRERR",
            "nonexistent physical address",
        ),
        (libc::SIGFPE, 1, "FPE_INTDIV", "integer divide by zero"),
        (libc::SIGCHLD, 1, "CLD_EXITED", "child exited"),
        (libc::SIGSYS, 1, "SYS_SECCOMP", "seccomp"),
        (libc::SIGTERM, 3, "SI_?", "kernel"),
        (libc::SIGTERM, -99, "SI_?", "unknown origin"),
    ];
    for (sig, code, name, meaning) in table {
        assert_eq!(si_code_name(sig, code), name, "name of {sig}/{code}");
        assert_eq!(
            si_code_meaning(sig, code),
            meaning,
            "meaning of {sig}/{code}"
        );
    }
    assert!(from_process(SI_USER) && from_process(SI_QUEUE) && from_process(SI_TKILL));
    assert!(!from_process(SI_KERNEL) && !from_process(1) && !from_process(SI_TIMER));
}

#[test]
fn describes_a_kill_inside_the_container() {
    let record = ProbeRecord::decode(&bytes(&kill_from_sh())).unwrap();
    assert_eq!(
        describe_in(&record, true),
        "SIGTERM from pid 842 'kill' (uid 0), run by 'sh' (pid 840), inside the container"
    );
    assert_eq!(
        describe_in(&record, false),
        "SIGTERM from pid 842 'kill' (uid 0), run by 'sh' (pid 840)"
    );
}

#[test]
fn describes_a_sender_outside_the_namespace() {
    let raw = RawEvent {
        sender_pid: 0,
        sender_tid: 0,
        sender_ppid: 0,
        sender_outside_ns: 1,
        sender_uid: 1000,
        sender_parent_comm: comm16("bash"),
        ..kill_from_sh()
    };
    let record = ProbeRecord::decode(&bytes(&raw)).unwrap();
    assert_eq!(
        describe_in(&record, true),
        "SIGTERM from 'kill' (uid 1000), run by 'bash', outside the container"
    );
}

#[test]
fn describes_kernel_signals_without_blaming_the_current_task() {
    let segv = RawEvent {
        signo: libc::SIGSEGV,
        code: 1,
        sender_pid: 835,
        sender_comm: comm16("app"),
        ..kill_from_sh()
    };
    assert_eq!(
        describe_in(&ProbeRecord::decode(&bytes(&segv)).unwrap(), true),
        "SIGSEGV from the kernel (SEGV_MAPERR: address not mapped)"
    );
    let oom_kill = RawEvent {
        signo: libc::SIGKILL,
        code: SI_KERNEL,
        ..kill_from_sh()
    };
    assert_eq!(
        describe_in(&ProbeRecord::decode(&bytes(&oom_kill)).unwrap(), true),
        "SIGKILL from the kernel"
    );
}

#[test]
fn describes_self_signals_queues_and_results() {
    let abort = RawEvent {
        signo: libc::SIGABRT,
        code: SI_TKILL,
        sender_pid: 835,
        sender_comm: comm16("app"),
        ..kill_from_sh()
    };
    assert_eq!(
        describe_in(&ProbeRecord::decode(&bytes(&abort)).unwrap(), true),
        "SIGABRT from itself (pid 835 'app')"
    );
    let queued_ignored = RawEvent {
        signo: libc::SIGUSR1,
        code: SI_QUEUE,
        result: RESULT_IGNORED,
        ..kill_from_sh()
    };
    assert_eq!(
        describe_in(&ProbeRecord::decode(&bytes(&queued_ignored)).unwrap(), true),
        "SIGUSR1 from pid 842 'kill' (uid 0), run by 'sh' (pid 840), inside the container, \
         via sigqueue (ignored)"
    );
}

#[test]
fn describes_exits_and_oom_victims() {
    let exit = |code| ProbeRecord::Exit {
        pid: 5,
        root_pid: 5,
        tag: 1,
        ppid: 1,
        comm: "x".into(),
        exit_code: code,
        ktime_ns: 0,
    };
    assert_eq!(describe(&exit(3 << 8)), "pid 5 exited with status 3");
    assert_eq!(describe(&exit(15)), "pid 5 killed by SIGTERM");
    assert_eq!(
        describe(&exit(11 | 0x80)),
        "pid 5 killed by SIGSEGV (core dumped)"
    );
    let oom = |limit| ProbeRecord::OomVictim {
        pid: 5,
        root_pid: 5,
        tag: 1,
        comm: "x".into(),
        memory_limit_bytes: limit,
        ktime_ns: 0,
    };
    assert_eq!(
        describe(&oom(Some(64 << 20))),
        "pid 5 chosen by the OOM killer (memory limit 64 MiB)"
    );
    assert_eq!(
        describe(&oom(Some(2 << 30))),
        "pid 5 chosen by the OOM killer (memory limit 2 GiB)"
    );
    assert_eq!(
        describe(&oom(None)),
        "pid 5 chosen by the OOM killer (no memory limit)"
    );
}

#[test]
fn kernel_made_signals_say_why_and_harmless_ones_cannot_end_a_process() {
    // The kernel's broken pipe and file-size limit come as SI_USER "from" the writer itself.
    for (sig, words) in [
        (libc::SIGPIPE, "broken pipe"),
        (libc::SIGXFSZ, "file size limit"),
        (libc::SIGXCPU, "CPU time limit"),
        (libc::SIGSYS, "bad system call"),
    ] {
        let reason = kernel_reason(sig, SI_USER, true).expect("kernel-made");
        assert!(reason.contains(words), "{sig}: {reason}");
        // The same signal sent by another process is that process's.
        assert_eq!(kernel_reason(sig, SI_USER, false), None);
    }
    assert_eq!(
        kernel_reason(libc::SIGTERM, SI_USER, true),
        None,
        "kill -TERM $$"
    );
    assert_eq!(
        kernel_reason(libc::SIGSEGV, 1, true).as_deref(),
        Some("SEGV_MAPERR: address not mapped")
    );
    assert_eq!(
        kernel_reason(libc::SIGKILL, SI_KERNEL, false).as_deref(),
        Some("")
    );
    assert_eq!(
        kernel_reason(libc::SIGALRM, SI_TIMER, true).as_deref(),
        Some("a timer expired")
    );
    let pipe = RawEvent {
        signo: libc::SIGPIPE,
        sender_pid: 835,
        sender_comm: comm16("yes"),
        ..kill_from_sh()
    };
    assert_eq!(
        describe_in(&ProbeRecord::decode(&bytes(&pipe)).unwrap(), true),
        "SIGPIPE from the kernel (broken pipe: it wrote to a pipe or socket that nobody reads)"
    );
    for sig in [
        libc::SIGCHLD,
        libc::SIGCONT,
        libc::SIGURG,
        libc::SIGWINCH,
        libc::SIGSTOP,
        libc::SIGTSTP,
    ] {
        assert!(!can_end_a_process(sig), "{sig}");
    }
    for sig in [
        libc::SIGTERM,
        libc::SIGUSR1,
        libc::SIGHUP,
        libc::SIGKILL,
        libc::SIGPIPE,
    ] {
        assert!(can_end_a_process(sig), "{sig}");
    }
}

#[test]
fn folded_repeats_and_lost_records_decode_with_their_count() {
    let folded = RawEvent {
        count: 9_999,
        result: RESULT_PENDING,
        ..kill_from_sh()
    };
    let record = ProbeRecord::decode(&bytes(&folded)).unwrap();
    assert!(matches!(record, ProbeRecord::Signal { count: 9_999, .. }));
    assert_eq!(
        describe_in(&record, false),
        "SIGTERM from pid 842 'kill' (uid 0), run by 'sh' (pid 840), 9999 times (already pending)"
    );
    let lost = RawEvent {
        kind: supervisor_ebpf::KIND_LOST,
        count: 12,
        ..RawEvent::default()
    };
    assert_eq!(
        ProbeRecord::decode(&bytes(&lost)).unwrap(),
        ProbeRecord::Lost {
            count: 12,
            ktime_ns: 0
        }
    );
}

#[test]
fn a_descendant_is_about_its_root() {
    let child = RawEvent {
        target_pid: 52,
        target_tid: 52,
        target_ppid: 835,
        ..kill_from_sh()
    };
    let record = ProbeRecord::decode(&bytes(&child)).unwrap();
    assert_eq!(record.root(), Some((835, 1)));
    assert!(record.about_descendant());
    assert!(!ProbeRecord::decode(&bytes(&kill_from_sh()))
        .unwrap()
        .about_descendant());
}

#[test]
fn wall_time_of_a_past_monotonic_stamp_is_in_the_past() {
    let now = SystemTime::now();
    let past = wall_time(monotonic_ns() - 2_000_000_000);
    let ago = now.duration_since(past).expect("in the past");
    assert!(
        ago >= Duration::from_millis(1900) && ago < Duration::from_secs(3),
        "{ago:?}"
    );
}
