//! SPEC §3, JWT connection auth (`--jwt-secret`, `--jwt-secret-file`) and
//! `wspush token`, through the real binary. Tokens are built here with
//! RustCrypto's HMAC (not the server's code), plus one vector computed with
//! Python's hmac/hashlib; every forged or stale token must get 4401.
use crate::common::*;
use data_encoding::BASE64URL_NOPAD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::{Sha256, Sha512};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};

const SECRET: &str = "it-jwt-secret";
/// The reasons a 4401 names for a forged and for an unreadable token.
const SIG: &str = "bad token signature";
const BAD: &str = "malformed token";
const HS256: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

fn b64(bytes: &[u8]) -> String {
    BASE64URL_NOPAD.encode(bytes)
}

fn hs256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn hs512(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha512>::new_from_slice(key).expect("any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// `header.claims.HMAC-SHA256(secret)`, all base64url without padding.
fn jwt(header: &str, claims: &str, secret: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let sig = b64(&hs256(secret.as_bytes(), input.as_bytes()));
    format!("{input}.{sig}")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A good token for `sub`, valid for ten minutes.
fn good(sub: &str) -> String {
    jwt(
        HS256,
        &json!({"sub": sub, "iat": now(), "exp": now() + 600}).to_string(),
        SECRET,
    )
}

fn server() -> BinServer {
    spawn_bin(&["--jwt-secret", SECRET])
}

/// `token` registers: the push to `user` arrives on that connection, and
/// the token itself is not a userId.
#[track_caller]
fn assert_accepted(addr: std::net::SocketAddr, token: &str, user: &str) {
    // A fresh event each time, so an earlier connection of the same user
    // that the server has not yet seen close cannot change the count.
    static EVENTS: AtomicUsize = AtomicUsize::new(0);
    let event = format!("news-{}", EVENTS.fetch_add(1, Ordering::Relaxed));
    let mut ws = connect_registered(addr, token, &event);
    let r = push(addr, user, &event, "for you");
    assert_eq!((r.status, r.body.as_str()), (200, "message sent to 1 clients"));
    assert_eq!(read_text(&mut ws), "for you");
    let r = push(addr, token, &event, "to the token");
    assert_eq!(r.body, "message sent to 0 clients", "the token is not the userId");
}

/// `token` is refused saying `why`: with an id the error reply (code 4401)
/// and the connection stays open, then without an id close 4401 with `why`
/// as the reason (SPEC §4: refusals say why).
#[track_caller]
fn assert_rejected(addr: std::net::SocketAddr, token: &str, what: &str, why: &str) {
    let mut ws = ws_connect(addr, "/ws");
    send_text(
        &mut ws,
        &json!({"token": token, "event": "news", "id": 9}).to_string(),
    );
    let v: Value = serde_json::from_str(&read_text(&mut ws)).expect("reply is JSON");
    assert_eq!(v["id"], 9, "{what}: {v}");
    assert_eq!(v["ok"], false, "{what}: {v}");
    assert_eq!(v["code"], 4401, "{what}: {v}");
    assert_eq!(v["error"], why, "{what}: {v}");
    send_text(&mut ws, &json!({"token": token, "event": "news"}).to_string());
    assert_eq!(expect_close_frame(&mut ws), (4401, why.to_string()), "{what}");
}

/// `wspush token ARGS` with no secret in the environment.
fn wspush_token(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = command(env!("CARGO_BIN_EXE_wspush"));
    cmd.arg("token")
        .args(args)
        .env_remove("WSPUSH_JWT_SECRET")
        .env_remove("WSPUSH_JWT_SECRET_FILE");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run wspush token")
}

#[test]
fn valid_token_registers_as_its_sub() {
    let s = server();
    assert_accepted(s.addr, &good("alice"), "alice");
    // No exp at all is accepted too (exp is optional in RFC 7519).
    assert_accepted(s.addr, &jwt(HS256, r#"{"sub":"bob"}"#, SECRET), "bob");
    // nbf has a 30 s leeway for a minting clock that runs ahead.
    let edge = json!({"sub": "carol", "exp": now() + 60, "nbf": now() + 5}).to_string();
    assert_accepted(s.addr, &jwt(HS256, &edge, SECRET), "carol");
}

/// `exp` has no leeway: a token that expired a few seconds ago is refused
/// at once, as a connection holding it would have been closed at `exp`.
#[test]
fn a_token_just_past_exp_is_refused() {
    let s = server();
    let claims = json!({"sub": "alice", "exp": now() - 2}).to_string();
    assert_rejected(
        s.addr,
        &jwt(HS256, &claims, SECRET),
        "exp 2 s ago",
        "token expired",
    );
}

#[test]
fn expired_token_is_refused_with_4401() {
    let s = server();
    let claims = json!({"sub": "alice", "iat": now() - 7200, "exp": now() - 120}).to_string();
    assert_rejected(
        s.addr,
        &jwt(HS256, &claims, SECRET),
        "exp 120 s ago",
        "token expired",
    );
    // A rejected register leaves the connection unbound, so a good token
    // on the same connection still works afterwards.
    let mut ws = ws_connect(s.addr, "/ws");
    let stale = jwt(HS256, &claims, SECRET);
    send_text(
        &mut ws,
        &json!({"token": stale, "event": "news", "id": 1}).to_string(),
    );
    let v: Value = serde_json::from_str(&read_text(&mut ws)).unwrap();
    assert_eq!(
        v,
        json!({"id": 1, "ok": false, "code": 4401, "error": "token expired"})
    );
    register(&mut ws, &good("alice"), "news");
    let r = push(s.addr, "alice", "news", "after refusal");
    assert_eq!(r.body, "message sent to 1 clients");
    assert_eq!(read_text(&mut ws), "after refusal");
}

#[test]
fn not_yet_valid_token_is_refused() {
    let s = server();
    let claims = json!({"sub": "alice", "nbf": now() + 600, "exp": now() + 1200}).to_string();
    assert_rejected(
        s.addr,
        &jwt(HS256, &claims, SECRET),
        "nbf in 10 min",
        "token not valid yet",
    );
}

#[test]
fn bad_signatures_are_refused() {
    let s = server();
    let claims = json!({"sub": "alice", "exp": now() + 600}).to_string();
    assert_rejected(s.addr, &jwt(HS256, &claims, "other-secret"), "wrong secret", SIG);
    assert_rejected(s.addr, &jwt(HS256, &claims, ""), "empty secret", SIG);
    // Payload swapped under a genuine signature (privilege escalation).
    let genuine = good("alice");
    let parts: Vec<&str> = genuine.split('.').collect();
    let admin = b64(json!({"sub": "admin", "exp": now() + 600}).to_string().as_bytes());
    assert_rejected(
        s.addr,
        &format!("{}.{admin}.{}", parts[0], parts[2]),
        "swapped payload",
        SIG,
    );
    // One bit of the signature flipped.
    let mut sig = BASE64URL_NOPAD.decode(parts[2].as_bytes()).unwrap();
    sig[0] ^= 1;
    assert_rejected(
        s.addr,
        &format!("{}.{}.{}", parts[0], parts[1], b64(&sig)),
        "flipped signature bit",
        SIG,
    );
    // Truncated signature and no signature at all.
    let short = b64(&BASE64URL_NOPAD.decode(parts[2].as_bytes()).unwrap()[..16]);
    assert_rejected(
        s.addr,
        &format!("{}.{}.{short}", parts[0], parts[1]),
        "truncated sig",
        SIG,
    );
    assert_rejected(
        s.addr,
        &format!("{}.{}.", parts[0], parts[1]),
        "empty signature",
        SIG,
    );
    // The genuine token still works: none of the above broke the server.
    assert_accepted(s.addr, &genuine, "alice");
}

#[test]
fn algorithm_confusion_is_refused() {
    let s = server();
    let claims = json!({"sub": "alice", "exp": now() + 600}).to_string();
    let p = b64(claims.as_bytes());
    // alg none, unsigned, empty signature (the classic bypass).
    for header in [
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"alg":"None"}"#,
        r#"{"alg":"NONE"}"#,
    ] {
        assert_rejected(s.addr, &format!("{}.{p}.", b64(header.as_bytes())), header, BAD);
    }
    // alg none, but with a valid HS256 MAC appended anyway.
    assert_rejected(
        s.addr,
        &jwt(r#"{"alg":"none"}"#, &claims, SECRET),
        "none + HS256 MAC",
        BAD,
    );
    // HS512 correctly signed with the shared secret: not HS256, refused.
    let h512 = b64(br#"{"alg":"HS512","typ":"JWT"}"#);
    let input = format!("{h512}.{p}");
    let sig = b64(&hs512(SECRET.as_bytes(), input.as_bytes()));
    assert_rejected(s.addr, &format!("{input}.{sig}"), "HS512", BAD);
    // RS256 / ES256 headers with an HMAC made from the secret (key confusion).
    for header in [
        r#"{"alg":"RS256","typ":"JWT"}"#,
        r#"{"alg":"ES256"}"#,
        r#"{"alg":"hs256"}"#,
        r#"{"typ":"JWT"}"#,
        r#"{"alg":["HS256"]}"#,
    ] {
        assert_rejected(s.addr, &jwt(header, &claims, SECRET), header, BAD);
    }
}

#[test]
fn missing_or_unusable_sub_is_refused() {
    let s = server();
    let exp = now() + 600;
    for claims in [
        json!({"exp": exp}),
        json!({"sub": "", "exp": exp}),
        json!({"sub": 42, "exp": exp}),
        json!({"sub": null, "exp": exp}),
        json!({"user": "alice", "exp": exp}),
    ] {
        let c = claims.to_string();
        assert_rejected(s.addr, &jwt(HS256, &c, SECRET), &c, "token has no sub");
    }
}

#[test]
fn garbage_tokens_are_refused() {
    let s = server();
    let genuine = good("alice");
    let exp = now() + 600;
    let garbage = [
        "garbage".to_string(),
        "a.b.c".to_string(),
        "..".to_string(),
        "x.y".to_string(),
        "!!.??.**".to_string(),
        format!("{genuine}."),
        format!("{genuine}.extra"),
        format!(" {genuine}"),
        // Padded base64 is not base64url-without-padding (RFC 7515 §2).
        {
            let p: Vec<&str> = genuine.split('.').collect();
            format!("{}=.{}.{}", p[0], p[1], p[2])
        },
        // Header that is not JSON, claims that are not an object, and a
        // non-numeric exp, each correctly signed.
        jwt("not json", &json!({"sub": "alice"}).to_string(), SECRET),
        jwt(HS256, "[1,2,3]", SECRET),
        jwt(HS256, "\"alice\"", SECRET),
        jwt(
            HS256,
            &json!({"sub": "alice", "exp": "never"}).to_string(),
            SECRET,
        ),
        jwt(
            HS256,
            &json!({"sub": "alice", "nbf": {"t": 0}, "exp": exp}).to_string(),
            SECRET,
        ),
    ];
    for token in &garbage {
        assert_rejected(s.addr, token, token, BAD);
    }
}

#[test]
fn valid_token_of_another_user_on_a_bound_connection_gets_4403() {
    let s = server();
    let mut ws = connect_registered(s.addr, &good("alice"), "news");
    // Same user, new token, another event: allowed.
    register(&mut ws, &good("alice"), "sports");
    send_text(
        &mut ws,
        &json!({"token": good("mallory"), "event": "news", "id": 2}).to_string(),
    );
    let v: Value = serde_json::from_str(&read_text(&mut ws)).unwrap();
    assert_eq!(
        (v["ok"].clone(), v["code"].clone()),
        (json!(false), json!(4403)),
        "{v}"
    );
    send_text(
        &mut ws,
        &json!({"token": good("mallory"), "event": "news"}).to_string(),
    );
    assert_eq!(expect_close(&mut ws), 4403);
    assert_eq!(
        push(s.addr, "mallory", "news", "x").body,
        "message sent to 0 clients"
    );
}

/// Computed independently with Python:
/// hmac.new(b"vector-secret", b64(header) + b"." + b64(claims), hashlib.sha256),
/// base64url without padding; header `{"alg":"HS256","typ":"JWT"}`, claims
/// `{"sub":"vector-user","exp":4102444800}` (2100-01-01).
const VECTOR: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ2ZWN0b3ItdXNlciIsImV4cCI6NDEwMjQ0NDgwMH0.LV6xe6pGJLBLOrCp86z1CaiEDVFI2r_XOXEdPZF07Kk";

#[test]
fn independent_vector_is_accepted() {
    // Our own HMAC agrees with Python's, so the helpers above are sound.
    assert_eq!(
        jwt(
            HS256,
            r#"{"sub":"vector-user","exp":4102444800}"#,
            "vector-secret"
        ),
        VECTOR
    );
    let s = spawn_bin(&["--jwt-secret", "vector-secret"]);
    assert_accepted(s.addr, VECTOR, "vector-user");
    let other = spawn_bin(&["--jwt-secret", "vector-secreT"]);
    assert_rejected(other.addr, VECTOR, "vector under another secret", SIG);
}

#[test]
fn wspush_token_mints_a_token_the_server_accepts() {
    let out = wspush_token(&["--jwt-secret", SECRET, "--sub", "alice", "--ttl", "1h"], &[]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    // Check it independently: HS256 header, sub, a one-hour lifetime, our MAC.
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let header: Value =
        serde_json::from_slice(&BASE64URL_NOPAD.decode(parts[0].as_bytes()).unwrap()).unwrap();
    assert_eq!(header["alg"], "HS256");
    let claims: Value =
        serde_json::from_slice(&BASE64URL_NOPAD.decode(parts[1].as_bytes()).unwrap()).unwrap();
    assert_eq!(claims["sub"], "alice");
    let (iat, exp) = (claims["iat"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
    assert_eq!(exp - iat, 3600, "{claims}");
    assert!((iat - now()).abs() < 60, "iat {iat} is not now");
    let input = format!("{}.{}", parts[0], parts[1]);
    assert_eq!(parts[2], b64(&hs256(SECRET.as_bytes(), input.as_bytes())));

    let s = server();
    assert_accepted(s.addr, &token, "alice");

    // The environment twin works for `wspush token` too.
    let out = wspush_token(&["--sub", "bob"], &[("WSPUSH_JWT_SECRET", SECRET)]);
    assert!(out.status.success());
    assert_accepted(s.addr, String::from_utf8(out.stdout).unwrap().trim(), "bob");

    // A token minted with another secret is refused.
    let out = wspush_token(&["--jwt-secret", "not-the-secret", "--sub", "alice"], &[]);
    assert!(out.status.success());
    assert_rejected(
        s.addr,
        String::from_utf8(out.stdout).unwrap().trim(),
        "other secret",
        SIG,
    );
}

#[test]
fn wspush_token_without_a_secret_or_sub_fails_with_a_message() {
    for (args, needle) in [
        (vec!["--sub", "alice"], "secret"),
        (vec!["--jwt-secret", "", "--sub", "alice"], "secret"),
        (vec!["--jwt-secret", SECRET], "--sub"),
        (
            vec!["--jwt-secret", SECRET, "--sub", "a", "--ttl", "forever"],
            "forever",
        ),
        (
            vec!["--jwt-secret-file", "/nonexistent/wspush-secret", "--sub", "a"],
            "/nonexistent/wspush-secret",
        ),
    ] {
        let out = wspush_token(&args, &[]);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(out.stdout.is_empty(), "{args:?} printed a token");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: stderr {err:?} lacks {needle:?}");
    }
}

#[test]
fn jwt_secret_file_works() {
    // One trailing newline (as editors write) is not part of the secret.
    let file = TempFile::new("secret", "file-secret\n");
    let s = spawn_bin(&["--jwt-secret-file", file.path()]);
    let claims = json!({"sub": "dave", "exp": now() + 600}).to_string();
    assert_accepted(s.addr, &jwt(HS256, &claims, "file-secret"), "dave");
    assert_rejected(
        s.addr,
        &jwt(HS256, &claims, "file-secret\n"),
        "secret with the newline",
        SIG,
    );
    assert_rejected(s.addr, &good("dave"), "token for another secret", SIG);
    // `wspush token` reads the same file.
    let out = wspush_token(&["--jwt-secret-file", file.path(), "--sub", "erin"], &[]);
    assert!(out.status.success());
    assert_accepted(s.addr, String::from_utf8(out.stdout).unwrap().trim(), "erin");
}

#[test]
fn auth_failures_metric_counts_rejections() {
    let s = server();
    assert_eq!(metric(s.addr, "wspush_auth_failures_total"), 0);
    let expired = jwt(
        HS256,
        &json!({"sub": "a", "exp": now() - 3600}).to_string(),
        SECRET,
    );
    let forged = jwt(HS256, &json!({"sub": "a"}).to_string(), "nope");
    // Two refusals each (one with an id, one closing), plus a good register.
    assert_rejected(s.addr, &expired, "expired", "token expired");
    assert_rejected(s.addr, &forged, "forged", SIG);
    assert_rejected(s.addr, "garbage", "garbage", BAD);
    let _ws = connect_registered(s.addr, &good("alice"), "news");
    assert_eq!(metric(s.addr, "wspush_auth_failures_total"), 6);
}

/// SPEC §4 and §9: `--jwt-secret-file` holds one secret per line (blank
/// lines ignored), each verifies; with `--jwt-secret` too, that one also
/// verifies and is the one `wspush token` mints with.
#[test]
fn secret_file_lines_and_the_flag_all_verify() {
    let file = TempFile::new("rotation", "new-secret\n\n   \nold-secret\r\n");
    let claims = json!({"sub": "gina", "exp": now() + 600}).to_string();
    let s = spawn_bin(&["--jwt-secret", "flag-secret", "--jwt-secret-file", file.path()]);
    for secret in ["flag-secret", "new-secret", "old-secret"] {
        assert_accepted(s.addr, &jwt(HS256, &claims, secret), "gina");
    }
    assert_rejected(
        s.addr,
        &jwt(HS256, &claims, "   "),
        "a blank line is no secret",
        SIG,
    );
    assert_rejected(
        s.addr,
        &jwt(HS256, &claims, "old-secret\r"),
        "CR is not part of it",
        SIG,
    );
    assert_rejected(s.addr, &good("gina"), "not listed", SIG);

    // Minting: the flag's secret when given, else the file's first line;
    // by flag or by env twin.
    let mint = |args: &[&str], envs: &[(&str, &str)]| -> String {
        let mut all = args.to_vec();
        all.extend(["--sub", "hal"]);
        let out = wspush_token(&all, envs);
        assert!(
            out.status.success(),
            "{args:?} {envs:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let signed_with = |token: &str| -> &'static str {
        let parts: Vec<&str> = token.split('.').collect();
        let input = format!("{}.{}", parts[0], parts[1]);
        ["flag-secret", "new-secret", "old-secret"]
            .into_iter()
            .find(|k| parts[2] == b64(&hs256(k.as_bytes(), input.as_bytes())))
            .unwrap_or("none")
    };
    let f = file.path();
    assert_eq!(signed_with(&mint(&["--jwt-secret-file", f], &[])), "new-secret");
    assert_eq!(
        signed_with(&mint(&[], &[("WSPUSH_JWT_SECRET_FILE", f)])),
        "new-secret"
    );
    assert_eq!(
        signed_with(&mint(
            &["--jwt-secret", "flag-secret", "--jwt-secret-file", f],
            &[]
        )),
        "flag-secret"
    );
    assert_eq!(
        signed_with(&mint(
            &["--jwt-secret-file", f],
            &[("WSPUSH_JWT_SECRET", "flag-secret")]
        )),
        "flag-secret"
    );
    assert_eq!(
        signed_with(&mint(
            &[],
            &[
                ("WSPUSH_JWT_SECRET", "flag-secret"),
                ("WSPUSH_JWT_SECRET_FILE", f)
            ]
        )),
        "flag-secret"
    );
    assert_accepted(s.addr, &mint(&["--jwt-secret-file", f], &[]), "hal");
}

/// `wspush token --ttl` takes the same durations as every flag.
#[test]
fn wspush_token_ttl_takes_the_shared_duration_syntax() {
    for (ttl, secs) in [
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("1.5h", 5400),
        ("7d", 604_800),
    ] {
        let out = wspush_token(&["--jwt-secret", SECRET, "--sub", "a", "--ttl", ttl], &[]);
        assert!(
            out.status.success(),
            "{ttl}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout).unwrap();
        let claims: Value = serde_json::from_slice(
            &BASE64URL_NOPAD
                .decode(token.trim().split('.').nth(1).unwrap().as_bytes())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            secs,
            "{ttl}"
        );
    }
    for ttl in ["0", "500ms", "1e9", "-1h", "2y"] {
        let out = wspush_token(&["--jwt-secret", SECRET, "--sub", "a", "--ttl", ttl], &[]);
        assert_eq!(out.status.code(), Some(2), "{ttl}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--ttl"), "{ttl}");
    }
}

/// An empty or blank secret file stops the server with status 2, naming it.
#[test]
fn a_secret_file_without_a_secret_is_refused() {
    let file = TempFile::new("blank", "\n  \n");
    let (code, err) = crate::binary_cli::run_to_exit(
        &["--listen", "127.0.0.1:0", "--jwt-secret-file", file.path()],
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("--jwt-secret-file {} holds no secret", file.path())),
        "{err}"
    );
}
