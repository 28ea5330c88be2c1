//! What the secured-broker tests share (`sasl.rs`, `tls.rs`): clients with given
//! security settings, a write read back, and a write that must be refused.
#![allow(dead_code)] // each test file uses its own part

use std::time::Duration;

use churnguard_eventlog::{EventLog, OutgoingRecord};
use churnguard_kafka::{KafkaLog, KafkaSecurity, KafkaSettings};
use churnguard_testkit::canary;

/// The one partition the tests write.
pub const TOPIC: &str = "secured";

/// A client of the brokers at `bootstrap` with `security`; writes give up after 5 s.
pub fn client(bootstrap: &str, security: KafkaSecurity) -> KafkaLog {
    KafkaLog::new(KafkaSettings {
        bootstrap_servers: bootstrap.to_owned(),
        delivery_timeout_ms: 5_000,
        security,
        ..KafkaSettings::default()
    })
    .expect("clients")
}

/// SASL over plaintext with `mechanism`, `user` and `password`.
pub fn sasl(mechanism: &str, user: &str, password: &str) -> KafkaSecurity {
    KafkaSecurity {
        protocol: "sasl_plaintext".into(),
        sasl_mechanism: mechanism.into(),
        sasl_username: user.into(),
        sasl_password: password.into(),
        ..KafkaSecurity::default()
    }
}

fn records(what: &str, n: usize) -> Vec<OutgoingRecord> {
    (0..n)
        .map(|i| OutgoingRecord {
            key: format!("k{i}").into_bytes(),
            payload: format!("{what} {i}").into_bytes(),
            headers: Vec::new(),
            timestamp_ms: 1_764_000_000_000,
        })
        .collect()
}

/// Writes three records with `security` and reads the partition back: how many it holds.
pub async fn write_and_read(bootstrap: &str, security: KafkaSecurity, what: &str) -> usize {
    let log = client(bootstrap, security);
    assert_eq!(log.ensure_topic(TOPIC, 1).await.expect("topic"), 1);
    for r in log.append(TOPIC, records(what, 3)).await {
        r.unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    log.read(TOPIC, 0, 0, 100, Duration::from_secs(10))
        .await
        .expect("read")
        .len()
}

/// Appends with `security`, which must be refused: each record's error must say `says`
/// and hold no canary.
pub async fn refused(bootstrap: &str, security: KafkaSecurity, who: &str, says: &str) {
    let log = client(bootstrap, security);
    let started = std::time::Instant::now();
    for r in log.append(TOPIC, records(who, 2)).await {
        let e = r.expect_err(who).to_string();
        eprintln!("{who}: refused after {:?}: {e}", started.elapsed());
        canary::assert_absent("a refusal", e.as_bytes());
        assert!(e.contains(says), "{who}: the error says {says:?}: {e}");
    }
}
