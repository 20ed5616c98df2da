//! Scenario `pushrate`: U users (`r<i>`, event `e`) with one connection
//! each; K keep-alive HTTP connections push to them round-robin for S
//! seconds, closed loop: each HTTP connection has one request outstanding
//! and sends the next as soon as the answer came (no pipelining).
//!
//! One thread does everything through one mio `Poll`: the push connections
//! and every user's WebSocket. User u's messages are its own sequence
//! numbers `"1"`, `"2"`, ...; push connection k serves users k, k+K,
//! k+2K, ... in turn (so U ≥ K), so a push to u is always answered before
//! the next one to u is sent, and they must arrive in order. (Round-robin
//! over all users from every connection would not do: a slow answer on one
//! connection lets another reach the same user meanwhile.) Checked:
//! every answer is `200 message sent to 1 clients`, every user got exactly
//! its messages, once, in order. Reported: pushes/s (answered pushes over
//! the time from the first send to the last answer), the HTTP round trip
//! p50/p99/max, and with `--pid` the server's CPU per push (its CPU from the
//! first send until every message was received).
//!
//! `--nodes N`: the server is a `--redis` cluster of N nodes (alone, or N
//! `--reuse-port` processes on `--addr`, the kernel spreading the users and
//! the push connections over them). Its answers count nodes, not clients,
//! so registrations carry an id and wait for its ack instead of a probe,
//! and every answer must be `200 message published to N nodes`.

use crate::client::{parse_response, HttpConn, READ_TIMEOUT};
use crate::fleet::{self, Ack, Fleet, Plan};
use crate::measure::{json_strings, CpuMeter, CpuUse, Failures, Latencies, Summary};
use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub const USAGE: &str = "usage: wspush-bench pushrate --addr HOST:PORT [--users U] [--http-conns K]\n\
     \x20      [--seconds S] [--pid PID] [--in-flight F] [--nodes N] [--json]\n\
     U users (default 1000) with one connection each; K keep-alive HTTP connections\n\
     (default 4, at most U) push to them round-robin for S seconds (default 10), one\n\
     request outstanding per connection, each serving its own share of the users. Reports pushes/s, the push round trip p50/p99/max\n\
     and, with --pid, server CPU per push. Exits 1 unless every answer was \"message sent\n\
     to 1 clients\" and every user got exactly its messages, in order.\n\
     --nodes N: a --redis cluster of N nodes (N --reuse-port nodes on --addr); every\n\
     answer must be \"message published to N nodes\".";

const EVENT: &str = "e";
/// How long the users may take to receive the last pushes.
const CATCH_UP: Duration = Duration::from_secs(10);

pub struct Args {
    addr: SocketAddr,
    users: usize,
    http_conns: usize,
    seconds: f64,
    pid: Option<u32>,
    in_flight: usize,
    /// Cluster mode: the nodes every push must be published to.
    nodes: Option<u32>,
    json: bool,
}

/// Parses the flags that follow `pushrate`.
pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 12345)),
        users: 1000,
        http_conns: 4,
        seconds: 10.0,
        pid: None,
        in_flight: 100,
        nodes: None,
        json: false,
    };
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => a.addr = val()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--users" => a.users = val()?.parse().map_err(|e| format!("--users: {e}"))?,
            "--http-conns" => a.http_conns = val()?.parse().map_err(|e| format!("--http-conns: {e}"))?,
            "--seconds" => a.seconds = val()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--pid" => a.pid = Some(val()?.parse().map_err(|e| format!("--pid: {e}"))?),
            "--in-flight" => a.in_flight = val()?.parse().map_err(|e| format!("--in-flight: {e}"))?,
            "--nodes" => a.nodes = Some(val()?.parse().map_err(|e| format!("--nodes: {e}"))?),
            "--json" => a.json = true,
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    if !a.addr.ip().is_loopback() {
        return Err("only loopback targets are allowed".into());
    }
    if a.nodes == Some(0) {
        return Err("--nodes must be at least 1".into());
    }
    if !(1..=20_000).contains(&a.users) {
        return Err("--users must be in 1..=20000".into());
    }
    if !(1..=64).contains(&a.http_conns) || a.http_conns > a.users {
        return Err("--http-conns must be in 1..=64 and at most --users (each serves its own users)".into());
    }
    if !(a.seconds > 0.0 && a.seconds <= 600.0) {
        return Err("--seconds must be in (0, 600]".into());
    }
    Ok(a)
}

/// One keep-alive push connection, one request outstanding at most; it
/// pushes to users `first`, `first + stride`, ... in turn.
struct Pusher {
    first: usize,
    stride: usize,
    /// Pushes sent so far.
    count: usize,
    sock: MioStream,
    out: Vec<u8>,
    out_pos: usize,
    inbuf: Vec<u8>,
    sent_at: Option<Instant>,
}

impl Pusher {
    fn connect(addr: SocketAddr, first: usize, stride: usize) -> Result<Pusher, String> {
        let s = TcpStream::connect_timeout(&addr, READ_TIMEOUT).map_err(|e| format!("push connect: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(Pusher {
            first,
            stride,
            count: 0,
            sock: MioStream::from_std(s),
            out: Vec::with_capacity(256),
            out_pos: 0,
            inbuf: Vec::with_capacity(1024),
            sent_at: None,
        })
    }

    /// The user of this connection's next push, among `users`.
    fn next_user(&self, users: usize) -> usize {
        let share = (users - self.first).div_ceil(self.stride);
        self.first + self.stride * (self.count % share)
    }

    /// Sends a push of `message` to `user`.
    fn send(&mut self, user: usize, message: u32, now: Instant) -> Result<(), String> {
        let body = format!(r#"{{"userId":"r{user}","event":"{EVENT}","message":"{message}"}}"#);
        self.out.clear();
        self.out_pos = 0;
        write!(
            self.out,
            "POST /push HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("write to a Vec");
        self.sent_at = Some(now);
        self.flush()
    }

    fn flush(&mut self) -> Result<(), String> {
        while self.out_pos < self.out.len() {
            match (&self.sock).write(&self.out[self.out_pos..]) {
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("push write: {e}")),
            }
        }
        Ok(())
    }

    /// Reads what arrived; once the answer is whole, checks that it is
    /// `200 <want>` and returns the round trip.
    fn readable(&mut self, want: &[u8]) -> Result<Option<Duration>, String> {
        self.flush()?;
        let mut chunk = [0u8; 4096];
        loop {
            match (&self.sock).read(&mut chunk) {
                Ok(0) => return Err("push connection closed by the server".into()),
                Ok(n) => {
                    self.inbuf.extend_from_slice(&chunk[..n]);
                    if n < chunk.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("push read: {e}")),
            }
        }
        let Some(r) = parse_response(&self.inbuf)? else {
            return Ok(None);
        };
        let Some(sent) = self.sent_at.take() else {
            return Err("an answer to no request".into());
        };
        let body = &r.body[..];
        if r.status != 200 || body != want {
            return Err(format!(
                "push answered {} {:?}, expected 200 {:?}",
                r.status,
                String::from_utf8_lossy(body),
                String::from_utf8_lossy(want)
            ));
        }
        self.inbuf.drain(..r.len);
        Ok(Some(sent.elapsed()))
    }
}

pub fn run(a: &Args) -> Result<(), String> {
    let t0 = Instant::now();
    let ack = if a.nodes.is_some() { Ack::Id } else { Ack::None };
    let socks = fleet::connect_all(a.addr, a.users, a.in_flight, ack, |j| Plan {
        token: format!("r{j}"),
        event: EVENT,
        rcvbuf: None,
    })?;
    let connect_s = t0.elapsed().as_secs_f64();

    let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    let mut fleet = Fleet::new(socks, poll.registry(), 0).map_err(|e| format!("register sockets: {e}"))?;
    let u = a.users;
    // Registrations, confirmed with one probe each (read below), unless
    // acknowledged already.
    let mut probes = 0;
    if a.nodes.is_none() {
        let mut http = HttpConn::connect(a.addr)?;
        for j in 0..u {
            probes += fleet::probe(
                &mut http,
                &format!("r{j}"),
                EVENT,
                "probe",
                1,
                Duration::from_secs(5),
            )?
            .iter()
            .sum::<usize>();
        }
    }
    let mut pushers = Vec::with_capacity(a.http_conns);
    for k in 0..a.http_conns {
        let mut p = Pusher::connect(a.addr, k, a.http_conns)?;
        poll.registry()
            .register(&mut p.sock, Token(u + k), Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| format!("register push connection: {e}"))?;
        pushers.push(p);
    }

    let mut st = State {
        last: vec![0; u],
        sent: vec![0; u],
        probes_read: 0,
        delivered: 0,
        failures: Failures::default(),
    };
    let mut events = Events::with_capacity(1024);
    // Read the probes before anything is measured.
    let deadline = Instant::now() + Duration::from_secs(10);
    while st.probes_read < probes && Instant::now() < deadline && st.failures.is_empty() {
        poll_once(&mut poll, &mut events)?;
        for ev in events.iter() {
            st.read_user(&mut fleet, ev.token());
        }
    }
    if st.probes_read < probes {
        return Err(format!(
            "only {} of {probes} probe messages arrived",
            st.probes_read
        ));
    }

    // The measured phase.
    let want = match a.nodes {
        Some(nodes) => format!("message published to {nodes} nodes"),
        None => "message sent to 1 clients".to_string(),
    };
    let want = want.as_bytes();
    let mut rtt = Latencies::with_capacity(((a.seconds * 100_000.0) as usize).min(2_000_000));
    let cpu = CpuMeter::start(a.pid);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(a.seconds);
    let mut outstanding = 0;
    let mut answered: u64 = 0;
    for p in &mut pushers {
        if st.push(p, Instant::now()) {
            outstanding += 1;
        }
    }
    let mut last_answer = start;
    while outstanding > 0 {
        poll_once(&mut poll, &mut events)?;
        if events.is_empty() && last_answer.elapsed() > READ_TIMEOUT {
            st.failures.add(format!("no answer within {READ_TIMEOUT:?}"));
            break;
        }
        for ev in events.iter() {
            let t = ev.token();
            if fleet.owns(t) {
                st.read_user(&mut fleet, t);
                continue;
            }
            let p = &mut pushers[t.0 - u];
            match p.readable(want) {
                Ok(None) => {}
                Ok(Some(took)) => {
                    rtt.push(took);
                    answered += 1;
                    outstanding -= 1;
                    last_answer = Instant::now();
                    if last_answer < end && st.failures.is_empty() && st.push(p, last_answer) {
                        outstanding += 1;
                    }
                }
                Err(e) => {
                    st.failures.add(e);
                    outstanding -= 1;
                }
            }
        }
    }
    // Every user must get what was pushed to it.
    let pushed: u64 = st.sent.iter().map(|&s| s as u64).sum();
    let deadline = Instant::now() + CATCH_UP;
    while st.delivered < pushed && Instant::now() < deadline && st.failures.is_empty() {
        poll_once(&mut poll, &mut events)?;
        for ev in events.iter() {
            st.read_user(&mut fleet, ev.token());
        }
    }
    let cpu = cpu.stop_at(Instant::now());
    let short = (0..u).filter(|&j| st.last[j] != st.sent[j]).count();
    if short > 0 {
        let j = (0..u).position(|j| st.last[j] != st.sent[j]).unwrap_or(0);
        st.failures.add(format!(
            "{short} users did not get all their pushes in order (r{j}: {} of {})",
            st.last[j], st.sent[j]
        ));
    }
    let r = Report {
        a,
        connect_s,
        probes,
        answered,
        delivered: st.delivered,
        run_s: last_answer.duration_since(start).as_secs_f64(),
        rtt: rtt.summary(),
        cpu,
        failures: &st.failures,
    };
    if a.json {
        r.json();
    } else {
        r.human();
    }
    st.failures.result("pushrate")
}

fn poll_once(poll: &mut Poll, events: &mut Events) -> Result<(), String> {
    match poll.poll(events, Some(Duration::from_millis(100))) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            events.clear();
            Ok(())
        }
        Err(e) => Err(format!("poll: {e}")),
    }
}

/// The users' side of the books.
struct State {
    /// Per user: the last sequence number received in order.
    last: Vec<u32>,
    /// Per user: the last sequence number pushed.
    sent: Vec<u32>,
    probes_read: usize,
    delivered: u64,
    failures: Failures,
}

impl State {
    /// Sends `p`'s next push; false if it could not be sent.
    fn push(&mut self, p: &mut Pusher, now: Instant) -> bool {
        let user = p.next_user(self.sent.len());
        p.count += 1;
        self.sent[user] += 1;
        match p.send(user, self.sent[user], now) {
            Ok(()) => true,
            Err(e) => {
                self.sent[user] -= 1;
                self.failures.add(e);
                false
            }
        }
    }

    /// Reads user connection `t` (no-op for another token).
    fn read_user(&mut self, fleet: &mut Fleet, t: Token) {
        if !fleet.owns(t) {
            return;
        }
        let r = fleet.readable(t, |j, payload, _| {
            if payload == b"probe" && self.last[j] == 0 {
                self.probes_read += 1;
                return;
            }
            let seq = std::str::from_utf8(payload)
                .ok()
                .and_then(|s| s.parse::<u32>().ok());
            match seq {
                Some(s) if s == self.last[j] + 1 => {
                    self.last[j] = s;
                    self.delivered += 1;
                }
                Some(s) => {
                    self.failures
                        .add(format!("r{j}: message {s} after {}", self.last[j]));
                    self.last[j] = s.max(self.last[j]);
                }
                None => self.failures.add(format!(
                    "r{j}: unexpected message {:?}",
                    String::from_utf8_lossy(payload)
                )),
            }
        });
        if let Err(e) = r {
            self.failures.add(e);
        }
    }
}

struct Report<'a> {
    a: &'a Args,
    connect_s: f64,
    probes: usize,
    answered: u64,
    delivered: u64,
    run_s: f64,
    rtt: Summary,
    cpu: CpuUse,
    failures: &'a Failures,
}

impl Report<'_> {
    fn rate(&self) -> f64 {
        self.answered as f64 / self.run_s.max(1e-9)
    }

    fn human(&self) {
        let a = self.a;
        println!("scenario              pushrate");
        if let Some(nodes) = a.nodes {
            println!("cluster               {nodes} nodes, answers \"published to {nodes} nodes\"");
        }
        println!(
            "users                 {} ({:.3} s to connect, {} in flight; {} probe messages)",
            a.users, self.connect_s, a.in_flight, self.probes
        );
        println!(
            "push connections      {} keep-alive, one request outstanding each",
            a.http_conns
        );
        println!(
            "pushes                {} answered in {:.3} s, {} messages received",
            self.answered, self.run_s, self.delivered
        );
        println!("pushes/s              {:.0}", self.rate());
        println!("push round trip       {}", self.rtt.human());
        self.cpu.print("push", self.answered);
        self.failures.print();
    }

    fn json(&self) {
        let a = self.a;
        println!(
            "{{\"scenario\":\"pushrate\",\"nodes\":{},\"ok\":{},\"users\":{},\"http_conns\":{},\"seconds\":{},\
             \"pushes\":{},\"delivered\":{},\"connect_s\":{:.3},\"run_s\":{:.3},\"pushes_per_s\":{:.0},{},{},\
             \"failures\":{}}}",
            a.nodes.map_or("null".to_string(), |n| n.to_string()),
            self.failures.is_empty(),
            a.users,
            a.http_conns,
            a.seconds,
            self.answered,
            self.delivered,
            self.connect_s,
            self.run_s,
            self.rate(),
            self.rtt.json("push_rtt"),
            self.cpu.json(self.answered),
            json_strings(&self.failures.all()),
        );
    }
}
