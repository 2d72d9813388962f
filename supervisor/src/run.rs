//! The edges of the program: `supervisor run` and `supervisor check`.
//!
//! `run` resolves settings (command line over config file over defaults), blocks the signals
//! the engine reads before any thread exists, builds a single-threaded tokio runtime, wires the
//! event sinks, and runs the engine until it says what to exit with.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::cli::{Restart, RunArgs};
use crate::config::{self, AutoRestart, Config, Location, ProgramSpec, Settings};
use crate::control;
use crate::engine::{signals, Engine, ProbeSetup, Setup};
use crate::event::{Event, EventBus, EventSink, History, Kind, Level};
use crate::http;
use crate::metrics::Metrics;
use crate::output::fields::LogFields;
use crate::output::Output;

/// Events kept in memory for `/api/events` and `why`.
pub const HISTORY_SIZE: usize = 10_000;

/// `supervisor check -c FILE [--strict] [--json]`.
pub fn check(path: &Path, strict: bool, json: bool) -> anyhow::Result<u8> {
    Ok(config::describe::check(path, strict, json))
}

/// The configuration of one-command mode (`supervisor run -- CMD ARGS...`).
fn one_command_config(cmd: &[String], restart: Restart) -> Config {
    let name = Path::new(&cmd[0])
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("command")
        .to_string();
    let mut spec = ProgramSpec::new(
        &name,
        cmd.to_vec(),
        Location {
            file: "<command line>".into(),
            line: 0,
        },
    );
    spec.critical = true;
    spec.stopwaitsecs = Duration::from_secs(8);
    match restart {
        Restart::Never => {
            spec.autorestart = AutoRestart::Never;
            spec.startsecs = Duration::ZERO;
            spec.startretries = 0;
        }
        Restart::OnFailure => spec.autorestart = AutoRestart::Unexpected,
        Restart::Always => spec.autorestart = AutoRestart::Always,
    }
    Config {
        source: "<command line>".into(),
        settings: Settings::default(),
        programs: vec![spec],
        eventlisteners: vec![],
        notices: vec![],
        warnings: vec![],
    }
}

/// `supervisor run`.
pub fn run(args: RunArgs) -> anyhow::Result<u8> {
    let (cfg, config_path) = match (&args.config, args.cmd.is_empty()) {
        (Some(path), _) => match config::load(path) {
            Ok(cfg) => (cfg, Some(path.clone())),
            Err(e) => {
                eprintln!("supervisor: {e}");
                eprintln!("supervisor: nothing was started; fix the configuration and start again (`supervisor check -c {}` validates it)", path.display());
                return Ok(2);
            }
        },
        (None, false) => (one_command_config(&args.cmd, args.restart), None),
        (None, true) => bail!("nothing to supervise: give a config file (`supervisor run -c FILE`) or a command (`supervisor run -- CMD ARGS...`)"),
    };
    let log_format = args
        .log_format
        .or(cfg.settings.log_format)
        .unwrap_or_default();
    let shutdown_timeout = match args.shutdown_timeout {
        Some(s) => match config::expand::seconds(s) {
            Ok(d) if !d.is_zero() => d,
            _ => bail!(
                "--shutdown-timeout {s}: must be a number of seconds above 0 and at most {} (one year)",
                config::expand::MAX_SECONDS
            ),
        },
        None => cfg
            .settings
            .shutdown_timeout
            .unwrap_or(config::DEFAULT_SHUTDOWN_TIMEOUT),
    };
    let log_fields = LogFields::parse(&args.log_fields)?;
    let probe_mode = args.probe.or(cfg.settings.probe).unwrap_or_default();
    let min_level = if args.debug {
        Level::Debug
    } else {
        Level::Info
    };
    let metrics_addr = match args.metrics_addr.as_deref() {
        Some(s) => http::parse_addr(s).map_err(|e| anyhow::anyhow!("--metrics-addr {e}"))?,
        None => match cfg.settings.metrics_addr {
            Some(addr) => addr,
            None => http::parse_addr(config::DEFAULT_METRICS_ADDR).map_err(anyhow::Error::msg)?,
        },
    };
    let socket_path = args
        .socket
        .clone()
        .or_else(|| cfg.settings.socket.clone())
        .unwrap_or_else(|| config::DEFAULT_SOCKET.into());
    let remote = match control::remote::resolve(
        args.control_addr.as_deref(),
        args.control_token_file.as_deref(),
        &cfg.settings,
    ) {
        Ok(remote) => remote,
        Err(e) => {
            eprintln!("supervisor: {e}");
            eprintln!("supervisor: nothing was started; remote control stays off unless it can be locked with a token");
            return Ok(2);
        }
    };
    let metrics = Arc::new(Metrics::new());
    metrics.set_config_hash(cfg.hash());

    // One malloc arena: the supervisor is one runtime thread plus a few writer threads, and a
    // per-thread arena would keep what the probe's loading thread freed (megabytes of BTF).
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes glibc's allocator settings; called before other threads.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    // Before any thread exists, so that every thread inherits the mask.
    signals::block().context("blocking signals for the signalfd")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let code = rt.block_on(async move {
        let output = Output::new(log_format);
        output.set_log_fields(log_fields);
        let history = Arc::new(History::new(HISTORY_SIZE));
        // The log is fed like the metrics, as each event is emitted: it cannot fall behind.
        let log = output.event_log(min_level, metrics.clone());
        let sinks: Vec<Arc<dyn EventSink>> = vec![history.clone(), metrics.clone(), log];
        let bus = EventBus::new(sinks);
        let signals = signals::Signals::new().context("creating the signalfd")?;

        let mut started = Event::new(
            Level::Info,
            Kind::Started,
            format!(
                "supervisor {} started with pid {} ({} programs from {})",
                env!("CARGO_PKG_VERSION"),
                std::process::id(),
                cfg.programs.len(),
                cfg.source.display()
            ),
        );
        started.pid = Some(std::process::id());
        bus.emit(started);
        for n in &cfg.notices {
            bus.emit(Event::new(Level::Info, Kind::Notice, n.clone()));
        }
        for w in &cfg.warnings {
            bus.emit(Event::new(Level::Warn, Kind::Notice, w.clone()));
        }
        if std::process::id() != 1 {
            bus.emit(Event::new(
                Level::Info,
                Kind::Notice,
                "not running as PID 1: registering as a child subreaper so orphans of programs are reaped here".to_string(),
            ));
        }
        // Loading the probe takes tens of milliseconds (kernel BTF parsing): with `auto` it
        // happens on a blocking thread while the programs start, and the engine watches them
        // once it arrives; `on` must know before anything starts.
        let load = {
            let bus = bus.clone();
            let metrics = metrics.clone();
            move || -> Result<Option<crate::probe::Probe>, crate::probe::ProbeError> {
                let (probe, status) = crate::probe::Probe::load(probe_mode)?;
                // The BTF parsed while loading is freed: hand the memory back to the system.
                release_freed_memory();
                let line = match (&status, &probe) {
                    (crate::probe::ProbeStatus::Loaded, Some(p)) => format!(
                        "eBPF probe loaded in {} ms: signal senders, exits and OOM kills of programs are recorded (`supervisor why NAME`)",
                        p.load_time().as_millis()
                    ),
                    (crate::probe::ProbeStatus::Off(reason), _) => reason.clone(),
                    _ => "eBPF probe off".to_string(),
                };
                metrics.set_probe_loaded(probe.is_some());
                if let Some(p) = &probe {
                    metrics.set_probe_lost_counter(p.lost_counter());
                }
                bus.emit(Event::new(Level::Info, Kind::Notice, line));
                if let Some(p) = &probe {
                    for note in p.notes() {
                        bus.emit(Event::new(Level::Warn, Kind::Notice, note.clone()));
                    }
                }
                Ok(probe)
            }
        };
        let probe = if probe_mode == crate::config::ProbeMode::On {
            match tokio::task::spawn_blocking(load).await {
                Ok(Ok(probe)) => ProbeSetup::Ready(probe.map(Box::new)),
                Ok(Err(e)) => anyhow::bail!("{e} (--probe on was asked; use --probe auto to run without it)"),
                Err(e) => anyhow::bail!("loading the eBPF probe failed: {e}"),
            }
        } else {
            let (tx, rx) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                // After the engine's first turn (the autostart programs are spawned by then),
                // so that loading does not compete with starting them.
                tokio::task::yield_now().await;
                let loaded = tokio::task::spawn_blocking(load).await;
                // With `auto` a failure is already an `Off` status; `Err` cannot happen.
                let _ = tx.send(loaded.ok().and_then(Result::ok).flatten());
            });
            ProbeSetup::Later(rx)
        };
        let one_command = config_path.is_none();
        let rpc_servers = cfg.settings.rpc.clone();
        let setup = Setup { config: cfg, config_path, shutdown_timeout, one_command, probe };
        let (engine, handle) = Engine::new(setup, bus.clone(), history, output.clone());
        let control = control::Server::new(handle.clone(), output.clone(), control::Limits::default());
        // Removes the socket file when supervision ends.
        let _socket = control::start(&socket_path, control.clone()).await;
        let _rpc_socket = crate::xmlrpc::start(&rpc_servers, handle.clone(), output.clone()).await;
        if let Some(remote) = remote {
            control::remote::start(remote, control).await;
        }
        if let Some(addr) = metrics_addr {
            http::start(addr, http::App::new(handle, metrics, http::Limits::default())).await;
        }
        let code = engine.run(signals).await;
        // Let the last events and output lines reach stdout.
        output.drain(Duration::from_secs(2)).await;
        anyhow::Ok(code)
    })?;
    Ok(u8::try_from(code.clamp(0, 255)).unwrap_or(1))
}

/// Returns freed heap memory to the system (glibc keeps it otherwise).
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory at the top of glibc's heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}
