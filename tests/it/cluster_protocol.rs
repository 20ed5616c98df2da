//! Cluster mode against a scripted fake Redis: replies a real Redis never
//! sends (garbage, errors, absurd sizes) end the link and are retried with
//! backoff; the node keeps serving and never crashes.
use crate::common::*;
use crate::redis_harness::wait_up;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Reads one RESP command (an array of bulk strings) from a client.
fn read_command(r: &mut BufReader<TcpStream>) -> Option<Vec<String>> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let n: usize = line.trim().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        line.clear();
        r.read_line(&mut line).ok()?;
        let len: usize = line.trim().strip_prefix('$')?.parse().ok()?;
        let mut buf = vec![0; len + 2];
        r.read_exact(&mut buf).ok()?;
        buf.truncate(len);
        args.push(String::from_utf8_lossy(&buf).into_owned());
    }
    Some(args)
}

/// A fake Redis: logs in every connection properly, then answers each
/// PUBLISH with `on_publish(nth publish overall)`. Returns its address and
/// the number of connections it accepted.
fn fake_redis(
    on_publish: impl Fn(usize) -> Vec<u8> + Send + Sync + 'static,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let publishes = Arc::new(AtomicUsize::new(0));
    let on_publish = Arc::new(on_publish);
    let count = accepted.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { return };
            count.fetch_add(1, Ordering::SeqCst);
            let (on_publish, publishes) = (on_publish.clone(), publishes.clone());
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                while let Some(cmd) = read_command(&mut r) {
                    let reply = match cmd[0].to_ascii_uppercase().as_str() {
                        "PING" => b"+PONG\r\n".to_vec(),
                        "SUBSCRIBE" => format!(
                            "*3\r\n$9\r\nsubscribe\r\n${}\r\n{}\r\n:1\r\n",
                            cmd[1].len(),
                            cmd[1]
                        )
                        .into_bytes(),
                        "PUBLISH" => on_publish(publishes.fetch_add(1, Ordering::SeqCst)),
                        _ => b"-ERR unknown command\r\n".to_vec(),
                    };
                    if w.write_all(&reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// A fake whose first PUBLISH gets `first` and every later one `:{later}`.
fn first_publish_gets(first: &'static [u8], later: u32) -> (SocketAddr, Arc<AtomicUsize>) {
    fake_redis(move |n| {
        if n == 0 {
            first.to_vec()
        } else {
            format!(":{later}\r\n").into_bytes()
        }
    })
}

/// The first push fails with 503, the link comes back, the next push works.
#[track_caller]
fn a_bad_reply_costs_one_push(first: &'static [u8]) {
    let (redis, _) = first_publish_gets(first, 1);
    let a = node_at(redis);
    assert_eq!(push(a.addr, "u", "e", "m").status, 503);
    wait_up(a.addr);
    assert_eq!(push(a.addr, "u", "e", "m").status, 200);
}

fn node_at(addr: SocketAddr) -> TestServer {
    let url = wspush::RedisUrl::parse(&format!("redis://{addr}")).unwrap();
    let n = start_with(|b| b.configure(|c| c.redis = Some(url)));
    wait_up(n.addr);
    n
}

#[test]
fn garbage_in_reply_to_a_publish_ends_the_link_and_it_reconnects() {
    // The first publish gets garbage, later ones a proper count.
    let (redis, accepted) = first_publish_gets(b"!garbage\r\n", 3);
    let a = node_at(redis);
    let r = push(a.addr, "u", "e", "m");
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, "redis did not acknowledge the push")
    );
    wait_up(a.addr);
    let r = push(a.addr, "u", "e", "m");
    assert_eq!((r.status, r.body.as_str()), (200, "message published to 3 nodes"));
    assert!(
        accepted.load(Ordering::SeqCst) >= 3,
        "the publishing link reconnected"
    );
    assert_eq!(metric(a.addr, "wspush_redis_reconnects_total"), 1);
}

#[test]
fn an_error_reply_to_a_publish_is_a_503_and_the_link_stays() {
    let (redis, accepted) =
        first_publish_gets(b"-OOM command not allowed when used memory > 'maxmemory'\r\n", 1);
    let a = node_at(redis);
    let r = push(a.addr, "u", "e", "m");
    assert_eq!(r.status, 503);
    assert_eq!(
        get(a.addr, "/healthz").status,
        200,
        "an error reply is not an outage"
    );
    assert_eq!(push(a.addr, "u", "e", "m").status, 200);
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "no reconnect was needed");
    assert_eq!(metric(a.addr, "wspush_redis_publish_failures_total"), 1);
}

#[test]
fn an_absurd_reply_size_is_refused_before_it_is_read() {
    // A bulk header claiming 100 GB: refused at the header, link reset.
    a_bad_reply_costs_one_push(b"$100000000000\r\n");
}

#[test]
fn an_unexpected_reply_type_is_a_protocol_error() {
    // A bulk string where an integer belongs.
    a_bad_reply_costs_one_push(b"$2\r\nhi\r\n");
}

#[test]
fn a_redis_that_accepts_but_never_answers_keeps_the_node_down() {
    // Accepts connections and reads, never writes: the login times out.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let url = wspush::RedisUrl::parse(&format!("redis://{addr}")).unwrap();
    let a = start_with(|b| {
        b.configure(|c| {
            c.redis = Some(url);
            c.redis_timeout = Duration::from_millis(300);
        })
    });
    std::thread::sleep(Duration::from_millis(700));
    let h = get(a.addr, "/healthz");
    assert_eq!((h.status, h.body.as_str()), (503, "redis unavailable"));
    assert_eq!(push(a.addr, "u", "e", "m").status, 503);
    // Local things still work.
    let mut ws = ws_connect(a.addr, "/ws");
    register(&mut ws, "u", "e");
}
