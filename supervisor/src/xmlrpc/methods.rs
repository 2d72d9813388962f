//! The method table of supervisord's XML-RPC API and what each method asks of the engine.
//!
//! Methods are a fixed `match` on the name: nothing is looked up dynamically, no method takes a
//! path. Each one checks its arguments, turns them into the engine requests the control socket
//! uses (status, start/stop/restart with waiting, signal, reload, shutdown) or reads the output
//! rings, and translates the answer into supervisord's structures and fault codes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::info::{self, group_of, namespec};
use super::value::Value;
use crate::control::api::Outcome;
use crate::control::ops;
use crate::engine::handle::{Control, EngineHandle, ProgramStatus};
use crate::event::{Kind, State};
use crate::output::{Output, Stream};

pub use super::table::{faults, METHODS};
use faults::*;

/// A fault: supervisord's code, and its text `NAME: detail`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub code: i64,
    pub text: String,
}

impl Fault {
    pub fn new(code: i64, detail: impl AsRef<str>) -> Fault {
        let d = detail.as_ref();
        Fault {
            code,
            text: if d.is_empty() {
                faults::name(code).to_string()
            } else {
                format!("{}: {d}", faults::name(code))
            },
        }
    }
}

type R = Result<Value, Fault>;

/// The API version supervisorctl checks (`supervisor.getVersion`).
pub const API_VERSION: &str = "3.0";

/// How long a waited start or stop may take before it is reported as FAILED.
const ACTION_TIMEOUT: Duration = Duration::from_secs(120);

/// Groups the last `reloadConfig` already applied (this engine applies a reload at once, where
/// supervisord only computes it): supervisorctl's `update` then stops, removes and adds them,
/// and those calls confirm what was done instead of undoing it.
#[derive(Default)]
struct Applied {
    added: HashSet<String>,
    changed: HashSet<String>,
    removed: HashSet<String>,
}

/// What the methods work with.
pub struct Rpc {
    handle: EngineHandle,
    output: Output,
    engine_timeout: Duration,
    applied: Mutex<Applied>,
}

fn lock(m: &Mutex<Applied>) -> std::sync::MutexGuard<'_, Applied> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The parameters of one call, checked one by one.
struct Args<'a>(&'a [Value]);

impl Args<'_> {
    fn count(&self, min: usize, max: usize) -> Result<(), Fault> {
        if (min..=max).contains(&self.0.len()) {
            Ok(())
        } else {
            Err(Fault::new(INCORRECT_PARAMETERS, ""))
        }
    }
    fn str(&self, i: usize) -> Result<&str, Fault> {
        match self.0.get(i) {
            Some(Value::Str(s)) => Ok(s),
            _ => Err(Fault::new(
                INCORRECT_PARAMETERS,
                format!("parameter {} must be a string", i + 1),
            )),
        }
    }
    fn int(&self, i: usize) -> Result<i64, Fault> {
        match self.0.get(i) {
            Some(Value::Int(n)) => Ok(*n),
            _ => Err(Fault::new(
                INCORRECT_PARAMETERS,
                format!("parameter {} must be an int", i + 1),
            )),
        }
    }
    /// An optional boolean (Python clients send True/False; 0/1 accepted too).
    fn flag(&self, i: usize, default: bool) -> Result<bool, Fault> {
        match self.0.get(i) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::Int(n)) => Ok(*n != 0),
            _ => Err(Fault::new(
                INCORRECT_PARAMETERS,
                format!("parameter {} must be a boolean", i + 1),
            )),
        }
    }
    /// A signal: a name (`HUP`, `SIGHUP`) or a number, as a string or an int.
    fn signal(&self, i: usize) -> Result<i32, Fault> {
        let s = match self.0.get(i) {
            Some(Value::Str(s)) => s.clone(),
            Some(Value::Int(n)) => n.to_string(),
            _ => {
                return Err(Fault::new(
                    INCORRECT_PARAMETERS,
                    format!("parameter {} must be a signal", i + 1),
                ))
            }
        };
        crate::config::expand::parse_stopsignal(&s).map_err(|_| Fault::new(BAD_SIGNAL, s))
    }
}

fn result_struct(p_name: &str, group: &str, code: i64, description: &str) -> Value {
    Value::Struct(vec![
        ("name".into(), Value::str(p_name)),
        ("group".into(), Value::str(group)),
        ("status".into(), Value::Int(code)),
        ("description".into(), Value::str(description)),
    ])
}

/// The fault an action's outcome stands for (`None`: it succeeded).
fn outcome_fault(o: &Outcome) -> Option<Fault> {
    let m = o.msg.as_str();
    if ["started", "stopped", "starting", "stopping"]
        .iter()
        .any(|s| m.starts_with(s))
    {
        return None;
    }
    Some(if m.starts_with("ERROR (already started)") {
        Fault::new(ALREADY_STARTED, &o.name)
    } else if m.starts_with("ERROR (not running)") {
        Fault::new(NOT_RUNNING, &o.name)
    } else if m.starts_with("ERROR (spawn error)") || m.starts_with("ERROR (abnormal termination)")
    {
        // supervisord: a process that died before startsecs (BACKOFF, FATAL) has a spawnerr.
        Fault::new(SPAWN_ERROR, &o.name)
    } else if m.starts_with("ERROR (exited at once)") {
        Fault::new(ABNORMAL_TERMINATION, &o.name)
    } else {
        Fault::new(FAILED, format!("{}: {m}", o.name))
    })
}

impl Rpc {
    pub fn new(handle: EngineHandle, output: Output, engine_timeout: Duration) -> Arc<Rpc> {
        Arc::new(Rpc {
            handle,
            output,
            engine_timeout,
            applied: Mutex::new(Applied::default()),
        })
    }

    async fn status(&self) -> Result<Vec<ProgramStatus>, Fault> {
        self.handle
            .status(self.engine_timeout)
            .await
            .map_err(|e| Fault::new(SHUTDOWN_STATE, e.to_string()))
    }

    /// The one program `name` (`NAME` or `GROUP:NAME`) names, or BAD_NAME.
    pub async fn one(&self, name: &str) -> Result<ProgramStatus, Fault> {
        let all = self.status().await?;
        let names = [name.to_string()];
        match ops::resolve(&all, &names) {
            Ok(found) if found.len() == 1 && !name.ends_with(":*") && name != "all" => {
                Ok(found[0].clone())
            }
            _ => Err(Fault::new(BAD_NAME, name)),
        }
    }

    /// The programs of group `group`, or BAD_NAME.
    async fn group(&self, group: &str) -> Result<Vec<ProgramStatus>, Fault> {
        let all = self.status().await?;
        let found: Vec<ProgramStatus> = all.into_iter().filter(|p| group_of(p) == group).collect();
        if found.is_empty() {
            return Err(Fault::new(BAD_NAME, group));
        }
        Ok(found)
    }

    /// The spawn error the engine last reported for `name`, if its last attempt failed so.
    fn spawnerr(&self, name: &str) -> Option<String> {
        self.handle
            .history
            .query(Some(name), None, 32)
            .into_iter()
            .rev()
            .find(|e| matches!(e.kind, Kind::SpawnFailed | Kind::Spawned))
            .filter(|e| e.kind == Kind::SpawnFailed)
            .map(|e| e.error.clone().unwrap_or(e.msg.clone()))
    }

    fn info(&self, p: &ProgramStatus, now: SystemTime) -> Value {
        let err = match p.state {
            State::Fatal | State::Backoff => self.spawnerr(&p.name),
            _ => None,
        };
        info::process_info(p, err.as_deref(), now)
    }

    async fn act(
        &self,
        action: Control,
        names: Vec<String>,
        wait: bool,
    ) -> Result<Vec<Outcome>, Fault> {
        ops::action(
            &self.handle,
            self.engine_timeout,
            action,
            &names,
            wait,
            ACTION_TIMEOUT,
        )
        .await
        .map_err(|(status, e)| Fault::new(if status == 404 { BAD_NAME } else { FAILED }, e))
    }

    /// One process: true, or the fault of its outcome.
    async fn act_one(&self, action: Control, name: &str, wait: bool) -> R {
        let p = self.one(name).await?;
        let outcomes = self.act(action, vec![p.name.clone()], wait).await?;
        match outcomes.iter().find_map(outcome_fault) {
            Some(f) => Err(f),
            None => Ok(Value::Bool(true)),
        }
    }

    /// Several processes: one result struct each; those already in the state asked for are
    /// left out, as supervisord does.
    async fn act_many(&self, action: Control, targets: &[ProgramStatus], wait: bool) -> R {
        let skip = match action {
            Control::Start => ALREADY_STARTED,
            _ => NOT_RUNNING,
        };
        let groups: HashMap<&str, &str> = targets
            .iter()
            .map(|p| (p.name.as_str(), group_of(p)))
            .collect();
        let names = targets.iter().map(|p| p.name.clone()).collect();
        let outcomes = self.act(action, names, wait).await?;
        let mut out = Vec::new();
        for o in &outcomes {
            let group = groups.get(o.name.as_str()).copied().unwrap_or(&o.name);
            match outcome_fault(o) {
                None => out.push(result_struct(&o.name, group, SUCCESS, "OK")),
                Some(f) if f.code == skip => {}
                Some(f) => out.push(result_struct(&o.name, group, f.code, &f.text)),
            }
        }
        Ok(Value::Array(out))
    }

    async fn signal_many(&self, signo: i32, targets: &[ProgramStatus]) -> R {
        let running: Vec<&ProgramStatus> = targets
            .iter()
            .filter(|p| {
                matches!(
                    p.state,
                    State::Starting | State::Running | State::Stopping | State::Backoff
                ) && p.pid.is_some()
            })
            .collect();
        if running.is_empty() {
            return Ok(Value::Array(vec![]));
        }
        let names: Vec<String> = running.iter().map(|p| p.name.clone()).collect();
        let sent = self
            .handle
            .signal(signo, names)
            .await
            .map_err(|e| Fault::new(FAILED, e))?;
        Ok(Value::Array(
            running
                .iter()
                .map(|p| {
                    if sent.contains(&p.name) {
                        result_struct(&p.name, group_of(p), SUCCESS, "OK")
                    } else {
                        result_struct(
                            &p.name,
                            group_of(p),
                            NOT_RUNNING,
                            &Fault::new(NOT_RUNNING, &p.name).text,
                        )
                    }
                })
                .collect(),
        ))
    }

    /// The recent output of one program's stream (what the ring keeps) and the program.
    async fn log(&self, name: &str, stream: Stream) -> Result<Vec<u8>, Fault> {
        let p = self.one(name).await?;
        Ok(self
            .output
            .tail(&p.name, stream, usize::MAX)
            .map(|(bytes, _)| bytes)
            .unwrap_or_default())
    }

    /// The last `max` bytes of a program's stream and a subscription to what comes next.
    pub fn output_follow(
        &self,
        program: &str,
        stream: Stream,
        max: usize,
    ) -> (
        Vec<u8>,
        tokio::sync::broadcast::Receiver<hyper::body::Bytes>,
    ) {
        self.output.follow(program, stream, max)
    }

    /// The supervisor's own log: the events kept in memory, as text lines.
    fn main_log(&self) -> Vec<u8> {
        let mut out = String::new();
        for e in self
            .handle
            .history
            .query(None, None, crate::run::HISTORY_SIZE)
        {
            out.push_str(&e.to_text());
            out.push('\n');
        }
        out.into_bytes()
    }

    /// Runs one method. Never panics; every failure is a fault.
    pub async fn call(&self, method: &str, params: &[Value]) -> R {
        let a = Args(params);
        match method {
            "system.listMethods" => {
                a.count(0, 0)?;
                Ok(Value::Array(
                    METHODS.iter().map(|m| Value::str(m.0)).collect(),
                ))
            }
            "system.methodHelp" | "system.methodSignature" => {
                a.count(1, 1)?;
                let name = a.str(0)?;
                let m = METHODS
                    .iter()
                    .find(|m| m.0 == name)
                    .ok_or_else(|| Fault::new(SIGNATURE_UNSUPPORTED, name))?;
                Ok(if method == "system.methodHelp" {
                    Value::str(m.2)
                } else {
                    Value::Array(vec![Value::Array(
                        m.1.iter().map(|t| Value::str(*t)).collect(),
                    )])
                })
            }
            "system.multicall" => {
                a.count(1, 1)?;
                let Value::Array(calls) = &params[0] else {
                    return Err(Fault::new(
                        INCORRECT_PARAMETERS,
                        "multicall takes an array of calls",
                    ));
                };
                let mut out = Vec::with_capacity(calls.len());
                for c in calls {
                    out.push(match self.one_of_multicall(c).await {
                        Ok(v) => Value::Array(vec![v]),
                        Err(f) => Value::Struct(vec![
                            ("faultCode".into(), Value::Int(f.code)),
                            ("faultString".into(), Value::Str(f.text)),
                        ]),
                    });
                }
                Ok(Value::Array(out))
            }
            "supervisor.getAPIVersion" | "supervisor.getVersion" => {
                a.count(0, 0)?;
                Ok(Value::str(API_VERSION))
            }
            "supervisor.getSupervisorVersion" => {
                a.count(0, 0)?;
                Ok(Value::str(env!("CARGO_PKG_VERSION")))
            }
            "supervisor.getIdentification" => {
                a.count(0, 0)?;
                Ok(Value::str("supervisor"))
            }
            "supervisor.getState" => {
                a.count(0, 0)?;
                self.status().await?;
                Ok(Value::Struct(vec![
                    ("statecode".into(), Value::Int(1)),
                    ("statename".into(), Value::str("RUNNING")),
                ]))
            }
            "supervisor.getPID" => {
                a.count(0, 0)?;
                Ok(Value::Int(i64::from(std::process::id())))
            }
            "supervisor.readLog" | "supervisor.readMainLog" => {
                a.count(2, 2)?;
                let log = self.main_log();
                let data = info::read_range(&log, a.int(0)?, a.int(1)?)
                    .ok_or_else(|| Fault::new(BAD_ARGUMENTS, ""))?;
                Ok(Value::Str(String::from_utf8_lossy(data).into_owned()))
            }
            "supervisor.tailLog" => {
                a.count(2, 2)?;
                let log = self.main_log();
                Ok(tail_value(&log, a.int(0)?, a.int(1)?))
            }
            "supervisor.clearLog" => {
                a.count(0, 0)?;
                Err(Fault::new(FAILED, "the main log is the supervisor's stdout and its in-memory event history, which is kept"))
            }
            "supervisor.shutdown" => {
                a.count(0, 0)?;
                self.handle
                    .shutdown("requested over XML-RPC (supervisorctl shutdown)")
                    .await
                    .map_err(|e| Fault::new(SHUTDOWN_STATE, e.to_string()))?;
                Ok(Value::Bool(true))
            }
            "supervisor.restart" => {
                a.count(0, 0)?;
                self.reload().await?;
                Ok(Value::Bool(true))
            }
            "supervisor.reloadConfig" => {
                a.count(0, 0)?;
                let (added, changed, removed) = self.reload().await?;
                let list = |v: Vec<String>| Value::Array(v.into_iter().map(Value::Str).collect());
                Ok(Value::Array(vec![Value::Array(vec![
                    list(added),
                    list(changed),
                    list(removed),
                ])]))
            }
            "supervisor.addProcessGroup" => {
                a.count(1, 1)?;
                let name = a.str(0)?;
                let done = {
                    let mut ap = lock(&self.applied);
                    ap.added.remove(name) | ap.changed.remove(name)
                };
                if done {
                    return Ok(Value::Bool(true));
                }
                self.group(name).await?;
                Err(Fault::new(ALREADY_ADDED, name))
            }
            "supervisor.removeProcessGroup" => {
                a.count(1, 1)?;
                let name = a.str(0)?;
                {
                    let ap = lock(&self.applied);
                    if ap.removed.contains(name) || ap.changed.contains(name) {
                        drop(ap);
                        lock(&self.applied).removed.remove(name);
                        return Ok(Value::Bool(true));
                    }
                }
                let members = self.group(name).await?;
                if members.iter().any(|p| {
                    matches!(
                        p.state,
                        State::Starting | State::Running | State::Stopping | State::Backoff
                    )
                }) {
                    return Err(Fault::new(STILL_RUNNING, name));
                }
                Err(Fault::new(FAILED, format!("{name}: programs leave supervision when the config file no longer has them (edit it, then reread and update)")))
            }
            "supervisor.getProcessInfo" => {
                a.count(1, 1)?;
                let p = self.one(a.str(0)?).await?;
                Ok(self.info(&p, SystemTime::now()))
            }
            "supervisor.getAllProcessInfo" => {
                a.count(0, 0)?;
                let mut all = self.status().await?;
                // supervisord lists by group name, then process name.
                all.sort_by(|x, y| (group_of(x), &x.name).cmp(&(group_of(y), &y.name)));
                let now = SystemTime::now();
                Ok(Value::Array(
                    all.iter().map(|p| self.info(p, now)).collect(),
                ))
            }
            "supervisor.getAllConfigInfo" => {
                a.count(0, 0)?;
                let mut all = self.status().await?;
                all.sort_by(|x, y| (group_of(x), &x.name).cmp(&(group_of(y), &y.name)));
                Ok(Value::Array(all.iter().map(info::config_info).collect()))
            }
            "supervisor.startProcess" | "supervisor.stopProcess" => {
                a.count(1, 2)?;
                let action = if method == "supervisor.startProcess" {
                    Control::Start
                } else {
                    Control::Stop
                };
                let name = a.str(0)?;
                let wait = a.flag(1, true)?;
                if let Some(g) = name.strip_suffix(":*") {
                    let members = self.group(g).await?;
                    return self.act_many(action, &members, wait).await;
                }
                self.act_one(action, name, wait).await
            }
            "supervisor.startProcessGroup" | "supervisor.stopProcessGroup" => {
                a.count(1, 2)?;
                let start = method == "supervisor.startProcessGroup";
                let name = a.str(0)?;
                let wait = a.flag(1, true)?;
                if !start {
                    let ap = lock(&self.applied);
                    if ap.removed.contains(name) || ap.changed.contains(name) {
                        return Ok(Value::Array(vec![]));
                    }
                }
                let members = self.group(name).await?;
                self.act_many(
                    if start { Control::Start } else { Control::Stop },
                    &members,
                    wait,
                )
                .await
            }
            "supervisor.startAllProcesses" | "supervisor.stopAllProcesses" => {
                a.count(0, 1)?;
                let wait = a.flag(0, true)?;
                let all = self.status().await?;
                let action = if method == "supervisor.startAllProcesses" {
                    Control::Start
                } else {
                    Control::Stop
                };
                self.act_many(action, &all, wait).await
            }
            "supervisor.signalProcess" => {
                a.count(2, 2)?;
                let name = a.str(0)?;
                let signo = a.signal(1)?;
                if let Some(g) = name.strip_suffix(":*") {
                    let members = self.group(g).await?;
                    return self.signal_many(signo, &members).await;
                }
                let p = self.one(name).await?;
                let sent = match p.state {
                    State::Starting | State::Running | State::Stopping | State::Backoff
                        if p.pid.is_some() =>
                    {
                        self.handle
                            .signal(signo, vec![p.name.clone()])
                            .await
                            .map_err(|e| Fault::new(FAILED, e))?
                    }
                    _ => vec![],
                };
                if sent.contains(&p.name) {
                    Ok(Value::Bool(true))
                } else {
                    Err(Fault::new(NOT_RUNNING, name))
                }
            }
            "supervisor.signalProcessGroup" => {
                a.count(2, 2)?;
                let members = self.group(a.str(0)?).await?;
                self.signal_many(a.signal(1)?, &members).await
            }
            "supervisor.signalAllProcesses" => {
                a.count(1, 1)?;
                let signo = a.signal(0)?;
                let all = self.status().await?;
                self.signal_many(signo, &all).await
            }
            "supervisor.sendProcessStdin" => {
                a.count(2, 2)?;
                let p = self.one(a.str(0)?).await?;
                a.str(1)?;
                if p.pid.is_none() {
                    return Err(Fault::new(NOT_RUNNING, namespec(&p)));
                }
                Err(Fault::new(
                    FAILED,
                    format!(
                        "{}: programs' stdin is not connected to the supervisor",
                        namespec(&p)
                    ),
                ))
            }
            "supervisor.sendRemoteCommEvent" => {
                a.count(2, 2)?;
                a.str(0)?;
                a.str(1)?;
                Err(Fault::new(
                    FAILED,
                    "there are no event listeners to receive it",
                ))
            }
            "supervisor.readProcessStdoutLog"
            | "supervisor.readProcessLog"
            | "supervisor.readProcessStderrLog" => {
                a.count(3, 3)?;
                let stream = if method.contains("Stderr") {
                    Stream::Stderr
                } else {
                    Stream::Stdout
                };
                let log = self.log(a.str(0)?, stream).await?;
                let data = info::read_range(&log, a.int(1)?, a.int(2)?)
                    .ok_or_else(|| Fault::new(BAD_ARGUMENTS, ""))?;
                Ok(Value::Str(String::from_utf8_lossy(data).into_owned()))
            }
            "supervisor.tailProcessStdoutLog"
            | "supervisor.tailProcessLog"
            | "supervisor.tailProcessStderrLog" => {
                a.count(3, 3)?;
                let stream = if method.contains("Stderr") {
                    Stream::Stderr
                } else {
                    Stream::Stdout
                };
                let log = self.log(a.str(0)?, stream).await?;
                Ok(tail_value(&log, a.int(1)?, a.int(2)?))
            }
            "supervisor.clearProcessLogs" | "supervisor.clearProcessLog" => {
                a.count(1, 1)?;
                let p = self.one(a.str(0)?).await?;
                Err(Fault::new(
                    FAILED,
                    format!(
                        "{}: recent output is kept in memory and cannot be cleared",
                        namespec(&p)
                    ),
                ))
            }
            "supervisor.clearAllProcessLogs" => {
                a.count(0, 0)?;
                let all = self.status().await?;
                Ok(Value::Array(
                    all.iter()
                        .map(|p| result_struct(&p.name, group_of(p), FAILED, "FAILED"))
                        .collect(),
                ))
            }
            _ => Err(Fault::new(UNKNOWN_METHOD, "")),
        }
    }

    /// One entry of `system.multicall` (no nested multicall).
    async fn one_of_multicall(&self, c: &Value) -> R {
        let Value::Struct(members) = c else {
            return Err(Fault::new(INCORRECT_PARAMETERS, "each call is a struct"));
        };
        let get = |k: &str| members.iter().find(|(n, _)| n == k).map(|(_, v)| v);
        let Some(Value::Str(name)) = get("methodName") else {
            return Err(Fault::new(
                INCORRECT_PARAMETERS,
                "a call without methodName",
            ));
        };
        if name == "system.multicall" {
            return Err(Fault::new(
                INCORRECT_PARAMETERS,
                "multicall cannot be nested",
            ));
        }
        let params: &[Value] = match get("params") {
            Some(Value::Array(p)) => p,
            None => &[],
            Some(_) => return Err(Fault::new(INCORRECT_PARAMETERS, "params must be an array")),
        };
        Box::pin(self.call(name, params)).await
    }

    /// Applies the config file (the engine's reload) and remembers the groups it touched.
    async fn reload(&self) -> Result<(Vec<String>, Vec<String>, Vec<String>), Fault> {
        let summary = self
            .handle
            .reload()
            .await
            .map_err(|e| Fault::new(CANT_REREAD, e))?;
        let all = self.status().await.unwrap_or_default();
        let group = |n: &String| {
            all.iter().find(|p| &p.name == n).map_or_else(
                || n.split(':').next().unwrap_or(n).to_string(),
                |p| group_of(p).to_string(),
            )
        };
        let dedup = |v: &[String]| {
            let mut g: Vec<String> = v.iter().map(group).collect();
            g.sort();
            g.dedup();
            g
        };
        let (added, changed, removed) = (
            dedup(&summary.added),
            dedup(&summary.changed),
            dedup(&summary.removed),
        );
        *lock(&self.applied) = Applied {
            added: added.iter().cloned().collect(),
            changed: changed.iter().cloned().collect(),
            removed: removed.iter().cloned().collect(),
        };
        Ok((added, changed, removed))
    }
}

fn tail_value(data: &[u8], offset: i64, length: i64) -> Value {
    let (bytes, offset, overflow) = info::tail_range(data, offset, length);
    Value::Array(vec![
        Value::Str(String::from_utf8_lossy(bytes).into_owned()),
        Value::Int(offset),
        Value::Bool(overflow),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(msg: &str) -> Outcome {
        Outcome {
            name: "web".into(),
            ok: false,
            state: None,
            msg: msg.into(),
        }
    }

    #[test]
    fn outcomes_become_supervisords_faults() {
        for (msg, code) in [
            ("ERROR (already started)", ALREADY_STARTED),
            ("ERROR (not running)", NOT_RUNNING),
            ("ERROR (spawn error): no such file", SPAWN_ERROR),
            ("ERROR (abnormal termination): exit 1", SPAWN_ERROR),
            ("ERROR (exited at once)", ABNORMAL_TERMINATION),
            ("ERROR (timed out waiting, still STARTING)", FAILED),
        ] {
            assert_eq!(
                outcome_fault(&outcome(msg)).map(|f| f.code),
                Some(code),
                "{msg}"
            );
        }
        for ok in [
            "started",
            "stopped",
            "starting",
            "stopping",
            "stopped (killed with SIGKILL after stopwaitsecs)",
        ] {
            assert_eq!(outcome_fault(&outcome(ok)), None);
        }
        assert_eq!(Fault::new(BAD_NAME, "x").text, "BAD_NAME: x");
        assert_eq!(Fault::new(UNKNOWN_METHOD, "").text, "UNKNOWN_METHOD");
    }

    #[test]
    fn every_method_has_a_signature_and_a_unique_name() {
        let mut names: Vec<&str> = METHODS.iter().map(|m| m.0).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n);
        assert!(METHODS.iter().all(|m| !m.1.is_empty() && !m.2.is_empty()));
    }
}
