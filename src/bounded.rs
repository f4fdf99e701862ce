//! One bounded map for the memories a long-running process keeps of what it has seen (delivered
//! notifications, handled message ids, looked-up group ids): insertion-ordered, the oldest entry
//! forgotten first once the map holds more entries, or more bytes, than its bounds.
//!
//! Not an LRU: a read never moves an entry. Every user is a "have I seen this?" memory whose keys
//! come from outside (message ids, notification ids, emails), where the bound is what keeps a flood
//! of distinct keys from growing the process, and the oldest is the one least likely to come back.
//!
//! A removed entry leaves its place in the insertion order behind until the order is compacted
//! (when it holds twice as many places as the map has entries, plus a few), so `remove` is O(1)
//! and every operation amortised O(1).

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// A map of at most `max_entries` entries and `max_bytes` bytes (as `size_of` counts them), which
/// forgets its oldest entries to stay within both.
#[derive(Debug)]
pub struct BoundedMap<K, V> {
    /// Each entry with the number of its place in `order`.
    entries: HashMap<K, (V, u64)>,
    /// Keys in insertion order, each with its place's number; a place whose number is not its
    /// key's in `entries` was removed and is skipped.
    order: VecDeque<(K, u64)>,
    /// The number of the next place.
    next: u64,
    max_entries: usize,
    max_bytes: usize,
    /// Bytes of the entries held, as `size_of` counts them.
    bytes: usize,
    /// What one entry weighs in bytes.
    size_of: fn(&K, &V) -> usize,
}

impl<K: Hash + Eq + Clone, V> BoundedMap<K, V> {
    /// A map of at most `max_entries` entries (at least one), with no bound on bytes.
    pub fn new(max_entries: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            next: 0,
            max_entries: max_entries.max(1),
            max_bytes: usize::MAX,
            bytes: 0,
            size_of: |_, _| 0,
        }
    }

    /// Also at most `max_bytes` bytes, as `size_of` weighs each entry; the newest entry is kept
    /// whatever it weighs.
    pub fn with_max_bytes(mut self, max_bytes: usize, size_of: fn(&K, &V) -> usize) -> Self {
        self.max_bytes = max_bytes;
        self.size_of = size_of;
        self.bytes = self.entries.iter().map(|(k, (v, _))| size_of(k, v)).sum();
        self.shrink();
        self
    }

    /// The value of `key`, if remembered.
    pub fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.entries.get(key).map(|(v, _)| v)
    }

    /// Whether `key` is remembered.
    pub fn contains_key<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.entries.contains_key(key)
    }

    /// Remembers `key` as the newest entry, forgetting the oldest over the bounds, and says whether
    /// it is new. A key already there keeps its place (and age) and takes the new value.
    pub fn insert(&mut self, key: K, value: V) -> bool {
        let weight = (self.size_of)(&key, &value);
        if let Some((old, _)) = self.entries.get_mut(&key) {
            let old_weight = (self.size_of)(&key, old);
            *old = value;
            self.bytes = self.bytes - old_weight + weight;
            self.shrink();
            return false;
        }
        let place = self.next;
        self.next += 1;
        self.order.push_back((key.clone(), place));
        self.entries.insert(key, (value, place));
        self.bytes += weight;
        self.shrink();
        true
    }

    /// Forgets `key`, returning its value.
    pub fn remove<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let (key, (value, _)) = self.entries.remove_entry(key)?;
        self.bytes -= (self.size_of)(&key, &value);
        if self.order.len() > 2 * self.entries.len() + 16 {
            let entries = &self.entries;
            self.order
                .retain(|(k, place)| entries.get::<K>(k).is_some_and(|(_, p)| p == place));
        }
        Some(value)
    }

    /// Entries remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No entry remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of the entries remembered, as the map's `size_of` weighs them (zero without a byte
    /// bound).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Forgets the oldest entries until both bounds hold (keeping the newest entry whatever it
    /// weighs).
    fn shrink(&mut self) {
        while self.entries.len() > self.max_entries
            || (self.bytes > self.max_bytes && self.entries.len() > 1)
        {
            let Some((key, place)) = self.order.pop_front() else {
                return;
            };
            if self.entries.get(&key).is_some_and(|(_, p)| *p == place)
                && let Some((value, _)) = self.entries.remove(&key)
            {
                self.bytes -= (self.size_of)(&key, &value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::BoundedMap;

    #[test]
    fn past_its_entry_bound_the_map_forgets_the_oldest_first() {
        let mut m = BoundedMap::new(2);
        assert!(m.insert("a", 1));
        assert!(m.insert("b", 2));
        assert!(m.insert("c", 3));
        assert_eq!(m.len(), 2);
        assert!(!m.contains_key(&"a"));
        assert_eq!((m.get(&"b"), m.get(&"c")), (Some(&2), Some(&3)));
    }

    #[test]
    fn a_key_inserted_again_is_not_new_keeps_its_age_and_takes_the_new_value() {
        let mut m = BoundedMap::new(2);
        m.insert("a", 1);
        m.insert("b", 2);
        assert!(!m.insert("a", 10));
        assert_eq!(m.get(&"a"), Some(&10));
        // Still the oldest: it goes first.
        m.insert("c", 3);
        assert!(!m.contains_key(&"a"));
        assert!(m.contains_key(&"b") && m.contains_key(&"c"));
    }

    #[test]
    fn a_read_does_not_make_an_entry_younger() {
        let mut m = BoundedMap::new(2);
        m.insert("a", 1);
        m.insert("b", 2);
        assert_eq!(m.get(&"a"), Some(&1));
        m.insert("c", 3);
        assert!(!m.contains_key(&"a"));
    }

    #[test]
    fn a_removed_key_is_forgotten_and_its_old_place_never_evicts_it_when_it_comes_back() {
        let mut m = BoundedMap::new(2);
        m.insert("a", 1);
        m.insert("b", 2);
        assert_eq!(m.remove(&"a"), Some(1));
        assert_eq!(m.remove(&"a"), None);
        assert!(!m.contains_key(&"a"));
        // "a" again is the newest: the stale place at the front must not take it away.
        m.insert("a", 3);
        m.insert("c", 4);
        assert!(!m.contains_key(&"b"), "b is the oldest now");
        assert_eq!((m.get(&"a"), m.get(&"c")), (Some(&3), Some(&4)));
    }

    #[test]
    fn removing_and_inserting_without_end_keeps_the_order_bounded() {
        let mut m = BoundedMap::new(1000);
        for i in 0..10_000 {
            m.insert(i % 3, i);
            m.remove(&(i % 3));
        }
        assert!(m.is_empty());
        assert!(m.order.len() <= 16 + 1, "{}", m.order.len());
    }

    #[test]
    fn past_its_byte_bound_the_map_forgets_the_oldest_but_keeps_the_newest_whatever_it_weighs() {
        let mut m = BoundedMap::new(1000).with_max_bytes(600, |k: &String, _: &()| 2 * k.len());
        for i in 0..10 {
            assert!(m.insert(format!("{i:0>100}"), ()));
        }
        // Three 100-byte keys fit in 600 bytes (two copies each); the oldest went first.
        assert_eq!((m.len(), m.bytes()), (3, 600));
        assert!(m.contains_key(&format!("{:0>100}", 9)));
        assert!(!m.contains_key(&format!("{:0>100}", 6)));
        m.insert("x".repeat(1000), ());
        assert_eq!((m.len(), m.bytes()), (1, 2000));
        // String keys are looked up and removed by `&str`.
        assert!(m.contains_key("x".repeat(1000).as_str()));
        m.remove("x".repeat(1000).as_str());
        assert_eq!(m.bytes(), 0);
    }
}
