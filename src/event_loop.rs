//! The one thread that owns everything: it polls, accepts, dispatches each
//! readiness event to the connection's driver (`requests` for HTTP,
//! `commands` for sessions), runs the timers, and puts connections back or
//! releases them. What a request or a frame means is decided elsewhere.
//!
//! # How readiness, buffers and timeouts work together
//!
//! Every socket is registered once, edge-triggered, for reading and
//! writing. An edge says "something changed", so each driver works until
//! the kernel answers `WouldBlock`: accept until the backlog is empty, read
//! until the socket is dry, write until the send buffer is full. An HTTP
//! read that returns less than it asked for also counts as dry, unless the
//! event carried the peer's FIN, which no later edge would report again
//! (`http::conn::read_into`). A driver that stops early for fairness (a
//! client flooding frames, a deep pipeline) puts its connection on
//! `hub.revisit`, and the next poll does not sleep. WebSocket input is
//! metered (`session::ws::Budget`): at most `TURN_BYTES` and `TURN_FRAMES`
//! per connection per turn, because tungstenite's `read` would otherwise go
//! on reading an unfinished message as long as the peer keeps sending.
//! Spurious events are harmless: every read and write tolerates
//! `WouldBlock`.
//!
//! HTTP input is parsed as it arrives and never twice (`http::conn`); a
//! connection's buffer is given back when it goes idle. Sockets that are
//! not sessions are capped (`--max-http-connections`): at the cap, a new
//! one closes the socket idle longest (`idle.rs`) or is answered 503.
//!
//! Bytes that cannot be written now stay queued per connection
//! (`outbound.rs`) and go out on the next writable edge; the queue is
//! capped (the backlog limit), so a client that stops reading is ended as
//! a slow consumer instead of growing us.
//!
//! Time is an input: the loop reads the clock once per wake-up and passes
//! `now` down. Each connection reports its next deadline (request timeout,
//! register timeout, next ping, token expiry, close grace); `Timers` keeps
//! the earliest per connection, and `poll` sleeps until the nearest one.
//!
//! A connection being driven is taken out of the slab, so its driver can
//! hold it, the hub and the other connections at once.

use crate::api::Error;
use crate::cluster::redis::{self, Redis};
use crate::commands;
use crate::config::Config;
use crate::conn::{Conn, Peer, Ready, Socket, State};
use crate::delivery;
use crate::http::response::Response;
use crate::hub::{Asker, Hooks, Hub, Settings, LOG_EVERY};
use crate::lifecycle;
use crate::listen::{Listener, Role};
use crate::notify::Notifier;
use crate::push::PushRequest;
use crate::requests;
use crate::slab::Slab;
use crate::trim;
use mio::{Events, Interest, Poll, Token};
use std::io;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};

pub(crate) const WAKER: Token = Token(usize::MAX - 1);
pub(crate) const SIGNALS: Token = Token(usize::MAX - 2);
/// Listener `i` is `Token(FIRST_LISTENER - i)`; connections take small
/// slab indices, far below.
pub(crate) const FIRST_LISTENER: usize = usize::MAX - 64;
/// Most listeners one server takes.
pub(crate) const MAX_LISTENERS: usize = 256;

/// The token of listener `i`.
pub(crate) fn listener_token(i: usize) -> Token {
    Token(FIRST_LISTENER - i)
}

/// How long accepting pauses after the process ran out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long shutdown waits for close handshakes and pending responses.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// A request from a `Handle` on another thread.
pub(crate) enum Control {
    /// Answered with the local count, or in cluster mode with the number
    /// of nodes Redis reached.
    Push(PushRequest, SyncSender<Result<usize, Error>>),
    Shutdown,
}

/// Shutting down: once begun, the loop ends when every connection is gone
/// or the grace is over, whichever comes first.
#[derive(Debug, Default)]
struct Shutdown {
    by: Option<Instant>,
}

impl Shutdown {
    /// True the first time only.
    fn begin(&mut self, now: Instant, grace: Duration) -> bool {
        if self.by.is_some() {
            return false;
        }
        self.by = Some(now + grace);
        true
    }

    fn done(&self, now: Instant, nothing_left: bool) -> bool {
        self.by.is_some_and(|by| nothing_left || now >= by)
    }
}

/// What the loop is given to run with.
pub(crate) struct Parts {
    pub poll: Poll,
    /// Registered as `listener_token(i)`, in the order given.
    pub listeners: Vec<(Listener, Role)>,
    pub signals: Option<signal_hook_mio::v1_0::Signals>,
    pub rx: Receiver<Control>,
    pub config: Config,
    pub hooks: Hooks,
    pub redis_target: Option<redis::Target>,
    /// systemd's notification socket (inactive outside systemd).
    pub notifier: Notifier,
}

pub(crate) struct Loop {
    poll: Poll,
    /// Emptied at shutdown: dropping them stops accepting (and removes
    /// the unix socket files we made).
    listeners: Vec<(Listener, Role)>,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    rx: Receiver<Control>,
    conns: Slab<Conn>,
    hub: Hub,
    accept_paused_until: Option<Instant>,
    accept_warned_at: Option<Instant>,
    shutdown: Shutdown,
    last_trim: Option<Instant>,
    notifier: Notifier,
    /// When systemd's watchdog is next told the loop still turns.
    next_watchdog: Option<Instant>,
}

impl Loop {
    pub(crate) fn new(parts: Parts) -> Loop {
        let Parts {
            poll,
            listeners,
            signals,
            rx,
            config: cfg,
            hooks,
            redis_target,
            notifier,
        } = parts;
        let now = Instant::now();
        let redis = match (&cfg.redis, redis_target) {
            (Some(url), Some(target)) => {
                let r = Redis::new(url.clone(), target, &cfg.redis_channel, cfg.redis_timeout, now);
                Some(if cfg.history > 0 {
                    r.with_history(cfg.history_ttl)
                } else {
                    r
                })
            }
            _ => None,
        };
        let mut settings = Settings::new(cfg);
        // Push listeners may be systemd's (named `push`), not the config's.
        settings.paths.push_listeners = listeners.iter().any(|(_, role)| *role == Role::Push);
        Loop {
            poll,
            listeners,
            signals,
            rx,
            conns: Slab::new(),
            hub: Hub::new(settings, hooks, redis),
            accept_paused_until: None,
            accept_warned_at: None,
            shutdown: Shutdown::default(),
            last_trim: None,
            next_watchdog: notifier.watchdog_interval().map(|_| now),
            notifier,
        }
    }

    /// Runs until shutdown (a `Handle`, or SIGINT/SIGTERM when enabled).
    pub(crate) fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        // Every listener is bound and registered: connections are accepted
        // from the first turn on.
        self.notifier.ready();
        loop {
            let now = Instant::now();
            if self.shutdown.done(now, self.conns.is_empty()) {
                info!("stopped");
                return Ok(());
            }
            let wake = [
                self.hub.timers.next_at(),
                self.accept_paused_until,
                self.shutdown.by,
                self.next_trim(now),
                self.hub.redis.as_ref().and_then(Redis::next_deadline),
                self.next_watchdog,
                lifecycle::next_deadline(&self.hub, now),
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout = if self.hub.revisit.is_empty() {
                // Round up so a deadline is never missed by a sub-millisecond sleep.
                wake.map(|w| w.saturating_duration_since(now) + Duration::from_millis(1))
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                error!("poll failed: {e}");
                return Err(e);
            }
            let now = Instant::now();
            self.hub.unix_now = crate::auth::jwt::unix_now();
            for event in events.iter() {
                match event.token() {
                    Token(t) if t <= FIRST_LISTENER && t > FIRST_LISTENER - MAX_LISTENERS => {
                        self.accept(FIRST_LISTENER - t, now)
                    }
                    WAKER => self.drain_control(now),
                    SIGNALS => self.on_signals(now),
                    redis::PUB | redis::SUB => {
                        if let Some(r) = &mut self.hub.redis {
                            r.on_ready(event.token(), self.poll.registry(), now, &mut self.hub.redis_out);
                        }
                    }
                    Token(id) => {
                        let fin = event.is_read_closed() || event.is_error();
                        let ready = Ready {
                            input: event.is_readable() || fin,
                            fin,
                        };
                        self.drive(id, ready, now);
                    }
                }
            }
            // A connection is revisited once a turn however many times it
            // asked (an edge and a spent budget in the same turn): each
            // drive may ask again, and a list that kept the repeats would
            // grow every turn, reading ever more of a flood per turn.
            let mut again = std::mem::take(&mut self.hub.revisit);
            again.sort_unstable();
            again.dedup();
            for id in again.drain(..) {
                self.drive(id, Ready::UNKNOWN, now);
            }
            if self.hub.revisit.is_empty() {
                // Keep the buffer: revisits come every turn under load.
                self.hub.revisit = again;
            }
            self.run_timers(now);
            lifecycle::run(&mut self.hub, &mut self.conns, now);
            delivery::run_redis(&mut self.hub, &mut self.conns, self.poll.registry(), now);
            if std::mem::take(&mut self.hub.freed_descriptor) && self.accept_paused_until.is_some() {
                // A descriptor came free: accept again at once.
                self.accept_paused_until = Some(now);
            }
            if self.accept_paused_until.is_some_and(|t| now >= t) {
                self.accept_paused_until = None;
                for i in 0..self.listeners.len() {
                    self.accept(i, now);
                }
            }
            if self.next_watchdog.is_some_and(|t| now >= t) {
                // Only a loop that turns gets here: a stuck one is restarted.
                self.notifier.watchdog();
                self.next_watchdog = self.notifier.watchdog_interval().map(|d| now + d);
            }
            if self.next_trim(now).is_some_and(|t| now >= t) {
                trim::release_free_memory();
                self.hub.trim_due = false;
                self.last_trim = Some(now);
            }
        }
    }

    fn accept(&mut self, i: usize, now: Instant) {
        if self.accept_paused_until.is_some() {
            return;
        }
        loop {
            let Some((listener, role)) = self.listeners.get(i) else {
                return;
            };
            let role = *role;
            match listener.accept() {
                Ok((socket, peer)) => self.add_conn(socket, peer, role, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // Out of descriptors (EMFILE/ENFILE) or memory: the
                    // pending connection stays in the backlog, so retrying
                    // now would spin. Wait for a close or a short timer.
                    if self.accept_warned_at.is_none_or(|t| now >= t + LOG_EVERY) {
                        warn!("accept failed ({e}); pausing new connections until descriptors free up");
                        self.accept_warned_at = Some(now);
                    }
                    self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    fn add_conn(&mut self, socket: Socket, peer: Peer, role: Role, now: Instant) {
        // Sockets that are not sessions are capped: make room by closing
        // the socket idle longest, or refuse this one.
        let refuse = self.hub.metrics.http_sockets >= self.hub.cfg().max_http_connections as u64
            && !self.hub.close_oldest_idle(&mut self.conns, now);
        // Pushes are small and must leave at once, not wait for an ACK.
        let _ = socket.set_nodelay(true);
        let conn = self.hub.new_conn(socket, peer, role, now);
        let id = self.conns.insert(conn);
        let Some(mut conn) = self.conns.take(id) else {
            return;
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut conn.out.io, Token(id), interest)
        {
            warn!("cannot watch connection from {peer}: {e}");
            self.hub.release(id, conn, now);
            self.conns.release(id);
            return;
        }
        debug!("connection {id} from {peer}");
        let keep = if refuse {
            if self.hub.http_cap_logged_at.is_none_or(|t| now >= t + LOG_EVERY) {
                info!(
                    "refusing connection from {peer} with 503: {} HTTP connections open, none idle (--max-http-connections)",
                    self.hub.metrics.http_sockets - 1
                );
                self.hub.http_cap_logged_at = Some(now);
            }
            let resp = Response::text(503, "too many connections").with_header("Retry-After", "1");
            self.hub.respond_closing(&mut conn.out, resp);
            // Read and drop the request it sent, so closing does not reset
            // the connection under the 503.
            self.hub.linger(&mut conn, now)
        } else {
            // Idle from the start: a socket that has sent nothing may be
            // closed to make room, as nginx reuses a connection still
            // waiting for its first request (else a flood of silent
            // sockets would lock everyone out for the request timeout).
            true
        };
        self.settle(id, conn, keep, now);
    }

    fn drain_control(&mut self, now: Instant) {
        while let Ok(ctl) = self.rx.try_recv() {
            match ctl {
                Control::Push(req, reply) => {
                    delivery::submit(&mut self.hub, &mut self.conns, req, Asker::Handle(reply), now);
                }
                Control::Shutdown => self.begin_shutdown(now),
            }
        }
    }

    fn on_signals(&mut self, now: Instant) {
        let Some(signals) = &mut self.signals else { return };
        let mut stop = false;
        for sig in signals.pending() {
            if sig == signal_hook::consts::SIGHUP {
                crate::access::reload(&mut self.hub, &mut self.conns, now);
            } else {
                stop = true;
            }
        }
        if stop {
            info!("signal received, shutting down");
            self.begin_shutdown(now);
        }
    }

    /// Stop accepting, end every session with 1001, let pending HTTP
    /// answers finish, and give it all `SHUTDOWN_GRACE` at most.
    fn begin_shutdown(&mut self, now: Instant) {
        if !self.shutdown.begin(now, SHUTDOWN_GRACE) {
            return;
        }
        self.hub.shutting_down = true;
        self.notifier.stopping();
        for (mut l, _) in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut l);
        }
        let going_away = crate::close::Close::new(crate::close::GOING_AWAY);
        for id in self.conns.indices() {
            let Some(mut conn) = self.conns.take(id) else {
                continue;
            };
            let keep = match &mut conn.state {
                State::Session(_) => {
                    self.hub
                        .end(id, &mut conn, crate::hub::Ending::Close(going_away.clone()), now);
                    true
                }
                State::Http(h) => {
                    h.close_after = true;
                    h.waiting || h.mid_request() || conn.out.queued() > 0
                }
                State::Linger { .. } => true,
            };
            self.settle(id, conn, keep, now);
        }
    }

    /// Handles readiness (or a revisit) of connection `id`.
    fn drive(&mut self, id: usize, ready: Ready, now: Instant) {
        let Some(mut conn) = self.conns.take(id) else {
            return;
        };
        let keep = match conn.state {
            State::Http(_) => {
                let keep = requests::drive(&mut self.hub, &mut self.conns, id, &mut conn, ready.fin, now);
                // A request that became a session may have brought the
                // client's first frames along: read them now.
                keep && (!matches!(conn.state, State::Session(_))
                    || commands::drive(&mut self.hub, id, &mut conn, true, now))
            }
            State::Session(_) => commands::drive(&mut self.hub, id, &mut conn, ready.input, now),
            State::Linger { .. } => Hub::keep_lingering(&mut conn),
        };
        self.settle(id, conn, keep, now);
    }

    /// Puts a driven connection back (re-arming its timer, noting whether
    /// it is idle), or releases it.
    fn settle(&mut self, id: usize, conn: Conn, keep: bool, now: Instant) {
        match self.hub.settle(id, conn, keep, now) {
            Some(mut conn) => {
                self.hub.note_idle(&mut self.conns, id, &mut conn);
                self.conns.put_back(id, conn);
            }
            None => self.conns.release(id),
        }
    }

    fn run_timers(&mut self, now: Instant) {
        while let Some((at, id, serial)) = self.hub.timers.pop_due(now) {
            let Some(conn) = self.conns.get_mut(id) else {
                continue;
            };
            if conn.serial != serial {
                continue;
            }
            if conn.armed == Some(at) {
                conn.armed = None;
            }
            let Some(mut conn) = self.conns.take(id) else {
                continue;
            };
            let keep = self.hub.on_timer(id, &mut conn, now);
            self.settle(id, conn, keep, now);
        }
    }

    /// When memory should next be given back, if a big backlog was freed.
    fn next_trim(&self, now: Instant) -> Option<Instant> {
        self.hub
            .trim_due
            .then(|| self.last_trim.map_or(now, |t| now.max(t + trim::TRIM_EVERY)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shutdown grace, stepped: done when nothing is left, or when the
    /// grace is over with connections still lingering; begun once.
    #[test]
    fn shutdown_waits_its_grace_at_most() {
        let t0 = Instant::now();
        let mut s = Shutdown::default();
        assert!(!s.done(t0, true), "not begun");
        assert!(s.begin(t0, SHUTDOWN_GRACE));
        assert!(!s.begin(t0 + Duration::from_secs(1), SHUTDOWN_GRACE), "once");
        assert!(!s.done(t0 + SHUTDOWN_GRACE - Duration::from_millis(1), false));
        assert!(s.done(t0 + Duration::from_millis(1), true), "nothing left");
        assert!(s.done(t0 + SHUTDOWN_GRACE, false), "grace over");
    }
}
