//! Presence and lifecycle (SPEC §10) on one node, through real sockets:
//! `GET /presence` for a user and an event, `GET /lifecycle` streams with
//! the offline grace (a reload makes no noise), several listeners, no
//! snapshot, a slow listener cut off, and both guarded by push auth.

use crate::common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A `/lifecycle` stream as a back end reads it.
pub struct Lifecycle {
    r: BufReader<TcpStream>,
    /// Body bytes read but not yet split into events.
    buf: String,
}

/// One event of a lifecycle stream: its name and its data.
pub type Ev = (String, String);

pub fn ev(name: &str, user: &str) -> Ev {
    (name.into(), json!({ "userId": user }).to_string())
}

impl Lifecycle {
    /// Opens `GET /lifecycle` (with extra header lines); the refusal as a
    /// plain response.
    #[track_caller]
    pub fn open(addr: SocketAddr, headers: &str) -> Result<Lifecycle, HttpResponse> {
        let (mut s, mut r) = raw_conn(addr);
        write!(s, "GET /lifecycle HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n").unwrap();
        let (status, hs) = read_status_and_headers(&mut r);
        let resp = HttpResponse {
            status,
            headers: hs,
            body: String::new(),
        };
        if status != 200 {
            let n: usize = resp
                .header("Content-Length")
                .and_then(|n| n.parse().ok())
                .expect("length");
            let mut body = vec![0; n];
            r.read_exact(&mut body).expect("body");
            return Err(HttpResponse {
                body: String::from_utf8(body).unwrap(),
                ..resp
            });
        }
        assert_eq!(resp.header("Content-Type"), Some("text/event-stream"));
        assert_eq!(resp.header("Transfer-Encoding"), Some("chunked"));
        let mut l = Lifecycle {
            r,
            buf: String::new(),
        };
        assert_eq!(
            l.next_block(),
            Some(": ok\nretry: 3000\n\n".into()),
            "the preamble"
        );
        Ok(l)
    }

    /// The next block (up to its empty line); `None` at the end.
    pub fn next_block(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..i + 2).collect();
                return Some(block);
            }
            let mut size = String::new();
            if self.r.read_line(&mut size).expect("chunk size") == 0 {
                return None;
            }
            let n = usize::from_str_radix(size.trim_end(), 16).expect("hex chunk size");
            if n == 0 {
                return None;
            }
            let mut chunk = vec![0; n + 2];
            self.r.read_exact(&mut chunk).expect("chunk");
            self.buf
                .push_str(std::str::from_utf8(&chunk[..n]).expect("utf-8"));
        }
    }

    /// The next event, pings skipped, within `WAIT`.
    #[track_caller]
    pub fn next(&mut self) -> Ev {
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "no event within {WAIT:?}");
            let block = self.next_block().expect("an event, not the end of the stream");
            if block.starts_with(':') {
                continue;
            }
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    name = v.into();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = v.into();
                }
            }
            return (name, data);
        }
    }

    /// Reads until the stream ends; the last event (`close`).
    pub fn until_end(&mut self) -> Option<Ev> {
        let mut last = None;
        while let Some(block) = self.next_block() {
            if !block.starts_with(':') {
                let mut it = block.lines();
                let name = it
                    .next()
                    .and_then(|l| l.strip_prefix("event: "))
                    .unwrap_or("")
                    .to_string();
                let data = it
                    .next()
                    .and_then(|l| l.strip_prefix("data: "))
                    .unwrap_or("")
                    .to_string();
                last = Some((name, data));
            }
        }
        last
    }
}

/// An SSE subscriber for `user` on `event`, bound once its preamble came.
#[track_caller]
pub fn sse_user(addr: SocketAddr, user: &str, event: &str) -> TcpStream {
    let (mut s, mut r) = raw_conn(addr);
    write!(
        s,
        "GET /sse?event={event}&token={user} HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    .unwrap();
    let mut head = String::new();
    while !head.ends_with("retry: 3000\n\n\r\n") {
        let mut line = String::new();
        assert!(r.read_line(&mut line).expect("stream head") > 0, "{head}");
        head.push_str(&line);
    }
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    s
}

#[track_caller]
pub fn presence(addr: SocketAddr, query: &str) -> Value {
    let r = get(addr, &format!("/presence?{query}"));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    serde_json::from_str(&r.body).expect("JSON")
}

fn get_with(addr: SocketAddr, path: &str, headers: &str) -> HttpResponse {
    raw_request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\r\n").as_bytes(),
    )
}

fn grace(d: Duration) -> impl FnOnce(wspush::Builder) -> wspush::Builder {
    move |b| b.configure(|c| c.offline_grace = d)
}

#[test]
fn presence_of_a_user_and_of_an_event() {
    let server = start();
    let a = server.addr;
    let mut alice = connect_registered(a, "alice", "news");
    register(&mut alice, "alice", "chat");
    let _alice2 = connect_registered(a, "alice", "news");
    let _bob = connect_registered(a, "bob", "news");
    let _carol = sse_user(a, "carol", "news");

    let r = get(a, "/presence?userId=alice");
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            200,
            r#"{"userId":"alice","online":true,"connections":2,"events":["chat","news"]}"#
        )
    );
    assert_eq!(
        presence(a, "userId=nobody"),
        json!({"userId": "nobody", "online": false, "connections": 0, "events": []})
    );
    let r = get(a, "/presence?event=news");
    assert_eq!(
        r.body,
        r#"{"event":"news","users":["alice","bob","carol"],"connections":4}"#
    );
    assert_eq!(
        presence(a, "event=chat"),
        json!({"event": "chat", "users": ["alice"], "connections": 1})
    );
    assert_eq!(
        presence(a, "event=nothing"),
        json!({"event": "nothing", "users": [], "connections": 0})
    );
    // Names are percent-decoded like every query.
    let _odd = connect_registered(a, "o d&d", "chat:1");
    assert_eq!(presence(a, "userId=o+d%26d")["events"], json!(["chat:1"]));
    assert_eq!(presence(a, "event=chat%3A1")["users"], json!(["o d&d"]));

    // Plain text when asked: a word, or one user per line.
    let r = get_with(a, "/presence?userId=alice", "Accept: text/plain\r\n");
    assert_eq!((r.status, r.body.as_str()), (200, "online"));
    assert!(r.header("Content-Type").unwrap().starts_with("text/plain"));
    let r = get_with(a, "/presence?userId=zed", "Accept: text/plain\r\n");
    assert_eq!(r.body, "offline");
    let r = get_with(a, "/presence?event=news", "Accept: text/plain\r\n");
    assert_eq!(r.body, "alice\nbob\ncarol\n");
    // HEAD: the head alone.
    let (mut s, mut r) = raw_conn(a);
    s.write_all(b"HEAD /presence?userId=alice HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut all = String::new();
    r.read_to_string(&mut all).unwrap();
    assert!(all.starts_with("HTTP/1.1 200 OK\r\n"), "{all}");
    let len = format!(
        "Content-Length: {}\r\n",
        get(a, "/presence?userId=alice").body.len()
    );
    assert!(all.ends_with("\r\n\r\n") && all.contains(&len), "{all}");

    // Counts drop as connections go.
    drop(alice);
    eventually("alice's first connection is gone", || {
        presence(a, "userId=alice")["connections"] == 1
    });
    assert_eq!(presence(a, "userId=alice")["events"], json!(["news"]));
}

#[test]
fn bad_queries_are_400_with_a_reason() {
    let server = start();
    let a = server.addr;
    for (query, why) in [
        (
            "",
            "userId or event is missing: GET /presence?userId=U or ?event=E",
        ),
        (
            "?user=alice",
            "userId or event is missing: GET /presence?userId=U or ?event=E",
        ),
        ("?userId=", "userId is empty"),
        ("?event=", "event is empty"),
        (
            "?userId=a&event=b",
            "ask for one userId or one event: GET /presence?userId=U or ?event=E",
        ),
        ("?userId=%ff", "malformed query string"),
    ] {
        let r = get(a, &format!("/presence{query}"));
        assert_eq!((r.status, r.body.as_str()), (400, why), "{query}");
    }
    let long = "e".repeat(257);
    let r = get(a, &format!("/presence?event={long}"));
    assert_eq!((r.status, r.body.as_str()), (400, "event too long"));
    let r = get_with(a, "/presence?userId=", "Accept: application/json\r\n");
    assert_eq!(r.body, r#"{"error":"userId is empty"}"#);
    let r = raw_request(
        a,
        b"POST /presence?userId=a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!((r.status, r.header("Allow")), (405, Some("GET, HEAD")));
    let r = raw_request(
        a,
        b"POST /lifecycle HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!((r.status, r.header("Allow")), (405, Some("GET")));
}

/// Online at the first connection (WebSocket or SSE), once; offline a
/// grace after the last; every listener gets each, in order, and the
/// data is exactly `{"userId": U}`.
#[test]
fn lifecycle_online_and_offline_after_the_grace() {
    let g = Duration::from_millis(600);
    let server = start_with(grace(g));
    let a = server.addr;
    let mut l1 = Lifecycle::open(a, "").expect("stream");
    let mut l2 = Lifecycle::open(a, "").expect("stream");

    let ws = connect_registered(a, "alice", "news");
    let ws2 = connect_registered(a, "alice", "chat");
    let sse = sse_user(a, "bob", "news");
    assert_eq!(
        l1.next_block().as_deref(),
        Some("event: online\ndata: {\"userId\":\"alice\"}\n\n"),
        "exactly that object"
    );
    assert_eq!(l1.next(), ev("online", "bob"));
    assert_eq!(l2.next(), ev("online", "alice"));
    assert_eq!(l2.next(), ev("online", "bob"));
    assert_eq!(metric(a, "wspush_online_users"), 2);

    drop(ws);
    drop(sse);
    // alice still has a connection: only bob goes, a grace later.
    let gone = Instant::now();
    assert_eq!(l1.next(), ev("offline", "bob"));
    let took = gone.elapsed();
    assert!(
        took >= g - Duration::from_millis(50),
        "offline after {took:?}, grace {g:?}"
    );
    assert!(took < g + Duration::from_secs(3), "offline after {took:?}");
    assert_eq!(l2.next(), ev("offline", "bob"));
    drop(ws2);
    assert_eq!(l1.next(), ev("offline", "alice"));
    assert_eq!(l2.next(), ev("offline", "alice"));
    assert_eq!(metric(a, "wspush_online_users"), 0);
}

/// A page reload — the last connection goes and a new one comes within
/// the grace — makes no noise, and the user stays online meanwhile. A
/// stream opened later gets no snapshot: its first event is the next
/// transition.
#[test]
fn a_reload_within_the_grace_makes_no_noise() {
    let g = Duration::from_millis(800);
    let server = start_with(grace(g));
    let a = server.addr;
    let mut l = Lifecycle::open(a, "").expect("stream");
    let ws = connect_registered(a, "alice", "news");
    assert_eq!(l.next(), ev("online", "alice"));
    drop(ws);
    eventually("alice's connection is gone", || {
        presence(a, "userId=alice")["connections"] == 0
    });
    assert_eq!(
        presence(a, "userId=alice"),
        json!({"userId": "alice", "online": true, "connections": 0, "events": []}),
        "online during the grace"
    );
    let _back = sse_user(a, "alice", "news");
    // Past the first grace's end: nothing was said about alice.
    std::thread::sleep(g + Duration::from_millis(300));
    let mut late = Lifecycle::open(a, "").expect("stream");
    let _bob = connect_registered(a, "bob", "news");
    assert_eq!(l.next(), ev("online", "bob"), "no offline/online for alice");
    assert_eq!(late.next(), ev("online", "bob"), "no snapshot");
    assert_eq!(metric(a, "wspush_online_users"), 2);
}

/// `/lifecycle` streams are back ends, not subscribers: not counted as
/// connections, not held to --max-connections, never reached by pushes
/// or drops; shutdown ends them with 1001 like every stream.
#[test]
fn lifecycle_streams_are_not_subscribers() {
    let server = start_with(|b| {
        b.configure(|c| {
            c.max_connections = 1;
            c.offline_grace = Duration::ZERO;
        })
    });
    let a = server.addr;
    let mut l = Lifecycle::open(a, "").expect("stream");
    let l2 = Lifecycle::open(a, "").expect("a second listener");
    assert_eq!(metric(a, "wspush_connections"), 0);
    let ws = connect_registered(a, "alice", "news");
    assert_eq!(l.next(), ev("online", "alice"));
    assert_eq!(metric(a, "wspush_connections"), 1);
    let r = post(a, "/broadcast", r#"{"event":"news","message":"hi"}"#);
    assert_eq!(r.body, "message sent to 1 clients");
    let r = post(a, "/drop", r#"{"userId":"alice"}"#);
    assert_eq!(r.body, "dropped 1 clients");
    assert_eq!(l.next(), ev("offline", "alice"));
    drop((ws, l2));
    server.handle.shutdown();
    let last = l.until_end().expect("a close event");
    assert_eq!(
        last,
        (
            "close".into(),
            r#"{"code":1001,"reason":"server shutting down"}"#.into()
        )
    );
}

/// Push auth guards both, as it guards /push and /metrics.
#[test]
fn both_are_guarded_by_push_auth() {
    let key = "presence-key-0123";
    let server = start_with(|b| b.configure(|c| c.push_key = Some(wspush::Secret::new(key))));
    let a = server.addr;
    let r = get(a, "/presence?userId=alice");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("WWW-Authenticate"), Some("Bearer"));
    let r = get_with(a, "/presence?userId=alice", "Authorization: Bearer wrong\r\n");
    assert_eq!(r.status, 401);
    let auth = format!("Authorization: Bearer {key}\r\n");
    let r = get_with(a, "/presence?userId=alice", &auth);
    assert_eq!(r.status, 200, "{r:?}");
    let r = Lifecycle::open(a, "").err().expect("refused");
    assert_eq!(r.status, 401);
    assert!(r.body.starts_with("push key missing"), "{}", r.body);
    let mut l = Lifecycle::open(a, &auth).expect("with the key");
    let _ws = connect_registered(a, "alice", "news");
    assert_eq!(l.next(), ev("online", "alice"));

    // Without a key: loopback only, and not from a browser.
    let open = start();
    let b = open.addr;
    assert_eq!(get(b, "/presence?userId=alice").status, 200);
    let r = get_with(b, "/presence?userId=alice", "Origin: https://evil.example\r\n");
    assert_eq!(r.status, 403);
    let r = Lifecycle::open(b, "Origin: https://evil.example\r\n")
        .err()
        .expect("refused");
    assert_eq!(r.status, 403);
    assert!(Lifecycle::open(b, "").is_ok());
}
