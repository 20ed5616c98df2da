//! Cluster mode inside the loop: pushes become Redis publishes, their
//! answers wait for Redis's acknowledgement, and records arriving on the
//! channel are applied to this node's connections.
//!
//! An HTTP push parks its connection (`Http::waiting`) until the `PUBLISH`
//! reply comes back; the requests pipelined behind it wait too, so
//! responses stay in request order. The waiter remembers the connection by
//! slab index *and* serial: if the client went away meanwhile and the slot
//! was reused, the late answer is dropped instead of reaching a stranger.

use super::{Loop, ReplyStyle};
use crate::cluster;
use crate::conn::State;
use crate::http::response::Response;
use crate::push::{self, PushRequest};
use crate::redis::Outcome;
use crate::Error;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

/// At most one warning about oversized records per this interval.
const BIG_RECORD_WARN_EVERY: Duration = Duration::from_secs(10);

/// Who waits for a publish to be acknowledged.
pub(crate) enum Waiter {
    Http {
        id: usize,
        serial: u64,
        style: ReplyStyle,
    },
    Handle(SyncSender<Result<usize, Error>>),
}

impl Loop {
    /// Publishes a checked request for every node. Returns the response to
    /// send at once when that is impossible (Redis down); `None` means the
    /// answer comes with the acknowledgement (a `Handle` caller is always
    /// answered through its channel).
    pub(super) fn publish(&mut self, req: PushRequest, waiter: Waiter, now: Instant) -> Option<Response> {
        let record = cluster::encode(&req);
        let refused = match &mut self.redis {
            Some(redis) => redis.publish(&record, waiter, now).err(),
            None => Some(waiter),
        };
        match refused? {
            Waiter::Http { style, .. } => Some(self.redis_unavailable(style.json, now)),
            Waiter::Handle(reply) => {
                let _ = reply.send(Err(Error::Unavailable("redis unavailable".into())));
                None
            }
        }
    }

    /// `503 redis unavailable`, with the time to the next reconnect attempt.
    pub(super) fn redis_unavailable(&self, json: bool, now: Instant) -> Response {
        self.unavailable("redis unavailable", json, now)
    }

    fn unavailable(&self, reason: &str, json: bool, now: Instant) -> Response {
        let retry = self.redis.as_ref().map_or(1, |r| r.retry_after(now));
        Response::error(503, reason, json).with_header("Retry-After", retry.to_string())
    }

    /// Redis timers and output for this tick, then what came back.
    pub(super) fn run_redis(&mut self, now: Instant) {
        let Some(redis) = &mut self.redis else { return };
        let registry = self.poll.registry();
        if redis.next_deadline().is_some_and(|t| t <= now) {
            redis.on_timer(registry, now, &mut self.redis_out);
        } else {
            redis.flush(registry, now, &mut self.redis_out);
        }
        let mut out = std::mem::take(&mut self.redis_out);
        for outcome in out.drain(..) {
            match outcome {
                Outcome::Published {
                    waiter,
                    nodes,
                    latency,
                } => {
                    self.core.metrics.redis_publish_latency.observe(latency);
                    self.answer(waiter, Ok(nodes), now);
                }
                Outcome::Failed { waiter, reason } => {
                    debug!("push not acknowledged: {reason}");
                    self.answer(waiter, Err(reason), now);
                }
                Outcome::Message(record) => self.apply(&record, now),
            }
        }
        self.redis_out = out;
    }

    /// A record from the channel: applied like a local push, or counted
    /// and ignored when it is not one of ours.
    fn apply(&mut self, record: &[u8], now: Instant) {
        match cluster::decode(record) {
            Ok(req) => {
                if let Some(why) = self.undeliverable(&req) {
                    // Warned at most every BIG_RECORD_WARN_EVERY, with how
                    // many were refused in between: the publisher may be
                    // anyone on the channel.
                    self.big_records += 1;
                    if self
                        .big_record_warned_at
                        .is_none_or(|t| now >= t + BIG_RECORD_WARN_EVERY)
                    {
                        warn!(
                            "not delivering a record from the redis channel: {why} ({} such records so far)",
                            self.big_records
                        );
                        self.big_record_warned_at = Some(now);
                    } else {
                        debug!("not delivering a record from the redis channel: {why}");
                    }
                    return;
                }
                self.execute(req, now);
            }
            Err(reason) => {
                let m = &mut self.core.metrics;
                m.redis_bad_records += 1;
                if m.redis_bad_records == 1 {
                    warn!("ignoring a record on the redis channel that is not a wspush record ({reason}); further ones are only counted");
                } else {
                    debug!("ignoring a bad record on the redis channel: {reason}");
                }
            }
        }
    }

    /// Why a well-formed record is still not delivered here (SPEC §12):
    /// its message is bigger than this node's body limit (no push to this
    /// node could have carried it), or than its backlog limit (every
    /// receiver would be closed with 4008).
    fn undeliverable(&self, req: &PushRequest) -> Option<String> {
        let (PushRequest::Push { message, .. } | PushRequest::Broadcast { message, .. }) = req else {
            return None;
        };
        let cfg = &self.core.cfg;
        let len = push::message_len(message);
        if len > cfg.max_body_bytes {
            return Some(format!(
                "its message of {len} bytes is larger than the body limit ({} bytes)",
                cfg.max_body_bytes
            ));
        }
        if !push::fits_backlog(req, cfg.max_backlog_bytes) {
            return Some(format!(
                "its message is larger than the backlog limit ({} bytes)",
                cfg.max_backlog_bytes
            ));
        }
        None
    }

    /// Delivers an acknowledgement (node count) or a failure to its waiter.
    fn answer(&mut self, waiter: Waiter, result: Result<u64, String>, now: Instant) {
        let (id, serial, style) = match waiter {
            Waiter::Handle(reply) => {
                let r = result
                    .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
                    .map_err(Error::Unavailable);
                // The caller may have given up waiting; nothing to do then.
                let _ = reply.send(r);
                return;
            }
            Waiter::Http { id, serial, style } => (id, serial, style),
        };
        let resp = match result {
            Ok(nodes) => cluster::published_response(nodes, style.json),
            // It may have been published anyway: say what we know.
            Err(_) => self.unavailable("redis did not acknowledge the push", style.json, now),
        };
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.serial != serial {
            return;
        }
        let State::Http(http) = &mut conn.state else {
            return;
        };
        if !http.waiting {
            return;
        }
        http.waiting = false;
        http.since = now;
        let mut out = Vec::new();
        http.close_after |= self.core.encode_response(&mut out, resp, style);
        conn.stream.send(&out);
        // Write it, and go on with the requests pipelined behind it.
        self.revisit.push(id);
    }
}
