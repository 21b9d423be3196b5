//! A small cache of recently used values (decoded chunks, loaded trees),
//! bounded in entries and in bytes.
//!
//! It holds a few dozen entries at most, so a linear scan beats a linked
//! LRU structure in code and, at this size, in time.

use std::sync::Arc;

/// The most recently used values, up to `max_entries` of them and
/// `max_bytes` in all (a value larger than that is still kept alone, so
/// the next read of the same value hits).
pub(super) struct Recent<K, V> {
    entries: Vec<Slot<K, V>>,
    max_entries: usize,
    max_bytes: usize,
    bytes: usize,
    clock: u64,
}

struct Slot<K, V> {
    key: K,
    value: Arc<V>,
    bytes: usize,
    used: u64,
}

impl<K: PartialEq, V> Recent<K, V> {
    pub(super) fn new(max_entries: usize, max_bytes: usize) -> Self {
        Recent { entries: Vec::new(), max_entries: max_entries.max(1), max_bytes, bytes: 0, clock: 0 }
    }

    /// The value of `key`, marked as just used.
    pub(super) fn get(&mut self, key: &K) -> Option<Arc<V>> {
        self.clock += 1;
        let now = self.clock;
        self.entries.iter_mut().find(|s| s.key == *key).map(|s| {
            s.used = now;
            s.value.clone()
        })
    }

    /// Keeps `value` (weighing `bytes`) under `key`, dropping the least
    /// recently used entries to make room.
    pub(super) fn put(&mut self, key: K, value: Arc<V>, bytes: usize) {
        if let Some(i) = self.entries.iter().position(|s| s.key == key) {
            // Two readers of the same value raced: keep one copy.
            let old = self.entries.swap_remove(i);
            self.bytes -= old.bytes;
        }
        while !self.entries.is_empty()
            && (self.entries.len() >= self.max_entries || self.bytes + bytes > self.max_bytes)
        {
            let oldest = (0..self.entries.len()).min_by_key(|&i| self.entries[i].used).expect("not empty");
            let old = self.entries.swap_remove(oldest);
            self.bytes -= old.bytes;
        }
        self.clock += 1;
        self.bytes += bytes;
        self.entries.push(Slot { key, value, bytes, used: self.clock });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_most_recently_used_within_both_bounds() {
        let mut r = Recent::new(3, 100);
        r.put(1, Arc::new("a"), 10);
        r.put(2, Arc::new("b"), 10);
        r.put(3, Arc::new("c"), 10);
        // Using 1 makes 2 the oldest: the fourth entry evicts it.
        assert!(r.get(&1).is_some());
        r.put(4, Arc::new("d"), 10);
        assert!(r.get(&2).is_none());
        assert!(r.get(&1).is_some() && r.get(&3).is_some() && r.get(&4).is_some());
        // 95 bytes more need room: all three others go.
        r.put(5, Arc::new("e"), 95);
        assert_eq!((r.entries.len(), r.bytes), (1, 95));
        // A value larger than the budget is still kept, alone.
        r.put(6, Arc::new("f"), 500);
        assert_eq!(*r.get(&6).unwrap(), "f");
        assert!(r.get(&5).is_none());
        // Putting a key again replaces it without counting it twice.
        r.put(6, Arc::new("g"), 20);
        assert_eq!((r.entries.len(), r.bytes), (1, 20));
        assert_eq!(*r.get(&6).unwrap(), "g");
    }
}
