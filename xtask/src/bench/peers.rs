//! The supervisors under test, and how each is set up, started and told to stop.
//!
//! Each gets `n` programs that all run the `stamp` helper, configured the way its documentation
//! says to keep a program running: restart on any exit, supervisord's default `startsecs = 1`
//! where the concept exists. For s6 and runit the service's `run` is a symlink to `stamp`, so no
//! shell sits between the supervisor and the program, exactly as for the others.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::procs::PidFd;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    Ours,
    Supervisord,
    S6,
    Runit,
    Shell,
}

/// What every peer's setup needs to know.
pub struct Setup<'a> {
    /// The copy of the `stamp` helper the programs run.
    pub stamp: &'a Path,
    /// Our supervisor's release binary.
    pub ours: &'a Path,
    /// The FIFO the programs report to.
    pub fifo: &'a Path,
    /// Ours only: an HTTP health check (checked every second) on the first program.
    pub health: Option<&'a str>,
    /// Ours only: the loopback port of `--metrics-addr`.
    pub metrics_port: u16,
    /// Ours only: `--probe auto|on|off` (none: the default, `auto`).
    pub probe: Option<&'a str>,
}

impl Peer {
    /// In table order: ours first, the floor last.
    pub const ALL: [Peer; 5] = [
        Peer::Ours,
        Peer::Supervisord,
        Peer::S6,
        Peer::Runit,
        Peer::Shell,
    ];

    /// Short name, as used by `--only`.
    pub fn key(self) -> &'static str {
        match self {
            Peer::Ours => "ours",
            Peer::Supervisord => "supervisord",
            Peer::S6 => "s6",
            Peer::Runit => "runit",
            Peer::Shell => "shell",
        }
    }

    /// Column heading.
    pub fn label(self) -> &'static str {
        match self {
            Peer::Ours => "supervisor (ours)",
            Peer::Supervisord => "supervisord",
            Peer::S6 => "s6",
            Peer::Runit => "runit",
            Peer::Shell => "shell loop",
        }
    }

    /// What runs, for the method section.
    pub fn describe(self) -> &'static str {
        match self {
            Peer::Ours => {
                "`supervisor run -c supervisor.toml --metrics-addr 127.0.0.1:PORT`, one process"
            }
            Peer::Supervisord => "`supervisord -n -c supervisord.conf` (Python), one process",
            Peer::S6 => "`s6-svscan scandir`, one `s6-supervise` per program",
            Peer::Runit => "`runsvdir servicedir`, one `runsv` per program",
            Peer::Shell => {
                "`sh loop.sh`: one `(while true; do stamp; done) &` subshell per program"
            }
        }
    }

    /// The Debian package providing it, for versions in the report.
    pub fn package(self) -> Option<&'static str> {
        match self {
            Peer::Supervisord => Some("supervisor"),
            Peer::S6 => Some("s6"),
            Peer::Runit => Some("runit"),
            Peer::Shell => Some("dash"),
            Peer::Ours => None,
        }
    }

    /// Writes the configuration for programs `p1..=pN` into `dir`; returns the command that
    /// runs the supervisor in the foreground.
    pub fn prepare(self, setup: &Setup, dir: &Path, n: usize) -> Result<Command> {
        let names: Vec<String> = (1..=n).map(|i| format!("p{i}")).collect();
        let stamp = setup.stamp.display();
        let fifo = setup.fifo.display();
        let cmd = match self {
            Peer::Ours => {
                let mut toml = String::new();
                for name in &names {
                    writeln!(
                        toml,
                        "[programs.{name}]\ncommand = [\"{stamp}\", \"{name}\", \"{fifo}\"]\n\
                         startsecs = 1\nautorestart = true\n"
                    )?;
                    if let (Some(url), "p1") = (setup.health, name.as_str()) {
                        writeln!(
                            toml,
                            "health = \"{url}\"\nhealth_interval = 1\nhealth_timeout = 1\n"
                        )?;
                    }
                }
                let config = write(dir, "supervisor.toml", &toml)?;
                let mut cmd = Command::new(setup.ours);
                cmd.arg("run").arg("-c").arg(config);
                cmd.args([
                    "--metrics-addr",
                    &format!("127.0.0.1:{}", setup.metrics_port),
                ]);
                cmd.arg("--socket").arg(dir.join("supervisor.sock"));
                if let Some(mode) = setup.probe {
                    cmd.args(["--probe", mode]);
                }
                cmd
            }
            Peer::Supervisord => {
                let d = dir.display();
                let mut conf = format!(
                    "[supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\n\
                     pidfile={d}/supervisord.pid\nchildlogdir={d}\n\n"
                );
                for name in &names {
                    writeln!(
                        conf,
                        "[program:{name}]\ncommand={stamp} {name} {fifo}\nautorestart=true\n\
                         startsecs=1\n"
                    )?;
                }
                let config = write(dir, "supervisord.conf", &conf)?;
                let mut cmd = Command::new("supervisord");
                cmd.arg("-n").arg("-c").arg(config);
                cmd
            }
            Peer::S6 | Peer::Runit => {
                let services = dir.join("services");
                for name in &names {
                    let service = services.join(name);
                    std::fs::create_dir_all(&service)
                        .with_context(|| format!("cannot create {}", service.display()))?;
                    std::os::unix::fs::symlink(setup.stamp, service.join("run"))?;
                }
                let mut cmd = Command::new(if self == Peer::S6 {
                    "s6-svscan"
                } else {
                    "runsvdir"
                });
                cmd.arg(services);
                cmd
            }
            Peer::Shell => {
                let mut script = String::from("#!/bin/sh\n");
                for name in &names {
                    writeln!(script, "(while true; do {stamp} {name} {fifo}; done) &")?;
                }
                script.push_str("wait\n");
                let script = write(dir, "loop.sh", &script)?;
                let mut cmd = Command::new("/bin/sh");
                cmd.arg(script);
                cmd
            }
        };
        Ok(cmd)
    }

    /// Asks the running supervisor (`root`, leader of its own process group) to stop every
    /// program and exit, the documented way.
    pub fn request_stop(self, root: &PidFd, root_pid: i32) -> Result<()> {
        match self {
            // SIGTERM: ours, supervisord, and s6-svscan (which then brings every service down
            // and waits for its s6-supervise processes, like `s6-svscanctl -t`).
            Peer::Ours | Peer::Supervisord | Peer::S6 => root.signal(libc::SIGTERM)?,
            // runsvdir exits at once on SIGTERM, leaving everything running; SIGHUP makes it
            // send TERM to every runsv, which stops its service and exits.
            Peer::Runit => root.signal(libc::SIGHUP)?,
            // No supervisor: the floor is one signal to the whole process group.
            Peer::Shell => {
                // SAFETY: kill(2) with a negative pid signals that process group; `root_pid` is
                // the leader of the group we created and has not been reaped yet.
                if unsafe { libc::kill(-root_pid, libc::SIGTERM) } != 0 {
                    return Err(std::io::Error::last_os_error()).context("killpg");
                }
            }
        }
        Ok(())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?.port())
}
