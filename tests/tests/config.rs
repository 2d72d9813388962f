//! `supervisor check` on the inputs that must never reach PID 1: out-of-range durations and
//! counts, users that do not exist, unreadable files (symbolic link loops, bytes that are not
//! UTF-8, in the main file and in included ones), and the tolerance for keys supervisord ignores.
//! The real binary, run as a user runs it.

use std::os::unix::fs::symlink;

use e2e::{run_cli, TempDir};

/// `supervisor check -c FILE ARGS...` → (exit code, stdout, stderr).
fn check(conf: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["check", "-c", conf.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    run_cli(&all)
}

/// Asserts `check` fails (exit 2) and its stderr has every one of `parts`.
fn fails_with(conf: &std::path::Path, parts: &[&str]) {
    let (code, out, err) = check(conf, &[]);
    assert_eq!(
        code,
        2,
        "check must fail for {}:\n{out}\n{err}",
        conf.display()
    );
    for part in parts {
        assert!(err.contains(part), "{part:?} missing from:\n{err}");
    }
}

#[test]
fn huge_durations_and_counts_fail_check_with_file_line_and_range() {
    let dir = TempDir::new("cfg-range");
    let ini = dir.write(
        "a.conf",
        "[program:a]\ncommand=sleep 1\nstartsecs=9223372036854775807\n",
    );
    fails_with(
        &ini,
        &[
            &format!("{}:3: startsecs:", ini.display()),
            "from 0 to 31536000 (one year)",
        ],
    );
    let toml = dir.write(
        "a.toml",
        "[programs.a]\ncommand = \"sleep 1\"\nstartsecs = 1e19\n",
    );
    fails_with(
        &toml,
        &[
            &format!("{}:3: startsecs:", toml.display()),
            "1e19 is not allowed",
            "from 0 to 31536000 (one year)",
        ],
    );
    for (key, value) in [
        ("stopwaitsecs", "99999999999999999999"),
        ("startretries", "4294967296"),
        ("health_interval", "1e308"),
        ("ready_timeout", "inf"),
        ("stdout_logfile_backups", "1000001"),
    ] {
        let conf = dir.write(
            "k.conf",
            &format!("[program:a]\ncommand=sleep 1\n{key}={value}\n"),
        );
        fails_with(&conf, &[&format!("{}:3: {key}:", conf.display()), "from "]);
    }
}

#[test]
fn huge_durations_on_the_command_line_are_refused_not_a_panic() {
    let (code, _, err) = run_cli(&["run", "--shutdown-timeout", "1e300", "--", "true"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("at most 31536000"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let sock = TempDir::new("cfg-cli");
    let path = sock.path().join("none.sock");
    let (code, _, err) = run_cli(&[
        "stop",
        "--socket",
        path.to_str().expect("utf-8"),
        "--timeout",
        "1e300",
        "a",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("at most 3600"), "{err}");
}

#[test]
fn a_user_that_does_not_exist_fails_check() {
    let dir = TempDir::new("cfg-user");
    let conf = dir.write(
        "u.conf",
        "[program:a]\ncommand=sleep 1\n\nuser=nosuchuser\n",
    );
    fails_with(
        &conf,
        &[
            &format!("{}:4: user:", conf.display()),
            "invalid user name nosuchuser",
        ],
    );
    let conf = dir.write(
        "u.toml",
        "[programs.a]\ncommand = \"sleep 1\"\nuser = \"4000000000\"\n",
    );
    fails_with(
        &conf,
        &[
            &format!("{}:3: user:", conf.display()),
            "invalid user id 4000000000",
        ],
    );
    let ok = dir.write("ok.conf", "[program:a]\ncommand=sleep 1\nuser=nobody\n");
    let (code, out, err) = check(&ok, &[]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn symlink_loops_and_bad_utf8_name_the_file() {
    let dir = TempDir::new("cfg-read");
    let main_loop = dir.path().join("loop.conf");
    symlink(&main_loop, &main_loop).expect("symlink");
    fails_with(
        &main_loop,
        &[&main_loop.display().to_string(), "loop of symbolic links"],
    );

    let latin1 = dir.path().join("latin1.conf");
    std::fs::write(&latin1, b"[program:a]\ncommand=echo caf\xe9\n").expect("write");
    fails_with(
        &latin1,
        &[
            &format!("{}:2: encoding:", latin1.display()),
            "not valid UTF-8",
        ],
    );

    let main = dir.write(
        "main.conf",
        "[supervisord]\nnodaemon=true\n[include]\nfiles = conf.d/*.conf\n",
    );
    let included = dir.path().join("conf.d/bad.conf");
    std::fs::create_dir_all(included.parent().expect("parent")).expect("mkdir");
    std::fs::write(&included, b"[program:b]\n\ncommand=echo \xff\xfe\n").expect("write");
    fails_with(
        &main,
        &[
            &format!("{}:3: encoding:", included.display()),
            &format!("included by {}:4", main.display()),
        ],
    );
    std::fs::remove_file(&included).expect("rm");
    let looped = dir.path().join("conf.d/loop.conf");
    symlink(&looped, &looped).expect("symlink");
    fails_with(
        &main,
        &[
            &looped.display().to_string(),
            &format!("included by {}:4", main.display()),
            "loop of symbolic links",
        ],
    );
}

#[test]
fn unknown_keys_are_warnings_and_strict_makes_them_errors() {
    let dir = TempDir::new("cfg-warn");
    let conf = dir.write(
        "w.conf",
        "[supervisord]\nnodaemon=true\nunmask=022\nstdout_logfile=/dev/stdout\n\
         [program:web]\ncommand=sleep 100\npidfile=/run/web.pid\n",
    );
    let (code, out, err) = check(&conf, &[]);
    assert_eq!(code, 0, "{out}{err}");
    let parts: [String; 4] = [
        format!("warning: {}:3: unmask: not a setting of [supervisord]; did you mean umask?", conf.display()),
        format!("warning: {}:4: stdout_logfile: not a setting of [supervisord]; it is a setting of [program:NAME]", conf.display()),
        format!("warning: {}:7: pidfile: not a setting of [program:web]; it is a setting of [supervisord]", conf.display()),
        "supervisord ignores it".to_string(),
    ];
    for part in &parts {
        assert!(out.contains(part), "{part:?} missing from:\n{out}");
    }
    let (code, out, err) = check(&conf, &["--strict"]);
    assert_eq!(code, 2, "--strict refuses warnings:\n{out}{err}");
    assert!(
        err.contains(&format!("error (--strict): {}:3: unmask", conf.display())),
        "{err}"
    );
    assert!(
        err.contains("3 warnings treated as errors (--strict)"),
        "{err}"
    );

    let (code, out, err) = check(&conf, &["--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("check --json prints JSON");
    assert_eq!(v["warnings"].as_array().map(Vec::len), Some(3), "{out}");
    assert_eq!(v["programs"][0]["name"], "web");
}

#[test]
fn numprocs_one_with_a_process_name_keeps_its_group_and_listeners_show_in_json() {
    let dir = TempDir::new("cfg-group");
    let conf = dir.write(
        "g.conf",
        "[program:httpd]\ncommand=httpd -DFOREGROUND\nprocess_name=%(program_name)s_%(process_num)02d\n\
         [eventlistener:fatal]\ncommand=kill-on-fatal\nevents=PROCESS_STATE_FATAL\n",
    );
    let (code, out, err) = check(&conf, &["--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["programs"][0]["name"], "httpd_00");
    assert_eq!(v["programs"][0]["group"], "httpd");
    let listener = &v["eventlisteners"][0];
    assert_eq!(listener["pool"], "fatal");
    assert_eq!(
        listener["events"],
        serde_json::json!(["PROCESS_STATE_FATAL"])
    );
    assert_eq!(
        listener["processes"][0]["command"],
        serde_json::json!(["kill-on-fatal"])
    );
    let (code, out, _) = check(&conf, &[]);
    assert_eq!(code, 0);
    assert!(
        out.contains("[eventlistener:fatal] (not run here) events=PROCESS_STATE_FATAL"),
        "{out}"
    );
}
