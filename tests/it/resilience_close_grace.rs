//! A peer that never answers our close frame is dropped after a short grace
//! period, not kept forever.
use crate::common::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn masked_text(payload: &str) -> Vec<u8> {
    let p = payload.as_bytes();
    assert!(p.len() < 126);
    let mask = [7u8, 1, 9, 3];
    let mut f = vec![0x81, 0x80 | p.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(p.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[test]
fn unanswered_close_is_dropped_after_the_grace_period() {
    let server = start();
    let (mut s, _r) = raw_conn(server.addr);
    let mut req = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .to_vec();
    req.extend(masked_text(r#"{"token":"mute","event":"e","id":1}"#));
    s.write_all(&req).unwrap();
    eventually("registered", || {
        metric(server.addr, "wspush_registered_users") == 1
    });

    let r = post(server.addr, "/drop", r#"{"userId":"mute"}"#);
    assert_eq!(r.body, "dropped 1 clients");
    let dropped_at = Instant::now();
    // Unbound at once, though the socket waits for our (never sent) reply.
    assert_eq!(metric(server.addr, "wspush_connections"), 0);
    assert_eq!(metric(server.addr, "wspush_registered_users"), 0);

    // The client stays mute; the server must give up and close the TCP
    // connection by itself after its grace period.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut all = Vec::new();
    let res = s.read_to_end(&mut all);
    let waited = dropped_at.elapsed();
    assert!(res.is_ok(), "expected EOF from the server, got {res:?}");
    assert!(
        waited >= Duration::from_millis(1500) && waited <= Duration::from_secs(6),
        "closed after {waited:?}"
    );
    // What came before EOF ends with the close frame, code 4000.
    let close = all
        .windows(4)
        .rposition(|w| w[0] == 0x88 && w[2..4] == 4000u16.to_be_bytes());
    assert!(close.is_some(), "no close frame with 4000 in {all:?}");
}
