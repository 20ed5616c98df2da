//! SPEC §11: `--log-format json` (env `WSPUSH_LOG_FORMAT`): every line on
//! stderr is one JSON object with `time`, `level` and `message` (and
//! `fields` for counts), while stdout's `listening on ADDR` stays plain so
//! scripts keep working. Read from the real binary.
use crate::auth_push_key::Piped;
use crate::binary_cli::run_to_exit;
use crate::common::*;
use serde_json::Value;
use std::time::Duration;

/// `2024-02-29T23:59:59.123Z`.
fn is_rfc3339_millis_utc(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// Every line of `log` as a JSON object of the documented shape.
#[track_caller]
fn json_lines(log: &str) -> Vec<Value> {
    assert!(!log.is_empty(), "no log at all");
    log.lines()
        .map(|line| {
            let v: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object ({e}): {line:?}"));
            let obj = v.as_object().unwrap_or_else(|| panic!("not an object: {line:?}"));
            for key in obj.keys() {
                assert!(
                    ["time", "level", "message", "fields"].contains(&key.as_str()),
                    "unexpected key {key} in {line:?}"
                );
            }
            let time = v["time"].as_str().unwrap_or_else(|| panic!("no time: {line:?}"));
            assert!(is_rfc3339_millis_utc(time), "time {time:?} in {line:?}");
            let level = v["level"]
                .as_str()
                .unwrap_or_else(|| panic!("no level: {line:?}"));
            assert!(
                ["error", "warn", "info", "debug"].contains(&level),
                "level {level:?} in {line:?}"
            );
            let message = v["message"]
                .as_str()
                .unwrap_or_else(|| panic!("no message: {line:?}"));
            assert!(!message.is_empty(), "{line:?}");
            assert!(
                !message.starts_with("wspush "),
                "the text prefix leaked: {line:?}"
            );
            v
        })
        .collect()
}

/// A WebSocket upgrade from a page at `origin`.
fn upgrade(origin: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Origin: {origin}\r\n\r\n"
    )
}

#[test]
fn every_stderr_line_is_one_json_object() {
    // The env twin; the flag is checked below.
    let s = Piped::start_env(
        &[
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "debug",
            "--allowed-origins",
            "https://good.example",
        ],
        &[("WSPUSH_LOG_FORMAT", "json")],
    );
    // Piped read stdout's first line as plain `listening on ADDR`.
    let mut ws = connect_registered(s.addr, "alice", "news");
    assert_eq!(push(s.addr, "alice", "news", "hi").status, 200);
    assert_eq!(read_text(&mut ws), "hi");
    assert_eq!(get(s.addr, "/nope").status, 404);
    // A logged value with quotes and a backslash must stay valid JSON.
    let r = raw_request(s.addr, upgrade(r#"https://q"uo\te.example"#).as_bytes());
    assert_eq!(r.status, 403);
    let log = s.finish();
    let lines = json_lines(&log);
    let messages: Vec<&str> = lines.iter().filter_map(|v| v["message"].as_str()).collect();
    assert!(
        messages.iter().any(|m| m.starts_with("listening on 127.0.0.1:")),
        "{messages:?}"
    );
    // The origin is logged as a quoted string: its quote and backslash
    // are escaped twice over, and the line still parses.
    assert!(
        messages.iter().any(|m| m.contains(r#"q\"uo\\te.example"#)),
        "{messages:?}"
    );
    assert!(lines.iter().any(|v| v["level"] == "debug"), "{log}");
}

/// A refusal after suppressed ones carries the count as a field, not in
/// the prose a shipper would have to parse.
#[test]
fn suppressed_refusals_are_counted_in_fields() {
    let s = Piped::start(&[
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--allowed-origins",
        "https://good.example",
    ]);
    for i in 0..30 {
        let r = raw_request(s.addr, upgrade("https://flood.example").as_bytes());
        assert_eq!(r.status, 403, "request {i}");
    }
    // The bucket refills one line per second.
    std::thread::sleep(Duration::from_millis(1200));
    let r = raw_request(s.addr, upgrade("https://late.example").as_bytes());
    assert_eq!(r.status, 403);
    let log = s.finish();
    let lines = json_lines(&log);
    let late: Vec<&Value> = lines
        .iter()
        .filter(|v| v["message"].as_str().is_some_and(|m| m.contains("late.example")))
        .collect();
    assert_eq!(late.len(), 1, "{log}");
    let n = late[0]["fields"]["suppressed"]
        .as_u64()
        .unwrap_or_else(|| panic!("{log}"));
    assert!(n > 0 && n <= 30, "{n}");
    assert!(
        !late[0]["message"].as_str().unwrap().contains("suppressed"),
        "{log}"
    );
    let flood = lines
        .iter()
        .filter(|v| v["message"].as_str().is_some_and(|m| m.contains("flood.example")))
        .count();
    assert_eq!(flood as u64 + n, 30, "every refusal written or counted: {log}");
}

/// Why the server could not start is a JSON line too (the last one a log
/// shipper sees).
#[test]
fn a_fatal_error_is_a_json_line() {
    let (code, err) = run_to_exit(
        &[
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--jwt-secret-file",
            "/nonexistent/wspush-jwt",
        ],
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    let lines = json_lines(&err);
    let last = lines.last().unwrap();
    assert_eq!(last["level"], "error", "{err}");
    let m = last["message"].as_str().unwrap();
    assert!(
        m.starts_with("cannot start: ") && m.contains("/nonexistent/wspush-jwt"),
        "{m}"
    );
}

/// Text stays the default, and an unknown format is refused by name.
#[test]
fn text_is_the_default_and_unknown_formats_are_refused() {
    let (code, err) = run_to_exit(
        &[
            "--listen",
            "127.0.0.1:0",
            "--jwt-secret-file",
            "/nonexistent/wspush-jwt",
        ],
        &[],
    );
    assert_eq!(code, Some(2));
    assert!(err.starts_with("wspush: cannot start: "), "{err}");
    let (code, err) = run_to_exit(&["--listen", "127.0.0.1:0", "--log-format", "xml"], &[]);
    assert_eq!(code, Some(2));
    assert_eq!(
        err,
        "wspush: --log-format: unknown log format \"xml\" (text or json)\n"
    );
    let (code, err) = run_to_exit(&["--listen", "127.0.0.1:0"], &[("WSPUSH_LOG_FORMAT", "yaml")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("WSPUSH_LOG_FORMAT"), "{err}");
}
