//! Retries are never conflicts (issue 11): eight concurrent identical calls with one
//! idempotency key, through the gRPC API of the service as its binary builds it, on the
//! embedded log and on a Kafka-protocol broker (Tansu) with a real Redis. Every call
//! answers OK with the version the winning call produced, and the change is in the
//! history once: for a filing, AcknowledgeComplaint and AddComplaintUpdate (with and
//! without an expected version) and RecordOutreach.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use churnguard_domain::envelope::CONTENT_TYPE;
use churnguard_domain::signal::ChurnStateChanged;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_eventlog::{EventLog, Header, OutgoingRecord};
use churnguard_kafka::{KafkaLog, KafkaSettings};
use churnguard_proto::feedback::v1 as pb;
use churnguard_proto::feedback::v1::feedback_client::FeedbackClient;
use churnguard_testkit::{RedisServer, Tansu, init_test_logging};
use churnguard_vault::Kek;
use feedback::config::Settings;
use feedback::{App, Running};
use tonic::transport::Channel;

const PARTITIONS: u32 = 3;
const RACERS: usize = 8;

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
        Kek::from_bytes([3; 32]),
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

/// Runs `RACERS` copies of one call at once, each on its own connection, and returns
/// every answer.
async fn race<T, F, Fut>(endpoint: &str, call: F) -> Vec<Result<T, tonic::Status>>
where
    T: Send + 'static,
    F: Fn(FeedbackClient<Channel>) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>> + Send + 'static,
{
    let mut clients = Vec::with_capacity(RACERS);
    for _ in 0..RACERS {
        clients.push(
            FeedbackClient::connect(endpoint.to_owned())
                .await
                .expect("connect"),
        );
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|c| {
            let barrier = barrier.clone();
            let call = call(c);
            tokio::spawn(async move {
                barrier.wait().await;
                call.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(RACERS);
    for t in tasks {
        out.push(t.await.expect("racer"));
    }
    out
}

/// Every answer OK; the versions they report.
fn versions<T>(answers: Vec<Result<T, tonic::Status>>, version: impl Fn(&T) -> u64) -> Vec<u64> {
    answers
        .into_iter()
        .enumerate()
        .map(|(i, a)| match a {
            Ok(a) => version(&a),
            Err(s) => panic!(
                "racer {i}: a retry must not fail, got {:?} {}",
                s.code(),
                s.message()
            ),
        })
        .collect()
}

async fn history(client: &mut FeedbackClient<Channel>, id: &str) -> Vec<pb::HistoryEntry> {
    client
        .get_complaint(pb::GetComplaintRequest {
            complaint_id: id.into(),
            include_contact: false,
        })
        .await
        .expect("get")
        .into_inner()
        .complaint
        .expect("complaint")
        .history
}

fn summary_version<R>(
    r: &tonic::Response<R>,
    s: impl Fn(&R) -> Option<&pb::ComplaintSummary>,
) -> u64 {
    s(r.get_ref()).expect("summary").version
}

async fn retries_are_never_conflicts<L: EventLog + 'static>(log: Arc<L>) {
    let redis = RedisServer::start();
    let (running, mut client) = start(log.clone(), &redis).await;
    let endpoint = running.endpoint();

    for round in 0..3 {
        // Eight filings with one key: one complaint, filed once.
        let key = format!("file-{round}");
        let filed = race(&endpoint, |mut c| {
            let req = common::filing(&key);
            async move { c.file_complaint(req).await }
        })
        .await;
        let ids: Vec<String> = filed
            .iter()
            .map(|r| match r {
                Ok(r) => r
                    .get_ref()
                    .complaint
                    .as_ref()
                    .expect("summary")
                    .complaint_id
                    .clone(),
                Err(s) => panic!("a retried filing failed: {:?} {}", s.code(), s.message()),
            })
            .collect();
        assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
        let id = ids[0].clone();
        assert_eq!(
            versions(filed, |r| summary_version(r, |r| r.complaint.as_ref())),
            [1; RACERS]
        );

        // Eight acknowledgements with one key, all decided on version 1.
        let acked = race(&endpoint, |mut c| {
            let req = pb::AcknowledgeComplaintRequest {
                complaint_id: id.clone(),
                expected_version: Some(1),
                idempotency_key: format!("ack-{round}"),
                method: pb::ContactMethod::Phone as i32,
                note: "Called, apologised".into(),
            };
            async move { c.acknowledge_complaint(req).await }
        })
        .await;
        assert_eq!(
            versions(acked, |r| summary_version(r, |r| r.complaint.as_ref())),
            [2; RACERS],
            "round {round}: every retry answers with the version the winner produced"
        );

        // Eight updates with one key, with no expected version, then with one.
        for (step, expected) in [(0, None), (1, Some(3))] {
            let updated = race(&endpoint, |mut c| {
                let req = pb::AddComplaintUpdateRequest {
                    complaint_id: id.clone(),
                    expected_version: expected,
                    idempotency_key: format!("upd-{round}-{step}"),
                    note: format!("Checked the rota ({step})"),
                    from_customer: false,
                };
                async move { c.add_complaint_update(req).await }
            })
            .await;
            assert_eq!(
                versions(updated, |r| summary_version(r, |r| r.complaint.as_ref())),
                [3 + step; RACERS],
                "round {round}, update {step}"
            );
        }
        let types: Vec<String> = history(&mut client, &id)
            .await
            .into_iter()
            .map(|h| h.r#type)
            .collect();
        assert_eq!(
            types,
            [
                "churnguard.feedback.complaint_filed.v1",
                "churnguard.feedback.complaint_acknowledged.v1",
                "churnguard.feedback.complaint_updated.v1",
                "churnguard.feedback.complaint_updated.v1",
            ],
            "round {round}: each change once"
        );
    }

    // An outreach case, opened from a churn signal; then eight identical attempts.
    let signal = ChurnStateChanged {
        customer: "cust-r".into(),
        store_id: Some("store-1".into()),
        previous: "active".into(),
        state: "defected".into(),
        rules: vec!["overdue".into()],
        p_alive: 0.1,
        clv: 9_000.0,
        value_at_risk: 3_000.0,
        as_of: NaiveDate::from_ymd_opt(2026, 11, 22).expect("day"),
    }
    .into_envelope();
    for r in log
        .append(
            "churn.signals.v1",
            vec![OutgoingRecord {
                key: b"cust-r".to_vec(),
                payload: signal.to_json(),
                headers: vec![Header::new("content-type", CONTENT_TYPE)],
                timestamp_ms: monday_ten().timestamp_millis(),
            }],
        )
        .await
    {
        r.expect("published");
    }
    let started = Instant::now();
    let case_id = loop {
        let cases = client
            .list_outreach(pb::ListOutreachRequest::default())
            .await
            .expect("list")
            .into_inner()
            .cases;
        if let Some(c) = cases.first() {
            break c.case_id.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no case opened"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (key, expected, outcome, version) in [
        ("try-1", Some(1), pb::OutreachOutcome::Reached, 2),
        ("try-2", None, pb::OutreachOutcome::Lost, 3),
    ] {
        let recorded = race(&endpoint, |mut c| {
            let req = pb::RecordOutreachRequest {
                case_id: case_id.clone(),
                expected_version: expected,
                idempotency_key: key.into(),
                reason: pb::DefectionReason::Price as i32,
                free_text: String::new(),
                outcome: outcome as i32,
                method: pb::ContactMethod::Phone as i32,
            };
            async move { c.record_outreach(req).await }
        })
        .await;
        assert_eq!(
            versions(recorded, |r| r
                .get_ref()
                .outreach_case
                .as_ref()
                .expect("case")
                .version),
            [version; RACERS],
            "{key}"
        );
    }
    let cases = client
        .list_outreach(pb::ListOutreachRequest::default())
        .await
        .expect("list")
        .into_inner()
        .cases;
    assert_eq!(cases.len(), 1);
    let outcomes: Vec<i32> = cases[0].attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [
            pb::OutreachOutcome::Reached as i32,
            pb::OutreachOutcome::Lost as i32
        ],
        "each attempt once"
    );
    running.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_are_never_conflicts_on_the_embedded_log() {
    init_test_logging();
    let dir = tempfile::tempdir().expect("dir");
    retries_are_never_conflicts(Arc::new(EmbeddedLog::open(dir.path()).expect("log"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_are_never_conflicts_on_a_kafka_protocol_broker() {
    init_test_logging();
    let broker = Tansu::start();
    let log = Arc::new(
        KafkaLog::new(KafkaSettings {
            bootstrap_servers: broker.bootstrap(),
            ..KafkaSettings::default()
        })
        .expect("log"),
    );
    retries_are_never_conflicts(log).await;
}
