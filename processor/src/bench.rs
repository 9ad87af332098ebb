//! One message's way through the processor without Kafka or ClickHouse, for
//! counting the instructions it takes (`bench/instr`). Not part of the
//! service's interface: the consumer runs the same steps per message.

use time::OffsetDateTime;

use crate::batch::Batch;
use crate::config::Config;
use crate::route::{Enricher, Stream};
use crate::rows::Source;

/// The enrichment state [`crate::run`] builds from `config` (an empty
/// clustering index: nothing is read from the store), and a batch.
#[derive(Debug)]
pub struct PerRow {
    enricher: Enricher,
    batch: Batch,
    offset: i64,
}

impl PerRow {
    pub fn new(config: &Config) -> Result<Self, clustering::ConfigError> {
        let clusterer = clustering::Clusterer::new(config.clustering.clone())?;
        Ok(PerRow {
            enricher: Enricher::new(config.grouping.clone(), clusterer),
            batch: Batch::default(),
            offset: 0,
        })
    }

    /// Decodes one message of the reports topic, groups or clusters it, and
    /// adds its rows to the batch. Whether it became rows (not a dead
    /// letter).
    pub fn route(&mut self, value: &[u8]) -> bool {
        let source = Source {
            partition: 0,
            offset: self.offset,
        };
        self.offset += 1;
        let now = OffsetDateTime::now_utc();
        let routed = self.enricher.route(Stream::Reports, value, source, now);
        let ok = routed.is_ok();
        if let Ok(routed) = routed {
            self.batch.push(routed, 0);
        }
        self.batch.note("reports", source);
        ok
    }

    /// The rows of the batch so far, over every raw table.
    pub fn rows(&self) -> usize {
        self.batch.rows()
    }
}
