//! Resuming clients (SPEC §8): which connections are being replayed what
//! they missed, and the pump that hands a replay out as the client reads.
//!
//! A replay is never queued whole: the pump adds messages from history
//! only while the connection's outbound queue is short (`LOW_WATER`), and
//! comes back when the socket has taken them (the next writable edge), so
//! a replay bigger than the backlog limit costs one queue's worth of
//! memory and never trips 4008. While an event is being replayed, live
//! pushes on it are not sent to that connection: they are in the history
//! already (recorded before delivery), so the pump reaches them in order,
//! and the replay ends — live delivery resumes — in the same turn of the
//! loop that hands out the last message retained. So nothing is missed
//! between replay and live, and nothing comes twice.

use crate::history::{History, Pos, Step};
use crate::outbound::{Admit, Io, Outbound};
use crate::payload::{self, Payload};
use crate::session::Session;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Instant;

/// The pump adds messages while fewer bytes than this wait in the queue.
pub const LOW_WATER: usize = 64 * 1024;

/// Most bytes one pump hands out per turn when the socket takes all: the
/// other connections get their turn too.
pub const TURN_BYTES: usize = 256 * 1024;

/// A replay of some events after a position.
struct Job {
    events: Vec<Rc<str>>,
    after: Pos,
    /// Where the history's walk stopped last time (see `History::replay`).
    marks: Vec<(u32, Pos)>,
}

/// The replays in progress, by connection (its slab index).
#[derive(Default)]
pub struct Replays {
    conns: Vec<Option<VecDeque<Job>>>,
    active: usize,
}

impl Replays {
    /// Queues a replay of `events` after `after` on connection `id`
    /// (behind any it already has).
    pub fn start(&mut self, id: usize, events: Vec<Rc<str>>, after: Pos) {
        if self.conns.len() <= id {
            self.conns.resize_with(id + 1, || None);
        }
        let slot = &mut self.conns[id];
        if slot.is_none() {
            self.active += 1;
        }
        slot.get_or_insert_with(VecDeque::new).push_back(Job {
            events,
            after,
            marks: Vec::new(),
        });
    }

    pub fn is_active(&self, id: usize) -> bool {
        self.active > 0 && matches!(self.conns.get(id), Some(Some(_)))
    }

    /// Whether a live push on `event` must wait for connection `id`'s
    /// replay (which will hand it out in its place).
    pub fn holds(&self, id: usize, event: &str) -> bool {
        if self.active == 0 {
            return false;
        }
        match self.conns.get(id) {
            Some(Some(jobs)) => jobs.iter().any(|j| j.events.iter().any(|e| &**e == event)),
            _ => false,
        }
    }

    /// The connection ended: its replays with it.
    pub fn stop(&mut self, id: usize) {
        if let Some(slot) = self.conns.get_mut(id) {
            if slot.take().is_some() {
                self.active -= 1;
            }
        }
    }

    /// The connection left `event`: its replay of it goes too.
    pub fn unsubscribe(&mut self, id: usize, event: &str) {
        let Some(Some(jobs)) = self.conns.get_mut(id) else {
            return;
        };
        for j in jobs.iter_mut() {
            j.events.retain(|e| &**e != event);
        }
        jobs.retain(|j| !j.events.is_empty());
        if jobs.is_empty() {
            self.stop(id);
        }
    }
}

/// What a round of pumping left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pumped {
    /// No replay (any more): live delivery applies.
    Done,
    /// The queue is long enough; the next writable edge brings us back.
    Waiting,
    /// This turn's share is spent with the socket still taking bytes:
    /// come back next turn.
    Again,
    /// A message the client had not reached was evicted meanwhile.
    Gap,
    /// The socket failed.
    Dead,
}

/// What a round handed out, for the counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Handed {
    pub messages: u64,
    pub bytes: u64,
}

/// Hands connection `id` (of `user`, speaking `session`'s form) more of
/// its replay while its queue is short.
#[allow(clippy::too_many_arguments)]
pub fn pump<S: Io>(
    replays: &mut Replays,
    history: &mut History,
    id: usize,
    user: &str,
    session: &Session,
    out: &mut Outbound<S>,
    now: Instant,
    handed: &mut Handed,
) -> Pumped {
    let cursors = history.cursors();
    let envelope = session.envelope();
    let mut spent = 0;
    let mut dead = false;
    loop {
        let Some(Some(jobs)) = replays.conns.get_mut(id) else {
            return Pumped::Done;
        };
        let Some(job) = jobs.front_mut() else {
            replays.stop(id);
            return Pumped::Done;
        };
        let step = history.replay(user, &job.events, &mut job.after, &mut job.marks, now, |item| {
            if out.queued() >= LOW_WATER || spent >= TURN_BYTES {
                return false;
            }
            let cursor = cursors.text(item.pos);
            let key = item.key.map(|k| payload::key_tag(item.broadcast, item.event, k));
            let p = Payload::stored(item.event, item.text, item.is_string)
                .with_cursor(Some(&cursor))
                .with_key(key);
            let frame = session.form(&p);
            if out.replay(frame, p.key()) == Admit::Dead {
                dead = true;
                return false;
            }
            spent += frame.len();
            handed.messages += 1;
            handed.bytes += p.text_len(envelope) as u64;
            true
        });
        // What this round queued leaves in one write.
        if dead || out.flush_out().is_err() {
            return Pumped::Dead;
        }
        match step {
            Step::Gap => {
                replays.stop(id);
                return Pumped::Gap;
            }
            Step::CaughtUp => {
                jobs.pop_front();
                if jobs.is_empty() {
                    replays.stop(id);
                    return Pumped::Done;
                }
            }
            Step::More if out.queued() >= LOW_WATER => return Pumped::Waiting,
            Step::More if spent >= TURN_BYTES => return Pumped::Again,
            // The socket took the round: on with the next one.
            Step::More => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Limits;
    use crate::outbound::mem::MemIo;
    use crate::session::ws::{config, WsSession};
    use crate::session::Timeouts;
    use std::time::Duration;

    fn ws(envelope: bool, t0: Instant) -> Session {
        let t = Timeouts {
            register: Duration::ZERO,
            ping: Duration::ZERO,
            close_grace: Duration::from_secs(1),
        };
        Session::Ws(WsSession::new(
            Vec::new(),
            config(4096, 1 << 20),
            envelope,
            &t,
            t0,
        ))
    }

    /// Server frames' texts written so far.
    fn texts(out: &mut Outbound<MemIo>) -> Vec<String> {
        let bytes = std::mem::take(&mut out.io.written);
        let mut sock = tungstenite::protocol::frame::FrameSocket::new(std::io::Cursor::new(bytes));
        let mut got = Vec::new();
        while let Ok(Some(f)) = sock.read(None) {
            got.push(String::from_utf8(f.payload().to_vec()).unwrap());
        }
        got
    }

    fn history(per_stream: usize) -> History {
        History::new(
            Limits {
                per_stream,
                ttl: Duration::from_secs(300),
                max_bytes: 64 << 20,
            },
            "e".into(),
        )
    }

    fn push(h: &mut History, text: &str, t0: Instant) -> Pos {
        let pos = h.next_pos();
        h.record(pos, Some(&["u".to_string()]), "ev", text, true, None, t0);
        pos
    }

    /// A replay far bigger than the queue's low water is handed out as the
    /// socket takes it: the queue never holds much more than the low
    /// water, and everything arrives once, in order, as envelopes with
    /// their cursors.
    #[test]
    fn a_big_replay_is_paced_by_the_reader() {
        let t0 = Instant::now();
        let mut h = history(10_000);
        let text = "x".repeat(1000);
        for _ in 0..5000 {
            push(&mut h, &text, t0);
        }
        let session = ws(true, t0);
        let mut out = Outbound::new(
            MemIo {
                room: Some(0),
                ..MemIo::default()
            },
            1 << 20,
        );
        let mut r = Replays::default();
        r.start(7, vec![Rc::from("ev")], Pos::ZERO);
        assert!(r.holds(7, "ev") && !r.holds(7, "other") && !r.holds(8, "ev"));
        let mut handed = Handed::default();
        let mut got = Vec::new();
        let mut rounds = 0;
        loop {
            let step = pump(&mut r, &mut h, 7, "u", &session, &mut out, t0, &mut handed);
            assert!(out.queued() < LOW_WATER + 2000, "queued {}", out.queued());
            if step == Pumped::Done {
                break;
            }
            assert_ne!(step, Pumped::Gap);
            // The reader takes 100 KiB.
            out.io.room = Some(100 * 1024);
            out.flush_out().unwrap();
            got.extend(texts(&mut out));
            rounds += 1;
            assert!(rounds < 1000);
        }
        out.io.room = None;
        out.flush_out().unwrap();
        got.extend(texts(&mut out));
        assert_eq!(got.len(), 5000);
        assert_eq!(handed.messages, 5000);
        for (i, t) in got.iter().enumerate() {
            let v: serde_json::Value = serde_json::from_str(t).unwrap();
            assert_eq!(v["cursor"], format!("e-{}", i + 1));
            assert_eq!(v["event"], "ev");
        }
        assert!(!r.is_active(7));
    }

    /// Pushes made while a replay is under way are reached by it; the
    /// replay ends only when nothing newer is retained.
    #[test]
    fn pushes_during_the_replay_are_part_of_it() {
        let t0 = Instant::now();
        let mut h = history(1000);
        let start = push(&mut h, "before", t0);
        for i in 0..3 {
            push(&mut h, &format!("missed {i}"), t0);
        }
        let session = ws(false, t0);
        let mut out = Outbound::new(MemIo::default(), 1 << 20);
        let mut r = Replays::default();
        r.start(1, vec![Rc::from("ev")], start);
        let mut handed = Handed::default();
        // The socket takes everything: one round ends the replay.
        assert_eq!(
            pump(&mut r, &mut h, 1, "u", &session, &mut out, t0, &mut handed),
            Pumped::Done
        );
        assert_eq!(texts(&mut out), ["missed 0", "missed 1", "missed 2"]);
        assert!(!r.holds(1, "ev"));
    }

    /// Behind by more than the history keeps: a gap, and the replay stops.
    #[test]
    fn a_gap_during_the_replay_stops_it() {
        let t0 = Instant::now();
        let mut h = history(3);
        let start = push(&mut h, "seen", t0);
        push(&mut h, "a", t0);
        let session = ws(false, t0);
        let mut out = Outbound::new(MemIo::default(), 1 << 20);
        let mut r = Replays::default();
        r.start(1, vec![Rc::from("ev")], start);
        for i in 0..3 {
            push(&mut h, &format!("late {i}"), t0);
        }
        let mut handed = Handed::default();
        assert_eq!(
            pump(&mut r, &mut h, 1, "u", &session, &mut out, t0, &mut handed),
            Pumped::Gap
        );
        assert!(!r.is_active(1));
    }

    #[test]
    fn unsubscribing_ends_that_events_replay() {
        let mut r = Replays::default();
        r.start(3, vec![Rc::from("a"), Rc::from("b")], Pos::ZERO);
        r.unsubscribe(3, "a");
        assert!(r.holds(3, "b") && !r.holds(3, "a"));
        r.unsubscribe(3, "b");
        assert!(!r.is_active(3));
        assert_eq!(r.active, 0);
    }
}
