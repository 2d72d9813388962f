//! `--log-field KEY=VALUE` through the real binary as PID 1: the fields a Kubernetes Downward
//! API passes in are on every JSON line, the supervisor's events and the programs' lines alike.

use std::time::Duration;

use e2e::*;
use serde_json::Value;

#[test]
fn every_json_line_carries_the_log_fields() {
    let dir = TempDir::new("log-fields");
    let conf = dir.write(
        "s.conf",
        "[program:web]\ncommand=sh -c 'echo hello from web; exec sleep 1000'\nstartsecs=0\n",
    );
    let conf = conf.to_str().unwrap();
    let mut sup = Sup::start(
        Mode::Pid1,
        dir.path(),
        &[
            "run",
            "-c",
            conf,
            "--metrics-addr",
            "off",
            "--log-field",
            "pod=web-7d9f-x2",
            "--log-field",
            "namespace=prod \"eu\"",
        ],
    );
    sup.wait_event("web RUNNING", Duration::from_secs(10), |e| {
        is(e, "running", "web")
    });
    // The program's own line is forwarded as JSON with the fields too.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let line = loop {
        let found = sup
            .log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["line"] == "hello from web");
        if let Some(v) = found {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the program's line never reached the log:\n{}",
            sup.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(line["pod"], "web-7d9f-x2", "{line}");
    assert_eq!(line["namespace"], "prod \"eu\"", "{line}");
    assert_eq!(line["program"], "web");

    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(Duration::from_secs(15)), 0);
    let text = sup.log_text();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 4, "{text}");
    for v in &lines {
        assert_eq!(v["pod"], "web-7d9f-x2", "a line without the field: {v}");
        assert_eq!(v["namespace"], "prod \"eu\"", "{v}");
    }
    // The fields come after the supervisor's own keys, which keep their meaning.
    let spawned = lines
        .iter()
        .find(|v| kind(v) == "spawned")
        .expect("spawned");
    assert!(msg(spawned).starts_with("spawned: 'web' with pid "));
}

#[test]
fn a_log_field_that_would_shadow_our_keys_is_refused_with_the_fix() {
    let (code, _out, err) = run_cli(&[
        "run",
        "--metrics-addr",
        "off",
        "--log-field",
        "msg=x",
        "--",
        "true",
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("--log-field \"msg=x\"") && err.contains("choose another name"),
        "{err}"
    );
    let (code, _out, err) = run_cli(&["run", "--log-field", "pod", "--", "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("expected KEY=VALUE"), "{err}");
}
