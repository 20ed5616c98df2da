//! Big fan-outs and bursts of pushes: every connection gets every push
//! once, in order; the counts are right; other requests are answered in
//! between; a vanished client does not hold the others up; a burst to one
//! healthy client is not mistaken for a slow consumer.
use crate::common::*;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn pipelined_pushes_to_many_connections_arrive_whole_and_in_order() {
    let server = start();
    let a = server.addr;
    const CONNS: usize = 1500;
    const PUSHES: usize = 40;
    let mut clients: Vec<Ws> = (0..CONNS).map(|_| connect_registered(a, "fan", "e")).collect();

    // All pushes in one write: several are handled per loop round.
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut raw = Vec::new();
    for k in 0..PUSHES {
        let body = format!(r#"{{"userId":"fan","event":"e","message":"m{k}"}}"#);
        raw.extend_from_slice(push_request(&body).as_bytes());
    }
    raw.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    s.write_all(&raw).unwrap();
    let mut r = BufReader::new(s);
    for _ in 0..PUSHES {
        let resp = read_response(&mut r);
        assert_eq!(resp.body, format!("message sent to {CONNS} clients"));
    }
    assert_eq!(read_response(&mut r).body, "ok");

    for ws in &mut clients {
        for k in 0..PUSHES {
            assert_eq!(read_text(ws), format!("m{k}"));
        }
    }
    for ws in clients.iter_mut().step_by(100) {
        expect_silence(ws, Duration::from_millis(20));
    }
    assert_eq!(
        metric(a, "wspush_messages_delivered_total"),
        (CONNS * PUSHES) as u64
    );
}

/// A client that vanished is found when a push is written to it; the
/// others of the same fan-out are not held up.
#[test]
fn a_vanished_client_in_a_big_fan_out_is_dropped_quietly() {
    let server = start();
    let a = server.addr;
    let mut clients: Vec<Ws> = (0..600).map(|_| connect_registered(a, "fan", "e")).collect();
    // Every third client goes away without a close frame.
    let mut kept = Vec::new();
    for (i, ws) in clients.drain(..).enumerate() {
        if i % 3 == 0 {
            drop(ws);
        } else {
            kept.push(ws);
        }
    }
    for k in 0..5 {
        let r = push(a, "fan", "e", &format!("m{k}"));
        assert_eq!(r.status, 200);
    }
    for ws in &mut kept {
        for k in 0..5 {
            assert_eq!(read_text(ws), format!("m{k}"));
        }
    }
    eventually("vanished clients closed", || {
        metric(a, "wspush_connections") == 400
    });
}

/// Many pushes to one connection in one loop round: only bytes the socket
/// refuses count against --max-backlog-bytes.
#[test]
fn pushes_queued_in_one_tick_are_not_mistaken_for_a_slow_consumer() {
    let server = start_with(|b| b.configure(|c| c.max_backlog_bytes = 8192));
    let a = server.addr;
    let mut ws = connect_registered(a, "u", "e");
    const PUSHES: usize = 60;
    let big = "x".repeat(1000);
    let mut raw = Vec::new();
    for k in 0..PUSHES {
        let body = format!(r#"{{"userId":"u","event":"e","message":"{k:02}{big}"}}"#);
        raw.extend_from_slice(push_request(&body).as_bytes());
    }
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(&raw).unwrap();
    let mut r = BufReader::new(s);
    for _ in 0..PUSHES {
        assert_eq!(read_response(&mut r).body, "message sent to 1 clients");
    }
    for k in 0..PUSHES {
        assert_eq!(read_text(&mut ws), format!("{k:02}{big}"));
    }
    assert_eq!(metric(a, "wspush_slow_consumer_drops_total"), 0);
}
