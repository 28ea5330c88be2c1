//! The retail chain of the query API tests: supermarkets and a restaurant, a year of
//! their customers' swipes week by week, and the scorer and timers that turn them into
//! the Redis state and churn signals the API answers from, live or replayed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate};
use churn_scoring::timers::Timers;
use churn_scoring::{CustomerStore, ScoredSwipe, Scorer};
use churnguard_domain::customer::Day;
use churnguard_domain::models::BgNbd;
use churnguard_domain::policy::{DefectionPolicy, PolicyBook, RuleSet};
use churnguard_domain::signal::ChurnStateChanged;
use churnguard_domain::{CustomerInput, Envelope, SwipeDraft, SwipeLimits};
use churnguard_eventlog::{EventLog, OutgoingRecord};
use tokio_util::sync::CancellationToken;

pub use super::TOPIC;

/// The topic refits announce models on.
pub const MODELS: &str = "churn.models.v1";
/// The purchases topic's partitions in the query API tests.
pub const PARTITIONS: u32 = 3;
/// The weeks of swipes in the chain's year.
pub const WEEKS: u64 = 40;
/// The week after which the quiet diners are at risk but not yet defected.
pub const CHECK_WEEK: u64 = 17;
/// The model the timers assess with; the API uses the fitted one.
pub const TIMER_MODEL: BgNbd = BgNbd {
    r: 0.243,
    alpha: 4.414,
    a: 0.793,
    b: 2.426,
};

/// A restaurant's defection policy: it misses a regular sooner than a supermarket does.
pub fn restaurant() -> DefectionPolicy {
    DefectionPolicy {
        recent_days: 28,
        baseline_days: 56,
        min_baseline_visits: 4,
        at_risk: RuleSet {
            visits_below_fraction: Some(0.6),
            overdue_gaps: Some(3.0),
            min_rules: 1,
            ..RuleSet::default()
        },
        defected: RuleSet {
            overdue_gaps: Some(8.0),
            min_rules: 1,
            ..RuleSet::default()
        },
    }
}

/// A supermarket's defection policy.
pub fn supermarket() -> DefectionPolicy {
    DefectionPolicy {
        recent_days: 28,
        baseline_days: 56,
        min_baseline_visits: 4,
        at_risk: RuleSet {
            visits_below_fraction: Some(0.3),
            overdue_gaps: Some(5.0),
            min_rules: 1,
            ..RuleSet::default()
        },
        defected: RuleSet {
            overdue_gaps: Some(12.0),
            min_rules: 1,
            ..RuleSet::default()
        },
    }
}

/// The chain: supermarkets by default, store `r1` is a restaurant.
pub fn policies() -> PolicyBook {
    PolicyBook {
        default: supermarket(),
        formats: BTreeMap::from([("restaurant".to_owned(), restaurant())]),
        store_formats: BTreeMap::from([("r1".to_owned(), "restaurant".to_owned())]),
    }
}

/// Monday 5 January 2026, the first day of week 0.
pub fn start() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 5).expect("date")
}

/// `day` as `YYYY-MM-DD`.
pub fn date_of(day: Day) -> String {
    (NaiveDate::default() + chrono::Days::new(day as u64)).to_string()
}

/// `customer`'s swipe at `store` on `weekday` of `week`, for `spend` minor units, as the
/// log holds it.
pub fn swipe(customer: &str, store: &str, week: u64, weekday: u64, spend: i64) -> OutgoingRecord {
    let now = DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
        .expect("time")
        .to_utc();
    let date = start() + chrono::Days::new(week * 7 + weekday);
    let s = SwipeDraft {
        swipe_id: format!("{customer}-{week}-{weekday}"),
        customer: CustomerInput::CustomerId(customer.into()),
        store_id: store.into(),
        terminal_id: "t1".into(),
        employee_id: "e1".into(),
        occurred_at: format!("{}T19:30:00+01:00", date.format("%Y-%m-%d")),
        amount_minor_units: spend,
        currency: "EUR".into(),
        item_count: 2,
    }
    .validate(
        now,
        &SwipeLimits {
            max_age: chrono::TimeDelta::days(400),
            ..Default::default()
        },
        None,
    )
    .expect("valid");
    OutgoingRecord {
        key: customer.as_bytes().to_vec(),
        timestamp_ms: s.occurred_at.timestamp_millis(),
        payload: s.into_envelope().to_json(),
        headers: vec![],
    }
}

/// The diners who go quiet after 16 weeks at the restaurant, with their spend per dinner:
/// their values at risk are ordered like their spend (b and c tie).
pub const DINERS: [(&str, i64); 4] = [
    ("diner-a", 2_000),
    ("diner-b", 4_000),
    ("diner-c", 4_000),
    ("diner-d", 8_000),
];

/// One week of the chain's swipes.
pub fn week(w: u64) -> Vec<OutgoingRecord> {
    let mut out = Vec::new();
    for i in 0..6 {
        let c = format!("steady-{i}");
        for d in [0, 3] {
            out.push(swipe(&c, "r1", w, d, 3_000 + 250 * i));
        }
    }
    for i in 0..3 {
        out.push(swipe(
            &format!("shopper-{i}"),
            "s2",
            w,
            1,
            9_000 + 1_000 * i,
        ));
    }
    if w < 16 {
        for (c, spend) in DINERS {
            for d in [0, 3] {
                out.push(swipe(c, "r1", w, d, spend));
            }
        }
        out.push(swipe("market-1", "s2", w, 1, 12_000));
    }
    // Gone for four months, then back for good.
    if !(16..32).contains(&w) {
        for d in [0, 3] {
            out.push(swipe("back-1", "r1", w, d, 6_000));
        }
    }
    out
}

/// The chain's scoring: the log, the customer store, the scorer and the timers.
pub struct Chain<L: EventLog> {
    pub log: Arc<L>,
    pub store: CustomerStore,
    pub scorer: Scorer<L>,
    pub timers: Timers,
    /// Each partition's end offset after each week.
    pub ends: Vec<Vec<u64>>,
}

impl<L: EventLog> Chain<L> {
    /// The topics on `log`, and a scorer and timers on `store`.
    pub async fn new(log: Arc<L>, store: CustomerStore) -> Self {
        log.ensure_topic(TOPIC, PARTITIONS).await.expect("topic");
        log.ensure_topic(MODELS, 1).await.expect("models topic");
        Self {
            scorer: Scorer::new(log.clone(), store.clone(), TOPIC, 500),
            timers: Timers::new(store.clone(), policies(), TIMER_MODEL),
            log,
            store,
            ends: Vec::new(),
        }
    }

    /// Stream time: the latest event day applied on any partition.
    pub async fn stream_time(&self) -> Day {
        let mut now = Day::MIN;
        for p in 0..PARTITIONS {
            if let Some(w) = self.store.watermark(p).await.expect("watermark") {
                now = now.max(w);
            }
        }
        now
    }

    /// Fires every partition's due timers on stream time.
    pub async fn fire(&self) {
        let now = self.stream_time().await;
        for p in 0..PARTITIONS {
            self.timers.fire_due(p, now).await.expect("fire");
        }
    }

    /// Appends week `w`, scores it, and fires the timers on stream time.
    pub async fn live_week(&mut self, w: u64) {
        for r in self.log.append(TOPIC, week(w)).await {
            r.expect("append");
        }
        let mut ends = Vec::new();
        for p in 0..PARTITIONS {
            self.scorer
                .run_partition(p, CancellationToken::new(), true)
                .await
                .expect("score");
            ends.push(self.log.end_offset(TOPIC, p).await.expect("end"));
        }
        self.ends.push(ends);
        self.fire().await;
    }

    /// Replays the log from the start in the live run's weekly steps, firing the timers
    /// at the same stream times.
    pub async fn replay(&self) {
        for ends in &self.ends {
            for (p, end) in (0..PARTITIONS).zip(ends) {
                let mut from = self.store.checkpoint(p).await.expect("checkpoint");
                while from < *end {
                    let records = self
                        .log
                        .read(
                            TOPIC,
                            p,
                            from,
                            (*end - from) as usize,
                            Duration::from_secs(1),
                        )
                        .await
                        .expect("read");
                    let records: Vec<_> = records.into_iter().filter(|r| r.offset < *end).collect();
                    let Some(last) = records.last() else { continue };
                    let next = last.offset + 1;
                    let swipes: Vec<ScoredSwipe> = records
                        .iter()
                        .map(|r| ScoredSwipe::from_record(r).expect("swipe"))
                        .collect();
                    from = self
                        .store
                        .apply_batch(p, from, &swipes, next)
                        .await
                        .expect("apply")
                        .checkpoint;
                }
            }
            self.fire().await;
        }
    }

    /// Every churn signal committed so far (the outbox is not relayed in these tests).
    pub async fn signals(&self) -> Vec<ChurnStateChanged> {
        let mut out = Vec::new();
        for p in 0..PARTITIONS {
            for entry in self.store.outbox(p, 100_000).await.expect("outbox") {
                out.push(
                    Envelope::<ChurnStateChanged>::decode(
                        &entry.signal,
                        ChurnStateChanged::EVENT_TYPE,
                    )
                    .expect("signal")
                    .data,
                );
            }
        }
        out
    }
}
