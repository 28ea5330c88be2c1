//! purchase-ingest behind mutual TLS, on Kafka (Tansu): a store gateway with a
//! certificate the gateways' CA signed records a swipe, which is on the topic; a client
//! without one, or speaking plaintext, gets nothing in and writes nothing.

mod common;

use std::time::Duration;

use churnguard_config::{TlsMode, TlsSettings};
use churnguard_kafka::KafkaLog;
use churnguard_proto::ingest::v1::purchase_ingest_client::PurchaseIngestClient;
use churnguard_testkit::Tansu;
use churnguard_testkit::tls::{Leaf, TestCa, write_pem};
use common::*;
use purchase_ingest::config::Backend;
use tonic::transport::Channel;

async fn tls_client(
    port: u16,
    ca: &TestCa,
    identity: Option<&Leaf>,
) -> Result<PurchaseIngestClient<Channel>, String> {
    let channel = Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .expect("endpoint")
        .tls_config(ca.client(identity))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    Ok(PurchaseIngestClient::new(channel))
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_a_gateway_with_a_client_certificate_records_swipes_over_mutual_tls() {
    let broker = Tansu::start();
    let dir = tempfile::tempdir().expect("dir");
    let servers = TestCa::new("churnguard servers");
    let gateways = TestCa::new("store gateways");
    let server = servers.sign(&["localhost"]);
    let mut settings = settings(Backend::Kafka);
    settings.log.kafka = kafka_settings(&broker);
    settings.tls = TlsSettings {
        cert_file: write_pem(dir.path(), "ingest.pem", &server.cert),
        key_file: write_pem(dir.path(), "ingest.key", &server.key),
        client_ca_file: write_pem(dir.path(), "gateways.pem", gateways.pem()),
    };
    assert_eq!(settings.tls.mode(), TlsMode::MutualTls);
    let reader = KafkaLog::new(kafka_settings(&broker)).expect("reader");
    let app = spawn_app(
        settings,
        KafkaLog::new(kafka_settings(&broker)).expect("log"),
    )
    .await;
    let port = app.local_addr().port();

    let gateway = gateways.sign(&["store-1.gateways.example"]);
    let mut client = tls_client(port, &servers, Some(&gateway))
        .await
        .expect("the gateway connects");
    let accepted = client
        .record_swipe(request(swipe("sw-tls-1", "cust-7")))
        .await
        .expect("accepted over mutual TLS")
        .into_inner()
        .accepted
        .expect("accepted");

    // No certificate: the handshake or the first call fails, and nothing is written.
    let refused = match tls_client(port, &servers, None).await {
        Err(_) => true,
        Ok(mut anonymous) => anonymous
            .record_swipe(request(swipe("sw-tls-2", "cust-8")))
            .await
            .is_err(),
    };
    assert!(refused, "a client without a certificate is refused");
    // Plaintext to a TLS port: refused too.
    let plaintext = match Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
    {
        Err(_) => true,
        Ok(channel) => PurchaseIngestClient::new(channel)
            .record_swipe(request(swipe("sw-tls-3", "cust-9")))
            .await
            .is_err(),
    };
    assert!(plaintext, "plaintext is refused on a TLS port");

    let records = read_topic(&reader).await;
    assert_eq!(records.len(), 1, "only the gateway's swipe is written");
    assert_eq!(
        (records[0].partition, records[0].offset),
        (accepted.partition, accepted.offset)
    );
    app.stop().await.expect("stops");
}
