//! What every request handler shares: the reloadable settings and the parts
//! built once at start.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::auth::Tokens;
use crate::budget::ByteBudget;
use crate::config::{Config, ConfigError, Limits, RateLimits};
use crate::dedup::RecentIds;
use crate::metrics::{Gauges, Metrics};
use crate::outcome::Outcomes;
use crate::privacy::MachineHasher;
use crate::ratelimit::RateLimiter;
use crate::sink::Delivery;
use crate::validate::Validator;

/// The part of the configuration a reload replaces.
#[derive(Debug)]
pub struct Settings {
    pub tokens: Tokens,
    pub rate_limits: RateLimits,
    pub rights_limits: RateLimits,
    pub scrubber: scrub::Scrubber,
}

impl Settings {
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        Ok(Settings {
            tokens: Tokens::from_config(config),
            rate_limits: config.rate_limits.clone(),
            rights_limits: config.rights_limits.clone(),
            scrubber: scrub::Scrubber::new(&config.scrub.all_rules())
                .map_err(|e| ConfigError::Invalid(format!("scrub: {e}")))?,
        })
    }
}

#[derive(Debug)]
pub struct AppState {
    settings: RwLock<Arc<Settings>>,
    pub limits: Limits,
    pub validator: Validator,
    pub hasher: MachineHasher,
    pub rate_limiter: RateLimiter,
    /// The buckets of `[rights_limits]`, for erasures and exports.
    pub rights_limiter: RateLimiter,
    pub recent: RecentIds,
    pub delivery: Arc<Delivery>,
    pub outcomes: Outcomes,
    pub metrics: Arc<Metrics>,
    /// Reports being handled; a permit per report.
    pub in_flight: Arc<Semaphore>,
    /// Bytes of request bodies held, over all requests.
    pub bytes_in_flight: ByteBudget,
    /// Read-only ClickHouse client for exports, when configured.
    pub warehouse: Option<clickhouse::Client>,
    ready: AtomicBool,
}

impl AppState {
    pub fn new(
        config: &Config,
        delivery: Arc<Delivery>,
        outcomes: Outcomes,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ConfigError> {
        Ok(AppState {
            settings: RwLock::new(Arc::new(Settings::from_config(config)?)),
            limits: config.limits.clone(),
            validator: Validator::new(config.limits.max_clock_skew_secs),
            hasher: MachineHasher::new(config.machine_id_hash, &config.machine_id_key),
            rate_limiter: RateLimiter::default(),
            rights_limiter: RateLimiter::default(),
            recent: RecentIds::new(
                Duration::from_secs(config.dedup.window_secs),
                config.dedup.capacity,
            ),
            delivery,
            outcomes,
            metrics,
            in_flight: Arc::new(Semaphore::new(config.limits.max_in_flight)),
            bytes_in_flight: ByteBudget::new(config.limits.max_bytes_in_flight),
            warehouse: config.warehouse.as_ref().map(|w| {
                // No compression and no row-type validation: the oldest
                // server the project runs on answers compressed SELECTs
                // wrongly and lacks the format validation needs
                // (schemas::ServerVersion).
                pipeline::clickhouse::client(w.ca_file.as_ref())
                    .with_validation(false)
                    .with_url(&w.url)
                    .with_database(&w.database)
                    .with_user(&w.user)
                    .with_password(&w.password)
                    .with_compression(clickhouse::Compression::None)
            }),
            ready: AtomicBool::new(true),
        })
    }

    /// The settings in force now.
    pub fn settings(&self) -> Arc<Settings> {
        Arc::clone(&self.settings.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts new settings in force for every request that starts from now.
    pub fn replace_settings(&self, settings: Settings) {
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(settings);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// From now on `/readyz` answers 503, so balancers stop sending.
    pub fn set_not_ready(&self) {
        self.ready.store(false, Ordering::SeqCst);
    }

    pub fn gauges(&self) -> Gauges {
        let spool = self.delivery.spool();
        Gauges {
            spool_records: spool.map_or(0, |s| s.len()),
            spool_bytes: spool.map_or(0, |s| s.bytes()),
            quarantine_records: self.delivery.quarantine().map_or(0, |s| s.len()),
            in_flight: (self.limits.max_in_flight - self.in_flight.available_permits()) as u64,
            bytes_in_flight: self.bytes_in_flight.used(),
            kafka_ready: u64::from(self.delivery.topics_ready()),
        }
    }
}
