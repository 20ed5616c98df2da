//! A pushed message, kept as the text receivers get.
//!
//! SPEC §2: a string message is sent byte for byte, any other JSON value
//! "as its compact JSON text". Compact means the sender's text without the
//! whitespace between tokens — not a re-serialisation: going through
//! `serde_json::Value` would sort the keys of an object (`{"z":1,"a":2}`
//! arrived as `{"a":2,"z":1}`) and rewrite numbers (`1e2` as `100.0`, a
//! 23-digit integer rounded to an `f64`). So a message is read from the
//! body as raw JSON, checked, compacted once, and every form a receiver
//! gets (raw, envelope, SSE, history, cluster record) is built from it.

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

/// A checked message: a non-empty string, or any other JSON value but
/// `null` (as compact JSON text).
#[derive(Debug, Clone)]
pub enum Message {
    Text(String),
    Json(Box<RawValue>),
}

impl Message {
    /// Checks a message as it appears in a push body (SPEC §2); the error
    /// is the reason shown after `request data illegal: `.
    pub fn from_raw(raw: &RawValue) -> Result<Message, String> {
        let compacted = compact(raw.get());
        let text = compacted.as_deref().unwrap_or(raw.get());
        let invalid = |e: serde_json::Error| format!("message is not valid JSON ({e})");
        if text.starts_with('"') {
            // Valid JSON (serde_json checked it), so a string without
            // escapes is exactly what lies between its quotes.
            let s: String = match text.get(1..text.len() - 1) {
                Some(inner) if !inner.contains('\\') => inner.to_string(),
                _ => serde_json::from_str(text).map_err(invalid)?,
            };
            if s.is_empty() {
                return Err("message is empty".into());
            }
            return Ok(Message::Text(s));
        }
        if text == "null" {
            return Err("message is null".into());
        }
        let json = match compacted {
            None => raw.to_owned(),
            Some(c) => RawValue::from_string(c).map_err(invalid)?,
        };
        Ok(Message::Json(json))
    }

    /// A message from the library's `Handle`: a string as is, anything
    /// else as `serde_json`'s compact text of the value.
    pub fn from_value(value: Value) -> Message {
        match value {
            Value::String(s) => Message::Text(s),
            other => match RawValue::from_string(other.to_string()) {
                Ok(json) => Message::Json(json),
                // A `Value` always prints as valid JSON; keep the text
                // rather than panic if that ever changed.
                Err(_) => Message::Text(other.to_string()),
            },
        }
    }

    /// The text a raw receiver gets: the string itself, or the compact JSON.
    pub fn text(&self) -> &str {
        match self {
            Message::Text(s) => s,
            Message::Json(j) => j.get(),
        }
    }

    /// Whether it was a JSON string (an envelope quotes it; a replay from
    /// history needs to know).
    pub fn is_string(&self) -> bool {
        matches!(self, Message::Text(_))
    }
}

impl PartialEq for Message {
    fn eq(&self, other: &Message) -> bool {
        self.is_string() == other.is_string() && self.text() == other.text()
    }
}

/// As JSON: a string quoted, other values as their compact text (what a
/// cluster record and an envelope carry).
impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Message::Text(t) => s.serialize_str(t),
            Message::Json(j) => j.serialize(s),
        }
    }
}

/// `json` (valid JSON text) without whitespace between tokens; `None` when
/// it has none to remove. Whitespace inside strings is content and stays;
/// a string ends at a `"` not escaped by a backslash. Only ASCII bytes
/// decide, and no byte of a multi-byte UTF-8 character is ASCII, so
/// working on chars keeps every character whole.
fn compact(json: &str) -> Option<String> {
    let is_space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r');
    let mut in_string = false;
    let mut escaped = false;
    let mut out: Option<String> = None;
    for (i, c) in json.char_indices() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if is_space(c) {
            // The first whitespace found: start the copy with what came
            // before it.
            out.get_or_insert_with(|| {
                let mut s = String::with_capacity(json.len());
                s.push_str(&json[..i]);
                s
            });
            continue;
        }
        if let Some(out) = out.as_mut() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).expect("valid JSON")
    }

    fn checked(text: &str) -> Result<Message, String> {
        Message::from_raw(&raw(text))
    }

    #[test]
    fn objects_keep_their_key_order_and_numbers_their_text() {
        let m = checked(r#"{ "z" : 1, "a" : [ true , null ], "n": 1e2, "big": 12345678901234567890123 }"#)
            .unwrap();
        assert_eq!(
            m.text(),
            r#"{"z":1,"a":[true,null],"n":1e2,"big":12345678901234567890123}"#
        );
        assert!(!m.is_string());
    }

    #[test]
    fn whitespace_inside_strings_is_content() {
        let m = checked("{\"a b\" :\t\"c \\\" d\\\\\" ,\n\"e\":\"\u{e9} \u{1f600}\"}").unwrap();
        assert_eq!(m.text(), "{\"a b\":\"c \\\" d\\\\\",\"e\":\"\u{e9} \u{1f600}\"}");
    }

    #[test]
    fn compact_text_is_borrowed_when_already_compact() {
        assert_eq!(compact(r#"{"a":[1,2]}"#), None);
        assert_eq!(compact(" 5 ").as_deref(), Some("5"));
        assert_eq!(checked(" null ").err().as_deref(), Some("message is null"));
    }

    #[test]
    fn strings_are_unescaped_and_sent_as_is() {
        let m = checked(r#""line\nbreak \u00e9""#).unwrap();
        assert_eq!(m.text(), "line\nbreak \u{e9}");
        assert!(m.is_string());
        assert_eq!(serde_json::to_string(&m).unwrap(), r#""line\nbreak é""#);
    }

    #[test]
    fn null_and_empty_are_refused() {
        assert_eq!(checked("null"), Err("message is null".into()));
        assert_eq!(checked(r#""""#), Err("message is empty".into()));
        assert!(checked("0").is_ok());
        assert!(checked("false").is_ok());
        assert!(checked("[]").is_ok());
    }

    #[test]
    fn serializes_as_the_json_it_was() {
        let m = checked(r#"{"z": 1, "a": 2}"#).unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"z":1,"a":2}"#);
        assert_eq!(m, m.clone());
        let lib = Message::from_value(serde_json::json!([1, "b"]));
        assert_eq!(lib.text(), r#"[1,"b"]"#);
        assert_eq!(Message::from_value(Value::from("hi")).text(), "hi");
    }

    /// Random JSON texts with random whitespace between tokens (a fixed
    /// seed, so a failure repeats): the compact text equals the same
    /// value written with no whitespace at all, and parses to the same
    /// value as the original.
    #[test]
    fn compaction_keeps_the_value_and_only_drops_whitespace() {
        struct Rng(u64);
        impl Rng {
            fn below(&mut self, n: u64) -> u64 {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0 % n
            }
            fn pick<'a>(&mut self, of: &[&'a str]) -> &'a str {
                of[self.below(of.len() as u64) as usize]
            }
        }
        struct Out {
            spaced: String,
            tight: String,
        }
        impl Out {
            fn both(&mut self, t: &str) {
                self.spaced.push_str(t);
                self.tight.push_str(t);
            }
            fn ws(&mut self, r: &mut Rng) {
                for _ in 0..r.below(3) {
                    self.spaced.push_str(r.pick(&[" ", "\t", "\n", "\r"]));
                }
            }
        }
        const ATOMS: &[&str] = &[
            "true",
            "false",
            "null",
            "-0",
            "1e2",
            "0.1000",
            "123456789012345678901234",
            r#""a b""#,
            r#"" \" \\ ""#,
            r#""\u00e9\n""#,
            "\"\u{1f600} \\t\"",
            r#""""#,
            "7",
        ];
        fn value(r: &mut Rng, o: &mut Out, depth: u32) {
            o.ws(r);
            match if depth > 3 { 0 } else { r.below(3) } {
                0 => o.both(r.pick(ATOMS)),
                1 => {
                    o.both("[");
                    for i in 0..r.below(4) {
                        if i > 0 {
                            o.ws(r);
                            o.both(",");
                        }
                        value(r, o, depth + 1);
                    }
                    o.ws(r);
                    o.both("]");
                }
                _ => {
                    o.both("{");
                    for i in 0..r.below(4) {
                        if i > 0 {
                            o.ws(r);
                            o.both(",");
                        }
                        o.ws(r);
                        o.both(&format!("\"k {i}\""));
                        o.ws(r);
                        o.both(":");
                        value(r, o, depth + 1);
                    }
                    o.ws(r);
                    o.both("}");
                }
            }
            o.ws(r);
        }
        let mut r = Rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..2000 {
            let mut o = Out {
                spaced: String::new(),
                tight: String::new(),
            };
            value(&mut r, &mut o, 0);
            let compacted = compact(&o.spaced).unwrap_or_else(|| o.spaced.clone());
            assert_eq!(compacted, o.tight, "from {:?}", o.spaced);
            let a: Value = serde_json::from_str(&o.spaced).unwrap();
            let b: Value = serde_json::from_str(&compacted).unwrap();
            assert_eq!(a, b, "{:?}", o.spaced);
        }
    }
}
