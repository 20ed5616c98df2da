//! SPEC §3, `--allowed-origins`: a browser from another site cannot open a
//! WebSocket (HTTP 403 on the upgrade); listed origins and non-browser
//! clients (no `Origin`) can; without the flag any origin works.
use crate::common::*;
use std::io::Write;
use std::net::SocketAddr;

const ALLOWED: &str = "https://a.example,https://b.example";

/// A full RFC 6455 handshake by hand, with `Origin` when given.
fn upgrade_request(addr: SocketAddr, origin: Option<&str>, extra: &str) -> String {
    let mut req = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}"
    );
    if let Some(o) = origin {
        req.push_str(&format!("Origin: {o}\r\n"));
    }
    req.push_str("\r\n");
    req
}

fn upgrade(addr: SocketAddr, origin: Option<&str>) -> HttpResponse {
    raw_request(addr, upgrade_request(addr, origin, "").as_bytes())
}

#[track_caller]
fn assert_switches(addr: SocketAddr, origin: Option<&str>) {
    let r = upgrade(addr, origin);
    assert_eq!(r.status, 101, "Origin {origin:?}: {r:?}");
    // RFC 6455 §1.3's sample key and its accept value.
    assert_eq!(
        r.header("Sec-WebSocket-Accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
}

#[track_caller]
fn assert_forbidden(addr: SocketAddr, origin: &str) {
    let r = upgrade(addr, Some(origin));
    assert_eq!(r.status, 403, "Origin {origin:?}: {r:?}");
    assert_eq!(r.body, "origin not allowed", "Origin {origin:?}");
    assert!(r.header("Sec-WebSocket-Accept").is_none());
}

/// A real WebSocket client sending `Origin`; registers and gets a push.
#[track_caller]
fn ws_with_origin(addr: SocketAddr, origin: &str, user: &str) {
    let mut ws = try_ws(addr, "/ws", &[("Origin", origin)])
        .unwrap_or_else(|r| panic!("Origin {origin:?} refused: {r:?}"));
    register(&mut ws, user, "e");
    assert_eq!(push(addr, user, "e", "hi").body, "message sent to 1 clients");
    assert_eq!(read_text(&mut ws), "hi");
}

#[test]
fn listed_origins_and_no_origin_may_connect() {
    let s = spawn_bin(&["--allowed-origins", ALLOWED]);
    assert_switches(s.addr, Some("https://a.example"));
    assert_switches(s.addr, Some("https://b.example"));
    // Scheme and host are case-insensitive (RFC 6454 §4).
    assert_switches(s.addr, Some("HTTPS://A.EXAMPLE"));
    // Non-browser clients send no Origin: nothing to check.
    assert_switches(s.addr, None);
    ws_with_origin(s.addr, "https://a.example", "alice");
    ws_with_origin(s.addr, "https://b.example", "bob");
    let mut ws = ws_connect(s.addr, "/ws");
    register(&mut ws, "carol", "e");
}

#[test]
fn other_origins_get_403() {
    let s = spawn_bin(&["--allowed-origins", ALLOWED]);
    for origin in [
        "https://evil.example",
        "http://a.example",               // scheme downgrade
        "https://a.example:8443",         // another port
        "https://a.example.evil.example", // suffix trick
        "https://xa.example",             // prefix trick
        "https://evil.example/https://a.example",
        "https://a.example@evil.example",
        "null", // sandboxed iframes, file:// pages
        "https://a.example,https://evil.example",
    ] {
        assert_forbidden(s.addr, origin);
    }
    // With JSON asked for, a JSON error.
    let r = raw_request(
        s.addr,
        upgrade_request(
            s.addr,
            Some("https://evil.example"),
            "Accept: application/json\r\n",
        )
        .as_bytes(),
    );
    assert_eq!(
        (r.status, r.body.as_str()),
        (403, r#"{"error":"origin not allowed"}"#)
    );
    // A client that then speaks WebSocket anyway gets no socket.
    match try_ws(s.addr, "/ws", &[("Origin", "https://evil.example")]) {
        Err(r) => assert_eq!(r.status, 403, "{r:?}"),
        Ok(_) => panic!("evil origin got a WebSocket"),
    }
    // Counted as auth failures (10 raw refusals above plus the client's).
    assert_eq!(metric(s.addr, "wspush_auth_failures_total"), 11);
    assert_eq!(metric(s.addr, "wspush_connections"), 0);
}

#[test]
fn a_refused_upgrade_leaves_the_connection_usable() {
    // A refused upgrade is a well-formed HTTP request (README): the
    // connection stays open for the next one, which may upgrade.
    let s = spawn_bin(&["--allowed-origins", ALLOWED]);
    let (mut w, mut r) = raw_conn(s.addr);
    w.write_all(upgrade_request(s.addr, Some("https://evil.example"), "").as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut r).status, 403);
    w.write_all(upgrade_request(s.addr, Some("https://a.example"), "").as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut r).status, 101);
}

#[test]
fn without_the_flag_any_origin_may_connect() {
    let s = spawn_bin(&[]);
    for origin in ["https://evil.example", "null", "http://localhost:8080"] {
        assert_switches(s.addr, Some(origin));
    }
    assert_switches(s.addr, None);
    ws_with_origin(s.addr, "https://evil.example", "mallory");
}

#[test]
fn star_allows_every_origin() {
    let s = spawn_bin(&["--allowed-origins", "*"]);
    assert_switches(s.addr, Some("https://anything.example"));
    assert_switches(s.addr, None);
}

#[test]
fn trailing_slashes_and_spaces_in_the_list_are_ignored() {
    let s = spawn_bin(&["--allowed-origins", " https://a.example/ , http://localhost:8080"]);
    assert_switches(s.addr, Some("https://a.example"));
    assert_switches(s.addr, Some("http://localhost:8080"));
    assert_forbidden(s.addr, "http://localhost:8081");
}
