//! Access control on live connections (SPEC §9), where it meets the
//! rest of the server: the checks a register or an SSE open passes
//! besides the token itself (is the event permitted, is the user or the
//! client address over its limit), the `refresh` command, and SIGHUP
//! revocation.
//!
//! The latest token accepted on a connection (register or refresh) is the
//! one that counts: it sets the expiry and the permitted events — events
//! it does not permit are unsubscribed — and its fingerprint is what
//! SIGHUP re-checks (see `clients.rs`). Pushes never consult any of this:
//! a connection is only ever subscribed to events its token permitted.

use crate::auth::patterns::Patterns;
use crate::auth::Grant;
use crate::close::{self, Close};
use crate::conn::{Conn, Peer, State};
use crate::http::response::Response;
use crate::hub::{Ending, Hub};
use crate::log::Refusal;
use crate::names;
use crate::session::Session;
use crate::slab::Slab;
use std::time::Instant;

/// Seconds a client over `--max-connections-per-ip` or
/// `--max-connections-per-user` is asked to wait.
const RETRY_AFTER_SECS: &str = "5";

/// Whether `grant` may register `event` on connection `id`: permitted by
/// the token (4403 `event not allowed`), and — for the connection's first
/// register — within `--max-connections-per-user` (4429).
pub(crate) fn may_register(
    hub: &Hub,
    id: usize,
    grant: &Grant,
    event: &str,
    peer: Peer,
) -> Result<(), Close> {
    if !grant.allows(event) {
        refusal!(
            Refusal::Token,
            "register from {peer} refused (4403): its token does not permit event {event:?}"
        );
        return Err(Close::because(close::OTHER_USER, close::EVENT_NOT_ALLOWED));
    }
    if hub.binder.user_of(id).is_none() && user_full(hub, &grant.user) {
        refusal!(
            Refusal::Limit,
            "register from {peer} refused (4429): --max-connections-per-user {} reached",
            hub.cfg().max_connections_per_user
        );
        return Err(Close::because(close::TOO_MANY_EVENTS, close::TOO_MANY_FOR_USER));
    }
    Ok(())
}

fn user_full(hub: &Hub, user: &str) -> bool {
    let max = hub.cfg().max_connections_per_user;
    max > 0 && hub.binder.connections(user) >= max
}

/// Connection `id` (bound to the grant's user) now holds `grant`: its
/// fingerprint is kept for SIGHUP, and the events it does not permit are
/// unsubscribed. The expiry is the caller's (the session's) to set.
pub(crate) fn took(hub: &mut Hub, id: usize, grant: &Grant) {
    hub.clients.hold(id, grant.print);
    if let Some(patterns) = &grant.events {
        narrow(hub, id, patterns);
    }
}

/// Unsubscribes connection `id` from the events `patterns` do not permit.
fn narrow(hub: &mut Hub, id: usize, patterns: &Patterns) {
    let gone: Vec<String> = hub
        .binder
        .events_of(id)
        .iter()
        .filter(|e| !patterns.allows(e))
        .map(|e| e.to_string())
        .collect();
    for event in &gone {
        hub.binder.unsubscribe(id, event);
    }
    if !gone.is_empty() {
        debug!(
            "connection {id}: {} event(s) no longer permitted, unsubscribed",
            gone.len()
        );
    }
}

/// Token → grant for a `refresh`, with the checks every way in makes: its
/// length, auth, the userId's length; a refusal is counted and logged.
fn authenticate(hub: &mut Hub, peer: Peer, token: &str) -> Result<Grant, Close> {
    let grant = names::check_token(token)
        .and_then(|()| {
            hub.hooks.auth.grant(token, hub.unix_now).map_err(|why| {
                refusal!(Refusal::Token, "refresh token from {peer} rejected: {why}");
                why.reason()
            })
        })
        .and_then(|g| names::check_user(&g.user).map(|()| g));
    grant.map_err(|why| {
        hub.metrics.auth_failures += 1;
        Close::because(close::TOKEN_REJECTED, why)
    })
}

/// `{"type": "refresh", "token": T}`: a new token for the same user takes
/// over the connection — its expiry, its permitted events. Before any
/// register there is nothing to refresh (4400); a rejected token is 4401,
/// another user's 4403; either way the old token stays in force.
pub(crate) fn refresh(
    hub: &mut Hub,
    id: usize,
    conn: &mut Conn,
    token: &str,
    now: Instant,
) -> Result<(), Close> {
    if hub.binder.user_of(id).is_none() {
        return Err(Close::because(close::MALFORMED, close::REFRESH_FIRST));
    }
    let grant = authenticate(hub, conn.peer, token)?;
    if hub.binder.user_of(id) != Some(grant.user.as_str()) {
        return Err(Close::new(close::OTHER_USER));
    }
    took(hub, id, &grant);
    if let State::Session(Session::Ws(ws)) = &mut conn.state {
        ws.set_expiry(grant.deadline(hub.unix_now, now));
    }
    debug!("connection {id} from {} refreshed its token", conn.peer);
    Ok(())
}

/// The SSE side of [`may_register`], and the per-address limit: the
/// refusal of a stream for `events` under `grant` from `peer`, if any.
pub(crate) fn may_stream(
    hub: &Hub,
    grant: &Grant,
    events: &[String],
    peer: Peer,
    json: bool,
) -> Option<Response> {
    if let Some(event) = events.iter().find(|e| !grant.allows(e)) {
        refusal!(
            Refusal::Token,
            "event stream from {peer} refused (403): its token does not permit event {event:?}"
        );
        return Some(Response::refusal(
            403,
            close::EVENT_NOT_ALLOWED,
            close::OTHER_USER,
            json,
        ));
    }
    if user_full(hub, &grant.user) {
        refusal!(
            Refusal::Limit,
            "event stream from {peer} refused (429): --max-connections-per-user {} reached",
            hub.cfg().max_connections_per_user
        );
        let r = Response::refusal(429, close::TOO_MANY_FOR_USER, close::TOO_MANY_EVENTS, json);
        return Some(r.with_header("Retry-After", RETRY_AFTER_SECS));
    }
    ip_refusal(hub, peer, "event stream", json)
}

/// `429` for a WebSocket upgrade or SSE stream from a client address at
/// `--max-connections-per-ip`.
pub(crate) fn ip_refusal(hub: &Hub, peer: Peer, what: &str, json: bool) -> Option<Response> {
    if !hub.clients.ip_full(peer.ip()) {
        return None;
    }
    refusal!(
        Refusal::Limit,
        "{what} from {peer} refused (429): --max-connections-per-ip {} reached",
        hub.cfg().max_connections_per_ip
    );
    Some(
        Response::error(429, "too many connections from this address", json)
            .with_header("Retry-After", RETRY_AFTER_SECS),
    )
}

/// SIGHUP: re-reads the token file or the JWT secret file (auth keeps
/// the old state whole when a file is bad) and ends, with 4401 `token
/// revoked`, every connection whose token no longer maps to its user: a
/// token-file line removed or remapped, a JWT whose secret was removed.
/// A token-file line that now permits fewer events takes effect at once,
/// as a `refresh` would: the events it no longer permits are unsubscribed.
pub(crate) fn reload(hub: &mut Hub, conns: &mut Slab<Conn>, now: Instant) {
    let Some(still) = hub.hooks.auth.reload() else {
        return;
    };
    let mut revoked = Vec::new();
    let mut narrowed = Vec::new();
    for (id, print) in hub.clients.prints() {
        let Some(user) = hub.binder.user_of(id) else {
            continue;
        };
        if !still.keeps(print, user) {
            revoked.push(id);
        } else if let Some(patterns) = still.permits(print) {
            narrowed.push((id, patterns.clone()));
        }
    }
    for (id, patterns) in narrowed {
        narrow(hub, id, &patterns);
    }
    let why = Close::because(close::TOKEN_REJECTED, close::TOKEN_REVOKED);
    let mut n = 0;
    for id in revoked {
        if let Some(conn) = conns.get_mut(id) {
            hub.end(id, conn, Ending::Close(why.clone()), now);
            hub.arm(id, conn);
            n += 1;
        }
    }
    if n > 0 {
        info!("revoked {n} connection(s) whose token no longer maps to their user");
    }
}

#[cfg(test)]
mod tests {
    use crate::close::{self, Close};
    use crate::outbound::mem::MemIo;
    use crate::outbound::Outbound;
    use crate::session::ws::{config, WsSession};
    use crate::session::{Tick, Timeouts};
    use std::time::{Duration, Instant};

    fn timeouts() -> Timeouts {
        Timeouts {
            register: Duration::ZERO,
            ping: Duration::ZERO,
            close_grace: Duration::from_secs(2),
        }
    }

    /// What `refresh` does to a session's clock, stepped: the latest
    /// token's expiry replaces the earlier one, later or sooner, and a
    /// token without `exp` ends the expiry.
    #[test]
    fn the_latest_tokens_expiry_is_the_one_that_counts() {
        let t0 = Instant::now();
        let t = timeouts();
        let mut out = Outbound::new(MemIo::default(), 1 << 20);
        let mut s = WsSession::new(Vec::new(), config(4096, 1 << 20), false, &t, t0);
        s.registered();
        s.set_expiry(Some(t0 + Duration::from_secs(3)));
        // Refreshed at 2 s with a token good for 10 s more.
        s.set_expiry(Some(t0 + Duration::from_secs(12)));
        assert_eq!(s.next_deadline(&t), Some(t0 + Duration::from_secs(12)));
        let at_old = t0 + Duration::from_secs(3);
        assert_eq!(
            s.on_timer(&mut out, at_old, &t),
            Tick::Idle,
            "the old expiry passes quietly"
        );
        let expired = Tick::End(Close::because(close::TOKEN_REJECTED, close::TOKEN_EXPIRED));
        assert_eq!(
            s.on_timer(
                &mut out,
                t0 + Duration::from_secs(12) - Duration::from_millis(1),
                &t
            ),
            Tick::Idle
        );
        assert_eq!(s.on_timer(&mut out, t0 + Duration::from_secs(12), &t), expired);
        // Sooner: a refresh with a shorter-lived token.
        let mut s = WsSession::new(Vec::new(), config(4096, 1 << 20), false, &t, t0);
        s.registered();
        s.set_expiry(Some(t0 + Duration::from_secs(60)));
        s.set_expiry(Some(t0 + Duration::from_secs(1)));
        assert_eq!(s.next_deadline(&t), Some(t0 + Duration::from_secs(1)));
        assert_eq!(s.on_timer(&mut out, t0 + Duration::from_secs(1), &t), expired);
        // None: a token without exp never expires.
        let mut s = WsSession::new(Vec::new(), config(4096, 1 << 20), false, &t, t0);
        s.registered();
        s.set_expiry(Some(t0 + Duration::from_secs(1)));
        s.set_expiry(None);
        assert_eq!(s.next_deadline(&t), None);
        assert_eq!(
            s.on_timer(&mut out, t0 + Duration::from_secs(3600), &t),
            Tick::Idle
        );
    }
}
