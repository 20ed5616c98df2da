//! `/push`, `/broadcast` and `/drop`: checking the request body, and the
//! one prepared payload a push shares between all its receivers.
//!
//! A body is turned into a `PushRequest` here or refused with a one-line
//! reason; the loop never sees unchecked JSON.

use crate::command::field;
use crate::ws;
use serde_json::Value;
use std::cell::OnceCell;
use std::collections::HashSet;
use std::rc::Rc;

/// Which push endpoint a body was posted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Push,
    Broadcast,
    Drop,
}

/// A checked push-side request.
#[derive(Debug, Clone, PartialEq)]
pub enum PushRequest {
    /// Deliver to every connection of these users subscribed to `event`.
    /// Users are distinct, so nobody gets a message twice.
    Push {
        users: Vec<String>,
        event: String,
        message: Value,
    },
    /// Deliver to every connection subscribed to `event`.
    Broadcast { event: String, message: Value },
    /// Close the user's connections (those subscribed to `event` if given).
    Drop { user: String, event: Option<String> },
}

fn non_empty_string(v: Option<&Value>, name: &str) -> Result<String, String> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(format!("{name} is empty")),
        Some(_) => Err(format!("{name} must be a string")),
        None => Err(format!("{name} is missing")),
    }
}

/// SPEC §2: a non-empty string, or any other JSON value but null.
fn message(v: Option<&Value>) -> Result<Value, String> {
    match v {
        None => Err("message is missing".into()),
        Some(Value::Null) => Err("message is null".into()),
        Some(Value::String(s)) if s.is_empty() => Err("message is empty".into()),
        Some(v) => Ok(v.clone()),
    }
}

fn users(obj: &serde_json::Map<String, Value>) -> Result<Vec<String>, String> {
    match (field(obj, "userId"), field(obj, "userIds")) {
        (Some(_), Some(_)) => Err("give userId or userIds, not both".into()),
        (one, None) => Ok(vec![non_empty_string(one, "userId")?]),
        (None, Some(Value::Array(list))) => {
            if list.is_empty() {
                return Err("userIds is empty".into());
            }
            let mut seen = HashSet::new();
            let mut out = Vec::with_capacity(list.len());
            for v in list {
                let u = non_empty_string(Some(v), "each of userIds")?;
                if seen.insert(u.clone()) {
                    out.push(u);
                }
            }
            Ok(out)
        }
        (None, Some(_)) => Err("userIds must be an array of strings".into()),
    }
}

/// Checks a request body. The error is the reason shown after
/// `request data illegal: `.
pub fn parse(endpoint: Endpoint, body: &[u8]) -> Result<PushRequest, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        if e.is_eof() && body.iter().all(u8::is_ascii_whitespace) {
            "body is empty".to_string()
        } else {
            format!("body is not valid JSON ({e})")
        }
    })?;
    let Value::Object(obj) = value else {
        return Err("body must be a JSON object".into());
    };
    Ok(match endpoint {
        Endpoint::Push => PushRequest::Push {
            users: users(&obj)?,
            event: non_empty_string(field(&obj, "event"), "event")?,
            message: message(field(&obj, "message"))?,
        },
        Endpoint::Broadcast => PushRequest::Broadcast {
            event: non_empty_string(field(&obj, "event"), "event")?,
            message: message(field(&obj, "message"))?,
        },
        Endpoint::Drop => PushRequest::Drop {
            user: non_empty_string(field(&obj, "userId"), "userId")?,
            event: match field(&obj, "event") {
                None | Some(Value::Null) => None,
                v => Some(non_empty_string(v, "event")?),
            },
        },
    })
}

/// A pushed message framed once and shared by every receiving connection:
/// each receiver gets the same bytes, written straight from this buffer.
pub struct Payload<'a> {
    event: &'a str,
    message: &'a Value,
    /// Length of the raw message text (for the bytes-out counter).
    raw_len: usize,
    raw: Rc<[u8]>,
    envelope: OnceCell<Rc<[u8]>>,
}

impl<'a> Payload<'a> {
    pub fn new(event: &'a str, message: &'a Value) -> Payload<'a> {
        let text = match message {
            // A string is sent byte for byte, as the seed did.
            Value::String(s) => std::borrow::Cow::Borrowed(s.as_str()),
            other => std::borrow::Cow::Owned(other.to_string()),
        };
        Payload {
            event,
            message,
            raw_len: text.len(),
            raw: Rc::from(ws::data_frame(true, text.as_bytes())),
            envelope: OnceCell::new(),
        }
    }

    /// The encoded frame for one connection; the envelope form is built on
    /// first use only, so pushes with no envelope clients never pay for it.
    pub fn frame(&self, envelope: bool) -> &Rc<[u8]> {
        if !envelope {
            return &self.raw;
        }
        self.envelope.get_or_init(|| {
            let s = serde_json::json!({ "event": self.event, "message": self.message }).to_string();
            Rc::from(ws::data_frame(true, s.as_bytes()))
        })
    }

    /// Payload bytes of the frame `frame(envelope)` returns.
    pub fn payload_len(&self, envelope: bool) -> usize {
        if envelope {
            let f = self.frame(true);
            f.len() - header_len(f.len())
        } else {
            self.raw_len
        }
    }
}

/// Header size of a server frame of total length `total`.
fn header_len(total: usize) -> usize {
    if total < 2 + 126 {
        2
    } else if total <= 4 + usize::from(u16::MAX) {
        4
    } else {
        10
    }
}

/// `message sent to N clients` or `{"sent": N}`.
pub fn sent_body(n: usize, json: bool) -> String {
    if json {
        format!("{{\"sent\":{n}}}")
    } else {
        format!("message sent to {n} clients")
    }
}

/// `dropped N clients` or `{"dropped": N}`.
pub fn dropped_body(n: usize, json: bool) -> String {
    if json {
        format!("{{\"dropped\":{n}}}")
    } else {
        format!("dropped {n} clients")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn push(body: &str) -> Result<PushRequest, String> {
        parse(Endpoint::Push, body.as_bytes())
    }

    #[test]
    fn seed_push() {
        assert_eq!(
            push(r#"{"userId":"aaa","event":"topic1","message":"hi"}"#).unwrap(),
            PushRequest::Push {
                users: vec!["aaa".into()],
                event: "topic1".into(),
                message: json!("hi")
            }
        );
    }

    #[test]
    fn batch_users_are_distinct_in_order() {
        let r = push(r#"{"userIds":["b","a","b"],"event":"e","message":{"k":1}}"#).unwrap();
        assert_eq!(
            r,
            PushRequest::Push {
                users: vec!["b".into(), "a".into()],
                event: "e".into(),
                message: json!({"k": 1})
            }
        );
    }

    #[test]
    fn every_bad_body_has_a_reason() {
        let bad = [
            "",
            "   ",
            "{",
            "[]",
            "\"x\"",
            r#"{"event":"e","message":"m"}"#,
            r#"{"userId":"","event":"e","message":"m"}"#,
            r#"{"userId":5,"event":"e","message":"m"}"#,
            r#"{"userId":"u","message":"m"}"#,
            r#"{"userId":"u","event":"","message":"m"}"#,
            r#"{"userId":"u","event":"e"}"#,
            r#"{"userId":"u","event":"e","message":""}"#,
            r#"{"userId":"u","event":"e","message":null}"#,
            r#"{"userIds":[],"event":"e","message":"m"}"#,
            r#"{"userIds":"u","event":"e","message":"m"}"#,
            r#"{"userIds":["u",""],"event":"e","message":"m"}"#,
            r#"{"userIds":["u",1],"event":"e","message":"m"}"#,
            r#"{"userId":"u","userIds":["v"],"event":"e","message":"m"}"#,
        ];
        for b in bad {
            let e = push(b).expect_err(b);
            assert!(!e.is_empty() && !e.contains('\n'), "{b}: {e}");
        }
        assert!(parse(Endpoint::Push, b"\xff\xfe").is_err());
    }

    #[test]
    fn broadcast_and_drop() {
        assert_eq!(
            parse(Endpoint::Broadcast, br#"{"event":"e","message":[1,2]}"#).unwrap(),
            PushRequest::Broadcast {
                event: "e".into(),
                message: json!([1, 2])
            }
        );
        assert!(parse(Endpoint::Broadcast, br#"{"event":"e"}"#).is_err());
        assert_eq!(
            parse(Endpoint::Drop, br#"{"userId":"u"}"#).unwrap(),
            PushRequest::Drop {
                user: "u".into(),
                event: None
            }
        );
        assert_eq!(
            parse(Endpoint::Drop, br#"{"userId":"u","event":"e"}"#).unwrap(),
            PushRequest::Drop {
                user: "u".into(),
                event: Some("e".into())
            }
        );
        assert!(parse(Endpoint::Drop, br#"{"userId":"u","event":""}"#).is_err());
        assert!(parse(Endpoint::Drop, br#"{}"#).is_err());
    }

    /// Decodes one of our server frames back to its text.
    fn text_of(frame: &[u8]) -> String {
        let mut sock = tungstenite::protocol::frame::FrameSocket::new(std::io::Cursor::new(frame.to_vec()));
        let f = sock.read(None).unwrap().expect("a frame");
        String::from_utf8(f.payload().to_vec()).unwrap()
    }

    #[test]
    fn payload_text_and_envelope() {
        let m = json!("a \"quoted\" é");
        let p = Payload::new("ev", &m);
        assert_eq!(text_of(p.frame(false)), "a \"quoted\" é");
        assert_eq!(p.payload_len(false), "a \"quoted\" é".len());
        let env: Value = serde_json::from_str(&text_of(p.frame(true))).unwrap();
        assert_eq!(env, json!({"event": "ev", "message": "a \"quoted\" é"}));
        assert_eq!(p.payload_len(true), text_of(p.frame(true)).len());
        let m = json!({"b": 1, "a": [true, 2.5]});
        let p = Payload::new("ev", &m);
        let back: Value = serde_json::from_str(&text_of(p.frame(false))).unwrap();
        assert_eq!(back, m);
        assert!(!text_of(p.frame(false)).contains(' '));
        let big = json!("x".repeat(70_000));
        let p = Payload::new("ev", &big);
        assert_eq!(p.payload_len(true), text_of(p.frame(true)).len());
    }

    #[test]
    fn bodies() {
        assert_eq!(sent_body(3, false), "message sent to 3 clients");
        assert_eq!(sent_body(3, true), r#"{"sent":3}"#);
        assert_eq!(dropped_body(0, false), "dropped 0 clients");
        assert_eq!(dropped_body(2, true), r#"{"dropped":2}"#);
    }
}
