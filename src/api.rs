//! The types at the library's edge that the server's insides also use:
//! what the message hook sees and returns, and the one error type. A leaf,
//! so the loop can name them without importing the crate root.

use crate::config::ConfigError;
use std::fmt;
use std::io;

/// A client frame that is not a command, as the message hook sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMessage<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// What a message hook may send back on the same connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Text(String),
    Binary(Vec<u8>),
}

/// The seed's `AfterReadFunc`: called with the connection's user (if it
/// registered) for each frame that is not a command.
pub type OnMessage = Box<dyn FnMut(Option<&str>, ClientMessage<'_>) -> Option<Reply> + Send>;

/// Errors at the library's edge.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is unusable.
    Config(ConfigError),
    /// Binding the address or setting up the poller failed.
    Io(io::Error),
    /// The server is not running (any more); nothing was pushed.
    Stopped,
    /// Cluster mode: Redis is unreachable, or did not acknowledge the push
    /// in time (it may still have been delivered). Retry later.
    Unavailable(String),
    /// A name over its limit (256 bytes for events and userIds); the
    /// reason is the one a push over HTTP gets (`event too long`, `userId
    /// too long`). Nothing was sent.
    Invalid(String),
    /// The message's frame (in the envelope form, the biggest a receiver
    /// can get) is larger than `max_backlog_bytes`, `limit`: no receiver
    /// could queue it, so nothing was sent (over HTTP: 413).
    TooLarge { limit: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => write!(f, "configuration: {e}"),
            Error::Io(e) => write!(f, "{e}"),
            Error::Stopped => f.write_str("the server is not running"),
            Error::Unavailable(why) => write!(f, "cluster unavailable: {why}"),
            Error::Invalid(why) => write!(f, "request data illegal: {why}"),
            Error::TooLarge { limit } => write!(
                f,
                "request data illegal: message larger than the backlog limit ({limit} bytes)"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Config(e) => Some(e),
            Error::Io(e) => Some(e),
            Error::Stopped | Error::Unavailable(_) | Error::Invalid(_) | Error::TooLarge { .. } => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}
