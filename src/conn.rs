//! One connection: its socket, and one enum saying what it is doing now —
//! speaking HTTP, an open WebSocket, or lingering after a final response.
//!
//! This file holds the per-connection state and its byte-level I/O; what a
//! request or a command *means* is decided by the event loop, which alone
//! can reach the binder and the other connections.

use crate::config::Config;
use crate::http::chunked::{ChunkedDecoder, Feed};
use crate::http::request::{BodyFraming, Head, HeadParser, HttpError, Limits, Parsed};
use crate::ws::{self, FrameWatch};
use mio::net::TcpStream;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};

/// How long a closing WebSocket (or a lingering HTTP connection) may wait
/// for its peer before the socket is simply dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Bytes read per `read()` call on an HTTP connection.
pub const READ_CHUNK: usize = 4096;

/// A piece of the outbound queue: bytes of our own, or a pushed frame
/// shared with every other connection it went to.
enum Chunk {
    Owned(Vec<u8>),
    Shared(Rc<[u8]>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(r) => r,
        }
    }
}

/// Frames at least this big are queued by reference rather than copied.
const SHARE_MIN_BYTES: usize = 1024;

/// Most chunks handed to one `writev`.
const MAX_IOVECS: usize = 64;

/// The socket and its one outbound queue.
///
/// Everything a connection sends — HTTP responses, the `101`, pushed
/// frames, command replies, and tungstenite's control frames — goes
/// through this queue in order, so bytes of two frames never interleave.
/// Bytes are written straight from their buffer when nothing is queued;
/// when they must wait, a pushed frame is queued by reference, not copied,
/// so a frame that several slow clients are behind on exists once in
/// memory. Queued chunks leave together in one `writev`, which coalesces
/// a backlog into few system calls.
///
/// The queue lives in a box that exists only while something waits: most
/// connections never have a backlog, and an idle client then costs the
/// socket and two words here instead of the queue's bookkeeping.
pub struct Stream {
    pub tcp: TcpStream,
    /// A queue of at least `trim::BIG_BACKLOG` bytes drained or was dropped.
    pub freed_big: bool,
    /// A direct write failed; the next flush reports it, so the connection
    /// ends where every other write error ends it.
    failed: bool,
    /// Queue size above which tungstenite's own writes (pongs, close
    /// frames) are refused with `WouldBlock`, so a peer that pings without
    /// reading cannot grow the queue; tungstenite then keeps one pending.
    limit: usize,
    backlog: Option<Box<Backlog>>,
}

/// Bytes waiting for the socket.
#[derive(Default)]
struct Backlog {
    queue: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    sent: usize,
    /// Unwritten bytes in the queue.
    queued: usize,
    /// Most bytes queued since the backlog began.
    high_water: usize,
}

impl Backlog {
    /// Drops `written` bytes from the front of the queue.
    fn consume(&mut self, mut written: usize) {
        self.queued -= written;
        while written > 0 {
            let Some(front) = self.queue.front() else { break };
            let left = front.bytes().len() - self.sent;
            if written < left {
                self.sent += written;
                return;
            }
            written -= left;
            self.queue.pop_front();
            self.sent = 0;
        }
    }
}

impl Stream {
    pub fn new(tcp: TcpStream, limit: usize) -> Stream {
        Stream {
            tcp,
            freed_big: false,
            failed: false,
            limit,
            backlog: None,
        }
    }

    /// Bytes waiting for the socket.
    pub fn queued(&self) -> usize {
        self.backlog.as_ref().map_or(0, |b| b.queued)
    }

    fn backlog(&mut self) -> &mut Backlog {
        self.backlog.get_or_insert_with(Box::default)
    }

    /// Appends bytes built in place to the queue; they leave on the next
    /// flush.
    pub fn append(&mut self, build: impl FnOnce(&mut Vec<u8>)) {
        let b = self.backlog();
        if !matches!(b.queue.back(), Some(Chunk::Owned(_))) {
            b.queue.push_back(Chunk::Owned(Vec::new()));
        }
        if let Some(Chunk::Owned(v)) = b.queue.back_mut() {
            let before = v.len();
            build(v);
            b.queued += v.len() - before;
            b.high_water = b.high_water.max(b.queued);
        }
    }

    /// Writes as much of the queue as the socket takes. `Ok(true)` when empty.
    pub fn flush_out(&mut self) -> io::Result<bool> {
        if self.failed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let Some(b) = self.backlog.as_mut() else {
            return Ok(true);
        };
        while !b.queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut n = 0;
            for (i, chunk) in b.queue.iter().take(MAX_IOVECS).enumerate() {
                let bytes = chunk.bytes();
                slices[i] = IoSlice::new(if i == 0 { &bytes[b.sent..] } else { bytes });
                n = i + 1;
            }
            match self.tcp.write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => b.consume(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.freed_big |= b.high_water >= crate::trim::BIG_BACKLOG;
        self.backlog = None;
        Ok(true)
    }

    /// Sends bytes of our own: directly when nothing is queued, else behind
    /// the queue; only what the socket does not take is copied. A write
    /// error is kept for the next `flush_out` to report.
    pub fn send(&mut self, bytes: &[u8]) {
        let written = if self.backlog.is_none() {
            match write_until_blocked(&mut self.tcp, bytes) {
                Ok(n) => n,
                Err(_) => {
                    self.failed = true;
                    return;
                }
            }
        } else {
            0
        };
        if written < bytes.len() {
            self.append(|v| v.extend_from_slice(&bytes[written..]));
        }
    }

    /// Sends a shared frame: directly when nothing is queued, else queued —
    /// by reference when it is big, copied into contiguous owned bytes when
    /// it is small (a reference plus its slot would cost as much as the
    /// bytes, and thousands of them fragment the heap).
    pub fn send_shared(&mut self, frame: &Rc<[u8]>) -> io::Result<()> {
        let written = if self.backlog.is_none() {
            write_until_blocked(&mut self.tcp, frame)?
        } else {
            0
        };
        let rest = frame.len() - written;
        if rest == 0 {
            return Ok(());
        }
        if rest < SHARE_MIN_BYTES {
            self.append(|v| v.extend_from_slice(&frame[written..]));
            return Ok(());
        }
        let b = self.backlog();
        if b.queue.is_empty() {
            b.sent = written;
        }
        b.queue.push_back(Chunk::Shared(Rc::clone(frame)));
        b.queued += rest;
        b.high_water = b.high_water.max(b.queued);
        Ok(())
    }
}

/// Writes `bytes` until done or the socket would block; returns how many went.
fn write_until_blocked(tcp: &mut TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < bytes.len() {
        match tcp.write(&bytes[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// tungstenite's writing calls (`write`, `flush`, `close`) require `Read`
/// but never read. A WebSocket's input is read only through `Metered`,
/// which keeps it within the turn's budget; a read that bypassed it would
/// bring back the stall the budget prevents, so here there is no input.
impl Read for Stream {
    fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

/// What one connection may still read this turn (`ws::TURN_BYTES`,
/// `ws::TURN_FRAMES`).
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
            bytes: ws::TURN_BYTES,
            frames: ws::TURN_FRAMES,
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
pub struct Metered<'a> {
    pub stream: &'a mut Stream,
    pub watch: &'a mut FrameWatch,
    pub budget: &'a mut Budget,
}

/// The error a read gives once a message went over `ws::MAX_FRAGMENTS`;
/// the loop recognises the case by `FrameWatch::tripped`.
fn too_many_fragments() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, ws::close::TOO_MANY_FRAGMENTS)
}

impl Read for Metered<'_> {
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
            match self.stream.tcp.read(&mut buf[..want]) {
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

impl Write for Metered<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// tungstenite writes through this. A write is taken whole or refused
/// whole (`WouldBlock`), never in part: tungstenite then holds no
/// half-written frame that a pushed frame could cut into.
impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.backlog.is_some() && !self.flush_out()? && self.queued() + buf.len() > self.limit {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.send(buf);
        if self.failed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        Ok(buf.len())
    }

    /// tungstenite's `flush()` ends here: queued bytes (the `101` among
    /// them) must leave even when no frame is pending behind them.
    fn flush(&mut self) -> io::Result<()> {
        if self.flush_out()? {
            Ok(())
        } else {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }
}

/// A connection in the loop's slab.
pub struct Conn {
    pub stream: Stream,
    pub peer: SocketAddr,
    /// Unique for the life of the server; tells timers apart across slot reuse.
    pub serial: u64,
    /// Earliest timer entry armed for this connection, if any.
    pub armed: Option<Instant>,
    pub state: State,
}

// Nearly every long-lived connection is a WebSocket: boxing that variant
// would add an allocation per client to save bytes only on short-lived HTTP ones.
#[allow(clippy::large_enum_variant)]
pub enum State {
    Http(Http),
    Ws(Ws),
    /// Final response sent and write side shut: read and discard until the
    /// peer closes, so unread input does not turn our close into a reset
    /// that destroys the response in flight.
    Linger {
        until: Instant,
    },
}

/// An HTTP/1.1 connection between requests or inside one.
///
/// Input is parsed as it arrives and nothing is parsed twice: `inbuf` holds
/// bytes not consumed yet (from `start` on), `request` what is known of the
/// request at their front. A head is kept once parsed; a chunked body is
/// decoded as it comes, its framing dropped. What one request holds is
/// bounded by the limits: its head, its body, and at most a head's worth of
/// what the client sent after it.
pub struct Http {
    /// Bytes received; the ones before `start` are consumed. Allocated on
    /// the first read and given back when the connection goes idle, so an
    /// idle keep-alive socket holds no buffer.
    inbuf: Vec<u8>,
    start: usize,
    request: Request,
    /// Start of the current wait: the request being received, the response
    /// being read, or keep-alive idleness. One timeout covers all three.
    pub since: Instant,
    /// `100 Continue` already sent for the request at the head of the input.
    pub sent_continue: bool,
    /// Close once the queued responses are written.
    pub close_after: bool,
    /// The peer half-closed: answer what is buffered, then close.
    pub read_closed: bool,
    /// A cluster push is waiting for Redis to acknowledge it; the requests
    /// behind it wait too, so responses keep the pipeline's order.
    pub waiting: bool,
    /// While idle: its place in the loop's queue of idle HTTP sockets.
    pub idle: Option<u64>,
}

/// The request at the front of an HTTP connection's input.
enum Request {
    /// Looking for the end of the head.
    Head(HeadParser),
    /// The head is parsed; its body is being received.
    Body(Head, Body),
}

impl Default for Request {
    fn default() -> Request {
        Request::Head(HeadParser::default())
    }
}

enum Body {
    /// This many bytes, kept in the input buffer until all are there.
    Length(usize),
    Chunked(ChunkedDecoder),
}

/// An upgraded connection.
pub struct Ws {
    pub ctx: WebSocketContext,
    /// Pushed messages arrive as `{"event", "message"}` (`?envelope=1`).
    pub envelope: bool,
    pub phase: WsPhase,
    /// Last time anything arrived from the peer.
    pub last_seen: Instant,
    /// When the next server ping is due (none when pings are off).
    pub next_ping: Option<Instant>,
    /// Deadline to register; cleared by the first successful register.
    pub register_by: Option<Instant>,
    /// Frame headers of the input, followed for fragment and turn limits.
    pub watch: FrameWatch,
}

pub enum WsPhase {
    Open,
    /// A close frame is queued or sent; the connection is already unbound.
    /// `broken`: the session hit a framing error, so incoming bytes are no
    /// longer parsed, only discarded until the peer closes.
    Closing {
        until: Instant,
        broken: bool,
    },
}

/// What one readiness event said about a socket's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// Bytes, an end of stream or an error may be waiting.
    pub input: bool,
    /// The event reported the peer's FIN (or an error). Edge-triggered
    /// readiness reports it once, together with any data that came with
    /// it, so input must then be read until end of stream is seen.
    pub fin: bool,
}

impl Ready {
    /// Nothing known (a revisit): assume input and a FIN may be waiting.
    pub const UNKNOWN: Ready = Ready {
        input: true,
        fin: true,
    };
}

/// What reading a socket found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStatus {
    /// Got bytes (or none yet); the socket is open. `dry`: the kernel had
    /// nothing more, so reading again before the next event would only get
    /// `WouldBlock`; false when reading stopped at the buffer's cap.
    Open { progress: bool, dry: bool },
    /// The peer closed its side.
    Eof,
}

/// Reads into `buf` until the socket is dry or `buf` reaches `cap`.
/// `scratch` is the loop's one read buffer, initialised once: reading into
/// it and copying only what arrived avoids zero-filling a fresh 4 KiB of
/// `buf` before every read (a third of the work of a push, profiled).
///
/// Dry means `WouldBlock`, or a read that returned less than it asked
/// for: the receive queue was empty then, and bytes arriving later raise a
/// new edge. Stopping at the short read saves a `recvfrom` per request
/// that would only say `WouldBlock` (the same shortcut tokio takes on
/// epoll). A FIN that came with the data raises no later edge, so when
/// the event reported one (`fin`), reading goes on until end of stream.
pub fn read_into(
    tcp: &mut TcpStream,
    buf: &mut Vec<u8>,
    cap: usize,
    scratch: &mut [u8],
    fin: bool,
) -> io::Result<ReadStatus> {
    let mut progress = false;
    while buf.len() < cap {
        let want = scratch.len().min(cap - buf.len());
        match tcp.read(&mut scratch[..want]) {
            Ok(0) => return Ok(ReadStatus::Eof),
            Ok(n) => {
                buf.extend_from_slice(&scratch[..n]);
                progress = true;
                if n < want && !fin {
                    return Ok(ReadStatus::Open { progress, dry: true });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Ok(ReadStatus::Open { progress, dry: true })
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(ReadStatus::Open { progress, dry: false })
}

/// Most input thrown away per connection per turn: a peer that streams
/// into a closing connection must not hold the loop either.
pub const DISCARD_BUDGET: usize = 64 * 1024;

/// How throwing input away ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discarded {
    /// The peer closed its side.
    Eof,
    /// Nothing more to read now; more raises a new edge.
    Dry,
    /// Stopped at `DISCARD_BUDGET` with input maybe still waiting.
    Budget,
}

/// Reads and throws away what is readable, at most `DISCARD_BUDGET`.
pub fn discard_some(tcp: &mut TcpStream) -> io::Result<Discarded> {
    let mut sink = [0u8; 1024];
    let mut left = DISCARD_BUDGET;
    while left > 0 {
        match tcp.read(&mut sink) {
            Ok(0) => return Ok(Discarded::Eof),
            Ok(n) => left = left.saturating_sub(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Discarded::Dry),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Discarded::Budget)
}

/// Reads and throws away what is readable. `Ok(true)` at end of stream.
/// Bounded like `discard_some`: a peer still streaming raises new edges,
/// and the caller's deadline (linger, close grace) ends it anyway.
pub fn discard_input(tcp: &mut TcpStream) -> io::Result<bool> {
    discard_some(tcp).map(|d| d == Discarded::Eof)
}

/// The next thing the HTTP input holds.
pub enum Next {
    /// Not a whole request yet.
    Incomplete,
    /// The head is in (see [`Http::pending_head`]) but the client waits for
    /// `100 Continue` before the body.
    WantsContinue,
    /// A whole request, consumed from the input.
    Request(Head, Vec<u8>),
}

impl Http {
    pub fn new(now: Instant) -> Http {
        Http {
            inbuf: Vec::new(),
            start: 0,
            request: Request::default(),
            since: now,
            sent_continue: false,
            close_after: false,
            read_closed: false,
            waiting: false,
            idle: None,
        }
    }

    /// Bytes received and not consumed yet.
    pub fn input(&self) -> &[u8] {
        &self.inbuf[self.start..]
    }

    /// Some of a request has arrived, or all of one that is not answered.
    pub fn mid_request(&self) -> bool {
        self.start < self.inbuf.len() || matches!(self.request, Request::Body(..))
    }

    /// Between requests, with nothing buffered, nothing pending and nothing
    /// owed (the caller also checks the outbound queue).
    pub fn is_idle(&self) -> bool {
        !self.mid_request() && !self.waiting && !self.close_after && !self.read_closed
    }

    /// Gives back the input buffer of an idle connection.
    pub fn release_buffer(&mut self) {
        if !self.mid_request() {
            self.inbuf = Vec::new();
            self.start = 0;
        }
    }

    /// The head of the request being received, once it is parsed.
    pub fn pending_head(&self) -> Option<&Head> {
        match &self.request {
            Request::Body(head, _) => Some(head),
            Request::Head(_) => None,
        }
    }

    /// Most unconsumed input worth holding now: the body still expected by
    /// length, plus one more head. Anything larger is refused by the
    /// parser before it could be needed (431), and a chunked body is decoded
    /// as it arrives, so it needs no room beyond that.
    fn input_cap(&self, limits: &Limits) -> usize {
        let body = match &self.request {
            Request::Body(_, Body::Length(n)) => *n,
            _ => 0,
        };
        limits.max_head_bytes.saturating_add(1).saturating_add(body)
    }

    /// Reads what the socket has, up to `input_cap` (see `read_into`).
    /// Consumed bytes are dropped first, once per read rather than once
    /// per request, so a deep pipeline is drained in linear time.
    pub fn read(
        &mut self,
        tcp: &mut TcpStream,
        limits: &Limits,
        scratch: &mut [u8],
        fin: bool,
    ) -> io::Result<ReadStatus> {
        if self.start > 0 {
            self.inbuf.drain(..self.start);
            self.start = 0;
        }
        let cap = self.input_cap(limits);
        let status = read_into(tcp, &mut self.inbuf, cap, scratch, fin)?;
        if !matches!(status, ReadStatus::Open { progress: false, .. }) {
            // Whatever arrived, the wait that made it idle is over: if it
            // goes idle again, it is the newest idle socket.
            self.idle = None;
        }
        Ok(status)
    }

    /// Takes the next complete request off the input, if there is one,
    /// parsing only bytes that arrived since the last call.
    pub fn next_request(&mut self, limits: &Limits) -> Result<Next, HttpError> {
        if let Request::Head(parser) = &mut self.request {
            let (head, n) = match parser.parse(&self.inbuf[self.start..], limits)? {
                Parsed::Incomplete => return Ok(Next::Incomplete),
                Parsed::Done(head, n) => (head, n),
            };
            self.start += n;
            let body = match head.framing {
                BodyFraming::None => Body::Length(0),
                BodyFraming::Length(n) => Body::Length(n),
                BodyFraming::Chunked => Body::Chunked(ChunkedDecoder::new(limits.max_body_bytes)),
            };
            self.request = Request::Body(head, body);
        }
        let Request::Body(head, body) = &mut self.request else {
            return Ok(Next::Incomplete);
        };
        let input = &self.inbuf[self.start..];
        let (body, used) = match body {
            Body::Length(n) if input.len() >= *n => (Some(input[..*n].to_vec()), *n),
            Body::Length(_) => (None, 0),
            Body::Chunked(decoder) => match decoder.feed(input)? {
                Feed::Done(n) => (Some(decoder.take_body()), n),
                Feed::Incomplete => (None, input.len()),
            },
        };
        self.start += used;
        let Some(body) = body else {
            return Ok(if head.expect_continue && !self.sent_continue {
                Next::WantsContinue
            } else {
                Next::Incomplete
            });
        };
        self.sent_continue = false;
        if self.start == self.inbuf.len() {
            // Nothing follows: start over without moving any bytes.
            self.inbuf.clear();
            self.start = 0;
        }
        match std::mem::take(&mut self.request) {
            Request::Body(head, _) => Ok(Next::Request(head, body)),
            Request::Head(_) => Ok(Next::Incomplete),
        }
    }
}

impl Ws {
    /// A session whose first bytes (`early`, sent right behind the
    /// upgrade request) were already read: they go to tungstenite's buffer
    /// without passing `Metered`, so the watcher is shown them here, and
    /// a message that is over the fragment limit within them is cut at
    /// its first frame too many.
    pub fn new(
        mut early: Vec<u8>,
        config: WebSocketConfig,
        envelope: bool,
        cfg: &Config,
        now: Instant,
    ) -> Ws {
        let mut watch = FrameWatch::default();
        if let Some(cut) = watch.feed(&early).cut {
            early.truncate(cut);
        }
        let ctx = WebSocketContext::from_partially_read(early, Role::Server, Some(config));
        let after = |d: Duration| (!d.is_zero()).then(|| now + d);
        Ws {
            ctx,
            envelope,
            phase: WsPhase::Open,
            last_seen: now,
            next_ping: after(cfg.ping_interval),
            register_by: after(cfg.register_timeout),
            watch,
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(self.phase, WsPhase::Open)
    }

    /// When a silent peer counts as gone: two ping intervals without a byte.
    pub fn silent_deadline(&self, cfg: &Config) -> Option<Instant> {
        self.next_ping.map(|_| self.last_seen + 2 * cfg.ping_interval)
    }
}

impl Conn {
    /// The earliest moment this connection needs the loop's attention.
    pub fn next_deadline(&self, cfg: &Config) -> Option<Instant> {
        match &self.state {
            State::Http(h) => Some(h.since + cfg.request_timeout),
            State::Linger { until } => Some(*until),
            State::Ws(ws) => match ws.phase {
                WsPhase::Closing { until, .. } => Some(until),
                WsPhase::Open => [ws.register_by, ws.next_ping, ws.silent_deadline(cfg)]
                    .into_iter()
                    .flatten()
                    .min(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_head_bytes: 1024,
            max_headers: 16,
            max_body_bytes: 64,
        }
    }

    fn http(input: &[u8]) -> Http {
        let mut h = Http::new(Instant::now());
        h.inbuf.extend_from_slice(input);
        h
    }

    /// Frames written directly, queued by reference, and our own bytes
    /// all arrive in order, whole, once the peer reads.
    #[test]
    fn outbound_queue_keeps_order_with_a_full_socket() {
        use std::io::Read as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut s = Stream::new(TcpStream::from_std(server), 1 << 20);
        let mut expected = Vec::new();
        for i in 0..64u8 {
            // Big frames are queued by reference, small ones copied: both kinds.
            let len = if i % 2 == 0 { 128 * 1024 } else { 300 };
            let frame: Rc<[u8]> = Rc::from(vec![i; len]);
            s.send_shared(&frame).unwrap();
            expected.extend_from_slice(&frame);
            if i % 5 == 0 {
                s.send(b"own bytes");
                expected.extend_from_slice(b"own bytes");
            }
        }
        assert!(s.queued() > 0, "8 MiB must overflow the socket buffers");
        let want = expected.len();
        let reader = std::thread::spawn(move || {
            let mut got = vec![0; want];
            client.read_exact(&mut got).unwrap();
            got
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !s.flush_out().unwrap() {
            assert!(Instant::now() < deadline, "queue never drained");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(s.queued(), 0);
        assert!(reader.join().unwrap() == expected, "bytes arrived out of order");
    }

    /// Bytes sent straight to a socket the peer reset: the error is not
    /// lost with the bytes, the next flush reports it.
    #[test]
    fn a_failed_direct_write_is_reported_by_the_next_flush() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut s = Stream::new(TcpStream::from_std(server), 1 << 20);
        s.send(b"before the reset");
        assert!(s.flush_out().unwrap());
        socket2::SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(client);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            s.send(b"after the reset");
            if s.flush_out().is_err() {
                break;
            }
            assert!(Instant::now() < deadline, "write error never reported");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(s.flush_out().is_err(), "the error stays");
    }

    /// A connected pair: our end as the loop holds it, and the peer.
    fn pair() -> (Stream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (Stream::new(TcpStream::from_std(server), 1 << 20), client)
    }

    /// Reads through `Metered` in tungstenite's 256-byte steps until it
    /// says `WouldBlock`; returns the bytes read.
    fn read_turn(stream: &mut Stream, watch: &mut FrameWatch, budget: &mut Budget) -> usize {
        let mut total = 0;
        let mut buf = [0u8; 256];
        loop {
            let mut m = Metered {
                stream: &mut *stream,
                watch: &mut *watch,
                budget: &mut *budget,
            };
            match m.read(&mut buf) {
                Ok(0) => panic!("unexpected end of stream"),
                Ok(n) => total += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return total,
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// Waits until `n` bytes sent by the peer are readable.
    fn wait_readable(stream: &Stream, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut probe = vec![0u8; n];
        while stream.tcp.peek(&mut probe).unwrap_or(0) < n {
            assert!(Instant::now() < deadline, "bytes never arrived");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A turn stops at `ws::TURN_BYTES` and says it was the budget; the
    /// next turn goes on where it stopped.
    #[test]
    fn a_turn_reads_at_most_its_byte_budget() {
        use std::io::Write as _;
        let (mut s, mut peer) = pair();
        // One unmasked 40 KiB binary frame: a header, then payload.
        let mut bytes = vec![0x82, 127];
        bytes.extend_from_slice(&(40_000u64).to_be_bytes());
        bytes.resize(10 + 40_000, b'x');
        peer.write_all(&bytes).unwrap();
        wait_readable(&s, bytes.len());
        let mut watch = FrameWatch::default();
        let mut total = 0;
        for _ in 0..2 {
            let mut budget = Budget::per_turn();
            assert_eq!(read_turn(&mut s, &mut watch, &mut budget), ws::TURN_BYTES);
            assert!(budget.spent);
            total += ws::TURN_BYTES;
        }
        let mut budget = Budget::per_turn();
        assert_eq!(read_turn(&mut s, &mut watch, &mut budget), bytes.len() - total);
        assert!(!budget.spent, "the socket ran dry, not the budget");
    }

    /// Small frames end a turn by count, control frames included, after
    /// at most one read's worth of frames over the budget.
    #[test]
    fn a_turn_reads_at_most_its_frame_budget() {
        use std::io::Write as _;
        let (mut s, mut peer) = pair();
        // 1,000 masked empty pings: 6 bytes each.
        let bytes: Vec<u8> = (0..1000).flat_map(|_| [0x89, 0x80, 1, 2, 3, 4]).collect();
        peer.write_all(&bytes).unwrap();
        wait_readable(&s, bytes.len());
        let mut watch = FrameWatch::default();
        let mut budget = Budget::per_turn();
        let read = read_turn(&mut s, &mut watch, &mut budget);
        assert!(budget.spent);
        let frames = read / 6;
        assert!(
            (ws::TURN_FRAMES..ws::TURN_FRAMES + 256 / 6 + 1).contains(&frames),
            "{frames} frames in one turn"
        );
    }

    #[test]
    fn pipelined_requests_come_out_in_order() {
        let mut h = http(
            b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\n\r\nPOST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        );
        let mut seen = Vec::new();
        while let Next::Request(head, body) = h.next_request(&limits()).unwrap() {
            seen.push((head.path, body));
        }
        assert_eq!(
            seen,
            vec![
                ("/a".to_string(), b"abc".to_vec()),
                ("/b".to_string(), vec![]),
                ("/c".to_string(), b"hi".to_vec())
            ]
        );
        assert!(h.input().is_empty());
    }

    #[test]
    fn expect_continue_is_asked_once() {
        let mut h = http(b"POST /p HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
        assert!(matches!(h.next_request(&limits()), Ok(Next::WantsContinue)));
        h.sent_continue = true;
        assert!(matches!(h.next_request(&limits()), Ok(Next::Incomplete)));
        h.inbuf.extend_from_slice(b"ok");
        assert!(matches!(h.next_request(&limits()), Ok(Next::Request(_, b)) if b == b"ok"));
        assert!(!h.sent_continue);
    }

    #[test]
    fn oversized_bodies_are_refused() {
        let mut h = http(b"POST /p HTTP/1.1\r\nContent-Length: 65\r\n\r\n");
        assert_eq!(h.next_request(&limits()).err(), Some(HttpError::BodyTooLarge));
        let mut h = http(b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n");
        assert_eq!(h.next_request(&limits()).err(), Some(HttpError::BodyTooLarge));
    }

    /// What a read does to the input: consumed bytes dropped, new ones appended.
    fn arrive(h: &mut Http, bytes: &[u8]) {
        h.inbuf.drain(..h.start);
        h.start = 0;
        h.inbuf.extend_from_slice(bytes);
    }

    /// Every request that can be taken now: (path, body), or the error.
    fn take_all(h: &mut Http, out: &mut Vec<Result<(String, Vec<u8>), HttpError>>) {
        // After an error the loop answers and closes: nothing more is parsed.
        while !matches!(out.last(), Some(Err(_))) {
            match h.next_request(&limits()) {
                Ok(Next::Request(head, body)) => out.push(Ok((head.path.clone(), body))),
                Ok(Next::WantsContinue) if !h.sent_continue => h.sent_continue = true,
                Ok(_) => return,
                Err(e) => return out.push(Err(e)),
            }
        }
    }

    /// However a pipelined stream is split into reads (anywhere in two, or
    /// one byte per read), the same requests come out.
    #[test]
    fn any_split_gives_the_same_requests() {
        let stream: &[u8] = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
            GET /b HTTP/1.1\r\n\r\n\
            POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nhi\r\n1\r\n!\r\n0\r\nT: 1\r\n\r\n\
            \r\nPOST /d HTTP/1.1\nExpect: 100-continue\nContent-Length: 2\n\nok\
            POST /e HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n";
        let mut whole = http(stream);
        let mut expected = Vec::new();
        take_all(&mut whole, &mut expected);
        assert_eq!(expected.len(), 5, "{expected:?}");
        assert_eq!(expected[4], Err(HttpError::BodyTooLarge));
        for cut in 0..=stream.len() {
            let mut h = Http::new(Instant::now());
            let mut got = Vec::new();
            arrive(&mut h, &stream[..cut]);
            take_all(&mut h, &mut got);
            arrive(&mut h, &stream[cut..]);
            take_all(&mut h, &mut got);
            assert_eq!(got, expected, "cut at {cut}");
        }
        let mut h = Http::new(Instant::now());
        let mut got = Vec::new();
        for b in stream {
            arrive(&mut h, std::slice::from_ref(b));
            take_all(&mut h, &mut got);
        }
        assert_eq!(got, expected, "byte by byte");
    }

    /// Taking a request off a deep pipeline moves no bytes: consumed input
    /// is dropped once per read, not once per request.
    #[test]
    fn pipelined_requests_are_taken_without_moving_bytes() {
        let one = b"POST /p HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi";
        let mut h = http(&one.repeat(1000));
        let len = h.inbuf.len();
        let data = h.inbuf.as_ptr();
        for i in 0..999 {
            assert!(matches!(h.next_request(&limits()), Ok(Next::Request(..))), "{i}");
            assert_eq!((h.inbuf.len(), h.inbuf.as_ptr()), (len, data));
            assert_eq!(h.start, (i + 1) * one.len());
        }
        assert!(matches!(h.next_request(&limits()), Ok(Next::Request(..))));
        assert!(h.input().is_empty());
    }

    /// A chunked body is decoded as it arrives: its framing is not kept, so
    /// the input never holds more than one read's worth of it, and a body of
    /// tiny chunks is judged by its size alone.
    #[test]
    fn chunk_framing_is_not_buffered() {
        let mut h = Http::new(Instant::now());
        arrive(&mut h, b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(matches!(h.next_request(&limits()), Ok(Next::Incomplete)));
        let chunk = [b"1;".as_slice(), &[b'e'; 250], b"\r\nz\r\n"].concat();
        for _ in 0..64 {
            arrive(&mut h, &chunk);
            assert!(matches!(h.next_request(&limits()), Ok(Next::Incomplete)));
            assert!(h.input().is_empty());
            assert!(h.mid_request());
        }
        arrive(&mut h, b"0\r\n\r\n");
        assert!(matches!(h.next_request(&limits()), Ok(Next::Request(_, b)) if b == [b'z'; 64]));
        assert!(!h.mid_request());
    }

    /// Input is bounded by the limits: a head, the body still expected by
    /// length, and one more head.
    #[test]
    fn input_cap_follows_the_request() {
        let l = limits();
        let mut h = Http::new(Instant::now());
        assert_eq!(h.input_cap(&l), l.max_head_bytes + 1);
        arrive(&mut h, b"POST /p HTTP/1.1\r\nContent-Length: 60\r\n\r\n");
        assert!(matches!(h.next_request(&l), Ok(Next::Incomplete)));
        assert_eq!(h.input_cap(&l), l.max_head_bytes + 1 + 60);
    }

    /// An idle connection gives its input buffer back; one mid-request keeps it.
    #[test]
    fn idle_connections_hold_no_buffer() {
        let mut h = http(
            &[
                b"POST /p HTTP/1.1\r\nContent-Length: 60\r\n\r\n".as_slice(),
                &[b'x'; 60],
            ]
            .concat(),
        );
        h.release_buffer();
        assert!(h.inbuf.capacity() > 0, "kept while the request is unanswered");
        assert!(matches!(h.next_request(&limits()), Ok(Next::Request(..))));
        assert!(h.is_idle());
        h.release_buffer();
        assert_eq!(h.inbuf.capacity(), 0);
        arrive(&mut h, b"GET /");
        assert!(!h.is_idle());
    }
}
