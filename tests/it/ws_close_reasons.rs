//! SPEC §4: every close code of §1 carries a non-empty reason. Each close
//! a client can trigger, with the reason it gets (the table of
//! `ws::close`, or the refusal's own words).
use crate::common::*;
use crate::ws_hostile::client_frame;
use std::io::Write;
use std::time::Duration;

/// Writes raw bytes on a client's socket, under tungstenite's feet.
fn write_raw(ws: &mut Ws, bytes: &[u8]) {
    ws.get_mut().write_all(bytes).expect("raw write");
}

#[track_caller]
fn expect_reason(ws: &mut Ws, code: u16, reason: &str) {
    let (c, r) = expect_close_frame(ws);
    assert!(!r.is_empty(), "close {c} without a reason");
    assert_eq!((c, r.as_str()), (code, reason));
}

#[test]
fn every_close_a_client_can_trigger_says_why() {
    let server = start_with(|b| {
        b.configure(|c| {
            c.max_events = 1;
            c.register_timeout = Duration::from_millis(300);
        })
    });
    let a = server.addr;

    // 1002: an unmasked client frame.
    let mut ws = connect_registered(a, "u1", "e");
    write_raw(&mut ws, &[0x81, 0x02, b'h', b'i']);
    expect_reason(&mut ws, 1002, "protocol error");

    // 1007: a text frame that is not UTF-8.
    let mut ws = connect_registered(a, "u2", "e");
    write_raw(&mut ws, &client_frame(0x81, &[0xff, 0xfe, 0xfd]));
    expect_reason(&mut ws, 1007, "invalid UTF-8 in a text frame");

    // 1009: over --max-message-bytes.
    let mut ws = connect_registered(a, "u3", "e");
    send_text(&mut ws, &"x".repeat(5000));
    expect_reason(&mut ws, 1009, "message too big");

    // 4400: not a command; the parser names the problem.
    let mut ws = ws_connect(a, "/ws");
    send_text(&mut ws, "not json");
    expect_reason(&mut ws, 4400, "command is not JSON");

    // 4403: another user's token.
    let mut ws = connect_registered(a, "u4", "e");
    send_text(&mut ws, r#"{"token":"someone else","event":"e"}"#);
    expect_reason(&mut ws, 4403, "token belongs to another user");

    // 4429: over --max-events.
    let mut ws = connect_registered(a, "u5", "e");
    send_text(&mut ws, r#"{"token":"u5","event":"f"}"#);
    expect_reason(&mut ws, 4429, "too many events");

    // 4408: no register in time.
    let mut ws = ws_connect(a, "/ws");
    expect_reason(&mut ws, 4408, "register timeout");

    // 1001: shutdown.
    let mut ws = connect_registered(a, "u6", "e");
    server.handle.shutdown();
    expect_reason(&mut ws, 1001, "server shutting down");
}
