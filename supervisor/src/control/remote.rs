//! Remote control over TCP: the same `/v1` API as the control socket, off unless `control_addr`
//! (or `--control-addr`) is set, and then only with a bearer token.
//!
//! - The token is read once at start from `control_token_file`; a missing, unreadable or empty
//!   file stops the start (nothing is supervised with a door that cannot be locked).
//! - Every request must carry `Authorization: Bearer <token>`. It is checked first, in constant
//!   time, before the body is read or anything is decoded; without it the answer is 401 with
//!   `WWW-Authenticate: Bearer` and the connection is closed. Nothing else happens: no event, no
//!   engine request.
//! - The listener shares the socket's server code, size and time limits; it has its own
//!   connection cap, so a flood of remote connections cannot lock out local `supervisor status`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONNECTION, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};
use tokio::net::TcpListener;

use super::{accept_loop, whole, Body, Server};
use crate::config::Settings;
use crate::event::{Event, Kind, Level};

/// The bearer token remote control requires.
pub struct Token {
    secret: Vec<u8>,
    /// The file it was read from, for messages.
    path: PathBuf,
    /// A warning to log once (e.g. the file is readable by others).
    warning: Option<String>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        write!(f, "Token(from {})", self.path.display())
    }
}

/// Tokens shorter than this are accepted with a warning.
const SHORT_TOKEN: usize = 16;
/// The largest token file read.
const MAX_TOKEN_BYTES: u64 = 4096;

impl Token {
    /// Reads the token from `path`: its content with surrounding whitespace (a final newline)
    /// removed. Errors say what is wrong with which file and what to do.
    pub fn read(path: &Path) -> Result<Token, String> {
        use std::io::Read;
        let shown = path.display();
        let file = std::fs::File::open(path)
            .map_err(|e| format!("cannot read the control token file {shown}: {e}"))?;
        let mut raw = Vec::new();
        file.take(MAX_TOKEN_BYTES + 1)
            .read_to_end(&mut raw)
            .map_err(|e| format!("cannot read the control token file {shown}: {e}"))?;
        if raw.len() as u64 > MAX_TOKEN_BYTES {
            return Err(format!(
                "the control token file {shown} is over {MAX_TOKEN_BYTES} bytes; it should hold one token, e.g. made with `head -c 32 /dev/urandom | base64 > {shown}`"
            ));
        }
        let secret = raw.trim_ascii().to_vec();
        if secret.is_empty() {
            return Err(format!(
                "the control token file {shown} is empty; put a token in it, e.g. `head -c 32 /dev/urandom | base64 > {shown}; chmod 600 {shown}`"
            ));
        }
        if !secret.iter().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "the control token in {shown} has spaces or characters that cannot be sent in an HTTP header; use printable ASCII, e.g. base64"
            ));
        }
        let mut warnings = Vec::new();
        if secret.len() < SHORT_TOKEN {
            warnings.push(format!(
                "is only {} characters long (use at least {SHORT_TOKEN}, e.g. `head -c 32 /dev/urandom | base64`)",
                secret.len()
            ));
        }
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = std::fs::metadata(path) {
                if m.permissions().mode() & 0o077 != 0 {
                    warnings.push(format!(
                        "is readable by other users (mode {:o}; `chmod 600 {shown}`)",
                        m.permissions().mode() & 0o777
                    ));
                }
            }
        }
        let warning = (!warnings.is_empty())
            .then(|| format!("the control token file {shown} {}", warnings.join(" and ")));
        Ok(Token {
            secret,
            path: path.to_path_buf(),
            warning,
        })
    }

    /// The token as text (it is printable ASCII), for the client's header.
    pub fn secret_str(&self) -> &str {
        std::str::from_utf8(&self.secret).unwrap_or_default()
    }

    /// Whether a request with these headers carries the token: exactly one `Authorization`
    /// header, scheme `Bearer` (any case), then the token, compared in constant time.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return false;
        };
        let value = value.as_bytes();
        let Some((scheme, rest)) = value.split_at_checked(7) else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(b"bearer ") {
            return false;
        }
        constant_time_eq(rest.trim_ascii(), &self.secret)
    }
}

/// Equal slices, in a time that depends only on their lengths: no early exit on the first
/// differing byte, so response times do not tell how much of a guess was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The answer to a request without the right token.
pub(super) fn unauthorized() -> Response<Body> {
    let mut r = whole(crate::http::error(
        StatusCode::UNAUTHORIZED,
        "remote control needs `Authorization: Bearer <token>` with the token from the supervisor's control_token_file".into(),
    ));
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"supervisor\""),
    );
    r.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Remote control as resolved at start: where, and the token.
#[derive(Debug)]
pub struct Remote {
    pub addr: SocketAddr,
    pub token: Token,
}

/// Resolves remote control from the command line (`--control-addr ADDR|off`,
/// `--control-token-file PATH`) over the config file, and reads the token. `Ok(None)`: off.
/// An error is a start-up error: what and where.
pub fn resolve(
    flag_addr: Option<&str>,
    flag_token_file: Option<&Path>,
    settings: &Settings,
) -> Result<Option<Remote>, String> {
    let addr = match flag_addr {
        Some(s) => {
            crate::config::parse_control_addr(s).map_err(|e| format!("--control-addr {e}"))?
        }
        None => settings.control_addr,
    };
    let Some(addr) = addr else {
        return Ok(None);
    };
    let (path, from) = match (flag_token_file, &settings.control_token_file) {
        (Some(p), _) => (p, "--control-token-file"),
        (None, Some(p)) => (p.as_path(), "control_token_file in the config"),
        (None, None) => {
            return Err(format!(
            "--control-addr {addr}: remote control needs a token: give the file holding it with \
                 --control-token-file PATH (or control_token_file in the config)"
        ))
        }
    };
    let token = Token::read(path).map_err(|e| format!("{e} (from {from})"))?;
    Ok(Some(Remote { addr, token }))
}

/// Listens on `remote.addr` and serves the control API there in a background task; one notice
/// says where. Failing to listen is one error event; supervision goes on.
pub async fn start(remote: Remote, server: Arc<Server>) -> Option<SocketAddr> {
    let bus = server.handle.bus.clone();
    let Remote { addr, token } = remote;
    if let Some(w) = &token.warning {
        bus.emit(Event::new(Level::Warn, Kind::Notice, w.clone()));
    }
    match TcpListener::bind(addr).await {
        Ok(listener) => {
            let local = listener.local_addr().unwrap_or(addr);
            bus.emit(Event::new(
                Level::Info,
                Kind::Notice,
                format!(
                    "remote control listening on http://{local} (token required: `Authorization: Bearer` with the token from {}; `supervisor status --url http://{local} --token-file FILE`)",
                    token.path.display()
                ),
            ));
            tokio::spawn(accept_loop(
                listener,
                server,
                Some(Arc::new(token)),
                std::future::pending(),
            ));
            Some(local)
        }
        Err(e) => {
            bus.emit(Event::new(
                Level::Error,
                Kind::Notice,
                format!(
                    "cannot listen on {addr} for remote control: {e}; supervising without it \
                     (the control socket still works; choose another address with --control-addr or control_addr)"
                ),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(s: &str) -> Token {
        Token {
            secret: s.as_bytes().to_vec(),
            path: "/t".into(),
            warning: None,
        }
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_the_exact_token_is_admitted() {
        let t = token("s3cret-token-0123456789");
        assert!(t.admits(&headers(&["Bearer s3cret-token-0123456789"])));
        assert!(t.admits(&headers(&["bearer s3cret-token-0123456789"])));
        for bad in [
            &[][..],
            &["Bearer s3cret-token-012345678"],
            &["Bearer s3cret-token-01234567890"],
            &["Bearer s3cret-token-0123456788"],
            &["Bearer S3cret-token-0123456789"],
            &["Basic s3cret-token-0123456789"],
            &["Bearer"],
            &["Bearer "],
            &["s3cret-token-0123456789"],
            &[
                "Bearer s3cret-token-0123456789",
                "Bearer s3cret-token-0123456789",
            ],
        ] {
            assert!(!t.admits(&headers(bad)), "{bad:?}");
        }
    }

    #[test]
    fn constant_time_eq_compares_whole_slices() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"xbc", b"abc"));
    }

    #[test]
    fn token_files_are_checked() {
        let dir = std::env::temp_dir().join(format!("sup-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            p
        };
        let good = write("good", "  abcdefghijklmnopqrstuvwxyz0123456789\n");
        let t = Token::read(&good).unwrap();
        assert_eq!(t.secret, b"abcdefghijklmnopqrstuvwxyz0123456789");
        assert!(t.warning.is_none());
        let short = write("short", "abc\n");
        assert!(Token::read(&short)
            .unwrap()
            .warning
            .unwrap()
            .contains("only 3"));
        let empty = write("empty", " \n");
        let e = Token::read(&empty).unwrap_err();
        assert!(
            e.contains("empty") && e.contains(&empty.display().to_string()),
            "{e}"
        );
        let spaced = write("spaced", "a b c d e f g h i j k\n");
        assert!(Token::read(&spaced).unwrap_err().contains("spaces"));
        let e = Token::read(&dir.join("missing")).unwrap_err();
        assert!(e.contains("cannot read") && e.contains("missing"), "{e}");

        let settings = Settings::default();
        assert!(resolve(None, None, &settings).unwrap().is_none());
        assert!(resolve(Some("off"), Some(&good), &settings)
            .unwrap()
            .is_none());
        let e = resolve(Some("127.0.0.1:1"), None, &settings).unwrap_err();
        assert!(e.contains("--control-token-file"), "{e}");
        let r = resolve(Some("127.0.0.1:1"), Some(&good), &settings)
            .unwrap()
            .unwrap();
        assert_eq!(r.addr.port(), 1);
        assert!(resolve(Some("nowhere"), Some(&good), &settings).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
