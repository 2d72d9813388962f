//! System packages: check with dpkg, install with apt-get when root, explain when not.
//!
//! A fresh CI machine has none of the peers or tools the tests and benchmarks drive; this
//! installs them once. Installing a package that ships a service (supervisor, prometheus,
//! docker.io, ...) would start its daemon; a temporary `/usr/sbin/policy-rc.d` that says "101:
//! not allowed" prevents that, and is removed afterwards if we created it.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util;

/// What `cargo xtask test` needs on the machine (the peers the e2e tests compare with, the
/// Prometheus that scrapes us, and the tools the tests call). Extend here, e.g. with docker.io,
/// debootstrap, apache2, mariadb-server.
pub const TEST_PACKAGES: &[&str] = &[
    "supervisor",
    "s6",
    "runit",
    "prometheus",
    "procps",
    "util-linux",
    "curl",
    // tests/tests/docker.rs: the engine, the LAMP base image's rootfs, the minimal image's shell.
    "docker.io",
    "debootstrap",
    "busybox-static",
    // supervisor-ebpf/build.rs: compiles the eBPF probe (a build error without them).
    "clang",
    "libbpf-dev",
    "linux-libc-dev",
    // cargo xtask bench: the HTTP load on /metrics while restarts are measured.
    "wrk",
];

/// What building the supervisor needs (the eBPF probe is C compiled with clang).
pub const BUILD_PACKAGES: &[&str] = &["clang", "libbpf-dev", "linux-libc-dev"];

/// What `cargo xtask bench` needs: the peers it measures, and wrk (load on our /metrics).
pub const BENCH_PACKAGES: &[&str] = &["supervisor", "s6", "runit", "wrk"];

const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// Makes sure every package in `packages` is installed; installs the missing ones if we are
/// root, otherwise fails saying how to install them.
pub fn ensure(packages: &[&str]) -> Result<()> {
    let missing = missing(packages)?;
    if missing.is_empty() {
        println!("==> system packages present: {}", packages.join(" "));
        return Ok(());
    }
    let list = missing.join(" ");
    if !util::is_root() {
        bail!(
            "missing system packages: {list}\n  install them with:\n    \
             sudo apt-get update && sudo apt-get install -y --no-install-recommends {list}"
        );
    }
    println!("==> installing missing system packages: {list}");
    let _guard = NoServiceStart::install()?;
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing))?;
    let still = self::missing(packages)?;
    if !still.is_empty() {
        bail!(
            "apt-get reported success but these are still not installed: {}",
            still.join(" ")
        );
    }
    Ok(())
}

/// The packages of `packages` that dpkg does not report as installed.
fn missing<'a>(packages: &[&'a str]) -> Result<Vec<&'a str>> {
    let mut missing = Vec::new();
    for &pkg in packages {
        let out = Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", pkg])
            .output()
            .context("cannot run dpkg-query: this needs a Debian-based system")?;
        // Unknown packages make dpkg-query fail; both mean "not installed".
        if !String::from_utf8_lossy(&out.stdout).contains("install ok installed") {
            missing.push(pkg);
        }
    }
    Ok(missing)
}

fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

/// While alive, `invoke-rc.d` refuses to start services (exit 101 from policy-rc.d).
struct NoServiceStart {
    /// We wrote the file, so we remove it; an existing one is the admin's and stays.
    created: bool,
}

impl NoServiceStart {
    fn install() -> Result<NoServiceStart> {
        let path = Path::new(POLICY_RC_D);
        if path.exists() {
            return Ok(NoServiceStart { created: false });
        }
        std::fs::write(path, "#!/bin/sh\nexit 101\n")
            .with_context(|| format!("cannot write {POLICY_RC_D}"))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot chmod {POLICY_RC_D}"))?;
        Ok(NoServiceStart { created: true })
    }
}

impl Drop for NoServiceStart {
    fn drop(&mut self) {
        if self.created {
            if let Err(err) = std::fs::remove_file(POLICY_RC_D) {
                eprintln!("xtask: warning: cannot remove {POLICY_RC_D}: {err}");
            }
        }
    }
}
