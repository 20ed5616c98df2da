//! SPEC §2, fan-out of `POST /push` and `POST /broadcast`: who gets a
//! message, how often, how it is counted, and what a message looks like on
//! the wire (a string byte for byte, any other JSON value as compact text).
use crate::common::*;
use serde_json::{json, Value};
use std::time::Duration;

const QUIET: Duration = Duration::from_millis(100);

#[track_caller]
fn post_json(addr: std::net::SocketAddr, path: &str, body: &Value) -> HttpResponse {
    post(addr, path, &body.to_string())
}

#[track_caller]
fn assert_sent(resp: &HttpResponse, n: usize) {
    assert_eq!(
        (resp.status, resp.body.as_str()),
        (200, format!("message sent to {n} clients").as_str()),
        "{resp:?}"
    );
}

#[test]
fn user_ids_reach_every_connection_of_every_listed_user_once() {
    let server = start();
    let a = server.addr;
    let mut one = connect_registered(a, "u1", "news");
    let mut two_a = connect_registered(a, "u2", "news");
    let mut two_b = connect_registered(a, "u2", "news");
    // u3 has no connection at all.

    let r = post_json(
        a,
        "/push",
        &json!({"userIds": ["u1", "u2", "u3"], "event": "news", "message": "to three"}),
    );
    assert_sent(&r, 3);
    for ws in [&mut one, &mut two_a, &mut two_b] {
        assert_eq!(read_text(ws), "to three");
    }
    for ws in [&mut one, &mut two_a, &mut two_b] {
        expect_silence(ws, QUIET);
    }
}

#[test]
fn duplicate_user_ids_are_counted_and_delivered_once() {
    let server = start();
    let a = server.addr;
    let mut a1 = connect_registered(a, "alice", "news");
    let mut a2 = connect_registered(a, "alice", "news");
    let mut bob = connect_registered(a, "bob", "news");

    let r = post_json(
        a,
        "/push",
        &json!({"userIds": ["alice", "bob", "alice", "alice", "bob"], "event": "news", "message": "once"}),
    );
    assert_sent(&r, 3);
    for ws in [&mut a1, &mut a2, &mut bob] {
        assert_eq!(read_text(ws), "once");
    }
    for ws in [&mut a1, &mut a2, &mut bob] {
        expect_silence(ws, QUIET);
    }

    // The same user listed twice and nobody else.
    let r = post_json(
        a,
        "/push",
        &json!({"userIds": ["bob", "bob"], "event": "news", "message": "bob only"}),
    );
    assert_sent(&r, 1);
    assert_eq!(read_text(&mut bob), "bob only");
    expect_silence(&mut bob, QUIET);
    expect_silence(&mut a1, Duration::from_millis(5));
    expect_silence(&mut a2, Duration::from_millis(5));
}

#[test]
fn a_connection_not_subscribed_to_the_event_is_skipped_and_not_counted() {
    let server = start();
    let a = server.addr;
    let mut on_e1 = connect_registered(a, "alice", "e1");
    let mut on_e2 = connect_registered(a, "alice", "e2");
    let mut on_both = connect_registered(a, "alice", "e1");
    register(&mut on_both, "alice", "e2");

    assert_sent(&push(a, "alice", "e1", "for e1"), 2);
    assert_eq!(read_text(&mut on_e1), "for e1");
    assert_eq!(read_text(&mut on_both), "for e1");

    assert_sent(&push(a, "alice", "e2", "for e2"), 2);
    assert_eq!(read_text(&mut on_e2), "for e2");
    assert_eq!(read_text(&mut on_both), "for e2");

    assert_sent(&push(a, "alice", "e3", "for nobody"), 0);
    // Same through userIds.
    let r = post_json(
        a,
        "/push",
        &json!({"userIds": ["alice"], "event": "e2", "message": "batch e2"}),
    );
    assert_sent(&r, 2);
    assert_eq!(read_text(&mut on_e2), "batch e2");
    assert_eq!(read_text(&mut on_both), "batch e2");

    for ws in [&mut on_e1, &mut on_e2, &mut on_both] {
        expect_silence(ws, QUIET);
    }
}

#[test]
fn broadcast_reaches_every_subscriber_of_the_event_across_users_only() {
    let server = start();
    let a = server.addr;
    let mut alice1 = connect_registered(a, "alice", "news");
    let mut alice2 = connect_registered(a, "alice", "news");
    let mut bob = connect_registered(a, "bob", "news");
    register(&mut bob, "bob", "sport");
    let mut carol = connect_registered(a, "carol", "news");
    let mut dave_sport = connect_registered(a, "dave", "sport");
    let mut alice_sport = connect_registered(a, "alice", "sport");

    let r = post_json(a, "/broadcast", &json!({"event": "news", "message": "headline"}));
    assert_sent(&r, 4);
    for ws in [&mut alice1, &mut alice2, &mut bob, &mut carol] {
        assert_eq!(read_text(ws), "headline");
    }

    let r = post_json(a, "/broadcast", &json!({"event": "sport", "message": "score"}));
    assert_sent(&r, 3);
    for ws in [&mut bob, &mut dave_sport, &mut alice_sport] {
        assert_eq!(read_text(ws), "score");
    }

    let r = post_json(a, "/broadcast", &json!({"event": "weather", "message": "rain"}));
    assert_sent(&r, 0);

    for ws in [
        &mut alice1,
        &mut alice2,
        &mut bob,
        &mut carol,
        &mut dave_sport,
        &mut alice_sport,
    ] {
        expect_silence(ws, QUIET);
    }
}

#[test]
fn string_messages_are_sent_byte_for_byte() {
    let server = start();
    let a = server.addr;
    let mut ws = connect_registered(a, "alice", "news");
    let long: String = (0..3000).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    assert_eq!(long.len(), 3000);
    let strings = [
        "plain".to_string(),
        r#"he said "hi" and left"#.to_string(),
        r"back\slash \\ double \n not a newline".to_string(),
        "line\nbreak\ttab\r\ncrlf".to_string(),
        "unicode: héllo wörld — ✓ 日本語 🚀".to_string(),
        r#"{"looks":"like json"}"#.to_string(),
        "  padded  ".to_string(),
        "\u{1}control\u{1f}".to_string(),
        long,
    ];
    for s in &strings {
        let r = post_json(
            a,
            "/push",
            &json!({"userId": "alice", "event": "news", "message": s}),
        );
        assert_sent(&r, 1);
        assert_eq!(&read_text(&mut ws), s, "pushed {s:?}");
    }
    // The same through /broadcast.
    for s in &strings[..3] {
        let r = post_json(a, "/broadcast", &json!({"event": "news", "message": s}));
        assert_sent(&r, 1);
        assert_eq!(&read_text(&mut ws), s, "broadcast {s:?}");
    }
    expect_silence(&mut ws, QUIET);
}

#[test]
fn other_json_messages_arrive_as_compact_json_text() {
    let server = start();
    let a = server.addr;
    let mut ws = connect_registered(a, "alice", "news");

    // Exact texts where compact JSON has one spelling.
    let exact = [
        ("42", json!(42)),
        ("true", json!(true)),
        ("false", json!(false)),
        (r#"[1,"a"]"#, json!([1, "a"])),
        ("{}", json!({})),
        ("[]", json!([])),
        (r#"{"unread":3}"#, json!({"unread": 3})),
    ];
    for (text, message) in &exact {
        // Sent with spaces, as a person would type it.
        let body = format!(
            r#"{{ "userId": "alice", "event": "news", "message": {} }}"#,
            serde_json::to_string_pretty(message).unwrap()
        );
        let r = post(a, "/push", &body);
        assert_sent(&r, 1);
        assert_eq!(read_text(&mut ws), *text, "message {message}");
    }

    // Larger values: the same value, compact (no whitespace between tokens).
    let nested = json!({
        "a": [1, 2.5, -3, {"b": null, "c": [true, false]}],
        "s": "x",
        "n": {"deep": {"deeper": [[], {}]}},
        "quote\"key": "v\\al"
    });
    let body = format!(
        r#"{{"userId":"alice","event":"news","message": {}}}"#,
        serde_json::to_string_pretty(&nested).unwrap()
    );
    assert_sent(&post(a, "/push", &body), 1);
    let got = read_text(&mut ws);
    let parsed: Value = serde_json::from_str(&got).unwrap_or_else(|e| panic!("not JSON ({e}): {got:?}"));
    assert_eq!(parsed, nested);
    assert!(
        !got.contains('\n') && !got.contains(": ") && !got.contains(", "),
        "not compact: {got:?}"
    );

    let r = post_json(a, "/broadcast", &json!({"event": "news", "message": [1, "a"]}));
    assert_sent(&r, 1);
    assert_eq!(read_text(&mut ws), r#"[1,"a"]"#);
    expect_silence(&mut ws, QUIET);
}

/// "Compact JSON text" is the sender's text without the whitespace
/// between tokens: keys keep their order and numbers their spelling (a
/// re-serialisation sorted keys and rounded big integers to `f64`), in
/// every form a receiver can get.
#[test]
fn a_json_message_keeps_its_key_order_and_number_spelling() {
    let server = start();
    let a = server.addr;
    let mut raw = connect_registered(a, "alice", "news");
    let mut env = ws_connect(a, "/ws?envelope=1");
    register(&mut env, "alice", "news");
    let mut sse = crate::sse::sse_open(a, "event=news&token=alice", "").expect("SSE stream");
    let sent = "{ \"z\": 1e2, \"a\": [ -0, 0.1000, 12345678901234567890123 ],\n  \"m\": \"a  b\" }";
    let compact = r#"{"z":1e2,"a":[-0,0.1000,12345678901234567890123],"m":"a  b"}"#;
    let body = format!(r#"{{"userId":"alice","event":"news","message":{sent}}}"#);
    assert_sent(&post(a, "/push", &body), 3);
    assert_eq!(read_text(&mut raw), compact);
    assert_eq!(
        read_text(&mut env),
        format!(r#"{{"event":"news","message":{compact}}}"#)
    );
    let e = sse.next_event();
    assert_eq!((e.event.as_str(), e.data.as_str()), ("news", compact));
    let body = format!(r#"{{"event":"news","message":{sent}}}"#);
    assert_sent(&post(a, "/broadcast", &body), 3);
    assert_eq!(read_text(&mut raw), compact);
}

#[test]
fn empty_string_and_null_messages_are_refused() {
    let server = start();
    let a = server.addr;
    let mut ws = connect_registered(a, "alice", "news");
    let bodies = [
        (
            "/push",
            json!({"userId": "alice", "event": "news", "message": ""}),
        ),
        (
            "/push",
            json!({"userId": "alice", "event": "news", "message": null}),
        ),
        (
            "/push",
            json!({"userIds": ["alice"], "event": "news", "message": ""}),
        ),
        (
            "/push",
            json!({"userIds": ["alice"], "event": "news", "message": null}),
        ),
        ("/broadcast", json!({"event": "news", "message": ""})),
        ("/broadcast", json!({"event": "news", "message": null})),
    ];
    for (path, body) in &bodies {
        let r = post_json(a, path, body);
        assert_eq!(r.status, 400, "{path} {body}: {r:?}");
        assert!(
            r.body.starts_with("request data illegal"),
            "{path} {body}: {:?}",
            r.body
        );
    }
    expect_silence(&mut ws, QUIET);
    // The connection is still there and still served.
    assert_sent(&push(a, "alice", "news", "still here"), 1);
    assert_eq!(read_text(&mut ws), "still here");
}

#[test]
fn two_hundred_pushes_arrive_all_and_in_order() {
    let server = start();
    let a = server.addr;
    let mut ws = connect_registered(a, "alice", "news");
    for i in 0..200 {
        let r = push(a, "alice", "news", &format!("msg {i}"));
        assert_sent(&r, 1);
    }
    for i in 0..200 {
        assert_eq!(read_text(&mut ws), format!("msg {i}"));
    }
    expect_silence(&mut ws, QUIET);
}

#[test]
fn a_push_to_one_user_leaves_fifty_idle_clients_alone() {
    let server = start();
    let a = server.addr;
    let mut idle: Vec<Ws> = (0..50)
        .map(|i| {
            // Same event, other users; and a few on another event of the target user.
            if i % 10 == 0 {
                connect_registered(a, "target", &format!("other{i}"))
            } else {
                connect_registered(a, &format!("idle{i}"), "news")
            }
        })
        .collect();
    let mut target = connect_registered(a, "target", "news");
    assert_eq!(metric(a, "wspush_connections"), 51);

    for i in 0..5 {
        assert_sent(&push(a, "target", "news", &format!("only you {i}")), 1);
        assert_eq!(read_text(&mut target), format!("only you {i}"));
    }
    // A few get the full wait; by then anything sent to the others would
    // have arrived too, so a short look at each is enough.
    for ws in idle.iter_mut().step_by(12) {
        expect_silence(ws, QUIET);
    }
    for ws in idle.iter_mut() {
        expect_silence(ws, Duration::from_millis(2));
    }
    expect_silence(&mut target, Duration::from_millis(2));
    // And they are still served.
    assert_sent(&push(a, "idle7", "news", "your turn"), 1);
    assert_eq!(read_text(&mut idle[7]), "your turn");
}
