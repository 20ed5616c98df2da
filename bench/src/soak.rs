//! Scenario `soak`: a bounded run of churn under steady pushes, then a
//! check that the server came back to where it started.
//!
//! 1. Baseline: the server's RSS and open descriptors, from /proc.
//! 2. Stayers: N registered clients (`stay<i>`, event `s`), one reader
//!    thread each; every tenth is a slow reader (see `stayer.rs`).
//! 3. For `--seconds`: a pusher sends `{"userIds": [all stayers], "event":
//!    "s", "message": "<seq> xxx…"}` at `--push-rate` over one keep-alive
//!    connection, each answer must be `message sent to N clients` with N
//!    the number of stayers; meanwhile churners (`churn.rs`) start at
//!    `--churn-rate`, each vanishing in its own way.
//! 4. Churn and pushes stop; stayers must have every sequence number once,
//!    in order; they close properly; the server gets up to 10 s to settle.
//! 5. Its descriptors must be back at the baseline and its RSS within
//!    `--rss-slack-kib` of it.

use crate::churn::{self, Kind, KINDS};
use crate::client::HttpConn;
use crate::measure::json_string;
use crate::procfs::{cpu_seconds, fd_count, rss_anon_kib, rss_kib};
use crate::stayer::{self, Shared};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const USAGE: &str = "usage: wspush-bench soak --addr HOST:PORT --pid PID [--seconds S] [--stayers N]\n\
     \x20      [--churn-rate R] [--push-rate P] [--message-bytes B] [--rss-slack-kib K]\n\
     \x20      [--kinds abrupt_fin,abrupt_rst,close_frame,half_frame,never_registered,\n\
     \x20               stalled_dropped,slow_4008] [--json]\n\
     For S seconds (default 60) pushes P times a second (default 200) to N registered\n\
     stayers (default 200; every tenth reads slowly) while R connections a second\n\
     (default 50) open, register and vanish in various ways; then checks that every\n\
     stayer got every push once and in order, and that the server's descriptors and\n\
     RSS (within K KiB, default 4096) came back to their baseline. Exits 1 if not.";

pub struct Args {
    addr: SocketAddr,
    pid: u32,
    seconds: f64,
    stayers: usize,
    churn_rate: f64,
    push_rate: f64,
    message_bytes: usize,
    rss_slack_kib: u64,
    kinds: Vec<Kind>,
    json: bool,
}

/// Churners alive at once, at most; beyond it a start is skipped (and
/// reported), so a stuck server cannot make the tool grow without bound.
const MAX_LIVE_CHURNERS: usize = 512;
/// How long the stayers may take to receive the last push.
const CATCH_UP: Duration = Duration::from_secs(10);
/// How long the server may take to release descriptors after the run.
const SETTLE: Duration = Duration::from_secs(10);
/// Descriptors above the baseline still accepted after settling.
const FD_SLACK: u64 = 2;
/// How often the server's RSS and descriptors are sampled during the run.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// Parses the flags that follow `soak`.
pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 12345)),
        pid: 0,
        seconds: 60.0,
        stayers: 200,
        churn_rate: 50.0,
        push_rate: 200.0,
        message_bytes: 100,
        rss_slack_kib: 4096,
        kinds: Vec::new(),
        json: false,
    };
    let mut pid = None;
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => a.addr = val()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--pid" => pid = Some(val()?.parse().map_err(|e| format!("--pid: {e}"))?),
            "--seconds" => a.seconds = val()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--stayers" => a.stayers = val()?.parse().map_err(|e| format!("--stayers: {e}"))?,
            "--churn-rate" => a.churn_rate = val()?.parse().map_err(|e| format!("--churn-rate: {e}"))?,
            "--push-rate" => a.push_rate = val()?.parse().map_err(|e| format!("--push-rate: {e}"))?,
            "--message-bytes" => {
                a.message_bytes = val()?.parse().map_err(|e| format!("--message-bytes: {e}"))?
            }
            "--rss-slack-kib" => {
                a.rss_slack_kib = val()?.parse().map_err(|e| format!("--rss-slack-kib: {e}"))?
            }
            "--kinds" => {
                for name in val()?.split(',') {
                    let kind = Kind::from_name(name.trim()).ok_or_else(|| {
                        let all: Vec<&str> = KINDS.iter().map(|k| k.name()).collect();
                        format!("--kinds: unknown kind {name:?} (kinds: {})", all.join(", "))
                    })?;
                    a.kinds.push(kind);
                }
            }
            "--json" => a.json = true,
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    if !a.addr.ip().is_loopback() {
        return Err("only loopback targets are allowed".into());
    }
    a.pid = pid.ok_or_else(|| format!("--pid is required (the server's process id)\n{USAGE}"))?;
    if !(a.seconds > 0.0 && a.seconds <= 3600.0) {
        return Err("--seconds must be in (0, 3600]".into());
    }
    if !(1..=4000).contains(&a.stayers) {
        return Err("--stayers must be in 1..=4000 (one push body names them all)".into());
    }
    if !(a.churn_rate >= 0.0 && a.churn_rate <= 2000.0) {
        return Err("--churn-rate must be in [0, 2000]".into());
    }
    if !(a.push_rate > 0.0 && a.push_rate <= 10000.0) {
        return Err("--push-rate must be in (0, 10000]".into());
    }
    if !(1..=2048).contains(&a.message_bytes) {
        return Err("--message-bytes must be in 1..=2048".into());
    }
    Ok(a)
}

/// xorshift64*: pauses and hold times, nothing that needs to be good.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A duration uniformly in [lo, hi) milliseconds.
    pub fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo).max(1))
    }
}

/// What the pusher did.
#[derive(Default)]
struct PushReport {
    /// Pushes answered 200 with the exact count (sequence numbers 1..=ok).
    ok: u64,
    error: Option<String>,
    elapsed: Duration,
    latency_total: Duration,
    latency_max: Duration,
}

/// Server state read from /proc.
#[derive(Clone, Copy, Default)]
struct Sample {
    rss_kib: u64,
    anon_kib: u64,
    fds: u64,
}

fn sample(pid: u32) -> Result<Sample, String> {
    Ok(Sample {
        rss_kib: rss_kib(pid).ok_or_else(|| format!("cannot read /proc/{pid}/status (is --pid right?)"))?,
        anon_kib: rss_anon_kib(pid).unwrap_or(0),
        fds: fd_count(pid).ok_or_else(|| format!("cannot list /proc/{pid}/fd (same user?)"))?,
    })
}

/// Churn tallies, per kind.
#[derive(Default)]
struct ChurnTally {
    started: u64,
    skipped: u64,
    done: [u64; KINDS.len()],
    with_id: u64,
    self_pushes: u64,
    overflow_counted: u64,
    overflow_received: u64,
    overflow_close_frames: u64,
    errors: Vec<String>,
    error_count: u64,
}

impl ChurnTally {
    fn add(&mut self, r: std::thread::Result<Result<churn::Done, String>>) {
        match r {
            Ok(Ok(d)) => {
                self.done[d.kind.index()] += 1;
                self.with_id += d.with_id as u64;
                self.self_pushes += d.got_push as u64;
                if let Some(o) = d.overflow {
                    self.overflow_counted += o.counted;
                    self.overflow_received += o.received;
                    self.overflow_close_frames += o.close_frame as u64;
                }
            }
            Ok(Err(e)) => self.error(e),
            Err(_) => self.error("a churner thread panicked".into()),
        }
    }

    fn error(&mut self, e: String) {
        self.error_count += 1;
        if self.errors.len() < 5 {
            self.errors.push(e);
        }
    }

    fn total(&self) -> u64 {
        self.done.iter().sum()
    }
}

pub fn run(a: &Args) -> Result<(), String> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let metrics_before = server_counters(a.addr);
    // The metrics connection is gone once the server saw our FIN: wait for
    // the count to hold still (at most a second).
    let mut before = sample(a.pid)?;
    let mut steady = 0;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(20));
        let s = sample(a.pid)?;
        steady = if s.fds == before.fds { steady + 1 } else { 0 };
        before = s;
        if steady == 3 {
            break;
        }
    }
    let server_cpu0 = cpu_seconds(&a.pid.to_string()).unwrap_or(0.0);
    let self_cpu0 = cpu_seconds("self").unwrap_or(0.0);
    let mut peak = before;

    // Stayers.
    let socks = stayer::connect_all(a.addr, a.stayers, 100)?;
    let shared = Arc::new(Shared {
        seen: (0..a.stayers).map(|_| AtomicU64::new(0)).collect(),
        stop: AtomicBool::new(false),
    });
    let run_for = Duration::from_secs_f64(a.seconds);
    let hard_deadline = Instant::now() + run_for + CATCH_UP + Duration::from_secs(60);
    let mut readers = Vec::with_capacity(a.stayers);
    for (i, s) in socks.into_iter().enumerate() {
        let h = stayer::spawn(i, s, shared.clone(), hard_deadline, seed ^ i as u64)
            .map_err(|e| format!("spawn stayer thread: {e}"))?;
        readers.push(h);
    }

    // Pushes and churn.
    let start = Instant::now();
    let end = start + run_for;
    let pusher = {
        let (addr, n, rate, mb) = (a.addr, a.stayers, a.push_rate, a.message_bytes);
        std::thread::Builder::new()
            .name("pusher".into())
            .spawn(move || push_loop(addr, n, rate, mb, end))
            .map_err(|e| format!("spawn pusher: {e}"))?
    };
    let mut tally = ChurnTally::default();
    let mut live: Vec<JoinHandle<Result<churn::Done, String>>> = Vec::new();
    let mut next_sample = start;
    let plan = churn::plan(&a.kinds);
    let mut k = 0usize;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if now >= next_sample {
            if let Ok(s) = sample(a.pid) {
                peak.rss_kib = peak.rss_kib.max(s.rss_kib);
                peak.anon_kib = peak.anon_kib.max(s.anon_kib);
                peak.fds = peak.fds.max(s.fds);
            }
            next_sample += SAMPLE_EVERY;
        }
        // Reap finished churners.
        let mut i = 0;
        while i < live.len() {
            if live[i].is_finished() {
                tally.add(live.swap_remove(i).join());
            } else {
                i += 1;
            }
        }
        // Start the churners that are due.
        let mut next_churn = end;
        if a.churn_rate > 0.0 {
            loop {
                let due = start + Duration::from_secs_f64(k as f64 / a.churn_rate);
                if due > now {
                    next_churn = due;
                    break;
                }
                if live.len() >= MAX_LIVE_CHURNERS {
                    tally.skipped += 1;
                } else {
                    let kind = plan[k % plan.len()];
                    match churn::spawn(k, kind, a.addr, seed ^ ((k as u64) << 20)) {
                        Ok(h) => {
                            live.push(h);
                            tally.started += 1;
                        }
                        Err(e) => tally.error(format!("spawn churner: {e}")),
                    }
                }
                k += 1;
            }
        }
        let wake = next_churn.min(next_sample).min(end);
        std::thread::sleep(
            wake.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50)),
        );
    }

    // Stop: the pusher ends at `end` by itself; churners end within their
    // own deadlines.
    let push = pusher.join().map_err(|_| "the pusher thread panicked")?;
    for h in live.drain(..) {
        tally.add(h.join());
    }
    let run_time = start.elapsed();
    let total = push.ok;
    let caught_up_by = Instant::now() + CATCH_UP;
    while Instant::now() < caught_up_by && shared.seen.iter().any(|s| s.load(Ordering::Acquire) < total) {
        std::thread::sleep(Duration::from_millis(20));
    }
    shared.stop.store(true, Ordering::Release);
    let reports: Vec<stayer::Report> = readers
        .into_iter()
        .map(|h| {
            h.join().unwrap_or_else(|_| stayer::Report {
                error: Some("reader thread panicked".into()),
                ..Default::default()
            })
        })
        .collect();

    // Settle: wait for the descriptors to come back, then read RSS.
    let settle_start = Instant::now();
    let mut after = sample(a.pid)?;
    while after.fds > before.fds && settle_start.elapsed() < SETTLE {
        std::thread::sleep(Duration::from_millis(50));
        after = sample(a.pid)?;
    }
    let settled_in = settle_start.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    after = sample(a.pid)?;
    peak.rss_kib = peak.rss_kib.max(after.rss_kib);
    peak.anon_kib = peak.anon_kib.max(after.anon_kib);
    let server_cpu = cpu_seconds(&a.pid.to_string()).unwrap_or(0.0) - server_cpu0;
    let self_cpu = cpu_seconds("self").unwrap_or(0.0) - self_cpu0;
    let metrics_after = server_counters(a.addr);

    // Checks.
    let mut failures = Vec::new();
    if let Some(e) = &push.error {
        failures.push(format!("push {}: {e}", push.ok + 1));
    }
    let delivered: u64 = reports.iter().map(|r| r.received).sum();
    let mut bad_stayers = 0;
    for (i, r) in reports.iter().enumerate() {
        let seen = shared.seen[i].load(Ordering::Acquire);
        let problem = if let Some(e) = &r.error {
            Some(e.clone())
        } else if let Some(x) = &r.first_anomaly {
            Some(format!("{} out-of-sequence messages, first: {x}", r.anomalies))
        } else if seen != total || r.received != total {
            Some(format!(
                "received {} of {total} pushes (in order up to {seen})",
                r.received
            ))
        } else {
            None
        };
        if let Some(p) = problem {
            bad_stayers += 1;
            if bad_stayers <= 5 {
                let slow = if r.slow { " (slow reader)" } else { "" };
                failures.push(format!("stayer {i}{slow}: {p}"));
            }
        }
    }
    if bad_stayers > 5 {
        failures.push(format!("... {bad_stayers} stayers failed in all"));
    }
    for e in &tally.errors {
        failures.push(e.clone());
    }
    if tally.error_count > tally.errors.len() as u64 {
        failures.push(format!("... {} churners failed in all", tally.error_count));
    }
    if after.fds > before.fds + FD_SLACK {
        failures.push(format!(
            "server descriptors did not come back: {} before, {} after {:.1} s",
            before.fds,
            after.fds,
            settled_in.as_secs_f64()
        ));
    }
    if after.rss_kib > before.rss_kib + a.rss_slack_kib {
        failures.push(format!(
            "server RSS did not come back: {} KiB before, {} KiB after (slack {} KiB)",
            before.rss_kib, after.rss_kib, a.rss_slack_kib
        ));
    }
    // The server's own books: nothing bound or open any more (our /metrics
    // request is the one socket), one 4008 per overflow churner, and every
    // message it counted is one a client of ours was counted for.
    let overflowed = tally.done[Kind::Overflow.index()];
    let stalled = tally.done[Kind::Stalled.index()];
    if let (Some(b), Some(x)) = (&metrics_before, &metrics_after) {
        let left = [
            ("wspush_connections", x.connections, 0),
            ("wspush_sockets", x.sockets, 1),
            ("wspush_registered_users", x.users, 0),
            ("wspush_subscriptions", x.subscriptions, 0),
        ];
        for (name, got, want) in left {
            if got != want {
                failures.push(format!("{name} is {got} after the run, expected {want}"));
            }
        }
        let drops = x.slow_drops - b.slow_drops.min(x.slow_drops);
        if drops != overflowed {
            failures.push(format!(
                "wspush_slow_consumer_drops_total rose by {drops}, but {overflowed} churners overflowed"
            ));
        }
        let counted = push.ok * a.stayers as u64
            + tally.self_pushes
            + stalled * churn::STALL_PUSHES as u64
            + tally.overflow_counted;
        let server_counted = x.delivered - b.delivered.min(x.delivered);
        if failures.is_empty() && server_counted != counted {
            failures.push(format!(
                "wspush_messages_delivered_total rose by {server_counted}, but the answers counted {counted}"
            ));
        }
    }

    let r = Report {
        a,
        seed,
        run_time,
        push: &push,
        delivered,
        pongs: reports.iter().map(|r| r.pongs).sum(),
        tally: &tally,
        before,
        peak,
        after,
        settled_in,
        server_cpu,
        self_cpu,
        failures: &failures,
    };
    if a.json {
        r.json();
    } else {
        r.human();
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("soak failed:\n  {}", failures.join("\n  ")))
    }
}

/// Pushes to every stayer at `rate` until `end`; stops at the first push
/// that is not answered `message sent to N clients`.
fn push_loop(addr: SocketAddr, n: usize, rate: f64, mb: usize, end: Instant) -> PushReport {
    let mut rep = PushReport::default();
    let mut conn = match HttpConn::connect(addr) {
        Ok(c) => c,
        Err(e) => {
            rep.error = Some(e);
            return rep;
        }
    };
    let mut prefix = String::from(r#"{"userIds":["#);
    for i in 0..n {
        if i > 0 {
            prefix.push(',');
        }
        prefix.push_str(&format!(r#""stay{i}""#));
    }
    prefix.push_str(r#"],"event":"s","message":""#);
    let want = format!("message sent to {n} clients");
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut next = start;
    let mut body = String::with_capacity(prefix.len() + mb + 8);
    while Instant::now() < end {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else if now - next > Duration::from_secs(1) {
            // Far behind: do not burst to catch up.
            next = now;
        }
        next += interval;
        let seq = rep.ok + 1;
        body.clear();
        body.push_str(&prefix);
        body.push_str(&churn::padded(seq, mb));
        body.push_str("\"}");
        let t = Instant::now();
        let answer = conn.post("/push", &body);
        let took = t.elapsed();
        rep.latency_total += took;
        rep.latency_max = rep.latency_max.max(took);
        match answer {
            Ok((200, b)) if b == want => {
                rep.ok = seq;
            }
            Ok(other) => {
                rep.error = Some(format!("answered {other:?}, expected 200 {want:?}"));
                break;
            }
            Err(e) => {
                rep.error = Some(e);
                break;
            }
        }
    }
    rep.elapsed = start.elapsed();
    rep
}

/// Gauges and counters from /metrics that the checks use.
struct Counters {
    connections: u64,
    sockets: u64,
    users: u64,
    subscriptions: u64,
    delivered: u64,
    slow_drops: u64,
}

/// Reads /metrics on a connection closed right after (None if the server
/// guards it with a push key or the answer is not what we expect).
fn server_counters(addr: SocketAddr) -> Option<Counters> {
    let mut c = HttpConn::connect(addr).ok()?;
    let (status, body) = c.request("GET", "/metrics", "").ok()?;
    if status != 200 {
        return None;
    }
    let get = |name: &str| -> Option<u64> {
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))?
            .trim()
            .parse()
            .ok()
    };
    Some(Counters {
        connections: get("wspush_connections")?,
        sockets: get("wspush_sockets")?,
        users: get("wspush_registered_users")?,
        subscriptions: get("wspush_subscriptions")?,
        delivered: get("wspush_messages_delivered_total")?,
        slow_drops: get("wspush_slow_consumer_drops_total")?,
    })
}

struct Report<'a> {
    a: &'a Args,
    seed: u64,
    run_time: Duration,
    push: &'a PushReport,
    delivered: u64,
    pongs: u64,
    tally: &'a ChurnTally,
    before: Sample,
    peak: Sample,
    after: Sample,
    settled_in: Duration,
    server_cpu: f64,
    self_cpu: f64,
    failures: &'a [String],
}

impl Report<'_> {
    fn push_rate(&self) -> f64 {
        self.push.ok as f64 / self.push.elapsed.as_secs_f64().max(1e-9)
    }

    fn latency_avg_ms(&self) -> f64 {
        self.push.latency_total.as_secs_f64() * 1e3 / (self.push.ok.max(1) as f64)
    }

    fn human(&self) {
        let (a, t) = (self.a, self.tally);
        let slow = (0..a.stayers).filter(|&i| stayer::is_slow(i)).count();
        println!("scenario              soak");
        println!("run                   {:.1} s", self.run_time.as_secs_f64());
        println!("stayers               {} ({slow} slow readers)", a.stayers);
        println!(
            "pushes                {} ({:.1}/s, target {}/s; latency avg {:.2} ms, max {:.1} ms)",
            self.push.ok,
            self.push_rate(),
            a.push_rate,
            self.latency_avg_ms(),
            self.push.latency_max.as_secs_f64() * 1e3
        );
        println!(
            "delivered to stayers  {} ({} server pings answered)",
            self.delivered, self.pongs
        );
        println!(
            "churned connections   {} of {} started ({} registered with an id, {} got a push to themselves)",
            t.total(),
            t.started,
            t.with_id,
            t.self_pushes
        );
        for kind in KINDS {
            println!("  {:<26}  {}", kind.label(), t.done[kind.index()]);
        }
        println!(
            "  {:<26}  {} counted, {} read back; 4008 frame seen by {}",
            "pushes to the 4008 ones", t.overflow_counted, t.overflow_received, t.overflow_close_frames
        );
        if t.skipped > 0 {
            println!("  {:<26}  {}", "skipped (too many live)", t.skipped);
        }
        if t.error_count > 0 {
            println!("  {:<26}  {}", "failed", t.error_count);
        }
        println!(
            "server RSS            {} KiB -> {} KiB (peak {} KiB, {:+} KiB)",
            self.before.rss_kib,
            self.after.rss_kib,
            self.peak.rss_kib,
            self.after.rss_kib as i64 - self.before.rss_kib as i64
        );
        println!(
            "  of which anonymous    {} KiB -> {} KiB (peak {} KiB)",
            self.before.anon_kib, self.after.anon_kib, self.peak.anon_kib
        );
        println!(
            "server descriptors    {} -> {} (peak {}, settled in {:.2} s)",
            self.before.fds,
            self.after.fds,
            self.peak.fds,
            self.settled_in.as_secs_f64()
        );
        println!("server CPU            {:.2} s", self.server_cpu);
        println!("bench CPU             {:.2} s", self.self_cpu);
        if self.failures.is_empty() {
            println!("result                ok");
        } else {
            println!("result                FAILED ({} checks)", self.failures.len());
        }
    }

    fn json(&self) {
        let (a, t) = (self.a, self.tally);
        let kinds: Vec<String> = KINDS
            .iter()
            .map(|k| format!("\"{}\":{}", k.name(), t.done[k.index()]))
            .collect();
        let failures: Vec<String> = self.failures.iter().map(|f| json_string(f)).collect();
        println!(
            "{{\"scenario\":\"soak\",\"ok\":{},\"seconds\":{:.3},\"stayers\":{},\"pushes\":{},\
             \"push_rate\":{:.1},\"push_latency_avg_ms\":{:.3},\"push_latency_max_ms\":{:.3},\
             \"delivered\":{},\"stayer_pongs\":{},\"churned\":{},\"churned_by_kind\":{{{}}},\"churn_with_id\":{},\
             \"churn_self_pushes\":{},\"churn_started\":{},\"churn_skipped\":{},\"churn_failed\":{},\
             \"overflow_pushes_counted\":{},\"overflow_pushes_received\":{},\"overflow_close_frames\":{},\
             \"rss_before_kib\":{},\"rss_peak_kib\":{},\"rss_after_kib\":{},\
             \"rss_anon_before_kib\":{},\"rss_anon_peak_kib\":{},\"rss_anon_after_kib\":{},\
             \"fds_before\":{},\"fds_peak\":{},\"fds_after\":{},\"settle_s\":{:.3},\
             \"server_cpu_s\":{:.2},\"bench_cpu_s\":{:.2},\"seed\":{},\"failures\":[{}]}}",
            self.failures.is_empty(),
            self.run_time.as_secs_f64(),
            a.stayers,
            self.push.ok,
            self.push_rate(),
            self.latency_avg_ms(),
            self.push.latency_max.as_secs_f64() * 1e3,
            self.delivered,
            self.pongs,
            t.total(),
            kinds.join(","),
            t.with_id,
            t.self_pushes,
            t.started,
            t.skipped,
            t.error_count,
            t.overflow_counted,
            t.overflow_received,
            t.overflow_close_frames,
            self.before.rss_kib,
            self.peak.rss_kib,
            self.after.rss_kib,
            self.before.anon_kib,
            self.peak.anon_kib,
            self.after.anon_kib,
            self.before.fds,
            self.peak.fds,
            self.after.fds,
            self.settled_in.as_secs_f64(),
            self.server_cpu,
            self.self_cpu,
            self.seed,
            failures.join(","),
        );
    }
}
