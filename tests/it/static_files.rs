//! The demo page and the browser client, served from the binary.
use crate::common::*;
use std::io::{Read, Write};

fn get_with(addr: std::net::SocketAddr, method: &str, path: &str, extra: &str) -> HttpResponse {
    raw_request(
        addr,
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n").as_bytes(),
    )
}

#[test]
fn client_and_demo_are_served_with_types_and_etags() {
    let server = start();
    for (path, ctype, needle) in [
        ("/", "text/html", "wspush.js"),
        ("/wspush.js", "text/javascript", "connect"),
        ("/wspush.mjs", "text/javascript", "export"),
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
        let stale = get_with(server.addr, "GET", path, "If-None-Match: \"stale\"\r\n");
        assert_eq!(stale.status, 200);

        // HEAD: the same headers, then nothing (read raw to EOF).
        let (mut s, mut rd) = raw_conn(server.addr);
        s.write_all(format!("HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
            .unwrap();
        let mut raw = String::new();
        rd.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").expect("a header section");
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        let len = format!("Content-Length: {}", r.header("Content-Length").unwrap());
        assert!(head.contains(&len), "{head}");
        assert_eq!(body, "", "HEAD has no body");
    }
    let r = post(server.addr, "/wspush.js", "x");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("GET, HEAD"));
}

#[test]
fn no_demo_turns_them_off() {
    let server = start_with(|b| b.configure(|c| c.demo = false));
    for path in ["/", "/wspush.js", "/wspush.mjs"] {
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
