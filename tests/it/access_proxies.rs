//! SPEC §9 `--trusted-proxies`: only for requests from those peers does
//! the client address come from `X-Forwarded-For` (the rightmost address
//! not in the list) or `Forwarded`; it is used for per-IP limits, logs and
//! the loopback-only push rule. From any other peer those headers set
//! nothing, and push endpoints refuse them in loopback-only mode.

use crate::access_events::{ask, ok};
use crate::access_limits::{connect_from, ws_from};
use crate::auth_push_key::Piped;
use crate::common::*;
use serde_json::json;
use std::io::{BufReader, Write};
use std::net::SocketAddr;

fn trusting(list: &str, per_ip: usize) -> TestServer {
    let list = wspush::config::Cidr::parse(list).unwrap();
    start_with(move |b| {
        b.configure(|c| {
            c.trusted_proxies = vec![list];
            c.max_connections_per_ip = per_ip;
        })
    })
}

/// `POST {path}` from `src` with extra header lines.
fn post_from(src: &str, addr: SocketAddr, path: &str, body: &str, headers: &str) -> HttpResponse {
    let mut s = connect_from(src, addr);
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
        body.len()
    )
    .unwrap();
    read_response(&mut BufReader::new(s))
}

#[test]
fn per_ip_limits_count_the_forwarded_client() {
    let s = trusting("127.0.0.1", 1);
    let _a = ws_from("127.0.0.1", s.addr, "X-Forwarded-For: 203.0.113.1\r\n").expect("first client");
    let r = ws_from(
        "127.0.0.1",
        s.addr,
        "X-Forwarded-For: 198.51.100.4, 203.0.113.1\r\n",
    )
    .map(|_| ())
    .unwrap_err();
    assert_eq!(r.status, 429, "the same client behind the proxy");
    let _b = ws_from("127.0.0.1", s.addr, "X-Forwarded-For: 203.0.113.2\r\n").expect("another client");
    let _c = ws_from("127.0.0.1", s.addr, "Forwarded: for=\"[2001:db8::1]:4711\"\r\n").expect("Forwarded");
    // The proxy itself is a client like any other.
    let _p = ws_from("127.0.0.1", s.addr, "").expect("the proxy's own");
    // From a peer that is not trusted the headers are ignored: every
    // connection from 127.0.0.5 is 127.0.0.5's.
    let mut d = ws_from("127.0.0.5", s.addr, "X-Forwarded-For: 203.0.113.9\r\n").expect("untrusted peer");
    assert_eq!(ask(&mut d, json!({"token": "d", "event": "e", "id": 1})), ok(1));
    let r = ws_from("127.0.0.5", s.addr, "X-Forwarded-For: 203.0.113.10\r\n")
        .map(|_| ())
        .unwrap_err();
    assert_eq!(r.status, 429, "counted as the peer, not the header's address");
}

#[test]
fn the_loopback_push_rule_judges_the_forwarded_client() {
    let s = trusting("127.0.0.1", 0);
    let body = r#"{"userId":"u","event":"e","message":"m"}"#;
    for (hdr, status) in [
        ("X-Forwarded-For: 127.0.0.1\r\n", 200),
        // Every hop a trusted proxy: the leftmost is the client.
        ("X-Forwarded-For: 127.0.0.1, 127.0.0.1\r\n", 200),
        // The rightmost untrusted hop is the client, wherever it stands.
        ("X-Forwarded-For: 203.0.113.9, 127.0.0.1\r\n", 403),
        ("Forwarded: for=127.0.0.1\r\n", 200),
        ("X-Forwarded-For: 203.0.113.9\r\n", 403),
        ("Forwarded: for=\"[2001:db8::1]\"\r\n", 403),
        ("X-Forwarded-For: unknown\r\n", 403),
    ] {
        let r = post_from("127.0.0.1", s.addr, "/push", body, hdr);
        assert_eq!(r.status, status, "{hdr}: {}", r.body);
        if status == 403 {
            assert!(r.body.contains("push"), "{}", r.body);
        }
    }
    let r = post_from(
        "127.0.0.1",
        s.addr,
        "/push",
        body,
        "X-Forwarded-For: 203.0.113.9\r\n",
    );
    assert_eq!(
        r.body,
        "push endpoints answer loopback clients only; set a push key (--push-key) to allow remote pushes"
    );
    // Not from the trusted peer: forwarded requests are refused as before.
    let r = post_from(
        "127.0.0.2",
        s.addr,
        "/push",
        body,
        "X-Forwarded-For: 127.0.0.1\r\n",
    );
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            403,
            "push refused: forwarded requests (X-Forwarded-For, Forwarded) are not accepted without a push key"
        )
    );
    // Without --trusted-proxies nothing changes.
    let plain = start();
    let r = post_with(plain.addr, "/push", body, &[("X-Forwarded-For", "127.0.0.1")]);
    assert_eq!(r.status, 403);
}

#[test]
fn refusal_logs_name_the_forwarded_client() {
    let s = Piped::start(&[
        "--listen",
        "127.0.0.1:0",
        "--trusted-proxies",
        "127.0.0.1",
        "--jwt-secret",
        "proxy-log-secret-of-32-bytes-ok!",
    ]);
    let mut ws = ws_from("127.0.0.1", s.addr, "X-Forwarded-For: 203.0.113.77\r\n").expect("upgrade");
    send_text(&mut ws, &json!({"token": "junk", "event": "e"}).to_string());
    assert_eq!(expect_close(&mut ws), 4401);
    let r = post_from(
        "127.0.0.1",
        s.addr,
        "/push",
        "{}",
        "X-Forwarded-For: 203.0.113.78\r\n",
    );
    assert_eq!(r.status, 403);
    // And the ordinary address when the proxy adds nothing.
    let mut c = connect_from("127.0.0.1", s.addr);
    c.write_all(
        b"POST /push HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .unwrap();
    assert_eq!(read_response(&mut BufReader::new(c)).status, 403);
    let log = s.finish();
    let has = |needles: &[&str]| {
        log.lines()
            .any(|l| l.starts_with("wspush info: ") && needles.iter().all(|n| l.contains(n)))
    };
    assert!(has(&["203.0.113.77", "malformed token"]), "{log}");
    assert!(has(&["203.0.113.78", "403"]), "{log}");
    assert!(has(&["127.0.0.1:", "403", "Host"]), "{log}");
}

#[test]
fn trusted_proxies_flag_and_env() {
    let (code, err) = crate::binary_cli::run_to_exit(
        &["--listen", "127.0.0.1:0", "--trusted-proxies", "10.0.0.1/8"],
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--trusted-proxies") && err.contains("10.0.0.0/8"),
        "{err}"
    );
    let (code, err) = crate::binary_cli::run_to_exit(
        &["--listen", "127.0.0.1:0"],
        &[("WSPUSH_TRUSTED_PROXIES", "nonsense")],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("WSPUSH_TRUSTED_PROXIES"), "{err}");
    let s = spawn_bin_raw(
        &["--listen", "127.0.0.1:0"],
        &[
            ("WSPUSH_TRUSTED_PROXIES", "127.0.0.1, ::1"),
            ("WSPUSH_MAX_CONNECTIONS_PER_IP", "1"),
        ],
    );
    let _a = ws_from("127.0.0.1", s.addr, "X-Forwarded-For: 203.0.113.1\r\n").expect("first");
    let _b = ws_from("127.0.0.1", s.addr, "X-Forwarded-For: 203.0.113.2\r\n").expect("another client");
    assert_eq!(
        ws_from("127.0.0.1", s.addr, "X-Forwarded-For: 203.0.113.2\r\n")
            .map(|_| ())
            .unwrap_err()
            .status,
        429
    );
}
