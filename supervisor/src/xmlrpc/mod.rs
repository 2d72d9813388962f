//! supervisord's XML-RPC interface, so the stock `supervisorctl` (and superlance, Ansible's
//! module, monitoring integrations) work unchanged: `POST /RPC2` and supervisorctl's
//! `GET /logtail/NAME[/stdout|/stderr]` (`tail -f`), on the `[unix_http_server]` socket and the
//! `[inet_http_server]` port of the config.
//!
//! A request source like the control socket, with the same limits (connections, head and body
//! size, timeouts): [`value`] parses the call, [`methods`] turns it into engine requests and
//! back into supervisord's structures ([`info`]). The unix socket gets the config's `chmod`
//! (default 0700) and `chown` before it listens; with a `username`, every request must carry
//! HTTP Basic credentials (compared in constant time) before its body is read.

pub mod info;
pub mod methods;
pub mod table;
pub mod value;

use std::convert::Infallible;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{header, HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, Semaphore};

use crate::config::rpc_servers::{Credentials, RpcServers};
use crate::control::{ops, remote::constant_time_eq, Limits};
use crate::engine::handle::EngineHandle;
use crate::event::{Event, Kind, Level};
use crate::output::{Output, Stream};
use methods::Rpc;

/// The largest request body (a `sendProcessStdin` or a `multicall` of many calls fits).
pub const MAX_BODY: usize = 256 << 10;

/// What `tail -f` shows first, as supervisord's `logtail` (its last 1024 bytes).
const TAIL_HEAD: usize = 1024;

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

/// Starts the configured servers in background tasks; every outcome is one event and failing
/// never stops supervision. The guard removes the unix socket when dropped.
pub async fn start(
    servers: &RpcServers,
    handle: EngineHandle,
    output: Output,
) -> Option<SocketGuard> {
    if servers.unix.is_none() && servers.inet.is_none() {
        return None;
    }
    let limits = Limits::default();
    let rpc = Rpc::new(handle.clone(), output, limits.engine_timeout);
    let bus = handle.bus.clone();
    let say = |level, msg: String| bus.emit(Event::new(level, Kind::Notice, msg));
    let mut guard = None;
    if let Some(u) = &servers.unix {
        match listen_unix(&u.file, u.chmod, u.chown) {
            Ok((listener, g)) => {
                say(
                    Level::Info,
                    format!(
                        "XML-RPC (supervisorctl) listening on {} (mode {:04o}{})",
                        u.file.display(),
                        u.chmod,
                        if u.auth.is_some() { ", Basic auth" } else { "" }
                    ),
                );
                guard = Some(g);
                tokio::spawn(accept_loop(UnixAccept(listener), rpc.clone(), u.auth.clone().map(Arc::new), limits.clone()));
            }
            Err(msg) => say(
                Level::Error,
                format!("{msg}; supervising without XML-RPC on it (set another file= in [unix_http_server] at {})", u.at),
            ),
        }
    }
    if let Some(i) = &servers.inet {
        match TcpListener::bind(i.addr).await {
            Ok(listener) => {
                say(Level::Info, format!("XML-RPC (supervisorctl) listening on {} (Basic auth)", i.addr));
                tokio::spawn(accept_loop(TcpAccept(listener), rpc, i.auth.clone().map(Arc::new), limits));
            }
            Err(e) => say(
                Level::Error,
                format!(
                    "cannot listen on {} for XML-RPC: {e}; supervising without it (set another port= in [inet_http_server] at {})",
                    i.addr, i.at
                ),
            ),
        }
    }
    guard
}

/// Replaces a stale socket file, then binds, sets mode and owner, and listens, in that order.
fn listen_unix(
    path: &Path,
    mode: u32,
    chown: Option<(u32, Option<u32>)>,
) -> Result<(UnixListener, SocketGuard), String> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let shown = path.display();
    if let Ok(m) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !m.file_type().is_socket() {
            return Err(format!("cannot create the XML-RPC socket {shown}: a file that is not a socket is in the way (not removing it)"));
        }
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(format!("cannot create the XML-RPC socket {shown}: another server is answering on it")),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(|e| format!("cannot remove the stale socket {shown}: {e}"))?;
            }
            Err(e) => return Err(format!("cannot create the XML-RPC socket {shown}: an existing socket there could not be checked ({e})")),
        }
    }
    let fail = |what: &str, e: rustix::io::Errno| {
        format!(
            "cannot create the XML-RPC socket {shown}: {what}: {}",
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
    // Mode and owner before listen(): until then every connect() is refused.
    let ready = rustix::fs::chmod(path, rustix::fs::Mode::from_raw_mode(mode))
        .map_err(|e| fail(&format!("chmod {mode:04o}"), e))
        .and_then(|_| match chown {
            Some((uid, gid)) => rustix::fs::chown(
                path,
                Some(rustix::fs::Uid::from_raw(uid)),
                gid.map(rustix::fs::Gid::from_raw),
            )
            .map_err(|e| fail("chown", e)),
            None => Ok(()),
        })
        .and_then(|_| rustix::net::listen(&fd, 64).map_err(|e| fail("listen()", e)))
        .and_then(|_| {
            std::fs::symlink_metadata(path).map_err(|e| format!("cannot stat {shown}: {e}"))
        });
    let meta = match ready {
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
    let listener = UnixListener::from_std(std::os::unix::net::UnixListener::from(fd))
        .map_err(|e| format!("cannot watch the XML-RPC socket {shown}: {e}"))?;
    Ok((listener, guard))
}

/// A listener of either kind.
trait Accept: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<Self::Stream>>;
}

struct UnixAccept(UnixListener);
struct TcpAccept(TcpListener);

impl Accept for UnixAccept {
    type Stream = tokio::net::UnixStream;
    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<Self::Stream>> {
        self.0.poll_accept(cx).map_ok(|(s, _)| s)
    }
}

impl Accept for TcpAccept {
    type Stream = tokio::net::TcpStream;
    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<Self::Stream>> {
        self.0.poll_accept(cx).map_ok(|(s, _)| {
            let _ = s.set_nodelay(true);
            s
        })
    }
}

async fn accept_loop<L: Accept>(
    listener: L,
    rpc: Arc<Rpc>,
    auth: Option<Arc<Credentials>>,
    limits: Limits,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        match std::future::poll_fn(|cx| listener.poll_next(cx)).await {
            Ok(stream) => match slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    let (rpc, auth, limits) = (rpc.clone(), auth.clone(), limits.clone());
                    tokio::spawn(async move {
                        serve_connection(stream, rpc, auth, limits).await;
                        drop(permit);
                    });
                }
                // One connection too many: closed at once (the client sees a reset).
                Err(_) => drop(stream),
            },
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

async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    rpc: Arc<Rpc>,
    auth: Option<Arc<Credentials>>,
    limits: Limits,
) {
    let body_timeout = limits.body_timeout;
    let service = service_fn(move |req: Request<Incoming>| {
        let (rpc, auth) = (rpc.clone(), auth.clone());
        async move {
            if let Some(c) = &auth {
                // Before anything else: no body read, nothing decoded, nothing asked of the engine.
                if !admits(req.headers(), c) {
                    let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
                    r.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        header::HeaderValue::from_static("Basic realm=\"default\""),
                    );
                    return Ok::<_, Infallible>(r);
                }
            }
            Ok(respond(&rpc, req, body_timeout).await)
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(16 * 1024))
        .half_close(true)
        .keep_alive(true);
    let _ = builder
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Whether the headers carry exactly these Basic credentials (compared in constant time).
pub fn admits(headers: &HeaderMap, c: &Credentials) -> bool {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let v = value.as_bytes();
    let Some((scheme, rest)) = v.split_at_checked(6) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return false;
    }
    let Some(given) = base64_decode(rest.trim_ascii()) else {
        return false;
    };
    let mut want = Vec::with_capacity(c.username.len() + 1 + c.password.len());
    want.extend_from_slice(c.username.as_bytes());
    want.push(b':');
    want.extend_from_slice(c.password.as_bytes());
    constant_time_eq(&given, &want)
}

/// Standard base64 (with or without padding); `None` if malformed.
fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    let s = s
        .strip_suffix(b"==")
        .or_else(|| s.strip_suffix(b"="))
        .unwrap_or(s);
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in s {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

/// A response body: whole, or streamed (`tail -f`) from a task until it ends.
type Body = Either<Full<Bytes>, Live>;

/// A body fed chunk by chunk through a bounded channel; the producer stops when it is dropped.
struct Live(mpsc::Receiver<Bytes>);

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

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(Either::Left(Full::new(Bytes::from(body.into()))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn xml(body: String) -> Response<Body> {
    let mut r = Response::new(Either::Left(Full::new(Bytes::from(body))));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/xml"),
    );
    r
}

/// The response to one request. Never fails: every error is a response.
async fn respond(rpc: &Rpc, req: Request<Incoming>, body_timeout: Duration) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    if parts.method == Method::GET {
        if let Some(rest) = path.strip_prefix("/logtail/") {
            return logtail(rpc, rest).await;
        }
        return text(
            StatusCode::NOT_FOUND,
            format!("{path}: not here (XML-RPC is POST /RPC2; tail -f is GET /logtail/NAME)\n"),
        );
    }
    if parts.method != Method::POST || path != "/RPC2" {
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "{} {path}: not here (XML-RPC is POST /RPC2)\n",
                parts.method
            ),
        );
    }
    let body =
        match tokio::time::timeout(body_timeout, Limited::new(body, MAX_BODY).collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(e))
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body over {MAX_BODY} bytes\n"),
                )
            }
            Ok(Err(e)) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("could not read the request body: {e}\n"),
                )
            }
            Err(_) => {
                return text(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body did not arrive in time\n",
                )
            }
        };
    let call = match value::parse_call(&body) {
        Ok(c) => c,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("not an XML-RPC call: {e}\n"),
            )
        }
    };
    xml(match rpc.call(&call.method, &call.params).await {
        Ok(v) => value::response(&v),
        Err(f) => value::fault(f.code, &f.text),
    })
}

/// `GET /logtail/NAME[/stdout|/stderr]`: the last 1024 bytes, then what the program writes,
/// until the client goes away.
async fn logtail(rpc: &Rpc, rest: &str) -> Response<Body> {
    let (name, stream) = match rest.rsplit_once('/') {
        Some((n, "stdout")) => (n, Stream::Stdout),
        Some((n, "stderr")) => (n, Stream::Stderr),
        _ => (rest, Stream::Stdout),
    };
    let name = percent_decode(name);
    let p = match rpc.one(&name).await {
        Ok(p) => p,
        Err(f) => return text(StatusCode::NOT_FOUND, format!("{}\n", f.text)),
    };
    let (first, live) = rpc.output_follow(&p.name, stream, TAIL_HEAD);
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(ops::tail(first, live, true, tx));
    let mut r = Response::new(Either::Right(Live(rx)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

/// `%XX` in a URL path segment (supervisorctl quotes names).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let hex = |c: u8| char::from(c).to_digit(16);
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_exactly() {
        let c = Credentials {
            username: "user".into(),
            password: "123".into(),
        };
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            h
        };
        assert!(admits(&with("Basic dXNlcjoxMjM="), &c));
        assert!(admits(&with("basic dXNlcjoxMjM"), &c));
        assert!(!admits(&with("Basic dXNlcjoxMjQ="), &c));
        assert!(!admits(&with("Bearer dXNlcjoxMjM="), &c));
        assert!(!admits(&with("Basic !!!"), &c));
        assert!(!admits(&HeaderMap::new(), &c));
        assert_eq!(base64_decode(b"YWJjZA==").unwrap(), b"abcd");
    }

    #[test]
    fn logtail_names_are_unquoted() {
        assert_eq!(percent_decode("web%3Aa"), "web:a");
        assert_eq!(percent_decode("a%"), "a%");
        assert_eq!(percent_decode("a%4"), "a%4");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
