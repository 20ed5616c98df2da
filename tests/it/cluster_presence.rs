//! Presence and lifecycle across a cluster (SPEC §10), with a real
//! `redis-server`: both endpoints answer for every node, a node moving a
//! user makes no noise, a SIGKILLed node drops out within two ping
//! intervals and its users' `offline` come from the survivors, and while
//! Redis is unreachable `/presence` answers 503.

use crate::common::*;
use crate::presence::{ev, presence, sse_user, Lifecycle};
use crate::redis_harness::*;
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn both_endpoints_span_the_cluster_and_a_killed_node_drops_out() {
    let redis = RedisServer::start();
    let url = redis.url();
    let ping = Duration::from_secs(1);
    let grace = Duration::from_millis(500);
    let a = node_with(&url, |b| {
        b.configure(|c| {
            c.ping_interval = ping;
            c.offline_grace = grace;
        })
    });
    let mut b = spawn_bin(&[
        "--redis",
        &url,
        "--ping-interval",
        "1",
        "--offline-grace",
        "500ms",
    ]);
    wait_up(b.addr);
    let mut la = Lifecycle::open(a.addr, "").expect("stream on a");

    let alice = sse_user(b.addr, "alice", "news");
    assert_eq!(la.next(), ev("online", "alice"), "a user of the other node");
    let _bob = sse_user(a.addr, "bob", "news");
    assert_eq!(la.next(), ev("online", "bob"));
    let both = json!({"event": "news", "users": ["alice", "bob"], "connections": 2});
    eventually("b knows a's users", || presence(b.addr, "event=news") == both);
    assert_eq!(presence(a.addr, "event=news"), both);
    assert_eq!(
        presence(a.addr, "userId=alice"),
        json!({"userId": "alice", "online": true, "connections": 1, "events": ["news"]})
    );
    assert_eq!(metric(a.addr, "wspush_online_users"), 2);

    // alice moves from b to a within the grace: no noise.
    drop(alice);
    let _alice = sse_user(a.addr, "alice", "chat");
    std::thread::sleep(grace + Duration::from_millis(300));
    let carol = sse_user(b.addr, "carol", "news");
    assert_eq!(la.next(), ev("online", "carol"), "nothing said about alice");
    eventually("a counts carol", || {
        presence(a.addr, "userId=carol")["connections"] == 1
    });

    // SIGKILL: b says nothing more. Its users go offline on a, said by a.
    let killed = Instant::now();
    let _ = b.child.kill();
    let _ = b.child.wait();
    assert_eq!(la.next(), ev("offline", "carol"));
    let took = killed.elapsed();
    assert!(
        took <= 2 * ping + grace + Duration::from_millis(1500),
        "offline {took:?} after the kill"
    );
    assert!(took >= grace, "{took:?}");
    drop(carol);
    assert_eq!(
        presence(a.addr, "userId=carol"),
        json!({"userId": "carol", "online": false, "connections": 0, "events": []})
    );
    assert_eq!(
        presence(a.addr, "event=news"),
        json!({"event": "news", "users": ["bob"], "connections": 1})
    );
    assert_eq!(metric(a.addr, "wspush_online_users"), 2, "alice and bob");
}

/// Redis gone: `/presence` answers 503 like a push; back, the nodes
/// resynchronise (hello, snapshots) and nobody flapped meanwhile.
#[test]
fn redis_unreachable_is_503_and_a_blip_makes_no_noise() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    // A horizon (1.5 pings) longer than the nodes take to reconnect.
    let cfg = |b: wspush::Builder| {
        b.configure(|c| {
            c.ping_interval = Duration::from_secs(6);
            c.offline_grace = Duration::from_millis(300);
        })
    };
    let a = node_with(&url, cfg);
    let b = node_with(&url, cfg);
    let mut la = Lifecycle::open(a.addr, "").expect("stream");
    let _alice = sse_user(b.addr, "alice", "news");
    assert_eq!(la.next(), ev("online", "alice"));

    redis.kill();
    wait_down(a.addr);
    let r = get(a.addr, "/presence?userId=alice");
    assert_eq!((r.status, r.body.as_str()), (503, "redis unavailable"));
    assert!(r.header("Retry-After").is_some());
    // Listeners stay; local changes still count while cut off.
    let _bob = sse_user(a.addr, "bob", "news");
    assert_eq!(la.next(), ev("online", "bob"));

    redis.restart();
    wait_up(a.addr);
    wait_up(b.addr);
    let both = json!({"event": "news", "users": ["alice", "bob"], "connections": 2});
    eventually("b learns bob from a's snapshot", || {
        presence(b.addr, "event=news") == both
    });
    assert_eq!(presence(a.addr, "event=news"), both);
    std::thread::sleep(Duration::from_millis(600));
    let _carol = sse_user(b.addr, "carol", "x");
    assert_eq!(la.next(), ev("online", "carol"), "no offline/online for the blip");
}

/// Records from anyone on the channel are applied (keep it private): a
/// snapshot of many users is many transitions at once, and a listener
/// that does not read them is cut off as a slow consumer with 4008.
#[test]
fn a_listener_that_does_not_read_is_cut_off() {
    let redis = RedisServer::start();
    let a = node_with(&redis.url(), |b| b.configure(|c| c.max_backlog_bytes = 1024));
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&a.addr.into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /lifecycle HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut head = String::new();
    while !head.ends_with("retry: 3000\n\n\r\n") {
        assert!(r.read_line(&mut head).unwrap() > 0, "{head}");
    }
    // 25,000 users with long names: about 7 MB of events, more than the
    // socket buffers hold.
    let mut rec = String::from(r#"1N{"node":"elsewhere","type":"snapshot","users":["#);
    for i in 0..25_000 {
        if i > 0 {
            rec.push(',');
        }
        rec.push_str(&format!(
            r#"{{"userId":"{i:05}{}","connections":1,"events":{{"e":1}}}}"#,
            "x".repeat(240)
        ));
    }
    rec.push_str("]}");
    assert_eq!(redis.publish("wspush", rec.as_bytes()), 1);
    eventually("the listener is cut off", || {
        metric(a.addr, "wspush_slow_consumer_drops_total{transport=\"sse\"}") == 1
    });
    let mut all = Vec::new();
    let _ = r.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert!(
        text.contains("event: close\ndata: {\"code\":4008,\"reason\":\"slow consumer\"}\n\n"),
        "{}",
        &text[text.len().saturating_sub(300)..]
    );
    assert_eq!(metric(a.addr, "wspush_online_users"), 25_000);
    let p = presence(a.addr, "event=e");
    assert_eq!(p["connections"], 25_000);
    assert_eq!(p["users"].as_array().map(Vec::len), Some(10_000));
    assert_eq!(p["truncated"], true);
}

/// A node whose view of another disagrees with that node's heartbeat
/// (records were lost) asks everyone for snapshots again: it says
/// `hello`.
#[test]
fn a_view_that_disagrees_with_a_beat_asks_for_snapshots() {
    let redis = RedisServer::start();
    let ping = Duration::from_millis(400);
    let a = node_with(&redis.url(), |b| b.configure(|c| c.ping_interval = ping));
    let mut sub = TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    sub.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    sub.write_all(b"SUBSCRIBE wspush\r\n").unwrap();
    // Subscribed before a is asked anything: else its hello may be
    // published before Redis took the subscription, and never seen here.
    let mut confirm = Vec::new();
    let deadline = Instant::now() + WAIT;
    while !String::from_utf8_lossy(&confirm).contains(":1\r\n") {
        assert!(Instant::now() < deadline, "no subscribe confirmation");
        let mut b = [0u8; 256];
        if let Ok(n) = sub.read(&mut b) {
            confirm.extend_from_slice(&b[..n]);
        }
    }
    // Asked for presence, a says hello once; past that hello's horizon
    // (1.5 pings) it may ask again.
    assert_eq!(presence(a.addr, "userId=g")["online"], false);
    std::thread::sleep(ping * 2);
    let states = r#"1N{"node":"ghost","type":"update","users":[{"userId":"g","connections":1,"events":{}}]}"#;
    assert_eq!(redis.publish("wspush", states.as_bytes()), 2);
    eventually("a knows the ghost's user", || {
        presence(a.addr, "userId=g")["online"] == true
    });
    let mut buf = [0u8; 4096];
    let mut before = Vec::new();
    while let Ok(n) = sub.read(&mut buf) {
        assert!(n > 0, "redis closed");
        before.extend_from_slice(&buf[..n]);
    }
    assert_eq!(
        String::from_utf8_lossy(&before)
            .matches(r#""type":"hello""#)
            .count(),
        1,
        "one hello, when first asked"
    );
    assert_eq!(
        redis.publish("wspush", br#"1N{"node":"ghost","type":"beat","userCount":2}"#),
        2
    );
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    while !String::from_utf8_lossy(&seen).contains(r#""type":"hello""#) {
        assert!(
            Instant::now() < deadline,
            "no hello: {}",
            String::from_utf8_lossy(&seen)
        );
        match sub.read(&mut buf) {
            Ok(0) => panic!("redis closed"),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
}

/// A node that joins later learns what the others hold when it first
/// needs it (here: its first `/presence`), not at their next beat (15 s
/// with the default 30 s ping interval).
#[test]
fn a_late_node_learns_the_cluster_when_first_asked() {
    let redis = RedisServer::start();
    let a = node(&redis.url());
    let _alice = sse_user(a.addr, "alice", "news");
    let b = node(&redis.url());
    let started = Instant::now();
    eventually("b knows alice", || {
        presence(b.addr, "userId=alice")["online"] == true
    });
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        presence(b.addr, "event=news"),
        json!({"event": "news", "users": ["alice"], "connections": 1})
    );
}

/// With `--history` pushes go through a Redis stream; presence records are
/// no pushes: they stay plain pub/sub (a node catching up must not replay
/// old states), and presence still spans the cluster.
#[test]
fn presence_with_history_stays_out_of_the_stream() {
    let redis = RedisServer::start();
    let url = redis.url();
    let with_history = |b: wspush::Builder| b.configure(|c| c.history = 100);
    let a = node_with(&url, with_history);
    let b = node_with(&url, with_history);
    let _alice = sse_user(b.addr, "alice", "news");
    eventually("a sees b's user", || {
        presence(a.addr, "userId=alice")["online"] == json!(true)
    });
    assert_eq!(redis.command("XLEN wspush:history"), ":0", "no push yet");
    let r = post(
        a.addr,
        "/push",
        r#"{"userId":"alice","event":"news","message":"hi"}"#,
    );
    assert_eq!(r.body, "message published to 2 nodes");
    assert_eq!(
        redis.command("XLEN wspush:history"),
        ":1",
        "the push, not presence"
    );
}
