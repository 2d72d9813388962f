//! Readiness and health checks, run as their own tasks with their own timers (never on the
//! engine's path): they report results to the engine as messages, and the engine decides what
//! a result means. A program without checks has no task and no timer.
//!
//! `exec:` checks are processes: the engine spawns and reaps them like everything else (one
//! owner of reaping), so a check task asks the engine to run one and waits for the status.

use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::config::check::Check;

/// A check result for the engine, tagged with the process it is about.
#[derive(Debug)]
pub enum CheckMsg {
    /// The readiness check of process `serial` passed.
    Ready { serial: u64, detail: String },
    /// One health check of process `serial`.
    Health {
        serial: u64,
        ok: bool,
        detail: String,
    },
    /// A check wants `argv` run; the engine replies with the outcome.
    Exec {
        argv: Vec<String>,
        timeout: Duration,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// Where a check task sends its results.
pub type CheckTx = mpsc::UnboundedSender<CheckMsg>;

/// One attempt of a `tcp:`, `http://` or `exec:` check.
pub async fn probe(check: &Check, timeout: Duration, tx: &CheckTx) -> Result<(), String> {
    match check {
        Check::Tcp(addr) => {
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr.as_str())).await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("connect to {addr}: {e}")),
                Err(_) => Err(format!(
                    "connect to {addr}: no answer within {}s",
                    timeout.as_secs_f64()
                )),
            }
        }
        Check::Http(url) => match tokio::time::timeout(timeout, http_get(url)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "GET {url}: no answer within {}s",
                timeout.as_secs_f64()
            )),
        },
        Check::Exec(argv) => {
            let (reply, rx) = oneshot::channel();
            tx.send(CheckMsg::Exec {
                argv: argv.clone(),
                timeout,
                reply,
            })
            .map_err(|_| "the supervisor is shutting down".to_string())?;
            rx.await
                .map_err(|_| "the supervisor is shutting down".to_string())?
        }
        Check::Started | Check::Log(_) | Check::Notify => Ok(()),
    }
}

/// `GET url` over plain HTTP/1.1; any 2xx status passes.
async fn http_get(url: &str) -> Result<(), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let host = uri
        .host()
        .ok_or_else(|| format!("{url}: no host"))?
        .to_string();
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let conn = tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let req = hyper::Request::get(path)
        .header(
            hyper::header::HOST,
            uri.authority().map_or(host.clone(), |a| a.to_string()),
        )
        .header(hyper::header::USER_AGENT, "supervisor-health-check")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("GET {url}: {e}"))?;
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| format!("GET {url}: {e}"));
    conn.abort();
    let status = res?.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("GET {url}: {status}"))
    }
}

/// Readiness by polling a `tcp:`/`http://`/`exec:` check until it passes (the engine's
/// ready_timeout ends it by killing the process, which aborts this task).
pub async fn poll_ready(serial: u64, check: Check, tx: CheckTx) {
    let mut pause = Duration::from_millis(100);
    loop {
        if probe(&check, Duration::from_secs(2), &tx).await.is_ok() {
            let _ = tx.send(CheckMsg::Ready {
                serial,
                detail: check.to_string(),
            });
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Readiness by a regex on the program's output (both streams, live).
pub async fn watch_log(
    serial: u64,
    re: regex::Regex,
    mut streams: Vec<broadcast::Receiver<Bytes>>,
    tx: CheckTx,
) {
    const MAX_LINE: usize = 64 * 1024;
    let mut lines: Vec<Vec<u8>> = vec![Vec::new(); streams.len()];
    loop {
        let next = futures_select(&mut streams).await;
        let Some((i, chunk)) = next else { return };
        for part in chunk.split_inclusive(|&b| b == b'\n') {
            let line = &mut lines[i];
            if line.len() < MAX_LINE {
                line.extend_from_slice(&part[..part.len().min(MAX_LINE - line.len())]);
            }
            if part.ends_with(b"\n") {
                let text = String::from_utf8_lossy(line);
                if re.is_match(text.trim_end()) {
                    let _ = tx.send(CheckMsg::Ready {
                        serial,
                        detail: format!("log line matched /{}/", re.as_str()),
                    });
                    return;
                }
                line.clear();
            }
        }
    }
}

/// The next chunk from any of `streams` (lagging is skipped; `None` when all are closed).
async fn futures_select(streams: &mut [broadcast::Receiver<Bytes>]) -> Option<(usize, Bytes)> {
    loop {
        if streams.is_empty() {
            return None;
        }
        let (a, rest) = streams.split_at_mut(1);
        let r = match rest.first_mut() {
            Some(b) => tokio::select! {
                r = a[0].recv() => (0, r),
                r = b.recv() => (1, r),
            },
            None => (0, a[0].recv().await),
        };
        match r {
            (i, Ok(chunk)) => return Some((i, chunk)),
            (_, Err(broadcast::error::RecvError::Lagged(_))) => continue,
            (_, Err(broadcast::error::RecvError::Closed)) => return None,
        }
    }
}

/// Readiness by notification: the program writes a line to `$SUPERVISOR_READY_FD`.
pub async fn watch_notify(serial: u64, pipe: std::os::fd::OwnedFd, tx: CheckTx) {
    use tokio::io::AsyncReadExt;
    let Ok(mut rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(pipe) else {
        return;
    };
    let mut buf = [0u8; 256];
    loop {
        match rx.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) if buf[..n].contains(&b'\n') => {
                let _ = tx.send(CheckMsg::Ready {
                    serial,
                    detail: "notified on $SUPERVISOR_READY_FD".into(),
                });
                return;
            }
            Ok(_) => {}
        }
    }
}

/// The periodic health check of process `serial`: one probe per `interval`, nothing else.
pub async fn health(serial: u64, check: Check, interval: Duration, timeout: Duration, tx: CheckTx) {
    loop {
        tokio::time::sleep(interval).await;
        let result = probe(&check, timeout, &tx).await;
        let (ok, detail) = match result {
            Ok(()) => (true, check.to_string()),
            Err(e) => (false, e),
        };
        if tx.send(CheckMsg::Health { serial, ok, detail }).is_err() {
            return;
        }
    }
}
