//! Recently accepted reports: a client's retry of a report this instance
//! accepted moments ago is answered without sending it again. A report is
//! known by its machine (the hashed machine id) and its report id together:
//! a report id alone is only unique per machine (WER report ids travel with
//! a copied disk image), so another machine's report with the same id is a
//! report of its own. Exactness does not rest on this (another instance or a
//! restart forgets); the processor counts each report once whatever arrives.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::Digest;
use uuid::Uuid;

/// What makes a report the same report: the hashed machine id and the
/// client's report id.
///
/// The machine is kept as the 16 bytes its 32 hex digits spell
/// ([`crate::privacy::MachineHasher`]), not as the text: no allocation per
/// report, and a 32-byte key per remembered report, in the set and again
/// in the queue of when it was seen.
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

#[derive(Debug)]
pub struct RecentIds {
    window: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    ids: HashSet<ReportKey>,
    order: VecDeque<(Instant, ReportKey)>,
}

impl RecentIds {
    pub fn new(window: Duration, capacity: usize) -> Self {
        RecentIds {
            window,
            capacity,
            inner: Mutex::default(),
        }
    }

    pub fn contains(&self, id: &ReportKey, now: Instant) -> bool {
        let mut inner = self.lock();
        self.expire(&mut inner, now);
        inner.ids.contains(id)
    }

    pub fn insert(&self, id: ReportKey, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        self.expire(&mut inner, now);
        while inner.order.len() >= self.capacity {
            if let Some((_, old)) = inner.order.pop_front() {
                inner.ids.remove(&old);
            }
        }
        if inner.ids.insert(id) {
            inner.order.push_back((now, id));
        }
    }

    fn expire(&self, inner: &mut Inner, now: Instant) {
        while let Some((at, _)) = inner.order.front() {
            if now.saturating_duration_since(*at) < self.window {
                break;
            }
            if let Some((_, id)) = inner.order.pop_front() {
                inner.ids.remove(&id);
            }
        }
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
