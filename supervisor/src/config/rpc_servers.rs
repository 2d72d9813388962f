//! `[unix_http_server]` and `[inet_http_server]`: where supervisord's XML-RPC (`/RPC2`, what the
//! stock `supervisorctl` talks to) is served, and with which credentials.
//!
//! Read as supervisord reads them: `file` (with `%(here)s`), `chmod` (octal, default 0700),
//! `chown` (`user[:group]`), `port` (`HOST:PORT`, `:PORT` or `PORT`), `username`, `password`.
//! A TCP server without a username is not started (anyone who can reach the port could stop
//! every program): the notice says so and what to set.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::Serialize;

use super::expand::{self, invalid, Names, Text};
use super::{ConfigError, Location};

/// Both servers; `None` when the section is absent.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct RpcServers {
    pub unix: Option<UnixServer>,
    pub inet: Option<InetServer>,
}

/// `[unix_http_server]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnixServer {
    /// `file`: the socket path.
    pub file: PathBuf,
    /// `chmod`: the socket's mode, set before it listens.
    pub chmod: u32,
    /// `chown`: uid and gid to give the socket (`None`: unchanged).
    pub chown: Option<(u32, Option<u32>)>,
    /// `username`/`password`: Basic auth, when set.
    pub auth: Option<Credentials>,
    pub at: Location,
}

/// `[inet_http_server]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InetServer {
    /// `port`: where it listens.
    pub addr: SocketAddr,
    /// `username`/`password`: Basic auth (required to start it).
    pub auth: Option<Credentials>,
    pub at: Location,
}

/// A username and password for HTTP Basic auth. Never printed.
#[derive(Clone, PartialEq, Serialize)]
pub struct Credentials {
    pub username: String,
    #[serde(skip)]
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({:?}, <password>)", self.username)
    }
}

/// The keys of both sections.
pub const KEYS: &[&str] = &["file", "chmod", "chown", "port", "username", "password"];

/// One `key = value` of a section, as the INI reader found it.
pub struct Entry<'a> {
    pub key: &'a str,
    pub value: &'a str,
    pub at: &'a Location,
}

/// Reads `[unix_http_server]` (`inet` false) or `[inet_http_server]` from its entries; notices
/// (unknown keys, a TCP server left off) go to `notice`.
pub fn section(
    inet: bool,
    at: &Location,
    entries: &[Entry<'_>],
    names: &Names,
    notice: &mut dyn FnMut(String),
    servers: &mut RpcServers,
) -> Result<(), ConfigError> {
    let section = if inet {
        "inet_http_server"
    } else {
        "unix_http_server"
    };
    let mut file = None;
    let mut chmod = 0o700;
    let mut chown = None;
    let mut port = None;
    let mut username = None;
    let mut password = None;
    for e in entries {
        let fail = |m: String| invalid(e.at, e.key, m);
        match (e.key, inet) {
            ("file", false) => {
                let v = expand::expand(&Text::new(e.value, e.key, e.at), names)?;
                let v = v.trim();
                if v.is_empty() {
                    return Err(fail("the socket path is empty; give a path like /run/supervisor.sock".into()));
                }
                file = Some(PathBuf::from(v));
            }
            ("chmod", false) => {
                chmod = expand::parse_octal(e.value.trim())
                    .map_err(|m| fail(format!("{m} (an octal mode like 0700 or 0770)")))?;
                if chmod > 0o7777 {
                    return Err(fail(format!("{:?} is not a file mode; use an octal mode like 0700", e.value)));
                }
            }
            ("chown", false) => chown = Some(parse_chown(e.value.trim()).map_err(fail)?),
            ("port", true) => port = Some(parse_port(e.value.trim()).map_err(fail)?),
            ("username", _) => username = Some(e.value.to_string()),
            ("password", _) => password = Some(e.value.to_string()),
            (key, _) => notice(format!(
                "notice: {key} (in {}) is not a setting of [{section}] and is ignored, as supervisord ignores it",
                e.at
            )),
        }
    }
    let auth = match (username, password) {
        (Some(u), p) => {
            let p = p.unwrap_or_default();
            if p.starts_with("{SHA}") {
                return Err(invalid(
                    at,
                    "password",
                    "a {SHA} password hash is not supported here; write the password itself (and keep the file mode 0600)",
                ));
            }
            Some(Credentials {
                username: u,
                password: p,
            })
        }
        (None, Some(_)) => {
            return Err(invalid(
                at,
                "password",
                "a password without a username; set username= too",
            ))
        }
        (None, None) => None,
    };
    if inet {
        let Some(addr) = port else {
            return Err(invalid(
                at,
                &format!("[{section}]"),
                "the section has no port; set port=127.0.0.1:9001 (or remove the section)",
            ));
        };
        if auth.is_none() {
            notice(format!(
                "notice: [inet_http_server] (in {at}) is not started: it has no username, and anyone who can reach {addr} could control every program; set username= and password="
            ));
            return Ok(());
        }
        notice(format!(
            "notice: [inet_http_server] (in {at}) serves supervisord's XML-RPC on {addr} (Basic auth)"
        ));
        servers.inet = Some(InetServer {
            addr,
            auth,
            at: at.clone(),
        });
    } else {
        let Some(file) = file else {
            return Err(invalid(
                at,
                &format!("[{section}]"),
                "the section has no file; set file=/run/supervisor.sock (or remove the section)",
            ));
        };
        notice(format!(
            "notice: [unix_http_server] (in {at}) serves supervisord's XML-RPC on {} (mode {chmod:04o}; supervisorctl talks to it)",
            file.display()
        ));
        servers.unix = Some(UnixServer {
            file,
            chmod,
            chown,
            auth,
            at: at.clone(),
        });
    }
    Ok(())
}

/// `port`: `HOST:PORT`, `:PORT`, `*:PORT` or `PORT` (no host: every interface, as supervisord).
fn parse_port(s: &str) -> Result<SocketAddr, String> {
    let bad =
        || format!("{s:?} is not allowed; use HOST:PORT like 127.0.0.1:9001, or a port number");
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, p),
        None => ("", s),
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = match host {
        "" | "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h.parse().map_err(|_| bad())?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// `chown`: `user` or `user:group`, as names or numbers.
fn parse_chown(s: &str) -> Result<(u32, Option<u32>), String> {
    let (user, group) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let uid = match user.parse::<u32>() {
        Ok(n) => n,
        Err(_) => nix::unistd::User::from_name(user)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
            .ok_or_else(|| {
                format!("no user {user:?} on this system; use an existing user name or a uid")
            })?,
    };
    let gid = match group {
        None => None,
        Some(g) => Some(match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => nix::unistd::Group::from_name(g)
                .ok()
                .flatten()
                .map(|g| g.gid.as_raw())
                .ok_or_else(|| {
                    format!("no group {g:?} on this system; use an existing group name or a gid")
                })?,
        }),
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_as_supervisord_reads_them() {
        assert_eq!(
            parse_port("127.0.0.1:9001").unwrap(),
            "127.0.0.1:9001".parse().unwrap()
        );
        assert_eq!(
            parse_port(":9001").unwrap(),
            "0.0.0.0:9001".parse().unwrap()
        );
        assert_eq!(
            parse_port("*:9001").unwrap(),
            "0.0.0.0:9001".parse().unwrap()
        );
        assert_eq!(parse_port("9001").unwrap(), "0.0.0.0:9001".parse().unwrap());
        assert_eq!(
            parse_port("[::1]:9001").unwrap(),
            "[::1]:9001".parse().unwrap()
        );
        assert!(parse_port("host:x").is_err());
        assert!(parse_port("127.0.0.1:70000").is_err());
    }

    #[test]
    fn chown_by_number_and_name() {
        assert_eq!(parse_chown("0:0").unwrap(), (0, Some(0)));
        assert_eq!(parse_chown("root").unwrap(), (0, None));
        assert!(parse_chown("no-such-user-here").is_err());
    }
}
