//! Token buckets per machine and per organisation. A machine that floods
//! empties only its own bucket: other machines of the same organisation go
//! on until the organisation's far larger bucket runs dry.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use crate::lock;
use std::time::Instant;

use crate::config::RateLimits;

const SHARDS: usize = 16;
/// Past this many buckets in a shard, full (idle) buckets are forgotten: a
/// full bucket holds no state worth keeping.
const SHARD_SOFT_CAP: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.last = now;
    }

    /// Seconds until one token is there.
    fn wait(&self, rate: f64) -> u64 {
        ((1.0 - self.tokens) / rate).ceil().max(1.0) as u64
    }
}

#[derive(Debug)]
pub struct RateLimiter {
    machines: Vec<Mutex<HashMap<String, Bucket>>>,
    orgs: Mutex<HashMap<String, Bucket>>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter {
            machines: (0..SHARDS).map(|_| Mutex::default()).collect(),
            orgs: Mutex::default(),
        }
    }
}

impl RateLimiter {
    /// Takes one report from the machine's and the organisation's buckets,
    /// or says how many seconds to wait. A refused report takes nothing.
    pub fn check(
        &self,
        limits: &RateLimits,
        org: &str,
        machine: &str,
        now: Instant,
    ) -> Result<(), u64> {
        let mut machines = lock(&self.machines[shard(machine)]);
        if machines.len() > SHARD_SOFT_CAP {
            machines.retain(|_, b| {
                b.refill(limits.machine_per_second, limits.machine_burst, now);
                b.tokens < limits.machine_burst
            });
        }
        let bucket = machines.entry(machine.to_string()).or_insert(Bucket {
            tokens: limits.machine_burst,
            last: now,
        });
        bucket.refill(limits.machine_per_second, limits.machine_burst, now);
        if bucket.tokens < 1.0 {
            return Err(bucket.wait(limits.machine_per_second));
        }
        let mut orgs = lock(&self.orgs);
        let org_bucket = orgs.entry(org.to_string()).or_insert(Bucket {
            tokens: limits.organisation_burst,
            last: now,
        });
        org_bucket.refill(
            limits.organisation_per_second,
            limits.organisation_burst,
            now,
        );
        if org_bucket.tokens < 1.0 {
            return Err(org_bucket.wait(limits.organisation_per_second));
        }
        org_bucket.tokens -= 1.0;
        bucket.tokens -= 1.0;
        Ok(())
    }
}

fn shard(key: &str) -> usize {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() as usize) % SHARDS
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> RateLimits {
        RateLimits {
            machine_per_second: 1.0,
            machine_burst: 3.0,
            organisation_per_second: 10.0,
            organisation_burst: 5.0,
        }
    }

    #[test]
    fn a_flooding_machine_is_stopped_and_its_neighbours_are_not() {
        let limiter = RateLimiter::default();
        let now = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(&limits(), "grid", "noisy", now).is_ok());
        }
        assert_eq!(limiter.check(&limits(), "grid", "noisy", now), Err(1));
        assert!(limiter.check(&limits(), "grid", "quiet", now).is_ok());
        // One second later the noisy machine has one token again.
        let later = now + Duration::from_secs(1);
        assert!(limiter.check(&limits(), "grid", "noisy", later).is_ok());
        assert!(limiter.check(&limits(), "grid", "noisy", later).is_err());
    }

    #[test]
    fn the_organisation_bucket_caps_all_its_machines() {
        let limiter = RateLimiter::default();
        let now = Instant::now();
        for m in 0..5 {
            assert!(
                limiter
                    .check(&limits(), "grid", &format!("m{m}"), now)
                    .is_ok()
            );
        }
        assert!(limiter.check(&limits(), "grid", "m5", now).is_err());
        assert!(
            limiter.check(&limits(), "water", "m5", now).is_ok(),
            "other organisations go on"
        );
    }

    #[test]
    fn refused_reports_take_no_tokens() {
        let limiter = RateLimiter::default();
        let now = Instant::now();
        for m in 0..5 {
            assert!(
                limiter
                    .check(&limits(), "grid", &format!("m{m}"), now)
                    .is_ok()
            );
        }
        // The organisation is dry; m9's own bucket must stay full meanwhile.
        for _ in 0..10 {
            assert!(limiter.check(&limits(), "grid", "m9", now).is_err());
        }
        let later = now + Duration::from_secs(1);
        for _ in 0..3 {
            assert!(limiter.check(&limits(), "grid", "m9", later).is_ok());
        }
    }
}
