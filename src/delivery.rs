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
use crate::history::Pos;
use crate::http::response::{Response, Style};
use crate::hub::{Asker, Ending, Hub, LOG_EVERY};
use crate::outbound::Admit;
use crate::payload::{self, Payload};
use crate::push::{Endpoint, PushRequest};
use crate::replay::{self, Handed, Pumped};
use crate::slab::Slab;
use mio::Registry;
use std::time::Instant;

/// The 413 of a push whose frame no receiver's backlog could hold.
const TOO_BIG_FOR_BACKLOG: &str = "request data illegal: message larger than the backlog limit";

/// What a count means in the answer to `endpoint`.
fn counted(endpoint: Endpoint, n: usize, json: bool, cursor: Option<&str>) -> Response {
    match endpoint {
        Endpoint::Drop => Response::dropped(n, json),
        Endpoint::Push | Endpoint::Broadcast => Response::sent(n, json).with_cursor(cursor),
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
    if req.message().is_some_and(|(_, m)| !payload::fits(m, limit)) {
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
    let (n, cursor) = execute(hub, conns, req, None, now);
    reply(asker, Ok(Done::Local(endpoint, n, cursor)), hub, now)
}

/// What became of a request.
enum Done {
    /// Carried out here: this many connections took it (at this cursor,
    /// with history on).
    Local(Endpoint, usize, Option<String>),
    /// Published: this many nodes received the record (at this cursor,
    /// with history on).
    Published(u64, Option<String>),
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
                Ok(Done::Local(_, n, _)) => Ok(n),
                Ok(Done::Published(nodes, _)) => Ok(usize::try_from(nodes).unwrap_or(usize::MAX)),
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
        Ok(Done::Local(endpoint, n, cursor)) => counted(endpoint, n, style.json, cursor.as_deref()),
        Ok(Done::Published(nodes, cursor)) => {
            Response::published(nodes, style.json).with_cursor(cursor.as_deref())
        }
        Err(Refused::TooLarge(_)) => Response::error(413, TOO_BIG_FOR_BACKLOG, style.json),
        Err(Refused::Unavailable(why)) => unavailable(hub, why, style.json, now),
    })
}

/// `503` with the time to the next reconnect attempt.
pub(crate) fn unavailable(hub: &Hub, why: &str, json: bool, now: Instant) -> Response {
    let retry = hub.redis.as_ref().map_or(1, |r| r.retry_after(now));
    Response::error(503, why, json).with_header("Retry-After", retry.to_string())
}

/// With history on, keeps a push for clients that will resume (SPEC §8)
/// at `at` (a cluster record's position) or the next local one; its
/// cursor.
fn record(
    hub: &mut Hub,
    at: Option<Pos>,
    users: Option<&[String]>,
    p: &Payload<'_>,
    key: Option<&str>,
    now: Instant,
) -> Option<String> {
    let h = hub.history.as_mut()?;
    let pos = at.unwrap_or_else(|| h.next_pos());
    h.record(pos, users, p.event(), p.raw(), p.is_string(), key, now);
    Some(h.cursor(pos))
}

/// Carries out a push, broadcast or drop on this node's connections;
/// returns the count the answer reports, and with history on the push's
/// cursor. `at`: a cluster record's position in the Redis stream.
pub(crate) fn execute(
    hub: &mut Hub,
    conns: &mut Slab<Conn>,
    req: PushRequest,
    at: Option<Pos>,
    now: Instant,
) -> (usize, Option<String>) {
    let mut targets = std::mem::take(&mut hub.targets);
    targets.clear();
    let mut cursor = None;
    let n = match req {
        PushRequest::Push {
            users,
            event,
            message,
            key,
        } => {
            for user in &users {
                hub.binder.for_user_event(user, &event, |c| targets.push(c));
            }
            let tag = key.as_deref().map(|k| payload::key_tag(false, &event, k));
            let p = Payload::new(&event, &message).with_key(tag);
            cursor = record(hub, at, Some(&users), &p, key.as_deref(), now);
            let p = p.with_cursor(cursor.as_deref());
            deliver(hub, conns, &targets, &p, now)
        }
        PushRequest::Broadcast { event, message, key } => {
            targets.extend(hub.binder.subscribers(&event));
            let tag = key.as_deref().map(|k| payload::key_tag(true, &event, k));
            let p = Payload::new(&event, &message).with_key(tag);
            cursor = record(hub, at, None, &p, key.as_deref(), now);
            let p = p.with_cursor(cursor.as_deref());
            deliver(hub, conns, &targets, &p, now)
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
    (n, cursor)
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
        if hub.replays.holds(id, payload.event()) {
            // Being replayed: the replay hands this one out in its turn
            // (it is in the history already), and an older value of its
            // key that still waits is taken out now.
            if let Some(k) = payload.key() {
                conn.out.forget_key(k);
            }
            sent += 1;
            continue;
        }
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

/// A connection of `user` that last saw cursor `since` resumes `events`
/// (SPEC §8): those whose messages after it are all retained are replayed
/// (from the next time the session is driven, then live); for each event,
/// whether it is recovered. Without history, none is.
pub(crate) fn resume(
    hub: &mut Hub,
    id: usize,
    user: &str,
    events: &[&str],
    since: &str,
    now: Instant,
) -> Vec<bool> {
    let Some(h) = hub.history.as_mut() else {
        return vec![false; events.len()];
    };
    let Some(pos) = h.parse_cursor(since) else {
        return vec![false; events.len()];
    };
    let recovered: Vec<bool> = events.iter().map(|e| h.recoverable(user, e, pos, now)).collect();
    let replayed: Vec<std::rc::Rc<str>> = events
        .iter()
        .zip(&recovered)
        .filter(|(_, ok)| **ok)
        .map(|(e, _)| std::rc::Rc::from(*e))
        .collect();
    if !replayed.is_empty() {
        hub.replays.start(id, replayed, pos);
    }
    recovered
}

/// Hands a resuming session more of its replay while its queue is short
/// (SPEC §8; see replay.rs): called whenever the session is driven, so
/// each writable edge brings the next part.
pub(crate) fn pump_replay(hub: &mut Hub, id: usize, conn: &mut Conn, now: Instant) {
    if !hub.replays.is_active(id) {
        return;
    }
    let State::Session(s) = &conn.state else {
        return;
    };
    let (Some(history), Some(user), true) = (hub.history.as_mut(), hub.binder.user_of(id), s.is_open())
    else {
        hub.replays.stop(id);
        return;
    };
    let t = s.transport();
    let mut handed = Handed::default();
    let pumped = replay::pump(
        &mut hub.replays,
        history,
        id,
        user,
        s,
        &mut conn.out,
        now,
        &mut handed,
    );
    hub.metrics.messages_delivered.add(t, handed.messages);
    hub.metrics.bytes_out.add(t, handed.bytes);
    match pumped {
        Pumped::Done | Pumped::Waiting => {}
        Pumped::Again => hub.revisit.push(id),
        Pumped::Gap => {
            debug!(
                "{} fell behind its replay: a message it had not read expired",
                conn.peer
            );
            let why = Close::because(
                close::SLOW_CONSUMER,
                "missed messages expired before they were read",
            );
            hub.end(id, conn, Ending::Close(why), now);
        }
        Pumped::Dead => hub.end(id, conn, Ending::Lost, now),
    }
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
                id,
            } => {
                hub.metrics.redis_publish_latency.observe(latency);
                let cursor = id.zip(hub.history.as_ref()).map(|(id, h)| h.cursor(id));
                answer_parked(hub, conns, waiter, Ok(Done::Published(nodes, cursor)), now);
            }
            Outcome::Failed { waiter, reason } => {
                debug!("push not acknowledged: {reason}");
                // It may have been published anyway: say what we know.
                let why = Refused::Unavailable("redis did not acknowledge the push");
                answer_parked(hub, conns, waiter, Err(why), now);
            }
            Outcome::Message(record)
                if hub.history.is_some() && !crate::presence::record::is_presence(&record) =>
            {
                // Not from the stream: it has no place in the history.
                // (Presence records never go through the stream.)
                refuse_record(hub, "it has no stream ID (is every node started with --history?)");
            }
            Outcome::Message(record) => apply(hub, conns, &record, None, now),
            Outcome::Entry(pos, record) => apply(hub, conns, &record, Some(pos), now),
            Outcome::Epoch(epoch) => {
                if let Some(h) = &mut hub.history {
                    h.set_epoch(&epoch);
                }
            }
            Outcome::Lost => lost(hub, conns, now),
        }
    }
    hub.redis_out = out;
}

/// History mode: this node missed records it can no longer fetch (cut
/// off from Redis longer than the history TTL, or Redis lost the stream).
/// No cursor issued so far may be resumed from here, and every client may
/// have missed messages: each is dropped (4000, so it reconnects), and
/// its resume then says `recovered: false`.
fn lost(hub: &mut Hub, conns: &mut Slab<Conn>, now: Instant) {
    if let Some(h) = &mut hub.history {
        h.forget_all();
    }
    let mut n = 0;
    for id in conns.indices() {
        let Some(conn) = conns.get_mut(id) else { continue };
        if matches!(&conn.state, State::Session(s) if s.is_open()) {
            let why = Close::because(close::DROPPED, "missed pushes while cut off from redis");
            hub.end(id, conn, Ending::Close(why), now);
            hub.arm(id, conn);
            n += 1;
        }
    }
    warn!("pushes were lost while this node was cut off from redis (longer than --history-ttl, or redis lost its data): dropped {n} clients so they resume and re-fetch");
}

/// Counts a record from the channel that is not ours to apply, warning
/// about the first.
fn refuse_record(hub: &mut Hub, reason: &str) {
    let m = &mut hub.metrics;
    m.redis_bad_records += 1;
    if m.redis_bad_records == 1 {
        warn!("ignoring a record on the redis channel that is not a wspush record ({reason}); further ones are only counted");
    } else {
        debug!("ignoring a bad record on the redis channel: {reason}");
    }
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

/// A record from the channel (at its place in the stream, with history):
/// applied like a local push, or counted and ignored when it is not one of
/// ours or too big for this node.
fn apply(hub: &mut Hub, conns: &mut Slab<Conn>, record: &[u8], at: Option<Pos>, now: Instant) {
    if crate::presence::record::is_presence(record) {
        return crate::lifecycle::on_record(hub, conns, record, now);
    }
    let req = match cluster::decode(record) {
        Ok(req) => req,
        Err(reason) => return refuse_record(hub, &reason),
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
    execute(hub, conns, req, at, now);
}

/// Why a well-formed record is still not delivered here (SPEC §12): its
/// message is bigger than this node's body limit (no push to this node
/// could have carried it), or than its backlog limit (every receiver
/// would be closed with 4008).
fn undeliverable(hub: &Hub, req: &PushRequest) -> Option<String> {
    let (_, message) = req.message()?;
    let cfg = hub.cfg();
    let len = message.text().len();
    if len > cfg.max_body_bytes {
        return Some(format!(
            "its message of {len} bytes is larger than the body limit ({} bytes)",
            cfg.max_body_bytes
        ));
    }
    if !payload::fits(message, cfg.max_backlog_bytes) {
        return Some(format!(
            "its message is larger than the backlog limit ({} bytes)",
            cfg.max_backlog_bytes
        ));
    }
    None
}
