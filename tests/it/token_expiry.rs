//! A live connection whose JWT `exp` passes is closed with 4401 `token
//! expired` (SPEC §9), on either transport: driven by the session's own
//! deadline, not a scan.

use crate::common::*;
use crate::sse::sse_open;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SECRET: &str = "expiry-test-secret-of-32-bytes!!";

fn server() -> TestServer {
    start_with(|b| b.configure(|c| c.jwt_secret = Some(wspush::Secret::new(SECRET))))
}

/// A token for `sub` that expires in `secs` seconds.
fn token(sub: &str, secs: i64) -> String {
    wspush::sign_jwt(sub, SECRET.as_bytes(), wspush::unix_now(), secs)
}

#[test]
fn a_websocket_is_closed_when_its_token_expires() {
    let s = server();
    let mut ws = ws_connect(s.addr, "/ws");
    let t0 = Instant::now();
    register(&mut ws, &token("alice", 2), "news");
    assert_eq!(
        push(s.addr, "alice", "news", "before").body,
        "message sent to 1 clients"
    );
    assert_eq!(read_text(&mut ws), "before");
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(expect_close_frame(&mut ws), (4401, "token expired".to_string()));
    // exp has one-second resolution: between 1 and 2 s after minting.
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    assert_eq!(
        push(s.addr, "alice", "news", "after").body,
        "message sent to 0 clients"
    );
}

#[test]
fn an_sse_stream_ends_with_a_close_event_when_its_token_expires() {
    let s = server();
    let q = format!("event=news&token={}", token("alice", 2));
    let mut stream = sse_open(s.addr, &q, "").expect("200");
    let e = stream.next_event();
    assert_eq!(e.event, "close");
    let v: Value = serde_json::from_str(&e.data).unwrap();
    assert_eq!(v, json!({"code": 4401, "reason": "token expired"}));
    stream.expect_end();
}
