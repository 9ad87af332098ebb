//! Recently accepted reports: a client's retry of a report this instance
//! accepted moments ago is answered without sending it again. A report is
//! known by its machine (the hashed machine id) and its report id together:
//! a report id alone is only unique per machine (WER report ids travel with
//! a copied disk image), so another machine's report with the same id is a
//! report of its own. Exactness does not rest on this (another instance or a
//! restart forgets); the processor counts each report once whatever arrives.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hashbrown::HashTable;
use sha2::Digest;
use uuid::Uuid;

/// What makes a report the same report: the hashed machine id and the
/// client's report id.
///
/// The machine is kept as the 16 bytes its 32 hex digits spell
/// ([`crate::privacy::MachineHasher`]), not as the text: no allocation per
/// report, and a 32-byte key per remembered report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReportKey {
    machine: [u8; 16],
    report_id: Uuid,
}

impl ReportKey {
    /// `machine_hash` is the edge's keyed hash in hex (32 digits); anything
    /// else (only tests make such) is known by the first 16 bytes of its
    /// SHA-256 instead.
    pub fn new(machine_hash: &str, report_id: Uuid) -> Self {
        let mut machine = [0u8; 16];
        if hex::decode_to_slice(machine_hash, &mut machine).is_err() {
            let digest = sha2::Sha256::digest(machine_hash.as_bytes());
            machine.copy_from_slice(&digest[..16]);
        }
        ReportKey { machine, report_id }
    }
}

/// The reports accepted in the last `window`, `capacity` at most, the
/// oldest forgotten first.
///
/// Memory: 40 bytes per id in a ring (the key and when it was accepted, in
/// the order accepted) and 6.6 in an index (each id's 4-byte sequence
/// number, found by the key's hash; the table is a power of two of slots,
/// at most 7/8 full, one control byte each): 46.6 bytes per id, 9.3 MB at
/// the default 200,000 (`a_full_cache_takes_under_48_bytes_per_id`), where
/// a hash set of keys beside a queue of keys and times took ~100 bytes per
/// id, 20 MB (bench/RESULTS.md, "B5: what ingest's memory is"). Both are
/// allocated for `capacity` at the start, so neither is ever copied to
/// grow, and the ring's pages become resident only as it fills.
#[derive(Debug)]
pub struct RecentIds {
    window: Duration,
    capacity: usize,
    /// Times are kept as nanoseconds since this instant (8 bytes, not an
    /// `Instant`'s 16); a time before it counts as this instant.
    epoch: Instant,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The remembered ids, oldest first.
    ring: VecDeque<Seen>,
    /// The sequence number of `ring[0]`; `ring[i]` has `first + i`
    /// (wrapping: the capacity is below 2^32, so the numbers of the ids in
    /// the ring are distinct).
    first: u32,
    /// The sequence number of every id in the ring, by the key's hash.
    index: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    key: ReportKey,
    /// Nanoseconds since [`RecentIds::epoch`].
    at: u64,
}

impl Inner {
    fn position(&self, sequence: u32) -> usize {
        sequence.wrapping_sub(self.first) as usize
    }

    fn find(&self, key: &ReportKey) -> bool {
        let hash = self.hasher.hash_one(key);
        self.index
            .find(hash, |&sequence| {
                self.ring[self.position(sequence)].key == *key
            })
            .is_some()
    }

    fn pop_oldest(&mut self) {
        let Some(oldest) = self.ring.pop_front() else {
            return;
        };
        let hash = self.hasher.hash_one(oldest.key);
        let first = self.first;
        if let Ok(entry) = self.index.find_entry(hash, |&sequence| sequence == first) {
            entry.remove();
        }
        self.first = first.wrapping_add(1);
    }

    fn push(&mut self, key: ReportKey, at: u64) {
        let Inner {
            ring,
            first,
            index,
            hasher,
        } = self;
        // The ring holds fewer than 2^32 ids (`RecentIds::new`).
        let sequence = first.wrapping_add(ring.len() as u32);
        ring.push_back(Seen { key, at });
        index.insert_unique(hasher.hash_one(key), sequence, |&sequence| {
            hasher.hash_one(ring[sequence.wrapping_sub(*first) as usize].key)
        });
    }
}

impl RecentIds {
    /// `capacity` above 2^32 - 1 (160 GB of ids) counts as that.
    pub fn new(window: Duration, capacity: usize) -> Self {
        let capacity = capacity.min(u32::MAX as usize);
        RecentIds {
            window,
            capacity,
            epoch: Instant::now(),
            inner: Mutex::new(Inner {
                ring: VecDeque::with_capacity(capacity),
                first: 0,
                index: HashTable::with_capacity(capacity),
                hasher: foldhash::fast::RandomState::default(),
            }),
        }
    }

    pub fn contains(&self, id: &ReportKey, now: Instant) -> bool {
        let mut inner = self.lock();
        self.expire(&mut inner, now);
        inner.find(id)
    }

    pub fn insert(&self, id: ReportKey, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        self.expire(&mut inner, now);
        while inner.ring.len() >= self.capacity {
            inner.pop_oldest();
        }
        if !inner.find(&id) {
            inner.push(id, self.since_epoch(now));
        }
    }

    fn expire(&self, inner: &mut Inner, now: Instant) {
        let now = self.since_epoch(now);
        let window = u64::try_from(self.window.as_nanos()).unwrap_or(u64::MAX);
        while let Some(oldest) = inner.ring.front() {
            if now.saturating_sub(oldest.at) < window {
                break;
            }
            inner.pop_oldest();
        }
    }

    fn since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::lock(&self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ReportKey {
        ReportKey::new("machine-a", Uuid::new_v4())
    }

    #[test]
    fn remembers_within_the_window_and_forgets_after() {
        let recent = RecentIds::new(Duration::from_secs(60), 10);
        let now = Instant::now();
        let id = key();
        assert!(!recent.contains(&id, now));
        recent.insert(id, now);
        assert!(recent.contains(&id, now + Duration::from_secs(59)));
        assert!(!recent.contains(&id, now + Duration::from_secs(60)));
    }

    #[test]
    fn capacity_bounds_memory_oldest_first() {
        let recent = RecentIds::new(Duration::from_secs(60), 3);
        let now = Instant::now();
        let ids: Vec<ReportKey> = (0..4).map(|_| key()).collect();
        for id in &ids {
            recent.insert(*id, now);
        }
        assert!(!recent.contains(&ids[0], now));
        assert!(ids[1..].iter().all(|id| recent.contains(id, now)));
    }

    #[test]
    fn a_machine_hash_is_kept_as_the_bytes_it_spells() {
        let hasher = crate::privacy::MachineHasher::new(
            crate::privacy::MachineIdHash::HmacSha256,
            "deployment-secret-one-0123456789",
        );
        let hash = hasher.hash("m-7d2f9a41c0b84e55");
        let key = ReportKey::new(&hash, Uuid::nil());
        assert_eq!(hex::encode(key.machine), hash, "no digest of the digest");
    }

    /// The cache against the plainest model of it (a set and a queue of
    /// when each id came), over a pseudo-random mix of new and repeated
    /// ids, growing time and a small capacity, with sequence numbers that
    /// wrap past 2^32 on the way.
    #[test]
    fn answers_as_a_set_and_a_queue_would() {
        use std::collections::{HashSet, VecDeque};
        let window = Duration::from_secs(10);
        let capacity = 7;
        let recent = RecentIds::new(window, capacity);
        recent.lock().first = u32::MAX - 20;
        let start = Instant::now();
        let pool: Vec<ReportKey> = (0..30).map(|_| key()).collect();
        let mut set = HashSet::new();
        let mut queue: VecDeque<(Instant, ReportKey)> = VecDeque::new();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut now = start;
        for _ in 0..5_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            now += Duration::from_millis(state % 1_500);
            while let Some((at, id)) = queue.front().copied() {
                if now.duration_since(at) < window {
                    break;
                }
                queue.pop_front();
                set.remove(&id);
            }
            let id = pool[(state >> 32) as usize % pool.len()];
            assert_eq!(recent.contains(&id, now), set.contains(&id));
            if !state.is_multiple_of(3) {
                recent.insert(id, now);
                while queue.len() >= capacity {
                    let (_, old) = queue.pop_front().expect("not empty");
                    set.remove(&old);
                }
                if set.insert(id) {
                    queue.push_back((now, id));
                }
            }
            for id in &pool {
                assert_eq!(recent.contains(id, now), set.contains(id));
            }
        }
    }

    /// What a full cache of the default 200,000 ids holds: the ring and the
    /// index, allocated at the start.
    #[test]
    fn a_full_cache_takes_under_48_bytes_per_id() {
        let capacity = 200_000;
        let recent = RecentIds::new(Duration::from_secs(600), capacity);
        let now = Instant::now();
        for _ in 0..capacity + 1_000 {
            recent.insert(key(), now);
        }
        let inner = recent.lock();
        assert_eq!(inner.ring.len(), capacity);
        assert_eq!(inner.ring.capacity(), capacity, "never grown");
        let bytes = inner.ring.capacity() * size_of::<Seen>() + inner.index.allocation_size();
        let per_id = bytes as f64 / capacity as f64;
        println!("{bytes} bytes, {per_id:.1} per id");
        assert!(per_id < 48.0, "{per_id:.1} bytes per id");
    }

    #[test]
    fn the_same_report_id_from_another_machine_is_another_report() {
        let recent = RecentIds::new(Duration::from_secs(60), 10);
        let now = Instant::now();
        let report_id = Uuid::new_v4();
        recent.insert(ReportKey::new("machine-a", report_id), now);
        assert!(recent.contains(&ReportKey::new("machine-a", report_id), now));
        assert!(!recent.contains(&ReportKey::new("machine-b", report_id), now));
    }
}
