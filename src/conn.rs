//! One connection in the loop's slab: its socket with the outbound queue,
//! its peer, and one enum saying what it is now — speaking HTTP, a live
//! subscriber session (WebSocket or SSE), or lingering after a final
//! response.

use crate::http::conn::HttpConn;
pub use crate::listen::{Peer, Socket};
use crate::outbound::Outbound;
use crate::session::Session;
use std::time::Instant;

pub struct Conn {
    pub out: Outbound<Socket>,
    pub peer: Peer,
    /// Unique for the life of the server; tells timers apart across slot reuse.
    pub serial: u64,
    /// Earliest timer entry armed for this connection, if any.
    pub armed: Option<Instant>,
    pub state: State,
}

// Nearly every long-lived connection is a session: boxing that variant
// would add an allocation per client to save bytes only on short-lived
// HTTP ones.
#[allow(clippy::large_enum_variant)]
pub enum State {
    Http(HttpConn),
    Session(Session),
    /// Final response sent and write side shut: read and discard until the
    /// peer closes, so unread input does not turn our close into a reset
    /// that destroys the response in flight.
    Linger {
        until: Instant,
    },
}

/// What one readiness event said about a socket's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// Bytes, an end of stream or an error may be waiting.
    pub input: bool,
    /// The event reported the peer's FIN (or an error). Edge-triggered
    /// readiness reports it once, together with any data that came with
    /// it, so input must then be read until end of stream is seen.
    pub fin: bool,
}

impl Ready {
    /// Nothing known (a revisit): assume input and a FIN may be waiting.
    pub const UNKNOWN: Ready = Ready {
        input: true,
        fin: true,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every client holds one of these: its size is most of what an idle
    /// connection costs (README's KiB per connection), so it may not grow
    /// unnoticed.
    #[test]
    fn a_connection_stays_small() {
        let size = std::mem::size_of::<Conn>();
        assert!(size <= 416, "Conn is {size} bytes");
    }
}
