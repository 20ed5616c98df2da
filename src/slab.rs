//! Connections by index: the index is the mio `Token` and the binder's key.
//!
//! A slot can be *taken* while its connection is being driven, so the loop
//! holds `&mut Conn` and `&mut` everything else at once; a taken slot is
//! neither free nor visible, so its index cannot be reused meanwhile.

pub struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<usize>,
    len: usize,
}

impl<T> Slab<T> {
    pub fn new() -> Slab<T> {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    /// Stores `value`, returning its index.
    pub fn insert(&mut self, value: T) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(value);
                i
            }
            None => {
                self.slots.push(Some(value));
                self.slots.len() - 1
            }
        }
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.slots.get_mut(i).and_then(Option::as_mut)
    }

    /// Takes the value out for a while; `put_back` or `release` must follow.
    pub fn take(&mut self, i: usize) -> Option<T> {
        self.slots.get_mut(i).and_then(Option::take)
    }

    pub fn put_back(&mut self, i: usize, value: T) {
        self.slots[i] = Some(value);
    }

    /// Frees the slot of a value that was taken and will not come back.
    pub fn release(&mut self, i: usize) {
        debug_assert!(self.slots[i].is_none());
        self.free.push(i);
        self.len -= 1;
    }

    /// Number of stored values, taken ones included.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Indices of the values present now.
    pub fn indices(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].is_some())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_freed_slots_not_taken_ones() {
        let mut s = Slab::new();
        let a = s.insert("a");
        let b = s.insert("b");
        let taken = s.take(a).unwrap();
        assert_eq!(s.insert("c"), 2, "a taken slot is not free");
        s.put_back(a, taken);
        assert_eq!(s.take(b), Some("b"));
        s.release(b);
        assert_eq!(s.insert("d"), b);
        assert_eq!(s.len(), 3);
        assert_eq!(s.indices(), vec![0, 1, 2]);
        let _ = s.take(0);
        s.release(0);
        assert_eq!(s.len(), 2);
        assert!(s.get_mut(0).is_none());
    }
}
