//! What each control request does, against the engine's handle.
//!
//! `start`, `stop` and `restart` are ordered and waited for here, like supervisorctl: `stop`
//! goes in reverse priority order, each priority level fully stopped before the next; `start`
//! in priority order; `restart` is an ordered stop, then an ordered start. Waiting means
//! subscribing to the event bus *before* asking the engine, then reading each program's events
//! until it reaches a state that settles the request, within a timeout.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Bytes;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use super::api::Outcome;
use crate::engine::handle::{Control, EngineHandle, ProgramStatus};
use crate::event::{Event, Kind, State};

/// Resolves names like the engine does (`name`, `GROUP:*`, `GROUP:NAME`, `all`) against a
/// status list; returns the matches in the list's (priority) order, or the engine's error text.
pub fn resolve<'a>(
    programs: &'a [ProgramStatus],
    names: &[String],
) -> Result<Vec<&'a ProgramStatus>, String> {
    let pairs: Vec<(&str, Option<&str>)> = programs
        .iter()
        .map(|p| (p.name.as_str(), p.group.as_deref()))
        .collect();
    Ok(crate::engine::handle::select(&pairs, names)?
        .into_iter()
        .map(|i| &programs[i])
        .collect())
}

/// Runs `action` on the programs `names` resolves to; one outcome per program and phase.
pub async fn action(
    handle: &EngineHandle,
    engine_timeout: Duration,
    action: Control,
    names: &[String],
    wait: bool,
    timeout: Duration,
) -> Result<Vec<Outcome>, (u16, String)> {
    let programs = handle
        .status(engine_timeout)
        .await
        .map_err(|e| (503, e.to_string()))?;
    let targets: Vec<ProgramStatus> = resolve(&programs, names)
        .map_err(|e| (404, e))?
        .into_iter()
        .cloned()
        .collect();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let alive = |p: &ProgramStatus| {
        matches!(
            p.state,
            State::Starting | State::Running | State::Backoff | State::Stopping
        )
    };
    if matches!(action, Control::Stop | Control::Restart) {
        let (running, idle): (Vec<_>, Vec<_>) = targets.iter().partition(|p| alive(p));
        // An EXITED program may have its restart pending (the engine waits for the old
        // process's pipes first): the stop drops it. Nothing to wait for either way.
        let exited: Vec<String> = idle
            .iter()
            .filter(|p| p.state == State::Exited)
            .map(|p| p.name.clone())
            .collect();
        if !exited.is_empty() {
            handle
                .control(Control::Stop, exited)
                .await
                .map_err(|e| (409, e))?;
        }
        if action == Control::Stop {
            for p in idle {
                out.push(Outcome {
                    name: p.name.clone(),
                    ok: true,
                    state: Some(p.state.to_string()),
                    msg: "ERROR (not running)".into(),
                });
            }
        }
        out.extend(phase(handle, Control::Stop, &running, wait, deadline).await?);
    }
    if matches!(action, Control::Start | Control::Restart) {
        // After a stop phase the snapshot is stale: every target is to be started.
        let (up, down): (Vec<_>, Vec<_>) = targets
            .iter()
            .partition(|p| action == Control::Start && p.state == State::Running);
        for p in up {
            out.push(Outcome {
                name: p.name.clone(),
                ok: true,
                state: Some(p.state.to_string()),
                msg: "ERROR (already started)".into(),
            });
        }
        out.extend(phase(handle, Control::Start, &down, wait, deadline).await?);
    }
    Ok(out)
}

/// Starts or stops `targets` level by level (priority ascending to start, descending to stop),
/// waiting for each level to settle when `wait`.
async fn phase(
    handle: &EngineHandle,
    action: Control,
    targets: &[&ProgramStatus],
    wait: bool,
    deadline: Instant,
) -> Result<Vec<Outcome>, (u16, String)> {
    if targets.is_empty() {
        return Ok(vec![]);
    }
    let verb = if action == Control::Start {
        "starting"
    } else {
        "stopping"
    };
    if !wait {
        // One request: the engine applies it in priority order without waiting.
        let names: Vec<String> = targets.iter().map(|p| p.name.clone()).collect();
        handle
            .control(action, names.clone())
            .await
            .map_err(|e| (409, e))?;
        return Ok(names
            .into_iter()
            .map(|name| Outcome {
                name,
                ok: true,
                state: None,
                msg: verb.to_string(),
            })
            .collect());
    }
    let mut levels: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for p in targets {
        levels.entry(p.priority).or_default().push(p.name.clone());
    }
    let mut order: Vec<Vec<String>> = levels.into_values().collect();
    if action == Control::Stop {
        order.reverse();
    }
    let mut out = Vec::new();
    for level in order {
        let mut rx = handle.bus.subscribe();
        handle
            .control(action, level.clone())
            .await
            .map_err(|e| (409, e))?;
        // A stop can land on a program that is already down (it died, and its restart was
        // pending): the engine cancels the restart and nothing changes state, so no event will
        // come. The state right after the request settles those.
        let mut done = HashMap::new();
        if action == Control::Stop {
            if let Ok(now) = handle.status(Duration::from_secs(5)).await {
                for p in now.iter().filter(|p| level.contains(&p.name)) {
                    if matches!(p.state, State::Stopped | State::Exited | State::Fatal) {
                        if let Some(o) = judge(action, p.state, &p.name, "", false) {
                            done.insert(p.name.clone(), o);
                        }
                    }
                }
            }
        }
        out.extend(settle(handle, &mut rx, action, &level, deadline, done).await);
    }
    Ok(out)
}

/// Reads events until every program of `level` has settled, or the deadline.
async fn settle(
    handle: &EngineHandle,
    rx: &mut broadcast::Receiver<Arc<Event>>,
    action: Control,
    level: &[String],
    deadline: Instant,
    mut done: HashMap<String, Outcome>,
) -> Vec<Outcome> {
    let mut killed: Vec<String> = Vec::new();
    while done.len() < level.len() {
        let ev = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(ev)) => ev,
            Ok(Err(RecvError::Lagged(_))) => {
                // Missed events: settle from the current status instead.
                if let Ok(now) = handle.status(Duration::from_secs(5)).await {
                    for p in now.iter().filter(|p| level.contains(&p.name)) {
                        if let Some(o) = judge(action, p.state, &p.name, "", false) {
                            done.entry(p.name.clone()).or_insert(o);
                        }
                    }
                }
                continue;
            }
            Ok(Err(RecvError::Closed)) | Err(_) => break,
        };
        let Some(name) = ev.program.as_deref() else {
            continue;
        };
        if !level.iter().any(|n| n == name) || done.contains_key(name) {
            continue;
        }
        if ev.kind == Kind::Killing {
            killed.push(name.to_string());
        }
        // Only a change of state settles a request: notices about the program (e.g. its old
        // pipes being closed, processes it left behind) carry its state unchanged.
        if let Some(state) = ev.state.filter(|s| ev.from_state != Some(*s)) {
            let detail = ev.error.as_deref().unwrap_or(&ev.msg);
            let was_killed = killed.iter().any(|k| k == name);
            if let Some(o) = judge(action, state, name, detail, was_killed) {
                done.insert(name.to_string(), o);
            }
        }
    }
    let mut states = HashMap::new();
    if done.len() < level.len() {
        if let Ok(now) = handle.status(Duration::from_secs(5)).await {
            states = now.into_iter().map(|p| (p.name, p.state)).collect();
        }
    }
    level
        .iter()
        .map(|name| {
            done.remove(name).unwrap_or_else(|| {
                let state = states.get(name).copied();
                Outcome {
                    name: name.clone(),
                    ok: false,
                    state: state.map(|s| s.to_string()),
                    msg: match state {
                        Some(s) => format!("ERROR (timed out waiting, still {s})"),
                        None => "ERROR (timed out waiting)".to_string(),
                    },
                }
            })
        })
        .collect()
}

/// Whether `state` settles `action`, and how it is reported (supervisorctl's words).
fn judge(action: Control, state: State, name: &str, detail: &str, killed: bool) -> Option<Outcome> {
    let (ok, msg) = match (action, state) {
        (Control::Start, State::Running) => (true, "started".to_string()),
        (Control::Start, State::Fatal) => (false, format!("ERROR (spawn error): {detail}")),
        (Control::Start, State::Backoff) => {
            (false, format!("ERROR (abnormal termination): {detail}"))
        }
        (Control::Start, State::Exited | State::Stopped) => {
            (false, format!("ERROR (exited at once): {detail}"))
        }
        (_, State::Stopped | State::Exited | State::Fatal) if killed => (
            true,
            "stopped (killed with SIGKILL after stopwaitsecs)".to_string(),
        ),
        (_, State::Stopped | State::Exited | State::Fatal) => (true, "stopped".to_string()),
        _ => return None,
    };
    // `detail` can be empty when settled from a status snapshot.
    let msg = msg.trim_end_matches(": ").to_string();
    Some(Outcome {
        name: name.to_string(),
        ok,
        state: Some(state.to_string()),
        msg,
    })
}

/// Sends recent events matching `program`, then (if `follow`) live ones, as JSON lines on `tx`,
/// until the client goes away.
pub async fn events(
    handle: EngineHandle,
    program: Option<String>,
    limit: usize,
    follow: bool,
    tx: mpsc::Sender<Bytes>,
) {
    let mut rx = handle.bus.subscribe();
    let history = handle.history.clone();
    let p = program.clone();
    let past = tokio::task::spawn_blocking(move || history.query(p.as_deref(), None, limit))
        .await
        .unwrap_or_default();
    let mut last = 0;
    for ev in &past {
        last = ev.seq;
        if tx.send(line(ev)).await.is_err() {
            return;
        }
    }
    if !follow {
        return;
    }
    loop {
        let ev = tokio::select! {
            _ = tx.closed() => return,
            r = rx.recv() => r,
        };
        match ev {
            Ok(ev) => {
                if ev.seq <= last
                    || program
                        .as_deref()
                        .is_some_and(|p| ev.program.as_deref() != Some(p))
                {
                    continue;
                }
                if tx.send(line(&ev)).await.is_err() {
                    return;
                }
            }
            Err(RecvError::Lagged(n)) => {
                let note = format!("{{\"event\":\"lagged\",\"msg\":\"{n} events were skipped: this reader is too slow\"}}\n");
                if tx.send(Bytes::from(note)).await.is_err() {
                    return;
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

fn line(ev: &Event) -> Bytes {
    let mut s = ev.to_json();
    s.push('\n');
    Bytes::from(s)
}

/// Sends `first`, then (if `follow`) what the program writes next, until the client goes away.
pub async fn tail(
    first: Vec<u8>,
    mut live: broadcast::Receiver<Bytes>,
    follow: bool,
    tx: mpsc::Sender<Bytes>,
) {
    if !first.is_empty() && tx.send(Bytes::from(first)).await.is_err() {
        return;
    }
    if !follow {
        return;
    }
    loop {
        let chunk = tokio::select! {
            _ = tx.closed() => return,
            r = live.recv() => r,
        };
        let chunk = match chunk {
            Ok(c) => c,
            Err(RecvError::Lagged(n)) => Bytes::from(format!(
                "\n[supervisor: {n} chunks of output skipped: this reader is too slow]\n"
            )),
            Err(RecvError::Closed) => return,
        };
        if tx.send(chunk).await.is_err() {
            return;
        }
    }
}
