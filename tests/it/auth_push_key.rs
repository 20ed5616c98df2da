//! SPEC §3, push auth with a key (`--push-key`, `--push-key-file`):
//! `/push`, `/broadcast`, `/drop` and `/metrics` need
//! `Authorization: Bearer <key>` (401 with `WWW-Authenticate: Bearer`
//! otherwise), `/healthz` needs nothing, and the key never reaches `--help`,
//! an error message or the log.
use crate::common::*;
use data_encoding::BASE64;
use serde_json::{json, Value};
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const KEY: &str = "pk-3f9a7c21-push-key";

/// The guarded endpoints, each with a valid body.
const GUARDED: [(&str, &str, &str); 4] = [
    (
        "POST",
        "/push",
        r#"{"userId":"nobody","event":"e","message":"m"}"#,
    ),
    (
        "POST",
        "/broadcast",
        r#"{"event":"nobody-listens","message":"m"}"#,
    ),
    ("POST", "/drop", r#"{"userId":"nobody"}"#),
    ("GET", "/metrics", ""),
];

/// One request on a fresh connection with extra headers.
fn request(addr: SocketAddr, method: &str, path: &str, body: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    raw_request(addr, req.as_bytes())
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// The 401 bodies (SPEC §4: they say whether the key was missing,
/// malformed or wrong, and never show it).
const MISSING: &str = "push key missing: send Authorization: Bearer <key>";
const MALFORMED: &str = "push key malformed: Authorization must be \"Bearer <key>\"";
const WRONG: &str = "push key wrong: the Bearer key does not match the server's";

#[track_caller]
fn assert_401(r: &HttpResponse, what: &str, body: &str) {
    assert_eq!(r.status, 401, "{what}: {r:?}");
    let challenge = r
        .header("WWW-Authenticate")
        .unwrap_or_else(|| panic!("{what}: no challenge {r:?}"));
    assert!(challenge.contains("Bearer"), "{what}: {challenge:?}");
    assert_eq!(r.body, body, "{what}");
}

/// Every way of not presenting the key gets 401 on every guarded endpoint;
/// the key itself gets 200.
fn check_guard(addr: SocketAddr, key: &str) {
    let basic_pair = format!("Basic {}", BASE64.encode(format!("push:{key}").as_bytes()));
    let basic_key = format!("Basic {}", BASE64.encode(key.as_bytes()));
    let prefix = bearer(&key[..key.len() - 1]);
    let longer = bearer(&format!("{key}x"));
    let other_case = bearer(&key.to_uppercase());
    let token_scheme = format!("Token {key}");
    let bare: &str = key;
    /// What is wrong, the headers sent, the 401 body expected.
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let wrong: &[Case] = &[
        ("no Authorization", vec![], MISSING),
        ("wrong key", vec![("Authorization", "Bearer wrong")], WRONG),
        ("empty bearer", vec![("Authorization", "Bearer")], MALFORMED),
        (
            "empty bearer with space",
            vec![("Authorization", "Bearer ")],
            MALFORMED,
        ),
        ("key prefix", vec![("Authorization", &prefix)], WRONG),
        ("key plus a byte", vec![("Authorization", &longer)], WRONG),
        ("key in another case", vec![("Authorization", &other_case)], WRONG),
        ("Basic user:key", vec![("Authorization", &basic_pair)], MALFORMED),
        ("Basic key", vec![("Authorization", &basic_key)], MALFORMED),
        ("Token scheme", vec![("Authorization", &token_scheme)], MALFORMED),
        ("bare key", vec![("Authorization", bare)], MALFORMED),
        (
            "key in another header",
            vec![("X-Push-Key", bare), ("X-Api-Key", bare)],
            MISSING,
        ),
        ("key as a cookie", vec![("Cookie", bare)], MISSING),
    ];
    for (method, path, body) in GUARDED {
        for (what, headers, why) in wrong {
            let r = request(addr, method, path, body, headers);
            assert_401(&r, &format!("{method} {path}, {what}"), why);
            assert!(!r.body.contains(key), "{what}: the body shows the key");
        }
        // The key in the query string does not count either.
        let r = request(
            addr,
            method,
            &format!("{path}?access_token={key}&key={key}"),
            body,
            &[],
        );
        assert_401(&r, &format!("{method} {path}, key in the query"), MISSING);

        let ok = request(addr, method, path, body, &[("Authorization", &bearer(key))]);
        assert_eq!(ok.status, 200, "{method} {path} with the key: {ok:?}");
        // The auth scheme is case-insensitive (RFC 7235 §2.1).
        let ok = request(
            addr,
            method,
            path,
            body,
            &[("Authorization", &format!("bearer {key}"))],
        );
        assert_eq!(ok.status, 200, "{method} {path} with lower-case bearer: {ok:?}");
    }
    // /healthz needs nothing.
    let h = get(addr, "/healthz");
    assert_eq!((h.status, h.body.as_str()), (200, "ok"));
}

#[test]
fn push_key_guards_push_broadcast_drop_and_metrics() {
    let s = spawn_bin(&["--push-key", KEY]);
    check_guard(s.addr, KEY);
}

#[test]
fn push_key_file_works_the_same() {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "wspush-it-pushkey-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, "file-push-key\n").unwrap();
    let s = spawn_bin(&["--push-key-file", path.to_str().unwrap()]);
    std::fs::remove_file(&path).unwrap();
    check_guard(s.addr, "file-push-key");
}

#[test]
fn library_push_key_works_the_same() {
    let s = start_with(|b| b.configure(|c| c.push_key = Some(wspush::Secret::new(KEY))));
    check_guard(s.addr, KEY);
}

#[test]
fn json_errors_with_accept_json() {
    let s = spawn_bin(&["--push-key", KEY]);
    for (method, path, body) in GUARDED {
        let r = request(
            s.addr,
            method,
            path,
            body,
            &[("Accept", "application/json"), ("Authorization", "Bearer nope")],
        );
        assert_eq!(r.status, 401, "{path}");
        assert!(r.header("WWW-Authenticate").is_some_and(|c| c.contains("Bearer")));
        assert!(
            r.header("Content-Type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{r:?}"
        );
        let v: Value = serde_json::from_str(&r.body).expect("JSON error body");
        assert_eq!(v, json!({"error": WRONG}), "{path}");
    }
    let r = request(
        s.addr,
        "POST",
        "/push",
        GUARDED[0].2,
        &[("Accept", "application/json"), ("Authorization", &bearer(KEY))],
    );
    assert_eq!((r.status, r.body.as_str()), (200, r#"{"sent":0}"#));
}

#[test]
fn refused_requests_have_no_effect_and_are_counted() {
    let s = spawn_bin(&["--push-key", KEY]);
    let auth = bearer(KEY);
    let ok_hdr = [("Authorization", auth.as_str())];
    let bad_hdr = [("Authorization", "Bearer guess")];
    let mut ws = connect_registered(s.addr, "u", "e");

    let body = r#"{"userId":"u","event":"e","message":"forged"}"#;
    assert_eq!(request(s.addr, "POST", "/push", body, &bad_hdr).status, 401);
    let body = r#"{"event":"e","message":"forged"}"#;
    assert_eq!(request(s.addr, "POST", "/broadcast", body, &[]).status, 401);
    assert_eq!(
        request(s.addr, "POST", "/drop", r#"{"userId":"u"}"#, &bad_hdr).status,
        401
    );
    assert_eq!(request(s.addr, "GET", "/metrics", "", &[]).status, 401);
    expect_silence(&mut ws, Duration::from_millis(200));

    // Still connected, still subscribed: the authorized push arrives.
    let body = r#"{"userId":"u","event":"e","message":"real"}"#;
    let r = request(s.addr, "POST", "/push", body, &ok_hdr);
    assert_eq!((r.status, r.body.as_str()), (200, "message sent to 1 clients"));
    assert_eq!(read_text(&mut ws), "real");

    let m = request(s.addr, "GET", "/metrics", "", &ok_hdr);
    assert_eq!(m.status, 200);
    let failures = m
        .body
        .lines()
        .find_map(|l| l.strip_prefix("wspush_auth_failures_total "))
        .expect("wspush_auth_failures_total");
    assert_eq!(failures.trim(), "4", "{}", m.body);
}

#[test]
fn credentials_can_follow_a_401_on_the_same_connection() {
    let s = spawn_bin(&["--push-key", KEY]);
    let (mut w, mut r) = raw_conn(s.addr);
    let body = r#"{"event":"e","message":"m"}"#;
    let head = format!(
        "POST /broadcast HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n",
        body.len()
    );
    w.write_all(format!("{head}\r\n{body}").as_bytes()).unwrap();
    assert_401(&read_response(&mut r), "first try", MISSING);
    w.write_all(format!("{head}Authorization: Bearer {KEY}\r\n\r\n{body}").as_bytes())
        .unwrap();
    let resp = read_response(&mut r);
    assert_eq!(
        (resp.status, resp.body.as_str()),
        (200, "message sent to 0 clients")
    );
}

/// The binary with stdout and stderr piped; stderr collected by a thread.
/// Shared with the other `auth_*` tests that read the log.
pub(crate) struct Piped {
    pub(crate) addr: SocketAddr,
    child: Child,
    stderr: Option<JoinHandle<String>>,
}

impl Piped {
    pub(crate) fn start(args: &[&str]) -> Piped {
        Piped::start_env(args, &[])
    }

    pub(crate) fn start_env(args: &[&str], envs: &[(&str, &str)]) -> Piped {
        let (mut child, stderr) = spawn_collecting_stderr(
            command(env!("CARGO_BIN_EXE_wspush"))
                .args(args)
                .envs(envs.iter().copied()),
        );
        let addr: SocketAddr = listening_addr(&mut child);
        Piped {
            addr,
            child,
            stderr: Some(stderr),
        }
    }

    /// Where to connect: the loopback address when bound to 0.0.0.0.
    pub(crate) fn loopback(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.addr.port()))
    }

    /// SIGTERM (so shutdown logging happens too), wait, and all of stderr.
    pub(crate) fn finish(self) -> String {
        self.finish_status().1
    }

    /// As `finish`, with the exit status.
    pub(crate) fn finish_status(mut self) -> (std::process::ExitStatus, String) {
        let _ = command("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + WAIT;
        while self.child.try_wait().expect("try_wait").is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let status = self.child.wait().expect("wait");
        (status, self.stderr.take().unwrap().join().expect("stderr reader"))
    }
}

impl Drop for Piped {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn secrets_never_reach_help_errors_or_logs() {
    const JWT: &str = "js-77d1e0aa-jwt-secret";
    const GUESS: &str = "guess-5be3c0-wrong-key";
    let bin = env!("CARGO_BIN_EXE_wspush");
    type Run<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>);
    let runs: Vec<Run> = vec![
        (
            vec!["--help"],
            vec![("WSPUSH_PUSH_KEY", KEY), ("WSPUSH_JWT_SECRET", JWT)],
        ),
        (vec!["--push-key", KEY, "--jwt-secret", JWT, "--help"], vec![]),
        (vec!["--push-key", KEY, "--max-events", "lots"], vec![]),
        (
            vec![
                "--push-key",
                KEY,
                "--jwt-secret",
                JWT,
                "--auth-tokens",
                "/nonexistent",
            ],
            vec![],
        ),
        (
            vec!["--bogus"],
            vec![("WSPUSH_PUSH_KEY", KEY), ("WSPUSH_JWT_SECRET", JWT)],
        ),
        (vec!["--push-key", KEY, "--listen", "not an address"], vec![]),
        (vec!["--push-key", KEY, "--push-key"], vec![]),
    ];
    for (args, envs) in runs {
        let mut cmd = command(bin);
        cmd.args(&args).stdin(Stdio::null());
        for (k, v) in &envs {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run wspush");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.is_empty(), "{args:?}: no output at all");
        for secret in [KEY, JWT] {
            assert!(!all.contains(secret), "{args:?} {envs:?} printed a secret: {all}");
        }
    }

    // A running server at debug level, driven through everything that
    // involves a credential, then stopped: its log holds none of them.
    let s = Piped::start(&[
        "--listen",
        "127.0.0.1:0",
        "--push-key",
        KEY,
        "--jwt-secret",
        JWT,
        "--log-level",
        "debug",
    ]);
    let addr = s.loopback();
    let token = wspush::sign_jwt("alice", JWT.as_bytes(), wspush::unix_now(), 600);
    let mut ws = connect_registered(addr, &token, "e");
    let mut bad = ws_connect(addr, "/ws");
    send_text(&mut bad, &json!({"token": GUESS, "event": "e"}).to_string());
    assert_eq!(expect_close(&mut bad), 4401);
    let body = r#"{"userId":"alice","event":"e","message":"m"}"#;
    let guess = bearer(GUESS);
    assert_eq!(
        request(addr, "POST", "/push", body, &[("Authorization", &guess)]).status,
        401
    );
    let auth = bearer(KEY);
    assert_eq!(
        request(addr, "POST", "/push", body, &[("Authorization", &auth)]).status,
        200
    );
    assert_eq!(read_text(&mut ws), "m");
    // A malformed request carrying the key: refused (400) without echoing it.
    let garbage = format!("POST /push HTTP/1.1\r\nAuthorization: {auth}\r\nbroken header\r\n\r\n");
    let r = raw_request(addr, garbage.as_bytes());
    assert_eq!(r.status, 400);
    assert!(!r.body.contains(KEY));
    drop((ws, bad));
    let stderr = s.finish();
    assert!(!stderr.trim().is_empty(), "debug level logged nothing?");
    for secret in [KEY, JWT, GUESS, token.as_str()] {
        assert!(!stderr.contains(secret), "the log holds {secret:?}:\n{stderr}");
    }
}

#[test]
fn no_key_on_a_public_address_warns() {
    let warned = |stderr: &str| stderr.to_ascii_lowercase().contains("push key");
    let s = Piped::start(&["--listen", "0.0.0.0:0"]);
    // Loopback still pushes without a key.
    assert_eq!(
        post(s.loopback(), "/broadcast", r#"{"event":"e","message":"m"}"#).status,
        200
    );
    let stderr = s.finish();
    assert!(warned(&stderr), "no warning: {stderr:?}");
    assert!(
        stderr.contains("--push-key"),
        "the warning should name --push-key: {stderr:?}"
    );

    for args in [
        ["--listen", "0.0.0.0:0", "--push-key", KEY].as_slice(),
        &["--listen", "127.0.0.1:0"],
    ] {
        let stderr = Piped::start(args).finish();
        assert!(!warned(&stderr), "{args:?} warned: {stderr:?}");
    }
}
