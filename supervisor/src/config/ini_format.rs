//! supervisord's `.conf` files, read as supervisord 4 reads them.
//!
//! Lines are read by the rules of Python's `configparser` as supervisord sets it up: `key = value`
//! or `key: value`, keys case-insensitive, indented lines continue the value above, `;` or `#`
//! start a comment at the start of a line or after whitespace, repeated sections merge and a
//! repeated key replaces the earlier value. `[include] files=` of the main file pulls in more
//! files (globs relative to it). Values then mean what supervisord's `options.py` makes of them,
//! including `%(name)s` expansion and `[supervisord] environment` for every program. Where this
//! supervisor differs, it says so with file:line: unknown sections and keys are warnings
//! (supervisord ignores them silently; `check --strict` refuses them); keys and sections that are
//! valid supervisord but mean nothing here are accepted with one notice each. `[eventlistener:x]`
//! pools are read into [`EventListenerSpec`] with supervisord's checks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::expand::{
    self, check_name, check_user, did_you_mean, invalid, parse_autorestart, parse_bool,
    parse_byte_size, parse_count, parse_exitcodes, parse_int_in, parse_log_format,
    parse_metrics_addr, parse_octal, parse_probe, parse_stopsignal, parse_whole_seconds, Command,
    Context, Environment, Names, Notices, ProgramTemplate, Text,
};
use super::{Config, ConfigError, EventListenerSpec, Location, Settings};

/// Reads a supervisord configuration file (and what its `[include]` names) from `text`, the
/// contents of `path`.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    parse_with(path, text, &Context::from_process())
}

/// [`parse`] with a given environment and host name (tests use their own).
pub(crate) fn parse_with(path: &Path, text: &str, ctx: &Context) -> Result<Config, ConfigError> {
    let mut notices = Notices::default();
    let mut doc = Document::default();
    doc.read(path, text, true, &mut notices)?;
    let base = Names::new(ctx);
    include(&mut doc, path, &base, &mut notices)?;
    check_sections(&doc, &mut notices)?;
    let (mut settings, global_env) = supervisord(&doc, &base, &mut notices)?;
    rpc_servers(&doc, &base, &mut notices, &mut settings)?;
    let mut names = base;
    names.add_env(&global_env);
    let groups = groups(&doc, &names, &mut notices)?;
    let mut programs = Vec::new();
    for sec in doc
        .sections
        .iter()
        .filter(|s| !s.ignored && s.name.starts_with("program:"))
    {
        let t = program(
            &doc,
            sec,
            groups.get(program_name(sec)),
            &names,
            &global_env,
            &mut notices,
        )?;
        programs.extend(expand::processes(&t, &names, &mut notices)?);
    }
    let mut eventlisteners = Vec::new();
    for sec in doc
        .sections
        .iter()
        .filter(|s| !s.ignored && s.name.starts_with("eventlistener:"))
    {
        eventlisteners.push(eventlistener(&doc, sec, &names, &global_env, &mut notices)?);
    }
    let (notices, warnings) = notices.into_parts();
    Ok(Config {
        source: path.to_path_buf(),
        settings,
        programs: expand::finish(programs)?,
        eventlisteners,
        notices,
        warnings,
    })
}

// ---------------------------------------------------------------------------------------------
// Lines → sections, as configparser does it.

/// One `key = value` (continuation lines joined with newlines).
#[derive(Debug)]
struct Entry {
    key: String,
    value: String,
    at: Location,
}

#[derive(Debug)]
struct Section {
    name: String,
    /// Where the section was first opened.
    at: Location,
    entries: Vec<Entry>,
    /// An `[include]` in an included file: read (so its syntax is checked) but not used.
    ignored: bool,
}

impl Section {
    fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

#[derive(Debug, Default)]
struct Document {
    sections: Vec<Section>,
}

impl Document {
    fn find(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name && !s.ignored)
    }

    /// A section's entries followed by the `[DEFAULT]` ones it does not override (configparser
    /// offers `[DEFAULT]` keys in every section); `known` picks the defaults that apply.
    fn entries<'a>(&'a self, sec: &'a Section, known: impl Fn(&str) -> bool) -> Vec<&'a Entry> {
        let mut out: Vec<&Entry> = sec.entries.iter().collect();
        if let Some(defaults) = self.find("DEFAULT").filter(|_| sec.name != "DEFAULT") {
            out.extend(
                defaults
                    .entries
                    .iter()
                    .filter(|e| known(&e.key) && sec.get(&e.key).is_none()),
            );
        }
        out
    }

    /// Reads one file's lines into the document.
    fn read(
        &mut self,
        file: &Path,
        text: &str,
        main: bool,
        notices: &mut Notices,
    ) -> Result<(), ConfigError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        // The section being filled and, once a key was read, the entry continuation lines extend.
        let mut current: Option<(usize, Option<usize>)> = None;
        let mut indent_level = 0;
        for (index, raw) in text.lines().enumerate() {
            let at = Location {
                file: file.to_path_buf(),
                line: index + 1,
            };
            if raw.contains('\0') {
                return Err(invalid(&at, "syntax", "the line contains a NUL byte"));
            }
            let comment = comment_start(raw);
            let value = raw[..comment.unwrap_or(raw.len())].trim();
            if value.is_empty() {
                // A blank line (not a comment) inside a value is kept, as configparser does.
                if let (None, Some((s, Some(e)))) = (comment, current) {
                    self.sections[s].entries[e].value.push('\n');
                }
                continue;
            }
            let indent = raw.chars().take_while(|c| c.is_whitespace()).count();
            if let Some((s, Some(e))) = current {
                if indent > indent_level {
                    let entry = &mut self.sections[s].entries[e];
                    entry.value.push('\n');
                    entry.value.push_str(value);
                    continue;
                }
            }
            indent_level = indent;
            if let Some(name) = section_header(value) {
                let ignored = !main && name == "include";
                if ignored {
                    notices.once(
                        &format!("include:{}", at),
                        format!(
                            "notice: [include] in {at} is ignored: supervisord reads [include] only \
                             from the main configuration file"
                        ),
                    );
                }
                current = Some((self.open(name, ignored, &at, notices), None));
            } else if let Some((s, _)) = current {
                let (key, val) = option(value).ok_or_else(|| {
                    invalid(
                        &at,
                        "syntax",
                        format!(
                            "{value:?} is not a setting; write key = value (or key: value), indent \
                             continuation lines, and start comments with ; or #"
                        ),
                    )
                })?;
                current = Some((s, Some(self.set(s, key, val, at, notices))));
            } else {
                return Err(invalid(
                    &at,
                    "syntax",
                    format!("{value:?} comes before any [section]; start with a section such as [supervisord] or [program:NAME]"),
                ));
            }
        }
        for entry in self.sections.iter_mut().flat_map(|s| s.entries.iter_mut()) {
            entry.value.truncate(entry.value.trim_end().len());
        }
        Ok(())
    }

    /// Opens a section, or reopens one of the same name (configparser merges them).
    fn open(&mut self, name: &str, ignored: bool, at: &Location, notices: &mut Notices) -> usize {
        if let Some(i) = self
            .sections
            .iter()
            .position(|s| s.name == name && s.ignored == ignored)
        {
            let first = &self.sections[i].at;
            notices.once(
                &format!("section:{name}"),
                format!(
                    "notice: [{name}] (in {at}) continues [{name}] from {first}; supervisord merges \
                     repeated sections, and so does this supervisor"
                ),
            );
            return i;
        }
        self.sections.push(Section {
            name: name.to_string(),
            at: at.clone(),
            entries: Vec::new(),
            ignored,
        });
        self.sections.len() - 1
    }

    /// Sets a key in section `s` (a repeated key replaces the earlier value); returns its index.
    fn set(
        &mut self,
        s: usize,
        key: String,
        value: &str,
        at: Location,
        notices: &mut Notices,
    ) -> usize {
        let section = &mut self.sections[s];
        if let Some(i) = section.entries.iter().position(|e| e.key == key) {
            let entry = &mut section.entries[i];
            notices.once(
                &format!("key:{}:{key}", section.name),
                format!(
                    "notice: {key} in [{}] is set again in {at} (first in {}); the last value is \
                     used, as supervisord does",
                    section.name, entry.at
                ),
            );
            entry.value = value.to_string();
            entry.at = at;
            return i;
        }
        section.entries.push(Entry {
            key,
            value: value.to_string(),
            at,
        });
        section.entries.len() - 1
    }
}

/// Where a comment starts: a line whose first character is `;` or `#`, or a `;` or `#` at the
/// start or after whitespace. configparser looks for the n-th `;` and the n-th `#` together, round
/// after round, and takes the first round that finds a comment; this does the same.
fn comment_start(line: &str) -> Option<usize> {
    if line.trim().starts_with([';', '#']) {
        return Some(0);
    }
    let mut from = [Some(0usize), Some(0usize)];
    loop {
        let mut found: Option<usize> = None;
        for (slot, prefix) in from.iter_mut().zip([';', '#']) {
            let Some(start) = *slot else { continue };
            *slot = line[start..].find(prefix).map(|offset| start + offset + 1);
            if let Some(index) = slot.map(|next| next - 1) {
                if index == 0 || line[..index].ends_with(char::is_whitespace) {
                    found = Some(found.map_or(index, |f| f.min(index)));
                }
            }
        }
        if found.is_some() || from.iter().all(Option::is_none) {
            return found;
        }
    }
}

/// `[name]`: everything between the first `[` and the last `]` (configparser's `\[(.+)\]`).
fn section_header(value: &str) -> Option<&str> {
    let rest = value.strip_prefix('[')?;
    let end = rest.rfind(']')?;
    (end > 0).then(|| &rest[..end])
}

/// `key = value` or `key: value`, split at the first `=` or `:`; the key lower-cased.
fn option(value: &str) -> Option<(String, &str)> {
    let split = value.find(['=', ':'])?;
    let key = value[..split].trim_end();
    (!key.is_empty()).then(|| (key.to_lowercase(), value[split + 1..].trim()))
}

// ---------------------------------------------------------------------------------------------
// [include]

/// Reads the files `[include] files=` names: whitespace-separated globs, relative to the main
/// file's directory, each one's matches in sorted order.
fn include(
    doc: &mut Document,
    main: &Path,
    names: &Names,
    notices: &mut Notices,
) -> Result<(), ConfigError> {
    let Some(sec) = doc.find("include") else {
        return Ok(());
    };
    let entries = doc.entries(sec, |k| k == "files");
    for e in entries.iter().filter(|e| e.key != "files") {
        warn_unknown(e, "include", &["files"], notices);
    }
    let Some(files) = entries.iter().find(|e| e.key == "files") else {
        return Err(invalid(
            &sec.at,
            "files",
            "[include] has no files setting; add one, e.g. files = conf.d/*.conf",
        ));
    };
    let text = Text::new(&files.value, "files", &files.at);
    let patterns = expand::expand(&text, names)?;
    let main_abs = std::path::absolute(main).unwrap_or_else(|_| main.to_path_buf());
    let base = main_abs.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut done = vec![main_abs];
    for pattern in patterns.split_whitespace() {
        let full = base.join(pattern);
        let matches = glob_files(&full).map_err(|m| text.error(m))?;
        if matches.is_empty() {
            notices.once(
                &format!("nomatch:{}", full.display()),
                format!(
                    "notice: no file matches the include pattern {} (in {})",
                    full.display(),
                    text.at
                ),
            );
        }
        for file in matches {
            if done.contains(&file) {
                continue;
            }
            let content = super::read_file(&file, Some(&text.at))?;
            doc.read(&file, &content, false, notices)?;
            done.push(file);
        }
    }
    Ok(())
}

/// The files a glob matches, sorted, as Python's `glob.glob` finds them (`*` skips dot files);
/// directories are skipped (supervisord cannot read them either).
fn glob_files(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let pattern = pattern.to_string_lossy();
    let paths = glob::glob_with(&pattern, options)
        .map_err(|e| format!("{pattern:?} is not a valid pattern: {e}"))?;
    let mut files: Vec<PathBuf> = paths
        .filter_map(Result::ok)
        .filter(|p| !p.is_dir())
        .collect();
    files.sort_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    Ok(files)
}

// ---------------------------------------------------------------------------------------------
// Sections and their keys.

/// How a key that supervisord knows but this supervisor ignores is still checked, so that a file
/// `check` accepts is one supervisord accepts too.
#[derive(Debug, Clone, Copy)]
enum Check {
    Text,
    Bool,
    Int,
    ByteSize,
    Octal,
    LogLevel,
    User,
}

impl Check {
    fn run(self, value: &str) -> Result<(), String> {
        match self {
            Check::Text => Ok(()),
            Check::Bool => parse_bool(value).map(drop),
            Check::Int => parse_int_in::<i64>(value, "a whole number").map(drop),
            Check::ByteSize => parse_byte_size(value).map(drop),
            Check::Octal => parse_octal(value).map(drop),
            Check::User => check_user(value),
            Check::LogLevel => match value.to_ascii_lowercase().as_str() {
                "critical" | "error" | "warn" | "info" | "debug" | "trace" | "blather" => Ok(()),
                _ => Err(format!("{value:?} is not allowed; use critical, error, warn, info, debug, trace or blather")),
            },
        }
    }
}

/// A key supervisord knows, how it is checked, and why it is ignored (may be empty).
type Ignored = (&'static str, Check, &'static str);

/// `[program:x]` keys this supervisor implements.
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

const NO_EVENTS: &str = " (there are no event listeners here)";
const NO_SYSLOG: &str = " (output goes to the supervisor's stdout/stderr or to the log file)";

/// `[program:x]` keys of supervisord that mean nothing here.
const PROGRAM_IGNORED: &[Ignored] = &[
    ("stdout_capture_maxbytes", Check::ByteSize, NO_EVENTS),
    ("stdout_events_enabled", Check::Bool, NO_EVENTS),
    ("stdout_syslog", Check::Bool, NO_SYSLOG),
    ("stderr_capture_maxbytes", Check::ByteSize, NO_EVENTS),
    ("stderr_events_enabled", Check::Bool, NO_EVENTS),
    ("stderr_syslog", Check::Bool, NO_SYSLOG),
    (
        "serverurl",
        Check::Text,
        " (there is no XML-RPC server; programs can use the supervisor's socket)",
    ),
];

/// `[supervisord]` keys that set this supervisor's [`Settings`] (our extensions) or the
/// environment of every program.
const SUPERVISORD_KEYS: &[&str] = &[
    "metrics_addr",
    "socket",
    "log_format",
    "probe",
    "shutdown_timeout",
    "control_addr",
    "control_token_file",
    "environment",
];

const OWN_LOG: &str = " (this supervisor logs to its own stdout; see log_format)";
const NOT_DAEMON: &str =
    " (supervisord uses it only when it daemonizes; this supervisor never does)";

/// `[supervisord]` keys that mean nothing here.
const SUPERVISORD_IGNORED: &[Ignored] = &[
    (
        "nodaemon",
        Check::Bool,
        " (this supervisor always stays in the foreground)",
    ),
    ("logfile", Check::Text, OWN_LOG),
    ("logfile_maxbytes", Check::ByteSize, OWN_LOG),
    ("logfile_backups", Check::Int, OWN_LOG),
    ("loglevel", Check::LogLevel, OWN_LOG),
    ("silent", Check::Bool, OWN_LOG),
    ("pidfile", Check::Text, ""),
    (
        "childlogdir",
        Check::Text,
        " (AUTO logs go to the supervisor's stdout and stderr)",
    ),
    ("user", Check::User, " (set user= on each program instead)"),
    ("directory", Check::Text, NOT_DAEMON),
    ("umask", Check::Octal, NOT_DAEMON),
    ("strip_ansi", Check::Bool, ""),
    ("identifier", Check::Text, ""),
    (
        "minfds",
        Check::Int,
        " (resource limits are left as they are)",
    ),
    (
        "minprocs",
        Check::Int,
        " (resource limits are left as they are)",
    ),
    ("nocleanup", Check::Bool, ""),
];

const GROUP_KEYS: &[&str] = &["programs", "priority"];

/// `[eventlistener:x]` keys besides those of `[program:x]`.
const LISTENER_KEYS: &[&str] = &["events", "buffer_size", "result_handler"];

/// supervisord's event types (`supervisor.events.EventTypes`), as `events=` names them.
const EVENT_TYPES: &[&str] = &[
    "EVENT",
    "PROCESS_COMMUNICATION",
    "PROCESS_COMMUNICATION_STDERR",
    "PROCESS_COMMUNICATION_STDOUT",
    "PROCESS_GROUP",
    "PROCESS_GROUP_ADDED",
    "PROCESS_GROUP_REMOVED",
    "PROCESS_LOG",
    "PROCESS_LOG_STDERR",
    "PROCESS_LOG_STDOUT",
    "PROCESS_STATE",
    "PROCESS_STATE_BACKOFF",
    "PROCESS_STATE_EXITED",
    "PROCESS_STATE_FATAL",
    "PROCESS_STATE_RUNNING",
    "PROCESS_STATE_STARTING",
    "PROCESS_STATE_STOPPED",
    "PROCESS_STATE_STOPPING",
    "PROCESS_STATE_UNKNOWN",
    "REMOTE_COMMUNICATION",
    "SUPERVISOR_STATE_CHANGE",
    "SUPERVISOR_STATE_CHANGE_RUNNING",
    "SUPERVISOR_STATE_CHANGE_STOPPING",
    "TICK",
    "TICK_3600",
    "TICK_5",
    "TICK_60",
];

/// supervisord's default (and, here, only) way to read a listener's `RESULT`.
pub const DEFAULT_RESULT_HANDLER: &str = "supervisor.dispatchers:default_handler";

fn ignored_key(table: &[Ignored], key: &str) -> Option<(Check, &'static str)> {
    table
        .iter()
        .find(|(k, ..)| *k == key)
        .map(|(_, check, why)| (*check, *why))
}

fn is_program_key(key: &str) -> bool {
    PROGRAM_KEYS.contains(&key) || ignored_key(PROGRAM_IGNORED, key).is_some()
}

fn is_supervisord_key(key: &str) -> bool {
    SUPERVISORD_KEYS.contains(&key) || ignored_key(SUPERVISORD_IGNORED, key).is_some()
}

/// Checks a key supervisord knows but this supervisor ignores, and notes it once.
fn accept_ignored(
    check: Check,
    why: &str,
    e: &Entry,
    value: &str,
    notices: &mut Notices,
) -> Result<(), ConfigError> {
    check.run(value).map_err(|m| invalid(&e.at, &e.key, m))?;
    notices.once(
        &format!("key:{}", e.key),
        format!(
            "notice: {} (in {}) is accepted and ignored{why}",
            e.key, e.at
        ),
    );
    Ok(())
}

/// Warns about a key `[section]` does not have: supervisord ignores it (configparser keeps every
/// key; supervisord reads only the ones it knows), and so does this supervisor, but it says so.
fn warn_unknown(e: &Entry, section: &str, known: &[&str], notices: &mut Notices) {
    let in_program = section.starts_with("program:") || section.starts_with("eventlistener:");
    let elsewhere = if !in_program && is_program_key(&e.key) {
        "; it is a setting of [program:NAME], not of this section"
    } else if in_program && is_supervisord_key(&e.key) {
        "; it is a setting of [supervisord], not of a program"
    } else {
        ""
    };
    let hint = if elsewhere.is_empty() {
        did_you_mean(&e.key, known)
    } else {
        String::new()
    };
    notices.warn(
        &e.at,
        &e.key,
        format!(
            "not a setting of [{section}]{hint}{elsewhere} (supervisord ignores it, and so does \
             this supervisor; `supervisor check --strict` refuses it)"
        ),
    );
}

/// What a section is to this supervisor.
enum SectionKind {
    /// Read elsewhere in this module.
    Used,
    /// Valid supervisord, meaningless here: accepted with a notice giving the reason.
    Ignored(&'static str),
    /// Not a section supervisord knows: it ignores it; a warning here (a "did you mean" hint).
    Unknown(String),
}

const SECTION_NAMES: &str = "[supervisord], [program:NAME], [group:NAME], [include], [unix_http_server], \
                             [inet_http_server], [supervisorctl], [rpcinterface:NAME], [eventlistener:NAME], \
                             [ctlplugin:NAME]";

fn section_kind(sec: &Section) -> Result<SectionKind, ConfigError> {
    let name = sec.name.as_str();
    let prefix = name.split_once(':').map_or(name, |(p, _)| p);
    Ok(match (prefix, name.contains(':')) {
        ("supervisord" | "include" | "DEFAULT", false) | ("program" | "group" | "eventlistener", true) => {
            SectionKind::Used
        }
        ("unix_http_server" | "inet_http_server", false) => SectionKind::Used,
        ("supervisorctl", false) => SectionKind::Ignored(" (use supervisor status, start, stop, ... instead of supervisorctl)"),
        ("rpcinterface" | "ctlplugin", true) => SectionKind::Ignored(""),
        ("fcgi-program", true) => {
            return Err(invalid(
                &sec.at,
                &format!("[{name}]"),
                "fcgi-program is not supported: this supervisor does not create FastCGI sockets; run \
                 the FastCGI server as a [program:NAME] that opens its own socket (e.g. php-fpm -F, \
                 or spawn-fcgi -n)",
            ))
        }
        _ => SectionKind::Unknown(did_you_mean(
            name,
            &["supervisord", "include", "unix_http_server", "inet_http_server", "supervisorctl"],
        )),
    })
}

/// Notes the ignored sections; warns about unknown sections and `[DEFAULT]` keys no section
/// knows (supervisord ignores both).
fn check_sections(doc: &Document, notices: &mut Notices) -> Result<(), ConfigError> {
    for sec in doc.sections.iter().filter(|s| !s.ignored) {
        match section_kind(sec)? {
            SectionKind::Ignored(why) => notices.once(
                &format!("section-ignored:{}", sec.name),
                format!(
                    "notice: [{}] (in {}) is accepted and ignored{why}",
                    sec.name, sec.at
                ),
            ),
            SectionKind::Unknown(hint) => notices.warn(
                &sec.at,
                &format!("[{}]", sec.name),
                format!(
                    "unknown section{hint}; supervisord ignores it, and so does this supervisor \
                     (`supervisor check --strict` refuses it); its sections are {SECTION_NAMES}"
                ),
            ),
            SectionKind::Used => {}
        }
    }
    if let Some(defaults) = doc.find("DEFAULT") {
        let known = |k: &str| {
            is_program_key(k)
                || is_supervisord_key(k)
                || GROUP_KEYS.contains(&k)
                || LISTENER_KEYS.contains(&k)
                || k == "files"
        };
        for e in defaults.entries.iter().filter(|e| !known(&e.key)) {
            warn_unknown(e, "DEFAULT", PROGRAM_KEYS, notices);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// [supervisord]

/// Settings and the environment of every program, from `[supervisord]`.
fn supervisord(
    doc: &Document,
    names: &Names,
    notices: &mut Notices,
) -> Result<(Settings, Vec<(String, String)>), ConfigError> {
    let mut settings = Settings::default();
    let mut env = Vec::new();
    let mut control_addr_at = None;
    let Some(sec) = doc.find("supervisord") else {
        return Ok((settings, env));
    };
    for e in doc.entries(sec, is_supervisord_key) {
        if !is_supervisord_key(&e.key) {
            let known: Vec<&str> = SUPERVISORD_KEYS
                .iter()
                .copied()
                .chain(SUPERVISORD_IGNORED.iter().map(|i| i.0))
                .collect();
            warn_unknown(e, "supervisord", &known, notices);
            continue;
        }
        let text = Text::new(&e.value, &e.key, &e.at);
        let value = expand::expand(&text, names)?;
        let fail = |m: String| invalid(&e.at, &e.key, m);
        match e.key.as_str() {
            "metrics_addr" => {
                settings.metrics_addr = Some(parse_metrics_addr(&value).map_err(fail)?)
            }
            "socket" if value.is_empty() => {
                return Err(fail(
                    "the socket path is empty; give a path like /run/supervisor.sock".into(),
                ))
            }
            "socket" => settings.socket = Some(PathBuf::from(value)),
            "log_format" => settings.log_format = Some(parse_log_format(&value).map_err(fail)?),
            "probe" => settings.probe = Some(parse_probe(&value).map_err(fail)?),
            "shutdown_timeout" => {
                settings.shutdown_timeout = Some(float_seconds(&value).map_err(fail)?)
            }
            "control_addr" => {
                settings.control_addr = super::parse_control_addr(&value).map_err(fail)?;
                control_addr_at = settings.control_addr.map(|_| e.at.clone());
            }
            "control_token_file" if value.is_empty() => {
                return Err(fail(
                    "the path is empty; give the path of a file holding the token".into(),
                ))
            }
            "control_token_file" => settings.control_token_file = Some(PathBuf::from(value)),
            "environment" => env = expand::environment(&Environment::Pairs(text), names)?,
            key => {
                if let Some((check, why)) = ignored_key(SUPERVISORD_IGNORED, key) {
                    accept_ignored(check, why, e, &value, notices)?
                }
            }
        }
    }
    if let (Some(at), None) = (control_addr_at, &settings.control_token_file) {
        return Err(invalid(&at, "control_addr", super::CONTROL_TOKEN_NEEDED));
    }
    Ok((settings, env))
}

/// `[unix_http_server]` and `[inet_http_server]`, read by [`super::rpc_servers`].
fn rpc_servers(
    doc: &Document,
    names: &Names,
    notices: &mut Notices,
    settings: &mut Settings,
) -> Result<(), ConfigError> {
    for (name, inet) in [("unix_http_server", false), ("inet_http_server", true)] {
        let Some(sec) = doc.find(name) else { continue };
        let entries: Vec<super::rpc_servers::Entry> = doc
            .entries(sec, |k| super::rpc_servers::KEYS.contains(&k))
            .into_iter()
            .map(|e| super::rpc_servers::Entry {
                key: &e.key,
                value: &e.value,
                at: &e.at,
            })
            .collect();
        let mut notice = |line: String| notices.once(&line.clone(), line);
        super::rpc_servers::section(
            inet,
            &sec.at,
            &entries,
            names,
            &mut notice,
            &mut settings.rpc,
        )?;
    }
    Ok(())
}

/// Seconds written as a number that may be fractional (`2.5`), from 0 to one year.
fn float_seconds(value: &str) -> Result<Duration, String> {
    let secs: f64 = value.trim().parse().map_err(|_| {
        format!(
            "{value:?} is not allowed; use a number of seconds {}, like 9 or 2.5",
            expand::seconds_range()
        )
    })?;
    expand::seconds(secs)
}

// ---------------------------------------------------------------------------------------------
// [group:x]

/// A program's place in a `[group:x]`.
struct Membership {
    group: String,
    /// The group's `priority`, if it sets one, and where.
    priority: Option<(i32, Location)>,
}

/// Which program is in which group.
fn groups(
    doc: &Document,
    names: &Names,
    notices: &mut Notices,
) -> Result<HashMap<String, Membership>, ConfigError> {
    let mut members: HashMap<String, Membership> = HashMap::new();
    for sec in doc
        .sections
        .iter()
        .filter(|s| !s.ignored && s.name.starts_with("group:"))
    {
        let group = sec.name["group:".len()..].trim().to_string();
        check_name(&group).map_err(|m| invalid(&sec.at, &format!("[{}]", sec.name), m))?;
        let mut programs: Option<(Vec<String>, &Entry)> = None;
        let mut priority = None;
        for e in doc.entries(sec, |k| GROUP_KEYS.contains(&k)) {
            if !GROUP_KEYS.contains(&e.key.as_str()) {
                warn_unknown(e, &sec.name, GROUP_KEYS, notices);
                continue;
            }
            let value = expand::expand(&Text::new(&e.value, &e.key, &e.at), names)?;
            match e.key.as_str() {
                "programs" if value.is_empty() => programs = Some((Vec::new(), e)),
                "programs" => {
                    programs = Some((value.split(',').map(|p| p.trim().to_string()).collect(), e))
                }
                "priority" => {
                    let p = parse_int_in(&value, "a whole number; lower starts first")
                        .map_err(|m| invalid(&e.at, &e.key, m))?;
                    priority = Some((p, e.at.clone()));
                }
                _ => {}
            }
        }
        let Some((programs, entry)) = programs else {
            continue;
        };
        for program in programs {
            if doc.find(&format!("program:{program}")).is_none() {
                return Err(invalid(
                    &entry.at,
                    "programs",
                    format!("[{}] names the unknown program {program:?}; define [program:{program}] or remove it from programs", sec.name),
                ));
            }
            if let Some(other) = members.get(&program) {
                return Err(invalid(
                    &entry.at,
                    "programs",
                    format!(
                        "{program:?} is already in [group:{}]; a program can be in one group only",
                        other.group
                    ),
                ));
            }
            members.insert(
                program,
                Membership {
                    group: group.clone(),
                    priority: priority.clone(),
                },
            );
        }
    }
    Ok(members)
}

// ---------------------------------------------------------------------------------------------
// [program:x]

/// The name after `program:` (or `eventlistener:`).
fn program_name(sec: &Section) -> &str {
    sec.name.split_once(':').map_or("", |(_, n)| n.trim())
}

/// One `[program:x]` section as a template (its processes are made by [`expand::processes`]).
fn program(
    doc: &Document,
    sec: &Section,
    member: Option<&Membership>,
    names: &Names,
    global_env: &[(String, String)],
    notices: &mut Notices,
) -> Result<ProgramTemplate, ConfigError> {
    let name = program_name(sec);
    check_name(name).map_err(|m| invalid(&sec.at, &format!("[{}]", sec.name), m))?;
    let mut t = ProgramTemplate::new(name, Command::Argv(Vec::new()), sec.at.clone());
    t.group = member.map(|m| m.group.clone());
    t.global_env = global_env.to_vec();
    let names = t.names(names);
    let mut has_command = false;
    let mut killasgroup_at = None;
    let mut own_priority = None;
    let listener = sec.name.starts_with("eventlistener:");
    let known = |k: &str| is_program_key(k) || (listener && LISTENER_KEYS.contains(&k));
    for e in doc.entries(sec, known) {
        if !known(&e.key) {
            warn_unknown(e, &sec.name, PROGRAM_KEYS, notices);
            continue;
        }
        let text = Text::new(&e.value, &e.key, &e.at);
        match e.key.as_str() {
            // Read by [`eventlistener`].
            key if LISTENER_KEYS.contains(&key) => {}
            "command" => {
                t.command = Command::Shell(text);
                has_command = true;
            }
            "process_name" => t.process_name = Some(text),
            "directory" => t.directory = Some(text),
            "environment" => t.environment = Some(Environment::Pairs(text)),
            "stdout_logfile" => t.stdout.path = Some(text),
            "stderr_logfile" => t.stderr.path = Some(text),
            key => {
                let value = expand::expand(&text, &names)?;
                let fail = |m: String| invalid(&e.at, key, m);
                if apply(&mut t, key, &value).map_err(fail)? {
                    match key {
                        "killasgroup" => killasgroup_at = Some(e.at.clone()),
                        "priority" => own_priority = Some(t.spec.priority),
                        _ => {}
                    }
                } else if let Some((check, why)) = ignored_key(PROGRAM_IGNORED, key) {
                    accept_ignored(check, why, e, &value, notices)?;
                }
            }
        }
    }
    if !has_command {
        return Err(invalid(
            &sec.at,
            "command",
            format!("[{}] does not specify a command; add one, e.g. command=/usr/sbin/apache2ctl -DFOREGROUND", sec.name),
        ));
    }
    expand::resolve_killasgroup(&mut t.spec, killasgroup_at.as_ref())?;
    if let Some(m) = member {
        apply_group_priority(&mut t, m, own_priority, notices);
    }
    Ok(t)
}

// ---------------------------------------------------------------------------------------------
// [eventlistener:x]

/// One `[eventlistener:x]` pool, checked as supervisord checks it: a `[program:x]` plus `events`
/// (required, each a known event type), `buffer_size` (1 or more), `result_handler`, no
/// `redirect_stderr` (stdout is the protocol), and a pool priority of -1 unless set.
fn eventlistener(
    doc: &Document,
    sec: &Section,
    names: &Names,
    global_env: &[(String, String)],
    notices: &mut Notices,
) -> Result<EventListenerSpec, ConfigError> {
    let pool = program_name(sec).to_string();
    let t = program(doc, sec, None, names, global_env, notices)?;
    let mut spec = EventListenerSpec {
        pool: pool.clone(),
        events: Vec::new(),
        buffer_size: 10,
        result_handler: DEFAULT_RESULT_HANDLER.to_string(),
        priority: -1,
        processes: Vec::new(),
        defined_at: sec.at.clone(),
    };
    let own = t.names(names);
    let mut has_events = false;
    let wanted = |k: &str| LISTENER_KEYS.contains(&k) || k == "priority";
    for e in doc
        .entries(sec, wanted)
        .into_iter()
        .filter(|e| wanted(&e.key))
    {
        let value = expand::expand(&Text::new(&e.value, &e.key, &e.at), &own)?;
        let fail = |m: String| invalid(&e.at, &e.key, m);
        match e.key.as_str() {
            "priority" => spec.priority = t.spec.priority,
            "buffer_size" => {
                spec.buffer_size = parse_count(&value, 1).map_err(fail)?;
            }
            "result_handler" => spec.result_handler = value.trim().to_string(),
            "events" => {
                has_events = true;
                for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let name = name.to_ascii_uppercase();
                    if !EVENT_TYPES.contains(&name.as_str()) {
                        let hint = did_you_mean(&name, EVENT_TYPES);
                        return Err(fail(format!(
                            "unknown event type {name}{hint}; the types are {}",
                            EVENT_TYPES.join(", ")
                        )));
                    }
                    if !spec.events.contains(&name) {
                        spec.events.push(name);
                    }
                }
            }
            _ => {}
        }
    }
    if !has_events || spec.events.is_empty() {
        return Err(invalid(
            &sec.at,
            "events",
            format!(
                "[{}] section requires an \"events\" line, e.g. events=PROCESS_STATE_FATAL",
                sec.name
            ),
        ));
    }
    if t.spec.redirect_stderr {
        let at = doc
            .entries(sec, |k| k == "redirect_stderr")
            .into_iter()
            .find(|e| e.key == "redirect_stderr")
            .map_or_else(|| sec.at.clone(), |e| e.at.clone());
        return Err(invalid(
            &at,
            "redirect_stderr",
            format!(
                "[{}] sets redirect_stderr=true, which is not allowed: it would mix stderr into \
                 the event listener protocol on stdout; remove it",
                sec.name
            ),
        ));
    }
    if spec.result_handler != DEFAULT_RESULT_HANDLER {
        notices.once(
            &format!("result_handler:{pool}"),
            format!(
                "notice: result_handler={} of [{}] (in {}) is a Python function; only \
                 supervisord's default handler exists here",
                spec.result_handler, sec.name, sec.at
            ),
        );
    }
    notices.once(
        &format!("eventlistener:{pool}"),
        format!(
            "notice: [{}] (in {}) is checked (see `supervisor check --json`) but not run: event \
             listeners are not supported yet; to stop everything when a program fails for good, \
             set critical=true on it",
            sec.name, sec.at
        ),
    );
    spec.processes = expand::processes(&t, names, notices)?;
    Ok(spec)
}

/// supervisord orders groups by the group's priority and uses a program's own priority only
/// within its group. Programs here are ordered one by one, so a group that sets a priority gives
/// it to its programs.
fn apply_group_priority(
    t: &mut ProgramTemplate,
    m: &Membership,
    own: Option<i32>,
    notices: &mut Notices,
) {
    let Some((priority, at)) = &m.priority else {
        return;
    };
    if own.is_some_and(|own| own != *priority) {
        notices.once(
            &format!("group-priority:{}", t.name),
            format!(
                "notice: the priority of [program:{}] ({}) is replaced by the priority={priority} of \
                 [group:{}] (in {at}): programs are ordered by their group's priority",
                t.name, t.spec.defined_at, m.group
            ),
        );
    }
    t.spec.priority = *priority;
}

/// Applies a `[program:x]` setting that is the same for every process. `Ok(false)`: not a key
/// this supervisor implements.
fn apply(t: &mut ProgramTemplate, key: &str, v: &str) -> Result<bool, String> {
    let spec = &mut t.spec;
    match key {
        "numprocs" => t.numprocs = parse_int_in(v, "a whole number of processes")?,
        "numprocs_start" => t.numprocs_start = parse_int_in(v, "a whole number")?,
        "priority" => spec.priority = parse_int_in(v, "a whole number; lower starts first")?,
        "autostart" => spec.autostart = parse_bool(v)?,
        "autorestart" => spec.autorestart = parse_autorestart(v)?,
        "startsecs" => spec.startsecs = parse_whole_seconds(v)?,
        "startretries" => spec.startretries = parse_count(v, 0)?,
        "exitcodes" => spec.exitcodes = parse_exitcodes(v)?,
        "stopsignal" => spec.stopsignal = parse_stopsignal(v)?,
        "stopwaitsecs" => spec.stopwaitsecs = parse_whole_seconds(v)?,
        "stopasgroup" => spec.stopasgroup = parse_bool(v)?,
        "killasgroup" => spec.killasgroup = parse_bool(v)?,
        "user" => {
            check_user(v)?;
            spec.user = Some(v.to_string())
        }
        "umask" => spec.umask = Some(parse_octal(v)?),
        "redirect_stderr" => spec.redirect_stderr = parse_bool(v)?,
        "critical" => spec.critical = parse_bool(v)?,
        // Extensions (not supervisord's): start-up dependencies, readiness and health checks.
        "depends_on" => {
            spec.depends_on = v
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect()
        }
        "ready" => spec.ready = Some(super::check::Check::parse(v, false)?),
        "health" => spec.health = Some(super::check::Check::parse(v, true)?),
        "ready_timeout" => spec.ready_timeout = float_seconds(v)?,
        "health_interval" => spec.health_interval = float_seconds(v)?,
        "health_timeout" => spec.health_timeout = float_seconds(v)?,
        "health_retries" => spec.health_retries = parse_count(v, 1)?,
        "stdout_logfile_maxbytes" => t.stdout.max_bytes = parse_byte_size(v)?,
        "stdout_logfile_backups" => t.stdout.backups = parse_count(v, 0)?,
        "stderr_logfile_maxbytes" => t.stderr.max_bytes = parse_byte_size(v)?,
        "stderr_logfile_backups" => t.stderr.backups = parse_count(v, 0)?,
        _ => return Ok(false),
    }
    Ok(true)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{AutoRestart, LogTarget, ProgramSpec};

    fn ctx() -> Context {
        Context {
            env: vec![
                ("HOME".into(), "/root".into()),
                ("DB_PASS".into(), "s3cret".into()),
            ],
            host_node_name: "box".into(),
        }
    }

    fn parse_str(text: &str) -> Result<Config, ConfigError> {
        parse_with(Path::new("/etc/app.conf"), text, &ctx())
    }

    fn load(text: &str) -> Config {
        parse_str(text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The error for `text`, as (file:line, key, message).
    fn error(text: &str) -> (String, String, String) {
        match parse_str(text) {
            Err(ConfigError::Invalid {
                location,
                key,
                message,
            }) => (location.to_string(), key, message),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn fixture(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/config")
            .join(rel)
    }

    fn load_fixture(rel: &str) -> Config {
        let path = fixture(rel);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        parse_with(&path, &text, &ctx()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn program<'a>(c: &'a Config, name: &str) -> &'a ProgramSpec {
        c.programs
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no program {name} in {:?}", c.programs))
    }

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn debian_default_file_loads_with_notices() {
        let c = load_fixture("debian/supervisord.conf");
        let included = glob_files(Path::new("/etc/supervisor/conf.d/*.conf")).unwrap_or_default();
        if included.is_empty() {
            assert!(c.programs.is_empty(), "{:?}", c.programs);
        }
        let notices = c.notices.join("\n");
        for expected in [
            "[unix_http_server] (in ",
            "[rpcinterface:supervisor] (in ",
            "[supervisorctl] (in ",
            "logfile (in ",
            "pidfile (in ",
            "childlogdir (in ",
        ] {
            assert!(
                notices.contains(expected),
                "{expected:?} missing from:\n{notices}"
            );
        }
        assert!(
            notices.contains("debian/supervisord.conf:8) is accepted and ignored"),
            "{notices}"
        );
        // Its [unix_http_server] is served (supervisord's XML-RPC); nothing else is set.
        assert!(c.settings.rpc.unix.is_some());
        let rpc = Default::default();
        assert_eq!(Settings { rpc, ..c.settings }, Settings::default());
    }

    #[test]
    fn lamp_fixture_matches_supervisord() {
        let c = load_fixture("lamp/supervisord.conf");
        let names: Vec<&str> = c.programs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["mysqld", "apache2"], "sorted by priority");

        let apache = program(&c, "apache2");
        assert_eq!(
            apache.command,
            argv(&[
                "/bin/bash",
                "-c",
                "source /etc/apache2/envvars && exec /usr/sbin/apache2 -DFOREGROUND"
            ])
        );
        assert_eq!(apache.autorestart, AutoRestart::Always);
        assert_eq!(apache.startretries, 5);
        assert_eq!(apache.stopsignal, libc::SIGWINCH);
        assert_eq!(apache.stdout, LogTarget::Stdout);
        assert_eq!(apache.stderr, LogTarget::Stderr);
        assert_eq!(
            apache.environment,
            [
                ("APACHE_RUN_USER", "www-data"),
                ("APACHE_RUN_GROUP", "www-data"),
                ("APACHE_LOG_DIR", "/var/log/apache2")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(apache.defined_at.file, fixture("lamp/conf.d/apache2.conf"));
        assert_eq!(apache.defined_at.line, 1);
        assert_eq!(apache.group, None);

        let mysql = program(&c, "mysqld");
        assert_eq!(
            mysql.command,
            argv(&[
                "/usr/bin/pidproxy",
                "/var/run/mysqld/mysqld.pid",
                "/usr/bin/mysqld_safe",
                "--pid-file=/var/run/mysqld/mysqld.pid"
            ])
        );
        assert_eq!(
            (mysql.priority, mysql.startsecs, mysql.stopwaitsecs),
            (10, Duration::from_secs(5), Duration::from_secs(30))
        );
        assert!(mysql.stopasgroup && mysql.killasgroup && mysql.redirect_stderr);
        let log = LogTarget::File {
            path: "/var/log/supervisor/mysqld.log".into(),
            max_bytes: 10 << 20,
            backups: 3,
        };
        assert_eq!(mysql.stdout, log);
        assert_eq!(
            mysql.stderr, log,
            "redirect_stderr sends stderr where stdout goes"
        );

        let notices = c.notices.join("\n");
        assert!(
            notices.contains("[supervisord] (in "),
            "repeated section noted: {notices}"
        );
        assert!(notices.contains("nodaemon (in "), "{notices}");
    }

    /// The sections and values configparser would produce (checked against Python 3.11).
    fn lex(text: &str) -> Vec<(String, Vec<(String, String)>)> {
        let mut doc = Document::default();
        doc.read(Path::new("/x.conf"), text, true, &mut Notices::default())
            .unwrap_or_else(|e| panic!("{e}"));
        doc.sections
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    s.entries
                        .iter()
                        .map(|e| (e.key.clone(), e.value.clone()))
                        .collect(),
                )
            })
            .collect()
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn configparser_syntax() {
        let sections = lex(
            "[program:a]\nCommand : /bin/echo one ;comment\n   two#not-a-comment three\n\n   ; a comment line \
             inside the value\n   four # comment\n# full-line comment\nenvironment=A=x;y\n[program:b]\ncommand=x # c ; \
             d\nfoo=a#b ;c\nbar=a ;b #c\nbaz=a;b #c ;d\n",
        );
        assert_eq!(
            sections,
            [
                (
                    "program:a".to_string(),
                    pairs(&[
                        ("command", "/bin/echo one\ntwo#not-a-comment three\n\nfour"),
                        ("environment", "A=x;y")
                    ])
                ),
                (
                    "program:b".to_string(),
                    pairs(&[
                        ("command", "x"),
                        ("foo", "a#b"),
                        ("bar", "a"),
                        ("baz", "a;b")
                    ])
                ),
            ]
        );
    }

    #[test]
    fn repeated_sections_merge_and_later_keys_win() {
        let sections = lex("[program:a]\ncommand=one\npriority=1\n[program:b]\ncommand=b\n[program:a]\ncommand=two\n");
        assert_eq!(
            sections[0],
            (
                "program:a".to_string(),
                pairs(&[("command", "two"), ("priority", "1")])
            )
        );
        assert_eq!(sections.len(), 2);
    }

    #[test]
    fn header_and_continuation_rules() {
        // An indented line after a key continues it, even if it looks like a section header.
        let sections = lex("[a] ; comment\nk=v\n  [b]\n\tk2 = v2\nk3=\n  x\n");
        assert_eq!(
            sections,
            [(
                "a".to_string(),
                pairs(&[("k", "v\n[b]\nk2 = v2"), ("k3", "\nx")])
            )]
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "[program:a]\ncommand=x\nautorestart=sometimes\n",
                "/etc/app.conf:3",
                "autorestart",
                "\"sometimes\" is not allowed; use true, false or unexpected",
            ),
            (
                "; c\n[program:a]\nautostart=true\n",
                "/etc/app.conf:2",
                "command",
                "[program:a] does not specify a command",
            ),
            (
                "[program:a]\ncommand=x\nstartsecs=1.5\n",
                "/etc/app.conf:3",
                "startsecs",
                "whole number of seconds",
            ),
            (
                "[program:a]\ncommand=x\nstartsecs=9223372036854775807\n",
                "/etc/app.conf:3",
                "startsecs",
                "\"9223372036854775807\" is not allowed; use a whole number of seconds from 0 to 31536000 (one year)",
            ),
            (
                "[program:a]\ncommand=x\nuser=nosuchuser\n",
                "/etc/app.conf:3",
                "user",
                "invalid user name nosuchuser",
            ),
            (
                "[supervisord]\nuser=nosuchuser\n",
                "/etc/app.conf:2",
                "user",
                "invalid user name nosuchuser",
            ),
            (
                "[program:a]\ncommand=x\nstopwaitsecs=31536001\n",
                "/etc/app.conf:3",
                "stopwaitsecs",
                "from 0 to 31536000",
            ),
            (
                "[program:a]\ncommand=x\nhealth_timeout=1e19\n",
                "/etc/app.conf:3",
                "health_timeout",
                "from 0 to 31536000",
            ),
            (
                "[program:a]\ncommand=x\nstartretries=99999999999\n",
                "/etc/app.conf:3",
                "startretries",
                "from 0 to 1000000",
            ),
            (
                "[supervisord]\nshutdown_timeout=nan\n",
                "/etc/app.conf:2",
                "shutdown_timeout",
                "from 0 to 31536000",
            ),
            (
                "[program:a]\ncommand=x\nexitcodes=0,256\n",
                "/etc/app.conf:3",
                "exitcodes",
                "exit codes are 0 to 255",
            ),
            (
                "[program:a]\ncommand=x\nstopsignal=FOO\n",
                "/etc/app.conf:3",
                "stopsignal",
                "signal name",
            ),
            (
                "[program:a]\ncommand=x\nstdout_logfile_maxbytes=5XB\n",
                "/etc/app.conf:3",
                "stdout_logfile_maxbytes",
                "50MB",
            ),
            (
                "[program:a]\ncommand=x\nenvironment=A=1 B=2\n",
                "/etc/app.conf:3",
                "environment",
                "KEY=value",
            ),
            (
                "[program:a]\ncommand=x\nenvironment=A=\"open\n",
                "/etc/app.conf:3",
                "environment",
                "no closing quotation",
            ),
            (
                "[program:a]\ncommand=/bin/x --user=%(user)s\n",
                "/etc/app.conf:2",
                "command",
                "%(user) is not a name",
            ),
            (
                "[program:a]\ncommand=/bin/x %(ENV_NOPE)s\n",
                "/etc/app.conf:2",
                "command",
                "environment variable NOPE is not set",
            ),
            (
                "[program:a]\ncommand=date +%Y\n",
                "/etc/app.conf:2",
                "command",
                "write %% for a literal %",
            ),
            (
                "[program:a]\ncommand=x\nnumprocs=2\n",
                "/etc/app.conf:1",
                "process_name",
                "%(process_num) must be present",
            ),
            (
                "[program:a]\ncommand=x\nnumprocs=2\nprocess_name=a\n",
                "/etc/app.conf:4",
                "process_name",
                "%(process_num) must be present",
            ),
            (
                "[program:a]\ncommand=x\n[program:b]\ncommand=y\nprocess_name=a\n",
                "/etc/app.conf:3",
                "process_name",
                "already used by the program defined at /etc/app.conf:1",
            ),
            (
                "[program:a]\ncommand=x\nstopasgroup=true\nkillasgroup=false\n",
                "/etc/app.conf:4",
                "killasgroup",
                "stopasgroup=true",
            ),
            (
                "[group:g]\nprograms=a,b\n[program:a]\ncommand=x\n",
                "/etc/app.conf:2",
                "programs",
                "unknown program \"b\"",
            ),
            (
                "[program:a b]\ncommand=x\n",
                "/etc/app.conf:1",
                "[program:a b]",
                "cannot contain ' '",
            ),
            (
                "[program:a]\ncommand=\"unterminated\n",
                "/etc/app.conf:2",
                "command",
                "no closing quotation",
            ),
            (
                "[program:a]\ncommand=\n",
                "/etc/app.conf:2",
                "command",
                "the command is empty",
            ),
            (
                "command=x\n",
                "/etc/app.conf:1",
                "syntax",
                "before any [section]",
            ),
            (
                "[program:a]\ncommand=x\njust words\n",
                "/etc/app.conf:3",
                "syntax",
                "is not a setting",
            ),
            (
                "[supervisord]\nnodaemon=maybe\n",
                "/etc/app.conf:2",
                "nodaemon",
                "use true or false",
            ),
            (
                "[supervisord]\nmetrics_addr=localhost:9000\n",
                "/etc/app.conf:2",
                "metrics_addr",
                "IP address and port",
            ),
            (
                "[supervisord]\nnodaemon=true\ncontrol_addr=127.0.0.1:9470\n",
                "/etc/app.conf:3",
                "control_addr",
                "control_token_file",
            ),
            (
                "[supervisord]\ncontrol_addr=nowhere\ncontrol_token_file=/t\n",
                "/etc/app.conf:2",
                "control_addr",
                "IP address and port",
            ),
            (
                "[fcgi-program:php]\ncommand=php-cgi\n",
                "/etc/app.conf:1",
                "[fcgi-program:php]",
                "not supported",
            ),
            (
                "[include]\n",
                "/etc/app.conf:1",
                "files",
                "no files setting",
            ),
            (
                "[program:a]\ncommand=x\nstdout_events_enabled=sure\n",
                "/etc/app.conf:3",
                "stdout_events_enabled",
                "use true or false",
            ),
            (
                "[program:a]\ncommand=x\0y\n",
                "/etc/app.conf:2",
                "syntax",
                "NUL byte",
            ),
            (
                "[program:a]\ncommand=x\nnumprocs=20000\nprocess_name=%(process_num)d\n",
                "/etc/app.conf:1",
                "numprocs",
                "at most 10000",
            ),
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

    /// What supervisord ignores (unknown or misplaced keys, unknown sections) is a warning with
    /// file:line, not an error; values of known keys stay checked.
    #[test]
    fn unknown_keys_and_sections_are_warnings() {
        let c = load(
            "[supervisord]\nunmask=022\ncritical = critical\nstdout_logfile=/dev/stdout\nredirect_stderr=true\n\
             [program:a]\ncommand=x\nautostrat=true\npidfile=/run/a.pid\nbad=%(nope)s\n\
             [programs:b]\ncommand=y\n[group:g]\nprograms=a\nprority=1\n[DEFAULT]\nautorestrt=true\n\
             [include]\nfiles=\nfile=x.conf\n",
        );
        let expected = [
            "warning: /etc/app.conf:2: unmask: not a setting of [supervisord]; did you mean umask?",
            "warning: /etc/app.conf:3: critical: not a setting of [supervisord]; it is a setting of [program:NAME], not of this section",
            "warning: /etc/app.conf:4: stdout_logfile: not a setting of [supervisord]; it is a setting of [program:NAME]",
            "warning: /etc/app.conf:5: redirect_stderr: not a setting of [supervisord]; it is a setting of [program:NAME]",
            "warning: /etc/app.conf:8: autostrat: not a setting of [program:a]; did you mean autostart?",
            "warning: /etc/app.conf:9: pidfile: not a setting of [program:a]; it is a setting of [supervisord], not of a program",
            "warning: /etc/app.conf:10: bad: not a setting of [program:a]",
            "warning: /etc/app.conf:11: [programs:b]: unknown section",
            "warning: /etc/app.conf:15: prority: not a setting of [group:g]; did you mean priority?",
            "warning: /etc/app.conf:17: autorestrt: not a setting of [DEFAULT]; did you mean autorestart?",
            "warning: /etc/app.conf:20: file: not a setting of [include]; did you mean files?",
        ];
        for w in expected {
            assert!(
                c.warnings.iter().any(|got| got.starts_with(w)),
                "{w:?} not in {:#?}",
                c.warnings
            );
        }
        assert_eq!(c.warnings.len(), expected.len(), "{:#?}", c.warnings);
        assert!(c
            .warnings
            .iter()
            .all(|w| w.contains("supervisord ignores it")));
        assert_eq!(c.programs.len(), 1);
        assert!(c.programs[0].autostart);
        // A known key's value is still checked.
        let (at, key, _) = error("[program:a]\ncommand=x\nbogus=1\nautostart=maybe\n");
        assert_eq!(
            (at.as_str(), key.as_str()),
            ("/etc/app.conf:4", "autostart")
        );
    }

    /// supervisord's rule: every program is in a group (its [group:x], else its own); the group
    /// shows in the name when it differs from the process name.
    #[test]
    fn numprocs_one_with_a_process_name_keeps_its_group() {
        let c = load(
            "[program:httpd]\ncommand=httpd\nprocess_name=%(program_name)s_%(process_num)02d\n\
             [program:plain]\ncommand=x\n[program:same]\ncommand=x\nprocess_name=%(program_name)s\n",
        );
        let got: Vec<(&str, Option<&str>)> = c
            .programs
            .iter()
            .map(|p| (p.name.as_str(), p.group.as_deref()))
            .collect();
        assert_eq!(
            got,
            [("httpd_00", Some("httpd")), ("plain", None), ("same", None)]
        );
    }

    #[test]
    fn eventlisteners_are_read_with_supervisords_checks() {
        let c = load(
            "[eventlistener:fatal]\ncommand=/usr/local/bin/kill-on-fatal\nevents=PROCESS_STATE_FATAL, process_state_exited,PROCESS_STATE_FATAL\n\
             buffer_size=50\n[eventlistener:mem]\ncommand=memmon -a 200MB\nevents=TICK_60\nnumprocs=2\n\
             process_name=%(program_name)s_%(process_num)d\npriority=5\n",
        );
        assert!(c.programs.is_empty(), "listeners are not programs");
        let fatal = &c.eventlisteners[0];
        assert_eq!(fatal.pool, "fatal");
        assert_eq!(
            fatal.events,
            ["PROCESS_STATE_FATAL", "PROCESS_STATE_EXITED"]
        );
        assert_eq!((fatal.buffer_size, fatal.priority), (50, -1));
        assert_eq!(
            fatal.processes[0].command,
            argv(&["/usr/local/bin/kill-on-fatal"])
        );
        assert_eq!(fatal.processes[0].group, None);
        let mem = &c.eventlisteners[1];
        let names: Vec<(&str, Option<&str>)> = mem
            .processes
            .iter()
            .map(|p| (p.name.as_str(), p.group.as_deref()))
            .collect();
        assert_eq!(names, [("mem_0", Some("mem")), ("mem_1", Some("mem"))]);
        assert_eq!((mem.buffer_size, mem.priority), (10, 5));
        for (text, at, key, message) in [
            (
                "[eventlistener:x]\ncommand=y\n",
                "/etc/app.conf:1",
                "events",
                "requires an \"events\" line",
            ),
            (
                "[eventlistener:x]\ncommand=y\nevents=PROCESS_STATE_FATL\n",
                "/etc/app.conf:3",
                "events",
                "did you mean PROCESS_STATE_FATAL?",
            ),
            (
                "[eventlistener:x]\ncommand=y\nevents=TICK_5\nbuffer_size=0\n",
                "/etc/app.conf:4",
                "buffer_size",
                "from 1 to 1000000",
            ),
            (
                "[eventlistener:x]\ncommand=y\nevents=TICK_5\nredirect_stderr=true\n",
                "/etc/app.conf:4",
                "redirect_stderr",
                "not allowed",
            ),
        ] {
            let (got_at, got_key, got_message) = error(text);
            assert_eq!(
                (got_at.as_str(), got_key.as_str()),
                (at, key),
                "{got_message}"
            );
            assert!(got_message.contains(message), "{got_message}");
        }
    }

    #[test]
    fn first_error_wins() {
        let (at, key, _) =
            error("[program:a]\ncommand=x\nautostart=maybe\nautorestart=sometimes\n");
        assert_eq!(
            (at.as_str(), key.as_str()),
            ("/etc/app.conf:3", "autostart")
        );
    }

    #[test]
    fn defaults_are_supervisords() {
        let c = load("[program:web]\ncommand=/usr/bin/web\n");
        let expected = ProgramSpec::new(
            "web",
            argv(&["/usr/bin/web"]),
            Location {
                file: "/etc/app.conf".into(),
                line: 1,
            },
        );
        assert_eq!(c.programs, [expected]);
        assert!(c.notices.is_empty(), "{:?}", c.notices);
    }

    #[test]
    fn every_value_type() {
        let c = load(
            "[program:w]\ncommand=/bin/w\ndirectory=/srv\nuser=www-data\numask=027\nautostart=no\nautorestart=unexpected\n\
             exitcodes=0,2\nstartsecs=0\nstartretries=10\nstopsignal=SIGQUIT\nstopwaitsecs=3\nkillasgroup=1\npriority=-5\n\
             stdout_logfile=NONE\nstderr_logfile=~/err.log\nstderr_logfile_maxbytes=1KB\nstderr_logfile_backups=0\ncritical=on\n",
        );
        let p = &c.programs[0];
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
            (Duration::ZERO, 10, libc::SIGQUIT)
        );
        assert_eq!(
            (p.stopwaitsecs, p.stopasgroup, p.killasgroup),
            (Duration::from_secs(3), false, true)
        );
        assert_eq!((p.priority, p.critical), (-5, true));
        assert_eq!(p.stdout, LogTarget::Discard);
        assert_eq!(
            p.stderr,
            LogTarget::File {
                path: "/root/err.log".into(),
                max_bytes: 1024,
                backups: 0
            }
        );
    }

    #[test]
    fn numprocs_expand_names_and_values() {
        let c = load(
            "[program:worker]\ncommand=/bin/worker --port=80%(process_num)02d --of=%(numprocs)d --host=%(host_node_name)s\n\
             process_name=%(program_name)s_%(process_num)02d\nnumprocs=3\nnumprocs_start=1\n\
             stdout_logfile=/var/log/%(process_num)d.log\ndirectory=%(here)s/w%(process_num)d\n\
             environment=SLOT=\"%(process_num)d\",LOG=%(ENV_HOME)s\n",
        );
        let names: Vec<&str> = c.programs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["worker_01", "worker_02", "worker_03"]);
        let second = &c.programs[1];
        assert_eq!(
            second.command,
            argv(&["/bin/worker", "--port=8002", "--of=3", "--host=box"])
        );
        assert_eq!(second.group.as_deref(), Some("worker"));
        assert_eq!(second.directory.as_deref(), Some(Path::new("/etc/w2")));
        assert_eq!(
            second.environment,
            pairs(&[("SLOT", "2"), ("LOG", "/root")])
        );
        assert!(
            matches!(&second.stdout, LogTarget::File { path, .. } if path == Path::new("/var/log/2.log"))
        );
    }

    #[test]
    fn environment_quotes_commas_and_global_environment() {
        let c = load(
            "[supervisord]\nenvironment=TZ=UTC,MODE=\"global\"\n\
             [program:a]\ncommand=/bin/a %(ENV_MODE)s %(ENV_TZ)s\nenvironment=MODE=\"local, with comma\",PATH='/usr/bin:/bin',\n  \
             DSN=\"postgres://u:%(ENV_DB_PASS)s@db/x\",EMPTY=\"\"\n",
        );
        let a = &c.programs[0];
        assert_eq!(
            a.environment,
            pairs(&[
                ("TZ", "UTC"),
                ("MODE", "local, with comma"),
                ("PATH", "/usr/bin:/bin"),
                ("DSN", "postgres://u:s3cret@db/x"),
                ("EMPTY", ""),
            ])
        );
        // As in supervisord: the program's own environment is offered as ENV_ too, and wins.
        assert_eq!(
            a.command,
            argv(&["/bin/a", "local,", "with", "comma", "UTC"])
        );
    }

    #[test]
    fn groups_and_their_priority() {
        let c = load(
            "[group:web]\nprograms=nginx, php\npriority=5\n\
             [program:nginx]\ncommand=nginx\npriority=100\n[program:php]\ncommand=php-fpm\n[program:cron]\ncommand=cron\n",
        );
        let order: Vec<(&str, Option<&str>, i32)> = c
            .programs
            .iter()
            .map(|p| (p.name.as_str(), p.group.as_deref(), p.priority))
            .collect();
        assert_eq!(
            order,
            [
                ("nginx", Some("web"), 5),
                ("php", Some("web"), 5),
                ("cron", None, 999)
            ]
        );
        assert!(
            c.notices
                .iter()
                .any(|n| n.contains("priority of [program:nginx]")),
            "{:?}",
            c.notices
        );
    }

    #[test]
    fn ignored_keys_give_one_notice_each() {
        let c = load(
            "[program:a]\ncommand=a\nstdout_capture_maxbytes=1MB\n[program:b]\ncommand=b\nstdout_capture_maxbytes=1MB\n\
             serverurl=AUTO\n[eventlistener:x]\ncommand=y\nevents=PROCESS_STATE\n",
        );
        let capture: Vec<&String> = c
            .notices
            .iter()
            .filter(|n| n.contains("stdout_capture_maxbytes"))
            .collect();
        assert_eq!(capture, ["notice: stdout_capture_maxbytes (in /etc/app.conf:3) is accepted and ignored (there are no event listeners here)"]);
        assert!(
            c.notices
                .iter()
                .any(|n| n.starts_with("notice: [eventlistener:x] (in /etc/app.conf:8)")),
            "{:?}",
            c.notices
        );
        assert_eq!(c.programs.len(), 2);
    }

    #[test]
    fn settings_from_supervisord_section() {
        let c = load(
            "[supervisord]\nmetrics_addr=off\nsocket=%(here)s/s.sock\nlog_format=text\nprobe=on\nshutdown_timeout=2.5\n",
        );
        let s = &c.settings;
        assert_eq!(s.metrics_addr, Some(None));
        assert_eq!(s.socket.as_deref(), Some(Path::new("/etc/s.sock")));
        assert_eq!(
            (s.log_format, s.probe),
            (
                Some(crate::config::LogFormat::Text),
                Some(crate::config::ProbeMode::On)
            )
        );
        assert_eq!(s.shutdown_timeout, Some(Duration::from_millis(2500)));
        let c = load("[supervisord]\ncontrol_addr=[::1]:9470\ncontrol_token_file=%(here)s/tok\n");
        assert_eq!(
            (
                c.settings.control_addr,
                c.settings.control_token_file.as_deref()
            ),
            (
                Some("[::1]:9470".parse().unwrap()),
                Some(Path::new("/etc/tok"))
            )
        );
        let c = load("[supervisord]\nmetrics_addr=127.0.0.1:9100\n");
        assert_eq!(
            c.settings.metrics_addr,
            Some(Some(
                "127.0.0.1:9100".parse().unwrap_or_else(|e| panic!("{e}"))
            ))
        );
    }

    #[test]
    fn default_section_applies_to_programs() {
        let c = load("[DEFAULT]\nautorestart=true\nstartsecs=0\n[program:a]\ncommand=a\n[program:b]\ncommand=b\nstartsecs=3\n");
        let got: Vec<(AutoRestart, Duration)> = c
            .programs
            .iter()
            .map(|p| (p.autorestart, p.startsecs))
            .collect();
        assert_eq!(
            got,
            [
                (AutoRestart::Always, Duration::ZERO),
                (AutoRestart::Always, Duration::from_secs(3))
            ]
        );
    }

    #[test]
    fn include_in_an_included_file_is_ignored() {
        let dir = fixture("nested");
        let c = load_fixture("nested/main.conf");
        let names: Vec<&str> = c.programs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["one"]);
        let notice = format!(
            "notice: [include] in {}:3 is ignored",
            dir.join("conf.d/one.conf").display()
        );
        assert!(
            c.notices.iter().any(|n| n.starts_with(&notice)),
            "{notice:?} not in {:?}",
            c.notices
        );
        assert!(
            c.notices
                .iter()
                .any(|n| n.contains("no file matches the include pattern")),
            "{:?}",
            c.notices
        );
    }

    /// Mutates `seed` pseudo-randomly (xorshift, fixed seed: the same inputs every run).
    pub(crate) fn mutations(seed: &str, count: usize) -> Vec<String> {
        const ALPHABET: &[char] = &[
            '[', ']', '=', ':', ';', '#', '%', '(', ')', '"', '\'', '\\', '\n', ' ', '\t', ',',
            '~', '{', '}', '.', '0', '9', 'a', 'Z', '_', '-', 'é', 's', 'd', '\0',
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            usize::try_from(state % n.max(1) as u64).unwrap_or(0)
        };
        (0..count)
            .map(|_| {
                let mut chars: Vec<char> = seed.chars().collect();
                for _ in 0..1 + next(4) {
                    let at = next(chars.len() + 1);
                    match next(3) {
                        0 => chars.insert(at, ALPHABET[next(ALPHABET.len())]),
                        1 if at < chars.len() => {
                            chars.remove(at);
                        }
                        _ => {
                            let from = next(chars.len() + 1);
                            let piece: Vec<char> = chars[from.min(at)..from.max(at)]
                                .iter()
                                .take(20)
                                .copied()
                                .collect();
                            chars.splice(at..at, piece);
                        }
                    }
                }
                chars.into_iter().collect()
            })
            .collect()
    }

    #[test]
    fn no_input_makes_it_panic() {
        let seeds = [
            "[supervisord]\nenvironment=A=\"1\",B=2\n[program:w]\ncommand=/bin/w %(process_num)02d\nnumprocs=2\n\
             process_name=%(program_name)s_%(process_num)d\nenvironment=X=%(ENV_HOME)s\nstdout_logfile=~/x.log\n\
             [group:g]\nprograms=w\npriority=3\n[DEFAULT]\nstartsecs=1\n",
            "[program:a]\ncommand=/bin/sh -c \"echo 'x'\"\n  more\nexitcodes=0,1\numask=022\nstdout_logfile_maxbytes=1MB\n",
        ];
        for seed in seeds {
            for text in mutations(seed, 3000) {
                let _ = parse_with(Path::new("/nonexistent/fuzz.conf"), &text, &ctx());
            }
        }
    }
}
