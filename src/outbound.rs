//! A connection's socket and its one outbound queue, and the rule that
//! decides what a slow reader may cost us: [`Outbound::admit`].
//!
//! Everything a connection sends goes through here in order. Pushed
//! messages are *admitted* (the backlog limit applies: over it, the
//! session must end as a slow consumer); our own bytes — HTTP answers,
//! command replies, a last close — are *sent* (small, bounded by what
//! the peer asked for, and never dropped silently).

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::rc::Rc;

/// What a connection's bytes travel over: a socket in the server, an
/// in-memory script in unit tests.
pub trait Io: Read + Write {
    /// Ends our side (a TCP FIN): what was written still arrives.
    fn shutdown_write(&mut self);
}

impl Io for mio::net::TcpStream {
    fn shutdown_write(&mut self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

impl Io for crate::listen::Socket {
    fn shutdown_write(&mut self) {
        let _ = crate::listen::Socket::shutdown_write(self);
    }
}

/// What became of a pushed message offered to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Written, or queued within the backlog limit.
    Taken,
    /// It would take the queue over the backlog limit: the reader is a
    /// slow consumer, and its session must end (4008).
    Over,
    /// The socket failed: the connection is gone.
    Dead,
}

/// A pushed message's latest-value key (SPEC §8) as a queue knows it:
/// its stream and key in one string, the same `Rc` for every receiver.
pub type KeyTag = Rc<str>;

/// A piece of the outbound queue: bytes of our own, or a pushed frame
/// shared with every other connection it went to.
enum Chunk {
    Owned(Vec<u8>),
    Shared(Rc<[u8]>),
    /// A message with a latest-value key: a newer one with the same key
    /// takes it out while none of its bytes has left.
    Keyed(Rc<[u8]>, KeyTag),
    /// A keyed message taken out; its slot goes when it reaches the front
    /// (or when the queue is compacted).
    Gone,
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(r) | Chunk::Keyed(r, _) => r,
            Chunk::Gone => &[],
        }
    }
}

/// Frames at least this big are queued by reference rather than copied.
const SHARE_MIN_BYTES: usize = 1024;

/// Most chunks handed to one `writev`.
const MAX_IOVECS: usize = 64;

/// The socket, its one outbound queue, and the one admission policy.
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
pub struct Outbound<S> {
    pub io: S,
    /// A queue of at least `trim::BIG_BACKLOG` bytes drained or was dropped.
    freed_big: bool,
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
    /// How many chunks left the front so far: chunk `i` of the queue was
    /// the `popped + i`-th ever queued, which is how `keyed` finds it.
    popped: u64,
    /// Each waiting keyed message's key → its number (see `popped`).
    keyed: HashMap<KeyTag, u64>,
    /// `Gone` slots in the queue.
    gone: usize,
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
            self.pop_front();
            self.sent = 0;
        }
    }

    fn pop_front(&mut self) {
        match self.queue.pop_front() {
            Some(Chunk::Keyed(_, key)) if self.keyed.get(&key) == Some(&self.popped) => {
                self.keyed.remove(&key);
            }
            Some(Chunk::Gone) => self.gone -= 1,
            _ => {}
        }
        self.popped += 1;
    }

    /// Drops the slots of messages taken out from the front, so the next
    /// write starts with bytes.
    fn skip_gone(&mut self) {
        while matches!(self.queue.front(), Some(Chunk::Gone)) {
            self.pop_front();
        }
    }

    fn push_keyed(&mut self, frame: &Rc<[u8]>, key: &KeyTag, rest: usize) {
        let number = self.popped + self.queue.len() as u64;
        self.queue
            .push_back(Chunk::Keyed(Rc::clone(frame), Rc::clone(key)));
        self.keyed.insert(Rc::clone(key), number);
        self.queued += rest;
        self.high_water = self.high_water.max(self.queued);
    }

    /// Takes the waiting message with `key` out, unless some of it was
    /// written already (half a frame cannot be taken back).
    fn forget(&mut self, key: &str) {
        let Some(number) = self.keyed.remove(key) else {
            return;
        };
        let i = (number - self.popped) as usize;
        if i == 0 && self.sent > 0 {
            return;
        }
        if let Some(slot) = self.queue.get_mut(i) {
            self.queued -= slot.bytes().len();
            *slot = Chunk::Gone;
            self.gone += 1;
        }
        self.compact();
    }

    /// Taken-out slots pile up behind a front that is slow to leave (a
    /// ticker replacing its value 1,000 times a second): once they are
    /// most of the queue, the queue is rebuilt without them. Each slot is
    /// dropped once, so this is O(1) amortised per message.
    fn compact(&mut self) {
        if self.gone < 32 || self.gone * 2 < self.queue.len() {
            return;
        }
        let old = std::mem::take(&mut self.queue);
        self.queue = old.into_iter().filter(|c| !matches!(c, Chunk::Gone)).collect();
        self.gone = 0;
        self.keyed.clear();
        for (i, c) in self.queue.iter().enumerate() {
            if let Chunk::Keyed(_, key) = c {
                // A later one with the same key wins: it is the newer.
                self.keyed.insert(Rc::clone(key), self.popped + i as u64);
            }
        }
        if self.sent > 0 {
            // The front is half written: never to be taken out.
            if let Some(Chunk::Keyed(_, key)) = self.queue.front() {
                if self.keyed.get(key) == Some(&self.popped) {
                    self.keyed.remove(key);
                }
            }
        }
    }
}

impl<S: Io> Outbound<S> {
    pub fn new(io: S, limit: usize) -> Outbound<S> {
        Outbound {
            io,
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
        b.skip_gone();
        while !b.queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut n = 0;
            for (i, chunk) in b.queue.iter().take(MAX_IOVECS).enumerate() {
                let bytes = chunk.bytes();
                slices[i] = IoSlice::new(if i == 0 { &bytes[b.sent..] } else { bytes });
                n = i + 1;
            }
            match self.io.write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    b.consume(written);
                    b.skip_gone();
                }
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
            match write_until_blocked(&mut self.io, bytes) {
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

    /// Writes `frame` straight to the socket when nothing waits before it;
    /// what is left to queue as `(written, rest)`, none when all went.
    fn write_direct(&mut self, frame: &[u8]) -> io::Result<Option<(usize, usize)>> {
        let written = if self.backlog.is_none() {
            write_until_blocked(&mut self.io, frame)?
        } else {
            0
        };
        let rest = frame.len() - written;
        Ok((rest > 0).then_some((written, rest)))
    }

    /// Sends a shared frame: directly when nothing is queued, else queued —
    /// by reference when it is big, copied into contiguous owned bytes when
    /// it is small (a reference plus its slot would cost as much as the
    /// bytes, and thousands of them fragment the heap).
    fn send_shared(&mut self, frame: &Rc<[u8]>) -> io::Result<()> {
        let Some((written, rest)) = self.write_direct(frame)? else {
            return Ok(());
        };
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
fn write_until_blocked(io: &mut impl Write, bytes: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < bytes.len() {
        match io.write(&bytes[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

impl<S: Io> Outbound<S> {
    /// Offers one pushed message: the slow-consumer rule, in one place.
    /// A message that would take a waiting queue over the backlog limit
    /// is not queued; the caller ends the session instead of letting a
    /// reader that does not read grow the server. An empty queue takes any
    /// one message: the push already refused messages over the limit
    /// (`payload::fits`), and one that passed may still be a few bytes
    /// longer framed (envelope, SSE lines) — a reader that keeps up must
    /// get it. The queue stays bounded by the limit plus one message.
    pub fn admit(&mut self, frame: &Rc<[u8]>) -> Admit {
        if self.over_limit(frame) {
            return Admit::Over;
        }
        match self.send_shared(frame) {
            Ok(()) => Admit::Taken,
            Err(_) => Admit::Dead,
        }
    }

    /// Offers one pushed message that may carry a latest-value key: a
    /// waiting message with the same key is taken out first (SPEC §8), so
    /// a reader that only needs the latest value never falls behind by
    /// more than one message per key; then the slow-consumer rule applies.
    pub fn admit_keyed(&mut self, frame: &Rc<[u8]>, key: Option<&KeyTag>) -> Admit {
        let Some(key) = key else {
            return self.admit(frame);
        };
        self.forget_key(key);
        if self.over_limit(frame) {
            return Admit::Over;
        }
        match self.send_keyed(frame, key) {
            Ok(()) => Admit::Taken,
            Err(_) => Admit::Dead,
        }
    }

    /// Whether admitting `frame` breaks the backlog limit (see `admit`).
    fn over_limit(&self, frame: &[u8]) -> bool {
        let queued = self.queued();
        queued > 0 && queued + frame.len() > self.limit
    }

    /// Takes the waiting message with `key` out (if none of it left yet).
    pub fn forget_key(&mut self, key: &str) {
        if let Some(b) = self.backlog.as_mut() {
            b.forget(key);
        }
    }

    /// Queues a replayed message (SPEC §8): not subject to the backlog
    /// limit, because the replay itself is paced — it adds only while the
    /// queue is short. Never written at once: the replay writes its batch
    /// with one `flush_out` (one `writev` for many messages, where writing
    /// each at once would cost a system call per message). Only a failed
    /// socket refuses it.
    pub fn replay(&mut self, frame: &Rc<[u8]>, key: Option<&KeyTag>) -> Admit {
        if self.failed {
            return Admit::Dead;
        }
        match key {
            Some(key) => {
                self.forget_key(key);
                let b = self.backlog();
                if b.queue.is_empty() {
                    b.sent = 0;
                }
                b.push_keyed(frame, key, frame.len());
            }
            None => self.append(|v| v.extend_from_slice(frame)),
        }
        Admit::Taken
    }

    /// `send_shared` for a keyed message: kept whole in its own chunk, so
    /// it can be taken out again.
    fn send_keyed(&mut self, frame: &Rc<[u8]>, key: &KeyTag) -> io::Result<()> {
        let Some((written, rest)) = self.write_direct(frame)? else {
            return Ok(());
        };
        let b = self.backlog();
        if b.queue.is_empty() {
            b.sent = written;
        }
        b.push_keyed(frame, key, rest);
        Ok(())
    }

    /// Whether a big backlog was written or dropped since the last call
    /// (the loop then gives memory back; see trim.rs).
    pub fn take_freed_big(&mut self) -> bool {
        std::mem::take(&mut self.freed_big)
    }

    /// A failed write was seen; the connection is gone.
    pub fn failed(&self) -> bool {
        self.failed
    }
}

/// tungstenite's writing calls (`write`, `flush`, `close`) require `Read`
/// but never read. A WebSocket's input is read only through `Metered`,
/// which keeps it within the turn's budget; a read that bypassed it would
/// bring back the stall the budget prevents, so here there is no input.
impl<S: Io> Read for Outbound<S> {
    fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

/// whole (`WouldBlock`), never in part: tungstenite then holds no
/// half-written frame that a pushed frame could cut into.
impl<S: Io> Write for Outbound<S> {
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

/// Most input thrown away per connection per turn: a peer that streams
/// into a closing connection must not hold the loop either.
pub const DISCARD_BUDGET: usize = 64 * 1024;

/// How throwing input away ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// The peer closed its side, or the socket failed.
    Gone,
    /// Nothing more to read now; more raises a new edge.
    Dry,
    /// Stopped at `DISCARD_BUDGET` with input maybe still waiting.
    Spent,
}

/// Reads and throws away what is readable, at most `DISCARD_BUDGET`.
pub fn discard_some(io: &mut impl Read) -> Drained {
    let mut sink = [0u8; 1024];
    let mut left = DISCARD_BUDGET;
    while left > 0 {
        match io.read(&mut sink) {
            Ok(0) => return Drained::Gone,
            Ok(n) => left = left.saturating_sub(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drained::Dry,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Drained::Gone,
        }
    }
    Drained::Spent
}

/// An in-memory socket for unit tests: input scripted, output collected,
/// room to write limited at will; `WouldBlock` where a socket would say it.
#[cfg(test)]
pub mod mem {
    use super::Io;
    use std::collections::VecDeque;
    use std::io::{self, Read, Write};

    #[derive(Default)]
    pub struct MemIo {
        /// What the peer sent and we have not read yet.
        pub input: VecDeque<u8>,
        /// The peer closed its side once `input` is read.
        pub eof: bool,
        /// Everything we wrote.
        pub written: Vec<u8>,
        /// Bytes the socket still takes before `WouldBlock`; none: any.
        pub room: Option<usize>,
        /// Writes fail as on a reset connection.
        pub broken: bool,
        /// We shut our side.
        pub shut: bool,
    }

    impl MemIo {
        pub fn feed(&mut self, bytes: &[u8]) {
            self.input.extend(bytes);
        }
    }

    impl Read for MemIo {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.input.is_empty() {
                return if self.eof {
                    Ok(0)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                };
            }
            let n = buf.len().min(self.input.len());
            for (dst, src) in buf.iter_mut().zip(self.input.drain(..n)) {
                *dst = src;
            }
            Ok(n)
        }
    }

    impl Write for MemIo {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.broken {
                return Err(io::ErrorKind::ConnectionReset.into());
            }
            let n = self.room.map_or(buf.len(), |r| r.min(buf.len()));
            if n == 0 && !buf.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            if let Some(r) = &mut self.room {
                *r -= n;
            }
            self.written.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Io for MemIo {
        fn shutdown_write(&mut self) {
            self.shut = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::mem::MemIo;
    use super::*;

    /// Frames written directly, queued by reference, and our own bytes all
    /// leave in order, whole, however little the socket takes at a time.
    #[test]
    fn the_queue_keeps_order_with_a_full_socket() {
        let io = MemIo {
            room: Some(1000),
            ..MemIo::default()
        };
        let mut out = Outbound::new(io, 1 << 30);
        let mut expected = Vec::new();
        for i in 0..64u8 {
            // Big frames are queued by reference, small ones copied: both kinds.
            let len = if i % 2 == 0 { 128 * 1024 } else { 300 };
            let frame: Rc<[u8]> = Rc::from(vec![i; len]);
            assert_eq!(out.admit(&frame), Admit::Taken);
            expected.extend_from_slice(&frame);
            if i % 5 == 0 {
                out.send(b"own bytes");
                expected.extend_from_slice(b"own bytes");
            }
        }
        assert!(out.queued() > 0);
        while !out.flush_out().unwrap() {
            out.io.room = Some(7777);
        }
        assert_eq!(out.queued(), 0);
        assert!(out.io.written == expected, "bytes left out of order");
        assert!(out.take_freed_big(), "a big backlog was freed");
    }

    /// The slow-consumer rule: a message that would take a waiting queue
    /// over the limit is not taken; our own bytes always are; an empty
    /// queue takes one message even if it is a little over the limit.
    #[test]
    fn admission_stops_at_the_backlog_limit() {
        let io = MemIo {
            room: Some(0),
            ..MemIo::default()
        };
        let mut out = Outbound::new(io, 100);
        let frame: Rc<[u8]> = Rc::from(vec![b'x'; 60]);
        assert_eq!(out.admit(&frame), Admit::Taken);
        assert_eq!(out.admit(&frame), Admit::Over);
        out.send(&[b'y'; 80]);
        assert_eq!(out.queued(), 140);
        let mut out = Outbound::new(
            MemIo {
                room: Some(0),
                ..MemIo::default()
            },
            100,
        );
        let framed: Rc<[u8]> = Rc::from(vec![b'x'; 110]);
        assert_eq!(out.admit(&framed), Admit::Taken);
        assert_eq!(out.admit(&frame), Admit::Over);
    }

    /// SPEC §8 latest-value keys: a newer message with the same key takes
    /// the waiting one out (the newer goes at the end); a half-written one
    /// stays; other keys and unkeyed messages are untouched; the queue's
    /// size counts only what is left, so a ticker never reaches the limit.
    #[test]
    fn a_newer_keyed_message_replaces_the_waiting_one() {
        let io = MemIo {
            room: Some(3),
            ..MemIo::default()
        };
        let mut out = Outbound::new(io, 64);
        let frame = |s: &str| -> Rc<[u8]> { Rc::from(s.as_bytes()) };
        let (a, b): (KeyTag, KeyTag) = (Rc::from("a"), Rc::from("b"));
        // The first is written in part: it can no longer be taken out.
        assert_eq!(out.admit_keyed(&frame("A1....."), Some(&a)), Admit::Taken);
        assert_eq!(out.admit_keyed(&frame("B1"), Some(&b)), Admit::Taken);
        assert_eq!(out.admit(&frame("plain")), Admit::Taken);
        for i in 2..1000 {
            let f = frame(&format!("A{i:03}"));
            assert_eq!(out.admit_keyed(&f, Some(&a)), Admit::Taken, "{i}");
            assert!(out.queued() <= 64);
        }
        assert_eq!(out.admit_keyed(&frame("B2"), Some(&b)), Admit::Taken);
        // Taken-out slots do not pile up.
        assert!(out.backlog.as_ref().unwrap().queue.len() < 80);
        out.io.room = None;
        assert!(out.flush_out().unwrap());
        assert_eq!(String::from_utf8_lossy(&out.io.written), "A1.....plainA999B2");
        // Nothing waits: a keyed message is written at once.
        assert_eq!(out.admit_keyed(&frame("A-now"), Some(&a)), Admit::Taken);
        assert!(out.io.written.ends_with(b"A-now"));
        // A replayed message may go past the limit (the replay paces
        // itself) and is still replaced by a newer value.
        out.io.room = Some(0);
        let big: Rc<[u8]> = Rc::from(vec![b'r'; 100]);
        assert_eq!(out.replay(&big, Some(&b)), Admit::Taken);
        assert_eq!(out.queued(), 100);
        assert_eq!(out.admit_keyed(&frame("B3"), Some(&b)), Admit::Taken);
        assert_eq!(out.queued(), 2);
        out.forget_key("b");
        assert_eq!(out.queued(), 0);
        assert!(out.flush_out().unwrap(), "only taken-out slots were left");
    }

    /// A write to a socket the peer reset: the error is not lost with the
    /// bytes, the next flush reports it, and admission says the socket is dead.
    #[test]
    fn a_failed_write_is_reported() {
        let mut out = Outbound::new(MemIo::default(), 1 << 20);
        out.io.broken = true;
        out.send(b"after the reset");
        assert!(out.flush_out().is_err());
        assert!(out.failed());
        let frame: Rc<[u8]> = Rc::from(vec![b'x'; 10]);
        let mut out = Outbound::new(MemIo::default(), 1 << 20);
        out.io.broken = true;
        assert_eq!(out.admit(&frame), Admit::Dead);
    }
}
