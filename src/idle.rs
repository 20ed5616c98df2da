//! The idle keep-alive HTTP sockets, oldest first, so that a new connection
//! arriving at `--max-http-connections` can close the one that has waited
//! longest without scanning every connection.
//!
//! A socket is queued when it goes idle and stamped with its entry's
//! number (`Http::idle`). Leaving idleness only clears the stamp: stale
//! entries are skipped when the queue is popped, and dropped in one sweep
//! once they outnumber the sockets, so every operation is O(1) amortised.

use std::collections::VecDeque;

/// One socket going idle: its entry number, slab index and serial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub seq: u64,
    pub id: usize,
    pub serial: u64,
}

#[derive(Debug, Default)]
pub(crate) struct IdleQueue {
    entries: VecDeque<Entry>,
    next_seq: u64,
}

/// Entries kept beyond twice the live sockets before a sweep.
const SLACK: usize = 64;

impl IdleQueue {
    /// Queues connection `id` (holding `serial`) as the newest idle one;
    /// returns the entry number to stamp it with. `live` is how many HTTP
    /// sockets exist; `valid` tells whether an entry still stands, for the
    /// sweep that keeps the queue in proportion to them.
    pub fn push(&mut self, id: usize, serial: u64, live: usize, valid: impl FnMut(&Entry) -> bool) -> u64 {
        if self.entries.len() > 2 * live + SLACK {
            self.entries.retain(valid);
        }
        self.next_seq += 1;
        self.entries.push_back(Entry {
            seq: self.next_seq,
            id,
            serial,
        });
        self.next_seq
    }

    /// Takes the oldest entry that still stands.
    pub fn pop_oldest(&mut self, mut valid: impl FnMut(&Entry) -> bool) -> Option<Entry> {
        while let Some(e) = self.entries.pop_front() {
            if valid(&e) {
                return Some(e);
            }
        }
        None
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Oldest first, stale entries skipped, and the queue stays in
    /// proportion to the sockets however often they go idle and busy.
    #[test]
    fn oldest_valid_first_and_bounded() {
        let mut q = IdleQueue::default();
        // id -> stamp, as Http::idle would hold it.
        let mut stamps: HashMap<usize, u64> = HashMap::new();
        for round in 0..1000 {
            for id in 0..10 {
                let valid = |e: &Entry| stamps.get(&e.id) == Some(&e.seq);
                let seq = q.push(id, 7, 10, valid);
                stamps.insert(id, seq);
                if round % 2 == 0 {
                    // Busy again right away: the stamp goes.
                    stamps.remove(&id);
                }
            }
            assert!(q.len() <= 2 * 10 + SLACK + 1, "{}", q.len());
        }
        // The last round left ids 0..10 idle, in that order.
        let valid = |e: &Entry| stamps.get(&e.id) == Some(&e.seq);
        let e = q.pop_oldest(valid).unwrap();
        assert_eq!((e.id, e.serial), (0, 7));
        stamps.remove(&3);
        let mut order = Vec::new();
        while let Some(e) = q.pop_oldest(|e| stamps.get(&e.id) == Some(&e.seq)) {
            order.push(e.id);
        }
        assert_eq!(order, vec![1, 2, 4, 5, 6, 7, 8, 9]);
    }
}
