//! SPEC §12 (loopback-only push mode): with no push key, a request to a
//! push-guarded endpoint from this very machine is still refused with 403
//! when a browser, a DNS-rebinding page or a local proxy may have sent it
//! on someone else's behalf: it carries `Origin`, `Sec-Fetch-Site` other
//! than `none`, `X-Forwarded-For` or `Forwarded`, or a `Host` that is not
//! `localhost` or a loopback address. Plain curl keeps working; a push key
//! or a library push-auth hook replaces the rule.
use crate::common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

const FROM_WEB_PAGE: &str =
    "push refused: requests from web pages (Origin) are not accepted without a push key";
const FROM_FETCH: &str =
    "push refused: requests from web pages (Sec-Fetch-Site) are not accepted without a push key";
const FORWARDED: &str =
    "push refused: forwarded requests (X-Forwarded-For, Forwarded) are not accepted without a push key";
const NOT_LOCAL_HOST: &str = "push refused: Host must be localhost or a loopback address without a push key";

/// Every guarded endpoint (with the push path configured as `/send`), each
/// with a body that works.
const GUARDED: [(&str, &str, &str); 4] = [
    ("POST", "/send", r#"{"userId":"u","event":"e","message":"leak"}"#),
    ("POST", "/broadcast", r#"{"event":"e","message":"leak"}"#),
    ("POST", "/drop", r#"{"userId":"u"}"#),
    ("GET", "/metrics", ""),
];

/// One request with exactly the head lines given (no Host added).
fn request(
    addr: SocketAddr,
    version: &str,
    method: &str,
    path: &str,
    body: &str,
    lines: &[String],
) -> HttpResponse {
    let mut req = format!("{method} {path} {version}\r\nConnection: close\r\n");
    if method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for l in lines {
        req.push_str(l);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body);
    raw_request(addr, req.as_bytes())
}

fn server() -> TestServer {
    start_with(|b| b.push_path("/send"))
}

#[test]
fn browser_proxy_and_foreign_host_marks_are_refused_on_every_guarded_endpoint() {
    let s = server();
    let port = s.addr.port();
    let mut ws = connect_registered(s.addr, "u", "e");
    let host = format!("Host: 127.0.0.1:{port}");
    let refused: Vec<(Vec<String>, &str)> = vec![
        (
            vec![host.clone(), "Origin: http://localhost:8080".into()],
            FROM_WEB_PAGE,
        ),
        (vec![host.clone(), "Origin: null".into()], FROM_WEB_PAGE),
        (
            vec![host.clone(), "Origin: https://evil.example".into()],
            FROM_WEB_PAGE,
        ),
        (
            vec![host.clone(), "Sec-Fetch-Site: cross-site".into()],
            FROM_FETCH,
        ),
        (vec![host.clone(), "Sec-Fetch-Site: same-site".into()], FROM_FETCH),
        (
            vec![host.clone(), "Sec-Fetch-Site: same-origin".into()],
            FROM_FETCH,
        ),
        (
            vec![host.clone(), "X-Forwarded-For: 203.0.113.7".into()],
            FORWARDED,
        ),
        (vec![host.clone(), "X-Forwarded-For: 127.0.0.1".into()], FORWARDED),
        (vec![host.clone(), "Forwarded: for=203.0.113.7".into()], FORWARDED),
        (vec![format!("Host: evil.example:{port}")], NOT_LOCAL_HOST),
        (vec!["Host: evil.example".into()], NOT_LOCAL_HOST),
        (
            vec![format!("Host: localhost.evil.example:{port}")],
            NOT_LOCAL_HOST,
        ),
        (vec![format!("Host: 127.0.0.1.nip.io:{port}")], NOT_LOCAL_HOST),
        (vec![format!("Host: 10.1.2.3:{port}")], NOT_LOCAL_HOST),
        (vec![host.clone(), "Host: evil.example".into()], NOT_LOCAL_HOST),
        // HTTP/1.1 requires Host.
        (vec![], NOT_LOCAL_HOST),
    ];
    let mut failures = 0;
    for (method, path, body) in GUARDED {
        for (lines, why) in &refused {
            let r = request(s.addr, "HTTP/1.1", method, path, body, lines);
            assert_eq!(
                (r.status, r.body.as_str()),
                (403, *why),
                "{method} {path} {lines:?}"
            );
            failures += 1;
        }
    }
    // Nothing got through: the client is still connected and saw nothing.
    expect_silence(&mut ws, Duration::from_millis(200));
    assert_eq!(metric(s.addr, "wspush_connections"), 1);
    // Each refusal counted as an auth failure (plus none for the metric reads).
    assert_eq!(metric(s.addr, "wspush_auth_failures_total"), failures);
    still_serves_on(s.addr, &mut ws);
}

/// A push to "u" on "e" as a local script sends it arrives.
#[track_caller]
fn still_serves_on(addr: SocketAddr, ws: &mut Ws) {
    let host = format!("Host: localhost:{}", addr.port());
    let r = request(
        addr,
        "HTTP/1.1",
        "POST",
        "/send",
        r#"{"userId":"u","event":"e","message":"ok"}"#,
        &[host],
    );
    assert_eq!((r.status, r.body.as_str()), (200, "message sent to 1 clients"));
    assert_eq!(read_text(ws), "ok");
}

#[test]
fn what_local_scripts_send_is_accepted() {
    let s = server();
    let port = s.addr.port();
    let accepted: Vec<Vec<String>> = vec![
        vec!["Host: localhost".into()],
        vec![format!("Host: localhost:{port}")],
        vec![format!("Host: LOCALHOST:{port}")],
        vec!["Host: 127.0.0.1".into()],
        vec![format!("Host: 127.0.0.1:{port}")],
        vec![format!("Host: 127.8.9.10:{port}")],
        vec!["Host: [::1]".into()],
        vec![format!("Host: [::1]:{port}")],
        // A browser's own address bar navigation says `none`.
        vec![format!("Host: localhost:{port}"), "Sec-Fetch-Site: none".into()],
        vec![
            format!("Host: localhost:{port}"),
            "User-Agent: curl/8.5.0".into(),
            "Accept: */*".into(),
        ],
    ];
    for (method, path, body) in GUARDED {
        for lines in &accepted {
            let r = request(s.addr, "HTTP/1.1", method, path, body, lines);
            assert_eq!(r.status, 200, "{method} {path} {lines:?}: {r:?}");
        }
        // HTTP/1.0 has no Host header: allowed.
        let r = request(s.addr, "HTTP/1.0", method, path, body, &[]);
        assert_eq!(r.status, 200, "{method} {path} HTTP/1.0 without Host: {r:?}");
    }
    // /healthz is not guarded at all.
    let r = request(
        s.addr,
        "HTTP/1.1",
        "GET",
        "/healthz",
        "",
        &["Host: evil.example".into(), "Origin: https://evil.example".into()],
    );
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
}

#[test]
fn refusals_answer_json_when_asked() {
    let s = server();
    let r = request(
        s.addr,
        "HTTP/1.1",
        "POST",
        "/broadcast",
        GUARDED[1].2,
        &[
            "Host: localhost".into(),
            "Origin: https://evil.example".into(),
            "Accept: application/json".into(),
        ],
    );
    assert_eq!(r.status, 403);
    let v: Value = serde_json::from_str(&r.body).expect("JSON");
    assert_eq!(v, json!({"error": FROM_WEB_PAGE}));
}

#[test]
fn a_push_key_or_a_hook_replaces_the_rule() {
    let marks: Vec<String> = vec![
        "Host: evil.example".into(),
        "Origin: https://evil.example".into(),
        "Sec-Fetch-Site: cross-site".into(),
        "X-Forwarded-For: 203.0.113.7".into(),
        "Forwarded: for=203.0.113.7".into(),
    ];
    let keyed = start_with(|b| {
        b.push_path("/send")
            .configure(|c| c.push_key = Some(wspush::Secret::new("k-7")))
    });
    let mut with_key = marks.clone();
    with_key.push("Authorization: Bearer k-7".into());
    let hooked = start_with(|b| b.push_path("/send").push_auth(|_| true));
    for (method, path, body) in GUARDED {
        let r = request(keyed.addr, "HTTP/1.1", method, path, body, &with_key);
        assert_eq!(r.status, 200, "key: {method} {path}: {r:?}");
        let r = request(hooked.addr, "HTTP/1.1", method, path, body, &marks);
        assert_eq!(r.status, 200, "hook: {method} {path}: {r:?}");
    }
}

/// `curl localhost:PORT/push` and `curl 127.0.0.1:PORT/push` work as
/// before; curl with an `Origin` (what a page's request looks like) not.
#[test]
fn curl_still_pushes() {
    let s = start();
    let mut ws = connect_registered(s.addr, "u", "e");
    let port = s.addr.port();
    let curl = |url: String, extra: &[&str]| -> (String, String) {
        let out = command("curl")
            .args(["-sS", "--max-time", "5", "-w", "\n%{http_code}", "-d"])
            .arg(r#"{"userId":"u","event":"e","message":"via curl"}"#)
            .args(extra)
            .arg(&url)
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
        (code.to_string(), body.to_string())
    };
    for url in [format!("localhost:{port}/push"), format!("127.0.0.1:{port}/push")] {
        let (code, body) = curl(url.clone(), &[]);
        assert_eq!(
            (code.as_str(), body.as_str()),
            ("200", "message sent to 1 clients"),
            "{url}"
        );
        assert_eq!(read_text(&mut ws), "via curl");
    }
    let (code, body) = curl(
        format!("127.0.0.1:{port}/push"),
        &["-H", "Origin: http://localhost:3000"],
    );
    assert_eq!((code.as_str(), body.as_str()), ("403", FROM_WEB_PAGE));
    let (code, body) = curl(
        format!("127.0.0.1:{port}/push"),
        &["-H", "Host: attacker.example"],
    );
    assert_eq!((code.as_str(), body.as_str()), ("403", NOT_LOCAL_HOST));
    expect_silence(&mut ws, Duration::from_millis(100));
}
