//! Scenario `fanout`: one user (`fan`) with N connections on one event, M
//! sequential pushes to it (push k+1 is sent once push k's response came),
//! every connection read by one mio thread. The connections are
//! WebSockets, or with `--transport sse` SSE streams (`GET /sse`), read
//! and checked the same way, so the two transports compare in one run.
//!
//! Each message is `"<k> <t>"`, t the push's send time in nanoseconds since
//! the run began; a message's latency is its receive time minus t. Checked:
//! every push answered `message sent to N clients`, every connection got
//! 1..=M exactly once and in order. Reported: messages per second (N×M over
//! the time from the first push's send to the last message's receipt),
//! latency p50/p99/max, and with `--pid` the server's CPU per message.
//!
//! Registrations are sent without an id (the peers have no id replies) and
//! confirmed by probe pushes (`"probe"`) until the answer counts all N; the
//! probes are read (and counted) before the measured pushes start.
//!
//! Cluster mode (`--also B`): half the connections go to node B, pushes go
//! to `--addr` and travel through Redis. A cluster push answers `message
//! published to 2 nodes`, which counts no clients, so registrations carry
//! an id and each waits for its ack instead of probes (an SSE stream's ack
//! is its `200` and first chunk).
//!
//! `--nodes N` without `--also`: `--addr` is one port shared by N nodes of
//! a cluster (`--reuse-port --redis`), the kernel spreading the
//! connections over them; registrations are acknowledged as above and
//! every push must answer `message published to N nodes` (N = 1: one node
//! with `--redis`).

use crate::client::HttpConn;
use crate::fleet::{self, Ack, Fleet, Plan, Transport};
use crate::measure::{json_strings, CpuMeter, CpuUse, Failures, Latencies, Summary};
use mio::{Events, Poll};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const USAGE: &str = "usage: wspush-bench fanout --addr HOST:PORT [--conns N] [--pushes M] [--pid PID]\n\
     \x20      [--in-flight K] [--also HOST:PORT] [--nodes N] [--transport ws|sse] [--json]\n\
     --transport sse: the connections are SSE streams (GET /sse), each push one event.\n\
     --also: a second wspush node of the same --redis cluster; half the connections go\n\
     there and every push must answer \"message published to 2 nodes\".\n\
     --nodes N: the server is a --redis cluster of N nodes (alone: N --reuse-port nodes\n\
     on --addr); every push must answer \"message published to N nodes\".\n\
     One user with N connections (default 1000, at most 20000) on one event; M sequential\n\
     pushes (default 200) to it. Reports messages/s, per-message latency p50/p99/max and,\n\
     with --pid, server CPU per delivered message. Exits 1 unless every connection got\n\
     every push exactly once, in order, and every push answered \"message sent to N clients\".";

const USER: &str = "fan";
const EVENT: &str = "e";
/// How long the connections may take to receive the last push.
const CATCH_UP: Duration = Duration::from_secs(30);
/// How long registrations may take to show (and their probes to arrive).
const REGISTER_LIMIT: Duration = Duration::from_secs(10);

pub struct Args {
    addr: SocketAddr,
    conns: usize,
    pushes: u32,
    pid: Option<u32>,
    in_flight: usize,
    also: Option<SocketAddr>,
    /// Cluster mode: the nodes every push must be published to.
    nodes: Option<u32>,
    transport: Transport,
    json: bool,
}

/// Parses the flags that follow `fanout`.
pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 12345)),
        conns: 1000,
        pushes: 200,
        pid: None,
        in_flight: 100,
        also: None,
        nodes: None,
        transport: Transport::Ws,
        json: false,
    };
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => a.addr = val()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--conns" => a.conns = val()?.parse().map_err(|e| format!("--conns: {e}"))?,
            "--pushes" => a.pushes = val()?.parse().map_err(|e| format!("--pushes: {e}"))?,
            "--pid" => a.pid = Some(val()?.parse().map_err(|e| format!("--pid: {e}"))?),
            "--in-flight" => a.in_flight = val()?.parse().map_err(|e| format!("--in-flight: {e}"))?,
            "--also" => a.also = Some(val()?.parse().map_err(|e| format!("--also: {e}"))?),
            "--nodes" => a.nodes = Some(val()?.parse().map_err(|e| format!("--nodes: {e}"))?),
            "--transport" => a.transport = Transport::parse(&val()?)?,
            "--json" => a.json = true,
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    if !a.addr.ip().is_loopback() || a.also.is_some_and(|b| !b.ip().is_loopback()) {
        return Err("only loopback targets are allowed".into());
    }
    if a.also.is_some() {
        a.nodes = a.nodes.or(Some(2));
    }
    if a.nodes == Some(0) {
        return Err("--nodes must be at least 1".into());
    }
    if !(1..=20_000).contains(&a.conns) {
        return Err("--conns must be in 1..=20000".into());
    }
    if !(1..=10_000).contains(&a.pushes) {
        return Err("--pushes must be in 1..=10000".into());
    }
    if a.conns as u64 * a.pushes as u64 > 20_000_000 {
        return Err("--conns × --pushes must be at most 20000000".into());
    }
    Ok(a)
}

/// What the reader thread saw.
struct Received {
    /// Per connection: the last push number received in order.
    last: Vec<u32>,
    latencies: Latencies,
    /// Receive time of the last measured message.
    last_at: Option<Instant>,
    messages: u64,
    failures: Failures,
}

/// Shared between the pusher (main thread) and the reader thread.
struct Shared {
    probes_read: AtomicU64,
    stop: AtomicBool,
}

pub fn run(a: &Args) -> Result<(), String> {
    let base = Instant::now();
    let plan = |_| Plan {
        token: USER.into(),
        event: EVENT,
        rcvbuf: None,
    };
    let connect = |to, n, ack| match a.transport {
        Transport::Ws => fleet::connect_all(to, n, a.in_flight, ack, plan),
        Transport::Sse => fleet::connect_sse(to, n, a.in_flight, plan),
    };
    let socks = match a.also {
        None if a.nodes.is_some() => connect(a.addr, a.conns, Ack::Id)?,
        None => connect(a.addr, a.conns, Ack::None)?,
        Some(b) => {
            let on_b = a.conns / 2;
            let mut socks = connect(a.addr, a.conns - on_b, Ack::Id)?;
            socks.extend(connect(b, on_b, Ack::Id)?);
            socks
        }
    };
    let connect_s = base.elapsed().as_secs_f64();

    let poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    let fleet = match a.transport {
        Transport::Ws => Fleet::new(socks, poll.registry(), 0),
        Transport::Sse => Fleet::new_sse(socks, poll.registry(), 0, EVENT),
    }
    .map_err(|e| format!("register sockets: {e}"))?;
    let shared = Arc::new(Shared {
        probes_read: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let (n, m) = (a.conns, a.pushes);
    let reader = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("reader".into())
            .spawn(move || read_all(poll, fleet, m, base, &shared))
            .map_err(|e| format!("spawn reader: {e}"))?
    };
    let stop_reader = |shared: &Shared| shared.stop.store(true, Ordering::Release);

    let mut http = HttpConn::connect(a.addr)?;
    let probed = match a.nodes {
        // Every registration was acknowledged: nothing to probe.
        Some(_) => Ok(0),
        None => fleet::probe(&mut http, USER, EVENT, "probe", n, REGISTER_LIMIT).map(|c| c.iter().sum()),
    };
    let probes: usize = match probed {
        Ok(p) => p,
        Err(e) => {
            stop_reader(&shared);
            let _ = reader.join();
            return Err(e);
        }
    };
    let deadline = Instant::now() + REGISTER_LIMIT;
    while shared.probes_read.load(Ordering::Acquire) < probes as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let probes_read = shared.probes_read.load(Ordering::Acquire);
    if probes_read < probes as u64 {
        stop_reader(&shared);
        let got = reader.join().map_err(|_| "the reader thread panicked")?;
        let why = got.failures.all().join("; ");
        return Err(format!(
            "only {probes_read} of {probes} probe messages arrived {why}"
        ));
    }

    // The measured phase.
    let want = match a.nodes {
        Some(nodes) => format!("message published to {nodes} nodes"),
        None => format!("message sent to {n} clients"),
    };
    let mut failures = Failures::default();
    let mut rtt = Latencies::with_capacity(m as usize);
    let cpu = CpuMeter::start(a.pid);
    let first_send = Instant::now();
    let mut answered = 0;
    for k in 1..=m {
        let t = Instant::now();
        let body = format!(
            r#"{{"userId":"{USER}","event":"{EVENT}","message":"{k} {}"}}"#,
            t.duration_since(base).as_nanos()
        );
        match http.post("/push", &body) {
            Ok((200, b)) if b == want => answered = k,
            Ok((status, b)) => {
                failures.add(format!("push {k} answered {status} {b:?}, expected 200 {want:?}"));
                break;
            }
            Err(e) => {
                failures.add(format!("push {k}: {e}"));
                break;
            }
        }
        rtt.push(t.elapsed());
    }
    let pushed_at = Instant::now();
    while !reader.is_finished() && pushed_at.elapsed() < CATCH_UP && answered == m {
        std::thread::sleep(Duration::from_millis(2));
    }
    stop_reader(&shared);
    let mut got = reader.join().map_err(|_| "the reader thread panicked")?;
    let end = got.last_at.unwrap_or(pushed_at).max(first_send);
    let cpu = cpu.stop_at(end);

    for f in got.failures.all() {
        failures.add(f);
    }
    let short = got.last.iter().filter(|&&l| l != answered).count();
    if short > 0 {
        let first = got.last.iter().position(|&l| l != answered).unwrap_or(0);
        failures.add(format!(
            "{short} connections did not get all {answered} answered pushes in order \
             (connection {first} stopped at {})",
            got.last[first]
        ));
    }
    if answered < m {
        failures.add(format!("only {answered} of {m} pushes answered"));
    }
    let r = Report {
        a,
        connect_s,
        probes,
        messages: got.messages,
        run_s: end.duration_since(first_send).as_secs_f64(),
        latency: got.latencies.summary(),
        rtt: rtt.summary(),
        cpu,
        failures: &failures,
    };
    if a.json {
        r.json();
    } else {
        r.human();
    }
    failures.result("fanout")
}

/// The reader thread: every connection, until each has all `m` pushes or
/// it is told to stop.
fn read_all(mut poll: Poll, mut fleet: Fleet, m: u32, base: Instant, shared: &Shared) -> Received {
    let n = fleet.len();
    let mut got = Received {
        last: vec![0; n],
        latencies: Latencies::with_capacity(n * m as usize),
        last_at: None,
        messages: 0,
        failures: Failures::default(),
    };
    let mut complete = 0;
    let mut events = Events::with_capacity(1024);
    while complete < n && !shared.stop.load(Ordering::Acquire) {
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(50))) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                got.failures.add(format!("poll: {e}"));
                return got;
            }
        }
        for ev in events.iter() {
            let r = fleet.readable(ev.token(), |i, payload, at| {
                let last = &mut got.last[i];
                if payload == b"probe" && *last == 0 {
                    shared.probes_read.fetch_add(1, Ordering::Release);
                    return;
                }
                let Some((k, sent)) = parse_message(payload) else {
                    got.failures.add(format!(
                        "connection {i}: unexpected message {:?}",
                        String::from_utf8_lossy(payload)
                    ));
                    return;
                };
                if k != *last + 1 {
                    got.failures
                        .add(format!("connection {i}: push {k} after push {}", *last));
                }
                *last = k.max(*last);
                got.messages += 1;
                got.latencies.push(at.saturating_duration_since(base + sent));
                if k == m {
                    complete += 1;
                    got.last_at = Some(at);
                }
            });
            if let Err(e) = r {
                got.failures.add(e);
                return got;
            }
        }
    }
    got
}

/// `"<k> <nanoseconds>"`.
fn parse_message(p: &[u8]) -> Option<(u32, Duration)> {
    let s = std::str::from_utf8(p).ok()?;
    let (k, t) = s.split_once(' ')?;
    Some((k.parse().ok()?, Duration::from_nanos(t.parse().ok()?)))
}

struct Report<'a> {
    a: &'a Args,
    connect_s: f64,
    probes: usize,
    messages: u64,
    run_s: f64,
    latency: Summary,
    rtt: Summary,
    cpu: CpuUse,
    failures: &'a Failures,
}

impl Report<'_> {
    fn rate(&self) -> f64 {
        self.messages as f64 / self.run_s.max(1e-9)
    }

    fn human(&self) {
        let a = self.a;
        println!("scenario              fanout");
        match (a.also, a.nodes) {
            (Some(b), _) => println!(
                "cluster               pushes to {}, half the clients on {b}",
                a.addr
            ),
            (None, Some(nodes)) => println!(
                "cluster               {nodes} nodes on {}, pushes and clients spread by the kernel",
                a.addr
            ),
            (None, None) => {}
        }
        println!(
            "connections           {} {} of user {USER} ({:.3} s to connect, {} in flight; {} probe messages)",
            a.conns,
            match a.transport {
                Transport::Ws => "WebSockets",
                Transport::Sse => "SSE streams",
            },
            self.connect_s,
            a.in_flight,
            self.probes
        );
        println!(
            "pushes                {} sequential, {} messages received",
            a.pushes, self.messages
        );
        println!(
            "run                   {:.3} s (first push to last message)",
            self.run_s
        );
        println!("messages/s            {:.0}", self.rate());
        println!("latency               {}", self.latency.human());
        println!("push round trip       {}", self.rtt.human());
        self.cpu.print("message", self.messages);
        self.failures.print();
    }

    fn json(&self) {
        let a = self.a;
        println!(
            "{{\"scenario\":\"fanout\",\"transport\":\"{}\",\"cluster\":{},\"ok\":{},\"conns\":{},\"pushes\":{},\"messages\":{},\
             \"connect_s\":{:.3},\"run_s\":{:.3},\"msgs_per_s\":{:.0},{},{},{},\"failures\":{}}}",
            a.transport.name(),
            a.nodes.is_some(),
            self.failures.is_empty(),
            a.conns,
            a.pushes,
            self.messages,
            self.connect_s,
            self.run_s,
            self.rate(),
            self.latency.json("latency"),
            self.rtt.json("push_rtt"),
            self.cpu.json(self.messages),
            json_strings(&self.failures.all()),
        );
    }
}
