//! Tests of the HTTP layer: a real hyper server on 127.0.0.1:0 and real clients writing
//! HTTP/1.1 by hand over TCP. The engine is played by a task answering status requests from a
//! list the test controls (or by nobody, to see a wedged engine).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::*;
use crate::engine::handle::{LastExit, ProgramStatus, Request as EngineRequest};
use crate::event::{EventBus, EventSink, ExitCause, History, State};

/// A running server plus the pretend engine behind it.
struct Server {
    addr: SocketAddr,
    bus: EventBus,
    programs: Arc<Mutex<Vec<ProgramStatus>>>,
    /// Status requests the pretend engine has answered.
    asked: Arc<std::sync::atomic::AtomicUsize>,
    metrics: Arc<Metrics>,
    _stop: oneshot::Sender<()>,
    /// Held when the engine is not answering, so requests wait rather than fail at once.
    _requests: Option<tokio::sync::mpsc::Receiver<EngineRequest>>,
}

async fn server(limits: Limits, engine_answers: bool) -> Server {
    let history = Arc::new(History::new(1000));
    let metrics = Arc::new(Metrics::new());
    let sinks: Vec<Arc<dyn EventSink>> = vec![history.clone(), metrics.clone()];
    let bus = EventBus::new(sinks);
    let (handle, mut requests) = EngineHandle::detached(bus.clone(), history);
    let programs: Arc<Mutex<Vec<ProgramStatus>>> = Arc::default();
    let asked: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
    let held = if engine_answers {
        let programs = programs.clone();
        let asked = asked.clone();
        tokio::spawn(async move {
            while let Some(req) = requests.recv().await {
                if let EngineRequest::Status(reply) = req {
                    asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let _ = reply.send(programs.lock().unwrap().clone());
                }
            }
        });
        None
    } else {
        Some(requests)
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let app = App::new(handle, metrics.clone(), limits);
    tokio::spawn(serve(listener, app, async move {
        let _ = stopped.await;
    }));
    Server {
        addr,
        bus,
        programs,
        asked,
        metrics,
        _stop: stop,
        _requests: held,
    }
}

impl Server {
    /// What the engine does after changing a state: say so on the event stream.
    fn changed(&self, name: &str) {
        let mut e = Event::new(Level::Info, Kind::Running, format!("{name} changed"));
        e.program = Some(name.to_string());
        self.bus.emit(e);
    }
}

fn status(name: &str, state: State, autostart: bool) -> ProgramStatus {
    ProgramStatus {
        name: name.to_string(),
        group: None,
        state,
        pid: (state == State::Running).then_some(42),
        start_time: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)),
        uptime_s: (state == State::Running).then_some(1.5),
        restarts: 2,
        autostart,
        critical: false,
        priority: 999,
        ready: state == State::Running,
        last_exit: None,
        pgid: None,
    }
}

/// A parsed response.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn parse_reply(raw: &[u8]) -> Option<Reply> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Reply {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    })
}

/// Sends `raw` on a new connection and reads until the server closes it.
async fn send(addr: SocketAddr, raw: &[u8]) -> Reply {
    let io = async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        // The server may close early (e.g. on an oversized head): a failed write is fine.
        let _ = s.write_all(raw).await;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        out
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), io)
        .await
        .expect("the server answered within 10 s");
    parse_reply(&raw)
        .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(&raw)))
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    send(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405_with_allow() {
    let s = server(Limits::default(), true).await;
    let r = get(s.addr, "/nope").await;
    assert_eq!(r.status, 404);
    assert!(
        r.json()["error"].as_str().unwrap().contains("/metrics"),
        "{}",
        r.text()
    );
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        for path in ENDPOINTS {
            let r = send(s.addr, format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").as_bytes()).await;
            assert_eq!(r.status, 405, "{method} {path}");
            assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method} {path}");
        }
    }
}

#[tokio::test]
async fn a_body_on_a_get_is_413() {
    let s = server(Limits::default(), true).await;
    let r = send(
        s.addr,
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!(r.status, 413);
    let r = send(s.addr, b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").await;
    assert_eq!(r.status, 413);
}

#[tokio::test]
async fn oversized_heads_are_431_and_the_server_goes_on() {
    let s = server(Limits::default(), true).await;
    for size in [9 * 1024, 1024 * 1024] {
        let big = format!(
            "GET /metrics HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
            "a".repeat(size)
        );
        let io = async {
            let mut c = TcpStream::connect(s.addr).await.expect("connect");
            let _ = c.write_all(big.as_bytes()).await;
            let mut out = Vec::new();
            let _ = c.read_to_end(&mut out).await;
            out
        };
        let raw = tokio::time::timeout(Duration::from_secs(10), io)
            .await
            .expect("closed within 10 s");
        // The 431 is sent; with a 1 MiB head the client may see the reset first.
        if let Some(r) = parse_reply(&raw) {
            assert_eq!(r.status, 431, "{size} bytes");
        } else {
            assert!(size > 64 * 1024, "no 431 for a {size}-byte head");
        }
        assert_eq!(get(s.addr, "/healthz").await.status, 200);
    }
    let long_uri = format!("/api/events?program={}", "x".repeat(20 * 1024));
    assert!(matches!(get(s.addr, &long_uri).await.status, 414 | 431));
}

#[tokio::test]
async fn head_gets_headers_only() {
    let s = server(Limits::default(), true).await;
    let r = send(
        s.addr,
        b"HEAD /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-type"), Some(metrics::CONTENT_TYPE));
}

#[tokio::test]
async fn metrics_endpoint_serves_the_registry() {
    let s = server(Limits::default(), true).await;
    let mut e = Event::new(Level::Debug, Kind::Added, "added: web");
    e.program = Some("web".into());
    e.state = Some(State::Stopped);
    s.bus.emit(e);
    let r = get(s.addr, "/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.text();
    assert!(
        text.contains("supervisor_program_restarts_total{program=\"web\"} 0\n"),
        "{text}"
    );
    assert!(text.contains("supervisor_probe_loaded 0\n"));
    assert!(String::from_utf8(s.metrics.render().unwrap())
        .unwrap()
        .contains("supervisor_program_up{program=\"web\"} 0\n"));
    if let Some(complaints) = crate::metrics::tests::promtool_complaints(&text) {
        assert_eq!(complaints, "", "promtool check metrics on a scrape");
    }
    let index = get(s.addr, "/").await;
    assert_eq!(index.status, 200);
    assert!(index.text().contains("/api/events"));
}

#[tokio::test]
async fn healthz_answers_from_the_copy_and_notices_a_wedged_engine() {
    let s = server(Limits::default(), true).await;
    let r = get(s.addr, "/healthz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");

    let limits = Limits {
        engine_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let wedged = server(limits, false).await;
    // Until the engine has had its time to answer, the supervisor is alive (starting).
    assert_eq!(get(wedged.addr, "/healthz").await.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    let r = get(wedged.addr, "/healthz").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["status"], "unhealthy");
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("has not answered for"),
        "{}",
        r.text()
    );
    // Answered at once, not after waiting on the engine.
    assert!(
        t.elapsed() < Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    let r = get(wedged.addr, "/readyz").await;
    assert_eq!(r.status, 503);
    assert!(r.json()["error"].is_string(), "{}", r.text());
    assert_eq!(get(wedged.addr, "/api/programs").await.status, 503);
    // The parts that do not need the engine still answer.
    assert_eq!(get(wedged.addr, "/metrics").await.status, 200);
    assert_eq!(get(wedged.addr, "/api/events").await.status, 200);
}

/// 300 probes cost the engine a handful of questions: they are answered from the copy, which
/// is refreshed on events and at most once per REFRESH_AFTER on a probe's request.
#[tokio::test]
async fn probes_do_not_ask_the_engine_each_time() {
    let s = server(Limits::default(), true).await;
    *s.programs.lock().unwrap() = vec![status("web", State::Running, true)];
    s.changed("web");
    let t = Instant::now();
    for i in 0..300 {
        let path = if i % 2 == 0 { "/healthz" } else { "/readyz" };
        assert_eq!(get(s.addr, path).await.status, 200, "{path}");
    }
    let asked = s.asked.load(std::sync::atomic::Ordering::Relaxed);
    let budget = 2 + (t.elapsed().as_secs_f64() / health::REFRESH_AFTER.as_secs_f64()) as usize;
    assert!(
        asked <= budget,
        "{asked} questions for 300 probes in {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn readyz_flips_with_the_autostart_programs() {
    let s = server(Limits::default(), true).await;
    *s.programs.lock().unwrap() = vec![
        status("web", State::Starting, true),
        status("db", State::Backoff, true),
        status("manual", State::Stopped, false),
    ];
    s.changed("web");
    let r = get(s.addr, "/readyz").await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.json(),
        serde_json::json!({"ready": false, "not_ready": [{"name": "web", "state": "STARTING"}, {"name": "db", "state": "BACKOFF"}]})
    );
    for p in s.programs.lock().unwrap().iter_mut().take(2) {
        p.state = State::Running;
        p.ready = true;
    }
    s.changed("db");
    let r = get(s.addr, "/readyz").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!({"ready": true}));
    // RUNNING is not enough: a program whose readiness check has not passed is not ready.
    s.programs.lock().unwrap()[1].ready = false;
    s.changed("db");
    let r = get(s.addr, "/readyz").await;
    assert_eq!(r.status, 503);
    s.programs.lock().unwrap()[1].state = State::Fatal;
    s.changed("db");
    let r = get(s.addr, "/readyz").await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.json()["not_ready"],
        serde_json::json!([{"name": "db", "state": "FATAL"}])
    );
}

/// More expensive requests than admitted: the excess gets 503 with Retry-After at once, and
/// the probes answer all the while.
#[tokio::test]
async fn only_the_expensive_endpoints_shed_load() {
    let limits = Limits {
        max_expensive: 2,
        engine_timeout: Duration::from_secs(3),
        ..Limits::default()
    };
    // The engine never answers: /api/programs requests wait (engine_timeout).
    let s = server(limits, false).await;
    let mut waiting = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(s.addr).await.expect("connect");
        c.write_all(b"GET /api/programs HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        waiting.push(c);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for path in ["/metrics", "/api/programs", "/api/events"] {
        let t = Instant::now();
        let r = get(s.addr, path).await;
        assert_eq!(r.status, 503, "{path}: {}", r.text());
        assert_eq!(r.header("retry-after"), Some("1"), "{path}");
        assert!(
            r.json()["error"].as_str().unwrap().contains("retry"),
            "{}",
            r.text()
        );
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{path}: {:?}",
            t.elapsed()
        );
    }
    assert_eq!(get(s.addr, "/healthz").await.status, 200);
    drop(waiting);
    // Room again once they are gone (the server notices the closed connections).
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(s.addr, "/metrics").await.status != 200 {
        assert!(Instant::now() < deadline, "admission was not given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn api_programs_schema() {
    let s = server(Limits::default(), true).await;
    let mut db = status("db", State::Backoff, true);
    db.group = Some("backend".into());
    db.last_exit = Some(LastExit {
        at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_100),
        cause: ExitCause::Signaled,
        exit_code: None,
        signal: Some("SIGKILL".into()),
        signo: Some(9),
        core_dumped: false,
        expected: false,
        status: 137,
    });
    *s.programs.lock().unwrap() = vec![status("web", State::Running, true), db];
    let r = get(s.addr, "/api/programs").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(
        v[0],
        serde_json::json!({
            "name": "web", "state": "RUNNING", "pid": 42, "start_time": "2027-01-15T08:00:00.000Z",
            "uptime_s": 1.5, "restarts": 2, "autostart": true, "critical": false,
            "priority": 999, "ready": true
        })
    );
    assert_eq!(v[1]["group"], "backend");
    assert_eq!(
        v[1]["last_exit"],
        serde_json::json!({
            "at": "2027-01-15T08:01:40.000Z", "cause": "signaled", "signal": "SIGKILL",
            "core_dumped": false, "expected": false, "status": 137
        })
    );
}

#[tokio::test]
async fn api_events_filters_and_rejects_bad_parameters() {
    let s = server(Limits::default(), true).await;
    for i in 0..10 {
        let name = if i % 2 == 0 { "web" } else { "db:worker 1" };
        let mut e = Event::new(
            Level::Info,
            Kind::Spawned,
            format!("spawned: '{name}' with pid {i}"),
        );
        e.program = Some(name.into());
        e.pid = Some(i);
        e.state = Some(State::Starting);
        s.bus.emit(e);
    }
    let all = get(s.addr, "/api/events").await;
    assert_eq!(all.status, 200);
    let all = all.json();
    assert_eq!(all.as_array().unwrap().len(), 10);
    // The same objects as the log lines.
    assert_eq!(all[0]["event"], "spawned");
    assert_eq!(all[0]["seq"], 1);
    assert_eq!(all[0]["msg"], "spawned: 'web' with pid 0");
    assert!(all[0]["ts"].as_str().unwrap().ends_with('Z'));
    let web = get(s.addr, "/api/events?program=web&limit=2").await.json();
    assert_eq!(
        web.as_array()
            .unwrap()
            .iter()
            .map(|e| e["pid"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![6, 8]
    );
    let db = get(s.addr, "/api/events?program=db%3Aworker+1&since=6")
        .await
        .json();
    assert_eq!(
        db.as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![8, 10]
    );
    assert_eq!(
        get(s.addr, "/api/events?program=nobody").await.json(),
        serde_json::json!([])
    );
    for bad in ["limit=x", "since=-1", "colour=red", "program=%zz"] {
        let r = get(s.addr, &format!("/api/events?{bad}")).await;
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.json()["error"].is_string());
    }
}

#[test]
fn addresses_parse() {
    assert_eq!(parse_addr("off"), Ok(None));
    assert_eq!(parse_addr("OFF"), Ok(None));
    assert_eq!(
        parse_addr("127.0.0.1:9469"),
        Ok(Some("127.0.0.1:9469".parse().unwrap()))
    );
    assert_eq!(
        parse_addr(":9469"),
        Ok(Some("0.0.0.0:9469".parse().unwrap()))
    );
    assert_eq!(
        parse_addr("[::1]:80"),
        Ok(Some("[::1]:80".parse().unwrap()))
    );
    assert_eq!(
        parse_addr(crate::config::DEFAULT_METRICS_ADDR),
        Ok(Some("0.0.0.0:9469".parse().unwrap()))
    );
    for bad in ["127.0.0.1", "localhost:9469", "9469", ""] {
        let e = parse_addr(bad).unwrap_err();
        assert!(e.contains("IP:PORT") && e.contains("off"), "{e}");
    }
}

#[test]
fn query_strings_decode() {
    assert_eq!(
        parse_events_query("program=a%2Fb+c&since=3&limit=99999").unwrap(),
        EventsQuery {
            program: Some("a/b c".into()),
            since: Some(3),
            limit: MAX_EVENTS_LIMIT
        }
    );
    assert_eq!(
        parse_events_query("").unwrap(),
        EventsQuery {
            program: None,
            since: None,
            limit: DEFAULT_EVENTS_LIMIT
        }
    );
    assert!(parse_events_query("program=%ff").is_err());
    assert!(parse_events_query("program=%4").is_err());
}

/// Slowloris: a client that sends half a head and stalls is cut off after the header timeout,
/// and meanwhile other clients are served at once.
#[tokio::test]
async fn a_stalled_client_is_cut_off_while_others_are_served() {
    let limits = Limits {
        header_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let s = server(limits, true).await;
    let mut slow = TcpStream::connect(s.addr).await.expect("connect");
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .await
        .expect("write");
    let mut idle = TcpStream::connect(s.addr).await.expect("connect");
    let t = Instant::now();
    let mut served = 0;
    while t.elapsed() < Duration::from_millis(400) {
        let q = Instant::now();
        assert_eq!(get(s.addr, "/healthz").await.status, 200);
        assert!(
            q.elapsed() < Duration::from_millis(200),
            "a request took {:?}",
            q.elapsed()
        );
        served += 1;
    }
    assert!(served > 5);
    for (what, c) in [("half a head", &mut slow), ("nothing", &mut idle)] {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(3), c.read_to_end(&mut buf)).await;
        assert!(
            read.is_ok(),
            "a client that sent {what} was not disconnected"
        );
        assert!(
            t.elapsed() >= Duration::from_millis(400),
            "cut off too early: {:?}",
            t.elapsed()
        );
    }
}

/// A kept-alive connection serves several requests, and is closed when idle too long.
#[tokio::test]
async fn keep_alive_then_idle_close() {
    let limits = Limits {
        header_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let s = server(limits, true).await;
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    for _ in 0..3 {
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("write");
        let mut buf = vec![0u8; 4096];
        let n = c.read(&mut buf).await.expect("read");
        let r = parse_reply(&buf[..n]).expect("a response");
        assert_eq!(r.status, 200);
    }
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), c.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "an idle kept-alive connection stayed open");
}

/// At the cap, a new connection is served and the oldest idle one is closed to make room;
/// a connection busy with a request is not chosen.
#[tokio::test]
async fn at_the_cap_the_oldest_idle_connection_makes_room() {
    let limits = Limits {
        max_connections: 8,
        header_timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let s = server(limits, true).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(s.addr).await.expect("connect"));
        // Let the server accept them in this order.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for i in 0..3 {
        let t = Instant::now();
        let r = get(s.addr, "/healthz").await;
        assert_eq!(r.status, 200, "probe {i} at the cap");
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }
    // The first probe made the oldest close (EOF); each probe's connection closed after its
    // answer, so the others found room. The rest are still open.
    for (i, c) in held.iter_mut().enumerate() {
        let mut buf = [0u8; 16];
        let closed = matches!(
            tokio::time::timeout(Duration::from_millis(200), c.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        );
        assert_eq!(closed, i == 0, "connection {i}");
    }
}

/// 2,000 concurrent connections from another thread: every one is answered (200 or 503) or
/// closed, none hangs, and the server's thread — the engine's thread in production — stays
/// responsive throughout (a timer on it is never late by more than a few milliseconds).
#[tokio::test]
async fn two_thousand_concurrent_connections() {
    let s = server(Limits::default(), true).await;
    let addr = s.addr;
    let flood = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let tasks: Vec<_> = (0..2000)
                .map(|_| {
                    tokio::spawn(async move {
                        let Ok(mut c) = TcpStream::connect(addr).await else {
                            return 0;
                        };
                        let _ = c
                            .write_all(
                                b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                            )
                            .await;
                        let mut out = Vec::new();
                        let _ =
                            tokio::time::timeout(Duration::from_secs(20), c.read_to_end(&mut out))
                                .await;
                        parse_reply(&out).map_or(0, |r| r.status)
                    })
                })
                .collect();
            let mut counts = std::collections::BTreeMap::<u16, usize>::new();
            for t in tasks {
                *counts.entry(t.await.unwrap_or(0)).or_default() += 1;
            }
            counts
        })
    });
    // Meanwhile, on the server's thread: how late does a 10 ms timer fire?
    let mut worst = Duration::ZERO;
    while !flood.is_finished() {
        let t = Instant::now();
        tokio::time::sleep(Duration::from_millis(10)).await;
        worst = worst.max(t.elapsed().saturating_sub(Duration::from_millis(10)));
    }
    let counts = flood.join().expect("flood thread");
    eprintln!("2000 connections: {counts:?} (status 0 = closed without a response); worst timer lateness {worst:?}");
    assert_eq!(counts.values().sum::<usize>(), 2000);
    assert!(counts.get(&200).copied().unwrap_or(0) >= 64, "{counts:?}");
    assert!(
        counts.keys().all(|k| matches!(k, 0 | 200 | 503)),
        "{counts:?}"
    );
    assert!(
        worst < Duration::from_millis(250),
        "the server's thread was held for {worst:?}"
    );
    assert_eq!(get(s.addr, "/healthz").await.status, 200);
}
