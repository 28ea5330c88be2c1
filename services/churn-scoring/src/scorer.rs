//! The consumer loop: per partition, read from the checkpoint, decode, apply as one
//! batch, repeat.

use std::sync::Arc;
use std::time::Duration;

use churnguard_domain::customer::{local_day, swipe_fingerprint};
use churnguard_domain::{CardSwiped, Envelope};
use churnguard_eventlog::{EventLog, LogError};
use tokio_util::sync::CancellationToken;

use crate::store::{CustomerStore, ScoredSwipe};

#[derive(Debug, thiserror::Error)]
pub enum ScoringError {
    #[error("Redis command {command} failed")]
    Redis {
        command: &'static str,
        #[source]
        source: redis::RedisError,
    },
    #[error("stored customer state is corrupt at field {0}")]
    Corrupt(String),
    #[error("reading the log failed")]
    Log(#[source] LogError),
}

/// Counts of one partition's run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionStats {
    pub counted: u64,
    pub duplicates: u64,
    pub too_late: u64,
    /// Records that are not a card-swipe event this scorer understands (dead-letter
    /// handling is still to come; they are skipped and counted).
    pub poison: u64,
}

#[derive(Debug)]
pub struct Scorer<L> {
    log: Arc<L>,
    store: CustomerStore,
    topic: String,
    batch: usize,
}

impl<L: EventLog> Scorer<L> {
    pub fn new(log: Arc<L>, store: CustomerStore, topic: &str, batch: usize) -> Self {
        Self {
            log,
            store,
            topic: topic.to_owned(),
            batch,
        }
    }

    /// Applies one partition's records until `stop` is cancelled; with `until_caught_up`
    /// it also stops once the checkpoint reaches the partition's end.
    pub async fn run_partition(
        &self,
        partition: u32,
        stop: CancellationToken,
        until_caught_up: bool,
    ) -> Result<PartitionStats, ScoringError> {
        let mut stats = PartitionStats::default();
        // Redis's checkpoint is the authority; an empty Redis starts from the beginning.
        let mut from = self.store.checkpoint(partition).await?;
        while !stop.is_cancelled() {
            if until_caught_up
                && from
                    >= self
                        .log
                        .end_offset(&self.topic, partition)
                        .await
                        .map_err(ScoringError::Log)?
            {
                break;
            }
            let records = tokio::select! {
                () = stop.cancelled() => break,
                r = self.log.read(&self.topic, partition, from, self.batch, Duration::from_millis(500)) => r.map_err(ScoringError::Log)?,
            };
            let Some(last) = records.last() else { continue };
            let next = last.offset + 1;
            let mut swipes = Vec::with_capacity(records.len());
            for r in &records {
                match Envelope::<CardSwiped>::decode(&r.payload, CardSwiped::EVENT_TYPE) {
                    Ok(e) => swipes.push(ScoredSwipe {
                        offset: r.offset,
                        customer: e.data.customer.to_string(),
                        day: local_day(&e.data.occurred_at),
                        spend: e.data.amount.minor_units,
                        store: e.data.store_id.to_string(),
                        fingerprint: swipe_fingerprint(e.data.swipe_id.as_str()),
                    }),
                    Err(e) => {
                        tracing::warn!(partition, offset = r.offset, error = %e, "skipping a record that is not a card swipe");
                        stats.poison += 1;
                    }
                }
            }
            let outcome = self.store.apply_batch(partition, &swipes, next).await?;
            stats.counted += outcome.counted;
            stats.duplicates += outcome.duplicates;
            stats.too_late += outcome.too_late;
            from = outcome.checkpoint;
        }
        Ok(stats)
    }
}
