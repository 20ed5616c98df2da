//! wspush-bench: measures a seed-protocol push server from outside.
//!
//! Scenario `idle`: opens N WebSocket connections, each registering its own
//! user (`u<i>`) for one event, with a bounded number of handshakes in
//! flight; then reads the server's RSS from /proc and reports RSS per
//! connection. Every connection is checked: its upgrade must succeed, and a
//! sample of users must receive a push.
//!
//!     wspush-bench idle --addr 127.0.0.1:12345 --conns 10000 --pid PID
//!
//! Source addresses are spread over 127.0.0.2-127.0.0.251 so ephemeral
//! ports never run out. Only loopback targets are accepted.

use socket2::{Domain, Socket, Type};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

struct Args {
    addr: SocketAddr,
    conns: usize,
    pid: Option<u32>,
    in_flight: usize,
    json: bool,
}

fn usage() -> String {
    "usage: wspush-bench idle --addr HOST:PORT [--conns N] [--pid PID] [--in-flight K] [--json]\n\
     Opens N registered connections (default 1000), K handshakes at a time (default 100),\n\
     and reports connect+register time and, with --pid, server RSS per connection."
        .to_string()
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    match it.next().as_deref() {
        Some("idle") => {}
        Some("-h") | Some("--help") | None => return Err(usage()),
        Some(other) => return Err(format!("unknown scenario {other:?}\n{}", usage())),
    }
    let mut addr = None;
    let mut a = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 12345)),
        conns: 1000,
        pid: None,
        in_flight: 100,
        json: false,
    };
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => addr = Some(val()?.parse().map_err(|e| format!("--addr: {e}"))?),
            "--conns" => a.conns = val()?.parse().map_err(|e| format!("--conns: {e}"))?,
            "--pid" => a.pid = Some(val()?.parse().map_err(|e| format!("--pid: {e}"))?),
            "--in-flight" => a.in_flight = val()?.parse().map_err(|e| format!("--in-flight: {e}"))?,
            "--json" => a.json = true,
            _ => return Err(format!("unknown option {flag}\n{}", usage())),
        }
    }
    if let Some(addr) = addr {
        a.addr = addr;
    }
    if !a.addr.ip().is_loopback() {
        return Err("only loopback targets are allowed".into());
    }
    a.in_flight = a.in_flight.max(1);
    Ok(a)
}

/// Resident set size of a process in KiB, from /proc.
fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A masked client text frame (payload < 126 bytes).
fn text_frame(payload: &str, mask: [u8; 4]) -> Vec<u8> {
    let p = payload.as_bytes();
    assert!(p.len() < 126);
    let mut f = vec![0x81, 0x80 | p.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(p.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

fn connect_from(i: usize, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    let src = SocketAddr::from(([127, 0, 0, 2 + (i % 250) as u8], 0));
    s.bind(&src.into())?;
    s.connect(&to.into())?;
    let s: TcpStream = s.into();
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

/// Reads the 101 response and the register ack that follows it.
fn read_until_ack(s: &mut TcpStream) -> Result<(), String> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        let n = s.read(&mut chunk).map_err(|e| format!("handshake read: {e}"))?;
        if n == 0 {
            return Err("closed during handshake".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                return Err(format!(
                    "upgrade refused: {}",
                    String::from_utf8_lossy(&buf[..end])
                ));
            }
            let rest = &buf[end + 4..];
            // The ack {"id":1,"ok":true} is an unmasked text frame of 18 bytes.
            if rest.len() >= 20 {
                return if &rest[2..20] == br#"{"id":1,"ok":true}"# {
                    Ok(())
                } else {
                    Err(format!("unexpected ack {:?}", String::from_utf8_lossy(rest)))
                };
            }
        }
    }
}

fn http_post(addr: SocketAddr, path: &str, body: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

fn idle(a: &Args) -> Result<(), String> {
    let rss_before = a.pid.and_then(rss_kib);
    let start = Instant::now();
    let mut conns: Vec<TcpStream> = Vec::with_capacity(a.conns);
    let mut i = 0;
    while i < a.conns {
        let batch = a.in_flight.min(a.conns - i);
        let mut wave = Vec::with_capacity(batch);
        for j in i..i + batch {
            let mut s = connect_from(j, a.addr).map_err(|e| format!("connect {j}: {e}"))?;
            let key = "dGhlIHNhbXBsZSBub25jZQ==";
            let mut req = format!(
                "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
                a.addr
            )
            .into_bytes();
            let cmd = format!(r#"{{"token":"u{j}","event":"e","id":1}}"#);
            req.extend(text_frame(&cmd, [1, 2, 3, (j % 251) as u8]));
            s.write_all(&req).map_err(|e| format!("write {j}: {e}"))?;
            wave.push(s);
        }
        for (k, s) in wave.iter_mut().enumerate() {
            read_until_ack(s).map_err(|e| format!("connection {}: {e}", i + k))?;
        }
        conns.extend(wave);
        i += batch;
    }
    let elapsed = start.elapsed();
    // Let the allocator settle and the server finish its last writes.
    std::thread::sleep(Duration::from_millis(300));
    let rss_after = a.pid.and_then(rss_kib);
    // Correctness: a sample of users must each receive exactly one push.
    let step = (a.conns / 10).max(1);
    for j in (0..a.conns).step_by(step) {
        let body = format!(r#"{{"userId":"u{j}","event":"e","message":"m{j}"}}"#);
        let resp = http_post(a.addr, "/push", &body)?;
        if resp != "message sent to 1 clients" {
            return Err(format!("push to u{j}: {resp:?}"));
        }
        let mut frame = [0u8; 64];
        let want = format!("m{j}");
        let n = conns[j]
            .read(&mut frame)
            .map_err(|e| format!("read push u{j}: {e}"))?;
        if n < 2 || &frame[2..n] != want.as_bytes() {
            return Err(format!("u{j} got {:?}", &frame[..n]));
        }
    }
    let per_conn = match (rss_before, rss_after) {
        (Some(b), Some(x)) => Some((x.saturating_sub(b)) as f64 / a.conns as f64),
        _ => None,
    };
    if a.json {
        println!(
            "{{\"scenario\":\"idle\",\"conns\":{},\"connect_register_s\":{:.3},\"rss_before_kib\":{},\"rss_after_kib\":{},\"rss_per_conn_kib\":{}}}",
            a.conns,
            elapsed.as_secs_f64(),
            rss_before.map_or("null".into(), |v| v.to_string()),
            rss_after.map_or("null".into(), |v| v.to_string()),
            per_conn.map_or("null".into(), |v| format!("{v:.3}")),
        );
    } else {
        println!("scenario              idle");
        println!("connections           {}", a.conns);
        println!(
            "connect + register    {:.3} s ({} in flight)",
            elapsed.as_secs_f64(),
            a.in_flight
        );
        if let (Some(b), Some(x), Some(p)) = (rss_before, rss_after, per_conn) {
            println!("server RSS            {b} KiB -> {x} KiB");
            println!("RSS per connection    {p:.3} KiB");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match parse(std::env::args().skip(1)).and_then(|a| idle(&a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wspush-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
