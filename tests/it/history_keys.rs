//! Latest-value pushes (SPEC §8, with or without `--history`): a newer
//! message with the same (stream, key) replaces the older one wherever it
//! still waits — a slow reader's backlog, the history — so a ticker never
//! trips 4008 for a client that only needs the latest value.

use crate::common::*;
use crate::history::{envelope_client, next_envelope, push_cursor, resume, with_history};
use serde_json::{json, Value};
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A WebSocket whose receive buffer is small, so what the client does not
/// read piles up in the server's backlog instead of the kernel's.
fn slow_client(addr: SocketAddr, user: &str, event: &str) -> Ws {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&addr.into()).unwrap();
    let stream: TcpStream = sock.into();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let (mut ws, _) = tungstenite::client::client(format!("ws://{addr}/ws"), stream).expect("handshake");
    register(&mut ws, user, event);
    ws
}

/// A keep-alive HTTP connection for many pushes in a row.
struct Pusher {
    s: TcpStream,
    r: BufReader<TcpStream>,
}

impl Pusher {
    fn new(addr: SocketAddr) -> Pusher {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.set_nodelay(true).unwrap();
        let r = BufReader::new(s.try_clone().unwrap());
        Pusher { s, r }
    }

    fn push(&mut self, body: Value) -> u16 {
        self.s
            .write_all(push_request(&body.to_string()).as_bytes())
            .unwrap();
        read_response(&mut self.r).status
    }
}

/// What a reader that takes one message every `pause` saw, until the
/// ticker stopped and then nothing came for a while: the messages, or the
/// close code that ended it.
fn read_slowly(mut ws: Ws, pause: Duration, ticking: Arc<AtomicBool>) -> Result<Vec<String>, u16> {
    let mut got = Vec::new();
    loop {
        if ticking.load(Ordering::SeqCst) {
            std::thread::sleep(pause);
        } else {
            ws.get_mut()
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
        }
        match read_msg(&mut ws) {
            Ok(tungstenite::Message::Text(t)) => got.push(t.as_str().to_string()),
            Ok(tungstenite::Message::Close(Some(f))) => return Err(u16::from(f.code)),
            Ok(_) => {}
            Err(_) if !ticking.load(Ordering::SeqCst) => return Ok(got),
            Err(e) => panic!("read failed while ticking: {e}"),
        }
    }
}

/// A ticker pushes 1,000 updates a second for two seconds, 4 KB each (8 MB:
/// more than the kernel's socket buffers hold), to two clients that read
/// 50 a second: with a key, the backlog holds one value and the client
/// ends with the latest; the same stream without a key is a slow consumer
/// (the control that shows the backlog really filled).
#[test]
fn a_ticker_with_a_key_never_trips_4008_and_ends_with_the_latest_value() {
    let server = start_with(|b| b.configure(|c| c.max_backlog_bytes = 32 * 1024));
    let addr = server.addr;
    let keyed = slow_client(addr, "keyed", "price");
    let plain = slow_client(addr, "plain", "price");
    let ticking = Arc::new(AtomicBool::new(true));
    let readers: Vec<_> = [keyed, plain]
        .into_iter()
        .map(|ws| {
            let t = Arc::clone(&ticking);
            std::thread::spawn(move || read_slowly(ws, Duration::from_millis(20), t))
        })
        .collect();

    let pad = "x".repeat(4000);
    let mut pusher = Pusher::new(addr);
    let started = Instant::now();
    let n = 2000;
    for i in 0..n {
        // 1,000 a second: push i is due at i ms.
        let due = started + Duration::from_millis(i);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let m = format!("price {i} {pad}");
        assert_eq!(
            pusher.push(json!({"userId": "keyed", "event": "price", "message": m, "key": "AAPL"})),
            200
        );
        assert_eq!(
            pusher.push(json!({"userId": "plain", "event": "price", "message": m})),
            200
        );
    }
    ticking.store(false, Ordering::SeqCst);
    let mut results = readers.into_iter().map(|r| r.join().unwrap());
    let keyed = results.next().unwrap().expect("the keyed client is never closed");
    let plain = results.next().unwrap();
    assert_eq!(
        plain.map(|got| got.len()),
        Err(4008),
        "without a key the same reader is a slow consumer"
    );
    let last = keyed.last().expect("some values arrived");
    assert!(
        last.starts_with(&format!("price {} ", n - 1)),
        "ended with {last:.20}"
    );
    assert!(
        keyed.len() < n as usize,
        "older values were replaced: {} of {n}",
        keyed.len()
    );
    // Values arrive in push order: replaced, never reordered.
    let numbers: Vec<u64> = keyed
        .iter()
        .map(|m| m.split(' ').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "out of order");
}

/// In history, a newer value with the same key replaces the older one:
/// a resume gets the latest value (in its place in push order), and the
/// unkeyed messages around it; another stream's equal key is its own.
#[test]
fn history_keeps_the_latest_value_of_each_key() {
    let server = with_history(100);
    let addr = server.addr;
    let mut ws = envelope_client(addr, "u", "e");
    let c0 = push_cursor(addr, "u", "e", "seen");
    assert_eq!(next_envelope(&mut ws)["cursor"], c0);
    drop(ws);
    let keyed = |m: &str, key: &str| {
        let body = json!({"userId": "u", "event": "e", "message": m, "key": key}).to_string();
        let r = post_with(addr, "/push", &body, &[("Accept", "application/json")]);
        assert_eq!(r.status, 200);
    };
    keyed("AAPL 1", "AAPL");
    push_cursor(addr, "u", "e", "news");
    keyed("MSFT 1", "MSFT");
    keyed("AAPL 2", "AAPL");
    let b = json!({"event": "e", "message": "AAPL (broadcast)", "key": "AAPL"}).to_string();
    assert_eq!(post(addr, "/broadcast", &b).status, 200);
    keyed("AAPL 3", "AAPL");

    let mut ws = ws_connect(addr, "/ws?envelope=1");
    assert_eq!(resume(&mut ws, "u", "e", &c0)["recovered"], true);
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next_envelope(&mut ws)["message"].as_str().unwrap().to_string());
    }
    assert_eq!(got, ["news", "MSFT 1", "AAPL (broadcast)", "AAPL 3"]);
    expect_silence(&mut ws, Duration::from_millis(200));
}
