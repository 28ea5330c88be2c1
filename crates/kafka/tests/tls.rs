//! Kafka over TLS: `ssl` with the brokers' CA, `sasl_ssl` with a SCRAM user, and mutual
//! TLS with a client certificate, against Tansu reached only through a TLS front (Tansu
//! 0.6 serves no TLS itself: [`TlsFront`] terminates it and forwards to the broker, which
//! advertises the front). A client that does not trust the server's CA, or that has no
//! certificate where one is asked for, writes nothing and is told why.

use churnguard_eventlog::EventLog;
use churnguard_kafka::KafkaSecurity;
use churnguard_testkit::tls::{TestCa, TlsFront, write_pem};
use churnguard_testkit::{Tansu, canary, free_port, init_test_logging};

mod common;
use common::{TOPIC, client, refused, write_and_read};

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
        write_and_read(&front.bootstrap(), sasl_ssl.clone(), "sasl_ssl").await,
        3
    );

    // The broker's certificate signed by a CA the client does not trust.
    let stranger = TestCa::new("someone else's CA");
    let untrusting = KafkaSecurity {
        ssl_ca_file: write_pem(dir.path(), "stranger.pem", stranger.pem()),
        ..sasl_ssl.clone()
    };
    refused(
        &front.bootstrap(),
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
        &front.bootstrap(),
        wrong,
        "a wrong password",
        "the broker refused this client's credentials",
    )
    .await;
    let reader = client(&front.bootstrap(), sasl_ssl);
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
    let identity = ca.sign(&["ingest.churnguard"]);
    let ssl = KafkaSecurity {
        protocol: "ssl".into(),
        ssl_ca_file: ca_file.clone(),
        ssl_certificate_file: write_pem(dir.path(), "client.pem", &identity.cert),
        ssl_key_file: write_pem(dir.path(), "client.key", &identity.key),
        ..KafkaSecurity::default()
    };
    assert_eq!(
        write_and_read(&front.bootstrap(), ssl.clone(), "ssl").await,
        3
    );

    let anonymous = KafkaSecurity {
        ssl_certificate_file: String::new(),
        ssl_key_file: String::new(),
        ..ssl.clone()
    };
    refused(
        &front.bootstrap(),
        anonymous,
        "a client without a certificate",
        "event log unavailable",
    )
    .await;
    let reader = client(&front.bootstrap(), ssl);
    assert_eq!(reader.end_offset(TOPIC, 0).await.expect("end"), 3);
}
