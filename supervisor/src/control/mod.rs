//! The control socket: `supervisor status|start|stop|restart|signal|tail|events|reload|shutdown`
//! talk to the running supervisor here, HTTP/1.1 with JSON bodies over a Unix socket.
//!
//! Safety comes first, since this is the one door that changes things:
//! - The socket is created with mode 0600 before it listens (no window where others could
//!   connect), and each peer's credentials are checked too: only root and the supervisor's own
//!   user get an answer.
//! - The request vocabulary ([`api`]) is program names, signal names, numbers and flags; nothing
//!   names a command, a file or a config path.
//! - Requests are bounded in size (head and body) and time (header and body timeouts); a
//!   malformed one gets a 4xx with the reason. Connections are capped. None of it touches the
//!   engine except through its [`EngineHandle`], with timeouts, so a hostile or broken client
//!   never delays supervision.
//! - A stale socket file (nobody answers) is replaced; a live one (another supervisor answers)
//!   is left alone and this supervisor runs without a control socket, saying so once. The
//!   socket is removed on exit.
//! - Remote control over TCP ([`remote`]) is off unless `control_addr` is set, and then every
//!   request must carry the bearer token (compared in constant time) before anything else is
//!   looked at. Same API, same server code, same limits, its own connection cap.

pub mod api;
pub mod ops;
pub mod remote;

use std::convert::Infallible;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Either, Limited};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::engine::handle::EngineHandle;
use crate::event::{Event, Kind, Level};
use crate::http::{error, json};
use crate::output::Output;
use api::Op;
use remote::Token;

/// What the control server allows a client.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once (followers of `tail -f` / `events -f` included).
    pub max_connections: usize,
    /// Time to send a request head, also while a kept-alive connection idles.
    pub header_timeout: Duration,
    /// Time to send a request body once the head is in.
    pub body_timeout: Duration,
    /// The largest request head.
    pub max_header_bytes: usize,
    /// How long to wait for the engine to answer a question.
    pub engine_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 32,
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
            max_header_bytes: 8 * 1024,
            engine_timeout: Duration::from_secs(5),
        }
    }
}

/// What request handlers can use.
pub struct Server {
    handle: EngineHandle,
    output: Output,
    limits: Limits,
}

impl Server {
    pub fn new(handle: EngineHandle, output: Output, limits: Limits) -> Arc<Server> {
        Arc::new(Server {
            handle,
            output,
            limits,
        })
    }
}

/// Removes the socket file when dropped, if it is still the one this process created.
pub struct SocketGuard {
    path: PathBuf,
    ino: (u64, u64),
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Creates the control socket at `path` and serves it in a background task. Every outcome is
/// one event; failing never stops supervision.
pub async fn start(path: &Path, server: Arc<Server>) -> Option<SocketGuard> {
    let bus = server.handle.bus.clone();
    match listen(path) {
        Ok((listener, guard)) => {
            bus.emit(Event::new(
                Level::Info,
                Kind::Notice,
                format!(
                    "control socket listening on {} (mode 0600; `supervisor status` talks to it)",
                    path.display()
                ),
            ));
            tokio::spawn(serve(listener, server, std::future::pending()));
            Some(guard)
        }
        Err(msg) => {
            bus.emit(Event::new(
                Level::Error,
                Kind::Notice,
                format!("{msg}; supervising without a control socket (choose another path with --socket PATH, SUPERVISOR_SOCKET or `socket` in the config)"),
            ));
            None
        }
    }
}

/// Replaces a stale socket file, then binds, restricts and listens, in that order.
fn listen(path: &Path) -> Result<(UnixListener, SocketGuard), String> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let shown = path.display();
    if let Ok(m) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !m.file_type().is_socket() {
            return Err(format!(
                "cannot create the control socket {shown}: a file that is not a socket is in the way (not removing it)"
            ));
        }
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(format!(
                    "cannot create the control socket {shown}: another supervisor is answering on it"
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(|e| {
                    format!("cannot remove the stale control socket {shown}: {e}")
                })?;
            }
            Err(e) => {
                return Err(format!(
                    "cannot create the control socket {shown}: an existing socket there could not be checked ({e})"
                ))
            }
        }
    }
    let fail = |what: &str, e: rustix::io::Errno| {
        format!(
            "cannot create the control socket {shown}: {what}: {}",
            std::io::Error::from(e)
        )
    };
    let addr = SocketAddrUnix::new(path).map_err(|e| fail("path too long", e))?;
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .map_err(|e| fail("socket()", e))?;
    rustix::net::bind(&fd, &addr).map_err(|e| fail("bind()", e))?;
    // Restricted before listen(): until then every connect() is refused.
    let restricted = rustix::fs::chmod(path, rustix::fs::Mode::from_raw_mode(0o600))
        .map_err(|e| fail("chmod 0600", e))
        .and_then(|_| rustix::net::listen(&fd, 64).map_err(|e| fail("listen()", e)))
        .and_then(|_| {
            std::fs::symlink_metadata(path).map_err(|e| format!("cannot stat {shown}: {e}"))
        });
    let meta = match restricted {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
    };
    let guard = SocketGuard {
        path: path.to_path_buf(),
        ino: (meta.dev(), meta.ino()),
    };
    let std_listener = std::os::unix::net::UnixListener::from(fd);
    let listener = UnixListener::from_std(std_listener)
        .map_err(|e| format!("cannot watch the control socket {shown}: {e}"))?;
    Ok((listener, guard))
}

/// Accepts connections on the control socket until `shutdown` completes.
pub async fn serve(
    listener: UnixListener,
    server: Arc<Server>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    accept_loop(listener, server, None, shutdown).await
}

/// What the accept loop needs of a listener: the socket, or remote control's TCP listener.
trait Listener {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<Self::Stream>>;
    /// Whether to serve this peer at all.
    fn allowed(stream: &Self::Stream) -> bool;
    /// A best-effort write that never waits (the 503 for one connection too many).
    fn try_write(stream: &Self::Stream, bytes: &[u8]);
}

impl Listener for UnixListener {
    type Stream = UnixStream;
    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<UnixStream>> {
        self.poll_accept(cx).map_ok(|(s, _)| s)
    }
    fn allowed(stream: &UnixStream) -> bool {
        peer_allowed(stream)
    }
    fn try_write(stream: &UnixStream, bytes: &[u8]) {
        let _ = stream.try_write(bytes);
    }
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<TcpStream>> {
        self.poll_accept(cx).map_ok(|(s, _)| s)
    }
    /// Anyone may connect; the token decides (per request, before anything else).
    fn allowed(stream: &TcpStream) -> bool {
        let _ = stream.set_nodelay(true);
        true
    }
    fn try_write(stream: &TcpStream, bytes: &[u8]) {
        let _ = stream.try_write(bytes);
    }
}

/// Accepts connections until `shutdown` completes, at most `max_connections` served at once;
/// with a `token`, every request must carry it.
async fn accept_loop<L: Listener>(
    listener: L,
    server: Arc<Server>,
    token: Option<Arc<Token>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(server.limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            r = std::future::poll_fn(|cx| listener.poll_next(cx)) => r,
        };
        match accepted {
            Ok(stream) => {
                if !L::allowed(&stream) {
                    continue;
                }
                match slots.clone().try_acquire_owned() {
                    Ok(permit) => {
                        tokio::spawn(serve_connection(
                            stream,
                            server.clone(),
                            token.clone(),
                            permit,
                        ));
                    }
                    Err(_) => {
                        const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
                        L::try_write(&stream, BUSY);
                    }
                }
            }
            Err(e) => {
                use std::io::ErrorKind::*;
                if !matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted) {
                    // Out of descriptors: back off rather than spin on the engine's thread.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Root and the supervisor's own user only (the 0600 mode says the same; this holds even if
/// the mode was changed or the socket was passed on).
fn peer_allowed(stream: &UnixStream) -> bool {
    let me = rustix::process::geteuid().as_raw();
    stream
        .peer_cred()
        .is_ok_and(|c| c.uid() == 0 || c.uid() == me)
}

/// A response body: whole, or streamed (`tail -f`, `events`) from a task until it ends.
pub type Body = Either<crate::http::Body, Live>;

/// A body fed chunk by chunk through a bounded channel; the producer stops when it is dropped.
pub struct Live(mpsc::Receiver<Bytes>);

impl hyper::body::Body for Live {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    server: Arc<Server>,
    token: Option<Arc<Token>>,
    _permit: OwnedSemaphorePermit,
) {
    let limits = server.limits.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let server = server.clone();
        let token = token.clone();
        async move {
            let via = match &token {
                // Before anything else: no body read, nothing decoded, nothing asked of the engine.
                Some(t) if !t.admits(req.headers()) => return Ok(remote::unauthorized()),
                Some(_) => Via::Remote,
                None => Via::Socket,
            };
            Ok::<_, Infallible>(respond(&server, req, via).await)
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
    let _ = builder
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

fn whole(r: Response<crate::http::Body>) -> Response<Body> {
    r.map(Either::Left)
}

fn reject(status: u16, reason: String) -> Response<Body> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    whole(error(code, reason))
}

/// Where a request came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Socket,
    Remote,
}

/// The response to one request. Never fails: every error is a response.
async fn respond(server: &Server, req: Request<Incoming>, via: Via) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match tokio::time::timeout(
        server.limits.body_timeout,
        Limited::new(body, api::MAX_BODY).collect(),
    )
    .await
    {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => {
            let too_big = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            return if too_big {
                reject(413, format!("request body over {} bytes", api::MAX_BODY))
            } else {
                reject(400, format!("could not read the request body: {e}"))
            };
        }
        Err(_) => return reject(408, "the request body did not arrive in time".into()),
    };
    let op = match api::decode(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query(),
        &body,
    ) {
        Ok(op) => op,
        Err(r) => return reject(r.status, r.reason),
    };
    execute(server, op, via).await
}

async fn execute(server: &Server, op: Op, via: Via) -> Response<Body> {
    let handle = &server.handle;
    let engine_timeout = server.limits.engine_timeout;
    match op {
        Op::Ping => {
            #[derive(Serialize)]
            struct Pong {
                version: &'static str,
                pid: u32,
            }
            whole(json(
                StatusCode::OK,
                &Pong {
                    version: env!("CARGO_PKG_VERSION"),
                    pid: std::process::id(),
                },
            ))
        }
        Op::Status { names } => match handle.status(engine_timeout).await {
            Ok(all) => {
                if names.is_empty() {
                    return whole(json(StatusCode::OK, &all));
                }
                match ops::resolve(&all, &names) {
                    Ok(found) => whole(json(StatusCode::OK, &found)),
                    Err(e) => reject(404, e),
                }
            }
            Err(e) => reject(503, e.to_string()),
        },
        Op::Action {
            action,
            names,
            wait,
            timeout,
        } => match ops::action(handle, engine_timeout, action, &names, wait, timeout).await {
            Ok(outcomes) => whole(json(StatusCode::OK, &outcomes)),
            Err((status, e)) => reject(status, e),
        },
        Op::Signal { signo, names } => {
            let all = match handle.status(engine_timeout).await {
                Ok(all) => all,
                Err(e) => return reject(503, e.to_string()),
            };
            let found: Vec<String> = match ops::resolve(&all, &names) {
                Ok(f) => f.into_iter().map(|p| p.name.clone()).collect(),
                Err(e) => return reject(404, e),
            };
            match handle.signal(signo, names).await {
                Ok(sent) => {
                    let outcomes: Vec<api::Outcome> = found
                        .into_iter()
                        .map(|name| {
                            let ok = sent.contains(&name);
                            api::Outcome {
                                name,
                                ok,
                                state: None,
                                msg: if ok {
                                    "signalled".into()
                                } else {
                                    "ERROR (not running)".into()
                                },
                            }
                        })
                        .collect();
                    whole(json(StatusCode::OK, &outcomes))
                }
                Err(e) => reject(409, e),
            }
        }
        Op::Tail {
            name,
            stream,
            bytes,
            follow,
        } => {
            let all = match handle.status(engine_timeout).await {
                Ok(all) => all,
                Err(e) => return reject(503, e.to_string()),
            };
            // One program, named exactly (or GROUP:NAME).
            let program = match ops::resolve(&all, std::slice::from_ref(&name)) {
                Ok(found) if found.len() == 1 => found[0].name.clone(),
                Ok(_) => {
                    return reject(
                        400,
                        format!("tail takes one program; `{name}` names several"),
                    )
                }
                Err(e) => return reject(404, e),
            };
            let (first, live) = if follow {
                server.output.follow(&program, stream, bytes)
            } else {
                server
                    .output
                    .tail(&program, stream, bytes)
                    .unwrap_or_else(|| (Vec::new(), tokio::sync::broadcast::channel(1).1))
            };
            stream_response("text/plain; charset=utf-8", |tx| {
                ops::tail(first, live, follow, tx)
            })
        }
        Op::Events {
            program,
            limit,
            follow,
        } => {
            let h = handle.clone();
            stream_response("application/x-ndjson", move |tx| {
                ops::events(h, program, limit, follow, tx)
            })
        }
        Op::Reload => match handle.reload().await {
            Ok(summary) => whole(json(StatusCode::OK, &summary)),
            Err(e) => reject(409, e),
        },
        Op::Shutdown => match handle
            .shutdown(match via {
                Via::Socket => "requested over the control socket",
                Via::Remote => "requested over remote control (TCP, with the token)",
            })
            .await
        {
            Ok(()) => whole(json(
                StatusCode::OK,
                &serde_json::json!({"shutting_down": true}),
            )),
            Err(e) => reject(503, e.to_string()),
        },
    }
}

/// A streamed 200 response whose chunks `produce` sends; it runs as its own task and ends when
/// it is done or the client goes away.
fn stream_response<F, Fut>(content_type: &'static str, produce: F) -> Response<Body>
where
    F: FnOnce(mpsc::Sender<Bytes>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(produce(tx));
    let mut r = Response::new(Either::Right(Live(rx)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    r
}
