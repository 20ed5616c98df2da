//! A pushed message prepared once and shared by every receiver: each
//! form a receiver may want (WebSocket raw or envelope, SSE raw or
//! envelope, chunked or not) is encoded at most once per push, on first
//! use, and the same bytes are written to every connection that wants it.
//!
//! Also the size rule of SPEC §12: a message whose biggest form would not
//! fit a receiver's backlog is refused at the push (`fits`), instead of
//! closing every receiver with 4008.

use crate::session::sse;
use crate::session::ws::data_frame;
use serde::Serialize;
use serde_json::Value;
use std::borrow::Cow;
use std::cell::OnceCell;
use std::rc::Rc;

/// The envelope a receiver in envelope mode gets: `{"event":E,"message":M}`.
struct Envelope<'a> {
    event: &'a str,
    message: &'a Value,
}

impl Serialize for Envelope<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("event", self.event)?;
        map.serialize_entry("message", self.message)?;
        map.end()
    }
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
    message: &'a Value,
    text: Cow<'a, str>,
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
            message,
            text: raw_text(message),
            envelope: OnceCell::new(),
            ws: Default::default(),
            sse: Default::default(),
        }
    }

    fn envelope_text(&self) -> &str {
        self.envelope.get_or_init(|| {
            let env = Envelope {
                event: self.event,
                message: self.message,
            };
            serde_json::to_string(&env).unwrap_or_default()
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
            let mut block = Vec::with_capacity(sse::event_block_len(self.event, text, None));
            sse::event_block(&mut block, self.event, text, None);
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
    let envelope = json_len(&Envelope { event, message });
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
