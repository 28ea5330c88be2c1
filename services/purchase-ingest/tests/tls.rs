//! purchase-ingest behind mutual TLS, on Kafka (Tansu): a store gateway with a
//! certificate the gateways' CA signed for its store (URI SAN
//! `urn:churnguard:store:<store_id>`) records its store's swipes, which are on the topic;
//! another store's swipe is refused with PERMISSION_DENIED, alone in its batch; a
//! certificate naming no store, no certificate, or plaintext, gets nothing written.

mod common;

use std::time::Duration;

use churnguard_config::{TlsMode, TlsSettings};
use churnguard_kafka::KafkaLog;
use churnguard_proto::ingest::v1 as pb;
use churnguard_proto::ingest::v1::purchase_ingest_client::PurchaseIngestClient;
use churnguard_testkit::Tansu;
use churnguard_testkit::tls::{Leaf, TestCa, write_pem};
use common::*;
use purchase_ingest::config::Backend;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::Channel;

async fn tls_client(
    port: u16,
    ca: &TestCa,
    identity: Option<&Leaf>,
) -> Result<PurchaseIngestClient<Channel>, String> {
    Ok(PurchaseIngestClient::new(ca.channel(port, identity).await?))
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

    // store-1's gateway: `swipe()` is a swipe of store-1.
    let gateway = gateways.sign_with(&[], &["urn:churnguard:store:store-1"]);
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

    // Another store's swipe: PERMISSION_DENIED, naming the field.
    let mut elsewhere = swipe("sw-tls-other", "cust-7");
    elsewhere.store_id = "store-2".into();
    let denied = client
        .record_swipe(request(elsewhere.clone()))
        .await
        .expect_err("another store's swipe");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().starts_with("store_id:"), "{denied:?}");

    // In a batch, only that swipe is refused.
    let (tx, rx) = mpsc::channel(1);
    tx.send(pb::StreamSwipesRequest {
        swipes: vec![
            swipe("sw-tls-b0", "cust-1"),
            elsewhere,
            swipe("sw-tls-b2", "cust-2"),
        ],
        historical: false,
    })
    .await
    .expect("send");
    drop(tx);
    let answer = client
        .stream_swipes(ReceiverStream::new(rx))
        .await
        .expect("stream opens")
        .into_inner()
        .message()
        .await
        .expect("answer")
        .expect("one answer");
    let codes: Vec<&str> = answer
        .results
        .iter()
        .map(|r| match &r.outcome {
            Some(pb::swipe_result::Outcome::Accepted(_)) => "OK",
            Some(pb::swipe_result::Outcome::Rejected(rejected)) => rejected.code.as_str(),
            None => "none",
        })
        .collect();
    assert_eq!(codes, ["OK", "PERMISSION_DENIED", "OK"]);

    // A certificate the gateways' CA signed that names no store: nothing goes in.
    let unnamed = gateways.sign(&["store-1.gateways.example"]);
    let denied = tls_client(port, &servers, Some(&unnamed))
        .await
        .expect("connects: the CA vouches for it")
        .record_swipe(request(swipe("sw-tls-unnamed", "cust-7")))
        .await
        .expect_err("no store named");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

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
    assert_eq!(
        records.len(),
        3,
        "only the gateway's own store's swipes are written"
    );
    assert!(
        records
            .iter()
            .any(|r| (r.partition, r.offset) == (accepted.partition, accepted.offset))
    );
    for r in &records {
        let event = envelope(r);
        assert_eq!(event["data"]["store_id"], "store-1", "{event}");
    }
    app.stop().await.expect("stops");
}
