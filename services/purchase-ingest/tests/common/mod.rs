//! What the purchase-ingest test files share: the service's settings and start-up, a
//! client, a valid swipe, and reading the purchases topic back.
#![allow(dead_code)] // each test file uses its own part

use std::sync::Arc;

use chrono::{DateTime, Utc};
use churnguard_config::{AuthSettings, JwtSettings};
use churnguard_eventlog::{EventLog, Record, contract};
use churnguard_kafka::KafkaSettings;
use churnguard_proto::ingest::v1 as pb;
use churnguard_proto::ingest::v1::purchase_ingest_client::PurchaseIngestClient;
use churnguard_testkit::auth::{AUDIENCE, ISSUER, TestIssuer};
use churnguard_testkit::{Tansu, canary, init_test_logging};
use purchase_ingest::config::Backend;
use purchase_ingest::{App, Running, Settings};
use serde_json::Value;
use tonic::transport::Channel;

/// The topic purchase-ingest publishes swipes on.
pub const TOPIC: &str = "purchases.v1";
/// The purchases topic's partitions in these tests.
pub const PARTITIONS: u32 = 4;

/// The service's clock: 22 November 2026, 12:00 UTC.
pub fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
        .expect("fixed time")
        .to_utc()
}

/// Settings for a test instance on a free port, with short timeouts.
pub fn settings(backend: Backend) -> Settings {
    let mut s = Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        publish_timeout_ms: 4_000,
        health_probe_interval_ms: 200,
        shutdown_grace_ms: 5_000,
        ..Settings::default()
    };
    s.topics.partitions = PARTITIONS;
    s.log.backend = backend;
    s
}

/// A producer or reader for `broker`, with short timeouts.
pub fn kafka_settings(broker: &Tansu) -> KafkaSettings {
    KafkaSettings {
        bootstrap_servers: broker.bootstrap(),
        delivery_timeout_ms: 2_000,
        queue_timeout_ms: 500,
        request_timeout_ms: 2_000,
        ..KafkaSettings::default()
    }
}

/// A PurchaseIngest client for `app`.
pub async fn client(app: &Running) -> PurchaseIngestClient<Channel> {
    PurchaseIngestClient::connect(app.endpoint())
        .await
        .expect("connect to purchase-ingest")
}

/// A channel to `app`, for the health and reflection clients.
pub async fn channel(app: &Running) -> Channel {
    Channel::from_shared(app.endpoint())
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

/// Starts purchase-ingest on `log` with the fixed clock.
pub async fn spawn_app<L: EventLog>(settings: Settings, log: L) -> Running {
    init_test_logging();
    App::build_with_clock(settings, log, Arc::new(now))
        .await
        .expect("build purchase-ingest")
        .spawn()
}

/// A valid swipe `id` of `customer`.
pub fn swipe(id: &str, customer: &str) -> pb::Swipe {
    pb::Swipe {
        swipe_id: id.into(),
        customer: Some(pb::swipe::Customer::CustomerId(customer.into())),
        store_id: "store-1".into(),
        terminal_id: "till-1".into(),
        employee_id: "emp-1".into(),
        occurred_at: "2026-11-22T10:15:00+01:00".into(),
        amount: Some(pb::Amount {
            minor_units: 1250,
            currency: "EUR".into(),
        }),
        item_count: 3,
    }
}

/// A RecordSwipe request for `s`.
pub fn request(s: pb::Swipe) -> pb::RecordSwipeRequest {
    pb::RecordSwipeRequest {
        swipe: Some(s),
        historical: false,
    }
}

/// Every record of the topic, by partition.
pub async fn read_topic<L: EventLog>(log: &L) -> Vec<Record> {
    let mut out = Vec::new();
    for p in 0..PARTITIONS {
        let end = log.end_offset(TOPIC, p).await.expect("end offset");
        out.extend(contract::read_all(log, TOPIC, p, end).await);
    }
    out
}

/// How many records the topic holds, over all partitions.
pub async fn total_records<L: EventLog>(log: &L) -> u64 {
    let mut n = 0;
    for p in 0..PARTITIONS {
        n += log.end_offset(TOPIC, p).await.expect("end offset");
    }
    n
}

/// The CloudEvents envelope a record carries.
pub fn envelope(r: &Record) -> Value {
    serde_json::from_slice(&r.payload).expect("payload is JSON")
}

/// Identities required: store-1's gateway by its canary token, and JWTs of `issuer`.
pub fn secured(issuer: &TestIssuer) -> AuthSettings {
    AuthSettings {
        required: true,
        store_tokens_file: issuer
            .store_tokens_file(&[("store-1", &canary::store_token("store-1"))]),
        jwt: JwtSettings {
            algorithm: "HS256".into(),
            key_file: issuer.key_file(),
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
        },
    }
}
