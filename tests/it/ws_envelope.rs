//! SPEC §1 envelope mode and SPEC §2 message forms: `/ws?envelope=1` gets
//! `{"event": E, "message": M}` with M as pushed (a string stays a string);
//! other clients get the raw text, and a non-string M as compact JSON.
use crate::common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;

#[track_caller]
fn read_json(ws: &mut Ws) -> Value {
    let text = read_text(ws);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}"))
}

/// `POST /push` with `message` given as raw JSON text.
#[track_caller]
fn push_raw(addr: SocketAddr, user: &str, event: &str, message_json: &str) -> HttpResponse {
    let body = format!(
        r#"{{"userId":{},"event":{},"message":{message_json}}}"#,
        json!(user),
        json!(event)
    );
    post(addr, "/push", &body)
}

/// An envelope client and a raw client, both alice's, both on `news`.
fn pair(addr: SocketAddr) -> (Ws, Ws) {
    let mut env = ws_connect(addr, "/ws?envelope=1");
    register(&mut env, "alice", "news");
    let raw = connect_registered(addr, "alice", "news");
    (env, raw)
}

#[test]
fn string_message_in_envelope_and_raw() {
    let server = start();
    let (mut env, mut raw) = pair(server.addr);
    let r = push(server.addr, "alice", "news", "hello");
    assert_eq!(r.body, "message sent to 2 clients");
    assert_eq!(read_json(&mut env), json!({"event": "news", "message": "hello"}));
    assert_eq!(read_text(&mut raw), "hello");
}

#[test]
fn a_string_that_looks_like_json_stays_a_string() {
    let server = start();
    let (mut env, mut raw) = pair(server.addr);
    let m = r#"{"x": 1, "y": [true]}"#;
    let r = push(server.addr, "alice", "news", m);
    assert_eq!(r.body, "message sent to 2 clients");
    let v = read_json(&mut env);
    assert_eq!(v, json!({"event": "news", "message": m}));
    assert!(v["message"].is_string());
    // Raw clients get it byte for byte, spaces included.
    assert_eq!(read_text(&mut raw), m);
}

#[test]
fn unicode_and_escapes_arrive_byte_for_byte() {
    let server = start();
    let (mut env, mut raw) = pair(server.addr);
    let m = "héllo ✓ \"quoted\" \\ back\nslash\t😀";
    let r = push(server.addr, "alice", "news", m);
    assert_eq!(r.body, "message sent to 2 clients");
    assert_eq!(read_json(&mut env), json!({"event": "news", "message": m}));
    assert_eq!(read_text(&mut raw), m);
}

#[test]
fn object_message_is_the_object_in_envelope_and_compact_json_raw() {
    let server = start();
    let (mut env, mut raw) = pair(server.addr);
    let r = push_raw(
        server.addr,
        "alice",
        "news",
        r#" { "a" : 1 , "b" : [ true , null , "s" ] , "c" : { "d" : 2.5 } } "#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "message sent to 2 clients");
    let expected = json!({"a": 1, "b": [true, null, "s"], "c": {"d": 2.5}});
    let v = read_json(&mut env);
    assert_eq!(v, json!({"event": "news", "message": expected}));
    assert!(v["message"].is_object());
    assert_eq!(
        read_text(&mut raw),
        r#"{"a":1,"b":[true,null,"s"],"c":{"d":2.5}}"#
    );
}

#[test]
fn array_number_and_bool_messages() {
    let server = start();
    let (mut env, mut raw) = pair(server.addr);
    for (sent, compact, value) in [
        (
            r#"[ 1, "two", {"k": false} ]"#,
            r#"[1,"two",{"k":false}]"#,
            json!([1, "two", {"k": false}]),
        ),
        ("42", "42", json!(42)),
        ("-0.5", "-0.5", json!(-0.5)),
        ("true", "true", json!(true)),
        ("false", "false", json!(false)),
    ] {
        let r = push_raw(server.addr, "alice", "news", sent);
        assert_eq!(r.status, 200, "{sent}: {}", r.body);
        assert_eq!(r.body, "message sent to 2 clients", "{sent}");
        assert_eq!(
            read_json(&mut env),
            json!({"event": "news", "message": value}),
            "{sent}"
        );
        assert_eq!(read_text(&mut raw), compact, "{sent}");
    }
}

#[test]
fn envelope_tells_events_apart_on_one_connection() {
    let server = start();
    let mut env = ws_connect(server.addr, "/ws?envelope=1");
    register(&mut env, "alice", "e1");
    register(&mut env, "alice", "e2");
    assert_eq!(
        push(server.addr, "alice", "e2", "b").body,
        "message sent to 1 clients"
    );
    assert_eq!(
        push(server.addr, "alice", "e1", "a").body,
        "message sent to 1 clients"
    );
    assert_eq!(read_json(&mut env), json!({"event": "e2", "message": "b"}));
    assert_eq!(read_json(&mut env), json!({"event": "e1", "message": "a"}));
}

#[test]
fn broadcast_uses_each_clients_mode() {
    let server = start();
    let mut env = ws_connect(server.addr, "/ws?envelope=1");
    register(&mut env, "alice", "news");
    let mut raw = connect_registered(server.addr, "bob", "news");
    let r = post(
        server.addr,
        "/broadcast",
        r#"{"event":"news","message":{"k":"v"}}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "message sent to 2 clients");
    assert_eq!(
        read_json(&mut env),
        json!({"event": "news", "message": {"k": "v"}})
    );
    assert_eq!(read_text(&mut raw), r#"{"k":"v"}"#);
}

#[test]
fn envelope_with_other_query_parameters() {
    let server = start();
    let mut env = ws_connect(server.addr, "/ws?client=web&envelope=1");
    register(&mut env, "alice", "news");
    let mut plain = ws_connect(server.addr, "/ws?client=web");
    register(&mut plain, "alice", "news");
    assert_eq!(
        push(server.addr, "alice", "news", "m").body,
        "message sent to 2 clients"
    );
    assert_eq!(read_json(&mut env), json!({"event": "news", "message": "m"}));
    assert_eq!(read_text(&mut plain), "m");
}

#[test]
fn envelope_escapes_odd_event_names() {
    let server = start();
    let event = "we\"ird \\ ev✓nt";
    let mut env = ws_connect(server.addr, "/ws?envelope=1");
    register(&mut env, "alice", event);
    assert_eq!(
        push(server.addr, "alice", event, "m").body,
        "message sent to 1 clients"
    );
    assert_eq!(read_json(&mut env), json!({"event": event, "message": "m"}));
}
