//! WebSocket specifics: upgrade checks, the accept key, the tungstenite
//! session settings for a push server, and which failure gets which close code.

use crate::config::Config;
use crate::http::request::{Head, Version};
use tungstenite::error::ProtocolError;
use tungstenite::protocol::WebSocketConfig;

/// Close codes of SPEC §1 (and the RFC 6455 ones the session uses).
pub mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const INVALID_DATA: u16 = 1007;
    pub const TOO_BIG: u16 = 1009;
    pub const DROPPED: u16 = 4000;
    pub const SLOW_CONSUMER: u16 = 4008;
    pub const MALFORMED: u16 = 4400;
    pub const TOKEN_REJECTED: u16 = 4401;
    pub const OTHER_USER: u16 = 4403;
    pub const REGISTER_TIMEOUT: u16 = 4408;
    pub const TOO_MANY_EVENTS: u16 = 4429;
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
