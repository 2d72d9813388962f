//! Project automation, run as `cargo xtask <command>` (an alias in `.cargo/config.toml`).
//!
//! - `test`: installs the system packages the tests need, builds the release binary, then runs
//!   rustfmt, clippy and every test under one global timeout ([`test`]).
//! - `demo`: builds and runs `examples/demo.toml` in the foreground ([`demo`]).
//! - `docker`: starts a private Docker engine and builds the example images without a registry
//!   ([`docker`]); `docker down` stops the engine.
//! - `venv`: the Python tools the tests drive (supervisord, superlance, kubernetes-validate)
//!   in a virtualenv under target/ ([`venv`]).
//! - `k8s`: writes examples/kubernetes/prometheusrule.yaml from dashboards/alerts.yml and
//!   dashboards/recording.yml ([`k8s`]); `--check` fails if it is out of date.
//! - `bench`: measures our supervisor side by side with supervisord, s6, runit and a bare shell
//!   loop, in one run, and writes `BENCHMARKS.md` ([`bench`]).
//!
//! Plain std + anyhow + libc: this crate must build quickly on a fresh machine.

mod bench;
mod demo;
mod deps;
mod docker;
mod k8s;
mod k8s_rules;
mod procs;
mod test;
mod util;
mod venv;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  test   [--timeout-mins N]     install system packages, build, fmt + clippy + all tests
  demo   [-- SUPERVISOR ARGS]   run examples/demo.toml in the foreground (Ctrl-C stops it)
  docker [up|down]              private dockerd + images supervisor-lamp, supervisor-minimal
  venv                          python venv with supervisord, superlance, kubernetes-validate
  k8s    [--check]              examples/kubernetes/prometheusrule.yaml from dashboards/*.yml
  bench  [--quick] [--only PEER,...] [--out FILE | --no-write]
                                ours vs supervisord, s6, runit, shell loop; writes BENCHMARKS.md
";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let mut args = std::env::args().skip(1);
    let command = args.next();
    let rest: Vec<String> = args.collect();
    match command.as_deref() {
        Some("test") => test::run(&rest),
        Some("demo") => demo::run(&rest),
        Some("bench") => bench::run(&rest),
        Some("docker") => docker::run(&rest),
        Some("k8s") => k8s::run(&rest),
        Some("venv") => venv::run_command(&rest),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        Some(other) => {
            eprint!("xtask: unknown command `{other}`\n\n{USAGE}");
            Ok(ExitCode::from(2))
        }
        None => {
            eprint!("{USAGE}");
            Ok(ExitCode::from(2))
        }
    }
}
