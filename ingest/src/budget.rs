//! A budget of bytes shared by every request in flight: a request reserves
//! what its body may take (on the wire, and inflated) before it reads a
//! byte, and gives the reservation back when it is answered. Beyond the
//! budget a request is refused at once (503 `overloaded`), so that memory
//! stays bounded however many large bodies arrive together.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub struct ByteBudget {
    limit: u64,
    used: Arc<AtomicU64>,
}

/// Bytes held until dropped.
#[derive(Debug)]
pub struct Reservation {
    used: Arc<AtomicU64>,
    bytes: u64,
}

impl ByteBudget {
    pub fn new(limit: u64) -> Self {
        ByteBudget {
            limit,
            used: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Reserves `bytes`, or `None` if that would take the budget past its
    /// limit.
    pub fn try_reserve(&self, bytes: u64) -> Option<Reservation> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .ok()?;
        Some(Reservation {
            used: Arc::clone(&self.used),
            bytes,
        })
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }
}

impl Reservation {
    /// Gives back what is reserved beyond `bytes`, once the real size is
    /// known.
    pub fn shrink_to(&mut self, bytes: u64) {
        if bytes < self.bytes {
            self.used.fetch_sub(self.bytes - bytes, Ordering::AcqRel);
            self.bytes = bytes;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stay_within_the_limit_and_come_back() {
        let budget = ByteBudget::new(100);
        let mut a = budget.try_reserve(60).expect("fits");
        assert!(budget.try_reserve(41).is_none(), "past the limit");
        let b = budget.try_reserve(40).expect("fits exactly");
        assert_eq!(budget.used(), 100);
        a.shrink_to(10);
        assert_eq!(budget.used(), 50);
        a.shrink_to(30);
        assert_eq!(budget.used(), 50, "shrinking never grows");
        drop(a);
        drop(b);
        assert_eq!(budget.used(), 0);
        assert!(budget.try_reserve(101).is_none());
    }
}
