//! Hostile HTTP clients (SPEC §12): what one can make the server spend is
//! bounded. A request trickled in tiny packets costs linear work; a body of
//! tiny chunks is judged by its size, not its framing; chunk extensions are
//! bounded; sockets that are not WebSocket are capped, and an idle one costs
//! at most 8 KiB.
use crate::common::*;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// CPU time the process `pid` has used, all threads: to the nanosecond from
/// `schedstat` where the kernel keeps it, else `utime + stime` in ticks.
fn cpu_time(pid: u32) -> Duration {
    let mut ns = 0u64;
    let mut tasks = 0;
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in dir.flatten() {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            if let Some(v) = stat.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()) {
                ns += v;
                tasks += 1;
            }
        }
    }
    if tasks > 0 && ns > 0 {
        return Duration::from_nanos(ns);
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("comm")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// A valid push (to nobody) of about `size` bytes: a small JSON body
/// followed by whitespace sent one byte per chunk, each chunk with an
/// extension as long as allowed. Nearly all of it is framing.
fn trickle_request(size: usize) -> Vec<u8> {
    let json = br#"{"userId":"nobody","event":"e","message":"trickled"}"#;
    let mut req = b"POST /push HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    req.extend_from_slice(format!("{:x}\r\n", json.len()).as_bytes());
    req.extend_from_slice(json);
    req.extend_from_slice(b"\r\n");
    let chunk = [b"1;pad=".as_slice(), &[b'x'; 250], b"\r\n \r\n"].concat();
    while req.len() + chunk.len() + 5 <= size {
        req.extend_from_slice(&chunk);
    }
    req.extend_from_slice(b"0\r\n\r\n");
    req
}

/// Sends `req` in `piece`-byte writes, each its own packet, pausing between
/// them so the server reads each one separately; returns the server CPU
/// time it cost.
fn trickle(server: &BinServer, req: &[u8], piece: usize, pause: Duration) -> Duration {
    let (mut s, mut r) = raw_conn(server.addr);
    s.set_nodelay(true).unwrap();
    let pid = server.child.id();
    let before = cpu_time(pid);
    for part in req.chunks(piece) {
        s.write_all(part).expect("write");
        std::thread::sleep(pause);
    }
    let resp = read_response(&mut r);
    let spent = cpu_time(pid) - before;
    assert_eq!(
        (resp.status, resp.body.as_str()),
        (200, "message sent to 0 clients")
    );
    spent
}

/// Four times the bytes, sent one small packet at a time, cost about four
/// times the server's CPU. Re-parsing everything received on every read,
/// as the server once did, costs sixteen times as much (more than ten here).
///
/// Each packet is paused after, so the server reads it on its own: bytes
/// that pile up are read together, which would hide quadratic work. Each
/// size is sent twice and the cheaper run counts: other processes on the
/// machine can only add CPU time, never take it away.
#[test]
fn a_request_trickled_in_tiny_packets_costs_linear_cpu() {
    const N: usize = 32 << 10;
    const PIECE: usize = 32;
    const PAUSE: Duration = Duration::from_micros(200);
    let server = spawn_bin(&[]);
    // The first request pays for first-touch allocations.
    trickle(&server, &trickle_request(4096), 256, Duration::ZERO);
    let (small_req, big_req) = (trickle_request(N), trickle_request(4 * N));
    let mut small = Duration::MAX;
    let mut big = Duration::MAX;
    for _ in 0..2 {
        small = small.min(trickle(&server, &small_req, PIECE, PAUSE));
        big = big.min(trickle(&server, &big_req, PIECE, PAUSE));
    }
    let ratio = big.as_secs_f64() / small.as_secs_f64();
    eprintln!(
        "cpu {small:?} for {} bytes, {big:?} for {} bytes: ratio {ratio:.2}",
        small_req.len(),
        big_req.len()
    );
    assert!(
        ratio < 8.0,
        "{small:?} of CPU for {} bytes, {big:?} for {}: {ratio:.1}×, not linear",
        small_req.len(),
        big_req.len()
    );
}

/// A body within the limit sent as one-byte chunks, six bytes of framing
/// per byte of body and several times the limit in all, is accepted and
/// delivered intact: the limit counts body bytes.
#[test]
fn a_body_of_tiny_chunks_is_judged_by_its_size_not_its_framing() {
    let server = start();
    let mut ws = connect_registered(server.addr, "aaa", "topic1");
    let message = "m".repeat(50_000);
    let body = serde_json::json!({"userId": "aaa", "event": "topic1", "message": message}).to_string();
    let mut req =
        b"POST /push HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for b in body.bytes() {
        req.extend_from_slice(b"1\r\n");
        req.push(b);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    assert!(req.len() > 4 * 65536);
    let r = raw_request(server.addr, &req);
    assert_eq!((r.status, r.body.as_str()), (200, "message sent to 1 clients"));
    assert_eq!(read_text(&mut ws), message);
}

/// A chunk extension (everything between the size and its CRLF) of 256
/// bytes is fine; one byte more is a malformed request: 400, then close.
#[test]
fn chunk_extensions_over_256_bytes_are_a_bad_request() {
    let server = start();
    let json = br#"{"userId":"nobody","event":"e","message":"m"}"#;
    let request = |ext_len: usize| {
        let mut ext = b";x=".to_vec();
        ext.resize(ext_len, b'y');
        let mut req =
            b"POST /push HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        req.extend_from_slice(format!("{:x}", json.len()).as_bytes());
        req.extend_from_slice(&ext);
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(json);
        req.extend_from_slice(b"\r\n0\r\n\r\n");
        req
    };
    let (mut s, mut r) = raw_conn(server.addr);
    s.write_all(&request(256)).unwrap();
    let ok = read_response(&mut r);
    assert_eq!((ok.status, ok.body.as_str()), (200, "message sent to 0 clients"));
    s.write_all(&request(257)).unwrap();
    let bad = read_response(&mut r);
    assert_eq!((bad.status, bad.body.as_str()), (400, "chunk extension too long"));
    expect_eof(&mut r);
}

fn healthz_keep_alive() -> &'static [u8] {
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
}

/// A keep-alive HTTP client that has made one request and now idles.
struct Idle {
    s: TcpStream,
    r: BufReader<TcpStream>,
}

impl Idle {
    #[track_caller]
    fn open(addr: SocketAddr) -> Idle {
        let (s, r) = raw_conn(addr);
        let mut c = Idle { s, r };
        c.request();
        c
    }

    #[track_caller]
    fn request(&mut self) {
        self.s.write_all(healthz_keep_alive()).unwrap();
        let resp = read_response(&mut self.r);
        assert_eq!((resp.status, resp.body.as_str()), (200, "ok"));
    }

    /// The server closed it: end of stream (or a reset), no response.
    #[track_caller]
    fn expect_closed(&mut self) {
        let mut buf = [0u8; 64];
        match self.r.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("expected the server to close an idle socket, got {other:?}"),
        }
    }
}

/// At `--max-http-connections`, a new connection closes the socket that has
/// been idle longest (by idleness, not by age) and is served.
#[test]
fn at_the_cap_the_longest_idle_socket_makes_room() {
    let server = start_with(|b| b.configure(|c| c.max_http_connections = 3));
    let a = server.addr;
    let mut first = Idle::open(a);
    let mut second = Idle::open(a);
    let mut third = Idle::open(a);
    // The oldest socket is used again: now the second has idled longest.
    first.request();

    let mut fourth = Idle::open(a);
    second.expect_closed();
    // Then the third, and so on; every new one is served.
    let mut fifth = Idle::open(a);
    third.expect_closed();
    for c in [&mut first, &mut fourth, &mut fifth] {
        c.request();
    }
}

#[track_caller]
fn expect_503(addr: SocketAddr) {
    let (mut s, mut r) = raw_conn(addr);
    s.write_all(healthz_keep_alive()).unwrap();
    let resp = read_response(&mut r);
    assert_eq!(
        (resp.status, resp.body.as_str()),
        (503, "too many connections"),
        "{resp:?}"
    );
    assert!(
        resp.header("Retry-After")
            .is_some_and(|v| v.parse::<u64>().is_ok()),
        "{resp:?}"
    );
    assert_eq!(resp.header("Connection"), Some("close"), "{resp:?}");
    expect_eof(&mut r);
}

/// At the cap with no idle socket (one in the middle of a request, one
/// that has not sent anything yet), a new connection gets 503 and is
/// closed; once one goes idle, the next new connection takes its place.
#[test]
fn at_the_cap_with_none_idle_a_new_socket_gets_503() {
    let server = start_with(|b| b.configure(|c| c.max_http_connections = 2));
    let a = server.addr;
    let (mut busy, mut busy_r) = raw_conn(a);
    busy.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    let (mut other, _) = raw_conn(a);
    other.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    // Nothing tells when the server has read both beginnings: give it a
    // moment, else a socket it has not read yet still counts as idle.
    std::thread::sleep(Duration::from_millis(200));
    expect_503(a);
    expect_503(a);

    busy.write_all(b"Host: x\r\n\r\n").unwrap();
    let resp = read_response(&mut busy_r);
    assert_eq!(resp.status, 200);
    // Now idle: it makes room for the next one.
    let mut next = Idle::open(a);
    let mut buf = [0u8; 16];
    assert!(
        matches!(busy_r.read(&mut buf), Ok(0) | Err(_)),
        "the idle socket was closed"
    );
    next.request();
    assert_eq!(
        get(a, "/healthz").status,
        200,
        "an idle keep-alive socket made room again"
    );
}

/// A socket that has sent nothing yet is idle too (as nginx reuses a
/// connection still waiting for its first request): a flood of silent
/// sockets cannot lock everyone out for the request timeout.
#[test]
fn at_the_cap_silent_sockets_make_room_oldest_first() {
    let server = start_with(|b| b.configure(|c| c.max_http_connections = 3));
    let a = server.addr;
    let (_s1, mut r1) = raw_conn(a);
    std::thread::sleep(Duration::from_millis(50));
    let (_s2, mut r2) = raw_conn(a);
    let (_s3, _r3) = raw_conn(a);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(get(a, "/healthz").status, 200, "a silent socket made room");
    let mut buf = [0u8; 16];
    r1.get_ref().set_read_timeout(Some(WAIT)).unwrap();
    assert!(
        matches!(r1.read(&mut buf), Ok(0) | Err(_)),
        "the oldest silent socket was closed"
    );
    r2.get_ref()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    assert!(
        matches!(r2.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut),
        "the newer silent socket is still open"
    );
}

/// WebSockets do not count against the HTTP cap, and a socket leaves the
/// HTTP count when it upgrades: with a cap of 2, five WebSockets and two
/// keep-alive HTTP clients all fit.
#[test]
fn websockets_do_not_count_against_the_http_cap() {
    let server = start_with(|b| b.configure(|c| c.max_http_connections = 2));
    let a = server.addr;
    let mut sockets: Vec<Ws> = (0..5)
        .map(|i| connect_registered(a, &format!("u{i}"), "e"))
        .collect();
    let mut h1 = Idle::open(a);
    let mut h2 = Idle::open(a);
    h1.request();
    h2.request();
    for ws in &mut sockets {
        send_text(ws, r#"{"type": "unregister", "event": "e", "id": 1}"#);
        assert_eq!(read_text(ws), r#"{"id":1,"ok":true}"#);
    }
}

/// `wspush_http_sockets` counts the sockets that are not WebSocket.
#[test]
fn http_sockets_are_a_gauge() {
    let server = start();
    let a = server.addr;
    let _ws: Vec<Ws> = (0..3).map(|_| ws_connect(a, "/ws")).collect();
    let _idle: Vec<Idle> = (0..2).map(|_| Idle::open(a)).collect();
    // The two idle ones and the one asking.
    assert_eq!(metric(a, "wspush_http_sockets"), 3);
    assert_eq!(metric(a, "wspush_sockets"), 6);
}

/// `--max-http-connections 0` makes no sense: exit 2 with a one-line reason.
#[test]
fn zero_http_connections_is_refused_at_start() {
    let out = command(env!("CARGO_BIN_EXE_wspush"))
        .args(["--listen", "127.0.0.1:0", "--max-http-connections", "0"])
        .output()
        .expect("run wspush");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err, "wspush: --max-http-connections must be at least 1\n");
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// An idle keep-alive socket costs the server at most 8 KiB, even after a
/// request that needed a big buffer: a thousand sockets that each pushed
/// 32 KiB and stay open grow its resident memory by less than 8 MiB.
#[test]
fn an_idle_http_socket_costs_at_most_8_kib() {
    const SOCKETS: usize = 1000;
    let server = spawn_bin(&[]);
    let pid = server.child.id();
    let message = "x".repeat(32 << 10);
    let body = serde_json::json!({"userId": "nobody", "event": "e", "message": message}).to_string();
    let request = push_request(&body);
    let push_on = |s: &mut TcpStream, r: &mut BufReader<TcpStream>| {
        s.write_all(request.as_bytes()).unwrap();
        let resp = read_response(r);
        assert_eq!(
            (resp.status, resp.body.as_str()),
            (200, "message sent to 0 clients")
        );
    };
    // Warm up the allocator with the same work on sockets that then close.
    for _ in 0..50 {
        let (mut s, mut r) = raw_conn(server.addr);
        push_on(&mut s, &mut r);
    }
    std::thread::sleep(Duration::from_millis(100));
    let before = vm_rss_kib(pid);
    let mut open = Vec::with_capacity(SOCKETS);
    for _ in 0..SOCKETS {
        let (mut s, mut r) = raw_conn(server.addr);
        push_on(&mut s, &mut r);
        open.push((s, r));
    }
    let after = vm_rss_kib(pid);
    let per_socket = (after.saturating_sub(before)) * 1024 / SOCKETS as u64;
    eprintln!("VmRSS {before} KiB -> {after} KiB: {per_socket} bytes per idle socket");
    assert!(
        per_socket <= 8 * 1024,
        "{per_socket} bytes of resident memory per idle HTTP socket"
    );
    // They are all still open and usable.
    for (s, r) in open.iter_mut().step_by(100) {
        push_on(s, r);
    }
}
