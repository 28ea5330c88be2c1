//! What several churn-scoring test files share: card-swipe records as purchase-ingest
//! writes them, and the checker that rebuilds the expected Redis state from the log with
//! the domain's reference model; and (in [`chain`]) the retail chain the query API tests
//! score a year of.
#![allow(dead_code)] // each test file uses its own part

pub mod chain;
pub mod process;

use std::collections::BTreeMap;

use churn_scoring::{CustomerStore, ScoredSwipe};
use churnguard_domain::customer::{CustomerState, Day};
use churnguard_domain::{CustomerInput, SwipeDraft, SwipeLimits};
use churnguard_eventlog::{EventLog, Header, OutgoingRecord, contract};

/// A Kafka log client on `broker`, with the default settings.
pub fn kafka_log(broker: &churnguard_testkit::Tansu) -> churnguard_kafka::KafkaLog {
    churnguard_kafka::KafkaLog::new(churnguard_kafka::KafkaSettings {
        bootstrap_servers: broker.bootstrap(),
        ..churnguard_kafka::KafkaSettings::default()
    })
    .expect("log")
}

pub const TOPIC: &str = "purchases.v1";
pub const PARTITIONS: u32 = 4;
pub const HORIZON: Day = 120;

/// Swipe `i` of `customer` at `store` on `occurred_at` (RFC 3339), as the log holds it.
pub fn card_swipe(
    i: usize,
    customer: &str,
    store: &str,
    occurred_at: &str,
    minor_units: i64,
) -> OutgoingRecord {
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
        .expect("time")
        .to_utc();
    let swipe = SwipeDraft {
        swipe_id: format!("sw-{i}"),
        customer: CustomerInput::CustomerId(customer.to_owned()),
        store_id: store.to_owned(),
        terminal_id: "till-1".into(),
        employee_id: "emp-1".into(),
        occurred_at: occurred_at.to_owned(),
        amount_minor_units: minor_units,
        currency: "EUR".into(),
        item_count: 1,
    }
    .validate(now, &SwipeLimits::default(), None)
    .expect("valid swipe");
    OutgoingRecord {
        key: customer.as_bytes().to_vec(),
        timestamp_ms: swipe.occurred_at.timestamp_millis(),
        payload: swipe.into_envelope().to_json(),
        headers: vec![Header::new("content-type", "application/cloudevents+json")],
    }
}

/// Bucket fingerprint order depends on arrival order; the checker compares sorted.
pub fn normalised(mut s: CustomerState) -> CustomerState {
    for b in s.days.values_mut() {
        b.swipes.sort_unstable();
    }
    s
}

/// The expected state of every customer: `swipes` applied in order to the reference model.
pub fn reference<'a>(
    swipes: impl IntoIterator<Item = &'a ScoredSwipe>,
) -> BTreeMap<String, CustomerState> {
    let mut out: BTreeMap<String, CustomerState> = BTreeMap::new();
    for s in swipes {
        match out.get_mut(&s.customer) {
            Some(st) => {
                st.apply(s.day, s.spend, &s.store, s.fingerprint, HORIZON);
            }
            None => {
                out.insert(
                    s.customer.clone(),
                    CustomerState::new(s.day, s.spend, &s.store, s.fingerprint),
                );
            }
        }
    }
    out.into_iter().map(|(k, v)| (k, normalised(v))).collect()
}

/// The swipes of every partition in log order, each partition up to `upto(partition)`.
pub async fn swipes_in_log<L: EventLog>(log: &L, upto: &[u64]) -> Vec<ScoredSwipe> {
    let mut out = Vec::new();
    for (p, end) in upto.iter().enumerate() {
        for r in contract::read_all(log, TOPIC, p as u32, *end).await {
            out.push(ScoredSwipe::from_record(&r).expect("swipe"));
        }
    }
    out
}

/// Each partition's end offset.
pub async fn log_ends<L: EventLog>(log: &L) -> Vec<u64> {
    let mut out = Vec::new();
    for p in 0..PARTITIONS {
        out.push(log.end_offset(TOPIC, p).await.expect("end offset"));
    }
    out
}

/// Each partition's checkpoint in Redis.
pub async fn checkpoints(store: &CustomerStore) -> Vec<u64> {
    let mut out = Vec::new();
    for p in 0..PARTITIONS {
        out.push(store.checkpoint(p).await.expect("checkpoint"));
    }
    out
}

/// The checker: what Redis should hold, from the log up to the stored checkpoints.
pub async fn expected_at_checkpoints<L: EventLog>(
    log: &L,
    store: &CustomerStore,
) -> BTreeMap<String, CustomerState> {
    reference(&swipes_in_log(log, &checkpoints(store).await).await)
}

/// What Redis holds.
pub async fn stored(store: &CustomerStore) -> BTreeMap<String, CustomerState> {
    let mut out = BTreeMap::new();
    for p in 0..PARTITIONS {
        for (c, s) in store.partition_customers(p).await.expect("scan") {
            out.insert(c, normalised(s));
        }
    }
    out
}

/// The visits `states` count, over all customers and days: each swipe applied once
/// counts one.
pub fn visits(states: &BTreeMap<String, CustomerState>) -> u64 {
    states
        .values()
        .flat_map(|s| s.days.values())
        .map(|b| u64::from(b.visits))
        .sum()
}

/// Whether every partition is applied up to the end of the log.
pub async fn caught_up<L: EventLog>(log: &L, store: &CustomerStore) -> bool {
    reached(store, &log_ends(log).await).await
}

/// Whether every partition's checkpoint is at or past its offset in `ends`.
pub async fn reached(store: &CustomerStore, ends: &[u64]) -> bool {
    checkpoints(store)
        .await
        .iter()
        .zip(ends)
        .all(|(c, end)| c >= end)
}
