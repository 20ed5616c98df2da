//! The seed's own demo: register {"token":"aaa","event":"topic1"}, push to aaa.
use crate::common::*;

#[test]
fn seed_demo_flow_through_the_binary() {
    let server = spawn_bin(&[]);
    let mut ws = ws_connect(server.addr, "/ws");
    // The seed's client sends no id and expects nothing back.
    send_text(&mut ws, r#"{"token": "aaa", "event": "topic1"}"#);
    eventually("aaa registered", || {
        let r = push(server.addr, "aaa", "topic1", "probe");
        r.body == "message sent to 1 clients"
    });
    assert_eq!(read_text(&mut ws), "probe");
    let r = push(server.addr, "aaa", "topic1", "hi");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "message sent to 1 clients");
    assert_eq!(read_text(&mut ws), "hi");
}
