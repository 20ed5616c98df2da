//! A WebSocket subscriber: tungstenite's protocol state for one client,
//! what its input may cost the loop per turn, its timers (register, ping,
//! silence, expiry, close grace), and how it closes.
//!
//! Sans-IO in the sense that matters for tests: it reads and writes only
//! through an `Outbound<S>` over any `Io`, and never looks at a clock —
//! every call that depends on time takes `now`.

use super::frame_watch::{FrameWatch, TURN_BYTES, TURN_FRAMES};
use super::{Tick, Timeouts};
use crate::close::{self, Close};
use crate::outbound::{discard_some, Admit, Drained, Io, Outbound};
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::time::Instant;
use tungstenite::error::ProtocolError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::{CloseFrame, Utf8Bytes};
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::{Bytes, Message};

/// Read buffer per connection. Commands are a few dozen bytes and
/// tungstenite grows the buffer for a bigger frame, so this only sets the
/// idle cost: 256 B here against 128 KiB by default (~135 KB of RSS each).
pub const READ_BUFFER_BYTES: usize = 256;

/// Session settings for a push server: a small read buffer, every frame
/// written at once (no batching threshold: a push must leave now), incoming
/// messages capped, and the outbound backlog capped so a client that stops
/// reading cannot grow the server.
pub fn config(max_message_bytes: usize, max_backlog_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(max_backlog_bytes.max(1))
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes))
}

/// Encodes one unfragmented server frame (servers never mask).
///
/// Pushed messages are encoded here once per push and the same bytes go to
/// every receiver, instead of tungstenite re-encoding (and copying) the
/// frame into a buffer per connection.
pub fn data_frame(text: bool, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = Vec::with_capacity(len + 10);
    f.push(if text { 0x81 } else { 0x82 });
    if len < 126 {
        f.push(len as u8);
    } else if len <= usize::from(u16::MAX) {
        f.push(126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    f.extend_from_slice(payload);
    f
}

/// How a tungstenite error ends the session: with a close frame that
/// says why, or (`None`) at once, the transport being gone already.
fn failure(err: &tungstenite::Error) -> Option<Close> {
    use tungstenite::Error as E;
    match err {
        E::Capacity(_) => Some(Close::new(close::TOO_BIG)),
        E::Utf8(_) => Some(Close::new(close::INVALID_DATA)),
        E::WriteBufferFull(_) => Some(Close::new(close::SLOW_CONSUMER)),
        E::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        E::Protocol(_) | E::AttackAttempt => Some(Close::new(close::PROTOCOL_ERROR)),
        _ => None,
    }
}

/// Most messages handled per connection per turn.
pub const TURN_MESSAGES: usize = 64;

/// What one connection may still read this turn (`TURN_BYTES`,
/// `TURN_FRAMES`).
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    bytes: usize,
    frames: usize,
    /// Reading stopped because the budget ran out, not because the socket
    /// was dry: no new edge will come for what waits, so the loop must
    /// come back by itself.
    pub spent: bool,
}

impl Budget {
    pub fn per_turn() -> Budget {
        Budget {
            bytes: TURN_BYTES,
            frames: TURN_FRAMES,
            spent: false,
        }
    }
}

/// A WebSocket's socket as tungstenite reads it: input passes the frame
/// watcher (too many fragments end the message) and the turn's budget.
///
/// tungstenite's `read` returns only with a whole message or an error, and
/// reads on while a message is unfinished; `WouldBlock` from here is what
/// makes it return. It reads at most its read-buffer size per call, so
/// the frame budget is overshot by at most one read's worth of frames.
struct Metered<'a, S> {
    out: &'a mut Outbound<S>,
    watch: &'a mut FrameWatch,
    budget: &'a mut Budget,
}

/// The error a read gives once a message went over `MAX_FRAGMENTS`; the
/// session recognises the case by `FrameWatch::tripped`.
fn too_many_fragments() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, close::TOO_MANY_FRAGMENTS)
}

impl<S: Io> Read for Metered<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.watch.tripped() {
            return Err(too_many_fragments());
        }
        if self.budget.bytes == 0 || self.budget.frames == 0 {
            self.budget.spent = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let want = buf.len().min(self.budget.bytes);
        let n = loop {
            match self.out.io.read(&mut buf[..want]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other?,
            }
        };
        let fed = self.watch.feed(&buf[..n]);
        self.budget.bytes -= n;
        self.budget.frames = self.budget.frames.saturating_sub(fed.frames);
        match fed.cut {
            None => Ok(n),
            // The frames before the one too many are passed on; the next
            // read reports the error.
            Some(0) => Err(too_many_fragments()),
            Some(cut) => Ok(cut),
        }
    }
}

impl<S: Io> Write for Metered<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if io.kind() == io::ErrorKind::WouldBlock)
}

/// A WebSocket after its `101`.
pub struct WsSession {
    ctx: WebSocketContext,
    /// Frame headers of the input, followed for fragment and turn limits.
    watch: FrameWatch,
    /// Pushed messages arrive as `{"event", "message"}` (`?envelope=1`).
    envelope: bool,
    phase: Phase,
    /// Last time anything arrived from the peer.
    last_seen: Instant,
    /// When the next server ping is due (none when pings are off).
    next_ping: Option<Instant>,
    /// Open, before the first register: the deadline to register; after
    /// it: when the token expires (JWT `exp`). Closing: when the close
    /// grace ends. One field for all three, as no two run at once: every
    /// connection is 40 bytes smaller for it.
    deadline: Option<Instant>,
    registered: bool,
}

enum Phase {
    Open,
    /// A close frame is queued or sent, or the peer's was answered; the
    /// connection is already unbound, and waits until `deadline`.
    /// `broken`: the session hit a framing error, so incoming bytes are no
    /// longer parsed, only discarded until the peer closes.
    Closing {
        broken: bool,
    },
}

/// What the next read of a turn found.
#[derive(Debug)]
pub enum Got {
    Text(Utf8Bytes),
    Binary(Bytes),
    /// Nothing more now; new input raises a new edge.
    Dry,
    /// The turn's budget ran out with input maybe still waiting: come
    /// back next turn.
    Spent,
    /// The peer sent its close frame; tungstenite queued the reply.
    PeerClosed,
    /// The peer's input broke the protocol or a limit: end with this.
    Failed(Close),
    /// The transport is gone (or the close handshake is over).
    Gone,
}

impl WsSession {
    /// A session whose first bytes (`early`, sent right behind the upgrade
    /// request) were already read: they go to tungstenite's buffer without
    /// passing `Metered`, so the watcher is shown them here, and a message
    /// that is over the fragment limit within them is cut at its first
    /// frame too many.
    pub fn new(
        mut early: Vec<u8>,
        config: WebSocketConfig,
        envelope: bool,
        t: &Timeouts,
        now: Instant,
    ) -> WsSession {
        let mut watch = FrameWatch::default();
        if let Some(cut) = watch.feed(&early).cut {
            early.truncate(cut);
        }
        let ctx = WebSocketContext::from_partially_read(early, Role::Server, Some(config));
        WsSession {
            ctx,
            watch,
            envelope,
            phase: Phase::Open,
            last_seen: now,
            next_ping: Timeouts::after(t.ping, now),
            deadline: Timeouts::after(t.register, now),
            registered: false,
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open)
    }

    pub fn envelope(&self) -> bool {
        self.envelope
    }

    /// The first register succeeded: no register deadline any more.
    pub fn registered(&mut self) {
        if !self.registered {
            self.registered = true;
            self.deadline = None;
        }
    }

    pub fn set_expiry(&mut self, at: Option<Instant>) {
        if self.is_open() {
            self.deadline = at;
        }
    }

    /// The next message of this turn's input. Control frames are
    /// tungstenite's business (it answers pings, and the peer's close);
    /// data that arrives once the session is closing is read and dropped.
    pub fn next<S: Io>(&mut self, out: &mut Outbound<S>, budget: &mut Budget, now: Instant) -> Got {
        if let Phase::Closing { broken: true, .. } = self.phase {
            return Got::Gone;
        }
        loop {
            let read = self.ctx.read(&mut Metered {
                out: &mut *out,
                watch: &mut self.watch,
                budget: &mut *budget,
            });
            match read {
                Ok(msg) => {
                    self.last_seen = now;
                    match msg {
                        Message::Text(t) if self.is_open() => return Got::Text(t),
                        Message::Binary(b) if self.is_open() => return Got::Binary(b),
                        Message::Close(_) if self.is_open() => return Got::PeerClosed,
                        _ => {}
                    }
                }
                Err(e) if would_block(&e) => return if budget.spent { Got::Spent } else { Got::Dry },
                Err(e) => {
                    let why = if self.watch.tripped() {
                        Some(Close::because(close::TOO_BIG, close::TOO_MANY_FRAGMENTS))
                    } else {
                        failure(&e)
                    };
                    return match why {
                        Some(why) if self.is_open() => Got::Failed(why),
                        _ => Got::Gone,
                    };
                }
            }
        }
    }

    /// Writes what tungstenite holds (a pong, the close reply); false when
    /// the socket failed.
    pub fn flush<S: Io>(&mut self, out: &mut Outbound<S>) -> bool {
        match self.ctx.flush(out) {
            Ok(()) => true,
            Err(e) if would_block(&e) => true,
            Err(tungstenite::Error::WriteBufferFull(_)) => true,
            Err(_) => false,
        }
    }

    /// A session broken by bad input: pushes out its close frame, shuts
    /// our side, and discards what else arrives (a budget's worth per turn:
    /// the peer may still be streaming). Meaningful only when `broken`.
    pub fn is_broken(&self) -> bool {
        matches!(self.phase, Phase::Closing { broken: true, .. })
    }

    pub fn drain_broken<S: Io>(&mut self, out: &mut Outbound<S>) -> Drained {
        match self.ctx.flush(&mut *out) {
            Ok(()) => out.io.shutdown_write(),
            Err(e) if would_block(&e) => {}
            Err(_) => return Drained::Gone,
        }
        discard_some(&mut out.io)
    }

    /// Offers one encoded data frame (a push or a reply).
    pub fn send<S: Io>(&mut self, out: &mut Outbound<S>, frame: &Rc<[u8]>) -> Admit {
        out.admit(frame)
    }

    /// Starts the close handshake with `why`; the caller has unbound it.
    pub fn close<S: Io>(&mut self, out: &mut Outbound<S>, why: &Close, now: Instant, t: &Timeouts) {
        if !self.is_open() {
            return;
        }
        self.phase = Phase::Closing {
            broken: why.is_input_failure(),
        };
        self.deadline = Some(now + t.close_grace);
        let frame = CloseFrame {
            code: CloseCode::from(why.code),
            reason: Utf8Bytes::from(why.reason()),
        };
        match self.ctx.close(out, Some(frame)) {
            Ok(()) => {}
            Err(e) if would_block(&e) => {}
            // The close frame does not fit behind the backlog, or the socket
            // is gone: nothing more can be said to this peer.
            Err(_) => {
                self.phase = Phase::Closing { broken: true };
                self.deadline = Some(now);
            }
        }
    }

    /// The session stops being open without a close of ours: the peer
    /// closed (its close was answered), or the socket failed (`lost`).
    pub fn left(&mut self, now: Instant, t: &Timeouts, lost: bool) {
        self.phase = Phase::Closing { broken: lost };
        self.deadline = Some(if lost { now } else { now + t.close_grace });
    }

    /// Acts on the deadlines that passed by `now`.
    pub fn on_timer<S: Io>(&mut self, out: &mut Outbound<S>, now: Instant, t: &Timeouts) -> Tick {
        if let Phase::Closing { .. } = self.phase {
            return if self.deadline.is_none_or(|until| until <= now) {
                Tick::Gone
            } else {
                Tick::Idle
            };
        }
        if self.deadline.is_some_and(|at| at <= now) {
            return Tick::End(if self.registered {
                Close::because(close::TOKEN_REJECTED, close::TOKEN_EXPIRED)
            } else {
                Close::new(close::REGISTER_TIMEOUT)
            });
        }
        if self.silent_deadline(t).is_some_and(|at| at <= now) {
            return Tick::Gone;
        }
        if self.next_ping.is_some_and(|at| at <= now) {
            self.next_ping = Some(now + t.ping);
            match self.ctx.write(out, Message::Ping(Bytes::new())) {
                // Queued, or skipped behind a full queue: the silence check
                // still drops a peer that never answers.
                Ok(()) | Err(tungstenite::Error::WriteBufferFull(_)) => {}
                Err(e) if would_block(&e) => {}
                Err(_) => return Tick::Gone,
            }
        }
        Tick::Idle
    }

    /// When a silent peer counts as gone: two ping intervals without a byte.
    fn silent_deadline(&self, t: &Timeouts) -> Option<Instant> {
        self.next_ping.map(|_| self.last_seen + 2 * t.ping)
    }

    /// The earliest moment this session needs the loop's attention.
    pub fn next_deadline(&self, t: &Timeouts) -> Option<Instant> {
        match self.phase {
            Phase::Closing { .. } => self.deadline,
            Phase::Open => [self.deadline, self.next_ping, self.silent_deadline(t)]
                .into_iter()
                .flatten()
                .min(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::mem::MemIo;
    use std::time::Duration;

    /// Our encoding must read back through tungstenite as the same message,
    /// for each of the three length forms.
    #[test]
    fn data_frames_decode_with_tungstenite() {
        use std::io::Cursor;
        use tungstenite::protocol::frame::FrameSocket;
        for len in [0usize, 1, 125, 126, 65_535, 65_536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            for text in [true, false] {
                let bytes = data_frame(text, &payload);
                let mut sock = FrameSocket::new(Cursor::new(bytes));
                let frame = sock.read(None).unwrap().expect("one frame");
                assert!(frame.header().is_final);
                assert_eq!(frame.payload(), payload.as_slice(), "len {len}");
                let op = u8::from(frame.header().opcode);
                assert_eq!(op, if text { 1 } else { 2 });
            }
        }
    }

    #[test]
    fn error_mapping() {
        use tungstenite::error::CapacityError;
        let code = |e: &tungstenite::Error| failure(e).map(|c| c.code);
        let too_long = tungstenite::Error::Capacity(CapacityError::MessageTooLong { size: 2, max_size: 1 });
        assert_eq!(code(&too_long), Some(close::TOO_BIG));
        assert_eq!(
            code(&tungstenite::Error::Utf8("x".into())),
            Some(close::INVALID_DATA)
        );
        let reset = tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake);
        assert_eq!(code(&reset), None);
        let proto = tungstenite::Error::Protocol(ProtocolError::NonZeroReservedBits);
        assert_eq!(code(&proto), Some(close::PROTOCOL_ERROR));
        assert_eq!(code(&tungstenite::Error::ConnectionClosed), None);
    }

    fn timeouts() -> Timeouts {
        Timeouts {
            register: Duration::from_secs(10),
            ping: Duration::from_secs(30),
            close_grace: Duration::from_secs(2),
        }
    }

    fn session(t0: Instant) -> (WsSession, Outbound<MemIo>) {
        let cfg = config(4096, 1 << 20);
        (
            WsSession::new(Vec::new(), cfg, false, &timeouts(), t0),
            Outbound::new(MemIo::default(), 1 << 20),
        )
    }

    /// A masked client frame (`first`: FIN and opcode).
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 126);
        let mut f = vec![first, 0x80 | payload.len() as u8, 1, 2, 3, 4];
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]));
        f
    }

    /// Server frames written so far: (opcode, payload).
    fn frames(out: &mut Outbound<MemIo>) -> Vec<(u8, Vec<u8>)> {
        let bytes = std::mem::take(&mut out.io.written);
        let mut sock = tungstenite::protocol::frame::FrameSocket::new(std::io::Cursor::new(bytes));
        let mut got = Vec::new();
        while let Ok(Some(f)) = sock.read(None) {
            got.push((u8::from(f.header().opcode), f.payload().to_vec()));
        }
        got
    }

    /// The register timeout, stepped rather than slept: nothing before it,
    /// 4408 at it, none at all once registered.
    #[test]
    fn the_register_timeout_ends_an_unregistered_session() {
        let t0 = Instant::now();
        let t = timeouts();
        let (mut s, mut out) = session(t0);
        assert_eq!(s.next_deadline(&t), Some(t0 + t.register));
        assert_eq!(
            s.on_timer(&mut out, t0 + t.register - Duration::from_millis(1), &t),
            Tick::Idle
        );
        assert_eq!(
            s.on_timer(&mut out, t0 + t.register, &t),
            Tick::End(Close::new(close::REGISTER_TIMEOUT))
        );
        let (mut s, mut out) = session(t0);
        s.registered();
        assert_eq!(s.next_deadline(&t), Some(t0 + t.ping));
        assert_eq!(s.on_timer(&mut out, t0 + t.register, &t), Tick::Idle);
    }

    /// Pings every interval; a peer silent for two intervals is gone, and
    /// any byte from it (a pong) keeps it.
    #[test]
    fn pings_go_out_and_a_silent_peer_is_dropped() {
        let t0 = Instant::now();
        let t = timeouts();
        let (mut s, mut out) = session(t0);
        s.registered();
        assert_eq!(s.on_timer(&mut out, t0 + t.ping, &t), Tick::Idle);
        s.flush(&mut out);
        assert_eq!(frames(&mut out), vec![(9, vec![])], "one ping");
        assert_eq!(s.next_deadline(&t), Some(t0 + 2 * t.ping));
        // A pong at 50 s: silence is counted from there.
        out.io.feed(&client_frame(0x8A, b""));
        let mut budget = Budget::per_turn();
        assert!(matches!(
            s.next(&mut out, &mut budget, t0 + Duration::from_secs(50)),
            Got::Dry
        ));
        assert_eq!(
            s.on_timer(&mut out, t0 + 2 * t.ping, &t),
            Tick::Idle,
            "second ping"
        );
        assert_eq!(
            s.on_timer(
                &mut out,
                t0 + Duration::from_secs(50) + 2 * t.ping - Duration::from_millis(1),
                &t
            ),
            Tick::Idle
        );
        assert_eq!(
            s.on_timer(&mut out, t0 + Duration::from_secs(50) + 2 * t.ping, &t),
            Tick::Gone
        );
    }

    /// A token's expiry ends the session with 4401 `token expired`.
    #[test]
    fn an_expired_token_ends_the_session() {
        let t0 = Instant::now();
        let t = timeouts();
        let (mut s, mut out) = session(t0);
        s.registered();
        s.set_expiry(Some(t0 + Duration::from_secs(3)));
        assert_eq!(s.next_deadline(&t), Some(t0 + Duration::from_secs(3)));
        let tick = s.on_timer(&mut out, t0 + Duration::from_secs(3), &t);
        assert_eq!(
            tick,
            Tick::End(Close::because(close::TOKEN_REJECTED, close::TOKEN_EXPIRED))
        );
    }

    /// Closing writes the close frame with its reason, then waits the
    /// grace for the peer's reply; a peer that answers is gone at once.
    #[test]
    fn a_close_waits_its_grace_for_the_peer() {
        let t0 = Instant::now();
        let t = timeouts();
        let (mut s, mut out) = session(t0);
        s.close(&mut out, &Close::new(close::DROPPED), t0, &t);
        assert!(!s.is_open());
        let got = frames(&mut out);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, 8);
        assert_eq!(&got[0].1[..2], &4000u16.to_be_bytes());
        assert_eq!(&got[0].1[2..], b"dropped");
        assert_eq!(s.next_deadline(&t), Some(t0 + t.close_grace));
        assert_eq!(
            s.on_timer(&mut out, t0 + t.close_grace - Duration::from_millis(1), &t),
            Tick::Idle
        );
        assert_eq!(s.on_timer(&mut out, t0 + t.close_grace, &t), Tick::Gone);
        // The peer's close reply ends the handshake: the session is over.
        let (mut s, mut out) = session(t0);
        s.close(&mut out, &Close::new(close::DROPPED), t0, &t);
        out.io.feed(&client_frame(0x88, &4000u16.to_be_bytes()));
        let mut budget = Budget::per_turn();
        assert!(matches!(s.next(&mut out, &mut budget, t0), Got::Gone));
    }

    /// Text and binary messages come out in order; a peer's close is
    /// reported (tungstenite queues the reply).
    #[test]
    fn messages_and_the_peers_close() {
        let t0 = Instant::now();
        let (mut s, mut out) = session(t0);
        out.io.feed(&client_frame(0x81, b"hello"));
        out.io.feed(&client_frame(0x82, b"\x01"));
        out.io.feed(&client_frame(0x88, &1000u16.to_be_bytes()));
        let mut budget = Budget::per_turn();
        assert!(matches!(s.next(&mut out, &mut budget, t0), Got::Text(t) if t.as_str() == "hello"));
        assert!(matches!(s.next(&mut out, &mut budget, t0), Got::Binary(b) if &b[..] == b"\x01"));
        assert!(matches!(s.next(&mut out, &mut budget, t0), Got::PeerClosed));
    }

    /// A turn stops at `TURN_BYTES` and says it was the budget; the next
    /// turn goes on where it stopped.
    #[test]
    fn a_turn_reads_at_most_its_byte_budget() {
        let t0 = Instant::now();
        let mut s = WsSession::new(Vec::new(), config(1 << 20, 1 << 20), false, &timeouts(), t0);
        let mut out = Outbound::new(MemIo::default(), 1 << 20);
        // One masked 40 KiB binary frame.
        let mut bytes = vec![0x82, 0x80 | 127];
        bytes.extend_from_slice(&(40_000u64).to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        bytes.resize(bytes.len() + 40_000, b'x');
        out.io.feed(&bytes);
        for _ in 0..2 {
            let mut budget = Budget::per_turn();
            assert!(matches!(s.next(&mut out, &mut budget, t0), Got::Spent));
        }
        let mut budget = Budget::per_turn();
        assert!(matches!(s.next(&mut out, &mut budget, t0), Got::Binary(b) if b.len() == 40_000));
        assert!(
            matches!(s.next(&mut out, &mut budget, t0), Got::Dry),
            "the socket ran dry, not the budget"
        );
    }

    /// Small frames end a turn by count, control frames included.
    #[test]
    fn a_turn_reads_at_most_its_frame_budget() {
        let t0 = Instant::now();
        let (mut s, mut out) = session(t0);
        for _ in 0..1000 {
            out.io.feed(&client_frame(0x89, b""));
        }
        let mut budget = Budget::per_turn();
        assert!(matches!(s.next(&mut out, &mut budget, t0), Got::Spent));
        let read = 6000 - out.io.input.len();
        let frames = read / 6;
        assert!(
            (TURN_FRAMES..TURN_FRAMES + READ_BUFFER_BYTES / 6 + 1).contains(&frames),
            "{frames} frames in one turn"
        );
    }

    /// 257 fragments of one message: closed 1009 with its reason.
    #[test]
    fn too_many_fragments_fail_with_1009() {
        let t0 = Instant::now();
        let (mut s, mut out) = session(t0);
        out.io.feed(&client_frame(0x01, b"a"));
        for _ in 0..256 {
            out.io.feed(&client_frame(0x00, b""));
        }
        let mut got = Got::Dry;
        for _ in 0..20 {
            let mut budget = Budget::per_turn();
            got = s.next(&mut out, &mut budget, t0);
            if !matches!(got, Got::Spent) {
                break;
            }
        }
        match got {
            Got::Failed(why) => assert_eq!(
                (why.code, why.reason()),
                (close::TOO_BIG, close::TOO_MANY_FRAGMENTS)
            ),
            other => panic!("{other:?}"),
        }
    }
}
