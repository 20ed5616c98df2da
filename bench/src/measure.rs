//! What every scenario reports the same way: CPU time of the server and of
//! the tool over a measured phase (with the flag for a saturated tool),
//! latency percentiles, JSON text.

use crate::procfs::cpu_seconds;
use std::time::{Duration, Instant};

/// Above this share of one core the tool itself may have limited the run.
pub const SATURATED: f64 = 0.9;

/// CPU readings at the start of a phase.
pub struct CpuMeter {
    pid: Option<u32>,
    server0: Option<f64>,
    bench0: f64,
    t0: Instant,
}

/// CPU used over a phase.
#[derive(Clone, Copy, Debug)]
pub struct CpuUse {
    /// User + system seconds of the server (when its pid was given).
    pub server_s: Option<f64>,
    /// User + system seconds of this tool, all threads.
    pub bench_s: f64,
    pub wall_s: f64,
}

impl CpuMeter {
    pub fn start(pid: Option<u32>) -> CpuMeter {
        CpuMeter {
            pid,
            server0: pid.and_then(|p| cpu_seconds(&p.to_string())),
            bench0: cpu_seconds("self").unwrap_or(0.0),
            t0: Instant::now(),
        }
    }

    /// The CPU used since `start`, over the wall time up to `end`.
    pub fn stop_at(&self, end: Instant) -> CpuUse {
        let server1 = self.pid.and_then(|p| cpu_seconds(&p.to_string()));
        CpuUse {
            server_s: self.server0.zip(server1).map(|(a, b)| b - a),
            bench_s: cpu_seconds("self").unwrap_or(0.0) - self.bench0,
            wall_s: end.saturating_duration_since(self.t0).as_secs_f64(),
        }
    }
}

impl CpuUse {
    /// The tool's CPU as a share of one core over the phase.
    pub fn bench_share(&self) -> f64 {
        self.bench_s / self.wall_s.max(1e-9)
    }

    pub fn saturated(&self) -> bool {
        self.bench_share() > SATURATED
    }

    /// Server CPU microseconds per unit of work (message, push).
    pub fn server_us_per(&self, units: u64) -> Option<f64> {
        self.server_s.map(|s| s * 1e6 / units.max(1) as f64)
    }

    /// The human report's two CPU lines.
    pub fn print(&self, per: &str, units: u64) {
        match (self.server_s, self.server_us_per(units)) {
            (Some(s), Some(us)) => println!("server CPU            {s:.2} s = {us:.2} µs per {per}"),
            _ => println!("server CPU            unknown (no --pid)"),
        }
        let flag = if self.saturated() {
            " -- LOAD TOOL SATURATED: rates are a lower bound; compare server CPU per unit"
        } else {
            ""
        };
        println!(
            "bench CPU             {:.2} s over {:.2} s ({:.0} % of one core){flag}",
            self.bench_s,
            self.wall_s,
            self.bench_share() * 100.0
        );
    }

    /// JSON members (no braces) for the same figures.
    pub fn json(&self, units: u64) -> String {
        format!(
            "\"server_cpu_s\":{},\"server_us_per_unit\":{},\"bench_cpu_s\":{:.3},\"bench_cpu_share\":{:.3},\"bench_saturated\":{}",
            opt(self.server_s, 3),
            opt(self.server_us_per(units), 3),
            self.bench_s,
            self.bench_share(),
            self.saturated()
        )
    }
}

/// Latencies in nanoseconds; percentiles by nearest rank.
#[derive(Default)]
pub struct Latencies(pub Vec<u64>);

/// p50, p99 and max, in milliseconds.
#[derive(Clone, Copy, Default, Debug)]
pub struct Summary {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latencies {
    pub fn with_capacity(n: usize) -> Latencies {
        Latencies(Vec::with_capacity(n))
    }

    pub fn push(&mut self, d: Duration) {
        self.0.push(d.as_nanos() as u64);
    }

    pub fn summary(&mut self) -> Summary {
        let v = &mut self.0;
        if v.is_empty() {
            return Summary::default();
        }
        v.sort_unstable();
        let at = |p: f64| {
            let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
            v[rank - 1] as f64 / 1e6
        };
        Summary {
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: v[v.len() - 1] as f64 / 1e6,
        }
    }
}

impl Summary {
    pub fn human(&self) -> String {
        format!(
            "p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            self.p50_ms, self.p99_ms, self.max_ms
        )
    }

    /// JSON members `<prefix>_p50_ms` etc.
    pub fn json(&self, prefix: &str) -> String {
        format!(
            "\"{prefix}_p50_ms\":{:.3},\"{prefix}_p99_ms\":{:.3},\"{prefix}_max_ms\":{:.3}",
            self.p50_ms, self.p99_ms, self.max_ms
        )
    }
}

/// A number with `digits` decimals, or null.
pub fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("null".into(), |v| format!("{v:.digits$}"))
}

/// A JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON array of strings.
pub fn json_strings(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| json_string(s)).collect();
    format!("[{}]", items.join(","))
}

/// Keeps the first few failures and counts the rest.
#[derive(Default)]
pub struct Failures {
    pub list: Vec<String>,
    pub more: u64,
}

impl Failures {
    pub fn add(&mut self, f: String) {
        if self.list.len() < 10 {
            self.list.push(f);
        } else {
            self.more += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// All of them, with a line for the ones left out.
    pub fn all(&self) -> Vec<String> {
        let mut v = self.list.clone();
        if self.more > 0 {
            v.push(format!("... and {} more", self.more));
        }
        v
    }

    /// The scenario's result: Ok, or an error naming every kept failure.
    pub fn result(&self, scenario: &str) -> Result<(), String> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(format!("{scenario} failed:\n  {}", self.all().join("\n  ")))
        }
    }

    pub fn print(&self) {
        if self.is_empty() {
            println!("result                ok");
        } else {
            println!("result                FAILED");
            for f in self.all() {
                println!("  {f}");
            }
        }
    }
}
