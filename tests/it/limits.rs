//! SPEC §1 limits: the connection cap (503 with `Retry-After` over it) and
//! the outbound backlog cap (a client that stops reading is closed with 4008
//! instead of making the server grow), while others are served as usual.
use crate::common::*;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::Message;

fn upgrade_request(a: SocketAddr) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {a}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

#[track_caller]
fn assert_refused_503(a: SocketAddr) {
    let r = raw_request(a, upgrade_request(a).as_bytes());
    assert_eq!(r.status, 503, "{r:?}");
    let retry = r
        .header("Retry-After")
        .unwrap_or_else(|| panic!("503 without Retry-After: {r:?}"));
    assert!(retry.parse::<u64>().is_ok(), "Retry-After {retry:?}");

    // The same through a real client library.
    let stream = TcpStream::connect(a).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    match tungstenite::client(format!("ws://{a}/ws"), stream) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            assert_eq!(resp.status().as_u16(), 503);
            assert!(resp.headers().contains_key("Retry-After"), "{resp:?}");
        }
        Err(e) => panic!("expected an HTTP 503, got {e:?}"),
        Ok(_) => panic!("a connection over the limit was accepted"),
    }
}

/// Sends a close and reads until the session ends.
fn close_cleanly(ws: &mut Ws) {
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => return,
            Err(e) => panic!("closing: {e:?}"),
        }
    }
}

#[test]
fn over_max_connections_the_upgrade_gets_503_with_retry_after() {
    let server = start_with(|b| b.configure(|c| c.max_connections = 2));
    let a = server.addr;
    let mut first = connect_registered(a, "alice", "news");
    let _second = ws_connect(a, "/ws");
    assert_eq!(metric(a, "wspush_connections"), 2);

    assert_refused_503(a);
    assert_refused_503(a);
    assert_eq!(metric(a, "wspush_connections"), 2);

    // HTTP and the accepted clients are unaffected.
    assert_eq!(get(a, "/healthz").body, "ok");
    assert_eq!(
        push(a, "alice", "news", "still").body,
        "message sent to 1 clients"
    );
    assert_eq!(read_text(&mut first), "still");

    // One leaves: there is room for exactly one more.
    close_cleanly(&mut first);
    eventually("a slot frees up", || metric(a, "wspush_connections") == 1);
    let mut third = connect_registered(a, "bob", "news");
    assert_eq!(
        push(a, "bob", "news", "welcome").body,
        "message sent to 1 clients"
    );
    assert_eq!(read_text(&mut third), "welcome");
    assert_eq!(metric(a, "wspush_connections"), 2);
    assert_refused_503(a);
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// A WebSocket whose socket has a small receive buffer, set before connecting
/// so the window the server sees stays small.
fn small_window_ws(a: SocketAddr) -> Ws {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect(&a.into()).unwrap();
    let stream: TcpStream = s.into();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_nodelay(true).unwrap();
    let (ws, _) = tungstenite::client(format!("ws://{a}/ws"), stream).expect("handshake");
    ws
}

const FLOOD: usize = 400;
const MSG_BYTES: usize = 16 * 1024;

fn flood_message(i: usize) -> String {
    let mut m = format!("{i:05}:");
    m.extend(std::iter::repeat_n('x', MSG_BYTES - m.len()));
    m
}

fn index_of(msg: &str) -> usize {
    assert_eq!(msg.len(), MSG_BYTES, "message of the wrong size");
    msg[..5].parse().expect("indexed message")
}

#[test]
fn a_client_that_stops_reading_is_dropped_with_4008_and_others_get_everything() {
    let server = start_with(|b| b.configure(|c| c.max_backlog_bytes = 65536));
    let a = server.addr;

    let mut slow = small_window_ws(a);
    register(&mut slow, "slow", "feed");
    let healthy = connect_registered(a, "healthy", "feed");
    assert_eq!(metric(a, "wspush_connections"), 2);

    // The healthy client reads in its own thread; the pusher keeps at most a
    // few messages ahead of it, so only the slow client can fall behind.
    let received = Arc::new(AtomicUsize::new(0));
    let reader = {
        let received = Arc::clone(&received);
        let mut ws = healthy;
        std::thread::spawn(move || {
            for i in 0..FLOOD {
                let m = read_text(&mut ws);
                assert_eq!(index_of(&m), i, "healthy client: out of order");
                assert_eq!(m, flood_message(i));
                received.store(i + 1, Ordering::Release);
            }
            ws
        })
    };

    let rss_before = vm_rss_kib();
    let mut dropped_at = None;
    for i in 0..FLOOD {
        let deadline = Instant::now() + WAIT;
        while received.load(Ordering::Acquire) + 3 < i {
            assert!(Instant::now() < deadline, "healthy client stalled at {i}");
            assert!(!reader.is_finished(), "healthy reader died");
            std::thread::yield_now();
        }
        let msg = flood_message(i);
        let n_slow = server.handle.push("slow", "feed", &msg).unwrap();
        match (n_slow, dropped_at) {
            (1, None) => {}
            (0, None) => dropped_at = Some(i),
            (0, Some(_)) => {}
            (n, d) => panic!("push {i} to the slow client counted {n} (dropped at {d:?})"),
        }
        assert_eq!(
            server.handle.push("healthy", "feed", &msg).unwrap(),
            1,
            "healthy push {i}"
        );
    }
    let rss_after = vm_rss_kib();
    let dropped_at = dropped_at.expect("the slow client was never dropped");
    assert!(dropped_at > 0, "dropped before anything was queued");

    let mut healthy = reader.join().expect("healthy reader");
    assert_eq!(received.load(Ordering::Acquire), FLOOD);
    expect_silence(&mut healthy, Duration::from_millis(50));

    assert_eq!(metric(a, "wspush_slow_consumer_drops_total"), 1);
    assert_eq!(metric(a, "wspush_connections"), 1);
    assert_eq!(metric(a, "wspush_registered_users"), 1);
    assert_eq!(push(a, "slow", "feed", "gone").body, "message sent to 0 clients");
    assert_eq!(
        push(a, "healthy", "feed", "after").body,
        "message sent to 1 clients"
    );
    assert_eq!(read_text(&mut healthy), "after");

    let grown_mib = rss_after.saturating_sub(rss_before) as f64 / 1024.0;
    assert!(
        grown_mib < 32.0,
        "RSS grew by {grown_mib:.1} MiB during the flood ({rss_before} kB -> {rss_after} kB)"
    );

    // The slow client, reading now: an in-order prefix of what it was
    // counted for, then the 4008 close (or the connection just ends).
    let mut next = 0;
    let end = loop {
        match slow.read() {
            Ok(Message::Text(t)) => {
                assert_eq!(index_of(t.as_str()), next, "slow client: out of order");
                next += 1;
            }
            Ok(Message::Close(frame)) => break format!("close {:?}", frame.map(|f| u16::from(f.code))),
            Ok(_) => {}
            Err(e) => break format!("error {e}"),
        }
    };
    assert!(next <= dropped_at, "got {next} messages, counted {dropped_at}");
    if end.starts_with("close") {
        // A clean close comes after everything queued before it.
        assert_eq!(next, dropped_at, "messages lost before the close frame");
    }
    assert!(
        end == "close Some(4008)" || end.starts_with("error"),
        "slow client ended with {end}"
    );
    // Either way the server ends the TCP connection: after our close reply
    // (sent by tungstenite on flush), the stream reaches its end.
    let _ = slow.flush();
    loop {
        match slow.read() {
            Ok(Message::Text(t)) => panic!("text after the close: {} bytes", t.len()),
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("the server kept the slow client's socket open")
            }
            Err(_) => break,
        }
    }
}
