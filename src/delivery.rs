//! Where a push, broadcast or drop goes once it is checked: `submit` is
//! the one place that decides between the local binder and the cluster,
//! applies the size rule, and answers whoever asked — an HTTP request
//! (parked until Redis acknowledges, in cluster mode) or a `Handle`.
//!
//! Delivery itself (`execute`) is the same for a local push and for a
//! record arriving from Redis: one prepared payload, offered to each
//! matching session; a session that cannot take it is ended as a slow
//! consumer by the hub.

use crate::api::Error;
use crate::close::{self, Close};
use crate::cluster;
use crate::cluster::redis::Outcome;
use crate::conn::{Conn, State};
use crate::http::response::{Response, Style};
use crate::hub::{Asker, Ending, Hub, LOG_EVERY};
use crate::outbound::Admit;
use crate::payload::{self, Payload};
use crate::push::{Endpoint, PushRequest};
use crate::slab::Slab;
use mio::Registry;
use std::time::Instant;

/// The 413 of a push whose frame no receiver's backlog could hold.
const TOO_BIG_FOR_BACKLOG: &str = "request data illegal: message larger than the backlog limit";

/// What a count means in the answer to `endpoint`.
fn counted(endpoint: Endpoint, n: usize, json: bool) -> Response {
    match endpoint {
        Endpoint::Drop => Response::dropped(n, json),
        Endpoint::Push | Endpoint::Broadcast => Response::sent(n, json),
    }
}

/// Carries out or publishes a checked request. For an HTTP asker, returns
/// the answer when there is one now; `None` means it comes when Redis
/// acknowledges (the connection waits). A `Handle` is always answered
/// through its channel.
pub(crate) fn submit(
    hub: &mut Hub,
    conns: &mut Slab<Conn>,
    req: PushRequest,
    asker: Asker,
    now: Instant,
) -> Option<Response> {
    let limit = hub.cfg().max_backlog_bytes;
    if req.message().is_some_and(|(e, m)| !payload::fits(e, m, limit)) {
        return reply(asker, Err(Refused::TooLarge(limit)), hub, now);
    }
    if hub.redis.is_some() {
        let record = cluster::encode(&req);
        let refused = match &mut hub.redis {
            Some(redis) => redis.publish(&record, asker, now).err(),
            None => Some(asker),
        };
        return refused
            .and_then(|asker| reply(asker, Err(Refused::Unavailable("redis unavailable")), hub, now));
    }
    let endpoint = req.endpoint();
    let n = execute(hub, conns, req, now);
    reply(asker, Ok(Done::Local(endpoint, n)), hub, now)
}

/// What became of a request.
enum Done {
    /// Carried out here: this many connections took it.
    Local(Endpoint, usize),
    /// Published: this many nodes received the record.
    Published(u64),
}

enum Refused {
    TooLarge(usize),
    Unavailable(&'static str),
}

/// Answers `asker`: the HTTP answer to send, or (for a `Handle`) none.
fn reply(asker: Asker, result: Result<Done, Refused>, hub: &Hub, now: Instant) -> Option<Response> {
    let style = match asker {
        Asker::Handle(tx) => {
            let r = match result {
                Ok(Done::Local(_, n)) => Ok(n),
                Ok(Done::Published(nodes)) => Ok(usize::try_from(nodes).unwrap_or(usize::MAX)),
                Err(Refused::TooLarge(limit)) => Err(Error::TooLarge { limit }),
                Err(Refused::Unavailable(why)) => Err(Error::Unavailable(why.into())),
            };
            // The caller may have given up waiting; nothing to do then.
            let _ = tx.send(r);
            return None;
        }
        Asker::Nobody => return None,
        Asker::Http { style, .. } => style,
    };
    Some(match result {
        Ok(Done::Local(endpoint, n)) => counted(endpoint, n, style.json),
        Ok(Done::Published(nodes)) => Response::published(nodes, style.json),
        Err(Refused::TooLarge(_)) => Response::error(413, TOO_BIG_FOR_BACKLOG, style.json),
        Err(Refused::Unavailable(why)) => unavailable(hub, why, style.json, now),
    })
}

/// `503` with the time to the next reconnect attempt.
pub(crate) fn unavailable(hub: &Hub, why: &str, json: bool, now: Instant) -> Response {
    let retry = hub.redis.as_ref().map_or(1, |r| r.retry_after(now));
    Response::error(503, why, json).with_header("Retry-After", retry.to_string())
}

/// Carries out a push, broadcast or drop on this node's connections;
/// returns the count the answer reports.
pub(crate) fn execute(hub: &mut Hub, conns: &mut Slab<Conn>, req: PushRequest, now: Instant) -> usize {
    let mut targets = std::mem::take(&mut hub.targets);
    targets.clear();
    let n = match req {
        PushRequest::Push {
            users,
            event,
            message,
        } => {
            for user in &users {
                hub.binder.for_user_event(user, &event, |c| targets.push(c));
            }
            deliver(hub, conns, &targets, &Payload::new(&event, &message), now)
        }
        PushRequest::Broadcast { event, message } => {
            targets.extend(hub.binder.subscribers(&event));
            deliver(hub, conns, &targets, &Payload::new(&event, &message), now)
        }
        PushRequest::Drop {
            user,
            event,
            reconnect,
        } => {
            targets.extend(hub.binder.conns_of_user(&user, event.as_deref()));
            let code = if reconnect {
                close::DROPPED
            } else {
                close::DROPPED_FOR_GOOD
            };
            let mut n = 0;
            for &id in &targets {
                if let Some(conn) = conns.get_mut(id) {
                    hub.end(id, conn, Ending::Close(Close::new(code)), now);
                    hub.arm(id, conn);
                    n += 1;
                }
            }
            info!("dropped {n} connections of a user");
            n
        }
    };
    hub.targets = targets;
    n
}

/// Offers one prepared payload to each target; returns how many took it.
fn deliver(
    hub: &mut Hub,
    conns: &mut Slab<Conn>,
    targets: &[usize],
    payload: &Payload<'_>,
    now: Instant,
) -> usize {
    hub.metrics.pushes += 1;
    let mut sent = 0;
    for &id in targets {
        let Some(conn) = conns.get_mut(id) else { continue };
        let State::Session(s) = &mut conn.state else {
            continue;
        };
        let t = s.transport();
        match s.deliver(&mut conn.out, payload) {
            (Admit::Taken, bytes) => {
                sent += 1;
                hub.metrics.messages_delivered.add(t, 1);
                hub.metrics.bytes_out.add(t, bytes as u64);
            }
            (Admit::Over, _) => {
                hub.end(id, conn, Ending::Close(Close::new(close::SLOW_CONSUMER)), now);
                hub.arm(id, conn);
            }
            (Admit::Dead, _) => {
                hub.end(id, conn, Ending::Lost, now);
                hub.arm(id, conn);
            }
        }
    }
    sent
}

/// Cluster mode: Redis timers and output for this tick, then what came
/// back — acknowledgements answered, records applied.
pub(crate) fn run_redis(hub: &mut Hub, conns: &mut Slab<Conn>, registry: &Registry, now: Instant) {
    let Some(redis) = &mut hub.redis else { return };
    if redis.next_deadline().is_some_and(|t| t <= now) {
        redis.on_timer(registry, now, &mut hub.redis_out);
    } else {
        redis.flush(registry, now, &mut hub.redis_out);
    }
    let mut out = std::mem::take(&mut hub.redis_out);
    for outcome in out.drain(..) {
        match outcome {
            Outcome::Published {
                waiter: Asker::Nobody,
                ..
            } => crate::lifecycle::answered(hub, true),
            Outcome::Failed {
                waiter: Asker::Nobody,
                ..
            } => crate::lifecycle::answered(hub, false),
            Outcome::Published {
                waiter,
                nodes,
                latency,
            } => {
                hub.metrics.redis_publish_latency.observe(latency);
                answer_parked(hub, conns, waiter, Ok(Done::Published(nodes)), now);
            }
            Outcome::Failed { waiter, reason } => {
                debug!("push not acknowledged: {reason}");
                // It may have been published anyway: say what we know.
                let why = Refused::Unavailable("redis did not acknowledge the push");
                answer_parked(hub, conns, waiter, Err(why), now);
            }
            Outcome::Message(record) => apply(hub, conns, &record, now),
        }
    }
    hub.redis_out = out;
}

/// An acknowledgement (or its failure) for a parked request.
fn answer_parked(
    hub: &mut Hub,
    conns: &mut Slab<Conn>,
    asker: Asker,
    result: Result<Done, Refused>,
    now: Instant,
) {
    let (id, serial, style) = match &asker {
        Asker::Http { id, serial, style } => (*id, *serial, *style),
        Asker::Handle(_) | Asker::Nobody => (0, 0, Style::CLOSING),
    };
    let Some(resp) = reply(asker, result, hub, now) else {
        return;
    };
    let Some(conn) = conns.get_mut(id).filter(|c| c.serial == serial) else {
        return;
    };
    let State::Http(http) = &mut conn.state else {
        return;
    };
    if !http.waiting {
        return;
    }
    http.waiting = false;
    http.since = now;
    let mut bytes = Vec::new();
    http.close_after |= hub.answer(&mut bytes, resp, style);
    conn.out.send(&bytes);
    // Write it, and go on with the requests pipelined behind it.
    hub.revisit.push(id);
}

/// A record from the channel: applied like a local push, or counted and
/// ignored when it is not one of ours or too big for this node.
fn apply(hub: &mut Hub, conns: &mut Slab<Conn>, record: &[u8], now: Instant) {
    if crate::presence::record::is_presence(record) {
        return crate::lifecycle::on_record(hub, conns, record, now);
    }
    let req = match cluster::decode(record) {
        Ok(req) => req,
        Err(reason) => {
            let m = &mut hub.metrics;
            m.redis_bad_records += 1;
            if m.redis_bad_records == 1 {
                warn!("ignoring a record on the redis channel that is not a wspush record ({reason}); further ones are only counted");
            } else {
                debug!("ignoring a bad record on the redis channel: {reason}");
            }
            return;
        }
    };
    if let Some(why) = undeliverable(hub, &req) {
        // Warned at most every LOG_EVERY, with how many were refused in
        // between: the publisher may be anyone on the channel.
        hub.big_records += 1;
        if hub.big_record_warned_at.is_none_or(|t| now >= t + LOG_EVERY) {
            warn!(
                "not delivering a record from the redis channel: {why} ({} such records so far)",
                hub.big_records
            );
            hub.big_record_warned_at = Some(now);
        } else {
            debug!("not delivering a record from the redis channel: {why}");
        }
        return;
    }
    execute(hub, conns, req, now);
}

/// Why a well-formed record is still not delivered here (SPEC §12): its
/// message is bigger than this node's body limit (no push to this node
/// could have carried it), or than its backlog limit (every receiver
/// would be closed with 4008).
fn undeliverable(hub: &Hub, req: &PushRequest) -> Option<String> {
    let (event, message) = req.message()?;
    let cfg = hub.cfg();
    let len = payload::message_len(message);
    if len > cfg.max_body_bytes {
        return Some(format!(
            "its message of {len} bytes is larger than the body limit ({} bytes)",
            cfg.max_body_bytes
        ));
    }
    if !payload::fits(event, message, cfg.max_backlog_bytes) {
        return Some(format!(
            "its message is larger than the backlog limit ({} bytes)",
            cfg.max_backlog_bytes
        ));
    }
    None
}
