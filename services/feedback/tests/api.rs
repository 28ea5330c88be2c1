//! The Feedback gRPC API through a real tonic client, over the embedded log (and once on
//! a Kafka-protocol broker, Tansu) with a real Redis: the lifecycle, bad input naming the
//! field and writing nothing, and stale versions. That contact details never reach Redis,
//! the log or the logs in plaintext is `tests/canary.rs`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use churnguard_domain::feedback::complaint::Context;
use churnguard_eventlog::EventLog;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_kafka::{KafkaLog, KafkaSettings};
use churnguard_proto::feedback::v1 as pb;
use churnguard_proto::feedback::v1::feedback_client::FeedbackClient;
use churnguard_redis::RedisConnection;
use churnguard_testkit::{RedisServer, Tansu, init_test_logging};
use churnguard_vault::{Kek, RedisKeyStore, Vault};
use feedback::api::FeedbackApi;
use feedback::app::{ApiServer, Running};
use feedback::projection::Projection;
use feedback::{Complaints, EVENTS_TOPIC};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

const PARTITIONS: u32 = 3;
use common::{ADDRESS, PHONE, filing};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0)
        .single()
        .expect("time")
}

struct Harness<L> {
    log: Arc<L>,
    running: Running,
    client: FeedbackClient<Channel>,
}

async fn start<L: EventLog + 'static>(log: Arc<L>, redis: &RedisServer) -> Harness<L> {
    log.ensure_topic(EVENTS_TOPIC, PARTITIONS)
        .await
        .expect("topic");
    let conn = RedisConnection::single(&redis.url()).await.expect("redis");
    let complaints = Arc::new(Complaints::new(
        log.clone(),
        Projection::new(conn.clone(), EVENTS_TOPIC, PARTITIONS),
        Context::default(),
        Arc::new(now),
    ));
    let vault = Arc::new(Vault::new(
        Kek::from_bytes([7; 32]),
        RedisKeyStore::new(conn.clone()),
    ));
    let api = FeedbackApi::new(complaints, vault, conn);
    let running = ApiServer::bind("127.0.0.1:0", api)
        .await
        .expect("bind")
        .with_shutdown_grace(Duration::from_secs(2))
        .spawn();
    let client = FeedbackClient::connect(running.endpoint())
        .await
        .expect("connect");
    Harness {
        log,
        running,
        client,
    }
}

/// The end offsets of every partition of the events topic.
async fn ends<L: EventLog>(log: &L) -> Vec<u64> {
    let mut all = Vec::new();
    for p in 0..PARTITIONS {
        all.push(log.end_offset(EVENTS_TOPIC, p).await.expect("end"));
    }
    all
}

async fn lifecycle<L: EventLog + 'static>(h: &mut Harness<L>) {
    let filed = h
        .client
        .file_complaint(filing("file-1"))
        .await
        .expect("file")
        .into_inner()
        .complaint
        .expect("summary");
    assert_eq!(filed.version, 1);
    assert_eq!(filed.status, pb::ComplaintStatus::Open as i32);
    assert_eq!(filed.severity, pb::Severity::Major as i32);
    assert_eq!(filed.level, pb::Level::StoreManager as i32);
    let id = filed.complaint_id.clone();

    // A retried filing lands on the same complaint and appends nothing.
    let before = ends(h.log.as_ref()).await;
    let again = h
        .client
        .file_complaint(filing("file-1"))
        .await
        .expect("retried filing")
        .into_inner()
        .complaint
        .expect("summary");
    assert_eq!(
        (again.complaint_id.as_str(), again.version),
        (id.as_str(), 1)
    );
    assert_eq!(ends(h.log.as_ref()).await, before);

    let got = h
        .client
        .get_complaint(pb::GetComplaintRequest {
            complaint_id: id.clone(),
            include_contact: false,
        })
        .await
        .expect("get")
        .into_inner()
        .complaint
        .expect("complaint");
    assert_eq!(got.history.len(), 1);
    assert!(got.contact.is_none(), "contact only when asked");

    let acked = h
        .client
        .acknowledge_complaint(pb::AcknowledgeComplaintRequest {
            complaint_id: id.clone(),
            expected_version: Some(1),
            idempotency_key: "ack-1".into(),
            method: pb::ContactMethod::Phone as i32,
            note: "Called, apologised".into(),
        })
        .await
        .expect("acknowledge")
        .into_inner()
        .complaint
        .expect("summary");
    assert_eq!(acked.status, pb::ComplaintStatus::Acknowledged as i32);
    let updated = h
        .client
        .add_complaint_update(pb::AddComplaintUpdateRequest {
            complaint_id: id.clone(),
            expected_version: Some(2),
            idempotency_key: "upd-1".into(),
            note: "Checked the rota, spoke to the staff member".into(),
            from_customer: false,
        })
        .await
        .expect("update")
        .into_inner()
        .complaint
        .expect("summary");
    assert_eq!(updated.version, 3);
    let resolved = h
        .client
        .resolve_complaint(pb::ResolveComplaintRequest {
            complaint_id: id.clone(),
            expected_version: Some(3),
            idempotency_key: "res-1".into(),
            remedies: vec![pb::Remedy::Apology as i32, pb::Remedy::Compensation as i32],
            summary: "Apologised and sent a voucher".into(),
        })
        .await
        .expect("resolve")
        .into_inner()
        .complaint
        .expect("summary");
    assert_eq!(resolved.status, pb::ComplaintStatus::Resolved as i32);
    h.client
        .record_satisfaction(pb::RecordSatisfactionRequest {
            complaint_id: id.clone(),
            expected_version: None,
            idempotency_key: "sat-1".into(),
            satisfaction: Some(pb::Satisfaction {
                score: 4,
                ownership: 5,
                felt_valued: 4,
                speed: 3,
                sincere_regret: 5,
                reason: String::new(),
            }),
        })
        .await
        .expect("satisfaction");
    let rooted = h
        .client
        .record_root_cause(pb::RecordRootCauseRequest {
            complaint_id: id.clone(),
            expected_version: None,
            idempotency_key: "rc-1".into(),
            root_cause: Some(pb::RootCause {
                whys: vec![
                    "The coupon was refused".into(),
                    "The till did not know the promotion".into(),
                ],
                category: pb::Touchpoint::Staff as i32,
                corrective_action: "Promotions are loaded the night before".into(),
            }),
        })
        .await
        .expect("root cause")
        .into_inner()
        .complaint
        .expect("summary");
    assert_eq!(rooted.version, 6);

    let full = h
        .client
        .get_complaint(pb::GetComplaintRequest {
            complaint_id: id.clone(),
            include_contact: true,
        })
        .await
        .expect("get")
        .into_inner()
        .complaint
        .expect("complaint");
    let types: Vec<_> = full.history.iter().map(|e| e.r#type.as_str()).collect();
    assert_eq!(
        types,
        [
            "churnguard.feedback.complaint_filed.v1",
            "churnguard.feedback.complaint_acknowledged.v1",
            "churnguard.feedback.complaint_updated.v1",
            "churnguard.feedback.complaint_resolved.v1",
            "churnguard.feedback.satisfaction_recorded.v1",
            "churnguard.feedback.root_cause_recorded.v1",
        ]
    );
    let versions: Vec<_> = full.history.iter().map(|e| e.version).collect();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6]);
    assert_eq!(full.summary.as_ref().map(|s| s.version), Some(6));
    let resolution = full.resolution.expect("resolution");
    assert_eq!(resolution.satisfaction.map(|s| s.score), Some(4));
    assert_eq!(full.root_cause.map(|r| r.whys.len()), Some(2), "root cause");
    assert_eq!(
        full.first_response.map(|f| f.method),
        Some(pb::ContactMethod::Phone as i32)
    );
    match full.contact.and_then(|c| c.state) {
        Some(pb::contact_on_record::State::Details(d)) => {
            assert_eq!((d.phone.as_str(), d.address.as_str()), (PHONE, ADDRESS));
        }
        other => panic!("contact details expected, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lifecycle_on_the_embedded_log() {
    init_test_logging();
    let dir = tempfile::tempdir().expect("dir");
    let redis = RedisServer::start();
    let mut h = start(
        Arc::new(EmbeddedLog::open(dir.path()).expect("log")),
        &redis,
    )
    .await;
    lifecycle(&mut h).await;
    h.running.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lifecycle_on_a_kafka_protocol_broker() {
    init_test_logging();
    let broker = Tansu::start();
    let log = Arc::new(
        KafkaLog::new(KafkaSettings {
            bootstrap_servers: broker.bootstrap(),
            ..KafkaSettings::default()
        })
        .expect("log"),
    );
    let redis = RedisServer::start();
    let mut h = start(log, &redis).await;
    lifecycle(&mut h).await;
    h.running.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_names_the_field_and_writes_nothing() {
    init_test_logging();
    let dir = tempfile::tempdir().expect("dir");
    let redis = RedisServer::start();
    let mut h = start(
        Arc::new(EmbeddedLog::open(dir.path()).expect("log")),
        &redis,
    )
    .await;
    let id = h
        .client
        .file_complaint(filing("file-ok"))
        .await
        .expect("file")
        .into_inner()
        .complaint
        .expect("summary")
        .complaint_id;
    let before = ends(h.log.as_ref()).await;

    let mut bad_phone = filing("file-bad-phone");
    if let Some(c) = bad_phone.contact.as_mut() {
        c.phone = "call me maybe".into();
    }
    let s = h.client.file_complaint(bad_phone).await.expect_err("bad");
    assert_eq!(common::bad_fields(&s), ["contact.phone"]);

    let mut unreachable = filing("file-unreachable");
    unreachable.contact = Some(pb::ContactDetails {
        name: "Ada".into(),
        ..Default::default()
    });
    let s = h.client.file_complaint(unreachable).await.expect_err("bad");
    assert_eq!(common::bad_fields(&s), ["contact"]);

    let mut no_contact = filing("file-no-contact");
    no_contact.contact = None;
    let s = h.client.file_complaint(no_contact).await.expect_err("bad");
    assert_eq!(common::bad_fields(&s), ["contact"]);

    let mut many = filing("file-many");
    many.occurred_at = "yesterday at noon".into();
    many.severity = pb::Severity::Unspecified as i32;
    many.customer = None;
    many.store_id = String::new();
    let s = h.client.file_complaint(many).await.expect_err("bad");
    let mut fields = common::bad_fields(&s);
    fields.sort();
    assert_eq!(fields, ["customer", "occurred_at", "severity", "store_id"]);

    let s = h
        .client
        .acknowledge_complaint(pb::AcknowledgeComplaintRequest {
            complaint_id: id.clone(),
            expected_version: Some(1),
            idempotency_key: String::new(),
            method: pb::ContactMethod::Letter as i32,
            note: String::new(),
        })
        .await
        .expect_err("a letter is no first response to a major complaint");
    assert_eq!(common::bad_fields(&s), ["method"]);

    let s = h
        .client
        .record_satisfaction(pb::RecordSatisfactionRequest {
            complaint_id: id.clone(),
            expected_version: None,
            idempotency_key: String::new(),
            satisfaction: None,
        })
        .await
        .expect_err("missing message");
    assert_eq!(common::bad_fields(&s), ["satisfaction"]);

    let s = h
        .client
        .add_complaint_update(pb::AddComplaintUpdateRequest {
            complaint_id: "not an id!".into(),
            expected_version: None,
            idempotency_key: String::new(),
            note: "hello".into(),
            from_customer: false,
        })
        .await
        .expect_err("bad id");
    assert_eq!(common::bad_fields(&s), ["complaint_id"]);

    let s = h
        .client
        .resolve_complaint(pb::ResolveComplaintRequest {
            complaint_id: id.clone(),
            expected_version: None,
            idempotency_key: String::new(),
            remedies: vec![],
            summary: String::new(),
        })
        .await
        .expect_err("nothing resolved");
    let mut fields = common::bad_fields(&s);
    fields.sort();
    assert_eq!(fields, ["remedies", "summary"]);

    assert_eq!(ends(h.log.as_ref()).await, before, "nothing appended");

    // Unknown complaints.
    let s = h
        .client
        .get_complaint(pb::GetComplaintRequest {
            complaint_id: "no-such".into(),
            include_contact: false,
        })
        .await
        .expect_err("missing");
    assert_eq!(s.code(), Code::NotFound);
    h.running.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_expected_version_is_aborted() {
    init_test_logging();
    let dir = tempfile::tempdir().expect("dir");
    let redis = RedisServer::start();
    let mut h = start(
        Arc::new(EmbeddedLog::open(dir.path()).expect("log")),
        &redis,
    )
    .await;
    let id = h
        .client
        .file_complaint(filing("file-v"))
        .await
        .expect("file")
        .into_inner()
        .complaint
        .expect("summary")
        .complaint_id;
    h.client
        .add_complaint_update(pb::AddComplaintUpdateRequest {
            complaint_id: id.clone(),
            expected_version: Some(1),
            idempotency_key: "u1".into(),
            note: "first".into(),
            from_customer: false,
        })
        .await
        .expect("update");
    let before = ends(h.log.as_ref()).await;
    let s = h
        .client
        .add_complaint_update(pb::AddComplaintUpdateRequest {
            complaint_id: id.clone(),
            expected_version: Some(1),
            idempotency_key: "u2".into(),
            note: "stale".into(),
            from_customer: false,
        })
        .await
        .expect_err("stale");
    assert_eq!(s.code(), Code::Aborted);
    let info = s.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "VERSION_CONFLICT");
    assert_eq!(
        info.metadata.get("expected_version").map(String::as_str),
        Some("1")
    );
    assert_eq!(
        info.metadata.get("current_version").map(String::as_str),
        Some("2")
    );
    assert_eq!(ends(h.log.as_ref()).await, before);
    // A retry of the call that succeeded is no conflict.
    let retried = h
        .client
        .add_complaint_update(pb::AddComplaintUpdateRequest {
            complaint_id: id.clone(),
            expected_version: Some(1),
            idempotency_key: "u1".into(),
            note: "first".into(),
            from_customer: false,
        })
        .await
        .expect("a retry with the same key")
        .into_inner()
        .complaint
        .expect("summary");
    assert_eq!(retried.version, 2);
    h.running.stop().await.expect("stop");
}
