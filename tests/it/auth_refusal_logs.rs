//! SPEC §4: every refusal a user may need to debug is logged at `info`
//! with the peer address and the reason — a rejected token (and why), a
//! refused origin (and which), a push auth failure, a limit — and a flood
//! of refusals logs a bounded number of lines. Read from the real binary's
//! stderr.
use crate::auth_push_key::Piped;
use crate::common::*;
use serde_json::json;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn upgrade_with_origin(addr: SocketAddr, origin: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n"
    )
}

/// The info lines of `log` that contain every one of `needles`.
fn lines_with<'a>(log: &'a str, needles: &[&str]) -> Vec<&'a str> {
    log.lines()
        .filter(|l| l.starts_with("wspush info: ") && needles.iter().all(|n| l.contains(n)))
        .collect()
}

#[test]
fn a_refused_origin_is_logged_with_the_origin_and_the_peer() {
    let s = Piped::start(&[
        "--listen",
        "127.0.0.1:0",
        "--allowed-origins",
        "https://good.example",
    ]);
    let r = raw_request(
        s.addr,
        upgrade_with_origin(s.addr, "https://evil.example").as_bytes(),
    );
    assert_eq!(r.status, 403);
    let log = s.finish();
    let found = lines_with(
        &log,
        &["\"https://evil.example\"", "127.0.0.1:", "--allowed-origins"],
    );
    assert_eq!(found.len(), 1, "{log}");
}

#[test]
fn a_rejected_token_is_logged_with_why() {
    let s = Piped::start(&["--listen", "127.0.0.1:0", "--jwt-secret", "log-secret"]);
    let expired = wspush::sign_jwt("ann", b"log-secret", wspush::unix_now() - 7200, 60);
    let forged = wspush::sign_jwt("ann", b"other", wspush::unix_now(), 60);
    for token in [&expired, &forged] {
        let mut ws = ws_connect(s.addr, "/ws");
        send_text(&mut ws, &json!({"token": token, "event": "e"}).to_string());
        assert_eq!(expect_close(&mut ws), 4401);
    }
    let log = s.finish();
    assert_eq!(
        lines_with(&log, &["token", "127.0.0.1:", "token expired"]).len(),
        1,
        "{log}"
    );
    assert_eq!(
        lines_with(&log, &["token", "127.0.0.1:", "bad token signature"]).len(),
        1,
        "{log}"
    );
    for secret in ["log-secret", expired.as_str(), forged.as_str()] {
        assert!(!log.contains(secret), "the log shows {secret:?}");
    }
}

#[test]
fn push_auth_failures_and_limits_are_logged() {
    let s = Piped::start(&[
        "--listen",
        "127.0.0.1:0",
        "--push-key",
        "log-push-key",
        "--max-connections",
        "1",
    ]);
    let r = post_with(s.addr, "/push", "{}", &[("Authorization", "Bearer guess-123")]);
    assert_eq!(r.status, 401);
    let r = post(s.addr, "/broadcast", "{}");
    assert_eq!(r.status, 401);
    let _one = ws_connect(s.addr, "/ws");
    match try_ws(s.addr, "/ws", &[]) {
        Err(r) => assert_eq!(r.status, 503),
        Ok(_) => panic!("over --max-connections"),
    }
    let log = s.finish();
    assert_eq!(
        lines_with(&log, &["/push", "127.0.0.1:", "401", "push key wrong"]).len(),
        1,
        "{log}"
    );
    assert_eq!(
        lines_with(&log, &["/broadcast", "127.0.0.1:", "401", "push key missing"]).len(),
        1,
        "{log}"
    );
    assert_eq!(
        lines_with(&log, &["127.0.0.1:", "503", "--max-connections 1"]).len(),
        1,
        "{log}"
    );
    assert!(
        !log.contains("log-push-key") && !log.contains("guess-123"),
        "{log}"
    );
}

/// "Over a limit" covers every limit a client can hit: a message over
/// `--max-message-bytes` (1009), `--max-events` (4429), a body over
/// `--max-body-bytes` and a message over `--max-backlog-bytes` (413), and
/// a register whose token maps to another user (4403).
#[test]
fn every_limit_refusal_is_logged() {
    let s = Piped::start(&[
        "--listen",
        "127.0.0.1:0",
        "--max-message-bytes",
        "100",
        "--max-events",
        "1",
        "--max-body-bytes",
        "3000",
        "--max-backlog-bytes",
        "1024",
    ]);
    let mut big = ws_connect(s.addr, "/ws");
    send_text(&mut big, &"x".repeat(200));
    assert_eq!(expect_close(&mut big), 1009);
    let mut two = connect_registered(s.addr, "u", "e1");
    send_text(&mut two, r#"{"token":"v","event":"e1"}"#);
    assert_eq!(expect_close(&mut two), 4403);
    let mut many = connect_registered(s.addr, "u", "e1");
    send_text(&mut many, r#"{"token":"u","event":"e2"}"#);
    assert_eq!(expect_close(&mut many), 4429);
    let r = post(s.addr, "/push", &"y".repeat(4000));
    assert_eq!(r.status, 413);
    let r = push(s.addr, "u", "e1", &"z".repeat(2000));
    assert_eq!(r.status, 413);
    let log = s.finish();
    for needles in [
        &["127.0.0.1:", "1009", "--max-message-bytes 100"][..],
        &["127.0.0.1:", "4403", "another user"],
        &["127.0.0.1:", "4429", "--max-events 1"],
        &["127.0.0.1:", "413", "--max-body-bytes 3000"],
        &["127.0.0.1:", "413", "--max-backlog-bytes 1024"],
    ] {
        assert_eq!(lines_with(&log, needles).len(), 1, "{needles:?} in {log}");
    }
}

#[test]
fn loopback_only_refusals_are_logged() {
    let s = Piped::start(&["--listen", "127.0.0.1:0"]);
    let r = post_with(
        s.addr,
        "/drop",
        r#"{"userId":"u"}"#,
        &[("X-Forwarded-For", "203.0.113.5")],
    );
    assert_eq!(r.status, 403);
    let log = s.finish();
    assert_eq!(
        lines_with(&log, &["/drop", "127.0.0.1:", "403", "X-Forwarded-For"]).len(),
        1,
        "{log}"
    );
}

/// 300 refused upgrades in a burst log a handful of lines, not 300; after
/// a quiet second the next one says how many were suppressed. Other kinds
/// have their own budget.
#[test]
fn a_flood_of_refusals_logs_a_bounded_number_of_lines() {
    const FLOOD: usize = 300;
    let s = Piped::start(&[
        "--listen",
        "127.0.0.1:0",
        "--allowed-origins",
        "https://good.example",
    ]);
    let started = Instant::now();
    let (mut w, mut r) = raw_conn(s.addr);
    // A refused upgrade keeps the connection: all of them on one.
    let one = upgrade_with_origin(s.addr, "https://flood.example");
    w.write_all(one.repeat(FLOOD).as_bytes()).unwrap();
    for i in 0..FLOOD {
        assert_eq!(read_response(&mut r).status, 403, "response {i}");
    }
    let flood_secs = started.elapsed().as_secs();
    std::thread::sleep(Duration::from_millis(1200));
    let r = raw_request(
        s.addr,
        upgrade_with_origin(s.addr, "https://late.example").as_bytes(),
    );
    assert_eq!(r.status, 403);
    // Another kind is not starved by the flood.
    let r = post_with(s.addr, "/push", "{}", &[("Origin", "https://other.example")]);
    assert_eq!(r.status, 403);
    let log = s.finish();
    assert_eq!(lines_with(&log, &["/push", "Origin"]).len(), 1, "{log}");

    let flood = lines_with(&log, &["flood.example"]);
    assert!(!flood.is_empty(), "no refusal logged: {log}");
    // A burst of 10, then one per second.
    let most = 10 + flood_secs as usize + 2;
    assert!(
        flood.len() <= most,
        "{} lines for {FLOOD} refusals:\n{log}",
        flood.len()
    );
    let late = lines_with(&log, &["late.example", "similar lines suppressed"]);
    assert_eq!(late.len(), 1, "{log}");
    // Every refusal of the flood was either written or counted in a note.
    let noted: usize = flood.iter().chain(&late).map(|l| suppressed_in(l)).sum();
    assert_eq!(noted + flood.len(), FLOOD, "{log}");
    assert!(suppressed_in(late[0]) > 0);
}

/// N of a line's "(N similar lines suppressed)" note, 0 without one.
fn suppressed_in(line: &str) -> usize {
    match line.rsplit_once(" similar lines suppressed)") {
        None => 0,
        Some((head, _)) => head
            .rsplit_once('(')
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {line:?}")),
    }
}
