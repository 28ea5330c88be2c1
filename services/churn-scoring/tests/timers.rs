//! Absence detection against a real Redis: deadlines fire without new events, exactly
//! once across instances, and signals reach the log.

use std::sync::Arc;

use churn_scoring::timers::Timers;
use churn_scoring::{CustomerStore, ScoredSwipe};
use churnguard_domain::Envelope;
use churnguard_domain::customer::{Day, swipe_fingerprint};
use churnguard_domain::models::BgNbd;
use churnguard_domain::policy::{ChurnState, DefectionPolicy, RuleSet};
use churnguard_domain::signal::ChurnStateChanged;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_eventlog::{EventLog, contract};
use churnguard_testkit::{RedisServer, init_test_logging};

const TOPIC: &str = "purchases.v1";
const HORIZON: Day = 120;
const MODEL: BgNbd = BgNbd {
    r: 0.243,
    alpha: 4.414,
    a: 0.793,
    b: 2.426,
};

fn restaurant() -> DefectionPolicy {
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

/// A customer dining twice a week for 16 weeks from day 20,000, through the batch script.
async fn regular(store: &CustomerStore, customer: &str, first_offset: u64) -> (u64, Day) {
    let days: Vec<Day> = (0..16)
        .flat_map(|w| [20_000 + w * 7, 20_000 + w * 7 + 3])
        .collect();
    let swipes: Vec<ScoredSwipe> = days
        .iter()
        .enumerate()
        .map(|(i, d)| ScoredSwipe {
            offset: first_offset + i as u64,
            customer: customer.into(),
            day: *d,
            spend: 4_000,
            store: "r1".into(),
            fingerprint: swipe_fingerprint(&format!("{customer}-{i}")),
        })
        .collect();
    let next = first_offset + swipes.len() as u64;
    store
        .apply_batch(0, first_offset, &swipes, next)
        .await
        .expect("apply");
    (next, *days.last().expect("days"))
}

async fn signals(store: &CustomerStore) -> Vec<ChurnStateChanged> {
    store
        .outbox(0, 1_000)
        .await
        .expect("outbox")
        .into_iter()
        .map(|entry| {
            Envelope::<ChurnStateChanged>::decode(&entry.signal, ChurnStateChanged::EVENT_TYPE)
                .expect("a churn signal")
                .data
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn silence_becomes_at_risk_then_defected_on_the_policys_days_and_a_return_is_won_back() {
    init_test_logging();
    let redis = RedisServer::start();
    let store = CustomerStore::connect(&redis.url(), TOPIC, HORIZON)
        .await
        .expect("store");
    let (offset, last) = regular(&store, "fam-1", 0).await;
    let timers = Timers::new(store.clone(), restaurant(), MODEL);

    // What the pure policy says should happen, with no new event.
    let state = store
        .for_assessment(&churn_scoring::store::customer_key(0, "fam-1"))
        .await
        .expect("read")
        .expect("exists")
        .state;
    let policy = restaurant();
    let at_risk_day = policy
        .next_deadline(ChurnState::Active, &state, &MODEL, last, 400)
        .expect("at risk");
    let defected_day = policy
        .next_deadline(ChurnState::AtRisk, &state, &MODEL, at_risk_day, 400)
        .expect("defected");

    // The clock advances a day at a time (stream or wall time); nothing else happens.
    let mut changes = Vec::new();
    for day in last..=defected_day + 5 {
        let fired = timers.fire_due(0, day).await.expect("fire");
        if fired.changed > 0 {
            changes.push(day);
        }
    }
    assert_eq!(
        changes,
        [at_risk_day, defected_day],
        "state changed exactly on the policy's days"
    );
    let s = signals(&store).await;
    let seen: Vec<(&str, &str)> = s
        .iter()
        .map(|x| (x.previous.as_str(), x.state.as_str()))
        .collect();
    assert_eq!(seen, [("active", "at_risk"), ("at_risk", "defected")]);
    assert!(
        s[0].rules.contains(&"overdue".to_owned()),
        "{:?}",
        s[0].rules
    );
    assert_eq!(s[0].store_id.as_deref(), Some("r1"));
    assert!(s[1].value_at_risk > 0.0 && s[1].clv >= 0.0);

    // They come back: a week of dinners, then the timer (due at once) says won back.
    let back: Vec<ScoredSwipe> = (0..4)
        .map(|i| ScoredSwipe {
            offset: offset + i,
            customer: "fam-1".into(),
            day: defected_day + 10 + (i as Day) * 3,
            spend: 4_000,
            store: "r1".into(),
            fingerprint: swipe_fingerprint(&format!("back-{i}")),
        })
        .collect();
    store
        .apply_batch(0, offset, &back, offset + 4)
        .await
        .expect("apply");
    let today = defected_day + 20;
    timers.fire_due(0, today).await.expect("fire");
    let s = signals(&store).await;
    assert_eq!(
        s.last().map(|x| x.state.as_str()),
        Some("won_back"),
        "{s:?}"
    );
    assert_eq!(s.len(), 3, "one signal per change, none without a change");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_fire_each_deadline_once_and_the_relay_publishes_each_signal() {
    init_test_logging();
    let redis = RedisServer::start();
    let store = CustomerStore::connect(&redis.url(), TOPIC, HORIZON)
        .await
        .expect("store");
    let mut offset = 0;
    let mut last = 0;
    for c in 0..30 {
        let (o, l) = regular(&store, &format!("fam-{c}"), offset).await;
        offset = o;
        last = l;
    }
    let a = Arc::new(Timers::new(store.clone(), restaurant(), MODEL));
    let b = Arc::new(Timers::new(store.clone(), restaurant(), MODEL));
    let mut lost = 0;
    for day in last..last + 80 {
        let (ra, rb) = tokio::join!(a.fire_due(0, day), b.fire_due(0, day));
        lost += ra.expect("a").lost_races + rb.expect("b").lost_races;
    }
    assert!(
        lost > 0,
        "the two instances did race for the same deadlines"
    );
    let s = signals(&store).await;
    assert_eq!(
        s.len(),
        60,
        "each of 30 customers: at_risk once, defected once"
    );
    let mut pairs: Vec<(String, String)> = s
        .iter()
        .map(|x| (x.customer.clone(), x.state.clone()))
        .collect();
    pairs.sort();
    pairs.dedup();
    assert_eq!(pairs.len(), 60, "no transition fired twice");

    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(dir.path()).expect("log");
    log.ensure_topic("churn.signals.v1", 1)
        .await
        .expect("topic");
    let mut published = 0;
    loop {
        let n = a.relay(0, &log, "churn.signals.v1").await.expect("relay");
        if n == 0 {
            break;
        }
        published += n;
    }
    assert_eq!(published, 60);
    assert!(
        store.outbox(0, 10).await.expect("outbox").is_empty(),
        "relayed entries are removed"
    );
    let records = contract::read_all(&log, "churn.signals.v1", 0, 60).await;
    let ids: std::collections::HashSet<String> = records
        .iter()
        .map(|r| {
            Envelope::<ChurnStateChanged>::decode(&r.payload, ChurnStateChanged::EVENT_TYPE)
                .expect("signal")
                .id
        })
        .collect();
    assert_eq!(ids.len(), 60);
}

/// Replaying history: timers run on stream time (the partition's watermark), so a
/// customer who went quiet in 2026's data is flagged as the replay passes their deadline,
/// not when the wall clock says.
#[tokio::test(flavor = "multi_thread")]
async fn during_replay_timers_fire_on_stream_time() {
    init_test_logging();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(EmbeddedLog::open(dir.path()).expect("log"));
    log.ensure_topic(TOPIC, 1).await.expect("topic");
    let redis = RedisServer::start();
    let store = CustomerStore::connect(&redis.url(), TOPIC, HORIZON)
        .await
        .expect("store");
    let scorer = churn_scoring::Scorer::new(log.clone(), store.clone(), TOPIC, 500);
    let timers = Timers::new(store.clone(), restaurant(), MODEL);
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
        .expect("time")
        .to_utc();
    let swipe = |customer: &str, date: chrono::NaiveDate, n: usize| {
        let s = churnguard_domain::SwipeDraft {
            swipe_id: format!("{customer}-{n}"),
            customer: churnguard_domain::CustomerInput::CustomerId(customer.into()),
            store_id: "r1".into(),
            terminal_id: "t1".into(),
            employee_id: "e1".into(),
            occurred_at: format!("{}T19:30:00+01:00", date.format("%Y-%m-%d")),
            amount_minor_units: 4_000,
            currency: "EUR".into(),
            item_count: 3,
        }
        .validate(
            now,
            &churnguard_domain::SwipeLimits {
                max_age: chrono::TimeDelta::days(400),
                ..Default::default()
            },
            None,
        )
        .expect("valid");
        churnguard_eventlog::OutgoingRecord {
            key: customer.as_bytes().to_vec(),
            timestamp_ms: s.occurred_at.timestamp_millis(),
            payload: s.into_envelope().to_json(),
            headers: vec![],
        }
    };
    let start = chrono::NaiveDate::from_ymd_opt(2026, 1, 5).expect("date");
    let mut quiet_deadline = None;
    let mut n = 0;
    for week in 0..30u64 {
        let mut batch = Vec::new();
        for offset_days in [0u64, 3] {
            let date = start + chrono::Days::new(week * 7 + offset_days);
            n += 1;
            batch.push(swipe("steady", date, n));
            if week < 16 {
                batch.push(swipe("quiet", date, n));
            }
        }
        for r in log.append(TOPIC, batch).await {
            r.expect("append");
        }
        scorer
            .run_partition(0, tokio_util::sync::CancellationToken::new(), true)
            .await
            .expect("score");
        let stream_now = store
            .watermark(0)
            .await
            .expect("watermark")
            .expect("a watermark");
        if week == 16 {
            let state = store
                .for_assessment(&churn_scoring::store::customer_key(0, "quiet"))
                .await
                .expect("read")
                .expect("exists")
                .state;
            quiet_deadline =
                restaurant().next_deadline(ChurnState::Active, &state, &MODEL, state.last_day, 400);
        }
        timers.fire_due(0, stream_now).await.expect("fire");
    }
    let s = signals(&store).await;
    assert!(
        s.iter().all(|x| x.customer == "quiet"),
        "the steady customer never changed state: {s:?}"
    );
    let first = s.first().expect("the quiet customer was noticed");
    assert_eq!(first.state, "at_risk");
    let deadline = quiet_deadline.expect("a deadline");
    let noticed = churnguard_domain::customer::day_of(first.as_of);
    assert!(
        noticed >= deadline && noticed < deadline + 7,
        "noticed on stream day {noticed}, deadline {deadline} (stream time moves in steps of the replay)"
    );
    assert!(s.iter().any(|x| x.state == "defected"), "{s:?}");
}
