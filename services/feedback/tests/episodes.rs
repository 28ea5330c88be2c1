//! One outreach case per customer and episode (issue 11), through the service as its
//! binary builds it, on the embedded log and on a Kafka-protocol broker (Tansu) with a
//! real Redis. Churn scoring that lost its Redis re-emits a customer's transitions, with
//! other event ids when they land on other days: an at-risk episode that has a case gets
//! no second one; a defection during it makes the open case a defection case with the
//! shorter deadline; the customer's return ends the episode, and only a move into risk
//! after it opens a new case. Replaying the events topic into an empty Redis rebuilds the
//! same read model.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use churnguard_domain::envelope::{CONTENT_TYPE, Envelope};
use churnguard_domain::signal::ChurnStateChanged;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_eventlog::{EventLog, Header, OutgoingRecord};
use churnguard_kafka::{KafkaLog, KafkaSettings};
use churnguard_proto::feedback::v1 as pb;
use churnguard_proto::feedback::v1::feedback_client::FeedbackClient;
use churnguard_redis::RedisConnection;
use churnguard_testkit::{RedisServer, Tansu, init_test_logging};
use churnguard_vault::Kek;
use feedback::EVENTS_TOPIC;
use feedback::config::Settings;
use feedback::outreach::OPENER;
use feedback::projection::Projection;
use feedback::{App, Running};
use tonic::transport::Channel;

const PARTITIONS: u32 = 3;
const SIGNALS: &str = "churn.signals.v1";
/// The read model, with the per-customer case index.
const READ_MODEL: &[&str] = &["fc:*", "fl:*", "fu:*", "fo:*", "fol:*", "fr:*", "fuo:*"];

/// Monday 23 November 2026, 10:00 in London (UTC in winter); the default calendar is
/// open Monday to Saturday 09:00-18:00.
fn monday_ten() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0)
        .single()
        .expect("time")
}

async fn start<L: EventLog + 'static>(
    log: Arc<L>,
    redis: &RedisServer,
) -> (Running, FeedbackClient<Channel>) {
    let mut settings = Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        timer_interval_ms: 200,
        shutdown_grace_ms: 2_000,
        ..Settings::default()
    };
    settings.redis.url = redis.url();
    settings.topics.partitions = PARTITIONS;
    let running = App::build_with_clock(
        settings,
        log,
        Kek::from_bytes([4; 32]),
        Arc::new(monday_ten),
    )
    .await
    .expect("builds")
    .spawn();
    let client = FeedbackClient::connect(running.endpoint())
        .await
        .expect("connect");
    (running, client)
}

/// A signal of `customer`'s move from `previous` to `state`, assessed on November `day`.
fn signal(
    customer: &str,
    previous: &str,
    state: &str,
    day: u32,
    value: f64,
) -> Envelope<ChurnStateChanged> {
    ChurnStateChanged {
        customer: customer.into(),
        store_id: Some("store-1".into()),
        previous: previous.into(),
        state: state.into(),
        rules: vec!["overdue".into()],
        p_alive: 0.2,
        clv: value * 3.0,
        value_at_risk: value,
        as_of: NaiveDate::from_ymd_opt(2026, 11, day).expect("day"),
    }
    .into_envelope()
}

/// Publishes signals as churn scoring does (keyed by customer) and waits until the
/// opener has read every signal on the topic.
async fn deliver<L: EventLog>(
    log: &L,
    redis: &RedisServer,
    signals: &[&Envelope<ChurnStateChanged>],
) {
    let records = signals
        .iter()
        .map(|s| OutgoingRecord {
            key: s.data.customer.clone().into_bytes(),
            payload: s.to_json(),
            headers: vec![Header::new("content-type", CONTENT_TYPE)],
            timestamp_ms: monday_ten().timestamp_millis(),
        })
        .collect();
    if !signals.is_empty() {
        for r in log.append(SIGNALS, records).await {
            r.expect("published");
        }
    }
    let mut total = 0;
    for p in 0..PARTITIONS {
        total += log.end_offset(SIGNALS, p).await.expect("end");
    }
    let mut conn = redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let started = Instant::now();
    loop {
        let mut read = 0;
        for p in 0..PARTITIONS {
            let k: Option<u64> = redis::cmd("GET")
                .arg(churnguard_redis::checkpoint_key(OPENER, SIGNALS, p))
                .query_async(&mut conn)
                .await
                .expect("get");
            read += k.unwrap_or(0);
        }
        if read == total {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the opener read {read} of {total} signals"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn cases_of(client: &mut FeedbackClient<Channel>, customer: &str) -> Vec<pb::OutreachCase> {
    let mut cases: Vec<pb::OutreachCase> = client
        .list_outreach(pb::ListOutreachRequest::default())
        .await
        .expect("list")
        .into_inner()
        .cases
        .into_iter()
        .filter(|c| c.customer_id == customer)
        .collect();
    cases.sort_by(|a, b| a.case_id.cmp(&b.case_id));
    cases
}

async fn ends<L: EventLog>(log: &L) -> Vec<u64> {
    let mut all = Vec::new();
    for p in 0..PARTITIONS {
        all.push(log.end_offset(EVENTS_TOPIC, p).await.expect("end"));
    }
    all
}

fn case_of(s: &Envelope<ChurnStateChanged>) -> String {
    format!("o-{}", s.id)
}

async fn one_case_per_episode<L: EventLog + 'static>(log: Arc<L>) {
    let redis = RedisServer::start();
    let (running, mut client) = start(log.clone(), &redis).await;
    let c = &mut client;

    // cust-x slips on the 20th: one case, due after 27 business hours.
    let at_risk = signal("cust-x", "active", "at_risk", 20, 10_000.0);
    deliver(log.as_ref(), &redis, &[&at_risk]).await;
    let cases = cases_of(c, "cust-x").await;
    assert_eq!(cases.len(), 1);
    let first = case_of(&at_risk);
    assert_eq!(cases[0].case_id, first);
    assert_eq!(cases[0].defector_state, pb::DefectorState::AtRisk as i32);
    assert_eq!(cases[0].due_at, "2026-11-26T10:00:00Z");

    // Churn scoring rebuilt its state and re-emits the move, assessed a day later (so
    // with another event id), and again as it was: no second case, nothing appended.
    let written = ends(log.as_ref()).await;
    let re_emitted = signal("cust-x", "active", "at_risk", 21, 10_500.0);
    assert_ne!(re_emitted.id, at_risk.id);
    deliver(log.as_ref(), &redis, &[&re_emitted, &at_risk]).await;
    assert_eq!(
        cases_of(c, "cust-x").await.len(),
        1,
        "a re-emitted at-risk signal opened a second case for the episode"
    );
    assert_eq!(ends(log.as_ref()).await, written, "nothing appended");

    // A defection while the case is open makes it a defection case due sooner (9
    // business hours from Monday 10:00), not a second case.
    let defected = signal("cust-x", "at_risk", "defected", 22, 20_000.0);
    deliver(log.as_ref(), &redis, &[&defected]).await;
    let cases = cases_of(c, "cust-x").await;
    assert_eq!(cases.len(), 1, "{cases:?}");
    assert_eq!(
        (
            cases[0].case_id.as_str(),
            cases[0].version,
            cases[0].defector_state,
            cases[0].due_at.as_str(),
            cases[0].value_at_risk_minor_units,
        ),
        (
            first.as_str(),
            2,
            pb::DefectorState::Defected as i32,
            "2026-11-24T10:00:00Z",
            20_000
        )
    );

    // The customer comes back: the episode ends and the case closes.
    let back = signal("cust-x", "defected", "won_back", 24, 0.0);
    deliver(log.as_ref(), &redis, &[&back]).await;
    let cases = cases_of(c, "cust-x").await;
    assert_eq!(cases.len(), 1);
    assert_eq!(
        (
            cases[0].status,
            cases[0].customer_returned_on.as_str(),
            cases[0].overdue
        ),
        (pb::OutreachStatus::Closed as i32, "2026-11-24", false)
    );

    // The whole history re-emitted once more, on other days: nothing changes.
    let written = ends(log.as_ref()).await;
    deliver(
        log.as_ref(),
        &redis,
        &[
            &signal("cust-x", "active", "at_risk", 19, 9_000.0),
            &signal("cust-x", "at_risk", "defected", 23, 19_000.0),
            &signal("cust-x", "defected", "won_back", 23, 0.0),
        ],
    )
    .await;
    assert_eq!(ends(log.as_ref()).await, written, "nothing appended");
    assert_eq!(cases_of(c, "cust-x").await.len(), 1);

    // A new episode after the win-back opens a new case, and only one.
    let again = signal("cust-x", "won_back", "at_risk", 27, 8_000.0);
    let again_re_emitted = signal("cust-x", "active", "at_risk", 28, 8_000.0);
    deliver(log.as_ref(), &redis, &[&again, &again_re_emitted]).await;
    let cases = cases_of(c, "cust-x").await;
    let mut expected = vec![first.clone(), case_of(&again)];
    expected.sort();
    assert_eq!(
        cases.iter().map(|c| c.case_id.clone()).collect::<Vec<_>>(),
        expected
    );
    let second = cases
        .iter()
        .find(|x| x.case_id == case_of(&again))
        .expect("the new case");
    assert_eq!(
        (second.status, second.defector_state, second.version),
        (
            pb::OutreachStatus::Open as i32,
            pb::DefectorState::AtRisk as i32,
            1
        )
    );

    // Other customers are on their own: one at-risk case each, however often re-emitted.
    let y1 = signal("cust-y", "active", "at_risk", 20, 1_000.0);
    let y2 = signal("cust-y", "active", "at_risk", 22, 1_000.0);
    let z = signal("cust-z", "active", "defected", 20, 1_000.0);
    deliver(log.as_ref(), &redis, &[&y1, &z, &y2, &y1]).await;
    assert_eq!(cases_of(c, "cust-y").await.len(), 1);
    assert_eq!(cases_of(c, "cust-z").await.len(), 1);

    // Replay: the log into an empty Redis rebuilds the same read model.
    running.stop().await.expect("stop");
    let model = common::hashes(&redis, READ_MODEL).await;
    assert!(
        model.keys().any(|k| k.starts_with("fuo:")),
        "{:?}",
        model.keys()
    );
    common::flush(&redis).await;
    let projection = Projection::new(
        RedisConnection::single(&redis.url()).await.expect("redis"),
        EVENTS_TOPIC,
        PARTITIONS,
    );
    for p in 0..PARTITIONS {
        projection
            .catch_up(log.as_ref(), p, None)
            .await
            .expect("replay");
    }
    assert_eq!(common::hashes(&redis, READ_MODEL).await, model);

    // And a service on the rebuilt read model, reading every signal again from the
    // start (its checkpoints went with the flush), opens nothing more.
    let written = ends(log.as_ref()).await;
    let (running, mut client) = start(log.clone(), &redis).await;
    deliver(log.as_ref(), &redis, &[]).await;
    assert_eq!(ends(log.as_ref()).await, written, "nothing appended");
    assert_eq!(cases_of(&mut client, "cust-x").await.len(), 2);
    running.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_case_per_episode_on_the_embedded_log() {
    init_test_logging();
    let dir = tempfile::tempdir().expect("dir");
    one_case_per_episode(Arc::new(EmbeddedLog::open(dir.path()).expect("log"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_case_per_episode_on_a_kafka_protocol_broker() {
    init_test_logging();
    let broker = Tansu::start();
    let log = Arc::new(
        KafkaLog::new(KafkaSettings {
            bootstrap_servers: broker.bootstrap(),
            ..KafkaSettings::default()
        })
        .expect("log"),
    );
    one_case_per_episode(log).await;
}
