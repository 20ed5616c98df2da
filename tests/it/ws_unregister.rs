//! SPEC §1, `{"type": "unregister", "event": E}`: stops E on this
//! connection only, keeps its other events, and the connection stays
//! bound to its user.
use crate::common::*;
use serde_json::{json, Value};
use std::time::Duration;

#[track_caller]
fn read_json(ws: &mut Ws) -> Value {
    serde_json::from_str(&read_text(ws)).expect("reply is JSON")
}

#[test]
fn unregister_stops_that_event_and_keeps_the_others() {
    let server = start();
    let addr = server.addr;
    let mut ws = connect_registered(addr, "alice", "e1");
    register(&mut ws, "alice", "e2");
    send_text(&mut ws, r#"{"type":"unregister","event":"e1"}"#);
    // Without an id nothing comes back; an acknowledged no-op after it
    // proves the server has handled it.
    register(&mut ws, "alice", "e2");

    let r = push(addr, "alice", "e1", "gone");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "message sent to 0 clients");
    let r = push(addr, "alice", "e2", "kept");
    assert_eq!(r.body, "message sent to 1 clients");
    // The first thing to arrive is e2's message: e1's never came.
    assert_eq!(read_text(&mut ws), "kept");
    expect_silence(&mut ws, Duration::from_millis(200));
    assert_eq!(metric(addr, "wspush_subscriptions"), 1);
}

#[test]
fn unregister_on_one_connection_leaves_the_users_other_connections() {
    let server = start();
    let addr = server.addr;
    let mut a = connect_registered(addr, "alice", "news");
    let mut b = connect_registered(addr, "alice", "news");
    send_text(&mut a, r#"{"type":"unregister","event":"news","id":1}"#);
    assert_eq!(read_json(&mut a), json!({"id": 1, "ok": true}));
    let r = push(addr, "alice", "news", "only b");
    assert_eq!(r.body, "message sent to 1 clients");
    assert_eq!(read_text(&mut b), "only b");
    expect_silence(&mut a, Duration::from_millis(200));
}

#[test]
fn unregister_with_id_acks() {
    let server = start();
    let addr = server.addr;
    let mut ws = connect_registered(addr, "alice", "news");
    send_text(&mut ws, r#"{"type":"unregister","event":"news","id":"u-1"}"#);
    assert_eq!(read_json(&mut ws), json!({"id": "u-1", "ok": true}));
    let r = push(addr, "alice", "news", "x");
    assert_eq!(r.body, "message sent to 0 clients");
    expect_silence(&mut ws, Duration::from_millis(200));
    assert_eq!(metric(addr, "wspush_subscriptions"), 0);
}

#[test]
fn unregistered_event_can_be_registered_again() {
    let server = start();
    let addr = server.addr;
    let mut ws = connect_registered(addr, "alice", "news");
    send_text(&mut ws, r#"{"type":"unregister","event":"news","id":1}"#);
    assert_eq!(read_json(&mut ws), json!({"id": 1, "ok": true}));
    register(&mut ws, "alice", "news");
    let r = push(addr, "alice", "news", "back");
    assert_eq!(r.body, "message sent to 1 clients");
    assert_eq!(read_text(&mut ws), "back");
}

#[test]
fn connection_stays_bound_to_its_user_after_unregister() {
    let server = start();
    let addr = server.addr;
    let mut ws = connect_registered(addr, "alice", "news");
    send_text(&mut ws, r#"{"type":"unregister","event":"news","id":1}"#);
    assert_eq!(read_json(&mut ws), json!({"id": 1, "ok": true}));

    // With an id: an error reply, and the connection stays open.
    send_text(&mut ws, r#"{"token":"bob","event":"news","id":2}"#);
    let reply = read_json(&mut ws);
    assert_eq!(reply["id"], json!(2), "{reply}");
    assert_eq!(reply["ok"], json!(false), "{reply}");
    assert_eq!(reply["code"], json!(4403), "{reply}");
    assert!(reply["error"].as_str().is_some_and(|e| !e.is_empty()), "{reply}");

    // Alice can still register again on it.
    register(&mut ws, "alice", "other");
    let r = push(addr, "alice", "other", "still alice");
    assert_eq!(r.body, "message sent to 1 clients");
    assert_eq!(read_text(&mut ws), "still alice");

    // Without an id: close 4403.
    send_text(&mut ws, r#"{"type":"unregister","event":"other","id":3}"#);
    assert_eq!(read_json(&mut ws), json!({"id": 3, "ok": true}));
    send_text(&mut ws, r#"{"token":"bob","event":"news"}"#);
    assert_eq!(expect_close(&mut ws), 4403);
    assert_eq!(push(addr, "bob", "news", "x").body, "message sent to 0 clients");
}

#[test]
fn unregister_frees_a_slot_under_the_events_limit() {
    let server = start_with(|b| b.configure(|c| c.max_events = 2));
    let addr = server.addr;
    let mut ws = connect_registered(addr, "alice", "e1");
    register(&mut ws, "alice", "e2");
    send_text(&mut ws, r#"{"type":"unregister","event":"e1","id":1}"#);
    assert_eq!(read_json(&mut ws), json!({"id": 1, "ok": true}));
    register(&mut ws, "alice", "e3");
    assert_eq!(
        push(addr, "alice", "e3", "third").body,
        "message sent to 1 clients"
    );
    assert_eq!(read_text(&mut ws), "third");
    // Now at the limit again.
    send_text(&mut ws, r#"{"token":"alice","event":"e4","id":4}"#);
    assert_eq!(read_json(&mut ws)["code"], json!(4429));
}
