//! Cluster mode when Redis fails (issue 6): 503s instead of silent loss,
//! clients kept, reconnects without a restart, and a stopped Redis never
//! hangs the loop.
use crate::common::*;
use crate::redis_harness::*;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn redis_killed_pushes_get_503_clients_stay_and_it_comes_back() {
    let mut redis = RedisServer::start();
    let a = node(&redis.url());
    let b = node(&redis.url());
    let mut on_b = connect_registered(b.addr, "alice", "e");
    redis.kill();
    wait_down(a.addr);
    wait_down(b.addr);

    let r = push(a.addr, "alice", "e", "lost?");
    assert_eq!((r.status, r.body.as_str()), (503, "redis unavailable"));
    let retry: u64 = r.header("Retry-After").expect("Retry-After").parse().unwrap();
    assert!((1..=5).contains(&retry), "Retry-After {retry}");
    let r = post_with(
        a.addr,
        "/broadcast",
        r#"{"event":"e","message":"m"}"#,
        &[("Accept", "application/json")],
    );
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, r#"{"error":"redis unavailable"}"#)
    );
    let h = get(a.addr, "/healthz");
    assert_eq!((h.status, h.body.as_str()), (503, "redis unavailable"));
    assert!(h.header("Retry-After").is_some());
    assert_eq!(metric(a.addr, "wspush_redis_connected"), 0);

    // The WebSocket client is still connected and served.
    send_text(&mut on_b, r#"{"token":"alice","event":"e2","id":7}"#);
    assert_eq!(read_text(&mut on_b), r#"{"id":7,"ok":true}"#);

    redis.restart();
    wait_up(a.addr);
    wait_up(b.addr);
    let r = push(a.addr, "alice", "e", "back again");
    assert_eq!((r.status, r.body.as_str()), (200, "message published to 2 nodes"));
    assert_eq!(read_text(&mut on_b), "back again");
    assert_eq!(metric(a.addr, "wspush_redis_connected"), 1);
    assert!(metric(a.addr, "wspush_redis_reconnects_total") >= 1);
}

#[test]
fn a_node_started_before_redis_joins_when_it_appears() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let parsed = wspush::RedisUrl::parse(&url).unwrap();
    let a = start_with(|b| b.configure(|c| c.redis = Some(parsed)));
    let h = get(a.addr, "/healthz");
    assert_eq!((h.status, h.body.as_str()), (503, "redis unavailable"));
    assert_eq!(push(a.addr, "u", "e", "m").status, 503);
    let _redis = RedisServer::start_on(port);
    wait_up(a.addr);
    let mut ws = connect_registered(a.addr, "u", "e");
    assert_eq!(push(a.addr, "u", "e", "m").status, 200);
    assert_eq!(read_text(&mut ws), "m");
    // Joining late is not a reconnect.
    assert_eq!(metric(a.addr, "wspush_redis_reconnects_total"), 0);
}

/// SIGSTOP: the sockets stay open but nothing answers. A waiting push gets
/// 503 after --redis-timeout, local endpoints answer at once meanwhile, and
/// the node recovers after SIGCONT.
#[test]
fn redis_paused_times_out_without_hanging_the_loop() {
    let mut redis = RedisServer::start();
    let timeout = |b: wspush::Builder| b.configure(|c| c.redis_timeout = Duration::from_millis(800));
    let a = node_with(&redis.url(), timeout);
    let mut ws = connect_registered(a.addr, "alice", "e");
    redis.pause();

    // A push on its own connection waits for Redis...
    let mut s = TcpStream::connect(a.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let body = r#"{"userId":"alice","event":"e","message":"timed out"}"#;
    let started = Instant::now();
    s.write_all(push_request(body).as_bytes()).unwrap();
    // ...while the loop keeps serving everyone else at once.
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    let h = get(a.addr, "/healthz");
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "healthz took {:?}",
        t.elapsed()
    );
    assert!(h.status == 200 || h.status == 503);
    send_text(&mut ws, r#"{"token":"alice","event":"e2","id":1}"#);
    assert_eq!(read_text(&mut ws), r#"{"id":1,"ok":true}"#);

    let r = read_response(&mut BufReader::new(s));
    let waited = started.elapsed();
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, "redis did not acknowledge the push")
    );
    assert!(r.header("Retry-After").is_some());
    assert!(
        waited >= Duration::from_millis(600) && waited < Duration::from_secs(3),
        "answered after {waited:?}"
    );
    wait_down(a.addr);
    assert_eq!(push(a.addr, "alice", "e", "m").status, 503);
    assert!(metric(a.addr, "wspush_redis_publish_failures_total") >= 1);

    redis.resume();
    wait_up(a.addr);
    assert_eq!(push(a.addr, "alice", "e", "after the pause").status, 200);
    // The timed-out push sat in Redis's socket buffer and may be delivered
    // after all (hence "did not acknowledge", not "failed"); the refused
    // one was never sent.
    let mut got = read_text(&mut ws);
    if got == "timed out" {
        got = read_text(&mut ws);
    }
    assert_eq!(got, "after the pause");
}

/// An idle node notices a stopped Redis by itself (pings), without a push.
#[test]
fn an_idle_node_notices_a_silent_redis() {
    let mut redis = RedisServer::start();
    let a = node_with(&redis.url(), |b| {
        b.configure(|c| c.redis_timeout = Duration::from_millis(500))
    });
    redis.pause();
    wait_down(a.addr);
    redis.resume();
    wait_up(a.addr);
}

/// Requests pipelined behind a waiting push are answered after it, in order.
#[test]
fn pipelined_requests_keep_their_order_behind_a_push() {
    let redis = RedisServer::start();
    let a = node(&redis.url());
    let mut s = TcpStream::connect(a.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let body = r#"{"userId":"u","event":"e","message":"m"}"#;
    let push_req = push_request(body);
    let raw = format!(
        "{push_req}GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n{push_req}GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
    );
    s.write_all(raw.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    assert_eq!(read_response(&mut r).body, "message published to 1 nodes");
    assert_eq!(read_response(&mut r).body, "ok");
    assert_eq!(read_response(&mut r).body, "message published to 1 nodes");
    assert_eq!(read_response(&mut r).status, 404);
}

/// A client that gives up while its push waits costs nothing: the late
/// acknowledgement finds no one and the node serves on.
#[test]
fn a_client_that_leaves_while_waiting_is_harmless() {
    let mut redis = RedisServer::start();
    let a = node(&redis.url());
    let mut ws = connect_registered(a.addr, "alice", "e");
    redis.pause();
    for _ in 0..5 {
        let mut s = TcpStream::connect(a.addr).unwrap();
        let body = r#"{"userId":"alice","event":"e","message":"abandoned"}"#;
        s.write_all(push_request(body).as_bytes()).unwrap();
        drop(s);
    }
    std::thread::sleep(Duration::from_millis(100));
    redis.resume();
    eventually("sockets of the leavers closed", || {
        metric(a.addr, "wspush_sockets") <= 2
    });
    wait_up(a.addr);
    assert_eq!(push(a.addr, "alice", "e", "fresh").status, 200);
    // Whatever Redis delivered of the abandoned pushes came first.
    loop {
        let m = read_text(&mut ws);
        if m == "fresh" {
            break;
        }
        assert_eq!(m, "abandoned");
    }
}

#[test]
fn auth_and_select_on_connect() {
    let redis = RedisServer::start_with(&["--requirepass", "s3cret"]);
    let url = format!("redis://:s3cret@127.0.0.1:{}/3", redis.port);
    let a = node(&url);
    let b = node(&format!("redis://default:s3cret@127.0.0.1:{}", redis.port));
    let mut on_b = connect_registered(b.addr, "alice", "e");
    assert_eq!(push(a.addr, "alice", "e", "authed").status, 200);
    assert_eq!(read_text(&mut on_b), "authed");
    // A wrong password never comes up, and says so.
    let wrong = wspush::RedisUrl::parse(&format!("redis://:nope@127.0.0.1:{}", redis.port)).unwrap();
    let c = start_with(|b| b.configure(|c| c.redis = Some(wrong)));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(c.addr, "/healthz").status, 503);
    assert_eq!(push(c.addr, "alice", "e", "m").status, 503);
}

#[test]
fn a_unix_socket_url_works() {
    let path = socket_path("unix");
    let _ = std::fs::remove_file(&path);
    let p = path.to_str().unwrap();
    let redis = RedisServer::start_with(&["--unixsocket", p, "--unixsocketperm", "700"]);
    eventually("socket file exists", || path.exists());
    let a = node(&format!("unix://{p}"));
    let b = node(&redis.url());
    let mut on_a = connect_registered(a.addr, "alice", "e");
    assert_eq!(push(b.addr, "alice", "e", "over unix").status, 200);
    assert_eq!(read_text(&mut on_a), "over unix");
}

#[test]
fn the_binary_takes_redis_flags_and_env() {
    let redis = RedisServer::start();
    let url = redis.url();
    let a = spawn_bin(&["--redis", &url, "--redis-channel", "bin"]);
    let b = spawn_bin_raw(
        &["--listen", "127.0.0.1:0"],
        &[("WSPUSH_REDIS", url.as_str()), ("WSPUSH_REDIS_CHANNEL", "bin")],
    );
    wait_up(a.addr);
    wait_up(b.addr);
    let mut on_b = connect_registered(b.addr, "alice", "e");
    let r = push(a.addr, "alice", "e", "from the binary");
    assert_eq!((r.status, r.body.as_str()), (200, "message published to 2 nodes"));
    assert_eq!(read_text(&mut on_b), "from the binary");

    // A bad URL stops startup with a message naming the flag; the password
    // never appears in it.
    let out = command(env!("CARGO_BIN_EXE_wspush"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--redis",
            "redis://:hunter2@host:notaport",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--redis"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

/// Each transition is logged once: one warning when Redis goes away however
/// many pushes are refused and reconnects fail, one line when it is back.
#[test]
fn transitions_are_logged_once_not_per_push() {
    use std::process::Stdio;
    let mut redis = RedisServer::start();
    let log = std::env::temp_dir().join(format!("wspush-cluster-log-{}.txt", std::process::id()));
    let file = std::fs::File::create(&log).unwrap();
    let mut child = command(env!("CARGO_BIN_EXE_wspush"))
        .args(["--listen", "127.0.0.1:0", "--redis", &redis.url()])
        .stdout(Stdio::piped())
        .stderr(file)
        .spawn()
        .unwrap();
    let addr = listening_addr(&mut child);
    let bin = BinServer { addr, child };
    wait_up(bin.addr);
    redis.kill();
    wait_down(bin.addr);
    for _ in 0..20 {
        assert_eq!(push(bin.addr, "u", "e", "m").status, 503);
    }
    // Several reconnect attempts fail meanwhile (backoff from 0.1 s).
    std::thread::sleep(Duration::from_millis(800));
    redis.restart();
    wait_up(bin.addr);
    drop(bin);
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let count = |needle: &str| text.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count("redis unavailable"), 1, "{text}");
    assert_eq!(count("redis connection restored"), 1, "{text}");
    assert_eq!(count("cluster mode: connected to"), 1, "{text}");
}
