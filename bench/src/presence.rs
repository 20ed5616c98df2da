//! Scenario `presence`: N registered connections of U users (connection j
//! is user `u<j mod U>`) on one event, then Q sequential
//! `GET /presence?event=e` and Q `GET /presence?userId=u<k>` on one
//! keep-alive connection. Every answer is compared with the exact body
//! the server must give (users sorted by name, at most 10,000, then
//! `"truncated":true`). Reported: the round trip of each kind (p50, p99,
//! max), the answer's size and, with `--pid`, server CPU per query.

use crate::client::HttpConn;
use crate::fleet::{self, Ack, Plan};
use crate::measure::{json_strings, CpuMeter, CpuUse, Failures, Latencies, Summary};
use std::net::SocketAddr;
use std::time::Instant;

pub const USAGE: &str =
    "usage: wspush-bench presence --addr HOST:PORT [--conns N] [--users U] [--queries Q]\n\
     \x20      [--pid PID] [--in-flight K] [--json]\n\
     N registered connections (default 10000, at most 20000) of U users (default N) on event e,\n\
     then Q (default 200) GET /presence?event=e and Q GET /presence?userId=u<k>, one at a time on\n\
     one keep-alive connection. Reports each round trip's p50/p99/max and, with --pid, server CPU\n\
     per query. Exits 1 unless every answer is exactly the expected JSON.";

/// Most users one answer lists (SPEC §10).
const MAX_LISTED: usize = 10_000;

pub struct Args {
    addr: SocketAddr,
    conns: usize,
    users: usize,
    queries: usize,
    pid: Option<u32>,
    in_flight: usize,
    json: bool,
}

pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 12345)),
        conns: 10_000,
        users: 0,
        queries: 200,
        pid: None,
        in_flight: 100,
        json: false,
    };
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => a.addr = val()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--conns" => a.conns = val()?.parse().map_err(|e| format!("--conns: {e}"))?,
            "--users" => a.users = val()?.parse().map_err(|e| format!("--users: {e}"))?,
            "--queries" => a.queries = val()?.parse().map_err(|e| format!("--queries: {e}"))?,
            "--pid" => a.pid = Some(val()?.parse().map_err(|e| format!("--pid: {e}"))?),
            "--in-flight" => a.in_flight = val()?.parse().map_err(|e| format!("--in-flight: {e}"))?,
            "--json" => a.json = true,
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    if !a.addr.ip().is_loopback() {
        return Err("only loopback targets are allowed".into());
    }
    if !(1..=20_000).contains(&a.conns) {
        return Err("--conns must be in 1..=20000".into());
    }
    if a.users == 0 {
        a.users = a.conns;
    }
    if a.users > a.conns {
        return Err("--users must be at most --conns".into());
    }
    if !(1..=100_000).contains(&a.queries) {
        return Err("--queries must be in 1..=100000".into());
    }
    Ok(a)
}

/// The body `/presence?event=e` must answer with.
fn event_answer(a: &Args) -> String {
    let mut users: Vec<String> = (0..a.users).map(|u| format!("u{u}")).collect();
    users.sort_unstable();
    let truncated = users.len() > MAX_LISTED;
    users.truncate(MAX_LISTED);
    let list: Vec<String> = users.iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        "{{\"event\":\"e\",\"users\":[{}],\"connections\":{}{}}}",
        list.join(","),
        a.conns,
        if truncated { ",\"truncated\":true" } else { "" }
    )
}

/// The body `/presence?userId=u<u>` must answer with.
fn user_answer(a: &Args, u: usize) -> String {
    let conns = (0..a.conns).filter(|j| j % a.users == u).count();
    format!("{{\"userId\":\"u{u}\",\"online\":true,\"connections\":{conns},\"events\":[\"e\"]}}")
}

pub fn run(a: &Args) -> Result<(), String> {
    let started = Instant::now();
    let _conns = fleet::connect_all(a.addr, a.conns, a.in_flight, Ack::Id, |j| Plan {
        token: format!("u{}", j % a.users),
        event: "e",
        rcvbuf: None,
    })?;
    let connect_s = started.elapsed().as_secs_f64();
    let mut http = HttpConn::connect(a.addr)?;
    let want_event = event_answer(a);
    let mut failures = Failures::default();
    let mut by_event = Latencies::with_capacity(a.queries);
    let mut by_user = Latencies::with_capacity(a.queries);
    let cpu = CpuMeter::start(a.pid);
    for q in 0..a.queries {
        let t = Instant::now();
        let got = http.request("GET", "/presence?event=e", "")?;
        by_event.push(t.elapsed());
        if got != (200, want_event.clone()) {
            let shown: String = got.1.chars().take(200).collect();
            failures.add(format!("event query {q}: {} {shown:?}…", got.0));
        }
        let u = (q * 7919) % a.users;
        let t = Instant::now();
        let got = http.request("GET", &format!("/presence?userId=u{u}"), "")?;
        by_user.push(t.elapsed());
        let want = user_answer(a, u);
        if got != (200, want.clone()) {
            failures.add(format!(
                "user query {q}: {} {:?}, expected {want:?}",
                got.0, got.1
            ));
        }
    }
    let cpu = cpu.stop_at(Instant::now());
    let r = Report {
        a,
        connect_s,
        answer_bytes: want_event.len(),
        by_event: by_event.summary(),
        by_user: by_user.summary(),
        cpu,
    };
    if a.json {
        r.json(&failures);
    } else {
        r.human(&failures);
    }
    failures.result("presence")
}

struct Report<'a> {
    a: &'a Args,
    connect_s: f64,
    answer_bytes: usize,
    by_event: Summary,
    by_user: Summary,
    cpu: CpuUse,
}

impl Report<'_> {
    fn human(&self, failures: &Failures) {
        let a = self.a;
        println!("scenario              presence");
        println!(
            "connections           {} of {} users on one event ({:.3} s to connect)",
            a.conns, a.users, self.connect_s
        );
        println!(
            "?event=e              {} queries, {} bytes each: {}",
            a.queries,
            self.answer_bytes,
            self.by_event.human()
        );
        println!(
            "?userId=u<k>          {} queries: {}",
            a.queries,
            self.by_user.human()
        );
        self.cpu.print("query", 2 * a.queries as u64);
        failures.print();
    }

    fn json(&self, failures: &Failures) {
        let a = self.a;
        println!(
            "{{\"scenario\":\"presence\",\"ok\":{},\"conns\":{},\"users\":{},\"queries\":{},\"answer_bytes\":{},{},{},{},\"failures\":{}}}",
            failures.is_empty(),
            a.conns,
            a.users,
            a.queries,
            self.answer_bytes,
            self.by_event.json("event_rtt"),
            self.by_user.json("user_rtt"),
            self.cpu.json(2 * a.queries as u64),
            json_strings(&failures.all()),
        );
    }
}
