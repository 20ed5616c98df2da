//! Cluster mode with `--history` (SPEC §8): cursors are cluster-wide (the
//! Redis stream's entry IDs), a node cut off from Redis delivers, once
//! back, every push Redis accepted meanwhile, in order, and a node that
//! cannot (Redis lost its data) drops its clients so they resume and learn
//! `recovered: false`.

use crate::common::*;
use crate::history::{next_envelope, post_json, resume};
use crate::redis_harness::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn history_node(url: &str) -> TestServer {
    node_with(url, |b| b.configure(|c| c.history = 1000))
}

/// A TCP proxy in front of Redis that the test can cut: while cut, every
/// connection through it is closed and new ones are closed at once.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(redis_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (c, o) = (Arc::clone(&cut), Arc::clone(&open));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                if c.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", redis_port)) else {
                    continue;
                };
                let mut list = o.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                drop(list);
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, cut, open }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Every connection through the proxy is closed; new ones too.
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

#[track_caller]
fn published_cursor(addr: SocketAddr, body: Value) -> String {
    let v = post_json(addr, "/push", body);
    assert_eq!(v["published"], true, "{v}");
    v["cursor"].as_str().expect("a cursor").to_string()
}

/// Node B's Redis connection is cut while node A pushes: once B is back,
/// its client receives everything A pushed meanwhile, in order, exactly
/// once, then live pushes again.
#[test]
fn a_node_cut_off_from_redis_delivers_what_it_missed_in_order() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port);
    let a = history_node(&redis.url());
    let b = history_node(&proxy.url());
    let mut on_b = ws_connect(b.addr, "/ws?envelope=1");
    register(&mut on_b, "u", "e");
    let c = published_cursor(a.addr, json!({"userId": "u", "event": "e", "message": "before"}));
    assert_eq!(
        next_envelope(&mut on_b),
        json!({"event": "e", "message": "before", "cursor": c})
    );

    proxy.cut();
    wait_down(b.addr);
    let mut sent = Vec::new();
    for i in 0..300 {
        let body = if i % 5 == 0 {
            json!({"event": "e", "message": format!("missed {i}")})
        } else {
            json!({"userId": "u", "event": "e", "message": format!("missed {i}")})
        };
        let path = if i % 5 == 0 { "/broadcast" } else { "/push" };
        let v = post_json(a.addr, path, body);
        sent.push(v["cursor"].as_str().unwrap().to_string());
    }
    proxy.restore();
    wait_up(b.addr);
    for (i, cursor) in sent.iter().enumerate() {
        let got = next_envelope(&mut on_b);
        assert_eq!(got["message"], format!("missed {i}"));
        assert_eq!(got["cursor"], *cursor);
    }
    let c = published_cursor(a.addr, json!({"userId": "u", "event": "e", "message": "live"}));
    assert_eq!(next_envelope(&mut on_b)["cursor"], c);
    expect_silence(&mut on_b, Duration::from_millis(200));
}

/// The same for a node that has applied no push yet (just started, on a
/// stream that already has entries, and on an empty one): it used to have
/// no place to catch up from, and lost everything pushed while it was cut.
#[test]
fn a_node_that_applied_nothing_yet_catches_up_too() {
    for prefill in [true, false] {
        let redis = RedisServer::start();
        let proxy = Proxy::start(redis.port);
        let a = history_node(&redis.url());
        if prefill {
            published_cursor(a.addr, json!({"userId": "x", "event": "e", "message": "old"}));
        }
        let b = history_node(&proxy.url());
        wait_up(b.addr);
        let mut on_b = ws_connect(b.addr, "/ws?envelope=1");
        register(&mut on_b, "u", "e");
        proxy.cut();
        wait_down(b.addr);
        let sent: Vec<String> = (0..3)
            .map(|i| {
                published_cursor(
                    a.addr,
                    json!({"userId": "u", "event": "e", "message": format!("m{i}")}),
                )
            })
            .collect();
        proxy.restore();
        wait_up(b.addr);
        for (i, cursor) in sent.iter().enumerate() {
            let got = next_envelope(&mut on_b);
            assert_eq!(got["message"], format!("m{i}"), "prefill {prefill}");
            assert_eq!(got["cursor"], *cursor);
        }
        let c = published_cursor(a.addr, json!({"userId": "u", "event": "e", "message": "live"}));
        assert_eq!(next_envelope(&mut on_b)["cursor"], c);
        expect_silence(&mut on_b, Duration::from_millis(200));
    }
}

/// One cursor for the whole cluster: a push answered by A names the
/// cursor every node delivers it with, and a client that saw it on A
/// resumes on B.
#[test]
fn cursors_are_cluster_wide_and_a_client_resumes_on_another_node() {
    let redis = RedisServer::start();
    let a = history_node(&redis.url());
    let b = history_node(&redis.url());
    let mut on_a = ws_connect(a.addr, "/ws?envelope=1");
    register(&mut on_a, "u", "e");
    let v = post_json(
        b.addr,
        "/push",
        json!({"userId": "u", "event": "e", "message": "one"}),
    );
    let c1 = v["cursor"].as_str().unwrap().to_string();
    assert_eq!(v, json!({"published": true, "nodes": 2, "cursor": c1}));
    assert_eq!(next_envelope(&mut on_a)["cursor"], c1);
    drop(on_a);
    let c2 = published_cursor(a.addr, json!({"userId": "u", "event": "e", "message": "two"}));
    let b2 = post_json(b.addr, "/broadcast", json!({"event": "e", "message": "three"}));
    let c3 = b2["cursor"].as_str().unwrap().to_string();
    let mut on_b = ws_connect(b.addr, "/ws?envelope=1");
    assert_eq!(
        resume(&mut on_b, "u", "e", &c1),
        json!({"id": "r", "ok": true, "recovered": true})
    );
    assert_eq!(
        next_envelope(&mut on_b),
        json!({"event": "e", "message": "two", "cursor": c2})
    );
    assert_eq!(
        next_envelope(&mut on_b),
        json!({"event": "e", "message": "three", "cursor": c3})
    );
    // A node started later knows nothing before it joined.
    let late = history_node(&redis.url());
    let mut on_late = ws_connect(late.addr, "/ws?envelope=1");
    assert_eq!(resume(&mut on_late, "u", "e", &c1)["recovered"], false);
}

/// Redis restarted without its data: the stream (and the epoch) are new,
/// so what a node missed cannot be fetched. Its clients are dropped with
/// 4000 to resume, and their old cursors are not recovered.
#[test]
fn a_redis_that_lost_its_data_makes_clients_resume_unrecovered() {
    let mut redis = RedisServer::start();
    let a = history_node(&redis.url());
    let mut ws = ws_connect(a.addr, "/ws?envelope=1");
    register(&mut ws, "u", "e");
    let c = published_cursor(a.addr, json!({"userId": "u", "event": "e", "message": "m"}));
    assert_eq!(next_envelope(&mut ws)["cursor"], c);
    redis.restart();
    let (code, reason) = expect_close_frame(&mut ws);
    assert_eq!(
        (code, reason.as_str()),
        (4000, "missed pushes while cut off from redis")
    );
    wait_up(a.addr);
    let mut ws = ws_connect(a.addr, "/ws?envelope=1");
    assert_eq!(resume(&mut ws, "u", "e", &c)["recovered"], false);
    let c2 = published_cursor(a.addr, json!({"userId": "u", "event": "e", "message": "new"}));
    assert_ne!(c, c2);
    assert_eq!(next_envelope(&mut ws)["cursor"], c2);
}

/// Without `--history` a cluster is real-time only, as before: PUBLISH,
/// no cursor, no stream in Redis.
#[test]
fn without_history_the_cluster_publishes_as_before() {
    let redis = RedisServer::start();
    let a = node(&redis.url());
    let v = post_json(
        a.addr,
        "/push",
        json!({"userId": "u", "event": "e", "message": "m"}),
    );
    assert_eq!(v, json!({"published": true, "nodes": 1}));
    assert_eq!(redis.command("EXISTS wspush:history"), ":0");
}
