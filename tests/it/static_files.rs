//! The demo page and the browser client, served from the binary.
use crate::common::*;
use std::io::{Read, Write};

fn get_with(addr: std::net::SocketAddr, method: &str, path: &str, extra: &str) -> HttpResponse {
    raw_request(
        addr,
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n").as_bytes(),
    )
}

/// A HEAD's answer up to the blank line (read to EOF: it has no body).
fn head_section(addr: std::net::SocketAddr, path: &str, extra: &str) -> String {
    let (mut s, mut rd) = raw_conn(addr);
    s.write_all(format!("HEAD {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut raw = String::new();
    rd.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header section");
    assert_eq!(body, "", "HEAD has no body");
    head.to_string()
}

#[test]
fn client_and_demo_are_served_with_types_and_etags() {
    let server = start();
    for (path, ctype, needle) in [
        ("/", "text/html", "wspush.js"),
        ("/wspush.js", "text/javascript", "connect"),
        ("/wspush.mjs", "text/javascript", "export"),
        (
            "/wspush.d.ts",
            "application/typescript",
            "export function connect",
        ),
        ("/favicon.ico", "image/svg+xml", "<svg"),
    ] {
        let r = get(server.addr, path);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("Content-Type").unwrap().starts_with(ctype), "{path}");
        assert!(r.body.contains(needle), "{path}");
        assert_eq!(r.header("Cache-Control"), Some("no-cache"));
        let etag = r.header("ETag").expect("etag").to_string();
        assert!(etag.starts_with('"') && etag.ends_with('"'));

        let again = get_with(server.addr, "GET", path, &format!("If-None-Match: {etag}\r\n"));
        assert_eq!((again.status, again.body.as_str()), (304, ""), "{path}");
        assert_eq!(again.header("ETag"), Some(etag.as_str()));
        assert_eq!(again.header("Content-Length"), None, "{path}: no length on a 304");
        let stale = get_with(server.addr, "GET", path, "If-None-Match: \"stale\"\r\n");
        assert_eq!(stale.status, 200);

        // HEAD: the same headers, then nothing.
        let head = head_section(server.addr, path, "");
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        let len = format!("Content-Length: {}", r.header("Content-Length").unwrap());
        assert!(head.contains(&len), "{head}");
    }
    let r = post(server.addr, "/wspush.js", "x");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("GET, HEAD"));
}

/// The client files load from any origin (a page elsewhere can `import`
/// the module, which browsers fetch in CORS mode): the header is on 200,
/// 304 and HEAD alike. The demo page and the icon do not need it.
#[test]
fn client_files_carry_allow_origin_star_on_200_304_and_head() {
    let server = start();
    let origin = "Origin: https://elsewhere.example\r\n";
    for path in ["/wspush.js", "/wspush.mjs", "/wspush.d.ts"] {
        let r = get_with(server.addr, "GET", path, origin);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"), "{path}");
        let etag = r.header("ETag").expect("etag").to_string();
        let again = get_with(
            server.addr,
            "GET",
            path,
            &format!("{origin}If-None-Match: {etag}\r\n"),
        );
        assert_eq!(again.status, 304, "{path}");
        assert_eq!(
            again.header("Access-Control-Allow-Origin"),
            Some("*"),
            "{path} 304"
        );
        let head = head_section(server.addr, path, origin);
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert!(
            head.contains("\r\nAccess-Control-Allow-Origin: *\r\n"),
            "{path} HEAD: {head}"
        );
        // Without an Origin too: caches may keep one answer for everyone.
        assert_eq!(
            get(server.addr, path).header("Access-Control-Allow-Origin"),
            Some("*")
        );
    }
    for path in ["/", "/favicon.ico"] {
        let r = get_with(server.addr, "GET", path, origin);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("Access-Control-Allow-Origin"), None, "{path}");
    }
}

fn whoami(addr: std::net::SocketAddr, auth: &str) -> HttpResponse {
    get_with(addr, "GET", "/demo/whoami", auth)
}

/// The demo page asks the server which user its token is, so its curl
/// command names the real userId; the server's own connection auth answers.
#[test]
fn demo_whoami_maps_the_token_with_the_servers_auth() {
    // Default auth: userId = token; no key, so pushes need none.
    let server = start();
    let r = whoami(server.addr, "Authorization: Bearer it's me\r\n");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("Content-Type").unwrap().starts_with("application/json"));
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"userId": "it's me", "pushKey": false, "pushPath": "/push"})
    );
    // The scheme is case-insensitive, as for the push key.
    let r = whoami(server.addr, "Authorization: bearer aaa\r\n");
    assert_eq!(r.body, r#"{"pushKey":false,"pushPath":"/push","userId":"aaa"}"#);

    // A library auth hook (what --auth-tokens and --jwt-secret also go
    // through), a push key and another push path.
    let server = start_with(|b| {
        b.auth(|t| (t == "good-token").then(|| "carol".to_string()))
            .push_path("/p")
            .configure(|c| c.push_key = Some(wspush::Secret::new("k")))
    });
    let r = whoami(server.addr, "Authorization: Bearer good-token\r\n");
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"userId": "carol", "pushKey": true, "pushPath": "/p"})
    );

    // Refusals say why, as JSON whatever the Accept.
    for (auth, why) in [
        ("Authorization: Bearer bad-token\r\n", "unknown token"),
        ("", "missing token: send Authorization: Bearer <token>"),
        (
            "Authorization: Bearer \r\n",
            "missing token: send Authorization: Bearer <token>",
        ),
        (
            "Authorization: good-token\r\n",
            "missing token: send Authorization: Bearer <token>",
        ),
    ] {
        let r = whoami(server.addr, auth);
        assert_eq!(r.status, 401, "{auth:?}");
        assert_eq!(r.header("WWW-Authenticate"), Some("Bearer"));
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v, serde_json::json!({ "error": why }), "{auth:?}");
    }
    assert_eq!(post(server.addr, "/demo/whoami", "").status, 405);
}

#[test]
fn demo_whoami_on_the_binary_with_a_token_file() {
    let dir = std::env::temp_dir().join(format!("wspush-whoami-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, "good-token carol\n").unwrap();
    let server = spawn_bin(&["--auth-tokens", tokens.to_str().unwrap(), "--push-key", "k"]);
    let r = whoami(server.addr, "Authorization: Bearer good-token\r\n");
    assert_eq!(r.body, r#"{"pushKey":true,"pushPath":"/push","userId":"carol"}"#);
    assert_eq!(whoami(server.addr, "Authorization: Bearer aaa\r\n").status, 401);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_demo_turns_them_off() {
    let server = start_with(|b| b.configure(|c| c.demo = false));
    for path in [
        "/",
        "/wspush.js",
        "/wspush.mjs",
        "/wspush.d.ts",
        "/favicon.ico",
        "/demo/whoami",
    ] {
        assert_eq!(get(server.addr, path).status, 404, "{path}");
    }
    assert_eq!(get(server.addr, "/healthz").body, "ok");
}

#[test]
fn no_demo_flag_on_the_binary() {
    let server = spawn_bin(&["--no-demo"]);
    assert_eq!(get(server.addr, "/").status, 404);
    let on = spawn_bin(&[]);
    assert_eq!(get(on.addr, "/").status, 200);
}
