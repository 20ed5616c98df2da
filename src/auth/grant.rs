//! What a library auth hook may say about a token besides its user
//! (SPEC §9): which events it may receive and until when. Built by the
//! application, checked by the server like a JWT's claims are.

/// A token as the library's [`Builder::auth_grant`](crate::Builder::auth_grant)
/// hook sees it: the user, and optionally the permitted events and an
/// expiry.
///
/// ```
/// let g = wspush::Grant::new("alice")
///     .events(["chat:*", "news"])
///     .expires_at(wspush::unix_now() + 900);
/// # let _ = g;
/// ```
///
/// Without [`events`](Grant::events) every event is allowed; with an
/// empty list none is. Patterns are exact event names or prefixes ending
/// in `*`; more than 256 of them, or one longer than 256 bytes, makes the
/// token rejected (4401). At [`expires_at`](Grant::expires_at) the
/// connection is closed with 4401 `token expired`, unless a `refresh`
/// command brought a newer grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub(crate) user: String,
    pub(crate) events: Option<Vec<String>>,
    pub(crate) expires: Option<i64>,
}

impl Grant {
    /// A grant for `user` that allows every event and does not expire.
    pub fn new(user: impl Into<String>) -> Grant {
        Grant {
            user: user.into(),
            events: None,
            expires: None,
        }
    }

    /// Allows only the events these patterns match.
    pub fn events<I, S>(mut self, patterns: I) -> Grant
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.events = Some(patterns.into_iter().map(Into::into).collect());
        self
    }

    /// Ends connections opened with this grant at `unix_secs` (seconds
    /// since the Unix epoch, as JWT `exp`; see [`unix_now`](crate::unix_now)).
    pub fn expires_at(mut self, unix_secs: i64) -> Grant {
        self.expires = Some(unix_secs);
        self
    }

    pub fn user(&self) -> &str {
        &self.user
    }
}

/// The library's grant-returning auth hook; `None` rejects the token.
pub type GrantAuth = Box<dyn FnMut(&str) -> Option<Grant> + Send>;
