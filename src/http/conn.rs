//! One HTTP/1.1 connection's input: requests parsed as they arrive,
//! nothing parsed twice, pipelined requests taken in order in linear
//! time, and the request timeout as a deadline stepped by `now`.
//!
//! No socket here but the `Read` it is handed: what a request *means* is
//! decided by `requests.rs`, which routes and answers it.

use super::chunked::{ChunkedDecoder, Feed};
use super::request::{BodyFraming, Head, HeadParser, HttpError, Limits, Parsed};
use super::route::Route;
use crate::listen::Role;
use std::io::{self, Read};
use std::time::{Duration, Instant};

/// An HTTP/1.1 connection between requests or inside one.
///
/// Input is parsed as it arrives and nothing is parsed twice: `inbuf` holds
/// bytes not consumed yet (from `start` on), `request` what is known of the
/// request at their front. A head is kept once parsed; a chunked body is
/// decoded as it comes, its framing dropped. What one request holds is
/// bounded by the limits: its head, its body, and at most a head's worth of
/// what the client sent after it.
pub struct HttpConn {
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
    /// Where the request whose head is parsed goes, once decided (at its
    /// `Expect: 100-continue`, or when it is complete): routed once.
    pub route: Option<Route>,
    /// The listener it came through: with `--push-listen`, push endpoints
    /// answer only on push listeners.
    pub role: Role,
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

/// Bytes read per `read()` call on an HTTP connection.
pub const READ_CHUNK: usize = 4096;

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
    input: &mut impl Read,
    buf: &mut Vec<u8>,
    cap: usize,
    scratch: &mut [u8],
    fin: bool,
) -> io::Result<ReadStatus> {
    let mut progress = false;
    while buf.len() < cap {
        let want = scratch.len().min(cap - buf.len());
        match input.read(&mut scratch[..want]) {
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

impl HttpConn {
    pub fn new(now: Instant, role: Role) -> HttpConn {
        HttpConn {
            inbuf: Vec::new(),
            start: 0,
            request: Request::default(),
            since: now,
            sent_continue: false,
            close_after: false,
            read_closed: false,
            waiting: false,
            idle: None,
            route: None,
            role,
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

    /// Whether the request being received asked for JSON answers, as far
    /// as it is known: for a refusal (413, 408, a framing error) that
    /// comes before the request could be handled.
    pub fn wants_json(&self, limits: &Limits) -> bool {
        match self.pending_head() {
            Some(head) => head.accepts_json(),
            None => super::request::raw_accepts_json(self.input(), limits),
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
        input: &mut impl Read,
        limits: &Limits,
        scratch: &mut [u8],
        fin: bool,
    ) -> io::Result<ReadStatus> {
        if self.start > 0 {
            self.inbuf.drain(..self.start);
            self.start = 0;
        }
        let cap = self.input_cap(limits);
        let status = read_into(input, &mut self.inbuf, cap, scratch, fin)?;
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

    /// When the current wait (a request arriving, a response being read,
    /// keep-alive idleness) runs out.
    pub fn deadline(&self, timeout: Duration) -> Instant {
        self.since + timeout
    }

    /// What the request timeout asks for at `now`.
    pub fn on_timer(&self, now: Instant, timeout: Duration, nothing_queued: bool) -> Timeout {
        if self.waiting || self.deadline(timeout) > now {
            // A waiting push is bounded by --redis-timeout instead.
            return Timeout::NotYet;
        }
        if self.mid_request() && nothing_queued {
            // A request that never finished arriving (slowloris).
            return Timeout::Request;
        }
        // Idle keep-alive, or a response the peer does not read.
        Timeout::Close
    }
}

/// What the request timeout asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    NotYet,
    /// Answer 408 and close.
    Request,
    /// Close without a word.
    Close,
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

    fn http(input: &[u8]) -> HttpConn {
        let mut h = HttpConn::new(Instant::now(), Role::Main);
        h.inbuf.extend_from_slice(input);
        h
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
    fn arrive(h: &mut HttpConn, bytes: &[u8]) {
        h.inbuf.drain(..h.start);
        h.start = 0;
        h.inbuf.extend_from_slice(bytes);
    }

    /// Every request that can be taken now: (path, body), or the error.
    fn take_all(h: &mut HttpConn, out: &mut Vec<Result<(String, Vec<u8>), HttpError>>) {
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
            let mut h = HttpConn::new(Instant::now(), Role::Main);
            let mut got = Vec::new();
            arrive(&mut h, &stream[..cut]);
            take_all(&mut h, &mut got);
            arrive(&mut h, &stream[cut..]);
            take_all(&mut h, &mut got);
            assert_eq!(got, expected, "cut at {cut}");
        }
        let mut h = HttpConn::new(Instant::now(), Role::Main);
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
        let mut h = HttpConn::new(Instant::now(), Role::Main);
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
        let mut h = HttpConn::new(Instant::now(), Role::Main);
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

    /// The request timeout, stepped rather than slept: a request that never
    /// finishes gets 408, an idle keep-alive socket is closed, a parked push
    /// waits for Redis's own timeout.
    #[test]
    fn the_request_timeout_steps_with_the_clock() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(10);
        let mut h = HttpConn::new(t0, Role::Main);
        assert_eq!(h.deadline(timeout), t0 + timeout);
        assert_eq!(
            h.on_timer(t0 + timeout - Duration::from_millis(1), timeout, true),
            Timeout::NotYet
        );
        assert_eq!(h.on_timer(t0 + timeout, timeout, true), Timeout::Close, "idle");
        arrive(&mut h, b"GET /healthz HTTP/1.1\r\n");
        assert_eq!(
            h.on_timer(t0 + timeout, timeout, true),
            Timeout::Request,
            "half a request"
        );
        assert_eq!(
            h.on_timer(t0 + timeout, timeout, false),
            Timeout::Close,
            "an answer unread"
        );
        h.waiting = true;
        assert_eq!(
            h.on_timer(t0 + 2 * timeout, timeout, true),
            Timeout::NotYet,
            "parked push"
        );
    }
}
