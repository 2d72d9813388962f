//! `cargo xtask demo`: build the release binary and run `examples/demo.toml` in the foreground.
//!
//! The supervisor replaces this process (`exec`), so Ctrl-C and `docker stop`-like signals go
//! straight to it and it shuts its programs down itself.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use anyhow::{bail, Result};

use crate::util;

const CONFIG: &str = "examples/demo.toml";
const METRICS_ADDR: &str = "127.0.0.1:9469";

pub fn run(args: &[String]) -> Result<ExitCode> {
    // Anything after `demo` (an optional leading `--`) goes to `supervisor run`.
    let extra = match args.first().map(String::as_str) {
        Some("--") => &args[1..],
        _ => args,
    };
    let root = util::workspace_root();
    if !root.join(CONFIG).is_file() {
        bail!("{CONFIG} does not exist yet: nothing to demo");
    }
    crate::deps::ensure(crate::deps::BUILD_PACKAGES)?;
    let bin = util::build_release_supervisor()?;
    let shown = bin
        .strip_prefix(&root)
        .unwrap_or(&bin)
        .display()
        .to_string();
    println!("==> running {shown} run -c {CONFIG} --metrics-addr {METRICS_ADDR}");
    println!("    metrics:  curl http://{METRICS_ADDR}/metrics");
    println!("    stop:     press Ctrl-C");
    let err = Command::new(&bin)
        .current_dir(&root)
        .args(["run", "-c", CONFIG, "--metrics-addr", METRICS_ADDR])
        .args(extra)
        .exec();
    bail!("cannot execute {}: {err}", bin.display())
}
