//! The native configuration format: TOML.
//!
//! `[supervisor]` holds the global settings and each `[programs.NAME]` one program, with the keys
//! of supervisord's `[program:x]` typed the TOML way (`command` a string or an array,
//! `environment` a table, `exitcodes` an array, seconds as numbers, `group = "name"` instead of
//! `[group:x]` sections). Values are checked one by one in the order they are written, so the
//! first error in the file is the one reported, with the line of its key. Strings that
//! supervisord expands (`command`, `directory`, `environment`, `process_name`, log files) are
//! expanded the same way here, so `%(process_num)02d` works and a literal `%` is written `%%`.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::de::{DeString, DeTable, DeValue};
use toml::Spanned;

use super::expand::{
    self, check_exitcode, check_name, did_you_mean, invalid, parse_byte_size, parse_log_format,
    parse_metrics_addr, parse_octal, parse_probe, parse_stopsignal, Command, Context, Environment,
    Names, Notices, ProgramTemplate, Text,
};
use super::{AutoRestart, Config, ConfigError, Location, Settings};

type Key<'i> = Spanned<DeString<'i>>;
type Val<'i> = Spanned<DeValue<'i>>;

/// Reads a TOML configuration from `text`, the contents of `path`.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    parse_with(path, text, &Context::from_process())
}

/// [`parse`] with a given environment and host name (tests use their own).
pub(crate) fn parse_with(path: &Path, text: &str, ctx: &Context) -> Result<Config, ConfigError> {
    let src = Source::new(path, text);
    let doc = DeTable::parse(text).map_err(|e| {
        let line = e.span().map_or(1, |span| src.line(span.start));
        ConfigError::invalid(path, line, "syntax", e.message().trim_end())
    })?;
    let names = Names::new(ctx);
    let mut notices = Notices::default();
    let mut settings = Settings::default();
    let mut programs = Vec::new();
    for (key, value) in in_order(doc.get_ref()) {
        match key.get_ref().as_ref() {
            "supervisor" => settings = supervisor(&src, key, value)?,
            "programs" => {
                for (name, program) in in_order(src.table(key, value)?) {
                    let t = program_template(&src, name, program)?;
                    programs.extend(expand::processes(&t, &names, &mut notices)?);
                }
            }
            other => {
                let hint = did_you_mean(other, &["supervisor", "programs"]);
                return Err(src.error(
                    key,
                    format!("unknown table{hint}; a configuration has [supervisor] and [programs.NAME] tables"),
                ));
            }
        }
    }
    let (notices, warnings) = notices.into_parts();
    Ok(Config {
        source: path.to_path_buf(),
        settings,
        programs: expand::finish(programs)?,
        eventlisteners: Vec::new(),
        notices,
        warnings,
    })
}

/// The file being read: its path and where its lines start, to turn spans into line numbers.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Source<'a> {
    fn new(path: &'a Path, text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Source {
            path,
            text,
            line_starts,
        }
    }

    /// The 1-based line of a byte offset.
    fn line(&self, offset: usize) -> usize {
        self.line_starts
            .partition_point(|&start| start <= offset)
            .max(1)
    }

    fn at(&self, span: Range<usize>) -> Location {
        Location {
            file: self.path.to_path_buf(),
            line: self.line(span.start),
        }
    }

    fn error(&self, key: &Key<'_>, message: impl Into<String>) -> ConfigError {
        invalid(&self.at(key.span()), key.get_ref(), message)
    }

    /// A value as it was written, for messages (shortened if long).
    fn written(&self, value: &Val<'_>) -> String {
        let raw = self.text.get(value.span()).unwrap_or("?").trim();
        match raw.char_indices().nth(60) {
            Some((cut, _)) => format!("{}...", &raw[..cut]),
            None => raw.to_string(),
        }
    }

    fn table<'t, 'i>(
        &self,
        key: &Key<'_>,
        value: &'t Val<'i>,
    ) -> Result<&'t DeTable<'i>, ConfigError> {
        value.get_ref().as_table().ok_or_else(|| {
            self.error(
                key,
                format!("{} is not allowed; use a table", self.written(value)),
            )
        })
    }
}

/// A table's entries in the order they are written (the parser keeps them sorted by name).
fn in_order<'t, 'i>(table: &'t DeTable<'i>) -> Vec<(&'t Key<'i>, &'t Val<'i>)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    entries
}

// ---------------------------------------------------------------------------------------------
// Typed values. Each returns a message saying what is allowed.

fn string<'v>(src: &Source<'_>, v: &'v Val<'_>) -> Result<&'v str, String> {
    match v.get_ref().as_str() {
        Some(s) if s.contains('\0') => Err("a NUL character is not allowed in a string".into()),
        Some(s) => Ok(s),
        None => Err(format!("{} is not allowed; use a string", src.written(v))),
    }
}

fn boolean(src: &Source<'_>, v: &Val<'_>) -> Result<bool, String> {
    v.get_ref()
        .as_bool()
        .ok_or_else(|| format!("{} is not allowed; use true or false", src.written(v)))
}

fn integer<T: TryFrom<i64>>(src: &Source<'_>, v: &Val<'_>, what: &str) -> Result<T, String> {
    v.get_ref()
        .as_integer()
        .and_then(|n| i64::from_str_radix(n.as_str(), n.radix()).ok())
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| format!("{} is not allowed; use {what}", src.written(v)))
}

/// A count from `min` to [`expand::MAX_COUNT`].
fn count(src: &Source<'_>, v: &Val<'_>, min: u32) -> Result<u32, String> {
    let n = v
        .get_ref()
        .as_integer()
        .and_then(|n| i64::from_str_radix(n.as_str(), n.radix()).ok());
    expand::check_count(n, &src.written(v), min)
}

/// Seconds, an integer or a float, from 0 to [`expand::MAX_SECONDS`].
fn seconds(src: &Source<'_>, v: &Val<'_>) -> Result<Duration, String> {
    let secs = match v.get_ref() {
        DeValue::Integer(n) => i64::from_str_radix(n.as_str(), n.radix())
            .ok()
            .map(|n| n as f64),
        DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
        _ => None,
    };
    secs.ok_or(())
        .and_then(|s| expand::seconds(s).map_err(drop))
        .map_err(|()| {
            format!(
                "{} is not allowed; use a number of seconds {}, like 10 or 0.5",
                src.written(v),
                expand::seconds_range()
            )
        })
}

/// `true`, `false` or `"unexpected"`.
fn autorestart(src: &Source<'_>, v: &Val<'_>) -> Result<AutoRestart, String> {
    match v.get_ref() {
        DeValue::Boolean(true) => Ok(AutoRestart::Always),
        DeValue::Boolean(false) => Ok(AutoRestart::Never),
        DeValue::String(s) if s.as_ref() == "unexpected" => Ok(AutoRestart::Unexpected),
        _ => Err(format!(
            "{} is not allowed; use true, false or unexpected",
            src.written(v)
        )),
    }
}

/// A signal name (`"TERM"`, `"SIGTERM"`) or number.
fn signal(src: &Source<'_>, v: &Val<'_>) -> Result<i32, String> {
    let text = match v.get_ref() {
        DeValue::String(s) => s.to_string(),
        DeValue::Integer(n) => n.as_str().to_string(),
        _ => String::new(),
    };
    parse_stopsignal(&text).map_err(|_| {
        format!("{} is not allowed; use a signal name like \"TERM\", \"INT\", \"QUIT\", \"HUP\" or \"KILL\"", src.written(v))
    })
}

/// A umask: `"022"`, `0o022`, or `22` (digits read as octal, as umasks are always written).
fn umask(src: &Source<'_>, v: &Val<'_>) -> Result<u32, String> {
    let octal = match v.get_ref() {
        DeValue::String(s) => Some(s.to_string()),
        DeValue::Integer(n) if matches!(n.radix(), 8 | 10) && !n.as_str().starts_with('-') => {
            Some(n.as_str().to_string())
        }
        _ => None,
    };
    octal.and_then(|s| parse_octal(&s).ok()).ok_or_else(|| {
        format!(
            "{} is not allowed; use an octal umask like \"022\" or 0o022",
            src.written(v)
        )
    })
}

/// A byte count: an integer, or a string like `"50MB"`.
fn byte_size(src: &Source<'_>, v: &Val<'_>) -> Result<u64, String> {
    match v.get_ref() {
        DeValue::String(s) => parse_byte_size(s),
        DeValue::Integer(_) => integer(src, v, "a number of bytes, 0 or more"),
        _ => Err(format!(
            "{} is not allowed; use a number of bytes or a string like \"50MB\"",
            src.written(v)
        )),
    }
}

fn exitcodes(src: &Source<'_>, v: &Val<'_>) -> Result<Vec<i32>, String> {
    let items = v.get_ref().as_array().ok_or_else(|| {
        format!(
            "{} is not allowed; use an array of exit codes like [0, 2]",
            src.written(v)
        )
    })?;
    items
        .iter()
        .map(|item| check_exitcode(integer(src, item, "an exit code from 0 to 255")?))
        .collect()
}

/// A string to be expanded later, located at its key.
fn text(src: &Source<'_>, key: &Key<'_>, v: &Val<'_>) -> Result<Text, String> {
    Ok(Text::new(
        string(src, v)?,
        key.get_ref(),
        &src.at(key.span()),
    ))
}

/// A string, or an array of strings (already split).
fn command(src: &Source<'_>, key: &Key<'_>, v: &Val<'_>) -> Result<Command, String> {
    let Some(items) = v.get_ref().as_array() else {
        return Ok(Command::Shell(text(src, key, v)?));
    };
    if items.is_empty() {
        return Err("[] is not allowed; give the program to run and its arguments".into());
    }
    let argv = items.iter().map(|item| {
        let word = string(src, item)
            .map_err(|m| format!("{m} (each element of the command array is one argument)"))?;
        Ok(Text::new(word, key.get_ref(), &src.at(item.span())))
    });
    argv.collect::<Result<_, String>>().map(Command::Argv)
}

/// A table of strings.
fn environment(src: &Source<'_>, key: &Key<'_>, v: &Val<'_>) -> Result<Environment, String> {
    let table = v.get_ref().as_table().ok_or_else(|| {
        format!(
            "{} is not allowed; use a table like {{ KEY = \"value\" }}",
            src.written(v)
        )
    })?;
    let mut vars = Vec::new();
    for (name, value) in in_order(table) {
        let s = string(src, value)
            .map_err(|m| format!("{}: {m} (environment values are strings)", name.get_ref()))?;
        vars.push((
            name.get_ref().to_string(),
            Text::new(s, key.get_ref(), &src.at(name.span())),
        ));
    }
    Ok(Environment::Table(vars))
}

// ---------------------------------------------------------------------------------------------
// Tables.

const SUPERVISOR_KEYS: &[&str] = &[
    "metrics_addr",
    "socket",
    "log_format",
    "probe",
    "shutdown_timeout",
    "control_addr",
    "control_token_file",
];

/// `[supervisor]`: global settings.
fn supervisor(src: &Source<'_>, key: &Key<'_>, value: &Val<'_>) -> Result<Settings, ConfigError> {
    let mut settings = Settings::default();
    let mut control_addr_at = None;
    for (k, v) in in_order(src.table(key, value)?) {
        let applied = match k.get_ref().as_ref() {
            "metrics_addr" => string(src, v)
                .and_then(parse_metrics_addr)
                .map(|a| settings.metrics_addr = Some(a)),
            "socket" => string(src, v)
                .and_then(|s| {
                    if s.is_empty() {
                        Err("\"\" is not allowed; use a path like \"/run/supervisor.sock\"".into())
                    } else {
                        Ok(s)
                    }
                })
                .map(|s| settings.socket = Some(s.into())),
            "log_format" => string(src, v)
                .and_then(parse_log_format)
                .map(|f| settings.log_format = Some(f)),
            "probe" => string(src, v)
                .and_then(parse_probe)
                .map(|p| settings.probe = Some(p)),
            "shutdown_timeout" => seconds(src, v).map(|d| settings.shutdown_timeout = Some(d)),
            "control_addr" => string(src, v).and_then(super::parse_control_addr).map(|a| {
                control_addr_at = a.map(|_| src.error(k, super::CONTROL_TOKEN_NEEDED));
                settings.control_addr = a;
            }),
            "control_token_file" => string(src, v)
                .and_then(|s| {
                    if s.is_empty() {
                        Err("\"\" is not allowed; use the path of a file holding the token".into())
                    } else {
                        Ok(s)
                    }
                })
                .map(|s| settings.control_token_file = Some(s.into())),
            other => Err(unknown(other, "[supervisor]", SUPERVISOR_KEYS)),
        };
        applied.map_err(|m| src.error(k, m))?;
    }
    if let Some(e) = control_addr_at {
        if settings.control_token_file.is_none() {
            return Err(e);
        }
    }
    Ok(settings)
}

/// Keys of `[programs.NAME]`.
const PROGRAM_KEYS: &[&str] = &[
    "command",
    "process_name",
    "numprocs",
    "numprocs_start",
    "priority",
    "autostart",
    "autorestart",
    "startsecs",
    "startretries",
    "exitcodes",
    "stopsignal",
    "stopwaitsecs",
    "stopasgroup",
    "killasgroup",
    "user",
    "group",
    "redirect_stderr",
    "stdout_logfile",
    "stdout_logfile_maxbytes",
    "stdout_logfile_backups",
    "stderr_logfile",
    "stderr_logfile_maxbytes",
    "stderr_logfile_backups",
    "environment",
    "directory",
    "umask",
    "critical",
    "depends_on",
    "ready",
    "ready_timeout",
    "health",
    "health_interval",
    "health_timeout",
    "health_retries",
];

fn unknown(key: &str, table: &str, known: &[&str]) -> String {
    match did_you_mean(key, known).as_str() {
        "" => format!(
            "not a setting of {table}; the settings are: {}",
            known.join(", ")
        ),
        hint => format!("not a setting of {table}{hint}"),
    }
}

/// `[programs.NAME]` as a template (its processes are made by [`expand::processes`]).
fn program_template(
    src: &Source<'_>,
    name: &Key<'_>,
    value: &Val<'_>,
) -> Result<ProgramTemplate, ConfigError> {
    let table = value.get_ref().as_table().ok_or_else(|| {
        src.error(
            name,
            format!(
                "{} is not allowed; a program is a table: [programs.{}]",
                src.written(value),
                name.get_ref()
            ),
        )
    })?;
    check_name(name.get_ref()).map_err(|m| src.error(name, m))?;
    let at = src.at(name.span());
    let mut t = ProgramTemplate::new(name.get_ref(), Command::Argv(Vec::new()), at.clone());
    let mut has_command = false;
    let mut killasgroup_at = None;
    let table_name = format!("[programs.{}]", name.get_ref());
    for (k, v) in in_order(table) {
        apply(src, &mut t, &table_name, k, v).map_err(|m| src.error(k, m))?;
        match k.get_ref().as_ref() {
            "command" => has_command = true,
            "killasgroup" => killasgroup_at = Some(src.at(k.span())),
            _ => {}
        }
    }
    if !has_command {
        return Err(invalid(
            &at,
            "command",
            format!(
                "[programs.{}] does not specify a command; add one, e.g. command = \"/usr/sbin/apache2ctl -DFOREGROUND\"",
                name.get_ref()
            ),
        ));
    }
    expand::resolve_killasgroup(&mut t.spec, killasgroup_at.as_ref())?;
    Ok(t)
}

/// Applies one key of the program table `table`.
fn apply(
    src: &Source<'_>,
    t: &mut ProgramTemplate,
    table: &str,
    k: &Key<'_>,
    v: &Val<'_>,
) -> Result<(), String> {
    let spec = &mut t.spec;
    match k.get_ref().as_ref() {
        "command" => t.command = command(src, k, v)?,
        "process_name" => t.process_name = Some(text(src, k, v)?),
        "directory" => t.directory = Some(text(src, k, v)?),
        "environment" => t.environment = Some(environment(src, k, v)?),
        "stdout_logfile" => t.stdout.path = Some(text(src, k, v)?),
        "stderr_logfile" => t.stderr.path = Some(text(src, k, v)?),
        "stdout_logfile_maxbytes" => t.stdout.max_bytes = byte_size(src, v)?,
        "stderr_logfile_maxbytes" => t.stderr.max_bytes = byte_size(src, v)?,
        "stdout_logfile_backups" => t.stdout.backups = count(src, v, 0)?,
        "stderr_logfile_backups" => t.stderr.backups = count(src, v, 0)?,
        "numprocs" => t.numprocs = integer(src, v, "a whole number of processes")?,
        "numprocs_start" => t.numprocs_start = integer(src, v, "a whole number")?,
        "group" => {
            let group = string(src, v)?;
            check_name(group)?;
            t.group = Some(group.to_string());
        }
        "user" => {
            let user = string(src, v)?;
            expand::check_user(user)?;
            spec.user = Some(user.to_string());
        }
        "priority" => spec.priority = integer(src, v, "a whole number; lower starts first")?,
        "autostart" => spec.autostart = boolean(src, v)?,
        "autorestart" => spec.autorestart = autorestart(src, v)?,
        "exitcodes" => spec.exitcodes = exitcodes(src, v)?,
        "startsecs" => spec.startsecs = seconds(src, v)?,
        "startretries" => spec.startretries = count(src, v, 0)?,
        "stopsignal" => spec.stopsignal = signal(src, v)?,
        "stopwaitsecs" => spec.stopwaitsecs = seconds(src, v)?,
        "stopasgroup" => spec.stopasgroup = boolean(src, v)?,
        "killasgroup" => spec.killasgroup = boolean(src, v)?,
        "redirect_stderr" => spec.redirect_stderr = boolean(src, v)?,
        "umask" => spec.umask = Some(umask(src, v)?),
        "critical" => spec.critical = boolean(src, v)?,
        "depends_on" => {
            let names = match v.get_ref().as_array() {
                Some(items) => items
                    .iter()
                    .map(|i| i.get_ref().as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>(),
                None => v.get_ref().as_str().map(|s| vec![s.to_string()]),
            };
            spec.depends_on = names.ok_or_else(|| {
                format!(
                    "{} is not allowed; give program names: depends_on = [\"db\"]",
                    src.written(v)
                )
            })?;
        }
        "ready" => spec.ready = Some(super::check::Check::parse(string(src, v)?, false)?),
        "health" => spec.health = Some(super::check::Check::parse(string(src, v)?, true)?),
        "ready_timeout" => spec.ready_timeout = seconds(src, v)?,
        "health_interval" => spec.health_interval = seconds(src, v)?,
        "health_timeout" => spec.health_timeout = seconds(src, v)?,
        "health_retries" => spec.health_retries = count(src, v, 1)?,
        other => return Err(unknown(other, table, PROGRAM_KEYS)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::{LogFormat, LogTarget, ProgramSpec};

    fn ctx() -> Context {
        Context {
            env: vec![("HOME".into(), "/root".into())],
            host_node_name: "box".into(),
        }
    }

    fn load(text: &str) -> Config {
        parse_with(Path::new("/etc/app.toml"), text, &ctx()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The error for `text`, as (file:line, key, message).
    fn error(text: &str) -> (String, String, String) {
        match parse_with(Path::new("/etc/app.toml"), text, &ctx()) {
            Err(ConfigError::Invalid {
                location,
                key,
                message,
            }) => (location.to_string(), key, message),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn lamp_fixture_equals_the_ini_one() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config");
        let read = |rel: &str| {
            std::fs::read_to_string(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
        };
        let toml = parse_with(&dir.join("toml/lamp.toml"), &read("toml/lamp.toml"), &ctx())
            .unwrap_or_else(|e| panic!("{e}"));
        let ini_path = dir.join("lamp/supervisord.conf");
        let ini = crate::config::ini_format::parse_with(
            &ini_path,
            &read("lamp/supervisord.conf"),
            &ctx(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(toml.programs.len(), 2);
        for (t, i) in toml.programs.iter().zip(&ini.programs) {
            let mut t = t.clone();
            // The TOML version marks mysqld as critical (an extension the INI file does not use).
            t.critical = i.critical;
            assert!(t.same_as(i), "TOML {t:#?}\nINI {i:#?}");
        }
        assert!(toml.programs[0].critical);
        assert_eq!(
            toml.settings.metrics_addr,
            Some(Some(
                "0.0.0.0:9469".parse().unwrap_or_else(|e| panic!("{e}"))
            ))
        );
        assert_eq!(toml.settings.log_format, Some(LogFormat::Json));
        assert_eq!(toml.settings.shutdown_timeout, Some(Duration::from_secs(9)));
        assert_eq!(
            toml.programs[1].defined_at,
            Location {
                file: dir.join("toml/lamp.toml"),
                line: 8
            }
        );
    }

    #[test]
    fn defaults_are_supervisords() {
        let c = load("[programs.web]\ncommand = \"/usr/bin/web --port 80\"\n");
        let expected = ProgramSpec::new(
            "web",
            argv(&["/usr/bin/web", "--port", "80"]),
            Location {
                file: "/etc/app.toml".into(),
                line: 1,
            },
        );
        assert_eq!(c.programs, [expected]);
        assert_eq!(c.settings, Settings::default());
        assert!(c.notices.is_empty());
    }

    #[test]
    fn every_value_type() {
        let c = load(
            r#"
[programs.w]
command = ["/bin/w", "two words", "%(program_name)s"]
directory = "/srv"
user = "www-data"
umask = "027"
autostart = false
autorestart = "unexpected"
exitcodes = [0, 2]
startsecs = 0.5
startretries = 10
stopsignal = "SIGQUIT"
stopwaitsecs = 3
killasgroup = true
priority = -5
stdout_logfile = "NONE"
stderr_logfile = "~/err.log"
stderr_logfile_maxbytes = 1024
stderr_logfile_backups = 0
critical = true
group = "web"
environment = { B = "2", A = "%(ENV_HOME)s" }
"#,
        );
        let p = &c.programs[0];
        assert_eq!(p.command, argv(&["/bin/w", "two words", "w"]));
        assert_eq!(p.directory.as_deref(), Some(Path::new("/srv")));
        assert_eq!(
            (p.user.as_deref(), p.umask),
            (Some("www-data"), Some(0o027))
        );
        assert_eq!(
            (p.autostart, p.autorestart, p.exitcodes.as_slice()),
            (false, AutoRestart::Unexpected, &[0, 2][..])
        );
        assert_eq!(
            (p.startsecs, p.startretries, p.stopsignal),
            (Duration::from_millis(500), 10, libc::SIGQUIT)
        );
        assert_eq!(
            (p.stopwaitsecs, p.stopasgroup, p.killasgroup),
            (Duration::from_secs(3), false, true)
        );
        assert_eq!(
            (p.priority, p.critical, p.group.as_deref()),
            (-5, true, Some("web"))
        );
        assert_eq!(p.stdout, LogTarget::Discard);
        assert_eq!(
            p.stderr,
            LogTarget::File {
                path: "/root/err.log".into(),
                max_bytes: 1024,
                backups: 0
            }
        );
        assert_eq!(
            p.environment,
            [
                ("B".to_string(), "2".to_string()),
                ("A".to_string(), "/root".to_string())
            ]
        );
        for (umask, expected) in [("0o022", 0o22), ("22", 0o22), ("\"0\"", 0)] {
            let c = load(&format!("[programs.a]\ncommand = \"a\"\numask = {umask}\n"));
            assert_eq!(c.programs[0].umask, Some(expected), "{umask}");
        }
    }

    #[test]
    fn numprocs_and_order() {
        let c = load(
            "[programs.worker]\ncommand = \"/bin/worker --slot %(process_num)d\"\nnumprocs = 2\n\
             process_name = \"%(program_name)s-%(process_num)d\"\npriority = 1\n\
             [programs.api]\ncommand = \"api\"\npriority = 1\n[programs.db]\ncommand = \"db\"\n",
        );
        let got: Vec<(&str, Option<&str>, &str)> = c
            .programs
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.group.as_deref(),
                    p.command.last().map_or("", String::as_str),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("api", None, "api"),
                ("worker-0", Some("worker"), "0"),
                ("worker-1", Some("worker"), "1"),
                ("db", None, "db")
            ]
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let cases: &[(&str, &str, &str, &str)] = &[
            ("[programs.a]\ncommand = \"x\"\nautorestart = \"sometimes\"\n", "/etc/app.toml:3", "autorestart", "\"sometimes\" is not allowed; use true, false or unexpected"),
            ("[programs.a]\ncommand = \"x\"\n\nautostrat = true\n", "/etc/app.toml:4", "autostrat", "did you mean autostart?"),
            ("\n[programs.a]\nautostart = true\n", "/etc/app.toml:2", "command", "[programs.a] does not specify a command"),
            ("[programs.a]\ncommand = \"x\"\ndepends_on = [\"b\"]\n", "/etc/app.toml:1", "depends_on", "\"b\" is not a program here"),
            ("[programs.a]\ncommand = \"x\"\nready = \"tcp:80\"\n", "/etc/app.toml:3", "ready", "expected tcp:HOST:PORT"),
            ("[programs.a]\ncommand = \"x\"\nhealth = {}\n", "/etc/app.toml:3", "health", "is not allowed"),
            ("[programs.a]\ncommand = \"x\"\nexitcodes = [0, 300]\n", "/etc/app.toml:3", "exitcodes", "exit codes are 0 to 255"),
            ("[programs.a]\ncommand = \"x\"\nexitcodes = 0\n", "/etc/app.toml:3", "exitcodes", "use an array"),
            ("[programs.a]\ncommand = \"x\"\nstartsecs = -1\n", "/etc/app.toml:3", "startsecs", "from 0 to 31536000 (one year)"),
            ("[programs.a]\ncommand = \"x\"\nuser = \"nosuchuser\"\n", "/etc/app.toml:3", "user", "invalid user name nosuchuser"),
            ("[programs.a]\ncommand = \"x\"\nstartsecs = 1e19\n", "/etc/app.toml:3", "startsecs", "1e19 is not allowed; use a number of seconds from 0 to 31536000 (one year)"),
            ("[programs.a]\ncommand = \"x\"\nstopwaitsecs = 9223372036854775807\n", "/etc/app.toml:3", "stopwaitsecs", "from 0 to 31536000"),
            ("[programs.a]\ncommand = \"x\"\nhealth_interval = inf\n", "/etc/app.toml:3", "health_interval", "from 0 to 31536000"),
            ("[programs.a]\ncommand = \"x\"\nready_timeout = 31536001\n", "/etc/app.toml:3", "ready_timeout", "from 0 to 31536000"),
            ("[programs.a]\ncommand = \"x\"\nstartretries = 1000001\n", "/etc/app.toml:3", "startretries", "1000001 is not allowed; use a whole number from 0 to 1000000"),
            ("[programs.a]\ncommand = \"x\"\nhealth_retries = 0\n", "/etc/app.toml:3", "health_retries", "from 1 to 1000000"),
            ("[supervisor]\nshutdown_timeout = 1e300\n", "/etc/app.toml:2", "shutdown_timeout", "from 0 to 31536000"),
            ("[programs.a]\ncommand = \"x\"\nstartsecs = \"1\"\n", "/etc/app.toml:3", "startsecs", "number of seconds"),
            ("[programs.a]\ncommand = \"x\"\nstopsignal = \"NOPE\"\n", "/etc/app.toml:3", "stopsignal", "signal name"),
            ("[programs.a]\ncommand = \"x\"\nenvironment = { A = 1 }\n", "/etc/app.toml:3", "environment", "A: 1 is not allowed; use a string"),
            ("[programs.a]\ncommand = []\n", "/etc/app.toml:2", "command", "[] is not allowed"),
            ("[programs.a]\ncommand = [\"x\", 1]\n", "/etc/app.toml:2", "command", "each element"),
            ("[programs.a]\ncommand = \"x\"\numask = \"999\"\n", "/etc/app.toml:3", "umask", "octal"),
            ("[programs.a]\ncommand = \"x\"\nnumprocs = 2\n", "/etc/app.toml:1", "process_name", "%(process_num) must be present"),
            ("[programs.a]\ncommand = \"x %(nope)s\"\n", "/etc/app.toml:2", "command", "%(nope) is not a name"),
            ("[programs.a]\ncommand = \"x\"\n[programs.b]\ncommand = \"y\"\nprocess_name = \"a\"\n", "/etc/app.toml:3", "process_name", "already used"),
            ("[programs.a]\ncommand = \"x\"\nstopasgroup = true\nkillasgroup = false\n", "/etc/app.toml:4", "killasgroup", "stopasgroup=true"),
            ("[programs.\"a b\"]\ncommand = \"x\"\n", "/etc/app.toml:1", "a b", "cannot contain ' '"),
            ("[programs]\na = 1\n", "/etc/app.toml:2", "a", "a program is a table"),
            ("[program.a]\ncommand = \"x\"\n", "/etc/app.toml:1", "program", "did you mean programs?"),
            ("[supervisor]\nlog_format = \"xml\"\n", "/etc/app.toml:2", "log_format", "use json or text"),
            ("[supervisor]\nmetrics_addr = \"nowhere\"\n", "/etc/app.toml:2", "metrics_addr", "or off"),
            ("[supervisor]\nprobe = true\n", "/etc/app.toml:2", "probe", "use a string"),
            ("[supervisor]\nsocket = \"/s\"\nsockett = 1\n", "/etc/app.toml:3", "sockett", "did you mean socket?"),
            ("[supervisor]\nsocket = \"/s\"\ncontrol_addr = \"127.0.0.1:9470\"\n", "/etc/app.toml:3", "control_addr", "control_token_file"),
            ("[supervisor]\ncontrol_addr = \"localhost:9470\"\ncontrol_token_file = \"/t\"\n", "/etc/app.toml:2", "control_addr", "127.0.0.1:9470"),
            ("[supervisor]\ncontrol_addr = \"127.0.0.1:9470\"\ncontrol_token_file = \"\"\n", "/etc/app.toml:3", "control_token_file", "not allowed"),
            ("[programs.a]\ncommand = \"x\"\ncommand = \"y\"\n", "/etc/app.toml:3", "syntax", "duplicate key"),
            ("[programs.a]\ncommand = x\n", "/etc/app.toml:2", "syntax", "string values must be quoted"),
            ("[programs.a]\ncommand = \"x\\u0000\"\n", "/etc/app.toml:2", "command", "NUL"),
        ];
        for (text, at, key, message) in cases {
            let (got_at, got_key, got_message) = error(text);
            assert_eq!(
                (got_at.as_str(), got_key.as_str()),
                (*at, *key),
                "for {text:?}: {got_message}"
            );
            assert!(
                got_message.contains(message),
                "for {text:?}: {got_message:?} should contain {message:?}"
            );
        }
    }

    #[test]
    fn first_error_in_the_file_wins() {
        // The parser keeps keys sorted by name; errors still come in file order.
        let (at, key, _) =
            error("[programs.b]\ncommand = \"x\"\nzzz = 1\naaa = 2\n[programs.a]\nbad = 1\n");
        assert_eq!((at.as_str(), key.as_str()), ("/etc/app.toml:3", "zzz"));
    }

    #[test]
    fn settings() {
        let c = load("[supervisor]\nmetrics_addr = \"off\"\nsocket = \"/tmp/s.sock\"\nprobe = \"off\"\nshutdown_timeout = 2.5\n");
        let s = &c.settings;
        assert_eq!(
            (s.metrics_addr, s.socket.as_deref()),
            (Some(None), Some(Path::new("/tmp/s.sock")))
        );
        assert_eq!(
            (s.probe, s.shutdown_timeout),
            (
                Some(crate::config::ProbeMode::Off),
                Some(Duration::from_millis(2500))
            )
        );
        assert!(c.programs.is_empty());
        let c = load(
            "[supervisor]\ncontrol_token_file = \"/etc/tok\"\ncontrol_addr = \"127.0.0.1:9470\"\n",
        );
        assert_eq!(
            (
                c.settings.control_addr,
                c.settings.control_token_file.as_deref()
            ),
            (
                Some("127.0.0.1:9470".parse().unwrap()),
                Some(Path::new("/etc/tok"))
            )
        );
        // `off` needs no token; a token file alone is allowed (the flag may turn it on).
        let c = load("[supervisor]\ncontrol_addr = \"off\"\n");
        assert_eq!(c.settings.control_addr, None);
    }

    #[test]
    fn no_input_makes_it_panic() {
        let seed = "[supervisor]\nmetrics_addr = \"off\"\nshutdown_timeout = 1.5\n[programs.w]\n\
                    command = [\"/bin/w\", \"%(process_num)d\"]\nnumprocs = 2\nprocess_name = \"w%(process_num)d\"\n\
                    environment = { A = \"x\" }\numask = 0o22\nexitcodes = [0, 1]\nstdout_logfile_maxbytes = \"1MB\"\n";
        for text in crate::config::ini_format::tests::mutations(seed, 3000) {
            let _ = parse_with(Path::new("/nonexistent/fuzz.toml"), &text, &ctx());
        }
    }
}
