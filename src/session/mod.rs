//! A live subscriber connection, whatever its transport: the surface the
//! loop and delivery use (deliver a prepared message, close with a reason,
//! act on a deadline, say when the next one is), and the two
//! implementations, WebSocket (`ws`) and Server-Sent Events (`sse`).
//!
//! Sessions own their protocol state and nothing else: no binder, no
//! metrics, no clock. They read and write through the connection's
//! `Outbound`, take `now` as an argument, and tell the caller what must
//! happen (`Tick::End`, `Got::Failed`, `Admit::Over`) instead of doing it:
//! ending a connection is the hub's job, in one place.

pub mod frame_watch;
pub mod sse;
pub mod ws;

use crate::close::Close;
use crate::outbound::{Admit, Io, Outbound};
use crate::payload::Payload;
use sse::SseSession;
use std::rc::Rc;
use std::time::{Duration, Instant};
use ws::WsSession;

/// The few settings sessions use (not the whole `Config`).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Time a new WebSocket has to register; zero: no limit.
    pub register: Duration,
    /// Server pings (WebSocket) or `: ping` comments (SSE); zero: none,
    /// and no silence check either.
    pub ping: Duration,
    /// How long a closing connection may wait for its peer.
    pub close_grace: Duration,
}

impl Timeouts {
    /// `now + d`, or none for a timeout turned off (zero).
    pub fn after(d: Duration, now: Instant) -> Option<Instant> {
        (!d.is_zero()).then(|| now + d)
    }
}

/// What a deadline that passed asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Tick {
    Idle,
    /// End the session, telling the client why.
    End(Close),
    /// The peer is gone (silent too long, or the close grace is over).
    Gone,
}

/// Which protocol a session speaks (a label of the connection metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Ws = 0,
    Sse = 1,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::Ws, Transport::Sse];

    pub fn label(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Sse => "sse",
        }
    }
}

// Not boxed: most sessions are WebSockets, and a box would cost each of
// them an allocation to save an SSE stream bytes it does not miss (an
// idle SSE stream stays within its 1 KiB either way).
#[allow(clippy::large_enum_variant)]
pub enum Session {
    Ws(WsSession),
    Sse(SseSession),
}

impl Session {
    pub fn transport(&self) -> Transport {
        match self {
            Session::Ws(_) => Transport::Ws,
            Session::Sse(_) => Transport::Sse,
        }
    }

    pub fn is_open(&self) -> bool {
        match self {
            Session::Ws(s) => s.is_open(),
            Session::Sse(s) => s.is_open(),
        }
    }

    /// Offers a pushed message in the form this session wants; with the
    /// number of message bytes it carried (for the bytes-out counter).
    pub fn deliver<S: Io>(&mut self, out: &mut Outbound<S>, p: &Payload<'_>) -> (Admit, usize) {
        let frame = self.form(p);
        let bytes = p.text_len(self.envelope());
        let admit = match (self, p.key()) {
            (_, Some(key)) => out.admit_keyed(frame, Some(key)),
            (Session::Ws(s), None) => s.send(out, frame),
            (Session::Sse(s), None) => s.send(out, frame),
        };
        (admit, bytes)
    }

    /// The form of a prepared message this session is written.
    pub fn form<'p>(&self, p: &'p Payload<'_>) -> &'p Rc<[u8]> {
        match self {
            Session::Ws(s) => p.ws(s.envelope()),
            Session::Sse(s) => p.sse(s.envelope(), s.chunked()),
        }
    }

    /// Whether pushed messages carry their event (`?envelope=1`).
    pub fn envelope(&self) -> bool {
        match self {
            Session::Ws(s) => s.envelope(),
            Session::Sse(s) => s.envelope(),
        }
    }

    /// Ends the session telling the client `why`; the caller has unbound it.
    pub fn close<S: Io>(&mut self, out: &mut Outbound<S>, why: &Close, now: Instant, t: &Timeouts) {
        match self {
            Session::Ws(s) => s.close(out, why, now, t),
            Session::Sse(s) => s.close(out, why, now, t),
        }
    }

    /// The session stopped being open without a close of ours (the peer
    /// closed, or the socket failed: `lost`).
    pub fn left(&mut self, now: Instant, t: &Timeouts, lost: bool) {
        match self {
            Session::Ws(s) => s.left(now, t, lost),
            Session::Sse(s) => s.left(now, t, lost),
        }
    }

    pub fn on_timer<S: Io>(&mut self, out: &mut Outbound<S>, now: Instant, t: &Timeouts) -> Tick {
        match self {
            Session::Ws(s) => s.on_timer(out, now, t),
            Session::Sse(s) => s.on_timer(out, now, t),
        }
    }

    pub fn next_deadline(&self, t: &Timeouts) -> Option<Instant> {
        match self {
            Session::Ws(s) => s.next_deadline(t),
            Session::Sse(s) => s.next_deadline(t),
        }
    }
}
