//! SPEC §3, `--auth-tokens FILE`: a table of `token userId` lines, checked
//! at startup (a bad line names `FILE:LINE` and stops the binary) and
//! re-read on SIGHUP (a bad file keeps the old table).
use crate::common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::Stdio;

/// Register with an id on a fresh, then dropped, connection; the reply. The
/// event is one no assertion pushes to, so a connection the server has not
/// yet seen close cannot inflate a "sent to N clients" count.
fn try_register(addr: SocketAddr, token: &str) -> Value {
    let mut ws = ws_connect(addr, "/ws");
    send_text(
        &mut ws,
        &json!({"token": token, "event": "probe", "id": 1}).to_string(),
    );
    serde_json::from_str(&read_text(&mut ws)).expect("reply is JSON")
}

fn refused(code: u16, reason: &str) -> Value {
    json!({"id": 1, "ok": false, "code": code, "error": reason})
}

/// `token` is refused with 4401 (with an id: the reply; without: the close).
#[track_caller]
fn assert_rejected(addr: SocketAddr, token: &str) {
    assert_eq!(
        try_register(addr, token),
        refused(4401, "unknown token"),
        "{token}"
    );
    let mut ws = ws_connect(addr, "/ws");
    send_text(&mut ws, &json!({"token": token, "event": "e"}).to_string());
    assert_eq!(
        expect_close_frame(&mut ws),
        (4401, "unknown token".into()),
        "{token}"
    );
}

/// `token` registers as `user` for `event`: a push to `user` on `event`
/// reaches it (and only it: use a fresh event per connection).
#[track_caller]
fn assert_registers_as(addr: SocketAddr, token: &str, user: &str, event: &str) -> Ws {
    let mut ws = connect_registered(addr, token, event);
    let r = push(addr, user, event, &format!("hello {user}"));
    assert_eq!((r.status, r.body.as_str()), (200, "message sent to 1 clients"));
    assert_eq!(read_text(&mut ws), format!("hello {user}"));
    ws
}

const TABLE: &str = "# wspush tokens\n\
                     \n\
                     tok-alice alice\n\
                     \x20\x20tok-bob\tbob   \n\
                     # tok-commented carol\n\
                     \n";

#[test]
fn listed_tokens_register_as_their_user() {
    let file = TempFile::new("table", TABLE);
    let s = LoggedBin::start(&["--auth-tokens", file.path()]);
    let _a = assert_registers_as(s.addr, "tok-alice", "alice", "e");
    let _b = assert_registers_as(s.addr, "tok-bob", "bob", "e");
    // The token is not the userId: a push to the token reaches nobody.
    assert_eq!(
        push(s.addr, "tok-alice", "e", "x").body,
        "message sent to 0 clients"
    );
}

#[test]
fn unlisted_tokens_get_4401() {
    let file = TempFile::new("table", TABLE);
    let s = LoggedBin::start(&["--auth-tokens", file.path()]);
    for token in [
        "alice",           // a userId is not a token
        "tok-carol",       // never listed
        "tok-commented",   // only in a comment
        "#",               // the comment marker
        "tok-alice alice", // the whole line
        "TOK-ALICE",       // tokens are case-sensitive
        "tok-alic",        // a prefix
        "tok-alice\u{0}",  // a trailing NUL
        "tok-alice ",      // trailing space
    ] {
        assert_rejected(s.addr, token);
    }
    assert_eq!(metric(s.addr, "wspush_auth_failures_total"), 18);
}

#[test]
fn two_tokens_of_one_user_share_a_connection_other_users_get_4403() {
    let file = TempFile::new("shared", "t1 alice\nt2 alice\nt3 bob\n");
    let s = LoggedBin::start(&["--auth-tokens", file.path()]);
    let mut ws = connect_registered(s.addr, "t1", "e1");
    register(&mut ws, "t2", "e2");
    for (event, msg) in [("e1", "one"), ("e2", "two")] {
        assert_eq!(
            push(s.addr, "alice", event, msg).body,
            "message sent to 1 clients"
        );
        assert_eq!(read_text(&mut ws), msg);
    }
    // bob's token on alice's connection: with an id the reply, without it 4403.
    send_text(&mut ws, r#"{"token":"t3","event":"e3","id":1}"#);
    let v: Value = serde_json::from_str(&read_text(&mut ws)).unwrap();
    assert_eq!(v, refused(4403, "token belongs to another user"));
    // An unlisted token on a bound connection is still 4401, not 4403.
    send_text(&mut ws, r#"{"token":"t9","event":"e3","id":1}"#);
    let v: Value = serde_json::from_str(&read_text(&mut ws)).unwrap();
    assert_eq!(v, refused(4401, "unknown token"));
    send_text(&mut ws, r#"{"token":"t3","event":"e3"}"#);
    assert_eq!(expect_close(&mut ws), 4403);
    assert_eq!(push(s.addr, "bob", "e3", "x").body, "message sent to 0 clients");
}

#[test]
fn malformed_file_stops_startup_naming_file_and_line() {
    for (text, line, why) in [
        ("good alice\n# comment\n\nlonely\n", 4, "one field"),
        ("a alice\nb bob carol dave\n", 2, "four fields"),
        ("a alice\nb bob chat:*,,news\n", 2, "an empty pattern"),
        ("dup alice\ndup bob\n", 2, "token listed twice"),
    ] {
        let file = TempFile::new("bad", text);
        let out = command(env!("CARGO_BIN_EXE_wspush"))
            .args(["--listen", "127.0.0.1:0", "--auth-tokens", file.path()])
            .stdin(Stdio::null())
            .output()
            .expect("run wspush");
        assert!(!out.status.success(), "{why}: started anyway");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains("listening on"), "{why}: {stdout}");
        let err = String::from_utf8_lossy(&out.stderr);
        let want = format!("{}:{line}", file.path());
        assert!(err.contains(&want), "{why}: stderr {err:?} lacks {want:?}");
    }
    // A missing file is named too.
    let missing = std::env::temp_dir().join(format!("wspush-it-tokens-missing-{}", std::process::id()));
    let out = command(env!("CARGO_BIN_EXE_wspush"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--auth-tokens",
            missing.to_str().unwrap(),
        ])
        .output()
        .expect("run wspush");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(missing.to_str().unwrap()));
}

#[test]
fn sighup_reloads_the_table() {
    let file = TempFile::new("reload", "old-tok alice\n");
    let s = LoggedBin::start(&["--auth-tokens", file.path()]);
    let mut a = assert_registers_as(s.addr, "old-tok", "alice", "e");

    file.write("# rotated\nnew-tok bob\n");
    // Not before the HUP: the file is read at startup and on SIGHUP only.
    assert_eq!(try_register(s.addr, "new-tok"), refused(4401, "unknown token"));
    s.hup();
    eventually("new-tok accepted after SIGHUP", || {
        try_register(s.addr, "new-tok")["ok"] == true
    });
    let _b = assert_registers_as(s.addr, "new-tok", "bob", "e");
    assert_rejected(s.addr, "old-tok");

    // SPEC §9: alice's token is gone, so is her connection.
    assert_eq!(expect_close_frame(&mut a), (4401, "token revoked".into()));
    let r = push(s.addr, "alice", "e", "gone");
    assert_eq!(r.body, "message sent to 0 clients");
}

#[test]
fn broken_file_on_reload_keeps_the_old_table() {
    let file = TempFile::new("broken", "t1 alice\n");
    let mut s = LoggedBin::start(&["--auth-tokens", file.path()]);
    let mut a = assert_registers_as(s.addr, "t1", "alice", "e");

    // A bad line: the reload fails (and says where), the old table stays.
    file.write("t1 alice\nt2 bob chat:* extra\n");
    s.hup();
    let line = s.line_with(&[&format!("{}:2", file.path())]);
    assert!(s.running(), "server died on a bad reload: {line}");
    let _again = assert_registers_as(s.addr, "t1", "alice", "e2");
    assert_rejected(s.addr, "t2");

    // The file gone entirely: same.
    std::fs::remove_file(file.path()).unwrap();
    s.hup();
    s.line_with(&[&format!("{}: ", file.path())]);
    assert!(s.running(), "server died on a missing file");
    let _third = assert_registers_as(s.addr, "t1", "alice", "e3");

    // The old connection never noticed.
    assert_eq!(push(s.addr, "alice", "e", "x").body, "message sent to 1 clients");
    assert_eq!(read_text(&mut a), "x");
    assert_eq!(get(s.addr, "/healthz").body, "ok");

    // And a good file afterwards is picked up again.
    file.write("t3 carol\n");
    s.hup();
    eventually("t3 accepted", || try_register(s.addr, "t3")["ok"] == true);
    assert_rejected(s.addr, "t1");
    assert!(s.running());
}
