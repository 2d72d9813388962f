//! Starting a program: fork + exec with its own process group, working directory,
//! environment, user, umask, and a clean signal mask; a pidfd for it at once.
//!
//! The pidfd is opened right after `fork` returns, in the engine task, before anything could
//! reap the child (only the engine reaps, and it is busy here), so the pidfd always refers to
//! our child.
//!
//! Both spawn paths (posix_spawn, and fork + exec when the user, umask, directory or PATH
//! change) take their environment from one builder, [`environment`]. A failure says which step
//! failed ([`SpawnError`]): the supervisor's own resources (a pipe or pidfd it could not
//! allocate), the working directory, the user, or the exec itself.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
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

/// Why a spawn failed, by the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The supervisor itself could not allocate what a spawn needs (a pipe, a pidfd, the
    /// process): not the program's fault.
    #[error("the supervisor could not create {what}: {source}{hint}", hint = resource_hint(source))]
    Resources {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// The working directory (`directory=`) could not be entered.
    #[error("couldn't chdir to {}: {source}", path.display())]
    Directory {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The user (`user=`) does not exist or could not be switched to.
    #[error("couldn't run as user '{user}': {reason}")]
    User { user: String, reason: String },
    /// The command could not be executed (not found, not executable, ...).
    #[error("couldn't exec {program}: {source}")]
    Exec {
        program: String,
        #[source]
        source: io::Error,
    },
}

impl SpawnError {
    /// The status a shell reports for the same failure: 127 when the command is not found,
    /// 126 otherwise.
    pub fn shell_status(&self) -> i32 {
        match self {
            SpawnError::Exec { source, .. } if source.kind() == io::ErrorKind::NotFound => 127,
            _ => 126,
        }
    }

    /// The OS error behind it, as text (for the event's `error` field).
    pub fn os_error(&self) -> String {
        match self {
            SpawnError::Resources { source, .. }
            | SpawnError::Directory { source, .. }
            | SpawnError::Exec { source, .. } => source.to_string(),
            SpawnError::User { reason, .. } => reason.clone(),
        }
    }

    fn resources(what: &'static str) -> impl FnOnce(io::Error) -> SpawnError {
        move |source| SpawnError::Resources { what, source }
    }
}

/// Out of descriptors (the process's or the system's): what the limit is and what to do.
fn resource_hint(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EMFILE) => {
            let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
            let show = |v: Option<u64>| v.map_or("unlimited".to_string(), |v| v.to_string());
            format!(
                " (EMFILE: the supervisor has RLIMIT_NOFILE {} (hard {}) open files; raise it, \
                 e.g. `ulimit -n 65536` before starting it or `docker run --ulimit \
                 nofile=65536:65536`)",
                show(lim.current),
                show(lim.maximum)
            )
        }
        Some(libc::ENFILE) => " (ENFILE: the system-wide file limit, fs.file-max, is reached)".into(),
        Some(libc::EAGAIN) | Some(libc::ENOMEM) => {
            " (the process or memory limit is reached: RLIMIT_NPROC, pids.max of the cgroup, or memory)".into()
        }
        _ => String::new(),
    }
}

/// Whether an error is the supervisor running out of something rather than the program's own.
fn is_resource_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::EAGAIN | libc::ENOMEM)
    )
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

/// Forks and execs `spec`.
pub fn spawn(spec: &ProgramSpec) -> Result<Spawned, SpawnError> {
    spawn_with(spec, None)
}

/// The fd number a program finds its readiness notification pipe on (`$SUPERVISOR_READY_FD`).
pub const READY_FD: i32 = 3;

/// Like [`spawn`]; `ready_fd` (the write end of a pipe) is given to the program as fd
/// [`READY_FD`], named in `$SUPERVISOR_READY_FD`.
pub fn spawn_with(spec: &ProgramSpec, ready_fd: Option<&OwnedFd>) -> Result<Spawned, SpawnError> {
    let Some((program, args)) = spec.command.split_first() else {
        return Err(SpawnError::Exec {
            program: String::new(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "empty command"),
        });
    };
    let exec_error = |source: io::Error| {
        if is_resource_error(&source) {
            SpawnError::Resources {
                what: "the process",
                source,
            }
        } else {
            SpawnError::Exec {
                program: program.clone(),
                source,
            }
        }
    };
    let (stdout_r, stdout_w) =
        pipe_for(&spec.stdout).map_err(SpawnError::resources("the stdout pipe"))?;
    let (stderr_r, stderr_w) = if spec.redirect_stderr {
        let w = stdout_w.as_ref().map(|w| w.try_clone()).transpose();
        (None, w.map_err(SpawnError::resources("the stderr pipe"))?)
    } else {
        pipe_for(&spec.stderr).map_err(SpawnError::resources("the stderr pipe"))?
    };
    let creds = match spec.user.as_deref() {
        Some(user) => Some(resolve_user(user).map_err(|e| SpawnError::User {
            user: user.to_string(),
            reason: e.to_string(),
        })?),
        None => None,
    };
    let env = environment(spec, ready_fd.is_some(), creds.as_ref());
    let pid = if can_posix_spawn(spec) {
        posix_spawn(
            program,
            args,
            &env,
            stdout_w.as_ref(),
            stderr_w.as_ref(),
            ready_fd,
        )
        .map_err(exec_error)?
    } else {
        fork_exec(
            spec, program, args, env, creds, stdout_w, stderr_w, ready_fd,
        )
        .map_err(|source| match stage_of(&source) {
            Some((STAGE_CHDIR, errno)) => SpawnError::Directory {
                path: spec.directory.clone().unwrap_or_default(),
                source: io::Error::from_raw_os_error(errno),
            },
            Some((_, errno)) => SpawnError::User {
                user: spec.user.clone().unwrap_or_default(),
                reason: io::Error::from_raw_os_error(errno).to_string(),
            },
            None => exec_error(source),
        })?
    };
    let pidfd = match Pid::from_raw(pid as i32).map(|raw| pidfd_open(raw, PidfdFlags::empty())) {
        Some(Ok(fd)) => fd,
        failed => {
            // The child runs, but cannot be watched: kill it (it is our unreaped child, so its
            // pid is still its own); it is reaped as an orphan.
            // SAFETY: plain kill(2) on our own unreaped child.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            let source = match failed {
                Some(Err(e)) => e.into(),
                _ => io::Error::other("spawn returned pid 0"),
            };
            return Err(SpawnError::Resources {
                what: "a pidfd for the new process",
                source,
            });
        }
    };
    Ok(Spawned {
        pid,
        pidfd,
        stdout: stdout_r,
        stderr: stderr_r,
    })
}

/// The whole environment of a program, for every spawn path: the supervisor's own, then what
/// supervisord adds (`SUPERVISOR_ENABLED`, `SUPERVISOR_PROCESS_NAME`, `SUPERVISOR_GROUP_NAME`),
/// then `HOME`, `USER` and `LOGNAME` of `user=`, then the program's `environment`; a later
/// entry replaces an earlier one of the same name. `SUPERVISOR_READY_FD` (for `ready =
/// "notify"`) comes last, so that nothing can hide the readiness pipe.
pub fn environment(
    spec: &ProgramSpec,
    ready_fd: bool,
    creds: Option<&Credentials>,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let mut set = |k: &str, v: &str| {
        let (k, v) = (OsString::from(k), OsString::from(v));
        match env.iter_mut().find(|(ek, _)| *ek == k) {
            Some(slot) => slot.1 = v,
            None => env.push((k, v)),
        }
    };
    set("SUPERVISOR_ENABLED", "1");
    set("SUPERVISOR_PROCESS_NAME", &spec.name);
    if let Some(group) = &spec.group {
        set("SUPERVISOR_GROUP_NAME", group);
    }
    if let Some(c) = creds {
        set("HOME", &c.home);
        set("USER", &c.name);
        set("LOGNAME", &c.name);
    }
    for (k, v) in &spec.environment {
        set(k, v);
    }
    if ready_fd {
        set("SUPERVISOR_READY_FD", &READY_FD.to_string());
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
    program: &str,
    args: &[String],
    env: &[(OsString, OsString)],
    stdout: Option<&OwnedFd>,
    stderr: Option<&OwnedFd>,
    ready_fd: Option<&OwnedFd>,
) -> io::Result<u32> {
    use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
    use nix::sys::signal::SigSet;
    use std::os::fd::AsRawFd;

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
    let mut envp = Vec::with_capacity(env.len());
    for (k, v) in env {
        let mut kv = k.as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        envp.push(cstring(kv)?);
    }
    let pid = nix::spawn::posix_spawnp(&argv[0], &actions, &attr, &argv, &envp)?;
    Ok(pid.as_raw() as u32)
}

/// Errors of the steps before exec in the child come back tagged with their step (std passes
/// the child's errno through as is), so the parent can tell a bad directory from a missing
/// command: `STAGE | errno`.
const STAGE_SHIFT: i32 = 20;
const STAGE_CHDIR: i32 = 1;
const STAGE_USER: i32 = 2;

fn staged(stage: i32, e: io::Error) -> io::Error {
    io::Error::from_raw_os_error((stage << STAGE_SHIFT) | e.raw_os_error().unwrap_or(libc::EINVAL))
}

/// The step and errno of a tagged child error; `None` for a plain one (from exec itself).
fn stage_of(e: &io::Error) -> Option<(i32, i32)> {
    let raw = e.raw_os_error()?;
    let stage = raw >> STAGE_SHIFT;
    matches!(stage, STAGE_CHDIR | STAGE_USER).then_some((stage, raw & ((1 << STAGE_SHIFT) - 1)))
}

/// fork + exec through std, with a pre-exec hook for the directory, user, umask and signal
/// mask.
#[allow(clippy::too_many_arguments)]
fn fork_exec(
    spec: &ProgramSpec,
    program: &str,
    args: &[String],
    env: Vec<(OsString, OsString)>,
    creds: Option<Credentials>,
    stdout_w: Option<OwnedFd>,
    stderr_w: Option<OwnedFd>,
    ready_fd: Option<&OwnedFd>,
) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    let ready_raw = ready_fd.map(|w| w.as_raw_fd());
    let dir = spec
        .directory
        .as_ref()
        .map(|d| cstring(d.as_os_str().as_bytes()))
        .transpose()?;
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).process_group(0);
    // The environment is complete (PATH included, which std then uses to find `program`).
    cmd.env_clear().envs(env);
    cmd.stdout(stdout_w.map_or_else(Stdio::null, Stdio::from));
    cmd.stderr(stderr_w.map_or_else(Stdio::null, Stdio::from));

    let umask = spec.umask;
    // SAFETY: the closure runs in the child between fork and exec. It only makes
    // async-signal-safe system calls (sigprocmask, dup2, chdir, umask, setgroups, setgid,
    // setuid) on data prepared before the fork; it does not allocate or take locks.
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
            if let Some(dir) = &dir {
                if libc::chdir(dir.as_ptr()) < 0 {
                    return Err(staged(STAGE_CHDIR, io::Error::last_os_error()));
                }
            }
            if let Some(mask) = umask {
                libc::umask(mask as libc::mode_t);
            }
            if let Some(c) = &creds {
                let user = |e: nix::Error| staged(STAGE_USER, e.into());
                nix::unistd::setgroups(&c.groups).map_err(user)?;
                nix::unistd::setgid(c.gid).map_err(user)?;
                nix::unistd::setuid(c.uid).map_err(user)?;
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
