//! The consumer loop: per partition, read from the checkpoint, decode, apply as one
//! batch, repeat.

use std::sync::Arc;
use std::time::Duration;

use churnguard_domain::customer::Day;
use churnguard_domain::envelope::{HISTORY_HEADER, INGESTED_AT_HEADER};
use churnguard_eventlog::{EventLog, Header, LogError, OutgoingRecord, Record};
use churnguard_runtime::consumer_metrics::LagProbe;
use churnguard_runtime::retry::Backoff;
use churnguard_telemetry::TRACEPARENT;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::batch::ScoredSwipe;
use crate::error::ScoringError;
use crate::metrics::CONSUMER;
use crate::store::CustomerStore;
use crate::timers::Timers;

/// Links a batch span keeps: the OpenTelemetry SDK's default span link limit.
const MAX_LINKS: usize = 128;

/// Counts of one partition's run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionStats {
    pub counted: u64,
    pub duplicates: u64,
    pub too_late: u64,
    /// Records that are not a card-swipe event this scorer understands, sent to the
    /// dead-letter topic.
    pub poison: u64,
}

#[derive(Debug)]
pub struct Scorer<L> {
    log: Arc<L>,
    store: CustomerStore,
    topic: String,
    dead_letters: String,
    batch: usize,
    /// The consumer group it reads in, as its spans name it.
    group: String,
    /// Per partition, what it last recorded of whether the newest swipe applied was
    /// imported history (see [`CustomerStore::set_history`]): written when it changes.
    history: std::sync::Mutex<std::collections::HashMap<u32, bool>>,
    /// The absence timers imported history is lived through with (see
    /// [`Scorer::with_timers`]); none: a batch is applied whole.
    timers: Option<Arc<Timers>>,
}

/// The dead-letter topic of `topic`.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// A poison record, as it goes to the dead-letter topic: the original key and payload,
/// its origin and the reason in headers.
fn dead_letter(topic: &str, partition: u32, r: &Record, reason: &str) -> OutgoingRecord {
    let mut headers = r.headers.clone();
    headers.push(Header::new("dlq-origin-topic", topic));
    headers.push(Header::new("dlq-origin-partition", partition.to_string()));
    headers.push(Header::new("dlq-origin-offset", r.offset.to_string()));
    headers.push(Header::new("dlq-reason", reason));
    OutgoingRecord {
        key: r.key.clone(),
        payload: r.payload.clone(),
        headers,
        timestamp_ms: r.timestamp_ms,
    }
}

impl<L: EventLog> Scorer<L> {
    pub fn new(log: Arc<L>, store: CustomerStore, topic: &str, batch: usize) -> Self {
        Self {
            log,
            store,
            topic: topic.to_owned(),
            dead_letters: dead_letter_topic(topic),
            batch,
            group: crate::CONSUMER.to_owned(),
            history: Default::default(),
            timers: None,
        }
    }

    /// Lives through imported history with `timers`: before a historical swipe moves the
    /// partition's stream time to a later day, the deadlines due up to that day fire on
    /// their own days ([`Timers::live_through`]), as they would have with the clock on
    /// those days, and the batch is applied in parts at those points. So the states,
    /// their dates and the stores' figures at the end of an import are those that
    /// scoring the same swipes as they happened would have given. Live swipes are
    /// applied as before: the timers follow the wall clock for them.
    pub fn with_timers(mut self, timers: Arc<Timers>) -> Self {
        self.timers = Some(timers);
        self
    }

    /// The consumer group its spans name (default [`crate::CONSUMER`]).
    pub fn with_group(mut self, group: &str) -> Self {
        self.group = group.to_owned();
        self
    }

    /// The topic this scorer consumes.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The store it writes to.
    pub fn store(&self) -> &CustomerStore {
        &self.store
    }

    /// Creates the dead-letter topic (one partition per source partition count is not
    /// needed: it is small and read by people).
    pub async fn prepare(&self) -> Result<(), ScoringError> {
        self.log
            .ensure_topic(&self.dead_letters, 1)
            .await
            .map_err(ScoringError::Log)?;
        Ok(())
    }

    /// Applies one partition's records until `stop` is cancelled; with `until_caught_up`
    /// it also stops once the checkpoint reaches the partition's end. Passing trouble with
    /// the log or Redis is retried with the runtime's backoff ([`Backoff`]: 100-200 ms
    /// first, doubling up to 2.5-5 s, from the start again once a batch got through);
    /// only permanent errors end it.
    pub async fn run_partition(
        &self,
        partition: u32,
        stop: CancellationToken,
        until_caught_up: bool,
    ) -> Result<PartitionStats, ScoringError> {
        let mut stats = PartitionStats::default();
        let mut backoff = Backoff::new();
        loop {
            let before = stats;
            match self
                .run_partition_once(partition, &stop, until_caught_up, &mut stats)
                .await
            {
                Ok(()) => return Ok(stats),
                Err(e) if e.is_retriable() && !stop.is_cancelled() => {
                    if stats != before {
                        // It got somewhere since the last trouble: start the backoff over.
                        backoff.reset();
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(partition, error = %e, ?delay, "scoring interrupted; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return Ok(stats),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn run_partition_once(
        &self,
        partition: u32,
        stop: &CancellationToken,
        until_caught_up: bool,
        stats: &mut PartitionStats,
    ) -> Result<(), ScoringError> {
        // Redis's checkpoint is the authority; an empty Redis starts from the beginning.
        let mut from = self.store.checkpoint(partition).await?;
        let mut lag = LagProbe::new(CONSUMER, partition);
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
            let Some(last) = records.last() else {
                lag.observe(self.log.as_ref(), &self.topic, from, &[], now_ms())
                    .await;
                continue;
            };
            // The purchases topic is neither compacted nor transactional, so its offsets
            // are dense: a read that does not start where asked, or skips, would move the
            // checkpoint past records never applied. Refuse it and read again.
            if records[0].offset != from || last.offset + 1 - from != records.len() as u64 {
                return Err(ScoringError::Log(LogError::Unavailable(format!(
                    "partition {partition}: asked for offset {from}, got {}..={} ({} records)",
                    records[0].offset,
                    last.offset,
                    records.len()
                ))));
            }
            let span = self.batch_span(partition, &records);
            let applied = self
                .apply_records(partition, from, &records, stats)
                .instrument(span.clone())
                .await;
            if applied.is_err() {
                span.record("otel.status_code", "ERROR");
            }
            from = applied?;
            lag.observe(self.log.as_ref(), &self.topic, from, &records, now_ms())
                .await;
        }
        Ok(())
    }

    /// The span of one batch: a consumer span processing the records, linked to each
    /// record's trace (its `traceparent`, the span that wrote it).
    fn batch_span(&self, partition: u32, records: &[Record]) -> tracing::Span {
        let span = tracing::info_span!(
            "process",
            otel.name = %format_args!("process {}", self.topic),
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            messaging.system = "kafka",
            messaging.operation.type = "process",
            messaging.operation.name = "process",
            messaging.destination.name = %self.topic,
            messaging.consumer.group.name = %self.group,
            messaging.destination.partition.id = partition,
            messaging.kafka.destination.partition = partition,
            messaging.kafka.offset = records.first().map_or(0, |r| r.offset),
            messaging.batch.message_count = records.len(),
        );
        // The SDK keeps at most its span link limit (128 by default) and drops the rest
        // when the span ends: parsing more would be work thrown away.
        for tp in records.iter().filter_map(traceparent).take(MAX_LINKS) {
            churnguard_telemetry::link_to(&span, tp);
        }
        span
    }

    /// Applies one batch read from `from` (dead letters first); returns the checkpoint to
    /// read on from.
    async fn apply_records(
        &self,
        partition: u32,
        from: u64,
        records: &[Record],
        stats: &mut PartitionStats,
    ) -> Result<u64, ScoringError> {
        let Some(last) = records.last() else {
            return Ok(from);
        };
        let mut swipes = Vec::with_capacity(records.len());
        let mut poison = Vec::new();
        for r in records {
            match ScoredSwipe::from_record(r) {
                Ok(s) => swipes.push((s, traceparent(r).map(str::to_owned))),
                Err(e) => {
                    tracing::warn!(partition, offset = r.offset, error = %e, "record is not a card swipe: dead-lettered");
                    poison.push(dead_letter(&self.topic, partition, r, &e.to_string()));
                }
            }
        }
        // Dead letters are durable before the checkpoint moves past them. A crash in
        // between sends them again (the origin headers identify repeats); none is lost.
        if !poison.is_empty() {
            stats.poison += poison.len() as u64;
            CONSUMER.dead_lettered(poison.len());
            for result in self.log.append(&self.dead_letters, poison).await {
                result.map_err(ScoringError::Log)?;
            }
        }
        let mut checkpoint = from;
        for part in self.parts(partition, records, swipes).await? {
            if let (Some(timers), Some(day)) = (&self.timers, part.lived_to) {
                timers.live_through(partition, day).await?;
            }
            let (swipes, traceparents): (Vec<_>, Vec<_>) = part.swipes.into_iter().unzip();
            let outcome = self
                .store
                .apply_batch_traced(partition, checkpoint, &swipes, &traceparents, part.next)
                .await?;
            stats.counted += outcome.counted;
            stats.duplicates += outcome.duplicates;
            stats.too_late += outcome.too_late;
            if outcome.conflict {
                CONSUMER.checkpoint_conflict();
                return Ok(outcome.checkpoint);
            }
            if outcome.checkpoint != part.next {
                return Ok(outcome.checkpoint);
            }
            CONSUMER.applied(partition, part.records, outcome.duplicates);
            checkpoint = part.next;
        }
        let now = now_ms();
        crate::metrics::swipes_scored(records.iter().filter_map(|r| ingested_ago(r, now)));
        self.note_history(partition, last.header(HISTORY_HEADER).is_some())
            .await?;
        Ok(checkpoint)
    }

    /// Splits a batch where imported history moves the partition's stream time to a
    /// later day (with timers; else one part): each part is applied on its own, after
    /// the days up to its first swipe's are lived through.
    async fn parts(
        &self,
        partition: u32,
        records: &[Record],
        swipes: Vec<(ScoredSwipe, Option<String>)>,
    ) -> Result<Vec<Part>, ScoringError> {
        let mut stream_day = match self.timers {
            Some(_) => self.store.watermark(partition).await?,
            None => None,
        };
        let mut parts = vec![Part::default()];
        let mut swipes = swipes.into_iter().peekable();
        for r in records {
            let swipe = swipes.next_if(|(s, _)| s.offset == r.offset);
            if let Some((s, _)) = &swipe {
                // None without timers: no swipe moves it.
                if stream_day.is_some_and(|d| s.day > d) && r.header(HISTORY_HEADER).is_some() {
                    if parts.last().is_some_and(|p| p.records > 0) {
                        parts.push(Part::default());
                    }
                    parts.last_mut().expect("a part").lived_to = Some(s.day);
                }
                if self.timers.is_some() {
                    stream_day = Some(stream_day.map_or(s.day, |d| d.max(s.day)));
                }
            }
            let part = parts.last_mut().expect("a part");
            part.records += 1;
            part.next = r.offset + 1;
            part.swipes.extend(swipe);
        }
        Ok(parts)
    }

    /// Records whether the partition's newest applied swipe is imported history, where
    /// the timers read it, when that changed. After the batch's commit: a crash in between
    /// leaves the older value until the next batch, which the timers read as before.
    async fn note_history(&self, partition: u32, history: bool) -> Result<(), ScoringError> {
        let known = self
            .history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&partition)
            .copied();
        if known != Some(history) {
            self.store.set_history(partition, history).await?;
            self.history
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(partition, history);
        }
        Ok(())
    }
}

/// A part of a batch, applied on its own.
#[derive(Default)]
struct Part {
    /// Lived through up to this day before the part is applied.
    lived_to: Option<Day>,
    /// Records in the part, dead letters included.
    records: usize,
    swipes: Vec<(ScoredSwipe, Option<String>)>,
    /// The checkpoint once it is applied: past its last record.
    next: u64,
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The trace context a record carries (its `traceparent` header), if any.
fn traceparent(r: &Record) -> Option<&str> {
    std::str::from_utf8(r.header(TRACEPARENT)?).ok()
}

/// How long ago (at `now_ms`) ingest accepted the swipe in `r`, if it says
/// ([`INGESTED_AT_HEADER`]; records imported from history do not).
fn ingested_ago(r: &Record, now_ms: i64) -> Option<Duration> {
    let at: i64 = std::str::from_utf8(r.header(INGESTED_AT_HEADER)?)
        .ok()?
        .parse()
        .ok()?;
    u64::try_from(now_ms - at).ok().map(Duration::from_millis)
}
