//! SPEC §2, `GET /metrics`: Prometheus text with the listed families, and
//! values that follow what happens on the server.
use crate::common::*;
use serde_json::json;
use std::net::SocketAddr;

const FAMILIES: [&str; 9] = [
    "wspush_connections",
    "wspush_registered_users",
    "wspush_subscriptions",
    "wspush_pushes_total",
    "wspush_messages_delivered_total",
    "wspush_bytes_out_total",
    "wspush_slow_consumer_drops_total",
    "wspush_auth_failures_total",
    "wspush_http_errors_total",
];

fn http_errors(addr: SocketAddr, status: u16) -> u64 {
    let body = get(addr, "/metrics").body;
    let prefix = format!("wspush_http_errors_total{{status=\"{status}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().expect("numeric metric"))
        .unwrap_or(0)
}

#[test]
fn metrics_is_prometheus_text_with_every_family() {
    let server = start();
    let a = server.addr;
    // Make sure labelled families have samples too.
    assert_eq!(get(a, "/nope").status, 404);
    let r = get(a, "/metrics");
    assert_eq!(r.status, 200, "{r:?}");
    let ct = r
        .header("Content-Type")
        .unwrap_or_else(|| panic!("no Content-Type: {r:?}"));
    assert!(ct.starts_with("text/plain"), "Content-Type {ct:?}");

    let lines: Vec<&str> = r.body.lines().collect();
    for name in FAMILIES {
        let is_sample = |l: &&str| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        };
        let first_sample = lines
            .iter()
            .position(is_sample)
            .unwrap_or_else(|| panic!("no sample of {name} in:\n{}", r.body));
        let type_line = lines
            .iter()
            .position(|l| {
                let mut w = l.split_whitespace();
                w.next() == Some("#") && w.next() == Some("TYPE") && w.next() == Some(name)
            })
            .unwrap_or_else(|| panic!("no # TYPE for {name} in:\n{}", r.body));
        assert!(type_line < first_sample, "# TYPE {name} comes after its samples");
        let kind = lines[type_line].split_whitespace().nth(3);
        let want = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        assert_eq!(kind, Some(want), "{}", lines[type_line]);
    }
    // Every line is a comment or a sample with a numeric value.
    for l in &lines {
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let value = l.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample line {l:?}");
    }
    // A fresh server counts nothing yet.
    for name in [
        "wspush_connections",
        "wspush_registered_users",
        "wspush_subscriptions",
        "wspush_pushes_total",
        "wspush_messages_delivered_total",
        "wspush_bytes_out_total",
        "wspush_slow_consumer_drops_total",
        "wspush_auth_failures_total",
    ] {
        assert_eq!(metric(a, name), 0, "{name}");
    }
}

#[test]
fn gauges_follow_connections_users_and_subscriptions() {
    let server = start();
    let a = server.addr;
    let mut alice1 = connect_registered(a, "alice", "e1");
    register(&mut alice1, "alice", "e2");
    let mut alice2 = connect_registered(a, "alice", "e1");
    register(&mut alice2, "alice", "e2");
    let bob = connect_registered(a, "bob", "e1");
    assert_eq!(metric(a, "wspush_connections"), 3);
    assert_eq!(metric(a, "wspush_registered_users"), 2);
    assert_eq!(metric(a, "wspush_subscriptions"), 5);

    // Registering the same event again is a no-op; unregistering removes one.
    register(&mut alice1, "alice", "e2");
    assert_eq!(metric(a, "wspush_subscriptions"), 5);
    send_text(&mut alice2, r#"{"type":"unregister","event":"e2","id":1}"#);
    assert_eq!(read_text(&mut alice2), r#"{"id":1,"ok":true}"#);
    assert_eq!(metric(a, "wspush_subscriptions"), 4);
    assert_eq!(metric(a, "wspush_registered_users"), 2);

    // A connection that has not registered counts as a connection only.
    let mut unbound = ws_connect(a, "/ws");
    eventually("4 connections", || metric(a, "wspush_connections") == 4);
    assert_eq!(metric(a, "wspush_registered_users"), 2);
    assert_eq!(metric(a, "wspush_subscriptions"), 4);

    // Closing: counts come back down as each connection goes.
    drop(bob);
    eventually("bob gone", || {
        metric(a, "wspush_registered_users") == 1 && metric(a, "wspush_connections") == 3
    });
    assert_eq!(metric(a, "wspush_subscriptions"), 3);
    for ws in [&mut alice1, &mut alice2, &mut unbound] {
        ws.close(None).unwrap();
        let _ = ws.flush();
    }
    eventually("everything back to 0", || {
        metric(a, "wspush_connections") == 0
            && metric(a, "wspush_registered_users") == 0
            && metric(a, "wspush_subscriptions") == 0
    });
}

#[test]
fn a_push_moves_the_delivery_counters() {
    let server = start();
    let a = server.addr;
    let mut alice1 = connect_registered(a, "alice", "e1");
    register(&mut alice1, "alice", "e2");
    let mut alice2 = connect_registered(a, "alice", "e1");
    let mut bob = connect_registered(a, "bob", "e1");

    let pushes = metric(a, "wspush_pushes_total");
    let delivered = metric(a, "wspush_messages_delivered_total");
    let bytes = metric(a, "wspush_bytes_out_total");

    let msg = "twelve bytes";
    assert_eq!(push(a, "alice", "e1", msg).body, "message sent to 2 clients");
    assert_eq!(read_text(&mut alice1), msg);
    assert_eq!(read_text(&mut alice2), msg);
    assert_eq!(metric(a, "wspush_pushes_total"), pushes + 1);
    assert_eq!(metric(a, "wspush_messages_delivered_total"), delivered + 2);
    assert_eq!(metric(a, "wspush_bytes_out_total"), bytes + 2 * msg.len() as u64);

    // A JSON value counts the bytes of its compact text; a broadcast is a push.
    let body = json!({"event": "e1", "message": {"k": [1, 2]}}).to_string();
    assert_eq!(post(a, "/broadcast", &body).body, "message sent to 3 clients");
    let compact = r#"{"k":[1,2]}"#;
    for ws in [&mut alice1, &mut alice2, &mut bob] {
        assert_eq!(read_text(ws), compact);
    }
    assert_eq!(metric(a, "wspush_pushes_total"), pushes + 2);
    assert_eq!(metric(a, "wspush_messages_delivered_total"), delivered + 5);
    assert_eq!(
        metric(a, "wspush_bytes_out_total"),
        bytes + 2 * msg.len() as u64 + 3 * compact.len() as u64
    );

    // A push that reaches nobody delivers nothing.
    assert_eq!(push(a, "carol", "e1", "nobody").body, "message sent to 0 clients");
    assert_eq!(metric(a, "wspush_messages_delivered_total"), delivered + 5);

    // Library pushes count the same way.
    let unicode = "héllo ✓";
    assert_eq!(server.handle.push("alice", "e2", unicode).unwrap(), 1);
    assert_eq!(read_text(&mut alice1), unicode);
    assert_eq!(metric(a, "wspush_messages_delivered_total"), delivered + 6);
    assert_eq!(
        metric(a, "wspush_bytes_out_total"),
        bytes + 2 * msg.len() as u64 + 3 * compact.len() as u64 + unicode.len() as u64
    );
    assert_eq!(metric(a, "wspush_slow_consumer_drops_total"), 0);
}

#[test]
fn http_errors_are_counted_by_status() {
    let server = start();
    let a = server.addr;
    assert_eq!(http_errors(a, 404), 0);
    assert_eq!(http_errors(a, 400), 0);

    assert_eq!(get(a, "/no-such-path").status, 404);
    assert_eq!(post(a, "/push", "not json").status, 400);
    let body = get(a, "/metrics").body;
    assert!(
        body.lines()
            .any(|l| l == r#"wspush_http_errors_total{status="404"} 1"#),
        "{body}"
    );
    assert!(
        body.lines()
            .any(|l| l == r#"wspush_http_errors_total{status="400"} 1"#),
        "{body}"
    );

    assert_eq!(post(a, "/elsewhere", "{}").status, 404);
    assert_eq!(get(a, "/push").status, 405);
    assert_eq!(http_errors(a, 404), 2);
    assert_eq!(http_errors(a, 400), 1);
    assert_eq!(http_errors(a, 405), 1);
    // Successes are not errors.
    assert_eq!(get(a, "/healthz").status, 200);
    assert_eq!(push(a, "nobody", "e", "x").status, 200);
    assert_eq!(http_errors(a, 200), 0);
    assert_eq!(http_errors(a, 404), 2);
}

#[test]
fn rejected_tokens_count_as_auth_failures() {
    let server = start_with(|b| b.auth(|t| (t != "bad").then(|| t.to_string())));
    let a = server.addr;
    assert_eq!(metric(a, "wspush_auth_failures_total"), 0);

    let mut ws = ws_connect(a, "/ws");
    send_text(&mut ws, r#"{"token":"bad","event":"e1"}"#);
    assert_eq!(expect_close(&mut ws), 4401);
    assert_eq!(metric(a, "wspush_auth_failures_total"), 1);

    // With an id: an error reply, still a failure.
    let mut ws = ws_connect(a, "/ws");
    send_text(&mut ws, r#"{"token":"bad","event":"e1","id":9}"#);
    let reply: serde_json::Value = serde_json::from_str(&read_text(&mut ws)).unwrap();
    assert_eq!(reply["ok"], json!(false));
    assert_eq!(reply["code"], json!(4401));
    assert_eq!(metric(a, "wspush_auth_failures_total"), 2);

    // A good token is not a failure.
    register(&mut ws, "good", "e1");
    assert_eq!(metric(a, "wspush_auth_failures_total"), 2);
    assert_eq!(metric(a, "wspush_registered_users"), 1);
    drop(ws);
    eventually("connections back to 0", || {
        metric(a, "wspush_connections") == 0 && metric(a, "wspush_registered_users") == 0
    });
}
