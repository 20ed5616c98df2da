//! Server-Sent Events (SPEC §7) through real sockets: the stream's head
//! and first bytes, pushes as events, refusals as plain HTTP with
//! `Wspush-Code`, endings as `event: close`, and SSE streams counted
//! everywhere a WebSocket is.

use crate::common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One SSE stream as a raw client reads it.
pub struct Sse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    r: BufReader<TcpStream>,
    chunked: bool,
}

/// An event as EventSource would see it (comments kept apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event: String,
    pub data: String,
    pub id: Option<String>,
}

impl Sse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The next piece of the body: one chunk on HTTP/1.1, one block up to
    /// its empty line on HTTP/1.0; `None` at the end of the stream.
    #[track_caller]
    pub fn next_block(&mut self) -> Option<String> {
        if !self.chunked {
            let mut block = String::new();
            loop {
                let mut line = String::new();
                if self.r.read_line(&mut line).expect("read a line") == 0 {
                    return (!block.is_empty()).then_some(block);
                }
                block.push_str(&line);
                if line == "\n" {
                    return Some(block);
                }
            }
        }
        let mut size = String::new();
        if self.r.read_line(&mut size).expect("chunk size") == 0 {
            return None;
        }
        let n = usize::from_str_radix(size.trim_end(), 16).expect("hex chunk size");
        if n == 0 {
            let mut end = String::new();
            self.r.read_line(&mut end).expect("last chunk's CRLF");
            return None;
        }
        let mut chunk = vec![0; n + 2];
        self.r.read_exact(&mut chunk).expect("chunk");
        assert_eq!(&chunk[n..], b"\r\n", "chunk ends with CRLF");
        chunk.truncate(n);
        Some(String::from_utf8(chunk).expect("utf-8 chunk"))
    }

    /// The next event, skipping comments (`: ping`).
    #[track_caller]
    pub fn next_event(&mut self) -> Event {
        loop {
            let block = self.next_block().expect("an event, not the end of the stream");
            if let Some(e) = parse_event(&block) {
                return e;
            }
        }
    }

    /// The stream ends: the last chunk, then the connection closes.
    #[track_caller]
    pub fn expect_end(&mut self) {
        assert_eq!(self.next_block(), None, "end of the stream");
        let mut rest = Vec::new();
        let _ = self.r.read_to_end(&mut rest);
        assert!(rest.is_empty(), "nothing after the stream: {rest:?}");
    }
}

/// An event block, or `None` for a block EventSource would not dispatch
/// (comments, `retry:` alone: no `data:` line).
fn parse_event(block: &str) -> Option<Event> {
    let mut e = Event {
        event: "message".into(),
        data: String::new(),
        id: None,
    };
    let mut data: Vec<&str> = Vec::new();
    for line in block.lines() {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(": ").unwrap_or((line, ""));
        match field {
            "event" => e.event = value.into(),
            "data" => data.push(value),
            "id" => e.id = Some(value.into()),
            _ => {}
        }
    }
    let any = !data.is_empty();
    e.data = data.join("\n");
    any.then_some(e)
}

/// Opens `GET /sse?{query}` with extra header lines; the stream, or the
/// refusal as a plain response.
#[track_caller]
pub fn sse_open(addr: SocketAddr, query: &str, headers: &str) -> Result<Sse, HttpResponse> {
    sse_open_version(addr, query, headers, "1.1")
}

#[track_caller]
fn sse_open_version(
    addr: SocketAddr,
    query: &str,
    headers: &str,
    version: &str,
) -> Result<Sse, HttpResponse> {
    let (mut s, mut r) = raw_conn(addr);
    write!(
        s,
        "GET /sse?{query} HTTP/{version}\r\nHost: localhost\r\n{headers}\r\n"
    )
    .unwrap();
    let (status, hs) = read_status_and_headers(&mut r);
    let chunked = hs
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("Transfer-Encoding") && v == "chunked");
    let sse = Sse {
        status,
        headers: hs,
        r,
        chunked,
    };
    if status == 200 {
        return Ok(sse);
    }
    let len: usize = sse
        .header("Content-Length")
        .and_then(|n| n.parse().ok())
        .expect("length");
    let mut body = vec![0; len];
    let mut r = sse.r;
    r.read_exact(&mut body).expect("body");
    Err(HttpResponse {
        status,
        headers: sse.headers,
        body: String::from_utf8(body).expect("utf-8"),
    })
}

/// A stream for `user` on `events`, its preamble read.
#[track_caller]
fn stream(addr: SocketAddr, user: &str, events: &[&str], envelope: bool) -> Sse {
    let mut q: Vec<String> = events.iter().map(|e| format!("event={e}")).collect();
    q.push(format!("token={user}"));
    if envelope {
        q.push("envelope=1".into());
    }
    let mut s = sse_open(addr, &q.join("&"), "").unwrap_or_else(|r| panic!("refused: {r:?}"));
    assert_eq!(s.next_block().as_deref(), Some(": ok\nretry: 3000\n\n"));
    s
}

/// Waits until the server counts `n` SSE connections (so a push after it
/// finds the stream bound).
#[track_caller]
fn wait_sse(addr: SocketAddr, n: u64) {
    eventually("the stream is counted", || {
        metric(addr, "wspush_connections{transport=\"sse\"}") == n
    });
}

#[test]
fn a_stream_starts_at_once_with_its_headers_and_preamble() {
    let server = start();
    let mut s = sse_open(server.addr, "event=news&token=alice", "").expect("200");
    assert_eq!(s.status, 200);
    assert_eq!(s.header("Content-Type"), Some("text/event-stream"));
    assert_eq!(s.header("Cache-Control"), Some("no-cache"));
    assert_eq!(s.header("X-Accel-Buffering"), Some("no"));
    assert_eq!(s.header("Transfer-Encoding"), Some("chunked"));
    assert_eq!(s.next_block().as_deref(), Some(": ok\nretry: 3000\n\n"));
    wait_sse(server.addr, 1);
    assert_eq!(metric(server.addr, "wspush_connections{transport=\"ws\"}"), 0);
}

#[test]
fn pushes_arrive_as_events_split_into_data_lines() {
    let server = start();
    let a = server.addr;
    let mut s = stream(a, "alice", &["news", "chat"], false);
    wait_sse(a, 1);
    assert_eq!(
        push(a, "alice", "news", "hello").body,
        "message sent to 1 clients"
    );
    let e = s.next_event();
    assert_eq!((e.event.as_str(), e.data.as_str(), e.id), ("news", "hello", None));
    let body = json!({"userId": "alice", "event": "chat", "message": "one\r\ntwo\nthree\rfour"}).to_string();
    assert_eq!(post(a, "/push", &body).body, "message sent to 1 clients");
    let e = s.next_event();
    assert_eq!(
        (e.event.as_str(), e.data.as_str()),
        ("chat", "one\ntwo\nthree\nfour")
    );
    // A JSON value is sent as its compact text, as to a WebSocket.
    let body = json!({"userId": "alice", "event": "news", "message": {"unread": 3}}).to_string();
    post(a, "/push", &body);
    assert_eq!(s.next_event().data, r#"{"unread":3}"#);
    // Broadcasts too; other users' pushes and other events do not arrive.
    push(a, "bob", "news", "not for alice");
    post(
        a,
        "/push",
        &json!({"userId": "alice", "event": "other", "message": "x"}).to_string(),
    );
    post(
        a,
        "/broadcast",
        &json!({"event": "news", "message": "to all"}).to_string(),
    );
    assert_eq!(s.next_event().data, "to all");
}

#[test]
fn envelope_mode_keeps_the_type_of_the_message() {
    let server = start();
    let a = server.addr;
    let mut s = stream(a, "alice", &["news"], true);
    wait_sse(a, 1);
    push(a, "alice", "news", "a \"quoted\"\nline");
    let e = s.next_event();
    assert_eq!(e.event, "news");
    let v: Value = serde_json::from_str(&e.data).expect("one JSON line");
    assert_eq!(v, json!({"event": "news", "message": "a \"quoted\"\nline"}));
    post(
        a,
        "/push",
        &json!({"userId": "alice", "event": "news", "message": [1, true]}).to_string(),
    );
    let v: Value = serde_json::from_str(&s.next_event().data).unwrap();
    assert_eq!(v, json!({"event": "news", "message": [1, true]}));
}

#[test]
fn streams_and_websockets_are_counted_together() {
    let server = start();
    let a = server.addr;
    let mut ws = connect_registered(a, "alice", "news");
    let mut s = stream(a, "alice", &["news"], false);
    wait_sse(a, 1);
    assert_eq!(push(a, "alice", "news", "both").body, "message sent to 2 clients");
    assert_eq!(read_text(&mut ws), "both");
    assert_eq!(s.next_event().data, "both");
    assert_eq!(metric(a, "wspush_connections"), 2);
    assert_eq!(metric(a, "wspush_registered_users"), 1);
    assert_eq!(metric(a, "wspush_messages_delivered_total{transport=\"sse\"}"), 1);
    assert_eq!(metric(a, "wspush_messages_delivered_total{transport=\"ws\"}"), 1);
    drop(s);
    eventually("a vanished stream is unbound", || {
        push(a, "alice", "news", "x").body == "message sent to 1 clients"
    });
    wait_sse(a, 0);
}

#[test]
fn drop_ends_the_stream_with_a_close_event() {
    let server = start();
    let a = server.addr;
    let mut s = stream(a, "alice", &["news"], false);
    let mut gone = stream(a, "mallory", &["news"], false);
    wait_sse(a, 2);
    assert_eq!(
        post(a, "/drop", r#"{"userId":"alice"}"#).body,
        "dropped 1 clients"
    );
    let e = s.next_event();
    assert_eq!(e.event, "close");
    assert_eq!(
        serde_json::from_str::<Value>(&e.data).unwrap(),
        json!({"code": 4000, "reason": "dropped"})
    );
    s.expect_end();
    post(a, "/drop", r#"{"userId":"mallory","reconnect":false}"#);
    let e = gone.next_event();
    let v: Value = serde_json::from_str(&e.data).unwrap();
    assert_eq!((e.event.as_str(), &v["code"]), ("close", &json!(4001)));
    gone.expect_end();
    wait_sse(a, 0);
}

#[test]
fn shutdown_ends_streams_with_1001() {
    let server = start();
    let mut s = stream(server.addr, "alice", &["news"], false);
    wait_sse(server.addr, 1);
    server.handle.shutdown();
    let e = s.next_event();
    let v: Value = serde_json::from_str(&e.data).unwrap();
    assert_eq!(
        (e.event.as_str(), v),
        ("close", json!({"code": 1001, "reason": "server shutting down"}))
    );
    s.expect_end();
    server.stop().expect("stopped cleanly");
}

#[test]
fn pings_are_comments_every_interval() {
    let server = start_with(|b| b.configure(|c| c.ping_interval = Duration::from_millis(200)));
    let mut s = stream(server.addr, "alice", &["news"], false);
    let t0 = Instant::now();
    assert_eq!(s.next_block().as_deref(), Some(": ping\n\n"));
    assert_eq!(s.next_block().as_deref(), Some(": ping\n\n"));
    assert!(t0.elapsed() >= Duration::from_millis(300), "{:?}", t0.elapsed());
}

#[test]
fn the_header_token_wins_over_the_query() {
    let server = start();
    let a = server.addr;
    let mut s = sse_open(a, "event=news&token=mallory", "Authorization: Bearer alice\r\n").expect("200");
    s.next_block();
    wait_sse(a, 1);
    assert_eq!(push(a, "mallory", "news", "no").body, "message sent to 0 clients");
    assert_eq!(push(a, "alice", "news", "yes").body, "message sent to 1 clients");
    assert_eq!(s.next_event().data, "yes");
    // Repeated event names count once.
    let mut s = stream(a, "bob", &["e", "e", "e"], false);
    wait_sse(a, 2);
    assert_eq!(metric(a, "wspush_subscriptions"), 2);
    push(a, "bob", "e", "once");
    assert_eq!(s.next_event().data, "once");
}

/// A refusal's status, `Wspush-Code`, and JSON body.
#[track_caller]
fn refused(addr: SocketAddr, query: &str, headers: &str) -> (u16, Option<String>, String) {
    let r = sse_open(addr, query, headers).err().expect("a refusal");
    (r.status, r.header("Wspush-Code").map(str::to_string), r.body)
}

#[test]
fn refusals_are_plain_http_with_the_close_code() {
    let server = start_with(|b| b.configure(|c| c.max_events = 2));
    let a = server.addr;
    let json = "Accept: application/json\r\n";
    let (status, code, body) = refused(a, "token=alice", json);
    assert_eq!((status, code.as_deref()), (400, Some("4400")));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["code"], json!(4400));
    assert!(v["error"].as_str().unwrap().contains("event"), "{v}");
    let long = "e".repeat(257);
    assert_eq!(refused(a, &format!("event={long}&token=a"), "").0, 400);
    assert_eq!(refused(a, "event=a%0Ab&token=a", "").1.as_deref(), Some("4400"));
    let (status, code, body) = refused(a, "event=a&event=b&event=c&token=alice", "");
    assert_eq!(
        (status, code.as_deref(), body.as_str()),
        (400, Some("4429"), "too many events")
    );
    // No token, or an empty one, is refused whatever the auth.
    for q in ["event=a", "event=a&token="] {
        let (status, code, _) = refused(a, q, "");
        assert_eq!((status, code.as_deref()), (401, Some("4401")), "{q}");
    }
    assert_eq!(refused(a, "event=a", "Authorization: Bearer \r\n").0, 401);
    let big = "t".repeat(4097);
    assert_eq!(refused(a, &format!("event=a&token={big}"), "").0, 401);
    // Only GET.
    let r = raw_request(
        a,
        b"POST /sse?event=a&token=b HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(r.status, 405);
    assert_eq!(metric(a, "wspush_connections"), 0);
}

#[test]
fn a_rejected_token_says_why() {
    let dir = std::env::temp_dir().join(format!("wspush-sse-tokens-{}", std::process::id()));
    std::fs::write(&dir, "good-token alice\n").unwrap();
    let path = dir.to_str().unwrap().to_string();
    let server = start_with(move |b| b.configure(move |c| c.auth_tokens = Some(path.into())));
    let a = server.addr;
    let (status, code, body) = refused(a, "event=a&token=bad-token", "Accept: application/json\r\n");
    assert_eq!((status, code.as_deref()), (401, Some("4401")));
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"error": "unknown token", "code": 4401})
    );
    let mut s = stream(a, "good-token", &["a"], false);
    wait_sse(a, 1);
    assert_eq!(push(a, "alice", "a", "hi").body, "message sent to 1 clients");
    assert_eq!(s.next_event().data, "hi");
    std::fs::remove_file(&dir).unwrap();
}

#[test]
fn allowed_origins_get_cors_and_others_403() {
    let server =
        start_with(|b| b.configure(|c| c.allowed_origins = Some(vec!["https://app.example".into()])));
    let a = server.addr;
    let s = sse_open(a, "event=a&token=u", "Origin: https://app.example\r\n").expect("200");
    assert_eq!(
        s.header("Access-Control-Allow-Origin"),
        Some("https://app.example")
    );
    assert_eq!(s.header("Vary"), Some("Origin"));
    let r = sse_open(a, "event=a&token=u", "Origin: https://evil.example\r\n")
        .err()
        .expect("403");
    assert_eq!(r.status, 403);
    // No Origin (not a browser): allowed, no CORS header.
    let s = sse_open(a, "event=a&token=u", "").expect("200");
    assert_eq!(s.header("Access-Control-Allow-Origin"), None);
    // By default every origin is allowed, and echoed.
    let server = start();
    let s = sse_open(
        server.addr,
        "event=a&token=u",
        "Origin: http://x.example:8080\r\n",
    )
    .expect("200");
    assert_eq!(
        s.header("Access-Control-Allow-Origin"),
        Some("http://x.example:8080")
    );
}

#[test]
fn max_connections_counts_streams_and_websockets() {
    let server = start_with(|b| b.configure(|c| c.max_connections = 2));
    let a = server.addr;
    let _ws = connect_registered(a, "alice", "e");
    let _s = stream(a, "bob", &["e"], false);
    wait_sse(a, 1);
    let r = sse_open(a, "event=e&token=carol", "").err().expect("503");
    assert_eq!(r.status, 503);
    assert!(r.header("Retry-After").is_some());
    assert!(try_ws(a, "/ws", &[]).is_err(), "the upgrade is refused too");
}

#[test]
fn an_http10_stream_is_close_delimited() {
    let server = start();
    let a = server.addr;
    let mut s = sse_open_version(a, "event=news&token=alice", "", "1.0").expect("200");
    assert_eq!(s.header("Transfer-Encoding"), None);
    assert_eq!(s.header("Connection"), Some("close"));
    assert_eq!(s.next_block().as_deref(), Some(": ok\nretry: 3000\n\n"));
    wait_sse(a, 1);
    push(a, "alice", "news", "plain");
    assert_eq!(s.next_event().data, "plain");
    post(a, "/drop", r#"{"userId":"alice"}"#);
    let dropped = std::time::Instant::now();
    assert_eq!(s.next_event().event, "close");
    s.expect_end();
    // The FIN that ends a close-delimited response comes with the last
    // event, not after the close grace (2 s) a WebSocket gets.
    assert!(
        dropped.elapsed() < std::time::Duration::from_millis(1500),
        "{:?}",
        dropped.elapsed()
    );
}

#[test]
fn a_stream_that_does_not_read_is_a_slow_consumer() {
    let server = start_with(|b| b.configure(|c| c.max_backlog_bytes = 64 * 1024));
    let a = server.addr;
    let s = stream(a, "slow", &["feed"], false);
    wait_sse(a, 1);
    let msg = "x".repeat(8000);
    let mut dropped = false;
    for _ in 0..5000 {
        if server.handle.push("slow", "feed", &msg).unwrap() == 0 {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "the stream was never cut off");
    assert_eq!(
        metric(a, "wspush_slow_consumer_drops_total{transport=\"sse\"}"),
        1
    );
    wait_sse(a, 0);
    // What it finally reads ends with the reason.
    let mut r = s;
    let mut last = None;
    let deadline = Instant::now() + WAIT;
    while let Some(block) = r.next_block() {
        last = Some(block);
        assert!(Instant::now() < deadline);
    }
    let last = parse_event(&last.expect("a last event")).unwrap();
    assert_eq!(last.event, "close");
    assert_eq!(
        serde_json::from_str::<Value>(&last.data).unwrap()["code"],
        json!(4008)
    );
}

/// `curl -N` is how a user tries it from a shell: it prints each event as
/// it arrives.
#[test]
fn curl_n_prints_events_as_they_arrive() {
    let server = start();
    let a = server.addr;
    let mut child = std::process::Command::new("curl")
        .args(["-sN", &format!("http://{a}/sse?event=news&token=alice")])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("curl");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, ": ok\n");
    wait_sse(a, 1);
    push(a, "alice", "news", "from curl");
    let mut lines = Vec::new();
    while lines.len() < 4 || lines.last().map(String::as_str) != Some("\n") {
        let mut l = String::new();
        out.read_line(&mut l).unwrap();
        lines.push(l);
    }
    assert!(
        lines.ends_with(&["event: news\n".into(), "data: from curl\n".into(), "\n".into()]),
        "{lines:?}"
    );
    post(a, "/drop", r#"{"userId":"alice"}"#);
    let status = child.wait().expect("curl ends with the stream");
    assert!(status.success(), "{status:?}");
}
