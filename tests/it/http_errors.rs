//! SPEC §1 and §2 error answers: malformed HTTP (400, closed), oversized
//! heads (431), unknown paths (404), wrong methods (405 with `Allow`),
//! illegal push bodies (400 `request data illegal: ...`), JSON answers
//! with `Accept: application/json`, and refused WebSocket upgrades.
//! After every error the server still delivers a normal push.
use crate::common::*;

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::SocketAddr;

fn setup() -> (TestServer, Ws) {
    let server = start();
    let ws = connect_registered(server.addr, "aaa", "topic1");
    (server, ws)
}

const JSON: (&str, &str) = ("Accept", "application/json");

#[test]
fn malformed_request_line_is_400_and_the_connection_closes() {
    let (server, mut ws) = setup();
    let a = server.addr;
    let cases: Vec<Vec<u8>> = vec![
        b"GARBAGE\r\n\r\n".to_vec(),
        b"GET /healthz\r\n\r\n".to_vec(),
        b"GET /healthz HTTP/1.1 extra\r\n\r\n".to_vec(),
        b"GET healthz HTTP/1.1\r\n\r\n".to_vec(),
        b"G\x01T /healthz HTTP/1.1\r\n\r\n".to_vec(),
        format!("GET /healthz HTTP/1.1\r\nHost: {a}\r\nBad Header Name: x\r\n\r\n").into_bytes(),
        format!("POST /push HTTP/1.1\r\nHost: {a}\r\nContent-Length: abc\r\n\r\n").into_bytes(),
        format!("POST /push HTTP/1.1\r\nHost: {a}\r\nContent-Length: -5\r\n\r\n").into_bytes(),
        format!("POST /push HTTP/1.1\r\nHost: {a}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")
            .into_bytes(),
    ];
    for raw in cases {
        let (mut s, mut r) = raw_conn(a);
        // A valid request behind the bad one must not be answered: the
        // framing after a malformed request cannot be trusted.
        let mut bytes = raw.clone();
        bytes.extend_from_slice(format!("GET /healthz HTTP/1.1\r\nHost: {a}\r\n\r\n").as_bytes());
        s.write_all(&bytes).unwrap();
        let resp = read_response(&mut r);
        assert_eq!(resp.status, 400, "{:?} → {resp:?}", String::from_utf8_lossy(&raw));
        expect_eof(&mut r);
    }
    still_serves(a, &mut ws, "after malformed");
}

#[test]
fn head_over_8_kib_is_431() {
    let (server, mut ws) = setup();
    let a = server.addr;
    let big = "a".repeat(9 * 1024);
    let resp = raw_request(
        a,
        format!("GET /healthz HTTP/1.1\r\nHost: {a}\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    );
    assert_eq!(resp.status, 431, "{resp:?}");

    // Many moderate headers adding up to more than 8 KiB.
    let mut req = format!("POST /push HTTP/1.1\r\nHost: {a}\r\n");
    for i in 0..40 {
        req.push_str(&format!("X-H{i}: {}\r\n", "b".repeat(250)));
    }
    req.push_str("Content-Length: 2\r\n\r\n{}");
    let resp = raw_request(a, req.as_bytes());
    assert_eq!(resp.status, 431, "{resp:?}");

    // A head that never ends, sent without its blank line.
    let (mut s, mut r) = raw_conn(a);
    s.write_all(format!("GET /healthz HTTP/1.1\r\nX-Big: {big}").as_bytes())
        .unwrap();
    let resp = read_response(&mut r);
    assert_eq!(resp.status, 431, "{resp:?}");

    still_serves(a, &mut ws, "after 431");
}

#[test]
fn unknown_path_is_404() {
    let (server, mut ws) = setup();
    let a = server.addr;
    // "/" is the demo page (static_files.rs); with --no-demo it is a 404 too.
    for path in [
        "/nope",
        "/push/extra",
        "/PUSH",
        "/healthz/",
        "/wspush",
        "/wspush.jsx",
    ] {
        assert_eq!(get(a, path).status, 404, "GET {path}");
    }
    let resp = post(a, "/pushh", r#"{"userId":"aaa","event":"topic1","message":"no"}"#);
    assert_eq!(resp.status, 404);
    still_serves(a, &mut ws, "after 404");
}

#[test]
fn wrong_methods_are_405_with_allow() {
    let (server, mut ws) = setup();
    let a = server.addr;
    for path in ["/push", "/broadcast", "/drop"] {
        let resp = get(a, path);
        assert_eq!(resp.status, 405, "GET {path}");
        assert_eq!(resp.header("Allow"), Some("POST"), "GET {path}: {resp:?}");
        let resp = raw_request(
            a,
            format!("PUT {path} HTTP/1.1\r\nHost: {a}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}")
                .as_bytes(),
        );
        assert_eq!(resp.status, 405, "PUT {path}");
        assert_eq!(resp.header("Allow"), Some("POST"), "PUT {path}: {resp:?}");
    }
    for path in ["/healthz", "/metrics"] {
        let resp = post(a, path, "{}");
        assert_eq!(resp.status, 405, "POST {path}");
        let allow = resp
            .header("Allow")
            .unwrap_or_else(|| panic!("no Allow on {resp:?}"));
        assert!(
            allow.split(',').any(|m| m.trim() == "GET"),
            "POST {path}: Allow {allow:?}"
        );
    }
    still_serves(a, &mut ws, "after 405");
}

/// Bodies SPEC §2 calls illegal for `/push`.
fn illegal_push_bodies() -> Vec<String> {
    let mut v: Vec<String> = vec![
        "".into(),
        "not json".into(),
        r#"{"userId":"aaa","event":"topic1","message":"hi""#.into(),
        "[]".into(),
        r#""a string""#.into(),
        "null".into(),
        "42".into(),
    ];
    let objects = [
        // wrong types
        json!({"userId": 1, "event": "topic1", "message": "hi"}),
        json!({"userId": "aaa", "event": ["topic1"], "message": "hi"}),
        json!({"userId": "aaa", "event": 7, "message": "hi"}),
        json!({"userIds": "aaa", "event": "topic1", "message": "hi"}),
        json!({"userIds": ["aaa", 2], "event": "topic1", "message": "hi"}),
        // missing fields
        json!({"event": "topic1", "message": "hi"}),
        json!({"userId": "aaa", "message": "hi"}),
        json!({"userId": "aaa", "event": "topic1"}),
        json!({}),
        // empty fields
        json!({"userId": "", "event": "topic1", "message": "hi"}),
        json!({"userId": "aaa", "event": "", "message": "hi"}),
        json!({"userId": "aaa", "event": "topic1", "message": ""}),
        json!({"userIds": [], "event": "topic1", "message": "hi"}),
        json!({"userIds": ["aaa", ""], "event": "topic1", "message": "hi"}),
        // null is not a message
        json!({"userId": "aaa", "event": "topic1", "message": null}),
    ];
    v.extend(objects.iter().map(Value::to_string));
    v
}

#[track_caller]
fn assert_illegal_text(resp: &HttpResponse, what: &str) {
    assert_eq!(resp.status, 400, "{what}: {resp:?}");
    assert!(
        resp.body.starts_with("request data illegal"),
        "{what}: {:?}",
        resp.body
    );
    let reason = resp.body["request data illegal".len()..].trim();
    assert!(!reason.is_empty(), "{what}: no reason in {:?}", resp.body);
    assert_eq!(
        resp.body.trim_end().lines().count(),
        1,
        "{what}: not one line: {:?}",
        resp.body
    );
}

#[track_caller]
fn assert_illegal_json(resp: &HttpResponse, what: &str) {
    assert_eq!(resp.status, 400, "{what}: {resp:?}");
    let v: Value =
        serde_json::from_str(&resp.body).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {resp:?}"));
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {v}"));
    assert_eq!(obj.len(), 1, "{what}: {v}");
    let err = obj["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: error not a string: {v}"));
    assert!(err.starts_with("request data illegal"), "{what}: {v}");
}

#[test]
fn illegal_push_bodies_are_400_request_data_illegal() {
    let (server, mut ws) = setup();
    let a = server.addr;
    for body in illegal_push_bodies() {
        assert_illegal_text(&post(a, "/push", &body), &format!("/push {body:?}"));
    }
    let broadcast = [
        json!({"message": "hi"}),
        json!({"event": "", "message": "hi"}),
        json!({"event": "topic1"}),
        json!({"event": "topic1", "message": ""}),
        json!({"event": 1, "message": "hi"}),
    ];
    for body in broadcast {
        let body = body.to_string();
        assert_illegal_text(&post(a, "/broadcast", &body), &format!("/broadcast {body}"));
    }
    for body in [
        json!({}),
        json!({"userId": ""}),
        json!({"userId": 5}),
        json!({"event": "topic1"}),
    ] {
        let body = body.to_string();
        assert_illegal_text(&post(a, "/drop", &body), &format!("/drop {body}"));
    }
    assert_illegal_text(&post(a, "/push", "not json at all"), "sanity");
    // The client was neither messaged nor dropped by any of these.
    still_serves(a, &mut ws, "after illegal bodies");
}

#[test]
fn illegal_push_bodies_with_accept_json_get_json_errors() {
    let (server, mut ws) = setup();
    let a = server.addr;
    for body in illegal_push_bodies() {
        assert_illegal_json(&post_with(a, "/push", &body, &[JSON]), &format!("/push {body:?}"));
    }
    // Other errors are JSON too.
    let resp = post_with(a, "/nope", "{}", &[JSON]);
    assert_eq!(resp.status, 404);
    let v: Value =
        serde_json::from_str(&resp.body).unwrap_or_else(|e| panic!("404 not JSON ({e}): {resp:?}"));
    assert!(v["error"].is_string(), "{v}");
    let resp = raw_request(
        a,
        format!("GET /push HTTP/1.1\r\nHost: {a}\r\nAccept: application/json\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("Allow"), Some("POST"));
    let v: Value =
        serde_json::from_str(&resp.body).unwrap_or_else(|e| panic!("405 not JSON ({e}): {resp:?}"));
    assert!(v["error"].is_string(), "{v}");
    still_serves(a, &mut ws, "after JSON errors");
}

/// SPEC §2: "with `Accept: application/json` every response is JSON",
/// refusals that close the connection included: a body over the limit (by
/// its Content-Length, or as chunks arrive), bad framing, a request that
/// does not finish arriving. A head that does not parse gets plain text.
#[test]
fn closing_refusals_are_json_too_when_asked() {
    let server = start_with(|b| {
        b.configure(|c| {
            c.max_body_bytes = 64;
            c.request_timeout = std::time::Duration::from_millis(300);
        })
    });
    let a = server.addr;
    let big = "x".repeat(100);
    let cases = [
        (
            format!("POST /push HTTP/1.1\r\nHost: {a}\r\nAccept: application/json\r\nContent-Length: 100\r\n\r\n{big}"),
            413,
            "request body too large",
        ),
        (
            format!("POST /push HTTP/1.1\r\nHost: {a}\r\nAccept: application/json\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n{big}\r\n0\r\n\r\n"),
            413,
            "request body too large",
        ),
        (
            format!("POST /push HTTP/1.1\r\nHost: {a}\r\nAccept: application/json\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            400,
            "",
        ),
        (
            format!("POST /push HTTP/1.1\r\nHost: {a}\r\nAccept: application/json\r\nContent-Length: 10\r\n\r\nabc"),
            408,
            "request timeout",
        ),
    ];
    for (raw, status, error) in cases {
        let r = raw_request(a, raw.as_bytes());
        assert_eq!(r.status, status, "{raw:?}: {r:?}");
        assert_eq!(
            r.header("Content-Type"),
            Some("application/json"),
            "{raw:?}: {r:?}"
        );
        let v: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {r:?}"));
        let text = v["error"].as_str().expect("an error string");
        assert!(
            !text.is_empty() && (error.is_empty() || text == error),
            "{raw:?}: {v}"
        );
    }
    // The same without Accept: text.
    let raw = format!("POST /push HTTP/1.1\r\nHost: {a}\r\nContent-Length: 100\r\n\r\n{big}");
    let r = raw_request(a, raw.as_bytes());
    assert_eq!((r.status, r.body.as_str()), (413, "request body too large"));
    let r = raw_request(a, b"GARBAGE\r\nAccept: application/json\r\n\r\n");
    assert_eq!(r.status, 400);
    assert!(
        r.header("Content-Type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{r:?}"
    );
}

#[test]
fn accept_json_success_bodies() {
    let (server, mut ws) = setup();
    let a = server.addr;
    let parse = |r: &HttpResponse| -> Value {
        assert_eq!(r.status, 200, "{r:?}");
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {r:?}"))
    };

    let body = json!({"userId": "aaa", "event": "topic1", "message": "json hi"}).to_string();
    assert_eq!(parse(&post_with(a, "/push", &body, &[JSON])), json!({"sent": 1}));
    assert_eq!(read_text(&mut ws), "json hi");

    let body = json!({"userId": "nobody", "event": "topic1", "message": "x"}).to_string();
    assert_eq!(parse(&post_with(a, "/push", &body, &[JSON])), json!({"sent": 0}));

    let body = json!({"event": "topic1", "message": "to all"}).to_string();
    assert_eq!(
        parse(&post_with(a, "/broadcast", &body, &[JSON])),
        json!({"sent": 1})
    );
    assert_eq!(read_text(&mut ws), "to all");

    // Accept lists with several types and parameters still mean JSON.
    let body = json!({"userId": "aaa", "event": "topic1", "message": "listed"}).to_string();
    let accept = ("Accept", "text/html;q=0.5, application/json;q=0.9");
    assert_eq!(
        parse(&post_with(a, "/push", &body, &[accept])),
        json!({"sent": 1})
    );
    assert_eq!(read_text(&mut ws), "listed");

    let body = json!({"userId": "nobody"}).to_string();
    assert_eq!(
        parse(&post_with(a, "/drop", &body, &[JSON])),
        json!({"dropped": 0})
    );

    let body = json!({"userId": "aaa"}).to_string();
    assert_eq!(
        parse(&post_with(a, "/drop", &body, &[JSON])),
        json!({"dropped": 1})
    );
    assert_eq!(expect_close(&mut ws), 4000);

    // And the plain-text drop answer.
    let mut ws2 = connect_registered(a, "bbb", "topic2");
    let r = post(
        a,
        "/drop",
        &json!({"userId": "bbb", "event": "topic2"}).to_string(),
    );
    assert_eq!((r.status, r.body.as_str()), (200, "dropped 1 clients"));
    assert_eq!(expect_close(&mut ws2), 4000);

    let mut ws3 = connect_registered(a, "aaa", "topic1");
    still_serves(a, &mut ws3, "after drops");
}

#[test]
fn push_content_type_is_not_checked() {
    let (server, mut ws) = setup();
    let a = server.addr;
    let body = json!({"userId": "aaa", "event": "topic1", "message": "form-encoded"}).to_string();
    for ct in [
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/octet-stream",
    ] {
        let r = post_with(a, "/push", &body, &[("Content-Type", ct)]);
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, "message sent to 1 clients"),
            "{ct}"
        );
        assert_eq!(read_text(&mut ws), "form-encoded");
    }
    still_serves(a, &mut ws, "after content types");
}

/// A WebSocket upgrade request with the given extra header lines.
fn upgrade_req(a: SocketAddr, headers: &str) -> String {
    format!("GET /ws HTTP/1.1\r\nHost: {a}\r\n{headers}Connection: close\r\n\r\n")
}

const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

#[test]
fn plain_get_on_ws_path_is_400() {
    let (server, mut ws) = setup();
    let a = server.addr;
    let resp = get(a, "/ws");
    assert_eq!(resp.status, 400, "{resp:?}");
    // Upgrade to something else than websocket.
    let resp = raw_request(
        a,
        upgrade_req(
            a,
            &format!("Upgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n{KEY}"),
        )
        .as_bytes(),
    );
    assert_eq!(resp.status, 400, "{resp:?}");
    // Upgrade header without the Connection token.
    let resp = raw_request(
        a,
        upgrade_req(
            a,
            &format!("Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n{KEY}"),
        )
        .as_bytes(),
    );
    assert_eq!(resp.status, 400, "{resp:?}");
    still_serves(a, &mut ws, "after plain GET /ws");
}

#[test]
fn wrong_websocket_version_is_426_naming_13() {
    let (server, mut ws) = setup();
    let a = server.addr;
    for version in ["8", "12", "14"] {
        let resp = raw_request(
            a,
            upgrade_req(
                a,
                &format!(
                    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: {version}\r\n{KEY}"
                ),
            )
            .as_bytes(),
        );
        assert_eq!(resp.status, 426, "version {version}: {resp:?}");
        assert_eq!(resp.header("Sec-WebSocket-Version"), Some("13"), "{resp:?}");
    }
    still_serves(a, &mut ws, "after 426");
}

#[test]
fn missing_or_malformed_websocket_key_is_400() {
    let (server, mut ws) = setup();
    let a = server.addr;
    let base = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n";
    for key in [
        "",
        "Sec-WebSocket-Key: \r\n",
        "Sec-WebSocket-Key: not-base64!\r\n",
        "Sec-WebSocket-Key: c2hvcnQ=\r\n",
    ] {
        let resp = raw_request(a, upgrade_req(a, &format!("{base}{key}")).as_bytes());
        assert_eq!(resp.status, 400, "key line {key:?}: {resp:?}");
    }
    // The same request with a good key upgrades (so the 400s were about the key).
    let (mut s, mut r) = raw_conn(a);
    s.write_all(format!("GET /ws HTTP/1.1\r\nHost: {a}\r\n{base}{KEY}\r\n").as_bytes())
        .unwrap();
    let resp = read_response(&mut r);
    assert_eq!(resp.status, 101, "{resp:?}");
    assert_eq!(
        resp.header("Sec-WebSocket-Accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    drop(s);
    still_serves(a, &mut ws, "after bad keys");
}

#[test]
fn a_storm_of_bad_requests_leaves_the_server_serving() {
    let (server, mut ws) = setup();
    let a = server.addr;
    let mut bad: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02\x03\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n".to_vec(),
        b"POST /push HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        b"POST /push HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n".to_vec(),
        format!("GET /ws HTTP/1.1\r\nHost: {a}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            .into_bytes(),
    ];
    bad.push(illegal_push_bodies().join("\r\n").into_bytes());
    for _ in 0..5 {
        for raw in &bad {
            let (mut s, _r) = raw_conn(a);
            let _ = s.write_all(raw);
            // Half of them hang up without reading the answer.
        }
        for raw in &bad {
            let (mut s, mut r) = raw_conn(a);
            s.write_all(raw).unwrap();
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut sink = Vec::new();
            let _ = r.read_to_end(&mut sink);
        }
    }
    assert_eq!(get(a, "/healthz").body, "ok");
    still_serves(a, &mut ws, "after the storm");
}

#[test]
fn healthz_answers_json_when_asked() {
    let server = start();
    let r = raw_request(
        server.addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, r#"{"status":"ok"}"#);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(get(server.addr, "/healthz").body, "ok");
}
