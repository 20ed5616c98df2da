//! SPEC §12 and §2 in cluster mode, with a real Redis: a record whose
//! message is over this node's body limit is not delivered and is logged
//! at `warn`; `/drop` with `"reconnect": false` reaches other nodes as
//! 4001; a push no backlog could hold is refused (413) before Redis.
use crate::common::*;
use crate::redis_harness::*;
use std::time::Duration;

#[test]
fn a_record_with_a_message_over_the_body_limit_is_not_delivered_and_warned_about() {
    let redis = RedisServer::start();
    let url = redis.url();
    let (mut child, log) = spawn_collecting_stderr(
        command(env!("CARGO_BIN_EXE_wspush"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--redis",
                &url,
                "--max-body-bytes",
                "1024",
            ])
            .args(["--log-level", "warn"]),
    );
    let node = BinServer {
        addr: listening_addr(&mut child),
        child,
    };
    wait_up(node.addr);
    let mut ws = connect_registered(node.addr, "alice", "e");

    // Someone else on the channel publishes a 2,000-byte message, then a
    // small one: only the small one arrives.
    let big = format!(r#"1B{{"event":"e","message":"{}"}}"#, "x".repeat(2000));
    assert_eq!(redis.publish("wspush", big.as_bytes()), 1);
    let push = format!(
        r#"1P{{"userIds":["alice"],"event":"e","message":{{"big":"{}"}}}}"#,
        "y".repeat(1100)
    );
    assert_eq!(redis.publish("wspush", push.as_bytes()), 1);
    assert_eq!(
        redis.publish("wspush", br#"1B{"event":"e","message":"small"}"#),
        1
    );
    assert_eq!(read_text(&mut ws), "small");
    expect_silence(&mut ws, Duration::from_millis(100));
    assert_eq!(metric(node.addr, "wspush_messages_delivered_total"), 1);

    drop(node);
    let log = log.join().expect("stderr reader");
    let warned: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("wspush warn:") && l.contains("larger than the body limit"))
        .collect();
    // Rate-limited: the first is warned, the second only counted.
    assert_eq!(warned.len(), 1, "log:\n{log}");
    assert!(warned[0].contains("2000 bytes"), "{}", warned[0]);
}

#[test]
fn drop_for_good_on_one_node_closes_with_4001_on_another() {
    let redis = RedisServer::start();
    let a = node(&redis.url());
    let b = node(&redis.url());
    let mut on_b = connect_registered(b.addr, "mallory", "e");
    let mut other = connect_registered(b.addr, "mallory", "f");
    let r = post(
        a.addr,
        "/drop",
        r#"{"userId":"mallory","event":"e","reconnect":false}"#,
    );
    assert_eq!((r.status, r.body.as_str()), (200, "message published to 2 nodes"));
    assert_eq!(
        expect_close_frame(&mut on_b),
        (4001, "dropped, do not reconnect".to_string())
    );
    assert_eq!(a.handle.drop_user("mallory", None).unwrap(), 2);
    assert_eq!(expect_close_frame(&mut other), (4000, "dropped".to_string()));
    let r = post(a.addr, "/drop", r#"{"userId":"x","reconnect":1}"#);
    assert_eq!(r.status, 400);
}

#[test]
fn a_push_no_backlog_could_hold_is_refused_before_redis() {
    let redis = RedisServer::start();
    let a = node_with(&redis.url(), |b| b.configure(|c| c.max_backlog_bytes = 4096));
    let b = node(&redis.url());
    let mut on_b = connect_registered(b.addr, "alice", "e");
    let body = serde_json::json!({"userId": "alice", "event": "e", "message": "x".repeat(5000)});
    let r = post(a.addr, "/push", &body.to_string());
    assert_eq!(
        (r.status, r.body.as_str()),
        (413, "request data illegal: message larger than the backlog limit")
    );
    let r = push(a.addr, "alice", "e", "fits");
    assert_eq!(r.status, 200);
    assert_eq!(read_text(&mut on_b), "fits");
}
