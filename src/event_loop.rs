//! The one thread that owns everything: sockets, the binder, the timers.
//!
//! # How readiness, buffers and timeouts work together
//!
//! Every socket is registered once, edge-triggered, for reading and
//! writing. An edge says "something changed", so each handler works until
//! the kernel answers `WouldBlock`: accept until the backlog is empty, read
//! until the socket is dry (and then drain the frames tungstenite already
//! buffered), write until the send buffer is full. An HTTP read that
//! returns less than it asked for also counts as dry, unless the event
//! carried the peer's FIN, which no later edge would report again
//! (`conn::read_into`). A handler that stops
//! early for fairness (a client flooding frames, a deep pipeline) puts its
//! connection on `revisit`, and the next poll does not sleep. WebSocket
//! input is metered (`conn::Metered`): at most `ws::TURN_BYTES` and
//! `ws::TURN_FRAMES` per connection per drive, because tungstenite's `read`
//! would otherwise go on reading an unfinished message as long as the peer
//! keeps sending. Spurious
//! events are harmless: every read and write tolerates `WouldBlock`.
//!
//! HTTP input is parsed as it arrives and never twice (`conn::Http`): a
//! connection's buffer holds at most a head, the body still expected by
//! length and the next head, and is given back when the connection goes
//! idle. Sockets that are not WebSocket are capped
//! (`--max-http-connections`): at the cap, a new one closes the keep-alive
//! socket idle longest (`idle.rs`) or is answered 503.
//!
//! Bytes that cannot be written now stay queued per connection (HTTP
//! responses in `Stream::out`, frames in tungstenite's buffer) and go out
//! on the next writable edge; the queue is capped (the backlog limit), so
//! a client that stops reading is closed with 4008 instead of growing us.
//!
//! Time is an input: the loop reads the clock once per wake-up and passes
//! `now` down. Each connection reports its next deadline (request timeout,
//! register timeout, next ping, close grace); `Timers` keeps the earliest
//! per connection, and `poll` sleeps until the nearest one.
//!
//! A connection being driven is taken out of the slab, so its handler can
//! hold it and the rest of the loop at once. Closing happens in `finish`,
//! and only there: it unbinds, updates the metrics and drops the socket.

mod cluster;
mod idle;

use crate::auth::{self, ConnAuth, PushGuard, Request, Verdict};
use crate::binder::{BindError, Binder};
use crate::command::{self, Action};
use crate::config::{Config, BROADCAST_PATH, DROP_PATH, HEALTH_PATH, METRICS_PATH};
use crate::conn::{
    self, Budget, Conn, Discarded, Http, Metered, Next, ReadStatus, Ready, State, Stream, Ws, WsPhase,
    CLOSE_GRACE,
};
use crate::http::request::{Head, Limits, Version};
use crate::http::response::{Response, CONTINUE};
use crate::log::Refusal as Refused;
use crate::metrics::{Gauges, Metrics, RedisGauges};
use crate::names;
use crate::push::{self, Endpoint, Payload, PushRequest};
use crate::redis::{self, Redis};
use crate::slab::Slab;
use crate::static_files::{self, StaticFile};
use crate::timers::Timers;
use crate::trim;
use crate::ws::{self, close, Failure, Refusal};
use crate::{ClientMessage, Error, OnMessage, Reply};
use cluster::Waiter;
use idle::{Entry, IdleQueue};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use serde_json::Value;
use std::borrow::Cow;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::{CloseFrame, Utf8Bytes};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::Message;

pub(crate) const LISTENER: Token = Token(usize::MAX);
pub(crate) const WAKER: Token = Token(usize::MAX - 1);
pub(crate) const SIGNALS: Token = Token(usize::MAX - 2);

/// Most WebSocket messages or HTTP requests handled per connection per
/// round before others get their turn.
const ROUND_BUDGET: usize = 64;
/// The 413 of a push whose frame no receiver's backlog could hold.
const TOO_BIG_FOR_BACKLOG: &str = "request data illegal: message larger than the backlog limit";
/// Responses queued for a peer that is not reading before we stop
/// answering its pipelined requests.
const MAX_PENDING_RESPONSE: usize = 64 * 1024;
/// How long accepting pauses after the process ran out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At most one "out of descriptors" warning per this interval.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(10);
/// How long shutdown waits for close handshakes and pending responses.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// A request from a `Handle` on another thread.
pub(crate) enum Control {
    /// Answered with the local count, or in cluster mode with the number
    /// of nodes Redis reached.
    Push(PushRequest, SyncSender<Result<usize, Error>>),
    Shutdown,
}

/// The pluggable parts, set through the builder.
pub(crate) struct Hooks {
    pub auth: ConnAuth,
    pub push: PushGuard,
    pub on_message: Option<OnMessage>,
}

/// What the loop owns besides the connections; split out so a handler can
/// borrow one connection and this at the same time.
struct Core {
    cfg: Config,
    limits: Limits,
    ws_config: WebSocketConfig,
    binder: Binder,
    metrics: Metrics,
    timers: Timers,
    hooks: Hooks,
    statics: Vec<StaticFile>,
    /// The one buffer every HTTP read lands in first (see `conn::read_into`).
    read_scratch: Box<[u8]>,
    next_serial: u64,
    shutting_down: bool,
}

pub(crate) struct Loop {
    poll: Poll,
    listener: Option<TcpListener>,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    rx: Receiver<Control>,
    conns: Slab<Conn>,
    core: Core,
    accept_paused_until: Option<Instant>,
    accept_warned_at: Option<Instant>,
    /// Idle keep-alive HTTP sockets, oldest first (see idle.rs).
    idle: IdleQueue,
    /// Last "too many HTTP connections" line, to log it at most every
    /// `ACCEPT_WARN_EVERY`.
    http_cap_logged_at: Option<Instant>,
    /// A big backlog was freed: give memory back at `next trim` (see trim.rs).
    trim_due: bool,
    last_trim: Option<Instant>,
    shutdown_by: Option<Instant>,
    revisit: Vec<usize>,
    /// Reused buffer of push targets, so a push allocates nothing per send.
    targets: Vec<usize>,
    /// Cluster mode: the Redis links (see redis.rs), and what they produced
    /// this tick.
    redis: Option<Redis<Waiter>>,
    redis_out: Vec<redis::Outcome<Waiter>>,
    /// Reused buffer the answers to one round of requests are built in.
    responses: Vec<u8>,
    /// Cluster records refused for their size, and when that was last
    /// logged at `warn` (see cluster.rs).
    big_records: u64,
    big_record_warned_at: Option<Instant>,
}

/// What a request turned into.
enum Outcome {
    Respond(Response),
    Upgrade {
        accept: String,
        envelope: bool,
    },
    /// Cluster mode: publish, and answer once Redis acknowledges.
    Publish(PushRequest),
}

/// Where a request is going, once its head is known.
enum Route {
    Upgrade,
    /// An embedded file (index into `Core::statics`).
    Static(usize),
    /// The demo page's `/demo/whoami`.
    Whoami,
    Push(Endpoint),
    Health,
    Metrics,
}

/// The peer of a WebSocket for a log line (looked up only when one is written).
fn peer_of(stream: &Stream) -> String {
    stream
        .tcp
        .peer_addr()
        .map_or_else(|_| "an unknown peer".into(), |a| a.to_string())
}

fn would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if io.kind() == io::ErrorKind::WouldBlock)
}

fn accepts_json(head: &Head) -> bool {
    const JSON: &[u8] = b"application/json";
    head.header("Accept").is_some_and(|a| {
        a.as_bytes()
            .windows(JSON.len())
            .any(|w| w.eq_ignore_ascii_case(JSON))
    })
}

fn method_not_allowed(allow: &'static str, json: bool) -> Response {
    Response::error(405, "method not allowed", json).with_header("Allow", allow)
}

impl Loop {
    pub(crate) fn new(
        poll: Poll,
        listener: TcpListener,
        signals: Option<signal_hook_mio::v1_0::Signals>,
        rx: Receiver<Control>,
        cfg: Config,
        hooks: Hooks,
        redis_target: Option<redis::Target>,
    ) -> Loop {
        let limits = Limits {
            max_head_bytes: 8192,
            max_headers: 64,
            max_body_bytes: cfg.max_body_bytes,
        };
        let ws_config = ws::session_config(&cfg);
        let now = Instant::now();
        let redis = match (&cfg.redis, redis_target) {
            (Some(url), Some(target)) => Some(Redis::new(
                url.clone(),
                target,
                &cfg.redis_channel,
                cfg.redis_timeout,
                now,
            )),
            _ => None,
        };
        Loop {
            poll,
            listener: Some(listener),
            signals,
            rx,
            conns: Slab::new(),
            core: Core {
                cfg,
                limits,
                ws_config,
                binder: Binder::new(),
                metrics: Metrics::default(),
                timers: Timers::new(),
                hooks,
                statics: static_files::files(),
                read_scratch: vec![0; conn::READ_CHUNK].into_boxed_slice(),
                next_serial: 0,
                shutting_down: false,
            },
            accept_paused_until: None,
            accept_warned_at: None,
            idle: IdleQueue::default(),
            http_cap_logged_at: None,
            trim_due: false,
            last_trim: None,
            shutdown_by: None,
            revisit: Vec::new(),
            targets: Vec::new(),
            redis,
            redis_out: Vec::new(),
            responses: Vec::new(),
            big_records: 0,
            big_record_warned_at: None,
        }
    }

    /// Runs until shutdown (a `Handle`, or SIGINT/SIGTERM when enabled).
    pub(crate) fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            if let Some(by) = self.shutdown_by {
                if self.conns.is_empty() || now >= by {
                    info!("stopped");
                    return Ok(());
                }
            }
            let wake = [
                self.core.timers.next_at(),
                self.accept_paused_until,
                self.shutdown_by,
                self.next_trim(now),
                self.redis.as_ref().and_then(Redis::next_deadline),
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout = if self.revisit.is_empty() {
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
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(now),
                    WAKER => self.drain_control(now),
                    SIGNALS => self.on_signals(now),
                    redis::PUB | redis::SUB => {
                        if let Some(r) = &mut self.redis {
                            r.on_ready(event.token(), self.poll.registry(), now, &mut self.redis_out);
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
            for id in std::mem::take(&mut self.revisit) {
                self.drive(id, Ready::UNKNOWN, now);
            }
            self.run_timers(now);
            self.run_redis(now);
            if self.accept_paused_until.is_some_and(|t| now >= t) {
                self.accept_paused_until = None;
                self.accept(now);
            }
            if self.next_trim(now).is_some_and(|t| now >= t) {
                trim::release_free_memory();
                self.trim_due = false;
                self.last_trim = Some(now);
            }
        }
    }

    fn accept(&mut self, now: Instant) {
        if self.accept_paused_until.is_some() {
            return;
        }
        loop {
            let Some(listener) = &self.listener else { return };
            match listener.accept() {
                Ok((tcp, peer)) => self.add_conn(tcp, peer, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // Out of descriptors (EMFILE/ENFILE) or memory: the
                    // pending connection stays in the backlog, so retrying
                    // now would spin. Wait for a close or a short timer.
                    if self.accept_warned_at.is_none_or(|t| now >= t + ACCEPT_WARN_EVERY) {
                        warn!("accept failed ({e}); pausing new connections until descriptors free up");
                        self.accept_warned_at = Some(now);
                    }
                    self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    fn add_conn(&mut self, tcp: mio::net::TcpStream, peer: SocketAddr, now: Instant) {
        // Sockets that are not WebSocket are capped: make room by closing
        // the socket idle longest, or refuse this one.
        let refuse = self.core.metrics.http_sockets >= self.core.cfg.max_http_connections as u64
            && !self.close_oldest_idle();
        // Pushes are small and must leave at once, not wait for an ACK.
        let _ = tcp.set_nodelay(true);
        self.core.next_serial += 1;
        let conn = Conn {
            stream: Stream::new(tcp, self.core.cfg.max_backlog_bytes),
            peer,
            serial: self.core.next_serial,
            armed: None,
            state: State::Http(Http::new(now)),
        };
        let id = self.conns.insert(conn);
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut conn.stream.tcp, Token(id), interest)
        {
            warn!("cannot watch connection from {peer}: {e}");
            self.conns.remove(id);
            return;
        }
        self.core.metrics.sockets += 1;
        self.core.metrics.http_sockets += 1;
        debug!("connection {id} from {peer}");
        if !refuse {
            // Idle from the start: a socket that has sent nothing may be
            // closed to make room, as nginx reuses a connection still
            // waiting for its first request (else a flood of silent
            // sockets would lock everyone out for the request timeout).
            if let Some(conn) = self.conns.take(id) {
                self.settle(id, conn, true);
            }
            return;
        }
        if self
            .http_cap_logged_at
            .is_none_or(|t| now >= t + ACCEPT_WARN_EVERY)
        {
            info!(
                "refusing connection from {peer} with 503: {} HTTP connections open, none idle (--max-http-connections)",
                self.core.metrics.http_sockets - 1
            );
            self.http_cap_logged_at = Some(now);
        }
        self.core.metrics.http_error(503);
        let resp = Response::text(503, "too many connections").with_header("Retry-After", "1");
        conn.stream.append(|b| resp.encode_into(b, false, false));
        let _ = conn.stream.flush_out();
        let Some(mut conn) = self.conns.take(id) else {
            return;
        };
        // Read and drop the request it sent, so closing does not reset the
        // connection under the 503.
        let keep = self.core.linger(&mut conn, now);
        self.settle(id, conn, keep);
    }

    /// Closes the keep-alive HTTP socket that has been idle longest; false
    /// when no socket is idle.
    fn close_oldest_idle(&mut self) -> bool {
        let conns = &mut self.conns;
        let Some(Entry { id, .. }) = self.idle.pop_oldest(|e| still_idle(conns, e)) else {
            return false;
        };
        let Some(conn) = self.conns.take(id) else {
            return false;
        };
        debug!("closing idle connection {id} from {} to make room", conn.peer);
        self.finish(id, conn);
        true
    }

    fn drain_control(&mut self, now: Instant) {
        while let Ok(ctl) = self.rx.try_recv() {
            match ctl {
                Control::Push(req, reply) if !push::fits_backlog(&req, self.core.cfg.max_backlog_bytes) => {
                    let limit = self.core.cfg.max_backlog_bytes;
                    let _ = reply.send(Err(Error::TooLarge { limit }));
                }
                Control::Push(req, reply) if self.redis.is_some() => {
                    self.publish(req, Waiter::Handle(reply), now);
                }
                Control::Push(req, reply) => {
                    let n = self.execute(req, now);
                    // The caller may have given up waiting; nothing to do then.
                    let _ = reply.send(Ok(n));
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
                self.core.hooks.auth.reload();
            } else {
                stop = true;
            }
        }
        if stop {
            info!("signal received, shutting down");
            self.begin_shutdown(now);
        }
    }

    /// Stop accepting, close every WebSocket with 1001, let pending HTTP
    /// responses finish, and give it all `SHUTDOWN_GRACE` at most.
    fn begin_shutdown(&mut self, now: Instant) {
        if self.shutdown_by.is_some() {
            return;
        }
        self.shutdown_by = Some(now + SHUTDOWN_GRACE);
        self.core.shutting_down = true;
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        for id in self.conns.indices() {
            let Some(mut conn) = self.conns.take(id) else {
                continue;
            };
            let keep = match &mut conn.state {
                State::Ws(ws) if ws.is_open() => {
                    self.core
                        .close_ws(id, ws, &mut conn.stream, close::GOING_AWAY, "", now);
                    true
                }
                State::Http(h) => {
                    h.close_after = true;
                    h.waiting || h.mid_request() || conn.stream.queued() > 0
                }
                _ => true,
            };
            self.settle(id, conn, keep);
        }
    }

    /// Handles readiness (or a revisit) of connection `id`.
    fn drive(&mut self, id: usize, ready: Ready, now: Instant) {
        let Some(mut conn) = self.conns.take(id) else {
            return;
        };
        let keep = match conn.state {
            State::Http(_) => self.drive_http(id, &mut conn, ready.fin, now),
            State::Ws(_) => self.drive_ws(id, &mut conn, ready.input, now),
            State::Linger { .. } => matches!(conn::discard_input(&mut conn.stream.tcp), Ok(false)),
        };
        self.settle(id, conn, keep);
    }

    /// Puts a driven connection back (re-arming its timer) or finishes it.
    fn settle(&mut self, id: usize, mut conn: Conn, keep: bool) {
        self.trim_due |= std::mem::take(&mut conn.stream.freed_big);
        if keep {
            if let State::Http(h) = &mut conn.state {
                self.note_idle(id, conn.serial, h, conn.stream.queued() == 0);
            }
            self.core.arm(id, &mut conn);
            self.conns.put_back(id, conn);
        } else {
            self.finish(id, conn);
        }
    }

    /// Keeps the idle queue and the connection's stamp in step with whether
    /// it is idle now; an idle connection also gives its buffer back, so
    /// it costs only its slot and socket.
    fn note_idle(&mut self, id: usize, serial: u64, h: &mut Http, nothing_queued: bool) {
        if !(h.is_idle() && nothing_queued) {
            h.idle = None;
            return;
        }
        h.release_buffer();
        if h.idle.is_none() {
            let live = self.core.metrics.http_sockets as usize;
            let conns = &mut self.conns;
            h.idle = Some(self.idle.push(id, serial, live, |e| still_idle(conns, e)));
        }
    }

    /// When memory should next be given back, if a big backlog was freed.
    fn next_trim(&self, now: Instant) -> Option<Instant> {
        self.trim_due
            .then(|| self.last_trim.map_or(now, |t| now.max(t + trim::TRIM_EVERY)))
    }

    /// The one place a connection ends: unbound, counted, socket closed.
    fn finish(&mut self, id: usize, conn: Conn) {
        self.core.binder.unbind(id);
        match &conn.state {
            State::Ws(ws) if ws.is_open() => self.core.metrics.connections -= 1,
            State::Ws(_) => {}
            State::Http(_) | State::Linger { .. } => self.core.metrics.http_sockets -= 1,
        }
        self.core.metrics.sockets -= 1;
        debug!("connection {id} from {} closed", conn.peer);
        // Last words (a close reply, a final response) if the socket takes them.
        let mut conn = conn;
        let _ = conn.stream.flush_out();
        self.trim_due |= conn.stream.freed_big || conn.stream.queued() >= trim::BIG_BACKLOG;
        drop(conn);
        self.conns.release(id);
        // A descriptor came free: resume accepting if we had to pause.
        if self.accept_paused_until.is_some() {
            self.accept_paused_until = Some(Instant::now());
        }
    }

    fn run_timers(&mut self, now: Instant) {
        while let Some((at, id, serial)) = self.core.timers.pop_due(now) {
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
            let keep = self.core.on_timer(id, &mut conn, now);
            self.settle(id, conn, keep);
        }
    }

    // ---- HTTP ----

    /// Reads, answers and writes an HTTP connection until it has nothing
    /// to do. Input is read on every event, writable ones too: a peer
    /// whose input stopped at the buffer's cap gets it read once there is
    /// room, without a new readable edge. `fin`: see `conn::Ready`.
    fn drive_http(&mut self, id: usize, conn: &mut Conn, fin: bool, now: Instant) -> bool {
        // Until a read finds the socket dry; later bytes raise a new event.
        let mut maybe_input = true;
        for _ in 0..ROUND_BUDGET {
            let State::Http(http) = &mut conn.state else {
                return self.drive_ws(id, conn, true, now);
            };
            match conn.stream.flush_out() {
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
                return self.core.linger(conn, now);
            }
            let mut progress = false;
            if !http.read_closed && maybe_input {
                match http.read(
                    &mut conn.stream.tcp,
                    &self.core.limits,
                    &mut self.core.read_scratch,
                    fin,
                ) {
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
            let handled = self.process_requests(id, conn, now);
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
        self.revisit.push(id);
        true
    }

    /// Answers the complete requests at the head of the input, in order.
    /// Returns how many were handled; stops at an upgrade.
    ///
    /// The answers are built in one reused buffer and handed to the socket
    /// together: pipelined requests get one write, and an answer that the
    /// socket takes at once costs no allocation.
    fn process_requests(&mut self, id: usize, conn: &mut Conn, now: Instant) -> usize {
        let mut out = std::mem::take(&mut self.responses);
        let handled = self.answer_requests(id, conn, &mut out, now);
        if !out.is_empty() {
            conn.stream.send(&out);
            out.clear();
        }
        self.responses = out;
        handled
    }

    fn answer_requests(&mut self, id: usize, conn: &mut Conn, out: &mut Vec<u8>, now: Instant) -> usize {
        let mut handled = 0;
        while handled < ROUND_BUDGET {
            let State::Http(http) = &mut conn.state else { break };
            if http.close_after || http.waiting || conn.stream.queued() + out.len() > MAX_PENDING_RESPONSE {
                break;
            }
            match http.next_request(&self.core.limits) {
                Ok(Next::Incomplete) => break,
                Err(e) => {
                    self.core.metrics.http_error(e.status());
                    debug!("bad request from {}: {}", conn.peer, e.reason());
                    let resp = Response::text(e.status(), e.reason());
                    resp.encode_into(out, false, false);
                    http.close_after = true;
                    break;
                }
                Ok(Next::WantsContinue) => {
                    // Refuse before the client sends a body we would discard.
                    let Some(head) = http.pending_head() else { break };
                    match self.route(head, conn.peer) {
                        Err(resp) => {
                            self.core.metrics.http_error(resp.status);
                            resp.encode_into(out, false, false);
                            http.close_after = true;
                        }
                        Ok(_) => {
                            out.extend_from_slice(CONTINUE);
                            http.sent_continue = true;
                        }
                    }
                    break;
                }
                Ok(Next::Request(head, body)) => {
                    handled += 1;
                    http.since = now;
                    self.core.metrics.http_requests += 1;
                    let style = ReplyStyle {
                        // After the peer's FIN every buffered request is still
                        // answered; the last one buffered says the connection closes.
                        keep_alive: head.keep_alive && !(http.read_closed && http.input().is_empty()),
                        http10: head.version == Version::Http10,
                        head_only: head.method == "HEAD",
                        json: accepts_json(&head),
                    };
                    match self.handle_request(&head, &body, conn.peer, now) {
                        Outcome::Respond(resp) => {
                            let close = self.core.encode_response(out, resp, style);
                            if let State::Http(http) = &mut conn.state {
                                http.close_after |= close;
                            }
                        }
                        Outcome::Publish(req) => {
                            let waiter = Waiter::Http {
                                id,
                                serial: conn.serial,
                                style,
                            };
                            if let Some(resp) = self.publish(req, waiter, now) {
                                let close = self.core.encode_response(out, resp, style);
                                if let State::Http(http) = &mut conn.state {
                                    http.close_after |= close;
                                }
                            } else if let State::Http(http) = &mut conn.state {
                                http.waiting = true;
                                break;
                            }
                        }
                        Outcome::Upgrade { accept, envelope } => {
                            out.extend_from_slice(&ws::handshake_response(&accept));
                            self.upgrade(conn, envelope, now);
                            break;
                        }
                    }
                }
            }
        }
        handled
    }

    /// Switches an HTTP connection to WebSocket (its `101` is already
    /// queued), keeping any bytes that arrived after the request: they are
    /// the client's first frames.
    fn upgrade(&mut self, conn: &mut Conn, envelope: bool, now: Instant) {
        let State::Http(http) = &mut conn.state else {
            return;
        };
        // Copy only the early bytes: handing over the 4 KiB request buffer
        // itself would make it the session's read buffer for life.
        let early = http.input().to_vec();
        conn.state = State::Ws(Ws::new(early, self.core.ws_config, envelope, &self.core.cfg, now));
        self.core.metrics.connections += 1;
        self.core.metrics.http_sockets -= 1;
        debug!("websocket open from {}", conn.peer);
    }

    /// Finds the handler for a request head, or the error that refuses it
    /// before any body is read (404, 405, 401, 403).
    fn route(&mut self, head: &Head, peer: SocketAddr) -> Result<Route, Response> {
        let json = accepts_json(head);
        let cfg = &self.core.cfg;
        let path = head.path.as_str();
        let route = if path == cfg.ws_path {
            return Ok(Route::Upgrade);
        } else if path == cfg.push_path {
            Route::Push(Endpoint::Push)
        } else if path == BROADCAST_PATH {
            Route::Push(Endpoint::Broadcast)
        } else if path == DROP_PATH {
            Route::Push(Endpoint::Drop)
        } else if path == HEALTH_PATH {
            Route::Health
        } else if path == METRICS_PATH {
            Route::Metrics
        } else if let Some(i) = self.core.statics.iter().position(|f| cfg.demo && f.path == path) {
            Route::Static(i)
        } else if cfg.demo && path == static_files::WHOAMI_PATH {
            Route::Whoami
        } else {
            return Err(Response::error(404, "404 page not found", json));
        };
        let get = matches!(head.method.as_str(), "GET" | "HEAD");
        match route {
            Route::Push(_) if head.method != "POST" => return Err(method_not_allowed("POST", json)),
            Route::Health | Route::Metrics | Route::Static(_) | Route::Whoami if !get => {
                return Err(method_not_allowed("GET, HEAD", json))
            }
            Route::Health | Route::Static(_) | Route::Whoami => return Ok(route),
            _ => {}
        }
        let req = Request::new(head, peer);
        match self.core.hooks.push.check(&req) {
            Verdict::Allow => Ok(route),
            Verdict::Unauthorized(why) => {
                self.core.metrics.auth_failures += 1;
                refusal!(
                    Refused::Push,
                    "{} {path} from {peer} refused (401): {why}",
                    head.method
                );
                Err(Response::error(401, why, json).with_header("WWW-Authenticate", "Bearer"))
            }
            Verdict::Forbidden(why) => {
                self.core.metrics.auth_failures += 1;
                refusal!(
                    Refused::Push,
                    "{} {path} from {peer} refused (403): {why}",
                    head.method
                );
                Err(Response::error(403, why, json))
            }
        }
    }

    fn handle_request(&mut self, head: &Head, body: &[u8], peer: SocketAddr, now: Instant) -> Outcome {
        let json = accepts_json(head);
        let route = match self.route(head, peer) {
            Ok(r) => r,
            Err(resp) => return Outcome::Respond(resp),
        };
        let resp = match route {
            Route::Upgrade => return self.check_upgrade(head, peer, json),
            Route::Static(i) => static_files::respond(&self.core.statics[i], head),
            Route::Whoami => {
                let key = matches!(self.core.hooks.push, PushGuard::Key(_));
                let auth = &mut self.core.hooks.auth;
                static_files::whoami(
                    head,
                    |t| auth.user_for(t).map_err(|why| why.reason()),
                    key,
                    &self.core.cfg.push_path,
                )
            }
            Route::Health if self.redis.as_ref().is_some_and(|r| !r.is_up()) => {
                self.redis_unavailable(json, now)
            }
            Route::Health if json => Response::json(200, r#"{"status":"ok"}"#),
            Route::Health => Response::text(200, "ok"),
            Route::Metrics => {
                let gauges = Gauges {
                    users: self.core.binder.user_count(),
                    subscriptions: self.core.binder.subscription_count(),
                    redis: self.redis.as_ref().map(|r| RedisGauges {
                        connected: r.is_up(),
                        reconnects: r.stats.reconnects,
                        published: r.stats.published,
                        publish_failures: r.stats.publish_failures,
                        received: r.stats.received,
                        bad_records: self.core.metrics.redis_bad_records,
                        publish_latency: &self.core.metrics.redis_publish_latency,
                    }),
                };
                let mut r = Response::text(200, self.core.metrics.render(&gauges));
                r.content_type = "text/plain; version=0.0.4; charset=utf-8";
                r
            }
            Route::Push(endpoint) => match push::parse(endpoint, body) {
                Err(reason) => Response::error(400, &format!("request data illegal: {reason}"), json),
                Ok(req) if !push::fits_backlog(&req, self.core.cfg.max_backlog_bytes) => {
                    Response::error(413, TOO_BIG_FOR_BACKLOG, json)
                }
                Ok(req) if self.redis.is_some() => return Outcome::Publish(req),
                Ok(req) => {
                    let dropping = matches!(req, PushRequest::Drop { .. });
                    let n = self.execute(req, now);
                    let body = if dropping {
                        push::dropped_body(n, json)
                    } else {
                        push::sent_body(n, json)
                    };
                    if json {
                        Response::json(200, body)
                    } else {
                        Response::text(200, body)
                    }
                }
            },
        };
        Outcome::Respond(resp)
    }

    fn check_upgrade(&mut self, head: &Head, peer: SocketAddr, json: bool) -> Outcome {
        let resp = match ws::check_upgrade(head) {
            Err(Refusal::BadRequest(reason)) => Response::error(400, reason, json),
            Err(Refusal::Method) => method_not_allowed("GET", json),
            Err(Refusal::Version) => Response::error(426, "unsupported WebSocket version", json)
                .with_header("Sec-WebSocket-Version", "13"),
            Ok(_)
                if !auth::origin_allowed(self.core.cfg.allowed_origins.as_deref(), head.header("Origin")) =>
            {
                self.core.metrics.auth_failures += 1;
                refusal!(
                    Refused::Origin,
                    "websocket from {peer} refused (403): origin {:?} is not in --allowed-origins",
                    head.header("Origin").unwrap_or_default()
                );
                Response::error(403, "origin not allowed", json)
            }
            Ok(_) if self.core.shutting_down => {
                Response::error(503, "server shutting down", json).with_header("Retry-After", "5")
            }
            Ok(_) if self.core.metrics.connections as usize >= self.core.cfg.max_connections => {
                refusal!(
                    Refused::Limit,
                    "websocket from {peer} refused (503): --max-connections {} reached",
                    self.core.cfg.max_connections
                );
                Response::error(503, "too many connections", json).with_header("Retry-After", "1")
            }
            Ok(accept) => {
                return Outcome::Upgrade {
                    accept,
                    envelope: ws::envelope_requested(&head.query),
                }
            }
        };
        Outcome::Respond(resp)
    }

    /// Carries out a push, broadcast or drop; returns the count the
    /// response reports. Shared by HTTP and the library's `Handle`.
    fn execute(&mut self, req: PushRequest, now: Instant) -> usize {
        let mut targets = std::mem::take(&mut self.targets);
        targets.clear();
        let n = match req {
            PushRequest::Push {
                users,
                event,
                message,
            } => {
                for user in &users {
                    self.core.binder.for_user_event(user, &event, |c| targets.push(c));
                }
                self.deliver(&targets, &Payload::new(&event, &message), now)
            }
            PushRequest::Broadcast { event, message } => {
                targets.extend(self.core.binder.subscribers(&event));
                self.deliver(&targets, &Payload::new(&event, &message), now)
            }
            PushRequest::Drop {
                user,
                event,
                reconnect,
            } => {
                targets.extend(self.core.binder.conns_of_user(&user, event.as_deref()));
                let code = if reconnect {
                    close::DROPPED
                } else {
                    close::DROPPED_FOR_GOOD
                };
                let mut n = 0;
                for &id in &targets {
                    let Some(conn) = self.conns.get_mut(id) else {
                        continue;
                    };
                    if let State::Ws(ws) = &mut conn.state {
                        self.core.close_ws(id, ws, &mut conn.stream, code, "", now);
                        self.core.arm(id, conn);
                        n += 1;
                    }
                }
                info!("dropped {n} connections of a user");
                n
            }
        };
        self.targets = targets;
        n
    }

    /// Sends one prepared payload to each target; returns how many took it.
    fn deliver(&mut self, targets: &[usize], payload: &Payload<'_>, now: Instant) -> usize {
        self.core.metrics.pushes += 1;
        let mut sent = 0;
        for &id in targets {
            let Some(conn) = self.conns.get_mut(id) else {
                continue;
            };
            let State::Ws(ws) = &mut conn.state else { continue };
            if self
                .core
                .send_frame(id, ws, &mut conn.stream, payload.frame(ws.envelope), now)
            {
                sent += 1;
                self.core.metrics.bytes_out += payload.payload_len(ws.envelope) as u64;
            } else {
                self.core.arm(id, conn);
            }
        }
        self.core.metrics.messages_delivered += sent as u64;
        sent
    }

    // ---- WebSocket ----

    /// Reads and answers a WebSocket's input, at most one turn's budget
    /// of it (`conn::Budget`), then flushes.
    fn drive_ws(&mut self, id: usize, conn: &mut Conn, readable: bool, now: Instant) -> bool {
        let Conn { stream, state, .. } = conn;
        let State::Ws(ws) = state else { return true };
        if let WsPhase::Closing { broken: true, .. } = ws.phase {
            return self.drain_broken(id, ws, stream);
        }
        if readable {
            let mut budget = Budget::per_turn();
            let mut messages = ROUND_BUDGET;
            loop {
                if messages == 0 {
                    self.revisit.push(id);
                    break;
                }
                messages -= 1;
                let read = ws.ctx.read(&mut Metered {
                    stream,
                    watch: &mut ws.watch,
                    budget: &mut budget,
                });
                match read {
                    Ok(msg) => {
                        ws.last_seen = now;
                        match msg {
                            Message::Text(t) if ws.is_open() => {
                                self.core.on_text(id, ws, stream, t.as_str(), now)
                            }
                            Message::Binary(b) if ws.is_open() => {
                                self.core
                                    .on_other(id, ws, stream, ClientMessage::Binary(&b), None, now)
                            }
                            Message::Close(_) => self.core.leave_open(id, ws, now + CLOSE_GRACE, false),
                            _ => {}
                        }
                        if let WsPhase::Closing { broken: true, .. } = ws.phase {
                            return self.drain_broken(id, ws, stream);
                        }
                    }
                    Err(e) if would_block(&e) => {
                        if budget.spent {
                            self.revisit.push(id);
                        }
                        break;
                    }
                    Err(e) => {
                        // An empty reason: the table's for the code.
                        let (failure, reason) = if ws.watch.tripped() {
                            (Failure::Close(close::TOO_BIG), close::TOO_MANY_FRAGMENTS)
                        } else {
                            (ws::classify(&e), "")
                        };
                        match failure {
                            Failure::Close(code) if ws.is_open() => {
                                debug!("websocket error from {}: {e}", conn.peer);
                                self.core.fail_ws(id, ws, stream, code, reason, now);
                                return self.drain_broken(id, ws, stream);
                            }
                            _ => return false,
                        }
                    }
                }
            }
        }
        match ws.ctx.flush(stream) {
            Ok(()) => true,
            Err(e) if would_block(&e) => true,
            Err(tungstenite::Error::WriteBufferFull(_)) => true,
            Err(_) => false,
        }
    }

    /// A session that failed on bad input: push out the close frame, shut
    /// our side, and discard whatever else arrives until the peer closes
    /// (a budget's worth per turn: the peer may still be streaming).
    fn drain_broken(&mut self, id: usize, ws: &mut Ws, stream: &mut Stream) -> bool {
        match ws.ctx.flush(stream) {
            Ok(()) => {
                let _ = stream.tcp.shutdown(Shutdown::Write);
            }
            Err(e) if would_block(&e) => {}
            Err(_) => return false,
        }
        match conn::discard_some(&mut stream.tcp) {
            Ok(Discarded::Dry) => true,
            Ok(Discarded::Budget) => {
                self.revisit.push(id);
                true
            }
            Ok(Discarded::Eof) | Err(_) => false,
        }
    }
}

/// Whether an idle-queue entry still describes its connection: the same
/// one (serial), still HTTP, still idle since that entry (stamp).
fn still_idle(conns: &mut Slab<Conn>, e: &Entry) -> bool {
    conns
        .get_mut(e.id)
        .is_some_and(|c| c.serial == e.serial && matches!(&c.state, State::Http(h) if h.idle == Some(e.seq)))
}

/// How a request wants its response written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplyStyle {
    keep_alive: bool,
    http10: bool,
    head_only: bool,
    json: bool,
}

impl Core {
    /// Encodes a response the way the request asked; true when the
    /// connection is to close after it.
    fn encode_response(&mut self, out: &mut Vec<u8>, mut resp: Response, style: ReplyStyle) -> bool {
        if style.keep_alive && style.http10 {
            // A 1.0 client assumes close unless told otherwise.
            resp = resp.with_header("Connection", "keep-alive");
        }
        if resp.status >= 400 {
            self.metrics.http_error(resp.status);
        }
        resp.encode_into(out, style.keep_alive, style.head_only);
        !style.keep_alive || resp.close
    }

    /// Makes sure a timer entry exists for the connection's next deadline.
    fn arm(&mut self, id: usize, conn: &mut Conn) {
        if let Some(at) = conn.next_deadline(&self.cfg) {
            if conn.armed.is_none_or(|armed| at < armed) {
                self.timers.arm(at, id, conn.serial);
                conn.armed = Some(at);
            }
        }
    }

    /// A deadline of this connection may have passed; act on the ones that did.
    fn on_timer(&mut self, id: usize, conn: &mut Conn, now: Instant) -> bool {
        match &mut conn.state {
            State::Http(h) => {
                if h.waiting || h.since + self.cfg.request_timeout > now {
                    // A waiting push is bounded by --redis-timeout instead.
                    return true;
                }
                if h.mid_request() && conn.stream.queued() == 0 {
                    // A request that never finished arriving (slowloris).
                    self.metrics.http_error(408);
                    let resp = Response::text(408, "request timeout");
                    conn.stream.append(|b| resp.encode_into(b, false, false));
                    let _ = conn.stream.flush_out();
                    return self.linger(conn, now);
                }
                // Idle keep-alive, or a response the peer does not read.
                false
            }
            State::Linger { until } => *until > now,
            State::Ws(ws) => match ws.phase {
                WsPhase::Closing { until, .. } => until > now,
                WsPhase::Open => {
                    if ws.register_by.is_some_and(|t| t <= now) {
                        self.close_ws(id, ws, &mut conn.stream, close::REGISTER_TIMEOUT, "", now);
                        return true;
                    }
                    if ws.silent_deadline(&self.cfg).is_some_and(|t| t <= now) {
                        debug!("dropping silent connection from {}", conn.peer);
                        return false;
                    }
                    if ws.next_ping.is_some_and(|t| t <= now) {
                        ws.next_ping = Some(now + self.cfg.ping_interval);
                        self.send_ping(id, ws, &mut conn.stream, now);
                    }
                    true
                }
            },
        }
    }

    /// After a final response: shut our side once it is written, then
    /// drain input for a moment so the peer reads the response, not a reset.
    fn linger(&mut self, conn: &mut Conn, now: Instant) -> bool {
        let _ = conn.stream.tcp.shutdown(Shutdown::Write);
        conn.state = State::Linger {
            until: now + CLOSE_GRACE,
        };
        matches!(conn::discard_input(&mut conn.stream.tcp), Ok(false))
    }

    fn on_text(&mut self, id: usize, ws: &mut Ws, stream: &mut Stream, text: &str, now: Instant) {
        let cmd = match command::parse(text) {
            Ok(cmd) => cmd,
            Err(bad) => {
                return self.on_other(
                    id,
                    ws,
                    stream,
                    ClientMessage::Text(text),
                    Some((bad.id, bad.reason)),
                    now,
                )
            }
        };
        let result = match cmd.action {
            Action::Register { token, event } => self.register(id, ws, stream, &token, &event),
            Action::Unregister { event } => names::check_event(&event)
                .map(|()| {
                    self.binder.unsubscribe(id, &event);
                })
                .map_err(|reason| (close::MALFORMED, reason.into())),
        };
        match (result, cmd.id) {
            (Ok(()), Some(rid)) => {
                self.send_frame(
                    id,
                    ws,
                    stream,
                    &Rc::from(ws::data_frame(true, command::ok_reply(&rid).as_bytes())),
                    now,
                );
            }
            (Ok(()), None) => {}
            (Err((code, reason)), rid) => self.refuse(id, ws, stream, rid, code, &reason, now),
        }
    }

    /// Binds the connection to the token's user and subscribes it to
    /// `event`; the error is the close code and reason of the refusal.
    fn register(
        &mut self,
        id: usize,
        ws: &mut Ws,
        stream: &Stream,
        token: &str,
        event: &str,
    ) -> Result<(), (u16, Cow<'static, str>)> {
        names::check_event(event).map_err(|reason| (close::MALFORMED, reason.into()))?;
        let user = names::check_token(token)
            .and_then(|()| {
                self.hooks.auth.user_for(token).map_err(|why| {
                    refusal!(Refused::Token, "token from {} rejected: {why}", peer_of(stream));
                    why.reason()
                })
            })
            .and_then(|user| names::check_user(&user).map(|()| user));
        let user = user.map_err(|reason| {
            self.metrics.auth_failures += 1;
            (close::TOKEN_REJECTED, Cow::from(reason))
        })?;
        match self.binder.bind(id, &user, event, self.cfg.max_events) {
            Ok(()) => {
                ws.register_by = None;
                Ok(())
            }
            Err(BindError::OtherUser) => Err((close::OTHER_USER, close::reason(close::OTHER_USER).into())),
            Err(BindError::TooManyEvents) => Err((
                close::TOO_MANY_EVENTS,
                close::reason(close::TOO_MANY_EVENTS).into(),
            )),
        }
    }

    /// A frame that is not a command: the library's message hook gets it;
    /// without one it is a malformed command (4400).
    fn on_other(
        &mut self,
        id: usize,
        ws: &mut Ws,
        stream: &mut Stream,
        msg: ClientMessage<'_>,
        malformed: Option<(Option<Value>, &'static str)>,
        now: Instant,
    ) {
        if let Some(hook) = &mut self.hooks.on_message {
            let user = self.binder.user_of(id);
            if let Some(reply) = hook(user, msg) {
                let frame = match reply {
                    Reply::Text(t) => ws::data_frame(true, t.as_bytes()),
                    Reply::Binary(b) => ws::data_frame(false, &b),
                };
                self.send_frame(id, ws, stream, &Rc::from(frame), now);
            }
            return;
        }
        let (rid, reason) = malformed.unwrap_or((None, "binary frames are not commands"));
        self.refuse(id, ws, stream, rid, close::MALFORMED, reason, now);
    }

    /// A refused command: an error reply when it had an `id`, else a close.
    #[allow(clippy::too_many_arguments)]
    fn refuse(
        &mut self,
        id: usize,
        ws: &mut Ws,
        stream: &mut Stream,
        rid: Option<Value>,
        code: u16,
        reason: &str,
        now: Instant,
    ) {
        match rid {
            Some(rid) => {
                let reply = command::error_reply(&rid, code, reason);
                self.send_frame(
                    id,
                    ws,
                    stream,
                    &Rc::from(ws::data_frame(true, reply.as_bytes())),
                    now,
                );
            }
            None => self.close_ws(id, ws, stream, code, reason, now),
        }
    }

    /// Sends one encoded data frame; false when the connection cannot take
    /// it (it is then closing: 4008 when the frame would push its queue over
    /// the backlog limit, dropped when the socket is dead).
    fn send_frame(
        &mut self,
        id: usize,
        ws: &mut Ws,
        stream: &mut Stream,
        frame: &Rc<[u8]>,
        now: Instant,
    ) -> bool {
        if stream.queued() + frame.len() > self.cfg.max_backlog_bytes {
            self.metrics.slow_consumer_drops += 1;
            info!("closing slow consumer {id}");
            self.close_ws(id, ws, stream, close::SLOW_CONSUMER, "", now);
            return false;
        }
        match stream.send_shared(frame) {
            Ok(()) => true,
            Err(_) => {
                self.leave_open(id, ws, now, true);
                false
            }
        }
    }

    /// A server ping, through tungstenite (control frames are its business).
    fn send_ping(&mut self, id: usize, ws: &mut Ws, stream: &mut Stream, now: Instant) {
        match ws.ctx.write(stream, Message::Ping(Default::default())) {
            Ok(()) => {}
            // Queued, or skipped behind a full queue: the silence check
            // still drops a peer that never answers.
            Err(e) if would_block(&e) => {}
            Err(tungstenite::Error::WriteBufferFull(_)) => {}
            Err(_) => self.leave_open(id, ws, now, true),
        }
    }

    /// Unbinds a connection that stops being open; `until` bounds the wait
    /// for its peer, `broken` stops parsing its input.
    fn leave_open(&mut self, id: usize, ws: &mut Ws, until: Instant, broken: bool) {
        if ws.is_open() {
            self.binder.unbind(id);
            self.metrics.connections -= 1;
        }
        ws.phase = WsPhase::Closing { until, broken };
    }

    /// Starts the close handshake with `code`; an empty `reason` says the
    /// table's (`ws::close::REASONS`), so no close goes out without one.
    fn close_ws(
        &mut self,
        id: usize,
        ws: &mut Ws,
        stream: &mut Stream,
        code: u16,
        reason: &str,
        now: Instant,
    ) {
        if !ws.is_open() {
            return;
        }
        self.leave_open(id, ws, now + CLOSE_GRACE, false);
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: Utf8Bytes::from(close::fitted(code, reason)),
        };
        match ws.ctx.close(stream, Some(frame)) {
            Ok(()) => {}
            Err(e) if would_block(&e) => {}
            // The close frame does not fit behind the backlog, or the socket
            // is gone: nothing more can be said to this peer.
            Err(_) => {
                ws.phase = WsPhase::Closing {
                    until: now,
                    broken: true,
                }
            }
        }
    }

    /// Closes a session that failed on the peer's input (1002, 1007,
    /// 1009); an empty `reason` says the table's.
    fn fail_ws(
        &mut self,
        id: usize,
        ws: &mut Ws,
        stream: &mut Stream,
        code: u16,
        reason: &str,
        now: Instant,
    ) {
        self.close_ws(id, ws, stream, code, reason, now);
        if let WsPhase::Closing { until, .. } = ws.phase {
            ws.phase = WsPhase::Closing { until, broken: true };
        }
    }
}
