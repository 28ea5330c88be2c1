//! CheckHoldout's reading side: every purchase day of every customer, from the purchases
//! log.
//!
//! Redis keeps each customer's summary as of now (first and last day, repeat days), from
//! which a calibration period that ended before the last purchase cannot be recovered.
//! The log is the system of record, so the check reads it: every partition from its
//! first offset (offset 0: a partition whose first records were deleted by retention is
//! refused, FAILED_PRECONDITION, not read in part) to the end it has when the check starts, each record decoded as the
//! scorer decodes it ([`ScoredSwipe::from_record`]); a record the scorer dead-letters is
//! skipped here too. Duplicates (a POS retry, an import run twice) need no care: the
//! domain's fold counts purchase days.
//!
//! [`QueryState`](crate::api::QueryState) holds the reader as a `dyn PurchaseHistory`,
//! so the query side stays free of the log's type.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use churnguard_domain::models::holdout::PurchaseDays;
use churnguard_eventlog::{EventLog, LogError};
use futures_util::future::BoxFuture;

use churnguard_runtime::retry::Backoff;

use crate::batch::ScoredSwipe;
use crate::error::ScoringError;

/// Reads of one partition that may fail in a row before the check gives up (UNAVAILABLE).
pub const READ_ATTEMPTS: u32 = 6;

/// Every purchase day of every customer, read from wherever the deployment keeps them.
pub trait PurchaseHistory: Send + Sync + fmt::Debug + 'static {
    /// Reads them all; CheckHoldout calls it once per check.
    fn purchase_days(&self) -> BoxFuture<'_, Result<History, ScoringError>>;
}

/// What a read of the history found.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub days: PurchaseDays,
    /// Records read.
    pub records: u64,
    /// Records that are not a card swipe (dead letters), skipped.
    pub skipped: u64,
}

/// The purchases topic of an [`EventLog`], read from the start.
pub struct LogHistory<L> {
    log: Arc<L>,
    topic: String,
    partitions: u32,
    batch: usize,
}

impl<L> fmt::Debug for LogHistory<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogHistory")
            .field("topic", &self.topic)
            .field("partitions", &self.partitions)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl<L: EventLog> LogHistory<L> {
    /// Reads `topic`'s `partitions`, `batch` records at a time.
    pub fn new(log: Arc<L>, topic: &str, partitions: u32, batch: usize) -> Self {
        Self {
            log,
            topic: topic.to_owned(),
            partitions: partitions.max(1),
            batch: batch.max(1),
        }
    }

    async fn read_all(&self) -> Result<History, ScoringError> {
        let mut history = History::default();
        for partition in 0..self.partitions {
            self.read_partition(partition, &mut history).await?;
        }
        tracing::debug!(
            topic = %self.topic,
            records = history.records,
            skipped = history.skipped,
            customers = history.days.customers(),
            "purchases log read for a holdout check"
        );
        Ok(history)
    }

    /// Folds one partition's records, from offset 0 to its end as of now, into `history`.
    /// A read that fails in passing (the broker slow to hand out a fetch, or a read that
    /// brings nothing below the end) is tried again with the runtime's backoff, from
    /// the start again after progress, up to [`READ_ATTEMPTS`] times in a row.
    async fn read_partition(
        &self,
        partition: u32,
        history: &mut History,
    ) -> Result<(), ScoringError> {
        // The check reads from the partition's first record; if the log no longer holds
        // it, the customers' first purchases and repeat counts would be wrong: refuse.
        let start = self
            .log
            .start_offset(&self.topic, partition)
            .await
            .map_err(ScoringError::Log)?;
        if start > 0 {
            return Err(ScoringError::HistoryDeleted { partition, start });
        }
        let end = self
            .log
            .end_offset(&self.topic, partition)
            .await
            .map_err(ScoringError::Log)?;
        let mut from = 0;
        let mut backoff = Backoff::new();
        let mut failures = 0;
        while from < end {
            // No more than are left below the end: a read asked for more waits for them.
            let max = usize::try_from(end - from).map_or(self.batch, |left| left.min(self.batch));
            let read = self
                .log
                .read(
                    &self.topic,
                    partition,
                    from,
                    max,
                    Duration::from_millis(500),
                )
                .await;
            let records = match read {
                Ok(records) if !records.is_empty() => records,
                Ok(_) | Err(_) if failures + 1 < READ_ATTEMPTS => {
                    failures += 1;
                    tokio::time::sleep(backoff.next_delay()).await;
                    continue;
                }
                Ok(_) => {
                    return Err(ScoringError::Log(LogError::Unavailable(format!(
                        "partition {partition}: nothing read at offset {from}, below its end {end}"
                    ))));
                }
                Err(e) => return Err(ScoringError::Log(e)),
            };
            failures = 0;
            backoff.reset();
            for r in records
                .iter()
                .filter(|r| r.offset >= from && r.offset < end)
            {
                history.records += 1;
                match ScoredSwipe::from_record(r) {
                    Ok(s) => history.days.add(&s.customer, s.day),
                    Err(_) => history.skipped += 1,
                }
            }
            from = records.last().map_or(from, |last| last.offset + 1);
        }
        Ok(())
    }
}

impl<L: EventLog> PurchaseHistory for LogHistory<L> {
    fn purchase_days(&self) -> BoxFuture<'_, Result<History, ScoringError>> {
        Box::pin(self.read_all())
    }
}

#[cfg(test)]
mod tests {
    use churnguard_eventlog::contract::{BeforeAppend, Intercepted};
    use churnguard_eventlog::embedded::EmbeddedLog;

    use super::*;

    /// A partition whose first records retention deleted is refused, naming the
    /// partition and where it starts, as FAILED_PRECONDITION; a whole log is read.
    #[tokio::test]
    async fn a_log_whose_first_records_were_deleted_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = EmbeddedLog::open(dir.path()).expect("open");
        log.ensure_topic("purchases", 2).await.expect("topic");
        let whole = LogHistory::new(
            Arc::new(Intercepted::new(log.clone(), || BeforeAppend::Go)),
            "purchases",
            2,
            100,
        );
        let read = whole.purchase_days().await.expect("a whole log is read");
        assert_eq!(read.records, 0);

        let cut = Intercepted::new(log, || BeforeAppend::Go).with_deleted_before("purchases", 1, 5);
        let history = LogHistory::new(Arc::new(cut), "purchases", 2, 100);
        let e = history.purchase_days().await.expect_err("refused");
        assert!(
            matches!(
                e,
                ScoringError::HistoryDeleted {
                    partition: 1,
                    start: 5
                }
            ),
            "{e:?}"
        );
        let status = e.status();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert!(
            status.message().contains("partition 1") && status.message().contains("offset 5"),
            "{}",
            status.message()
        );
    }
}
