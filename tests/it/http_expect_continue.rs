//! SPEC §2: `Expect: 100-continue` is answered with `100 Continue` (curl
//! waits up to a second without it); a request refused on its head gets
//! its final status at once instead.
use crate::common::*;

use std::io::{BufRead, Write};
use std::net::SocketAddr;

use std::time::{Duration, Instant};

/// SPEC: clients wait up to a second for the interim response.
const CONTINUE_WITHIN: Duration = Duration::from_secs(1);

fn push_body(message: &str) -> String {
    serde_json::json!({"userId": "aaa", "event": "topic1", "message": message}).to_string()
}

#[track_caller]
fn still_serves(addr: SocketAddr, ws: &mut Ws, msg: &str) {
    let r = push(addr, "aaa", "topic1", msg);
    assert_eq!((r.status, r.body.as_str()), (200, "message sent to 1 clients"));
    assert_eq!(read_text(ws), msg);
}

#[test]
fn raw_client_gets_100_continue_before_sending_the_body() {
    let server = start();
    let mut ws = connect_registered(server.addr, "aaa", "topic1");
    let body = push_body("after continue");
    let (mut s, mut r) = raw_conn(server.addr);
    s.set_nodelay(true).unwrap();
    s.write_all(
        format!(
            "POST /push HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            server.addr,
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let sent = Instant::now();
    s.set_read_timeout(Some(CONTINUE_WITHIN)).unwrap();
    let interim = read_response(&mut r);
    let waited = sent.elapsed();
    assert_eq!(interim.status, 100, "{interim:?}");
    assert!(waited < CONTINUE_WITHIN, "100 Continue took {waited:?}");
    s.set_read_timeout(Some(WAIT)).unwrap();

    s.write_all(body.as_bytes()).unwrap();
    let resp = read_response(&mut r);
    assert_eq!(
        (resp.status, resp.body.as_str()),
        (200, "message sent to 1 clients")
    );
    assert_eq!(read_text(&mut ws), "after continue");

    // The connection stays usable, and a second Expect on it gets its own 100.
    let body = push_body("second");
    s.write_all(
        format!(
            "POST /push HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            server.addr,
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    s.set_read_timeout(Some(CONTINUE_WITHIN)).unwrap();
    assert_eq!(read_response(&mut r).status, 100);
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let resp = read_response(&mut r);
    assert_eq!(
        (resp.status, resp.body.as_str()),
        (200, "message sent to 1 clients")
    );
    assert_eq!(read_text(&mut ws), "second");
}

#[test]
fn chunked_body_with_expect_gets_100_continue() {
    let server = start();
    let mut ws = connect_registered(server.addr, "aaa", "topic1");
    let body = push_body("chunked after continue");
    let (mut s, mut r) = raw_conn(server.addr);
    s.write_all(
        format!(
            "POST /push HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
            server.addr
        )
        .as_bytes(),
    )
    .unwrap();
    s.set_read_timeout(Some(CONTINUE_WITHIN)).unwrap();
    assert_eq!(read_response(&mut r).status, 100);
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).as_bytes())
        .unwrap();
    let resp = read_response(&mut r);
    assert_eq!(
        (resp.status, resp.body.as_str()),
        (200, "message sent to 1 clients")
    );
    assert_eq!(read_text(&mut ws), "chunked after continue");
}

/// Sends a head with `Expect: 100-continue` and no body; the first thing
/// back must be the final response, not `100 Continue`.
#[track_caller]
fn refused_without_continue(addr: SocketAddr, head: &str) -> HttpResponse {
    let (mut s, mut r) = raw_conn(addr);
    s.write_all(head.as_bytes()).unwrap();
    let resp = read_response(&mut r);
    assert_ne!(
        resp.status, 100,
        "got 100 Continue for a request that will be refused"
    );
    resp
}

#[test]
fn expect_to_a_refused_request_gets_the_final_status_directly() {
    let server = start_with(|b| b.configure(|c| c.max_body_bytes = 100));
    let mut ws = connect_registered(server.addr, "aaa", "topic1");
    let a = server.addr;

    let resp = refused_without_continue(
        a,
        &format!("POST /nowhere HTTP/1.1\r\nHost: {a}\r\nContent-Length: 50\r\nExpect: 100-continue\r\n\r\n"),
    );
    assert_eq!(resp.status, 404, "{resp:?}");

    let resp = refused_without_continue(
        a,
        &format!("POST /healthz HTTP/1.1\r\nHost: {a}\r\nContent-Length: 50\r\nExpect: 100-continue\r\n\r\n"),
    );
    assert_eq!(resp.status, 405, "{resp:?}");
    assert!(
        resp.header("Allow").is_some_and(|v| v.contains("GET")),
        "{resp:?}"
    );

    let resp = refused_without_continue(
        a,
        &format!("POST /push HTTP/1.1\r\nHost: {a}\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n"),
    );
    assert_eq!(resp.status, 413, "{resp:?}");

    still_serves(a, &mut ws, "after refused expects");
}

#[test]
fn curl_with_a_large_body_does_not_wait_a_second() {
    let server = start();
    let mut ws = connect_registered(server.addr, "aaa", "topic1");
    let message = "z".repeat(3000);
    let body = push_body(&message);
    assert!(body.len() > 1024);
    let path = std::env::temp_dir().join(format!(
        "wspush-expect-{}-{}.json",
        std::process::id(),
        server.addr.port()
    ));
    std::fs::write(&path, &body).unwrap();

    let started = Instant::now();
    let out = command("curl")
        .args(["-s", "--noproxy", "*", "--max-time", "5", "-v"])
        .args(["-H", "Expect: 100-continue", "--data-binary"])
        .arg(format!("@{}", path.display()))
        .arg(format!("http://{}/push", server.addr))
        .output()
        .expect("run curl");
    let took = started.elapsed();
    let _ = std::fs::remove_file(&path);

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "curl failed: {stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "message sent to 1 clients");
    // curl really asked, and really got the interim response.
    assert!(stderr.contains("Expect: 100-continue"), "{stderr}");
    assert!(
        stderr.lines().any(|l| l.starts_with("< HTTP/1.1 100")),
        "no 100 Continue seen by curl: {stderr}"
    );
    assert!(took < Duration::from_millis(900), "curl took {took:?}");
    assert_eq!(read_text(&mut ws), message);
}

#[test]
fn interim_response_is_exactly_a_status_line_and_blank_line() {
    let server = start();
    let (mut s, mut r) = raw_conn(server.addr);
    let body = r#"{"userId":"nobody","event":"topic1","message":"m"}"#;
    s.write_all(
        format!(
            "POST /push HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            server.addr,
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    s.set_read_timeout(Some(CONTINUE_WITHIN)).unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 100"), "{line:?}");
    assert!(line.ends_with("\r\n"), "{line:?}");
    // Headers of the interim response (if any) end with an empty line; no
    // Content-Length, since a 1xx has no body.
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        if h == "\r\n" {
            break;
        }
        assert!(!h.to_ascii_lowercase().starts_with("content-length"), "{h:?}");
    }
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let resp = read_response(&mut r);
    assert_eq!(
        (resp.status, resp.body.as_str()),
        (200, "message sent to 0 clients")
    );
}
