//! The main job end to end: a simulated chain of stores streams through purchase-ingest
//! into a real Kafka-protocol broker; every acknowledged swipe is in the topic once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use churnguard_eventlog::{EventLog, contract};
use churnguard_kafka::{KafkaLog, KafkaSettings};
use churnguard_testkit::{Tansu, init_test_logging};
use purchase_ingest::config::Backend;
use purchase_ingest::simulator::{self, SimStats, SimulatorConfig};
use purchase_ingest::{App, Settings};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread")]
async fn a_simulated_chain_streams_through_ingest_into_kafka() {
    init_test_logging();
    let broker = Tansu::start();
    let kafka = || KafkaSettings {
        bootstrap_servers: broker.bootstrap(),
        ..KafkaSettings::default()
    };
    let mut settings = Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        ..Settings::default()
    };
    settings.log.backend = Backend::Kafka;
    let partitions = settings.topics.partitions;
    let app = App::build(settings, KafkaLog::new(kafka()).expect("log"))
        .await
        .expect("build")
        .spawn();

    let stats = Arc::new(SimStats::default());
    let stop_sim = CancellationToken::new();
    let cfg = SimulatorConfig {
        stores: 4,
        swipes_per_sec_per_store: 200,
        batch: 20,
        bad_every: 50,
        ..SimulatorConfig::default()
    };
    let sim = tokio::spawn(simulator::run(
        app.endpoint(),
        cfg,
        stats.clone(),
        stop_sim.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop_sim.cancel();
    sim.await.expect("simulator");
    app.stop().await.expect("clean shutdown");

    let (accepted, invalid, failed) = stats.snapshot();
    assert!(accepted > 500, "the chain got swipes through: {accepted}");
    assert!(invalid > 0, "malformed swipes were refused");
    assert_eq!(failed, 0);

    let reader = KafkaLog::new(kafka()).expect("reader");
    let mut ids = HashSet::new();
    let mut records = 0u64;
    for p in 0..partitions {
        let end = reader.end_offset("purchases.v1", p).await.expect("end");
        for r in contract::read_all(&reader, "purchases.v1", p, end).await {
            let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("json");
            assert_eq!(v["data"]["currency"], serde_json::Value::Null);
            assert_eq!(
                v["data"]["amount"]["currency"], "EUR",
                "no malformed swipe was written"
            );
            ids.insert(v["id"].as_str().unwrap_or_default().to_owned());
            records += 1;
        }
    }
    assert_eq!(
        records, accepted,
        "every acknowledged swipe is in the topic, and nothing else"
    );
    assert_eq!(ids.len() as u64, records, "each event once");
}
