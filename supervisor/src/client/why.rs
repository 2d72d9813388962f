//! `supervisor why NAME`: the last deaths of a program, newest first, one paragraph each —
//! when, how long it had run, how it died, who sent what from where, and what the supervisor
//! did next; and, one line each, the processes of its tree that a signal killed. Built from
//! the lifecycle events (which carry the eBPF probe's findings).

use serde_json::Value;

/// The events that end a process (a program's, or one of its tree's when that was not
/// routine: debug-level ones are the program's own or the supervisor's doing).
fn is_death(e: &Value) -> bool {
    match e["event"].as_str() {
        Some("exited" | "stopped" | "spawn_failed") => true,
        Some("descendant_killed") => e["level"] != "debug",
        _ => false,
    }
}

/// The deaths among `events` (oldest first, as the API gives them), newest first, at most
/// `last`, each with the event that followed it for the same program.
pub fn deaths(events: &[Value], last: usize) -> Vec<(Value, Option<Value>)> {
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate().rev() {
        if out.len() == last {
            break;
        }
        if !is_death(e) {
            continue;
        }
        let next = events[i + 1..]
            .iter()
            .find(|n| {
                matches!(
                    n["event"].as_str(),
                    Some("spawned" | "fatal" | "spawn_failed" | "waiting")
                )
            })
            .cloned();
        out.push((e.clone(), next));
    }
    out
}

/// One readable paragraph for a death.
pub fn paragraph(death: &Value, next: Option<&Value>) -> String {
    let name = death["program"].as_str().unwrap_or("?");
    let when = death["ts"]
        .as_str()
        .unwrap_or("?")
        .replacen('T', " ", 1)
        .trim_end_matches('Z')
        .to_string();
    let pid = death["pid"]
        .as_u64()
        .map_or(String::new(), |p| format!(" (pid {p})"));
    if death["event"] == "descendant_killed" {
        // "2026-11-25 10:00:00.000: in mysqld, its child mariadbd (pid 52) was killed by ..."
        let what = death["msg"]
            .as_str()
            .and_then(|m| m.strip_prefix("descendant: "))
            .map_or_else(
                || format!("in {name}, a descendant was killed by a signal"),
                String::from,
            );
        return format!("{when}: {what}.");
    }
    let mut s = format!("{when}: {name}{pid}");
    if death["event"] == "spawn_failed" {
        s.push_str(&format!(
            " could not be started: {}.",
            death["error"].as_str().unwrap_or("unknown error")
        ));
    } else {
        if let Some(up) = death["uptime_s"].as_f64() {
            s.push_str(&format!(" ran for {}", duration(up)));
        }
        let how = match (death["exit_code"].as_i64(), death["signal"].as_str()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) if death["core_dumped"] == true => {
                format!("was killed by {sig} (core dumped)")
            }
            (None, Some(sig)) => format!("was killed by {sig}"),
            _ => "ended".to_string(),
        };
        s.push_str(&format!(" and {how}"));
        match death["expected"].as_bool() {
            Some(true) => s.push_str(" (expected)."),
            Some(false) => s.push_str(" (not expected)."),
            None => s.push('.'),
        }
        let signals = death["killed_by"].as_array().cloned().unwrap_or_default();
        let reason = signals
            .iter()
            .rev()
            .find_map(|k| k["reason"].as_str())
            .map_or(String::new(), |r| format!(": {r}"));
        let descendant = signals
            .iter()
            .rev()
            .find(|k| k["target"].is_string())
            .map(|k| {
                format!(
                    "{} was killed by {}",
                    k["target"].as_str().unwrap_or("a descendant"),
                    k["text"].as_str().unwrap_or("a signal")
                )
            });
        let origin = match death["origin"].as_str() {
            Some("signal_from_process") => "A process signalled it.".to_string(),
            Some("signal_from_kernel") => format!("The kernel signalled it{reason}."),
            Some("oom_killed") => {
                "The kernel's OOM killer chose it: it ran out of memory.".to_string()
            }
            Some("stopped_by_supervisor") => "The supervisor stopped it.".to_string(),
            Some("exited") if signals.is_empty() => {
                "No signal was involved: it exited on its own.".to_string()
            }
            Some("exited") => "It exited on its own: no signal it received ended it.".to_string(),
            Some("descendant_killed") => {
                let mut d = descendant
                    .unwrap_or_else(|| "A process it forked was killed by a signal".into());
                d[..1].make_ascii_uppercase();
                format!("{d}, just before it exited: the likely cause.")
            }
            _ => String::new(),
        };
        if !origin.is_empty() {
            s.push(' ');
            s.push_str(&origin);
        }
        if death["cause"] == "unhealthy" {
            s.push_str(" It was restarted because its health check kept failing.");
        }
        match death["killed_by"].as_array() {
            Some(signals) if signals.iter().any(|k| !k["target"].is_string()) => {
                s.push_str(" Signals it received:");
                for k in signals.iter().filter(|k| !k["target"].is_string()) {
                    let before = k["before_exit_s"]
                        .as_f64()
                        .filter(|b| *b >= 0.05)
                        .map_or(String::new(), |b| format!(", {b:.1} s before it ended"));
                    s.push_str(&format!(
                        " {} [{}, {}{before}];",
                        k["text"].as_str().unwrap_or("?"),
                        k["code"].as_str().unwrap_or("?"),
                        k["result"].as_str().unwrap_or("?")
                    ));
                }
                s.pop();
                s.push('.');
            }
            Some(_) => {}
            _ if death["signal"].is_string() && death.get("killed_by").is_none() => {
                s.push_str(" Who sent the signal is unknown: the eBPF probe was not loaded (grant CAP_BPF and CAP_PERFMON: docker run --cap-add BPF --cap-add PERFMON).");
            }
            _ => {}
        }
    }
    let then = match next {
        Some(n) if n["event"] == "spawned" => format!(
            " Then the supervisor started it again as pid {}{}.",
            n["pid"].as_u64().unwrap_or(0),
            n["restarts"]
                .as_u64()
                .map_or(String::new(), |r| format!(" (restart {r})"))
        ),
        Some(n) if n["event"] == "fatal" => {
            " Then the supervisor gave up: FATAL (too many failed starts).".to_string()
        }
        Some(n) if n["event"] == "waiting" => " Then it waited for its dependencies.".to_string(),
        Some(_) => String::new(),
        None => match death["state"].as_str() {
            Some("BACKOFF") => format!(
                " The supervisor will retry in {} s.",
                death["retry_in_s"]
                    .as_f64()
                    .map_or("a few".to_string(), |r| r.to_string())
            ),
            Some(state) => format!(" It stayed {state}."),
            None => String::new(),
        },
    };
    s.push_str(&then);
    s
}

fn duration(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else if secs < 3600.0 {
        format!("{}m{:02}s", (secs / 60.0) as u64, (secs % 60.0) as u64)
    } else {
        format!(
            "{}h{:02}m",
            (secs / 3600.0) as u64,
            ((secs % 3600.0) / 60.0) as u64
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paragraph_names_the_sender_and_what_happened_next() {
        let events = vec![
            json!({"event":"spawned","program":"apache2","pid":835,"ts":"2026-11-25T10:00:00.000Z"}),
            json!({"event":"exited","program":"apache2","pid":835,"ts":"2026-11-25T10:03:02.000Z","uptime_s":182.0,
                   "exit_code":0,"expected":true,"origin":"signal_from_process","state":"EXITED",
                   "killed_by":[{"text":"SIGTERM from pid 842 'kill' (uid 0), run by 'sh' (pid 840), inside the container","code":"SI_USER","result":"delivered"}]}),
            json!({"event":"spawned","program":"apache2","pid":850,"restarts":1,"ts":"2026-11-25T10:03:02.001Z"}),
        ];
        let d = deaths(&events, 5);
        assert_eq!(d.len(), 1);
        let p = paragraph(&d[0].0, d[0].1.as_ref());
        assert_eq!(
            p,
            "2026-11-25 10:03:02.000: apache2 (pid 835) ran for 3m02s and exited with status 0 (expected). \
             A process signalled it. Signals it received: SIGTERM from pid 842 'kill' (uid 0), run by 'sh' \
             (pid 840), inside the container [SI_USER, delivered]. Then the supervisor started it again as pid 850 (restart 1)."
        );
    }

    #[test]
    fn a_wrappers_exit_names_its_killed_child_and_the_child_gets_a_line() {
        let k = json!({"signal":"SIGKILL","code":"SI_USER","result":"delivered","target":"its child mariadbd (pid 52)",
                       "text":"SIGKILL from 'kill' (uid 0), run by 'bash', outside the container"});
        let events = vec![
            json!({"event":"descendant_killed","level":"info","program":"mysqld","pid":52,"ts":"2026-11-25T10:00:00.000Z",
                   "msg":"descendant: in mysqld, its child mariadbd (pid 52) was killed by SIGKILL from 'kill' (uid 0), run by 'bash', outside the container",
                   "killed_by":[k.clone()]}),
            json!({"event":"descendant_killed","level":"debug","program":"mysqld","pid":53,"ts":"2026-11-25T10:00:00.001Z",
                   "msg":"descendant: in mysqld, its child x (pid 53) was killed by SIGTERM from pid 40 'mysqld_safe'"}),
            json!({"event":"exited","program":"mysqld","pid":40,"ts":"2026-11-25T10:00:00.010Z","uptime_s":5.0,
                   "exit_code":137,"expected":false,"origin":"descendant_killed","state":"EXITED","killed_by":[k]}),
        ];
        let d = deaths(&events, 5);
        assert_eq!(d.len(), 2, "the routine (debug) death is left out");
        assert_eq!(
            paragraph(&d[0].0, d[0].1.as_ref()),
            "2026-11-25 10:00:00.010: mysqld (pid 40) ran for 5.0 s and exited with status 137 (not expected). \
             Its child mariadbd (pid 52) was killed by SIGKILL from 'kill' (uid 0), run by 'bash', outside the \
             container, just before it exited: the likely cause. It stayed EXITED."
        );
        assert_eq!(
            paragraph(&d[1].0, d[1].1.as_ref()),
            "2026-11-25 10:00:00.000: in mysqld, its child mariadbd (pid 52) was killed by SIGKILL from 'kill' \
             (uid 0), run by 'bash', outside the container."
        );
    }

    #[test]
    fn without_the_probe_it_says_what_is_missing() {
        let e = json!({"event":"exited","program":"w","pid":3,"ts":"2026-11-25T10:00:00.000Z","uptime_s":1.0,
                       "signal":"SIGKILL","expected":false,"origin":"signal_from_process","state":"EXITED"});
        assert!(paragraph(&e, None).contains("the eBPF probe was not loaded"));
    }
}
