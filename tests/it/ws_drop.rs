//! SPEC §2, `POST /drop`: closes a user's connections (only those on the
//! event when one is given) with close code 4000 and answers
//! `dropped N clients`; the dropped connections are unbound at once.
use crate::common::*;
use std::time::Duration;

#[test]
fn drop_closes_all_of_a_users_connections_with_4000() {
    let server = start();
    let addr = server.addr;
    let mut a1 = connect_registered(addr, "alice", "e1");
    let mut a2 = connect_registered(addr, "alice", "e2");
    let mut bob = connect_registered(addr, "bob", "e1");
    assert_eq!(metric(addr, "wspush_connections"), 3);

    let r = post(addr, "/drop", r#"{"userId":"alice"}"#);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "dropped 2 clients");
    assert_eq!(expect_close(&mut a1), 4000);
    assert_eq!(expect_close(&mut a2), 4000);

    // Gone from every count at once.
    assert_eq!(push(addr, "alice", "e1", "x").body, "message sent to 0 clients");
    assert_eq!(push(addr, "alice", "e2", "x").body, "message sent to 0 clients");
    assert_eq!(metric(addr, "wspush_connections"), 1);
    assert_eq!(metric(addr, "wspush_registered_users"), 1);

    // Bob is untouched.
    let r = push(addr, "bob", "e1", "hi bob");
    assert_eq!(r.body, "message sent to 1 clients");
    assert_eq!(read_text(&mut bob), "hi bob");

    // Dropping again finds nobody.
    assert_eq!(
        post(addr, "/drop", r#"{"userId":"alice"}"#).body,
        "dropped 0 clients"
    );
}

#[test]
fn drop_with_event_closes_only_those_subscribed_to_it() {
    let server = start();
    let addr = server.addr;
    let mut only_e1 = connect_registered(addr, "alice", "e1");
    let mut only_e2 = connect_registered(addr, "alice", "e2");
    let mut both = connect_registered(addr, "alice", "e1");
    register(&mut both, "alice", "e2");
    let mut bob = connect_registered(addr, "bob", "e1");

    let r = post(addr, "/drop", r#"{"userId":"alice","event":"e1"}"#);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "dropped 2 clients");
    assert_eq!(expect_close(&mut only_e1), 4000);
    assert_eq!(expect_close(&mut both), 4000);

    assert_eq!(push(addr, "alice", "e1", "x").body, "message sent to 0 clients");
    let r = push(addr, "alice", "e2", "survivor");
    assert_eq!(r.body, "message sent to 1 clients");
    assert_eq!(read_text(&mut only_e2), "survivor");
    assert_eq!(metric(addr, "wspush_connections"), 2);

    let r = push(addr, "bob", "e1", "bob too");
    assert_eq!(r.body, "message sent to 1 clients");
    assert_eq!(read_text(&mut bob), "bob too");
}

#[test]
fn drop_of_unknown_user_or_event_drops_nobody() {
    let server = start();
    let addr = server.addr;
    let mut ws = connect_registered(addr, "alice", "e1");
    assert_eq!(
        post(addr, "/drop", r#"{"userId":"nobody"}"#).body,
        "dropped 0 clients"
    );
    assert_eq!(
        post(addr, "/drop", r#"{"userId":"alice","event":"e9"}"#).body,
        "dropped 0 clients"
    );
    expect_silence(&mut ws, Duration::from_millis(200));
    let r = push(addr, "alice", "e1", "alive");
    assert_eq!(r.body, "message sent to 1 clients");
    assert_eq!(read_text(&mut ws), "alive");
}

#[test]
fn drop_answers_json_on_request() {
    let server = start();
    let addr = server.addr;
    let mut ws = connect_registered(addr, "alice", "e1");
    let r = post_with(
        addr,
        "/drop",
        r#"{"userId":"alice"}"#,
        &[("Accept", "application/json")],
    );
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON body");
    assert_eq!(v, serde_json::json!({"dropped": 1}));
    assert_eq!(expect_close(&mut ws), 4000);
}

#[test]
fn dropped_user_can_connect_again() {
    let server = start();
    let addr = server.addr;
    let mut ws = connect_registered(addr, "alice", "e1");
    assert_eq!(
        post(addr, "/drop", r#"{"userId":"alice"}"#).body,
        "dropped 1 clients"
    );
    assert_eq!(expect_close(&mut ws), 4000);
    let mut again = connect_registered(addr, "alice", "e1");
    let r = push(addr, "alice", "e1", "welcome back");
    assert_eq!(r.body, "message sent to 1 clients");
    assert_eq!(read_text(&mut again), "welcome back");
}

/// SPEC §1/§2 (issue #18.6): `"reconnect": false` closes with 4001, so
/// the client knows not to come back; `true` (the default) is 4000. Each
/// close says why.
#[test]
fn drop_with_reconnect_false_closes_with_4001() {
    let server = start();
    let addr = server.addr;
    let mut banned = connect_registered(addr, "mallory", "e1");
    let mut moved = connect_registered(addr, "alice", "e1");
    let mut bob = connect_registered(addr, "bob", "e1");

    let r = post(addr, "/drop", r#"{"userId":"mallory","reconnect":false}"#);
    assert_eq!((r.status, r.body.as_str()), (200, "dropped 1 clients"));
    assert_eq!(
        expect_close_frame(&mut banned),
        (4001, "dropped, do not reconnect".to_string())
    );
    let r = post(
        addr,
        "/drop",
        r#"{"userId":"alice","event":"e1","Reconnect":true}"#,
    );
    assert_eq!((r.status, r.body.as_str()), (200, "dropped 1 clients"));
    assert_eq!(expect_close_frame(&mut moved), (4000, "dropped".to_string()));

    // Anything but a boolean is refused, and nobody is dropped.
    for bad in [r#""false""#, "0", "null", "[]"] {
        let body = format!(r#"{{"userId":"bob","reconnect":{bad}}}"#);
        let r = post(addr, "/drop", &body);
        assert_eq!(
            (r.status, r.body.as_str()),
            (400, "request data illegal: reconnect must be a boolean"),
            "{body}"
        );
    }
    let r = push(addr, "bob", "e1", "still here");
    assert_eq!(r.body, "message sent to 1 clients");
    assert_eq!(read_text(&mut bob), "still here");
}

#[test]
fn the_handle_drops_for_good_with_4001() {
    let server = start();
    let addr = server.addr;
    let mut a = connect_registered(addr, "alice", "e1");
    let mut b = connect_registered(addr, "bob", "e1");
    let mut c = connect_registered(addr, "carol", "e1");
    assert_eq!(server.handle.drop_user_for_good("alice", None).unwrap(), 1);
    assert_eq!(expect_close(&mut a), 4001);
    assert_eq!(server.handle.drop_with("bob", Some("e1"), false).unwrap(), 1);
    assert_eq!(expect_close(&mut b), 4001);
    assert_eq!(server.handle.drop_user("carol", None).unwrap(), 1);
    assert_eq!(expect_close(&mut c), 4000);
}
