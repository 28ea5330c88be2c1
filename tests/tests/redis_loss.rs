//! Redis holds only state that the log rebuilds: flushed under load, with churn-scoring
//! and feedback restarted on the empty Redis, the fitted model, every customer's churn
//! state, the stores' defection figures and the outreach cases come back equal to those
//! of the same run without the flush. On a real Kafka-protocol broker (Tansu) and a real
//! Redis.
//!
//! The run is made repeatable: the services' clock is fixed (day `TODAY`), the model is
//! one announced on `churn.models.v1` (refits off), the history's customers swipe at a
//! steady pace until the last days before `TODAY`, so every churn decision falls on
//! `TODAY`, and the load during the flush is new customers' swipes of `TODAY`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use churnguard_domain::{CustomerInput, SwipeDraft, SwipeLimits};
use churnguard_eventlog::{EventLog, Header, OutgoingRecord};
use churnguard_kafka::KafkaLog;
use churnguard_proto::feedback::v1 as fb;
use churnguard_proto::feedback::v1::feedback_client::FeedbackClient;
use churnguard_proto::scoring::v1 as sc;
use churnguard_proto::scoring::v1::churn_scoring_client::ChurnScoringClient;
use churnguard_runtime::Clock;
use churnguard_testkit::{RedisServer, Tansu, init_test_logging};
use churnguard_vault::Kek;
use tonic::transport::Channel;

const PURCHASES: &str = "purchases.v1";
const MODELS: &str = "churn.models.v1";
const PARTITIONS: u32 = 3;
const CUSTOMERS: usize = 120;
const STORES: usize = 3;
const LOAD_BATCHES: usize = 40;
const WAIT: Duration = Duration::from_secs(180);

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 20).expect("date")
}

fn clock() -> Clock {
    let noon = today().and_hms_opt(12, 0, 0).expect("time").and_utc();
    Arc::new(move || noon)
}

/// What a run ends with, as the APIs report it.
#[derive(Debug, PartialEq)]
struct Outcome {
    model: sc::GetModelResponse,
    /// Customer → churn state.
    states: BTreeMap<String, i32>,
    /// Store → (defected, won back, home customers) over the last 28 days.
    stores: BTreeMap<String, (u64, u64, u64)>,
    /// (customer, defector state, home store, status) of every outreach case.
    cases: Vec<(String, i32, String, i32)>,
}

#[tokio::test(flavor = "multi_thread")]
async fn state_rebuilt_after_redis_is_flushed_under_load_equals_a_run_without_the_flush() {
    init_test_logging();
    let steady = run(false).await;
    let flushed = run(true).await;
    eprintln!(
        "redis_loss: {} customers, {} cases, stores {:?}",
        steady.states.len(),
        steady.cases.len(),
        steady.stores
    );
    assert!(
        steady.cases.len() >= 20,
        "the history leaves customers to reach out to: {}",
        steady.cases.len()
    );
    assert_eq!(flushed.model, steady.model, "the model");
    assert_eq!(flushed.states, steady.states, "the churn states");
    assert_eq!(
        flushed.stores, steady.stores,
        "the stores' defection figures"
    );
    assert_eq!(flushed.cases, steady.cases, "the outreach cases");
}

struct Stack {
    scoring: churn_scoring::Running<KafkaLog>,
    feedback: feedback::Running,
}

async fn start(broker: &Tansu, redis: &RedisServer) -> Stack {
    let mut scoring = churn_scoring::config::Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        shutdown_grace_ms: 5_000,
        timer_interval_ms: 200,
        refit_interval_secs: 0,
        ..churn_scoring::config::Settings::default()
    };
    scoring.topics.partitions = PARTITIONS;
    scoring.redis.url = redis.url();
    let scoring = churn_scoring::App::build_with_clock(
        scoring,
        Arc::new(common::kafka(broker, "churn-scoring")),
        clock(),
    )
    .await
    .expect("churn-scoring builds")
    .spawn();
    let mut settings = feedback::config::Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        shutdown_grace_ms: 5_000,
        ..feedback::config::Settings::default()
    };
    settings.topics.partitions = PARTITIONS;
    settings.redis.url = redis.url();
    let feedback = feedback::App::build_with_clock(
        settings,
        Arc::new(common::kafka(broker, "feedback")),
        Kek::from_bytes([7; 32]),
        clock(),
    )
    .await
    .expect("feedback builds")
    .spawn();
    Stack { scoring, feedback }
}

impl Stack {
    async fn stop(self) {
        self.feedback.stop().await.expect("feedback stops");
        self.scoring.stop().await.expect("churn-scoring stops");
    }
}

async fn run(flush: bool) -> Outcome {
    let broker = Tansu::start();
    let redis = RedisServer::start();
    let log = common::kafka(&broker, "e2e-writer");
    log.ensure_topic(PURCHASES, PARTITIONS)
        .await
        .expect("topic");
    log.ensure_topic(MODELS, 1).await.expect("topic");
    append(&log, MODELS, vec![common::model_record(clock()())]).await;
    let started = std::time::Instant::now();
    let history = history();
    let swipes = history.len();
    append(&log, PURCHASES, history).await;
    eprintln!(
        "[{:?}] flush={flush}: {swipes} swipes of history appended",
        started.elapsed()
    );

    let mut stack = start(&broker, &redis).await;
    let settled = settle(&stack, None).await;
    eprintln!(
        "[{:?}] settled: {} cases from the history",
        started.elapsed(),
        settled.cases.len()
    );
    assert!(!settled.cases.is_empty(), "cases opened from the history");

    // Load: new customers swiping today, while (in one of the runs) Redis is flushed and
    // the services restart on the empty Redis.
    for batch in 0..LOAD_BATCHES {
        append(&log, PURCHASES, load(batch)).await;
        if flush && batch == LOAD_BATCHES / 3 {
            flush_all(&redis).await;
            stack.stop().await;
            stack = start(&broker, &redis).await;
            eprintln!(
                "[{:?}] Redis flushed, services restarted",
                started.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let outcome = settle(&stack, Some(CUSTOMERS + LOAD_BATCHES * 10)).await;
    eprintln!("[{:?}] settled after the load", started.elapsed());
    stack.stop().await;
    outcome
}

/// Waits until the APIs report the same outcome twice, two seconds apart, with every
/// customer scored (`customers`, when given) and every customer at risk or gone with a
/// case; returns it.
async fn settle(stack: &Stack, customers: Option<usize>) -> Outcome {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = None;
    loop {
        let now = outcome(stack).await;
        let scored = customers.is_none_or(|n| now.states.len() == n);
        let reached = now
            .states
            .values()
            .filter(|s| {
                [
                    sc::ChurnState::AtRisk as i32,
                    sc::ChurnState::Defected as i32,
                ]
                .contains(s)
            })
            .count();
        let complete = scored && reached > 0 && now.cases.len() >= reached;
        if complete && last.as_ref() == Some(&now) {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not settled within {WAIT:?}: {} customers scored, {reached} at risk or gone, {} cases",
            now.states.len(),
            now.cases.len()
        );
        last = complete.then_some(now);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn outcome(stack: &Stack) -> Outcome {
    let mut scoring = ChurnScoringClient::connect(stack.scoring.endpoint())
        .await
        .expect("scoring client");
    let mut feedback = FeedbackClient::connect(stack.feedback.endpoint())
        .await
        .expect("feedback client");
    let model = scoring
        .get_model(sc::GetModelRequest {})
        .await
        .map(tonic::Response::into_inner)
        .unwrap_or_default();
    let mut states = BTreeMap::new();
    for customer in (0..CUSTOMERS)
        .map(|i| format!("cust-{i}"))
        .chain((0..LOAD_BATCHES * 10).map(|i| format!("new-{i}")))
    {
        if let Ok(r) = scoring
            .get_customer_risk(sc::GetCustomerRiskRequest {
                customer_id: customer.clone(),
                ..Default::default()
            })
            .await
        {
            let risk = r.into_inner().risk.expect("risk");
            states.insert(customer, risk.state);
        }
    }
    let mut stores = BTreeMap::new();
    for s in 0..STORES {
        let store = format!("store-{s}");
        let from = today() - TimeDelta::days(27);
        if let Ok(r) = scoring
            .get_store_defection_stats(sc::GetStoreDefectionStatsRequest {
                store_id: store.clone(),
                from_date: from.to_string(),
                to_date: today().to_string(),
            })
            .await
        {
            let r = r.into_inner();
            stores.insert(store, (r.defected, r.won_back, r.home_customers));
        }
    }
    let mut cases = list_outreach(&mut feedback)
        .await
        .into_iter()
        .map(|c| (c.customer_id, c.defector_state, c.home_store_id, c.status))
        .collect::<Vec<_>>();
    cases.sort();
    Outcome {
        model,
        states,
        stores,
        cases,
    }
}

async fn list_outreach(client: &mut FeedbackClient<Channel>) -> Vec<fb::OutreachCase> {
    let mut cases = Vec::new();
    let mut token = String::new();
    loop {
        let Ok(page) = client
            .list_outreach(fb::ListOutreachRequest {
                page_size: 100,
                page_token: token,
                ..Default::default()
            })
            .await
        else {
            return cases;
        };
        let page = page.into_inner();
        cases.extend(page.cases);
        if page.next_page_token.is_empty() {
            return cases;
        }
        token = page.next_page_token;
    }
}

async fn append(log: &KafkaLog, topic: &str, records: Vec<OutgoingRecord>) {
    for chunk in records.chunks(500) {
        for r in log.append(topic, chunk.to_vec()).await {
            r.expect("append");
        }
    }
}

async fn flush_all(redis: &RedisServer) {
    let status = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port().to_string(), "FLUSHALL"])
        .output()
        .expect("redis-cli");
    assert!(status.status.success(), "FLUSHALL: {status:?}");
}

/// Twelve weeks of history in day order, ending 13 days before today: customer `i` shops
/// every 1, 2, 3 or 5 days at their home store until one of the history's last three
/// days. No absence is due before the history's end; today, those who shopped daily are
/// long gone, and those who came every two or three days overdue.
fn history() -> Vec<OutgoingRecord> {
    let first = today() - TimeDelta::days(94);
    let mut records = Vec::new();
    let mut n = 0;
    for d in 0..82 {
        let day = first + TimeDelta::days(d);
        for i in 0..CUSTOMERS {
            let gap = [1, 2, 3, 5][i % 4];
            let last = 81 - (i as i64 / 4) % 3;
            if d % gap == 0 && d <= last {
                records.push(swipe(
                    &format!("h-{n}"),
                    &format!("cust-{i}"),
                    &format!("store-{}", i % STORES),
                    day,
                    1_000 + (i as i64 % 9) * 250,
                ));
                n += 1;
            }
        }
    }
    records
}

/// The load's batch `b`: ten new customers' first swipes, today.
fn load(b: usize) -> Vec<OutgoingRecord> {
    (0..10)
        .map(|k| {
            let i = b * 10 + k;
            swipe(
                &format!("l-{i}"),
                &format!("new-{i}"),
                &format!("store-{}", i % STORES),
                today(),
                2_000,
            )
        })
        .collect()
}

fn swipe(id: &str, customer: &str, store: &str, day: NaiveDate, minor: i64) -> OutgoingRecord {
    let at: DateTime<Utc> = day.and_hms_opt(10, 0, 0).expect("time").and_utc();
    let swipe = SwipeDraft {
        swipe_id: id.to_owned(),
        customer: CustomerInput::CustomerId(customer.to_owned()),
        store_id: store.to_owned(),
        terminal_id: "till-1".into(),
        employee_id: "emp-1".into(),
        occurred_at: at.to_rfc3339(),
        amount_minor_units: minor,
        currency: "EUR".into(),
        item_count: 1,
    }
    .validate(
        clock()(),
        &SwipeLimits {
            max_age: TimeDelta::days(120),
            ..SwipeLimits::default()
        },
        None,
    )
    .expect("valid swipe");
    OutgoingRecord {
        key: customer.as_bytes().to_vec(),
        timestamp_ms: swipe.occurred_at.timestamp_millis(),
        payload: swipe.into_envelope().to_json(),
        headers: vec![Header::new("content-type", "application/cloudevents+json")],
    }
}
