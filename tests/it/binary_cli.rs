//! The `wspush` binary's command line: help, version, env twins, bad input.
use crate::common::*;

fn wspush(args: &[&str]) -> std::process::Output {
    command(env!("CARGO_BIN_EXE_wspush"))
        .args(args)
        .output()
        .expect("run wspush")
}

#[test]
fn help_lists_every_spec_flag_with_its_env_twin() {
    let out = wspush(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for (flag, env) in [
        ("--listen", "WSPUSH_LISTEN"),
        ("--ws-path", "WSPUSH_WS_PATH"),
        ("--push-path", "WSPUSH_PUSH_PATH"),
        ("--max-connections", "WSPUSH_MAX_CONNECTIONS"),
        ("--max-message-bytes", "WSPUSH_MAX_MESSAGE_BYTES"),
        ("--max-events", "WSPUSH_MAX_EVENTS"),
        ("--max-backlog-bytes", "WSPUSH_MAX_BACKLOG_BYTES"),
        ("--max-body-bytes", "WSPUSH_MAX_BODY_BYTES"),
        ("--register-timeout", "WSPUSH_REGISTER_TIMEOUT"),
        ("--ping-interval", "WSPUSH_PING_INTERVAL"),
        ("--request-timeout", "WSPUSH_REQUEST_TIMEOUT"),
        ("--log-level", "WSPUSH_LOG"),
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
        assert!(text.contains(env), "--help lacks {env}");
    }
}

#[test]
fn version_prints_the_package_version() {
    let out = wspush(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.trim(), format!("wspush {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn bad_flags_fail_fast_with_a_named_reason() {
    for (args, needle) in [
        (vec!["--max-events", "lots"], "--max-events"),
        (vec!["--frobnicate"], "--frobnicate"),
        (vec!["--ping-interval"], "needs a value"),
        (vec!["--listen", "not an address"], "--listen"),
    ] {
        let out = wspush(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(needle), "{args:?}: stderr {err:?} lacks {needle}");
    }
}

#[test]
fn environment_twins_configure_the_server() {
    let server = spawn_bin_raw(
        &[],
        &[
            ("WSPUSH_LISTEN", "127.0.0.1:0"),
            ("WSPUSH_WS_PATH", "/socket"),
            ("WSPUSH_PUSH_PATH", "/send"),
        ],
    );
    let mut ws = ws_connect(server.addr, "/socket");
    register(&mut ws, "u", "e");
    let body = r#"{"userId":"u","event":"e","message":"via env"}"#;
    let r = post(server.addr, "/send", body);
    assert_eq!((r.status, r.body.as_str()), (200, "message sent to 1 clients"));
    assert_eq!(read_text(&mut ws), "via env");
    assert_eq!(post(server.addr, "/push", body).status, 404);
}

#[test]
fn flags_beat_environment() {
    let server = spawn_bin_raw(
        &["--listen", "127.0.0.1:0", "--push-path", "/flag"],
        &[("WSPUSH_PUSH_PATH", "/env")],
    );
    let body = r#"{"userId":"u","event":"e","message":"m"}"#;
    assert_eq!(post(server.addr, "/flag", body).status, 200);
    assert_eq!(post(server.addr, "/env", body).status, 404);
}
