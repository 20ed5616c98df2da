//! SPEC §1, keep-alive and endings: client pings get pongs, server pings
//! every ping interval and drops peers silent for two intervals, the
//! register timeout closes with 4408, close handshakes work both ways, and
//! a connection is unbound as soon as it ends, however it ends.
use crate::common::*;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Bytes, Message};

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Reads until the server ends the TCP connection; panics on a timeout.
#[track_caller]
fn expect_connection_closed(ws: &mut Ws) {
    loop {
        match ws.read() {
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) | Err(tungstenite::Error::AlreadyClosed) => return,
            Err(tungstenite::Error::Io(e)) if !is_timeout(&e) => return,
            Err(tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            )) => return,
            Err(e) => panic!("expected the server to close the connection, got {e:?}"),
        }
    }
}

#[test]
fn client_ping_gets_a_pong_with_the_same_payload() {
    let server = start();
    let mut ws = connect_registered(server.addr, "alice", "news");
    ws.send(Message::Ping(Bytes::from_static(b"are you there?")))
        .unwrap();
    loop {
        match ws.read().expect("a pong") {
            Message::Pong(p) => {
                assert_eq!(&p[..], b"are you there?");
                break;
            }
            Message::Ping(_) => continue,
            other => panic!("expected a pong, got {other:?}"),
        }
    }
    // Also before any register.
    let mut fresh = ws_connect(server.addr, "/ws");
    fresh.send(Message::Ping(Bytes::from_static(b"x"))).unwrap();
    match fresh.read().expect("a pong") {
        Message::Pong(p) => assert_eq!(&p[..], b"x"),
        other => panic!("expected a pong, got {other:?}"),
    }
}

#[test]
fn client_close_gets_a_close_reply_and_the_count_drops() {
    let server = start();
    let addr = server.addr;
    let mut stays = connect_registered(addr, "bob", "news");
    let mut ws = connect_registered(addr, "alice", "news");
    assert_eq!(metric(addr, "wspush_connections"), 2);
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .unwrap();
    let mut reply = None;
    loop {
        match ws.read() {
            Ok(Message::Close(frame)) => reply = Some(frame),
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("expected a close reply, then the end; got {e:?}"),
        }
    }
    assert!(reply.is_some(), "the server answered the close frame");
    eventually("the closed connection is not counted", || {
        metric(addr, "wspush_connections") == 1
    });
    assert_eq!(push(addr, "alice", "news", "x").body, "message sent to 0 clients");
    assert_eq!(
        push(addr, "bob", "news", "still").body,
        "message sent to 1 clients"
    );
    assert_eq!(read_text(&mut stays), "still");
}

#[test]
fn client_close_without_a_code_gets_a_reply() {
    let server = start();
    let addr = server.addr;
    let mut ws = connect_registered(addr, "alice", "news");
    ws.close(None).unwrap();
    let mut replied = false;
    loop {
        match ws.read() {
            Ok(Message::Close(_)) => replied = true,
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("expected a close reply, then the end; got {e:?}"),
        }
    }
    assert!(replied);
    eventually("not counted", || metric(addr, "wspush_connections") == 0);
    assert_eq!(push(addr, "alice", "news", "x").body, "message sent to 0 clients");
}

#[test]
fn server_close_handshake_completes() {
    let server = start();
    let addr = server.addr;
    let mut ws = connect_registered(addr, "alice", "news");
    assert_eq!(
        post(addr, "/drop", r#"{"userId":"alice"}"#).body,
        "dropped 1 clients"
    );
    assert_eq!(expect_close(&mut ws), 4000);
    // Our reply goes out on the next read; the server then ends the TCP
    // connection promptly instead of leaving it open.
    let t0 = Instant::now();
    expect_connection_closed(&mut ws);
    assert!(t0.elapsed() < Duration::from_secs(4), "took {:?}", t0.elapsed());
    eventually("no socket left", || metric(addr, "wspush_sockets") <= 1);
}

#[test]
fn register_timeout_closes_unregistered_connections_with_4408() {
    let server = start_with(|b| b.configure(|c| c.register_timeout = Duration::from_millis(300)));
    let addr = server.addr;
    let mut registered = connect_registered(addr, "alice", "news");
    let t0 = Instant::now();
    let mut idle = ws_connect(addr, "/ws");
    // An error reply is not a register.
    let mut failed = ws_connect(addr, "/ws");
    send_text(&mut failed, r#"{"token":"","event":"news","id":1}"#);
    let reply: serde_json::Value = serde_json::from_str(&read_text(&mut failed)).unwrap();
    assert_eq!(reply["code"], serde_json::json!(4400));

    assert_eq!(expect_close(&mut idle), 4408);
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "closed too early: {waited:?}"
    );
    assert_eq!(expect_close(&mut failed), 4408);

    eventually("the idle connections are not counted", || {
        metric(addr, "wspush_connections") == 1
    });
    // The registered one outlives the timeout several times over.
    thread::sleep(Duration::from_millis(700).saturating_sub(t0.elapsed()));
    let r = push(addr, "alice", "news", "still open");
    assert_eq!(r.body, "message sent to 1 clients");
    assert_eq!(read_text(&mut registered), "still open");
    expect_silence(&mut registered, Duration::from_millis(400));
}

#[test]
fn server_sends_pings_every_interval() {
    let server = start_with(|b| b.configure(|c| c.ping_interval = Duration::from_millis(200)));
    let mut ws = connect_registered(server.addr, "alice", "news");
    let t0 = Instant::now();
    let mut pings = 0;
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while t0.elapsed() < Duration::from_secs(1) && pings < 2 {
        match ws.read() {
            Ok(Message::Ping(_)) => pings += 1,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {}
            Err(e) => panic!("connection failed: {e:?}"),
        }
    }
    assert!(pings >= 1, "no server ping within 1 s");
    // Answering them (tungstenite does) keeps the connection alive.
    ws.get_mut().set_read_timeout(Some(WAIT)).unwrap();
    let r = push(server.addr, "alice", "news", "alive");
    assert_eq!(r.body, "message sent to 1 clients");
    assert_eq!(read_text(&mut ws), "alive");
}

/// A raw TCP client that completes the upgrade and then neither reads nor sends.
fn stalled_client(addr: SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let (mut s, mut r) = raw_conn(addr);
    s.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(read_response(&mut r).status, 101);
    (s, r)
}

/// Reads `ws` on a thread (so its pongs go out) and forwards texts.
fn keep_reading(mut ws: Ws) -> (mpsc::Receiver<String>, Arc<AtomicBool>, thread::JoinHandle<Ws>) {
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let t = thread::spawn(move || {
        while !stop2.load(Ordering::Relaxed) {
            match ws.read() {
                Ok(Message::Text(t)) => {
                    let _ = tx.send(t.as_str().to_string());
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {}
                Err(e) => {
                    let _ = tx.send(format!("connection failed: {e:?}"));
                    break;
                }
            }
        }
        ws
    });
    (rx, stop, t)
}

#[test]
fn silent_peer_is_dropped_while_a_healthy_one_keeps_receiving() {
    let server = start_with(|b| b.configure(|c| c.ping_interval = Duration::from_millis(200)));
    let addr = server.addr;
    let healthy = connect_registered(addr, "healthy", "news");
    let (rx, stop, reader) = keep_reading(healthy);

    let (_s, mut stalled) = stalled_client(addr);
    let t0 = Instant::now();
    assert_eq!(metric(addr, "wspush_connections"), 2);
    eventually("the silent peer is dropped", || {
        metric(addr, "wspush_connections") == 1
    });
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(250),
        "dropped before two intervals: {took:?}"
    );
    assert!(took <= Duration::from_secs(2), "silent peer kept for {took:?}");

    // Its socket really is closed: reading reaches the end (after any pings).
    stalled.get_mut().set_read_timeout(Some(WAIT)).unwrap();
    let mut rest = Vec::new();
    match stalled.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) => assert!(!is_timeout(&e), "socket still open: {e}"),
    }

    // The healthy client, answering pings, outlives many intervals.
    for i in 0..3 {
        let m = format!("push {i}");
        let r = push(addr, "healthy", "news", &m);
        assert_eq!(r.body, "message sent to 1 clients");
        assert_eq!(rx.recv_timeout(WAIT).expect("healthy client gets it"), m);
        thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(metric(addr, "wspush_connections"), 1);
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
}

#[test]
fn abrupt_disconnect_unbinds() {
    let server = start();
    let addr = server.addr;
    let ws = connect_registered(addr, "alice", "news");
    assert_eq!(metric(addr, "wspush_connections"), 1);
    drop(ws); // FIN, no close frame
    eventually("alice's connection is unbound", || {
        push(addr, "alice", "news", "anyone?").body == "message sent to 0 clients"
    });
    eventually("not counted", || metric(addr, "wspush_connections") == 0);
    assert_eq!(metric(addr, "wspush_registered_users"), 0);
    assert_eq!(metric(addr, "wspush_subscriptions"), 0);
}

#[test]
fn abrupt_disconnect_with_unread_data_unbinds() {
    let server = start();
    let addr = server.addr;
    let mut ws = connect_registered(addr, "alice", "news");
    let mut other = connect_registered(addr, "bob", "news");
    // Leave pushed data unread, so closing the socket sends a reset.
    for _ in 0..3 {
        assert_eq!(
            push(addr, "alice", "news", "unread").body,
            "message sent to 1 clients"
        );
    }
    thread::sleep(Duration::from_millis(100));
    ws.get_mut().shutdown(std::net::Shutdown::Both).ok();
    drop(ws);
    eventually("alice's connection is unbound", || {
        push(addr, "alice", "news", "anyone?").body == "message sent to 0 clients"
    });
    eventually("not counted", || metric(addr, "wspush_connections") == 1);
    let r = push(addr, "bob", "news", "fine");
    assert_eq!(r.body, "message sent to 1 clients");
    assert_eq!(read_text(&mut other), "fine");
}
