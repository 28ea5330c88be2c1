//! A broker that requires SASL: clients with a SCRAM user's password read and write
//! (SCRAM-SHA-256 and SCRAM-SHA-512); a wrong password, an unknown user and a client
//! without credentials are refused with an error that says what the client knows of
//! why, holds no password, and writes nothing.
//! Over TLS (`sasl_ssl`): `tests/tls.rs`.

use churnguard_eventlog::EventLog;
use churnguard_kafka::KafkaSecurity;
use churnguard_testkit::{Tansu, canary, init_test_logging};

mod common;
use common::{TOPIC, client, refused, sasl, write_and_read};

#[tokio::test(flavor = "multi_thread")]
async fn scram_users_read_and_write_and_others_are_refused() {
    init_test_logging();
    // The password is a canary: it must not show in any error, log line or the broker's
    // files (the test kit scans them).
    let password = format!("{}-kafka", canary::SECRET);
    let broker = Tansu::start_with_users(&[("ingest", &password)]);

    let bootstrap = broker.bootstrap();
    let mut written = 0;
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        written += 3;
        assert_eq!(
            write_and_read(&bootstrap, sasl(mechanism, "ingest", &password), mechanism).await,
            written,
            "{mechanism} reads what was written"
        );
    }

    // Refused, each with what the error says: the broker's own words for a wrong
    // password or user (librdkafka reports them beside the request, which only times
    // out); a client without credentials is hung up on, and knows no more than that.
    let refusals = [
        (
            "a wrong password",
            sasl("SCRAM-SHA-512", "ingest", "not-the-password"),
            "refused this client's credentials: ",
        ),
        (
            "an unknown user",
            sasl("SCRAM-SHA-256", "nobody", &password),
            "broker responded with unknown-user",
        ),
        (
            "no credentials",
            KafkaSecurity::default(),
            "Broker transport failure",
        ),
    ];
    for (who, security, says) in refusals {
        refused(&bootstrap, security, who, says).await;
    }

    let reader = client(&bootstrap, sasl("SCRAM-SHA-512", "ingest", &password));
    assert_eq!(
        reader.end_offset(TOPIC, 0).await.expect("end"),
        written as u64,
        "nothing written by a refused client"
    );
}
