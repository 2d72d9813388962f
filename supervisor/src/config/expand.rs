//! From what a configuration file says to the processes that run.
//!
//! Both front ends read their own syntax into a [`ProgramTemplate`]: typed settings plus the
//! strings that supervisord expands once per process (`command`, `directory`, `environment`,
//! `process_name`, `stdout_logfile`, `stderr_logfile`). This module expands those with
//! supervisord's `%(name)s` syntax (Python's `%` operator applied to a dict), makes one
//! [`ProgramSpec`] per process (`numprocs`), and checks what must hold across all of them (unique
//! names, an order). It also holds what both formats share below that: the two small Python
//! string languages supervisord uses (`shlex` splitting of commands, `KEY=val,...` lists) and the
//! parsers of values written as text, so that a value means the same thing in TOML and in INI.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{AutoRestart, ConfigError, Location, LogFormat, LogTarget, ProbeMode, ProgramSpec};

/// What an expansion may refer to besides the program itself.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The supervisor's own environment, offered as `%(ENV_X)s`.
    pub env: Vec<(String, String)>,
    /// `%(host_node_name)s`: the kernel's node name (`uname -n`).
    pub host_node_name: String,
}

impl Context {
    /// The context of this process: its environment (variables that are not UTF-8 are left out)
    /// and its host name.
    pub fn from_process() -> Self {
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        Context {
            env,
            host_node_name: host_name(),
        }
    }
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the call; gethostname writes
    // at most `len` bytes into it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// A value a `%(name)s` can stand for.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Str(String),
}

/// The names a `%(name)s` may use at one place in the configuration. `here` is not stored: it is
/// the directory of the file each value was written in.
#[derive(Debug, Clone, Default)]
pub struct Names {
    values: BTreeMap<String, Value>,
    /// `$HOME` of the supervisor, for `~` in log file paths.
    home: Option<String>,
}

impl Names {
    /// `host_node_name` and `ENV_X` for every variable of the context.
    pub fn new(ctx: &Context) -> Self {
        let mut names = Names {
            values: BTreeMap::new(),
            home: ctx
                .env
                .iter()
                .find(|(k, _)| k == "HOME")
                .map(|(_, v)| v.clone()),
        };
        names.set("host_node_name", Value::Str(ctx.host_node_name.clone()));
        names.add_env(&ctx.env);
        names
    }

    pub fn set(&mut self, name: &str, value: Value) {
        self.values.insert(name.to_string(), value);
    }

    /// Offers each variable as `%(ENV_KEY)s`.
    pub fn add_env(&mut self, env: &[(String, String)]) {
        for (k, v) in env {
            self.set(&format!("ENV_{k}"), Value::Str(v.clone()));
        }
    }

    fn get(&self, name: &str, file: &Path) -> Option<Value> {
        match name {
            "here" => Some(Value::Str(here_of(file))),
            _ => self.values.get(name).cloned(),
        }
    }

    /// The names other than `ENV_*`, for error messages.
    fn listed(&self) -> String {
        let mut names: Vec<&str> = self
            .values
            .keys()
            .map(String::as_str)
            .filter(|k| !k.starts_with("ENV_"))
            .collect();
        names.push("here");
        names.sort_unstable();
        names.join(", ")
    }
}

/// `%(here)s`: the absolute directory of the file a value was written in.
fn here_of(file: &Path) -> String {
    let abs = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let dir = abs
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    dir.to_string_lossy().into_owned()
}

/// A value as written, with its key and where it was written, kept for later expansion.
#[derive(Debug, Clone, PartialEq)]
pub struct Text {
    pub value: String,
    pub key: String,
    pub at: Location,
}

impl Text {
    pub fn new(value: &str, key: &str, at: &Location) -> Self {
        Text {
            value: value.to_string(),
            key: key.to_string(),
            at: at.clone(),
        }
    }

    /// An error about this value.
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        invalid(&self.at, &self.key, message)
    }
}

/// `ConfigError::Invalid` at a [`Location`].
pub fn invalid(at: &Location, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::invalid(&at.file, at.line, key, message)
}

/// Expands `%(name)s`, `%(name)d`, `%(name)02d`, ... and `%%` in `text` as supervisord does.
pub fn expand(text: &Text, names: &Names) -> Result<String, ConfigError> {
    format(&text.value, |name| names.get(name, &text.at.file)).map_err(|e| {
        let message = match e {
            FormatError::Unknown(name) => match name.strip_prefix("ENV_") {
                Some(var) => format!(
                    "%({name}): the environment variable {var} is not set (neither in the \
                     supervisor's environment nor in an environment= setting)"
                ),
                None => format!(
                    "%({name}) is not a name that can be used here; available: {}, and ENV_X \
                     for each environment variable X; write %% for a literal %",
                    names.listed()
                ),
            },
            FormatError::Bad(why) => format!("{:?} is badly formatted: {why}", text.value),
        };
        text.error(message)
    })
}

#[derive(Debug, PartialEq)]
enum FormatError {
    Unknown(String),
    Bad(String),
}

/// Python's `template % dict`, for the conversions a configuration can sensibly use.
fn format(template: &str, lookup: impl Fn(&str) -> Option<Value>) -> Result<String, FormatError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos + 1..];
        if let Some(after) = rest.strip_prefix('%') {
            out.push('%');
            rest = after;
            continue;
        }
        let Some(after) = rest.strip_prefix('(') else {
            return Err(FormatError::Bad(
                "a % must be followed by (name) and a conversion such as s or d; write %% for a literal %"
                    .into(),
            ));
        };
        let (name, after) = key_of(after)?;
        let (spec, after) = Spec::parse(after)?;
        let value = lookup(name).ok_or_else(|| FormatError::Unknown(name.to_string()))?;
        out.push_str(&spec.render(name, &value)?);
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

/// The `name` of `%(name)`, up to the matching parenthesis (Python allows nested ones).
fn key_of(s: &str) -> Result<(&str, &str), FormatError> {
    let mut depth = 1usize;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Ok((&s[..i], &s[i + 1..]));
                }
            }
            _ => {}
        }
    }
    Err(FormatError::Bad("a %( has no closing )".into()))
}

/// Flags, width, precision and conversion of one `%(name)...` directive.
#[derive(Debug, Default)]
struct Spec {
    left: bool,
    plus: bool,
    space: bool,
    alt: bool,
    zero: bool,
    width: usize,
    precision: Option<usize>,
    conversion: char,
}

/// Widths beyond this are refused rather than allocated.
const MAX_WIDTH: usize = 1000;

impl Spec {
    fn parse(s: &str) -> Result<(Spec, &str), FormatError> {
        let mut spec = Spec::default();
        let mut chars = s.char_indices().peekable();
        while let Some(&(_, c)) = chars.peek() {
            match c {
                '-' => spec.left = true,
                '+' => spec.plus = true,
                ' ' => spec.space = true,
                '#' => spec.alt = true,
                '0' => spec.zero = true,
                _ => break,
            }
            chars.next();
        }
        spec.width = number(&mut chars)?.unwrap_or(0);
        if chars.peek().is_some_and(|&(_, c)| c == '.') {
            chars.next();
            spec.precision = Some(number(&mut chars)?.unwrap_or(0));
        }
        while chars
            .peek()
            .is_some_and(|&(_, c)| matches!(c, 'h' | 'l' | 'L'))
        {
            chars.next();
        }
        let Some((i, c)) = chars.next() else {
            return Err(FormatError::Bad(
                "incomplete format: %(name) must be followed by s or d".into(),
            ));
        };
        spec.conversion = c;
        Ok((spec, &s[i + c.len_utf8()..]))
    }

    fn render(&self, name: &str, value: &Value) -> Result<String, FormatError> {
        match (self.conversion, value) {
            ('s', Value::Str(s)) => Ok(self.pad_text(s)),
            ('r' | 'a', Value::Str(s)) => Ok(self.pad_text(&format!("'{s}'"))),
            ('s' | 'r' | 'a', Value::Int(n)) => Ok(self.pad_text(&n.to_string())),
            ('d' | 'i' | 'u' | 'o' | 'x' | 'X', Value::Int(n)) => Ok(self.number(*n)),
            ('d' | 'i' | 'u' | 'o' | 'x' | 'X', Value::Str(_)) => Err(FormatError::Bad(format!(
                "%({name}){} needs a number, but {name} is text; use %({name})s",
                self.conversion
            ))),
            (c, _) => Err(FormatError::Bad(format!(
                "unsupported format character {c:?}; use s or d"
            ))),
        }
    }

    fn pad_text(&self, s: &str) -> String {
        let s: String = match self.precision {
            Some(p) => s.chars().take(p).collect(),
            None => s.to_string(),
        };
        let fill = " ".repeat(self.width.saturating_sub(s.chars().count()));
        if self.left {
            s + &fill
        } else {
            fill + &s
        }
    }

    fn number(&self, n: i64) -> String {
        let magnitude = n.unsigned_abs();
        let mut digits = match self.conversion {
            'o' => format!("{magnitude:o}"),
            'x' => format!("{magnitude:x}"),
            'X' => format!("{magnitude:X}"),
            _ => magnitude.to_string(),
        };
        if let Some(p) = self.precision {
            digits = format!("{digits:0>p$}");
        }
        let sign = match (n < 0, self.plus, self.space) {
            (true, _, _) => "-",
            (false, true, _) => "+",
            (false, false, true) => " ",
            _ => "",
        };
        let prefix = match (self.alt, self.conversion) {
            (true, 'o') => "0o",
            (true, 'x') => "0x",
            (true, 'X') => "0X",
            _ => "",
        };
        let len = sign.len() + prefix.len() + digits.len();
        let missing = self.width.saturating_sub(len);
        if self.left {
            format!("{sign}{prefix}{digits}{}", " ".repeat(missing))
        } else if self.zero {
            format!("{sign}{prefix}{}{digits}", "0".repeat(missing))
        } else {
            format!("{}{sign}{prefix}{digits}", " ".repeat(missing))
        }
    }
}

fn number(
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
) -> Result<Option<usize>, FormatError> {
    if chars.peek().is_some_and(|&(_, c)| c == '*') {
        return Err(FormatError::Bad(
            "* widths need positional arguments; write the width as a number".into(),
        ));
    }
    let mut n: Option<usize> = None;
    while let Some(d) = chars.peek().and_then(|&(_, c)| c.to_digit(10)) {
        chars.next();
        let v = n.unwrap_or(0).saturating_mul(10).saturating_add(d as usize);
        if v > MAX_WIDTH {
            return Err(FormatError::Bad(format!(
                "widths above {MAX_WIDTH} are not supported"
            )));
        }
        n = Some(v);
    }
    Ok(n)
}

// ---------------------------------------------------------------------------------------------
// Programs: one template, one or more processes.

/// How the command was written.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// One string, split like a shell would (supervisord: `shlex.split`) after expansion.
    Shell(Text),
    /// Already split (TOML arrays); each element is expanded on its own.
    Argv(Vec<Text>),
}

/// How the environment was written.
#[derive(Debug, Clone, PartialEq)]
pub enum Environment {
    /// supervisord's `KEY="val",KEY2=val2`, expanded as a whole and then parsed.
    Pairs(Text),
    /// A TOML table; each value is expanded on its own.
    Table(Vec<(String, Text)>),
}

/// `stdout_logfile` (or `stderr_logfile`) with its rotation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSpec {
    /// The value as written; `None`: not set (the supervisor's own stdout or stderr).
    pub path: Option<Text>,
    pub max_bytes: u64,
    pub backups: u32,
}

impl Default for LogSpec {
    fn default() -> Self {
        LogSpec {
            path: None,
            max_bytes: 50 * 1024 * 1024,
            backups: 10,
        }
    }
}

/// One program as configured, before `numprocs` and per-process expansion.
#[derive(Debug, Clone)]
pub struct ProgramTemplate {
    /// The program's name: `[program:NAME]` or `[programs.NAME]`.
    pub name: String,
    /// The group it was put in (`[group:x]`, TOML `group`); `None`: its own.
    pub group: Option<String>,
    /// Everything that is the same for every process; name, command, directory, environment
    /// and log targets are filled in per process.
    pub spec: ProgramSpec,
    pub numprocs: u32,
    pub numprocs_start: i64,
    /// `process_name`; `None`: `%(program_name)s`.
    pub process_name: Option<Text>,
    pub command: Command,
    pub directory: Option<Text>,
    pub environment: Option<Environment>,
    /// The environment every program gets (`[supervisord] environment`); the program's wins.
    pub global_env: Vec<(String, String)>,
    pub stdout: LogSpec,
    pub stderr: LogSpec,
}

impl ProgramTemplate {
    /// A template with supervisord's defaults.
    pub fn new(name: &str, command: Command, defined_at: Location) -> Self {
        ProgramTemplate {
            name: name.to_string(),
            group: None,
            spec: ProgramSpec::new(name, Vec::new(), defined_at),
            numprocs: 1,
            numprocs_start: 0,
            process_name: None,
            command,
            directory: None,
            environment: None,
            global_env: Vec::new(),
            stdout: LogSpec::default(),
            stderr: LogSpec::default(),
        }
    }

    /// `group_name` in expansions: the group, or the program itself.
    pub fn group_name(&self) -> &str {
        self.group.as_deref().unwrap_or(&self.name)
    }

    /// The names every value of this program may use (`program_name`, `group_name`, ...).
    pub fn names(&self, base: &Names) -> Names {
        let mut names = base.clone();
        names.set("program_name", Value::Str(self.name.clone()));
        names.set("group_name", Value::Str(self.group_name().to_string()));
        names
    }
}

/// Collects notices, each at most once per tag, and warnings.
#[derive(Debug, Default)]
pub struct Notices {
    lines: Vec<String>,
    seen: HashSet<String>,
    /// What supervisord ignores silently and this supervisor ignores too, but says:
    /// unknown or misplaced keys and unknown sections (`check --strict` refuses them).
    warnings: Vec<String>,
}

impl Notices {
    /// Adds `line` unless a notice with the same `tag` was added before.
    pub fn once(&mut self, tag: &str, line: String) {
        if self.seen.insert(tag.to_string()) {
            self.lines.push(line);
        }
    }

    /// Adds a warning about something at `at` (each place is warned about once).
    pub fn warn(&mut self, at: &Location, key: &str, message: impl Into<String>) {
        if self.seen.insert(format!("warning:{at}:{key}")) {
            self.warnings
                .push(format!("warning: {at}: {key}: {}", message.into()));
        }
    }

    /// The notices and the warnings.
    pub fn into_parts(self) -> (Vec<String>, Vec<String>) {
        (self.lines, self.warnings)
    }
}

/// More processes than this per program is taken for a typo rather than allocated.
const MAX_NUMPROCS: u32 = 10_000;

/// The processes of one program: `numprocs` of them, each with its values expanded.
pub fn processes(
    t: &ProgramTemplate,
    base: &Names,
    notices: &mut Notices,
) -> Result<Vec<ProgramSpec>, ConfigError> {
    if t.numprocs > 1
        && !t
            .process_name
            .as_ref()
            .is_some_and(|p| p.value.contains("%(process_num)"))
    {
        let message = "%(process_num) must be present within process_name when numprocs > 1, e.g. \
                       process_name=%(program_name)s_%(process_num)02d";
        return Err(match &t.process_name {
            Some(p) => p.error(message),
            None => invalid(&t.spec.defined_at, "process_name", message),
        });
    }
    if t.numprocs > MAX_NUMPROCS {
        return Err(invalid(
            &t.spec.defined_at,
            "numprocs",
            format!(
                "{} is not allowed; use at most {MAX_NUMPROCS} processes per program",
                t.numprocs
            ),
        ));
    }
    if t.numprocs == 0 {
        notices.once(
            &format!("numprocs0:{}", t.name),
            format!(
                "notice: numprocs=0 (in {}): {} starts no process",
                t.spec.defined_at, t.name
            ),
        );
    }
    let names = t.names(base);
    (0..i64::from(t.numprocs))
        .map(|i| process(t, &names, t.numprocs_start.saturating_add(i), notices))
        .collect()
}

fn process(
    t: &ProgramTemplate,
    names: &Names,
    num: i64,
    notices: &mut Notices,
) -> Result<ProgramSpec, ConfigError> {
    let mut names = names.clone();
    names.set("process_num", Value::Int(num));
    names.set("numprocs", Value::Int(i64::from(t.numprocs)));
    let own_env = match &t.environment {
        Some(env) => environment(env, &names)?,
        None => Vec::new(),
    };
    names.add_env(&own_env);
    let mut spec = t.spec.clone();
    spec.environment = merge_env(&t.global_env, own_env);
    spec.directory = t
        .directory
        .as_ref()
        .map(|d| expand(d, &names))
        .transpose()?
        .map(PathBuf::from);
    spec.stdout = log_target(&t.stdout, LogTarget::Stdout, &names, notices)?;
    spec.stderr = log_target(&t.stderr, LogTarget::Stderr, &names, notices)?;
    if spec.redirect_stderr {
        if let Some(p) = t
            .stderr
            .path
            .as_ref()
            .filter(|_| matches!(spec.stderr, LogTarget::File { .. }))
        {
            notices.once(
                &format!("redirect:{}", t.name),
                format!(
                    "notice: stderr_logfile (in {}) is ignored because redirect_stderr=true sends \
                     stderr where stdout goes",
                    p.at
                ),
            );
        }
        spec.stderr = spec.stdout.clone();
    }
    spec.command = command(t, &names)?;
    spec.name = process_name(t, &names)?;
    // supervisord puts every program in a group: its [group:x], else one named after the
    // program (a "homogeneous" group). Its name is shown only when it differs from the
    // process's (`httpd:httpd_00`), so `None` here means "the group is the process itself".
    spec.group = t
        .group
        .clone()
        .or_else(|| (t.numprocs > 1 || spec.name != t.name).then(|| t.name.clone()));
    Ok(spec)
}

fn process_name(t: &ProgramTemplate, names: &Names) -> Result<String, ConfigError> {
    let Some(template) = &t.process_name else {
        return Ok(t.name.clone());
    };
    let name = expand(template, names)?;
    check_name(&name).map_err(|m| template.error(m))?;
    Ok(name)
}

fn command(t: &ProgramTemplate, names: &Names) -> Result<Vec<String>, ConfigError> {
    let (argv, at) = match &t.command {
        Command::Shell(text) => {
            let line = expand(text, names)?;
            (split_command(&line).map_err(|m| text.error(m))?, text)
        }
        Command::Argv(items) => match items.first() {
            Some(first) => (
                items
                    .iter()
                    .map(|t| expand(t, names))
                    .collect::<Result<Vec<_>, _>>()?,
                first,
            ),
            None => {
                return Err(invalid(
                    &t.spec.defined_at,
                    "command",
                    "the command is empty",
                ))
            }
        },
    };
    if argv.first().is_none_or(|a| a.is_empty()) {
        return Err(at.error("the command is empty; give the program to run and its arguments"));
    }
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(at.error("the command contains a NUL byte"));
    }
    Ok(argv)
}

/// The pairs of an environment setting, expanded and checked.
pub fn environment(env: &Environment, names: &Names) -> Result<Vec<(String, String)>, ConfigError> {
    let mut pairs = Vec::new();
    match env {
        Environment::Pairs(text) => {
            let value = expand(text, names)?;
            for (k, v) in key_value_pairs(&value).map_err(|m| text.error(m))? {
                check_env(&k, &v).map_err(|m| text.error(m))?;
                put(&mut pairs, k, v);
            }
        }
        Environment::Table(items) => {
            for (k, text) in items {
                let v = expand(text, names)?;
                check_env(k, &v).map_err(|m| text.error(m))?;
                put(&mut pairs, k.clone(), v);
            }
        }
    }
    Ok(pairs)
}

/// What execve can pass on: a name without `=` or NUL, a value without NUL.
fn check_env(key: &str, value: &str) -> Result<(), String> {
    if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
        return Err(format!(
            "{key:?} cannot be passed to a program: names must be non-empty and contain no = or \
             NUL, values no NUL"
        ));
    }
    Ok(())
}

/// Sets `key` in an ordered list of pairs: a new key goes last, an existing one keeps its place
/// (as a Python dict does).
fn put(pairs: &mut Vec<(String, String)>, key: String, value: String) {
    match pairs.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => pairs.push((key, value)),
    }
}

/// The global environment overlaid with the program's (supervisord: `env.update(proc_env)`).
fn merge_env(global: &[(String, String)], own: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut env = global.to_vec();
    for (k, v) in own {
        put(&mut env, k, v);
    }
    env
}

fn log_target(
    spec: &LogSpec,
    default: LogTarget,
    names: &Names,
    notices: &mut Notices,
) -> Result<LogTarget, ConfigError> {
    let Some(text) = &spec.path else {
        return Ok(default);
    };
    let value = expand(text, names)?;
    Ok(match value.to_ascii_lowercase().as_str() {
        "none" | "off" => LogTarget::Discard,
        "auto" | "" => default,
        "syslog" => {
            notices.once(
                &format!("syslog:{}", text.key),
                format!(
                    "notice: {}=syslog (in {}) is not supported; the output goes to the \
                     supervisor's {} instead",
                    text.key,
                    text.at,
                    if default == LogTarget::Stdout {
                        "stdout"
                    } else {
                        "stderr"
                    }
                ),
            );
            default
        }
        "/dev/stdout" | "/dev/fd/1" | "/proc/self/fd/1" => LogTarget::Stdout,
        "/dev/stderr" | "/dev/fd/2" | "/proc/self/fd/2" => LogTarget::Stderr,
        _ => {
            let path = expand_user(&value, names.home.as_deref());
            // supervisord refuses a log file whose directory does not exist (`existing_dirpath`).
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                if !dir.is_dir() {
                    return Err(text.error(format!(
                        "the directory {} of the log file {} does not exist (supervisord refuses \
                         this too); create it in the image (mkdir -p {}), or set {}=/dev/stdout",
                        dir.display(),
                        path.display(),
                        dir.display(),
                        text.key
                    )));
                }
            }
            LogTarget::File {
                path,
                max_bytes: spec.max_bytes,
                backups: spec.backups,
            }
        }
    })
}

/// `~` and `~user` at the start of a path, as Python's `os.path.expanduser`.
fn expand_user(path: &str, home: Option<&str>) -> PathBuf {
    let Some(rest) = path.strip_prefix('~') else {
        return PathBuf::from(path);
    };
    let (user, tail) = rest.split_once('/').map_or((rest, ""), |(u, t)| (u, t));
    let dir = if user.is_empty() {
        home.map(str::to_string)
    } else {
        nix::unistd::User::from_name(user)
            .ok()
            .flatten()
            .map(|u| u.dir.to_string_lossy().into_owned())
    };
    match dir {
        Some(dir) if tail.is_empty() => PathBuf::from(dir),
        Some(dir) => Path::new(&dir).join(tail),
        None => PathBuf::from(path),
    }
}

/// `killasgroup` defaults to `stopasgroup`; supervisord refuses `stopasgroup=true` with
/// `killasgroup=false`. `explicit`: where killasgroup was set, if it was.
pub fn resolve_killasgroup(
    spec: &mut ProgramSpec,
    explicit: Option<&Location>,
) -> Result<(), ConfigError> {
    match explicit {
        None => spec.killasgroup = spec.stopasgroup,
        Some(at) if spec.stopasgroup && !spec.killasgroup => {
            return Err(invalid(
                at,
                "killasgroup",
                "false is not allowed together with stopasgroup=true (a group that is stopped as \
                 a group must be killed as a group); remove killasgroup or set it to true",
            ))
        }
        Some(_) => {}
    }
    Ok(())
}

/// Checks that process names are unique and orders the processes by (priority, name).
pub fn finish(mut programs: Vec<ProgramSpec>) -> Result<Vec<ProgramSpec>, ConfigError> {
    let mut seen: HashMap<&str, &Location> = HashMap::new();
    for p in &programs {
        if let Some(first) = seen.insert(&p.name, &p.defined_at) {
            return Err(invalid(
                &p.defined_at,
                "process_name",
                format!(
                    "the process name {:?} is already used by the program defined at {first}; \
                     names must be unique (rename one, or set process_name)",
                    p.name
                ),
            ));
        }
    }
    resolve_dependencies(&mut programs)?;
    programs.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
    Ok(programs)
}

/// Turns each `depends_on` entry (a program, process or group name) into the process names it
/// means, and refuses unknown names and cycles.
fn resolve_dependencies(programs: &mut [ProgramSpec]) -> Result<(), ConfigError> {
    let names: Vec<(String, Option<String>)> = programs
        .iter()
        .map(|p| (p.name.clone(), p.group.clone()))
        .collect();
    for p in programs.iter_mut() {
        let mut resolved = Vec::new();
        for dep in &p.depends_on {
            let hits: Vec<&String> = names
                .iter()
                .filter(|(n, g)| n == dep || g.as_deref() == Some(dep.as_str()))
                .map(|(n, _)| n)
                .collect();
            if hits.is_empty() {
                let known: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
                return Err(invalid(
                    &p.defined_at,
                    "depends_on",
                    format!(
                        "{dep:?} is not a program here; the programs are: {}",
                        known.join(", ")
                    ),
                ));
            }
            if hits.iter().any(|h| **h == p.name) {
                return Err(invalid(
                    &p.defined_at,
                    "depends_on",
                    format!("{} cannot depend on itself", p.name),
                ));
            }
            resolved.extend(hits.into_iter().cloned());
        }
        resolved.dedup();
        p.depends_on = resolved;
    }
    // Depth-first search for a cycle: 0 unvisited, 1 on the current path, 2 done.
    let index = |name: &str| programs.iter().position(|p| p.name == name);
    let mut mark = vec![0u8; programs.len()];
    fn visit(
        i: usize,
        programs: &[ProgramSpec],
        mark: &mut [u8],
        path: &mut Vec<usize>,
        index: &dyn Fn(&str) -> Option<usize>,
    ) -> Option<Vec<usize>> {
        mark[i] = 1;
        path.push(i);
        for dep in &programs[i].depends_on {
            let Some(j) = index(dep) else { continue };
            if mark[j] == 1 {
                let start = path.iter().position(|&k| k == j).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(j);
                return Some(cycle);
            }
            if mark[j] == 0 {
                if let Some(c) = visit(j, programs, mark, path, index) {
                    return Some(c);
                }
            }
        }
        path.pop();
        mark[i] = 2;
        None
    }
    for i in 0..programs.len() {
        if mark[i] == 0 {
            let mut path = Vec::new();
            if let Some(cycle) = visit(i, programs, &mut mark, &mut path, &index) {
                let first = &programs[cycle[0]];
                let names: Vec<&str> = cycle.iter().map(|&k| programs[k].name.as_str()).collect();
                return Err(invalid(
                    &first.defined_at,
                    "depends_on",
                    format!(
                        "dependency cycle: {}; remove one of these depends_on entries",
                        names.join(" → ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Program and group names: supervisord refuses spaces, `:` and `/` (they break its URLs and
/// `group:name` specs).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    match name
        .chars()
        .find(|c| matches!(c, ' ' | ':' | '/') || c.is_control())
    {
        Some(c) => Err(format!(
            "{name:?} is not allowed: names cannot contain {c:?}"
        )),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Python's shlex, as supervisord uses it.

const SHLEX_WHITESPACE: &[char] = &[' ', '\t', '\r', '\n'];

/// Splits a command line like Python's `shlex.split` (POSIX mode, no comments), which is what
/// supervisord does before exec: quotes group, backslash escapes; no variables, globs or pipes.
pub fn split_command(line: &str) -> Result<Vec<String>, String> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Space,
        Word,
        Quote(char),
        Escape { back_to_quote: bool },
    }
    let mut args = Vec::new();
    let mut token = String::new();
    let mut state = State::Space;
    for c in line.chars() {
        state = match state {
            State::Space if SHLEX_WHITESPACE.contains(&c) => State::Space,
            State::Space | State::Word => match c {
                c if SHLEX_WHITESPACE.contains(&c) => {
                    args.push(std::mem::take(&mut token));
                    State::Space
                }
                '\\' => State::Escape {
                    back_to_quote: false,
                },
                '"' | '\'' => State::Quote(c),
                c => {
                    token.push(c);
                    State::Word
                }
            },
            State::Quote(q) if c == q => State::Word,
            State::Quote('"') if c == '\\' => State::Escape {
                back_to_quote: true,
            },
            State::Quote(q) => {
                token.push(c);
                State::Quote(q)
            }
            State::Escape { back_to_quote } => {
                // Inside double quotes only `\"` and `\\` are escapes; elsewhere the backslash stays.
                if back_to_quote && c != '"' && c != '\\' {
                    token.push('\\');
                }
                token.push(c);
                if back_to_quote {
                    State::Quote('"')
                } else {
                    State::Word
                }
            }
        };
    }
    match state {
        State::Quote(q) => Err(format!(
            "no closing quotation: a {q} is opened but never closed"
        )),
        State::Escape { .. } => {
            Err("the command ends with a backslash that escapes nothing".into())
        }
        State::Word => {
            args.push(token);
            Ok(args)
        }
        State::Space => Ok(args),
    }
}

/// Characters that make up a word in supervisord's `KEY=val` lists (Python shlex's word
/// characters plus the ones supervisord adds).
fn is_pair_word_char(c: char) -> bool {
    // Python's non-POSIX shlex splits at every non-ASCII character, after which supervisord
    // silently drops it ("A=café" → "caf"); we keep such characters in the word instead.
    c.is_ascii_alphanumeric() || "_/.+-():".contains(c) || !c.is_ascii()
}

/// The tokens of Python's `shlex.shlex(value)` (non-POSIX mode) with supervisord's word
/// characters: words, quoted strings with their quotes, and single punctuation characters.
fn pair_tokens(value: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if SHLEX_WHITESPACE.contains(&c) {
            continue;
        }
        if c == '#' {
            chars.by_ref().find(|&c| c == '\n');
            continue;
        }
        let mut token = String::from(c);
        if c == '"' || c == '\'' {
            loop {
                match chars.next() {
                    None => {
                        return Err(format!(
                            "no closing quotation: a {c} is opened but never closed"
                        ))
                    }
                    Some(n) => {
                        token.push(n);
                        if n == c {
                            break;
                        }
                    }
                }
            }
        } else if is_pair_word_char(c) {
            while let Some(&n) = chars.peek() {
                if n == '#' {
                    // Python's non-POSIX shlex skips the rest of the line and goes on with the word.
                    chars.by_ref().find(|&c| c == '\n');
                } else if is_pair_word_char(n) || n == '"' || n == '\'' {
                    token.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
        }
        tokens.push(token);
    }
    Ok(tokens)
}

/// Parses supervisord's `KEY="val",KEY2=val2` (`dict_of_key_value_pairs`): quotes allow commas
/// and spaces in values; a later key replaces an earlier one.
pub fn key_value_pairs(value: &str) -> Result<Vec<(String, String)>, String> {
    let tokens = pair_tokens(value)?;
    let mut pairs = Vec::new();
    for chunk in tokens.chunks(4) {
        match chunk {
            [k, eq, v, ..] if eq == "=" => put(
                &mut pairs,
                k.clone(),
                v.trim_matches(['"', '\'']).to_string(),
            ),
            _ => {
                return Err(format!(
                    "{value:?} is not a list of KEY=value pairs; write KEY=value,KEY2=\"value with \
                     spaces, commas or other punctuation\""
                ))
            }
        }
    }
    Ok(pairs)
}

// ---------------------------------------------------------------------------------------------
// Values written as text (all of INI, and some TOML values).

/// supervisord's booleans: true/false, yes/no, on/off, 1/0, in any case.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!(
            "{s:?} is not allowed; use true or false (or yes/no, on/off, 1/0)"
        )),
    }
}

/// An integer as Python's `int()` reads it: surrounding whitespace, a sign, `_` between digits.
pub fn parse_int(s: &str) -> Option<i64> {
    parse_int_radix(s, 10)
}

fn parse_int_radix(s: &str, radix: u32) -> Option<i64> {
    let t = s.trim();
    let (negative, digits) = match t.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let digits = match radix {
        8 => digits
            .strip_prefix("0o")
            .or_else(|| digits.strip_prefix("0O"))
            .unwrap_or(digits),
        _ => digits,
    };
    let well_formed = digits.chars().all(|c| c == '_' || c.is_digit(radix))
        && !(digits.starts_with('_') || digits.ends_with('_') || digits.contains("__"));
    if digits.is_empty() || !well_formed {
        return None;
    }
    let n = i64::from_str_radix(&digits.replace('_', ""), radix).ok()?;
    Some(if negative { -n } else { n })
}

/// An integer in a range, with a message that says what is allowed.
pub fn parse_int_in<T: TryFrom<i64>>(s: &str, what: &str) -> Result<T, String> {
    parse_int(s)
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| format!("{s:?} is not allowed; use {what}"))
}

/// An octal number such as a umask (`022`).
pub fn parse_octal(s: &str) -> Result<u32, String> {
    parse_int_radix(s, 8)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n <= 0o777)
        .ok_or_else(|| {
            format!("{s:?} is not allowed; use an octal number from 000 to 777, like 022")
        })
}

/// supervisord's byte sizes: `1024`, `1KB`, `50MB`, `1GB` (case-insensitive, powers of 1024).
pub fn parse_byte_size(s: &str) -> Result<u64, String> {
    let lower = s.trim().to_ascii_lowercase();
    let (number, unit) = match lower
        .len()
        .checked_sub(2)
        .and_then(|i| lower.get(i..).map(|u| (i, u)))
    {
        Some((i, "kb")) => (&lower[..i], 1u64 << 10),
        Some((i, "mb")) => (&lower[..i], 1 << 20),
        Some((i, "gb")) => (&lower[..i], 1 << 30),
        _ => (lower.as_str(), 1),
    };
    parse_int(number)
        .and_then(|n| u64::try_from(n).ok())
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("{s:?} is not allowed; use a number of bytes like 1024, 10KB, 50MB or 1GB (0: no limit)"))
}

/// A user to run as, checked as supervisord checks it when it reads the file (`name_to_uid`): a
/// name must be in the user database, a number must be the uid of one of its users.
pub fn check_user(user: &str) -> Result<(), String> {
    use nix::unistd::{Uid, User};
    const FIX: &str =
        "create the user in the image (e.g. useradd --system NAME) or name an existing one";
    if user.is_empty() {
        return Err("the user is empty; give a user name or uid".into());
    }
    let found = match user.trim().parse::<i64>() {
        Ok(uid) => match u32::try_from(uid) {
            Ok(uid) => User::from_uid(Uid::from_raw(uid)),
            Err(_) => Ok(None),
        },
        Err(_) => User::from_name(user),
    };
    match found {
        Ok(Some(_)) => Ok(()),
        Ok(None) if user.trim().parse::<i64>().is_ok() => Err(format!(
            "invalid user id {user}: no user has this uid in the user database (/etc/passwd); {FIX}"
        )),
        Ok(None) => Err(format!(
            "invalid user name {user}: there is no such user in the user database (/etc/passwd); {FIX}"
        )),
        Err(e) => Err(format!("the user {user} could not be looked up: {e}")),
    }
}

/// `autorestart`: a boolean or `unexpected`.
pub fn parse_autorestart(s: &str) -> Result<AutoRestart, String> {
    if s.trim().eq_ignore_ascii_case("unexpected") {
        return Ok(AutoRestart::Unexpected);
    }
    match parse_bool(s) {
        Ok(true) => Ok(AutoRestart::Always),
        Ok(false) => Ok(AutoRestart::Never),
        Err(_) => Err(format!(
            "{s:?} is not allowed; use true, false or unexpected"
        )),
    }
}

/// A signal by name (`TERM`, `SIGTERM`) or number.
pub fn parse_stopsignal(s: &str) -> Result<i32, String> {
    super::parse_signal(s).ok_or_else(|| {
        format!(
            "{s:?} is not allowed; use a signal name like TERM, INT, QUIT, HUP, KILL, USR1 or USR2"
        )
    })
}

/// An exit code list item.
pub fn check_exitcode(n: i64) -> Result<i32, String> {
    i32::try_from(n)
        .ok()
        .filter(|n| (0..=255).contains(n))
        .ok_or_else(|| format!("{n} is not allowed; exit codes are 0 to 255"))
}

/// supervisord's `exitcodes`: a comma-separated list of 0..=255 (empty: none).
pub fn parse_exitcodes(s: &str) -> Result<Vec<i32>, String> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|item| {
            let n = parse_int(item).ok_or_else(|| {
                format!("{s:?} is not allowed; use a comma-separated list of exit codes like 0,2")
            })?;
            check_exitcode(n)
        })
        .collect()
}

/// The longest duration any setting may give (config, command line, control request): one
/// year. Longer values are refused where they are parsed, so that no deadline computed from
/// them (`now + duration`) can overflow.
pub const MAX_SECONDS: u64 = 365 * 24 * 3600;
/// The largest count any setting may give (`startretries`, `health_retries`, log backups).
pub const MAX_COUNT: u32 = 1_000_000;

/// The allowed range of durations, for messages.
pub fn seconds_range() -> String {
    format!("from 0 to {MAX_SECONDS} (one year)")
}

/// A number of seconds (may be fractional), from 0 to [`MAX_SECONDS`].
pub fn seconds(secs: f64) -> Result<Duration, String> {
    if !(0.0..=MAX_SECONDS as f64).contains(&secs) {
        return Err(format!(
            "{secs} is not allowed; use a number of seconds {}",
            seconds_range()
        ));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| {
        format!(
            "{secs} is not allowed; use a number of seconds {}",
            seconds_range()
        )
    })
}

/// A whole number of seconds written as text (supervisord's `startsecs`, `stopwaitsecs`), from 0
/// to [`MAX_SECONDS`].
pub fn parse_whole_seconds(s: &str) -> Result<Duration, String> {
    parse_int(s)
        .and_then(|n| u64::try_from(n).ok())
        .filter(|n| *n <= MAX_SECONDS)
        .map(Duration::from_secs)
        .ok_or_else(|| {
            format!(
                "{s:?} is not allowed; use a whole number of seconds {}",
                seconds_range()
            )
        })
}

/// A count from `min` to [`MAX_COUNT`].
pub fn check_count(n: Option<i64>, written: &str, min: u32) -> Result<u32, String> {
    n.and_then(|n| u32::try_from(n).ok())
        .filter(|n| (min..=MAX_COUNT).contains(n))
        .ok_or_else(|| {
            format!("{written} is not allowed; use a whole number from {min} to {MAX_COUNT}")
        })
}

/// A count written as text, from `min` to [`MAX_COUNT`].
pub fn parse_count(s: &str, min: u32) -> Result<u32, String> {
    check_count(parse_int(s), &format!("{s:?}"), min)
}

/// `metrics_addr`: `IP:PORT`, or `off`.
pub fn parse_metrics_addr(s: &str) -> Result<Option<SocketAddr>, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    t.parse()
        .map(Some)
        .map_err(|_| format!("{s:?} is not allowed; use an IP address and port like 0.0.0.0:9469 or [::]:9469, or off"))
}

pub fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "json" => Ok(LogFormat::Json),
        "text" => Ok(LogFormat::Text),
        _ => Err(format!("{s:?} is not allowed; use json or text")),
    }
}

pub fn parse_probe(s: &str) -> Result<ProbeMode, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(ProbeMode::Auto),
        "on" => Ok(ProbeMode::On),
        "off" => Ok(ProbeMode::Off),
        _ => Err(format!("{s:?} is not allowed; use auto, on or off")),
    }
}

/// Edit distance, for "did you mean" hints on unknown keys.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// `; did you mean "x"?` when one of `known` is close to `word`, else nothing.
pub fn did_you_mean(word: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|k| (distance(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| format!("; did you mean {k}?"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(template: &str) -> Result<String, FormatError> {
        format(template, |name| match name {
            "n" => Some(Value::Int(42)),
            "neg" => Some(Value::Int(-3)),
            "s" => Some(Value::Str("abc".into())),
            _ => None,
        })
    }

    #[test]
    fn python_percent_format() {
        // Expected values printed by Python 3.11.
        let ok = |t: &str| fmt(t).unwrap_or_else(|e| panic!("{t}: {e:?}"));
        assert_eq!(
            ok("%(n)05d|%(n)-4d|%(n)+d|%(n).3d|%(n)#x|%(n)#o|%(s)5s|%(s)-5s|%(s).2s|%%"),
            "00042|42  |+42|042|0x2a|0o52|  abc|abc  |ab|%"
        );
        assert_eq!(ok("%(neg)05d"), "-0003");
        assert_eq!(ok("x%(n)sy%(n)dz"), "x42y42z");
        assert_eq!(ok("no directives"), "no directives");
        assert_eq!(fmt("%(other)s"), Err(FormatError::Unknown("other".into())));
        for bad in [
            "%(s)s %",
            "%Y",
            "%(s",
            "%(s)d",
            "%(s)q",
            "%s",
            "%(n)*d",
            "%(n)99999d",
        ] {
            assert!(
                matches!(fmt(bad), Err(FormatError::Bad(_))),
                "{bad}: {:?}",
                fmt(bad)
            );
        }
    }

    #[test]
    fn expansion_errors_list_the_names() {
        let mut names = Names::new(&Context {
            env: vec![("HOME".into(), "/root".into())],
            host_node_name: "h".into(),
        });
        names.set("program_name", Value::Str("p".into()));
        let text = Text::new(
            "%(nope)s",
            "command",
            &Location {
                file: "/etc/a.conf".into(),
                line: 7,
            },
        );
        let err = expand(&text, &names)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            err,
            "/etc/a.conf:7: command: %(nope) is not a name that can be used here; available: here, \
             host_node_name, program_name, and ENV_X for each environment variable X; write %% for a literal %"
        );
        let text = Text::new("%(here)s|%(ENV_HOME)s", "directory", &text.at);
        assert_eq!(expand(&text, &names).ok().as_deref(), Some("/etc|/root"));
    }

    #[test]
    fn split_like_python_shlex() {
        // Expected values printed by Python 3.11's shlex.split.
        let line = r#"/bin/sh -c "echo \"hi\" \$HOME \\ done" 'it''s' a\ b "" x"#;
        assert_eq!(
            split_command(line),
            Ok([
                "/bin/sh",
                "-c",
                r#"echo "hi" \$HOME \ done"#,
                "its",
                "a b",
                "",
                "x"
            ]
            .map(String::from)
            .to_vec())
        );
        assert_eq!(
            split_command("one\ttwo\nthree"),
            Ok(vec!["one".into(), "two".into(), "three".into()])
        );
        assert_eq!(split_command("  "), Ok(vec![]));
        assert!(split_command(r#"a "b\c" d\"#).is_err());
        assert!(split_command("a 'open").is_err());
    }

    #[test]
    fn key_value_pairs_like_supervisord() {
        // Expected values printed by supervisor.datatypes.dict_of_key_value_pairs (4.2.5).
        let ok = |s: &str| key_value_pairs(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        let p = |items: &[(&str, &str)]| {
            items
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ok(r#"A="x,y",B=2, C='q'"#),
            p(&[("A", "x,y"), ("B", "2"), ("C", "q")])
        );
        assert_eq!(
            ok("PATH=/usr/bin:/bin,HOME=/root"),
            p(&[("PATH", "/usr/bin:/bin"), ("HOME", "/root")])
        );
        assert_eq!(ok(r#"A="x #y",B=1"#), p(&[("A", "x #y"), ("B", "1")]));
        assert_eq!(ok("A=1,"), p(&[("A", "1")]));
        assert_eq!(ok("A=1,B=2,A=3"), p(&[("A", "3"), ("B", "2")]));
        assert_eq!(ok(r#"A='"x"'"#), p(&[("A", "x")]));
        assert_eq!(ok("A = 1 , B = 2"), p(&[("A", "1"), ("B", "2")]));
        assert_eq!(ok("A=-1.5+(x):y/z"), p(&[("A", "-1.5+(x):y/z")]));
        assert_eq!(ok(""), p(&[]));
        // supervisord would silently cut this to "caf".
        assert_eq!(ok("A=café"), p(&[("A", "café")]));
        for bad in [
            "KEY=a@b",
            "A=1 B=2",
            "A=x y,B=z",
            "A=,B=1",
            "A=\"unterminated",
            "A=x#c\nB=2",
        ] {
            assert!(key_value_pairs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn text_values() {
        assert_eq!(parse_byte_size("50MB"), Ok(50 << 20));
        assert_eq!(parse_byte_size("1kb"), Ok(1024));
        assert_eq!(parse_byte_size("2GB"), Ok(2 << 30));
        assert_eq!(parse_byte_size("0"), Ok(0));
        assert!(
            parse_byte_size("1.5MB").is_err()
                && parse_byte_size("-1").is_err()
                && parse_byte_size("MB").is_err()
        );
        assert!(parse_byte_size("99999999999999GB").is_err());
        assert_eq!(parse_octal("022"), Ok(0o22));
        assert_eq!(parse_octal("0o77"), Ok(0o77));
        assert!(parse_octal("8").is_err() && parse_octal("1000").is_err());
        assert_eq!(parse_int(" +1_000 "), Some(1000));
        assert_eq!(parse_int("-+5"), None);
        assert_eq!(parse_int("1__0"), None);
        for t in ["true", "Yes", "ON", "1"] {
            assert_eq!(parse_bool(t), Ok(true));
        }
        for f in ["false", "No", "off", "0"] {
            assert_eq!(parse_bool(f), Ok(false));
        }
        assert!(parse_bool("maybe").is_err());
        assert_eq!(parse_exitcodes("0, 2"), Ok(vec![0, 2]));
        assert_eq!(check_user("root"), Ok(()));
        assert_eq!(check_user("0"), Ok(()));
        let e = check_user("nosuchuser").err().unwrap_or_default();
        assert!(e.starts_with("invalid user name nosuchuser"), "{e}");
        let e = check_user("4000000000").err().unwrap_or_default();
        assert!(e.starts_with("invalid user id 4000000000"), "{e}");
        assert!(check_user("-1").is_err() && check_user("").is_err());
        assert_eq!(parse_exitcodes(""), Ok(vec![]));
        assert_eq!(parse_stopsignal("sigint"), Ok(libc::SIGINT));
        assert!(
            seconds(f64::NAN).is_err() && seconds(-1.0).is_err() && seconds(f64::INFINITY).is_err()
        );
        assert!(seconds(1e19).is_err() && seconds(MAX_SECONDS as f64 + 1.0).is_err());
        assert_eq!(
            seconds(MAX_SECONDS as f64),
            Ok(Duration::from_secs(MAX_SECONDS))
        );
        assert_eq!(
            parse_whole_seconds("31536000"),
            Ok(Duration::from_secs(MAX_SECONDS))
        );
        for bad in [
            "31536001",
            "9223372036854775807",
            "99999999999999999999",
            "-1",
            "1.5",
        ] {
            let e = parse_whole_seconds(bad).err().unwrap_or_default();
            assert!(e.contains("from 0 to 31536000 (one year)"), "{bad}: {e}");
        }
        assert_eq!(parse_count("1000000", 0), Ok(MAX_COUNT));
        assert!(parse_count("1000001", 0).is_err() && parse_count("0", 1).is_err());
        assert!(parse_count("-1", 0)
            .err()
            .unwrap_or_default()
            .contains("from 0 to 1000000"));
    }

    #[test]
    fn log_targets() {
        let names = Names::default();
        let at = Location {
            file: "/x.conf".into(),
            line: 1,
        };
        let target = |value: &str| {
            let spec = LogSpec {
                path: Some(Text::new(value, "stdout_logfile", &at)),
                max_bytes: 7,
                backups: 2,
            };
            log_target(&spec, LogTarget::Stdout, &names, &mut Notices::default())
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(target("NONE"), LogTarget::Discard);
        assert_eq!(target("AUTO"), LogTarget::Stdout);
        assert_eq!(target("/dev/stderr"), LogTarget::Stderr);
        assert_eq!(target("syslog"), LogTarget::Stdout);
        assert_eq!(
            target("/var/log/x.log"),
            LogTarget::File {
                path: "/var/log/x.log".into(),
                max_bytes: 7,
                backups: 2
            }
        );
    }
}
