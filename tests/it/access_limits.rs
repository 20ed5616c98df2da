//! SPEC §9 caps: `--max-connections-per-user` (the register or SSE open
//! over it is refused with 4429 `too many connections for user`) and
//! `--max-connections-per-ip` (WebSocket and SSE connections only; the
//! upgrade or stream over it gets HTTP 429 with `Retry-After`). Clients
//! come from distinct loopback addresses (127.0.0.x) to tell IPs apart.

use crate::access_events::{ask, ok, reaches, refused, sse_refused};
use crate::common::*;
use crate::sse::sse_open;
use serde_json::json;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use tungstenite::protocol::Role;

/// A TCP connection to `addr` from the local address `src`.
pub(crate) fn connect_from(src: &str, addr: SocketAddr) -> TcpStream {
    let src: IpAddr = src.parse().unwrap();
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(src, 0).into())
        .expect("bind a loopback source");
    s.connect(&addr.into()).expect("connect");
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// The status, headers and (Content-Length) body of a response, read
/// byte by byte so no WebSocket byte after a 101 is swallowed.
fn read_head(s: &mut TcpStream) -> HttpResponse {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) => panic!("EOF in a response head: {:?}", String::from_utf8_lossy(&head)),
            Ok(_) => head.push(b[0]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("reading a response head: {e}"),
        }
    }
    let text = String::from_utf8(head).unwrap();
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let mut r = HttpResponse {
        status,
        headers,
        body: String::new(),
    };
    if status != 101 {
        let n: usize = r.header("Content-Length").map_or(0, |n| n.parse().unwrap());
        let mut body = vec![0; n];
        s.read_exact(&mut body).unwrap();
        r.body = String::from_utf8(body).unwrap();
    }
    r
}

/// A WebSocket upgrade from `src` with extra header lines; the socket, or
/// the refusal.
pub(crate) fn ws_from(src: &str, addr: SocketAddr, headers: &str) -> Result<Ws, HttpResponse> {
    let mut s = connect_from(src, addr);
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
    )
    .unwrap();
    let r = read_head(&mut s);
    if r.status != 101 {
        return Err(r);
    }
    Ok(tungstenite::WebSocket::from_raw_socket(s, Role::Client, None))
}

/// `GET /sse?{query}` from `src`: the status line's code and headers
/// (the stream, if it opened, is dropped).
pub(crate) fn sse_from(src: &str, addr: SocketAddr, query: &str, headers: &str) -> (HttpResponse, TcpStream) {
    let mut s = connect_from(src, addr);
    write!(s, "GET /sse?{query} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n").unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).expect("head"), 1, "EOF in the head");
        head.push(b[0]);
    }
    let text = String::from_utf8(head).unwrap();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = text
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut r = HttpResponse {
        status,
        headers,
        body: String::new(),
    };
    if let Some(n) = r.header("Content-Length").map(|n| n.parse::<usize>().unwrap()) {
        let mut body = vec![0; n];
        s.read_exact(&mut body).unwrap();
        r.body = String::from_utf8(body).unwrap();
    }
    (r, s)
}

#[track_caller]
fn assert_429(r: &HttpResponse) {
    assert_eq!(r.status, 429, "{r:?}");
    assert!(
        r.header("Retry-After")
            .is_some_and(|v| v.parse::<u32>().is_ok_and(|s| s >= 1)),
        "{r:?}"
    );
}

#[test]
fn the_register_over_the_per_user_limit_gets_4429() {
    let s = start_with(|b| b.configure(|c| c.max_connections_per_user = 2));
    let mut a1 = connect_registered(s.addr, "alice", "e");
    let _a2 = connect_registered(s.addr, "alice", "e");
    let mut a3 = ws_connect(s.addr, "/ws");
    assert_eq!(
        ask(&mut a3, json!({"token": "alice", "event": "e", "id": 1})),
        refused(1, 4429, "too many connections for user")
    );
    // Another user is not affected; a bound connection may add events.
    let _b = connect_registered(s.addr, "bob", "e");
    assert_eq!(
        ask(&mut a1, json!({"token": "alice", "event": "f", "id": 2})),
        ok(2)
    );
    // An SSE stream counts as a connection of the user too.
    let r = sse_refused(s.addr, "event=e&token=alice", "");
    assert_eq!(
        (r.status, r.body.as_str()),
        (429, "too many connections for user")
    );
    assert_eq!(r.header("Wspush-Code"), Some("4429"));
    // Without an id: closed with the code and reason.
    send_text(&mut a3, &json!({"token": "alice", "event": "e"}).to_string());
    assert_eq!(
        expect_close_frame(&mut a3),
        (4429, "too many connections for user".into())
    );
    reaches(s.addr, "alice", "e", "two", 2);
    assert_eq!(read_text(&mut a1), "two");
    // One closes: there is room again.
    drop(a1);
    eventually("a slot for alice", || {
        let mut ws = ws_connect(s.addr, "/ws");
        ask(&mut ws, json!({"token": "alice", "event": "e", "id": 1}))["ok"] == true
    });
}

#[test]
fn sse_streams_count_towards_the_per_user_limit() {
    let s = start_with(|b| b.configure(|c| c.max_connections_per_user = 1));
    let _stream = sse_open(s.addr, "event=e&token=carol", "").expect("the first opens");
    let mut ws = ws_connect(s.addr, "/ws");
    assert_eq!(
        ask(&mut ws, json!({"token": "carol", "event": "e", "id": 1})),
        refused(1, 4429, "too many connections for user")
    );
    let r = sse_refused(s.addr, "event=e&token=carol", "Accept: application/json\r\n");
    assert_eq!(r.status, 429);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v, json!({"error": "too many connections for user", "code": 4429}));
}

#[test]
fn the_upgrade_or_stream_over_the_per_ip_limit_gets_429() {
    let s = start_with(|b| b.configure(|c| c.max_connections_per_ip = 2));
    // One registered, one not yet: both count.
    let _w1 = {
        let mut ws = ws_from("127.0.0.2", s.addr, "").expect("first");
        assert_eq!(ask(&mut ws, json!({"token": "u1", "event": "e", "id": 1})), ok(1));
        ws
    };
    let (r, _stream) = sse_from("127.0.0.2", s.addr, "event=e&token=u2", "");
    assert_eq!(r.status, 200, "an SSE stream is the second");
    let r = ws_from("127.0.0.2", s.addr, "").map(|_| ()).unwrap_err();
    assert_429(&r);
    let (r, _) = sse_from("127.0.0.2", s.addr, "event=e&token=u3", "");
    assert_429(&r);
    // Plain HTTP from that address is not counted nor refused.
    let mut c = connect_from("127.0.0.2", s.addr);
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // Another address is not affected.
    let mut other = ws_from("127.0.0.3", s.addr, "").expect("another address");
    assert_eq!(
        ask(&mut other, json!({"token": "u4", "event": "e", "id": 1})),
        ok(1)
    );
    // The stream ends: there is room again for the first address.
    drop(_stream);
    eventually("room for 127.0.0.2", || ws_from("127.0.0.2", s.addr, "").is_ok());
}

#[test]
fn the_per_ip_refusal_says_why_in_json_too() {
    let s = start_with(|b| b.configure(|c| c.max_connections_per_ip = 1));
    let _one = ws_from("127.0.0.4", s.addr, "").expect("first");
    let r = ws_from("127.0.0.4", s.addr, "Accept: application/json\r\n")
        .map(|_| ())
        .unwrap_err();
    assert_429(&r);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v, json!({"error": "too many connections from this address"}));
}

/// Unlimited by default: many connections of one user from one address.
#[test]
fn no_caps_by_default() {
    let s = start();
    let conns: Vec<Ws> = (0..20).map(|_| connect_registered(s.addr, "dan", "e")).collect();
    reaches(s.addr, "dan", "e", "all", conns.len());
}
