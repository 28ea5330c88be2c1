//! The Feedback gRPC API through a real tonic client, over the embedded log (and once on
//! a Kafka-protocol broker, Tansu) with a real Redis: the lifecycle, bad input naming the
//! field and writing nothing, stale versions, and contact details that never reach Redis,
//! any topic of the log or the service's own logs (at TRACE) in plaintext and are erased
//! for good.

mod common;

use std::cell::RefCell;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
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
use feedback::app::{App, Running};
use feedback::projection::Projection;
use feedback::{Complaints, EVENTS_TOPIC};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

const PARTITIONS: u32 = 3;
const PHONE: &str = "+44 7700 900123";
const ADDRESS: &str = "221B Canary Wharf Road";

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
    let running = App::bind("127.0.0.1:0", api)
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

fn customer(id: &str) -> Option<pb::Customer> {
    Some(pb::Customer {
        kind: Some(pb::customer::Kind::CustomerId(id.into())),
    })
}

fn filing(key: &str) -> pb::FileComplaintRequest {
    pb::FileComplaintRequest {
        idempotency_key: key.into(),
        customer: customer("cust-1"),
        contact: Some(pb::ContactDetails {
            name: "Ada Lovelace".into(),
            phone: PHONE.into(),
            email: String::new(),
            address: ADDRESS.into(),
        }),
        store_id: "store-1".into(),
        channel: pb::Channel::Till as i32,
        touchpoint: pb::Touchpoint::Staff as i32,
        severity: pb::Severity::Major as i32,
        description: "Rude at the till, refused the coupon".into(),
        occurred_at: "2026-11-23T08:00:00Z".into(),
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

/// Every byte Redis holds, key by key: strings, hashes, and the DUMP of anything else.
async fn redis_contents(redis: &RedisServer) -> Vec<Vec<u8>> {
    let client = redis::Client::open(redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .expect("keys");
    assert!(!keys.is_empty());
    let mut all = Vec::new();
    for k in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&k)
            .query_async(&mut conn)
            .await
            .expect("type");
        match kind.as_str() {
            "string" => {
                let v: Vec<u8> = redis::cmd("GET")
                    .arg(&k)
                    .query_async(&mut conn)
                    .await
                    .expect("get");
                all.push(v);
            }
            "hash" => {
                let h: Vec<Vec<u8>> = redis::cmd("HGETALL")
                    .arg(&k)
                    .query_async(&mut conn)
                    .await
                    .expect("hgetall");
                all.extend(h);
            }
            _ => {}
        }
        let dump: Vec<u8> = redis::cmd("DUMP")
            .arg(&k)
            .query_async(&mut conn)
            .await
            .expect("dump");
        all.push(dump);
        all.push(k);
    }
    all
}

/// Every topic the embedded log in `dir` holds, with its partition count, as its
/// directory lays them out (`<topic>/topic.json`): `EventLog` has no call listing topics.
fn embedded_topics(dir: &Path) -> Vec<(String, u32)> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).expect("the log directory") {
        let path = entry.expect("an entry").path();
        let Ok(meta) = std::fs::read(path.join("topic.json")) else {
            continue;
        };
        let meta: serde_json::Value = serde_json::from_slice(&meta).expect("topic.json");
        let partitions = meta["partitions"].as_u64().expect("a partition count");
        let name = path.file_name().expect("a name").to_string_lossy();
        all.push((
            name.into_owned(),
            u32::try_from(partitions).expect("partitions"),
        ));
    }
    all.sort();
    all
}

/// Every key, payload, header name and value on every partition of `topics`.
async fn log_contents<L: EventLog>(log: &L, topics: &[(String, u32)]) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    for (topic, partitions) in topics {
        for p in 0..*partitions {
            let end = log.end_offset(topic, p).await.expect("end");
            let mut from = 0;
            while from < end {
                let records = log
                    .read(topic, p, from, 500, Duration::from_millis(500))
                    .await
                    .expect("read");
                for r in &records {
                    all.push(r.key.clone());
                    all.push(r.payload.clone());
                    for hd in &r.headers {
                        all.push(hd.name.as_bytes().to_vec());
                        all.push(hd.value.clone());
                    }
                }
                from = records.last().map_or(from, |r| r.offset + 1);
            }
        }
    }
    assert!(!all.is_empty());
    all
}

/// Every byte of every file under `dir`.
fn files_under(dir: &Path) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a directory") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            all.extend(files_under(&path));
        } else {
            all.push(std::fs::read(&path).expect("a file"));
        }
    }
    all
}

/// A buffer `tracing` output is written to.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

thread_local! {
    static CAPTURING: RefCell<Option<tracing::dispatcher::DefaultGuard>> = const { RefCell::new(None) };
}

/// Runs `run` on a runtime of its own and returns what it made `tracing` say, at TRACE
/// for every target (the feedback crate, tonic, h2, hyper, redis, ...), with the fields
/// of every span as it opens. The capture is the default subscriber of this thread and of
/// every thread of that runtime (workers and the blocking pool), whatever global
/// subscriber `init_test_logging` may have installed; other tests' threads are not
/// captured. Not covered: threads started with `std::thread` (the embedded log's writer
/// thread, which logs only a failed append: its file and error).
fn capturing_tracing<T>(run: impl Future<Output = T>) -> (T, String) {
    let captured = Captured::default();
    let writer = captured.clone();
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::NEW)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    );
    let on_start = dispatch.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .on_thread_start(move || {
            let guard = tracing::dispatcher::set_default(&on_start);
            CAPTURING.with(|g| *g.borrow_mut() = Some(guard));
        })
        .on_thread_stop(|| CAPTURING.with(|g| drop(g.borrow_mut().take())))
        .build()
        .expect("a runtime");
    let out = tracing::dispatcher::with_default(&dispatch, || runtime.block_on(run));
    runtime.shutdown_timeout(Duration::from_secs(10));
    (out, captured.text())
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

fn assert_no_canary(blobs: &[Vec<u8>], place: &str) {
    let digits: String = PHONE.chars().filter(char::is_ascii_digit).collect();
    for needle in [
        PHONE,
        ADDRESS,
        digits.as_str(),
        "Canary Wharf",
        "7700 900123",
    ] {
        assert!(
            !blobs.iter().any(|b| contains(b, needle)),
            "{needle:?} found in {place}"
        );
    }
}

#[test]
fn contact_details_never_reach_redis_the_log_or_the_logs_and_are_erased() {
    init_test_logging();
    let dir = tempfile::tempdir().expect("dir");
    let (addr, logs) = capturing_tracing(contact_details_run(dir.path()));
    assert!(!logs.is_empty(), "nothing captured");
    // The capture holds the whole run at the most verbose level: the service's own lines
    // (its tasks run on the runtime's workers; the address is this run's), and TRACE and
    // DEBUG lines of the libraries under it (h2, tower).
    let serving = format!("feedback API serving addr={addr}");
    for known in [
        serving.as_str(),
        "a customer's contact details were erased",
        "feedback API stopped",
        " TRACE h2::",
        " DEBUG ",
    ] {
        assert!(
            logs.contains(known),
            "{known:?} not in the captured logs ({} bytes)",
            logs.len()
        );
    }
    println!("{} bytes of logs captured", logs.len());
    assert_no_canary(&[logs.into_bytes()], "the logs");
}

/// Files a complaint with the canary contact details, updates and erases them, searching
/// Redis and every topic of the log (records and files) for the canary on the way;
/// returns the address the API served on.
async fn contact_details_run(dir: &Path) -> String {
    let redis = RedisServer::start();
    let mut h = start(Arc::new(EmbeddedLog::open(dir).expect("log")), &redis).await;
    let id = h
        .client
        .file_complaint(filing("file-canary"))
        .await
        .expect("file")
        .into_inner()
        .complaint
        .expect("summary")
        .complaint_id;
    h.client
        .add_complaint_update(pb::AddComplaintUpdateRequest {
            complaint_id: id.clone(),
            expected_version: None,
            idempotency_key: String::new(),
            note: "Left a message".into(),
            from_customer: false,
        })
        .await
        .expect("update");
    assert_no_canary(&redis_contents(&redis).await, "Redis");
    let topics = embedded_topics(dir);
    assert!(
        topics.iter().any(|(t, _)| t == EVENTS_TOPIC),
        "the log's topics: {topics:?}"
    );
    assert_no_canary(&log_contents(h.log.as_ref(), &topics).await, "the log");
    assert_no_canary(&files_under(dir), "the log's files");

    let erased = h
        .client
        .erase_customer_contact(pb::EraseCustomerContactRequest {
            customer: customer("cust-1"),
        })
        .await
        .expect("erase")
        .into_inner();
    assert!(erased.erased);
    assert!(!erased.erased_at.is_empty());
    let again = h
        .client
        .erase_customer_contact(pb::EraseCustomerContactRequest {
            customer: customer("cust-1"),
        })
        .await
        .expect("erase again")
        .into_inner();
    assert_eq!(
        again.erased_at, erased.erased_at,
        "the first erasure's time"
    );
    let never = h
        .client
        .erase_customer_contact(pb::EraseCustomerContactRequest {
            customer: customer("cust-never"),
        })
        .await
        .expect("erase unknown")
        .into_inner();
    assert!(!never.erased && never.erased_at.is_empty());

    let got = h
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
    match got.contact.and_then(|c| c.state) {
        Some(pb::contact_on_record::State::ErasedAt(at)) => assert_eq!(at, erased.erased_at),
        other => panic!("erased expected, got {other:?}"),
    }
    assert_eq!(got.history.len(), 2, "the history stays");
    assert_no_canary(&redis_contents(&redis).await, "Redis");
    let topics = embedded_topics(dir);
    assert_no_canary(&log_contents(h.log.as_ref(), &topics).await, "the log");
    assert_no_canary(&files_under(dir), "the log's files");
    let addr = h.running.local_addr().to_string();
    h.running.stop().await.expect("stop");
    addr
}
