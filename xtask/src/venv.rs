//! The Python tools the tests drive, in a virtualenv this xtask owns (`target/xtask/venv`).
//!
//! Real supervisord is the oracle for config semantics, its stock `supervisorctl` and superlance
//! are clients of our XML-RPC and event listeners, and `kubernetes-validate` checks the
//! Kubernetes manifests. They come from PyPI, pinned, into a venv created with the machine's
//! `python3 -m venv`; a stamp file records what was installed, so a second run does nothing.
//! Tests find the venv through `SUPERVISOR_VENV` (set by `cargo xtask test`), else at its
//! default path; `cargo xtask venv` makes it by hand.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util;

/// The PyPI packages, pinned (name, version).
pub const PACKAGES: &[(&str, &str)] = &[
    ("supervisor", "4.3.0"),
    ("superlance", "2.0.0"),
    ("kubernetes-validate", "1.37.0"),
];

/// Where the venv lives.
pub fn dir() -> PathBuf {
    util::target_dir().join("xtask").join("venv")
}

/// Creates the venv and installs [`PACKAGES`] unless the stamp says they are there.
pub fn ensure() -> Result<PathBuf> {
    let dir = dir();
    let stamp = dir.join("xtask-packages.txt");
    let wanted: String = PACKAGES
        .iter()
        .map(|(name, version)| format!("{name}=={version}\n"))
        .collect();
    if std::fs::read_to_string(&stamp).is_ok_and(|have| have == wanted) {
        println!("==> python tools present in {}", dir.display());
        return Ok(dir);
    }
    if !dir.join("bin").join("pip").exists() {
        println!(
            "==> creating a python venv for the test tools: {}",
            dir.display()
        );
        run(Command::new("python3").arg("-m").arg("venv").arg(&dir))
            .context("python3 -m venv failed (on Debian: apt-get install python3-venv)")?;
    }
    let specs: Vec<String> = wanted.lines().map(String::from).collect();
    println!("==> pip install into the venv: {}", specs.join(" "));
    run(Command::new(dir.join("bin").join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(&specs))?;
    std::fs::write(&stamp, wanted).with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(dir)
}

/// `cargo xtask venv`: make the venv and print where it is.
pub fn run_command(args: &[String]) -> Result<std::process::ExitCode> {
    if let Some(arg) = args.first() {
        bail!("unknown option for `venv`: {arg}");
    }
    let dir = ensure()?;
    println!("{}", dir.display());
    Ok(std::process::ExitCode::SUCCESS)
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
