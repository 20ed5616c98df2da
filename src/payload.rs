//! A pushed message prepared once and shared by every receiver: each
//! form a receiver may want (WebSocket raw or envelope, SSE raw or
//! envelope, chunked or not) is encoded at most once per push, on first
//! use, and the same bytes are written to every connection that wants it.
//!
//! Also the size rule of SPEC §12: a message larger than a receiver's
//! backlog is refused at the push (`fits`), instead of closing every
//! receiver with 4008.

use crate::message::Message;
use crate::outbound::KeyTag;
use crate::session::sse;
use crate::session::ws::data_frame;
use std::cell::OnceCell;
use std::rc::Rc;

/// The envelope a receiver in envelope mode gets: `{"event":E,"message":M}`,
/// and `"cursor":C` after them with history on (SPEC §8). Built from the
/// message's text, so a push and its replay from history are the same
/// bytes.
fn envelope(event: &str, text: &str, is_string: bool, cursor: Option<&str>) -> String {
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

pub struct Payload<'a> {
    event: &'a str,
    /// The text a raw receiver gets (see `Message::text`).
    text: &'a str,
    /// Whether the message is a JSON string (the envelope quotes it).
    is_string: bool,
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
    pub fn new(event: &'a str, message: &'a Message) -> Payload<'a> {
        Payload::stored(event, message.text(), message.is_string())
    }

    /// A message kept in history as its raw text (see `history::Item`).
    pub fn stored(event: &'a str, text: &'a str, is_string: bool) -> Payload<'a> {
        Payload {
            event,
            text,
            is_string,
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
        self.text
    }

    /// Whether the message is a JSON string (what history keeps with it).
    pub fn is_string(&self) -> bool {
        self.is_string
    }

    fn envelope_text(&self) -> &str {
        self.envelope
            .get_or_init(|| envelope(self.event, self.text, self.is_string, self.cursor))
    }

    /// The text a receiver gets, before any framing.
    fn text(&self, envelope: bool) -> &str {
        if envelope {
            self.envelope_text()
        } else {
            self.text
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

/// Keys that identify a latest-value message in a backlog: the stream
/// (user or broadcast: a connection has one user) and the key, one `Rc`
/// per push shared by every receiver.
pub fn key_tag(broadcast: bool, event: &str, key: &str) -> KeyTag {
    let kind = if broadcast { "b" } else { "u" };
    Rc::from(format!("{kind}\u{0}{event}\u{0}{key}"))
}

/// SPEC §12: a message larger than the backlog limit is refused at the
/// push (413). "Larger" is the message itself, as a raw receiver gets it:
/// its envelope or SSE form may be a little longer, which the outbound
/// policy allows into an empty queue (`Outbound::admit`), so a message
/// that passes here reaches every receiver that reads.
pub fn fits(message: &Message, limit: usize) -> bool {
    message.text().len() <= limit
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn msg(v: Value) -> Message {
        Message::from_value(v)
    }

    /// Decodes one of our server frames back to its text.
    fn text_of(frame: &[u8]) -> String {
        let mut sock = tungstenite::protocol::frame::FrameSocket::new(std::io::Cursor::new(frame.to_vec()));
        let f = sock.read(None).unwrap().expect("a frame");
        String::from_utf8(f.payload().to_vec()).unwrap()
    }

    #[test]
    fn websocket_text_and_envelope() {
        let m = msg(json!("a \"quoted\" é"));
        let p = Payload::new("ev", &m);
        assert_eq!(text_of(p.ws(false)), "a \"quoted\" é");
        assert_eq!(p.text_len(false), "a \"quoted\" é".len());
        let env: Value = serde_json::from_str(&text_of(p.ws(true))).unwrap();
        assert_eq!(env, json!({"event": "ev", "message": "a \"quoted\" é"}));
        assert_eq!(p.text_len(true), text_of(p.ws(true)).len());
        let v = json!({"b": 1, "a": [true, 2.5]});
        let m = msg(v.clone());
        let p = Payload::new("ev", &m);
        let back: Value = serde_json::from_str(&text_of(p.ws(false))).unwrap();
        assert_eq!(back, v);
        assert!(!text_of(p.ws(false)).contains(' '));
        assert!(Rc::ptr_eq(p.ws(true), p.ws(true)), "built once");
    }

    #[test]
    fn sse_events_raw_and_envelope_chunked_or_not() {
        let m = msg(json!("line 1\nline 2"));
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
        for v in &messages {
            let m = &msg(v.clone());
            let live = Payload::new("ev\"", m).with_cursor(Some("c0ffee00-7"));
            let env: Value = serde_json::from_str(&text_of(live.ws(true))).unwrap();
            assert_eq!(
                env,
                json!({"event": "ev\"", "message": v, "cursor": "c0ffee00-7"})
            );
            assert!(text_of(live.ws(true)).ends_with(r#","cursor":"c0ffee00-7"}"#));
            let sse = String::from_utf8(live.sse(false, false).to_vec()).unwrap();
            assert!(sse.ends_with("\nid: c0ffee00-7\n\n"), "{sse}");
            let kept = Payload::stored("ev\"", live.raw(), m.is_string()).with_cursor(Some("c0ffee00-7"));
            for envelope in [false, true] {
                assert_eq!(live.ws(envelope), kept.ws(envelope), "{v}");
                for chunked in [false, true] {
                    assert_eq!(live.sse(envelope, chunked), kept.sse(envelope, chunked), "{v}");
                }
            }
            // Raw WebSocket messages never change: no room for a cursor.
            assert_eq!(live.ws(false), Payload::new("ev\"", m).ws(false));
        }
    }

    /// The size rule is the message's own length, as a raw receiver gets
    /// it: a string's bytes, not its escaped form.
    #[test]
    fn the_size_rule_is_the_message_itself() {
        let m = msg(json!("\n".repeat(1000)));
        assert!(fits(&m, 1000));
        assert!(!fits(&m, 999));
        let m =
            Message::from_raw(&serde_json::value::RawValue::from_string(r#"{ "k" : 1 }"#.into()).unwrap())
                .unwrap();
        assert!(fits(&m, 7));
        assert!(!fits(&m, 6));
    }
}
