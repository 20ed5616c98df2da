//! Presence across a cluster, no I/O: what the other nodes say they hold
//! (`View`), and what this node owes them and when (`Duties`).
//!
//! Each node publishes its own state — per user: connections, and
//! connections per event — and nothing else; every node keeps every other
//! node's state, so `/presence` and `/lifecycle` answer from memory, with
//! no round trip and no coordinator. A state record is the whole state of
//! the users it names (not a delta), so a lost record is repaired by the
//! next one about the same user, and a node that missed records (its link
//! to Redis broke) is repaired by snapshots: when a node comes up it says
//! `hello`, publishes its snapshot, and every other node answers with
//! its own.
//!
//! A node that stops talking is gone: every node beats every half ping
//! interval, and a node not heard for one and a half intervals is dropped
//! from the view — its users go offline unless another node holds them.
//! So a killed node drops out within two ping intervals. While this
//! node's own link is down nothing is dropped (silence then says nothing
//! about the others), and every node gets a fresh interval when the link
//! comes back.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// One user's state on one node, as records carry it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserState {
    /// Its connections on that node; zero: it has none there any more.
    pub connections: u32,
    /// Connections per subscribed event.
    pub events: Vec<(Rc<str>, u32)>,
}

/// Whether a user's holding across the other nodes changed: `true` when
/// the first other node now holds it, `false` when the last let it go.
pub type Held = (Rc<str>, bool);

#[derive(Debug)]
struct Node {
    heard: Instant,
    users: HashMap<Rc<str>, UserState>,
    /// Event → user → connections, so an event's answer costs what it
    /// lists, not the node's size.
    by_event: HashMap<Rc<str>, HashMap<Rc<str>, u32>>,
}

impl Node {
    fn new(now: Instant) -> Node {
        Node {
            heard: now,
            users: HashMap::new(),
            by_event: HashMap::new(),
        }
    }

    fn unindex(&mut self, user: &Rc<str>, state: &UserState) {
        for (event, _) in &state.events {
            if let Some(users) = self.by_event.get_mut(event) {
                users.remove(user);
                if users.is_empty() {
                    self.by_event.remove(event);
                }
            }
        }
    }

    fn index(&mut self, user: &Rc<str>, state: &UserState) {
        for (event, n) in &state.events {
            let event = match self.by_event.get_key_value(event) {
                Some((k, _)) => k.clone(),
                None => event.clone(),
            };
            self.by_event.entry(event).or_default().insert(user.clone(), *n);
        }
    }
}

/// What every other node holds.
#[derive(Debug, Default)]
pub struct View {
    nodes: HashMap<String, Node>,
    /// How many other nodes hold each user; the one copy of its name.
    held: HashMap<Rc<str>, u32>,
}

impl View {
    /// Whether another node holds `user`.
    pub fn holds(&self, user: &str) -> bool {
        self.held.contains_key(user)
    }

    /// Users held by at least one other node.
    #[cfg(test)]
    pub fn user_count(&self) -> usize {
        self.held.len()
    }

    /// Users `node` holds, as far as this node knows.
    pub fn users_of(&self, node: &str) -> Option<usize> {
        self.nodes.get(node).map(|n| n.users.len())
    }

    /// `node` said something: it is alive. True when it is new here.
    pub fn heard(&mut self, node: &str, now: Instant) -> bool {
        match self.nodes.get_mut(node) {
            Some(n) => {
                n.heard = now;
                false
            }
            None => {
                self.nodes.insert(node.to_string(), Node::new(now));
                true
            }
        }
    }

    /// Applies `node`'s states (`replace`: they are all it holds, a
    /// snapshot); users whose holding changed go to `changed`.
    pub fn apply(
        &mut self,
        node: &str,
        states: Vec<(String, UserState)>,
        replace: bool,
        now: Instant,
        changed: &mut Vec<Held>,
    ) {
        self.heard(node, now);
        let Some(mut n) = self.nodes.remove(node) else {
            return;
        };
        let mut gone: HashMap<Rc<str>, UserState> = if replace {
            std::mem::take(&mut n.users)
        } else {
            HashMap::new()
        };
        if replace {
            n.by_event.clear();
        }
        for (user, state) in states {
            // From the replaced set (its index is already cleared), or
            // from what stays (unindexed now, indexed again below).
            let old = match gone.remove_entry(user.as_str()) {
                Some(entry) => Some(entry),
                None => n
                    .users
                    .remove_entry(user.as_str())
                    .inspect(|(name, old)| n.unindex(name, old)),
            };
            if state.connections == 0 {
                if let Some((name, _)) = old {
                    self.release(&name, changed);
                }
                continue;
            }
            let name = match old {
                Some((name, _)) => name,
                None => self.hold(&user, changed),
            };
            n.index(&name, &state);
            n.users.insert(name, state);
        }
        for (name, _) in gone {
            self.release(&name, changed);
        }
        self.nodes.insert(node.to_string(), n);
    }

    /// One more node holds `user`; its shared name.
    fn hold(&mut self, user: &str, changed: &mut Vec<Held>) -> Rc<str> {
        if let Some((name, count)) = self.held.get_key_value(user) {
            let name = name.clone();
            let count = *count;
            self.held.insert(name.clone(), count + 1);
            return name;
        }
        let name: Rc<str> = Rc::from(user);
        self.held.insert(name.clone(), 1);
        changed.push((name.clone(), true));
        name
    }

    /// One node fewer holds `user`.
    fn release(&mut self, user: &Rc<str>, changed: &mut Vec<Held>) {
        let Some(count) = self.held.get_mut(user) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            self.held.remove(user);
            changed.push((user.clone(), false));
        }
    }

    /// Forgets `node` and everything it held.
    pub fn remove(&mut self, node: &str, changed: &mut Vec<Held>) {
        if let Some(n) = self.nodes.remove(node) {
            for (name, _) in n.users {
                self.release(&name, changed);
            }
        }
    }

    /// Drops every node not heard since `before`; returns their names
    /// and how many users each held.
    pub fn expire(&mut self, before: Instant, changed: &mut Vec<Held>) -> Vec<(String, usize)> {
        let dead: Vec<(String, usize)> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.heard < before)
            .map(|(id, n)| (id.clone(), n.users.len()))
            .collect();
        for (id, _) in &dead {
            self.remove(id, changed);
        }
        dead
    }

    /// Nodes known (heard from within the horizon).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// When the node heard from longest ago was heard.
    pub fn oldest_heard(&self) -> Option<Instant> {
        self.nodes.values().map(|n| n.heard).min()
    }

    /// Every node starts a fresh interval (this node could not hear them).
    pub fn heard_all(&mut self, now: Instant) {
        for n in self.nodes.values_mut() {
            n.heard = now;
        }
    }

    /// `user`'s connections on the other nodes, and its events there
    /// (repeats possible, one per node).
    pub fn user(&self, user: &str) -> (u64, Vec<&Rc<str>>) {
        let mut conns = 0;
        let mut events = Vec::new();
        if !self.holds(user) {
            return (0, events);
        }
        for n in self.nodes.values() {
            if let Some(s) = n.users.get(user) {
                conns += u64::from(s.connections);
                events.extend(s.events.iter().map(|(e, _)| e));
            }
        }
        (conns, events)
    }

    /// Calls `f` with each user subscribed to `event` on another node (a
    /// user on several nodes once per node) and its connections there.
    pub fn event<'a>(&'a self, event: &str, mut f: impl FnMut(&'a Rc<str>, u32)) {
        for n in self.nodes.values() {
            if let Some(users) = n.by_event.get(event) {
                for (u, c) in users {
                    f(u, *c);
                }
            }
        }
    }
}

/// What this node owes the cluster now.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Say `hello` (the others answer with their snapshots).
    pub hello: bool,
    /// Publish every user this node holds.
    pub snapshot: bool,
    /// Publish a heartbeat.
    pub beat: bool,
}

/// This node's side: when to beat, when the others must answer for
/// themselves, when a snapshot is owed.
///
/// A node speaks only when it has something to say or to ask: it beats
/// while it holds users (a node without users dying loses nobody); it
/// says `hello` when it comes up knowing other nodes, when it first needs
/// the others' state (it holds users, a `/lifecycle` stream opened,
/// `/presence` was asked), or when a beat shows it a node it does not
/// know or knows wrong; it publishes a snapshot when asked, or when it
/// comes up with users or after having spoken (the others may hold a
/// stale picture of it). A lone node nobody uses publishes nothing.
#[derive(Debug)]
pub struct Duties {
    /// This node's name in records, unique per process.
    pub me: String,
    beat_every: Duration,
    /// Silence after which another node counts as gone.
    horizon: Duration,
    up: bool,
    next_beat: Option<Instant>,
    snapshot_at: Option<Instant>,
    /// A `hello` owed (asking everyone for snapshots again).
    hello_at: Option<Instant>,
    /// When this node last asked everyone for snapshots.
    asked_at: Option<Instant>,
    /// This node published its state at least once: the others may hold
    /// a picture of it.
    spoken: bool,
    /// This node needs the others' state (it holds users, has listeners,
    /// was asked for presence).
    curious: bool,
}

impl Duties {
    /// `ping`: the ping interval (zero: the 30 s default).
    pub fn new(me: String, ping: Duration) -> Duties {
        let ping = if ping.is_zero() {
            Duration::from_secs(30)
        } else {
            ping
        };
        Duties {
            me,
            beat_every: ping / 2,
            horizon: ping * 3 / 2,
            up: false,
            next_beat: None,
            snapshot_at: None,
            hello_at: None,
            asked_at: None,
            spoken: false,
            curious: false,
        }
    }

    /// This node needs the others' state from now on: the first time,
    /// ask for it (a `hello`).
    pub fn be_curious(&mut self, now: Instant) {
        if self.curious {
            return;
        }
        self.curious = true;
        if self.up {
            self.asked_at = Some(now);
            self.hello_at = Some(now);
        }
    }

    /// This node published its state.
    pub fn spoke(&mut self) {
        self.spoken = true;
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Another node said `hello`: it wants our snapshot.
    pub fn owe_snapshot(&mut self, now: Instant) {
        self.snapshot_at = Some(now);
    }

    /// Our view of another node disagrees with its heartbeat (records
    /// were lost): ask everyone for snapshots, at most once per horizon.
    /// True when a `hello` is now owed.
    pub fn resync(&mut self, now: Instant) -> bool {
        if self.asked_at.is_some_and(|t| now < t + self.horizon) {
            return false;
        }
        self.asked_at = Some(now);
        self.hello_at = Some(now);
        true
    }

    /// What is due at `now`, given whether the link is `up` and how many
    /// users this node `holds`. Coming up gives every known node a fresh
    /// horizon (`view`); while up, nodes silent past the horizon are
    /// dropped (into `changed`; their names and user counts returned).
    pub fn tick(
        &mut self,
        up: bool,
        holds: usize,
        now: Instant,
        view: &mut View,
        changed: &mut Vec<Held>,
    ) -> (Due, Vec<(String, usize)>) {
        let mut due = Due::default();
        if up != self.up {
            self.up = up;
            if up {
                view.heard_all(now);
                due.hello = view.node_count() > 0 || holds > 0 || self.curious;
                due.snapshot = holds > 0 || self.spoken;
                due.beat = holds > 0;
                self.asked_at = due.hello.then_some(now);
                self.next_beat = Some(now + self.beat_every);
                self.snapshot_at = None;
                self.hello_at = None;
            } else {
                self.next_beat = None;
            }
            return (due, Vec::new());
        }
        if !up {
            return (due, Vec::new());
        }
        if self.snapshot_at.is_some_and(|t| t <= now) {
            self.snapshot_at = None;
            due.snapshot = true;
        }
        if self.hello_at.is_some_and(|t| t <= now) {
            self.hello_at = None;
            due.hello = true;
        }
        if self.next_beat.is_some_and(|t| t <= now) {
            self.next_beat = Some(now + self.beat_every);
            due.beat = holds > 0;
        }
        let dead = match now.checked_sub(self.horizon) {
            Some(before) => view.expire(before, changed),
            None => Vec::new(),
        };
        (due, dead)
    }

    /// When `tick` next has work.
    pub fn next_deadline(&self, view: &View) -> Option<Instant> {
        if !self.up {
            return None;
        }
        let expiry = view
            .oldest_heard()
            .map(|t| t + self.horizon + Duration::from_millis(1));
        [self.next_beat, self.snapshot_at, self.hello_at, expiry]
            .into_iter()
            .flatten()
            .min()
    }
}

/// A name for this node, different in every process.
pub fn node_name() -> String {
    format!("{:016x}", crate::unique::per_process(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(conns: u32, events: &[(&str, u32)]) -> UserState {
        UserState {
            connections: conns,
            events: events.iter().map(|(e, n)| (Rc::from(*e), *n)).collect(),
        }
    }

    fn names(changed: &[Held]) -> Vec<(String, bool)> {
        let mut v: Vec<(String, bool)> = changed.iter().map(|(u, h)| (u.to_string(), *h)).collect();
        v.sort();
        v
    }

    fn event_users(v: &View, e: &str) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        v.event(e, |u, c| out.push((u.to_string(), c)));
        out.sort();
        out
    }

    #[test]
    fn updates_snapshots_and_holding_across_nodes() {
        let t0 = Instant::now();
        let mut v = View::default();
        let mut ch = Vec::new();
        v.apply(
            "a",
            vec![("alice".into(), state(2, &[("news", 2)]))],
            false,
            t0,
            &mut ch,
        );
        assert_eq!(names(&ch), [("alice".into(), true)]);
        ch.clear();
        v.apply(
            "b",
            vec![("alice".into(), state(1, &[("chat", 1)]))],
            false,
            t0,
            &mut ch,
        );
        assert!(ch.is_empty(), "already held");
        assert_eq!(v.user("alice").0, 3);
        assert_eq!(event_users(&v, "news"), [("alice".into(), 2)]);
        // An update replaces the user's state on that node.
        v.apply(
            "a",
            vec![("alice".into(), state(1, &[("sport", 1)]))],
            false,
            t0,
            &mut ch,
        );
        assert_eq!(event_users(&v, "news"), []);
        assert_eq!(event_users(&v, "sport"), [("alice".into(), 1)]);
        // Zero connections: gone from that node, still held by b.
        v.apply("a", vec![("alice".into(), state(0, &[]))], false, t0, &mut ch);
        assert!(ch.is_empty() && v.holds("alice"));
        assert_eq!(v.users_of("a"), Some(0));
        // A snapshot replaces everything b held.
        v.apply(
            "b",
            vec![("bob".into(), state(1, &[("news", 1)]))],
            true,
            t0,
            &mut ch,
        );
        assert_eq!(names(&ch), [("alice".into(), false), ("bob".into(), true)]);
        assert_eq!(event_users(&v, "chat"), []);
        assert_eq!(event_users(&v, "news"), [("bob".into(), 1)]);
        assert_eq!(v.user_count(), 1);
    }

    #[test]
    fn a_snapshot_keeps_what_it_repeats() {
        let t0 = Instant::now();
        let mut v = View::default();
        let mut ch = Vec::new();
        v.apply("a", vec![("u".into(), state(1, &[("e", 1)]))], false, t0, &mut ch);
        ch.clear();
        v.apply("a", vec![("u".into(), state(2, &[("e", 2)]))], true, t0, &mut ch);
        assert!(ch.is_empty(), "no flap for a user in both");
        assert_eq!(event_users(&v, "e"), [("u".into(), 2)]);
    }

    /// A node's silence is stepped, not slept: dropped past the horizon
    /// (its users released), never while this node's link is down, and
    /// every node gets a fresh horizon when the link comes back.
    #[test]
    fn silent_nodes_are_dropped_only_while_up() {
        let t0 = Instant::now();
        let ping = Duration::from_secs(2);
        let mut d = Duties::new("me".into(), ping);
        let mut v = View::default();
        let mut ch = Vec::new();
        let (due, _) = d.tick(true, 1, t0, &mut v, &mut ch);
        let first = Due {
            hello: true,
            snapshot: true,
            beat: true,
        };
        assert_eq!(due, first, "it holds users: it needs the others too");
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        v.apply(
            "a",
            vec![("alice".into(), state(1, &[("e", 1)]))],
            false,
            t0,
            &mut ch,
        );
        ch.clear();
        assert_eq!(d.next_deadline(&v), Some(at(1000)), "a beat every half ping");
        let (due, dead) = d.tick(true, 1, at(1000), &mut v, &mut ch);
        assert!(due.beat && !due.hello && dead.is_empty());
        // Just within 1.5 pings of silence: kept.
        let (_, dead) = d.tick(true, 1, at(3000), &mut v, &mut ch);
        assert!(dead.is_empty());
        assert_eq!(
            d.next_deadline(&v),
            Some(at(3001)),
            "a's horizon, before the next beat"
        );
        let (_, dead) = d.tick(true, 1, at(3001), &mut v, &mut ch);
        assert_eq!(dead, [("a".to_string(), 1)]);
        assert_eq!(names(&ch), [("alice".into(), false)]);

        // Down: silence says nothing; back up: a fresh horizon for all.
        ch.clear();
        v.apply("b", vec![("bob".into(), state(1, &[]))], false, at(4000), &mut ch);
        let (due, _) = d.tick(false, 1, at(5000), &mut v, &mut ch);
        assert_eq!(due, Due::default());
        assert_eq!(d.next_deadline(&v), None);
        let (_, dead) = d.tick(false, 1, at(60_000), &mut v, &mut ch);
        assert!(dead.is_empty());
        let (due, dead) = d.tick(true, 1, at(61_000), &mut v, &mut ch);
        assert!(due.hello && due.snapshot && due.beat && dead.is_empty());
        let (_, dead) = d.tick(true, 1, at(63_000), &mut v, &mut ch);
        assert!(dead.is_empty(), "b gets a fresh horizon");
        let (_, dead) = d.tick(true, 1, at(64_001), &mut v, &mut ch);
        assert_eq!(dead, [("b".to_string(), 1)]);
    }

    /// A lone node with nobody connected publishes nothing; once it has
    /// spoken, it owes a snapshot whenever it comes back; it beats only
    /// while it holds users.
    #[test]
    fn a_node_speaks_only_when_it_has_something_to_say() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut d = Duties::new("me".into(), Duration::from_secs(2));
        let mut v = View::default();
        let mut ch = Vec::new();
        assert_eq!(d.tick(true, 0, t0, &mut v, &mut ch).0, Due::default());
        assert_eq!(
            d.tick(true, 0, at(1), &mut v, &mut ch).0,
            Due::default(),
            "no beat"
        );
        assert!(d.tick(true, 3, at(2), &mut v, &mut ch).0.beat);
        d.spoke();
        d.tick(false, 0, at(3), &mut v, &mut ch);
        let (due, _) = d.tick(true, 0, at(4), &mut v, &mut ch);
        assert!(due.snapshot && !due.beat, "the others may hold old news");
    }

    /// A node that needs the others' state asks once, at once, and again
    /// whenever it comes back up.
    #[test]
    fn a_curious_node_says_hello() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut v = View::default();
        let mut ch = Vec::new();
        let mut d = Duties::new("me".into(), Duration::from_secs(2));
        d.be_curious(t0);
        assert_eq!(d.next_deadline(&v), None, "down: nothing to do yet");
        let (due, _) = d.tick(true, 0, at(1), &mut v, &mut ch);
        assert!(due.hello && !due.snapshot);
        let mut d = Duties::new("me".into(), Duration::from_secs(2));
        assert_eq!(d.tick(true, 0, t0, &mut v, &mut ch).0, Due::default());
        d.be_curious(at(1));
        assert_eq!(d.next_deadline(&v), Some(at(1)));
        assert!(d.tick(true, 0, at(1), &mut v, &mut ch).0.hello);
        d.be_curious(at(2));
        assert!(!d.tick(true, 0, at(2), &mut v, &mut ch).0.hello, "once");
        d.tick(false, 0, at(3), &mut v, &mut ch);
        assert!(d.tick(true, 0, at(4), &mut v, &mut ch).0.hello, "back up");
    }

    #[test]
    fn snapshots_owed_and_resyncs_rate_limited() {
        let t0 = Instant::now();
        let mut d = Duties::new("me".into(), Duration::ZERO);
        let mut v = View::default();
        let mut ch = Vec::new();
        v.heard("other", t0);
        let (due, _) = d.tick(true, 0, t0, &mut v, &mut ch);
        assert!(due.hello, "it knows a node");
        assert!(!d.resync(t0), "coming up just asked");
        d.owe_snapshot(t0 + Duration::from_secs(1));
        assert_eq!(d.next_deadline(&v), Some(t0 + Duration::from_secs(1)));
        let (due, _) = d.tick(true, 0, t0 + Duration::from_secs(1), &mut v, &mut ch);
        assert!(due.snapshot && !due.beat);
        assert_eq!(
            d.next_deadline(&v),
            Some(t0 + Duration::from_secs(15)),
            "a 30 s ping by default"
        );
        let later = t0 + Duration::from_secs(45);
        assert!(d.resync(later));
        assert!(!d.resync(later + Duration::from_secs(1)));
        let (due, _) = d.tick(true, 0, later, &mut v, &mut ch);
        assert!(due.hello && !due.snapshot);
        // Coming up knowing nobody: the first disagreement may ask at once.
        let mut d = Duties::new("me".into(), Duration::ZERO);
        d.tick(true, 0, t0, &mut View::default(), &mut ch);
        assert!(d.resync(t0));
    }

    #[test]
    fn node_names_differ() {
        assert_ne!(node_name(), node_name());
        assert_eq!(node_name().len(), 16);
    }
}
