//! Presence on the loop (SPEC §10): `GET /presence` answered from the
//! binder, `GET /lifecycle` streams fed with each transition, and in
//! cluster mode the presence records exchanged with the other nodes. The
//! decisions are `presence.rs`'s; this module applies them.
//!
//! A `/lifecycle` stream is an SSE session (`session::sse`: pings, the
//! backlog limit, `event: close` at shutdown) that is bound to no user
//! and no event, so no push, broadcast or drop reaches it. It is a back
//! end's stream, not a subscriber: it is not counted in
//! `wspush_connections` or against `--max-connections`, and it is not
//! presence itself.

use crate::close::{self, Close};
use crate::cluster::redis::Redis;
use crate::conn::{Conn, State};
use crate::http::request::Head;
use crate::http::response::{Response, Style};
use crate::hub::{Asker, Ending, Hub};
use crate::outbound::Admit;
use crate::presence::record::{self, Record};
use crate::presence::{self, Query, Transition};
use crate::session::sse::{self, SseSession};
use crate::session::Session;
use crate::slab::Slab;
use std::rc::Rc;
use std::time::Instant;

/// Events per SSE chunk at most, so a burst (a node's users all going
/// offline at once) is written as several modest pieces.
const EVENTS_PER_FRAME: usize = 256;

/// Once per loop turn, after the connections had theirs: presence takes
/// in the binder's changes and the clock, the cluster gets what it is
/// owed, and the listeners hear what changed.
pub(crate) fn run(hub: &mut Hub, conns: &mut Slab<Conn>, now: Instant) {
    hub.presence.follow(&mut hub.binder, now);
    hub.presence.step(now);
    if hub.presence.duties.is_some() {
        cluster_turn(hub, now);
    }
    announce(hub, conns, now);
}

/// When `run` next has work.
pub(crate) fn next_deadline(hub: &Hub, now: Instant) -> Option<Instant> {
    // Changes made outside a connection's turn (a drop record from
    // Redis), or the Redis link changing state: at once.
    let up_changed = match (&hub.presence.duties, &hub.redis) {
        (Some(d), Some(r)) => d.is_up() != r.is_up(),
        _ => false,
    };
    if hub.binder.has_changes() || up_changed {
        return Some(now);
    }
    hub.presence.next_deadline()
}

/// Cluster mode: beats, snapshots, hellos and this turn's updates go to
/// Redis; nodes that fell silent are dropped.
fn cluster_turn(hub: &mut Hub, now: Instant) {
    let up = hub.redis.as_ref().is_some_and(Redis::is_up);
    let (due, dead) = hub.presence.tick_cluster(up, &hub.binder, now);
    for (node, users) in dead {
        if users > 0 {
            info!("presence: node {node} not heard from for 1.5 ping intervals; its {users} users count as gone");
        } else {
            debug!("presence: node {node} not heard from for 1.5 ping intervals");
        }
    }
    let Some(me) = hub.presence.duties.as_ref().map(|d| d.me.clone()) else {
        return;
    };
    if hub.binder.user_count() > 0 {
        curious(hub, now);
    }
    if !up {
        // The snapshot sent when the link is back covers these.
        hub.presence.dirty.clear();
        return;
    }
    if due.hello {
        publish(hub, record::hello(&me), now);
    }
    let mut users: Vec<Rc<str>> = if due.snapshot {
        hub.presence.dirty.clear();
        hub.binder.users().map(|(u, _)| u.clone()).collect()
    } else {
        std::mem::take(&mut hub.presence.dirty)
    };
    if due.snapshot || !users.is_empty() {
        users.sort_unstable();
        users.dedup();
        let states: Vec<(Rc<str>, presence::cluster::UserState)> = users
            .into_iter()
            .map(|u| {
                let s = presence::local_state(&hub.binder, &u);
                (u, s)
            })
            .collect();
        let rec = record::states(&me, due.snapshot, states.iter().map(|(u, s)| (&**u, s)));
        publish(hub, rec, now);
        if let Some(d) = &mut hub.presence.duties {
            d.spoke();
        }
    }
    if due.beat {
        publish(hub, record::beat(&me, hub.binder.user_count()), now);
    }
}

/// This node needs the other nodes' state (see `Duties::be_curious`).
fn curious(hub: &mut Hub, now: Instant) {
    if let Some(d) = &mut hub.presence.duties {
        d.be_curious(now);
    }
}

/// Hands a record to the cluster link; nobody waits for its answer. One
/// that cannot go (the link just failed, too much in flight) is lost:
/// the next beat shows the others their view is off, and they ask again.
fn publish(hub: &mut Hub, rec: Vec<u8>, now: Instant) {
    if let Some(redis) = &mut hub.redis {
        // Not through the history's stream: presence is no push, and a
        // node catching up must not replay old states.
        if redis.publish_plain(&rec, Asker::Nobody, now).is_err() {
            debug!("presence: a record could not be published");
        }
    }
}

/// Redis answered one of our presence records (`ok`: took it). The link
/// counted it as a record, but `wspush_redis_*` count pushes: it is
/// taken back out, so presence never shows in them.
pub(crate) fn answered(hub: &mut Hub, ok: bool) {
    if let Some(r) = &mut hub.redis {
        let n = if ok {
            &mut r.stats.published
        } else {
            &mut r.stats.publish_failures
        };
        *n = n.saturating_sub(1);
    }
}

/// A presence record from the channel (another node's, or our own coming
/// back). Applied after the binder's latest changes, so this node's part
/// is current when another node's news is weighed against it. Not counted
/// as a received record (see `answered`).
pub(crate) fn on_record(hub: &mut Hub, conns: &mut Slab<Conn>, rec: &[u8], now: Instant) {
    if let Some(r) = &mut hub.redis {
        r.stats.received = r.stats.received.saturating_sub(1);
    }
    let rec = match record::decode(rec) {
        Ok(r) => r,
        Err(why) => {
            hub.metrics.redis_bad_records += 1;
            debug!("ignoring a bad presence record on the redis channel: {why}");
            return;
        }
    };
    let Some(me) = hub.presence.duties.as_ref().map(|d| d.me.clone()) else {
        return;
    };
    hub.presence.follow(&mut hub.binder, now);
    match rec {
        Record::Hello { node } | Record::Beat { node, .. } | Record::States { node, .. } if node == me => {}
        Record::Hello { node } => {
            if hub.presence.view.heard(&node, now) {
                debug!("presence: node {node} joined");
            }
            if let Some(d) = &mut hub.presence.duties {
                d.owe_snapshot(now);
            }
        }
        Record::Beat { node, users } => {
            if hub.presence.view.heard(&node, now) {
                debug!("presence: node {node} joined");
            }
            if hub.presence.view.users_of(&node) != Some(users)
                && hub.presence.duties.as_mut().is_some_and(|d| d.resync(now))
            {
                debug!("presence: our view of node {node} is off; asking for snapshots");
            }
        }
        Record::States {
            node,
            users,
            snapshot,
        } => {
            let mut changed = Vec::new();
            hub.presence.view.apply(&node, users, snapshot, now, &mut changed);
            let binder = &hub.binder;
            hub.presence.remote(changed, |u| binder.has_user(u), now);
        }
    }
    announce(hub, conns, now);
}

/// `GET /presence?userId=U` or `?event=E`: JSON, or with `Accept:
/// text/plain` `online`/`offline` or one user per line. (In cluster mode
/// the caller answers 503 while Redis is unreachable.)
pub(crate) fn presence(hub: &mut Hub, head: &Head, style: Style, now: Instant) -> Response {
    let query = match presence::parse_query(&head.query) {
        Ok(q) => q,
        Err(why) => return Response::error(400, why, style.json),
    };
    hub.presence.follow(&mut hub.binder, now);
    curious(hub, now);
    let text = !style.json && accepts_text(head);
    let p = &hub.presence;
    match query {
        Query::User(u) => {
            let a = p.user(&hub.binder, &u);
            if text {
                Response::text(200, a.text())
            } else {
                Response::json(200, a.json(&u))
            }
        }
        Query::Event(e) => {
            let a = p.event(&hub.binder, &e);
            let resp = if text {
                Response::text(200, a.text())
            } else {
                Response::json(200, a.json(&e))
            };
            if a.truncated {
                resp.with_header("Wspush-Truncated", "true")
            } else {
                resp
            }
        }
    }
}

fn accepts_text(head: &Head) -> bool {
    const TEXT: &[u8] = b"text/plain";
    head.header("Accept").is_some_and(|a| {
        a.as_bytes()
            .windows(TEXT.len())
            .any(|w| w.eq_ignore_ascii_case(TEXT))
    })
}

/// Turns an HTTP connection into a `/lifecycle` stream. No snapshot: the
/// stream starts with what happens next.
pub(crate) fn listen(hub: &mut Hub, id: usize, conn: &mut Conn, style: Style, now: Instant) {
    let session = SseSession::new(!style.http10, false, &hub.settings.timeouts, now);
    session.start(&mut conn.out, &[]);
    hub.opened_backend(conn, Session::Sse(session));
    hub.presence.listen(id);
    curious(hub, now);
    debug!("lifecycle stream from {}", conn.peer);
}

/// The transitions so far, to every listener, in order; `event: online`
/// or `offline` with `data: {"userId": U}`. A listener that cannot take
/// them is a slow consumer.
fn announce(hub: &mut Hub, conns: &mut Slab<Conn>, now: Instant) {
    let transitions = hub.presence.take_transitions();
    if transitions.is_empty() || hub.presence.listeners().is_empty() {
        hub.presence.recycle(transitions);
        return;
    }
    let listeners = hub.presence.listeners().to_vec();
    for batch in transitions.chunks(EVENTS_PER_FRAME) {
        let (plain, chunked) = frames(batch);
        for &id in &listeners {
            let Some(conn) = conns.get_mut(id) else { continue };
            let State::Session(Session::Sse(s)) = &mut conn.state else {
                continue;
            };
            if !s.is_open() {
                continue;
            }
            let frame = if s.chunked() { &chunked } else { &plain };
            match s.send(&mut conn.out, frame) {
                Admit::Taken => {}
                Admit::Over => {
                    hub.end(id, conn, Ending::Close(Close::new(close::SLOW_CONSUMER)), now);
                    hub.arm(id, conn);
                }
                Admit::Dead => {
                    hub.end(id, conn, Ending::Lost, now);
                    hub.arm(id, conn);
                }
            }
        }
    }
    hub.presence.recycle(transitions);
}

/// The events of `batch` as one piece, close-delimited and chunked.
fn frames(batch: &[Transition]) -> (Rc<[u8]>, Rc<[u8]>) {
    let mut block = Vec::with_capacity(batch.len() * 48);
    for t in batch {
        let mut data = Vec::with_capacity(t.user().len() + 14);
        data.extend_from_slice(b"{\"userId\":");
        let _ = serde_json::to_writer(&mut data, t.user());
        data.push(b'}');
        sse::event_block(&mut block, t.name(), &String::from_utf8_lossy(&data), None);
    }
    let mut chunked = Vec::with_capacity(block.len() + 16);
    sse::put_frame(&mut chunked, &block, true);
    (Rc::from(block), Rc::from(chunked))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_exactly_the_user_object() {
        let batch = [
            Transition::Online(Rc::from("alice")),
            Transition::Offline(Rc::from("b\"o\nb")),
        ];
        let (plain, chunked) = frames(&batch);
        let want = "event: online\ndata: {\"userId\":\"alice\"}\n\nevent: offline\ndata: {\"userId\":\"b\\\"o\\nb\"}\n\n";
        assert_eq!(std::str::from_utf8(&plain).unwrap(), want);
        assert_eq!(
            std::str::from_utf8(&chunked).unwrap(),
            format!("{:x}\r\n{want}\r\n", want.len())
        );
    }
}
