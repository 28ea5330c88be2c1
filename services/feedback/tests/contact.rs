//! Contact details that are on record but cannot be opened (issue 11: `make run` after a
//! restart with a new key): GetComplaint answers the complaint with its contact marked
//! `unavailable`, not INTERNAL, whether the service holds another key-encryption key or
//! the vault's key store lost the customer's key; with the original key they read again.
//! Through the service as its binary builds it, on the embedded log with a real Redis.

mod common;

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_proto::feedback::v1 as pb;
use churnguard_proto::feedback::v1::feedback_client::FeedbackClient;
use churnguard_testkit::{RedisServer, init_test_logging};
use churnguard_vault::Kek;
use feedback::config::Settings;
use feedback::{App, Running};
use tonic::transport::Channel;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0)
        .single()
        .expect("time")
}

async fn start(
    log: Arc<EmbeddedLog>,
    redis: &RedisServer,
    kek: [u8; 32],
) -> (Running, FeedbackClient<Channel>) {
    let mut settings = Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        shutdown_grace_ms: 2_000,
        ..Settings::default()
    };
    settings.redis.url = redis.url();
    settings.topics.partitions = 3;
    let running = App::build_with_clock(settings, log, Kek::from_bytes(kek), Arc::new(now))
        .await
        .expect("builds")
        .spawn();
    let client = FeedbackClient::connect(running.endpoint())
        .await
        .expect("connect");
    (running, client)
}

async fn get(client: &mut FeedbackClient<Channel>, id: &str) -> pb::Complaint {
    client
        .get_complaint(pb::GetComplaintRequest {
            complaint_id: id.into(),
            include_contact: true,
        })
        .await
        .unwrap_or_else(|s| panic!("GetComplaint: {:?} {}", s.code(), s.message()))
        .into_inner()
        .complaint
        .expect("complaint")
}

fn state(c: &pb::Complaint) -> pb::contact_on_record::State {
    c.contact
        .clone()
        .and_then(|c| c.state)
        .expect("contact on record")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreadable_contact_details_are_unavailable_not_an_internal_error() {
    init_test_logging();
    let dir = tempfile::tempdir().expect("dir");
    let log = Arc::new(EmbeddedLog::open(dir.path()).expect("log"));
    let redis = RedisServer::start();

    // Filed under key A.
    let (running, mut c) = start(log.clone(), &redis, [0xA1; 32]).await;
    let id = c
        .file_complaint(common::filing("file-c"))
        .await
        .expect("file")
        .into_inner()
        .complaint
        .expect("summary")
        .complaint_id;
    let filed = get(&mut c, &id).await;
    assert!(
        matches!(state(&filed), pb::contact_on_record::State::Details(d) if d.phone == common::PHONE)
    );
    running.stop().await.expect("stop");

    // Restarted with key B (as `make run` did, generating one at each start): the
    // complaint is answered; its contact is unavailable, and says why.
    let (running, mut c) = start(log.clone(), &redis, [0xB2; 32]).await;
    let got = get(&mut c, &id).await;
    match state(&got) {
        pb::contact_on_record::State::Unavailable(why) => {
            assert!(why.contains("key-encryption key"), "{why}");
            assert!(!why.contains(common::PHONE));
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert_eq!(got.history.len(), filed.history.len());
    assert_eq!(got.summary, filed.summary);
    running.stop().await.expect("stop");

    // Back on key A: nothing was lost.
    let (running, mut c) = start(log.clone(), &redis, [0xA1; 32]).await;
    assert!(matches!(
        state(&get(&mut c, &id).await),
        pb::contact_on_record::State::Details(d) if d.phone == common::PHONE
    ));

    // The key store lost the customer's key (an emptied vault): unavailable too.
    let mut conn = redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let _: () = redis::cmd("DEL")
        .arg(churnguard_vault::key_key("cust-1"))
        .query_async(&mut conn)
        .await
        .expect("del");
    match state(&get(&mut c, &id).await) {
        pb::contact_on_record::State::Unavailable(why) => {
            assert!(why.contains("key store"), "{why}");
        }
        other => panic!("expected unavailable, got {other:?}"),
    }

    // An erasure is still an erasure.
    let mut other = common::filing("file-d");
    other.customer = common::customer("cust-2");
    let id = c
        .file_complaint(other)
        .await
        .expect("file")
        .into_inner()
        .complaint
        .expect("summary")
        .complaint_id;
    let erased = c
        .erase_customer_contact(pb::EraseCustomerContactRequest {
            customer: common::customer("cust-2"),
        })
        .await
        .expect("erase")
        .into_inner();
    assert!(erased.erased);
    assert!(matches!(
        state(&get(&mut c, &id).await),
        pb::contact_on_record::State::ErasedAt(at) if !at.is_empty()
    ));
    running.stop().await.expect("stop");
}
