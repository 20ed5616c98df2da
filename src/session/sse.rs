//! A Server-Sent Events subscriber (SPEC §7): the stream's framing, its
//! `: ping` heartbeats, expiry, and the `event: close` it ends with.
//!
//! An SSE stream is one long HTTP response. On HTTP/1.1 every write is
//! one chunk of a chunked body and the stream ends with the last chunk;
//! on HTTP/1.0 the body is the bytes as they are, and the stream ends
//! with the connection. Either way each event is written at once, as one
//! piece, so a proxy or `curl -N` passes it on without waiting.

use super::{Tick, Timeouts};
use crate::close::{self, Close};
use crate::outbound::{discard_some, Admit, Drained, Io, Outbound};
use std::rc::Rc;
use std::time::Instant;

/// The first bytes of every stream: a comment, so proxies that hold a
/// response until its body starts flush the headers, and the reconnect
/// delay EventSource should use.
pub const PREAMBLE: &[u8] = b": ok\nretry: 3000\n\n";

/// The heartbeat comment.
const PING: &[u8] = b": ping\n\n";

pub struct SseSession {
    chunked: bool,
    /// `data:` carries `{"event", "message"}` (`?envelope=1`).
    envelope: bool,
    phase: Phase,
    next_ping: Option<Instant>,
    /// When the token that opened it expires (JWT `exp`).
    expires: Option<Instant>,
}

enum Phase {
    Open,
    /// The stream has ended (or the peer left); waiting a moment for
    /// the peer to close, so our last bytes are not reset away.
    Closing {
        until: Instant,
    },
}

impl SseSession {
    /// A stream whose `200` head is written by `start`. `chunked` for an
    /// HTTP/1.1 request.
    pub fn new(chunked: bool, envelope: bool, t: &Timeouts, now: Instant) -> SseSession {
        SseSession {
            chunked,
            envelope,
            phase: Phase::Open,
            next_ping: Timeouts::after(t.ping, now),
            expires: None,
        }
    }

    /// Writes the `200` head (with `headers`, e.g. CORS) and the
    /// preamble, at once.
    pub fn start<S: Io>(&self, out: &mut Outbound<S>, headers: &[(&str, &str)]) {
        let mut head = Vec::with_capacity(256);
        head.extend_from_slice(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\n",
        );
        if self.chunked {
            head.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        } else {
            head.extend_from_slice(b"Connection: close\r\n");
        }
        for (name, value) in headers {
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        put_frame(&mut head, PREAMBLE, self.chunked);
        out.send(&head);
    }

    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open)
    }

    pub fn envelope(&self) -> bool {
        self.envelope
    }

    pub fn chunked(&self) -> bool {
        self.chunked
    }

    pub fn set_expiry(&mut self, at: Option<Instant>) {
        self.expires = at;
    }

    /// Offers one encoded event (`frame`, built by `Payload::sse`).
    pub fn send<S: Io>(&mut self, out: &mut Outbound<S>, frame: &Rc<[u8]>) -> Admit {
        out.admit(frame)
    }

    /// The client sends nothing after its request; whatever comes is
    /// read and dropped (bounded per turn), and its end of stream means
    /// it is gone.
    pub fn on_input<S: Io>(&mut self, out: &mut Outbound<S>) -> Drained {
        discard_some(&mut out.io)
    }

    /// Ends the stream: a last `event: close` with the code and reason,
    /// the end of the body, our side shut. The caller has unbound it.
    pub fn close<S: Io>(&mut self, out: &mut Outbound<S>, why: &Close, now: Instant, t: &Timeouts) {
        if !self.is_open() {
            return;
        }
        let data = serde_json::json!({ "code": why.code, "reason": why.reason() }).to_string();
        let mut block = Vec::with_capacity(data.len() + 32);
        event_block(&mut block, "close", &data, None);
        let mut bytes = Vec::with_capacity(block.len() + 16);
        put_frame(&mut bytes, &block, self.chunked);
        if self.chunked {
            bytes.extend_from_slice(b"0\r\n\r\n");
        }
        // Our own last words: sent even past the backlog limit (they are
        // small, and a slow consumer is told why it is cut off). Our side
        // is shut once they are written (`finish`).
        out.send(&bytes);
        self.phase = Phase::Closing {
            until: now + t.close_grace,
        };
        // Written at once (the usual case): the client's end of stream now,
        // not when the grace runs out — on HTTP/1.0 that FIN is what ends
        // the response. Else on the write that empties the queue.
        self.finish(out);
    }

    /// Once a closed stream's last bytes are written, shuts our side (the
    /// client's end of stream). Before that, a FIN would cut them off.
    pub fn finish<S: Io>(&mut self, out: &mut Outbound<S>) {
        if !self.is_open() && out.queued() == 0 {
            out.io.shutdown_write();
        }
    }

    /// The stream stopped without a close of ours (the peer left).
    pub fn left(&mut self, now: Instant, t: &Timeouts, lost: bool) {
        self.phase = Phase::Closing {
            until: if lost { now } else { now + t.close_grace },
        };
    }

    pub fn on_timer<S: Io>(&mut self, out: &mut Outbound<S>, now: Instant, t: &Timeouts) -> Tick {
        if let Phase::Closing { until } = self.phase {
            return if until <= now { Tick::Gone } else { Tick::Idle };
        }
        if self.expires.is_some_and(|at| at <= now) {
            return Tick::End(Close::because(close::TOKEN_REJECTED, close::TOKEN_EXPIRED));
        }
        if self.next_ping.is_some_and(|at| at <= now) {
            self.next_ping = Some(now + t.ping);
            // Skipped behind a backlog: what waits keeps the stream alive.
            if out.queued() == 0 {
                let mut bytes = Vec::with_capacity(PING.len() + 8);
                put_frame(&mut bytes, PING, self.chunked);
                out.send(&bytes);
                if out.failed() {
                    return Tick::Gone;
                }
            }
        }
        Tick::Idle
    }

    pub fn next_deadline(&self, _t: &Timeouts) -> Option<Instant> {
        match self.phase {
            Phase::Closing { until } => Some(until),
            Phase::Open => [self.expires, self.next_ping].into_iter().flatten().min(),
        }
    }
}

/// Appends the `event: gap` a resumed stream gets for an event it cannot
/// be given everything it missed on (SPEC §8), framed for the stream
/// (`http10`: not chunked).
pub fn gap_event(out: &mut Vec<u8>, event: &str, http10: bool) {
    let data = serde_json::json!({ "event": event, "recovered": false }).to_string();
    let mut block = Vec::with_capacity(data.len() + 16);
    event_block(&mut block, "gap", &data, None);
    put_frame(out, &block, !http10);
}

/// Appends one event: `event: E`, the data as `data:` lines, `id:` when
/// there is one, and the empty line that ends it.
///
/// The data is split at line breaks as EventSource parses them — CRLF,
/// LF, or a lone CR — so a client that joins the lines back with `\n`
/// gets the text a WebSocket client gets (with its line breaks as `\n`).
pub fn event_block(out: &mut Vec<u8>, event: &str, data: &str, id: Option<&str>) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.push(b'\n');
    for line in lines(data) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// Bytes `event_block` writes for these, without writing them.
pub fn event_block_len(event: &str, data: &str, id: Option<&str>) -> usize {
    let data_lines: usize = lines(data).map(|l| "data: ".len() + l.len() + 1).sum();
    "event: ".len() + event.len() + 1 + data_lines + id.map_or(0, |i| "id: ".len() + i.len() + 1) + 1
}

/// The lines of `text` split at CRLF, LF or CR; always at least one.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.find(['\r', '\n']) {
            None => {
                rest = None;
                Some(s)
            }
            Some(i) => {
                let skip = if s[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&s[i + skip..]);
                Some(&s[..i])
            }
        }
    })
}

/// Appends `block` as one chunk (`chunked`) or as it is.
pub fn put_frame(out: &mut Vec<u8>, block: &[u8], chunked: bool) {
    if chunked {
        out.extend_from_slice(format!("{:x}\r\n", block.len()).as_bytes());
        out.extend_from_slice(block);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(block);
    }
}

/// Bytes `put_frame` adds around a block of `len` bytes.
pub fn frame_overhead(len: usize, chunked: bool) -> usize {
    if !chunked {
        return 0;
    }
    let mut hex = 1;
    let mut n = len >> 4;
    while n > 0 {
        hex += 1;
        n >>= 4;
    }
    hex + 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::mem::MemIo;
    use std::time::Duration;

    fn block(event: &str, data: &str, id: Option<&str>) -> String {
        let mut out = Vec::new();
        event_block(&mut out, event, data, id);
        assert_eq!(out.len(), event_block_len(event, data, id), "{data:?}");
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn events_split_data_at_every_kind_of_line_break() {
        assert_eq!(block("news", "hi", None), "event: news\ndata: hi\n\n");
        assert_eq!(
            block("e", "a\r\nb\nc\rd", Some("7")),
            "event: e\ndata: a\ndata: b\ndata: c\ndata: d\nid: 7\n\n"
        );
        assert_eq!(block("e", "", None), "event: e\ndata: \n\n");
        assert_eq!(block("e", "end\n", None), "event: e\ndata: end\ndata: \n\n");
        assert_eq!(
            block("e", "\r\n\r\n", None),
            "event: e\ndata: \ndata: \ndata: \n\n"
        );
        assert_eq!(block("e", "x\r", None), "event: e\ndata: x\ndata: \n\n");
    }

    #[test]
    fn chunks_are_sized_in_hex() {
        for len in [0usize, 1, 15, 16, 255, 256, 4096, 70_000] {
            let block = vec![b'a'; len];
            let mut out = Vec::new();
            put_frame(&mut out, &block, true);
            assert_eq!(out.len(), len + frame_overhead(len, true), "{len}");
            assert!(out.starts_with(format!("{len:x}\r\n").as_bytes()));
            assert!(out.ends_with(b"\r\n"));
            let mut plain = Vec::new();
            put_frame(&mut plain, &block, false);
            assert_eq!(plain, block);
        }
    }

    fn timeouts() -> Timeouts {
        Timeouts {
            register: Duration::from_secs(10),
            ping: Duration::from_secs(30),
            close_grace: Duration::from_secs(2),
        }
    }

    fn text(out: &Outbound<MemIo>) -> String {
        String::from_utf8(out.io.written.clone()).unwrap()
    }

    #[test]
    fn a_stream_starts_with_its_head_and_preamble_at_once() {
        let t0 = Instant::now();
        let mut out = Outbound::new(MemIo::default(), 1 << 20);
        let s = SseSession::new(true, false, &timeouts(), t0);
        s.start(&mut out, &[("Access-Control-Allow-Origin", "https://a.example")]);
        let got = text(&out);
        assert!(
            got.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"),
            "{got}"
        );
        assert!(got.contains(
            "\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n"
        ));
        assert!(got.contains("\r\nAccess-Control-Allow-Origin: https://a.example\r\n"));
        assert!(got.ends_with("\r\n\r\n12\r\n: ok\nretry: 3000\n\n\r\n"), "{got}");
        let mut out = Outbound::new(MemIo::default(), 1 << 20);
        SseSession::new(false, false, &timeouts(), t0).start(&mut out, &[]);
        let got = text(&out);
        assert!(got.contains("\r\nConnection: close\r\n") && !got.contains("chunked"));
        assert!(got.ends_with("\r\n\r\n: ok\nretry: 3000\n\n"), "{got}");
    }

    /// Time is stepped, not slept: a ping at each interval, none before.
    #[test]
    fn pings_come_every_interval() {
        let t0 = Instant::now();
        let t = timeouts();
        let mut out = Outbound::new(MemIo::default(), 1 << 20);
        let mut s = SseSession::new(true, false, &t, t0);
        assert_eq!(s.next_deadline(&t), Some(t0 + t.ping));
        assert_eq!(
            s.on_timer(&mut out, t0 + t.ping - Duration::from_millis(1), &t),
            Tick::Idle
        );
        assert!(out.io.written.is_empty());
        assert_eq!(s.on_timer(&mut out, t0 + t.ping, &t), Tick::Idle);
        assert_eq!(text(&out), "8\r\n: ping\n\n\r\n");
        assert_eq!(s.next_deadline(&t), Some(t0 + 2 * t.ping));
    }

    #[test]
    fn an_expired_token_ends_the_stream_with_4401() {
        let t0 = Instant::now();
        let t = timeouts();
        let mut out = Outbound::new(MemIo::default(), 1 << 20);
        let mut s = SseSession::new(true, true, &t, t0);
        s.set_expiry(Some(t0 + Duration::from_secs(5)));
        assert_eq!(s.next_deadline(&t), Some(t0 + Duration::from_secs(5)));
        let tick = s.on_timer(&mut out, t0 + Duration::from_secs(5), &t);
        assert_eq!(
            tick,
            Tick::End(Close::because(close::TOKEN_REJECTED, close::TOKEN_EXPIRED))
        );
    }

    #[test]
    fn closing_writes_the_close_event_ends_the_body_and_waits_the_grace() {
        let t0 = Instant::now();
        let t = timeouts();
        let mut out = Outbound::new(MemIo::default(), 1 << 20);
        let mut s = SseSession::new(true, false, &t, t0);
        s.close(&mut out, &Close::new(close::DROPPED), t0, &t);
        // Shut at once, without waiting for another write turn.
        assert!(out.io.shut, "our side is shut once the body ended");
        let data = r#"{"code":4000,"reason":"dropped"}"#;
        let block = format!("event: close\ndata: {data}\n\n");
        assert_eq!(text(&out), format!("{:x}\r\n{block}\r\n0\r\n\r\n", block.len()));
        assert!(out.io.shut, "our side is shut once the body ended");
        assert!(!s.is_open());
        assert_eq!(s.next_deadline(&t), Some(t0 + t.close_grace));
        assert_eq!(s.on_timer(&mut out, t0 + t.close_grace, &t), Tick::Gone);
    }

    #[test]
    fn a_slow_reader_is_over_the_limit_and_still_told_why() {
        let t0 = Instant::now();
        let t = timeouts();
        let io = MemIo {
            room: Some(0),
            ..MemIo::default()
        };
        let mut out = Outbound::new(io, 100);
        let mut s = SseSession::new(false, false, &t, t0);
        let event: Rc<[u8]> = Rc::from(vec![b'x'; 60]);
        assert_eq!(s.send(&mut out, &event), Admit::Taken);
        assert_eq!(s.send(&mut out, &event), Admit::Over);
        s.close(&mut out, &Close::new(close::SLOW_CONSUMER), t0, &t);
        s.finish(&mut out);
        assert!(!out.io.shut, "not before the last bytes are out");
        out.io.room = None;
        assert!(out.flush_out().unwrap());
        s.finish(&mut out);
        assert!(out.io.shut);
        assert!(text(&out).ends_with("event: close\ndata: {\"code\":4008,\"reason\":\"slow consumer\"}\n\n"));
    }
}
