//! Delivery continuity (SPEC §8): cursors, the bounded history of every
//! stream, and what a resuming client may be replayed. No I/O and no
//! clock: every call that depends on time takes `now`.
//!
//! # Streams and cursors
//!
//! A push to user U on event E goes to the stream (U, E); a broadcast on E
//! to the stream (E). Every message gets one position (`Pos`) from one
//! sequence (a counter here, the Redis stream's entry ID in a cluster), so
//! one cursor marks a place in every stream at once, and a connection that
//! follows (U, E) and (E) merges the two by position. The cursor a client
//! sees is the position with the epoch in front (`3fa2b1c0-17`; in a
//! cluster `3fa2b1c0-1700000000000-0`): a cursor of another process or
//! cluster epoch never parses, so it is never taken for one of ours.
//!
//! # Bounds, and what counts as lost
//!
//! Each stream keeps its last `per_stream` messages, none older than `ttl`,
//! and all streams together at most `max_bytes` (entries, texts, keys and
//! the streams' own bookkeeping, estimated with their allocation costs).
//! Everything sits in one global list in push order, so the oldest is
//! always at its head: expiry looks only at the head (no timer per stream),
//! and the byte cap evicts from the head. Each push costs O(streams it
//! names) plus what it evicts, each message evicted once: O(1) amortised.
//!
//! Each stream remembers its *floor*, the newest position it lost (evicted
//! before anyone could be sure to have read it). A resume from cursor C is
//! recovered exactly when every floor of the connection's streams is at or
//! before C. A message replaced by a newer one with the same key is not
//! lost (the newer one carries the value), so it does not raise the floor.
//! A stream whose messages are all gone keeps its floor in a small record
//! as long as the byte cap allows; once that goes too (oldest first), its
//! floor is folded into one global floor, which is then the answer for
//! every stream without a record: false only where it cannot be known.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A place in the one sequence: `(0, n)` for a single server, the Redis
/// stream entry ID `(ms, seq)` in a cluster. Ordered as the pushes were.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    pub hi: u64,
    pub lo: u64,
}

impl Pos {
    pub const ZERO: Pos = Pos { hi: 0, lo: 0 };

    /// A Redis stream entry ID, `ms-seq`.
    pub fn parse_id(id: &str) -> Option<Pos> {
        let (hi, lo) = id.split_once('-')?;
        Some(Pos {
            hi: parse_u64(hi)?,
            lo: parse_u64(lo)?,
        })
    }

    /// The Redis stream entry ID form, `ms-seq`.
    pub fn id(self) -> String {
        format!("{}-{}", self.hi, self.lo)
    }
}

/// Digits only (no sign, no spaces): cursors are compared by value, so
/// two spellings of one number must not both parse.
fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

/// A fresh random epoch: 8 hex digits, from the OS-seeded hasher std
/// keys per process (with the pid and the clock), so two processes —
/// even one restarted in the same millisecond — differ.
pub fn random_epoch() -> String {
    format!("{:08x}", crate::unique::per_process(0) as u32)
}

/// The history a server runs with: none without `--history`; a cluster
/// node's takes its positions and epoch from Redis.
pub fn for_config(cfg: &crate::config::Config) -> Option<History> {
    if cfg.history == 0 {
        return None;
    }
    let limits = Limits {
        per_stream: cfg.history,
        ttl: cfg.history_ttl,
        max_bytes: cfg.history_bytes,
    };
    Some(match cfg.redis {
        Some(_) => History::cluster(limits),
        None => History::new(limits, random_epoch()),
    })
}

/// Writes the cursors of one history's epoch.
#[derive(Debug, Clone)]
pub struct Cursors {
    epoch: String,
    cluster: bool,
}

impl Cursors {
    pub fn text(&self, pos: Pos) -> String {
        if self.cluster {
            format!("{}-{}-{}", self.epoch, pos.hi, pos.lo)
        } else {
            format!("{}-{}", self.epoch, pos.lo)
        }
    }
}

/// The bounds of a history (`--history`, `--history-ttl`, `--history-bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub per_stream: usize,
    pub ttl: Duration,
    pub max_bytes: usize,
}

/// What a replay found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `emit` asked to stop; more is waiting.
    More,
    /// Everything retained after the position was handed out.
    CaughtUp,
    /// A message after the position was lost meanwhile (the reader was
    /// slower than the history keeps messages).
    Gap,
}

/// One retained message as a replay hands it out.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    pub pos: Pos,
    pub event: &'a str,
    /// The text a raw receiver gets: a string message as is, any other
    /// value as its compact JSON.
    pub text: &'a str,
    /// Whether the message was a JSON string (the envelope quotes it).
    pub is_string: bool,
    pub key: Option<&'a str>,
    /// A broadcast's stream (E) rather than a user's (U, E).
    pub broadcast: bool,
}

/// A message's text, shared by the entries of every stream one push names.
struct Stored {
    text: Box<str>,
    is_string: bool,
}

const NIL: u32 = u32::MAX;

struct Entry {
    pos: Pos,
    at: Instant,
    stream: u32,
    msg: Rc<Stored>,
    key: Option<Rc<str>>,
    /// Neighbours in push order over all streams.
    g_prev: u32,
    g_next: u32,
    /// Neighbours within the stream.
    s_prev: u32,
    s_next: u32,
}

/// One stream's list, floor and keys.
struct Meta {
    user: Option<Rc<str>>,
    event: Rc<str>,
    head: u32,
    tail: u32,
    len: usize,
    /// The newest position this stream lost.
    floor: Pos,
    /// The newest position pushed to it.
    last: Pos,
    /// Latest-value keys of the messages it holds → their entry.
    keys: HashMap<Rc<str>, u32>,
    cost: usize,
}

#[derive(Default)]
struct EventStreams {
    broadcast: Option<u32>,
    users: HashMap<Rc<str>, u32>,
}

/// Estimated heap costs, allocator overhead included, so the cap holds
/// for what the process actually uses, not just for the message bytes.
const ALLOC_OVERHEAD: usize = 16;
const ENTRY_COST: usize = std::mem::size_of::<Option<Entry>>() + 16;
const STORED_COST: usize = std::mem::size_of::<Stored>() + 16 + 2 * ALLOC_OVERHEAD;
const META_COST: usize = std::mem::size_of::<Option<Meta>>() + 96 + 2 * ALLOC_OVERHEAD;
const KEY_COST: usize = 48 + ALLOC_OVERHEAD;

pub struct History {
    limits: Limits,
    epoch: String,
    /// Cursors carry `hi` (a cluster's Redis IDs); else only `lo`.
    cluster: bool,
    entries: Vec<Option<Entry>>,
    free_entries: Vec<u32>,
    metas: Vec<Option<Meta>>,
    free_metas: Vec<u32>,
    by_event: HashMap<Rc<str>, EventStreams>,
    /// Oldest and newest entry over all streams.
    g_head: u32,
    g_tail: u32,
    /// Streams left without messages, in the order they emptied (which is
    /// the order of their last position): the first to forget under the
    /// byte cap. Entries may be stale (refilled or forgotten since).
    emptied: VecDeque<(u32, Pos)>,
    bytes: usize,
    len: usize,
    /// The floor of every stream without a record.
    floor: Pos,
    /// Positions before this are not ours to judge (none yet: nothing is).
    known_from: Option<Pos>,
    last: Pos,
}

impl History {
    /// A single server's history: positions from its own counter.
    pub fn new(limits: Limits, epoch: String) -> History {
        History {
            limits,
            epoch,
            cluster: false,
            entries: Vec::new(),
            free_entries: Vec::new(),
            metas: Vec::new(),
            free_metas: Vec::new(),
            by_event: HashMap::new(),
            g_head: NIL,
            g_tail: NIL,
            emptied: VecDeque::new(),
            bytes: 0,
            len: 0,
            floor: Pos::ZERO,
            known_from: Some(Pos::ZERO),
            last: Pos::ZERO,
        }
    }

    /// A cluster node's history: positions are the Redis stream's IDs, and
    /// nothing is known before the first record seen (or after a loss).
    pub fn cluster(limits: Limits) -> History {
        History {
            cluster: true,
            known_from: None,
            ..History::new(limits, String::new())
        }
    }

    /// Messages retained (over all streams).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Estimated bytes held; never above `max_bytes` between calls.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The `/metrics` lines of the history (with `--history`).
    pub fn render_metrics(&self, s: &mut String) {
        use std::fmt::Write;
        let mut one = |name: &str, help: &str, value: usize| {
            let _ = write!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n");
        };
        one(
            "wspush_history_messages",
            "Messages retained for clients that resume (one per stream a push named).",
            self.len(),
        );
        one(
            "wspush_history_bytes",
            "Estimated bytes the retained messages use; never above wspush_history_max_bytes.",
            self.bytes(),
        );
        one(
            "wspush_history_max_bytes",
            "The --history-bytes cap.",
            self.limits.max_bytes,
        );
    }

    /// The cluster's epoch as Redis holds it: a different one than before
    /// means Redis lost the stream, so nothing retained here can be
    /// resumed from any more. True when it changed.
    pub fn set_epoch(&mut self, epoch: &str) -> bool {
        if self.epoch == epoch {
            return false;
        }
        let had = !self.epoch.is_empty();
        self.epoch = epoch.to_string();
        self.forget_all();
        self.last = Pos::ZERO;
        had
    }

    /// Something between what was retained and what comes next is gone
    /// (a cluster node missed records): no cursor issued so far can be
    /// resumed from.
    pub fn forget_all(&mut self) {
        let limits = self.limits;
        let (epoch, cluster, last) = (std::mem::take(&mut self.epoch), self.cluster, self.last);
        *self = History::new(limits, epoch);
        self.cluster = cluster;
        self.last = last;
        self.known_from = None;
    }

    /// The next position of a single server's sequence.
    pub fn next_pos(&mut self) -> Pos {
        Pos {
            hi: self.last.hi,
            lo: self.last.lo + 1,
        }
    }

    /// The newest position recorded.
    #[cfg(test)]
    pub fn last(&self) -> Pos {
        self.last
    }

    /// The cursor a client sees for `pos`.
    pub fn cursor(&self, pos: Pos) -> String {
        self.cursors().text(pos)
    }

    /// What writes cursors, apart from the history (a replay writes them
    /// while it borrows the history).
    pub fn cursors(&self) -> Cursors {
        Cursors {
            epoch: self.epoch.clone(),
            cluster: self.cluster,
        }
    }

    /// A cursor of this epoch, or none (another process or cluster
    /// epoch, or not a cursor at all).
    pub fn parse_cursor(&self, text: &str) -> Option<Pos> {
        let rest = text.strip_prefix(self.epoch.as_str())?.strip_prefix('-')?;
        if self.epoch.is_empty() {
            return None;
        }
        if self.cluster {
            Pos::parse_id(rest)
        } else {
            Some(Pos {
                hi: 0,
                lo: parse_u64(rest)?,
            })
        }
    }

    /// Records one push at `pos` (from `next_pos`, or Redis) on the streams
    /// it names: each of `users`' (U, E), or (E) when `users` is none.
    /// A position not after the last one is ignored (a record seen twice).
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        pos: Pos,
        users: Option<&[String]>,
        event: &str,
        text: &str,
        is_string: bool,
        key: Option<&str>,
        now: Instant,
    ) {
        if pos <= self.last && self.known_from.is_some() {
            return;
        }
        self.last = pos;
        if self.known_from.is_none() {
            self.known_from = Some(pos);
        }
        self.expire(now);
        let stored_cost = STORED_COST + text.len();
        let entry_cost = ENTRY_COST + key.map_or(0, |k| KEY_COST + k.len());
        let streams = users.map_or(1, <[String]>::len);
        if stored_cost + entry_cost + META_COST + event.len() > self.limits.max_bytes
            || self.limits.per_stream == 0
        {
            // It cannot be kept at all: lost at once for its streams.
            self.each_stream(users, event, |h, s| h.lose_at(s, pos));
            return;
        }
        let msg = Rc::new(Stored {
            text: text.into(),
            is_string,
        });
        self.bytes += stored_cost;
        let key: Option<Rc<str>> = key.map(Rc::from);
        let _ = streams;
        self.each_stream(users, event, |h, s| h.append(s, pos, &msg, key.as_ref(), now));
        drop(msg);
        self.enforce_cap();
    }

    /// Calls `f` with each stream the push names, created if new.
    fn each_stream(&mut self, users: Option<&[String]>, event: &str, mut f: impl FnMut(&mut History, u32)) {
        match users {
            None => {
                let s = self.stream(None, event);
                f(self, s);
            }
            Some(users) => {
                for u in users {
                    let s = self.stream(Some(u), event);
                    f(self, s);
                }
            }
        }
    }

    /// The stream's record, made if it has none.
    fn stream(&mut self, user: Option<&str>, event: &str) -> u32 {
        if let Some(s) = self.find(user, event) {
            return s;
        }
        let event_rc = match self.by_event.get_key_value(event) {
            Some((k, _)) => k.clone(),
            None => Rc::from(event),
        };
        let user_rc: Option<Rc<str>> = user.map(Rc::from);
        let cost = META_COST + event.len() + user.map_or(0, str::len);
        let meta = Meta {
            user: user_rc.clone(),
            event: event_rc.clone(),
            head: NIL,
            tail: NIL,
            len: 0,
            // What it may have lost before it had a record of its own.
            floor: self.floor,
            last: Pos::ZERO,
            keys: HashMap::new(),
            cost,
        };
        self.bytes += cost;
        let idx = match self.free_metas.pop() {
            Some(i) => {
                self.metas[i as usize] = Some(meta);
                i
            }
            None => {
                self.metas.push(Some(meta));
                (self.metas.len() - 1) as u32
            }
        };
        let streams = self.by_event.entry(event_rc).or_default();
        match user_rc {
            None => streams.broadcast = Some(idx),
            Some(u) => {
                streams.users.insert(u, idx);
            }
        }
        idx
    }

    fn find(&self, user: Option<&str>, event: &str) -> Option<u32> {
        let streams = self.by_event.get(event)?;
        match user {
            None => streams.broadcast,
            Some(u) => streams.users.get(u).copied(),
        }
    }

    fn meta(&mut self, s: u32) -> &mut Meta {
        match self.metas.get_mut(s as usize) {
            Some(Some(m)) => m,
            // Indices come only from `by_event` and entries, both kept in
            // step with `metas`.
            _ => unreachable!("stream record {s} missing"),
        }
    }

    fn entry(&self, e: u32) -> &Entry {
        match self.entries.get(e as usize) {
            Some(Some(x)) => x,
            _ => unreachable!("history entry {e} missing"),
        }
    }

    fn entry_mut(&mut self, e: u32) -> &mut Entry {
        match self.entries.get_mut(e as usize) {
            Some(Some(x)) => x,
            _ => unreachable!("history entry {e} missing"),
        }
    }

    /// A message that could not be kept: the stream lost it.
    fn lose_at(&mut self, s: u32, pos: Pos) {
        let m = self.meta(s);
        m.floor = m.floor.max(pos);
        m.last = pos;
        if m.len == 0 {
            self.emptied.push_back((s, pos));
        }
    }

    fn append(&mut self, s: u32, pos: Pos, msg: &Rc<Stored>, key: Option<&Rc<str>>, now: Instant) {
        let entry = Entry {
            pos,
            at: now,
            stream: s,
            msg: Rc::clone(msg),
            key: key.cloned(),
            g_prev: self.g_tail,
            g_next: NIL,
            s_prev: NIL,
            s_next: NIL,
        };
        let e = match self.free_entries.pop() {
            Some(i) => {
                self.entries[i as usize] = Some(entry);
                i
            }
            None => {
                self.entries.push(Some(entry));
                (self.entries.len() - 1) as u32
            }
        };
        self.len += 1;
        self.bytes += ENTRY_COST;
        // Global order.
        if self.g_tail == NIL {
            self.g_head = e;
        } else {
            let t = self.g_tail;
            self.entry_mut(t).g_next = e;
        }
        self.g_tail = e;
        // Stream order.
        let m = self.meta(s);
        let tail = m.tail;
        m.tail = e;
        if tail == NIL {
            m.head = e;
        }
        m.len += 1;
        m.last = pos;
        if tail != NIL {
            self.entry_mut(tail).s_next = e;
            self.entry_mut(e).s_prev = tail;
        }
        // The newer message with the same key replaces the older one.
        if let Some(k) = key {
            let m = self.meta(s);
            let old = m.keys.insert(Rc::clone(k), e);
            match old {
                Some(old) => self.remove(old, false),
                None => self.bytes += KEY_COST + k.len(),
            }
        }
        let per_stream = self.limits.per_stream;
        if self.meta(s).len > per_stream {
            let head = self.meta(s).head;
            self.remove(head, true);
        }
    }

    /// Takes an entry out; `lost`: nobody can be sure to have read it.
    fn remove(&mut self, e: u32, lost: bool) {
        let Some(entry) = self.entries.get_mut(e as usize).and_then(Option::take) else {
            return;
        };
        self.free_entries.push(e);
        self.len -= 1;
        self.bytes -= ENTRY_COST;
        if Rc::strong_count(&entry.msg) == 1 {
            self.bytes -= STORED_COST + entry.msg.text.len();
        }
        // Global list.
        match entry.g_prev {
            NIL => self.g_head = entry.g_next,
            p => self.entry_mut(p).g_next = entry.g_next,
        }
        match entry.g_next {
            NIL => self.g_tail = entry.g_prev,
            n => self.entry_mut(n).g_prev = entry.g_prev,
        }
        // Stream list.
        match entry.s_prev {
            NIL => self.meta(entry.stream).head = entry.s_next,
            p => self.entry_mut(p).s_next = entry.s_next,
        }
        match entry.s_next {
            NIL => self.meta(entry.stream).tail = entry.s_prev,
            n => self.entry_mut(n).s_prev = entry.s_prev,
        }
        let m = self.meta(entry.stream);
        m.len -= 1;
        if lost {
            m.floor = m.floor.max(entry.pos);
        }
        let mut freed_key = 0;
        if let Some(k) = &entry.key {
            if m.keys.get(k) == Some(&e) {
                m.keys.remove(k);
                freed_key = KEY_COST + k.len();
            }
        }
        let emptied = (m.len == 0).then_some(m.last);
        self.bytes -= freed_key;
        if let Some(last) = emptied {
            self.emptied.push_back((entry.stream, last));
        }
    }

    /// Evicts what the TTL says is gone: only the global head can be.
    fn expire(&mut self, now: Instant) {
        let ttl = self.limits.ttl;
        while self.g_head != NIL {
            let head = self.g_head;
            if self.entry(head).at + ttl > now {
                break;
            }
            self.remove(head, true);
        }
    }

    /// Brings the estimate under the cap: emptied streams' records first
    /// (older than any message still held), then the oldest messages.
    fn enforce_cap(&mut self) {
        while self.bytes > self.limits.max_bytes {
            if let Some((s, last)) = self.emptied.pop_front() {
                self.forget_stream(s, last);
                continue;
            }
            if self.g_head == NIL {
                break;
            }
            let head = self.g_head;
            self.remove(head, true);
        }
        self.compact_emptied();
    }

    /// Drops a stream's record if it is still empty since `last`.
    fn forget_stream(&mut self, s: u32, last: Pos) {
        let still = matches!(self.metas.get(s as usize), Some(Some(m)) if m.len == 0 && m.last == last);
        if !still {
            return;
        }
        let Some(m) = self.metas.get_mut(s as usize).and_then(Option::take) else {
            return;
        };
        self.free_metas.push(s);
        self.bytes -= m.cost;
        self.floor = self.floor.max(m.floor);
        if let Some(streams) = self.by_event.get_mut(&m.event) {
            match &m.user {
                None => streams.broadcast = None,
                Some(u) => {
                    streams.users.remove(u);
                }
            }
            if streams.broadcast.is_none() && streams.users.is_empty() {
                self.by_event.remove(&m.event);
            }
        }
    }

    /// Stale entries of `emptied` (streams refilled since) are skipped when
    /// popped; this keeps them from piling up when nothing is popped.
    fn compact_emptied(&mut self) {
        if self.emptied.len() > 64 && self.emptied.len() > 2 * self.metas.len() {
            let metas = &self.metas;
            self.emptied.retain(
                |(s, last)| matches!(metas.get(*s as usize), Some(Some(m)) if m.len == 0 && m.last == *last),
            );
        }
    }

    /// The floor of stream (user?, event): its record's, else the global one.
    fn floor_of(&self, user: Option<&str>, event: &str) -> Pos {
        match self.find(user, event) {
            Some(s) => match self.metas.get(s as usize) {
                Some(Some(m)) => m.floor,
                _ => self.floor,
            },
            None => self.floor,
        }
    }

    /// Whether a connection of `user` on `event` that last saw `since` can
    /// be given everything after it: the cursor is ours and no message of
    /// its streams after it was lost.
    pub fn recoverable(&mut self, user: &str, event: &str, since: Pos, now: Instant) -> bool {
        self.expire(now);
        let Some(known) = self.known_from else {
            return false;
        };
        if since < known || since > self.last {
            return false;
        }
        self.floor_of(Some(user), event) <= since && self.floor_of(None, event) <= since
    }

    /// Hands out, in position order, the messages of `user`'s streams on
    /// `events` after `*after`, moving `*after` along, until `emit` returns
    /// false or everything retained was handed out.
    ///
    /// `marks` is where each stream's walk stopped the last time (kept by
    /// the caller between calls, empty at first): a replay handed out in
    /// many small steps then starts each step where the last one stopped
    /// instead of walking the stream from its oldest message again.
    pub fn replay(
        &mut self,
        user: &str,
        events: &[Rc<str>],
        after: &mut Pos,
        marks: &mut Vec<(u32, Pos)>,
        now: Instant,
        mut emit: impl FnMut(Item<'_>) -> bool,
    ) -> Step {
        self.expire(now);
        // Each stream's next entry after `*after`.
        let mut next: Vec<u32> = Vec::with_capacity(events.len() * 2);
        for event in events {
            for user in [Some(user), None] {
                if self.floor_of(user, event) > *after {
                    return Step::Gap;
                }
                let Some(s) = self.find(user, event) else { continue };
                let Some(Some(m)) = self.metas.get(s as usize) else {
                    continue;
                };
                // A mark still names the entry it was taken at (positions
                // are never reused), and nothing can come before it since:
                // messages only join at the tail.
                let marked = marks
                    .iter()
                    .find_map(|&(e, pos)| match self.entries.get(e as usize) {
                        Some(Some(x)) if x.stream == s && x.pos == pos && pos > *after => Some(e),
                        _ => None,
                    });
                let mut e = marked.unwrap_or(m.head);
                while e != NIL && self.entry(e).pos <= *after {
                    e = self.entry(e).s_next;
                }
                if e != NIL {
                    next.push(e);
                }
            }
        }
        let step = self.merge(&mut next, after, &mut emit);
        marks.clear();
        marks.extend(next.iter().map(|&e| (e, self.entry(e).pos)));
        step
    }

    /// Hands out the entries from `next` (each stream's next one) in
    /// position order; `next` is left at what was not handed out.
    fn merge(&self, next: &mut Vec<u32>, after: &mut Pos, emit: &mut impl FnMut(Item<'_>) -> bool) -> Step {
        loop {
            let Some((i, &e)) = next.iter().enumerate().min_by_key(|(_, &e)| self.entry(e).pos) else {
                return Step::CaughtUp;
            };
            let entry = self.entry(e);
            let Some(Some(m)) = self.metas.get(entry.stream as usize) else {
                return Step::Gap;
            };
            let item = Item {
                pos: entry.pos,
                event: &m.event,
                text: &entry.msg.text,
                is_string: entry.msg.is_string,
                key: entry.key.as_deref(),
                broadcast: m.user.is_none(),
            };
            if !emit(item) {
                return Step::More;
            }
            *after = entry.pos;
            match entry.s_next {
                NIL => {
                    next.swap_remove(i);
                }
                n => next[i] = n,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_stream: usize) -> Limits {
        Limits {
            per_stream,
            ttl: Duration::from_secs(300),
            max_bytes: 16 << 20,
        }
    }

    fn users(u: &[&str]) -> Vec<String> {
        u.iter().map(|s| s.to_string()).collect()
    }

    /// Pushes `text` to `user` (or broadcasts it) at the next position.
    fn push(
        h: &mut History,
        user: Option<&str>,
        event: &str,
        text: &str,
        key: Option<&str>,
        now: Instant,
    ) -> Pos {
        let pos = h.next_pos();
        let u = user.map(|u| users(&[u]));
        h.record(pos, u.as_deref(), event, text, true, key, now);
        pos
    }

    /// Everything replayable for (user, events) after `after`.
    fn all(h: &mut History, user: &str, events: &[&str], after: Pos, now: Instant) -> (Vec<String>, Step) {
        let events: Vec<Rc<str>> = events.iter().map(|e| Rc::from(*e)).collect();
        let mut got = Vec::new();
        let mut at = after;
        let step = h.replay(user, &events, &mut at, &mut Vec::new(), now, |i| {
            got.push(i.text.to_string());
            true
        });
        (got, step)
    }

    #[test]
    fn cursors_round_trip_and_other_epochs_do_not_parse() {
        let h = History::new(limits(10), "0badcafe".into());
        let p = Pos { hi: 0, lo: 42 };
        assert_eq!(h.cursor(p), "0badcafe-42");
        assert_eq!(h.parse_cursor("0badcafe-42"), Some(p));
        for bad in [
            "0badcafe-",
            "0badcafe-x",
            "0badcafe--1",
            "0badcafe-042",
            "0badcafe-1-2",
            "deadbeef-42",
            "42",
            "",
            "0badcafe-+4",
            "0badcafe-99999999999999999999999",
        ] {
            assert_eq!(h.parse_cursor(bad), None, "{bad}");
        }
        let mut c = History::cluster(limits(10));
        assert_eq!(c.parse_cursor("-1-2"), None, "no epoch yet: nothing parses");
        c.set_epoch("feedf00d");
        let p = Pos {
            hi: 1_700_000_000_000,
            lo: 3,
        };
        assert_eq!(c.cursor(p), "feedf00d-1700000000000-3");
        assert_eq!(c.parse_cursor(&c.cursor(p)), Some(p));
        assert_eq!(c.parse_cursor("feedf00d-12"), None);
        assert_eq!(Pos::parse_id("1700000000000-3"), Some(p));
        assert_eq!(p.id(), "1700000000000-3");
        assert_ne!(random_epoch(), random_epoch());
    }

    /// A connection follows (U, E) and (E), merged in push order; other
    /// users' and other events' messages are not its own.
    #[test]
    fn a_replay_merges_the_users_and_the_broadcast_stream_in_push_order() {
        let t0 = Instant::now();
        let mut h = History::new(limits(100), "e".into());
        let start = h.last();
        push(&mut h, Some("u"), "news", "1", None, t0);
        push(&mut h, None, "news", "2", None, t0);
        push(&mut h, Some("v"), "news", "not mine", None, t0);
        push(&mut h, Some("u"), "chat", "other event", None, t0);
        let p3 = push(&mut h, Some("u"), "news", "3", None, t0);
        push(&mut h, None, "news", "4", None, t0);
        assert_eq!(
            all(&mut h, "u", &["news"], start, t0),
            (
                vec!["1".into(), "2".into(), "3".into(), "4".into()],
                Step::CaughtUp
            )
        );
        assert_eq!(all(&mut h, "u", &["news"], p3, t0).0, vec!["4"]);
        assert_eq!(
            all(&mut h, "u", &["news", "chat"], start, t0).0,
            vec!["1", "2", "other event", "3", "4"]
        );
        assert!(h.recoverable("u", "news", start, t0));
        assert!(h.recoverable("u", "news", p3, t0));
        assert!(
            !h.recoverable("u", "news", Pos { hi: 0, lo: 99 }, t0),
            "a cursor from the future"
        );
    }

    /// One push to several users: one position, one stored text.
    #[test]
    fn a_push_to_many_users_is_one_position_stored_once() {
        let t0 = Instant::now();
        let mut h = History::new(limits(100), "e".into());
        let pos = h.next_pos();
        h.record(
            pos,
            Some(&users(&["a", "b", "c"])),
            "e",
            &"x".repeat(1000),
            true,
            None,
            t0,
        );
        assert_eq!(h.len(), 3);
        assert!(
            h.bytes() < 1000 + 3 * (ENTRY_COST + META_COST + 8) + STORED_COST,
            "{}",
            h.bytes()
        );
        for u in ["a", "b", "c"] {
            assert_eq!(all(&mut h, u, &["e"], Pos::ZERO, t0).0.len(), 1);
        }
        assert_eq!(
            h.next_pos(),
            Pos {
                hi: 0,
                lo: pos.lo + 1
            }
        );
    }

    /// The last N per stream: older ones are lost, and a resume from
    /// before them is not recovered; from after, it is.
    #[test]
    fn each_stream_keeps_its_last_n() {
        let t0 = Instant::now();
        let mut h = History::new(limits(3), "e".into());
        let p: Vec<Pos> = (0..5)
            .map(|i| push(&mut h, Some("u"), "e", &i.to_string(), None, t0))
            .collect();
        push(&mut h, Some("w"), "e", "another stream", None, t0);
        assert_eq!(h.len(), 4);
        assert!(!h.recoverable("u", "e", Pos::ZERO, t0));
        assert!(!h.recoverable("u", "e", p[0], t0), "1 was lost after it");
        assert!(h.recoverable("u", "e", p[1], t0));
        assert_eq!(all(&mut h, "u", &["e"], p[1], t0).0, vec!["2", "3", "4"]);
        assert!(h.recoverable("w", "e", Pos::ZERO, t0), "w's stream lost nothing");
    }

    /// Expiry is stepped, not slept: at the TTL a message is lost, and
    /// only the head of the one global list is ever looked at.
    #[test]
    fn messages_expire_at_the_ttl() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(300);
        let mut h = History::new(limits(100), "e".into());
        let p1 = push(&mut h, Some("u"), "e", "old", None, t0);
        let p2 = push(
            &mut h,
            Some("u"),
            "e",
            "newer",
            None,
            t0 + Duration::from_secs(100),
        );
        assert!(h.recoverable("u", "e", Pos::ZERO, t0 + ttl - Duration::from_millis(1)));
        assert!(!h.recoverable("u", "e", Pos::ZERO, t0 + ttl));
        assert!(h.recoverable("u", "e", p1, t0 + ttl));
        assert_eq!(h.len(), 1);
        let later = t0 + Duration::from_secs(100) + ttl;
        assert_eq!(all(&mut h, "u", &["e"], p1, later), (vec![], Step::Gap));
        assert!(
            h.recoverable("u", "e", p2, later),
            "it saw the last one: nothing lost"
        );
        assert_eq!(h.len(), 0);
        assert_eq!(h.bytes(), META_COST + 2, "only the stream's record is left");
    }

    /// A newer message with the same key replaces the older one: removed,
    /// the newer at the end, and a resume from before both is still
    /// recovered (the value was not lost).
    #[test]
    fn a_key_keeps_only_the_latest_value() {
        let t0 = Instant::now();
        let mut h = History::new(limits(3), "e".into());
        push(&mut h, Some("u"), "e", "a", None, t0);
        for i in 0..1000 {
            push(&mut h, Some("u"), "e", &format!("price {i}"), Some("AAPL"), t0);
        }
        push(&mut h, Some("u"), "e", "b", None, t0);
        push(&mut h, None, "e", "other stream, same key", Some("AAPL"), t0);
        assert_eq!(
            all(&mut h, "u", &["e"], Pos::ZERO, t0),
            (
                vec![
                    "a".into(),
                    "price 999".into(),
                    "b".into(),
                    "other stream, same key".into()
                ],
                Step::CaughtUp
            )
        );
        assert!(h.recoverable("u", "e", Pos::ZERO, t0));
        assert_eq!(h.len(), 4);
        // The per-stream limit counts the kept ones only.
        push(&mut h, Some("u"), "e", "c", None, t0);
        assert!(!h.recoverable("u", "e", Pos::ZERO, t0), "a is lost now");
        assert_eq!(all(&mut h, "u", &["e"], Pos::ZERO, t0).1, Step::Gap);
    }

    /// The byte cap: never exceeded after a push, oldest evicted first,
    /// and a message bigger than the whole cap is lost at once.
    #[test]
    fn the_byte_cap_holds() {
        let t0 = Instant::now();
        let cap = 64 * 1024;
        let mut h = History::new(
            Limits {
                per_stream: 1_000_000,
                ttl: Duration::from_secs(300),
                max_bytes: cap,
            },
            "e".into(),
        );
        let mut positions = Vec::new();
        for i in 0..5000 {
            let user = format!("user{}", i % 97);
            positions.push((
                user.clone(),
                push(
                    &mut h,
                    Some(&user),
                    "e",
                    &"m".repeat(i % 300),
                    Some(&format!("k{}", i % 7)),
                    t0,
                ),
            ));
            assert!(h.bytes() <= cap, "{} > {cap} after push {i}", h.bytes());
        }
        assert!(h.bytes() > cap / 2, "the cap is used: {}", h.bytes());
        // The newest are kept, the oldest are not.
        let (u, p) = &positions[positions.len() - 2];
        assert!(h.recoverable(u, "e", *p, t0));
        let (u, p) = &positions[0];
        assert!(!h.recoverable(u, "e", *p, t0));
        // Bigger than the cap: not kept, and its stream knows it lost it.
        let big = "x".repeat(cap);
        let before = h.last();
        let pb = push(&mut h, Some("user1"), "e", &big, None, t0);
        assert!(h.bytes() <= cap);
        assert!(!h.recoverable("user1", "e", before, t0));
        assert!(h.recoverable("user1", "e", pb, t0));
    }

    /// Streams left empty keep their floor as long as there is room, so a
    /// quiet stream's resume stays exact; once forgotten, the global floor
    /// answers (conservatively).
    #[test]
    fn emptied_streams_keep_their_floor_then_fold_it() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(300);
        let mut h = History::new(
            Limits {
                per_stream: 10,
                ttl,
                max_bytes: 16 * 1024,
            },
            "e".into(),
        );
        let quiet = push(&mut h, Some("quiet"), "e", "once", None, t0);
        let t1 = t0 + ttl;
        push(&mut h, Some("busy"), "e", "x", None, t1);
        assert!(h.recoverable("quiet", "e", quiet, t1), "it saw its one message");
        assert!(!h.recoverable("quiet", "e", Pos::ZERO, t1), "it missed it");
        // Many other streams push the quiet one's record out.
        for i in 0..200 {
            push(&mut h, Some(&format!("s{i}")), "e", "y", None, t1);
        }
        assert!(h.find(Some("quiet"), "e").is_none(), "forgotten under the cap");
        assert!(h.floor >= quiet);
        assert!(!h.recoverable("quiet", "e", Pos::ZERO, t1));
        // Conservative now: other forgotten streams lost later messages.
        let last = h.last();
        assert!(
            h.recoverable("quiet", "e", last, t1),
            "nothing is lost after the newest"
        );
    }

    /// A replay handed out in small steps goes on where it stopped, sees
    /// pushes made meanwhile, and reports a gap when the history lost a
    /// message the reader had not reached.
    #[test]
    fn a_paced_replay_continues_and_notices_a_gap() {
        let t0 = Instant::now();
        let mut h = History::new(limits(5), "e".into());
        for i in 0..5 {
            push(&mut h, Some("u"), "e", &i.to_string(), None, t0);
        }
        let events = [Rc::from("e")];
        let mut at = Pos::ZERO;
        let mut got = Vec::new();
        let mut marks = Vec::new();
        let mut take = |h: &mut History, at: &mut Pos, n: usize, got: &mut Vec<String>| {
            let mut left = n;
            h.replay("u", &events, at, &mut marks, t0, |i| {
                if left == 0 {
                    return false;
                }
                left -= 1;
                got.push(i.text.to_string());
                true
            })
        };
        assert_eq!(take(&mut h, &mut at, 2, &mut got), Step::More);
        push(&mut h, None, "e", "5", None, t0);
        assert_eq!(take(&mut h, &mut at, 10, &mut got), Step::CaughtUp);
        assert_eq!(got, ["0", "1", "2", "3", "4", "5"]);
        // Behind by more than the stream keeps: a gap.
        let mut at = Pos { hi: 0, lo: 1 };
        for i in 0..5 {
            push(&mut h, Some("u"), "e", &format!("late {i}"), None, t0);
        }
        assert_eq!(take(&mut h, &mut at, 10, &mut Vec::new()), Step::Gap);
    }

    /// A long stream replayed in many small steps: each step starts where
    /// the last one stopped (its marks), so the whole replay is linear in
    /// the stream's length, not quadratic (200,000 messages in steps of
    /// 10 would walk 2 billion entries from the head).
    #[test]
    fn a_replay_in_small_steps_is_linear() {
        let t0 = Instant::now();
        let mut h = History::new(
            Limits {
                per_stream: 1_000_000,
                ttl: Duration::from_secs(300),
                max_bytes: 1 << 30,
            },
            "e".into(),
        );
        for _ in 0..200_000 {
            push(&mut h, Some("u"), "e", "m", None, t0);
        }
        let events = [Rc::from("e")];
        let (mut at, mut marks, mut n) = (Pos::ZERO, Vec::new(), 0);
        let started = Instant::now();
        loop {
            let mut left = 10;
            let step = h.replay("u", &events, &mut at, &mut marks, t0, |_| {
                left -= 1;
                n += 1;
                left > 0
            });
            if step == Step::CaughtUp {
                break;
            }
            n -= 1; // the one refused is handed out again next time
        }
        assert_eq!(n, 200_000);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    /// A cluster node knows nothing before its first record; a loss or a
    /// new epoch makes every earlier cursor unrecoverable.
    #[test]
    fn a_cluster_history_knows_only_what_it_saw() {
        let t0 = Instant::now();
        let mut h = History::cluster(limits(10));
        assert!(!h.set_epoch("aaaaaaaa"), "the first epoch is not a change");
        let p = |hi, lo| Pos { hi, lo };
        assert!(!h.recoverable("u", "e", p(5, 0), t0), "nothing seen yet");
        h.record(p(10, 0), Some(&users(&["u"])), "e", "a", true, None, t0);
        h.record(p(10, 0), Some(&users(&["u"])), "e", "dup", true, None, t0);
        h.record(p(10, 1), None, "e", "b", true, None, t0);
        assert_eq!(h.len(), 2);
        assert!(
            !h.recoverable("u", "e", p(9, 0), t0),
            "before the first record seen"
        );
        assert!(h.recoverable("u", "e", p(10, 0), t0));
        assert_eq!(all(&mut h, "u", &["e"], p(10, 0), t0).0, vec!["b"]);
        h.forget_all();
        assert!(!h.recoverable("u", "e", p(10, 1), t0));
        h.record(p(11, 0), Some(&users(&["u"])), "e", "c", true, None, t0);
        assert!(!h.recoverable("u", "e", p(10, 1), t0), "the loss is before 11-0");
        assert!(h.recoverable("u", "e", p(11, 0), t0));
        assert!(h.set_epoch("bbbbbbbb"));
        assert_eq!(h.len(), 0);
        assert_eq!(h.parse_cursor("aaaaaaaa-11-0"), None);
    }
}
