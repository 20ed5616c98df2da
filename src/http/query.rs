//! Query strings: `a=1&b=x%20y`, percent-decoded, `+` as a space (the
//! form encoding browsers and `curl --data-urlencode -G` produce).

use super::chunked::hex_value as hex;
use std::borrow::Cow;

/// The `key=value` pairs of `query`, decoded; a key without `=` has an
/// empty value. `None` for a pair that does not decode to UTF-8.
pub fn pairs(query: &str) -> impl Iterator<Item = Option<(Cow<'_, str>, Cow<'_, str>)>> {
    query.split('&').filter(|kv| !kv.is_empty()).map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        Some((decode(k)?, decode(v)?))
    })
}

/// Whether switch `name` is on: `name`, `name=1`, `name=true`, `name=yes`.
pub fn flag(query: &str, name: &str) -> bool {
    query.split('&').any(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, "1"));
        k == name && matches!(v, "1" | "true" | "yes")
    })
}

/// Percent-decodes `s` (`+` is a space); a `%` not followed by two hex
/// digits stays as it is.
pub fn decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.contains(['%', '+']) {
        return Some(Cow::Borrowed(s));
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(decode("a").as_deref(), Some("a"));
        assert_eq!(decode("a+b%20c").as_deref(), Some("a b c"));
        assert_eq!(decode("chat%3Aroom%2F1").as_deref(), Some("chat:room/1"));
        assert_eq!(decode("%E2%9C%93").as_deref(), Some("✓"));
        assert_eq!(decode("100%").as_deref(), Some("100%"));
        assert_eq!(decode("%zz%4").as_deref(), Some("%zz%4"));
        assert_eq!(decode("%ff"), None, "not UTF-8");
    }

    #[test]
    fn pairs_and_flags() {
        let got: Vec<_> = pairs("event=a&event=b%20c&token=t&envelope&&x=")
            .map(|p| p.map(|(k, v)| (k.into_owned(), v.into_owned())))
            .collect();
        assert_eq!(
            got,
            [
                ("event", "a"),
                ("event", "b c"),
                ("token", "t"),
                ("envelope", ""),
                ("x", "")
            ]
            .map(|(k, v)| Some((k.to_string(), v.to_string())))
        );
        assert!(flag("envelope=1", "envelope"));
        assert!(flag("a=b&envelope=true", "envelope"));
        assert!(flag("envelope", "envelope"));
        assert!(!flag("", "envelope"));
        assert!(!flag("envelope=0", "envelope"));
        assert!(!flag("envelopes=1", "envelope"));
    }
}
