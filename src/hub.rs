//! What every connection's handler may reach besides the connections
//! themselves: the binder, the metrics, the auth hooks, the timers, the
//! settings, the cluster link. And the lifecycle of a connection, in one
//! place each: arming its timer, acting on its deadlines, ending its
//! session (`end`), dropping its socket (`release`).
//!
//! The connections live beside the hub in the loop's slab, so a handler
//! can hold one connection and the hub at once; code that must reach
//! other connections (delivery) takes the slab too.

use crate::api::Error;
use crate::api::OnMessage;
use crate::auth::{ConnAuth, PushGuard};
use crate::binder::Binder;
use crate::clients::Clients;
use crate::close::{self, Close};
use crate::cluster::redis::{Outcome, Redis};
use crate::config::Config;
use crate::conn::{Conn, Peer, Socket, State};
use crate::history::History;
use crate::http::conn::{HttpConn, Timeout, READ_CHUNK};
use crate::http::request::Limits;
use crate::http::response::{Response, Style};
use crate::http::route::Paths;
use crate::idle::{Entry, IdleQueue};
use crate::listen::Role;
use crate::log::Refusal;
use crate::metrics::Metrics;
use crate::outbound::{discard_some, Drained, Io, Outbound};
use crate::presence::cluster::{node_name, Duties};
use crate::presence::Presence;
use crate::replay::Replays;
use crate::session::{Session, Tick, Timeouts};
use crate::slab::Slab;
use crate::static_files::{self, StaticFile};
use crate::timers::Timers;
use crate::trim;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};
use tungstenite::protocol::WebSocketConfig;

/// How long a closing connection (or one lingering after its final
/// response) may wait for its peer before the socket is simply dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// At most one line per this interval for conditions that repeat under
/// load (a full HTTP cap, oversized cluster records).
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The pluggable parts, set through the builder.
pub(crate) struct Hooks {
    pub auth: ConnAuth,
    pub push: PushGuard,
    pub on_message: Option<OnMessage>,
}

/// The settings the handlers use, derived once from the `Config`.
pub(crate) struct Settings {
    pub cfg: Config,
    pub limits: Limits,
    pub ws_config: WebSocketConfig,
    pub timeouts: Timeouts,
    pub paths: Paths,
}

impl Settings {
    pub fn new(cfg: Config) -> Settings {
        Settings {
            limits: Limits {
                max_head_bytes: 8192,
                max_headers: 64,
                max_body_bytes: cfg.max_body_bytes,
            },
            ws_config: crate::session::ws::config(cfg.max_message_bytes, cfg.max_backlog_bytes),
            timeouts: Timeouts {
                register: cfg.register_timeout,
                ping: cfg.ping_interval,
                close_grace: CLOSE_GRACE,
            },
            paths: Paths {
                ws: cfg.ws_path.clone(),
                sse: cfg.sse_path.clone(),
                push: cfg.push_path.clone(),
                demo: cfg.demo,
                push_listeners: false,
            },
            cfg,
        }
    }
}

/// Who asked for a push, and so who gets its answer.
pub(crate) enum Asker {
    /// An HTTP request on connection `id` (holding `serial`: if the slot
    /// was reused meanwhile, a late answer is dropped, not sent to a
    /// stranger).
    Http { id: usize, serial: u64, style: Style },
    /// A library `Handle` on another thread.
    Handle(SyncSender<Result<usize, Error>>),
    /// Nobody: a record of the node's own (presence, `lifecycle.rs`).
    Nobody,
}

/// Why a session stops being open.
#[derive(Debug)]
pub enum Ending {
    /// We end it, telling the client why.
    Close(Close),
    /// The peer closed it (its close frame, answered).
    PeerClosed,
    /// The socket failed, or the peer vanished: nothing more can be said.
    Lost,
}

pub(crate) struct Hub {
    pub settings: Settings,
    pub binder: Binder,
    /// Per connection and per client address: held tokens' fingerprints,
    /// open connections per address (SPEC §9).
    pub clients: Clients,
    /// Who is online, `/lifecycle` listeners (presence.rs, lifecycle.rs).
    pub presence: Presence,
    pub metrics: Metrics,
    pub timers: Timers,
    pub hooks: Hooks,
    pub statics: Vec<StaticFile>,
    /// Cluster mode: the Redis links (see cluster/redis.rs), and what they
    /// produced this tick.
    pub redis: Option<Redis<Asker>>,
    pub redis_out: Vec<Outcome<Asker>>,
    /// Sockets with no request in progress, oldest first (see idle.rs).
    pub idle: IdleQueue,
    /// Connections to drive again next turn without a new event (their
    /// turn's budget ran out, or an answer arrived for them).
    pub revisit: Vec<usize>,
    /// The one buffer every HTTP read lands in first (see `http::conn::read_into`).
    pub scratch: Box<[u8]>,
    /// Reused buffer the answers to one round of requests are built in.
    pub answers: Vec<u8>,
    /// Reused buffer of push targets, so a push allocates nothing per send.
    pub targets: Vec<usize>,
    next_serial: u64,
    pub shutting_down: bool,
    /// Wall-clock time of this turn (Unix seconds), read once per wake-up
    /// like `now`: JWT times are on this clock.
    pub unix_now: i64,
    /// A big backlog was freed: give memory back soon (see trim.rs).
    pub trim_due: bool,
    /// A descriptor came free (accepting may resume after EMFILE).
    pub freed_descriptor: bool,
    pub http_cap_logged_at: Option<Instant>,
    /// Cluster records refused for their size, and when that was last
    /// logged at `warn`.
    pub big_records: u64,
    pub big_record_warned_at: Option<Instant>,
    /// With `--history` (SPEC §8): the retained messages, and the
    /// connections being replayed what they missed.
    pub history: Option<History>,
    pub replays: Replays,
}

impl Hub {
    pub fn new(settings: Settings, hooks: Hooks, redis: Option<Redis<Asker>>) -> Hub {
        let history = crate::history::for_config(&settings.cfg);
        let mut presence = Presence::new(settings.cfg.offline_grace);
        if redis.is_some() {
            presence.duties = Some(Duties::new(node_name(), settings.cfg.ping_interval));
        }
        Hub {
            clients: Clients::new(settings.cfg.max_connections_per_ip),
            settings,
            binder: Binder::new(),
            presence,
            metrics: Metrics::default(),
            timers: Timers::new(),
            hooks,
            statics: static_files::files(),
            redis,
            redis_out: Vec::new(),
            idle: IdleQueue::default(),
            revisit: Vec::new(),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            answers: Vec::new(),
            targets: Vec::new(),
            next_serial: 0,
            shutting_down: false,
            unix_now: crate::auth::jwt::unix_now(),
            trim_due: false,
            freed_descriptor: false,
            http_cap_logged_at: None,
            big_records: 0,
            big_record_warned_at: None,
            history,
            replays: Replays::default(),
        }
    }

    pub fn cfg(&self) -> &Config {
        &self.settings.cfg
    }

    /// A new connection, speaking HTTP until it says otherwise.
    pub fn new_conn(&mut self, socket: Socket, peer: Peer, role: Role, now: Instant) -> Conn {
        self.next_serial += 1;
        self.metrics.sockets += 1;
        self.metrics.http_sockets += 1;
        Conn {
            out: Outbound::new(socket, self.settings.cfg.max_backlog_bytes),
            peer,
            serial: self.next_serial,
            armed: None,
            state: State::Http(HttpConn::new(now, role)),
        }
    }

    /// The earliest moment the connection needs the loop's attention.
    fn next_deadline(&self, conn: &Conn) -> Option<Instant> {
        match &conn.state {
            State::Http(h) => Some(h.deadline(self.settings.cfg.request_timeout)),
            State::Linger { until } => Some(*until),
            State::Session(s) => s.next_deadline(&self.settings.timeouts),
        }
    }

    /// Makes sure a timer entry exists for the connection's next deadline.
    pub fn arm(&mut self, id: usize, conn: &mut Conn) {
        if let Some(at) = self.next_deadline(conn) {
            if conn.armed.is_none_or(|armed| at < armed) {
                self.timers.arm(at, id, conn.serial);
                conn.armed = Some(at);
            }
        }
    }

    /// A deadline of this connection may have passed; acts on the ones
    /// that did. False when the connection is done.
    pub fn on_timer(&mut self, id: usize, conn: &mut Conn, now: Instant) -> bool {
        match &mut conn.state {
            State::Http(h) => {
                match h.on_timer(now, self.settings.cfg.request_timeout, conn.out.queued() == 0) {
                    Timeout::NotYet => true,
                    Timeout::Close => false,
                    Timeout::Request => {
                        let json = h.wants_json(&self.settings.limits);
                        self.respond_closing(&mut conn.out, Response::error(408, "request timeout", json));
                        self.linger(conn, now)
                    }
                }
            }
            State::Linger { until } => *until > now,
            State::Session(s) => match s.on_timer(&mut conn.out, now, &self.settings.timeouts) {
                Tick::Idle => true,
                Tick::Gone => false,
                Tick::End(why) => {
                    self.end(id, conn, Ending::Close(why), now);
                    true
                }
            },
        }
    }

    /// The one place a session stops being open, whatever the transport
    /// and the cause: unbound (so no count includes it any more), counted,
    /// logged, and — when we end it — told why. Idempotent.
    pub fn end(&mut self, id: usize, conn: &mut Conn, why: Ending, now: Instant) {
        let State::Session(s) = &mut conn.state else {
            return;
        };
        if !s.is_open() {
            return;
        }
        let t = s.transport();
        self.binder.unbind(id);
        // A `/lifecycle` stream was never counted (see `opened_backend`).
        let backend = self.presence.forget_listener(id);
        self.clients.forget(id);
        self.replays.stop(id);
        if !backend {
            self.clients.closed(conn.peer.ip());
            self.metrics.connections.sub(t, 1);
        }
        let timeouts = &self.settings.timeouts;
        match why {
            Ending::Close(close) => {
                if close.code == close::SLOW_CONSUMER {
                    self.metrics.slow_consumer_drops.add(t, 1);
                    info!("closing slow consumer {} ({})", conn.peer, t.label());
                } else if close.code == close::TOO_BIG {
                    refusal!(
                        Refusal::Limit,
                        "closing {} ({}) with 1009: {} (--max-message-bytes {})",
                        conn.peer,
                        t.label(),
                        close.reason(),
                        self.settings.cfg.max_message_bytes
                    );
                } else {
                    debug!(
                        "closing {} ({}) with {} {}",
                        conn.peer,
                        t.label(),
                        close.code,
                        close.reason()
                    );
                }
                s.close(&mut conn.out, &close, now, timeouts);
            }
            Ending::PeerClosed => {
                debug!("{} ({}) closed", conn.peer, t.label());
                s.left(now, timeouts, false);
            }
            Ending::Lost => {
                debug!("{} ({}) lost", conn.peer, t.label());
                s.left(now, timeouts, true);
            }
        }
    }

    /// The one place a socket goes: its session ended first if still open,
    /// the counts updated, last words flushed if the socket takes them.
    pub fn release(&mut self, id: usize, mut conn: Conn, now: Instant) {
        self.end(id, &mut conn, Ending::Lost, now);
        if !matches!(conn.state, State::Session(_)) {
            self.metrics.http_sockets -= 1;
        }
        self.metrics.sockets -= 1;
        debug!("connection {id} from {} closed", conn.peer);
        let _ = conn.out.flush_out();
        self.trim_due |= conn.out.take_freed_big() || conn.out.queued() >= trim::BIG_BACKLOG;
        self.freed_descriptor = true;
    }

    /// Puts a driven connection back (re-arming its timer), or releases it.
    /// Returns the connection to put back in the slab, if any.
    pub fn settle(&mut self, id: usize, mut conn: Conn, keep: bool, now: Instant) -> Option<Conn> {
        self.trim_due |= conn.out.take_freed_big();
        if !keep {
            self.release(id, conn, now);
            return None;
        }
        self.arm(id, &mut conn);
        Some(conn)
    }

    /// After a final response: shut our side once it is written, then drain
    /// input for a moment so the peer reads the response, not a reset.
    pub fn linger(&mut self, conn: &mut Conn, now: Instant) -> bool {
        conn.state = State::Linger {
            until: now + CLOSE_GRACE,
        };
        Hub::keep_lingering(conn)
    }

    /// A lingering connection's turn: its answer goes out, then our side
    /// is shut (a FIN before the answer left would cut it off), and what
    /// the peer still sends is read and dropped. False once the peer is gone.
    pub fn keep_lingering(conn: &mut Conn) -> bool {
        match conn.out.flush_out() {
            Err(_) => return false,
            Ok(true) => Io::shutdown_write(&mut conn.out.io),
            Ok(false) => {}
        }
        discard_some(&mut conn.out.io) != Drained::Gone
    }

    /// Encodes an answer the way the request asked and counts it: the one
    /// place HTTP errors are counted. True when the connection closes
    /// after it.
    pub fn answer(&mut self, out: &mut Vec<u8>, resp: Response, style: Style) -> bool {
        if resp.status >= 400 {
            self.metrics.http_error(resp.status);
        }
        resp.write_styled(out, style)
    }

    /// An answer not tied to a readable request (a malformed one, a
    /// timeout, a refused socket), written now; the connection closes.
    pub fn respond_closing(&mut self, out: &mut Outbound<Socket>, resp: Response) {
        let mut bytes = Vec::new();
        self.answer(&mut bytes, resp, Style::CLOSING);
        out.send(&bytes);
        let _ = out.flush_out();
    }

    /// Whether an idle-queue entry still describes its connection: the
    /// same one (serial), still HTTP, still idle since that entry (stamp).
    fn still_idle(conns: &mut Slab<Conn>, e: &Entry) -> bool {
        conns.get_mut(e.id).is_some_and(|c| {
            c.serial == e.serial && matches!(&c.state, State::Http(h) if h.idle == Some(e.seq))
        })
    }

    /// Keeps the idle queue and the connection's stamp in step with
    /// whether it is idle now; an idle connection also gives its buffer
    /// back, so it costs only its slot and socket.
    pub fn note_idle(&mut self, conns: &mut Slab<Conn>, id: usize, conn: &mut Conn) {
        let nothing_queued = conn.out.queued() == 0;
        let State::Http(h) = &mut conn.state else { return };
        if !(h.is_idle() && nothing_queued) {
            h.idle = None;
            return;
        }
        h.release_buffer();
        if h.idle.is_none() {
            let live = self.metrics.http_sockets as usize;
            h.idle = Some(
                self.idle
                    .push(id, conn.serial, live, |e| Hub::still_idle(conns, e)),
            );
        }
    }

    /// Closes the HTTP socket idle longest; false when none is idle.
    pub fn close_oldest_idle(&mut self, conns: &mut Slab<Conn>, now: Instant) -> bool {
        let Some(Entry { id, .. }) = self.idle.pop_oldest(|e| Hub::still_idle(conns, e)) else {
            return false;
        };
        let Some(conn) = conns.take(id) else {
            return false;
        };
        debug!("closing idle connection {id} from {} to make room", conn.peer);
        self.release(id, conn, now);
        conns.release(id);
        true
    }

    /// Whether this session may open: over `--max-connections` it may not.
    pub fn at_capacity(&self) -> bool {
        self.metrics.connections.total() as usize >= self.settings.cfg.max_connections
    }

    /// A connection became a session: counted as one, no longer as HTTP.
    pub fn opened(&mut self, conn: &mut Conn, session: Session) {
        self.metrics.connections.add(session.transport(), 1);
        self.clients.opened(conn.peer.ip());
        self.metrics.http_sockets -= 1;
        debug!("{} open from {}", session.transport().label(), conn.peer);
        conn.state = State::Session(session);
    }

    /// A connection became a back end's stream (`/lifecycle`): a session
    /// that is no subscriber, so neither counted as a connection nor held
    /// to `--max-connections`.
    pub fn opened_backend(&mut self, conn: &mut Conn, session: Session) {
        self.metrics.http_sockets -= 1;
        conn.state = State::Session(session);
    }
}
