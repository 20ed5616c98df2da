//! SPEC §9 revocation: SIGHUP re-reads the token file and the JWT secret
//! file, each whole (a file with a bad line keeps the old one and the log
//! names the line and why); connections whose token no longer maps to the
//! same user — a token-file line removed or remapped, a JWT whose secret
//! was removed — are closed with 4401 `token revoked`, on both
//! transports. The real binary, real signals.

use crate::access_events::{ask, ok, reaches};
use crate::common::*;
use crate::sse::sse_open;
use serde_json::{json, Value};
use std::time::Duration;

fn revoked() -> (u16, String) {
    (4401, "token revoked".into())
}

#[test]
fn a_removed_or_remapped_token_file_line_closes_its_connections() {
    let file = TempFile::new("tokens", "t-alice alice\nt-bob bob\nt-carol carol chat:*\n");
    let s = LoggedBin::start(&["--auth-tokens", file.path()]);
    let mut alice = connect_registered(s.addr, "t-alice", "e");
    let mut alice_sse = sse_open(s.addr, "event=e&token=t-alice", "").expect("alice's stream");
    let mut bob = connect_registered(s.addr, "t-bob", "e");
    let mut carol = connect_registered(s.addr, "t-carol", "chat:1");
    // A connection that never registered holds no token: untouched.
    let mut idle = ws_connect(s.addr, "/ws");

    // alice's line removed, bob's token now maps to dave, carol's kept
    // (with other events: that is no revocation).
    file.write("t-bob dave\nt-carol carol chat:*,news\n");
    s.hup();
    assert_eq!(expect_close_frame(&mut alice), revoked());
    assert_eq!(expect_close_frame(&mut bob), revoked());
    let e = alice_sse.next_event();
    assert_eq!(e.event, "close");
    let v: Value = serde_json::from_str(&e.data).unwrap();
    assert_eq!(v, json!({"code": 4401, "reason": "token revoked"}));
    alice_sse.expect_end();
    s.line_with(&["revoked 3 connection"]);
    reaches(s.addr, "carol", "chat:1", "kept", 1);
    assert_eq!(read_text(&mut carol), "kept");
    assert_eq!(
        ask(&mut idle, json!({"token": "t-bob", "event": "e", "id": 1})),
        ok(1)
    );
    reaches(s.addr, "dave", "e", "dave now", 1);
    assert_eq!(read_text(&mut idle), "dave now");
    reaches(s.addr, "alice", "e", "x", 0);
}

/// A line whose third column now permits fewer events keeps its
/// connections, unsubscribed from what it no longer permits — as a
/// `refresh` with such a token would.
#[test]
fn a_narrowed_token_file_line_unsubscribes_what_it_no_longer_permits() {
    let file = TempFile::new("narrow", "t-dave dave chat:*,news\n");
    let s = LoggedBin::start(&["--auth-tokens", file.path()]);
    let mut ws = connect_registered(s.addr, "t-dave", "chat:1");
    register(&mut ws, "t-dave", "news");
    let mut sse = sse_open(s.addr, "event=chat:2&event=news&token=t-dave", "").expect("a stream");
    reaches(s.addr, "dave", "chat:1", "before", 1);
    assert_eq!(read_text(&mut ws), "before");
    file.write("t-dave dave news\n");
    s.hup();
    s.line_with(&["reloaded 1 tokens"]);
    // chat:* is gone from both transports; news stays.
    reaches(s.addr, "dave", "chat:1", "gone", 0);
    reaches(s.addr, "dave", "chat:2", "gone", 0);
    reaches(s.addr, "dave", "news", "kept", 2);
    assert_eq!(read_text(&mut ws), "kept");
    let e = sse.next_event();
    assert_eq!((e.event.as_str(), e.data.as_str()), ("news", "kept"));
}

#[test]
fn a_bad_file_on_reload_keeps_the_old_table_whole_and_revokes_nobody() {
    let file = TempFile::new("bad", "t1 alice\nt2 bob\n");
    let s = LoggedBin::start(&["--auth-tokens", file.path()]);
    let mut a = connect_registered(s.addr, "t1", "e");
    // Line 3 is bad; line 1 alone would revoke bob: nothing changes.
    file.write("t1 alice\n\nt3 carol chat:* extra\n");
    s.hup();
    let line = s.line_with(&[&format!("{}:3", file.path())]);
    assert!(line.contains("keeping the old token table"), "{line}");
    assert!(line.contains("expected"), "says why: {line}");
    let _b = connect_registered(s.addr, "t2", "e");
    reaches(s.addr, "alice", "e", "still", 1);
    assert_eq!(read_text(&mut a), "still");
    let mut probe = ws_connect(s.addr, "/ws");
    assert_eq!(
        ask(&mut probe, json!({"token": "t3", "event": "e", "id": 1})),
        json!({"id": 1, "ok": false, "code": 4401, "error": "unknown token"})
    );
}

fn jwt(sub: &str, secret: &str) -> String {
    wspush::sign_jwt(sub, secret.as_bytes(), wspush::unix_now(), 600)
}

/// Rotation without downtime, then revocation: the new secret is added
/// above the old one (both verify, nobody is cut off), later the old one
/// is removed and only the connections it verified are closed.
#[test]
fn removing_a_jwt_secret_closes_the_connections_it_verified() {
    const OLD: &str = "old-secret-that-is-32-bytes-long";
    const NEW: &str = "new-secret-that-is-32-bytes-long";
    const FLAG: &str = "flag-secret-that-is-32-bytes-lon";
    let file = TempFile::new("secrets", &format!("{OLD}\n"));
    let s = LoggedBin::start(&["--jwt-secret", FLAG, "--jwt-secret-file", file.path()]);
    let mut by_old = connect_registered(s.addr, &jwt("ann", OLD), "e");
    let mut old_sse = sse_open(s.addr, &format!("event=e&token={}", jwt("ann", OLD)), "").expect("stream");
    let mut by_flag = connect_registered(s.addr, &jwt("ann", FLAG), "e");

    // Step 1: add the new secret above the old one.
    file.write(&format!("{NEW}\n{OLD}\n"));
    s.hup();
    s.line_with(&["reloaded 2 JWT secrets"]);
    let mut by_new = connect_registered(s.addr, &jwt("ann", NEW), "e");
    reaches(s.addr, "ann", "e", "all four", 4);
    for ws in [&mut by_old, &mut by_flag, &mut by_new] {
        assert_eq!(read_text(ws), "all four");
    }
    assert_eq!(old_sse.next_event().data, "all four");

    // Step 2: the old secret removed.
    file.write(&format!("{NEW}\n"));
    s.hup();
    assert_eq!(expect_close_frame(&mut by_old), revoked());
    let e = old_sse.next_event();
    assert_eq!(
        (e.event.as_str(), e.data.as_str()),
        ("close", r#"{"code":4401,"reason":"token revoked"}"#)
    );
    reaches(s.addr, "ann", "e", "two left", 2);
    assert_eq!(read_text(&mut by_flag), "two left");
    assert_eq!(read_text(&mut by_new), "two left");
    // A token of the old secret is refused from now on.
    let mut late = ws_connect(s.addr, "/ws");
    assert_eq!(
        ask(
            &mut late,
            json!({"token": jwt("ann", OLD), "event": "e", "id": 1})
        )["error"],
        "bad token signature"
    );
    // A secret file with no secret keeps the current ones.
    file.write("\n\n");
    s.hup();
    s.line_with(&["keeping the old JWT secrets", "holds no secret"]);
    reaches(s.addr, "ann", "e", "unchanged", 2);
    expect_silence(&mut late, Duration::from_millis(100));
}

/// A refresh replaces the fingerprint: a connection that moved to a token
/// of the new secret survives the removal of the old one.
#[test]
fn a_refreshed_connection_is_judged_by_its_new_token() {
    const OLD: &str = "old-refresh-secret-of-32-bytes!!";
    const NEW: &str = "new-refresh-secret-of-32-bytes!!";
    let file = TempFile::new("refresh", &format!("{NEW}\n{OLD}\n"));
    let s = LoggedBin::start(&["--jwt-secret-file", file.path()]);
    let mut ws = connect_registered(s.addr, &jwt("bea", OLD), "e");
    assert_eq!(
        ask(
            &mut ws,
            json!({"type": "refresh", "token": jwt("bea", NEW), "id": 2})
        ),
        ok(2)
    );
    file.write(&format!("{NEW}\n"));
    s.hup();
    s.line_with(&["reloaded 1 JWT secrets"]);
    reaches(s.addr, "bea", "e", "kept", 1);
    assert_eq!(read_text(&mut ws), "kept");
}
