//! How a JSON key names a field, in commands and push bodies alike: the Go
//! seed's `encoding/json` matched field names ignoring ASCII case, so
//! `{"Token": ...}` worked there and must work here.

use std::borrow::Cow;

/// One field being looked for among an object's keys: the exact key wins;
/// else the smallest key equal to the name ignoring case; of repeated keys
/// the last value counts.
pub struct Field<'a, T> {
    exact: Option<T>,
    folded: Option<(Cow<'a, str>, T)>,
}

impl<'a, T> Field<'a, T> {
    pub fn new() -> Self {
        Field {
            exact: None,
            folded: None,
        }
    }

    /// Offers a key (equal to `name` ignoring case) and its value.
    pub fn offer(&mut self, name: &str, key: Cow<'a, str>, value: T) {
        if key == name {
            self.exact = Some(value);
        } else if self.folded.as_ref().is_none_or(|(k, _)| key <= *k) {
            self.folded = Some((key, value));
        }
    }

    /// Whether any key named it.
    pub fn is_offered(&self) -> bool {
        self.exact.is_some() || self.folded.is_some()
    }

    pub fn take(self) -> Option<T> {
        self.exact.or(self.folded.map(|(_, v)| v))
    }
}

/// The value of field `name` among `entries` (an object's key-value pairs).
pub fn lookup<'a, T>(entries: impl IntoIterator<Item = (&'a String, T)>, name: &str) -> Option<T> {
    let mut field = Field::new();
    for (key, value) in entries {
        if key.eq_ignore_ascii_case(name) {
            field.offer(name, Cow::Borrowed(key.as_str()), value);
        }
    }
    field.take()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_first_then_the_smallest_folded_key() {
        let keys = ["TOKEN", "Token", "token"].map(String::from);
        let entries = || keys.iter().zip([1, 2, 3]);
        assert_eq!(lookup(entries(), "token"), Some(3));
        assert_eq!(lookup(keys[..2].iter().zip([1, 2]), "token"), Some(1));
        assert_eq!(lookup(entries(), "event"), None);
    }
}
