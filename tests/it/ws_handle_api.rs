//! The library side (SPEC §3, §4): the `Handle` pushes, broadcasts, drops
//! and shuts down from other threads; `Builder::auth`, `on_message` and
//! `push_auth` hooks plug in.
use crate::common::*;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;
use tungstenite::Message;
use wspush::{ClientMessage, Reply};

#[test]
fn handle_push_push_many_broadcast_and_drop() {
    let server = start();
    let addr = server.addr;
    let h = server.handle.clone();
    let mut a1 = connect_registered(addr, "alice", "e");
    let mut a2 = connect_registered(addr, "alice", "e");
    let mut b = connect_registered(addr, "bob", "e");
    register(&mut b, "bob", "e2");
    let mut c = connect_registered(addr, "carol", "e2");

    assert_eq!(h.push("alice", "e", "m1").unwrap(), 2);
    assert_eq!(read_text(&mut a1), "m1");
    assert_eq!(read_text(&mut a2), "m1");

    // Each user counted once, however often listed.
    assert_eq!(h.push_many(&["alice", "bob", "alice"], "e", "m2").unwrap(), 3);
    for ws in [&mut a1, &mut a2, &mut b] {
        assert_eq!(read_text(ws), "m2");
    }
    assert_eq!(h.push_many(&["nobody"], "e", "m").unwrap(), 0);
    assert_eq!(h.push("carol", "e", "wrong event").unwrap(), 0);

    assert_eq!(h.broadcast("e", "m3").unwrap(), 3);
    for ws in [&mut a1, &mut a2, &mut b] {
        assert_eq!(read_text(ws), "m3");
    }
    assert_eq!(h.broadcast("e2", "m4").unwrap(), 2);
    assert_eq!(read_text(&mut b), "m4");
    assert_eq!(read_text(&mut c), "m4");
    assert_eq!(h.broadcast("nothing", "m").unwrap(), 0);
    expect_silence(&mut c, Duration::from_millis(100));

    // From another thread, as a back end would.
    let h2 = h.clone();
    let n = thread::spawn(move || h2.push("carol", "e2", "from a thread").unwrap())
        .join()
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(read_text(&mut c), "from a thread");

    // Drop with an event only closes those on it.
    assert_eq!(h.drop_user("bob", Some("nope")).unwrap(), 0);
    assert_eq!(h.drop_user("alice", None).unwrap(), 2);
    assert_eq!(expect_close(&mut a1), 4000);
    assert_eq!(expect_close(&mut a2), 4000);
    assert_eq!(h.push("alice", "e", "gone").unwrap(), 0);
    assert_eq!(h.drop_user("bob", Some("e2")).unwrap(), 1);
    assert_eq!(expect_close(&mut b), 4000);
    assert_eq!(h.broadcast("e2", "left").unwrap(), 1);
    assert_eq!(read_text(&mut c), "left");
    assert_eq!(metric(addr, "wspush_connections"), 1);
}

#[test]
fn handle_after_stop_is_an_error() {
    let server = start();
    let h = server.handle.clone();
    server.stop().expect("run returned Ok");
    assert!(h.push("alice", "e", "m").is_err());
    assert!(h.push_many(&["alice"], "e", "m").is_err());
    assert!(h.broadcast("e", "m").is_err());
    assert!(h.drop_user("alice", None).is_err());
    assert!(matches!(h.push("alice", "e", "m"), Err(wspush::Error::Stopped)));
    h.shutdown(); // harmless when already stopped
}

#[test]
fn stop_closes_websockets_with_1001() {
    let server = start();
    let addr = server.addr;
    let mut ws = connect_registered(addr, "alice", "e");
    let client = thread::spawn(move || {
        let code = expect_close(&mut ws);
        // Answer the close so the server need not wait for its grace period.
        let _ = ws.read();
        code
    });
    server.stop().expect("run returned Ok");
    assert_eq!(client.join().unwrap(), 1001);
}

fn token_map(token: &str) -> Option<String> {
    match token {
        "bad" => None,
        "alice-phone" | "alice-laptop" => Some("alice".to_string()),
        other => other.strip_prefix("user-").map(str::to_string),
    }
}

#[test]
fn auth_hook_rejects_with_4401() {
    let server = start_with(|b| b.auth(token_map));
    let addr = server.addr;
    let mut bystander = connect_registered(addr, "user-bob", "e");
    let mut ws = ws_connect(addr, "/ws");
    send_text(&mut ws, r#"{"token":"bad","event":"e"}"#);
    assert_eq!(expect_close(&mut ws), 4401);
    let mut ws = ws_connect(addr, "/ws");
    send_text(&mut ws, r#"{"token":"no-prefix","event":"e"}"#);
    assert_eq!(expect_close(&mut ws), 4401);
    assert!(metric(addr, "wspush_auth_failures_total") >= 2);
    assert_eq!(push(addr, "bob", "e", "ok").body, "message sent to 1 clients");
    assert_eq!(read_text(&mut bystander), "ok");
}

#[test]
fn auth_hook_rejection_with_id_gets_4401_reply() {
    let server = start_with(|b| b.auth(token_map));
    let addr = server.addr;
    let mut ws = ws_connect(addr, "/ws");
    send_text(&mut ws, r#"{"token":"bad","event":"e","id":"r"}"#);
    let reply: serde_json::Value = serde_json::from_str(&read_text(&mut ws)).unwrap();
    assert_eq!(reply["id"], serde_json::json!("r"), "{reply}");
    assert_eq!(reply["ok"], serde_json::json!(false), "{reply}");
    assert_eq!(reply["code"], serde_json::json!(4401), "{reply}");
    assert!(reply["error"].as_str().is_some_and(|e| !e.is_empty()), "{reply}");
    // The connection is still usable with a good token.
    register(&mut ws, "user-carol", "e");
    assert_eq!(push(addr, "carol", "e", "hi").body, "message sent to 1 clients");
    assert_eq!(read_text(&mut ws), "hi");
}

#[test]
fn auth_hook_maps_two_tokens_to_one_user() {
    let server = start_with(|b| b.auth(token_map));
    let addr = server.addr;
    let mut phone = connect_registered(addr, "alice-phone", "e");
    let mut laptop = connect_registered(addr, "alice-laptop", "e");
    // Same user, so one connection may use both tokens.
    register(&mut laptop, "alice-phone", "e2");

    assert_eq!(push(addr, "alice", "e", "both").body, "message sent to 2 clients");
    assert_eq!(read_text(&mut phone), "both");
    assert_eq!(read_text(&mut laptop), "both");
    assert_eq!(
        push(addr, "alice", "e2", "laptop").body,
        "message sent to 1 clients"
    );
    assert_eq!(read_text(&mut laptop), "laptop");
    // The userId is the mapped one, not the token.
    assert_eq!(
        push(addr, "alice-phone", "e", "x").body,
        "message sent to 0 clients"
    );
    assert_eq!(metric(addr, "wspush_registered_users"), 1);

    // A token of another user on alice's connection: 4403.
    send_text(&mut phone, r#"{"token":"user-bob","event":"e"}"#);
    assert_eq!(expect_close(&mut phone), 4403);
}

/// What the message hook saw: the connection's user and the frame.
type Seen = Vec<(Option<String>, String)>;

#[test]
fn on_message_hook_gets_non_commands_and_replies() {
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let log = seen.clone();
    let server = start_with(move |b| {
        b.on_message(move |user, msg| {
            let text = match msg {
                ClientMessage::Text(t) => t.to_string(),
                ClientMessage::Binary(b) => format!("binary {} bytes", b.len()),
            };
            log.lock().unwrap().push((user.map(str::to_string), text.clone()));
            match msg {
                ClientMessage::Text("quiet") => None,
                ClientMessage::Text(t) => Some(Reply::Text(format!("echo {}: {t}", user.unwrap_or("-")))),
                ClientMessage::Binary(b) => Some(Reply::Binary(b.iter().rev().copied().collect())),
            }
        })
    });
    let addr = server.addr;

    let mut anon = ws_connect(addr, "/ws");
    send_text(&mut anon, "hello there");
    assert_eq!(read_text(&mut anon), "echo -: hello there");

    let mut ws = connect_registered(addr, "alice", "e");
    send_text(&mut ws, "hi");
    assert_eq!(read_text(&mut ws), "echo alice: hi");
    send_text(&mut ws, "quiet");
    expect_silence(&mut ws, Duration::from_millis(200));
    ws.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    match ws.read().unwrap() {
        Message::Binary(b) => assert_eq!(&b[..], &[3, 2, 1]),
        other => panic!("expected a binary reply, got {other:?}"),
    }

    // Commands still work as commands and never reach the hook.
    register(&mut ws, "alice", "e2");
    assert_eq!(
        push(addr, "alice", "e2", "pushed").body,
        "message sent to 1 clients"
    );
    assert_eq!(read_text(&mut ws), "pushed");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            (None, "hello there".to_string()),
            (Some("alice".to_string()), "hi".to_string()),
            (Some("alice".to_string()), "quiet".to_string()),
            (Some("alice".to_string()), "binary 3 bytes".to_string()),
        ]
    );
}

#[test]
fn push_auth_hook_guards_push_endpoints() {
    let server = start_with(|b| b.push_auth(|r| r.header("authorization") == Some("Bearer k")));
    let addr = server.addr;
    let mut ws = connect_registered(addr, "alice", "e");
    let body = r#"{"userId":"alice","event":"e","message":"m"}"#;

    let r = post(addr, "/push", body);
    assert_eq!(r.status, 401);
    assert!(r.header("WWW-Authenticate").is_some(), "{:?}", r.headers);
    let r = post_with(addr, "/push", body, &[("Authorization", "Bearer wrong")]);
    assert_eq!(r.status, 401);
    assert!(r.header("WWW-Authenticate").is_some(), "{:?}", r.headers);
    expect_silence(&mut ws, Duration::from_millis(200));

    let r = post_with(addr, "/push", body, &[("Authorization", "Bearer k")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "message sent to 1 clients");
    assert_eq!(read_text(&mut ws), "m");

    let bc = r#"{"event":"e","message":"b"}"#;
    assert_eq!(post(addr, "/broadcast", bc).status, 401);
    assert_eq!(post(addr, "/drop", r#"{"userId":"alice"}"#).status, 401);
    assert_eq!(get(addr, "/metrics").status, 401);
    assert_eq!(get(addr, "/healthz").status, 200, "healthz is not guarded");
    let r = post_with(addr, "/broadcast", bc, &[("Authorization", "Bearer k")]);
    assert_eq!(r.body, "message sent to 1 clients");
    assert_eq!(read_text(&mut ws), "b");
}
