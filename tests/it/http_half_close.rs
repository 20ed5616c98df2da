//! SPEC §2, HTTP/1.1 details: a client that half-closes after its last
//! request (`shutdown(SHUT_WR)`, as `curl` does with some options and many
//! scripts do) gets every answer, then the server closes at once instead
//! of waiting for the request timeout.
//!
//! The hard case is the FIN travelling in the same TCP segment as the last
//! request: one readiness event reports both, and a server that stops
//! reading at the short read (to save a `recvfrom`) never hears of the FIN
//! again. TCP_CORK holds the bytes back until `shutdown` tacks the FIN on,
//! so the test sends exactly that segment.
use crate::common::*;

use socket2::{Domain, Socket, Type};
use std::io::{BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Well below the default request timeout (10 s) the server would
/// otherwise close the connection after.
const PROMPT: Duration = Duration::from_secs(3);

fn push_req(addr: SocketAddr, message: &str) -> String {
    let body = format!(r#"{{"userId":"aaa","event":"topic1","message":"{message}"}}"#);
    format!(
        "POST /push HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `raw` and the FIN in one segment; returns the reader.
fn send_with_fin(addr: SocketAddr, raw: &[u8]) -> BufReader<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.connect(&addr.into()).unwrap();
    s.set_tcp_cork(true).unwrap();
    let mut stream: TcpStream = s.into();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(raw).unwrap();
    // With the bytes still corked, the FIN joins their segment.
    stream.shutdown(Shutdown::Write).unwrap();
    BufReader::new(stream)
}

#[test]
fn last_request_and_fin_in_one_segment_are_answered_then_closed() {
    let server = start();
    let mut ws = connect_registered(server.addr, "aaa", "topic1");
    let started = Instant::now();
    let mut r = send_with_fin(server.addr, push_req(server.addr, "last").as_bytes());
    let resp = read_response(&mut r);
    assert_eq!(
        (resp.status, resp.body.as_str()),
        (200, "message sent to 1 clients")
    );
    // The server saw the FIN with the request, so it says it will close.
    assert_eq!(resp.header("Connection"), Some("close"));
    expect_eof(&mut r);
    assert!(
        started.elapsed() < PROMPT,
        "closed only after {:?}",
        started.elapsed()
    );
    assert_eq!(read_text(&mut ws), "last");
}

#[test]
fn pipelined_requests_and_fin_in_one_segment_are_all_answered() {
    let server = start();
    let mut ws = connect_registered(server.addr, "aaa", "topic1");
    let batch: String = (0..3).map(|i| push_req(server.addr, &format!("m{i}"))).collect();
    let started = Instant::now();
    let mut r = send_with_fin(server.addr, batch.as_bytes());
    for i in 0..3 {
        let resp = read_response(&mut r);
        assert_eq!(resp.body, "message sent to 1 clients", "request {i}");
        assert_eq!(read_text(&mut ws), format!("m{i}"));
    }
    expect_eof(&mut r);
    assert!(
        started.elapsed() < PROMPT,
        "closed only after {:?}",
        started.elapsed()
    );
}

#[test]
fn fin_after_the_answer_closes_the_connection() {
    let server = start();
    let mut ws = connect_registered(server.addr, "aaa", "topic1");
    let (mut s, mut r) = raw_conn(server.addr);
    s.write_all(push_req(server.addr, "first").as_bytes()).unwrap();
    let resp = read_response(&mut r);
    assert_eq!(resp.body, "message sent to 1 clients");
    assert_eq!(read_text(&mut ws), "first");
    let started = Instant::now();
    s.shutdown(Shutdown::Write).unwrap();
    expect_eof(&mut r);
    assert!(
        started.elapsed() < PROMPT,
        "closed only after {:?}",
        started.elapsed()
    );
}
