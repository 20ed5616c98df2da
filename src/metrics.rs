//! Counters and gauges for `/metrics`, in Prometheus text format.
//!
//! Plain integers owned by the loop: no atomics, since only the loop
//! thread touches them. Gauges that the binder already knows (users,
//! subscriptions) are read from it when rendering instead of kept twice.

use crate::session::Transport;
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Debug, Default)]
pub struct Metrics {
    /// Open subscriber connections by transport (bound or not, not yet
    /// closing).
    pub connections: PerTransport,
    /// Open TCP connections of any kind.
    pub sockets: u64,
    /// Open TCP connections that are not WebSocket: HTTP requests,
    /// keep-alive, closing after a response (`--max-http-connections`).
    pub http_sockets: u64,
    pub pushes: u64,
    pub messages_delivered: PerTransport,
    pub bytes_out: PerTransport,
    pub slow_consumer_drops: PerTransport,
    pub auth_failures: u64,
    pub http_requests: u64,
    /// Error responses by status code.
    pub http_errors: BTreeMap<u16, u64>,
    /// Cluster mode: records received that failed the checks.
    pub redis_bad_records: u64,
    pub redis_publish_latency: Histogram,
}

/// A connection metric, one value per transport (SPEC §7: the label
/// `transport="ws"|"sse"`).
#[derive(Debug, Default, Clone, Copy)]
pub struct PerTransport([u64; 2]);

impl PerTransport {
    pub fn get(&self, t: Transport) -> u64 {
        self.0[t as usize]
    }

    pub fn add(&mut self, t: Transport, n: u64) {
        self.0[t as usize] += n;
    }

    pub fn sub(&mut self, t: Transport, n: u64) {
        self.0[t as usize] -= n;
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// Values read from elsewhere at render time.
pub struct Gauges<'a> {
    pub users: usize,
    /// Users online as `/lifecycle` tells it (cluster-wide, grace included).
    pub online_users: usize,
    pub subscriptions: usize,
    /// Present in cluster mode.
    pub redis: Option<RedisGauges<'a>>,
}

/// The cluster's Redis link as `/metrics` shows it.
pub struct RedisGauges<'a> {
    pub connected: bool,
    pub reconnects: u64,
    pub published: u64,
    pub publish_failures: u64,
    pub received: u64,
    /// Received records that were not ours to apply (bad format).
    pub bad_records: u64,
    pub publish_latency: &'a Histogram,
}

/// A Prometheus histogram with fixed buckets, in seconds. Bucket bounds
/// span a loopback Redis (well under a millisecond) to the default
/// `--redis-timeout`.
#[derive(Debug, Default, Clone)]
pub struct Histogram {
    counts: [u64; BOUNDS.len()],
    sum_micros: u64,
    count: u64,
}

const BOUNDS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0, 2.5,
];

impl Histogram {
    pub fn observe(&mut self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BOUNDS.iter().position(|b| secs <= *b) {
            self.counts[i] += 1;
        }
        self.sum_micros += d.as_micros().min(u128::from(u64::MAX)) as u64;
        self.count += 1;
    }

    fn render(&self, s: &mut String, name: &str, help: &str) {
        let _ = write!(s, "# HELP {name} {help}\n# TYPE {name} histogram\n");
        let mut cumulative = 0;
        for (bound, n) in BOUNDS.iter().zip(self.counts) {
            cumulative += n;
            let _ = writeln!(s, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(s, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(s, "{name}_sum {}", self.sum_micros as f64 / 1e6);
        let _ = writeln!(s, "{name}_count {}", self.count);
    }
}

impl Metrics {
    pub fn http_error(&mut self, status: u16) {
        *self.http_errors.entry(status).or_default() += 1;
    }

    pub fn render(&self, g: &Gauges) -> String {
        let mut s = String::with_capacity(1024);
        let mut labelled = |name: &str, kind: &str, help: &str, value: &PerTransport| {
            let _ = write!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
            for t in Transport::ALL {
                let _ = writeln!(s, "{name}{{transport=\"{}\"}} {}", t.label(), value.get(t));
            }
        };
        labelled(
            "wspush_connections",
            "gauge",
            "Open subscriber connections (WebSocket or SSE).",
            &self.connections,
        );
        labelled(
            "wspush_messages_delivered_total",
            "counter",
            "Messages handed to connections.",
            &self.messages_delivered,
        );
        labelled(
            "wspush_bytes_out_total",
            "counter",
            "Payload bytes of delivered messages.",
            &self.bytes_out,
        );
        labelled(
            "wspush_slow_consumer_drops_total",
            "counter",
            "Connections closed with 4008 for not reading.",
            &self.slow_consumer_drops,
        );
        let mut one = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = write!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
        };
        one(
            "wspush_sockets",
            "gauge",
            "Open TCP connections (WebSocket and HTTP).",
            self.sockets,
        );
        one(
            "wspush_http_sockets",
            "gauge",
            "Open TCP connections that are not WebSocket (capped by --max-http-connections).",
            self.http_sockets,
        );
        one(
            "wspush_registered_users",
            "gauge",
            "Distinct users with at least one connection.",
            g.users as u64,
        );
        one(
            "wspush_online_users",
            "gauge",
            "Users online as /lifecycle and /presence tell it: a connection on any node, or within --offline-grace of the last one.",
            g.online_users as u64,
        );
        one(
            "wspush_subscriptions",
            "gauge",
            "Connection-event subscriptions.",
            g.subscriptions as u64,
        );
        one(
            "wspush_pushes_total",
            "counter",
            "Push, broadcast and library push requests handled.",
            self.pushes,
        );
        one(
            "wspush_auth_failures_total",
            "counter",
            "Rejected tokens and push credentials.",
            self.auth_failures,
        );
        one(
            "wspush_http_requests_total",
            "counter",
            "HTTP requests received.",
            self.http_requests,
        );
        s.push_str("# HELP wspush_http_errors_total HTTP error responses by status.\n");
        s.push_str("# TYPE wspush_http_errors_total counter\n");
        for (status, n) in &self.http_errors {
            let _ = writeln!(s, "wspush_http_errors_total{{status=\"{status}\"}} {n}");
        }
        if let Some(r) = &g.redis {
            render_redis(&mut s, r);
        }
        s
    }
}

fn render_redis(s: &mut String, r: &RedisGauges<'_>) {
    let mut one = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = write!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
    };
    one(
        "wspush_redis_connected",
        "gauge",
        "1 while both Redis links are up (pushes accepted), else 0.",
        u64::from(r.connected),
    );
    one(
        "wspush_redis_reconnects_total",
        "counter",
        "Times the node got its Redis links back after losing them.",
        r.reconnects,
    );
    one(
        "wspush_redis_published_total",
        "counter",
        "Records Redis acknowledged.",
        r.published,
    );
    one(
        "wspush_redis_publish_failures_total",
        "counter",
        "Publishes refused or lost with the link (answered 503).",
        r.publish_failures,
    );
    one(
        "wspush_redis_received_total",
        "counter",
        "Records received on the channel (this node's included).",
        r.received,
    );
    one(
        "wspush_redis_bad_records_total",
        "counter",
        "Received records that were not valid and were ignored.",
        r.bad_records,
    );
    r.publish_latency.render(
        s,
        "wspush_redis_publish_seconds",
        "Time from queueing a PUBLISH to Redis acknowledging it.",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let mut m = Metrics {
            pushes: 5,
            ..Metrics::default()
        };
        m.connections.add(Transport::Ws, 2);
        m.connections.add(Transport::Sse, 1);
        m.http_error(404);
        m.http_error(404);
        m.http_error(400);
        let s = m.render(&Gauges {
            users: 1,
            online_users: 2,
            subscriptions: 3,
            redis: None,
        });
        assert!(!s.contains("redis"));
        assert!(s.contains("\nwspush_connections{transport=\"ws\"} 2\n"));
        assert!(s.contains("\nwspush_connections{transport=\"sse\"} 1\n"));
        assert!(s.contains("\nwspush_registered_users 1\n"));
        assert!(s.contains("\nwspush_subscriptions 3\n"));
        assert!(s.contains("\nwspush_online_users 2\n"));
        assert!(s.contains("\nwspush_pushes_total 5\n"));
        assert!(s.contains("wspush_http_errors_total{status=\"404\"} 2\n"));
        assert!(s.contains("wspush_http_errors_total{status=\"400\"} 1\n"));
        for line in s.lines() {
            assert!(line.starts_with('#') || line.starts_with("wspush_"), "{line}");
        }
    }

    #[test]
    fn renders_the_redis_section_in_cluster_mode() {
        let mut h = Histogram::default();
        h.observe(std::time::Duration::from_micros(300));
        h.observe(std::time::Duration::from_millis(3));
        h.observe(std::time::Duration::from_secs(9));
        let s = Metrics::default().render(&Gauges {
            users: 0,
            online_users: 0,
            subscriptions: 0,
            redis: Some(RedisGauges {
                connected: true,
                reconnects: 2,
                published: 3,
                publish_failures: 1,
                received: 4,
                bad_records: 0,
                publish_latency: &h,
            }),
        });
        assert!(s.contains("\nwspush_redis_connected 1\n"));
        assert!(s.contains("\nwspush_redis_reconnects_total 2\n"));
        assert!(s.contains("\nwspush_redis_publish_failures_total 1\n"));
        assert!(s.contains("wspush_redis_publish_seconds_bucket{le=\"0.00025\"} 0\n"));
        assert!(s.contains("wspush_redis_publish_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(s.contains("wspush_redis_publish_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(s.contains("wspush_redis_publish_seconds_bucket{le=\"2.5\"} 2\n"));
        assert!(s.contains("wspush_redis_publish_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(s.contains("wspush_redis_publish_seconds_count 3\n"));
        assert!(s.contains("wspush_redis_publish_seconds_sum 9.0033\n"));
    }
}
