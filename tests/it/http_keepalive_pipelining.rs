//! SPEC §2, HTTP/1.1 details: keep-alive and pipelined requests on one
//! connection, HTTP/1.0 and `Connection: close` end the connection after
//! the response.
use crate::common::*;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

/// A `/push` request without `Connection: close` (keep-alive by default).
fn push_req(addr: SocketAddr, user: &str, event: &str, message: &str) -> String {
    let body = serde_json::json!({"userId": user, "event": event, "message": message}).to_string();
    format!(
        "POST /push HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn healthz_req(addr: SocketAddr) -> String {
    format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n")
}

#[test]
fn several_requests_on_one_keep_alive_connection() {
    let server = start();
    let mut ws = connect_registered(server.addr, "aaa", "topic1");
    let (mut s, mut r) = raw_conn(server.addr);

    s.write_all(healthz_req(server.addr).as_bytes()).unwrap();
    let resp = read_response(&mut r);
    assert_eq!((resp.status, resp.body.as_str()), (200, "ok"));
    assert_ne!(
        resp.header("Connection").map(str::to_ascii_lowercase).as_deref(),
        Some("close")
    );

    for i in 0..5 {
        // A short pause: the connection must stay usable between requests.
        std::thread::sleep(Duration::from_millis(30));
        s.write_all(push_req(server.addr, "aaa", "topic1", &format!("m{i}")).as_bytes())
            .unwrap();
        let resp = read_response(&mut r);
        assert_eq!(resp.status, 200, "request {i}");
        assert_eq!(resp.body, "message sent to 1 clients", "request {i}");
        assert_eq!(read_text(&mut ws), format!("m{i}"));
    }

    // A user with nobody connected: still 200, zero clients, same connection.
    s.write_all(push_req(server.addr, "nobody", "topic1", "x").as_bytes())
        .unwrap();
    let resp = read_response(&mut r);
    assert_eq!(
        (resp.status, resp.body.as_str()),
        (200, "message sent to 0 clients")
    );

    s.write_all(healthz_req(server.addr).as_bytes()).unwrap();
    let resp = read_response(&mut r);
    assert_eq!((resp.status, resp.body.as_str()), (200, "ok"));
}

#[test]
fn pipelined_requests_in_one_write_are_answered_in_order() {
    let server = start();
    let mut ws = connect_registered(server.addr, "aaa", "topic1");
    let (mut s, mut r) = raw_conn(server.addr);

    let mut batch = String::new();
    batch.push_str(&healthz_req(server.addr));
    batch.push_str(&push_req(server.addr, "aaa", "topic1", "first"));
    batch.push_str(&format!(
        "GET /no-such-path HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.addr
    ));
    // A 404 for a POST with a body: the body must be skipped, not parsed as
    // the next request.
    batch.push_str(&format!(
        "POST /nowhere HTTP/1.1\r\nHost: {}\r\nContent-Length: 11\r\n\r\nGET / HTTP/",
        server.addr
    ));
    batch.push_str(&push_req(server.addr, "aaa", "topic1", "second"));
    batch.push_str(&push_req(server.addr, "nobody", "topic1", "lost"));
    batch.push_str(&healthz_req(server.addr));
    s.write_all(batch.as_bytes()).unwrap();

    let expected: [(u16, Option<&str>); 7] = [
        (200, Some("ok")),
        (200, Some("message sent to 1 clients")),
        (404, None),
        (404, None),
        (200, Some("message sent to 1 clients")),
        (200, Some("message sent to 0 clients")),
        (200, Some("ok")),
    ];
    for (i, (status, body)) in expected.iter().enumerate() {
        let resp = read_response(&mut r);
        assert_eq!(resp.status, *status, "response {i}: {resp:?}");
        if let Some(body) = body {
            assert_eq!(resp.body, *body, "response {i}");
        }
    }
    assert_eq!(read_text(&mut ws), "first");
    assert_eq!(read_text(&mut ws), "second");

    // Still usable afterwards.
    s.write_all(healthz_req(server.addr).as_bytes()).unwrap();
    let resp = read_response(&mut r);
    assert_eq!((resp.status, resp.body.as_str()), (200, "ok"));
}

#[test]
fn pipelined_pushes_split_across_writes_at_odd_places() {
    let server = start();
    let mut ws = connect_registered(server.addr, "aaa", "topic1");
    let (mut s, mut r) = raw_conn(server.addr);
    s.set_nodelay(true).unwrap();

    let mut batch = String::new();
    for i in 0..10 {
        batch.push_str(&push_req(server.addr, "aaa", "topic1", &format!("p{i}")));
    }
    // Write in 37-byte pieces so heads and bodies straddle reads.
    for piece in batch.as_bytes().chunks(37) {
        s.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    for i in 0..10 {
        let resp = read_response(&mut r);
        assert_eq!(
            (resp.status, resp.body.as_str()),
            (200, "message sent to 1 clients"),
            "push {i}"
        );
    }
    for i in 0..10 {
        assert_eq!(read_text(&mut ws), format!("p{i}"));
    }
}

#[test]
fn http_1_0_gets_its_response_then_the_connection_closes() {
    let server = start();
    let mut ws = connect_registered(server.addr, "aaa", "topic1");

    let (mut s, mut r) = raw_conn(server.addr);
    s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    let resp = read_response(&mut r);
    assert_eq!((resp.status, resp.body.as_str()), (200, "ok"));
    expect_eof(&mut r);

    let body = r#"{"userId":"aaa","event":"topic1","message":"from 1.0"}"#;
    let (mut s, mut r) = raw_conn(server.addr);
    s.write_all(
        format!(
            "POST /push HTTP/1.0\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let resp = read_response(&mut r);
    assert_eq!(
        (resp.status, resp.body.as_str()),
        (200, "message sent to 1 clients")
    );
    expect_eof(&mut r);
    assert_eq!(read_text(&mut ws), "from 1.0");
}

#[test]
fn http_1_0_second_pipelined_request_is_not_answered() {
    let server = start();
    let (mut s, mut r) = raw_conn(server.addr);
    s.write_all(b"GET /healthz HTTP/1.0\r\n\r\nGET /healthz HTTP/1.0\r\n\r\n")
        .unwrap();
    let resp = read_response(&mut r);
    assert_eq!((resp.status, resp.body.as_str()), (200, "ok"));
    expect_eof(&mut r);
}

#[test]
fn connection_close_on_http_1_1_closes_after_the_response() {
    let server = start();
    let mut ws = connect_registered(server.addr, "aaa", "topic1");

    let (mut s, mut r) = raw_conn(server.addr);
    s.write_all(
        format!(
            "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            server.addr
        )
        .as_bytes(),
    )
    .unwrap();
    let resp = read_response(&mut r);
    assert_eq!((resp.status, resp.body.as_str()), (200, "ok"));
    expect_eof(&mut r);

    // A keep-alive request first, then one with `Connection: close`, pipelined.
    let body = r#"{"userId":"aaa","event":"topic1","message":"last"}"#;
    let (mut s, mut r) = raw_conn(server.addr);
    let mut batch = healthz_req(server.addr);
    batch.push_str(&format!(
        "POST /push HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        server.addr,
        body.len()
    ));
    s.write_all(batch.as_bytes()).unwrap();
    let resp = read_response(&mut r);
    assert_eq!((resp.status, resp.body.as_str()), (200, "ok"));
    let resp = read_response(&mut r);
    assert_eq!(
        (resp.status, resp.body.as_str()),
        (200, "message sent to 1 clients")
    );
    expect_eof(&mut r);
    assert_eq!(read_text(&mut ws), "last");
}

#[test]
fn http10_keep_alive_is_confirmed_and_honoured() {
    let server = start();
    let (mut s, mut r) = raw_conn(server.addr);
    for _ in 0..2 {
        s.write_all(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let resp = read_response(&mut r);
        assert_eq!((resp.status, resp.body.as_str()), (200, "ok"));
        assert_eq!(resp.header("Connection"), Some("keep-alive"));
    }
}
