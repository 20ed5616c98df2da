//! Counters and gauges for `/metrics`, in Prometheus text format.
//!
//! Plain integers owned by the loop: no atomics, since only the loop
//! thread touches them. Gauges that the binder already knows (users,
//! subscriptions) are read from it when rendering instead of kept twice.

use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Debug, Default)]
pub struct Metrics {
    /// Open WebSocket connections (bound or not, not yet closing).
    pub connections: u64,
    /// Open TCP connections of any kind.
    pub sockets: u64,
    pub pushes: u64,
    pub messages_delivered: u64,
    pub bytes_out: u64,
    pub slow_consumer_drops: u64,
    pub auth_failures: u64,
    pub http_requests: u64,
    /// Error responses by status code.
    pub http_errors: BTreeMap<u16, u64>,
}

/// Values read from elsewhere at render time.
pub struct Gauges {
    pub users: usize,
    pub subscriptions: usize,
}

impl Metrics {
    pub fn http_error(&mut self, status: u16) {
        *self.http_errors.entry(status).or_default() += 1;
    }

    pub fn render(&self, g: &Gauges) -> String {
        let mut s = String::with_capacity(1024);
        let mut one = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = write!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
        };
        one(
            "wspush_connections",
            "gauge",
            "Open WebSocket connections.",
            self.connections,
        );
        one(
            "wspush_sockets",
            "gauge",
            "Open TCP connections (WebSocket and HTTP).",
            self.sockets,
        );
        one(
            "wspush_registered_users",
            "gauge",
            "Distinct users with at least one connection.",
            g.users as u64,
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
            "wspush_messages_delivered_total",
            "counter",
            "Messages handed to connections.",
            self.messages_delivered,
        );
        one(
            "wspush_bytes_out_total",
            "counter",
            "Payload bytes of delivered messages.",
            self.bytes_out,
        );
        one(
            "wspush_slow_consumer_drops_total",
            "counter",
            "Connections closed with 4008 for not reading.",
            self.slow_consumer_drops,
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
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let mut m = Metrics {
            connections: 2,
            pushes: 5,
            ..Metrics::default()
        };
        m.http_error(404);
        m.http_error(404);
        m.http_error(400);
        let s = m.render(&Gauges {
            users: 1,
            subscriptions: 3,
        });
        assert!(s.contains("\nwspush_connections 2\n"));
        assert!(s.contains("\nwspush_registered_users 1\n"));
        assert!(s.contains("\nwspush_subscriptions 3\n"));
        assert!(s.contains("\nwspush_pushes_total 5\n"));
        assert!(s.contains("wspush_http_errors_total{status=\"404\"} 2\n"));
        assert!(s.contains("wspush_http_errors_total{status=\"400\"} 1\n"));
        for line in s.lines() {
            assert!(line.starts_with('#') || line.starts_with("wspush_"), "{line}");
        }
    }
}
