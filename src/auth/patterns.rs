//! Which events a token allows (SPEC §9): a list of patterns, each an
//! exact event name or a prefix ending in `*` (`chat:*`; `*` alone allows
//! everything). No regex, no globbing inside a name: a register is
//! checked against at most [`MAX_PATTERNS`] patterns of at most 256 bytes,
//! so the check costs the same whatever the number of connections, and a
//! push never looks at patterns at all (only registers are checked).
//!
//! A token without the claim (or token-file column) allows every event and
//! carries no `Patterns`: that case costs nothing per connection.

use crate::names::MAX_NAME_BYTES;
use serde_json::Value;

/// Most patterns one token may carry. A claim with more is a rejected
/// token (4401 `too many event patterns`), so a hostile token cannot make
/// every register of its connection scan thousands of entries.
pub const MAX_PATTERNS: usize = 256;

/// Why a list of patterns is refused; `reason()` is what the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternError {
    /// The JWT claim is not an array, or holds something else than strings.
    NotStrings,
    TooMany,
    /// A pattern longer than an event name may be.
    TooLong,
}

impl PatternError {
    pub fn reason(self) -> &'static str {
        match self {
            PatternError::NotStrings => "events claim is not an array of strings",
            PatternError::TooMany => "too many event patterns",
            PatternError::TooLong => "event pattern too long",
        }
    }
}

/// One pattern's place in `Patterns::text`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u16,
    /// Ended in `*`: matches every event that starts with the text.
    prefix: bool,
}

/// The events a token allows, checked at register (and SSE open).
///
/// Stored as one string and one small array whatever the number of
/// patterns (two allocations, not one per pattern): a token-file line's
/// patterns are shared by every connection that uses it, a JWT's belong to
/// its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patterns {
    /// The patterns back to back, without their trailing `*`.
    text: Box<str>,
    spans: Box<[Span]>,
}

/// Appends one pattern to the text and its span.
fn add(text: &mut String, spans: &mut Vec<Span>, p: &str) -> Result<(), PatternError> {
    let (body, prefix) = match p.strip_suffix('*') {
        Some(body) => (body, true),
        None => (p, false),
    };
    if body.len() > MAX_NAME_BYTES {
        return Err(PatternError::TooLong);
    }
    // At most 256 patterns of 256 bytes: both fit their fields.
    spans.push(Span {
        start: text.len() as u32,
        len: body.len() as u16,
        prefix,
    });
    text.push_str(body);
    Ok(())
}

impl Patterns {
    /// Builds the list; more than [`MAX_PATTERNS`] items is refused before
    /// the rest is looked at.
    pub fn new<I, S>(items: I) -> Result<Patterns, PatternError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut text = String::new();
        let mut spans = Vec::new();
        for item in items {
            if spans.len() == MAX_PATTERNS {
                return Err(PatternError::TooMany);
            }
            add(&mut text, &mut spans, item.as_ref())?;
        }
        Ok(Patterns {
            text: text.into_boxed_str(),
            spans: spans.into_boxed_slice(),
        })
    }

    /// From a JWT's `events` claim: an array of strings, nothing else.
    /// Parsed on every register with such a token, so the text and spans
    /// are allocated once, at their size.
    pub fn from_claim(claim: &Value) -> Result<Patterns, PatternError> {
        let Value::Array(items) = claim else {
            return Err(PatternError::NotStrings);
        };
        if items.len() > MAX_PATTERNS {
            return Err(PatternError::TooMany);
        }
        let mut bytes = 0;
        for item in items {
            let p = item.as_str().ok_or(PatternError::NotStrings)?;
            bytes += p.len() - usize::from(p.ends_with('*'));
        }
        let mut text = String::with_capacity(bytes);
        let mut spans = Vec::with_capacity(items.len());
        for item in items {
            add(&mut text, &mut spans, item.as_str().unwrap_or_default())?;
        }
        Ok(Patterns {
            text: text.into_boxed_str(),
            spans: spans.into_boxed_slice(),
        })
    }

    /// Whether `event` is allowed: equal to an exact pattern, or starting
    /// with a prefix pattern's text.
    pub fn allows(&self, event: &str) -> bool {
        self.spans.iter().any(|s| {
            let start = s.start as usize;
            let p = &self.text[start..start + usize::from(s.len)];
            if s.prefix {
                event.starts_with(p)
            } else {
                event == p
            }
        })
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(items: &[&str]) -> Patterns {
        Patterns::new(items).unwrap()
    }

    #[test]
    fn exact_names_and_prefixes() {
        let chat = p(&["chat:*", "news", "user:42"]);
        for ok in ["chat:", "chat:room-1", "chat:*", "news", "user:42"] {
            assert!(chat.allows(ok), "{ok}");
        }
        for no in [
            "chat",
            "Chat:room",
            "news2",
            "new",
            "user:4",
            "user:420",
            "",
            "xchat:1",
        ] {
            assert!(!chat.allows(no), "{no}");
        }
    }

    #[test]
    fn a_star_alone_allows_all_and_an_empty_list_none() {
        let all = p(&["*"]);
        for e in ["a", "chat:1", "*", "é"] {
            assert!(all.allows(e), "{e}");
        }
        let none = p(&[]);
        assert!(none.is_empty());
        for e in ["a", "*", ""] {
            assert!(!none.allows(e), "{e}");
        }
    }

    /// Only a trailing `*` is special: one inside a name is a character.
    #[test]
    fn a_star_inside_is_literal() {
        let x = p(&["a*b", "c**"]);
        assert!(x.allows("a*b"));
        assert!(!x.allows("axb"));
        assert!(x.allows("c*"), "prefix \"c*\"");
        assert!(x.allows("c*d"));
        assert!(!x.allows("cd"));
    }

    #[test]
    fn multibyte_prefixes_match_bytes_exactly() {
        let x = p(&["über:*", "日本"]);
        assert!(x.allows("über:1"));
        assert!(x.allows("日本"));
        assert!(!x.allows("日"));
        assert!(!x.allows("uber:1"));
    }

    #[test]
    fn claims_must_be_arrays_of_strings() {
        let ok = Patterns::from_claim(&json!(["chat:*", "news"])).unwrap();
        assert_eq!(ok.len(), 2);
        assert!(ok.allows("chat:x") && ok.allows("news"));
        assert!(Patterns::from_claim(&json!([])).unwrap().is_empty());
        for bad in [
            json!("chat:*"),
            json!({"a": 1}),
            json!(null),
            json!(5),
            json!(true),
            json!(["a", 1]),
            json!(["a", null]),
            json!([["a"]]),
            json!([{"p": "a"}]),
        ] {
            assert_eq!(Patterns::from_claim(&bad), Err(PatternError::NotStrings), "{bad}");
        }
    }

    #[test]
    fn limits_on_count_and_length() {
        let at: Vec<String> = (0..MAX_PATTERNS).map(|i| format!("e{i}")).collect();
        assert_eq!(Patterns::new(&at).unwrap().len(), MAX_PATTERNS);
        let over: Vec<String> = (0..=MAX_PATTERNS).map(|i| format!("e{i}")).collect();
        assert_eq!(Patterns::new(&over), Err(PatternError::TooMany));
        let claim = Value::Array((0..10_000).map(|i| Value::from(format!("e{i}"))).collect());
        assert_eq!(Patterns::from_claim(&claim), Err(PatternError::TooMany));
        // The count is refused before the items are looked at.
        let mixed = Value::Array((0..10_000).map(Value::from).collect());
        assert_eq!(Patterns::from_claim(&mixed), Err(PatternError::TooMany));
        let long = "x".repeat(MAX_NAME_BYTES);
        assert!(Patterns::new([&long, &format!("{long}*")]).is_ok());
        assert_eq!(Patterns::new([format!("{long}x")]), Err(PatternError::TooLong));
        // The biggest list fits its offsets.
        let big: Vec<String> = (0..MAX_PATTERNS).map(|i| format!("{i:0>256}")).collect();
        let big = Patterns::new(&big).unwrap();
        assert!(big.allows(&format!("{:0>256}", MAX_PATTERNS - 1)));
        assert!(!big.allows(&format!("{:0>256}", MAX_PATTERNS)));
        for e in [
            PatternError::NotStrings,
            PatternError::TooMany,
            PatternError::TooLong,
        ] {
            assert!(!e.reason().is_empty() && e.reason().len() <= 123);
        }
        assert_eq!(PatternError::TooMany.reason(), "too many event patterns");
    }
}
