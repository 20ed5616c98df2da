//! SPEC §12: event names and userIds are at most 256 bytes, tokens at most
//! 4 KiB. A register over a limit is refused like any other (error reply
//! with an `id`, close without), with a reason that names the limit.
use crate::common::*;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[track_caller]
fn reply(ws: &mut Ws, cmd: serde_json::Value) -> serde_json::Value {
    send_text(ws, &cmd.to_string());
    serde_json::from_str(&read_text(ws)).expect("reply is JSON")
}

#[test]
fn an_event_over_256_bytes_is_refused_with_4400() {
    let server = start();
    let a = server.addr;
    let long = "e".repeat(257);
    let mut ws = ws_connect(a, "/ws");
    let v = reply(
        &mut ws,
        serde_json::json!({"token": "aaa", "event": long, "id": 1}),
    );
    assert_eq!(
        v,
        serde_json::json!({"id": 1, "ok": false, "code": 4400, "error": "event too long"})
    );
    // Still open; unregister is held to the same limit.
    let v = reply(
        &mut ws,
        serde_json::json!({"type": "unregister", "event": long, "id": 2}),
    );
    assert_eq!(v["code"], 4400);
    assert_eq!(v["error"], "event too long");
    // 256 bytes is fine.
    let at_limit = "e".repeat(256);
    let v = reply(
        &mut ws,
        serde_json::json!({"token": "aaa", "event": at_limit, "id": 3}),
    );
    assert_eq!(v, serde_json::json!({"id": 3, "ok": true}));
    // Without an id: closed with 4400 and the reason.
    send_text(
        &mut ws,
        &serde_json::json!({"token": "aaa", "event": long}).to_string(),
    );
    assert_eq!(expect_close_frame(&mut ws), (4400, "event too long".to_string()));
    eventually("the refused connection is gone", || {
        metric(a, "wspush_connections") == 0
    });
}

#[test]
fn a_token_over_4_kib_is_rejected_without_asking_auth() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    // Room for such a token in a message (the default limit is 4 KiB).
    let server = start_with(move |b| {
        b.configure(|c| c.max_message_bytes = 16 * 1024).auth(move |t| {
            counted.fetch_add(1, Ordering::SeqCst);
            Some(t.chars().take(8).collect())
        })
    });
    let a = server.addr;
    let mut ws = ws_connect(a, "/ws");
    let v = reply(
        &mut ws,
        serde_json::json!({"token": "t".repeat(4097), "event": "e", "id": "x"}),
    );
    assert_eq!(
        v,
        serde_json::json!({"id": "x", "ok": false, "code": 4401, "error": "token too long"})
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0, "auth was asked");
    let v = reply(
        &mut ws,
        serde_json::json!({"token": "t".repeat(4096), "event": "e", "id": "y"}),
    );
    assert_eq!(v, serde_json::json!({"id": "y", "ok": true}));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let mut other = ws_connect(a, "/ws");
    send_text(
        &mut other,
        &serde_json::json!({"token": "t".repeat(5000), "event": "e"}).to_string(),
    );
    assert_eq!(
        expect_close_frame(&mut other),
        (4401, "token too long".to_string())
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(metric(a, "wspush_auth_failures_total") >= 2);
}

#[test]
fn a_user_id_over_256_bytes_from_auth_is_a_rejected_token() {
    let server = start_with(|b| {
        b.auth(|t| match t {
            "long" => Some("u".repeat(257)),
            "edge" => Some("v".repeat(256)),
            _ => None,
        })
    });
    let a = server.addr;
    let mut ws = ws_connect(a, "/ws");
    let v = reply(
        &mut ws,
        serde_json::json!({"token": "long", "event": "e", "id": 1}),
    );
    assert_eq!(
        v,
        serde_json::json!({"id": 1, "ok": false, "code": 4401, "error": "userId too long"})
    );
    let v = reply(
        &mut ws,
        serde_json::json!({"token": "edge", "event": "e", "id": 2}),
    );
    assert_eq!(v, serde_json::json!({"id": 2, "ok": true}));
    let mut other = ws_connect(a, "/ws");
    send_text(&mut other, r#"{"token":"long","event":"e"}"#);
    assert_eq!(
        expect_close_frame(&mut other),
        (4401, "userId too long".to_string())
    );
    // A token the hook refuses is an unknown token.
    let mut third = ws_connect(a, "/ws");
    send_text(&mut third, r#"{"token":"nobody","event":"e"}"#);
    assert_eq!(
        expect_close_frame(&mut third),
        (4401, "unknown token".to_string())
    );
}
