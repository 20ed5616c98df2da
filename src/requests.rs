//! An HTTP connection's requests: read as they arrive, routed once,
//! answered in order — or turned into a subscriber session (a WebSocket
//! upgrade, an SSE stream).
//!
//! Answers to pipelined requests are built in one reused buffer and handed
//! to the socket together; a push that must wait for Redis parks the
//! connection (the requests behind it wait too, so answers keep the
//! pipeline's order) until `delivery` answers it.

use crate::access;
use crate::auth::{self, Grant, Presented, Request, Verdict};
use crate::close;
use crate::conn::{Conn, Peer, State};
use crate::delivery;
use crate::http::conn::{Next, ReadStatus};
use crate::http::query;
use crate::http::request::Head;
use crate::http::response::{Response, Style, CONTINUE};
use crate::http::route::{self, Refused, Route};
use crate::http::upgrade::{self, Refusal};
use crate::hub::{Asker, Hub};
use crate::lifecycle;
use crate::listen::Role;
use crate::log::Refusal as Refused_;
use crate::metrics::{Gauges, RedisGauges};
use crate::names;
use crate::proxy;
use crate::push;
use crate::session::sse::{self, SseSession};
use crate::session::ws::WsSession;
use crate::session::Session;
use crate::slab::Slab;
use crate::static_files;
use std::time::Instant;

/// Most reads (and requests per read) handled per connection per turn
/// before the others get theirs.
const TURN_REQUESTS: usize = 64;

/// Answers queued for a peer that is not reading before we stop answering
/// its pipelined requests.
const MAX_PENDING_ANSWERS: usize = 64 * 1024;

/// What a request turned into.
enum Outcome {
    Answer(Response),
    /// Cluster mode: the answer comes when Redis acknowledges.
    Parked,
    Upgrade {
        accept: String,
        envelope: bool,
    },
    Stream(Stream),
    /// A `/lifecycle` stream for a back end.
    Lifecycle,
}

/// An SSE request that passed every check.
struct Stream {
    grant: Grant,
    events: Vec<String>,
    envelope: bool,
    /// The allowed `Origin` to echo in `Access-Control-Allow-Origin`.
    origin: Option<String>,
    /// The cursor to resume from (SPEC §8): `Last-Event-ID`, else `?since=`.
    since: Option<String>,
}

/// Reads, answers and writes an HTTP connection until it has nothing to
/// do, or until it becomes a session. Input is read on every event,
/// writable ones too: a peer whose input stopped at the buffer's cap gets
/// it read once there is room, without a new readable edge. `fin`: see
/// `conn::Ready`. False when the connection is done.
pub(crate) fn drive(
    hub: &mut Hub,
    conns: &mut Slab<Conn>,
    id: usize,
    conn: &mut Conn,
    fin: bool,
    now: Instant,
) -> bool {
    // Until a read finds the socket dry; later bytes raise a new event.
    let mut maybe_input = true;
    for _ in 0..TURN_REQUESTS {
        let State::Http(http) = &mut conn.state else {
            return true;
        };
        match conn.out.flush_out() {
            Err(_) => return false,
            Ok(false) => return true,
            Ok(true) => {}
        }
        if http.waiting {
            // Input waits too; the acknowledgement revisits us.
            return true;
        }
        if http.close_after {
            if http.read_closed {
                return false;
            }
            return hub.linger(conn, now);
        }
        let mut progress = false;
        if !http.read_closed && maybe_input {
            match http.read(&mut conn.out.io, &hub.settings.limits, &mut hub.scratch, fin) {
                Err(_) => return false,
                Ok(ReadStatus::Eof) => {
                    http.read_closed = true;
                    progress = true;
                }
                Ok(ReadStatus::Open { progress: p, dry }) => {
                    progress = p;
                    maybe_input = !dry;
                }
            }
        }
        let handled = answer_round(hub, conns, id, conn, now);
        if let State::Http(http) = &mut conn.state {
            if http.read_closed && !http.close_after && handled == 0 {
                // The peer sent its last request; answer and close.
                http.close_after = true;
                progress = true;
            }
        }
        if !progress && handled == 0 {
            return true;
        }
    }
    hub.revisit.push(id);
    true
}

/// Answers the complete requests at the head of the input, in order, into
/// one buffer written at once. Returns how many were handled; stops at one
/// that parks, upgrades or opens a stream.
fn answer_round(hub: &mut Hub, conns: &mut Slab<Conn>, id: usize, conn: &mut Conn, now: Instant) -> usize {
    let mut out = std::mem::take(&mut hub.answers);
    let mut handled = 0;
    while handled < TURN_REQUESTS {
        let State::Http(http) = &mut conn.state else { break };
        if http.close_after || http.waiting || conn.out.queued() + out.len() > MAX_PENDING_ANSWERS {
            break;
        }
        match http.next_request(&hub.settings.limits) {
            Ok(Next::Incomplete) => break,
            Err(e) => {
                if e.status() == 413 {
                    refusal!(
                        Refused_::Limit,
                        "request from {} refused (413): body over --max-body-bytes {}",
                        conn.peer,
                        hub.cfg().max_body_bytes
                    );
                } else {
                    debug!("bad request from {}: {}", conn.peer, e.reason());
                }
                let json = http.wants_json(&hub.settings.limits);
                hub.answer(
                    &mut out,
                    Response::error(e.status(), e.reason(), json),
                    Style::CLOSING,
                );
                http.close_after = true;
                break;
            }
            Ok(Next::WantsContinue) => {
                // Refuse before the client sends a body we would discard.
                let Some(head) = http.pending_head() else { break };
                match admit(hub, head, conn.peer, http.role, Style::of(head).json) {
                    Err(resp) => {
                        hub.answer(&mut out, resp, Style::CLOSING);
                        http.close_after = true;
                    }
                    Ok(route) => {
                        out.extend_from_slice(CONTINUE);
                        http.sent_continue = true;
                        http.route = Some(route);
                    }
                }
                break;
            }
            Ok(Next::Request(head, body)) => {
                handled += 1;
                http.since = now;
                hub.metrics.http_requests += 1;
                let mut style = Style::of(&head);
                let client = proxy::client(&hub.settings.cfg.trusted_proxies, &head, conn.peer);
                // After the peer's FIN every buffered request is still
                // answered; the last one buffered says the connection closes.
                style.keep_alive &= !(http.read_closed && http.input().is_empty());
                let outcome = match http
                    .route
                    .take()
                    .map_or_else(|| admit(hub, &head, conn.peer, http.role, style.json), Ok)
                {
                    Err(resp) => Outcome::Answer(resp),
                    Ok(route) => handle(
                        hub,
                        conns,
                        id,
                        conn.serial,
                        client.addr,
                        route,
                        &head,
                        &body,
                        style,
                        now,
                    ),
                };
                let State::Http(http) = &mut conn.state else { break };
                match outcome {
                    Outcome::Answer(resp) => http.close_after |= hub.answer(&mut out, resp, style),
                    Outcome::Parked => {
                        http.waiting = true;
                        break;
                    }
                    Outcome::Upgrade { accept, envelope } => {
                        out.extend_from_slice(&upgrade::handshake_response(&accept));
                        conn.out.send(&out);
                        out.clear();
                        // A session is one client for life: it is known by its address.
                        conn.peer = client.addr;
                        become_ws(hub, conn, envelope, now);
                        break;
                    }
                    Outcome::Stream(stream) => {
                        conn.out.send(&out);
                        out.clear();
                        conn.peer = client.addr;
                        become_sse(hub, id, conn, stream, style, now);
                        break;
                    }
                    Outcome::Lifecycle => {
                        conn.out.send(&out);
                        out.clear();
                        lifecycle::listen(hub, id, conn, style, now);
                        break;
                    }
                }
            }
        }
    }
    if !out.is_empty() {
        conn.out.send(&out);
        out.clear();
    }
    hub.answers = out;
    handled
}

/// Routes a request (once) and applies push auth: the route, or the
/// answer that refuses it before its body is read (404, 405, 401, 403).
fn admit(hub: &mut Hub, head: &Head, peer: Peer, role: Role, json: bool) -> Result<Route, Response> {
    let route = match route::route(head, &hub.settings.paths, role) {
        Ok(route) => route,
        Err(Refused::NotFound) => return Err(Response::error(404, "404 page not found", json)),
        Err(Refused::Method(allow)) => return Err(Response::method_not_allowed(allow, json)),
    };
    if !route.guarded() {
        return Ok(route);
    }
    let client = proxy::client(&hub.settings.cfg.trusted_proxies, head, peer);
    let peer = client.addr;
    let req = if client.forwarded {
        Request::forwarded(head, peer)
    } else {
        Request::new(head, peer)
    };
    let (status, why) = match hub.hooks.push.check(&req) {
        Verdict::Allow => return Ok(route),
        Verdict::Unauthorized(why) => (401, why),
        Verdict::Forbidden(why) => (403, why),
    };
    hub.metrics.auth_failures += 1;
    refusal!(
        Refused_::Push,
        "{} {} from {peer} refused ({status}): {why}",
        head.method,
        head.path
    );
    let resp = Response::error(status, why, json);
    Err(if status == 401 {
        resp.with_header("WWW-Authenticate", "Bearer")
    } else {
        resp
    })
}

#[allow(clippy::too_many_arguments)]
fn handle(
    hub: &mut Hub,
    conns: &mut Slab<Conn>,
    id: usize,
    serial: u64,
    peer: Peer,
    route: Route,
    head: &Head,
    body: &[u8],
    style: Style,
    now: Instant,
) -> Outcome {
    let json = style.json;
    let resp = match route {
        Route::Upgrade => return check_upgrade(hub, head, peer, json),
        Route::Sse => match open_stream(hub, head, peer, style) {
            Ok(stream) => return Outcome::Stream(stream),
            Err(resp) => resp,
        },
        Route::Static(i) => static_files::respond(&hub.statics[i], head),
        Route::Whoami => {
            let key = matches!(hub.hooks.push, auth::PushGuard::Key(_));
            let unix_now = hub.unix_now;
            let auth = &mut hub.hooks.auth;
            static_files::whoami(
                head,
                |t| {
                    auth.grant(t, unix_now)
                        .map(|g| g.user)
                        .map_err(|why| why.reason())
                },
                key,
                &hub.settings.cfg.push_path,
            )
        }
        Route::Health if hub.redis.as_ref().is_some_and(|r| !r.is_up()) => {
            delivery::unavailable(hub, "redis unavailable", json, now)
        }
        Route::Health if json => Response::json(200, r#"{"status":"ok"}"#),
        Route::Health => Response::text(200, "ok"),
        Route::Metrics => metrics(hub),
        Route::Presence if hub.redis.as_ref().is_some_and(|r| !r.is_up()) => {
            delivery::unavailable(hub, "redis unavailable", json, now)
        }
        Route::Presence => lifecycle::presence(hub, head, style, now),
        Route::Lifecycle if hub.shutting_down => {
            Response::error(503, "server shutting down", json).with_header("Retry-After", "5")
        }
        Route::Lifecycle => return Outcome::Lifecycle,
        Route::Push(endpoint) => match push::parse(endpoint, body) {
            Err(reason) => Response::error(400, &format!("request data illegal: {reason}"), json),
            Ok(req) => match delivery::submit(hub, conns, req, Asker::Http { id, serial, style }, now) {
                Some(resp) => {
                    if resp.status == 413 {
                        refusal!(
                            Refused_::Limit,
                            "push from {peer} refused (413): message larger than --max-backlog-bytes {}",
                            hub.cfg().max_backlog_bytes
                        );
                    }
                    resp
                }
                None => return Outcome::Parked,
            },
        },
    };
    Outcome::Answer(resp)
}

fn metrics(hub: &Hub) -> Response {
    let gauges = Gauges {
        users: hub.binder.user_count(),
        online_users: hub.presence.online_count(),
        subscriptions: hub.binder.subscription_count(),
        redis: hub.redis.as_ref().map(|r| RedisGauges {
            connected: r.is_up(),
            reconnects: r.stats.reconnects,
            published: r.stats.published,
            publish_failures: r.stats.publish_failures,
            received: r.stats.received,
            bad_records: hub.metrics.redis_bad_records,
            publish_latency: &hub.metrics.redis_publish_latency,
        }),
    };
    let mut text = hub.metrics.render(&gauges);
    if let Some(h) = &hub.history {
        h.render_metrics(&mut text);
    }
    let mut r = Response::text(200, text);
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r
}

/// Whether an upgrade or stream from `origin` may open; a refusal is
/// counted and logged.
fn origin_ok(hub: &mut Hub, head: &Head, peer: Peer, what: &str) -> bool {
    if auth::origin_allowed(hub.settings.cfg.allowed_origins.as_deref(), head.header("Origin")) {
        return true;
    }
    hub.metrics.auth_failures += 1;
    refusal!(
        Refused_::Origin,
        "{what} from {peer} refused (403): origin {:?} is not in --allowed-origins",
        head.header("Origin").unwrap_or_default()
    );
    false
}

/// `503` for a session that cannot open now: shutting down, or over
/// `--max-connections`.
fn no_room(hub: &Hub, peer: Peer, what: &str, json: bool) -> Option<Response> {
    if hub.shutting_down {
        return Some(Response::error(503, "server shutting down", json).with_header("Retry-After", "5"));
    }
    if !hub.at_capacity() {
        return None;
    }
    refusal!(
        Refused_::Limit,
        "{what} from {peer} refused (503): --max-connections {} reached",
        hub.settings.cfg.max_connections
    );
    Some(Response::error(503, "too many connections", json).with_header("Retry-After", "1"))
}

fn check_upgrade(hub: &mut Hub, head: &Head, peer: Peer, json: bool) -> Outcome {
    let resp = match upgrade::check_upgrade(head) {
        Err(Refusal::BadRequest(reason)) => Response::error(400, reason, json),
        Err(Refusal::Method) => Response::method_not_allowed("GET", json),
        Err(Refusal::Version) => Response::error(426, "unsupported WebSocket version", json)
            .with_header("Sec-WebSocket-Version", "13"),
        Ok(_) if !origin_ok(hub, head, peer, "websocket") => Response::error(403, "origin not allowed", json),
        Ok(accept) => match no_room(hub, peer, "websocket", json)
            .or_else(|| access::ip_refusal(hub, peer, "websocket", json))
        {
            Some(resp) => resp,
            None => {
                return Outcome::Upgrade {
                    accept,
                    envelope: query::flag(&head.query, "envelope"),
                }
            }
        },
    };
    Outcome::Answer(resp)
}

/// Checks an SSE request (SPEC §7): origin, events, token, room. A
/// refusal is plain HTTP, with the close code the same refusal gets on an
/// open connection in `Wspush-Code` (and the JSON body).
fn open_stream(hub: &mut Hub, head: &Head, peer: Peer, style: Style) -> Result<Stream, Response> {
    let json = style.json;
    let origin = head.header("Origin");
    if !origin_ok(hub, head, peer, "event stream") {
        return Err(Response::error(403, "origin not allowed", json));
    }
    let cors = |r: Response| match origin {
        Some(o) => r
            .with_header("Access-Control-Allow-Origin", o)
            .with_header("Vary", "Origin"),
        None => r,
    };
    let refuse = |status, why: &str, code| cors(Response::refusal(status, why, code, json));
    let mut events: Vec<String> = Vec::new();
    let mut token = None;
    let mut since = None;
    for pair in query::pairs(&head.query) {
        let Some((k, v)) = pair else {
            return Err(refuse(400, "malformed query string", close::MALFORMED));
        };
        match &*k {
            "event" => {
                if v.is_empty() {
                    return Err(refuse(400, "event is empty", close::MALFORMED));
                }
                if let Err(why) = names::check_event(&v) {
                    return Err(refuse(400, why, close::MALFORMED));
                }
                if v.contains(['\r', '\n']) {
                    return Err(refuse(400, "event has a line break", close::MALFORMED));
                }
                if !events.iter().any(|e| *e == v) {
                    events.push(v.into_owned());
                }
            }
            "token" => token = Some(v),
            "since" => since = Some(v.into_owned()),
            _ => {}
        }
    }
    if events.is_empty() {
        return Err(refuse(400, "event is missing: GET ?event=E", close::MALFORMED));
    }
    if events.len() > hub.settings.cfg.max_events {
        return Err(refuse(
            400,
            close::reason(close::TOO_MANY_EVENTS),
            close::TOO_MANY_EVENTS,
        ));
    }
    // The header wins when both are sent (EventSource cannot set one).
    let token = match auth::bearer(head.header("Authorization")) {
        Presented::Bearer(t) => Some(std::borrow::Cow::Borrowed(t)),
        Presented::Missing | Presented::Malformed => token,
    };
    let token = match token {
        Some(t) if !t.is_empty() => t,
        _ => {
            hub.metrics.auth_failures += 1;
            return Err(refuse(
                401,
                "token missing: send Authorization: Bearer <token> or ?token=",
                close::TOKEN_REJECTED,
            ));
        }
    };
    let grant = names::check_token(&token)
        .and_then(|()| {
            hub.hooks.auth.grant(&token, hub.unix_now).map_err(|why| {
                refusal!(Refused_::Token, "event stream token from {peer} rejected: {why}");
                why.reason()
            })
        })
        .and_then(|g| names::check_user(&g.user).map(|()| g));
    let grant = match grant {
        Ok(g) => g,
        Err(why) => {
            hub.metrics.auth_failures += 1;
            return Err(refuse(401, why, close::TOKEN_REJECTED));
        }
    };
    if let Some(resp) = access::may_stream(hub, &grant, &events, peer, json) {
        return Err(cors(resp));
    }
    if let Some(resp) = no_room(hub, peer, "event stream", json) {
        return Err(cors(resp));
    }
    // The header wins: EventSource sends it by itself on a reconnect.
    let since = head.header("Last-Event-ID").map(str::to_string).or(since);
    Ok(Stream {
        grant,
        events,
        envelope: query::flag(&head.query, "envelope"),
        origin: origin.map(str::to_string),
        since: since.filter(|s| !s.is_empty()),
    })
}

/// When a grant's expiry (Unix seconds) falls on the monotonic clock.
pub(crate) fn expiry(grant: &Grant, unix_now: i64, now: Instant) -> Option<Instant> {
    grant.deadline(unix_now, now)
}

/// Switches an HTTP connection to WebSocket (its `101` is already
/// queued), keeping any bytes that arrived after the request: they are
/// the client's first frames.
fn become_ws(hub: &mut Hub, conn: &mut Conn, envelope: bool, now: Instant) {
    let State::Http(http) = &mut conn.state else {
        return;
    };
    // Copy only the early bytes: handing over the request buffer itself
    // would make it the session's read buffer for life.
    let early = http.input().to_vec();
    let s = &hub.settings;
    let session = WsSession::new(early, s.ws_config, envelope, &s.timeouts, now);
    hub.opened(conn, Session::Ws(session));
}

/// Starts an SSE stream on an HTTP connection and binds it to its user
/// and events. Input after the request is not read any more.
fn become_sse(hub: &mut Hub, id: usize, conn: &mut Conn, stream: Stream, style: Style, now: Instant) {
    let mut session = SseSession::new(!style.http10, stream.envelope, &hub.settings.timeouts, now);
    let mut headers = Vec::new();
    if let Some(origin) = &stream.origin {
        headers.push(("Access-Control-Allow-Origin", origin.as_str()));
        headers.push(("Vary", "Origin"));
    }
    session.start(&mut conn.out, &headers);
    session.set_expiry(expiry(&stream.grant, hub.unix_now, now));
    hub.opened(conn, Session::Sse(session));
    access::took(hub, id, &stream.grant);
    for event in &stream.events {
        // A fresh connection with at most max-events distinct events:
        // binding cannot be refused.
        let _ = hub
            .binder
            .bind(id, &stream.grant.user, event, hub.settings.cfg.max_events);
    }
    if let Some(since) = &stream.since {
        let events: Vec<&str> = stream.events.iter().map(String::as_str).collect();
        let recovered = delivery::resume(hub, id, &stream.grant.user, &events, since, now);
        for (event, ok) in events.iter().zip(recovered) {
            if !ok {
                let mut bytes = Vec::new();
                sse::gap_event(&mut bytes, event, style.http10);
                conn.out.send(&bytes);
            }
        }
    }
    debug!(
        "event stream from {} for {} event(s) of a user",
        conn.peer,
        stream.events.len()
    );
}
