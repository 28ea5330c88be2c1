//! What every consumer of the log records (the scorer, feedback's projection and its
//! outreach opener), with the same names and labels, so one dashboard panel and one
//! alert rule cover them all.
//!
//! Labels: `consumer` (a fixed name per consumer) and `partition`; never a customer, a
//! complaint or a record. Counters count what this process did: after a restart they
//! start again from zero (Prometheus' `rate` and `increase` allow for that).
//!
//! Lag is measured, not guessed: [`LagProbe`] asks the log for the partition's end at
//! most once per [`LAG_PROBE_EVERY`] and sets the gauges from the consumer's own
//! position.

use std::time::{Duration, Instant};

use churnguard_eventlog::{EventLog, Record};

/// Records applied (or found already applied), by consumer and partition.
pub const RECORDS_APPLIED_TOTAL: &str = "churnguard_consumer_records_applied_total";
/// Records per applied batch, by consumer.
pub const BATCH_RECORDS: &str = "churnguard_consumer_batch_records";
/// Records in the partition not yet applied, by consumer and partition.
pub const LAG_RECORDS: &str = "churnguard_consumer_lag_records";
/// Event time of the newest record not yet applied, behind the wall clock, in seconds;
/// 0 when caught up.
pub const EVENT_TIME_LAG_SECONDS: &str = "churnguard_consumer_event_time_lag_seconds";
/// Records sent to the dead-letter topic (not understood), by consumer.
pub const DEAD_LETTERS_TOTAL: &str = "churnguard_consumer_dead_letters_total";
/// Records dropped as duplicates of ones already applied, by consumer.
pub const DUPLICATES_DROPPED_TOTAL: &str = "churnguard_consumer_duplicates_dropped_total";
/// Batches whose commit found the checkpoint moved by someone else, by consumer.
pub const CHECKPOINT_CONFLICTS_TOTAL: &str = "churnguard_consumer_checkpoint_conflicts_total";

/// Partitions of its group's topic this member works on, by group.
pub const GROUP_PARTITIONS_OWNED: &str = "churnguard_group_partitions_owned";
/// The partition count of a group's topic, by group; set by members on a broker, where a
/// partition can be left without an owner (see [`crate::Liveness`]).
pub const GROUP_PARTITIONS: &str = "churnguard_group_partitions";
/// Times this member left its group and joined again because a partition had no owner,
/// by group.
pub const GROUP_REJOINS_TOTAL: &str = "churnguard_group_rejoins_total";

/// How often a [`LagProbe`] asks the log where a partition ends.
pub const LAG_PROBE_EVERY: Duration = Duration::from_secs(1);

/// HELP text and units of the consumer metrics.
pub(crate) fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        RECORDS_APPLIED_TOTAL,
        Unit::Count,
        "Log records a consumer applied (duplicates included), by consumer and partition"
    );
    describe_histogram!(
        BATCH_RECORDS,
        Unit::Count,
        "Records per batch a consumer applied, by consumer"
    );
    describe_gauge!(
        LAG_RECORDS,
        Unit::Count,
        "Records in a partition the consumer has not applied yet, by consumer and partition"
    );
    describe_gauge!(
        EVENT_TIME_LAG_SECONDS,
        Unit::Seconds,
        "How far the consumer's newest applied record's event time is behind the wall clock \
         while records are waiting (0 when caught up), by consumer and partition"
    );
    describe_counter!(
        DEAD_LETTERS_TOTAL,
        Unit::Count,
        "Records a consumer could not understand and sent to the dead-letter topic"
    );
    describe_counter!(
        DUPLICATES_DROPPED_TOTAL,
        Unit::Count,
        "Records a consumer dropped because they were already applied"
    );
    describe_counter!(
        CHECKPOINT_CONFLICTS_TOTAL,
        Unit::Count,
        "Batches whose commit found the partition's checkpoint moved by another replica"
    );
    describe_gauge!(
        GROUP_PARTITIONS_OWNED,
        Unit::Count,
        "Partitions of the group's topic this member works on, by group"
    );
    describe_gauge!(
        GROUP_PARTITIONS,
        Unit::Count,
        "Partitions of the group's topic, by group (members on a broker set it)"
    );
    describe_counter!(
        GROUP_REJOINS_TOTAL,
        Unit::Count,
        "Times this member joined its group again because a partition had no owner, by group"
    );
}

/// One consumer's metrics: a fixed name (`scorer`, `projection`, `outreach`).
#[derive(Debug, Clone, Copy)]
pub struct ConsumerMetrics {
    consumer: &'static str,
}

impl ConsumerMetrics {
    pub const fn new(consumer: &'static str) -> Self {
        Self { consumer }
    }

    /// A batch of `records` applied on `partition`, `duplicates` of them already there.
    pub fn applied(&self, partition: u32, records: usize, duplicates: u64) {
        let consumer = self.consumer;
        metrics::counter!(RECORDS_APPLIED_TOTAL, "consumer" => consumer, "partition" => partition.to_string())
            .increment(records as u64);
        metrics::histogram!(BATCH_RECORDS, "consumer" => consumer).record(records as f64);
        if duplicates > 0 {
            metrics::counter!(DUPLICATES_DROPPED_TOTAL, "consumer" => consumer)
                .increment(duplicates);
        }
    }

    /// `count` records sent to the dead-letter topic.
    pub fn dead_lettered(&self, count: usize) {
        metrics::counter!(DEAD_LETTERS_TOTAL, "consumer" => self.consumer).increment(count as u64);
    }

    /// A commit lost to another replica's.
    pub fn checkpoint_conflict(&self) {
        metrics::counter!(CHECKPOINT_CONFLICTS_TOTAL, "consumer" => self.consumer).increment(1);
    }

    /// Makes the counters exist at zero, so dashboards and alerts see them before the
    /// first dead letter or conflict.
    pub fn register(&self) {
        let consumer = self.consumer;
        metrics::counter!(DEAD_LETTERS_TOTAL, "consumer" => consumer).increment(0);
        metrics::counter!(DUPLICATES_DROPPED_TOTAL, "consumer" => consumer).increment(0);
        metrics::counter!(CHECKPOINT_CONFLICTS_TOTAL, "consumer" => consumer).increment(0);
    }

    fn set_lag(&self, partition: u32, records: u64, event_time_lag: Duration) {
        let consumer = self.consumer;
        let partition = partition.to_string();
        metrics::gauge!(LAG_RECORDS, "consumer" => consumer, "partition" => partition.clone())
            .set(records as f64);
        metrics::gauge!(EVENT_TIME_LAG_SECONDS, "consumer" => consumer, "partition" => partition)
            .set(event_time_lag.as_secs_f64());
    }
}

/// Measures one partition's lag for one consumer: call [`LagProbe::observe`] after every
/// read (with what was applied, or nothing), and it updates the gauges when
/// [`LAG_PROBE_EVERY`] has passed since the last probe.
#[derive(Debug)]
pub struct LagProbe {
    metrics: ConsumerMetrics,
    partition: u32,
    last: Option<Instant>,
    /// Event time (ms since the epoch) of the newest record applied.
    newest_ms: Option<i64>,
}

impl LagProbe {
    pub fn new(metrics: ConsumerMetrics, partition: u32) -> Self {
        Self {
            metrics,
            partition,
            last: None,
            newest_ms: None,
        }
    }

    /// Whether the next [`LagProbe::observe`] will ask the log (a consumer whose position
    /// costs a read to know can skip it otherwise).
    pub fn due(&self) -> bool {
        self.last.is_none_or(|at| at.elapsed() >= LAG_PROBE_EVERY)
    }

    /// The consumer's position is `next` (the next offset it will read), after applying
    /// `applied`. Probing errors are ignored: a gauge is left as it was.
    pub async fn observe<L: EventLog>(
        &mut self,
        log: &L,
        topic: &str,
        next: u64,
        applied: &[Record],
        now_ms: i64,
    ) {
        if let Some(newest) = applied.iter().map(|r| r.timestamp_ms).max() {
            self.newest_ms = Some(self.newest_ms.map_or(newest, |n| n.max(newest)));
        }
        if !self.due() {
            return;
        }
        self.last = Some(Instant::now());
        let Ok(end) = log.end_offset(topic, self.partition).await else {
            return;
        };
        let behind = end.saturating_sub(next);
        let event_time_lag = match (behind, self.newest_ms) {
            (0, _) | (_, None) => Duration::ZERO,
            (_, Some(newest)) => {
                Duration::from_millis(u64::try_from(now_ms.saturating_sub(newest)).unwrap_or(0))
            }
        };
        self.metrics.set_lag(self.partition, behind, event_time_lag);
    }
}
