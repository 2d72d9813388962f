//! `/healthz` and `/readyz`, answered from state the HTTP side already holds.
//!
//! A probe must answer at once whatever else hits the port, and a flood of probes must cost the
//! engine nothing. So probes never ask the engine: a keeper task ([`keep`]) holds a copy of the
//! programs' states ([`Snapshot`]) and asks the engine for a fresh one only when the event
//! stream says something changed (one request at a time, however many events or probes come),
//! or when a probe finds the copy older than [`REFRESH_AFTER`] — which is also how a wedged
//! engine is noticed: a question it has not answered for [`Limits::engine_timeout`] makes
//! `/healthz` 503. Nothing here runs while nothing happens: no timer, no polling.
//!
//! [`Limits::engine_timeout`]: super::Limits::engine_timeout

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::{Response, StatusCode};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{oneshot, watch, Notify};

use super::{json, App, Body};
use crate::engine::handle::{EngineGone, EngineHandle, ProgramStatus, Request};
use crate::event::{Event, Kind, State};

/// A probe that finds the copy older than this (and no question on its way) has the keeper ask
/// the engine again, without waiting for the answer. At most one engine request per this
/// interval comes from probes, however many there are.
pub const REFRESH_AFTER: Duration = Duration::from_secs(1);

/// What `/readyz` needs of one program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Brief {
    pub name: String,
    pub state: State,
    pub autostart: bool,
    pub ready: bool,
}

impl From<&ProgramStatus> for Brief {
    fn from(p: &ProgramStatus) -> Self {
        Brief {
            name: p.name.clone(),
            state: p.state,
            autostart: p.autostart,
            ready: p.ready,
        }
    }
}

/// The HTTP side's copy of the engine's program states.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The engine's last answer; `None` until the first one.
    pub programs: Option<Arc<Vec<Brief>>>,
    /// When that answer came.
    pub answered_at: Option<Instant>,
    /// When the question now on its way was asked (`None`: none is).
    pub asked_at: Option<Instant>,
    /// The engine's request channel is closed: it has stopped.
    pub gone: bool,
}

/// What a probe concludes about the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Liveness {
    Alive,
    /// A question has waited this long, more than the limit.
    NotAnswering(Duration),
    Gone,
}

impl Snapshot {
    /// The verdict at `now`, given how long the engine may take to answer.
    pub fn liveness(&self, now: Instant, timeout: Duration) -> Liveness {
        if self.gone {
            return Liveness::Gone;
        }
        match self.asked_at.map(|t| now.saturating_duration_since(t)) {
            Some(waited) if waited > timeout => Liveness::NotAnswering(waited),
            _ => Liveness::Alive,
        }
    }

    /// Whether a probe at `now` should have the keeper ask again.
    pub fn stale(&self, now: Instant) -> bool {
        self.asked_at.is_none()
            && !self.gone
            && self
                .answered_at
                .is_none_or(|t| now.saturating_duration_since(t) >= REFRESH_AFTER)
    }
}

impl Liveness {
    fn problem(&self) -> Option<String> {
        match self {
            Liveness::Alive => None,
            Liveness::NotAnswering(d) => Some(format!(
                "the supervisor engine has not answered for {:.1} s (wedged or overloaded)",
                d.as_secs_f64()
            )),
            Liveness::Gone => Some(EngineGone.to_string()),
        }
    }
}

/// The shared state between the keeper and the probes.
#[derive(Default)]
pub struct Health {
    snapshot: watch::Sender<Snapshot>,
    /// A probe found the copy stale.
    refresh: Notify,
}

impl Health {
    pub fn new() -> Arc<Health> {
        Arc::new(Health::default())
    }

    /// The copy as it is now.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.borrow().clone()
    }

    /// The copy, after waiting at most `wait` for the answer to a question on its way (so that
    /// a probe right after a change sees it).
    pub async fn fresh(&self, wait: Duration) -> Snapshot {
        let mut rx = self.snapshot.subscribe();
        if rx.borrow_and_update().asked_at.is_some() {
            let answered = async {
                while rx.changed().await.is_ok() {
                    if rx.borrow_and_update().asked_at.is_none() {
                        return;
                    }
                }
            };
            let _ = tokio::time::timeout(wait, answered).await;
        }
        let snap = rx.borrow().clone();
        snap
    }

    /// Asks the keeper for a fresh copy if a probe at `now` finds this one stale.
    pub fn poke(&self, snap: &Snapshot, now: Instant) {
        if snap.stale(now) {
            self.refresh.notify_one();
        }
    }
}

/// Whether an event can change what the engine would answer about its programs' states.
fn changes_state(e: &Event) -> bool {
    !matches!(
        e.kind,
        Kind::HealthCheck
            | Kind::SignalObserved
            | Kind::SignalReceived
            | Kind::OrphanReaped
            | Kind::Notice
            | Kind::Signaled
    )
}

type Question = Pin<Box<dyn Future<Output = Result<Vec<ProgramStatus>, EngineGone>> + Send>>;

fn ask(handle: &EngineHandle) -> Question {
    let tx = handle.tx.clone();
    Box::pin(async move {
        let (reply, answer) = oneshot::channel();
        tx.send(Request::Status(reply))
            .await
            .map_err(|_| EngineGone)?;
        answer.await.map_err(|_| EngineGone)
    })
}

/// Keeps `health`'s copy of the program states current: asks the engine at start, after any
/// event that may change a state (or after missing events), and when a probe pokes. One question
/// at a time; events that come while it is on its way make one more. Returns when the engine is
/// gone.
pub async fn keep(health: Arc<Health>, handle: EngineHandle) {
    let mut events = handle.bus.subscribe();
    let mut dirty = true;
    let mut question: Option<Question> = None;
    loop {
        if dirty && question.is_none() {
            dirty = false;
            question = Some(ask(&handle));
            let now = Instant::now();
            health.snapshot.send_modify(|s| s.asked_at = Some(now));
        }
        tokio::select! {
            answer = async { question.as_mut().expect("guarded").await }, if question.is_some() => {
                question = None;
                match answer {
                    Ok(programs) => {
                        let programs = Arc::new(programs.iter().map(Brief::from).collect());
                        let now = Instant::now();
                        health.snapshot.send_modify(|s| {
                            s.programs = Some(programs);
                            s.answered_at = Some(now);
                            s.asked_at = None;
                        });
                    }
                    Err(EngineGone) => {
                        health.snapshot.send_modify(|s| {
                            s.gone = true;
                            s.asked_at = None;
                        });
                        return;
                    }
                }
            }
            ev = events.recv() => match ev {
                Ok(e) => dirty |= changes_state(&e),
                Err(RecvError::Lagged(_)) => dirty = true,
                Err(RecvError::Closed) => return,
            },
            _ = health.refresh.notified() => dirty = true,
        }
    }
}

/// The autostart programs that are not ready, for `/readyz`.
pub fn not_ready(programs: &[Brief]) -> Vec<&Brief> {
    programs
        .iter()
        .filter(|p| p.autostart && !p.ready)
        .collect()
}

pub async fn healthz(app: &App) -> Response<Body> {
    #[derive(Serialize)]
    struct Health {
        status: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    }
    let now = Instant::now();
    let snap = app.health.snapshot();
    app.health.poke(&snap, now);
    match snap.liveness(now, app.limits.engine_timeout).problem() {
        None => json(
            StatusCode::OK,
            &Health {
                status: "ok",
                error: None,
            },
        ),
        Some(error) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &Health {
                status: "unhealthy",
                error: Some(error),
            },
        ),
    }
}

pub async fn readyz(app: &App) -> Response<Body> {
    #[derive(Serialize)]
    struct NotReady<'a> {
        name: &'a str,
        state: State,
    }
    #[derive(Serialize)]
    struct Ready<'a> {
        ready: bool,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        not_ready: Vec<NotReady<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    }
    let snap = app.health.fresh(app.limits.fresh_wait).await;
    let now = Instant::now();
    app.health.poke(&snap, now);
    let problem = snap.liveness(now, app.limits.engine_timeout).problem();
    let (programs, error) = match (&snap.programs, problem) {
        (_, Some(e)) => (None, Some(e)),
        (None, None) => (
            None,
            Some("the supervisor is starting: no program states yet".to_string()),
        ),
        (Some(p), None) => (Some(p), None),
    };
    let not_ready: Vec<NotReady> = programs
        .map(|p| not_ready(p))
        .unwrap_or_default()
        .into_iter()
        .map(|p| NotReady {
            name: &p.name,
            state: p.state,
        })
        .collect();
    let ready = error.is_none() && not_ready.is_empty();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(
        status,
        &Ready {
            ready,
            not_ready,
            error,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn liveness_by_the_age_of_the_question_on_its_way() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(2);
        let table = [
            // (asked_at, gone, now, verdict)
            (None, false, 5000, Liveness::Alive),
            (Some(0), false, 1999, Liveness::Alive),
            (Some(0), false, 2000, Liveness::Alive),
            (
                Some(0),
                false,
                2500,
                Liveness::NotAnswering(Duration::from_millis(2500)),
            ),
            (None, true, 0, Liveness::Gone),
            (Some(0), true, 9000, Liveness::Gone),
        ];
        for (asked, gone, now, want) in table {
            let s = Snapshot {
                asked_at: asked.map(|ms| at(t0, ms)),
                gone,
                ..Snapshot::default()
            };
            assert_eq!(
                s.liveness(at(t0, now), timeout),
                want,
                "{asked:?} {gone} {now}"
            );
        }
    }

    #[test]
    fn a_probe_pokes_only_when_the_copy_is_old_and_nothing_is_asked() {
        let t0 = Instant::now();
        let snap = |answered: Option<u64>, asked: Option<u64>, gone| Snapshot {
            answered_at: answered.map(|ms| at(t0, ms)),
            asked_at: asked.map(|ms| at(t0, ms)),
            gone,
            ..Snapshot::default()
        };
        assert!(snap(None, None, false).stale(t0));
        assert!(!snap(Some(0), None, false).stale(at(t0, 999)));
        assert!(snap(Some(0), None, false).stale(at(t0, 1000)));
        assert!(!snap(Some(0), Some(1500), false).stale(at(t0, 5000)));
        assert!(!snap(Some(0), None, true).stale(at(t0, 5000)));
    }

    #[test]
    fn health_checks_and_notices_do_not_make_a_question() {
        use crate::event::Level;
        for (kind, changes) in [
            (Kind::HealthCheck, false),
            (Kind::Notice, false),
            (Kind::SignalObserved, false),
            (Kind::Exited, true),
            (Kind::Running, true),
            (Kind::Ready, true),
            (Kind::Added, true),
            (Kind::Stopping, true),
        ] {
            let e = Event::new(Level::Info, kind, "x");
            assert_eq!(changes_state(&e), changes, "{kind:?}");
        }
    }
}
