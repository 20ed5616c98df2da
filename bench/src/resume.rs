//! Scenarios for `--history` (SPEC §8).
//!
//! `resume`: M broadcasts everyone missed, then N clients reconnecting at
//! once, each registering (its own user) with `since` the cursor before
//! them and an id. Checked: every client gets `{"id":1,"ok":true,
//! "recovered":true}`, then the M messages in order, exactly once, then a
//! live broadcast. Reported: the time from the first connect to each
//! client's M-th message (p50, p99, max: "caught up"), the server's RSS
//! before and at its peak during the replay, and its CPU.
//!
//! `histfill`: P pushes of S bytes to U users on one keep-alive connection,
//! pipelined, against a server whose history cap they overflow many times;
//! reported: the server's RSS growth against `--history-bytes` (read from
//! `/metrics`), which SPEC §8 says memory never goes past.

use crate::client::{connect_with, frame_at, text_frame, upgrade_request, HttpConn};
use crate::measure::{json_strings, CpuMeter, CpuUse, Failures, Latencies, Summary};
use crate::procfs::rss_kib;
use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const USAGE: &str =
    "usage: wspush-bench resume --addr HOST:PORT [--clients N] [--missed M] [--size BYTES]\n\
     \x20      [--pid PID] [--json]\n\
     The server runs with --history M or more, and a --history-bytes that holds M messages.\n\
     M broadcasts (default 1000, of BYTES bytes, default 100) are missed by everyone; then N\n\
     clients (default 1000) connect at once and register with since= the cursor before them.\n\
     Each must get recovered:true, the M messages in order exactly once, then a live one.\n\
     Reports the time to caught up (p50/p99/max over clients) and server RSS and CPU.\n\
usage: wspush-bench histfill --addr HOST:PORT --pid PID [--pushes P] [--size BYTES] [--users U] [--json]\n\
     P pushes (default 200000) of BYTES bytes (default 1000) to U users (default 1000), pipelined,\n\
     against a server with --history; reports its RSS growth against --history-bytes.";

const EVENT: &str = "resume";
/// How long the clients may take to catch up.
const CATCH_UP: Duration = Duration::from_secs(120);

pub struct Args {
    addr: SocketAddr,
    clients: usize,
    missed: u32,
    size: usize,
    pid: Option<u32>,
    json: bool,
}

pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 12345)),
        clients: 1000,
        missed: 1000,
        size: 100,
        pid: None,
        json: false,
    };
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => a.addr = val()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--clients" => a.clients = val()?.parse().map_err(|e| format!("--clients: {e}"))?,
            "--missed" => a.missed = val()?.parse().map_err(|e| format!("--missed: {e}"))?,
            "--size" => a.size = val()?.parse().map_err(|e| format!("--size: {e}"))?,
            "--pid" => a.pid = Some(val()?.parse().map_err(|e| format!("--pid: {e}"))?),
            "--json" => a.json = true,
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    if !a.addr.ip().is_loopback() {
        return Err("only loopback targets are allowed".into());
    }
    if !(1..=20_000).contains(&a.clients) || !(1..=100_000).contains(&a.missed) || a.size > 60_000 {
        return Err("--clients must be in 1..=20000, --missed in 1..=100000, --size at most 60000".into());
    }
    Ok(a)
}

/// The `"cursor"` of a JSON answer.
fn cursor_of(body: &str) -> Option<String> {
    let rest = &body[body.find("\"cursor\":\"")? + 10..];
    Some(rest[..rest.find('"')?].to_string())
}

/// One reconnecting client.
struct Client {
    sock: MioStream,
    buf: Vec<u8>,
    /// The 101 was read.
    upgraded: bool,
    /// The register's reply was read (and said recovered).
    replied: bool,
    /// Messages 1..=next-1 arrived in order.
    next: u32,
    caught_up: Option<Instant>,
    live: bool,
}

impl Client {
    /// Handles what arrived; `on_message` gets each message after the reply.
    fn take(&mut self, i: usize, m: u32, failures: &mut Failures) -> Result<(), String> {
        let mut used = 0;
        if !self.upgraded {
            let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                return Ok(());
            };
            if !self.buf.starts_with(b"HTTP/1.1 101") {
                return Err(format!("client {i}: upgrade refused"));
            }
            self.upgraded = true;
            used = end + 4;
        }
        while let Some((head, payload)) = frame_at(&self.buf[used..])? {
            let p = &self.buf[used + payload.start..used + payload.end];
            match head & 0x0f {
                0x1 if !self.replied => {
                    if p != br#"{"id":1,"ok":true,"recovered":true}"# {
                        failures.add(format!("client {i}: reply {:?}", String::from_utf8_lossy(p)));
                    }
                    self.replied = true;
                }
                0x1 if p == b"live" => self.live = true,
                0x1 => {
                    let k = std::str::from_utf8(p)
                        .ok()
                        .and_then(|s| s.split(' ').next())
                        .and_then(|k| k.parse::<u32>().ok());
                    match k {
                        Some(k) if k == self.next => {
                            self.next += 1;
                            if k == m {
                                self.caught_up = Some(Instant::now());
                            }
                        }
                        _ => failures.add(format!(
                            "client {i}: {:?} where message {} was due",
                            String::from_utf8_lossy(&p[..p.len().min(20)]),
                            self.next
                        )),
                    }
                }
                0x9 | 0xA => {}
                op => return Err(format!("client {i}: opcode {op:#x} (closed by the server?)")),
            }
            used += payload.end;
        }
        self.buf.drain(..used);
        Ok(())
    }
}

/// Samples the server's RSS until told to stop; the peak, in KiB.
fn rss_sampler(pid: Option<u32>, stop: Arc<AtomicBool>, peak: Arc<AtomicU64>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Some(pid) = pid else { return };
        while !stop.load(Ordering::Acquire) {
            if let Some(r) = rss_kib(pid) {
                peak.fetch_max(r, Ordering::AcqRel);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    })
}

pub fn run(a: &Args) -> Result<(), String> {
    let mut http = HttpConn::connect(a.addr)?;
    let (status, body) = http.post_json(
        "/broadcast",
        &format!(r#"{{"event":"{EVENT}","message":"0 seen"}}"#),
    )?;
    let since = cursor_of(&body).filter(|_| status == 200).ok_or_else(|| {
        format!("the server gave no cursor ({status} {body:?}): is it running with --history?")
    })?;
    let pad = "p".repeat(a.size.saturating_sub(8));
    for k in 1..=a.missed {
        let (status, body) = http.post(
            "/broadcast",
            &format!(r#"{{"event":"{EVENT}","message":"{k} {pad}"}}"#),
        )?;
        if status != 200 {
            return Err(format!("broadcast {k} answered {status} {body:?}"));
        }
    }
    let rss_before = a.pid.and_then(rss_kib);
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(rss_before.unwrap_or(0)));
    let sampler = rss_sampler(a.pid, Arc::clone(&stop), Arc::clone(&peak));

    let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    let cpu = CpuMeter::start(a.pid);
    let t0 = Instant::now();
    let mut clients = Vec::with_capacity(a.clients);
    for j in 0..a.clients {
        let s: TcpStream = connect_with(j, a.addr, None).map_err(|e| format!("client {j}: connect: {e}"))?;
        let mut req = upgrade_request(a.addr);
        let cmd = format!(r#"{{"token":"r{j}","event":"{EVENT}","since":"{since}","id":1}}"#);
        req.extend(text_frame(&cmd, [j as u8, 0x5a, (j >> 8) as u8, 0xa5]));
        (&s).write_all(&req)
            .map_err(|e| format!("client {j}: write: {e}"))?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut sock = MioStream::from_std(s);
        poll.registry()
            .register(&mut sock, Token(j), Interest::READABLE)
            .map_err(|e| e.to_string())?;
        clients.push(Client {
            sock,
            buf: Vec::new(),
            upgraded: false,
            replied: false,
            next: 1,
            caught_up: None,
            live: false,
        });
    }
    let connected_s = t0.elapsed().as_secs_f64();
    let mut failures = Failures::default();
    let mut events = Events::with_capacity(1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut done = 0;
    let mut live_sent = false;
    let deadline = Instant::now() + CATCH_UP;
    let mut live = 0;
    while live < a.clients && Instant::now() < deadline {
        if done == a.clients && !live_sent {
            let (status, _) = http.post(
                "/broadcast",
                &format!(r#"{{"event":"{EVENT}","message":"live"}}"#),
            )?;
            if status != 200 {
                failures.add(format!("the live broadcast answered {status}"));
                break;
            }
            live_sent = true;
        }
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(50))) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(format!("poll: {e}"));
            }
        }
        for ev in events.iter() {
            let i = ev.token().0;
            let c = &mut clients[i];
            loop {
                match c.sock.read(&mut chunk) {
                    Ok(0) => return Err(format!("client {i}: closed by the server")),
                    Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("client {i}: read: {e}")),
                }
            }
            let was = (c.caught_up.is_some(), c.live);
            c.take(i, a.missed, &mut failures)?;
            if !was.0 && c.caught_up.is_some() {
                done += 1;
            }
            if !was.1 && c.live {
                live += 1;
            }
        }
    }
    let end = clients
        .iter()
        .filter_map(|c| c.caught_up)
        .max()
        .unwrap_or_else(Instant::now);
    let cpu = cpu.stop_at(end);
    stop.store(true, Ordering::Release);
    let _ = sampler.join();
    let mut times = Latencies::with_capacity(a.clients);
    for (i, c) in clients.iter().enumerate() {
        match c.caught_up {
            Some(t) => times.push(t.duration_since(t0)),
            None => failures.add(format!(
                "client {i} stopped at message {} of {}",
                c.next - 1,
                a.missed
            )),
        }
        if c.caught_up.is_some() && !c.live {
            failures.add(format!(
                "client {i} did not get the live broadcast after its replay"
            ));
        }
    }
    let r = Report {
        a,
        connected_s,
        caught_up: times.summary(),
        rss_before,
        rss_peak: a.pid.map(|_| peak.load(Ordering::Acquire)),
        cpu,
        failures: &failures,
    };
    if a.json {
        r.json();
    } else {
        r.human();
    }
    failures.result("resume")
}

struct Report<'a> {
    a: &'a Args,
    connected_s: f64,
    caught_up: Summary,
    rss_before: Option<u64>,
    rss_peak: Option<u64>,
    cpu: CpuUse,
    failures: &'a Failures,
}

impl Report<'_> {
    fn messages(&self) -> u64 {
        self.a.clients as u64 * self.a.missed as u64
    }

    fn human(&self) {
        let a = self.a;
        println!("scenario              resume");
        println!(
            "replay                {} clients x {} missed messages of {} bytes ({} in all)",
            a.clients,
            a.missed,
            a.size,
            self.messages()
        );
        println!("connects written in   {:.3} s", self.connected_s);
        println!("caught up after       {}", self.caught_up.human());
        if let (Some(b), Some(p)) = (self.rss_before, self.rss_peak) {
            println!(
                "server RSS            {b} KiB before, {p} KiB at peak (+{} KiB)",
                p.saturating_sub(b)
            );
        }
        self.cpu.print("replayed message", self.messages());
        self.failures.print();
    }

    fn json(&self) {
        let a = self.a;
        let o = |v: Option<u64>| v.map_or("null".to_string(), |v| v.to_string());
        println!(
            "{{\"scenario\":\"resume\",\"ok\":{},\"clients\":{},\"missed\":{},\"size\":{},\"connect_s\":{:.3},{},\
             \"rss_before_kib\":{},\"rss_peak_kib\":{},{},\"failures\":{}}}",
            self.failures.is_empty(),
            a.clients,
            a.missed,
            a.size,
            self.connected_s,
            self.caught_up.json("caught_up"),
            o(self.rss_before),
            o(self.rss_peak),
            self.cpu.json(self.messages()),
            json_strings(&self.failures.all()),
        );
    }
}

/// `histfill`'s flags.
pub struct FillArgs {
    addr: SocketAddr,
    pid: u32,
    pushes: usize,
    size: usize,
    users: usize,
    json: bool,
}

pub fn parse_fill(mut it: impl Iterator<Item = String>) -> Result<FillArgs, String> {
    let mut a = FillArgs {
        addr: SocketAddr::from(([127, 0, 0, 1], 12345)),
        pid: 0,
        pushes: 200_000,
        size: 1000,
        users: 1000,
        json: false,
    };
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => a.addr = val()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--pid" => a.pid = val()?.parse().map_err(|e| format!("--pid: {e}"))?,
            "--pushes" => a.pushes = val()?.parse().map_err(|e| format!("--pushes: {e}"))?,
            "--size" => a.size = val()?.parse().map_err(|e| format!("--size: {e}"))?,
            "--users" => a.users = val()?.parse().map_err(|e| format!("--users: {e}"))?,
            "--json" => a.json = true,
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    if !a.addr.ip().is_loopback() {
        return Err("only loopback targets are allowed".into());
    }
    if a.pid == 0 || a.users == 0 || a.size == 0 || a.size > 60_000 {
        return Err("histfill needs --pid, --users of 1 or more and --size in 1..=60000".into());
    }
    Ok(a)
}

/// A metric's value from a `/metrics` text.
fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

pub fn run_fill(a: &FillArgs) -> Result<(), String> {
    let mut http = HttpConn::connect(a.addr)?;
    let metrics = |http: &mut HttpConn| -> Result<String, String> {
        let (status, body) = http.request("GET", "/metrics", "")?;
        if status != 200 {
            return Err(format!("/metrics answered {status}"));
        }
        Ok(body)
    };
    let m = metrics(&mut http)?;
    let cap = metric(&m, "wspush_history_max_bytes")
        .ok_or("no wspush_history_max_bytes: is the server running with --history?")?;
    let rss0 = rss_kib(a.pid).ok_or("cannot read the server's RSS")?;
    let pad = "x".repeat(a.size);
    let mut s = TcpStream::connect(a.addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut peak = rss0;
    let mut sent = 0;
    let mut reader = io::BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
    while sent < a.pushes {
        let batch = 200.min(a.pushes - sent);
        let mut req = Vec::with_capacity(batch * (a.size + 150));
        for k in sent..sent + batch {
            let body = format!(
                r#"{{"userId":"u{}","event":"fill","message":"{k} {pad}"}}"#,
                k % a.users
            );
            write!(
                req,
                "POST /push HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .map_err(|e| e.to_string())?;
        }
        s.write_all(&req).map_err(|e| format!("write: {e}"))?;
        for _ in 0..batch {
            read_ok(&mut reader)?;
        }
        sent += batch;
        if sent % 10_000 < batch {
            peak = peak.max(rss_kib(a.pid).unwrap_or(0));
        }
    }
    let took = started.elapsed().as_secs_f64();
    // The first connection may have been idle past the server's keep-alive.
    let mut http = HttpConn::connect(a.addr)?;
    let m = metrics(&mut http)?;
    let rss1 = rss_kib(a.pid).ok_or("cannot read the server's RSS")?;
    peak = peak.max(rss1);
    let held = metric(&m, "wspush_history_bytes").unwrap_or(0);
    let messages = metric(&m, "wspush_history_messages").unwrap_or(0);
    let growth = peak.saturating_sub(rss0);
    let ratio = growth as f64 * 1024.0 / cap as f64;
    let mut failures = Failures::default();
    if held > cap {
        failures.add(format!("history bytes {held} over the cap {cap}"));
    }
    if a.json {
        println!(
            "{{\"scenario\":\"histfill\",\"ok\":{},\"pushes\":{},\"size\":{},\"users\":{},\"run_s\":{took:.3},\
             \"cap_bytes\":{cap},\"held_bytes\":{held},\"held_messages\":{messages},\"rss_before_kib\":{rss0},\
             \"rss_peak_kib\":{peak},\"rss_growth_kib\":{growth},\"growth_over_cap\":{ratio:.3},\"failures\":{}}}",
            failures.is_empty(),
            a.pushes,
            a.size,
            a.users,
            json_strings(&failures.all())
        );
    } else {
        println!("scenario              histfill");
        println!(
            "pushes                {} of {} bytes to {} users in {took:.1} s",
            a.pushes, a.size, a.users
        );
        println!("history               {held} of {cap} bytes held, {messages} messages");
        println!(
            "server RSS            {rss0} KiB before, {peak} KiB at peak: +{growth} KiB = {:.1} % of the cap",
            ratio * 100.0
        );
        failures.print();
    }
    failures.result("histfill")
}

/// Reads one response with a body, which must be a 200.
fn read_ok(r: &mut io::BufReader<TcpStream>) -> Result<(), String> {
    use std::io::BufRead;
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| format!("read: {e}"))?;
    if !line.starts_with("HTTP/1.1 200") {
        return Err(format!("push answered {line:?}"));
    }
    let mut len = 0;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).map_err(|e| format!("read: {e}"))?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some(v) = h.strip_prefix("Content-Length: ") {
            len = v.parse().map_err(|_| "bad Content-Length")?;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).map_err(|e| format!("read: {e}"))?;
    Ok(())
}
