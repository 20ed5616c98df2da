//! Scenario `idle`: N registered connections held open; server RSS per
//! connection, and a sample of users must each receive a push.

use crate::client::{connect_from, http_post, read_until_ack, text_frame, upgrade_request};
use crate::procfs::rss_kib;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub const USAGE: &str =
    "usage: wspush-bench idle --addr HOST:PORT [--conns N] [--pid PID] [--in-flight K] [--json]\n\
     Opens N registered connections (default 1000), K handshakes at a time (default 100),\n\
     and reports connect+register time and, with --pid, server RSS per connection.";

pub struct Args {
    addr: SocketAddr,
    conns: usize,
    pid: Option<u32>,
    in_flight: usize,
    json: bool,
}

/// Parses the flags that follow `idle`.
pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
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
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
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

pub fn run(a: &Args) -> Result<(), String> {
    let rss_before = a.pid.and_then(rss_kib);
    let start = Instant::now();
    let mut conns: Vec<TcpStream> = Vec::with_capacity(a.conns);
    let mut i = 0;
    while i < a.conns {
        let batch = a.in_flight.min(a.conns - i);
        let mut wave = Vec::with_capacity(batch);
        for j in i..i + batch {
            let mut s = connect_from(j, a.addr).map_err(|e| format!("connect {j}: {e}"))?;
            let mut req = upgrade_request(a.addr);
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
