//! SPEC §2: slow or stalled request senders are timed out without
//! blocking anyone else; idle keep-alive connections are closed after the
//! request timeout; a client that never reads its responses does not hold
//! up other clients.
use crate::common::*;

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_millis(300);
/// Closing before this much of the timeout passed would be premature.
const NOT_BEFORE: Duration = Duration::from_millis(200);
/// Generous bound for "closed after ~0.3 s" on a busy machine.
const CLOSED_WITHIN: Duration = Duration::from_millis(1500);
/// Generous bound for "answered promptly".
const PROMPTLY: Duration = Duration::from_secs(1);

fn start_short() -> TestServer {
    start_with(|b| b.configure(|c| c.request_timeout = TIMEOUT))
}

/// Reads until the server closes; returns what arrived (a reset counts as
/// a close). Fails if nothing closes the connection within `WAIT`.
#[track_caller]
fn read_until_closed(r: &mut BufReader<TcpStream>) -> Vec<u8> {
    let mut got = Vec::new();
    match r.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "connection not closed by the server: {e} (got {:?})",
            String::from_utf8_lossy(&got)
        ),
    }
    got
}

/// A stalled request is answered with 408 or simply closed; nothing else.
#[track_caller]
fn assert_timed_out(got: &[u8]) {
    let text = String::from_utf8_lossy(got);
    assert!(
        got.is_empty() || text.starts_with("HTTP/1.1 408 "),
        "unexpected answer to a stalled request: {text:?}"
    );
}

#[track_caller]
fn timed_push(addr: SocketAddr, ws: &mut Ws, msg: &str) {
    let t = Instant::now();
    let r = push(addr, "aaa", "topic1", msg);
    let took = t.elapsed();
    assert_eq!((r.status, r.body.as_str()), (200, "message sent to 1 clients"));
    assert!(took < PROMPTLY, "push took {took:?}");
    assert_eq!(read_text(ws), msg);
}

#[test]
fn half_sent_request_is_closed_while_others_are_served() {
    let server = start_short();
    let a = server.addr;
    let mut ws = connect_registered(a, "aaa", "topic1");

    // Stalled in the head, and stalled in the body.
    let (mut s1, mut r1) = raw_conn(a);
    let (mut s2, mut r2) = raw_conn(a);
    let t0 = Instant::now();
    s1.write_all(format!("POST /push HTTP/1.1\r\nHost: {a}\r\nContent-Le").as_bytes())
        .unwrap();
    s2.write_all(
        format!("POST /push HTTP/1.1\r\nHost: {a}\r\nContent-Length: 60\r\n\r\n{{\"userId\":\"aaa\"")
            .as_bytes(),
    )
    .unwrap();

    // Meanwhile another client pushes without waiting for them.
    timed_push(a, &mut ws, "while others stall");

    let got = read_until_closed(&mut r1);
    let closed_after = t0.elapsed();
    assert_timed_out(&got);
    assert!(
        (NOT_BEFORE..CLOSED_WITHIN).contains(&closed_after),
        "stalled head closed after {closed_after:?}"
    );
    let got = read_until_closed(&mut r2);
    assert_timed_out(&got);
    assert!(
        t0.elapsed() < CLOSED_WITHIN,
        "stalled body closed after {:?}",
        t0.elapsed()
    );

    // The half body was never delivered.
    timed_push(a, &mut ws, "after the stalls");
}

#[test]
fn trickling_request_is_timed_out_even_though_bytes_keep_coming() {
    let server = start_short();
    let a = server.addr;
    let mut ws = connect_registered(a, "aaa", "topic1");

    let (s, mut r) = raw_conn(a);
    s.set_nodelay(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let trickler = {
        let mut s = s.try_clone().unwrap();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let head = format!("POST /push HTTP/1.1\r\nHost: {a}\r\n");
            let mut bytes = head.into_bytes();
            // An endless stream of header bytes, one every 20 ms.
            bytes.extend(std::iter::repeat_n(b'x', 1000));
            for b in bytes {
                if stop.load(Ordering::Relaxed) || s.write_all(&[b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let t0 = Instant::now();
    timed_push(a, &mut ws, "while one trickles");
    let got = read_until_closed(&mut r);
    let took = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = s.shutdown(Shutdown::Both);
    trickler.join().unwrap();
    assert_timed_out(&got);
    assert!(took < CLOSED_WITHIN, "trickler closed after {took:?}");
    timed_push(a, &mut ws, "after the trickler");
}

#[test]
fn idle_keep_alive_connection_is_closed_after_the_timeout() {
    let server = start_short();
    let a = server.addr;
    let mut ws = connect_registered(a, "aaa", "topic1");

    let (mut s, mut r) = raw_conn(a);
    s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {a}\r\n\r\n").as_bytes())
        .unwrap();
    let resp = read_response(&mut r);
    assert_eq!((resp.status, resp.body.as_str()), (200, "ok"));
    let t0 = Instant::now();
    let got = read_until_closed(&mut r);
    let took = t0.elapsed();
    assert!(
        got.is_empty(),
        "an idle connection got {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        (NOT_BEFORE..CLOSED_WITHIN).contains(&took),
        "idle connection closed after {took:?}"
    );

    // A connection that never sends a byte is closed too.
    let (_s, mut r) = raw_conn(a);
    let t0 = Instant::now();
    let got = read_until_closed(&mut r);
    assert!(
        got.is_empty(),
        "a silent connection got {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        t0.elapsed() < CLOSED_WITHIN,
        "silent connection closed after {:?}",
        t0.elapsed()
    );

    timed_push(a, &mut ws, "after idle closes");
}

#[test]
fn keep_alive_connection_in_use_is_not_cut_by_the_timeout() {
    // The timeout bounds each wait, not the connection's life.
    let server = start_with(|b| b.configure(|c| c.request_timeout = Duration::from_millis(600)));
    let a = server.addr;
    let (mut s, mut r) = raw_conn(a);
    let t0 = Instant::now();
    let mut n = 0;
    while t0.elapsed() < Duration::from_millis(1500) {
        s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {a}\r\n\r\n").as_bytes())
            .unwrap();
        let resp = read_response(&mut r);
        assert_eq!((resp.status, resp.body.as_str()), (200, "ok"), "request {n}");
        n += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(n >= 5);
}

#[test]
fn client_that_never_reads_does_not_block_others() {
    // A long timeout, so the non-reader stays stuck for the whole check.
    let server = start_with(|b| b.configure(|c| c.request_timeout = Duration::from_secs(5)));
    let a = server.addr;
    let mut ws = connect_registered(a, "aaa", "topic1");

    let flood = TcpStream::connect(a).unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let mut s = flood.try_clone().unwrap();
        let written = written.clone();
        std::thread::spawn(move || {
            let body = r#"{"userId":"nobody","event":"topic1","message":"flood"}"#;
            let one = format!(
                "POST /push HTTP/1.1\r\nHost: {a}\r\nContent-Length: {}\r\n\r\n{body}GET /healthz HTTP/1.1\r\n\r\n",
                body.len()
            );
            let batch = one.repeat(200);
            // Blocks once every buffer is full; ends when the socket is shut.
            while s.write_all(batch.as_bytes()).is_ok() {
                written.fetch_add(batch.len(), Ordering::Relaxed);
            }
        })
    };

    // Wait until the flood is stuck: nothing more written for a while.
    let deadline = Instant::now() + WAIT;
    let mut last = 0;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = written.load(Ordering::Relaxed);
        if now == last && now > 0 {
            break;
        }
        last = now;
        assert!(
            Instant::now() < deadline,
            "flood never blocked ({now} bytes written)"
        );
    }

    // Others are served promptly, both HTTP and WebSocket delivery.
    for i in 0..5 {
        timed_push(a, &mut ws, &format!("despite the flood {i}"));
    }
    let t = Instant::now();
    assert_eq!(get(a, "/healthz").body, "ok");
    assert!(t.elapsed() < PROMPTLY);

    let _ = flood.shutdown(Shutdown::Both);
    writer.join().unwrap();
    drop(flood);
    timed_push(a, &mut ws, "after the flood");
}
