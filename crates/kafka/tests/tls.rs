//! Kafka over TLS: `ssl` with the brokers' CA, `sasl_ssl` with a SCRAM user, and mutual
//! TLS with a client certificate, against Tansu reached only through a TLS front (Tansu
//! 0.6 serves no TLS itself: [`TlsFront`] terminates it and forwards to the broker, which
//! advertises the front). A client that does not trust the server's CA, or that has no
//! certificate where one is asked for, writes nothing and is told why.

use std::time::Duration;

use churnguard_eventlog::{EventLog, OutgoingRecord};
use churnguard_kafka::{KafkaLog, KafkaSecurity, KafkaSettings};
use churnguard_testkit::tls::{TestCa, TlsFront, write_pem};
use churnguard_testkit::{Tansu, canary, free_port, init_test_logging};

const TOPIC: &str = "over-tls";

fn settings(front: &TlsFront, security: KafkaSecurity) -> KafkaSettings {
    KafkaSettings {
        bootstrap_servers: front.bootstrap(),
        delivery_timeout_ms: 5_000,
        security,
        ..KafkaSettings::default()
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
async fn write_and_read(front: &TlsFront, security: KafkaSecurity, what: &str) -> usize {
    let log = KafkaLog::new(settings(front, security)).expect("clients");
    assert_eq!(log.ensure_topic(TOPIC, 1).await.expect("topic"), 1);
    for r in log.append(TOPIC, records(what, 3)).await {
        r.unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    log.read(TOPIC, 0, 0, 100, Duration::from_secs(10))
        .await
        .expect("read")
        .len()
}

/// Appends with `security`, which must be refused: each record's error, which must say
/// `says` and hold no canary.
async fn refused(front: &TlsFront, security: KafkaSecurity, who: &str, says: &str) {
    let log = KafkaLog::new(settings(front, security)).expect("clients");
    for r in log.append(TOPIC, records(who, 2)).await {
        let e = r.expect_err(who).to_string();
        eprintln!("{who}: {e}");
        canary::assert_absent("a refusal", e.as_bytes());
        assert!(e.contains(says), "{who}: the error says {says:?}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ssl_and_sasl_ssl_through_tls_and_a_client_not_trusting_the_ca_is_refused() {
    init_test_logging();
    let dir = tempfile::tempdir().expect("dir");
    let ca = TestCa::new("kafka CA");
    let ca_file = write_pem(dir.path(), "ca.pem", ca.pem());
    let password = format!("{}-kafka", canary::SECRET);
    let front_port = free_port();
    let broker = Tansu::start_behind(front_port, &[("ingest", &password)]);
    let front = TlsFront::start(
        front_port,
        broker.port(),
        &ca,
        &ca.sign(&["127.0.0.1", "localhost"]),
        false,
    );

    let sasl_ssl = KafkaSecurity {
        protocol: "sasl_ssl".into(),
        sasl_mechanism: "SCRAM-SHA-512".into(),
        sasl_username: "ingest".into(),
        sasl_password: password.clone(),
        ssl_ca_file: ca_file.clone(),
        ..KafkaSecurity::default()
    };
    assert_eq!(
        write_and_read(&front, sasl_ssl.clone(), "sasl_ssl").await,
        3
    );

    // The broker's certificate signed by a CA the client does not trust.
    let stranger = TestCa::new("someone else's CA");
    let untrusting = KafkaSecurity {
        ssl_ca_file: write_pem(dir.path(), "stranger.pem", stranger.pem()),
        ..sasl_ssl.clone()
    };
    refused(
        &front,
        untrusting,
        "a client not trusting the CA",
        "the TLS handshake with the broker failed",
    )
    .await;
    // TLS right, the password wrong.
    let wrong = KafkaSecurity {
        sasl_password: "not-the-password".into(),
        ..sasl_ssl.clone()
    };
    refused(
        &front,
        wrong,
        "a wrong password",
        "the broker refused this client's credentials",
    )
    .await;
    let reader = KafkaLog::new(settings(&front, sasl_ssl)).expect("clients");
    assert_eq!(
        reader.end_offset(TOPIC, 0).await.expect("end"),
        3,
        "nothing written by the refused clients"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_takes_a_client_certificate_the_ca_signed_and_refuses_none() {
    init_test_logging();
    let dir = tempfile::tempdir().expect("dir");
    let ca = TestCa::new("kafka CA");
    let ca_file = write_pem(dir.path(), "ca.pem", ca.pem());
    let front_port = free_port();
    let broker = Tansu::start_behind(front_port, &[]);
    let front = TlsFront::start(
        front_port,
        broker.port(),
        &ca,
        &ca.sign(&["127.0.0.1", "localhost"]),
        true,
    );
    let client = ca.sign(&["ingest.churnguard"]);
    let ssl = KafkaSecurity {
        protocol: "ssl".into(),
        ssl_ca_file: ca_file.clone(),
        ssl_certificate_file: write_pem(dir.path(), "client.pem", &client.cert),
        ssl_key_file: write_pem(dir.path(), "client.key", &client.key),
        ..KafkaSecurity::default()
    };
    assert_eq!(write_and_read(&front, ssl.clone(), "ssl").await, 3);

    let anonymous = KafkaSecurity {
        ssl_certificate_file: String::new(),
        ssl_key_file: String::new(),
        ..ssl.clone()
    };
    refused(
        &front,
        anonymous,
        "a client without a certificate",
        "event log unavailable",
    )
    .await;
    let reader = KafkaLog::new(settings(&front, ssl)).expect("clients");
    assert_eq!(reader.end_offset(TOPIC, 0).await.expect("end"), 3);
}
