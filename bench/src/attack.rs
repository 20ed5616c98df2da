//! The attacks of scenario `hostile` (`hostile.rs`). Each is one hostile
//! peer, or the few sockets the attack needs, on loopback, run by one
//! thread until told to stop (and never past a hard deadline). Every
//! blocking call has a short timeout, so the stop flag is seen within
//! about 100 ms.
//!
//! Pacing: the streaming attacks (`fragments`, `bytes`, `pipeline`) write
//! as fast as the socket takes bytes, in large buffers, so the tool spends
//! little CPU per byte the server must handle and waits whenever the
//! server stops reading. What costs the tool a syscall per unit of server
//! work (a new connection, a one-byte packet) is capped by a rate instead:
//! reconnects after the server closes an attacker, replacement flood
//! sockets, trickled bytes. The caps are constants below.
//!
//! When the server ends an attacker's connection, the attack records how
//! (`ws 1009`, `http 400`, `eof`, `reset`, ...) and opens a new one, so
//! the pressure lasts the whole phase on a server that defends itself.

use crate::client::{
    connect_within, frame, read_upgrade, upgrade_request, FrameReader, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT,
};
use crate::measure::{json_string, Failures};
use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Connect, handshake and write timeout of an attacker's socket.
const STEP: Duration = Duration::from_secs(1);
/// Longest sleep or poll between two looks at the stop flag.
const TICK: Duration = Duration::from_millis(100);
/// Writes in a row on one socket before the stop flag and the socket's
/// input are looked at again.
const WRITES_PER_ROUND: usize = 64;

/// New connections per second after the server ended the previous one.
const RECONNECTS_PER_S: f64 = 100.0;
/// `slowloris-bytes`: sockets trickling at once (about 20,000 packets a
/// second in all, some 10 % of a core for the tool), and the pause between two
/// rounds of one byte to each.
const TRICKLE_SOCKETS: usize = 24;
const TRICKLE_EVERY: Duration = Duration::from_millis(1);
/// `http-flood`: sockets opened per round (a round ends with a 1 ms poll)
/// until the target count is first reached, and replacements per second
/// after that, when the server closes some.
const FLOOD_OPENS_PER_ROUND: usize = 200;
const FLOOD_REOPENS_PER_S: f64 = 200.0;
/// `pipeline`: a connection whose writes made no progress for this long
/// is reset and replaced (the server has stopped reading it).
const PIPELINE_STALL: Duration = Duration::from_millis(250);
/// `names`: registering connections per second, and how many stay open.
const NAMES_CONNS_PER_S: f64 = 50.0;
const NAMES_HELD: usize = 8;
/// `names`: events per connection and bytes per event name.
const NAMES_PER_CONN: usize = 64;
const NAME_BYTES: usize = 2048;

/// The attacks, in the order a run goes through them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Attack {
    Fragments,
    Bytes,
    SlowlorisBytes,
    HttpFlood,
    Pipeline,
    Names,
}

pub const ATTACKS: [Attack; 6] = [
    Attack::Fragments,
    Attack::Bytes,
    Attack::SlowlorisBytes,
    Attack::HttpFlood,
    Attack::Pipeline,
    Attack::Names,
];

impl Attack {
    pub fn name(self) -> &'static str {
        match self {
            Attack::Fragments => "fragments",
            Attack::Bytes => "bytes",
            Attack::SlowlorisBytes => "slowloris-bytes",
            Attack::HttpFlood => "http-flood",
            Attack::Pipeline => "pipeline",
            Attack::Names => "names",
        }
    }

    pub fn from_name(s: &str) -> Option<Attack> {
        ATTACKS.into_iter().find(|a| a.name() == s)
    }
}

/// What every attack needs to know.
#[derive(Clone, Copy)]
pub struct Target {
    pub addr: SocketAddr,
    /// `http-flood`: idle sockets to hold.
    pub flood_sockets: usize,
}

/// Set by the scenario and the attack.
#[derive(Default)]
pub struct Control {
    /// Set by the scenario: stop now.
    pub stop: AtomicBool,
    /// Set by the attack once it is under way (first hostile bytes sent, or
    /// the flood opened); measuring starts then.
    pub engaged: AtomicBool,
}

impl Control {
    fn running(&self, hard_end: Instant) -> bool {
        !self.stop.load(Ordering::Acquire) && Instant::now() < hard_end
    }

    fn engage(&self) {
        self.engaged.store(true, Ordering::Release);
    }
}

/// What an attack did, for the report.
#[derive(Default)]
pub struct Tally {
    /// Connections opened (handshake done, for the WebSocket attacks).
    pub connections: u64,
    /// Bytes written to the server.
    pub bytes: u64,
    /// Units of hostile work sent, named by `unit`.
    pub units: u64,
    pub unit: &'static str,
    /// Most attacker sockets open at once.
    pub peak_sockets: u64,
    /// How connections ended: `ws 1009`, `http 400`, `eof`, `reset`, ...
    pub ends: BTreeMap<String, u64>,
    /// Connects and handshakes that failed.
    pub errors: Failures,
}

impl Tally {
    fn new(unit: &'static str) -> Tally {
        Tally {
            unit,
            ..Tally::default()
        }
    }

    fn end(&mut self, how: impl Into<String>) {
        *self.ends.entry(how.into()).or_default() += 1;
    }

    fn error(&mut self, e: String) {
        self.end("could not connect");
        self.errors.add(e);
    }

    fn open(&mut self, now_open: usize) {
        self.peak_sockets = self.peak_sockets.max(now_open as u64);
    }

    /// `ws 1009 ×3, eof ×1`.
    pub fn ends_human(&self) -> String {
        let v: Vec<String> = self.ends.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
        if v.is_empty() {
            "none".into()
        } else {
            v.join(", ")
        }
    }

    /// A JSON object with every figure.
    pub fn json(&self) -> String {
        let ends: Vec<String> = self
            .ends
            .iter()
            .map(|(k, n)| format!("{}:{n}", json_string(k)))
            .collect();
        let errors: Vec<String> = self.errors.all().iter().map(|e| json_string(e)).collect();
        format!(
            "{{\"connections\":{},\"bytes\":{},\"units\":{},\"unit\":\"{}\",\"peak_sockets\":{},\"ends\":{{{}}},\"errors\":[{}]}}",
            self.connections,
            self.bytes,
            self.units,
            self.unit,
            self.peak_sockets,
            ends.join(","),
            errors.join(",")
        )
    }
}

/// Starts `attack` on its own thread.
pub fn spawn(
    attack: Attack,
    target: Target,
    ctl: Arc<Control>,
    hard_end: Instant,
) -> io::Result<JoinHandle<Tally>> {
    std::thread::Builder::new()
        .name(attack.name().into())
        .spawn(move || {
            let ctl = &*ctl;
            let t = &target;
            match attack {
                Attack::Fragments => fragments(t, ctl, hard_end),
                Attack::Bytes => bytes(t, ctl, hard_end),
                Attack::SlowlorisBytes => slowloris_bytes(t, ctl, hard_end),
                Attack::HttpFlood => http_flood(t, ctl, hard_end),
                Attack::Pipeline => pipeline(t, ctl, hard_end),
                Attack::Names => names(t, ctl, hard_end),
            }
        })
}

/// At most one event per `every`; no bursts to catch up after a pause.
struct Pacer {
    every: Duration,
    next: Instant,
}

impl Pacer {
    fn new(per_s: f64) -> Pacer {
        Pacer {
            every: Duration::from_secs_f64(1.0 / per_s),
            next: Instant::now(),
        }
    }

    /// Takes the slot if it is due.
    fn ready(&mut self) -> bool {
        let now = Instant::now();
        if now < self.next {
            return false;
        }
        self.next = now + self.every;
        true
    }

    /// Waits for the next slot; false once the attack must stop.
    fn wait(&mut self, ctl: &Control, hard_end: Instant) -> bool {
        loop {
            if !ctl.running(hard_end) {
                return false;
            }
            if self.ready() {
                return true;
            }
            let left = self.next.saturating_duration_since(Instant::now());
            std::thread::sleep(left.min(TICK));
        }
    }
}

/// Short names for the ways a socket operation ends a connection.
fn io_end(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionReset => "reset".into(),
        io::ErrorKind::BrokenPipe => "broken pipe".into(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timeout".into(),
        io::ErrorKind::ConnectionAborted => "aborted".into(),
        _ => format!("io error ({:?})", e.kind()),
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// A WebSocket from source address index `i`: upgrade request plus
/// `extra` written at once, the 101 read (1 s at most). Returns the
/// blocking stream and whatever followed the 101.
fn ws_open(t: &Target, i: usize, extra: &[u8]) -> Result<(TcpStream, Vec<u8>), String> {
    let mut s = connect_within(i, t.addr, None, STEP).map_err(|e| format!("connect: {e}"))?;
    let mut req = upgrade_request(t.addr);
    req.extend_from_slice(extra);
    s.write_all(&req).map_err(|e| format!("write upgrade: {e}"))?;
    let rest = read_upgrade(&mut s)?;
    Ok((s, rest))
}

/// A mask that differs per connection (any mask will do; the server
/// must unmask every byte either way).
fn mask(i: usize) -> [u8; 4] {
    [0xa5, i as u8, (i >> 8) as u8, 0x3c]
}

/// Reads whatever the server sent until the socket is dry; Some(how) when
/// the server ended the connection (a close frame, EOF, an error).
fn read_ends(mut s: &MioStream, fr: &mut FrameReader, buf: &mut [u8]) -> Option<String> {
    loop {
        match s.read(buf) {
            Ok(0) => return Some("eof".into()),
            Ok(n) => {
                fr.feed(&buf[..n]);
                loop {
                    match fr.next_frame() {
                        Ok(Some(f)) if f.opcode == OP_CLOSE => {
                            return Some(f.close_code().map_or("ws close".into(), |c| format!("ws {c}")))
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => return Some("bad frame from the server".into()),
                    }
                }
            }
            Err(e) if would_block(&e) => return None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Some(io_end(&e)),
        }
    }
}

/// Writes `buf` over and over from `*pos`, up to `WRITES_PER_ROUND` times
/// or until the socket is full. Ok(bytes written) or how it ended.
fn write_cyclic(mut s: &MioStream, buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut wrote = 0u64;
    for _ in 0..WRITES_PER_ROUND {
        match s.write(&buf[*pos..]) {
            Ok(0) => return Err("write returned 0".into()),
            Ok(n) => {
                wrote += n as u64;
                *pos = (*pos + n) % buf.len();
            }
            Err(e) if would_block(&e) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_end(&e)),
        }
    }
    Ok(wrote)
}

fn poll_tick(poll: &mut Poll, events: &mut Events, timeout: Duration) {
    // An error here (EINTR) only shortens the wait.
    let _ = poll.poll(events, Some(timeout));
}

/// Streams `pattern` on a non-blocking socket until the phase ends or the
/// server ends the connection; reads (and so sees a close frame) only when
/// `read` is set. Returns the bytes written and how it ended.
fn stream(
    s: TcpStream,
    pattern: &[u8],
    read: bool,
    ctl: &Control,
    hard_end: Instant,
    rest: Vec<u8>,
) -> (u64, Option<String>) {
    let mut written = 0;
    let setup = (|| -> io::Result<(Poll, MioStream)> {
        s.set_nonblocking(true)?;
        let poll = Poll::new()?;
        let mut sock = MioStream::from_std(s);
        let interest = if read {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::WRITABLE
        };
        poll.registry().register(&mut sock, Token(0), interest)?;
        Ok((poll, sock))
    })();
    let (mut poll, sock) = match setup {
        Ok(x) => x,
        Err(e) => return (0, Some(io_end(&e))),
    };
    let mut events = Events::with_capacity(4);
    let mut fr = FrameReader::default();
    fr.feed(&rest);
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = 0;
    ctl.engage();
    while ctl.running(hard_end) {
        match write_cyclic(&sock, pattern, &mut pos) {
            Ok(n) => written += n,
            Err(how) => return (written, Some(how)),
        }
        if read {
            if let Some(how) = read_ends(&sock, &mut fr, &mut buf) {
                return (written, Some(how));
            }
        }
        poll_tick(&mut poll, &mut events, TICK);
    }
    (written, None)
}

/// `fragments`: a text frame with FIN=0, then empty masked continuation
/// frames as fast as the socket takes them; a new connection once the
/// server closes one (§12: with 1009 after 256 frames).
fn fragments(t: &Target, ctl: &Control, hard_end: Instant) -> Tally {
    let mut tally = Tally::new("frames");
    let mut pacer = Pacer::new(RECONNECTS_PER_S);
    let mut i = 0;
    while pacer.wait(ctl, hard_end) {
        i += 1;
        let m = mask(i);
        // FIN=0 text frame of one byte, then the empty continuations.
        let first = [OP_TEXT, 0x81, m[0], m[1], m[2], m[3], b'x' ^ m[0]];
        let one = [OP_CONT, 0x80, m[0], m[1], m[2], m[3]];
        let pattern = one.repeat(10_000);
        let (s, rest) = match ws_open(t, i, &first) {
            Ok(x) => x,
            Err(e) => {
                tally.error(e);
                continue;
            }
        };
        tally.connections += 1;
        tally.open(1);
        let (n, how) = stream(s, &pattern, true, ctl, hard_end, rest);
        tally.bytes += n + first.len() as u64;
        tally.units += 1 + n / one.len() as u64;
        if let Some(how) = how {
            tally.end(how);
        }
    }
    tally
}

/// `bytes`: a registered client streaming 4,000-byte masked text frames
/// (each a valid command the server must parse: an unregister carrying
/// padding) with a 125-byte ping after every 15, at full speed, never
/// reading (so the pongs pile up too). A new connection once the server
/// ends one.
fn bytes(t: &Target, ctl: &Control, hard_end: Instant) -> Tally {
    let mut tally = Tally::new("frames");
    let mut pacer = Pacer::new(RECONNECTS_PER_S);
    let head = r#"{"type":"unregister","event":"b","pad":""#;
    let pad = 4000 - head.len() - 2;
    let big = format!("{head}{}\"}}", "x".repeat(pad));
    let mut pattern = Vec::new();
    for k in 0..15 {
        pattern.extend(frame(OP_TEXT, big.as_bytes(), mask(k)));
    }
    pattern.extend(frame(OP_PING, &[b'p'; 125], mask(15)));
    let register = frame(
        OP_TEXT,
        br#"{"token":"hostile-bytes","event":"b","id":1}"#,
        mask(99),
    );
    let mut i = 0;
    while pacer.wait(ctl, hard_end) {
        i += 1;
        let (s, rest) = match ws_open(t, i, &register) {
            Ok(x) => x,
            Err(e) => {
                tally.error(e);
                continue;
            }
        };
        tally.connections += 1;
        tally.open(1);
        let (n, how) = stream(s, &pattern, false, ctl, hard_end, rest);
        tally.bytes += n;
        tally.units += n * 16 / pattern.len() as u64;
        if let Some(how) = how {
            tally.end(how);
        }
    }
    tally
}

/// The three requests of `slowloris-bytes`, each with the prefix sent in
/// one write; the rest goes one byte per packet. The prefix is what a
/// parser that starts over on every read must look at again each time.
fn trickle_requests() -> [(Vec<u8>, usize); 3] {
    // A head just under the 8 KiB limit, 60 headers in all, then a body.
    let mut head = b"POST /push HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    for k in 0..56 {
        head.extend(format!("X-Pad-{k:02}: {}\r\n", "a".repeat(120)).bytes());
    }
    head.extend(b"Content-Length: 60000\r\n\r\n");
    let head_bulk = head.len() - 600;
    head.extend(std::iter::repeat_n(b'x', 60_000));
    let chunked = |ext: usize, chunks: usize, bulk_chunks: usize| {
        let mut r = b"POST /push HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let chunk = format!("1;{}\r\nx\r\n", "e".repeat(ext)).into_bytes();
        let bulk = r.len() + bulk_chunks * chunk.len();
        for _ in 0..chunks {
            r.extend_from_slice(&chunk);
        }
        (r, bulk)
    };
    [
        (head, head_bulk),
        // Extensions over 256 bytes: a 400 on a server that caps them.
        chunked(900, 64, 20),
        // Extensions under the cap: valid everywhere; the body grows.
        chunked(190, 300, 100),
    ]
}

/// One trickling socket of `slowloris-bytes`.
struct Trickle {
    s: TcpStream,
    kind: usize,
    pos: usize,
    /// When the whole request had been sent.
    sent_at: Option<Instant>,
}

/// `slowloris-bytes`: `TRICKLE_SOCKETS` HTTP requests (a long head, a
/// chunked body with long extensions, one with short ones), each sent
/// one byte per packet after its prefix; a new socket once the server
/// answers or closes one.
fn slowloris_bytes(t: &Target, ctl: &Control, hard_end: Instant) -> Tally {
    let mut tally = Tally::new("packets");
    let reqs = trickle_requests();
    let mut slots: Vec<Option<Trickle>> = (0..TRICKLE_SOCKETS).map(|_| None).collect();
    let mut pacer = Pacer::new(RECONNECTS_PER_S);
    let mut i = 0;
    let mut round = 0u64;
    let mut buf = [0u8; 512];
    while ctl.running(hard_end) {
        round += 1;
        for (k, slot) in slots.iter_mut().enumerate() {
            if slot.is_none() && pacer.ready() {
                i += 1;
                let opened = connect_within(i, t.addr, None, STEP).and_then(|s| {
                    s.set_nonblocking(true)?;
                    Ok(s)
                });
                match opened {
                    Ok(s) => {
                        tally.connections += 1;
                        *slot = Some(Trickle {
                            s,
                            kind: k % reqs.len(),
                            pos: 0,
                            sent_at: None,
                        });
                    }
                    Err(e) => tally.error(format!("connect: {e}")),
                }
            }
            let Some(tr) = slot else { continue };
            let (req, bulk) = &reqs[tr.kind];
            let end = if tr.pos < *bulk {
                *bulk
            } else {
                (tr.pos + 1).min(req.len())
            };
            let mut ended = None;
            if tr.pos < end {
                match tr.s.write(&req[tr.pos..end]) {
                    Ok(n) => {
                        tally.bytes += n as u64;
                        if tr.pos >= *bulk {
                            tally.units += 1;
                        }
                        tr.pos += n;
                        ctl.engage();
                    }
                    Err(e) if would_block(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => ended = Some(io_end(&e)),
                }
                if tr.pos == req.len() {
                    tr.sent_at = Some(Instant::now());
                }
            }
            // Every 10 rounds: has the server answered or closed?
            if ended.is_none() && round.is_multiple_of(10) {
                ended = match tr.s.read(&mut buf) {
                    Ok(0) => Some("eof".into()),
                    Ok(n) => Some(http_status(&buf[..n])),
                    Err(e) if would_block(&e) || e.kind() == io::ErrorKind::Interrupted => None,
                    Err(e) => Some(io_end(&e)),
                };
            }
            if ended.is_none() && tr.sent_at.is_some_and(|at| at.elapsed() > STEP) {
                ended = Some("sent whole, no answer".into());
            }
            if let Some(how) = ended {
                tally.end(how);
                *slot = None;
            }
        }
        tally.open(slots.iter().flatten().count());
        std::thread::sleep(TRICKLE_EVERY);
    }
    tally
}

/// `http 400` from the start of a response, or what else it was.
fn http_status(b: &[u8]) -> String {
    match std::str::from_utf8(b.get(9..12).unwrap_or(b"")) {
        Ok(code) if b.starts_with(b"HTTP/1.") && code.bytes().all(|c| c.is_ascii_digit()) => {
            format!("http {code}")
        }
        _ => "bytes, not an HTTP answer".into(),
    }
}

/// `http-flood`: opens `flood_sockets` idle HTTP connections (nothing
/// sent) and holds them; one the server answers or closes is replaced, at
/// most `FLOOD_REOPENS_PER_S` a second.
fn http_flood(t: &Target, ctl: &Control, hard_end: Instant) -> Tally {
    let mut tally = Tally::new("sockets");
    let Ok(mut poll) = Poll::new() else {
        tally.errors.add("poll: cannot create".into());
        return tally;
    };
    let mut events = Events::with_capacity(1024);
    let mut socks: Vec<Option<MioStream>> = (0..t.flood_sockets).map(|_| None).collect();
    let mut open = 0usize;
    let mut refill = Pacer::new(FLOOD_REOPENS_PER_S);
    let mut filled = false;
    let start = Instant::now();
    let mut i = 0;
    let mut buf = [0u8; 512];
    while ctl.running(hard_end) {
        // Open what is missing, a bounded number per round.
        let mut opened_now = 0;
        for (k, slot) in socks.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            if opened_now >= FLOOD_OPENS_PER_ROUND || (filled && !refill.ready()) {
                break;
            }
            opened_now += 1;
            i += 1;
            let s = connect_within(i, t.addr, None, STEP).and_then(|s| {
                s.set_nonblocking(true)?;
                let mut m = MioStream::from_std(s);
                poll.registry().register(&mut m, Token(k), Interest::READABLE)?;
                Ok(m)
            });
            match s {
                Ok(m) => {
                    *slot = Some(m);
                    open += 1;
                    tally.connections += 1;
                    tally.units += 1;
                }
                Err(e) => tally.error(format!("connect: {e}")),
            }
        }
        tally.open(open);
        if !filled && (open == socks.len() || start.elapsed() > 2 * STEP) {
            filled = true;
            ctl.engage();
        }
        // Short rounds while sockets are missing, so the pacers set the rate.
        let wait = if open < socks.len() {
            Duration::from_millis(1)
        } else {
            TICK
        };
        poll_tick(&mut poll, &mut events, wait);
        for ev in events.iter() {
            let Some(slot) = socks.get_mut(ev.token().0) else {
                continue;
            };
            let Some(s) = slot else { continue };
            let how = match s.read(&mut buf) {
                Ok(0) => Some("eof".into()),
                Ok(n) => Some(http_status(&buf[..n])),
                Err(e) if would_block(&e) || e.kind() == io::ErrorKind::Interrupted => None,
                Err(e) => Some(io_end(&e)),
            };
            if let Some(how) = how {
                tally.end(how);
                *slot = None;
                open -= 1;
            }
        }
    }
    tally
}

/// `pipeline`: one keep-alive connection writing pipelined requests (three
/// `GET /healthz`, then a push to a user nobody is) as fast as the socket
/// takes them, never reading an answer. Once the server stops taking them
/// (its answers fill our receive buffer) the connection is reset and a new
/// one starts.
fn pipeline(t: &Target, ctl: &Control, hard_end: Instant) -> Tally {
    let mut tally = Tally::new("requests");
    let healthz: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let body = r#"{"userId":"hostile-nobody","event":"p","message":"x"}"#;
    let push = format!(
        "POST /push HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut pattern = Vec::new();
    for _ in 0..250 {
        for _ in 0..3 {
            pattern.extend_from_slice(healthz);
        }
        pattern.extend_from_slice(push.as_bytes());
    }
    let per_pattern = 1000u64;
    let mut pacer = Pacer::new(RECONNECTS_PER_S);
    let mut events = Events::with_capacity(4);
    let mut i = 0;
    while pacer.wait(ctl, hard_end) {
        i += 1;
        let setup = connect_within(i, t.addr, None, STEP).and_then(|s| {
            s.set_nonblocking(true)?;
            let poll = Poll::new()?;
            let mut m = MioStream::from_std(s);
            poll.registry().register(&mut m, Token(0), Interest::WRITABLE)?;
            Ok((poll, m))
        });
        let (mut poll, sock) = match setup {
            Ok(x) => x,
            Err(e) => {
                tally.error(format!("connect: {e}"));
                continue;
            }
        };
        tally.connections += 1;
        tally.open(1);
        ctl.engage();
        let mut pos = 0;
        let mut written = 0u64;
        let mut progress_at = Instant::now();
        let how = loop {
            if !ctl.running(hard_end) {
                break None;
            }
            match write_cyclic(&sock, &pattern, &mut pos) {
                Ok(0) => {}
                Ok(n) => {
                    written += n;
                    progress_at = Instant::now();
                }
                Err(how) => break Some(how),
            }
            if progress_at.elapsed() > PIPELINE_STALL {
                break Some("stalled, reset by us".into());
            }
            poll_tick(&mut poll, &mut events, Duration::from_millis(50));
        };
        // Whole patterns, plus the requests of a partial one by share.
        tally.bytes += written;
        tally.units += written * per_pattern / pattern.len() as u64;
        // Unread answers would make the close a reset anyway; say so.
        let _ = socket2::SockRef::from(&sock).set_linger(Some(Duration::ZERO));
        if let Some(how) = how {
            tally.end(how);
        }
    }
    tally
}

/// `names`: connections registering `NAMES_PER_CONN` events with names of
/// `NAME_BYTES` bytes each (no ids), `NAMES_HELD` kept open, the oldest
/// closed by us as new ones come; whatever the server ends is noted.
fn names(t: &Target, ctl: &Control, hard_end: Instant) -> Tally {
    let mut tally = Tally::new("registrations");
    let mut pacer = Pacer::new(NAMES_CONNS_PER_S);
    let mut held: VecDeque<(MioStream, FrameReader)> = VecDeque::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut i = 0;
    while pacer.wait(ctl, hard_end) {
        i += 1;
        // Names padded to one length: every frame has the same size.
        let mut frames = Vec::with_capacity(NAMES_PER_CONN * (NAME_BYTES + 64));
        for k in 0..NAMES_PER_CONN {
            let prefix = format!("n{i}-{k}-");
            let name = format!("{prefix}{}", "x".repeat(NAME_BYTES - prefix.len()));
            let cmd = format!(r#"{{"token":"hostile-names","event":"{name}"}}"#);
            frames.extend(frame(OP_TEXT, cmd.as_bytes(), mask(k)));
        }
        let frame_len = frames.len() / NAMES_PER_CONN;
        let (mut s, rest) = match ws_open(t, i, &[]) {
            Ok(x) => x,
            Err(e) => {
                tally.error(e);
                continue;
            }
        };
        tally.connections += 1;
        ctl.engage();
        let mut fr = FrameReader::default();
        fr.feed(&rest);
        let mut written = 0;
        let wrote = loop {
            match s.write(&frames[written..]) {
                Ok(0) => break Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    written += n;
                    if written == frames.len() {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        tally.units += (written / frame_len) as u64;
        tally.bytes += written as u64;
        if s.set_nonblocking(true).is_err() {
            tally.end("io error (nonblocking)");
            continue;
        }
        let sock = MioStream::from_std(s);
        if let Err(e) = wrote {
            // The close frame that explains it, if the server sent one.
            let how = read_ends(&sock, &mut fr, &mut buf).unwrap_or_else(|| io_end(&e));
            tally.end(how);
            continue;
        }
        held.push_back((sock, fr));
        held.retain_mut(|(s, fr)| match read_ends(s, fr, &mut buf) {
            Some(how) => {
                tally.end(how);
                false
            }
            None => true,
        });
        tally.open(held.len());
        while held.len() > NAMES_HELD {
            held.pop_front();
            tally.end("closed by us");
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attack_names_round_trip() {
        for a in ATTACKS {
            assert_eq!(Attack::from_name(a.name()), Some(a));
        }
        assert_eq!(Attack::from_name("quiet"), None);
    }

    #[test]
    fn trickled_requests_stay_under_the_servers_limits() {
        let [(head, head_bulk), (long, long_bulk), (short, short_bulk)] = trickle_requests();
        let head_end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        // Under the 8 KiB head limit, trickled from inside the head.
        assert!(head_end < 8192 && head_bulk < head_end, "{head_end}");
        // Chunked ones: the prefix ends on a chunk boundary, bodies under 64 KiB.
        for (r, bulk) in [(&long, long_bulk), (&short, short_bulk)] {
            assert!(r.len() < 65536 + 100);
            assert!(r[..bulk].ends_with(b"\r\nx\r\n"));
        }
    }

    #[test]
    fn http_status_names_the_code() {
        assert_eq!(http_status(b"HTTP/1.1 400 Bad Request\r\n"), "http 400");
        assert_eq!(http_status(b"\x88\x02"), "bytes, not an HTTP answer");
    }

    #[test]
    fn pacer_takes_no_burst_after_a_pause() {
        let mut p = Pacer::new(1000.0);
        assert!(p.ready());
        assert!(!p.ready());
        std::thread::sleep(Duration::from_millis(5));
        assert!(p.ready());
        assert!(!p.ready());
    }
}
