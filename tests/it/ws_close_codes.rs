//! SPEC §1, close codes: a refused command without an `id` closes the
//! connection with its code (4400, 4403, 4429, 1009), and nothing else on
//! the server is affected: other clients still get pushes, and the
//! connection count drops back.
use crate::common::*;
use std::net::SocketAddr;
use tungstenite::Message;

/// A bystander on the same server: registered as `bystander` on `news`.
struct Bystander {
    ws: Ws,
}

impl Bystander {
    fn new(addr: SocketAddr) -> Bystander {
        Bystander {
            ws: connect_registered(addr, "bystander", "news"),
        }
    }

    #[track_caller]
    fn still_receives(&mut self, addr: SocketAddr) {
        let r = push(addr, "bystander", "news", "unaffected");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "message sent to 1 clients");
        assert_eq!(read_text(&mut self.ws), "unaffected");
    }
}

/// Runs `misbehave` on a fresh connection next to a bystander and checks
/// the close code and that the rest of the server is fine.
#[track_caller]
fn check_close(
    configure: impl FnOnce(&mut wspush::Config),
    misbehave: impl FnOnce(SocketAddr, &mut Ws),
    expected: u16,
) {
    let server = start_with(|b| b.configure(configure));
    let addr = server.addr;
    let mut bystander = Bystander::new(addr);
    let mut ws = ws_connect(addr, "/ws");
    eventually("two connections counted", || {
        metric(addr, "wspush_connections") == 2
    });
    misbehave(addr, &mut ws);
    assert_eq!(expect_close(&mut ws), expected);
    drop(ws);
    bystander.still_receives(addr);
    eventually("the closed connection is not counted", || {
        metric(addr, "wspush_connections") == 1
    });
    assert_eq!(metric(addr, "wspush_registered_users"), 1);
    assert_eq!(metric(addr, "wspush_subscriptions"), 1);
    // And the server still takes new clients.
    let mut late = connect_registered(addr, "late", "news");
    let r = push(addr, "late", "news", "welcome");
    assert_eq!(r.body, "message sent to 1 clients");
    assert_eq!(read_text(&mut late), "welcome");
}

fn defaults(_: &mut wspush::Config) {}

#[test]
fn not_json_closes_4400() {
    check_close(defaults, |_, ws| send_text(ws, "hello there"), 4400);
}

#[test]
fn empty_text_closes_4400() {
    check_close(defaults, |_, ws| send_text(ws, ""), 4400);
}

#[test]
fn json_array_closes_4400() {
    check_close(
        defaults,
        |_, ws| send_text(ws, r#"[{"token":"u","event":"e"}]"#),
        4400,
    );
}

#[test]
fn json_string_closes_4400() {
    check_close(defaults, |_, ws| send_text(ws, r#""token""#), 4400);
}

#[test]
fn empty_token_closes_4400() {
    check_close(
        defaults,
        |_, ws| send_text(ws, r#"{"token":"","event":"e"}"#),
        4400,
    );
}

#[test]
fn missing_event_closes_4400() {
    check_close(defaults, |_, ws| send_text(ws, r#"{"token":"u"}"#), 4400);
}

#[test]
fn unknown_type_closes_4400() {
    check_close(
        defaults,
        |_, ws| send_text(ws, r#"{"type":"subscribe","event":"e"}"#),
        4400,
    );
}

#[test]
fn binary_frame_closes_4400() {
    check_close(
        defaults,
        |_, ws| {
            ws.send(Message::binary(br#"{"token":"u","event":"e"}"#.to_vec()))
                .expect("send binary")
        },
        4400,
    );
}

#[test]
fn malformed_after_register_closes_4400_and_unbinds() {
    check_close(
        defaults,
        |_, ws| {
            register(ws, "victim", "news");
            send_text(ws, "{not json");
        },
        4400,
    );
}

#[test]
fn other_users_token_closes_4403() {
    let server = start();
    let addr = server.addr;
    let mut bystander = Bystander::new(addr);
    let mut ws = connect_registered(addr, "alice", "news");
    send_text(&mut ws, r#"{"token":"bob","event":"news"}"#);
    assert_eq!(expect_close(&mut ws), 4403);
    // Unbound at once: neither alice nor bob reaches it.
    assert_eq!(push(addr, "alice", "news", "x").body, "message sent to 0 clients");
    assert_eq!(push(addr, "bob", "news", "x").body, "message sent to 0 clients");
    drop(ws);
    bystander.still_receives(addr);
    eventually("the closed connection is not counted", || {
        metric(addr, "wspush_connections") == 1
    });
}

#[test]
fn other_users_token_closes_4403_via_helper() {
    check_close(
        defaults,
        |_, ws| {
            register(ws, "alice", "news");
            send_text(ws, r#"{"token":"bob","event":"other"}"#);
        },
        4403,
    );
}

#[test]
fn over_the_events_limit_closes_4429() {
    check_close(
        |c| c.max_events = 2,
        |_, ws| {
            register(ws, "alice", "e1");
            register(ws, "alice", "e2");
            send_text(ws, r#"{"token":"alice","event":"e3"}"#);
        },
        4429,
    );
}

#[test]
fn over_the_events_limit_unbinds_at_once() {
    let server = start_with(|b| b.configure(|c| c.max_events = 2));
    let addr = server.addr;
    let mut ws = connect_registered(addr, "alice", "e1");
    register(&mut ws, "alice", "e2");
    send_text(&mut ws, r#"{"token":"alice","event":"e3"}"#);
    assert_eq!(expect_close(&mut ws), 4429);
    assert_eq!(push(addr, "alice", "e1", "x").body, "message sent to 0 clients");
    assert_eq!(push(addr, "alice", "e3", "x").body, "message sent to 0 clients");
}

#[test]
fn message_over_the_size_limit_closes_1009() {
    check_close(
        |c| c.max_message_bytes = 1024,
        |_, ws| {
            let big = format!(r#"{{"token":"u","event":"{}"}}"#, "x".repeat(2000));
            assert!(big.len() > 2000);
            send_text(ws, &big);
        },
        1009,
    );
}

#[test]
fn message_at_the_size_limit_is_fine() {
    let server = start_with(|b| b.configure(|c| c.max_message_bytes = 1024));
    let addr = server.addr;
    let mut ws = ws_connect(addr, "/ws");
    let head = r#"{"token":"u","event":"e","id":1,"pad":""#;
    let tail = r#""}"#;
    let cmd = format!("{head}{}{tail}", "p".repeat(1024 - head.len() - tail.len()));
    assert_eq!(cmd.len(), 1024);
    send_text(&mut ws, &cmd);
    let reply: serde_json::Value = serde_json::from_str(&read_text(&mut ws)).unwrap();
    assert_eq!(reply, serde_json::json!({"id": 1, "ok": true}));
}

#[test]
fn fragmented_message_over_the_size_limit_closes_1009() {
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    use tungstenite::protocol::frame::Frame;
    check_close(
        |c| c.max_message_bytes = 1024,
        |_, ws| {
            // Each frame is under the limit; the message they make is not.
            let part = vec![b'x'; 600];
            ws.send(Message::Frame(Frame::message(
                part.clone(),
                OpCode::Data(Data::Text),
                false,
            )))
            .expect("first fragment");
            ws.send(Message::Frame(Frame::message(
                part.clone(),
                OpCode::Data(Data::Continue),
                false,
            )))
            .expect("second fragment");
            // The server may already have closed; the last write can fail.
            let _ = ws.send(Message::Frame(Frame::message(
                part,
                OpCode::Data(Data::Continue),
                true,
            )));
        },
        1009,
    );
}
