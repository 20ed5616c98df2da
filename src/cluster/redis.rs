//! The cluster's Redis client: two non-blocking connections on the loop's
//! own `Poll`, no thread, no lock, no blocking call.
//!
//! # Why two links
//!
//! A connection that has sent `SUBSCRIBE` may only subscribe, unsubscribe
//! and ping, so publishing needs a second one. The *publishing* link is
//! pipelined: every `PUBLISH` is appended to its output buffer, the buffer
//! goes out once per loop tick, and replies come back in the order the
//! commands went out, which is how each reply finds its waiter (a FIFO of
//! [`Expect`]). One publishing connection per node also gives the ordering
//! the cluster promises: Redis delivers one connection's publishes to every
//! subscriber in the order it received them.
//!
//! # Health
//!
//! The node counts as *up* only while both links are ready (logged in,
//! database selected, subscribed); otherwise pushes answer 503 and
//! `/healthz` 503. A link that breaks, or leaves any request unanswered
//! for `timeout` (Redis stopped, a network partition), is dropped and
//! reconnected with jittered exponential backoff ([`Backoff`]: nodes that
//! lost Redis together do not all knock at once when it returns); its
//! waiting pushes fail at once
//! rather than hang. An idle link is pinged every [`PING_EVERY`], so a
//! silent Redis is noticed even when nobody pushes. Transitions are logged
//! once each, not once per push or per attempt.
//!
//! Time is an input: every method takes `now`, and [`Redis::next_deadline`]
//! tells the loop when to call [`Redis::on_timer`].

pub use super::url::{RedisAddr, RedisUrl};

use super::resp::{self, Value};
use super::stream::{self, Catchup, Event, Got};
use crate::history::Pos;
use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub(crate) const PUB: Token = Token(usize::MAX - 3);
pub(crate) const SUB: Token = Token(usize::MAX - 4);

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Liveness probe interval of an idle link.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Publishes queued but not yet answered before new pushes get 503: a
/// Redis that accepts but does not answer must not grow us without bound.
const MAX_IN_FLIGHT: usize = 65_536;
const MAX_OUTPUT: usize = 16 << 20;
/// Whatever someone publishes on our channel, a reply above this ends the
/// link instead of our memory.
const LIMITS: resp::Limits = resp::Limits {
    max_bulk: 64 << 20,
    max_elements: 1024,
    max_depth: 4,
};

/// Where to connect, resolved once at startup.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Tcp(Vec<SocketAddr>),
    Unix(PathBuf),
}

/// What a round of Redis work produced for the loop.
#[derive(Debug)]
pub(crate) enum Outcome<W> {
    /// Redis took the publish; `nodes` subscribers received it. With
    /// history, `id` is its entry in the stream (its cursor).
    Published {
        waiter: W,
        nodes: u64,
        latency: Duration,
        id: Option<Pos>,
    },
    /// The publish may not have happened: the link failed first, or Redis
    /// answered with an error.
    Failed { waiter: W, reason: String },
    /// A record arrived on the channel (ours included).
    Message(Vec<u8>),
    /// History mode: a record at its place in the stream, in order, once
    /// (live, or caught up on after a cut).
    Entry(Pos, Vec<u8>),
    /// History mode: records were lost between the last entry and the next.
    Lost,
    /// History mode: the cluster's epoch (first seen, or new).
    Epoch(String),
}

/// Counters for `/metrics`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Stats {
    /// Times the node came back after having been up.
    pub reconnects: u64,
    pub published: u64,
    pub publish_failures: u64,
    pub received: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Publish,
    Subscribe,
}

/// A reply this link is waiting for, in send order.
enum Expect<W> {
    /// `+OK` to AUTH or SELECT (the name is for the error message).
    Ok(&'static str),
    /// A `PING` reply; `handshake` marks the last step of the publishing
    /// link's login.
    Pong {
        handshake: bool,
    },
    /// The `subscribe` confirmation, the last step of the subscriber's login.
    Subscribed,
    Publish(W),
    /// History mode: `SET <epoch key> <random> NX` (OK, or null if set).
    SetEpoch,
    /// History mode: `GET <epoch key>`.
    Epoch,
    /// History mode: `XREVRANGE <stream> + - COUNT 1`, the newest entry.
    Anchor,
    /// History mode: a catch-up's `XRANGE`, by number.
    Range(u64),
}

struct Sent<W> {
    at: Instant,
    what: Expect<W>,
}

enum Stage {
    /// `connect` in flight; ends at the first writable event.
    Connecting {
        since: Instant,
    },
    /// Logged in or not yet: replies to the login commands outstanding.
    Handshake,
    Ready {
        next_ping: Instant,
    },
}

struct Session<W> {
    sock: Sock,
    stage: Stage,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    /// Bytes of `outbuf` already written.
    out_pos: usize,
    expect: VecDeque<Sent<W>>,
}

/// What a read round left behind.
enum Input {
    /// Stopped at the chunk size; the socket may hold more.
    More,
    Drained,
    Closed,
}

/// Input parsed per round, so a burst is handled in bounded memory.
const READ_CHUNK: usize = 64 << 10;

enum Phase<W> {
    Down { retry_at: Instant },
    Up(Session<W>),
}

struct Link<W> {
    phase: Phase<W>,
    backoff: Backoff,
    attempts: usize,
}

/// Reconnect delays: the ceiling doubles from [`BACKOFF_MIN`] to
/// [`BACKOFF_MAX`], and each delay is drawn from its upper half ("equal
/// jitter"). When Redis restarts, every node of a cluster loses it in the
/// same instant; without jitter they would all retry in the same instants
/// too, forever in lockstep. The upper half keeps the backoff's promise (a
/// failing Redis is not hammered) while spreading the nodes out.
struct Backoff {
    ceiling: Duration,
    rng: SplitMix64,
}

impl Backoff {
    fn new(seed: u64) -> Backoff {
        Backoff {
            ceiling: BACKOFF_MIN,
            rng: SplitMix64(seed),
        }
    }

    /// The delay before the next attempt; the one after may be longer.
    fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (ceiling * 2).min(BACKOFF_MAX);
        let half = ceiling / 2;
        half + half.mul_f64(self.rng.unit())
    }

    /// After a success the next failure starts from the bottom again.
    fn reset(&mut self) {
        self.ceiling = BACKOFF_MIN;
    }

    fn is_reset(&self) -> bool {
        self.ceiling == BACKOFF_MIN
    }
}

/// A small, fast PRNG (Steele, Lea, Flood 2014): good enough to spread
/// retries, and no dependency. Not for anything secret.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A seed that differs between processes (and between the two links of
/// one): std's `RandomState` is keyed from the OS's randomness once per
/// process, and the pid and the clock separate processes further.
fn jitter_seed(salt: u64) -> u64 {
    crate::unique::per_process(salt)
}

pub(crate) struct Redis<W> {
    url: RedisUrl,
    target: Target,
    channel: Vec<u8>,
    timeout: Duration,
    publisher: Link<W>,
    subscriber: Link<W>,
    /// The state last logged: `None` before the first connect settles.
    reported_up: Option<bool>,
    ever_up: bool,
    pub stats: Stats,
    /// History mode (SPEC §8): records go through the stream (see stream.rs).
    history: Option<Catchup>,
}

impl<W> Redis<W> {
    pub(crate) fn new(url: RedisUrl, target: Target, channel: &str, timeout: Duration, now: Instant) -> Self {
        let link = |salt| Link {
            phase: Phase::Down { retry_at: now },
            backoff: Backoff::new(jitter_seed(salt)),
            attempts: 0,
        };
        Redis {
            url,
            target,
            channel: channel.as_bytes().to_vec(),
            timeout,
            publisher: link(1),
            subscriber: link(2),
            reported_up: None,
            ever_up: false,
            stats: Stats::default(),
            history: None,
        }
    }

    /// History mode: every record is kept in a Redis stream for `ttl`, and
    /// a node cut off catches up on what it missed (stream.rs).
    pub(crate) fn with_history(mut self, ttl: Duration) -> Self {
        let channel = String::from_utf8_lossy(&self.channel).into_owned();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.history = Some(Catchup::new(&channel, ttl_ms));
        self
    }

    /// Both links logged in and subscribed: pushes can be published.
    pub(crate) fn is_up(&self) -> bool {
        self.publisher.is_ready() && self.subscriber.is_ready()
    }

    /// Seconds a client should wait before retrying a refused push: until
    /// the next reconnect attempt, at least one.
    pub(crate) fn retry_after(&self, now: Instant) -> u64 {
        let next = [&self.publisher, &self.subscriber]
            .iter()
            .filter_map(|l| match l.phase {
                Phase::Down { retry_at } => Some(retry_at.saturating_duration_since(now)),
                Phase::Up(_) => None,
            })
            .max()
            .unwrap_or(Duration::ZERO);
        (next.as_secs() + u64::from(next.subsec_nanos() > 0)).max(1)
    }

    /// Queues one `PUBLISH`; it goes out at the next [`flush`](Redis::flush).
    /// Gives the waiter back when the node is not up or too much is in flight.
    /// With history, a push goes through the stream first (`stream::SCRIPT`).
    pub(crate) fn publish(&mut self, record: &[u8], waiter: W, now: Instant) -> Result<(), W> {
        self.queue_publish(record, waiter, now, false)
    }

    /// As `publish`, but a plain `PUBLISH` even with history: for records
    /// that are no pushes (presence), which a node catching up must not
    /// replay and a cursor must not count.
    pub(crate) fn publish_plain(&mut self, record: &[u8], waiter: W, now: Instant) -> Result<(), W> {
        self.queue_publish(record, waiter, now, true)
    }

    fn queue_publish(&mut self, record: &[u8], waiter: W, now: Instant, plain: bool) -> Result<(), W> {
        if !self.is_up() {
            return Err(waiter);
        }
        let Phase::Up(s) = &mut self.publisher.phase else {
            return Err(waiter);
        };
        if s.expect.len() >= MAX_IN_FLIGHT || s.outbuf.len() - s.out_pos > MAX_OUTPUT {
            return Err(waiter);
        }
        match self.history.as_ref().filter(|_| !plain) {
            Some(h) => resp::encode_command(
                &mut s.outbuf,
                &[
                    b"EVAL",
                    stream::SCRIPT.as_bytes(),
                    b"1",
                    &h.stream_key,
                    record,
                    h.ttl_ms.to_string().as_bytes(),
                    &self.channel,
                ],
            ),
            None => resp::encode_command(&mut s.outbuf, &[b"PUBLISH", &self.channel, record]),
        }
        s.expect.push_back(Sent {
            at: now,
            what: Expect::Publish(waiter),
        });
        Ok(())
    }

    /// Readiness on one of our tokens.
    pub(crate) fn on_ready(
        &mut self,
        token: Token,
        registry: &Registry,
        now: Instant,
        out: &mut Vec<Outcome<W>>,
    ) {
        let role = if token == PUB {
            Role::Publish
        } else {
            Role::Subscribe
        };
        if let Err(reason) = self.service(role, now, out) {
            self.fail(role, reason, registry, now, out);
        }
        self.note_state();
    }

    /// Writes what this tick queued (pipelined publishes, pings).
    pub(crate) fn flush(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Outcome<W>>) {
        self.on_stream(Vec::new(), now, out);
        for role in [Role::Publish, Role::Subscribe] {
            let link = self.link(role);
            if let Phase::Up(s) = &mut link.phase {
                if let Err(reason) = s.write_out() {
                    self.fail(role, reason, registry, now, out);
                }
            }
        }
        self.note_state();
    }

    /// The earliest moment [`on_timer`](Redis::on_timer) has work.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        [&self.publisher, &self.subscriber]
            .iter()
            .filter_map(|l| l.deadline(self.timeout))
            .min()
    }

    /// Reconnects, timeouts and pings that are due.
    pub(crate) fn on_timer(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Outcome<W>>) {
        for role in [Role::Publish, Role::Subscribe] {
            let timeout = self.timeout;
            let link = self.link(role);
            let due = matches!(link.phase, Phase::Down { retry_at } if retry_at <= now);
            let result = if due {
                let attempt = link.attempts;
                link.attempts += 1;
                self.connect(role, attempt, registry, now)
                    .map(|session| self.link(role).phase = Phase::Up(session))
            } else if let Phase::Up(s) = &mut link.phase {
                s.check_time(timeout, now)
            } else {
                Ok(())
            };
            if let Err(reason) = result {
                self.fail(role, reason, registry, now, out);
            }
        }
        self.flush(registry, now, out);
    }

    fn link(&mut self, role: Role) -> &mut Link<W> {
        match role {
            Role::Publish => &mut self.publisher,
            Role::Subscribe => &mut self.subscriber,
        }
    }

    /// Opens a socket and queues the login: AUTH and SELECT when the URL
    /// asks, then PING (publisher: proves Redis answers) or SUBSCRIBE.
    fn connect(
        &self,
        role: Role,
        attempt: usize,
        registry: &Registry,
        now: Instant,
    ) -> Result<Session<W>, String> {
        let mut sock = match &self.target {
            Target::Tcp(addrs) => {
                let Some(addr) = addrs.get(attempt % addrs.len().max(1)) else {
                    return Err("no address to connect to".into());
                };
                let tcp = TcpStream::connect(*addr).map_err(|e| format!("connect: {e}"))?;
                let _ = tcp.set_nodelay(true);
                Sock::Tcp(tcp)
            }
            Target::Unix(path) => Sock::Unix(UnixStream::connect(path).map_err(|e| format!("connect: {e}"))?),
        };
        let token = match role {
            Role::Publish => PUB,
            Role::Subscribe => SUB,
        };
        registry
            .register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| format!("cannot watch the redis socket: {e}"))?;
        let mut s = Session {
            sock,
            stage: Stage::Connecting { since: now },
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            out_pos: 0,
            expect: VecDeque::new(),
        };
        if let Some(password) = &self.url.password {
            let pw = password.expose().as_bytes();
            match &self.url.user {
                Some(user) => resp::encode_command(&mut s.outbuf, &[b"AUTH", user.as_bytes(), pw]),
                None => resp::encode_command(&mut s.outbuf, &[b"AUTH", pw]),
            }
            s.expect_reply(Expect::Ok("AUTH"), now);
        }
        if self.url.db != 0 {
            resp::encode_command(&mut s.outbuf, &[b"SELECT", self.url.db.to_string().as_bytes()]);
            s.expect_reply(Expect::Ok("SELECT"), now);
        }
        match role {
            Role::Publish => {
                if let Some(h) = &self.history {
                    let epoch = crate::history::random_epoch();
                    resp::encode_command(&mut s.outbuf, &[b"SET", &h.epoch_key, epoch.as_bytes(), b"NX"]);
                    s.expect_reply(Expect::SetEpoch, now);
                    resp::encode_command(&mut s.outbuf, &[b"GET", &h.epoch_key]);
                    s.expect_reply(Expect::Epoch, now);
                    // Where a node that has applied nothing starts from
                    // (see stream.rs, "A node that has applied nothing yet").
                    resp::encode_command(
                        &mut s.outbuf,
                        &[b"XREVRANGE", &h.stream_key, b"+", b"-", b"COUNT", b"1"],
                    );
                    s.expect_reply(Expect::Anchor, now);
                }
                resp::encode_command(&mut s.outbuf, &[b"PING"]);
                s.expect_reply(Expect::Pong { handshake: true }, now);
            }
            Role::Subscribe => {
                resp::encode_command(&mut s.outbuf, &[b"SUBSCRIBE", &self.channel]);
                s.expect_reply(Expect::Subscribed, now);
            }
        }
        debug!("redis: connecting the {} link to {}", role.name(), self.url);
        Ok(s)
    }

    /// Connect completion, input, replies and output for one link.
    fn service(&mut self, role: Role, now: Instant, out: &mut Vec<Outcome<W>>) -> Result<(), String> {
        let mut events = Vec::new();
        let result = self.service_link(role, now, out, &mut events);
        self.on_stream(events, now, out);
        result
    }

    /// `service` for one link; what concerns the history's stream is
    /// collected in `events`.
    fn service_link(
        &mut self,
        role: Role,
        now: Instant,
        out: &mut Vec<Outcome<W>>,
        events: &mut Vec<Event>,
    ) -> Result<(), String> {
        let channel = self.channel.clone();
        let history = self.history.is_some();
        let stats = &mut self.stats;
        let link = match role {
            Role::Publish => &mut self.publisher,
            Role::Subscribe => &mut self.subscriber,
        };
        let Phase::Up(s) = &mut link.phase else {
            return Ok(());
        };
        if let Stage::Connecting { .. } = s.stage {
            if let Some(e) = s.sock.take_error().map_err(|e| format!("connect: {e}"))? {
                return Err(format!("connect: {e}"));
            }
            if !s.sock.is_connected()? {
                return Ok(());
            }
            s.stage = Stage::Handshake;
        }
        // Parse as input arrives, so a burst of records never piles up
        // beyond one read chunk plus one partial value.
        let closed = loop {
            let status = s.read_in()?;
            let mut used = 0;
            while let Some((value, n)) =
                resp::parse(&s.inbuf[used..], &LIMITS).map_err(|e| format!("bad reply from redis: {e}"))?
            {
                used += n;
                let before = events.len();
                if let Some(o) = s.on_reply(role, &channel, value, now, history, events)? {
                    match &o {
                        Outcome::Published { .. } => stats.published += 1,
                        Outcome::Failed { .. } => stats.publish_failures += 1,
                        _ => stats.received += 1,
                    }
                    out.push(o);
                }
                if events[before..].iter().any(|e| matches!(e, Event::Message(..))) {
                    stats.received += 1;
                }
            }
            s.inbuf.drain(..used);
            match status {
                Input::More => {}
                Input::Drained => break false,
                Input::Closed => break true,
            }
        };
        if s.is_ready() && !link.backoff.is_reset() {
            link.backoff.reset();
        }
        if closed {
            return Err("redis closed the connection".into());
        }
        s.write_out()
    }

    /// Feeds the history's catch-up what the links brought, hands on what
    /// it releases, and sends its next `XRANGE` once the publishing link
    /// can take it.
    fn on_stream(&mut self, events: Vec<Event>, now: Instant, out: &mut Vec<Outcome<W>>) {
        let Some(h) = &mut self.history else { return };
        let mut got = Vec::new();
        for e in events {
            h.on_event(e, &mut got);
        }
        for g in got {
            out.push(match g {
                Got::Entry(pos, record) => Outcome::Entry(pos, record),
                Got::Lost => Outcome::Lost,
                Got::Epoch(e) => Outcome::Epoch(e),
            });
        }
        if !self.publisher.is_ready() {
            return;
        }
        let Phase::Up(s) = &mut self.publisher.phase else {
            return;
        };
        if let Some((cmd, n)) = h.range_due() {
            let args: Vec<&[u8]> = cmd.iter().map(Vec::as_slice).collect();
            resp::encode_command(&mut s.outbuf, &args);
            s.expect_reply(Expect::Range(n), now);
        }
    }

    /// Drops a broken link: its waiting publishes fail now, and the next
    /// attempt is scheduled with backoff.
    fn fail(
        &mut self,
        role: Role,
        reason: String,
        registry: &Registry,
        now: Instant,
        out: &mut Vec<Outcome<W>>,
    ) {
        let was_up = self.is_up();
        let link = self.link(role);
        let retry_at = now + link.backoff.next_delay();
        let old = std::mem::replace(&mut link.phase, Phase::Down { retry_at });
        let mut failed = 0;
        let mut lost_ranges = Vec::new();
        if let Phase::Up(mut s) = old {
            let _ = registry.deregister(&mut s.sock);
            for sent in s.expect.drain(..) {
                match sent.what {
                    Expect::Publish(waiter) => {
                        failed += 1;
                        out.push(Outcome::Failed {
                            waiter,
                            reason: "redis connection lost before it acknowledged the push".into(),
                        });
                    }
                    Expect::Range(n) => lost_ranges.push(Event::RangeLost(n)),
                    _ => {}
                }
            }
        }
        self.on_stream(lost_ranges, now, out);
        self.stats.publish_failures += failed;
        if was_up || self.reported_up != Some(false) {
            warn!(
                "redis unavailable ({reason}; {} link to {}): pushes and /healthz answer 503 \
                 until it is back; reconnecting with backoff",
                role.name(),
                self.url
            );
            self.reported_up = Some(false);
        } else {
            debug!("redis: {} link: {reason}", role.name());
        }
    }

    /// Logs the way back up once.
    fn note_state(&mut self) {
        if self.is_up() && self.reported_up != Some(true) {
            if self.ever_up {
                self.stats.reconnects += 1;
                info!("redis connection restored ({}); pushes accepted again", self.url);
            } else {
                info!(
                    "cluster mode: connected to {}, channel {:?}",
                    self.url,
                    String::from_utf8_lossy(&self.channel)
                );
            }
            self.ever_up = true;
            self.reported_up = Some(true);
        }
    }
}

impl<W> Link<W> {
    fn is_ready(&self) -> bool {
        matches!(&self.phase, Phase::Up(s) if s.is_ready())
    }

    fn deadline(&self, timeout: Duration) -> Option<Instant> {
        match &self.phase {
            Phase::Down { retry_at } => Some(*retry_at),
            Phase::Up(s) => {
                let waiting = s.expect.front().map(|e| e.at + timeout);
                let stage = match s.stage {
                    Stage::Connecting { since } => Some(since + timeout),
                    Stage::Handshake => None,
                    Stage::Ready { next_ping } => Some(next_ping),
                };
                waiting.into_iter().chain(stage).min()
            }
        }
    }
}

impl<W> Session<W> {
    fn is_ready(&self) -> bool {
        matches!(self.stage, Stage::Ready { .. })
    }

    fn expect_reply(&mut self, what: Expect<W>, now: Instant) {
        self.expect.push_back(Sent { at: now, what });
    }

    /// Reads up to [`READ_CHUNK`] more bytes of input.
    fn read_in(&mut self) -> Result<Input, String> {
        let mut buf = [0u8; 8192];
        let limit = self.inbuf.len() + READ_CHUNK;
        while self.inbuf.len() < limit {
            match self.sock.read(&mut buf) {
                Ok(0) => return Ok(Input::Closed),
                Ok(n) => {
                    if self.inbuf.len() + n > LIMITS.max_bulk + READ_CHUNK {
                        return Err("reply from redis too large".into());
                    }
                    self.inbuf.extend_from_slice(&buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Input::Drained),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        Ok(Input::More)
    }

    /// Writes queued commands until done or the socket is full.
    fn write_out(&mut self) -> Result<(), String> {
        if matches!(self.stage, Stage::Connecting { .. }) {
            return Ok(());
        }
        while self.out_pos < self.outbuf.len() {
            match self.sock.write(&self.outbuf[self.out_pos..]) {
                Ok(0) => return Err("write: connection closed".into()),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        self.outbuf.clear();
        self.out_pos = 0;
        Ok(())
    }

    /// Timeouts and pings; an error ends the link.
    fn check_time(&mut self, timeout: Duration, now: Instant) -> Result<(), String> {
        if let Stage::Connecting { since } = self.stage {
            if since + timeout <= now {
                return Err(format!("connect timed out after {timeout:?}"));
            }
            return Ok(());
        }
        if let Some(front) = self.expect.front() {
            if front.at + timeout <= now {
                return Err(format!("no reply within {timeout:?}"));
            }
        }
        if let Stage::Ready { next_ping } = &mut self.stage {
            if *next_ping <= now {
                *next_ping = now + PING_EVERY;
                // Outstanding replies already prove (or disprove) liveness.
                if self.expect.is_empty() {
                    resp::encode_command(&mut self.outbuf, &[b"PING"]);
                    self.expect_reply(Expect::Pong { handshake: false }, now);
                }
            }
        }
        Ok(())
    }

    /// Takes the publish a reply answers off the front: when it was sent,
    /// and who waits.
    fn pop_publish(&mut self) -> Result<(Instant, W), String> {
        match self.expect.pop_front() {
            Some(Sent {
                at,
                what: Expect::Publish(waiter),
            }) => Ok((at, waiter)),
            _ => Err("reply bookkeeping out of step".into()),
        }
    }

    /// Matches one reply to what this link waits for.
    fn on_reply(
        &mut self,
        role: Role,
        channel: &[u8],
        value: Value,
        now: Instant,
        history: bool,
        events: &mut Vec<Event>,
    ) -> Result<Option<Outcome<W>>, String> {
        if role == Role::Subscribe {
            if let Some(payload) = message_payload(&value, channel) {
                if !self.is_ready() {
                    return Err("message before the subscription was confirmed".into());
                }
                if history {
                    if let Some((pos, record)) = stream::parse_message(&payload) {
                        events.push(Event::Message(pos, record));
                        return Ok(None);
                    }
                }
                return Ok(Some(Outcome::Message(payload)));
            }
        }
        // Classify against the front without popping it: on a protocol
        // error it stays queued, so `fail` hands its waiter a failure.
        let Some(front) = self.expect.front() else {
            return Err(format!("unexpected reply from redis: {}", describe(&value)));
        };
        match (&front.what, &value) {
            (Expect::Ok(_), Value::Simple(_)) => {}
            (Expect::Pong { handshake }, v) if is_pong(v) => {
                if *handshake {
                    self.stage = Stage::Ready {
                        next_ping: now + PING_EVERY,
                    };
                }
            }
            (Expect::Subscribed, v) if is_subscribed(v, channel) => {
                self.stage = Stage::Ready {
                    next_ping: now + PING_EVERY,
                };
                events.push(Event::Subscribed);
            }
            (Expect::SetEpoch, Value::Simple(_) | Value::Bulk(None)) => {}
            (Expect::Epoch, Value::Bulk(Some(e))) => {
                events.push(Event::Epoch(String::from_utf8_lossy(e).into_owned()));
            }
            (Expect::Anchor, Value::Array(Some(_))) => {
                let newest = stream::parse_range(&value)?.first().map(|(pos, _)| *pos);
                events.push(Event::Anchor(newest));
            }
            (Expect::Range(n), Value::Array(Some(_))) => {
                events.push(Event::Range(*n, stream::parse_range(&value)?));
            }
            (Expect::Publish(_), Value::Array(Some(_))) if history => {
                let Some((id, nodes)) = stream::parse_published(&value) else {
                    return Err(format!("unexpected reply to a push: {}", describe(&value)));
                };
                let (at, waiter) = self.pop_publish()?;
                return Ok(Some(Outcome::Published {
                    waiter,
                    nodes,
                    latency: now.saturating_duration_since(at),
                    id: Some(id),
                }));
            }
            (Expect::Publish(_), Value::Integer(_) | Value::Error(_)) => {
                let (at, waiter) = self.pop_publish()?;
                return Ok(Some(match value {
                    Value::Integer(n) => Outcome::Published {
                        waiter,
                        nodes: n.max(0) as u64,
                        latency: now.saturating_duration_since(at),
                        id: None,
                    },
                    other => Outcome::Failed {
                        waiter,
                        reason: format!("redis refused the publish: {}", describe(&other)),
                    },
                }));
            }
            (Expect::Ok(cmd), Value::Error(e)) => {
                return Err(format!("redis refused {cmd}: {}", String::from_utf8_lossy(e)))
            }
            (_, Value::Error(e)) => return Err(format!("redis error: {}", String::from_utf8_lossy(e))),
            (_, v) => return Err(format!("unexpected reply from redis: {}", describe(v))),
        }
        self.expect.pop_front();
        Ok(None)
    }
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Publish => "publishing",
            Role::Subscribe => "subscribing",
        }
    }
}

fn bulk_is(v: &Value, want: &[u8]) -> bool {
    matches!(v, Value::Bulk(Some(b)) if b.eq_ignore_ascii_case(want))
}

/// `["message", channel, payload]`, the payload moved out.
fn message_payload(v: &Value, channel: &[u8]) -> Option<Vec<u8>> {
    match v {
        Value::Array(Some(items))
            if items.len() == 3 && bulk_is(&items[0], b"message") && bulk_is(&items[1], channel) =>
        {
            match &items[2] {
                Value::Bulk(Some(p)) => Some(p.clone()),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `+PONG`, or `["pong", ""]` on a subscribed connection.
fn is_pong(v: &Value) -> bool {
    match v {
        Value::Simple(s) => s.eq_ignore_ascii_case(b"PONG"),
        Value::Array(Some(items)) => items.first().is_some_and(|f| bulk_is(f, b"pong")),
        _ => false,
    }
}

fn is_subscribed(v: &Value, channel: &[u8]) -> bool {
    matches!(v, Value::Array(Some(items))
        if items.len() == 3 && bulk_is(&items[0], b"subscribe") && bulk_is(&items[1], channel))
}

/// A short description of a reply for an error message (no payloads).
fn describe(v: &Value) -> String {
    match v {
        Value::Simple(s) => format!("+{}", String::from_utf8_lossy(&s[..s.len().min(40)])),
        Value::Error(e) => format!("-{}", String::from_utf8_lossy(&e[..e.len().min(80)])),
        Value::Integer(n) => format!(":{n}"),
        Value::Bulk(None) => "null".into(),
        Value::Bulk(Some(b)) => format!("a {}-byte string", b.len()),
        Value::Array(None) => "null array".into(),
        Value::Array(Some(items)) => format!("an array of {}", items.len()),
    }
}

/// A TCP or Unix stream, so both links are written once.
enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Sock {
    fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Sock::Tcp(s) => s.take_error(),
            Sock::Unix(s) => s.take_error(),
        }
    }

    /// Whether a non-blocking connect has finished (mio's recipe: after a
    /// writable event, `peer_addr` succeeds once connected).
    fn is_connected(&self) -> Result<bool, String> {
        let r = match self {
            Sock::Tcp(s) => s.peer_addr().map(drop),
            Sock::Unix(s) => s.peer_addr().map(drop),
        };
        match r {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(format!("connect: {e}")),
        }
    }
}

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.read(buf),
            Sock::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.write(buf),
            Sock::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for Sock {
    fn register(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.register(registry, token, interests),
            Sock::Unix(s) => s.register(registry, token, interests),
        }
    }

    fn reregister(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.reregister(registry, token, interests),
            Sock::Unix(s) => s.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.deregister(registry),
            Sock::Unix(s) => s.deregister(registry),
        }
    }
}

/// Resolves the URL's address once, at startup (a name lookup would block
/// the loop). A name that resolves to several addresses is tried in turn.
pub(crate) fn resolve(url: &RedisUrl) -> Result<Target, String> {
    use std::net::ToSocketAddrs;
    match &url.addr {
        RedisAddr::Unix(p) => Ok(Target::Unix(p.clone())),
        RedisAddr::Tcp { host, port } => {
            let addrs: Vec<SocketAddr> = (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(|e| format!("--redis: cannot resolve {host}: {e}"))?
                .collect();
            if addrs.is_empty() {
                return Err(format!("--redis: {host} has no address"));
            }
            Ok(Target::Tcp(addrs))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let now = Instant::now();
        let url = RedisUrl::parse("redis://127.0.0.1:1").unwrap();
        let mut r: Redis<()> = Redis::new(url, Target::Tcp(vec![]), "c", Duration::from_secs(2), now);
        assert_eq!(r.retry_after(now), 1);
        r.publisher.phase = Phase::Down {
            retry_at: now + Duration::from_millis(2500),
        };
        assert_eq!(r.retry_after(now), 3);
        r.subscriber.phase = Phase::Down {
            retry_at: now + Duration::from_secs(4),
        };
        assert_eq!(r.retry_after(now), 4);
    }

    /// The delays of `n` failures in a row.
    fn schedule(b: &mut Backoff, n: usize) -> Vec<Duration> {
        (0..n).map(|_| b.next_delay()).collect()
    }

    #[test]
    fn backoff_is_jittered_per_node_and_stays_within_bounds() {
        let mut a = Backoff::new(jitter_seed(1));
        let mut b = Backoff::new(jitter_seed(1));
        let (sa, sb) = (schedule(&mut a, 12), schedule(&mut b, 12));
        assert_ne!(sa, sb, "two nodes retry in lockstep");
        for s in [&sa, &sb] {
            let mut ceiling = BACKOFF_MIN;
            for d in s {
                assert!(
                    *d >= ceiling / 2 && *d <= ceiling,
                    "{d:?} outside [{:?}, {ceiling:?}]",
                    ceiling / 2
                );
                ceiling = (ceiling * 2).min(BACKOFF_MAX);
            }
            assert!(s.iter().all(|d| *d <= BACKOFF_MAX));
        }
        // Not one lucky draw: at the ceiling, delays of many nodes spread
        // over the upper half of the window.
        let last: Vec<Duration> = (0..64)
            .map(|i| *schedule(&mut Backoff::new(jitter_seed(i)), 12).last().unwrap())
            .collect();
        let (lo, hi) = (last.iter().min().unwrap(), last.iter().max().unwrap());
        assert!(*hi - *lo > BACKOFF_MAX / 4, "spread {lo:?}..{hi:?}");
        // A success starts the next failure from the bottom.
        a.reset();
        assert!(a.next_delay() <= BACKOFF_MIN);
        // Same seed, same schedule: the jitter comes from the seed alone.
        assert_eq!(
            schedule(&mut Backoff::new(7), 5),
            schedule(&mut Backoff::new(7), 5)
        );
    }

    #[test]
    fn replies_are_recognised() {
        let ch = b"wspush";
        let msg = Value::Array(Some(vec![
            Value::Bulk(Some(b"message".to_vec())),
            Value::Bulk(Some(ch.to_vec())),
            Value::Bulk(Some(b"1P{}".to_vec())),
        ]));
        assert_eq!(message_payload(&msg, ch), Some(b"1P{}".to_vec()));
        assert_eq!(message_payload(&msg, b"other"), None);
        assert!(is_pong(&Value::Simple(b"PONG".to_vec())));
        assert!(is_pong(&Value::Array(Some(vec![
            Value::Bulk(Some(b"pong".to_vec())),
            Value::Bulk(Some(Vec::new())),
        ]))));
        assert!(!is_pong(&Value::Integer(1)));
        let sub = Value::Array(Some(vec![
            Value::Bulk(Some(b"subscribe".to_vec())),
            Value::Bulk(Some(ch.to_vec())),
            Value::Integer(1),
        ]));
        assert!(is_subscribed(&sub, ch));
        assert!(!is_subscribed(&sub, b"x"));
    }

    #[test]
    fn publish_is_refused_while_down() {
        let now = Instant::now();
        let url = RedisUrl::parse("redis://127.0.0.1:1").unwrap();
        let mut r: Redis<u32> = Redis::new(url, Target::Tcp(vec![]), "c", Duration::from_secs(2), now);
        assert!(!r.is_up());
        assert_eq!(r.publish(b"x", 7, now), Err(7));
    }
}
