//! SPEC §1, register: `{"token": T, "event": E}` binds the connection to a
//! user and subscribes it; more events add up; the same event twice is a
//! no-op; frames that arrive with the upgrade request are not lost.
use crate::common::*;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn register_then_push_arrives() {
    let server = start();
    let mut ws = connect_registered(server.addr, "alice", "news");
    let r = push(server.addr, "alice", "news", "hello");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "message sent to 1 clients");
    assert_eq!(read_text(&mut ws), "hello");
}

#[test]
fn seed_register_without_id_gets_no_reply_but_binds() {
    let server = start();
    let mut ws = ws_connect(server.addr, "/ws");
    send_text(&mut ws, r#"{"token":"alice","event":"news"}"#);
    eventually("alice registered", || {
        push(server.addr, "alice", "news", "probe").body == "message sent to 1 clients"
    });
    // The first text the client ever sees is the pushed message, not an ack.
    assert_eq!(read_text(&mut ws), "probe");
}

#[test]
fn second_event_adds_to_the_same_connection() {
    let server = start();
    let mut ws = connect_registered(server.addr, "alice", "e1");
    register(&mut ws, "alice", "e2");

    let r = push(server.addr, "alice", "e1", "one");
    assert_eq!(r.body, "message sent to 1 clients");
    assert_eq!(read_text(&mut ws), "one");

    let r = push(server.addr, "alice", "e2", "two");
    assert_eq!(r.body, "message sent to 1 clients");
    assert_eq!(read_text(&mut ws), "two");

    let r = push(server.addr, "alice", "e3", "three");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "message sent to 0 clients");
    expect_silence(&mut ws, Duration::from_millis(300));

    // Still open and subscribed after all that.
    let r = push(server.addr, "alice", "e1", "again");
    assert_eq!(r.body, "message sent to 1 clients");
    assert_eq!(read_text(&mut ws), "again");
}

#[test]
fn registering_the_same_event_twice_is_a_no_op() {
    let server = start();
    let mut ws = connect_registered(server.addr, "alice", "news");
    register(&mut ws, "alice", "news");
    // And once more in the seed's format, without an id.
    send_text(&mut ws, r#"{"token":"alice","event":"news"}"#);
    register(&mut ws, "alice", "news");

    let r = push(server.addr, "alice", "news", "once");
    assert_eq!(r.body, "message sent to 1 clients");
    assert_eq!(read_text(&mut ws), "once");
    expect_silence(&mut ws, Duration::from_millis(300));
    assert_eq!(metric(server.addr, "wspush_subscriptions"), 1);
    assert_eq!(metric(server.addr, "wspush_registered_users"), 1);
}

#[test]
fn every_connection_of_a_user_gets_the_message() {
    let server = start();
    const N: usize = 4;
    let mut clients: Vec<Ws> = (0..N)
        .map(|_| connect_registered(server.addr, "alice", "news"))
        .collect();
    // Someone else on the same event must not get alice's message.
    let mut bob = connect_registered(server.addr, "bob", "news");

    let r = push(server.addr, "alice", "news", "for alice");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, format!("message sent to {N} clients"));
    for ws in &mut clients {
        assert_eq!(read_text(ws), "for alice");
    }
    expect_silence(&mut bob, Duration::from_millis(200));
    assert_eq!(metric(server.addr, "wspush_connections"), N as u64 + 1);
    assert_eq!(metric(server.addr, "wspush_registered_users"), 2);
}

/// A client frame, masked as RFC 6455 requires from clients.
fn masked_text_frame(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    assert!(payload.len() < 126, "short frames only");
    let mut f = vec![0x81, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Reads one unmasked, unfragmented server text frame.
fn read_server_text(r: &mut impl Read) -> String {
    let mut h = [0u8; 2];
    r.read_exact(&mut h).expect("frame header");
    assert_eq!(h[0], 0x81, "a final text frame");
    assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            r.read_exact(&mut l).unwrap();
            u16::from_be_bytes(l) as usize
        }
        127 => panic!("unexpectedly long frame"),
        n => n as usize,
    };
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).expect("frame payload");
    String::from_utf8(body).expect("utf-8 text")
}

#[test]
fn a_frame_in_the_same_write_as_the_upgrade_is_processed() {
    let server = start();
    let addr = server.addr;
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_nodelay(true).unwrap();
    let mut bytes = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes();
    bytes.extend(masked_text_frame(
        br#"{"token":"t","event":"e","id":1}"#,
        [0x37, 0xfa, 0x21, 0x3d],
    ));
    s.write_all(&bytes).unwrap();

    let mut r = BufReader::new(s.try_clone().unwrap());
    let resp = read_response(&mut r);
    assert_eq!(resp.status, 101);
    assert_eq!(
        resp.header("Sec-WebSocket-Accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    let ack = read_server_text(&mut r);
    let v: serde_json::Value = serde_json::from_str(&ack).expect("ack is JSON");
    assert_eq!(v, serde_json::json!({"id": 1, "ok": true}));

    // The register really bound the connection.
    let p = push(addr, "t", "e", "after early frame");
    assert_eq!(p.body, "message sent to 1 clients");
    assert_eq!(read_server_text(&mut r), "after early frame");
}

/// Opens a raw connection and completes the upgrade.
fn raw_upgrade(addr: std::net::SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let (mut s, mut r) = raw_conn(addr);
    s.set_nodelay(true).unwrap();
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

#[test]
fn several_frames_in_one_write_are_all_processed() {
    let server = start();
    let (mut s, mut r) = raw_upgrade(server.addr);
    let mut bytes = masked_text_frame(br#"{"token":"t","event":"e1","id":1}"#, [1, 2, 3, 4]);
    bytes.extend(masked_text_frame(br#"{"token":"t","event":"e2"}"#, [5, 6, 7, 8]));
    bytes.extend(masked_text_frame(
        br#"{"token":"t","event":"e3","id":3}"#,
        [9, 10, 11, 12],
    ));
    s.write_all(&bytes).unwrap();
    for id in [1, 3] {
        let v: serde_json::Value = serde_json::from_str(&read_server_text(&mut r)).unwrap();
        assert_eq!(v, serde_json::json!({"id": id, "ok": true}));
    }
    for e in ["e1", "e2", "e3"] {
        assert_eq!(push(server.addr, "t", e, e).body, "message sent to 1 clients");
        assert_eq!(read_server_text(&mut r), e);
    }
}

#[test]
fn a_frame_trickling_in_byte_by_byte_is_processed() {
    let server = start();
    let (mut s, mut r) = raw_upgrade(server.addr);
    let frame = masked_text_frame(
        br#"{"token":"t","event":"e","id":"slow"}"#,
        [0xde, 0xad, 0xbe, 0xef],
    );
    for b in &frame {
        s.write_all(std::slice::from_ref(b)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let v: serde_json::Value = serde_json::from_str(&read_server_text(&mut r)).unwrap();
    assert_eq!(v, serde_json::json!({"id": "slow", "ok": true}));
}

#[test]
fn seed_field_names_are_case_insensitive() {
    // Go's encoding/json matched {"Token": ...} too; the seed's clients may rely on it.
    let server = start();
    let mut ws = ws_connect(server.addr, "/ws");
    send_text(&mut ws, r#"{"Token":"alice","EVENT":"news","id":1}"#);
    let v: serde_json::Value = serde_json::from_str(&read_text(&mut ws)).unwrap();
    assert_eq!(v, serde_json::json!({"id": 1, "ok": true}));
    assert_eq!(
        push(server.addr, "alice", "news", "m").body,
        "message sent to 1 clients"
    );
    assert_eq!(read_text(&mut ws), "m");
}
