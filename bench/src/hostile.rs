//! Scenario `hostile`: does one hostile client slow everyone else down?
//! (SPEC §12: "no client can delay others".)
//!
//! A few normal clients (`calm<i>`, event `e`, registered with an id) stay
//! connected for the whole run. The run is a series of phases of
//! `--seconds` each: `quiet` (no attack) first, then one per attack
//! (`attack.rs`). During each phase two probes run at `--rate` a second:
//!
//! - healthz: `GET /healthz` on a fresh connection, as a load balancer's
//!   health check does (so a flood of sockets is felt at the accept too),
//!   timed from the probe's slot to the answer; it must be a 200.
//! - push: a push to one normal client in turn over one keep-alive
//!   connection (as a back end holds one), timed from the probe's slot to
//!   the moment the client has the message. The answer must be `message
//!   sent to 1 clients`, and each client must get its sequence numbers
//!   once and in order (a message whose probe had already failed may still
//!   come late: counted as late, not as disorder).
//!
//! Latency is taken from the time the probe was due, not from when it
//! could start: a server that stalls for 300 ms shows as 30 slow probes
//! (every probe due meanwhile waited), not as one; probes due during a
//! stall run back to back once it ends. A probe that takes longer than
//! `--probe-timeout` (2 s) fails.
//!
//! Per phase and metric: probes, failures, p50/p99/max of the successful
//! ones, and the verdict: `ok` when every probe succeeded and p99 ≤ 2 ×
//! quiet p99 + 5 ms (`slow` if not, `failed` if any probe failed). Also the
//! server's CPU over the phase (with `--pid`), the tool's own (all its
//! threads, attacks included) and what the attack did (connections,
//! hostile units sent, how the server ended its connections).
//!
//! Between phases the attack is stopped, the server gets 300 ms, then must
//! answer `/healthz` (up to 10 s) before the next phase starts. The exit
//! status is 1 only for a tool error (no normal client could connect, a
//! thread panicked) unless `--strict`, which also fails on any verdict
//! other than ok.

use crate::attack::{self, Attack, Control, Tally, Target, ATTACKS};
use crate::client::{
    connect_within, frame, parse_response, timed_out, FrameReader, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT,
};
use crate::fleet::{self, Ack, Plan};
use crate::measure::{json_string, json_strings, opt, CpuMeter, CpuUse, Latencies, Summary};
use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const USAGE: &str = "usage: wspush-bench hostile --addr HOST:PORT [--pid PID] [--seconds S]\n\
     \x20      [--attacks fragments,bytes,slowloris-bytes,http-flood,pipeline,names|none]\n\
     \x20      [--rate R] [--clients N] [--flood-sockets F] [--probe-timeout T] [--json] [--strict]\n\
     A quiet phase, then one phase per attack (default all), S seconds each (default 5).\n\
     R times a second (default 100) each: GET /healthz on a fresh connection, and a push\n\
     to one of N registered clients (default 4) on a keep-alive connection, timed until\n\
     the client has it. Per phase: probes, failures, p50/p99/max, the verdict\n\
     p99 <= 2 x quiet p99 + 5 ms (and no failed probe), server CPU with --pid, the tool's\n\
     CPU, what the attack did. http-flood holds F idle sockets (default 2000). A probe\n\
     fails after T seconds (default 2) from the time it was due.\n\
     Exits 1 on tool errors only; with --strict also unless every verdict is ok.";

const USER: &str = "calm";
const EVENT: &str = "e";
/// A probe slower than this has failed (default of `--probe-timeout`).
const PROBE_TIMEOUT: f64 = 2.0;
/// How long an attack may take to get under way; measuring starts then anyway.
const ENGAGE_LIMIT: Duration = Duration::from_secs(3);
/// Rest after an attack stops (at most a phase's length), and how long
/// the server may then take to answer a /healthz.
const SETTLE: Duration = Duration::from_millis(300);
const RECOVER_LIMIT: Duration = Duration::from_secs(10);
/// The verdict's bound: FACTOR × quiet p99 + MARGIN_MS.
const FACTOR: f64 = 2.0;
const MARGIN_MS: f64 = 5.0;
/// Distinct failure reasons kept per metric and phase; more go to "other".
const MAX_REASONS: usize = 16;
const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";

pub struct Args {
    addr: SocketAddr,
    pid: Option<u32>,
    seconds: f64,
    attacks: Vec<Attack>,
    rate: f64,
    clients: usize,
    flood_sockets: usize,
    probe_timeout: Duration,
    json: bool,
    strict: bool,
}

/// Parses the flags that follow `hostile`.
pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 12345)),
        pid: None,
        seconds: 5.0,
        attacks: ATTACKS.to_vec(),
        rate: 100.0,
        clients: 4,
        flood_sockets: 2000,
        probe_timeout: Duration::from_secs_f64(PROBE_TIMEOUT),
        json: false,
        strict: false,
    };
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => a.addr = val()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--pid" => a.pid = Some(val()?.parse().map_err(|e| format!("--pid: {e}"))?),
            "--seconds" => a.seconds = val()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--attacks" => a.attacks = parse_attacks(&val()?)?,
            "--rate" => a.rate = val()?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--clients" => a.clients = val()?.parse().map_err(|e| format!("--clients: {e}"))?,
            "--flood-sockets" => {
                a.flood_sockets = val()?.parse().map_err(|e| format!("--flood-sockets: {e}"))?
            }
            "--probe-timeout" => {
                let s: f64 = val()?.parse().map_err(|e| format!("--probe-timeout: {e}"))?;
                if !(0.05..=10.0).contains(&s) {
                    return Err("--probe-timeout must be in [0.05, 10] seconds".into());
                }
                a.probe_timeout = Duration::from_secs_f64(s);
            }
            "--json" => a.json = true,
            "--strict" => a.strict = true,
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    if !a.addr.ip().is_loopback() {
        return Err("only loopback targets are allowed".into());
    }
    if !(a.seconds >= 0.1 && a.seconds <= 600.0) {
        return Err("--seconds must be in [0.1, 600]".into());
    }
    if !(a.rate >= 1.0 && a.rate <= 1000.0) {
        return Err("--rate must be in [1, 1000]".into());
    }
    if !(1..=100).contains(&a.clients) {
        return Err("--clients must be in 1..=100".into());
    }
    // The tool's and the server's descriptor limits are 20,000 here.
    if !(1..=10_000).contains(&a.flood_sockets) {
        return Err("--flood-sockets must be in 1..=10000".into());
    }
    Ok(a)
}

fn parse_attacks(list: &str) -> Result<Vec<Attack>, String> {
    if list == "none" {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|name| {
            Attack::from_name(name.trim()).ok_or_else(|| {
                let all: Vec<&str> = ATTACKS.iter().map(|a| a.name()).collect();
                format!(
                    "--attacks: unknown attack {name:?} (attacks: {}, or none)",
                    all.join(", ")
                )
            })
        })
        .collect()
}

/// One metric's probes in one phase.
#[derive(Default)]
struct Probes {
    sent: u64,
    lat: Latencies,
    /// Failed probes by reason.
    failed: BTreeMap<String, u64>,
}

impl Probes {
    fn record(&mut self, r: Result<Duration, String>) {
        self.sent += 1;
        match r {
            Ok(d) => self.lat.push(d),
            Err(why) => self.fail(why),
        }
    }

    /// A failure that is no probe of its own (a client's disorder).
    fn fail(&mut self, why: String) {
        let key = if self.failed.len() < MAX_REASONS || self.failed.contains_key(&why) {
            why
        } else {
            "other".into()
        };
        *self.failed.entry(key).or_default() += 1;
    }

    fn finish(mut self) -> Metric {
        let ok = self.lat.0.len() as u64;
        Metric {
            sent: self.sent,
            ok,
            failed: self.failed.values().sum(),
            summary: (ok > 0).then(|| self.lat.summary()),
            reasons: self.failed,
        }
    }
}

/// A metric's figures for the report.
struct Metric {
    sent: u64,
    ok: u64,
    failed: u64,
    /// None when no probe succeeded.
    summary: Option<Summary>,
    reasons: BTreeMap<String, u64>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Verdict {
    /// The quiet phase: what the others are held to.
    Reference,
    Ok,
    Slow,
    Failed,
    /// The quiet phase had no successful probe to compare with.
    NoReference,
}

impl Verdict {
    fn name(self) -> &'static str {
        match self {
            Verdict::Reference => "reference",
            Verdict::Ok => "ok",
            Verdict::Slow => "slow",
            Verdict::Failed => "failed",
            Verdict::NoReference => "no_reference",
        }
    }

    fn human(self) -> &'static str {
        match self {
            Verdict::Slow => "SLOW",
            Verdict::Failed => "FAILED",
            Verdict::NoReference => "no reference",
            v => v.name(),
        }
    }

    fn passed(self) -> bool {
        matches!(self, Verdict::Reference | Verdict::Ok)
    }
}

/// The bound an attacked p99 is held to, from the quiet phase's metric.
fn bound_ms(quiet: &Metric) -> Option<f64> {
    quiet.summary.map(|s| FACTOR * s.p99_ms + MARGIN_MS)
}

fn judge(m: &Metric, quiet_phase: bool, bound: Option<f64>) -> Verdict {
    if m.failed > 0 || m.summary.is_none() {
        return Verdict::Failed;
    }
    if quiet_phase {
        return Verdict::Reference;
    }
    match (bound, m.summary) {
        (Some(b), Some(s)) if s.p99_ms <= b => Verdict::Ok,
        (Some(_), _) => Verdict::Slow,
        (None, _) => Verdict::NoReference,
    }
}

/// Runs `probe(k, deadline)` `rate` times a second from `t0` until `end`.
/// Each returns when it finished; its latency counts from the time it was
/// due, and it fails if not done within `timeout` of that. A probe that
/// comes up only after its deadline (earlier ones took the time) has
/// failed without being sent, so a phase ends by `end + timeout`.
fn run_schedule(
    (t0, end): (Instant, Instant),
    rate: f64,
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut(u64, Instant) -> Result<Instant, String>,
) -> Probes {
    let every = Duration::from_secs_f64(1.0 / rate);
    let mut p = Probes::default();
    for k in 0u64.. {
        let due = t0 + every.mul_f64(k as f64);
        if due >= end {
            break;
        }
        let now = Instant::now();
        if now < due {
            std::thread::sleep(due - now);
        }
        let deadline = due + timeout;
        if Instant::now() >= deadline {
            p.record(Err(format!("{what}: timeout (waited behind earlier probes)")));
            continue;
        }
        p.record(probe(k, deadline).map(|done| done.saturating_duration_since(due)));
    }
    p
}

/// One `GET /healthz` on a fresh connection from source index `i`, done
/// by `deadline`; the time the answer was whole.
fn healthz(addr: SocketAddr, i: usize, deadline: Instant) -> Result<Instant, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    let mut s = connect_within(i, addr, None, left.max(Duration::from_millis(1)))
        .map_err(|e| format!("healthz: connect: {:?}", e.kind()))?;
    s.write_all(HEALTHZ)
        .map_err(|e| format!("healthz: write: {:?}", e.kind()))?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("healthz: timeout".into());
        }
        s.set_read_timeout(Some(left))
            .map_err(|e| format!("healthz: {e}"))?;
        let n = match s.read(&mut chunk) {
            Ok(0) => return Err("healthz: closed without an answer".into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if timed_out(&e) => return Err("healthz: timeout".into()),
            Err(e) => return Err(format!("healthz: read: {:?}", e.kind())),
        };
        let at = Instant::now();
        buf.extend_from_slice(&chunk[..n]);
        if let Some(r) = parse_response(&buf).map_err(|e| format!("healthz: {e}"))? {
            return if r.status == 200 {
                Ok(at)
            } else {
                Err(format!("healthz: answered {}", r.status))
            };
        }
    }
}

/// A normal client, read by the push prober.
struct Calm {
    sock: Option<MioStream>,
    fr: FrameReader,
    /// The last sequence number pushed to it.
    sent: u64,
    /// The last one it received.
    got: u64,
}

/// The push prober's keep-alive connection.
struct PushConn {
    sock: MioStream,
    inbuf: Vec<u8>,
}

const HTTP: Token = Token(0);

/// Pushes to the normal clients in turn, one push at a time, and waits
/// for each to arrive: the push delivery metric.
struct PushProber {
    addr: SocketAddr,
    poll: Poll,
    events: Events,
    http: Option<PushConn>,
    clients: Vec<Calm>,
    turn: usize,
    /// Source address index of the next push connection.
    conns: usize,
    /// Messages that came after their probe had failed (this phase).
    late: u64,
    /// Disorder or closes seen on a client no probe was waiting for.
    problems: Vec<String>,
    buf: Vec<u8>,
}

fn calm_plan(j: usize) -> Plan {
    Plan {
        token: format!("{USER}{j}"),
        event: EVENT,
        rcvbuf: None,
    }
}

impl PushProber {
    fn new(addr: SocketAddr, n: usize) -> Result<PushProber, String> {
        let socks =
            fleet::connect_all(addr, n, n, Ack::Id, calm_plan).map_err(|e| format!("normal clients: {e}"))?;
        let poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
        let mut p = PushProber {
            addr,
            poll,
            events: Events::with_capacity(64),
            http: None,
            clients: Vec::with_capacity(n),
            turn: 0,
            conns: 0,
            late: 0,
            problems: Vec::new(),
            buf: vec![0; 64 * 1024],
        };
        for (j, s) in socks.into_iter().enumerate() {
            let sock = p.watch(s, Token(1 + j)).map_err(|e| format!("client {j}: {e}"))?;
            p.clients.push(Calm {
                sock: Some(sock),
                fr: FrameReader::default(),
                sent: 0,
                got: 0,
            });
        }
        Ok(p)
    }

    fn watch(&self, s: TcpStream, t: Token) -> io::Result<MioStream> {
        s.set_nonblocking(true)?;
        let mut m = MioStream::from_std(s);
        self.poll.registry().register(&mut m, t, Interest::READABLE)?;
        Ok(m)
    }

    /// Client `c` again, registered anew, after the server closed it.
    fn reconnect(&mut self, c: usize) -> Result<(), String> {
        let s = fleet::connect_all(self.addr, 1, 1, Ack::Id, |_| calm_plan(c))?
            .pop()
            .ok_or("no connection")?;
        let sock = self.watch(s, Token(1 + c)).map_err(|e| e.to_string())?;
        let cl = &mut self.clients[c];
        cl.sock = Some(sock);
        cl.fr = FrameReader::default();
        cl.got = cl.sent;
        Ok(())
    }

    /// One push probe, done by `deadline`: the time its message reached
    /// the client.
    fn probe(&mut self, deadline: Instant) -> Result<Instant, String> {
        let c = self.turn % self.clients.len();
        self.turn += 1;
        if self.clients[c].sock.is_none() {
            self.reconnect(c)
                .map_err(|e| format!("push: client reconnect failed: {e}"))?;
        }
        self.clients[c].sent += 1;
        let seq = self.clients[c].sent;
        let body = format!(r#"{{"userId":"{USER}{c}","event":"{EVENT}","message":"{seq}"}}"#);
        let req = format!(
            "POST /push HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let r = self.exchange(c, seq, req.as_bytes(), deadline);
        if r.is_err() {
            // An answer may still be on its way: the next probe starts clean.
            self.http = None;
        }
        r
    }

    fn exchange(&mut self, c: usize, seq: u64, req: &[u8], deadline: Instant) -> Result<Instant, String> {
        let mut retried = false;
        self.send(req, deadline)?;
        let mut answered = false;
        let mut got = None;
        loop {
            match self.read_answer() {
                Ok(None) => {}
                Ok(Some((200, b))) if b == "message sent to 1 clients" => answered = true,
                Ok(Some((status, b))) => {
                    return Err(format!("push: answered {status} {:?}", truncate(&b, 60)))
                }
                // A keep-alive connection the server closed while it was
                // idle: a client retries on a new one, and so do we (once).
                Err(_) if !retried && !answered => {
                    retried = true;
                    self.http = None;
                    self.send(req, deadline)?;
                }
                Err(e) => return Err(e),
            }
            if got.is_none() {
                got = self.read_client(c, Some(seq))?;
            }
            if answered && got.is_some() {
                return Ok(got.unwrap_or_else(Instant::now));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(if answered {
                    "push: timeout (answered, not delivered)".into()
                } else {
                    "push: timeout (no answer)".into()
                });
            }
            if let Err(e) = self
                .poll
                .poll(&mut self.events, Some(left.min(Duration::from_millis(50))))
            {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(format!("push: poll: {e}"));
                }
            }
            let others: Vec<usize> = self
                .events
                .iter()
                .filter_map(|ev| ev.token().0.checked_sub(1))
                .filter(|&j| j != c && j < self.clients.len())
                .collect();
            for j in others {
                if let Err(e) = self.read_client(j, None) {
                    self.problems.push(e);
                }
            }
        }
    }

    /// Writes a request on the keep-alive connection, opening one first
    /// if there is none.
    fn send(&mut self, mut req: &[u8], deadline: Instant) -> Result<(), String> {
        if self.http.is_none() {
            self.conns += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            let s = connect_within(self.conns, self.addr, None, left.max(Duration::from_millis(1)))
                .map_err(|e| format!("push: connect: {:?}", e.kind()))?;
            let sock = self.watch(s, HTTP).map_err(|e| format!("push: connect: {e}"))?;
            self.http = Some(PushConn {
                sock,
                inbuf: Vec::with_capacity(256),
            });
        }
        let Some(h) = &mut self.http else {
            return Err("push: no connection".into());
        };
        while !req.is_empty() {
            match (&h.sock).write(req) {
                Ok(n) => req = &req[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("push: write: {:?}", e.kind())),
            }
        }
        Ok(())
    }

    /// Reads the push connection; Some((status, body)) once an answer is
    /// whole, Err if the connection ended.
    fn read_answer(&mut self) -> Result<Option<(u16, String)>, String> {
        let Some(h) = &mut self.http else {
            return Err("push: no connection".into());
        };
        loop {
            match (&h.sock).read(&mut self.buf) {
                Ok(0) => return Err("push: connection closed without an answer".into()),
                Ok(n) => h.inbuf.extend_from_slice(&self.buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("push: read: {:?}", e.kind())),
            }
        }
        match parse_response(&h.inbuf).map_err(|e| format!("push: {e}"))? {
            Some(r) => {
                h.inbuf.drain(..r.len);
                Ok(Some((r.status, String::from_utf8_lossy(&r.body).into_owned())))
            }
            None => Ok(None),
        }
    }

    /// Reads client `j` until it is dry; the time message `awaiting`
    /// arrived, if it did. Checks that sequence numbers only go up.
    fn read_client(&mut self, j: usize, awaiting: Option<u64>) -> Result<Option<Instant>, String> {
        let cl = &mut self.clients[j];
        let Some(sock) = &cl.sock else {
            return Err(format!("push: client {j} has no connection"));
        };
        let mut arrived = None;
        loop {
            let n = match (&*sock).read(&mut self.buf) {
                Ok(0) => {
                    cl.sock = None;
                    return Err("push: client connection ended by the server".into());
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(arrived),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    cl.sock = None;
                    return Err(format!("push: client read: {:?}", e.kind()));
                }
            };
            let at = Instant::now();
            cl.fr.feed(&self.buf[..n]);
            while let Some(f) = cl.fr.next_frame()? {
                match f.opcode {
                    OP_TEXT => {
                        let seq = std::str::from_utf8(&f.payload)
                            .ok()
                            .and_then(|s| s.parse::<u64>().ok());
                        match seq {
                            Some(s) if Some(s) == awaiting && s > cl.got => {
                                cl.got = s;
                                arrived = Some(at);
                            }
                            // A message of a probe that had failed already.
                            Some(s) if s > cl.got && s < awaiting.unwrap_or(cl.sent + 1) => {
                                cl.got = s;
                                self.late += 1;
                            }
                            Some(s) => {
                                return Err(format!(
                                    "push: client {j} got message {s} after {} (duplicate or out of order)",
                                    cl.got
                                ))
                            }
                            None => return Err(format!("push: client {j} got a message that is not ours")),
                        }
                    }
                    OP_PING => {
                        // Tiny; if it cannot be written now, the server's
                        // next ping gets one.
                        let _ = (&*sock).write(&frame(OP_PONG, &f.payload, [1, 2, 3, 4]));
                    }
                    OP_CLOSE => {
                        let code = f.close_code();
                        cl.sock = None;
                        return Err(format!("push: client closed by the server ({code:?})"));
                    }
                    _ => {}
                }
            }
        }
    }

    /// Reads every client for `d`: late messages, pings.
    fn drain(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            let _ = self.poll.poll(&mut self.events, Some(Duration::from_millis(20)));
            for j in 0..self.clients.len() {
                if self.clients[j].sock.is_some() {
                    if let Err(e) = self.read_client(j, None) {
                        self.problems.push(e);
                    }
                }
            }
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Everything a phase measured.
struct Phase {
    name: &'static str,
    healthz: Metric,
    push: Metric,
    late: u64,
    cpu: CpuUse,
    tally: Option<Tally>,
    /// Things that make the phase's figures doubtful.
    notes: Vec<String>,
}

pub fn run(a: &Args) -> Result<(), String> {
    let mut prober = PushProber::new(a.addr, a.clients)?;
    let target = Target {
        addr: a.addr,
        flood_sockets: a.flood_sockets,
    };
    let secs = Duration::from_secs_f64(a.seconds);
    if !a.json {
        print_header(a);
    }
    let phases: Vec<Option<Attack>> = std::iter::once(None)
        .chain(a.attacks.iter().copied().map(Some))
        .collect();
    let mut bounds = (None, None);
    let mut not_ok = 0;
    for (n, &attack) in phases.iter().enumerate() {
        let mut notes = Vec::new();
        if n > 0 {
            if let Some(e) = settle(a.addr, secs, a.probe_timeout, &mut prober) {
                notes.push(format!(
                    "the server did not recover after the previous phase ({e})"
                ));
            }
        }
        prober.late = 0;
        prober.problems.clear();
        let ctl = Arc::new(Control::default());
        let hard_end = Instant::now() + ENGAGE_LIMIT + secs + 4 * a.probe_timeout;
        let handle = match attack {
            Some(at) => Some(
                attack::spawn(at, target, ctl.clone(), hard_end)
                    .map_err(|e| format!("spawn {}: {e}", at.name()))?,
            ),
            None => None,
        };
        if attack.is_some() && !wait_engaged(&ctl) {
            notes.push(format!("the attack was not under way after {ENGAGE_LIMIT:?}"));
        }
        let cpu = CpuMeter::start(a.pid);
        let t0 = Instant::now();
        let end = t0 + secs;
        let (addr, rate, timeout) = (a.addr, a.rate, a.probe_timeout);
        let hz = std::thread::Builder::new()
            .name("healthz".into())
            .spawn(move || {
                run_schedule((t0, end), rate, timeout, "healthz", |k, by| {
                    healthz(addr, k as usize, by)
                })
            })
            .map_err(|e| format!("spawn healthz prober: {e}"))?;
        let mut push = run_schedule((t0, end), a.rate, timeout, "push", |_, by| prober.probe(by));
        let healthz = hz.join().map_err(|_| "the healthz prober panicked")?;
        let cpu = cpu.stop_at(Instant::now());
        ctl.stop.store(true, Ordering::Release);
        let tally = match handle {
            Some(h) => Some(h.join().map_err(|_| "an attack thread panicked")?),
            None => None,
        };
        for p in prober.problems.drain(..) {
            push.fail(p);
        }
        let phase = Phase {
            name: attack.map_or("quiet", Attack::name),
            healthz: healthz.finish(),
            push: push.finish(),
            late: prober.late,
            cpu,
            tally,
            notes,
        };
        if n == 0 {
            bounds = (bound_ms(&phase.healthz), bound_ms(&phase.push));
        }
        let quiet = n == 0;
        let verdicts = (
            judge(&phase.healthz, quiet, bounds.0),
            judge(&phase.push, quiet, bounds.1),
        );
        not_ok += [verdicts.0, verdicts.1].iter().filter(|v| !v.passed()).count();
        if a.json {
            phase.json(a, bounds, verdicts);
        } else {
            phase.human(bounds, verdicts);
        }
    }
    if !a.json {
        let total = 2 * phases.len();
        println!();
        if not_ok == 0 {
            println!("result                every verdict ok ({total})");
        } else {
            println!("result                {not_ok} of {total} verdicts not ok");
        }
    }
    if a.strict && not_ok > 0 {
        return Err(format!("hostile: {not_ok} verdicts not ok (--strict)"));
    }
    Ok(())
}

fn wait_engaged(ctl: &Control) -> bool {
    let limit = Instant::now() + ENGAGE_LIMIT;
    while Instant::now() < limit {
        if ctl.engaged.load(Ordering::Acquire) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// After an attack: a rest, then the server must answer /healthz again.
/// Returns why it did not.
fn settle(addr: SocketAddr, phase: Duration, timeout: Duration, prober: &mut PushProber) -> Option<String> {
    std::thread::sleep(SETTLE.min(phase));
    let limit = Instant::now() + RECOVER_LIMIT;
    let mut last = None;
    while Instant::now() < limit {
        match healthz(addr, 0, Instant::now() + timeout) {
            Ok(_) => {
                last = None;
                break;
            }
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    prober.drain(Duration::from_millis(50));
    last
}

fn print_header(a: &Args) {
    println!("scenario              hostile");
    match a.pid {
        Some(p) => println!("target                {} (server pid {p})", a.addr),
        None => println!("target                {} (no --pid: no server CPU)", a.addr),
    }
    println!(
        "probes                {}/s each: GET /healthz on a fresh connection; a push to one of {} clients, until it arrives",
        a.rate, a.clients
    );
    let names: Vec<&str> = std::iter::once("quiet")
        .chain(a.attacks.iter().map(|x| x.name()))
        .collect();
    println!(
        "phases                {} ({} s each)",
        names.join(", "),
        a.seconds
    );
    println!(
        "verdict               p99 <= {FACTOR} x quiet p99 + {MARGIN_MS} ms, and no probe failed (timeout {:?})",
        a.probe_timeout
    );
    println!();
    println!(
        "{:<16} {:<8} {:>6} {:>6} {:>9} {:>9} {:>9} {:>9}  verdict",
        "phase", "metric", "probes", "failed", "p50 ms", "p99 ms", "max ms", "bound ms"
    );
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}

impl Phase {
    fn human(&self, bounds: (Option<f64>, Option<f64>), v: (Verdict, Verdict)) {
        let quiet = self.tally.is_none();
        let rows = [
            ("healthz", &self.healthz, bounds.0, v.0),
            ("push", &self.push, bounds.1, v.1),
        ];
        for (k, (metric, m, bound, verdict)) in rows.into_iter().enumerate() {
            let s = m.summary;
            println!(
                "{:<16} {:<8} {:>6} {:>6} {:>9} {:>9} {:>9} {:>9}  {}",
                if k == 0 { self.name } else { "" },
                metric,
                m.sent,
                m.failed,
                ms(s.map(|s| s.p50_ms)),
                ms(s.map(|s| s.p99_ms)),
                ms(s.map(|s| s.max_ms)),
                if quiet { "-".into() } else { ms(bound) },
                verdict.human()
            );
        }
        let pad = " ".repeat(17);
        let share = |s: f64| format!("{:.0} %", s * 100.0);
        let server = match self.cpu.server_s {
            Some(s) => format!("server {s:.2} s ({})", share(s / self.cpu.wall_s.max(1e-9))),
            None => "server unknown".into(),
        };
        let flag = if self.cpu.saturated() {
            " -- LOAD TOOL SATURATED: latencies include the tool's own waits"
        } else {
            ""
        };
        println!(
            "{pad}CPU: {server}, bench {:.2} s ({} of one core) over {:.2} s{flag}",
            self.cpu.bench_s,
            share(self.cpu.bench_share()),
            self.cpu.wall_s
        );
        if let Some(t) = &self.tally {
            println!(
                "{pad}attack: {} connections, {} {}, {:.1} MB sent, at most {} sockets at once; ended: {}",
                t.connections,
                t.units,
                t.unit,
                t.bytes as f64 / 1e6,
                t.peak_sockets,
                t.ends_human()
            );
            for e in t.errors.all() {
                println!("{pad}attack error: {e}");
            }
        }
        if self.late > 0 {
            println!(
                "{pad}late: {} messages arrived after their probe had failed",
                self.late
            );
        }
        for (why, n) in self.healthz.reasons.iter().chain(&self.push.reasons) {
            println!("{pad}failed: {why} ×{n}");
        }
        for note in &self.notes {
            println!("{pad}note: {note}");
        }
    }

    fn json(&self, a: &Args, bounds: (Option<f64>, Option<f64>), v: (Verdict, Verdict)) {
        let quiet = self.tally.is_none();
        let metric = |prefix: &str, m: &Metric, bound: Option<f64>, verdict: Verdict| {
            let s = m.summary;
            format!(
                "\"{prefix}_probes\":{},\"{prefix}_ok\":{},\"{prefix}_failed\":{},\"{prefix}_p50_ms\":{},\
                 \"{prefix}_p99_ms\":{},\"{prefix}_max_ms\":{},\"{prefix}_bound_ms\":{},\"{prefix}_verdict\":\"{}\"",
                m.sent,
                m.ok,
                m.failed,
                opt(s.map(|s| s.p50_ms), 3),
                opt(s.map(|s| s.p99_ms), 3),
                opt(s.map(|s| s.max_ms), 3),
                opt(bound.filter(|_| !quiet), 3),
                verdict.name()
            )
        };
        let failures: Vec<String> = self
            .healthz
            .reasons
            .iter()
            .chain(&self.push.reasons)
            .map(|(why, n)| format!("{why} ×{n}"))
            .collect();
        println!(
            "{{\"scenario\":\"hostile\",\"phase\":{},\"seconds\":{},\"rate\":{},\"clients\":{},{},{},\"push_late\":{},\
             \"server_cpu_s\":{},\"server_cpu_share\":{},\"bench_cpu_s\":{:.3},\"bench_cpu_share\":{:.3},\
             \"bench_saturated\":{},\"attack\":{},\"failures\":{},\"notes\":{}}}",
            json_string(self.name),
            a.seconds,
            a.rate,
            a.clients,
            metric("healthz", &self.healthz, bounds.0, v.0),
            metric("push", &self.push, bounds.1, v.1),
            self.late,
            opt(self.cpu.server_s, 3),
            opt(self.cpu.server_s.map(|s| s / self.cpu.wall_s.max(1e-9)), 3),
            self.cpu.bench_s,
            self.cpu.bench_share(),
            self.cpu.saturated(),
            self.tally.as_ref().map_or("null".into(), Tally::json),
            json_strings(&failures),
            json_strings(&self.notes),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(p99_ms: f64, failed: u64) -> Metric {
        Metric {
            sent: 100,
            ok: 100 - failed,
            failed,
            summary: Some(Summary {
                p50_ms: p99_ms / 2.0,
                p99_ms,
                max_ms: p99_ms * 2.0,
            }),
            reasons: BTreeMap::new(),
        }
    }

    #[test]
    fn verdict_holds_an_attacked_p99_to_twice_the_quiet_one_plus_5_ms() {
        let quiet = metric(1.0, 0);
        let bound = bound_ms(&quiet);
        assert_eq!(bound, Some(7.0));
        assert_eq!(judge(&quiet, true, bound), Verdict::Reference);
        assert_eq!(judge(&metric(7.0, 0), false, bound), Verdict::Ok);
        assert_eq!(judge(&metric(7.1, 0), false, bound), Verdict::Slow);
        // A failed probe fails the phase however fast the others were.
        assert_eq!(judge(&metric(0.5, 1), false, bound), Verdict::Failed);
        assert_eq!(judge(&metric(0.5, 0), false, None), Verdict::NoReference);
    }

    #[test]
    fn a_stall_delays_every_probe_due_during_it() {
        let t0 = Instant::now();
        let mut calls = 0;
        let window = (t0, t0 + Duration::from_millis(50));
        let p = run_schedule(window, 200.0, Duration::from_secs(1), "probe", |k, _| {
            calls += 1;
            if k == 0 {
                std::thread::sleep(Duration::from_millis(30));
            }
            Ok(Instant::now())
        });
        assert_eq!((calls, p.sent), (10, 10));
        let m = p.finish();
        // Probes 0..=5 were due within the 30 ms stall: each waited.
        let lat = m.summary.expect("samples");
        assert!(lat.p50_ms >= 4.9, "{lat:?}");
        assert!(lat.max_ms >= 29.9, "{lat:?}");
    }

    #[test]
    fn attacks_parse_by_name_and_none_means_quiet_only() {
        assert_eq!(
            parse_attacks("fragments,names").unwrap(),
            vec![Attack::Fragments, Attack::Names]
        );
        assert!(parse_attacks("none").unwrap().is_empty());
        assert!(parse_attacks("fragments,bogus").unwrap_err().contains("bogus"));
    }

    #[test]
    fn failure_reasons_stay_bounded() {
        let mut p = Probes::default();
        for k in 0..100 {
            p.record(Err(format!("reason {k}")));
        }
        let m = p.finish();
        assert_eq!(m.failed, 100);
        assert_eq!(m.reasons.len(), MAX_REASONS + 1);
        assert_eq!(m.reasons["other"], 100 - MAX_REASONS as u64);
    }
}
