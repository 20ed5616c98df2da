//! SPEC §2 and §12 on the push side: names over 256 bytes, messages no
//! receiver's backlog could hold (413, not 4008 for everyone), and fields
//! of another endpoint (a broadcast carrying a `userId` must not reach
//! every subscriber) are refused whole, over HTTP and through `Handle`.
use crate::common::*;
use std::time::Duration;

/// A curl-style POST: `curl -d BODY` sends a form Content-Type.
#[track_caller]
fn curl_d(addr: std::net::SocketAddr, path: &str, body: &str) -> HttpResponse {
    post_with(
        addr,
        path,
        body,
        &[("Content-Type", "application/x-www-form-urlencoded")],
    )
}

#[track_caller]
fn assert_illegal(r: &HttpResponse, reason: &str) {
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, format!("request data illegal: {reason}").as_str()),
        "{r:?}"
    );
}

#[test]
fn names_over_256_bytes_are_refused_on_every_push_endpoint() {
    let server = start();
    let a = server.addr;
    let mut ws = connect_registered(a, "aaa", "topic1");
    let long = "x".repeat(257);
    let at_limit = "y".repeat(256);
    let body = |v: serde_json::Value| v.to_string();
    let cases = [
        (
            "/push",
            body(serde_json::json!({"userId": "aaa", "event": long, "message": "m"})),
            "event too long",
        ),
        (
            "/push",
            body(serde_json::json!({"userId": long, "event": "topic1", "message": "m"})),
            "userId too long",
        ),
        (
            "/push",
            body(serde_json::json!({"userIds": ["aaa", long], "event": "topic1", "message": "m"})),
            "userId too long",
        ),
        (
            "/broadcast",
            body(serde_json::json!({"event": long, "message": "m"})),
            "event too long",
        ),
        (
            "/drop",
            body(serde_json::json!({"userId": long})),
            "userId too long",
        ),
        (
            "/drop",
            body(serde_json::json!({"userId": "aaa", "event": long})),
            "event too long",
        ),
    ];
    for (path, body, reason) in &cases {
        assert_illegal(&curl_d(a, path, body), reason);
    }
    // JSON answers carry the same reason.
    let r = post_with(a, "/broadcast", &cases[3].1, &[("Accept", "application/json")]);
    assert_eq!(r.status, 400);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"error": "request data illegal: event too long"})
    );
    // Nothing was half-done: aaa got nothing and was not dropped.
    expect_silence(&mut ws, Duration::from_millis(100));
    // 256 bytes is allowed.
    let ok = serde_json::json!({"userId": at_limit, "event": at_limit, "message": "m"}).to_string();
    assert_eq!(curl_d(a, "/push", &ok).body, "message sent to 0 clients");
    still_serves(a, &mut ws, "still here");
}

#[test]
fn a_message_bigger_than_the_backlog_limit_is_refused_with_413() {
    let server = start_with(|b| b.configure(|c| c.max_backlog_bytes = 8192));
    let a = server.addr;
    let mut raw = connect_registered(a, "aaa", "topic1");
    let mut env = ws_connect(a, "/ws?envelope=1");
    register(&mut env, "aaa", "topic1");
    let too_big = "x".repeat(9000);
    let r = curl_d(
        a,
        "/push",
        &serde_json::json!({"userId": "aaa", "event": "topic1", "message": too_big}).to_string(),
    );
    assert_eq!(
        (r.status, r.body.as_str()),
        (413, "request data illegal: message larger than the backlog limit")
    );
    let r = post_with(
        a,
        "/broadcast",
        &serde_json::json!({"event": "topic1", "message": too_big}).to_string(),
        &[("Accept", "application/json")],
    );
    assert_eq!(r.status, 413);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"error": "request data illegal: message larger than the backlog limit"})
    );
    // One byte over is refused; exactly the limit is a message like any
    // other, though its envelope is a few bytes longer than the limit: a
    // receiver that reads gets it in every form.
    let r = push(a, "aaa", "topic1", &"o".repeat(8193));
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(metric(a, "wspush_slow_consumer_drops_total"), 0);
    let fits = "z".repeat(8192);
    let r = push(a, "aaa", "topic1", &fits);
    assert_eq!((r.status, r.body.as_str()), (200, "message sent to 2 clients"));
    assert_eq!(read_text(&mut raw), fits);
    let v: serde_json::Value = serde_json::from_str(&read_text(&mut env)).unwrap();
    assert_eq!(v, serde_json::json!({"event": "topic1", "message": fits}));
    // Nobody was closed with 4008, and both still receive.
    assert_eq!(metric(a, "wspush_slow_consumer_drops_total"), 0);
    let r = push(a, "aaa", "topic1", "after");
    assert_eq!((r.status, r.body.as_str()), (200, "message sent to 2 clients"));
    assert_eq!(read_text(&mut raw), "after");
}

#[test]
fn the_handle_refuses_what_http_refuses() {
    let server = start_with(|b| b.configure(|c| c.max_backlog_bytes = 8192));
    let a = server.addr;
    let mut ws = connect_registered(a, "aaa", "topic1");
    let h = &server.handle;
    match h.push("aaa", "topic1", &"x".repeat(9000)) {
        Err(wspush::Error::TooLarge { limit: 8192 }) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    match h.broadcast(&"e".repeat(257), "m") {
        Err(wspush::Error::Invalid(why)) => assert_eq!(why, "event too long"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    match h.push(&"u".repeat(257), "topic1", "m") {
        Err(wspush::Error::Invalid(why)) => assert_eq!(why, "userId too long"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    match h.drop_user("aaa", Some(&"e".repeat(257))) {
        Err(wspush::Error::Invalid(why)) => assert_eq!(why, "event too long"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    let e = wspush::Error::TooLarge { limit: 8192 };
    assert!(e.to_string().contains("larger than the backlog limit"), "{e}");
    assert_eq!(h.push("aaa", "topic1", "fine").unwrap(), 1);
    assert_eq!(read_text(&mut ws), "fine");
}

/// Issue #18.1: `/broadcast` with a `userId` used to send that user's
/// private message to every subscriber of the event.
#[test]
fn a_broadcast_with_a_user_is_refused_and_reaches_nobody() {
    let server = start();
    let a = server.addr;
    let mut alice = connect_registered(a, "alice", "news");
    let mut bob = connect_registered(a, "bob", "news");
    let cases = [
        (
            r#"{"userId":"alice","event":"news","message":"your code is 1234"}"#,
            "a broadcast takes no userId",
        ),
        (
            r#"{"USERID":"alice","event":"news","message":"secret"}"#,
            "a broadcast takes no userId",
        ),
        (
            r#"{"userIds":["alice"],"event":"news","message":"secret"}"#,
            "a broadcast takes no userIds",
        ),
        (
            r#"{"userId":null,"event":"news","message":"secret"}"#,
            "a broadcast takes no userId",
        ),
        (
            r#"{"event":"news","message":"m","reconnect":false}"#,
            "a broadcast takes no reconnect",
        ),
    ];
    for (body, reason) in cases {
        assert_illegal(&curl_d(a, "/broadcast", body), reason);
    }
    expect_silence(&mut alice, Duration::from_millis(100));
    expect_silence(&mut bob, Duration::from_millis(50));
    // A proper broadcast still reaches both.
    let r = curl_d(a, "/broadcast", r#"{"event":"news","message":"for all"}"#);
    assert_eq!(r.body, "message sent to 2 clients");
    assert_eq!(read_text(&mut alice), "for all");
    assert_eq!(read_text(&mut bob), "for all");
}

#[test]
fn push_and_drop_refuse_fields_of_other_endpoints() {
    let server = start();
    let a = server.addr;
    let mut ws = connect_registered(a, "aaa", "topic1");
    assert_illegal(
        &curl_d(
            a,
            "/push",
            r#"{"userId":"aaa","event":"topic1","message":"m","reconnect":false}"#,
        ),
        "a push takes no reconnect",
    );
    assert_illegal(
        &curl_d(a, "/drop", r#"{"userId":"aaa","message":"bye"}"#),
        "a drop takes no message",
    );
    assert_illegal(
        &curl_d(a, "/drop", r#"{"userId":"aaa","userIds":["aaa"]}"#),
        "a drop takes no userIds",
    );
    assert_illegal(
        &curl_d(a, "/drop", r#"{"userId":"aaa","reconnect":"false"}"#),
        "reconnect must be a boolean",
    );
    // Neither pushed nor dropped.
    expect_silence(&mut ws, Duration::from_millis(100));
    still_serves(a, &mut ws, "not dropped");
}
