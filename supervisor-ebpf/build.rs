//! Compiles `bpf/probe.bpf.c` into an eBPF object with clang (Debian: packages `clang`,
//! `libbpf-dev`, `linux-libc-dev`).
//!
//! Without them the build fails with a message naming the packages to install (`cargo xtask
//! test` and `cargo xtask demo` install them). To build without the probe on purpose, set
//! `SUPERVISOR_EBPF=off`: the probe is then compiled out and the loader reports "probe not
//! built in" at run time (`SUPERVISOR_EBPF_MISSING` carries the reason).
//! `BPF_CLANG=/path/to/clang` picks the compiler.
//! A clang that runs but rejects the source is always a build error: that is a bug to fix.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCE: &str = "bpf/probe.bpf.c";
const HEADER: &str = "bpf/probe.h";
const PACKAGES: &str = "clang libbpf-dev linux-libc-dev";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(probe_built)");
    println!("cargo::rerun-if-changed={SOURCE}");
    println!("cargo::rerun-if-changed={HEADER}");
    println!("cargo::rerun-if-env-changed=BPF_CLANG");
    println!("cargo::rerun-if-env-changed=SUPERVISOR_EBPF");

    let out =
        PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("probe.bpf.o");
    let Some(clang) = find_clang() else {
        // Installing the packages adds files to these directories, which changes their mtime:
        // the next build then runs this script again and compiles the probe in.
        println!("cargo::rerun-if-changed=/usr/bin");
        println!("cargo::rerun-if-changed=/usr/include");
        return compiled_out("clang was missing at build time");
    };

    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let target = match env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() {
        Ok("big") => "bpfeb",
        _ => "bpfel",
    };
    // <linux/types.h> includes <asm/types.h>, which lives in the multiarch directory that
    // clang does not search for `-target bpf`.
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    let output = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-target", target])
        .arg(format!("-I{multiarch}"))
        .arg("-c")
        .arg(SOURCE)
        .arg("-o")
        .arg(&out)
        .output();
    let output = match output {
        Ok(o) => o,
        Err(err) => return compiled_out(&format!("{clang} could not be run ({err})")),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        if let Some(header) = missing_header(&stderr) {
            println!("cargo::rerun-if-changed=/usr/include");
            return compiled_out(&format!("header {header} was missing at build time"));
        }
        panic!("{clang} failed to compile {SOURCE}:\n{stderr}");
    }
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        println!("cargo::warning={line}");
    }
    println!("cargo::rustc-cfg=probe_built");
}

/// Fails the build saying what to install, unless `SUPERVISOR_EBPF=off` asks for a build
/// without the probe.
fn compiled_out(reason: &str) {
    let fix = format!("install {PACKAGES} (`apt-get install -y {PACKAGES}`)");
    if env::var("SUPERVISOR_EBPF").as_deref() != Ok("off") {
        panic!(
            "the eBPF probe cannot be built: {reason}; {fix} (or build without the probe: SUPERVISOR_EBPF=off cargo build)"
        );
    }
    println!("cargo::warning=eBPF probe compiled out: {reason}; {fix}, then build again");
    println!("cargo::rustc-env=SUPERVISOR_EBPF_MISSING={reason}");
}

/// `$BPF_CLANG`, else the first clang on PATH (Debian's unversioned one, then versioned ones).
fn find_clang() -> Option<String> {
    if let Ok(c) = env::var("BPF_CLANG") {
        let usable = if c.contains('/') {
            is_executable(Path::new(&c))
        } else {
            on_path(&c)
        };
        return usable.then_some(c);
    }
    [
        "clang", "clang-19", "clang-18", "clang-17", "clang-16", "clang-15", "clang-14",
    ]
    .into_iter()
    .find(|c| on_path(c))
    .map(String::from)
}

fn on_path(name: &str) -> bool {
    env::var_os("PATH")
        .is_some_and(|path| env::split_paths(&path).any(|dir| is_executable(&dir.join(name))))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The header named in a clang "file not found" error: a missing package, not a bug.
fn missing_header(stderr: &str) -> Option<&str> {
    let line = stderr.lines().find(|l| l.contains("file not found"))?;
    let start = line.find('\'')? + 1;
    let len = line[start..].find('\'')?;
    Some(&line[start..start + len])
}
