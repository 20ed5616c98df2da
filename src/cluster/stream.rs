//! Cluster history (SPEC §8 with `--redis`): every record is also kept in
//! a Redis stream, whose entry IDs are the cluster-wide cursors, so a
//! node that lost Redis for a while catches up, in order, on everything
//! Redis accepted meanwhile. No I/O here: `redis.rs` sends the commands
//! and feeds the replies in.
//!
//! # How a record travels
//!
//! A push runs one script on Redis (`SCRIPT`): `XADD` the record to the
//! stream, trim entries older than the history TTL (`XTRIM MINID ~`, from
//! the new entry's own time, so no clock but Redis's counts), and
//! `PUBLISH` `#<id> <record>` on the channel. Atomic, so the stream's
//! order is the channel's order, every message on the channel is already
//! in the stream, and the reply brings the entry ID (the push's cursor)
//! and the number of nodes subscribed, as `PUBLISH` alone did.
//!
//! Live, a node applies what the channel brings, skipping IDs it has
//! already applied. After its subscription is (re)confirmed it catches up
//! (`Catchup`): `XRANGE stream <last applied> + COUNT n` on the
//! publishing link, again from the newest ID each reply brought until a
//! reply is short, while the channel's messages wait in a buffer; then
//! the buffer's newer entries, then live. A message that arrives after
//! the last `XRANGE` was sent is in the buffer; one that arrived before
//! is in the stream, and so in that reply (its `XADD` ran before its
//! `PUBLISH`). If the buffer overflows it is dropped and one more
//! `XRANGE` covers it.
//!
//! # When records are lost anyway
//!
//! The first reply of a catch-up starts with the last applied entry
//! itself, unless it was trimmed away (the node was gone longer than the
//! TTL) or Redis lost the stream. The epoch (`<channel>:epoch`, a random
//! value set once with `SET NX`) tells the second case apart too: a new
//! one means a new stream. Either way the node cannot know what it
//! missed: `Got::Lost` (the caller forgets its history, so no earlier
//! cursor is resumed from, and tells its clients).
//!
//! # A node that has applied nothing yet
//!
//! Catching up needs a place to start. A node that has applied no record
//! (just started, or its stream was lost) takes the stream's newest entry
//! when its publishing link logs in (`XREVRANGE … COUNT 1`, the anchor;
//! the start of the stream if it is empty), so a cut right after it
//! started is caught up like any other. Channel messages that come before
//! the anchor are held and applied with it: they came after the
//! subscription, so they are wanted even if the anchor is newer.

use super::resp::Value;
use crate::history::Pos;
use std::collections::VecDeque;

/// The one script every push runs (see the module comment). `KEYS[1]`
/// the stream; `ARGV`: the record, the TTL in ms, the channel.
pub(crate) const SCRIPT: &str = "local id = redis.call('XADD', KEYS[1], '*', 'r', ARGV[1]) \
     local ms = tonumber(string.match(id, '^%d+')) \
     redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%d', math.max(0, ms - tonumber(ARGV[2])))) \
     return {id, redis.call('PUBLISH', ARGV[3], '#' .. id .. ' ' .. ARGV[1])}";

/// Entries asked for per `XRANGE`.
pub(crate) const RANGE_COUNT: usize = 256;

/// Channel messages held while a catch-up runs; beyond it they are
/// dropped and fetched from the stream instead.
const MAX_BUFFERED: usize = 16 << 20;

/// What a reply or a channel message was, for the catch-up.
#[derive(Debug, PartialEq)]
pub(crate) enum Event {
    /// The subscription is (again) in place.
    Subscribed,
    /// The cluster's epoch, read at each login of the publishing link.
    Epoch(String),
    /// A channel message: `#<id> <record>`.
    Message(Pos, Vec<u8>),
    /// The reply to the `XRANGE` numbered so (see `range_due`).
    Range(u64, Vec<(Pos, Vec<u8>)>),
    /// That `XRANGE` was lost with the publishing link: ask again.
    RangeLost(u64),
    /// The stream's newest entry at a login of the publishing link (`None`:
    /// the stream is empty).
    Anchor(Option<Pos>),
}

/// What the catch-up hands the node, in order.
#[derive(Debug, PartialEq)]
pub(crate) enum Got {
    /// A record to apply, at its position.
    Entry(Pos, Vec<u8>),
    /// Records were lost between the last applied and what comes next.
    Lost,
    /// The cluster's epoch (the first, or a new one).
    Epoch(String),
}

#[derive(Debug, PartialEq)]
enum Phase {
    Live,
    /// Subscribed again: an `XRANGE` must go out.
    NeedRange,
    /// An `XRANGE` is out; channel messages wait.
    Ranging,
}

pub(crate) struct Catchup {
    pub stream_key: Vec<u8>,
    pub epoch_key: Vec<u8>,
    pub ttl_ms: u64,
    epoch: Option<String>,
    /// The newest entry applied.
    last: Option<Pos>,
    phase: Phase,
    /// The next reply is the first of a catch-up: it must start with `last`.
    first: bool,
    /// `last` is the start of an empty stream (the anchor), no entry: the
    /// first reply starts after it.
    from_start: bool,
    buffer: VecDeque<(Pos, Vec<u8>)>,
    buffered: usize,
    overflow: bool,
    /// The number of the `XRANGE` whose reply counts: one sent before the
    /// subscription broke may still be answered, and must be ignored.
    range: u64,
}

impl Catchup {
    pub(crate) fn new(channel: &str, ttl_ms: u64) -> Catchup {
        Catchup {
            stream_key: format!("{channel}:history").into_bytes(),
            epoch_key: format!("{channel}:epoch").into_bytes(),
            ttl_ms,
            epoch: None,
            last: None,
            phase: Phase::Live,
            first: false,
            from_start: false,
            buffer: VecDeque::new(),
            buffered: 0,
            overflow: false,
            range: 0,
        }
    }

    /// The `XRANGE` to send now and its number, if one is due; the caller
    /// sends it on the publishing link, and reports its reply (`Range`)
    /// or its loss (`RangeLost`) with that number.
    pub(crate) fn range_due(&mut self) -> Option<(Vec<Vec<u8>>, u64)> {
        if self.phase != Phase::NeedRange {
            return None;
        }
        let last = self.last?;
        self.phase = Phase::Ranging;
        self.range += 1;
        // Held messages are all in the stream by now (they arrived before
        // this is sent), so the reply covers them.
        self.clear_buffer();
        let cmd = vec![
            b"XRANGE".to_vec(),
            self.stream_key.clone(),
            last.id().into_bytes(),
            b"+".to_vec(),
            b"COUNT".to_vec(),
            RANGE_COUNT.to_string().into_bytes(),
        ];
        Some((cmd, self.range))
    }

    fn clear_buffer(&mut self) {
        self.buffer.clear();
        self.buffered = 0;
        self.overflow = false;
    }

    /// Whether a catch-up is under way or due.
    #[cfg(test)]
    pub(crate) fn catching_up(&self) -> bool {
        self.phase != Phase::Live
    }

    fn apply(&mut self, pos: Pos, record: Vec<u8>, out: &mut Vec<Got>) {
        if self.last.is_none_or(|last| pos > last) {
            self.last = Some(pos);
            self.from_start = false;
            out.push(Got::Entry(pos, record));
        }
    }

    pub(crate) fn on_event(&mut self, event: Event, out: &mut Vec<Got>) {
        match event {
            // Without a place to start, the XRANGE waits for the anchor
            // (`range_due`), and channel messages are held meanwhile.
            Event::Subscribed => {
                self.phase = Phase::NeedRange;
                self.first = true;
                self.clear_buffer();
            }
            Event::Anchor(anchor) => {
                if self.last.is_some() {
                    return;
                }
                // Held messages came after the subscription: apply those
                // the anchor already covers, in order; the XRANGE from it
                // brings the rest.
                let anchor_pos = anchor.unwrap_or(Pos::ZERO);
                for (pos, record) in std::mem::take(&mut self.buffer) {
                    if pos <= anchor_pos {
                        self.apply(pos, record, out);
                    }
                }
                self.buffered = 0;
                if self.last.is_none_or(|last| anchor_pos > last) {
                    self.last = Some(anchor_pos);
                    self.from_start = anchor.is_none();
                }
            }
            Event::Epoch(epoch) => {
                if self.epoch.as_ref().is_some_and(|e| *e != epoch) {
                    // A new stream: nothing of the old one can be fetched,
                    // and its IDs start over.
                    out.push(Got::Lost);
                    self.last = None;
                    self.phase = Phase::Live;
                }
                if self.epoch.as_ref() != Some(&epoch) {
                    out.push(Got::Epoch(epoch.clone()));
                    self.epoch = Some(epoch);
                }
            }
            Event::Message(pos, record) => match self.phase {
                Phase::Live => self.apply(pos, record, out),
                // The coming XRANGE covers it, once there is a place to
                // start it from; until then it is held (see `Anchor`).
                Phase::NeedRange if self.last.is_some() => {}
                Phase::Ranging if self.overflow => {}
                Phase::NeedRange | Phase::Ranging => {
                    self.buffered += record.len();
                    self.buffer.push_back((pos, record));
                    if self.buffered > MAX_BUFFERED {
                        self.buffer.clear();
                        self.buffered = 0;
                        self.overflow = true;
                    }
                }
            },
            Event::RangeLost(n) => {
                if self.phase == Phase::Ranging && n == self.range {
                    self.phase = Phase::NeedRange;
                }
            }
            Event::Range(n, entries) => {
                if self.phase != Phase::Ranging || n != self.range {
                    return;
                }
                // From the start of an empty stream: anything is new (it
                // stays so until an entry is applied).
                if std::mem::take(&mut self.first)
                    && !self.from_start
                    && entries.first().map(|(p, _)| *p) != self.last
                {
                    out.push(Got::Lost);
                }
                let full = entries.len() >= RANGE_COUNT;
                for (pos, record) in entries {
                    self.apply(pos, record, out);
                }
                if full || self.overflow {
                    self.phase = Phase::NeedRange;
                    return;
                }
                for (pos, record) in std::mem::take(&mut self.buffer) {
                    self.apply(pos, record, out);
                }
                self.buffered = 0;
                self.phase = Phase::Live;
            }
        }
    }
}

/// A channel message of history mode: `#<id> <record>`.
pub(crate) fn parse_message(payload: &[u8]) -> Option<(Pos, Vec<u8>)> {
    let rest = payload.strip_prefix(b"#")?;
    let space = rest.iter().position(|&b| b == b' ')?;
    let id = std::str::from_utf8(&rest[..space]).ok()?;
    Some((Pos::parse_id(id)?, rest[space + 1..].to_vec()))
}

/// The script's reply: `[id, subscribers]`.
pub(crate) fn parse_published(v: &Value) -> Option<(Pos, u64)> {
    let Value::Array(Some(items)) = v else { return None };
    match items.as_slice() {
        [Value::Bulk(Some(id)), Value::Integer(n)] => {
            Some((Pos::parse_id(std::str::from_utf8(id).ok()?)?, (*n).max(0) as u64))
        }
        _ => None,
    }
}

/// An `XRANGE` reply: `[[id, [field, value, ...]], ...]`, each entry's
/// record in field `r`.
pub(crate) fn parse_range(v: &Value) -> Result<Vec<(Pos, Vec<u8>)>, String> {
    let Value::Array(Some(entries)) = v else {
        return Err("XRANGE reply is not an array".into());
    };
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let Value::Array(Some(pair)) = e else {
            return Err("XRANGE entry is not an array".into());
        };
        let [Value::Bulk(Some(id)), Value::Array(Some(fields))] = pair.as_slice() else {
            return Err("XRANGE entry is not [id, fields]".into());
        };
        let pos = std::str::from_utf8(id)
            .ok()
            .and_then(Pos::parse_id)
            .ok_or("XRANGE entry ID is not ms-seq")?;
        let record = fields
            .chunks(2)
            .find_map(|kv| match kv {
                [Value::Bulk(Some(k)), Value::Bulk(Some(v))] if k == b"r" => Some(v.clone()),
                _ => None,
            })
            .unwrap_or_default();
        out.push((pos, record));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(hi: u64, lo: u64) -> Pos {
        Pos { hi, lo }
    }

    fn rec(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    fn run(c: &mut Catchup, e: Event) -> Vec<Got> {
        let mut out = Vec::new();
        c.on_event(e, &mut out);
        out
    }

    #[test]
    fn live_messages_are_applied_once_in_order() {
        let mut c = Catchup::new("ch", 1000);
        assert_eq!(c.stream_key, b"ch:history");
        assert_eq!(run(&mut c, Event::Anchor(None)), vec![], "an empty stream");
        run(&mut c, Event::Subscribed);
        let (cmd, n) = c.range_due().expect("an XRANGE from the start");
        assert_eq!(cmd[2], b"0-0");
        assert_eq!(
            run(&mut c, Event::Range(n, vec![])),
            vec![],
            "no loss: it was empty"
        );
        // Cut before anything came: still from the start, still no loss.
        run(&mut c, Event::Subscribed);
        let (cmd, n) = c.range_due().unwrap();
        assert_eq!(cmd[2], b"0-0");
        assert_eq!(
            run(&mut c, Event::Range(n, vec![(p(1, 0), rec("a"))])),
            vec![Got::Entry(p(1, 0), rec("a"))]
        );
        assert_eq!(run(&mut c, Event::Message(p(1, 0), rec("a"))), vec![], "seen");
        assert_eq!(run(&mut c, Event::Message(p(2, 0), rec("b"))).len(), 1);
    }

    /// The race of a catch-up: messages published while the XRANGE is out
    /// are held and applied after it, the overlap once; a full reply asks
    /// for more.
    #[test]
    fn a_catch_up_merges_the_stream_and_the_channel_without_gap_or_repeat() {
        let mut c = Catchup::new("ch", 1000);
        run(&mut c, Event::Message(p(1, 0), rec("seen")));
        // Cut off, then subscribed again.
        run(&mut c, Event::Subscribed);
        assert_eq!(
            run(&mut c, Event::Message(p(5, 0), rec("early"))),
            vec![],
            "the range covers it"
        );
        let (cmd, n) = c.range_due().expect("an XRANGE");
        assert_eq!(cmd[2], b"1-0");
        assert_eq!(c.range_due(), None, "one at a time");
        assert_eq!(run(&mut c, Event::Message(p(9, 0), rec("during"))), vec![]);
        let mut full: Vec<(Pos, Vec<u8>)> = vec![(p(1, 0), rec("seen"))];
        full.extend((2..RANGE_COUNT as u64 + 1).map(|i| (p(i, 0), rec("missed"))));
        let got = run(&mut c, Event::Range(n, full));
        assert_eq!(got.len(), RANGE_COUNT - 1, "all but the one already applied");
        assert!(!got.contains(&Got::Lost));
        let (cmd, n) = c.range_due().expect("a full reply asks for more");
        assert_eq!(cmd[2], format!("{RANGE_COUNT}-0").as_bytes());
        run(&mut c, Event::Message(p(300, 0), rec("during 2")));
        let got = run(
            &mut c,
            Event::Range(
                n,
                vec![(p(RANGE_COUNT as u64, 0), rec("x")), (p(299, 0), rec("end"))],
            ),
        );
        assert_eq!(
            got,
            vec![
                Got::Entry(p(299, 0), rec("end")),
                Got::Entry(p(300, 0), rec("during 2"))
            ]
        );
        assert_eq!(
            run(&mut c, Event::Message(p(300, 0), rec("during 2"))),
            vec![],
            "live again, no repeat"
        );
        assert_eq!(run(&mut c, Event::Message(p(301, 0), rec("live"))).len(), 1);
    }

    #[test]
    fn a_trimmed_last_entry_or_a_new_epoch_is_a_loss() {
        let mut c = Catchup::new("ch", 1000);
        assert_eq!(
            run(&mut c, Event::Epoch("e1".into())),
            vec![Got::Epoch("e1".into())]
        );
        run(&mut c, Event::Message(p(1, 0), rec("seen")));
        run(&mut c, Event::Subscribed);
        let (_, n) = c.range_due().unwrap();
        let got = run(&mut c, Event::Range(n, vec![(p(7, 0), rec("after the trim"))]));
        assert_eq!(got, vec![Got::Lost, Got::Entry(p(7, 0), rec("after the trim"))]);
        // A lost XRANGE is asked again; a reply to an older one is ignored.
        run(&mut c, Event::Subscribed);
        let (_, old) = c.range_due().unwrap();
        run(&mut c, Event::RangeLost(old));
        let (_, n) = c.range_due().unwrap();
        assert!(c.catching_up());
        assert_eq!(
            run(&mut c, Event::Range(old, vec![(p(8, 0), rec("stale"))])),
            vec![]
        );
        let got = run(&mut c, Event::Range(n, vec![(p(7, 0), rec("x"))]));
        assert_eq!(got, vec![], "it starts at the last applied: nothing lost");
        assert!(!c.catching_up());
        // Redis lost the stream: a new epoch.
        assert_eq!(run(&mut c, Event::Epoch("e1".into())), vec![]);
        assert_eq!(
            run(&mut c, Event::Epoch("e2".into())),
            vec![Got::Lost, Got::Epoch("e2".into())]
        );
        assert_eq!(
            run(&mut c, Event::Message(p(1, 0), rec("new stream"))).len(),
            1,
            "IDs start over"
        );
    }

    /// A node that has applied nothing yet still catches up after a cut:
    /// the anchor (the stream's newest entry at login) is where it starts.
    /// Messages held before the anchor came are applied with it.
    #[test]
    fn a_node_that_applied_nothing_catches_up_from_its_anchor() {
        let mut c = Catchup::new("ch", 1000);
        run(&mut c, Event::Anchor(Some(p(3, 0))));
        run(&mut c, Event::Subscribed);
        let (cmd, n) = c.range_due().unwrap();
        assert_eq!(cmd[2], b"3-0");
        assert_eq!(run(&mut c, Event::Range(n, vec![(p(3, 0), rec("old"))])), vec![]);
        // Cut off before any push reached it; pushes go on meanwhile.
        run(&mut c, Event::Subscribed);
        let (cmd, n) = c.range_due().unwrap();
        assert_eq!(cmd[2], b"3-0");
        let got = run(
            &mut c,
            Event::Range(
                n,
                vec![(p(3, 0), rec("old")), (p(4, 0), rec("m1")), (p(5, 0), rec("m2"))],
            ),
        );
        assert_eq!(
            got,
            vec![Got::Entry(p(4, 0), rec("m1")), Got::Entry(p(5, 0), rec("m2"))]
        );

        // Subscribed before the anchor came: messages are held, not lost;
        // those the anchor covers are applied with it, the XRANGE brings
        // the rest once.
        let mut c = Catchup::new("ch", 1000);
        run(&mut c, Event::Subscribed);
        assert_eq!(c.range_due(), None, "no place to start yet");
        assert_eq!(run(&mut c, Event::Message(p(7, 0), rec("early"))), vec![]);
        assert_eq!(run(&mut c, Event::Message(p(9, 0), rec("later"))), vec![]);
        assert_eq!(
            run(&mut c, Event::Anchor(Some(p(8, 0)))),
            vec![Got::Entry(p(7, 0), rec("early"))]
        );
        let (cmd, n) = c.range_due().unwrap();
        assert_eq!(cmd[2], b"8-0");
        let got = run(
            &mut c,
            Event::Range(n, vec![(p(8, 0), rec("x")), (p(9, 0), rec("later"))]),
        );
        assert_eq!(got, vec![Got::Entry(p(9, 0), rec("later"))]);
        // A later login's anchor changes nothing once something is applied.
        assert_eq!(run(&mut c, Event::Anchor(Some(p(20, 0)))), vec![]);
        run(&mut c, Event::Subscribed);
        assert_eq!(c.range_due().unwrap().0[2], b"9-0");
    }

    #[test]
    fn an_overflowing_buffer_is_fetched_from_the_stream_instead() {
        let mut c = Catchup::new("ch", 1000);
        run(&mut c, Event::Message(p(1, 0), rec("seen")));
        run(&mut c, Event::Subscribed);
        let (_, n) = c.range_due().unwrap();
        let big = vec![b'x'; MAX_BUFFERED / 2 + 1];
        for i in 2..5 {
            run(&mut c, Event::Message(p(i, 0), big.clone()));
        }
        let got = run(&mut c, Event::Range(n, vec![(p(1, 0), rec("seen"))]));
        assert_eq!(got, vec![]);
        let (_, n) = c.range_due().expect("the dropped ones are fetched");
        let got = run(
            &mut c,
            Event::Range(
                n,
                vec![(p(2, 0), rec("2")), (p(3, 0), rec("3")), (p(4, 0), rec("4"))],
            ),
        );
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn replies_parse() {
        assert_eq!(parse_message(b"#17-3 1P{}"), Some((p(17, 3), rec("1P{}"))));
        assert_eq!(parse_message(b"1P{}"), None);
        assert_eq!(parse_message(b"#17 1P{}"), None);
        let b = |s: &str| Value::Bulk(Some(s.as_bytes().to_vec()));
        let pubd = Value::Array(Some(vec![b("5-1"), Value::Integer(2)]));
        assert_eq!(parse_published(&pubd), Some((p(5, 1), 2)));
        assert_eq!(parse_published(&Value::Integer(2)), None);
        let range = Value::Array(Some(vec![Value::Array(Some(vec![
            b("5-1"),
            Value::Array(Some(vec![b("r"), b("1B{}")])),
        ]))]));
        assert_eq!(parse_range(&range), Ok(vec![(p(5, 1), rec("1B{}"))]));
        assert!(parse_range(&Value::Integer(1)).is_err());
        assert_eq!(parse_range(&Value::Array(Some(vec![]))), Ok(vec![]));
    }
}
