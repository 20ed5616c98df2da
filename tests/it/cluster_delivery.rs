//! Cluster mode (issue 6): nodes joined by a real Redis deliver each
//! other's pushes, broadcasts and drops, in order, and answer honestly.
use crate::common::*;
use crate::redis_harness::*;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn a_push_on_one_node_reaches_a_client_on_another() {
    let redis = RedisServer::start();
    let a = node(&redis.url());
    let b = node(&redis.url());
    let mut on_b = connect_registered(b.addr, "alice", "news");
    let r = push(a.addr, "alice", "news", "hello from A");
    assert_eq!((r.status, r.body.as_str()), (200, "message published to 2 nodes"));
    assert_eq!(read_text(&mut on_b), "hello from A");

    let body = r#"{"userId":"alice","event":"news","message":{"n":1}}"#;
    let r = post_with(a.addr, "/push", body, &[("Accept", "application/json")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.body, r#"{"published":true,"nodes":2}"#);
    assert_eq!(read_text(&mut on_b), r#"{"n":1}"#);
    // Nobody else got anything, and a wrong event reaches nobody.
    let r = push(a.addr, "alice", "other", "not for you");
    assert_eq!(r.status, 200);
    expect_silence(&mut on_b, Duration::from_millis(200));
}

#[test]
fn the_origin_applies_its_own_record_too() {
    let redis = RedisServer::start();
    let a = node(&redis.url());
    let mut on_a = connect_registered(a.addr, "alice", "news");
    let r = push(a.addr, "alice", "news", "to myself");
    assert_eq!((r.status, r.body.as_str()), (200, "message published to 1 nodes"));
    assert_eq!(read_text(&mut on_a), "to myself");
    assert_eq!(metric(a.addr, "wspush_messages_delivered_total"), 1);
}

#[test]
fn a_broadcast_reaches_clients_on_three_nodes() {
    let redis = RedisServer::start();
    let nodes: Vec<_> = (0..3).map(|_| node(&redis.url())).collect();
    let mut clients: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| connect_registered(n.addr, &format!("user{i}"), "alerts"))
        .collect();
    let r = post(
        nodes[1].addr,
        "/broadcast",
        r#"{"event":"alerts","message":"all hands"}"#,
    );
    assert_eq!((r.status, r.body.as_str()), (200, "message published to 3 nodes"));
    for ws in &mut clients {
        assert_eq!(read_text(ws), "all hands");
    }
}

#[test]
fn drop_on_one_node_closes_the_users_connections_on_another() {
    let redis = RedisServer::start();
    let a = node(&redis.url());
    let b = node(&redis.url());
    let mut bob_b = connect_registered(b.addr, "bob", "e");
    let mut bob_b2 = connect_registered(b.addr, "bob", "other");
    let mut carol_b = connect_registered(b.addr, "carol", "e");
    // Only bob's connections on event "e".
    let r = post(a.addr, "/drop", r#"{"userId":"bob","event":"e"}"#);
    assert_eq!((r.status, r.body.as_str()), (200, "message published to 2 nodes"));
    assert_eq!(expect_close(&mut bob_b), 4000);
    send_text(&mut carol_b, r#"{"token":"carol","event":"e2","id":1}"#);
    assert_eq!(read_text(&mut carol_b), r#"{"id":1,"ok":true}"#);
    // Then all of them.
    let r = post(a.addr, "/drop", r#"{"userId":"bob"}"#);
    assert_eq!(r.status, 200);
    assert_eq!(expect_close(&mut bob_b2), 4000);
}

#[test]
fn user_ids_spanning_nodes_each_get_the_message_once() {
    let redis = RedisServer::start();
    let a = node(&redis.url());
    let b = node(&redis.url());
    let mut alice_a = connect_registered(a.addr, "alice", "e");
    let mut bob_b = connect_registered(b.addr, "bob", "e");
    let mut bob_a = connect_registered(a.addr, "bob", "e");
    let body = r#"{"userIds":["alice","bob","alice"],"event":"e","message":"to both"}"#;
    let r = post(b.addr, "/push", body);
    assert_eq!((r.status, r.body.as_str()), (200, "message published to 2 nodes"));
    for ws in [&mut alice_a, &mut bob_b, &mut bob_a] {
        assert_eq!(read_text(ws), "to both");
        expect_silence(ws, Duration::from_millis(100));
    }
    assert_eq!(metric(a.addr, "wspush_messages_delivered_total"), 2);
    assert_eq!(metric(b.addr, "wspush_messages_delivered_total"), 1);
}

/// 1,000 pushes from A, pipelined on one keep-alive connection, arrive on
/// B in the order A sent them, and every response says 2 nodes, in order.
#[test]
fn a_thousand_pushes_from_one_node_arrive_in_order_on_another() {
    let redis = RedisServer::start();
    let a = node(&redis.url());
    let b = node(&redis.url());
    let mut on_b = connect_registered(b.addr, "alice", "seq");
    let mut on_a = connect_registered(a.addr, "alice", "seq");
    let mut s = TcpStream::connect(a.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    const N: usize = 1000;
    for batch in 0..N / 100 {
        let mut out = Vec::new();
        for i in batch * 100..(batch + 1) * 100 {
            let body = format!(r#"{{"userId":"alice","event":"seq","message":"m{i}"}}"#);
            out.extend_from_slice(push_request(&body).as_bytes());
        }
        s.write_all(&out).unwrap();
        for _ in 0..100 {
            let r = read_response(&mut reader);
            assert_eq!((r.status, r.body.as_str()), (200, "message published to 2 nodes"));
        }
    }
    for i in 0..N {
        assert_eq!(read_text(&mut on_b), format!("m{i}"));
        assert_eq!(read_text(&mut on_a), format!("m{i}"));
    }
    assert_eq!(metric(a.addr, "wspush_redis_published_total"), N as u64);
}

#[test]
fn envelope_mode_and_json_messages_cross_nodes_intact() {
    let redis = RedisServer::start();
    let a = node(&redis.url());
    let b = node(&redis.url());
    let mut env = ws_connect(b.addr, "/ws?envelope=1");
    register(&mut env, "alice", "e");
    let body = r#"{"userId":"alice","event":"e","message":"snow \u2603 \"quoted\" \\ done"}"#;
    assert_eq!(post(a.addr, "/push", body).status, 200);
    let got: serde_json::Value = serde_json::from_str(&read_text(&mut env)).unwrap();
    assert_eq!(
        got,
        serde_json::json!({"event": "e", "message": "snow \u{2603} \"quoted\" \\ done"})
    );
}

#[test]
fn the_library_handle_publishes_through_redis() {
    let redis = RedisServer::start();
    let a = node(&redis.url());
    let b = node(&redis.url());
    let mut on_b = connect_registered(b.addr, "alice", "e");
    let mut also_b = connect_registered(b.addr, "bob", "e");
    assert_eq!(a.handle.push("alice", "e", "via handle").unwrap(), 2);
    assert_eq!(read_text(&mut on_b), "via handle");
    assert_eq!(a.handle.broadcast("e", "handle broadcast").unwrap(), 2);
    assert_eq!(read_text(&mut on_b), "handle broadcast");
    assert_eq!(read_text(&mut also_b), "handle broadcast");
    assert_eq!(a.handle.drop_user("bob", None).unwrap(), 2);
    assert_eq!(expect_close(&mut also_b), 4000);
}

#[test]
fn records_that_are_not_ours_are_counted_and_ignored() {
    let redis = RedisServer::start();
    let a = node(&redis.url());
    let mut on_a = connect_registered(a.addr, "alice", "e");
    assert_eq!(redis.publish("wspush", b"hello, not a record"), 1);
    assert_eq!(redis.publish("wspush", b"1P{\"userId\":\"alice\"}"), 1);
    assert_eq!(redis.publish("wspush", &[0xff, 0, 1, 2]), 1);
    eventually("bad records counted", || {
        metric(a.addr, "wspush_redis_bad_records_total") == 3
    });
    expect_silence(&mut on_a, Duration::from_millis(100));
    // A well-formed record from anyone is applied like a push.
    let rec = br#"1P{"userIds":["alice"],"event":"e","message":"from redis-cli"}"#;
    assert_eq!(redis.publish("wspush", rec), 1);
    assert_eq!(read_text(&mut on_a), "from redis-cli");
    assert_eq!(push(a.addr, "alice", "e", "still fine").status, 200);
    assert_eq!(read_text(&mut on_a), "still fine");
}

#[test]
fn separate_channels_are_separate_clusters() {
    let redis = RedisServer::start();
    let a = node_with(&redis.url(), |b| b.configure(|c| c.redis_channel = "blue".into()));
    let b = node_with(&redis.url(), |b| {
        b.configure(|c| c.redis_channel = "green".into())
    });
    let mut on_b = connect_registered(b.addr, "alice", "e");
    let r = push(a.addr, "alice", "e", "blue only");
    assert_eq!((r.status, r.body.as_str()), (200, "message published to 1 nodes"));
    expect_silence(&mut on_b, Duration::from_millis(200));
}

#[test]
fn bad_push_bodies_are_refused_before_redis() {
    let redis = RedisServer::start();
    let a = node(&redis.url());
    let r = post(a.addr, "/push", r#"{"userId":"","event":"e","message":"m"}"#);
    assert_eq!(r.status, 400);
    assert!(r.body.starts_with("request data illegal"), "{}", r.body);
    assert_eq!(metric(a.addr, "wspush_redis_published_total"), 0);
}

/// Big messages and bursts: records larger than one read, many at once.
#[test]
fn big_messages_and_bursts_cross_nodes_whole() {
    let redis = RedisServer::start();
    let a = node(&redis.url());
    let b = node(&redis.url());
    let mut on_b = connect_registered(b.addr, "alice", "e");
    let big: String = (0..60_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    for _ in 0..3 {
        assert_eq!(a.handle.push("alice", "e", &big).unwrap(), 2);
    }
    for _ in 0..3 {
        assert_eq!(read_text(&mut on_b), big);
    }
}
