//! Delivery continuity (SPEC §8) over real sockets: cursors on every
//! transport and in JSON answers, resume after a reconnect (replay, then
//! live, with no gap and no duplicate, also while pushes race the replay),
//! `recovered: false` for each reason, the byte cap, and nothing changed
//! without `--history`.

use crate::common::*;
use serde_json::{json, Value};
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub fn with_history(n: usize) -> TestServer {
    start_with(|b| b.configure(|c| c.history = n))
}

/// An envelope-mode client of `user` on `event`; the register's reply.
#[track_caller]
pub fn envelope_client(addr: SocketAddr, user: &str, event: &str) -> Ws {
    let mut ws = ws_connect(addr, "/ws?envelope=1");
    register(&mut ws, user, event);
    ws
}

/// Registers with `since` and an id; the reply.
#[track_caller]
pub fn resume(ws: &mut Ws, user: &str, event: &str, since: &str) -> Value {
    let cmd = json!({"token": user, "event": event, "since": since, "id": "r"}).to_string();
    send_text(ws, &cmd);
    serde_json::from_str(&read_text(ws)).expect("reply is JSON")
}

#[track_caller]
pub fn next_envelope(ws: &mut Ws) -> Value {
    serde_json::from_str(&read_text(ws)).expect("envelope is JSON")
}

/// `POST path` with `Accept: application/json`; the parsed answer.
#[track_caller]
pub fn post_json(addr: SocketAddr, path: &str, body: Value) -> Value {
    let r = post_with(addr, path, &body.to_string(), &[("Accept", "application/json")]);
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).expect("JSON answer")
}

/// Pushes `message` to `user` on `event`; the push's cursor.
#[track_caller]
pub fn push_cursor(addr: SocketAddr, user: &str, event: &str, message: &str) -> String {
    let v = post_json(
        addr,
        "/push",
        json!({"userId": user, "event": event, "message": message}),
    );
    v["cursor"].as_str().expect("a cursor in the answer").to_string()
}

/// Sends every body as a `POST path` pipelined on one keep-alive
/// connection, then reads every answer (all must be 200).
#[track_caller]
pub fn pipelined(addr: SocketAddr, path: &str, bodies: &[Value]) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    for chunk in bodies.chunks(200) {
        let mut all = String::new();
        for b in chunk {
            let b = b.to_string();
            all.push_str(&format!(
                "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            ));
        }
        s.write_all(all.as_bytes()).unwrap();
        for _ in chunk {
            let resp = read_response(&mut r);
            assert_eq!(resp.status, 200, "{}", resp.body);
        }
    }
}

/// SPEC §8: one cursor per push, in the envelope, as SSE `id:`, and in
/// the JSON answer; raw WebSocket messages unchanged; one push to several
/// users has one cursor.
#[test]
fn every_delivered_message_has_one_cursor_on_every_transport() {
    let server = with_history(10);
    let mut env = envelope_client(server.addr, "u", "e");
    let mut raw = connect_registered(server.addr, "u", "e");
    let mut other = envelope_client(server.addr, "v", "e");
    let mut sse = crate::sse::sse_open(server.addr, "event=e&token=u", "").expect("stream opens");

    let v = post_json(
        server.addr,
        "/push",
        json!({"userIds": ["u", "v"], "event": "e", "message": "hi"}),
    );
    let c1 = v["cursor"].as_str().expect("cursor").to_string();
    assert_eq!(v, json!({"sent": 4, "cursor": c1}));
    assert_eq!(
        next_envelope(&mut env),
        json!({"event": "e", "message": "hi", "cursor": c1})
    );
    assert_eq!(
        next_envelope(&mut other)["cursor"],
        c1,
        "one cursor whatever the number of users"
    );
    assert_eq!(
        read_text(&mut raw),
        "hi",
        "raw messages are the seed's, byte for byte"
    );
    let ev = sse.next_event();
    assert_eq!(
        (ev.event.as_str(), ev.data.as_str(), ev.id.as_deref()),
        ("e", "hi", Some(c1.as_str()))
    );

    let v = post_json(
        server.addr,
        "/broadcast",
        json!({"event": "e", "message": {"n": 1}}),
    );
    let c2 = v["cursor"].as_str().expect("cursor").to_string();
    assert_ne!(c1, c2);
    assert_eq!(
        next_envelope(&mut env),
        json!({"event": "e", "message": {"n": 1}, "cursor": c2})
    );
    assert_eq!(read_text(&mut raw), r#"{"n":1}"#);
    assert_eq!(sse.next_event().id.as_deref(), Some(c2.as_str()));
    // Text answers keep the seed's words.
    let r = push(server.addr, "u", "e", "plain");
    assert_eq!((r.status, r.body.as_str()), (200, "message sent to 3 clients"));
    // A drop has no cursor.
    let d = post_json(server.addr, "/drop", json!({"userId": "nobody"}));
    assert_eq!(d, json!({"dropped": 0}));
}

/// Without `--history` nothing changes: no cursor anywhere, and `since`
/// is accepted and ignored with `"recovered": false`; a register without
/// it is answered exactly as before.
#[test]
fn without_history_since_is_ignored_and_nothing_carries_a_cursor() {
    let server = start();
    let mut ws = ws_connect(server.addr, "/ws?envelope=1");
    send_text(&mut ws, r#"{"token":"u","event":"e","id":1}"#);
    assert_eq!(read_text(&mut ws), r#"{"id":1,"ok":true}"#);
    assert_eq!(
        resume(&mut ws, "u", "e2", "whatever-1"),
        json!({"id": "r", "ok": true, "recovered": false})
    );
    let v = post_json(
        server.addr,
        "/push",
        json!({"userId": "u", "event": "e", "message": "m"}),
    );
    assert_eq!(v, json!({"sent": 1}));
    assert_eq!(read_text(&mut ws), r#"{"event":"e","message":"m"}"#);
    let mut sse = crate::sse::sse_open(server.addr, "event=e&token=u&since=x-1", "").expect("opens");
    let gap = sse.next_event();
    assert_eq!((gap.event.as_str(), gap.id), ("gap", None));
    assert_eq!(
        serde_json::from_str::<Value>(&gap.data).unwrap(),
        json!({"event": "e", "recovered": false})
    );
    push(server.addr, "u", "e", "live");
    let ev = sse.next_event();
    assert_eq!((ev.data.as_str(), ev.id), ("live", None));
}

/// A client that reconnects with the last cursor it saw gets, after the
/// reply that says `recovered: true`, everything its streams got after
/// it — (u, e) and (e) merged in push order, nothing of other users or
/// events — and then live messages.
#[test]
fn a_resume_replays_what_was_missed_in_order_then_goes_live() {
    let server = with_history(100);
    let mut ws = envelope_client(server.addr, "u", "e");
    let c1 = push_cursor(server.addr, "u", "e", "one");
    assert_eq!(next_envelope(&mut ws)["cursor"], c1);
    drop(ws);

    let c2 = push_cursor(server.addr, "u", "e", "two");
    push_cursor(server.addr, "v", "e", "someone else's");
    push_cursor(server.addr, "u", "other", "another event");
    let v = post_json(
        server.addr,
        "/broadcast",
        json!({"event": "e", "message": "three"}),
    );
    let c3 = v["cursor"].as_str().unwrap().to_string();
    let c4 = push_cursor(server.addr, "u", "e", "four");

    let mut ws = ws_connect(server.addr, "/ws?envelope=1");
    assert_eq!(
        resume(&mut ws, "u", "e", &c1),
        json!({"id": "r", "ok": true, "recovered": true})
    );
    for (m, c) in [("two", &c2), ("three", &c3), ("four", &c4)] {
        assert_eq!(
            next_envelope(&mut ws),
            json!({"event": "e", "message": m, "cursor": c})
        );
    }
    let c5 = push_cursor(server.addr, "u", "e", "five");
    assert_eq!(next_envelope(&mut ws)["cursor"], c5);
    // Resuming from the newest cursor replays nothing and is recovered.
    let mut again = ws_connect(server.addr, "/ws?envelope=1");
    assert_eq!(resume(&mut again, "u", "e", &c5)["recovered"], true);
    expect_silence(&mut again, Duration::from_millis(200));
    // Without an id the replay comes all the same, with no reply.
    let mut quiet = ws_connect(server.addr, "/ws");
    send_text(
        &mut quiet,
        &json!({"token": "u", "event": "e", "since": c3}).to_string(),
    );
    assert_eq!(read_text(&mut quiet), "four");
    assert_eq!(read_text(&mut quiet), "five");
}

/// `recovered` is false, and only live messages follow, for each reason
/// SPEC §8 names: a message after the cursor was evicted (per-stream
/// limit, TTL, byte cap), the cursor is from another server process, or
/// it is unknown. A register of an event already subscribed does not
/// replay.
#[test]
fn recovered_is_false_for_each_reason_and_only_live_follows() {
    #[track_caller]
    fn not_recovered(addr: SocketAddr, user: &str, since: &str) {
        let mut ws = ws_connect(addr, "/ws?envelope=1");
        assert_eq!(
            resume(&mut ws, user, "e", since),
            json!({"id": "r", "ok": true, "recovered": false}),
            "since {since:?}"
        );
        let live = push_cursor(addr, user, "e", "live");
        let got = next_envelope(&mut ws);
        assert_eq!(
            (got["message"].as_str(), got["cursor"].as_str()),
            (Some("live"), Some(live.as_str()))
        );
    }

    // Evicted by the per-stream limit.
    let server = with_history(3);
    let c = push_cursor(server.addr, "u", "e", "seen");
    for i in 0..4 {
        push_cursor(server.addr, "u", "e", &format!("missed {i}"));
    }
    not_recovered(server.addr, "u", &c);
    // Another user's stream lost nothing: recovered.
    let c_v = push_cursor(server.addr, "v", "e", "seen");
    push_cursor(server.addr, "v", "e", "missed");
    let mut ws = ws_connect(server.addr, "/ws?envelope=1");
    assert_eq!(resume(&mut ws, "v", "e", &c_v)["recovered"], true);

    // Evicted by the TTL.
    let ttl = start_with(|b| {
        b.configure(|c| {
            c.history = 100;
            c.history_ttl = Duration::from_millis(300);
        })
    });
    let c = push_cursor(ttl.addr, "u", "e", "seen");
    push_cursor(ttl.addr, "u", "e", "expires");
    std::thread::sleep(Duration::from_millis(450));
    not_recovered(ttl.addr, "u", &c);

    // Evicted by the byte cap.
    let capped = start_with(|b| {
        b.configure(|c| {
            c.history = 1000;
            c.history_bytes = 8 * 1024;
        })
    });
    let c = push_cursor(capped.addr, "u", "e", "seen");
    let big = "x".repeat(1000);
    let bodies: Vec<Value> = (0..20)
        .map(|_| json!({"userId": "u", "event": "e", "message": big}))
        .collect();
    pipelined(capped.addr, "/push", &bodies);
    not_recovered(capped.addr, "u", &c);

    // A cursor of another server process, and cursors that are unknown.
    let a = with_history(100);
    let b = with_history(100);
    let from_a = push_cursor(a.addr, "u", "e", "on a");
    push_cursor(b.addr, "u", "e", "on b");
    not_recovered(b.addr, "u", &from_a);
    let last_b = push_cursor(b.addr, "u", "e", "on b");
    let (epoch, n) = last_b.rsplit_once('-').unwrap();
    let future = format!("{epoch}-{}", n.parse::<u64>().unwrap() + 1000);
    for unknown in ["", "garbage", "0-0", &future] {
        not_recovered(b.addr, "u", unknown);
    }

    // Already subscribed on this connection: no replay, and not recovered.
    let mut ws = envelope_client(b.addr, "u", "e");
    assert_eq!(resume(&mut ws, "u", "e", &from_a)["recovered"], false);
    let c = push_cursor(b.addr, "u", "e", "once");
    assert_eq!(next_envelope(&mut ws)["cursor"], c);
    expect_silence(&mut ws, Duration::from_millis(200));
}

/// The race SPEC §8 rules out: pushes arrive while a replay bigger than
/// the backlog limit is being handed out. The client gets every message
/// exactly once, in push order — replayed ones, then the ones pushed
/// during the replay — and is never closed as a slow consumer.
#[test]
fn pushes_racing_a_big_replay_arrive_once_in_order_without_4008() {
    let server = start_with(|b| {
        b.configure(|c| {
            c.history = 10_000;
            c.history_bytes = 64 << 20;
            c.max_backlog_bytes = 16 * 1024;
        })
    });
    let addr = server.addr;
    let mut ws = envelope_client(addr, "u", "e");
    let c0 = push_cursor(addr, "u", "e", "seen");
    assert_eq!(next_envelope(&mut ws)["cursor"], c0);
    drop(ws);
    // 2,000 messages of 3 KB missed: 6 MB, more than the socket buffers
    // hold (so the replay is still going while the pushes below arrive)
    // and 375 times the backlog limit.
    let pad = "p".repeat(3000);
    let bodies: Vec<Value> = (0..2000)
        .map(|i| json!({"userId": "u", "event": "e", "message": format!("missed {i} {pad}")}))
        .collect();
    pipelined(addr, "/push", &bodies);

    let mut ws = ws_connect(addr, "/ws?envelope=1");
    assert_eq!(resume(&mut ws, "u", "e", &c0)["recovered"], true);
    // Live pushes (and broadcasts, the other stream) race the replay,
    // which cannot finish before the client reads most of it.
    let racer = std::thread::spawn(move || {
        for i in 0..300 {
            let body = if i % 3 == 0 {
                json!({"event": "e", "message": format!("live {i}")})
            } else {
                json!({"userId": "u", "event": "e", "message": format!("live {i}")})
            };
            let path = if i % 3 == 0 { "/broadcast" } else { "/push" };
            let r = post(addr, path, &body.to_string());
            assert_eq!(r.status, 200);
        }
    });
    racer.join().unwrap();
    let mut got = Vec::new();
    let mut cursors = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 2300 {
        assert!(Instant::now() < deadline, "only {} messages", got.len());
        let v = next_envelope(&mut ws);
        assert!(
            cursors.insert(v["cursor"].as_str().unwrap().to_string()),
            "a cursor twice"
        );
        got.push(
            v["message"]
                .as_str()
                .unwrap()
                .split(' ')
                .take(2)
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    let want: Vec<String> = (0..2000)
        .map(|i| format!("missed {i}"))
        .chain((0..300).map(|i| format!("live {i}")))
        .collect();
    assert_eq!(got, want);
    expect_silence(&mut ws, Duration::from_millis(200));
    assert_eq!(metric(addr, "wspush_slow_consumer_drops_total"), 0);
}

/// The byte cap holds: the retained bytes never go over it, whatever is
/// pushed, and the oldest go first.
#[test]
fn retained_bytes_never_exceed_the_cap() {
    let cap = 32 * 1024;
    let server = start_with(|b| {
        b.configure(|c| {
            c.history = 1000;
            c.history_bytes = cap;
        })
    });
    assert_eq!(metric(server.addr, "wspush_history_max_bytes"), cap as u64);
    let mut max_seen = 0;
    for round in 0..10 {
        let bodies: Vec<Value> = (0..100)
            .map(|i| json!({"userId": format!("user{}", (round * 100 + i) % 37), "event": "e", "message": "m".repeat(i * 7 + 1)}))
            .collect();
        pipelined(server.addr, "/push", &bodies);
        let bytes = metric(server.addr, "wspush_history_bytes");
        assert!(bytes <= cap as u64, "{bytes} over the cap after round {round}");
        max_seen = max_seen.max(bytes);
    }
    assert!(max_seen > cap as u64 / 2, "the cap was reached: {max_seen}");
    assert!(metric(server.addr, "wspush_history_messages") > 0);
}
