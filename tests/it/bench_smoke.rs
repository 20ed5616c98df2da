//! The load tool (`wspush-bench`, workspace member `bench/`) against the real
//! server binary: small runs of every scenario (`idle`, `fanout`, `pushrate`,
//! `soak`, `hostile`, `presence`; `idle` and `fanout` over WebSocket and SSE) must pass,
//! so the tool and the server keep agreeing. The tool is
//! another package, so its binary is built (once per test run, a no-op when
//! it is up to date) and found under the target directory.

use crate::common::spawn_bin;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long one bench run may take before the test kills it.
const LIMIT: Duration = Duration::from_secs(60);

/// `<target>/release/wspush-bench`, built with `cargo build --release -p
/// wspush-bench` first so it is never stale.
fn bench_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        // A relative CARGO_TARGET_DIR is relative to where cargo ran: the root.
        let target =
            std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |d| root.join(d));
        let bin = target.join("release").join("wspush-bench");
        let cargo = std::env::var_os("CARGO")
            .or_else(|| option_env!("CARGO").map(Into::into))
            .unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "-q", "-p", "wspush-bench"])
            .current_dir(&root)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build --release -p wspush-bench failed");
        assert!(bin.exists(), "{} is missing after the build", bin.display());
        bin
    })
    .clone()
}

/// Runs the bench with `args`, killing it if it outlives `LIMIT`.
#[track_caller]
fn run_bench(args: &[&str]) -> Output {
    let mut child = Command::new(bench_bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wspush-bench");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for wspush-bench") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wspush-bench {args:?} still running after {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

#[track_caller]
fn expect_success(args: &[&str]) -> String {
    let o = run_bench(args);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "wspush-bench {args:?} failed ({}):\n{stdout}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

#[test]
fn idle_scenario_passes_against_the_binary() {
    let server = spawn_bin(&[]);
    let addr = server.addr.to_string();
    let pid = server.child.id().to_string();
    let out = expect_success(&["idle", "--addr", &addr, "--conns", "50", "--pid", &pid]);
    assert!(out.contains("scenario              idle\n"), "{out}");
    assert!(out.contains("connections           50\n"), "{out}");
    assert!(out.contains("RSS per connection"), "{out}");

    let out = expect_success(&["idle", "--addr", &addr, "--conns", "50", "--pid", &pid, "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(v["scenario"], "idle");
    assert_eq!(v["conns"], 50);
    assert!(v["rss_per_conn_kib"].is_number(), "{v}");

    // Without ids, as against the peers: registrations confirmed by pushes.
    let out = expect_success(&[
        "idle", "--addr", &addr, "--conns", "30", "--ack", "none", "--pid", &pid, "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(v["ack"], "none", "{v}");
    assert!(v["bench_cpu_share"].is_number(), "{v}");
}

#[test]
fn fanout_scenario_passes_against_the_binary() {
    let server = spawn_bin(&[]);
    let addr = server.addr.to_string();
    let pid = server.child.id().to_string();
    let out = expect_success(&[
        "fanout", "--addr", &addr, "--conns", "20", "--pushes", "5", "--pid", &pid,
    ]);
    assert!(out.contains("scenario              fanout\n"), "{out}");
    assert!(out.contains("messages/s"), "{out}");
    assert!(out.contains("result                ok\n"), "{out}");

    let out = expect_success(&[
        "fanout", "--addr", &addr, "--conns", "20", "--pushes", "5", "--pid", &pid, "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(v["scenario"], "fanout");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["messages"], 100, "{v}");
    assert_eq!(v["failures"], serde_json::json!([]), "{v}");
    for k in [
        "msgs_per_s",
        "latency_p50_ms",
        "latency_p99_ms",
        "latency_max_ms",
        "server_cpu_s",
    ] {
        assert!(v[k].is_number(), "{k}: {v}");
    }
}

/// Cross-node fan-out: two binaries joined by a real Redis, half the
/// clients on each, pushes to the first.
#[test]
fn cluster_fanout_scenario_passes_against_two_nodes() {
    let redis = crate::redis_harness::RedisServer::start();
    let url = redis.url();
    let a = spawn_bin(&["--redis", &url]);
    let b = spawn_bin(&["--redis", &url]);
    crate::redis_harness::wait_up(a.addr);
    crate::redis_harness::wait_up(b.addr);
    let (addr, also) = (a.addr.to_string(), b.addr.to_string());
    let out = expect_success(&[
        "fanout", "--addr", &addr, "--also", &also, "--conns", "20", "--pushes", "5", "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(
        (v["cluster"].clone(), v["ok"].clone()),
        (true.into(), true.into()),
        "{v}"
    );
    assert_eq!(v["messages"], 100, "{v}");
}

/// `--nodes N` (for `--reuse-port` nodes sharing one port): one node with
/// `--redis` answers `message published to 1 nodes`, which both scenarios
/// must accept in place of a client count, registrations acknowledged by
/// id instead of probed.
#[test]
fn fanout_and_pushrate_accept_a_cluster_answer_with_nodes() {
    let redis = crate::redis_harness::RedisServer::start();
    let node = spawn_bin(&["--redis", &redis.url()]);
    crate::redis_harness::wait_up(node.addr);
    let addr = node.addr.to_string();
    let out = expect_success(&[
        "fanout", "--addr", &addr, "--nodes", "1", "--conns", "20", "--pushes", "5", "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(
        (v["cluster"].clone(), v["messages"].clone()),
        (true.into(), 100.into()),
        "{v}"
    );
    let out = expect_success(&[
        "pushrate",
        "--addr",
        &addr,
        "--nodes",
        "1",
        "--users",
        "8",
        "--http-conns",
        "2",
        "--seconds",
        "0.3",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(
        (v["nodes"].clone(), v["ok"].clone()),
        (1.into(), true.into()),
        "{v}"
    );
    assert!(v["delivered"].as_u64() > Some(0), "{v}");
}

/// `--transport sse`: every client an SSE stream. The tool checks each
/// event (once, in order, on its stream) and the server counts the streams
/// as clients (`message sent to N clients`).
#[test]
fn idle_and_fanout_over_sse_pass_against_the_binary() {
    let server = spawn_bin(&[]);
    let addr = server.addr.to_string();
    let pid = server.child.id().to_string();
    let out = expect_success(&[
        "idle",
        "--addr",
        &addr,
        "--conns",
        "40",
        "--pid",
        &pid,
        "--transport",
        "sse",
    ]);
    assert!(out.contains("connections           40\n"), "{out}");
    assert!(out.contains("transport             sse\n"), "{out}");
    assert!(out.contains("ack stream"), "{out}");

    let out = expect_success(&[
        "idle",
        "--addr",
        &addr,
        "--conns",
        "40",
        "--pid",
        &pid,
        "--transport",
        "sse",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(
        (v["transport"].as_str(), v["conns"].as_u64()),
        (Some("sse"), Some(40)),
        "{v}"
    );
    assert!(v["rss_per_conn_kib"].is_number(), "{v}");

    let out = expect_success(&[
        "fanout",
        "--addr",
        &addr,
        "--conns",
        "20",
        "--pushes",
        "5",
        "--pid",
        &pid,
        "--transport",
        "sse",
    ]);
    assert!(out.contains("20 SSE streams of user fan"), "{out}");
    assert!(out.contains("result                ok\n"), "{out}");

    let out = expect_success(&[
        "fanout",
        "--addr",
        &addr,
        "--conns",
        "20",
        "--pushes",
        "5",
        "--pid",
        &pid,
        "--transport",
        "sse",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(
        (v["transport"].as_str(), v["ok"].as_bool()),
        (Some("sse"), Some(true)),
        "{v}"
    );
    assert_eq!(v["messages"], 100, "{v}");
    assert_eq!(v["failures"], serde_json::json!([]), "{v}");
    assert!(
        v["latency_p99_ms"].is_number() && v["server_cpu_s"].is_number(),
        "{v}"
    );
}

/// A stream the server ends is a failure the tool names, not a hang or a
/// pass: `/drop` ends the streams (`event: close`) while the tool pushes.
#[test]
fn a_dropped_sse_stream_fails_the_fanout() {
    let server = spawn_bin(&["--log-level", "warn"]);
    let addr = server.addr;
    let target = addr.to_string();
    // 10,000 sequential pushes to 500 streams: far longer than the test
    // (the drop ends it), however fast the machine.
    let bench = std::thread::spawn(move || {
        run_bench(&[
            "fanout",
            "--addr",
            &target,
            "--conns",
            "500",
            "--pushes",
            "10000",
            "--transport",
            "sse",
        ])
    });
    // A busy machine (the whole suite at once) may take a while to open
    // 500 streams; a tool that gave up says why.
    let deadline = Instant::now() + Duration::from_secs(60);
    while crate::common::metric(addr, "wspush_connections{transport=\"sse\"}") < 500 {
        if bench.is_finished() {
            let o = bench.join().expect("bench thread");
            panic!(
                "the tool ended before its streams were open:\n{}\n{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        assert!(Instant::now() < deadline, "the streams never all opened");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Past the probes, into the measured pushes.
    std::thread::sleep(Duration::from_millis(200));
    let r = crate::common::post(addr, "/drop", r#"{"userId":"fan"}"#);
    assert_eq!((r.status, r.body.as_str()), (200, "dropped 500 clients"), "{r:?}");
    let o = bench.join().expect("bench thread");
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(!o.status.success(), "{out}\n{err}");
    assert!(out.contains("result                FAILED"), "{out}\n{err}");
    // The reader saw the close event, or the next push found nobody.
    assert!(
        err.contains(r#"event \"close\""#) || err.contains("sent to 0 clients"),
        "{out}\n{err}"
    );
}

#[test]
fn pushrate_scenario_passes_against_the_binary() {
    let server = spawn_bin(&[]);
    let addr = server.addr.to_string();
    let pid = server.child.id().to_string();
    let out = expect_success(&[
        "pushrate",
        "--addr",
        &addr,
        "--users",
        "20",
        "--http-conns",
        "2",
        "--seconds",
        "1",
        "--pid",
        &pid,
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(v["scenario"], "pushrate");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["failures"], serde_json::json!([]), "{v}");
    let pushes = v["pushes"].as_u64().expect("pushes");
    assert!(pushes >= 20, "only {pushes} pushes in a second: {v}");
    assert_eq!(v["delivered"].as_u64(), Some(pushes), "{v}");
    assert!(v["push_rtt_p99_ms"].is_number(), "{v}");
}

#[test]
fn bench_refuses_non_loopback_targets_and_more_push_conns_than_users() {
    let o = run_bench(&["fanout", "--addr", "10.0.0.1:12345"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("loopback"), "{o:?}");
    let o = run_bench(&[
        "pushrate",
        "--addr",
        "127.0.0.1:9",
        "--users",
        "2",
        "--http-conns",
        "4",
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--http-conns"),
        "{o:?}"
    );
}

#[test]
fn soak_scenario_passes_against_the_binary() {
    let server = spawn_bin(&[]);
    let addr = server.addr.to_string();
    let pid = server.child.id().to_string();
    let out = expect_success(&[
        "soak",
        "--addr",
        &addr,
        "--pid",
        &pid,
        "--seconds",
        "3",
        "--stayers",
        "10",
        "--churn-rate",
        "20",
        "--push-rate",
        "50",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(v["scenario"], "soak");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["failures"], serde_json::json!([]), "{v}");
    assert_eq!(v["stayers"], 10);
    let pushes = v["pushes"].as_u64().expect("pushes");
    // 50/s for 3 s; a loaded machine may lag, but not by half.
    assert!(pushes >= 75, "only {pushes} pushes: {v}");
    assert_eq!(v["delivered"].as_u64(), Some(pushes * 10), "{v}");
    // 60 churners: every kind comes up at least twice per 20.
    for (kind, n) in v["churned_by_kind"].as_object().expect("kinds") {
        assert!(n.as_u64().unwrap_or(0) >= 2, "kind {kind}: {v}");
    }
    assert_eq!(v["churned_by_kind"].as_object().map(|m| m.len()), Some(7), "{v}");
    assert_eq!(v["churn_failed"], 0, "{v}");
    assert!(v["churned"].as_u64().unwrap_or(0) >= 40, "{v}");
    let fds = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k}: {v}"));
    assert!(fds("fds_after") <= fds("fds_before"), "{v}");
}

/// `hostile`: every attack for a moment, one JSON line per phase with the
/// figures the lead compares. Only the shape is checked, not the verdicts
/// (they are what the run measures); each attack must have got under way
/// and opened its connections. All six run so a tool change that breaks
/// one (or a server change that refuses it at the door) shows here.
#[test]
fn hostile_scenario_reports_every_phase() {
    let server = spawn_bin(&[]);
    let addr = server.addr.to_string();
    let pid = server.child.id().to_string();
    let out = expect_success(&[
        "hostile",
        "--addr",
        &addr,
        "--pid",
        &pid,
        "--seconds",
        "0.2",
        "--rate",
        "50",
        "--flood-sockets",
        "100",
        // A server that stalls under an attack costs the test this, not 2 s.
        "--probe-timeout",
        "0.3",
        "--json",
    ]);
    let phases: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let names: Vec<&str> = phases
        .iter()
        .map(|v| v["phase"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        names,
        [
            "quiet",
            "fragments",
            "bytes",
            "slowloris-bytes",
            "http-flood",
            "pipeline",
            "names"
        ],
        "{out}"
    );
    let verdicts = ["reference", "ok", "slow", "failed", "no_reference"];
    for v in &phases {
        assert_eq!(v["scenario"], "hostile", "{v}");
        for m in ["healthz", "push"] {
            assert!(v[format!("{m}_probes")].as_u64().unwrap_or(0) > 0, "{m}: {v}");
            for k in ["ok", "failed"] {
                assert!(v[format!("{m}_{k}")].is_u64(), "{m}_{k}: {v}");
            }
            let verdict = v[format!("{m}_verdict")].as_str().unwrap_or("");
            assert!(verdicts.contains(&verdict), "{m}: {v}");
        }
        for k in ["server_cpu_s", "bench_cpu_s", "bench_cpu_share"] {
            assert!(v[k].is_number(), "{k}: {v}");
        }
        assert!(v["failures"].is_array() && v["notes"].is_array(), "{v}");
    }
    // The reference: nothing may fail with no attack running.
    let quiet = &phases[0];
    assert_eq!(
        (quiet["healthz_failed"].as_u64(), quiet["push_failed"].as_u64()),
        (Some(0), Some(0)),
        "{quiet}"
    );
    assert_eq!(quiet["healthz_verdict"], "reference", "{quiet}");
    assert!(
        quiet["healthz_p99_ms"].is_number() && quiet["push_p99_ms"].is_number(),
        "{quiet}"
    );
    assert!(quiet["attack"].is_null(), "{quiet}");
    for v in &phases[1..] {
        let a = &v["attack"];
        assert!(a["connections"].as_u64().unwrap_or(0) >= 1, "{v}");
        assert!(a["units"].as_u64().unwrap_or(0) >= 1, "{v}");
        assert!(v["healthz_bound_ms"].is_number(), "{v}");
        assert_eq!(v["notes"], serde_json::json!([]), "attack not under way? {v}");
    }

    // The human table, quiet phase only.
    let out = expect_success(&[
        "hostile",
        "--addr",
        &addr,
        "--seconds",
        "0.2",
        "--attacks",
        "none",
    ]);
    assert!(out.contains("scenario              hostile\n"), "{out}");
    assert!(out.contains("\nquiet            healthz "), "{out}");
    assert!(out.contains("reference"), "{out}");
}

/// `--history`: clients reconnecting at once are replayed what they
/// missed, in order, then live; the history's memory stays at its cap.
#[test]
fn resume_and_histfill_scenarios_pass_against_the_binary() {
    let server = spawn_bin(&["--history", "200", "--history-bytes", "65536"]);
    let addr = server.addr.to_string();
    let pid = server.child.id().to_string();
    let out = expect_success(&[
        "resume",
        "--addr",
        &addr,
        "--clients",
        "20",
        "--missed",
        "200",
        "--pid",
        &pid,
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(
        (v["scenario"].as_str(), v["ok"].as_bool()),
        (Some("resume"), Some(true)),
        "{v}"
    );
    for k in [
        "caught_up_p50_ms",
        "caught_up_max_ms",
        "rss_peak_kib",
        "server_cpu_s",
    ] {
        assert!(v[k].is_number(), "{k}: {v}");
    }
    let out = expect_success(&[
        "histfill", "--addr", &addr, "--pid", &pid, "--pushes", "2000", "--size", "100", "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["held_bytes"].as_u64() <= v["cap_bytes"].as_u64(), "{v}");
    assert!(v["growth_over_cap"].is_number(), "{v}");
    // Without --history there is no cursor to resume from: said plainly.
    let plain = spawn_bin(&[]);
    let o = run_bench(&[
        "resume",
        "--addr",
        &plain.addr.to_string(),
        "--clients",
        "2",
        "--missed",
        "2",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--history"));
}

#[test]
fn presence_scenario_passes_against_the_binary() {
    let server = spawn_bin(&[]);
    let addr = server.addr.to_string();
    let pid = server.child.id().to_string();
    let out = expect_success(&[
        "presence",
        "--addr",
        &addr,
        "--conns",
        "30",
        "--users",
        "7",
        "--queries",
        "10",
        "--pid",
        &pid,
    ]);
    assert!(out.contains("scenario              presence\n"), "{out}");
    assert!(out.contains("result                ok\n"), "{out}");
    let out = expect_success(&[
        "presence",
        "--addr",
        &addr,
        "--conns",
        "20",
        "--queries",
        "5",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(v["scenario"], "presence");
    assert_eq!(v["ok"], true, "{v}");
    assert!(
        v["event_rtt_p99_ms"].is_number() && v["user_rtt_p99_ms"].is_number(),
        "{v}"
    );
}
