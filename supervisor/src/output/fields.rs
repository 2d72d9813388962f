//! Extra fields on every JSON log line (`--log-field KEY=VALUE`), e.g. the pod and namespace a
//! Kubernetes Downward API passes in, so that lines from many containers can be told apart.
//!
//! The fields are rendered once, at start, into the JSON fragment `,"pod":"web-7d9","ns":"prod"`
//! that the event log and the forwarded program lines append; they cost nothing per line beyond
//! copying those bytes. Text lines (supervisord's format) do not carry them.

use thiserror::Error;

/// Keys our own lines already use (events and forwarded program lines): a field may not shadow
/// them, or a JSON reader would see two values for one key.
const RESERVED: &[&str] = &[
    "ts",
    "level",
    "event",
    "seq",
    "program",
    "group",
    "pid",
    "msg",
    "state",
    "from_state",
    "exit_code",
    "signal",
    "core_dumped",
    "expected",
    "cause",
    "uptime_s",
    "restarts",
    "error",
    "stream",
    "line",
    "partial",
];

/// The longest key or value accepted (a pod name is at most 253 bytes).
const MAX_LEN: usize = 1024;

/// A `--log-field` that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FieldError {
    #[error("--log-field {0:?}: expected KEY=VALUE, e.g. --log-field pod=$(POD_NAME)")]
    NoEquals(String),
    #[error(
        "--log-field {0:?}: the key must be 1 to 64 letters, digits, '_', '-' or '.', starting with a letter"
    )]
    BadKey(String),
    #[error("--log-field {0:?}: {1:?} is one of the supervisor's own keys; choose another name (e.g. k8s_{1})")]
    Reserved(String, String),
    #[error("--log-field {0:?}: the key is given twice")]
    Duplicate(String),
    #[error("--log-field {0:?}: the value is longer than {MAX_LEN} bytes")]
    TooLong(String),
}

/// The extra fields, rendered as a JSON fragment (empty when there are none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogFields {
    json: Vec<u8>,
}

impl LogFields {
    /// No extra fields.
    pub const EMPTY: LogFields = LogFields { json: Vec::new() };

    /// Parses `KEY=VALUE` arguments, in order.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<LogFields, FieldError> {
        let mut json = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for arg in args {
            let arg = arg.as_ref();
            let (key, value) = arg
                .split_once('=')
                .ok_or_else(|| FieldError::NoEquals(arg.to_string()))?;
            if !valid_key(key) {
                return Err(FieldError::BadKey(arg.to_string()));
            }
            if RESERVED.contains(&key) || key.starts_with("sender_") {
                return Err(FieldError::Reserved(arg.to_string(), key.to_string()));
            }
            if seen.contains(&key) {
                return Err(FieldError::Duplicate(arg.to_string()));
            }
            if value.len() > MAX_LEN {
                return Err(FieldError::TooLong(arg.to_string()));
            }
            seen.push(key);
            json.push(b',');
            // Writing into a Vec cannot fail, and a &str always serializes.
            let _ = serde_json::to_writer(&mut json, key);
            json.push(b':');
            let _ = serde_json::to_writer(&mut json, value);
        }
        Ok(LogFields { json })
    }

    /// `,"k":"v",...`: what goes before the closing `}` of a JSON line.
    pub fn json(&self) -> &[u8] {
        &self.json
    }

    pub fn is_empty(&self) -> bool {
        self.json.is_empty()
    }
}

fn valid_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic())
        && key.len() <= 64
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Appends `fields` to the JSON object that `line` ends with (`...}` becomes `...,"k":"v"}`).
pub(super) fn append(line: &mut Vec<u8>, fields: &LogFields) {
    if fields.is_empty() || line.last() != Some(&b'}') {
        return;
    }
    line.pop();
    line.extend_from_slice(fields.json());
    line.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders_in_order() {
        let f = LogFields::parse(&["pod=web-7d9", "namespace=prod", "empty="]).unwrap();
        assert_eq!(
            String::from_utf8(f.json().to_vec()).unwrap(),
            r#","pod":"web-7d9","namespace":"prod","empty":"""#
        );
        let mut line = br#"{"ts":"x","msg":"hi"}"#.to_vec();
        append(&mut line, &f);
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["pod"], "web-7d9");
        assert_eq!(v["msg"], "hi");
    }

    #[test]
    fn values_are_escaped() {
        let f = LogFields::parse(&["note=a \"quoted\"\n=value"]).unwrap();
        let mut line2 = br#"{"a":1}"#.to_vec();
        append(&mut line2, &f);
        let v: serde_json::Value = serde_json::from_slice(&line2).unwrap();
        assert_eq!(v["note"], "a \"quoted\"\n=value");
    }

    #[test]
    fn refuses_what_would_confuse_a_reader() {
        let table: &[(&str, FieldError)] = &[
            ("pod", FieldError::NoEquals("pod".into())),
            ("=x", FieldError::BadKey("=x".into())),
            ("1pod=x", FieldError::BadKey("1pod=x".into())),
            ("po d=x", FieldError::BadKey("po d=x".into())),
            ("msg=x", FieldError::Reserved("msg=x".into(), "msg".into())),
            (
                "sender_pid=1",
                FieldError::Reserved("sender_pid=1".into(), "sender_pid".into()),
            ),
        ];
        for (arg, want) in table {
            assert_eq!(LogFields::parse(&[*arg]).unwrap_err(), *want, "{arg}");
        }
        assert_eq!(
            LogFields::parse(&["a=1", "a=2"]).unwrap_err(),
            FieldError::Duplicate("a=2".into())
        );
        let long = format!("a={}", "x".repeat(MAX_LEN + 1));
        assert!(matches!(
            LogFields::parse(&[long]).unwrap_err(),
            FieldError::TooLong(_)
        ));
    }
}
