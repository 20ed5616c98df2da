//! WebSocket specifics: upgrade checks, the accept key, the tungstenite
//! session settings for a push server, and which failure gets which close code.

use crate::config::Config;
use crate::http::request::{Head, Version};
use tungstenite::error::ProtocolError;
use tungstenite::protocol::WebSocketConfig;

/// Close codes of SPEC §1 (and the RFC 6455 ones the session uses), and
/// the one table of their default reasons: every close the server sends
/// says why, even when the caller has nothing more specific to add.
pub mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const INVALID_DATA: u16 = 1007;
    pub const TOO_BIG: u16 = 1009;
    pub const DROPPED: u16 = 4000;
    pub const DROPPED_FOR_GOOD: u16 = 4001;
    pub const SLOW_CONSUMER: u16 = 4008;
    pub const MALFORMED: u16 = 4400;
    pub const TOKEN_REJECTED: u16 = 4401;
    pub const OTHER_USER: u16 = 4403;
    pub const REGISTER_TIMEOUT: u16 = 4408;
    pub const TOO_MANY_EVENTS: u16 = 4429;

    /// Each code the server sends, with the reason it carries when the
    /// cause has no more precise words (a refused command names its own).
    pub const REASONS: &[(u16, &str)] = &[
        (GOING_AWAY, "server shutting down"),
        (PROTOCOL_ERROR, "protocol error"),
        (INVALID_DATA, "invalid UTF-8 in a text frame"),
        (TOO_BIG, "message too big"),
        (DROPPED, "dropped"),
        (DROPPED_FOR_GOOD, "dropped, do not reconnect"),
        (SLOW_CONSUMER, "slow consumer"),
        (MALFORMED, "malformed command"),
        (TOKEN_REJECTED, "token rejected"),
        (OTHER_USER, "token belongs to another user"),
        (REGISTER_TIMEOUT, "register timeout"),
        (TOO_MANY_EVENTS, "too many events"),
    ];

    /// The default reason of `code`.
    pub fn reason(code: u16) -> &'static str {
        REASONS
            .iter()
            .find(|(c, _)| *c == code)
            .map_or("closing", |(_, r)| r)
    }

    /// The 1009 reason of a message cut off at `ws::MAX_FRAGMENTS` frames.
    pub const TOO_MANY_FRAGMENTS: &str = "message has more than 256 frames";

    /// A close frame's payload is at most 125 bytes, two of them the code.
    pub const MAX_REASON_BYTES: usize = 123;

    /// The reason actually sent: the table's when `reason` is empty, cut
    /// at a character boundary to fit the frame (an auth hook's text may
    /// be long; a reason over the limit would make the client fail the
    /// connection instead of reading the code).
    pub fn fitted(code: u16, reason: &str) -> &str {
        if reason.is_empty() {
            return self::reason(code);
        }
        let mut end = reason.len().min(MAX_REASON_BYTES);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        &reason[..end]
    }
}

/// Why an upgrade request is refused, in gorilla's order of checks so the
/// seed's clients see the same statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400: not a WebSocket handshake (missing headers, bad key).
    BadRequest(&'static str),
    /// 405: a handshake with another method than GET.
    Method,
    /// 426 with `Sec-WebSocket-Version: 13`.
    Version,
}

/// Checks an upgrade request; returns the `Sec-WebSocket-Accept` value.
pub fn check_upgrade(head: &Head) -> Result<String, Refusal> {
    if !head.header_has_token("Connection", "upgrade") {
        return Err(Refusal::BadRequest(
            "'upgrade' token not found in 'Connection' header",
        ));
    }
    if !head.header_has_token("Upgrade", "websocket") {
        return Err(Refusal::BadRequest(
            "'websocket' token not found in 'Upgrade' header",
        ));
    }
    if head.method != "GET" {
        return Err(Refusal::Method);
    }
    if head.version != Version::Http11 {
        return Err(Refusal::BadRequest("WebSocket needs HTTP/1.1"));
    }
    if !head.header_has_token("Sec-WebSocket-Version", "13") {
        return Err(Refusal::Version);
    }
    let key = head.header("Sec-WebSocket-Key").map(str::trim).unwrap_or("");
    if !valid_key(key) {
        return Err(Refusal::BadRequest("missing or malformed Sec-WebSocket-Key"));
    }
    Ok(tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// RFC 6455 §4.1: the key is 16 random bytes in base64, i.e. 22 base64
/// characters and `==`.
fn valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b[22..] == *b"=="
        && b[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

/// The `101 Switching Protocols` answer.
pub fn handshake_response(accept: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

/// True for `?envelope=1` (also `true`/`yes`) among the query parameters.
pub fn envelope_requested(query: &str) -> bool {
    query.split('&').any(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, "1"));
        k == "envelope" && matches!(v, "1" | "true" | "yes")
    })
}

/// Read buffer per connection. Commands are a few dozen bytes and
/// tungstenite grows the buffer for a bigger frame, so this only sets the
/// idle cost: 256 B here against 128 KiB by default (~135 KB of RSS each).
pub const READ_BUFFER_BYTES: usize = 256;

/// Session settings for a push server: a small read buffer, every frame
/// written at once (no batching threshold: a push must leave now), incoming
/// messages capped, and the outbound backlog capped so a client that stops
/// reading cannot grow the server.
pub fn session_config(cfg: &Config) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(cfg.max_backlog_bytes.max(1))
        .max_message_size(Some(cfg.max_message_bytes))
        .max_frame_size(Some(cfg.max_message_bytes))
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

/// Most data frames one message may have (SPEC §12). An empty
/// continuation costs the client 6 bytes and the server a frame parse, so
/// without a cap a message that never ends is an endless stream of work.
pub const MAX_FRAGMENTS: u16 = 256;

/// Input one WebSocket may feed the loop per turn, in bytes and in frames
/// (SPEC §12: then the others are served). Commands are a few dozen bytes,
/// so an honest client never notices; a flood is read at this pace.
pub const TURN_BYTES: usize = 16 * 1024;
pub const TURN_FRAMES: usize = 64;

/// Where the watcher is in the current frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Step {
    /// Next byte: FIN, RSV and opcode.
    #[default]
    Opcode,
    /// Next byte: MASK and the 7-bit length.
    Length,
    /// This many bytes of the 16- or 64-bit length remain.
    ExtLength(u8),
    /// This many bytes of the masking key remain.
    Mask(u8),
    /// `FrameWatch::left` payload bytes remain.
    Payload,
}

/// Follows the frame headers in a client's raw input, before tungstenite
/// parses it, to count what tungstenite does not let us count: the data
/// frames of a message still being assembled (its `read` keeps consuming
/// fragments of an unfinished message without returning), and every frame
/// of a turn, control frames included.
///
/// Sans-IO: it sees bytes only, in pieces of any size, and keeps 16 bytes
/// of state per connection. It trusts nothing it reads; a header
/// tungstenite will refuse (reserved bits, unmasked, too long) only has to
/// keep the watcher in step until that refusal closes the connection.
#[derive(Debug, Clone, Default)]
pub struct FrameWatch {
    /// Payload bytes of the current frame still to pass.
    left: u64,
    step: Step,
    masked: bool,
    /// Data frames of the message being assembled; 0 between messages.
    fragments: u16,
    /// A message went over `MAX_FRAGMENTS`; everything after is refused.
    tripped: bool,
}

/// What one piece of input held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Frame headers that began in the piece.
    pub frames: usize,
    /// Set when a message went over `MAX_FRAGMENTS`: the offset of the
    /// header of its first frame too many. Bytes before it are whole
    /// frames of the stream as it was; nothing from it on may be parsed.
    pub cut: Option<usize>,
}

impl FrameWatch {
    /// True once a message had too many frames.
    pub fn tripped(&self) -> bool {
        self.tripped
    }

    /// Follows `bytes`, the next piece of the client's input.
    pub fn feed(&mut self, bytes: &[u8]) -> Fed {
        let mut fed = Fed { frames: 0, cut: None };
        if self.tripped {
            fed.cut = Some(0);
            return fed;
        }
        let mut i = 0;
        while i < bytes.len() {
            match self.step {
                Step::Opcode => {
                    let b = bytes[i];
                    // Opcodes 0-7 are data frames, 8-15 control frames.
                    if b & 0x08 == 0 {
                        let continuation = b & 0x0F == 0;
                        self.fragments = if continuation {
                            self.fragments.saturating_add(1)
                        } else {
                            1
                        };
                        if self.fragments > MAX_FRAGMENTS {
                            self.tripped = true;
                            fed.cut = Some(i);
                            return fed;
                        }
                        if b & 0x80 != 0 {
                            // FIN: the message is complete.
                            self.fragments = 0;
                        }
                    }
                    fed.frames += 1;
                    self.step = Step::Length;
                    i += 1;
                }
                Step::Length => {
                    let b = bytes[i];
                    i += 1;
                    self.masked = b & 0x80 != 0;
                    self.left = 0;
                    match b & 0x7F {
                        126 => self.step = Step::ExtLength(2),
                        127 => self.step = Step::ExtLength(8),
                        n => {
                            self.left = u64::from(n);
                            self.after_length();
                        }
                    }
                }
                Step::ExtLength(n) => {
                    self.left = (self.left << 8) | u64::from(bytes[i]);
                    i += 1;
                    if n > 1 {
                        self.step = Step::ExtLength(n - 1);
                    } else {
                        self.after_length();
                    }
                }
                Step::Mask(n) => {
                    let take = usize::from(n).min(bytes.len() - i);
                    i += take;
                    // `take` is at most `n`, which is at most 4.
                    let rest = n - take as u8;
                    if rest > 0 {
                        self.step = Step::Mask(rest);
                    } else {
                        self.enter_payload();
                    }
                }
                Step::Payload => {
                    let avail = (bytes.len() - i) as u64;
                    let take = self.left.min(avail);
                    i += take as usize;
                    self.left -= take;
                    if self.left == 0 {
                        self.step = Step::Opcode;
                    }
                }
            }
        }
        fed
    }

    fn after_length(&mut self) {
        if self.masked {
            self.step = Step::Mask(4);
        } else {
            self.enter_payload();
        }
    }

    fn enter_payload(&mut self) {
        self.step = if self.left == 0 {
            Step::Opcode
        } else {
            Step::Payload
        };
    }
}

/// What to do with a connection after a session error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Send a close frame with this code, then wait briefly for the peer.
    Close(u16),
    /// The transport is gone or already closed: just forget the connection.
    Drop,
}

/// Maps tungstenite's errors to SPEC's close codes.
pub fn classify(err: &tungstenite::Error) -> Failure {
    use tungstenite::Error as E;
    match err {
        E::Capacity(_) => Failure::Close(close::TOO_BIG),
        E::Utf8(_) => Failure::Close(close::INVALID_DATA),
        E::WriteBufferFull(_) => Failure::Close(close::SLOW_CONSUMER),
        E::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Failure::Drop,
        E::Protocol(_) | E::AttackAttempt => Failure::Close(close::PROTOCOL_ERROR),
        _ => Failure::Drop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{parse_head, Limits, Parsed};

    fn head(extra: &str, method: &str) -> Head {
        let req = format!("{method} /ws HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
        let limits = Limits {
            max_head_bytes: 8192,
            max_headers: 64,
            max_body_bytes: 1024,
        };
        match parse_head(req.as_bytes(), &limits) {
            Ok(Parsed::Done(h, _)) => h,
            _ => panic!("test request did not parse"),
        }
    }

    const GOOD: &str = "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    #[test]
    fn rfc_example_key() {
        assert_eq!(
            check_upgrade(&head(GOOD, "GET")).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn refusals_in_gorilla_order() {
        assert!(matches!(
            check_upgrade(&head("", "GET")),
            Err(Refusal::BadRequest(_))
        ));
        assert!(matches!(
            check_upgrade(&head("Connection: upgrade\r\n", "GET")),
            Err(Refusal::BadRequest(_))
        ));
        assert_eq!(check_upgrade(&head(GOOD, "POST")), Err(Refusal::Method));
        let v8 = GOOD.replace("Version: 13", "Version: 8");
        assert_eq!(check_upgrade(&head(&v8, "GET")), Err(Refusal::Version));
        for bad in ["", "abc", "dGhlIHNhbXBsZSBub25jZQ=!", "dGhlIHNhbXBsZSBub25jZQ"] {
            let h = GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", bad);
            assert!(
                matches!(check_upgrade(&head(&h, "GET")), Err(Refusal::BadRequest(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn envelope_query() {
        assert!(envelope_requested("envelope=1"));
        assert!(envelope_requested("a=b&envelope=true"));
        assert!(envelope_requested("envelope"));
        assert!(!envelope_requested(""));
        assert!(!envelope_requested("envelope=0"));
        assert!(!envelope_requested("envelopes=1"));
    }

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

    /// A client frame: `first` is the FIN/opcode byte; masked with a
    /// fixed key (the watcher never unmasks).
    fn frame(first: u8, len: usize, masked: bool) -> Vec<u8> {
        let mut f = vec![first];
        let mask_bit = if masked { 0x80 } else { 0 };
        if len < 126 {
            f.push(mask_bit | len as u8);
        } else if len <= usize::from(u16::MAX) {
            f.push(mask_bit | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            f.push(mask_bit | 127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
        if masked {
            f.extend_from_slice(&[1, 2, 3, 4]);
        }
        f.extend(std::iter::repeat_n(b'x', len));
        f
    }

    const TEXT: u8 = 0x01;
    const CONT: u8 = 0x00;
    const FIN: u8 = 0x80;
    const PING: u8 = 0x89;
    const CLOSE: u8 = 0x88;

    /// Feeds `bytes` in two pieces split at `at`; returns the frames seen
    /// and where (in the whole stream) the watcher cut, if it did.
    fn feed_split(bytes: &[u8], at: usize) -> (usize, Option<usize>, FrameWatch) {
        let mut w = FrameWatch::default();
        let a = w.feed(&bytes[..at]);
        if let Some(cut) = a.cut {
            return (a.frames, Some(cut), w);
        }
        let b = w.feed(&bytes[at..]);
        (a.frames + b.frames, b.cut.map(|c| at + c), w)
    }

    /// Every length form, masked and not, data and control frames: the
    /// same frames are seen however the input is split, and the watcher
    /// ends exactly at a frame boundary.
    #[test]
    fn frames_are_followed_across_every_split_point() {
        let parts = [
            frame(TEXT, 0, true),
            frame(CONT, 125, true),
            frame(PING, 4, true),
            frame(CONT, 126, true),
            frame(CONT, 65_535, false),
            frame(FIN | CONT, 65_536, true),
            frame(FIN | TEXT, 300, false),
            frame(CLOSE, 2, true),
        ];
        let stream: Vec<u8> = parts.concat();
        for at in 0..=stream.len() {
            let (frames, cut, w) = feed_split(&stream, at);
            assert_eq!((frames, cut), (parts.len(), None), "split at {at}");
            assert_eq!(w.step, Step::Opcode, "split at {at}");
            assert_eq!(w.fragments, 0, "split at {at}");
        }
        // Byte by byte, too.
        let mut w = FrameWatch::default();
        let frames: usize = stream.chunks(1).map(|b| w.feed(b).frames).sum();
        assert_eq!(frames, parts.len());
        // And tungstenite sees the same frames in the same bytes.
        let mut sock = tungstenite::protocol::frame::FrameSocket::new(std::io::Cursor::new(stream));
        let mut seen = 0;
        while let Ok(Some(_)) = sock.read(None) {
            seen += 1;
        }
        assert_eq!(seen, parts.len());
    }

    /// A message of `data` data frames (all but the last without FIN),
    /// with a ping after each of the first few: pings never count.
    fn message(data: usize) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut starts = Vec::new();
        for i in 0..data {
            let op = if i == 0 { TEXT } else { CONT };
            let fin = if i + 1 == data { FIN } else { 0 };
            starts.push(out.len());
            out.extend(frame(fin | op, usize::from(i == 0), true));
            if i < 3 {
                out.extend(frame(PING, 0, true));
            }
        }
        (out, starts)
    }

    #[test]
    fn a_message_of_256_frames_passes_and_257_are_cut_at_the_last() {
        let (ok, _) = message(usize::from(MAX_FRAGMENTS));
        // Two of them back to back: the count starts again per message.
        let twice = [ok.clone(), ok.clone()].concat();
        for at in 0..=twice.len() {
            let (frames, cut, w) = feed_split(&twice, at);
            assert_eq!(cut, None, "split at {at}");
            assert_eq!(frames, 2 * (256 + 3));
            assert!(!w.tripped());
        }
        let (over, starts) = message(usize::from(MAX_FRAGMENTS) + 1);
        let last = starts[256];
        for at in 0..=over.len() {
            let (_, cut, w) = feed_split(&over, at);
            assert_eq!(cut, Some(last), "split at {at}");
            assert!(w.tripped());
        }
        // Once tripped, nothing more passes.
        let mut w = FrameWatch::default();
        assert_eq!(w.feed(&over).cut, Some(last));
        assert_eq!(w.feed(&frame(FIN | TEXT, 1, true)).cut, Some(0));
    }

    #[test]
    fn every_close_code_has_a_reason_that_fits_a_close_frame() {
        for code in [
            close::GOING_AWAY,
            close::PROTOCOL_ERROR,
            close::INVALID_DATA,
            close::TOO_BIG,
            close::DROPPED,
            close::DROPPED_FOR_GOOD,
            close::SLOW_CONSUMER,
            close::MALFORMED,
            close::TOKEN_REJECTED,
            close::OTHER_USER,
            close::REGISTER_TIMEOUT,
            close::TOO_MANY_EVENTS,
        ] {
            assert!(close::REASONS.iter().any(|(c, _)| *c == code), "{code}");
            let r = close::reason(code);
            assert!(!r.is_empty() && r.len() <= close::MAX_REASON_BYTES, "{code}");
            assert_eq!(close::fitted(code, ""), r);
        }
        assert_eq!(
            close::reason(close::DROPPED_FOR_GOOD),
            "dropped, do not reconnect"
        );
        assert_eq!(close::fitted(4401, "token expired"), "token expired");
        let long = "é".repeat(100);
        let fitted = close::fitted(4401, &long);
        assert!(fitted.len() <= close::MAX_REASON_BYTES && long.starts_with(fitted));
        assert_eq!(fitted.len(), 122);
    }

    #[test]
    fn error_mapping() {
        use tungstenite::error::CapacityError;
        let too_long = tungstenite::Error::Capacity(CapacityError::MessageTooLong { size: 2, max_size: 1 });
        assert_eq!(classify(&too_long), Failure::Close(close::TOO_BIG));
        assert_eq!(
            classify(&tungstenite::Error::Utf8("x".into())),
            Failure::Close(close::INVALID_DATA)
        );
        let reset = tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake);
        assert_eq!(classify(&reset), Failure::Drop);
        let proto = tungstenite::Error::Protocol(ProtocolError::NonZeroReservedBits);
        assert_eq!(classify(&proto), Failure::Close(close::PROTOCOL_ERROR));
        assert_eq!(classify(&tungstenite::Error::ConnectionClosed), Failure::Drop);
    }
}
