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

/// A read from inside the partition's last record batch gets the records from there on,
/// from a new reader, as a restarted consumer would read (on the durable, SQLite-stored
/// broker: 13-19, 1-19 and 19 in about a second, 2026-12-04).
///
/// Tansu 0.6's memory storage fails this, and no reader can make up for it: it keeps
/// each batch as one object found by base offset, so a fetch from inside the newest batch
/// finds none (librdkafka sees silence, not even the partition's end), and it reports the
/// end as that batch's base offset plus one, so a reader there cannot tell it from the
/// true end (a new reader got nothing at 13 of a 0-19 batch in 10 s). The kill and fault
/// tests, which use it for speed, write one record per batch (`append_one_by_one`).
#[tokio::test(flavor = "multi_thread")]
async fn a_read_from_inside_the_last_batch_gets_its_records() {
    init_test_logging();
    let broker = Tansu::start();
    let log = KafkaLog::new(settings(&broker)).expect("clients");
    assert_eq!(log.ensure_topic("batches", 1).await.expect("topic"), 1);
    // One append: one producer batch on the partition, its last.
    let records: Vec<churnguard_eventlog::OutgoingRecord> = (0..20)
        .map(|i| churnguard_eventlog::OutgoingRecord {
            key: b"k".to_vec(),
            payload: format!("record {i}").into_bytes(),
            headers: Vec::new(),
            timestamp_ms: 1_764_000_000_000,
        })
        .collect();
    for r in log.append("batches", records).await {
        r.expect("acknowledged");
    }
    // A new client, as a restarted consumer would be, reading from the middle.
    let reader = KafkaLog::new(settings(&broker)).expect("clients");
    for from in [13u64, 1, 19] {
        let started = std::time::Instant::now();
        let got = reader
            .read("batches", 0, from, 100, Duration::from_secs(5))
            .await
            .expect("read");
        let offsets: Vec<u64> = got.iter().map(|r| r.offset).collect();
        eprintln!(
            "read from {from}: {} records in {:?}",
            offsets.len(),
            started.elapsed()
        );
        assert_eq!(offsets, (from..20).collect::<Vec<_>>(), "read from {from}");
        assert_eq!(got[0].payload, format!("record {from}").into_bytes());
    }
}
