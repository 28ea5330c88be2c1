//! A broker that requires SASL: clients with a SCRAM user's password read and write
//! (SCRAM-SHA-256 and SCRAM-SHA-512); a wrong password, an unknown user and a client
//! without credentials are refused with an error that says what the client knows of
//! why, holds no password, and writes nothing.
//! Over TLS (`sasl_ssl`): `tests/tls.rs`.

use std::time::Duration;

use churnguard_eventlog::{EventLog, OutgoingRecord};
use churnguard_kafka::{KafkaLog, KafkaSecurity, KafkaSettings};
use churnguard_testkit::{Tansu, canary, init_test_logging};

const TOPIC: &str = "secured";

fn settings(broker: &Tansu, security: KafkaSecurity) -> KafkaSettings {
    KafkaSettings {
        bootstrap_servers: broker.bootstrap(),
        delivery_timeout_ms: 5_000,
        security,
        ..KafkaSettings::default()
    }
}

fn scram(mechanism: &str, user: &str, password: &str) -> KafkaSecurity {
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

#[tokio::test(flavor = "multi_thread")]
async fn scram_users_read_and_write_and_others_are_refused() {
    init_test_logging();
    // The password is a canary: it must not show in any error, log line or the broker's
    // files (the test kit scans them).
    let password = format!("{}-kafka", canary::SECRET);
    let broker = Tansu::start_with_users(&[("ingest", &password)]);

    let mut written = 0;
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let log = KafkaLog::new(settings(&broker, scram(mechanism, "ingest", &password)))
            .expect("clients");
        assert_eq!(log.ensure_topic(TOPIC, 1).await.expect("topic"), 1);
        for r in log.append(TOPIC, records(mechanism, 3)).await {
            r.unwrap_or_else(|e| panic!("{mechanism}: {e}"));
        }
        written += 3;
        let got = log
            .read(TOPIC, 0, 0, 100, Duration::from_secs(10))
            .await
            .expect("read");
        assert_eq!(got.len(), written, "{mechanism} reads what was written");
    }

    // Refused, each with what the error says: the broker's own words for a wrong
    // password or user (librdkafka reports them beside the request, which only times
    // out); a client without credentials is hung up on, and knows no more than that.
    let refused = [
        (
            "a wrong password",
            scram("SCRAM-SHA-512", "ingest", "not-the-password"),
            "refused this client's credentials: ",
        ),
        (
            "an unknown user",
            scram("SCRAM-SHA-256", "nobody", &password),
            "broker responded with unknown-user",
        ),
        (
            "no credentials",
            KafkaSecurity::default(),
            "Broker transport failure",
        ),
    ];
    for (who, security, says) in refused {
        let log = KafkaLog::new(settings(&broker, security)).expect("clients");
        let started = std::time::Instant::now();
        let results = log.append(TOPIC, records(who, 2)).await;
        for r in &results {
            let e = r.as_ref().expect_err(who).to_string();
            eprintln!("{who}: refused after {:?}: {e}", started.elapsed());
            canary::assert_absent("a refusal", e.as_bytes());
            assert!(e.contains(says), "{who}: the error says {says:?}: {e}");
        }
    }

    let reader = KafkaLog::new(settings(
        &broker,
        scram("SCRAM-SHA-512", "ingest", &password),
    ))
    .expect("clients");
    assert_eq!(
        reader.end_offset(TOPIC, 0).await.expect("end"),
        written as u64,
        "nothing written by a refused client"
    );
}
