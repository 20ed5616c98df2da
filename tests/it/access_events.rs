//! SPEC §9 per-event permissions: a JWT's `events` claim, a token file's
//! third column or a library grant limits which events a connection may
//! register (4403 `event not allowed`: an error reply with an `id`, a
//! close without) or stream over SSE (403); malformed claims are rejected
//! tokens (4401) with a reason, never a panic or a stall.

use crate::common::*;
use crate::sse::sse_open;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub(crate) const SECRET: &str = "access-test-secret-of-32-bytes!!";

pub(crate) fn jwt_server() -> TestServer {
    start_with(|b| b.configure(|c| c.jwt_secret = Some(wspush::Secret::new(SECRET))))
}

/// A token for `sub` living `ttl` seconds, with `claims` added (e.g.
/// `{"events": [...]}`).
pub(crate) fn token_with(sub: &str, ttl: i64, claims: Value) -> String {
    let Value::Object(m) = claims else {
        panic!("claims must be an object")
    };
    wspush::sign_jwt_with(sub, SECRET.as_bytes(), wspush::unix_now(), ttl, m)
}

pub(crate) fn events_token(sub: &str, events: Value) -> String {
    token_with(sub, 600, json!({ "events": events }))
}

/// An SSE request that must be refused: the refusal.
#[track_caller]
pub(crate) fn sse_refused(addr: SocketAddr, query: &str, headers: &str) -> HttpResponse {
    match sse_open(addr, query, headers) {
        Err(r) => r,
        Ok(s) => panic!("the stream opened ({})", s.status),
    }
}

/// Sends `cmd` (which carries an `id`) and returns the reply.
#[track_caller]
pub(crate) fn ask(ws: &mut Ws, cmd: Value) -> Value {
    send_text(ws, &cmd.to_string());
    serde_json::from_str(&read_text(ws)).expect("reply is JSON")
}

pub(crate) fn refused(id: i64, code: u16, why: &str) -> Value {
    json!({"id": id, "ok": false, "code": code, "error": why})
}

pub(crate) fn ok(id: i64) -> Value {
    json!({"id": id, "ok": true})
}

/// A push to `user` on `event` reaches `n` connections.
#[track_caller]
pub(crate) fn reaches(addr: SocketAddr, user: &str, event: &str, msg: &str, n: usize) {
    let r = push(addr, user, event, msg);
    assert_eq!(
        (r.status, r.body),
        (200, format!("message sent to {n} clients")),
        "{user}/{event}"
    );
}

#[test]
fn a_claim_limits_the_events_a_websocket_may_register() {
    let s = jwt_server();
    let t = events_token("alice", json!(["chat:*", "news"]));
    let mut ws = ws_connect(s.addr, "/ws");
    for (id, event) in [(1, "chat:room-1"), (2, "news"), (3, "chat:")] {
        assert_eq!(
            ask(&mut ws, json!({"token": t, "event": event, "id": id})),
            ok(id)
        );
    }
    for (id, event) in [(4, "admin"), (5, "news2"), (6, "chat"), (7, "Chat:room-1")] {
        assert_eq!(
            ask(&mut ws, json!({"token": t, "event": event, "id": id})),
            refused(id, 4403, "event not allowed"),
            "{event}"
        );
    }
    // Refused with an id: the connection stays open and keeps its events.
    reaches(s.addr, "alice", "chat:room-1", "hello", 1);
    assert_eq!(read_text(&mut ws), "hello");
    reaches(s.addr, "alice", "admin", "secret", 0);
    // Without an id: closed with the reason.
    send_text(&mut ws, &json!({"token": t, "event": "admin"}).to_string());
    assert_eq!(expect_close_frame(&mut ws), (4403, "event not allowed".into()));
    reaches(s.addr, "alice", "chat:room-1", "gone", 0);
}

/// A refused first register leaves the connection unbound: it does not
/// count as the user's, and a permitted event registers afterwards.
#[test]
fn a_refused_first_register_binds_nothing() {
    let s = jwt_server();
    let t = events_token("bob", json!(["b"]));
    let mut ws = ws_connect(s.addr, "/ws");
    assert_eq!(
        ask(&mut ws, json!({"token": t, "event": "a", "id": 1})),
        refused(1, 4403, "event not allowed")
    );
    reaches(s.addr, "bob", "a", "x", 0);
    assert_eq!(ask(&mut ws, json!({"token": t, "event": "b", "id": 2})), ok(2));
    reaches(s.addr, "bob", "b", "y", 1);
    assert_eq!(read_text(&mut ws), "y");
}

#[test]
fn star_allows_all_an_empty_list_none_and_no_claim_all() {
    let s = jwt_server();
    let all = events_token("u", json!(["*"]));
    let none = events_token("u", json!([]));
    let plain = token_with("u", 600, json!({}));
    let mut ws = ws_connect(s.addr, "/ws");
    for (id, event) in [(1, "a"), (2, "admin:x"), (3, "*")] {
        assert_eq!(
            ask(&mut ws, json!({"token": all, "event": event, "id": id})),
            ok(id)
        );
        assert_eq!(
            ask(&mut ws, json!({"token": plain, "event": event, "id": id})),
            ok(id)
        );
    }
    let mut other = ws_connect(s.addr, "/ws");
    for (id, event) in [(4, "a"), (5, "*"), (6, "")] {
        let reply = ask(&mut other, json!({"token": none, "event": event, "id": id}));
        assert_eq!(reply["ok"], false, "{event}: {reply}");
    }
    assert_eq!(
        ask(&mut other, json!({"token": none, "event": "a", "id": 7})),
        refused(7, 4403, "event not allowed")
    );
}

/// The latest token accepted sets the permissions: a narrower one on a
/// later register unsubscribes the events it does not permit.
#[test]
fn a_later_register_with_a_narrower_token_unsubscribes_the_rest() {
    let s = jwt_server();
    let wide = events_token("carol", json!(["a", "b"]));
    let narrow = events_token("carol", json!(["a", "c"]));
    let mut ws = ws_connect(s.addr, "/ws");
    assert_eq!(ask(&mut ws, json!({"token": wide, "event": "a", "id": 1})), ok(1));
    assert_eq!(ask(&mut ws, json!({"token": wide, "event": "b", "id": 2})), ok(2));
    reaches(s.addr, "carol", "b", "b1", 1);
    assert_eq!(read_text(&mut ws), "b1");
    assert_eq!(
        ask(&mut ws, json!({"token": narrow, "event": "c", "id": 3})),
        ok(3)
    );
    reaches(s.addr, "carol", "b", "b2", 0);
    for e in ["a", "c"] {
        reaches(s.addr, "carol", e, e, 1);
        assert_eq!(read_text(&mut ws), e);
    }
}

#[test]
fn an_sse_stream_for_an_event_not_allowed_gets_403() {
    let s = jwt_server();
    let t = events_token("dora", json!(["chat:*"]));
    let r = sse_refused(s.addr, &format!("event=chat:1&event=admin&token={t}"), "");
    assert_eq!((r.status, r.body.as_str()), (403, "event not allowed"));
    assert_eq!(r.header("Wspush-Code"), Some("4403"));
    let r = sse_refused(
        s.addr,
        &format!("event=admin&token={t}"),
        "Accept: application/json\r\n",
    );
    assert_eq!(r.status, 403);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v, json!({"error": "event not allowed", "code": 4403}));
    // The permitted event streams; nothing was bound by the refusals.
    let mut ok = sse_open(s.addr, &format!("event=chat:1&token={t}"), "").expect("200");
    assert_eq!(ok.status, 200);
    reaches(s.addr, "dora", "chat:1", "hi", 1);
    assert_eq!(ok.next_event().data, "hi");
    reaches(s.addr, "dora", "admin", "x", 0);
}

#[test]
fn a_token_file_third_column_lists_the_events() {
    let path = std::env::temp_dir().join(format!("wspush-it-access-tokens-{}", std::process::id()));
    std::fs::write(&path, "t-ann ann chat:*,news\nt-ben ben\n").unwrap();
    let p = path.clone();
    let s = start_with(move |b| b.configure(|c| c.auth_tokens = Some(p)));
    let mut ws = ws_connect(s.addr, "/ws");
    assert_eq!(
        ask(&mut ws, json!({"token": "t-ann", "event": "news", "id": 1})),
        ok(1)
    );
    assert_eq!(
        ask(&mut ws, json!({"token": "t-ann", "event": "admin", "id": 2})),
        refused(2, 4403, "event not allowed")
    );
    let mut ben = ws_connect(s.addr, "/ws");
    assert_eq!(
        ask(&mut ben, json!({"token": "t-ben", "event": "admin", "id": 1})),
        ok(1)
    );
    let r = sse_refused(s.addr, "event=admin&token=t-ann", "");
    assert_eq!((r.status, r.header("Wspush-Code")), (403, Some("4403")));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_library_grant_hook_says_which_events_and_until_when() {
    let s = start_with(|b| {
        b.auth_grant(|token| match token {
            "t-eve" => Some(wspush::Grant::new("eve").events(["room:*"])),
            "t-fay" => Some(wspush::Grant::new("fay").expires_at(wspush::unix_now() + 1)),
            "t-many" => Some(wspush::Grant::new("gus").events((0..10_000).map(|i| format!("e{i}")))),
            _ => None,
        })
    });
    let mut ws = ws_connect(s.addr, "/ws");
    assert_eq!(
        ask(&mut ws, json!({"token": "t-eve", "event": "room:1", "id": 1})),
        ok(1)
    );
    assert_eq!(
        ask(&mut ws, json!({"token": "t-eve", "event": "lobby", "id": 2})),
        refused(2, 4403, "event not allowed")
    );
    let mut many = ws_connect(s.addr, "/ws");
    assert_eq!(
        ask(&mut many, json!({"token": "t-many", "event": "e1", "id": 1})),
        refused(1, 4401, "too many event patterns")
    );
    assert_eq!(
        ask(&mut many, json!({"token": "nobody", "event": "e1", "id": 2})),
        refused(2, 4401, "unknown token")
    );
    // The hook's expiry ends the connection like a JWT's exp does.
    let mut fay = ws_connect(s.addr, "/ws");
    let t0 = Instant::now();
    assert_eq!(
        ask(&mut fay, json!({"token": "t-fay", "event": "x", "id": 1})),
        ok(1)
    );
    assert_eq!(expect_close_frame(&mut fay), (4401, "token expired".into()));
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

/// Bad claims: each a rejected token (4401) with a reason that says what
/// is wrong, at once; the server keeps serving.
#[test]
fn malformed_claims_are_rejected_with_a_reason() {
    let s = start_with(|b| {
        b.configure(|c| {
            c.jwt_secret = Some(wspush::Secret::new(SECRET));
            // Room for the 100 KB token, so the token check sees it.
            c.max_message_bytes = 200_000;
        })
    });
    let not_strings = "events claim is not an array of strings";
    let cases: Vec<(String, &str)> = vec![
        (events_token("u", json!("chat:*")), not_strings),
        (events_token("u", json!({"chat": true})), not_strings),
        (events_token("u", json!(["chat:*", 1])), not_strings),
        (events_token("u", json!([null])), not_strings),
        (events_token("u", json!(null)), not_strings),
        (events_token("u", json!([["nested"]])), not_strings),
        (
            events_token(
                "u",
                Value::Array((0..257).map(|i| Value::from(i.to_string())).collect()),
            ),
            "too many event patterns",
        ),
        (
            events_token("u", json!(["x".repeat(300)])),
            "event pattern too long",
        ),
        (
            events_token(
                "u",
                Value::Array((0..10_000).map(|i| Value::from(format!("p{i}:*"))).collect()),
            ),
            "token too long",
        ),
        ("x".repeat(100_000), "token too long"),
    ];
    for (token, why) in &cases {
        let t0 = Instant::now();
        let mut ws = ws_connect(s.addr, "/ws");
        assert_eq!(
            ask(&mut ws, json!({"token": token, "event": "chat:1", "id": 1})),
            refused(1, 4401, why),
            "{why}"
        );
        send_text(&mut ws, &json!({"token": token, "event": "chat:1"}).to_string());
        assert_eq!(expect_close_frame(&mut ws), (4401, why.to_string()));
        assert!(t0.elapsed() < Duration::from_secs(2), "{why}: {:?}", t0.elapsed());
    }
    // Over SSE too (tokens that fit in a request head).
    for (token, why) in &cases[..8] {
        let r = sse_refused(s.addr, &format!("event=chat:1&token={token}"), "");
        assert_eq!((r.status, r.body.as_str()), (401, *why));
        assert_eq!(r.header("Wspush-Code"), Some("4401"));
    }
    assert_eq!(get(s.addr, "/healthz").body, "ok");
    let mut fine = ws_connect(s.addr, "/ws");
    let good = events_token("u", json!(["chat:*"]));
    assert_eq!(
        ask(&mut fine, json!({"token": good, "event": "chat:1", "id": 1})),
        ok(1)
    );
}
