//! SPEC §1, command ids: a command with an `id` (any JSON value but null)
//! gets exactly one reply echoing that id; failures become error replies
//! with the close code the same failure gets without an id, and the
//! connection stays open.
use crate::common::*;
use serde_json::{json, Value};
use std::time::Duration;

#[track_caller]
fn read_json(ws: &mut Ws) -> Value {
    let text = read_text(ws);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("reply {text:?} is not JSON: {e}"))
}

/// Checks an error reply: exactly `id`, `ok: false`, `code`, and a non-empty `error`.
#[track_caller]
fn assert_error_reply(reply: &Value, id: &Value, code: u16) {
    let obj = reply
        .as_object()
        .unwrap_or_else(|| panic!("reply {reply} is not an object"));
    assert_eq!(obj.get("id"), Some(id), "{reply}");
    assert_eq!(obj.get("ok"), Some(&json!(false)), "{reply}");
    assert_eq!(obj.get("code"), Some(&json!(code)), "{reply}");
    let error = obj.get("error").and_then(Value::as_str).unwrap_or("");
    assert!(!error.is_empty(), "error reason missing in {reply}");
    assert_eq!(obj.len(), 4, "unexpected fields in {reply}");
}

/// The connection is still open and bound to `user` on `event`.
#[track_caller]
fn assert_still_receives(addr: std::net::SocketAddr, ws: &mut Ws, user: &str, event: &str) {
    let r = push(addr, user, event, "still here");
    assert_eq!(r.body, "message sent to 1 clients");
    assert_eq!(read_text(ws), "still here");
}

#[test]
fn ack_echoes_ids_of_every_json_type() {
    let server = start();
    let mut ws = ws_connect(server.addr, "/ws");
    let ids = [
        json!(1),
        json!(0),
        json!(-7),
        json!(12345678901234567u64),
        json!(2.5),
        json!("abc"),
        json!(""),
        json!("ünï \"quoted\" ✓"),
        json!({"req": 3, "nested": {"list": [1, "two", null, true]}}),
        json!([1, 2, 3]),
        json!(true),
        json!(false),
    ];
    for id in &ids {
        let cmd = json!({"token": "alice", "event": "news", "id": id}).to_string();
        send_text(&mut ws, &cmd);
        let reply = read_json(&mut ws);
        assert_eq!(reply, json!({"id": id, "ok": true}), "id {id}");
    }
    // The typed form acks the same way.
    send_text(
        &mut ws,
        r#"{"type":"register","token":"alice","event":"e2","id":"typed"}"#,
    );
    assert_eq!(read_json(&mut ws), json!({"id": "typed", "ok": true}));
    assert_still_receives(server.addr, &mut ws, "alice", "news");
    assert_still_receives(server.addr, &mut ws, "alice", "e2");
}

#[test]
fn one_reply_per_command_in_order() {
    let server = start();
    let mut ws = ws_connect(server.addr, "/ws");
    for i in 0..5 {
        let cmd = json!({"token": "alice", "event": format!("e{i}"), "id": i}).to_string();
        send_text(&mut ws, &cmd);
    }
    for i in 0..5 {
        assert_eq!(read_json(&mut ws), json!({"id": i, "ok": true}));
    }
    expect_silence(&mut ws, Duration::from_millis(200));
}

#[test]
fn null_id_gets_no_reply() {
    let server = start();
    let mut ws = ws_connect(server.addr, "/ws");
    send_text(&mut ws, r#"{"token":"alice","event":"news","id":null}"#);
    expect_silence(&mut ws, Duration::from_millis(300));
    eventually("alice registered", || {
        push(server.addr, "alice", "news", "works").body == "message sent to 1 clients"
    });
    assert_eq!(read_text(&mut ws), "works");
}

#[test]
fn malformed_command_with_id_gets_4400_reply_and_stays_open() {
    let server = start();
    let mut ws = connect_registered(server.addr, "alice", "news");
    let cases = [
        (r#"{"token":"alice","id":7}"#, json!(7)),
        (
            r#"{"token":"","event":"news","id":"empty-token"}"#,
            json!("empty-token"),
        ),
        (r#"{"event":"news","id":{"k":1}}"#, json!({"k": 1})),
        (r#"{"token":"alice","event":"","id":8}"#, json!(8)),
        (r#"{"token":5,"event":"news","id":9}"#, json!(9)),
        (r#"{"token":"alice","event":["news"],"id":10}"#, json!(10)),
        (r#"{"type":"unregister","id":11}"#, json!(11)),
    ];
    for (cmd, id) in &cases {
        send_text(&mut ws, cmd);
        let reply = read_json(&mut ws);
        assert_error_reply(&reply, id, 4400);
    }
    assert_still_receives(server.addr, &mut ws, "alice", "news");
}

#[test]
fn malformed_first_command_with_id_leaves_the_connection_usable() {
    let server = start();
    let mut ws = ws_connect(server.addr, "/ws");
    send_text(&mut ws, r#"{"token":"alice","id":1}"#);
    assert_error_reply(&read_json(&mut ws), &json!(1), 4400);
    register(&mut ws, "alice", "news");
    assert_still_receives(server.addr, &mut ws, "alice", "news");
}

#[test]
fn other_users_token_with_id_gets_4403_reply() {
    let server = start();
    let mut ws = connect_registered(server.addr, "alice", "news");
    send_text(&mut ws, r#"{"token":"bob","event":"news","id":"x"}"#);
    assert_error_reply(&read_json(&mut ws), &json!("x"), 4403);
    // Still alice's, not bob's.
    assert_still_receives(server.addr, &mut ws, "alice", "news");
    let r = push(server.addr, "bob", "news", "not for alice");
    assert_eq!(r.body, "message sent to 0 clients");
    expect_silence(&mut ws, Duration::from_millis(200));
    assert_eq!(metric(server.addr, "wspush_registered_users"), 1);
}

#[test]
fn events_limit_with_id_gets_4429_reply() {
    let server = start_with(|b| b.configure(|c| c.max_events = 2));
    let mut ws = connect_registered(server.addr, "alice", "e1");
    register(&mut ws, "alice", "e2");
    send_text(&mut ws, r#"{"token":"alice","event":"e3","id":3}"#);
    assert_error_reply(&read_json(&mut ws), &json!(3), 4429);
    // Re-registering a subscribed event at the limit is still a no-op, not an error.
    send_text(&mut ws, r#"{"token":"alice","event":"e2","id":4}"#);
    assert_eq!(read_json(&mut ws), json!({"id": 4, "ok": true}));

    assert_still_receives(server.addr, &mut ws, "alice", "e1");
    assert_still_receives(server.addr, &mut ws, "alice", "e2");
    let r = push(server.addr, "alice", "e3", "no");
    assert_eq!(r.body, "message sent to 0 clients");
    expect_silence(&mut ws, Duration::from_millis(200));
}

#[test]
fn unknown_type_with_id_gets_4400_reply() {
    let server = start();
    let mut ws = connect_registered(server.addr, "alice", "news");
    send_text(&mut ws, r#"{"type":"subscribe","event":"news","id":"s"}"#);
    assert_error_reply(&read_json(&mut ws), &json!("s"), 4400);
    send_text(&mut ws, r#"{"type":3,"event":"news","id":"t"}"#);
    assert_error_reply(&read_json(&mut ws), &json!("t"), 4400);
    assert_still_receives(server.addr, &mut ws, "alice", "news");
}

#[test]
fn a_burst_of_commands_gets_every_reply_in_order() {
    // More commands in one go than the server handles per round for one client.
    let server = start_with(|b| b.configure(|c| c.max_events = 500));
    let mut ws = ws_connect(server.addr, "/ws");
    const N: usize = 300;
    for i in 0..N {
        let cmd = if i % 3 == 0 {
            // Without id: processed, not answered.
            json!({"token": "alice", "event": format!("e{i}")}).to_string()
        } else {
            json!({"token": "alice", "event": format!("e{i}"), "id": i}).to_string()
        };
        ws.write(tungstenite::Message::text(cmd)).unwrap();
    }
    ws.flush().unwrap();
    for i in (0..N).filter(|i| i % 3 != 0) {
        assert_eq!(read_json(&mut ws), json!({"id": i, "ok": true}));
    }
    expect_silence(&mut ws, Duration::from_millis(200));
    assert_eq!(metric(server.addr, "wspush_subscriptions"), N as u64);
    for i in [0, 3, N - 1] {
        let e = format!("e{i}");
        assert_eq!(
            push(server.addr, "alice", &e, &e).body,
            "message sent to 1 clients"
        );
        assert_eq!(read_text(&mut ws), e);
    }
}
