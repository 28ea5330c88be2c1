//! Contact details never reach Redis, the log or the logs in plaintext, and erasure
//! makes them unreadable while the history stays. The service runs as its binary builds
//! it, on the embedded log and a real Redis, with every line `tracing` says captured; a
//! canary phone number and address are searched for in every key and value of Redis,
//! every record of every topic, the log's files and the captured logs.
//!
//! One test in its own file: the capture is the process's global subscriber.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use churnguard_eventlog::EventLog;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_proto::feedback::v1 as pb;
use churnguard_proto::feedback::v1::feedback_client::FeedbackClient;
use churnguard_testkit::{RedisServer, canary};
use churnguard_vault::Kek;
use feedback::App;
use feedback::EVENTS_TOPIC;
use feedback::config::Settings;

mod common;

use common::{customer, filing};

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

/// Installs a capture of everything `tracing` says in this process, at TRACE for every
/// target (the feedback crate, tonic, h2, hyper, redis, ...), with the fields of every
/// span as it opens, as the global subscriber: every thread is captured, the runtime's
/// and plain threads (the embedded log's writer) alike. This file holds one test, so the
/// process is this test's alone.
fn capture_all_tracing() -> Captured {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::NEW)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .expect("the only subscriber of this test process");
    captured
}

/// Every blob is free of the test kit's canaries (the contact's name, phone, its digits
/// alone, email and address; the secret and tokens).
fn assert_no_canary(blobs: &[Vec<u8>], place: &str) {
    for blob in blobs {
        canary::assert_absent(place, blob);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contact_details_never_reach_redis_the_log_or_the_logs_and_are_erased() {
    let captured = capture_all_tracing();
    let dir = tempfile::tempdir().expect("dir");
    let addr = contact_details_run(dir.path()).await;
    let logs = captured.text();
    assert!(!logs.is_empty(), "nothing captured");
    // The capture holds the whole run at the most verbose level: the service's own lines
    // (the address is this run's), from start to stop, and TRACE and DEBUG lines of the
    // libraries under it (h2, tower).
    let serving = format!("feedback API serving addr={addr}");
    for known in [
        serving.as_str(),
        "a customer's contact details were erased",
        "feedback API stopped",
        "feedback stopped",
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
    let log = Arc::new(EmbeddedLog::open(dir).expect("log"));
    let mut settings = Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        shutdown_grace_ms: 2_000,
        ..Settings::default()
    };
    settings.redis.url = redis.url();
    settings.topics.partitions = 3;
    let running = App::build(settings, log.clone(), Kek::from_bytes([7; 32]))
        .await
        .expect("builds")
        .spawn();
    let mut client = FeedbackClient::connect(running.endpoint())
        .await
        .expect("connect");
    let id = client
        .file_complaint(filing("file-canary"))
        .await
        .expect("file")
        .into_inner()
        .complaint
        .expect("summary")
        .complaint_id;
    client
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
    assert_no_canary(&log_contents(log.as_ref(), &topics).await, "the log");
    assert_no_canary(&files_under(dir), "the log's files");

    let erased = client
        .erase_customer_contact(pb::EraseCustomerContactRequest {
            customer: customer("cust-1"),
        })
        .await
        .expect("erase")
        .into_inner();
    assert!(erased.erased);
    assert!(!erased.erased_at.is_empty());
    let again = client
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
    let never = client
        .erase_customer_contact(pb::EraseCustomerContactRequest {
            customer: customer("cust-never"),
        })
        .await
        .expect("erase unknown")
        .into_inner();
    assert!(!never.erased && never.erased_at.is_empty());

    let got = client
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
    assert_no_canary(&log_contents(log.as_ref(), &topics).await, "the log");
    assert_no_canary(&files_under(dir), "the log's files");
    let addr = running.local_addr().to_string();
    running.stop().await.expect("stop");
    addr
}
