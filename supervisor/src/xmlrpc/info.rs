//! supervisord's shapes for what the engine reports: the process info struct (with its
//! `description`, formatted exactly as supervisord's `_interpretProcessInfo`), the config info
//! struct of `avail`, state codes, and the offset/length rules of its log reading.

use std::time::{SystemTime, UNIX_EPOCH};

use super::value::Value;
use crate::engine::handle::ProgramStatus;
use crate::event::State;

/// supervisord's `ProcessStates` codes.
pub fn state_code(s: State) -> i64 {
    match s {
        State::Stopped => 0,
        State::Starting => 10,
        State::Running => 20,
        State::Backoff => 30,
        State::Stopping => 40,
        State::Exited => 100,
        State::Fatal => 200,
    }
}

/// The group supervisord shows: the program's own name when it has no group.
pub fn group_of(p: &ProgramStatus) -> &str {
    p.group.as_deref().unwrap_or(&p.name)
}

/// `GROUP:NAME`, or `NAME` when both are the same (supervisorctl's `make_namespec`).
pub fn namespec(p: &ProgramStatus) -> String {
    let g = group_of(p);
    if g == p.name {
        p.name.clone()
    } else {
        format!("{g}:{}", p.name)
    }
}

fn secs(t: Option<SystemTime>) -> i64 {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// What supervisord says a FATAL or BACKOFF process died of, when no spawn error is known.
pub const EXITED_TOO_QUICKLY: &str = "Exited too quickly (process log may have details)";

/// `getProcessInfo`'s struct. `spawnerr` is the spawn error the engine last reported, if any.
pub fn process_info(p: &ProgramStatus, spawnerr: Option<&str>, now: SystemTime) -> Value {
    let start = secs(p.start_time);
    let stop = secs(p.last_exit.as_ref().map(|e| e.at));
    let now_s = secs(Some(now));
    let spawnerr = match p.state {
        State::Fatal | State::Backoff => spawnerr.unwrap_or(EXITED_TOO_QUICKLY).to_string(),
        _ => String::new(),
    };
    let exitstatus = p.last_exit.as_ref().and_then(|e| e.exit_code).unwrap_or(0);
    let pid = p.pid.unwrap_or(0);
    let description = describe(p.state, &p.name, pid, start, stop, now_s, &spawnerr);
    Value::Struct(vec![
        ("name".into(), Value::str(&p.name)),
        ("group".into(), Value::str(group_of(p))),
        ("start".into(), Value::Int(start)),
        ("stop".into(), Value::Int(stop)),
        ("now".into(), Value::Int(now_s)),
        ("state".into(), Value::Int(state_code(p.state))),
        ("statename".into(), Value::str(p.state.as_str())),
        ("spawnerr".into(), Value::Str(spawnerr)),
        ("exitstatus".into(), Value::Int(i64::from(exitstatus))),
        // The engine's log routing is not part of its status: supervisord's "" for "none".
        ("logfile".into(), Value::str("")),
        ("stdout_logfile".into(), Value::str("")),
        ("stderr_logfile".into(), Value::str("")),
        ("pid".into(), Value::Int(i64::from(pid))),
        ("description".into(), Value::Str(description)),
    ])
}

/// supervisord's `_interpretProcessInfo`.
pub fn describe(
    state: State,
    name: &str,
    pid: u32,
    start: i64,
    stop: i64,
    now: i64,
    spawnerr: &str,
) -> String {
    match state {
        State::Running => format!(
            "pid {pid}, uptime {}",
            timedelta(now.saturating_sub(start).max(0))
        ),
        State::Fatal | State::Backoff if spawnerr.is_empty() => {
            format!("unknown error (try \"tail {name}\")")
        }
        State::Fatal | State::Backoff => spawnerr.to_string(),
        State::Stopped | State::Exited if start != 0 => clock(stop),
        State::Stopped | State::Exited => "Not started".to_string(),
        State::Starting | State::Stopping => String::new(),
    }
}

/// Python's `str(timedelta(seconds=s))`: `H:MM:SS`, or `N day(s), H:MM:SS`.
pub fn timedelta(s: i64) -> String {
    let (days, rest) = (s / 86_400, s % 86_400);
    let hms = format!("{}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60);
    match days {
        0 => hms,
        1 => format!("1 day, {hms}"),
        d => format!("{d} days, {hms}"),
    }
}

/// `strftime('%b %d %I:%M %p')` of a Unix time, in UTC (the container's usual local time).
pub fn clock(t: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = t.div_euclid(86_400);
    let sod = t.rem_euclid(86_400);
    let (_, month, day) = civil_from_days(days);
    let (h, m) = (sod / 3600, sod % 3600 / 60);
    let h12 = match h % 12 {
        0 => 12,
        x => x,
    };
    let ampm = if h < 12 { "AM" } else { "PM" };
    let mon = MONTHS[usize::try_from(month - 1).unwrap_or(0).min(11)];
    format!("{mon} {day:02} {h12:02}:{m:02} {ampm}")
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `getAllConfigInfo`'s struct, from what the engine knows of a program.
pub fn config_info(p: &ProgramStatus) -> Value {
    Value::Struct(vec![
        ("name".into(), Value::str(&p.name)),
        ("group".into(), Value::str(group_of(p))),
        ("inuse".into(), Value::Bool(true)),
        ("autostart".into(), Value::Bool(p.autostart)),
        ("group_prio".into(), Value::Int(i64::from(p.priority))),
        ("process_prio".into(), Value::Int(i64::from(p.priority))),
    ])
}

/// supervisord's `readFile(offset, length)` over `data` (the bytes kept): a negative offset reads
/// the last `-offset` bytes (length must be 0); otherwise `length` bytes from `offset` (0: to
/// the end). `None` is BAD_ARGUMENTS.
pub fn read_range(data: &[u8], offset: i64, length: i64) -> Option<&[u8]> {
    let size = data.len();
    let clamp = |n: u64| usize::try_from(n).unwrap_or(usize::MAX).min(size);
    if offset < 0 {
        if length != 0 {
            return None;
        }
        let from = size.saturating_sub(clamp(offset.unsigned_abs()));
        return Some(&data[from..]);
    }
    if length < 0 {
        return None;
    }
    let from = clamp(offset.unsigned_abs());
    let to = if length == 0 {
        size
    } else {
        from.saturating_add(clamp(length.unsigned_abs())).min(size)
    };
    Some(&data[from..to])
}

/// supervisord's `tailFile(offset, length)` over `data`: (bytes, new offset, overflow).
pub fn tail_range(data: &[u8], offset: i64, length: i64) -> (&[u8], i64, bool) {
    let sz = i64::try_from(data.len()).unwrap_or(i64::MAX);
    let mut offset = offset;
    let mut length = length;
    let mut overflow = false;
    if sz > offset.saturating_add(length) {
        overflow = true;
        offset = sz - 1;
    }
    if offset.saturating_add(length) > sz {
        if offset > sz - 1 {
            length = 0;
        }
        offset = sz - length;
    }
    let offset = offset.max(0);
    let length = length.max(0);
    let from = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(data.len());
    let to = from
        .saturating_add(usize::try_from(length).unwrap_or(usize::MAX))
        .min(data.len());
    (&data[from..to], sz, overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_as_supervisord_writes_them() {
        assert_eq!(
            describe(State::Running, "a", 7, 100, 0, 162, ""),
            "pid 7, uptime 0:01:02"
        );
        assert_eq!(
            describe(State::Running, "a", 7, 0, 0, 90_061, ""),
            "pid 7, uptime 1 day, 1:01:01"
        );
        assert_eq!(
            describe(State::Running, "a", 7, 0, 0, 3 * 86_400, ""),
            "pid 7, uptime 3 days, 0:00:00"
        );
        assert_eq!(
            describe(State::Running, "a", 7, 200, 0, 100, ""),
            "pid 7, uptime 0:00:00"
        );
        assert_eq!(
            describe(State::Stopped, "a", 0, 0, 0, 100, ""),
            "Not started"
        );
        assert_eq!(
            describe(State::Fatal, "a", 0, 1, 2, 3, ""),
            "unknown error (try \"tail a\")"
        );
        assert_eq!(
            describe(State::Backoff, "a", 0, 1, 2, 3, EXITED_TOO_QUICKLY),
            EXITED_TOO_QUICKLY
        );
        assert_eq!(describe(State::Starting, "a", 3, 1, 2, 3, ""), "");
        // 2026-12-02 14:05:00 UTC
        assert_eq!(
            describe(State::Exited, "a", 0, 1, 1_796_220_300, 3, ""),
            "Dec 02 02:05 PM"
        );
        assert_eq!(clock(0), "Jan 01 12:00 AM");
        assert_eq!(clock(951_782_400 + 12 * 3600), "Feb 29 12:00 PM");
    }

    #[test]
    fn read_range_is_supervisords_read_file() {
        let d = b"0123456789";
        assert_eq!(read_range(d, -3, 0), Some(&b"789"[..]));
        assert_eq!(read_range(d, -30, 0), Some(&d[..]));
        assert_eq!(read_range(d, -3, 1), None);
        assert_eq!(read_range(d, 2, 3), Some(&b"234"[..]));
        assert_eq!(read_range(d, 2, 0), Some(&b"23456789"[..]));
        assert_eq!(read_range(d, 20, 0), Some(&b""[..]));
        assert_eq!(read_range(d, 2, -1), None);
        assert_eq!(read_range(d, 0, i64::MAX), Some(&d[..]));
    }

    #[test]
    fn tail_range_is_supervisords_tail_file() {
        let d = b"0123456789";
        // supervisorctl-style polling: first ask for the tail, then from the offset returned.
        assert_eq!(tail_range(d, 0, 4), (&b"6789"[..], 10, true));
        assert_eq!(tail_range(d, 10, 4), (&b""[..], 10, false));
        assert_eq!(tail_range(d, 8, 4), (&b"6789"[..], 10, false));
        assert_eq!(tail_range(d, 0, 100), (&d[..], 10, false));
        assert_eq!(tail_range(b"", 0, 100), (&b""[..], 0, false));
        assert_eq!(tail_range(d, i64::MAX, i64::MAX), (&b""[..], 10, false));
    }
}
