//! The real `curl` against the real binary: the seed's push scripts keep
//! working (SPEC §2 and §4).
use crate::common::*;

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::Output;

/// Runs curl with `args` (never through a proxy, bounded in time).
fn curl(args: &[&str]) -> Output {
    command("curl")
        .args(["-s", "--noproxy", "*", "--max-time", "5"])
        .args(args)
        .output()
        .expect("run curl")
}

#[track_caller]
fn curl_ok(args: &[&str]) -> String {
    let out = curl(args);
    assert!(
        out.status.success(),
        "curl {args:?} failed: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

const DEMO: &str = r#"{"userId":"aaa","event":"topic1","message":"hi"}"#;

#[test]
fn curl_push_reaches_a_registered_client() {
    let server = spawn_bin(&[]);
    let mut ws = connect_registered(server.addr, "aaa", "topic1");
    let out = curl_ok(&["-d", DEMO, &url(server.addr, "/push")]);
    assert_eq!(out, "message sent to 1 clients");
    assert_eq!(read_text(&mut ws), "hi");

    // With the status code, as a push script checking for success would.
    let out = curl_ok(&["-w", " %{http_code}", "-d", DEMO, &url(server.addr, "/push")]);
    assert_eq!(out, "message sent to 1 clients 200");
    assert_eq!(read_text(&mut ws), "hi");
}

#[test]
fn curl_push_with_accept_json() {
    let server = spawn_bin(&[]);
    let mut ws = connect_registered(server.addr, "aaa", "topic1");
    let out = curl_ok(&[
        "-H",
        "Accept: application/json",
        "-d",
        DEMO,
        &url(server.addr, "/push"),
    ]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"));
    assert_eq!(v, json!({"sent": 1}));
    assert_eq!(read_text(&mut ws), "hi");

    let out = curl_ok(&[
        "-H",
        "Accept: application/json",
        "-w",
        "\n%{http_code}",
        "-d",
        r#"{"userId":"aaa","event":"topic1"}"#,
        &url(server.addr, "/push"),
    ]);
    let (body, code) = out.rsplit_once('\n').expect("status line");
    assert_eq!(code, "400");
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"));
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("request data illegal")),
        "{v}"
    );
}

#[test]
fn curl_healthz_and_errors() {
    let server = spawn_bin(&[]);
    assert_eq!(curl_ok(&[&url(server.addr, "/healthz")]), "ok");
    assert_eq!(
        curl_ok(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url(server.addr, "/nope")
        ]),
        "404"
    );
    let out = curl_ok(&[
        "-w",
        "\n%{http_code}",
        "-d",
        "not json",
        &url(server.addr, "/push"),
    ]);
    let (body, code) = out.rsplit_once('\n').expect("status line");
    assert_eq!(code, "400");
    assert!(body.starts_with("request data illegal"), "{body:?}");
    assert_eq!(
        curl_ok(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url(server.addr, "/push")
        ]),
        "405"
    );
}

#[test]
fn curl_reuses_one_keep_alive_connection() {
    let server = spawn_bin(&[]);
    let mut ws = connect_registered(server.addr, "aaa", "topic1");
    // Two transfers in one curl run: the second must not need a new
    // connection (num_connects 0).
    let out = curl_ok(&[
        "-w",
        " %{num_connects}\n",
        &url(server.addr, "/healthz"),
        &url(server.addr, "/healthz"),
    ]);
    assert_eq!(out, "ok 1\nok 0\n");
    let out = curl_ok(&[
        "-w",
        " %{num_connects}\n",
        "-d",
        DEMO,
        &url(server.addr, "/push"),
        // `--next` resets the options (so -d is not merged), not the
        // connection cache.
        "--next",
        "-s",
        "--noproxy",
        "*",
        "-w",
        " %{num_connects}\n",
        "-d",
        DEMO,
        &url(server.addr, "/push"),
    ]);
    assert_eq!(out, "message sent to 1 clients 1\nmessage sent to 1 clients 0\n");
    assert_eq!(read_text(&mut ws), "hi");
    assert_eq!(read_text(&mut ws), "hi");
}

#[test]
fn curl_http_1_0_and_chunked_uploads() {
    let server = spawn_bin(&[]);
    let mut ws = connect_registered(server.addr, "aaa", "topic1");

    let out = curl_ok(&["-0", "-d", DEMO, &url(server.addr, "/push")]);
    assert_eq!(out, "message sent to 1 clients");
    assert_eq!(read_text(&mut ws), "hi");

    let chunked_msg = r#"{"userId":"aaa","event":"topic1","message":"chunked by curl"}"#;
    let out = curl_ok(&[
        "-H",
        "Transfer-Encoding: chunked",
        "-d",
        chunked_msg,
        &url(server.addr, "/push"),
    ]);
    assert_eq!(out, "message sent to 1 clients");
    assert_eq!(read_text(&mut ws), "chunked by curl");
}

#[test]
fn curl_broadcast_and_drop() {
    let server = spawn_bin(&[]);
    let mut a = connect_registered(server.addr, "aaa", "topic1");
    let mut b = connect_registered(server.addr, "bbb", "topic1");
    let out = curl_ok(&[
        "-d",
        r#"{"event":"topic1","message":"all"}"#,
        &url(server.addr, "/broadcast"),
    ]);
    assert_eq!(out, "message sent to 2 clients");
    assert_eq!(read_text(&mut a), "all");
    assert_eq!(read_text(&mut b), "all");

    let out = curl_ok(&["-d", r#"{"userId":"bbb"}"#, &url(server.addr, "/drop")]);
    assert_eq!(out, "dropped 1 clients");
    assert_eq!(expect_close(&mut b), 4000);

    let out = curl_ok(&[
        "-d",
        r#"{"userIds":["aaa","bbb"],"event":"topic1","message":"m"}"#,
        &url(server.addr, "/push"),
    ]);
    assert_eq!(out, "message sent to 1 clients");
    assert_eq!(read_text(&mut a), "m");
}
