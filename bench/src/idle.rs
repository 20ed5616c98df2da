//! Scenario `idle`: N registered connections held open; the time to open
//! them, server RSS per connection, then a push to every user, each of
//! which must arrive on its own connection. `--transport sse`: SSE streams
//! instead of WebSockets (`GET /sse?event=e&token=u<i>`), so the memory of
//! an idle stream can be set beside an idle WebSocket's.

use crate::client::{FrameReader, HttpConn, OP_PING, OP_PONG, OP_TEXT};
use crate::fleet::{self, Ack, Plan, Transport};
use crate::measure::{opt, CpuMeter, CpuUse};
use crate::procfs::rss_kib;
use crate::sse::SseStream;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub const USAGE: &str =
    "usage: wspush-bench idle --addr HOST:PORT [--conns N] [--pid PID] [--in-flight K] [--ack id|none]\n\
     \x20      [--transport ws|sse] [--jwt-secret S [--events N]] [--json]\n\
     Opens N registered connections (default 1000), each its own user, K handshakes at a\n\
     time (default 100), and reports connect+register time and, with --pid, server RSS per\n\
     connection. --ack id (default) waits for each register's id reply (wspush); --ack none\n\
     registers without an id and waits for the 101 only (servers without id replies).\n\
     --transport sse opens SSE streams (GET /sse) instead, each one registered once its\n\
     200 and first chunk came (--ack does not apply).\n\
     Then every user gets a push, which must arrive on its connection. --jwt-secret: each\n\
     registers with an HS256 JWT signed with S (minted before the timing starts; run the\n\
     server with --jwt-secret S); --events N adds an `events` claim of N patterns, the\n\
     matching one last (SPEC §9: compare N = 16 with no --events).";

pub struct Args {
    addr: SocketAddr,
    conns: usize,
    pid: Option<u32>,
    in_flight: usize,
    ack: Ack,
    transport: Transport,
    json: bool,
    jwt_secret: Option<String>,
    events: Option<usize>,
}

/// Parses the flags that follow `idle`.
pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 12345)),
        conns: 1000,
        pid: None,
        in_flight: 100,
        ack: Ack::Id,
        transport: Transport::Ws,
        json: false,
        jwt_secret: None,
        events: None,
    };
    let mut ack_given = false;
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => a.addr = val()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--conns" => a.conns = val()?.parse().map_err(|e| format!("--conns: {e}"))?,
            "--pid" => a.pid = Some(val()?.parse().map_err(|e| format!("--pid: {e}"))?),
            "--in-flight" => a.in_flight = val()?.parse().map_err(|e| format!("--in-flight: {e}"))?,
            "--ack" => {
                a.ack = Ack::parse(&val()?)?;
                ack_given = true;
            }
            "--transport" => a.transport = Transport::parse(&val()?)?,
            "--json" => a.json = true,
            "--jwt-secret" => a.jwt_secret = Some(val()?),
            "--events" => a.events = Some(val()?.parse().map_err(|e| format!("--events: {e}"))?),
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    if !a.addr.ip().is_loopback() {
        return Err("only loopback targets are allowed".into());
    }
    if !(1..=20_000).contains(&a.conns) {
        return Err("--conns must be in 1..=20000".into());
    }
    if a.events.is_some() && a.jwt_secret.is_none() {
        return Err("--events needs --jwt-secret".into());
    }
    if a.events.is_some_and(|n| !(1..=256).contains(&n)) {
        return Err("--events must be in 1..=256".into());
    }
    if ack_given && a.transport == Transport::Sse {
        return Err("--ack applies to WebSocket clients only (--transport ws)".into());
    }
    a.in_flight = a.in_flight.max(1);
    Ok(a)
}

pub fn run(a: &Args) -> Result<(), String> {
    // Tokens first: minting is the client's work, not the server's.
    let now = crate::jwt::unix_now();
    let tokens: Vec<String> = (0..a.conns)
        .map(|j| match &a.jwt_secret {
            Some(s) => crate::jwt::mint(s.as_bytes(), &format!("u{j}"), now, a.events, "e"),
            None => format!("u{j}"),
        })
        .collect();
    let rss_before = a.pid.and_then(rss_kib);
    let cpu = CpuMeter::start(a.pid);
    let start = Instant::now();
    let plan = |j: usize| Plan {
        token: tokens[j].clone(),
        event: "e",
        rcvbuf: None,
    };
    let mut conns = match a.transport {
        Transport::Ws => fleet::connect_all(a.addr, a.conns, a.in_flight, a.ack, plan)?,
        Transport::Sse => fleet::connect_sse(a.addr, a.conns, a.in_flight, plan)?,
    };
    let elapsed = start.elapsed();
    let cpu = cpu.stop_at(Instant::now());
    // Let the allocator settle and the server finish its last writes.
    std::thread::sleep(Duration::from_millis(300));
    let rss_after = a.pid.and_then(rss_kib);

    // Correctness: every user gets a push of its own, on its connection.
    let mut http = HttpConn::connect(a.addr)?;
    for j in 0..a.conns {
        fleet::probe(
            &mut http,
            &format!("u{j}"),
            "e",
            &format!("m{j}"),
            1,
            Duration::from_secs(5),
        )?;
    }
    for (j, s) in conns.iter_mut().enumerate() {
        let got = match a.transport {
            Transport::Ws => read_text(s),
            Transport::Sse => read_event(s, "e"),
        }
        .map_err(|e| format!("u{j}: {e}"))?;
        if got != format!("m{j}").as_bytes() {
            return Err(format!("u{j} got {:?}", String::from_utf8_lossy(&got)));
        }
    }
    let rss_pushed = a.pid.and_then(rss_kib);

    let per_conn = match (rss_before, rss_after) {
        (Some(b), Some(x)) => Some((x.saturating_sub(b)) as f64 / a.conns as f64),
        _ => None,
    };
    let r = Report {
        a,
        elapsed,
        cpu,
        rss_before,
        rss_after,
        rss_pushed,
        per_conn,
    };
    if a.json {
        r.json();
    } else {
        r.human();
    }
    Ok(())
}

/// Reads one text message (answering nothing, skipping pings); anything
/// else after it is an error.
fn read_text(s: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut fr = FrameReader::default();
    let mut chunk = [0u8; 512];
    loop {
        while let Some(f) = fr.next_frame()? {
            match f.opcode {
                OP_TEXT if f.fin && fr.buffered() == 0 => return Ok(f.payload),
                OP_TEXT => return Err("more than the one message".into()),
                OP_PING | OP_PONG => {}
                op => return Err(format!("unexpected opcode {op:#x}")),
            }
        }
        let n = s.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed by the server".into());
        }
        fr.feed(&chunk[..n]);
    }
}

/// Reads one SSE event named `event` (skipping comments); anything else
/// before or with it is an error.
fn read_event(s: &mut TcpStream, event: &str) -> Result<Vec<u8>, String> {
    let mut st = SseStream::default();
    let mut chunk = [0u8; 512];
    let mut got: Option<Vec<u8>> = None;
    loop {
        let n = s.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed by the server".into());
        }
        st.feed(&chunk[..n], &mut |e| {
            if got.is_some() {
                return Err("more than the one message".into());
            }
            if e.name != event.as_bytes() {
                return Err(format!(
                    "event {:?} with data {:?}",
                    String::from_utf8_lossy(e.name),
                    String::from_utf8_lossy(&e.data)
                ));
            }
            got = Some(e.data.into_owned());
            Ok(())
        })?;
        if st.ended() {
            return Err("the stream ended".into());
        }
        if st.buffered() == 0 {
            if let Some(g) = got.take() {
                return Ok(g);
            }
        }
    }
}

struct Report<'a> {
    a: &'a Args,
    elapsed: Duration,
    cpu: CpuUse,
    rss_before: Option<u64>,
    rss_after: Option<u64>,
    rss_pushed: Option<u64>,
    per_conn: Option<f64>,
}

impl Report<'_> {
    /// What confirmed each registration.
    fn ack_name(&self) -> &'static str {
        match self.a.transport {
            Transport::Ws => self.a.ack.name(),
            Transport::Sse => "stream",
        }
    }

    fn human(&self) {
        let a = self.a;
        println!("scenario              idle");
        println!("connections           {}", a.conns);
        println!("transport             {}", a.transport.name());
        println!(
            "connect + register    {:.3} s ({} in flight, ack {})",
            self.elapsed.as_secs_f64(),
            a.in_flight,
            self.ack_name()
        );
        if a.jwt_secret.is_some() {
            println!(
                "tokens                JWT, {} event patterns",
                a.events.unwrap_or(0)
            );
        }
        if let (Some(b), Some(x), Some(p)) = (self.rss_before, self.rss_after, self.per_conn) {
            println!("server RSS            {b} KiB -> {x} KiB");
            println!("RSS per connection    {p:.3} KiB");
        }
        if let Some(x) = self.rss_pushed {
            println!("RSS after a push each {x} KiB");
        }
        self.cpu.print("connection", a.conns as u64);
    }

    fn json(&self) {
        let a = self.a;
        let num = |v: Option<u64>| v.map_or("null".into(), |v| v.to_string());
        println!(
            "{{\"scenario\":\"idle\",\"transport\":\"{}\",\"conns\":{},\"ack\":\"{}\",\"jwt\":{},\"patterns\":{},\"connect_register_s\":{:.3},\
             \"rss_before_kib\":{},\"rss_after_kib\":{},\"rss_per_conn_kib\":{},\"rss_after_push_kib\":{},{}}}",
            a.transport.name(),
            a.conns,
            self.ack_name(),
            a.jwt_secret.is_some(),
            a.events.unwrap_or(0),
            self.elapsed.as_secs_f64(),
            num(self.rss_before),
            num(self.rss_after),
            opt(self.per_conn, 3),
            num(self.rss_pushed),
            self.cpu.json(a.conns as u64),
        );
    }
}
