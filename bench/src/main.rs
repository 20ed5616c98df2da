//! wspush-bench: measures a seed-protocol push server from outside.
//!
//! Scenario `idle`: opens N WebSocket connections (or SSE streams with
//! `--transport sse`), each registering its own user (`u<i>`) for one
//! event, with a bounded number of handshakes in flight; then reads the
//! server's RSS from /proc and reports RSS per connection. Every connection
//! is checked: its upgrade must succeed, and every user must receive a
//! push of its own.
//!
//!     wspush-bench idle --addr 127.0.0.1:12345 --conns 10000 --pid PID [--transport sse]
//!
//! With `--jwt-secret S` each connection registers with an HS256 JWT (the
//! server run with `--jwt-secret S`), and `--events N` adds an N-pattern
//! `events` claim: the cost of per-event permissions (SPEC §9).
//!
//! Scenario `soak`: a bounded run of churn (connections opening,
//! registering and vanishing in every way a client can vanish) under steady
//! pushes to long-lived clients; then checks that the server's descriptors
//! and RSS come back to the baseline and that every long-lived client got
//! every push, once, in order. See `soak.rs`.
//!
//!     wspush-bench soak --addr 127.0.0.1:12345 --pid PID --seconds 60
//!
//! Scenario `fanout`: one user with N connections (WebSocket, or SSE
//! streams with `--transport sse`), M sequential pushes; messages/s,
//! per-message latency, server CPU per message (`fanout.rs`).
//!
//!     wspush-bench fanout --addr 127.0.0.1:12345 --conns 10000 --pushes 200 --pid PID [--transport sse]
//!
//! Scenario `pushrate`: U users, K keep-alive push connections as fast as
//! the answers come for S seconds; pushes/s, round trip, server CPU per
//! push (`pushrate.rs`).
//!
//!     wspush-bench pushrate --addr 127.0.0.1:12345 --users 1000 --http-conns 4 --seconds 10 --pid PID
//!
//! Scenario `hostile`: a quiet phase, then one phase per attack
//! (`fragments`, `bytes`, `slowloris-bytes`, `http-flood`, `pipeline`,
//! `names`; SPEC §12), each a few seconds; meanwhile `/healthz` on fresh
//! connections and pushes to registered clients are timed. Per phase: p50,
//! p99, max of both, and the verdict p99 ≤ 2 × quiet p99 + 5 ms
//! (`hostile.rs`, the attacks in `attack.rs`). One JSON line per phase
//! with `--json`; exit 1 only on tool errors unless `--strict`.
//!
//!     wspush-bench hostile --addr 127.0.0.1:12345 --pid PID --seconds 5
//!
//! Scenarios `resume` and `histfill` (`--history`, SPEC §8): 1,000 clients
//! reconnecting at once and each replayed the 1,000 messages it missed;
//! the server's RSS against `--history-bytes` (`resume.rs`).
//!
//!     wspush-bench resume --addr 127.0.0.1:12345 --clients 1000 --missed 1000 --pid PID
//!     wspush-bench histfill --addr 127.0.0.1:12345 --pid PID --pushes 200000
//!
//! Scenario `presence`: N registered connections on one event, then
//! `GET /presence?event=e` and `?userId=` answers timed and checked
//! byte for byte (`presence.rs`).
//!
//!     wspush-bench presence --addr 127.0.0.1:12345 --conns 10000 --pid PID
//!
//! Every scenario reports the tool's own CPU time and flags a run where it
//! used over 90 % of a core (the tool may then have been the limit).
//! `idle`, `fanout` and `pushrate` also drive servers without `id` replies
//! (the seed and the peers): see `--ack` and `fleet.rs`. Human table by
//! default, one JSON line with `--json` (`hostile`: one per phase).
//!
//! Source addresses are spread over 127.0.0.2-127.0.0.251 so ephemeral
//! ports never run out. Only loopback targets are accepted.

mod attack;
mod churn;
mod client;
mod fanout;
mod fleet;
mod hostile;
mod idle;
mod jwt;
mod measure;
mod presence;
mod procfs;
mod pushrate;
mod resume;
mod soak;
mod sse;
mod stayer;

use std::process::ExitCode;

fn usage() -> String {
    [
        idle::USAGE,
        fanout::USAGE,
        pushrate::USAGE,
        soak::USAGE,
        hostile::USAGE,
        resume::USAGE,
        presence::USAGE,
    ]
    .join("\n\n")
}

/// Reads the scenario name and hands the remaining flags to its parser.
fn run(mut it: impl Iterator<Item = String>) -> Result<(), String> {
    match it.next().as_deref() {
        Some("idle") => idle::run(&idle::parse(it)?),
        Some("soak") => soak::run(&soak::parse(it)?),
        Some("fanout") => fanout::run(&fanout::parse(it)?),
        Some("pushrate") => pushrate::run(&pushrate::parse(it)?),
        Some("hostile") => hostile::run(&hostile::parse(it)?),
        Some("resume") => resume::run(&resume::parse(it)?),
        Some("histfill") => resume::run_fill(&resume::parse_fill(it)?),
        Some("presence") => presence::run(&presence::parse(it)?),
        Some("-h") | Some("--help") | None => Err(usage()),
        Some(other) => Err(format!("unknown scenario {other:?}\n{}", usage())),
    }
}

fn main() -> ExitCode {
    match run(std::env::args().skip(1)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wspush-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
