//! The HTTP endpoint: `/metrics`, `/healthz`, `/readyz`, `/api/programs`, `/api/events`.
//!
//! A small, read-only HTTP/1.1 server on hyper. It shares the engine's single runtime thread, so
//! it is built never to hold it, and so that the probes answer whatever else hits the port:
//!
//! - `/healthz` and `/readyz` are answered from a copy of the program states that the HTTP side
//!   keeps (`health.rs`), never by waiting on the engine: a flood of probes costs the engine
//!   nothing, and a wedged engine still shows as a 503.
//! - New connections are never refused. At [`Limits::max_connections`] the oldest idle
//!   connection is closed to make room (`conns.rs`); when `accept` runs out of descriptors, the
//!   same eviction frees one. The accept loop never waits on a client.
//! - A client that trickles its headers or idles is cut off after [`Limits::header_timeout`]
//!   (hyper's header read timeout, a timer per open connection only); a connection lives at
//!   most [`Limits::connection_lifetime`]; heads are capped at [`Limits::max_header_bytes`]
//!   (hyper answers 431).
//! - Only the expensive endpoints shed load: at most [`Limits::max_expensive`] requests to
//!   `/metrics` and `/api/*` are admitted at once (of which [`Limits::concurrent_scrapes`]
//!   render metrics at a time, on blocking threads); more get 503 with `Retry-After`.
//!
//! Nothing here changes anything.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body as _, Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::engine::handle::EngineHandle;
use crate::event::{Event, Kind, Level};
use crate::metrics::{self, Metrics};

mod conns;
mod health;

use conns::{Admission, Conns};
use health::Health;

pub(crate) type Body = http_body_util::Full<Bytes>;

/// The endpoints, for the index page and the start-up notice.
pub const ENDPOINTS: &[&str] = &[
    "/metrics",
    "/healthz",
    "/readyz",
    "/api/programs",
    "/api/events",
];

/// Events returned by `/api/events` when no `limit` is given, and the most it returns.
pub const DEFAULT_EVENTS_LIMIT: usize = 100;
pub const MAX_EVENTS_LIMIT: usize = 10_000;

/// The most connections held at once by default, whatever the descriptor limit.
pub const MAX_CONNECTIONS: usize = 256;

/// What the server allows a client.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections held at once; at this count a new one makes the oldest idle one close.
    pub max_connections: usize,
    /// Time a client has to send a request's headers, also while a kept-alive connection is
    /// idle between requests (slowloris protection).
    pub header_timeout: Duration,
    /// The longest a connection may stay open; then it is closed after the request in flight.
    pub connection_lifetime: Duration,
    /// The largest request head (request line + headers) accepted; larger gets 431.
    pub max_header_bytes: usize,
    /// How long the engine may take to answer before `/healthz` calls it not answering; also
    /// how long `/api/programs` waits for it.
    pub engine_timeout: Duration,
    /// How long `/readyz` waits for the answer to a question already on its way to the engine
    /// (after a state change) before answering from the copy it has.
    pub fresh_wait: Duration,
    /// Requests to `/metrics` and `/api/*` admitted at once (running or waiting their turn);
    /// more are answered 503 with `Retry-After`.
    pub max_expensive: usize,
    /// Metric scrapes rendered at once (each one reads `/proc`); more wait their turn.
    pub concurrent_scrapes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: default_max_connections(),
            header_timeout: Duration::from_secs(5),
            connection_lifetime: Duration::from_secs(60),
            max_header_bytes: 8 * 1024,
            engine_timeout: Duration::from_secs(2),
            fresh_wait: Duration::from_millis(50),
            max_expensive: 16,
            concurrent_scrapes: 2,
        }
    }
}

/// A quarter of the descriptor limit (the rest is for programs' pipes and pidfds), at most
/// [`MAX_CONNECTIONS`], at least 16.
fn default_max_connections() -> usize {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024);
    usize::try_from(soft / 4)
        .unwrap_or(MAX_CONNECTIONS)
        .clamp(16, MAX_CONNECTIONS)
}

/// Everything a request handler can read.
pub struct App {
    handle: EngineHandle,
    metrics: Arc<Metrics>,
    limits: Limits,
    /// The copy of the program states that the probes answer from.
    health: Arc<Health>,
    /// Admission to the expensive endpoints.
    expensive: Arc<Semaphore>,
    scrapes: Arc<Semaphore>,
}

impl App {
    pub fn new(handle: EngineHandle, metrics: Arc<Metrics>, limits: Limits) -> Arc<App> {
        let scrapes = Arc::new(Semaphore::new(limits.concurrent_scrapes.max(1)));
        let expensive = Arc::new(Semaphore::new(limits.max_expensive.max(1)));
        Arc::new(App {
            handle,
            metrics,
            limits,
            health: Health::new(),
            expensive,
            scrapes,
        })
    }
}

/// Parses `--metrics-addr` / `metrics_addr`: `off`, `HOST:PORT` (an IP address), or `:PORT`
/// (all interfaces). `Ok(None)` means off.
pub fn parse_addr(s: &str) -> Result<Option<SocketAddr>, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let full = if t.starts_with(':') {
        format!("0.0.0.0{t}")
    } else {
        t.to_string()
    };
    full.parse::<SocketAddr>().map(Some).map_err(|_| {
        format!("`{s}` is not an address to listen on: expected IP:PORT (e.g. 0.0.0.0:9469, 127.0.0.1:9469, [::]:9469), :PORT, or `off`")
    })
}

/// Binds `addr` and serves in a background task for the rest of the process. Either outcome is
/// reported as an event; failing to bind never stops supervision.
pub async fn start(addr: SocketAddr, app: Arc<App>) -> Option<SocketAddr> {
    let bus = app.handle.bus.clone();
    match listen(addr) {
        Ok(listener) => {
            let local = listener.local_addr().unwrap_or(addr);
            bus.emit(Event::new(
                Level::Info,
                Kind::Notice,
                format!(
                    "HTTP endpoint listening on http://{local} ({})",
                    ENDPOINTS.join(", ")
                ),
            ));
            tokio::spawn(serve(listener, app, std::future::pending()));
            Some(local)
        }
        Err(e) => {
            bus.emit(Event::new(
                Level::Error,
                Kind::Notice,
                format!(
                    "cannot listen on {addr} for /metrics and the HTTP API: {e}; supervising without them \
                     (choose another address with --metrics-addr HOST:PORT or metrics_addr in the config, or `off`)"
                ),
            ));
            None
        }
    }
}

/// Connections the kernel may hold for us before `accept` (clamped to `net.core.somaxconn`):
/// a burst of connections must not fill the queue, or a probe's SYN is dropped and it waits a
/// second for the retransmission.
pub const BACKLOG: u32 = 4096;

/// Binds `addr` (with `SO_REUSEADDR`, as `TcpListener::bind` does) and listens with [`BACKLOG`].
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Accepts connections on `listener` until `shutdown` completes. Never refuses one: at the cap,
/// the oldest idle connection makes room.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let _keeper = AbortOnDrop(tokio::spawn(health::keep(
        app.health.clone(),
        app.handle.clone(),
    )));
    let conns = Conns::new(app.limits.max_connections);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let (admission, _evicted) = conns.admit();
                tokio::spawn(serve_connection(stream, app.clone(), admission));
            }
            Err(e) if out_of_descriptors(&e) => {
                // The pending connection stays in the backlog. Close the oldest idle one and
                // accept again once its task has let go of its socket; with none to close,
                // back off briefly rather than spin on the engine's thread.
                let closed = conns.closed.notified();
                if conns.evict_oldest_idle() {
                    let _ = tokio::time::timeout(Duration::from_millis(100), closed).await;
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            // ECONNABORTED and the like: that client is gone; next.
            Err(_) => {}
        }
    }
}

fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

async fn serve_connection(stream: TcpStream, app: Arc<App>, admission: Admission) {
    let _ = stream.set_nodelay(true);
    let limits = app.limits.clone();
    let conn_state = admission.conn.clone();
    let service = service_fn(move |req| {
        let app = app.clone();
        let busy = conn_state.busy();
        async move {
            let response = respond(&app, req).await;
            drop(busy);
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(16 * 1024))
        // A client may shut down its write side once the request is sent: still answer it.
        .half_close(true)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        // Chosen to make room for a newer connection while idle: dropping it closes the socket.
        _ = admission.conn.evicted.notified() => {}
        _ = tokio::time::sleep(limits.connection_lifetime) => {
            // Finish the request in flight (bounded), then close.
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(limits.header_timeout, conn).await;
        }
    }
    drop(admission);
}

/// The expensive endpoints are full: come back in a second.
fn busy(what: &str) -> Response<Body> {
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("too many requests to {what} in progress; retry in a second (/healthz and /readyz are never limited)"),
    );
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// The response to one request. Never fails: every error is a response.
async fn respond(app: &App, req: Request<Incoming>) -> Response<Body> {
    let route = match req.uri().path() {
        "/" => Route::Index,
        "/metrics" => Route::Metrics,
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        "/api/programs" => Route::Programs,
        "/api/events" => Route::Events,
        other => {
            return error(
                StatusCode::NOT_FOUND,
                format!(
                    "no such endpoint: {other}; endpoints: {}",
                    ENDPOINTS.join(", ")
                ),
            );
        }
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is read-only: use GET", req.uri().path()),
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    // A GET carries no body; one that does is not something this server reads.
    if !req.body().is_end_stream() {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request bodies are not accepted".to_string(),
        );
    }
    let query = req.uri().query().unwrap_or("");
    let path = req.uri().path();
    match route {
        Route::Index => index(),
        Route::Healthz => health::healthz(app).await,
        Route::Readyz => health::readyz(app).await,
        Route::Metrics => admitted(app, path, scrape(app)).await,
        Route::Programs => admitted(app, path, programs(app)).await,
        Route::Events => admitted(app, path, events(app, query)).await,
    }
}

/// Runs an expensive request if there is room for it, else answers 503 with `Retry-After`.
async fn admitted(
    app: &App,
    path: &str,
    answer: impl Future<Output = Response<Body>>,
) -> Response<Body> {
    let Ok(_admitted) = app.expensive.clone().try_acquire_owned() else {
        return busy(path);
    };
    answer.await
}

enum Route {
    Index,
    Metrics,
    Healthz,
    Readyz,
    Programs,
    Events,
}

pub(crate) fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Body::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(crate) fn json(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            response(status, "application/json", body)
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not serialize the response: {e}"),
        ),
    }
}

pub(crate) fn error(status: StatusCode, message: String) -> Response<Body> {
    #[derive(Serialize)]
    struct Error {
        error: String,
    }
    let body = serde_json::to_vec(&Error { error: message }).unwrap_or_default();
    response(status, "application/json", body)
}

fn index() -> Response<Body> {
    let mut text = format!("supervisor {}\n\n", env!("CARGO_PKG_VERSION"));
    for e in ENDPOINTS {
        text.push_str(e);
        text.push('\n');
    }
    text.push_str("\n/api/events takes ?program=NAME&since=SEQ&limit=N\n");
    response(StatusCode::OK, "text/plain; charset=utf-8", text)
}

async fn scrape(app: &App) -> Response<Body> {
    let Ok(_turn) = app.scrapes.clone().acquire_owned().await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the metrics registry is closed".to_string(),
        );
    };
    let m = app.metrics.clone();
    match tokio::task::spawn_blocking(move || m.render()).await {
        Ok(Ok(text)) => response(StatusCode::OK, metrics::CONTENT_TYPE, text),
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("rendering metrics failed: {e}"),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("rendering metrics failed: {e}"),
        ),
    }
}

async fn programs(app: &App) -> Response<Body> {
    match app.handle.status(app.limits.engine_timeout).await {
        Ok(programs) => json(StatusCode::OK, &programs),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// The parameters of `/api/events`.
#[derive(Debug, Default, PartialEq, Eq)]
struct EventsQuery {
    program: Option<String>,
    since: Option<u64>,
    limit: usize,
}

fn parse_events_query(query: &str) -> Result<EventsQuery, String> {
    let mut q = EventsQuery {
        limit: DEFAULT_EVENTS_LIMIT,
        ..EventsQuery::default()
    };
    for (key, value) in parse_query(query)? {
        match key.as_str() {
            "program" => q.program = Some(value).filter(|v| !v.is_empty()),
            "since" => {
                q.since = Some(value.parse().map_err(|_| {
                    format!("since={value}: expected an event sequence number (seq)")
                })?);
            }
            "limit" => {
                let n: usize = value
                    .parse()
                    .map_err(|_| format!("limit={value}: expected a number of events"))?;
                q.limit = n.min(MAX_EVENTS_LIMIT);
            }
            other => {
                return Err(format!(
                    "unknown parameter `{other}`: /api/events takes program, since and limit"
                ))
            }
        }
    }
    Ok(q)
}

async fn events(app: &App, query: &str) -> Response<Body> {
    let q = match parse_events_query(query) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let history = app.handle.history.clone();
    // Copying and serializing up to MAX_EVENTS_LIMIT events takes milliseconds: not on the
    // engine's thread.
    let body = tokio::task::spawn_blocking(move || {
        let events = history.query(q.program.as_deref(), q.since, q.limit);
        serde_json::to_vec(&events)
    })
    .await;
    match body {
        Ok(Ok(mut body)) => {
            body.push(b'\n');
            response(StatusCode::OK, "application/json", body)
        }
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not serialize events: {e}"),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading the history failed: {e}"),
        ),
    }
}

/// `a=1&b=x%20y` → [("a","1"), ("b","x y")].
pub(crate) fn parse_query(query: &str) -> Result<Vec<(String, String)>, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent-encoding in `{s}`"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("`{s}` is not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests;
