//! Starting a program: fork + exec with its own process group, working directory,
//! environment, user, umask, and a clean signal mask; a pidfd for it at once.
//!
//! The pidfd is opened right after `fork` returns, in the engine task, before anything could
//! reap the child (only the engine reaps, and it is busy here), so the pidfd always refers to
//! our child.

use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::unistd::{Gid, Uid, User};
use rustix::process::{pidfd_open, Pid, PidfdFlags};

use crate::config::{LogTarget, ProgramSpec};

/// A user to run as, resolved before forking (name lookups allocate; they must not run
/// between fork and exec).
#[derive(Debug, Clone)]
pub struct Credentials {
    pub uid: Uid,
    pub gid: Gid,
    pub groups: Vec<Gid>,
    pub name: String,
    pub home: String,
}

/// Resolves `user` (a name or a numeric uid) and its groups.
pub fn resolve_user(user: &str) -> io::Result<Credentials> {
    let found = match user.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(user),
    }
    .map_err(io::Error::from)?;
    let Some(u) = found else {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no such user '{user}'"),
        ));
    };
    let cname =
        CString::new(u.name.clone()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let groups = nix::unistd::getgrouplist(&cname, u.gid).unwrap_or_else(|_| vec![u.gid]);
    Ok(Credentials {
        uid: u.uid,
        gid: u.gid,
        groups,
        name: u.name,
        home: u.dir.display().to_string(),
    })
}

/// A freshly started process.
#[derive(Debug)]
pub struct Spawned {
    pub pid: u32,
    pub pidfd: OwnedFd,
    /// Read ends of the child's stdout / stderr pipes (absent when discarded or redirected).
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// Forks and execs `spec`. Errors are the OS's (ENOENT, EACCES, a bad user, ...).
pub fn spawn(spec: &ProgramSpec) -> io::Result<Spawned> {
    spawn_with(spec, None)
}

/// The fd number a program finds its readiness notification pipe on (`$SUPERVISOR_READY_FD`).
pub const READY_FD: i32 = 3;

/// Like [`spawn`]; `ready_fd` (the write end of a pipe) is given to the program as fd
/// [`READY_FD`], named in `$SUPERVISOR_READY_FD`.
pub fn spawn_with(spec: &ProgramSpec, ready_fd: Option<&OwnedFd>) -> io::Result<Spawned> {
    let Some((program, args)) = spec.command.split_first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    };
    let (stdout_r, stdout_w) = pipe_for(&spec.stdout)?;
    let (stderr_r, stderr_w) = if spec.redirect_stderr {
        (None, stdout_w.as_ref().map(|w| w.try_clone()).transpose()?)
    } else {
        pipe_for(&spec.stderr)?
    };
    let pid = if can_posix_spawn(spec) {
        posix_spawn(
            spec,
            program,
            args,
            stdout_w.as_ref(),
            stderr_w.as_ref(),
            ready_fd,
        )?
    } else {
        fork_exec(spec, program, args, stdout_w, stderr_w, ready_fd)?
    };
    let raw = Pid::from_raw(pid as i32).ok_or_else(|| io::Error::other("spawn returned pid 0"))?;
    let pidfd = pidfd_open(raw, PidfdFlags::empty()).map_err(io::Error::from)?;
    Ok(Spawned {
        pid,
        pidfd,
        stdout: stdout_r,
        stderr: stderr_r,
    })
}

/// The environment variables the supervisor adds for a program (as supervisord does).
fn supervisor_env(spec: &ProgramSpec, ready_fd: Option<&OwnedFd>) -> Vec<(String, String)> {
    let mut env = vec![
        ("SUPERVISOR_ENABLED".to_string(), "1".to_string()),
        ("SUPERVISOR_PROCESS_NAME".to_string(), spec.name.clone()),
    ];
    if let Some(group) = &spec.group {
        env.push(("SUPERVISOR_GROUP_NAME".to_string(), group.clone()));
    }
    if ready_fd.is_some() {
        env.push(("SUPERVISOR_READY_FD".to_string(), READY_FD.to_string()));
    }
    env
}

/// posix_spawn (a vfork-like clone: no page tables copied, so restarts are fast) can do
/// everything a program needs unless it changes user, umask or directory, or sets its own
/// PATH (posix_spawnp searches the supervisor's PATH).
fn can_posix_spawn(spec: &ProgramSpec) -> bool {
    spec.user.is_none()
        && spec.umask.is_none()
        && spec.directory.is_none()
        && !spec.environment.iter().any(|(k, _)| k == "PATH")
}

fn cstring(s: impl Into<Vec<u8>>) -> io::Result<CString> {
    CString::new(s).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

fn posix_spawn(
    spec: &ProgramSpec,
    program: &str,
    args: &[String],
    stdout: Option<&OwnedFd>,
    stderr: Option<&OwnedFd>,
    ready_fd: Option<&OwnedFd>,
) -> io::Result<u32> {
    use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
    use nix::sys::signal::SigSet;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;

    let mut attr = PosixSpawnAttr::init()?;
    // Start with no signal blocked (the supervisor blocks the ones it reads through signalfd)
    // and SIGPIPE back at its default action (Rust ignores it; an ignored signal stays ignored
    // across exec, while handled ones are reset by exec itself).
    attr.set_sigmask(&SigSet::empty())?;
    let mut pipe = SigSet::empty();
    pipe.add(nix::sys::signal::Signal::SIGPIPE);
    attr.set_sigdefault(&pipe)?;
    attr.set_pgroup(nix::unistd::Pid::from_raw(0))?;
    attr.set_flags(
        PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK
            | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF
            | PosixSpawnFlags::POSIX_SPAWN_SETPGROUP,
    )?;
    let mut actions = PosixSpawnFileActions::init()?;
    let null = c"/dev/null";
    actions.add_open(
        0,
        null,
        nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )?;
    for (fd, target) in [(1, stdout), (2, stderr)] {
        match target {
            Some(w) => actions.add_dup2(w.as_raw_fd(), fd)?,
            None => actions.add_open(
                fd,
                null,
                nix::fcntl::OFlag::O_WRONLY,
                nix::sys::stat::Mode::empty(),
            )?,
        }
    }
    let argv = std::iter::once(program)
        .chain(args.iter().map(String::as_str))
        .map(cstring)
        .collect::<io::Result<Vec<_>>>()?;
    if let Some(w) = ready_fd {
        actions.add_dup2(w.as_raw_fd(), READY_FD)?;
    }
    let extra: Vec<(String, String)> = supervisor_env(spec, ready_fd)
        .into_iter()
        .chain(spec.environment.iter().cloned())
        .collect();
    let mut envp = Vec::new();
    for (k, v) in std::env::vars_os() {
        if !extra.iter().any(|(ek, _)| ek.as_bytes() == k.as_bytes()) {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            envp.push(cstring(kv)?);
        }
    }
    for (k, v) in &extra {
        envp.push(cstring(format!("{k}={v}"))?);
    }
    let pid = nix::spawn::posix_spawnp(&argv[0], &actions, &attr, &argv, &envp)?;
    Ok(pid.as_raw() as u32)
}

/// fork + exec through std, with a pre-exec hook for the user, umask and signal mask.
fn fork_exec(
    spec: &ProgramSpec,
    program: &str,
    args: &[String],
    stdout_w: Option<OwnedFd>,
    stderr_w: Option<OwnedFd>,
    ready_fd: Option<&OwnedFd>,
) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    let ready_raw = ready_fd.map(|w| w.as_raw_fd());
    let creds = spec.user.as_deref().map(resolve_user).transpose()?;
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).process_group(0);
    cmd.env("SUPERVISOR_ENABLED", "1")
        .env("SUPERVISOR_PROCESS_NAME", &spec.name);
    if let Some(group) = &spec.group {
        cmd.env("SUPERVISOR_GROUP_NAME", group);
    }
    if let Some(c) = &creds {
        cmd.env("HOME", &c.home)
            .env("USER", &c.name)
            .env("LOGNAME", &c.name);
    }
    cmd.envs(spec.environment.iter().map(|(k, v)| (k, v)));
    if let Some(dir) = &spec.directory {
        cmd.current_dir(dir);
    }
    cmd.stdout(stdout_w.map_or_else(Stdio::null, Stdio::from));
    cmd.stderr(stderr_w.map_or_else(Stdio::null, Stdio::from));

    let umask = spec.umask;
    // SAFETY: the closure runs in the child between fork and exec. It only makes
    // async-signal-safe system calls (sigprocmask, umask, setgroups, setgid, setuid) on data
    // prepared before the fork; it does not allocate or take locks.
    unsafe {
        cmd.pre_exec(move || {
            // The supervisor blocks the signals it reads through signalfd; the program must
            // start with none blocked (std's posix_spawn path would keep them blocked).
            nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&nix::sys::signal::SigSet::empty()),
                None,
            )?;
            if let Some(fd) = ready_raw {
                // dup2 clears close-on-exec on the copy.
                if libc::dup2(fd, READY_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(mask) = umask {
                libc::umask(mask as libc::mode_t);
            }
            if let Some(c) = &creds {
                nix::unistd::setgroups(&c.groups)?;
                nix::unistd::setgid(c.gid)?;
                nix::unistd::setuid(c.uid)?;
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    // Dropping `child` neither waits for nor kills it: reaping stays with the engine.
    Ok(child.id())
}

/// A pipe for a stream that is read (forwarded or written to a file), or nothing when the
/// output is discarded (the child gets /dev/null).
fn pipe_for(target: &LogTarget) -> io::Result<(Option<OwnedFd>, Option<OwnedFd>)> {
    if *target == LogTarget::Discard {
        return Ok((None, None));
    }
    let (r, w) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(io::Error::from)?;
    Ok((Some(r), Some(w)))
}
