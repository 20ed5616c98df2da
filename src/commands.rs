//! A subscriber's input: what a WebSocket client's frames ask for
//! (register, unregister), the library's message hook, and the refusals
//! (an error reply with an `id`, a close without). An SSE client sends
//! nothing after its request: its input is only watched for its end.

use crate::access;
use crate::api::{ClientMessage, Reply};
use crate::binder::BindError;
use crate::close::{self, Close};
use crate::command::{self, Action};
use crate::conn::{Conn, Peer, State};
use crate::delivery;
use crate::hub::{Ending, Hub};
use crate::log::Refusal;
use crate::names;
use crate::outbound::{Admit, Drained};
use crate::requests::expiry;
use crate::session::ws::{data_frame, Budget, Got, TURN_MESSAGES};
use crate::session::Session;
use serde_json::Value;
use std::rc::Rc;
use std::time::Instant;

/// Reads a session's input (at most one turn's budget of it), acts on it,
/// and flushes. False when the connection is done.
pub(crate) fn drive(hub: &mut Hub, id: usize, conn: &mut Conn, input: bool, now: Instant) -> bool {
    let State::Session(session) = &mut conn.state else {
        return true;
    };
    let drained = match session {
        Session::Sse(s) if input => s.on_input(&mut conn.out),
        Session::Sse(_) => Drained::Dry,
        Session::Ws(ws) if ws.is_broken() => ws.drain_broken(&mut conn.out),
        Session::Ws(_) => {
            if input && !read_commands(hub, id, conn, now) {
                return false;
            }
            let State::Session(Session::Ws(ws)) = &mut conn.state else {
                return true;
            };
            if ws.is_broken() {
                ws.drain_broken(&mut conn.out)
            } else if ws.flush(&mut conn.out) {
                Drained::Dry
            } else {
                Drained::Gone
            }
        }
    };
    match drained {
        Drained::Gone => return false,
        Drained::Spent => hub.revisit.push(id),
        Drained::Dry => {}
    }
    if conn.out.flush_out().is_err() {
        return false;
    }
    delivery::pump_replay(hub, id, conn, now);
    if let State::Session(Session::Sse(s)) = &mut conn.state {
        s.finish(&mut conn.out);
    }
    true
}

/// The WebSocket's messages of this turn, each acted on in order. False
/// when the socket is gone.
fn read_commands(hub: &mut Hub, id: usize, conn: &mut Conn, now: Instant) -> bool {
    let mut budget = Budget::per_turn();
    for _ in 0..TURN_MESSAGES {
        let State::Session(Session::Ws(ws)) = &mut conn.state else {
            return true;
        };
        match ws.next(&mut conn.out, &mut budget, now) {
            Got::Text(t) => on_text(hub, id, conn, t.as_str(), now),
            Got::Binary(b) => on_other(hub, id, conn, ClientMessage::Binary(&b), None, now),
            Got::Dry => return true,
            Got::Spent => {
                hub.revisit.push(id);
                return true;
            }
            Got::PeerClosed => hub.end(id, conn, Ending::PeerClosed, now),
            Got::Failed(why) => {
                debug!("websocket from {} failed: {}", conn.peer, why.reason());
                hub.end(id, conn, Ending::Close(why), now);
                return true;
            }
            Got::Gone => return false,
        }
    }
    hub.revisit.push(id);
    true
}

fn on_text(hub: &mut Hub, id: usize, conn: &mut Conn, text: &str, now: Instant) {
    let (cmd, since) = match command::parse_resuming(text) {
        Ok(parsed) => parsed,
        Err(bad) => {
            return on_other(
                hub,
                id,
                conn,
                ClientMessage::Text(text),
                Some((bad.id, bad.reason)),
                now,
            )
        }
    };
    let result = match cmd.action {
        Action::Register { token, event } => register(hub, id, conn, &token, &event, since.as_deref(), now),
        Action::Unregister { event } => names::check_event(&event)
            .map(|()| {
                hub.binder.unsubscribe(id, &event);
                hub.replays.unsubscribe(id, &event);
                None
            })
            .map_err(|why| Close::because(close::MALFORMED, why)),
        Action::Refresh { token } => access::refresh(hub, id, conn, &token, now).map(|()| None),
    };
    match (result, cmd.id) {
        (Ok(None), Some(rid)) => reply(
            hub,
            id,
            conn,
            data_frame(true, command::ok_reply(&rid).as_bytes()),
            now,
        ),
        (Ok(Some(recovered)), Some(rid)) => reply(
            hub,
            id,
            conn,
            data_frame(true, command::resumed_reply(&rid, recovered).as_bytes()),
            now,
        ),
        (Ok(_), None) => {}
        (Err(why), rid) => refuse(hub, id, conn, rid, why, now),
    }
}

/// Binds the connection to the token's user and subscribes it to `event`;
/// the latest token accepted sets the connection's expiry. With `since`
/// (SPEC §8), whether everything after that cursor follows (replayed
/// from history, then live).
fn register(
    hub: &mut Hub,
    id: usize,
    conn: &mut Conn,
    token: &str,
    event: &str,
    since: Option<&str>,
    now: Instant,
) -> Result<Option<bool>, Close> {
    names::check_event(event).map_err(|why| Close::because(close::MALFORMED, why))?;
    let peer = conn.peer;
    let grant = names::check_token(token)
        .and_then(|()| {
            hub.hooks.auth.grant(token, hub.unix_now).map_err(|why| {
                refusal!(Refusal::Token, "token from {peer} rejected: {why}");
                why.reason()
            })
        })
        .and_then(|g| names::check_user(&g.user).map(|()| g));
    let grant = grant.map_err(|why| {
        hub.metrics.auth_failures += 1;
        Close::because(close::TOKEN_REJECTED, why)
    })?;
    access::may_register(hub, id, &grant, event, peer)?;
    // Already subscribed: it gets the live messages now, and a replay
    // would repeat some; the client is told to re-fetch instead.
    let mut already = false;
    if since.is_some() && hub.binder.user_of(id) == Some(grant.user.as_str()) {
        hub.binder
            .for_user_event(&grant.user, event, |c| already |= c == id);
    }
    hub.binder
        .bind(id, &grant.user, event, hub.settings.cfg.max_events)
        .map_err(|e| refusal_of(e, peer, hub.settings.cfg.max_events))?;
    access::took(hub, id, &grant);
    if let State::Session(Session::Ws(ws)) = &mut conn.state {
        ws.registered();
        ws.set_expiry(expiry(&grant, hub.unix_now, now));
    }
    Ok(since.map(|since| !already && delivery::resume(hub, id, &grant.user, &[event], since, now) == [true]))
}

/// The close a refused binding gets, logged (SPEC §4: every refusal a
/// user may need to debug, at `info`).
fn refusal_of(e: BindError, peer: Peer, max_events: usize) -> Close {
    match e {
        BindError::OtherUser => {
            refusal!(
                Refusal::Token,
                "register from {peer} refused (4403): its token maps to another user than the connection's"
            );
            Close::new(close::OTHER_USER)
        }
        BindError::TooManyEvents => {
            refusal!(
                Refusal::Limit,
                "register from {peer} refused (4429): over --max-events {max_events}"
            );
            Close::new(close::TOO_MANY_EVENTS)
        }
    }
}

/// A frame that is not a command: the library's message hook gets it;
/// without one it is a malformed command (4400).
fn on_other(
    hub: &mut Hub,
    id: usize,
    conn: &mut Conn,
    msg: ClientMessage<'_>,
    malformed: Option<(Option<Value>, &'static str)>,
    now: Instant,
) {
    if let Some(hook) = &mut hub.hooks.on_message {
        let user = hub.binder.user_of(id);
        if let Some(answer) = hook(user, msg) {
            let frame = match answer {
                Reply::Text(t) => data_frame(true, t.as_bytes()),
                Reply::Binary(b) => data_frame(false, &b),
            };
            reply(hub, id, conn, frame, now);
        }
        return;
    }
    let (rid, why) = malformed.unwrap_or((None, "binary frames are not commands"));
    refuse(hub, id, conn, rid, Close::because(close::MALFORMED, why), now);
}

/// A refused command: an error reply when it had an `id`, else the close.
fn refuse(hub: &mut Hub, id: usize, conn: &mut Conn, rid: Option<Value>, why: Close, now: Instant) {
    match rid {
        Some(rid) => {
            let text = command::error_reply(&rid, why.code, why.reason());
            reply(hub, id, conn, data_frame(true, text.as_bytes()), now);
        }
        None => hub.end(id, conn, Ending::Close(why), now),
    }
}

/// One frame of our own to this client, admitted like a push: a client
/// that does not read its replies is a slow consumer too.
fn reply(hub: &mut Hub, id: usize, conn: &mut Conn, frame: Vec<u8>, now: Instant) {
    let State::Session(Session::Ws(ws)) = &mut conn.state else {
        return;
    };
    match ws.send(&mut conn.out, &Rc::from(frame)) {
        Admit::Taken => {}
        Admit::Over => hub.end(id, conn, Ending::Close(Close::new(close::SLOW_CONSUMER)), now),
        Admit::Dead => hub.end(id, conn, Ending::Lost, now),
    }
}
