//! Child output under stress, through the real binary: 200 MB written as fast as a child can,
//! no line lost, no line torn, the supervisor's memory bounded.

use std::time::{Duration, Instant};

use e2e::*;

#[test]
fn a_child_writing_200_mb_loses_no_line_and_memory_stays_bounded() {
    let dir = TempDir::new("stress");
    const LINES: u64 = 2_000_000; // 100 bytes each (with newline): 200 MB
    let flood = dir.write(
        "flood.sh",
        &format!(
            "awk 'BEGIN {{ pad = sprintf(\"%80s\", \"\"); gsub(/ /, \"x\", pad); for (i = 1; i <= {LINES}; i++) printf \"%010d %s\\n\", i, pad }}'\n\
             printf 'no newline at the end'\n"
        ),
    );
    // A second program writes at the same time (stderr redirected), so lines of two programs compete.
    let conf = dir.write(
        "s.conf",
        &format!(
            "[program:flood]\ncommand=sh {}\nstartsecs=0\nautorestart=false\n\n[program:noise]\ncommand=sh -c 'i=0; while [ $i -lt 20000 ]; do echo \"noise $i\" >&2; i=$((i+1)); done; exec sleep 1000'\nstartsecs=0\nredirect_stderr=true\n",
            flood.display()
        ),
    );
    let mut sup = Sup::with_config(Mode::Child, dir.path(), &conf);
    let started = Instant::now();
    // The flood is done when its last line is in the log.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let size = std::fs::metadata(&sup.log_path)
            .map(|m| m.len())
            .unwrap_or(0);
        if size > 200_000_000 && sup_log_contains_tail(&sup, "\"no newline at the end\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "flood not forwarded within 120 s ({size} bytes so far)"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = started.elapsed();
    let status = std::fs::read_to_string(format!("/proc/{}/status", sup.host_pid())).unwrap();
    let hwm_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(Duration::from_secs(15)), 0);

    let text = std::fs::read_to_string(&sup.log_path).unwrap();
    let mut next = 1u64;
    let mut noise = 0u64;
    let mut last_flood = String::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("torn or invalid line ({e}): {:.200}", line));
        if v.get("event").is_some() {
            continue;
        }
        let l = v["line"].as_str().unwrap();
        match v["program"].as_str().unwrap() {
            "flood" => {
                if next <= LINES {
                    let n: u64 = l[..10]
                        .parse()
                        .unwrap_or_else(|_| panic!("bad flood line {l:.80}"));
                    assert_eq!(n, next, "flood line out of order or lost");
                    assert_eq!(l.len(), 91);
                    next += 1;
                } else {
                    last_flood = l.to_string();
                }
            }
            "noise" => noise += 1,
            other => panic!("unexpected program {other}"),
        }
    }
    assert_eq!(next, LINES + 1, "all {LINES} lines arrived");
    assert_eq!(last_flood, "no newline at the end");
    assert_eq!(noise, 20_000);
    eprintln!("200 MB forwarded in {took:?}; supervisor peak RSS (VmHWM) {hwm_kb} kB");
    assert!(hwm_kb < 64 * 1024, "peak RSS {hwm_kb} kB is not bounded");
}

fn sup_log_contains_tail(sup: &Sup, needle: &str) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(&sup.log_path) else {
        return false;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(1 << 20)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).contains(needle)
}
