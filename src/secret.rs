//! A key or secret as the rest of the code holds it: a leaf, so every
//! module that carries one (settings, the Redis URL, auth) can name it
//! without depending on the others.

use std::fmt;

/// A key or secret: printed as `<redacted>` by `Debug`, so it never reaches
/// a log line or a panic message.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}
