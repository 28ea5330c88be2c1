//! The event-log contract against a real Kafka-protocol broker (Tansu), including a
//! `kill -9` of the broker.

use std::time::Duration;

use churnguard_eventlog::{EventLog, contract};
use churnguard_kafka::{KafkaLog, KafkaSettings};
use churnguard_testkit::{Tansu, init_test_logging};

fn settings(broker: &Tansu) -> KafkaSettings {
    KafkaSettings {
        bootstrap_servers: broker.bootstrap(),
        delivery_timeout_ms: 10_000,
        ..KafkaSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_log_passes_the_contract() {
    init_test_logging();
    let broker = Tansu::start();
    let log = KafkaLog::new(settings(&broker)).expect("clients");
    contract::run_all(&log, "contract").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_records_survive_kill_9_of_the_broker() {
    init_test_logging();
    let mut broker = Tansu::start();
    let log = KafkaLog::new(settings(&broker)).expect("clients");
    assert_eq!(log.ensure_topic("crash", 3).await.expect("topic"), 3);
    let mut acked = contract::append_numbered(&log, "crash", "before", 2_000, 100).await;
    assert_eq!(acked.len(), 2_000);

    broker.kill();
    assert!(
        log.check().await.is_err(),
        "a dead broker is reported unhealthy"
    );
    broker.restart();

    // The same client recovers once the broker is back.
    // Each attempt uses its own tag: a failed attempt may have written some records.
    let attempt = std::sync::atomic::AtomicUsize::new(0);
    let after =
        churnguard_testkit::eventually(Duration::from_secs(60), "writes after restart", || async {
            let n = attempt.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let a = contract::append_numbered(&log, "crash", &format!("after{n}"), 100, 100).await;
            Some(a).filter(|a| a.len() == 100)
        })
        .await;
    acked.extend(after);
    contract::verify_acknowledged(&log, "crash", 3, &acked).await;
}
