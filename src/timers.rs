//! Deadlines: a min-heap of (when, connection) entries, invalidated lazily.
//!
//! Each connection can say when it next needs attention (register timeout,
//! next ping, request timeout, close deadline). Rather than re-inserting on
//! every change, an entry is added only when a connection's next deadline
//! moves *earlier* than what is armed; a later-than-needed entry simply
//! fires, and the connection re-arms for its real deadline. So the heap
//! holds O(connections) entries and nothing scans all connections per tick.
//! Entries carry the connection's serial, so a slot reused by a new
//! connection never receives the old one's timers.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize, u64)>>,
}

impl Timers {
    pub fn new() -> Timers {
        Timers::default()
    }

    /// Arms a wake-up for slot `id` holding connection `serial` at `at`.
    pub fn arm(&mut self, at: Instant, id: usize, serial: u64) {
        self.heap.push(Reverse((at, id, serial)));
    }

    /// When the loop must wake up next, if anything is armed.
    pub fn next_at(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Takes one entry that is due at `now`: `(armed time, slot, serial)`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, usize, u64)> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// Entries armed, stale ones included.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn due_in_order_only_when_due() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        t.arm(t0 + Duration::from_secs(3), 1, 10);
        t.arm(t0 + Duration::from_secs(1), 2, 20);
        t.arm(t0 + Duration::from_secs(2), 3, 30);
        assert_eq!(t.next_at(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.pop_due(t0), None);
        let now = t0 + Duration::from_secs(2);
        assert_eq!(t.pop_due(now).map(|e| e.1), Some(2));
        assert_eq!(t.pop_due(now).map(|e| e.1), Some(3));
        assert_eq!(t.pop_due(now), None);
        assert_eq!(t.len(), 1);
    }
}
