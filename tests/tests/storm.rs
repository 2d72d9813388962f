//! Issue 11 (engine parts) end to end, with the real binary as PID 1: a crash loop of 50
//! programs holds a bounded number of fds and bounded memory; spawn errors name their real
//! cause (the supervisor's own fd limit, a missing directory); `ready = "notify"` works on the
//! fork+exec spawn path (user, directory, umask, PATH) too.

use std::fs;
use std::time::{Duration, Instant};

use e2e::*;

const T: Duration = Duration::from_secs(20);

/// Open fds and resident memory (kB) of a process, from /proc.
fn fds_and_rss(pid: u32) -> (usize, u64) {
    let fds = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/fd: {e}"))
        .count();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    (fds, rss)
}

/// How many JSON log lines of the given kind (counted on the raw text: cheap on a big log).
fn count(text: &str, kind: &str) -> usize {
    text.matches(&format!(r#""event":"{kind}""#)).count()
}

/// 50 programs that exit at once, restarted at once (`startsecs=0`), for a bounded time: the
/// supervisor's fd count stays within a small constant per program (it grew by ~700/s before:
/// pipes and pidfds of dead processes), its memory stays bounded, and no spawn fails.
#[test]
fn crash_loop_of_50_programs_keeps_fds_and_memory_bounded() {
    const PROGRAMS: usize = 50;
    const RUN: Duration = Duration::from_secs(25);
    let dir = TempDir::new("storm");
    let mut conf = String::from("[supervisord]\nnodaemon=true\n");
    for i in 0..PROGRAMS {
        conf.push_str(&format!(
            "\n[program:p{i}]\ncommand=sh -c 'exit 1'\nstartsecs=0\nautorestart=true\n"
        ));
    }
    let conf = dir.write("storm.conf", &conf);
    let mut sup = Sup::start(
        Mode::Pid1,
        dir.path(),
        &[
            "run",
            "-c",
            conf.to_str().unwrap(),
            "--metrics-addr",
            "off",
            "--probe",
            "off",
        ],
    );
    sup.wait_nth("first spawns", PROGRAMS, T, |e| kind(e) == "spawned");
    let host = sup.host_pid();
    let started = Instant::now();
    let (fds0, rss0) = fds_and_rss(host);
    let (mut max_fds, mut max_rss) = (fds0, rss0);
    while started.elapsed() < RUN {
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            sup.running(),
            "the supervisor died\n{}",
            tail(&sup.log_text(), 30)
        );
        let (fds, rss) = fds_and_rss(host);
        max_fds = max_fds.max(fds);
        max_rss = max_rss.max(rss);
    }
    let (fds1, rss1) = fds_and_rss(host);
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(T), 0, "{}", tail(&sup.log_text(), 30));
    let log = sup.log_text();
    let spawned = count(&log, "spawned");
    let exited = count(&log, "exited");
    eprintln!(
        "storm: {PROGRAMS} programs for {RUN:?}: fds {fds0} -> {fds1} (max {max_fds}), \
         RSS {rss0} kB -> {rss1} kB (max {max_rss} kB), {spawned} spawns logged \
         ({:.0}/s), {exited} exits logged",
        spawned as f64 / RUN.as_secs_f64()
    );
    // Per program at most the pipes of one process (2) and one pidfd, plus a reader's and a
    // spawn's transient fds; well below what even 1 s of the old leak reached (~900).
    let bound = fds0 + 4 * PROGRAMS;
    assert!(
        max_fds <= bound,
        "fds grew from {fds0} to {max_fds} (bound {bound})"
    );
    // Memory: the event history (10,000 events) and the bus buffer (8,192) fill up during the
    // storm, then stay; the old leak gained ~2 MB/s.
    assert!(
        max_rss <= rss0 + 40 * 1024,
        "RSS grew from {rss0} kB to {max_rss} kB"
    );
    assert_eq!(
        count(&log, "spawn_failed"),
        0,
        "{}",
        log.lines()
            .filter(|l| l.contains("spawnerr"))
            .take(3)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        spawned >= PROGRAMS * 5,
        "the programs were restarted ({spawned} spawns)"
    );
}

/// `ready = "notify"` on the fork+exec path: a program that also sets `user`, `directory`,
/// `umask` and its own `PATH` gets `$SUPERVISOR_READY_FD` and becomes ready.
#[test]
fn notify_readiness_works_with_user_directory_umask_and_path() {
    let dir = TempDir::new("notify-user");
    let conf = dir.write(
        "s.toml",
        r#"
[programs.svc]
command = "sh -c 'echo READY >&$SUPERVISOR_READY_FD; exec sleep 1000'"
ready = "notify"
user = "nobody"
directory = "/"
umask = "022"
environment = { PATH = "/usr/local/bin:/usr/bin:/bin", GREETING = "hi" }
"#,
    );
    let mut sup = Sup::with_config(Mode::Pid1, dir.path(), &conf);
    let r = sup.wait_event("svc ready", T, |e| is(e, "ready", "svc"));
    assert_eq!(msg(&r), "ready: svc (notified on $SUPERVISOR_READY_FD)");
    let running = sup.wait_event("svc running", T, |e| is(e, "running", "svc"));
    // It really runs as nobody, in /, with the environment of the one builder.
    let host = sup.to_host_pid(pid(&running));
    let status = fs::read_to_string(format!("/proc/{host}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.split_whitespace().nth(1) == Some("65534"),
        "{uid_line}"
    );
    let environ = fs::read(format!("/proc/{host}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    for want in [
        "SUPERVISOR_READY_FD=3",
        "SUPERVISOR_ENABLED=1",
        "SUPERVISOR_PROCESS_NAME=svc",
        "GREETING=hi",
        "PATH=/usr/local/bin:/usr/bin:/bin",
        "USER=nobody",
    ] {
        assert!(
            environ.split('\0').any(|kv| kv == want),
            "{want} missing in {environ}"
        );
    }
    assert_eq!(
        fs::read_link(format!("/proc/{host}/cwd")).unwrap(),
        std::path::Path::new("/")
    );
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(T), 0);
}

/// A missing `directory=` is said as such (with the path and the OS error), not as a missing
/// command; a missing command keeps supervisord's sentence.
#[test]
fn missing_directory_and_missing_command_have_their_own_sentences() {
    let dir = TempDir::new("nodir");
    let conf = dir.write(
        "s.conf",
        "[program:nodir]\ncommand=sleep 1000\ndirectory=/nonexistent/dir\nstartretries=0\n\n\
         [program:nocmd]\ncommand=/nonexistent/bin/x\nstartretries=0\n",
    );
    let mut sup = Sup::with_config(Mode::Pid1, dir.path(), &conf);
    let e = sup.wait_event("nodir spawnerr", T, |e| is(e, "spawn_failed", "nodir"));
    assert_eq!(
        msg(&e),
        "spawnerr: couldn't chdir to /nonexistent/dir: No such file or directory (os error 2)"
    );
    let e = sup.wait_event("nocmd spawnerr", T, |e| is(e, "spawn_failed", "nocmd"));
    assert_eq!(msg(&e), "spawnerr: can't find command '/nonexistent/bin/x'");
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(T), 0);
}

/// With a low RLIMIT_NOFILE, the spawns that cannot get their pipes fail with the supervisor's
/// own resource error — EMFILE, the limit, what to do — not with "couldn't exec"; the
/// supervisor stays up and the programs that did start keep running.
#[test]
fn running_out_of_fds_is_reported_as_the_supervisors_limit() {
    const LIMIT: u32 = 48;
    let dir = TempDir::new("emfile");
    let mut conf = String::new();
    for i in 0..30 {
        conf.push_str(&format!(
            "[program:s{i:02}]\ncommand=sleep 1000\nstartretries=0\n\n"
        ));
    }
    let conf = dir.write("s.conf", &conf);
    let bin = bin();
    let script = format!("ulimit -n {LIMIT} && exec \"$0\" \"$@\"");
    let mut sup = Sup::start_command(
        Mode::Pid1,
        dir.path(),
        "unshare",
        &[
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
            "sh",
            "-c",
            &script,
            bin.to_str().unwrap(),
            "run",
            "-c",
            conf.to_str().unwrap(),
            "--metrics-addr",
            "off",
            "--probe",
            "off",
        ],
    );
    let e = sup.wait_event("a spawn failing for lack of fds", T, |e| {
        kind(e) == "spawn_failed"
    });
    let m = msg(&e);
    assert!(
        m.starts_with("spawnerr: the supervisor could not create ")
            && m.contains("Too many open files")
            && m.contains(&format!("RLIMIT_NOFILE {LIMIT}"))
            && m.contains("ulimit -n"),
        "{m}"
    );
    assert!(
        !sup.log_text().contains("couldn't exec"),
        "{}",
        sup.log_text()
    );
    sup.wait_event("the programs that got their fds running", T, |e| {
        kind(e) == "running"
    });
    assert!(sup.running());
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(T), 0, "{}", tail(&sup.log_text(), 20));
}

/// Live processes in the supervisor's PID namespace whose command line is `cmdline`.
fn live_in_ns(sup: &Sup, cmdline: &str) -> usize {
    let ns = fs::read_link(format!("/proc/{}/ns/pid", sup.host_pid())).expect("pid ns");
    let want: Vec<u8> = cmdline
        .split(' ')
        .flat_map(|w| w.bytes().chain([0]))
        .collect();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| fs::read_link(format!("/proc/{p}/ns/pid")).ok().as_ref() == Some(&ns))
        .filter(|p| fs::read(format!("/proc/{p}/cmdline")).ok().as_deref() == Some(&want[..]))
        .filter(|p| {
            let stat = fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            stat.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next())
                != Some("Z")
        })
        .count()
}

fn wait_gone(sup: &Sup, cmdline: &str) {
    let deadline = Instant::now() + T;
    while live_in_ns(sup, cmdline) > 0 {
        assert!(
            Instant::now() < deadline,
            "`{cmdline}` still runs\n{}",
            tail(&sup.log_text(), 30)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A program that forks into the background and exits: the warning names what it left (pid and
/// comm) and says how to run it in the foreground; once it is FATAL, what it left is stopped
/// with it — the stop signal with `stopasgroup` (left in its process group), SIGKILL with
/// `killasgroup` (a double fork with `setsid`, reparented to the supervisor).
#[test]
fn daemonizing_program_is_named_and_what_it_left_is_stopped_with_it() {
    let cases = [
        (
            "grp",
            "sh -c 'sleep 1001 & exit 1'",
            "stopasgroup=true",
            "sleep 1001",
            "SIGTERM",
        ),
        (
            "dbl",
            "sh -c 'setsid sleep 1002 & exit 1'",
            "killasgroup=true",
            "sleep 1002",
            "SIGKILL",
        ),
    ];
    for (name, command, flag, left, signal) in cases {
        let dir = TempDir::new("daemon");
        let conf = dir.write(
            "s.conf",
            &format!("[program:{name}]\ncommand={command}\nstartretries=1\n{flag}\n"),
        );
        let mut sup = Sup::with_config(Mode::Pid1, dir.path(), &conf);
        let warn = sup.wait_event("the daemonized warning", T, |e| {
            program(e) == name && msg(e).starts_with("daemonized: ")
        });
        let m = msg(&warn);
        assert!(
            m.starts_with(&format!("daemonized: {name} (pid "))
                && m.contains("exited and left 1 process(es) running: ")
                // The leftover may be named before it has exec'd `sleep` (still sh, or setsid).
                && ["(sleep)", "(sh)", "(setsid)"].iter().any(|c| m.contains(c))
                && m.contains("nginx -g 'daemon off;'")
                && m.contains("php-fpm -F"),
            "{m}"
        );
        assert_eq!(warn["level"], "warn");
        sup.wait_event("FATAL", T, |e| is(e, "fatal", name));
        let stop = sup.wait_event("what it left is stopped", T, |e| {
            program(e) == name && msg(e).starts_with("stopping what ")
        });
        assert!(
            msg(&stop).starts_with(&format!(
                "stopping what {name} left running with {signal}: "
            )),
            "{}",
            msg(&stop)
        );
        wait_gone(&sup, left);
        assert!(sup.running());
        sup.signal(libc::SIGTERM);
        assert_eq!(sup.wait_exit(T), 0);
    }
}
