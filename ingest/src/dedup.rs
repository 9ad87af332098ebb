//! Recently accepted report ids: a client's retry of a report this instance
//! accepted moments ago is answered without sending it again. Exactness does
//! not rest on this (another instance or a restart forgets); the processor
//! counts each report id once whatever arrives.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

#[derive(Debug)]
pub struct RecentIds {
    window: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    ids: HashSet<Uuid>,
    order: VecDeque<(Instant, Uuid)>,
}

impl RecentIds {
    pub fn new(window: Duration, capacity: usize) -> Self {
        RecentIds {
            window,
            capacity,
            inner: Mutex::default(),
        }
    }

    pub fn contains(&self, id: &Uuid, now: Instant) -> bool {
        let mut inner = self.lock();
        self.expire(&mut inner, now);
        inner.ids.contains(id)
    }

    pub fn insert(&self, id: Uuid, now: Instant) {
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
        while let Some((at, id)) = inner.order.front().copied() {
            if now.saturating_duration_since(at) < self.window {
                break;
            }
            inner.order.pop_front();
            inner.ids.remove(&id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::lock(&self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_within_the_window_and_forgets_after() {
        let recent = RecentIds::new(Duration::from_secs(60), 10);
        let now = Instant::now();
        let id = Uuid::new_v4();
        assert!(!recent.contains(&id, now));
        recent.insert(id, now);
        assert!(recent.contains(&id, now + Duration::from_secs(59)));
        assert!(!recent.contains(&id, now + Duration::from_secs(60)));
    }

    #[test]
    fn capacity_bounds_memory_oldest_first() {
        let recent = RecentIds::new(Duration::from_secs(60), 3);
        let now = Instant::now();
        let ids: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
        for id in &ids {
            recent.insert(*id, now);
        }
        assert!(!recent.contains(&ids[0], now));
        assert!(ids[1..].iter().all(|id| recent.contains(id, now)));
    }
}
