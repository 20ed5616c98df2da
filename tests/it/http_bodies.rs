//! SPEC §2: request bodies framed by `Content-Length` or
//! `Transfer-Encoding: chunked`, the body size limit (413), ambiguous
//! framing (400 and closed) and unsupported codings (501).
use crate::common::*;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

fn chunked_head(addr: SocketAddr) -> String {
    format!("POST /push HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n")
}

/// Encodes `body` as chunks of the given sizes (the rest in a last chunk).
fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    for &n in sizes {
        let n = n.min(rest.len());
        if n == 0 {
            break;
        }
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    if !rest.is_empty() {
        out.extend_from_slice(format!("{:X}\r\n", rest.len()).as_bytes());
        out.extend_from_slice(rest);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[test]
fn content_length_body_is_delivered_byte_for_byte() {
    let server = start();
    let mut ws = connect_registered(server.addr, "aaa", "topic1");
    // Multi-byte UTF-8 and JSON escapes: Content-Length counts bytes.
    let message = "héllo wörld ✓ \"quoted\" \\ back\nslash 😀";
    let body = serde_json::json!({"userId": "aaa", "event": "topic1", "message": message}).to_string();
    assert_ne!(body.len(), body.chars().count());
    let r = post(server.addr, "/push", &body);
    assert_eq!((r.status, r.body.as_str()), (200, "message sent to 1 clients"));
    assert_eq!(read_text(&mut ws), message);
}

#[test]
fn chunked_push_body_in_several_chunks_reaches_the_client() {
    let server = start();
    let mut ws = connect_registered(server.addr, "aaa", "topic1");
    let body = br#"{"userId":"aaa","event":"topic1","message":"sent in several chunks, hex sizes and all"}"#;

    // All at once.
    let mut req = chunked_head(server.addr).into_bytes();
    req.extend_from_slice(&chunked(body, &[1, 9, 16, 30]));
    let (mut s, mut r) = raw_conn(server.addr);
    s.write_all(&req).unwrap();
    let resp = read_response(&mut r);
    assert_eq!(
        (resp.status, resp.body.as_str()),
        (200, "message sent to 1 clients")
    );
    assert_eq!(read_text(&mut ws), "sent in several chunks, hex sizes and all");

    // Same connection (keep-alive), now trickled: head, then each chunk
    // line and its data in separate writes with pauses.
    let body2 = br#"{"userId":"aaa","event":"topic1","message":"trickled"}"#;
    s.set_nodelay(true).unwrap();
    s.write_all(chunked_head(server.addr).as_bytes()).unwrap();
    for piece in chunked(body2, &[5, 5, 20]).chunks(7) {
        std::thread::sleep(Duration::from_millis(5));
        s.write_all(piece).unwrap();
    }
    let resp = read_response(&mut r);
    assert_eq!(
        (resp.status, resp.body.as_str()),
        (200, "message sent to 1 clients")
    );
    assert_eq!(read_text(&mut ws), "trickled");
}

#[test]
fn chunked_body_with_extensions_and_trailers() {
    let server = start();
    let mut ws = connect_registered(server.addr, "aaa", "topic1");
    let (a, b) = (
        &br#"{"userId":"aaa","event":"#[..],
        &br#""topic1","message":"ext"}"#[..],
    );
    let mut req = chunked_head(server.addr).into_bytes();
    req.extend_from_slice(format!("{:x};name=value\r\n", a.len()).as_bytes());
    req.extend_from_slice(a);
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(format!("{:x}\r\n", b.len()).as_bytes());
    req.extend_from_slice(b);
    req.extend_from_slice(b"\r\n0\r\nX-Trailer: yes\r\n\r\n");
    let (mut s, mut r) = raw_conn(server.addr);
    s.write_all(&req).unwrap();
    let resp = read_response(&mut r);
    assert_eq!(
        (resp.status, resp.body.as_str()),
        (200, "message sent to 1 clients")
    );
    assert_eq!(read_text(&mut ws), "ext");
    // The trailer was consumed: the connection is at a request boundary.
    s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr).as_bytes())
        .unwrap();
    let resp = read_response(&mut r);
    assert_eq!((resp.status, resp.body.as_str()), (200, "ok"));
}

/// A push body of exactly `len` bytes, and the message in it.
fn body_of_len(len: usize) -> (String, String) {
    let empty = serde_json::json!({"userId": "aaa", "event": "topic1", "message": ""}).to_string();
    let msg = "x".repeat(len - empty.len());
    let body = serde_json::json!({"userId": "aaa", "event": "topic1", "message": msg}).to_string();
    assert_eq!(body.len(), len);
    (body, msg)
}

#[test]
fn body_at_the_limit_is_accepted_one_over_is_413_by_content_length() {
    let server = start_with(|b| b.configure(|c| c.max_body_bytes = 100));
    let mut ws = connect_registered(server.addr, "aaa", "topic1");

    let (at_limit, msg) = body_of_len(100);
    let r = post(server.addr, "/push", &at_limit);
    assert_eq!((r.status, r.body.as_str()), (200, "message sent to 1 clients"));
    assert_eq!(read_text(&mut ws), msg);

    let (over, _) = body_of_len(101);
    let r = post(server.addr, "/push", &over);
    assert_eq!(r.status, 413, "{r:?}");

    // Announced but never sent: refused on the announcement alone.
    let (mut s, mut r) = raw_conn(server.addr);
    s.write_all(
        format!(
            "POST /push HTTP/1.1\r\nHost: {}\r\nContent-Length: 1000000\r\n\r\n",
            server.addr
        )
        .as_bytes(),
    )
    .unwrap();
    let resp = read_response(&mut r);
    assert_eq!(resp.status, 413);

    still_serves(server.addr, &mut ws, "after 413");
}

#[test]
fn chunked_body_growing_over_the_limit_is_413() {
    let server = start_with(|b| b.configure(|c| c.max_body_bytes = 100));
    let mut ws = connect_registered(server.addr, "aaa", "topic1");

    // Exactly at the limit in chunks: accepted.
    let (at_limit, msg) = body_of_len(100);
    let mut req = chunked_head(server.addr).into_bytes();
    req.extend_from_slice(&chunked(at_limit.as_bytes(), &[40, 40]));
    let resp = raw_request(server.addr, &req);
    assert_eq!(
        (resp.status, resp.body.as_str()),
        (200, "message sent to 1 clients")
    );
    assert_eq!(read_text(&mut ws), msg);

    // Several small chunks, each fine alone, together over the limit.
    let (over, _) = body_of_len(120);
    let mut req = chunked_head(server.addr).into_bytes();
    req.extend_from_slice(&chunked(over.as_bytes(), &[30, 30, 30, 30]));
    let resp = raw_request(server.addr, &req);
    assert_eq!(resp.status, 413, "{resp:?}");

    // Growth detected while streaming: 60 bytes, then a chunk header that
    // would take it past 100; the rest is never sent.
    let (mut s, mut r) = raw_conn(server.addr);
    s.write_all(chunked_head(server.addr).as_bytes()).unwrap();
    s.write_all(format!("3c\r\n{}\r\n", "a".repeat(60)).as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    s.write_all(b"3c\r\n").unwrap();
    let resp = read_response(&mut r);
    assert_eq!(resp.status, 413, "{resp:?}");

    still_serves(server.addr, &mut ws, "after chunked 413");
}

#[test]
fn content_length_and_transfer_encoding_together_is_400_and_closed() {
    let server = start();
    let mut ws = connect_registered(server.addr, "aaa", "topic1");
    let body = r#"{"userId":"aaa","event":"topic1","message":"smuggled"}"#;
    let chunks = chunked(body.as_bytes(), &[]);
    let (mut s, mut r) = raw_conn(server.addr);
    let mut req = format!(
        "POST /push HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        server.addr,
        chunks.len()
    )
    .into_bytes();
    req.extend_from_slice(&chunks);
    // A second request behind it must not be answered.
    req.extend_from_slice(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr).as_bytes());
    s.write_all(&req).unwrap();
    let resp = read_response(&mut r);
    assert_eq!(resp.status, 400, "{resp:?}");
    expect_eof(&mut r);

    // Nothing was delivered: the next message the client sees is this one.
    still_serves(server.addr, &mut ws, "after CL+TE");
}

#[test]
fn unsupported_transfer_encoding_is_501() {
    let server = start();
    let mut ws = connect_registered(server.addr, "aaa", "topic1");
    let resp = raw_request(
        server.addr,
        format!(
            "POST /push HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: gzip\r\n\r\n\x1f\x08",
            server.addr
        )
        .as_bytes(),
    );
    assert_eq!(resp.status, 501, "{resp:?}");
    still_serves(server.addr, &mut ws, "after 501");
}
