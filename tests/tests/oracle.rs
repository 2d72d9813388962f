//! Real supervisord as the oracle for config semantics.
//!
//! Every file of `fixtures/oracle/*.conf` (our own configs, modelled on the kinds found in
//! public Docker images: LAMP, php-fpm + nginx, Laravel workers, mail servers, celery, Selenium,
//! monitoring, supervisord's sample.conf, `[include]`, `%(ENV_X)s`, `%(here)s`, odd keys) is read
//! twice: by supervisord's own `ServerOptions` from the test venv (`tests/oracle/
//! supervisord_config.py` prints what it made of the file), and by `supervisor check --json`.
//! Both must accept or refuse the same files and agree on every process: name, group, argv,
//! restart policy, timings, signals, user, directory, umask, environment, exit codes, output
//! targets, and the event listener pools. A difference fails the test unless [`ALLOWED`] lists
//! it with its reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Map, Value};

/// Differences that are design decisions, not bugs: (file, process or `*`, field, why).
const ALLOWED: &[(&str, &str, &str, &str)] = &[
    (
        "groups.conf",
        "*",
        "priority",
        "programs are started one by one in priority order, so the priority= of a [group:x] \
         replaces its programs' own (a notice says so); supervisord orders the group as a whole",
    ),
    (
        "monitoring.conf",
        "*",
        "priority",
        "the priority= of a [group:x] replaces its programs' own (see groups.conf)",
    ),
];

/// The environment both readers get, so that `%(ENV_X)s` means the same to both.
const ENV: &[(&str, &str)] = &[
    ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ("HOME", "/root"),
    ("ORACLE_APP_ENV", "production"),
    ("ORACLE_WORKERS", "3"),
    ("ORACLE_SECRET", "s3cret"),
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oracle")
}

fn corpus() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("read the oracle corpus")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    files
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    cmd.env_clear()
        .envs(ENV.iter().copied())
        .current_dir(corpus_dir());
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// supervisord's reading of `file`: `Ok(json)`, or `Err(its message)` when it refuses the file.
fn supervisord(file: &Path) -> Result<Value, String> {
    let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("oracle/supervisord_config.py");
    let (code, out, err) = run(Command::new(e2e::venv_tool("python"))
        .arg(&helper)
        .arg(file));
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| {
        panic!(
            "the oracle helper printed no JSON for {} ({e}):\n{out}\n{err}",
            file.display()
        )
    });
    match (code, v.get("error")) {
        (2, Some(msg)) => Err(msg.as_str().unwrap_or_default().to_string()),
        (0, None) => Ok(v),
        _ => panic!(
            "oracle helper failed on {} (exit {code}):\n{out}\n{err}",
            file.display()
        ),
    }
}

/// `supervisor check --json` on `file`: `Ok(json)`, or `Err(stderr)` when it refuses the file.
fn ours(file: &Path) -> Result<Value, String> {
    let (code, out, err) = run(Command::new(e2e::bin())
        .args(["check", "--json", "-c"])
        .arg(file));
    match code {
        0 => Ok(serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("check --json printed no JSON ({e}):\n{out}"))),
        2 => Err(err),
        _ => panic!("check exited {code} on {}:\n{out}\n{err}", file.display()),
    }
}

/// Our `ProgramSpec` JSON, in the oracle's shape (fields the oracle does not know are dropped).
fn normalize(p: &Value) -> Map<String, Value> {
    let mut m = Map::new();
    for k in [
        "name",
        "group",
        "command",
        "autostart",
        "startretries",
        "stopsignal",
        "stopasgroup",
        "killasgroup",
        "priority",
        "directory",
        "umask",
        "exitcodes",
        "redirect_stderr",
        "stdout",
        "stderr",
        "user",
        "startsecs",
        "stopwaitsecs",
    ] {
        m.insert(k.into(), p[k].clone());
    }
    let restart = match p["autorestart"].as_str() {
        Some("always") => "true",
        Some("never") => "false",
        other => other.unwrap_or("?"),
    };
    m.insert("autorestart".into(), Value::from(restart));
    let env: Map<String, Value> = p["environment"]
        .as_array()
        .map(|pairs| {
            pairs
                .iter()
                .map(|kv| (kv[0].as_str().unwrap_or("").to_string(), kv[1].clone()))
                .collect()
        })
        .unwrap_or_default();
    m.insert("environment".into(), Value::Object(env));
    m
}

/// Does our output target mean what supervisord's does? supervisord's AUTO (a file under
/// childlogdir) is the supervisor's own stdout/stderr here, as documented.
fn same_target(ours: &Value, theirs: &Value, stream: &str) -> bool {
    const STDOUT: &[&str] = &["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"];
    const STDERR: &[&str] = &["/dev/stderr", "/dev/fd/2", "/proc/self/fd/2"];
    let kind = ours["kind"].as_str().unwrap_or("");
    match theirs["kind"].as_str().unwrap_or("") {
        "auto" => kind == stream,
        "none" => kind == "discard",
        "file" => {
            let path = theirs["path"].as_str().unwrap_or("");
            if STDOUT.contains(&path) {
                kind == "stdout"
            } else if STDERR.contains(&path) {
                kind == "stderr"
            } else {
                kind == "file"
                    && ours["path"] == theirs["path"]
                    && ours["max_bytes"] == theirs["max_bytes"]
                    && ours["backups"] == theirs["backups"]
            }
        }
        _ => false,
    }
}

/// The differences between one process as we read it and as supervisord does.
fn compare_process(ours: &Value, theirs: &Value) -> Vec<(String, String)> {
    let o = normalize(ours);
    let mut diffs = Vec::new();
    let mut differ = |field: &str, a: &Value, b: &Value| {
        diffs.push((field.to_string(), format!("ours {a}, supervisord {b}")));
    };
    for field in [
        "group",
        "command",
        "autostart",
        "autorestart",
        "startretries",
        "stopsignal",
        "stopasgroup",
        "killasgroup",
        "priority",
        "directory",
        "umask",
        "exitcodes",
        "redirect_stderr",
        "environment",
    ] {
        if o[field] != theirs[field] {
            differ(field, &o[field], &theirs[field]);
        }
    }
    for field in ["startsecs", "stopwaitsecs"] {
        if o[field].as_f64() != theirs[field].as_f64() {
            differ(field, &o[field], &theirs[field]);
        }
    }
    let user_ok = match (&o["user"], &theirs["user"]) {
        (Value::Null, Value::Null) => true,
        (Value::String(u), t) if !t.is_null() => {
            t["name"].as_str() == Some(u.as_str())
                || t["uid"].as_u64().map(|n| n.to_string()).as_deref() == Some(u.as_str())
        }
        _ => false,
    };
    if !user_ok {
        differ("user", &o["user"], &theirs["user"]);
    }
    if !same_target(&o["stdout"], &theirs["stdout"], "stdout") {
        differ("stdout", &o["stdout"], &theirs["stdout"]);
    }
    // With redirect_stderr supervisord ignores stderr_logfile; here stderr goes where stdout goes.
    if theirs["redirect_stderr"] != Value::Bool(true)
        && !same_target(&o["stderr"], &theirs["stderr"], "stderr")
    {
        differ("stderr", &o["stderr"], &theirs["stderr"]);
    }
    diffs
}

/// (process, field, what differs) for the processes of two lists, matched by name.
fn compare_processes(
    ours: &[Value],
    theirs: &[Value],
    prefix: &str,
    out: &mut Vec<(String, String, String)>,
) {
    let by_name = |list: &[Value]| -> BTreeMap<String, Value> {
        list.iter()
            .map(|p| (p["name"].as_str().unwrap_or("").to_string(), p.clone()))
            .collect()
    };
    let (o, t) = (by_name(ours), by_name(theirs));
    for name in o
        .keys()
        .chain(t.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let who = format!("{prefix}{name}");
        match (o.get(name), t.get(name)) {
            (Some(a), Some(b)) => {
                for (field, what) in compare_process(a, b) {
                    out.push((who.clone(), field, what));
                }
            }
            (Some(_), None) => out.push((who, "exists".into(), "only here".into())),
            (None, Some(_)) => out.push((who, "exists".into(), "only in supervisord".into())),
            (None, None) => {}
        }
    }
}

/// Every difference for one file: (process, field, what).
fn differences(file: &Path) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    match (ours(file), supervisord(file)) {
        (Err(_), Err(_)) => {}
        (Ok(_), Err(msg)) => out.push((
            "*".into(),
            "accepted".into(),
            format!("supervisord refuses it: {msg}"),
        )),
        (Err(msg), Ok(_)) => out.push((
            "*".into(),
            "accepted".into(),
            format!("refused here: {msg}"),
        )),
        (Ok(o), Ok(t)) => {
            let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
            compare_processes(&list(&o["programs"]), &list(&t["programs"]), "", &mut out);
            let pools = |v: &Value, key: &str| -> BTreeMap<String, Value> {
                list(&v[key])
                    .into_iter()
                    .map(|p| (p["pool"].as_str().unwrap_or("").to_string(), p))
                    .collect()
            };
            let (op, tp) = (pools(&o, "eventlisteners"), pools(&t, "eventlisteners"));
            for name in op
                .keys()
                .chain(tp.keys())
                .collect::<std::collections::BTreeSet<_>>()
            {
                let who = format!("[eventlistener:{name}]");
                let (Some(a), Some(b)) = (op.get(name), tp.get(name)) else {
                    out.push((who, "exists".into(), "in one reader only".into()));
                    continue;
                };
                let mut events: Vec<Value> = list(&a["events"]);
                events.sort_by_key(|e| e.as_str().unwrap_or("").to_string());
                for (field, x, y) in [
                    ("events", Value::from(events), b["events"].clone()),
                    (
                        "buffer_size",
                        a["buffer_size"].clone(),
                        b["buffer_size"].clone(),
                    ),
                    ("priority", a["priority"].clone(), b["priority"].clone()),
                ] {
                    if x != y {
                        out.push((
                            who.clone(),
                            field.into(),
                            format!("ours {x}, supervisord {y}"),
                        ));
                    }
                }
                compare_processes(
                    &list(&a["processes"]),
                    &list(&b["processes"]),
                    &format!("{who} "),
                    &mut out,
                );
            }
        }
    }
    out
}

fn allowed(file: &str, process: &str, field: &str) -> bool {
    ALLOWED
        .iter()
        .any(|(f, p, k, _)| *f == file && (*p == "*" || *p == process) && *k == field)
}

#[test]
fn supervisord_and_check_agree_on_every_file_of_the_corpus() {
    let files = corpus();
    assert!(
        files.len() >= 25,
        "the corpus has only {} files",
        files.len()
    );
    let mut identical = 0;
    let mut unexplained = Vec::new();
    let mut explained = 0;
    for file in &files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        let diffs = differences(file);
        if diffs.is_empty() {
            identical += 1;
        }
        for (process, field, what) in diffs {
            if allowed(&name, &process, &field) {
                explained += 1;
            } else {
                unexplained.push(format!("{name}: {process}: {field}: {what}"));
            }
        }
    }
    eprintln!(
        "oracle: {} files, {identical} identical, {explained} allowed differences, {} unexplained",
        files.len(),
        unexplained.len()
    );
    assert!(
        unexplained.is_empty(),
        "supervisord and `supervisor check` disagree:\n{}",
        unexplained.join("\n")
    );
}

#[test]
fn every_allowed_difference_still_happens() {
    for (file, process, field, why) in ALLOWED {
        let diffs = differences(&corpus_dir().join(file));
        assert!(
            diffs
                .iter()
                .any(|(p, f, _)| f == field && (*process == "*" || p == process)),
            "{file}: {process}: {field} is allowed ({why}) but no longer differs: remove it from ALLOWED"
        );
    }
}
