//! `cargo xtask docker [up|down]`: a private Docker engine and the example images, without a
//! registry.
//!
//! - The engine is Debian's `dockerd`, started with `--bridge=none --iptables=false
//!   --ip6tables=false` (containers use `--network host` or `none`, so the host's network is
//!   never touched), its own socket ([`SOCKET`]), pid file, exec root under [`RUN_DIR`] and data
//!   root under `target/docker/`. It outlives `up` (a daemon, in its own session) and `down`
//!   stops it by the pid in its pid file. If overlay2 cannot work here, the vfs driver is used.
//! - Base images are built from what is on the machine: Debian bookworm with debootstrap from the
//!   configured apt mirror (`supervisor-lamp-base`), and Debian's static busybox
//!   (`supervisor-minimal-base`); both go in with `docker import`. Each is tagged with a hash of
//!   its inputs and kept in the engine's data root, so the next run reuses it.
//! - Then `docker build` makes `supervisor-lamp` and `supervisor-minimal` from `examples/`, with
//!   `target/release/supervisor` copied into the build context (and, for the minimal image,
//!   the shared libraries it needs, found with `ldd`: the binary links glibc dynamically).

use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{procs, util};

/// Runtime files of the private engine: short paths (containerd's sockets live under the exec
/// root, and a unix socket path must fit in 108 bytes).
pub const RUN_DIR: &str = "/run/supervisor-xtask-docker";
/// The engine's API socket.
pub const SOCKET: &str = "/run/supervisor-xtask-docker/docker.sock";
/// What `DOCKER_HOST` must say to reach it.
pub const DOCKER_HOST: &str = "unix:///run/supervisor-xtask-docker/docker.sock";

/// Change this to force a rebuild of the base images (it is part of their cache key).
const RECIPE: &str = "1";
/// The Debian release of the LAMP base image.
const SUITE: &str = "bookworm";
/// What the LAMP base image has installed on top of debootstrap's minbase.
const LAMP_PACKAGES: &[&str] = &["apache2", "mariadb-server", "curl", "procps"];
/// Debian's busybox-static installs it here.
const BUSYBOX: &str = "/bin/busybox";
/// How long the engine may take to answer after it starts.
const ENGINE_START: Duration = Duration::from_secs(60);

pub fn run(args: &[String]) -> Result<ExitCode> {
    match args.first().map(String::as_str) {
        None | Some("up") => {
            let bin = util::supervisor_bin();
            if !bin.exists() {
                util::build_release_supervisor()?;
            }
            up(&bin)?;
            println!("==> ready; use it with:\n    export DOCKER_HOST={DOCKER_HOST}");
            println!("    stop it with: cargo xtask docker down");
            Ok(ExitCode::SUCCESS)
        }
        Some("down") => {
            down()?;
            Ok(ExitCode::SUCCESS)
        }
        Some(other) => bail!("unknown `docker` command {other}: use up or down"),
    }
}

/// Starts the engine (unless it already answers) and builds the images.
pub fn up(bin: &Path) -> Result<()> {
    let started = Instant::now();
    ensure_engine()?;
    let lamp_base = lamp_base()?;
    let minimal_base = minimal_base()?;
    build_lamp(bin, &lamp_base)?;
    build_minimal(bin, &minimal_base)?;
    prune(&[
        ("supervisor-lamp-base", &lamp_base),
        ("supervisor-minimal-base", &minimal_base),
    ]);
    println!(
        "==> docker engine and images ready in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Where the engine keeps images and containers, and where the build contexts are staged.
fn cache_dir() -> PathBuf {
    util::target_dir().join("docker")
}

fn pid_file() -> PathBuf {
    Path::new(RUN_DIR).join("dockerd.pid")
}

/// A `docker` CLI command talking to our engine.
fn docker() -> Command {
    let mut cmd = Command::new("docker");
    cmd.env("DOCKER_HOST", DOCKER_HOST)
        // The classic builder: BuildKit needs the buildx plugin, which Debian's docker.io lacks.
        .env("DOCKER_BUILDKIT", "0");
    cmd
}

/// Does the engine answer on its socket?
fn engine_answers() -> bool {
    docker()
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The pid in the pid file, if that process is alive and is a dockerd.
fn running_dockerd() -> Option<i32> {
    let pid: i32 = fs::read_to_string(pid_file()).ok()?.trim().parse().ok()?;
    let exe = procs::exe(pid)?;
    exe.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("dockerd"))
        .then_some(pid)
}

fn ensure_engine() -> Result<()> {
    if running_dockerd().is_some() && engine_answers() {
        println!("==> docker engine already running at {DOCKER_HOST}");
        return Ok(());
    }
    // A dockerd of ours that does not answer (a crashed run): stop it, start afresh.
    down()?;
    if start_engine(None).is_err() {
        // The usual reason: no overlay filesystem here (e.g. the data root on overlayfs or a
        // kernel without it). vfs copies whole layers but works everywhere.
        eprintln!("xtask: dockerd did not come up with its default storage driver; trying vfs");
        down()?;
        start_engine(Some("vfs"))?;
    }
    Ok(())
}

/// Starts dockerd in its own session (it outlives us) and waits until it answers.
fn start_engine(storage_driver: Option<&str>) -> Result<()> {
    let dockerd = which("dockerd")
        .context("dockerd not found: install Debian's docker.io (cargo xtask test installs it)")?;
    let data_root = cache_dir().join("data-root");
    let exec_root = Path::new(RUN_DIR).join("exec");
    fs::create_dir_all(&data_root).with_context(|| format!("mkdir {}", data_root.display()))?;
    fs::create_dir_all(&exec_root).with_context(|| format!("mkdir {}", exec_root.display()))?;
    let log_path = cache_dir().join("dockerd.log");
    let log =
        fs::File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
    let mut cmd = Command::new(dockerd);
    cmd.args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
        .arg("--host")
        .arg(format!("unix://{SOCKET}"))
        .arg("--data-root")
        .arg(&data_root)
        .arg("--exec-root")
        .arg(&exec_root)
        .arg("--pidfile")
        .arg(pid_file());
    if let Some(driver) = storage_driver {
        cmd.args(["--storage-driver", driver]);
    }
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own session: a Ctrl-C or a step timeout aimed at us does not take it down
        // half-way; `down` stops it.
        .process_group(0);
    println!(
        "==> starting dockerd (log: {}){}",
        log_path.display(),
        storage_driver.map_or(String::new(), |d| format!(" with --storage-driver {d}"))
    );
    let started = Instant::now();
    let mut child = cmd.spawn().context("cannot start dockerd")?;
    let deadline = Instant::now() + ENGINE_START;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "dockerd exited at once ({status}); the end of its log:\n{}",
                tail(&log_path, 15)
            );
        }
        if Path::new(SOCKET).exists() && engine_answers() {
            let driver = docker()
                .args(["info", "--format", "{{.Driver}}"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            println!(
                "==> dockerd (pid {}) answers after {:.1}s; storage driver {driver}",
                child.id(),
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = procs::PidFd::open(child.id() as i32).map(|fd| fd.signal(libc::SIGTERM));
            let _ = child.wait();
            bail!(
                "dockerd did not answer within {ENGINE_START:?}; the end of its log:\n{}",
                tail(&log_path, 15)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stops our dockerd by the pid in its pid file (SIGTERM, then SIGKILL after 30 s). Nothing
/// to do if it is not running.
pub fn down() -> Result<()> {
    let Some(pid) = running_dockerd() else {
        return Ok(());
    };
    let fd = procs::PidFd::open(pid).with_context(|| format!("pidfd_open({pid})"))?;
    println!("==> stopping dockerd (pid {pid})");
    fd.signal(libc::SIGTERM)
        .with_context(|| format!("SIGTERM to dockerd (pid {pid})"))?;
    let fds = [fd];
    if procs::wait_all_exited(&fds, Instant::now() + Duration::from_secs(30)) > 0 {
        eprintln!("xtask: dockerd (pid {pid}) did not stop within 30 s: SIGKILL");
        fds[0].signal(libc::SIGKILL)?;
        procs::wait_all_exited(&fds, Instant::now() + Duration::from_secs(5));
    }
    // dockerd leaves its default network namespace bind-mounted; the next start makes a new one.
    let netns = Path::new(RUN_DIR).join("exec/netns/default");
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == netns.to_str())
    {
        let _ = Command::new("umount").arg(&netns).status();
    }
    Ok(())
}

/// Removes base images of older recipes and the untagged images rebuilds leave behind, so
/// the data root does not grow run after run.
fn prune(current: &[(&str, &str)]) {
    for (repo, keep) in current {
        let Ok(out) = docker()
            .args(["images", repo, "--format", "{{.Repository}}:{{.Tag}}"])
            .output()
        else {
            continue;
        };
        for tag in String::from_utf8_lossy(&out.stdout).lines() {
            if tag != *keep {
                let _ = docker().args(["rmi", tag]).stdout(Stdio::null()).status();
            }
        }
    }
    let _ = docker()
        .args(["image", "prune", "--force"])
        .stdout(Stdio::null())
        .status();
}

/// Is `tag` in the engine's image store?
fn have_image(tag: &str) -> bool {
    docker()
        .args(["image", "inspect", tag])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The first 16 hex digits of the SHA-256 of `parts` (coreutils' sha256sum: std has no hash
/// that is stable across Rust releases).
fn cache_key(parts: &[&[u8]]) -> Result<String> {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run sha256sum")?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().context("sha256sum stdin")?;
        for part in parts {
            stdin.write_all(part)?;
            stdin.write_all(b"\0")?;
        }
    }
    let out = child.wait_with_output()?;
    let hex = String::from_utf8_lossy(&out.stdout);
    Ok(hex.chars().take(16).collect())
}

/// `supervisor-lamp-base:<key>`: bookworm + apache2, MariaDB, curl, procps.
fn lamp_base() -> Result<String> {
    let mirror = debian_mirror()?;
    let packages = LAMP_PACKAGES.join(",");
    let key = cache_key(&[
        RECIPE.as_bytes(),
        SUITE.as_bytes(),
        mirror.as_bytes(),
        packages.as_bytes(),
    ])?;
    let tag = format!("supervisor-lamp-base:{key}");
    if have_image(&tag) {
        println!("==> {tag}: cached");
        return Ok(tag);
    }
    which("debootstrap").context("debootstrap not found: apt-get install debootstrap")?;
    let rootfs = cache_dir().join(format!("rootfs-lamp-{key}"));
    let _cleanup = RemoveOnDrop(rootfs.clone());
    if rootfs.exists() {
        fs::remove_dir_all(&rootfs)?;
    }
    println!("==> {tag}: debootstrap {SUITE} from {mirror} (+ {packages})");
    let started = Instant::now();
    let log_path = cache_dir().join("debootstrap.log");
    let log = fs::File::create(&log_path)?;
    let status = Command::new("debootstrap")
        .args(["--variant=minbase", &format!("--include={packages}"), SUITE])
        .arg(&rootfs)
        .arg(&mirror)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .context("cannot run debootstrap")?;
    if !status.success() {
        bail!(
            "debootstrap failed ({status}); the end of {}:\n{}",
            log_path.display(),
            tail(&log_path, 20)
        );
    }
    println!(
        "    debootstrap took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // Downloaded packages and index files are of no use in the image.
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        for entry in fs::read_dir(rootfs.join(dir))?.flatten() {
            if entry.file_type()?.is_file() {
                fs::remove_file(entry.path())?;
            }
        }
    }
    import(&rootfs, &tag)?;
    println!("    {tag} built in {:.1}s", started.elapsed().as_secs_f64());
    Ok(tag)
}

/// `supervisor-minimal-base:<key>`: Debian's static busybox and its applet links.
fn minimal_base() -> Result<String> {
    let busybox = fs::read(BUSYBOX)
        .with_context(|| format!("cannot read {BUSYBOX}: apt-get install busybox-static"))?;
    let key = cache_key(&[RECIPE.as_bytes(), &busybox])?;
    let tag = format!("supervisor-minimal-base:{key}");
    if have_image(&tag) {
        println!("==> {tag}: cached");
        return Ok(tag);
    }
    println!("==> {tag}: busybox from {BUSYBOX}");
    let rootfs = cache_dir().join(format!("rootfs-minimal-{key}"));
    let _cleanup = RemoveOnDrop(rootfs.clone());
    if rootfs.exists() {
        fs::remove_dir_all(&rootfs)?;
    }
    for dir in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "run", "root", "var/www",
    ] {
        fs::create_dir_all(rootfs.join(dir))?;
    }
    fs::copy(BUSYBOX, rootfs.join("bin/busybox"))?;
    let list = Command::new(BUSYBOX)
        .arg("--list-full")
        .output()
        .context("busybox --list-full")?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = rootfs.join(applet);
        if applet != "bin/busybox" && !link.exists() {
            std::os::unix::fs::symlink("/bin/busybox", &link)
                .with_context(|| format!("symlink {}", link.display()))?;
        }
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    fs::write(rootfs.join("etc/group"), "root:x:0:\n")?;
    import(&rootfs, &tag)?;
    Ok(tag)
}

/// `tar -c ROOTFS | docker import - TAG`.
fn import(rootfs: &Path, tag: &str) -> Result<()> {
    let started = Instant::now();
    let mut tar = Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(rootfs)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run tar")?;
    let tar_out = tar.stdout.take().context("tar stdout")?;
    let status = docker()
        .args(["import", "-", tag])
        .stdin(tar_out)
        .stdout(Stdio::null())
        .status()
        .context("cannot run docker import")?;
    let tar_status = tar.wait()?;
    if !tar_status.success() || !status.success() {
        bail!("tar | docker import {tag} failed (tar: {tar_status}, docker: {status})");
    }
    println!(
        "    docker import {tag} took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Copies `examples/NAME` and the supervisor binary into a fresh build context.
fn stage_context(name: &str, bin: &Path) -> Result<PathBuf> {
    let ctx = cache_dir().join(format!("context-{name}"));
    if ctx.exists() {
        fs::remove_dir_all(&ctx)?;
    }
    copy_tree(&util::workspace_root().join("examples").join(name), &ctx)?;
    fs::copy(bin, ctx.join("supervisor"))
        .with_context(|| format!("copy {} into the build context", bin.display()))?;
    Ok(ctx)
}

fn build(ctx: &Path, base: &str, tag: &str) -> Result<()> {
    let started = Instant::now();
    // --network none: no RUN step may reach out (there is nothing to reach anyway).
    let out = docker()
        .args(["build", "--quiet", "--network", "none", "--build-arg"])
        .arg(format!("BASE={base}"))
        .args(["--tag", tag])
        .arg(ctx)
        .output()
        .context("cannot run docker build")?;
    if !out.status.success() {
        bail!(
            "docker build -t {tag} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    println!(
        "==> docker build -t {tag} ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn build_lamp(bin: &Path, base: &str) -> Result<()> {
    let ctx = stage_context("lamp", bin)?;
    build(&ctx, base, "supervisor-lamp")
}

/// The minimal image also needs the shared libraries of our (glibc, dynamically linked)
/// binary: they go into `libs/` of the context, at their paths, and the Dockerfile copies
/// `libs/` to `/`.
fn build_minimal(bin: &Path, base: &str) -> Result<()> {
    let ctx = stage_context("minimal", bin)?;
    for lib in shared_libs(bin)? {
        let rel = lib.strip_prefix("/").unwrap_or(&lib);
        let dest = ctx.join("libs").join(rel);
        fs::create_dir_all(dest.parent().unwrap_or(&ctx))?;
        // fs::copy follows symlinks: the image gets the library itself under the linked name.
        fs::copy(&lib, &dest).with_context(|| format!("copy {}", lib.display()))?;
    }
    fs::create_dir_all(ctx.join("libs"))?;
    build(&ctx, base, "supervisor-minimal")
}

/// The absolute paths `ldd` names for `bin` (including the dynamic loader).
fn shared_libs(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .context("cannot run ldd")?;
    if !out.status.success() {
        bail!("ldd {} failed", bin.display());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut libs = Vec::new();
    for line in text.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

/// The first Debian mirror in apt's sources that serves `SUITE` (`SUPERVISOR_DEBIAN_MIRROR`
/// overrides it): the build reaches only what this machine's apt already reaches.
fn debian_mirror() -> Result<String> {
    if let Ok(m) = std::env::var("SUPERVISOR_DEBIAN_MIRROR") {
        return Ok(m);
    }
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        let found = if file.extension().is_some_and(|e| e == "sources") {
            mirror_in_deb822(&text)
        } else {
            mirror_in_one_line(&text)
        };
        if let Some(m) = found {
            return Ok(m);
        }
    }
    bail!(
        "no apt source for Debian {SUITE} main in /etc/apt/sources.list*: \
         set SUPERVISOR_DEBIAN_MIRROR to a Debian mirror URL"
    )
}

/// `deb [options] URI SUITE COMPONENTS...` lines.
fn mirror_in_one_line(text: &str) -> Option<String> {
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            continue;
        }
        let mut rest: Vec<&str> = words.collect();
        if rest.first().is_some_and(|w| w.starts_with('[')) {
            let end = rest.iter().position(|w| w.ends_with(']'))?;
            rest.drain(..=end);
        }
        if rest.len() >= 3 && rest[1] == SUITE && rest[2..].contains(&"main") {
            return Some(rest[0].to_string());
        }
    }
    None
}

/// deb822 stanzas: `Types: deb`, `URIs:`, `Suites:`, `Components:`.
fn mirror_in_deb822(text: &str) -> Option<String> {
    for stanza in text.split("\n\n") {
        let field = |name: &str| -> Vec<&str> {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.split_whitespace().collect())
                .unwrap_or_default()
        };
        if field("Types:").contains(&"deb")
            && field("Suites:").contains(&SUITE)
            && field("Components:").contains(&"main")
        {
            if let Some(uri) = field("URIs:").first() {
                return Some(uri.to_string());
            }
        }
    }
    None
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from).with_context(|| format!("read {}", from.display()))? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else {
            // fs::copy keeps the permission bits (the start scripts stay executable).
            fs::copy(entry.path(), &dest)
                .with_context(|| format!("copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Removes a scratch directory however the function that made it returns; first unmounts what
/// a failed debootstrap may have left mounted inside it (its /proc, /sys), deepest first, so
/// the removal never descends into a live filesystem.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut inside: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| Path::new(m).starts_with(&self.0))
            .collect();
        inside.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in inside {
            let _ = Command::new("umount").args(["--lazy", m]).status();
        }
        if self.0.exists() {
            if let Err(err) = fs::remove_dir_all(&self.0) {
                eprintln!("xtask: warning: cannot remove {}: {err}", self.0.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_mirror_in_both_formats() {
        let deb822 = "Types: deb\nURIs: http://deb.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://deb.example/debian-security\nSuites: bookworm-security\nComponents: main\n";
        assert_eq!(
            mirror_in_deb822(deb822).as_deref(),
            Some("http://deb.example/debian")
        );
        let one = "# c\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main contrib\n";
        assert_eq!(
            mirror_in_one_line(one).as_deref(),
            Some("http://m.example/debian")
        );
        assert_eq!(mirror_in_one_line("deb http://x/ bullseye main\n"), None);
    }
}
