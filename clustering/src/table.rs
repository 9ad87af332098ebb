//! The band-key table of the LSH index: open addressing with linear probing,
//! `u32` keys to `u32` list heads, 8 bytes per slot. Smaller than a general
//! hash map for this one job, and fast in unoptimised test builds too. The
//! slot layout decides no result: lookups are exact.

const EMPTY: u32 = u32::MAX;

#[derive(Debug, Default)]
pub(crate) struct KeyTable {
    /// (key, head); head == EMPTY marks a free slot.
    slots: Vec<(u32, u32)>,
    len: usize,
    bits: u32,
}

impl KeyTable {
    fn home(&self, key: u32) -> usize {
        (u64::from(key).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - self.bits)) as usize
    }

    pub(crate) fn get(&self, key: u32) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        loop {
            let (k, head) = self.slots[i];
            if head == EMPTY {
                return None;
            }
            if k == key {
                return Some(head);
            }
            i = (i + 1) & mask;
        }
    }

    /// Sets `key`'s head (never `u32::MAX`), returning the previous one.
    pub(crate) fn insert(&mut self, key: u32, head: u32) -> Option<u32> {
        debug_assert_ne!(head, EMPTY);
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        loop {
            let (k, old) = self.slots[i];
            if old == EMPTY {
                self.slots[i] = (key, head);
                self.len += 1;
                return None;
            }
            if k == key {
                self.slots[i].1 = head;
                return Some(old);
            }
            i = (i + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let bits = if self.slots.is_empty() {
            10
        } else {
            self.bits + 1
        };
        let old = std::mem::replace(&mut self.slots, vec![(0, EMPTY); 1 << bits]);
        self.bits = bits;
        self.len = 0;
        for (key, head) in old.into_iter().filter(|&(_, h)| h != EMPTY) {
            self.insert(key, head);
        }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_replace_and_grow() {
        let mut t = KeyTable::default();
        assert_eq!(t.get(5), None);
        for k in 0..10_000u32 {
            assert_eq!(t.insert(k.wrapping_mul(2_654_435_761), k), None);
        }
        for k in 0..10_000u32 {
            assert_eq!(t.get(k.wrapping_mul(2_654_435_761)), Some(k));
        }
        assert_eq!(t.insert(0, 7), Some(0));
        assert_eq!(t.get(0), Some(7));
        assert_eq!(t.get(1), None);
        assert_eq!(t.len, 10_000);
        assert!(t.slots.len() * 3 >= t.len * 4);
    }
}
