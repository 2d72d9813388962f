//! `supervisor check`: the effective configuration, as a person reads it.
//!
//! After parsing, defaults, `numprocs` and `%(name)s` expansion, what will actually run can look
//! quite different from what the file says. This prints it: the settings the file sets, every
//! process in start order with the values that decide how it is run and restarted, and the
//! notices about what was accepted but ignored, and the warnings (keys supervisord ignores).
//! Environment values are not printed (they often hold secrets), only their names; `--json`
//! prints the whole configuration, environment values included, for programs to read.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use super::{signal_name, AutoRestart, Config, LogTarget, ProgramSpec, Settings};

/// `supervisor check -c FILE [--strict] [--json]`: prints the effective configuration and returns
/// the exit code: 0 valid, 2 an error (or, with `strict`, a warning).
pub fn check(path: &Path, strict: bool, json: bool) -> u8 {
    let cfg = match super::load(path) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("supervisor: {e}");
            return 2;
        }
    };
    if strict && !cfg.warnings.is_empty() {
        for w in &cfg.warnings {
            eprintln!(
                "supervisor: {}",
                w.replacen("warning: ", "error (--strict): ", 1)
            );
        }
        eprintln!(
            "supervisor: {} warning{} treated as errors (--strict); fix them, or check without --strict \
             to accept what supervisord accepts",
            cfg.warnings.len(),
            if cfg.warnings.len() == 1 { "" } else { "s" }
        );
        return 2;
    }
    if json {
        match serde_json::to_string_pretty(&cfg) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("supervisor: the configuration cannot be printed as JSON: {e}");
                return 2;
            }
        }
    } else {
        print!("{}", describe(&cfg));
    }
    0
}

/// The effective programs of `config`, one block each, followed by the notices.
pub fn describe(config: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "config: {}", config.source.display());
    let _ = writeln!(out, "settings: {}", settings(&config.settings));
    let count = config.programs.len();
    let _ = writeln!(
        out,
        "{count} program{} (in start order)",
        if count == 1 { "" } else { "s" }
    );
    for p in &config.programs {
        out.push('\n');
        program(&mut out, p);
    }
    for l in &config.eventlisteners {
        let _ = writeln!(
            out,
            "\n[eventlistener:{}] (not run here) events={} buffer_size={} priority={} processes={}",
            l.pool,
            l.events.join(","),
            l.buffer_size,
            l.priority,
            l.processes
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    if !config.notices.is_empty() {
        out.push_str("\nnotices:\n");
        for notice in &config.notices {
            let _ = writeln!(out, "  {notice}");
        }
    }
    if !config.warnings.is_empty() {
        out.push_str("\nwarnings:\n");
        for warning in &config.warnings {
            let _ = writeln!(out, "  {warning}");
        }
    }
    out
}

/// The settings the file sets (the others come from the command line or the defaults).
fn settings(s: &Settings) -> String {
    let mut set = Vec::new();
    if let Some(addr) = &s.metrics_addr {
        set.push(format!(
            "metrics_addr={}",
            addr.map_or_else(|| "off".to_string(), |a| a.to_string())
        ));
    }
    if let Some(socket) = &s.socket {
        set.push(format!("socket={}", socket.display()));
    }
    if let Some(format) = s.log_format {
        set.push(format!(
            "log_format={}",
            format!("{format:?}").to_lowercase()
        ));
    }
    if let Some(probe) = s.probe {
        set.push(format!("probe={}", format!("{probe:?}").to_lowercase()));
    }
    if let Some(timeout) = s.shutdown_timeout {
        set.push(format!("shutdown_timeout={}", secs(timeout)));
    }
    if let Some(addr) = s.control_addr {
        set.push(format!("control_addr={addr}"));
    }
    if let Some(path) = &s.control_token_file {
        set.push(format!("control_token_file={}", path.display()));
    }
    if set.is_empty() {
        "none set in the file (command line or defaults apply)".to_string()
    } else {
        set.join(" ")
    }
}

fn program(out: &mut String, p: &ProgramSpec) {
    let _ = writeln!(out, "{}", p.name);
    let mut rows = vec![
        ("defined at", p.defined_at.to_string()),
        (
            "command",
            p.command
                .iter()
                .map(|a| quote(a))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        ("group", p.group.clone().unwrap_or_else(|| "-".into())),
        ("priority", p.priority.to_string()),
        ("autostart", p.autostart.to_string()),
        ("autorestart", autorestart(p.autorestart).into()),
        (
            "exitcodes",
            p.exitcodes
                .iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("startsecs", secs(p.startsecs)),
        ("startretries", p.startretries.to_string()),
        ("stopsignal", signal_name(p.stopsignal)),
        ("stopwaitsecs", secs(p.stopwaitsecs)),
        ("user", p.user.clone().unwrap_or_else(|| "-".into())),
        (
            "directory",
            p.directory
                .as_ref()
                .map_or_else(|| "-".into(), |d| d.display().to_string()),
        ),
        ("stdout", target(&p.stdout)),
        (
            "stderr",
            if p.redirect_stderr {
                "redirected to stdout".into()
            } else {
                target(&p.stderr)
            },
        ),
        ("critical", p.critical.to_string()),
    ];
    rows.extend(optional_rows(p));
    for (label, value) in rows {
        let _ = writeln!(out, "  {label:<13} {value}");
    }
}

/// Rows shown only when they differ from the defaults.
fn optional_rows(p: &ProgramSpec) -> Vec<(&'static str, String)> {
    let mut rows = Vec::new();
    if !p.depends_on.is_empty() {
        rows.push(("depends_on", p.depends_on.join(", ")));
    }
    if let Some(c) = &p.ready {
        rows.push((
            "ready",
            format!("{} (timeout {})", c, secs(p.ready_timeout)),
        ));
    }
    if let Some(c) = &p.health {
        rows.push((
            "health",
            format!(
                "{} every {}, timeout {}, restart after {} failures",
                c,
                secs(p.health_interval),
                secs(p.health_timeout),
                p.health_retries
            ),
        ));
    }
    if !p.environment.is_empty() {
        rows.push((
            "environment",
            p.environment
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    if let Some(umask) = p.umask {
        rows.push(("umask", format!("{umask:03o}")));
    }
    if p.stopasgroup || p.killasgroup {
        rows.push(("stopasgroup", p.stopasgroup.to_string()));
        rows.push(("killasgroup", p.killasgroup.to_string()));
    }
    rows
}

fn autorestart(a: AutoRestart) -> &'static str {
    match a {
        AutoRestart::Always => "true",
        AutoRestart::Never => "false",
        AutoRestart::Unexpected => "unexpected",
    }
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

fn target(t: &LogTarget) -> String {
    match t {
        LogTarget::Stdout => "the supervisor's stdout".into(),
        LogTarget::Stderr => "the supervisor's stderr".into(),
        LogTarget::Discard => "discarded (NONE)".into(),
        LogTarget::File {
            path, max_bytes: 0, ..
        } => format!("{} (never rotated)", path.display()),
        LogTarget::File {
            path,
            max_bytes,
            backups,
        } => {
            format!(
                "{} (rotated at {}, {backups} backups kept)",
                path.display(),
                size(*max_bytes)
            )
        }
    }
}

/// A byte count in supervisord's notation when it is a whole number of KB, MB or GB.
fn size(bytes: u64) -> String {
    [(1u64 << 30, "GB"), (1 << 20, "MB"), (1 << 10, "KB")]
        .iter()
        .find(|(unit, _)| bytes % unit == 0)
        .map_or_else(
            || format!("{bytes} bytes"),
            |(unit, name)| format!("{}{name}", bytes / unit),
        )
}

/// An argument as a shell would need it written, so the command line can be copied.
fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%^".contains(c) || !c.is_ascii());
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::Location;

    #[test]
    fn describes_programs_settings_and_notices() {
        let at = Location {
            file: "/etc/app.conf".into(),
            line: 3,
        };
        let command = vec!["/bin/sh".into(), "-c".into(), "exec web --name 'x'".into()];
        let mut web = ProgramSpec::new("web", command, at.clone());
        web.stopsignal = libc::SIGQUIT;
        web.startsecs = Duration::from_millis(1500);
        web.environment = vec![("SECRET".into(), "hunter2".into())];
        web.stdout = LogTarget::File {
            path: "/var/log/web.log".into(),
            max_bytes: 50 << 20,
            backups: 10,
        };
        web.redirect_stderr = true;
        let mut db = ProgramSpec::new("db", vec!["postgres".into()], at);
        db.priority = 1;
        db.critical = true;
        let config = Config {
            source: PathBuf::from("/etc/app.conf"),
            settings: Settings {
                shutdown_timeout: Some(Duration::from_secs(5)),
                metrics_addr: Some(None),
                ..Settings::default()
            },
            programs: vec![db, web],
            notices: vec!["notice: nodaemon (in /etc/app.conf:2) is accepted and ignored".into()],
            eventlisteners: Vec::new(),
            warnings: Vec::new(),
        };
        let text = describe(&config);
        for expected in [
            "config: /etc/app.conf\n",
            "settings: metrics_addr=off shutdown_timeout=5s\n",
            "2 programs (in start order)\n",
            "\ndb\n  defined at    /etc/app.conf:3\n  command       postgres\n",
            "  critical      true\n",
            "\nweb\n",
            r#"  command       /bin/sh -c 'exec web --name '\''x'\'''"#,
            "  autorestart   unexpected\n",
            "  startsecs     1.5s\n",
            "  stopsignal    SIGQUIT\n",
            "  stdout        /var/log/web.log (rotated at 50MB, 10 backups kept)\n",
            "  stderr        redirected to stdout\n",
            "  environment   SECRET\n",
            "\nnotices:\n  notice: nodaemon (in /etc/app.conf:2) is accepted and ignored\n",
        ] {
            assert!(
                text.contains(expected),
                "{expected:?} missing from:\n{text}"
            );
        }
        assert!(
            !text.contains("hunter2"),
            "environment values are not printed"
        );
        assert!(text.find("\ndb\n") < text.find("\nweb\n"));
    }
}
