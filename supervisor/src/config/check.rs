//! Readiness and health checks as written in a config: `started`, `tcp:HOST:PORT`,
//! `http://HOST:PORT/PATH`, `exec:COMMAND ARGS`, `log:REGEX`, `notify`.

use std::time::Duration;

use serde::Serialize;

/// How to tell that a program is ready (or healthy).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "target")]
pub enum Check {
    /// supervisord's rule: up for `startsecs` (readiness only).
    Started,
    /// A TCP connection to `host:port` is accepted.
    Tcp(String),
    /// `GET url` answers 2xx (plain HTTP).
    Http(String),
    /// The command exits 0.
    Exec(Vec<String>),
    /// A line of the program's output matches the regex.
    Log(#[serde(serialize_with = "ser_regex")] regex::Regex),
    /// The program writes a line to the fd named in `$SUPERVISOR_READY_FD`.
    Notify,
}

fn ser_regex<S: serde::Serializer>(r: &regex::Regex, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.as_str())
}

impl PartialEq for Check {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Check::Log(a), Check::Log(b)) => a.as_str() == b.as_str(),
            (Check::Started, Check::Started) | (Check::Notify, Check::Notify) => true,
            (Check::Tcp(a), Check::Tcp(b)) | (Check::Http(a), Check::Http(b)) => a == b,
            (Check::Exec(a), Check::Exec(b)) => a == b,
            _ => false,
        }
    }
}

const FORMS: &str =
    "started, tcp:HOST:PORT, http://HOST:PORT/PATH, exec:COMMAND, log:REGEX or notify";

impl Check {
    /// Parses a check as written in the config.
    pub fn parse(s: &str, for_health: bool) -> Result<Check, String> {
        let s = s.trim();
        let check = if s == "started" {
            Check::Started
        } else if s == "notify" {
            Check::Notify
        } else if let Some(addr) = s.strip_prefix("tcp:") {
            match addr.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Check::Tcp(addr.to_string())
                }
                _ => {
                    return Err(format!(
                        "{s:?}: expected tcp:HOST:PORT, e.g. tcp:127.0.0.1:3306"
                    ))
                }
            }
        } else if let Some(rest) = s.strip_prefix("http://") {
            if rest.is_empty() || rest.starts_with('/') {
                return Err(format!("{s:?}: expected http://HOST:PORT/PATH"));
            }
            Check::Http(s.to_string())
        } else if s.starts_with("https://") {
            return Err(format!(
                "{s:?}: https is not supported; check the plain-HTTP port on loopback"
            ));
        } else if let Some(cmd) = s.strip_prefix("exec:") {
            let argv = super::expand::split_command(cmd)?;
            if argv.is_empty() {
                return Err(format!(
                    "{s:?}: exec: needs a command, e.g. exec:mysqladmin ping"
                ));
            }
            Check::Exec(argv)
        } else if let Some(re) = s.strip_prefix("log:") {
            Check::Log(regex::Regex::new(re).map_err(|e| format!("{s:?}: not a valid regex: {e}"))?)
        } else {
            return Err(format!("{s:?} is not a check; use {FORMS}"));
        };
        if for_health && matches!(check, Check::Started | Check::Notify | Check::Log(_)) {
            return Err(format!(
                "{s:?} cannot be a health check; use tcp:, http:// or exec:"
            ));
        }
        Ok(check)
    }
}

impl std::fmt::Display for Check {
    /// The check as written in the config.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Check::Started => f.write_str("started"),
            Check::Tcp(a) => write!(f, "tcp:{a}"),
            Check::Http(u) => f.write_str(u),
            Check::Exec(argv) => write!(f, "exec:{}", argv.join(" ")),
            Check::Log(re) => write!(f, "log:{}", re.as_str()),
            Check::Notify => f.write_str("notify"),
        }
    }
}

/// Defaults of the check settings.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(10);
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
pub const HEALTH_RETRIES: u32 = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_rejects_the_rest() {
        assert_eq!(
            Check::parse("tcp:127.0.0.1:3306", false).unwrap(),
            Check::Tcp("127.0.0.1:3306".into())
        );
        assert_eq!(
            Check::parse("http://127.0.0.1:80/health", true).unwrap(),
            Check::Http("http://127.0.0.1:80/health".into())
        );
        assert_eq!(
            Check::parse("exec:mysqladmin ping", true).unwrap(),
            Check::Exec(vec!["mysqladmin".into(), "ping".into()])
        );
        assert!(matches!(
            Check::parse("log:ready for connections", false).unwrap(),
            Check::Log(_)
        ));
        assert_eq!(Check::parse("notify", false).unwrap(), Check::Notify);
        assert_eq!(Check::parse("started", false).unwrap(), Check::Started);
        for bad in [
            "tcp:3306",
            "tcp:host:99999",
            "http://",
            "https://x/",
            "exec:",
            "log:(",
            "ping",
        ] {
            assert!(Check::parse(bad, false).is_err(), "{bad}");
        }
        assert!(
            Check::parse("notify", true).is_err(),
            "notify is not a health check"
        );
    }
}
