//! Close codes (SPEC §1, and the RFC 6455 ones a session uses) and the one
//! table of their reasons: every ending of a subscriber connection, on
//! either transport, is a [`Close`] built here, so no close goes out
//! without a code from this table and a reason that says why.

use std::borrow::Cow;

pub const GOING_AWAY: u16 = 1001;
pub const PROTOCOL_ERROR: u16 = 1002;
pub const INVALID_DATA: u16 = 1007;
pub const TOO_BIG: u16 = 1009;
pub const DROPPED: u16 = 4000;
pub const DROPPED_FOR_GOOD: u16 = 4001;
pub const SLOW_CONSUMER: u16 = 4008;
pub const MALFORMED: u16 = 4400;
pub const TOKEN_REJECTED: u16 = 4401;
pub const OTHER_USER: u16 = 4403;
pub const REGISTER_TIMEOUT: u16 = 4408;
pub const TOO_MANY_EVENTS: u16 = 4429;

/// Each code the server sends, with the reason it carries when the cause
/// has no more precise words (a refused command names its own).
pub const REASONS: &[(u16, &str)] = &[
    (GOING_AWAY, "server shutting down"),
    (PROTOCOL_ERROR, "protocol error"),
    (INVALID_DATA, "invalid UTF-8 in a text frame"),
    (TOO_BIG, "message too big"),
    (DROPPED, "dropped"),
    (DROPPED_FOR_GOOD, "dropped, do not reconnect"),
    (SLOW_CONSUMER, "slow consumer"),
    (MALFORMED, "malformed command"),
    (TOKEN_REJECTED, "token rejected"),
    (OTHER_USER, "token belongs to another user"),
    (REGISTER_TIMEOUT, "register timeout"),
    (TOO_MANY_EVENTS, "too many events"),
];

/// The default reason of `code`.
pub fn reason(code: u16) -> &'static str {
    REASONS
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("closing", |(_, r)| r)
}

/// The 1009 reason of a message cut off at `MAX_FRAGMENTS` frames.
pub const TOO_MANY_FRAGMENTS: &str = "message has more than 256 frames";

/// The 4401 reason of a live connection whose token's `exp` passed.
pub const TOKEN_EXPIRED: &str = "token expired";

/// SPEC §9 reasons: a 4401 for a connection whose token a SIGHUP reload
/// withdrew, a 4403 for an event the token does not permit, a 4429 over
/// `--max-connections-per-user`, a 4400 for a refresh with nothing to
/// refresh.
pub const TOKEN_REVOKED: &str = "token revoked";
pub const EVENT_NOT_ALLOWED: &str = "event not allowed";
pub const TOO_MANY_FOR_USER: &str = "too many connections for user";
pub const REFRESH_FIRST: &str = "refresh before register";

/// A close frame's payload is at most 125 bytes, two of them the code.
pub const MAX_REASON_BYTES: usize = 123;

/// The reason actually sent: the table's when `reason` is empty, cut at a
/// character boundary to fit the frame (an auth hook's text may be long; a
/// reason over the limit would make the client fail the connection instead
/// of reading the code).
pub fn fitted(code: u16, reason: &str) -> &str {
    if reason.is_empty() {
        return self::reason(code);
    }
    let mut end = reason.len().min(MAX_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// Why the server ends a subscriber connection, as the client is told: a
/// WebSocket close frame, or an SSE stream's last `event: close`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    reason: Cow<'static, str>,
}

impl Close {
    /// `code` with the table's reason.
    pub fn new(code: u16) -> Close {
        Close {
            code,
            reason: Cow::Borrowed(reason(code)),
        }
    }

    /// `code` with words of the caller's (the table's when empty).
    pub fn because(code: u16, why: impl Into<Cow<'static, str>>) -> Close {
        let why = why.into();
        if why.is_empty() {
            Close::new(code)
        } else {
            Close { code, reason: why }
        }
    }

    /// The reason as sent: never empty, at most `MAX_REASON_BYTES`.
    pub fn reason(&self) -> &str {
        fitted(self.code, &self.reason)
    }

    /// Input the session could not parse: what else the peer sends is no
    /// longer read, only discarded until it closes.
    pub fn is_input_failure(&self) -> bool {
        matches!(self.code, PROTOCOL_ERROR | INVALID_DATA | TOO_BIG)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_reason_that_fits() {
        for (code, why) in REASONS {
            assert!(!why.is_empty() && why.len() <= MAX_REASON_BYTES, "{code}");
            assert_eq!(Close::new(*code).reason(), *why);
        }
        assert_eq!(reason(4999), "closing");
    }

    #[test]
    fn given_reasons_are_kept_empty_ones_filled_long_ones_cut() {
        assert_eq!(
            Close::because(TOKEN_REJECTED, "token expired").reason(),
            "token expired"
        );
        assert_eq!(Close::because(TOO_BIG, "").reason(), "message too big");
        let long = "é".repeat(100);
        let cut = Close::because(MALFORMED, long.clone());
        assert!(cut.reason().len() <= MAX_REASON_BYTES && long.starts_with(cut.reason()));
    }

    #[test]
    fn input_failures() {
        assert!(Close::new(TOO_BIG).is_input_failure());
        assert!(Close::new(PROTOCOL_ERROR).is_input_failure());
        assert!(!Close::new(DROPPED).is_input_failure());
    }
}
