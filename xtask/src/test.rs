//! `cargo xtask test`: everything CI checks, in the order a failure is cheapest to report.
//!
//! 1. System packages the e2e tests drive (supervisord, s6, runit, Prometheus, ...): installed if
//!    missing ([`crate::deps`]); the Python tools (supervisord as oracle, supervisorctl,
//!    superlance, kubernetes-validate) in a venv ([`crate::venv`]).
//! 2. `cargo build --release -p supervisor`: the e2e tests run `target/release/supervisor`, found
//!    through `SUPERVISOR_BIN`.
//! 3. `cargo fmt --check`, `cargo clippy -D warnings`, then a private Docker engine with the
//!    example images (`xtask docker up`), `cargo test --workspace --release` (with `DOCKER_HOST`
//!    set for tests/tests/docker.rs), and the engine is stopped.
//!
//! 4. The cargo-fuzz targets (`fuzz/`), briefly: cargo-fuzz is installed if missing, the
//!    targets are built once (`cargo fuzz build -O`, its own target dir, fuzz/target), then each
//!    runs for [`FUZZ_SECONDS`] from its corpus. A crash, a leak or a slow input fails its step;
//!    libFuzzer leaves the input in fuzz/artifacts/TARGET/ and cargo-fuzz prints how to replay it.
//!    These run even when earlier steps failed: they do not use the release build.
//!
//! Every step runs even if an earlier one failed (except the tests, when the build failed), so
//! one run shows every problem; a summary follows and the exit status is non-zero on any failure.
//! One global deadline covers all steps: a step still running then has its whole process tree
//! killed, so a hung test fails CI instead of hanging it.

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{deps, docker, procs, util, venv};

/// Default global budget for the whole run.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(25 * 60);

/// The cargo-fuzz targets run in CI (fuzz/fuzz_targets/), and the step name of each.
const FUZZ_TARGETS: &[(&str, &str)] = &[
    ("fuzz:control_request", "control_request"),
    ("fuzz:config_ini", "config_ini"),
    ("fuzz:config_toml", "config_toml"),
    ("fuzz:config_engine", "config_engine"),
];
/// How long each fuzz target runs (`-max_total_time`); longer runs are by hand (fuzz/README.md).
const FUZZ_SECONDS: u32 = 15;
/// One input taking longer than this counts as a failure (`-timeout`; libFuzzer's default is
/// 20 minutes, longer than the whole run).
const FUZZ_INPUT_TIMEOUT_SECS: u32 = 10;

/// How a step ended.
enum Outcome {
    Passed,
    Failed(String),
    TimedOut,
    Skipped(&'static str),
}

pub fn run(args: &[String]) -> Result<ExitCode> {
    let timeout = parse_args(args)?;
    let deadline = Instant::now() + timeout;

    deps::ensure(deps::TEST_PACKAGES)?;
    let venv = venv::ensure()?;

    let bin = util::supervisor_bin();
    let mut results: Vec<(&str, Outcome, Duration)> = Vec::new();
    // A step runs its command, or is skipped for the given reason.
    let mut step = |name: &'static str, cmd: Result<Command, &'static str>| {
        let started = Instant::now();
        let outcome = match cmd {
            Ok(cmd) => run_step(name, cmd, deadline),
            Err(why) => Outcome::Skipped(why),
        };
        let passed = matches!(outcome, Outcome::Passed);
        results.push((name, outcome, started.elapsed()));
        passed
    };

    const NO_BUILD: &str = "the release build failed";
    let built = step(
        "build",
        Ok(cargo(&["build", "--release", "-p", "supervisor"])),
    );
    step("fmt", Ok(cargo(&["fmt", "--all", "--", "--check"])));
    step(
        "clippy",
        Ok(cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])),
    );
    // A private Docker engine with the example images, for tests/tests/docker.rs ([`docker`]).
    let docker_up = step(
        "docker",
        built.then(|| xtask(&["docker", "up"])).ok_or(NO_BUILD),
    );
    let tests = built.then(|| {
        // --no-fail-fast: a failing test binary does not hide the results of the next ones.
        let mut cmd = cargo(&["test", "--workspace", "--release", "--no-fail-fast"]);
        cmd.env("SUPERVISOR_BIN", &bin)
            .env("SUPERVISOR_VENV", &venv);
        if docker_up {
            cmd.env("DOCKER_HOST", docker::DOCKER_HOST)
                .env("SUPERVISOR_DOCKER_IMAGES", "1");
        }
        cmd
    });
    step("test", tests.ok_or(NO_BUILD));
    // Stopped here, not as a step: this must run even after the global deadline.
    if let Err(err) = docker::down() {
        eprintln!("xtask: cannot stop the docker engine: {err:#}");
    }

    // The fuzz targets, briefly.
    let have_fuzz = cargo_fuzz_installed()
        || {
            println!("\nxtask: cargo-fuzz is not installed: installing it (cargo install cargo-fuzz --locked)");
            step(
                "fuzz-install",
                Ok(cargo(&["install", "cargo-fuzz", "--locked"])),
            )
        };
    let fuzz_built = step(
        "fuzz-build",
        have_fuzz
            .then(|| fuzz(&["build", "-O"]))
            .ok_or("cargo-fuzz could not be installed"),
    );
    let max_time = format!("-max_total_time={FUZZ_SECONDS}");
    let input_timeout = format!("-timeout={FUZZ_INPUT_TIMEOUT_SECS}");
    for (name, target) in FUZZ_TARGETS {
        let run = fuzz(&["run", "-O", target, "--", &max_time, &input_timeout]);
        step(
            name,
            fuzz_built.then_some(run).ok_or("the fuzz build failed"),
        );
    }

    println!("\n==> summary");
    let mut ok = true;
    for (name, outcome, took) in &results {
        let verdict = match outcome {
            Outcome::Passed => "ok".to_string(),
            Outcome::Failed(why) => {
                ok = false;
                format!("FAILED ({why})")
            }
            Outcome::TimedOut => {
                ok = false;
                format!("TIMED OUT (global budget {} min)", timeout.as_secs() / 60)
            }
            Outcome::Skipped(why) => {
                ok = false;
                format!("skipped: {why}")
            }
        };
        println!("    {name:<20} {:>6.1}s  {verdict}", took.as_secs_f64());
    }
    println!("{}", if ok { "==> all passed" } else { "==> FAILED" });
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn parse_args(args: &[String]) -> Result<Duration> {
    let mut timeout = DEFAULT_TIMEOUT;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--timeout-mins" => {
                let v = it.next().context("--timeout-mins needs a number")?;
                let mins: u64 = v
                    .parse()
                    .with_context(|| format!("bad --timeout-mins {v}"))?;
                timeout = Duration::from_secs(mins * 60);
            }
            other => bail!("unknown option for `test`: {other}"),
        }
    }
    Ok(timeout)
}

/// This xtask again, as a step of its own (so the step timeout covers it).
fn xtask(args: &[&str]) -> Command {
    let exe = std::env::current_exe().unwrap_or_else(|_| "xtask".into());
    let mut cmd = Command::new(exe);
    cmd.args(args).current_dir(util::workspace_root());
    cmd
}

fn cargo(args: &[&str]) -> Command {
    let mut cmd = util::cargo();
    cmd.args(args);
    cmd
}

/// `cargo fuzz ARGS` in fuzz/. `RUSTC_BOOTSTRAP=1` lets the stable toolchain take the nightly
/// flags cargo-fuzz passes (`-Zsanitizer=address`, ...); the fuzz crate has its own target dir.
fn fuzz(args: &[&str]) -> Command {
    let mut cmd = util::cargo();
    cmd.arg("fuzz")
        .args(args)
        .current_dir(util::workspace_root().join("fuzz"))
        .env("RUSTC_BOOTSTRAP", "1");
    cmd
}

/// Whether `cargo fuzz --version` works.
fn cargo_fuzz_installed() -> bool {
    util::cargo()
        .args(["fuzz", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs one step with the terminal attached; kills its process tree at the deadline.
fn run_step(name: &str, mut cmd: Command, deadline: Instant) -> Outcome {
    let shown: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    println!("\n==> [{name}] {}", shown.join(" "));
    if Instant::now() >= deadline {
        return Outcome::TimedOut;
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(err) => return Outcome::Failed(format!("cannot start: {err}")),
    };
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Outcome::Passed,
            Ok(Some(status)) => return Outcome::Failed(status.to_string()),
            Ok(None) => {}
            Err(err) => return Outcome::Failed(format!("cannot wait: {err}")),
        }
        if Instant::now() >= deadline {
            eprintln!(
                "xtask: [{name}] global timeout reached: killing it and everything it started"
            );
            procs::kill_tree(child.id() as i32, Duration::from_secs(5));
            let _ = child.kill();
            let _ = child.wait();
            return Outcome::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
