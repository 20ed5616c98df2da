//! Who listens to what: user → connections, event → connections, and each
//! connection's user and events. Plain maps owned by the loop, no I/O.
//!
//! Indexed both ways so that a push costs O(matching connections), a
//! broadcast O(subscribers) and unbinding a closed connection O(its events).
//! Users and events are strings the clients chose, so their maps keep std's
//! DoS-resistant hasher. Connections are keyed by their slab index, which
//! the server chooses, so their bindings sit in a plain vector: a push
//! looks each receiver up by index, with no hashing per delivered message.
//! Names are shared `Rc<str>`: a user with many connections or an event
//! with many subscribers is stored once.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// A connection's index in the loop's slab.
pub type ConnId = usize;

#[derive(Debug)]
struct Binding {
    user: Rc<str>,
    /// Sized exactly: nearly every connection has one event, and a `Vec`
    /// reserves room for four on its first push (48 bytes more per client).
    events: Box<[Rc<str>]>,
    /// Where this connection sits in its user's list, so unbinding is a
    /// `swap_remove` instead of a search: closing all of a user's n
    /// connections (a reconnect storm, a `/drop`) costs O(n), not O(n²).
    pos: usize,
}

/// Why a register was refused (the loop maps these to close codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindError {
    /// The connection already belongs to another user (4403).
    OtherUser,
    /// The connection is at its events limit (4429).
    TooManyEvents,
}

/// How a user's bindings changed (presence follows the binder through
/// these: see `Binder::drain_changes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Its first connection bound.
    Joined,
    /// Its last connection went.
    Left,
    /// A connection or an event came or went; the user still has one.
    Events,
}

#[derive(Debug, Default)]
pub struct Binder {
    users: HashMap<Rc<str>, Vec<ConnId>>,
    events: HashMap<Rc<str>, HashSet<ConnId>>,
    /// Indexed by `ConnId`; `None` for slots not bound (or not in use).
    conns: Vec<Option<Binding>>,
    subscriptions: usize,
    /// What changed since presence last looked, in order. Recorded here,
    /// the one place bindings change, so no caller can forget to tell.
    changes: Vec<(Rc<str>, Change)>,
}

impl Binder {
    pub fn new() -> Binder {
        Binder::default()
    }

    fn binding(&self, conn: ConnId) -> Option<&Binding> {
        self.conns.get(conn).and_then(Option::as_ref)
    }

    /// Binds `conn` to `user` (first time) and subscribes it to `event`.
    /// Registering an event twice is a no-op.
    pub fn bind(
        &mut self,
        conn: ConnId,
        user: &str,
        event: &str,
        max_events: usize,
    ) -> Result<(), BindError> {
        if let Some(b) = self.binding(conn) {
            if &*b.user != user {
                return Err(BindError::OtherUser);
            }
            if b.events.iter().any(|e| &**e == event) {
                return Ok(());
            }
            if b.events.len() >= max_events {
                return Err(BindError::TooManyEvents);
            }
        } else {
            if max_events == 0 {
                return Err(BindError::TooManyEvents);
            }
            let user = match self.users.get_key_value(user) {
                Some((k, _)) => k.clone(),
                None => Rc::from(user),
            };
            let list = self.users.entry(user.clone()).or_default();
            if list.is_empty() {
                // Most users have one connection; later pushes grow as usual.
                list.reserve_exact(1);
                self.changes.push((user.clone(), Change::Joined));
            } else {
                self.changes.push((user.clone(), Change::Events));
            }
            let pos = list.len();
            list.push(conn);
            if self.conns.len() <= conn {
                self.conns.resize_with(conn + 1, || None);
            }
            self.conns[conn] = Some(Binding {
                user,
                events: Box::default(),
                pos,
            });
        }
        let event: Rc<str> = match self.events.get_key_value(event) {
            Some((k, _)) => k.clone(),
            None => Rc::from(event),
        };
        self.events.entry(event.clone()).or_default().insert(conn);
        if let Some(Some(b)) = self.conns.get_mut(conn) {
            let mut events = Vec::from(std::mem::take(&mut b.events));
            let first = events.is_empty();
            events.push(event);
            b.events = events.into_boxed_slice();
            if !first {
                self.changes.push((b.user.clone(), Change::Events));
            }
        }
        self.subscriptions += 1;
        Ok(())
    }

    /// Stops `conn` receiving `event`; the connection keeps its user.
    /// Returns whether it was subscribed.
    pub fn unsubscribe(&mut self, conn: ConnId, event: &str) -> bool {
        let Some(Some(b)) = self.conns.get_mut(conn) else {
            return false;
        };
        let Some(pos) = b.events.iter().position(|e| &**e == event) else {
            return false;
        };
        let mut events = Vec::from(std::mem::take(&mut b.events));
        let ev = events.swap_remove(pos);
        b.events = events.into_boxed_slice();
        self.changes.push((b.user.clone(), Change::Events));
        self.remove_from_event(&ev, conn);
        self.subscriptions -= 1;
        true
    }

    /// Forgets `conn` entirely (it closed). Safe to call for unbound ids.
    pub fn unbind(&mut self, conn: ConnId) {
        let Some(b) = self.conns.get_mut(conn).and_then(Option::take) else {
            return;
        };
        for ev in &b.events {
            self.remove_from_event(ev, conn);
        }
        self.subscriptions -= b.events.len();
        if let Some(list) = self.users.get_mut(&b.user) {
            if list.get(b.pos) == Some(&conn) {
                list.swap_remove(b.pos);
                // The last connection moved into the hole: tell it.
                if let Some(&moved) = list.get(b.pos) {
                    if let Some(Some(m)) = self.conns.get_mut(moved) {
                        m.pos = b.pos;
                    }
                }
            }
            if list.is_empty() {
                self.users.remove(&b.user);
                self.changes.push((b.user, Change::Left));
            } else {
                self.changes.push((b.user, Change::Events));
            }
        }
    }

    fn remove_from_event(&mut self, event: &str, conn: ConnId) {
        if let Some(set) = self.events.get_mut(event) {
            set.remove(&conn);
            if set.is_empty() {
                self.events.remove(event);
            }
        }
    }

    /// The user `conn` is bound to, if it registered.
    pub fn user_of(&self, conn: ConnId) -> Option<&str> {
        self.binding(conn).map(|b| &*b.user)
    }

    /// How many connections are bound to `user` (`--max-connections-per-user`).
    pub fn connections(&self, user: &str) -> usize {
        self.users.get(user).map_or(0, Vec::len)
    }

    /// Calls `f` for each connection of `user` subscribed to `event`.
    pub fn for_user_event(&self, user: &str, event: &str, mut f: impl FnMut(ConnId)) {
        // Subscribed connections share the map's `Rc` of the event name, so
        // each one is checked by pointer, not by comparing strings.
        let Some((event, _)) = self.events.get_key_value(event) else {
            return;
        };
        let Some(list) = self.users.get(user) else {
            return;
        };
        for &c in list {
            if self
                .binding(c)
                .is_some_and(|b| b.events.iter().any(|e| Rc::ptr_eq(e, event)))
            {
                f(c);
            }
        }
    }

    /// Connections of `user`, or only those subscribed to `event` when given.
    pub fn conns_of_user(&self, user: &str, event: Option<&str>) -> Vec<ConnId> {
        let mut out = Vec::new();
        match event {
            Some(e) => self.for_user_event(user, e, |c| out.push(c)),
            None => out.extend(self.users.get(user).into_iter().flatten().copied()),
        }
        out
    }

    /// Every connection subscribed to `event`.
    pub fn subscribers(&self, event: &str) -> impl Iterator<Item = ConnId> + '_ {
        self.events.get(event).into_iter().flatten().copied()
    }

    /// Number of distinct registered users (a gauge in /metrics).
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Total (connection, event) pairs (a gauge in /metrics).
    pub fn subscription_count(&self) -> usize {
        self.subscriptions
    }

    /// Whether `user` has a bound connection here.
    pub fn has_user(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Every bound user with its connections.
    pub fn users(&self) -> impl Iterator<Item = (&Rc<str>, &[ConnId])> + '_ {
        self.users.iter().map(|(u, list)| (u, list.as_slice()))
    }

    /// The connections of `user` (none when it has none).
    pub fn conns_of(&self, user: &str) -> &[ConnId] {
        self.users.get(user).map_or(&[], Vec::as_slice)
    }

    /// The events `conn` is subscribed to.
    pub fn events_of(&self, conn: ConnId) -> &[Rc<str>] {
        self.binding(conn).map_or(&[], |b| &b.events)
    }

    /// Whether anything changed since the last `drain_changes`.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// Moves what changed, in order, to the end of `out`.
    pub fn drain_changes(&mut self, out: &mut Vec<(Rc<str>, Change)>) {
        out.append(&mut self.changes);
        // The buffer is kept from turn to turn (no allocation per turn),
        // but a burst (a reconnect storm) leaves no big one behind.
        if self.changes.capacity() > 1024 {
            self.changes = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut v: Vec<ConnId>) -> Vec<ConnId> {
        v.sort_unstable();
        v
    }

    fn for_user(b: &Binder, user: &str, event: &str) -> Vec<ConnId> {
        let mut v = Vec::new();
        b.for_user_event(user, event, |c| v.push(c));
        sorted(v)
    }

    #[test]
    fn bind_push_and_broadcast_targets() {
        let mut b = Binder::new();
        b.bind(1, "alice", "news", 64).unwrap();
        b.bind(2, "alice", "chat", 64).unwrap();
        b.bind(3, "bob", "news", 64).unwrap();
        assert_eq!(for_user(&b, "alice", "news"), vec![1]);
        assert_eq!(for_user(&b, "alice", "chat"), vec![2]);
        assert_eq!(for_user(&b, "carol", "news"), Vec::<ConnId>::new());
        assert_eq!(sorted(b.subscribers("news").collect()), vec![1, 3]);
        assert_eq!(b.user_count(), 2);
        assert_eq!(b.subscription_count(), 3);
        assert_eq!(b.user_of(3), Some("bob"));
    }

    #[test]
    fn one_user_per_connection_and_idempotent_events() {
        let mut b = Binder::new();
        b.bind(1, "alice", "news", 64).unwrap();
        b.bind(1, "alice", "news", 64).unwrap();
        assert_eq!(b.subscription_count(), 1);
        assert_eq!(b.bind(1, "bob", "news", 64), Err(BindError::OtherUser));
        assert_eq!(b.user_of(1), Some("alice"));
        b.bind(1, "alice", "chat", 64).unwrap();
        assert_eq!(for_user(&b, "alice", "chat"), vec![1]);
    }

    #[test]
    fn events_limit() {
        let mut b = Binder::new();
        b.bind(1, "u", "a", 2).unwrap();
        b.bind(1, "u", "b", 2).unwrap();
        assert_eq!(b.bind(1, "u", "c", 2), Err(BindError::TooManyEvents));
        b.bind(1, "u", "a", 2).unwrap();
        assert!(b.unsubscribe(1, "a"));
        b.bind(1, "u", "c", 2).unwrap();
        assert_eq!(b.subscription_count(), 2);
    }

    #[test]
    fn unsubscribe_keeps_user() {
        let mut b = Binder::new();
        b.bind(1, "u", "a", 8).unwrap();
        assert!(b.unsubscribe(1, "a"));
        assert!(!b.unsubscribe(1, "a"));
        assert!(!b.unsubscribe(9, "a"));
        assert_eq!(b.user_of(1), Some("u"));
        assert_eq!(b.subscribers("a").count(), 0);
        assert_eq!(b.conns_of_user("u", None), vec![1]);
        assert_eq!(b.bind(1, "v", "a", 8), Err(BindError::OtherUser));
    }

    /// Pushes match events by the map's shared name: a name dropped with
    /// its last subscriber and made again later must still match.
    #[test]
    fn event_names_made_again_still_match() {
        let mut b = Binder::new();
        b.bind(7, "u", "a", 8).unwrap();
        assert!(b.unsubscribe(7, "a"));
        assert!(b.events.is_empty());
        b.bind(9, "u", "a", 8).unwrap();
        b.bind(7, "u", "a", 8).unwrap();
        assert_eq!(for_user(&b, "u", "a"), vec![7, 9]);
        assert_eq!(for_user(&b, "u", "b"), Vec::<ConnId>::new());
    }

    #[test]
    fn sparse_and_reused_slots() {
        let mut b = Binder::new();
        b.bind(1000, "u", "a", 8).unwrap();
        assert_eq!(b.user_of(999), None);
        assert_eq!(b.user_of(1000), Some("u"));
        b.unbind(1000);
        b.bind(1000, "v", "a", 8).unwrap();
        assert_eq!(for_user(&b, "u", "a"), Vec::<ConnId>::new());
        assert_eq!(for_user(&b, "v", "a"), vec![1000]);
    }

    /// Positions stay right whatever order connections leave in: after
    /// each unbind, every remaining connection is listed once, at the
    /// position its binding records.
    #[test]
    fn unbind_in_any_order_keeps_positions() {
        let mut b = Binder::new();
        for c in 0..40 {
            b.bind(c, "u", "e", 8).unwrap();
        }
        let order = [5, 39, 0, 20, 21, 1, 38, 10, 2, 3, 4, 33, 6, 7, 8, 9, 11, 12];
        for (i, &c) in order.iter().enumerate() {
            b.unbind(c);
            let list = &b.users["u"];
            assert_eq!(list.len(), 40 - i - 1);
            for (pos, &conn) in list.iter().enumerate() {
                assert_eq!(b.binding(conn).map(|x| x.pos), Some(pos), "after unbinding {c}");
            }
            assert!(!list.contains(&c));
        }
        let mut rest = b.conns_of_user("u", None);
        rest.sort_unstable();
        let mut want: Vec<ConnId> = (0..40).filter(|c| !order.contains(c)).collect();
        want.sort_unstable();
        assert_eq!(rest, want);
    }

    /// One user with 200,000 connections, all closing: linear in total. The
    /// old `retain` per unbind moved 20 billion ids here (about 5 s
    /// even in a release build); this takes milliseconds.
    #[test]
    fn unbinding_many_connections_of_one_user_is_linear() {
        const N: usize = 200_000;
        let mut b = Binder::new();
        for c in 0..N {
            b.bind(c, "crowd", "e", 8).unwrap();
        }
        let started = std::time::Instant::now();
        // Oldest first: the order that made `retain` scan the whole list.
        for c in 0..N {
            b.unbind(c);
        }
        let took = started.elapsed();
        assert_eq!(b.user_count(), 0);
        assert_eq!(b.subscription_count(), 0);
        assert!(
            took < std::time::Duration::from_secs(1),
            "unbinding {N} connections took {took:?}"
        );
    }

    /// Every way bindings change is recorded, in order, whoever caused
    /// it: presence follows the binder through these alone.
    #[test]
    fn changes_are_recorded_in_order() {
        let mut b = Binder::new();
        let mut got = Vec::new();
        let mut take = |b: &mut Binder| {
            got.clear();
            b.drain_changes(&mut got);
            got.iter().map(|(u, c)| (u.to_string(), *c)).collect::<Vec<_>>()
        };
        let c = |u: &str, c| (u.to_string(), c);
        b.bind(1, "u", "a", 8).unwrap();
        b.bind(1, "u", "b", 8).unwrap();
        b.bind(1, "u", "b", 8).unwrap();
        b.bind(2, "u", "a", 8).unwrap();
        assert_eq!(b.bind(1, "v", "a", 8), Err(BindError::OtherUser));
        assert!(b.has_changes());
        assert_eq!(
            take(&mut b),
            [
                c("u", Change::Joined),
                c("u", Change::Events),
                c("u", Change::Events)
            ]
        );
        assert!(!b.has_changes());
        assert!(b.unsubscribe(1, "a"));
        assert!(!b.unsubscribe(1, "a"));
        b.unbind(1);
        b.unbind(1);
        b.unbind(2);
        assert_eq!(
            take(&mut b),
            [
                c("u", Change::Events),
                c("u", Change::Events),
                c("u", Change::Left)
            ]
        );
        assert!(!b.has_user("u") && b.conns_of("u").is_empty());
    }

    #[test]
    fn unbind_forgets_everything() {
        let mut b = Binder::new();
        b.bind(1, "u", "a", 8).unwrap();
        b.bind(1, "u", "b", 8).unwrap();
        b.bind(2, "u", "a", 8).unwrap();
        b.unbind(1);
        b.unbind(1);
        b.unbind(42);
        assert_eq!(b.conns_of_user("u", None), vec![2]);
        assert_eq!(b.conns_of_user("u", Some("b")), Vec::<ConnId>::new());
        assert_eq!(b.subscription_count(), 1);
        b.unbind(2);
        assert_eq!(b.user_count(), 0);
        assert_eq!(b.subscription_count(), 0);
        assert!(b.users.is_empty() && b.events.is_empty() && b.conns.iter().all(Option::is_none));
    }
}
