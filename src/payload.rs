//! A pushed message prepared once and shared by every receiver: each
//! form a receiver may want (WebSocket raw or envelope, SSE raw or
//! envelope, chunked or not) is encoded at most once per push, on first
//! use, and the same bytes are written to every connection that wants it.
//!
//! Also the size rule of SPEC §12: a message whose biggest form would not
//! fit a receiver's backlog is refused at the push (`fits`), instead of
//! closing every receiver with 4008.

use crate::outbound::KeyTag;
use crate::session::sse;
use crate::session::ws::data_frame;
use serde::Serialize;
use serde_json::Value;
use std::borrow::Cow;
use std::cell::OnceCell;
use std::rc::Rc;

/// The envelope a receiver in envelope mode gets: `{"event":E,"message":M}`,
/// and `"cursor":C` after them with history on (SPEC §8).
struct Envelope<'a> {
    event: &'a str,
    message: &'a Value,
    cursor: Option<&'a str>,
}

impl Serialize for Envelope<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(2 + usize::from(self.cursor.is_some())))?;
        map.serialize_entry("event", self.event)?;
        map.serialize_entry("message", self.message)?;
        if let Some(c) = self.cursor {
            map.serialize_entry("cursor", c)?;
        }
        map.end()
    }
}

/// The envelope of a message kept as text (a replay from history): the
/// same bytes `Envelope` writes for the `Value` it came from, since a
/// non-string message is kept as its compact JSON.
fn stored_envelope(event: &str, text: &str, is_string: bool, cursor: Option<&str>) -> String {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut out = String::with_capacity(text.len() + event.len() + 48);
    out.push_str("{\"event\":");
    out.push_str(&quote(event));
    out.push_str(",\"message\":");
    if is_string {
        out.push_str(&quote(text));
    } else {
        out.push_str(text);
    }
    if let Some(c) = cursor {
        out.push_str(",\"cursor\":");
        out.push_str(&quote(c));
    }
    out.push('}');
    out
}

/// Where a payload's message comes from.
enum Msg<'a> {
    /// A push: the checked JSON value.
    Value(&'a Value),
    /// A replay: the raw text, and whether it was a JSON string.
    Stored { is_string: bool },
}

/// The message as a raw receiver gets it: a string byte for byte (as the
/// seed did), any other value as its compact JSON.
fn raw_text(message: &Value) -> Cow<'_, str> {
    match message {
        Value::String(s) => Cow::Borrowed(s.as_str()),
        other => Cow::Owned(other.to_string()),
    }
}

pub struct Payload<'a> {
    event: &'a str,
    message: Msg<'a>,
    text: Cow<'a, str>,
    /// The message's cursor, with history on.
    cursor: Option<&'a str>,
    /// Its latest-value key (stream and key), if it has one.
    key: Option<KeyTag>,
    envelope: OnceCell<String>,
    /// WebSocket frames: raw, envelope.
    ws: [OnceCell<Rc<[u8]>>; 2],
    /// SSE events: `[envelope as usize * 2 + chunked as usize]`.
    sse: [OnceCell<Rc<[u8]>>; 4],
}

impl<'a> Payload<'a> {
    pub fn new(event: &'a str, message: &'a Value) -> Payload<'a> {
        Payload {
            event,
            message: Msg::Value(message),
            text: raw_text(message),
            cursor: None,
            key: None,
            envelope: OnceCell::new(),
            ws: Default::default(),
            sse: Default::default(),
        }
    }

    /// A message kept in history as its raw text (see `history::Item`).
    pub fn stored(event: &'a str, text: &'a str, is_string: bool) -> Payload<'a> {
        Payload {
            event,
            message: Msg::Stored { is_string },
            text: Cow::Borrowed(text),
            cursor: None,
            key: None,
            envelope: OnceCell::new(),
            ws: Default::default(),
            sse: Default::default(),
        }
    }

    /// With history on: the cursor goes into the envelope and SSE's `id:`.
    pub fn with_cursor(mut self, cursor: Option<&'a str>) -> Payload<'a> {
        self.cursor = cursor;
        self
    }

    pub fn with_key(mut self, key: Option<KeyTag>) -> Payload<'a> {
        self.key = key;
        self
    }

    pub fn key(&self) -> Option<&KeyTag> {
        self.key.as_ref()
    }

    pub fn event(&self) -> &str {
        self.event
    }

    /// The text a raw receiver gets (what history keeps).
    pub fn raw(&self) -> &str {
        &self.text
    }

    fn envelope_text(&self) -> &str {
        self.envelope.get_or_init(|| match self.message {
            Msg::Value(message) => {
                let env = Envelope {
                    event: self.event,
                    message,
                    cursor: self.cursor,
                };
                serde_json::to_string(&env).unwrap_or_default()
            }
            Msg::Stored { is_string } => stored_envelope(self.event, &self.text, is_string, self.cursor),
        })
    }

    /// The text a receiver gets, before any framing.
    fn text(&self, envelope: bool) -> &str {
        if envelope {
            self.envelope_text()
        } else {
            &self.text
        }
    }

    /// The WebSocket text frame.
    pub fn ws(&self, envelope: bool) -> &Rc<[u8]> {
        self.ws[usize::from(envelope)]
            .get_or_init(|| Rc::from(data_frame(true, self.text(envelope).as_bytes())))
    }

    /// The SSE event (one chunk when `chunked`).
    pub fn sse(&self, envelope: bool, chunked: bool) -> &Rc<[u8]> {
        self.sse[usize::from(envelope) * 2 + usize::from(chunked)].get_or_init(|| {
            let text = self.text(envelope);
            let mut block = Vec::with_capacity(sse::event_block_len(self.event, text, self.cursor));
            sse::event_block(&mut block, self.event, text, self.cursor);
            if !chunked {
                return Rc::from(block);
            }
            let mut framed = Vec::with_capacity(block.len() + sse::frame_overhead(block.len(), true));
            sse::put_frame(&mut framed, &block, true);
            Rc::from(framed)
        })
    }

    /// Message bytes one receiver got (the bytes-out counter).
    pub fn text_len(&self, envelope: bool) -> usize {
        self.text(envelope).len()
    }
}

/// Counts what is written to it: the length of a serialization without
/// keeping it.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn json_len(v: &(impl Serialize + ?Sized)) -> usize {
    let mut c = Counter(0);
    // Serializing strings and `Value`s cannot fail but by I/O, and
    // `Counter` never fails.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// Bytes of a message as a raw receiver gets it.
pub fn message_len(message: &Value) -> usize {
    match message {
        Value::String(s) => s.len(),
        other => json_len(other),
    }
}

/// Bytes of a WebSocket frame carrying `payload` bytes.
fn ws_frame_len(payload: usize) -> usize {
    payload
        + if payload < 126 {
            2
        } else if payload <= usize::from(u16::MAX) {
            4
        } else {
            10
        }
}

/// Bytes of the biggest form of this message any receiver can get: the
/// envelope (the text plus the event, the message escaped when it is a
/// string) on WebSocket, or an SSE event, whose raw form repeats `data: `
/// on every line of the text.
pub fn largest_form(event: &str, message: &Value) -> usize {
    let envelope = json_len(&Envelope {
        event,
        message,
        cursor: None,
    });
    let ws = ws_frame_len(envelope);
    let sse_env = sse::event_block_len(event, "", None) + envelope;
    let sse_raw = match message {
        Value::String(s) => sse::event_block_len(event, s, None),
        // Compact JSON has no line breaks: one `data:` line.
        other => sse::event_block_len(event, "", None) + json_len(other),
    };
    let sse = sse_env.max(sse_raw);
    ws.max(sse + sse::frame_overhead(sse, true))
}

/// The most a cursor adds to any form of a message: `,"cursor":"C"` in
/// the envelope and `id: C` in an SSE event (a cursor is at most 8 hex
/// digits and two 20-digit numbers with their dashes), and a longer chunk
/// size line.
pub const CURSOR_ROOM: usize = 128;

/// Keys that identify a latest-value message in a backlog: the stream
/// (user or broadcast: a connection has one user) and the key, one `Rc`
/// per push shared by every receiver.
pub fn key_tag(broadcast: bool, event: &str, key: &str) -> KeyTag {
    let kind = if broadcast { "b" } else { "u" };
    Rc::from(format!("{kind}\u{0}{event}\u{0}{key}"))
}

/// SPEC §12: whether every form of this message fits `limit` (the backlog
/// limit). Escaping makes a string at most six times longer and SSE lines
/// at most seven, so a short message is cleared without a pass over it;
/// only a near miss is measured.
pub fn fits(event: &str, message: &Value, limit: usize) -> bool {
    const WRAPPING: usize = 64;
    if let Value::String(m) = message {
        if WRAPPING + 7 * (event.len() + m.len()) <= limit {
            return true;
        }
    }
    largest_form(event, message) <= limit
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Decodes one of our server frames back to its text.
    fn text_of(frame: &[u8]) -> String {
        let mut sock = tungstenite::protocol::frame::FrameSocket::new(std::io::Cursor::new(frame.to_vec()));
        let f = sock.read(None).unwrap().expect("a frame");
        String::from_utf8(f.payload().to_vec()).unwrap()
    }

    #[test]
    fn websocket_text_and_envelope() {
        let m = json!("a \"quoted\" é");
        let p = Payload::new("ev", &m);
        assert_eq!(text_of(p.ws(false)), "a \"quoted\" é");
        assert_eq!(p.text_len(false), "a \"quoted\" é".len());
        let env: Value = serde_json::from_str(&text_of(p.ws(true))).unwrap();
        assert_eq!(env, json!({"event": "ev", "message": "a \"quoted\" é"}));
        assert_eq!(p.text_len(true), text_of(p.ws(true)).len());
        let m = json!({"b": 1, "a": [true, 2.5]});
        let p = Payload::new("ev", &m);
        let back: Value = serde_json::from_str(&text_of(p.ws(false))).unwrap();
        assert_eq!(back, m);
        assert!(!text_of(p.ws(false)).contains(' '));
        assert!(Rc::ptr_eq(p.ws(true), p.ws(true)), "built once");
    }

    #[test]
    fn sse_events_raw_and_envelope_chunked_or_not() {
        let m = json!("line 1\nline 2");
        let p = Payload::new("news", &m);
        assert_eq!(
            &**p.sse(false, false),
            b"event: news\ndata: line 1\ndata: line 2\n\n"
        );
        let env = r#"{"event":"news","message":"line 1\nline 2"}"#;
        let block = format!("event: news\ndata: {env}\n\n");
        assert_eq!(&**p.sse(true, false), block.as_bytes());
        assert_eq!(
            &**p.sse(true, true),
            format!("{:x}\r\n{block}\r\n", block.len()).as_bytes()
        );
        assert!(Rc::ptr_eq(p.sse(true, true), p.sse(true, true)), "built once");
    }

    /// With history on the envelope ends with the cursor and SSE events
    /// carry `id:`; a message replayed from its kept text is written with
    /// exactly the bytes it was pushed with.
    #[test]
    fn cursors_and_replayed_messages() {
        let messages = [
            json!("a \"quoted\" é\nline"),
            json!({"b": 1, "a": [true, 2.5, null, "x\u{0}"]}),
            json!(42),
            json!([]),
        ];
        for m in &messages {
            let live = Payload::new("ev\"", m).with_cursor(Some("c0ffee00-7"));
            let env: Value = serde_json::from_str(&text_of(live.ws(true))).unwrap();
            assert_eq!(
                env,
                json!({"event": "ev\"", "message": m, "cursor": "c0ffee00-7"})
            );
            assert!(text_of(live.ws(true)).ends_with(r#","cursor":"c0ffee00-7"}"#));
            let sse = String::from_utf8(live.sse(false, false).to_vec()).unwrap();
            assert!(sse.ends_with("\nid: c0ffee00-7\n\n"), "{sse}");
            let kept = Payload::stored("ev\"", live.raw(), m.is_string()).with_cursor(Some("c0ffee00-7"));
            for envelope in [false, true] {
                assert_eq!(live.ws(envelope), kept.ws(envelope), "{m}");
                for chunked in [false, true] {
                    assert_eq!(live.sse(envelope, chunked), kept.sse(envelope, chunked), "{m}");
                }
            }
            // Raw WebSocket messages never change: no room for a cursor.
            assert_eq!(live.ws(false), Payload::new("ev\"", m).ws(false));
        }
        let fat = "c".repeat(8) + "-" + &u64::MAX.to_string() + "-" + &u64::MAX.to_string();
        let m = json!("x");
        let p = Payload::new("e", &m).with_cursor(Some(&fat));
        let bare = Payload::new("e", &m);
        assert!(p.sse(true, true).len() - bare.sse(true, true).len() <= CURSOR_ROOM);
        assert!(p.ws(true).len() - bare.ws(true).len() <= CURSOR_ROOM);
    }

    /// The size check agrees with the frames actually built, on both sides
    /// of the limit, for strings that escape a lot, strings of many lines
    /// and other values.
    #[test]
    fn the_size_check_agrees_with_the_biggest_frame_built() {
        let messages = [
            json!("plain"),
            json!("\u{1}\"\\\n".repeat(300)),
            json!("\n".repeat(3000)),
            json!("é".repeat(5000)),
            json!({"k": [1, 2.5, "x\u{0}"], "n": null}),
            json!("x".repeat(70_000)),
        ];
        for m in &messages {
            let p = Payload::new("ev\"", m);
            let biggest = [
                p.ws(true),
                p.ws(false),
                p.sse(true, true),
                p.sse(false, true),
                p.sse(true, false),
                p.sse(false, false),
            ]
            .iter()
            .map(|f| f.len())
            .max()
            .unwrap();
            assert_eq!(largest_form("ev\"", m), biggest, "{m}");
            assert!(fits("ev\"", m, biggest));
            assert!(!fits("ev\"", m, biggest - 1));
            assert_eq!(message_len(m), p.text_len(false));
        }
    }
}
