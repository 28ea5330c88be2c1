//! A `GrpcServer` serving TLS and mutual TLS, with certificates made here (rcgen): a CA,
//! the server's certificate for `localhost`, a client certificate it signed, and a
//! stranger's CA and client certificate.

use std::time::Duration;

use churnguard_config::{TlsMode, TlsSettings};
use churnguard_runtime::identity::Caller;
use churnguard_runtime::{GrpcServer, ServeError};
use churnguard_testkit::tls::{Leaf, TestCa, write_pem as write};
use tonic::transport::{CertificateDer, Channel};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response};

const SERVING: i32 = health_check_response::ServingStatus::Serving as i32;

/// Health's answer over a channel to `port` that trusts `ca` (and presents `identity`,
/// if given), checking the server's name as `localhost`.
async fn check(port: u16, ca: &TestCa, identity: Option<&Leaf>) -> Result<i32, String> {
    health(ca.channel(port, identity).await?).await
}

/// A plaintext client's health check against `port`.
async fn check_plaintext(port: u16) -> Result<i32, String> {
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    health(channel).await
}

/// The server's overall health status over `channel`.
async fn health(channel: Channel) -> Result<i32, String> {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|answer| answer.into_inner().status)
        .map_err(|status| format!("{status:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_with_a_certificate_serves_tls_only() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = TestCa::new("churnguard test CA");
    let server_cert = ca.sign(&["localhost"]);
    let settings = TlsSettings {
        cert_file: write(dir.path(), "server.pem", &server_cert.cert),
        key_file: write(dir.path(), "server.key", &server_cert.key),
        client_ca_file: String::new(),
    };
    settings.validate().expect("valid settings");
    let server = GrpcServer::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .with_tls(&settings)
        .expect("TLS set up");
    assert_eq!(server.tls_mode(), TlsMode::Tls);
    let port = server.local_addr().port();
    let running = server.spawn::<ServeError>();

    assert_eq!(check(port, &ca, None).await, Ok(SERVING));
    let stranger = TestCa::new("someone else's CA");
    assert!(
        check(port, &stranger, None).await.is_err(),
        "a client that does not trust the server's CA must not connect"
    );
    assert!(
        check_plaintext(port).await.is_err(),
        "plaintext is not served beside TLS"
    );
    running.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_lets_in_only_clients_with_a_certificate_its_ca_signed() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = TestCa::new("churnguard test CA");
    let clients = TestCa::new("store gateways CA");
    let server_cert = ca.sign(&["localhost"]);
    let settings = TlsSettings {
        cert_file: write(dir.path(), "server.pem", &server_cert.cert),
        key_file: write(dir.path(), "server.key", &server_cert.key),
        client_ca_file: write(dir.path(), "clients.pem", clients.pem()),
    };
    let server = GrpcServer::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .with_tls(&settings)
        .expect("mutual TLS set up");
    assert_eq!(server.tls_mode(), TlsMode::MutualTls);
    let port = server.local_addr().port();
    let running = server.spawn::<ServeError>();

    let gateway = clients.sign(&["store-7.gateways.example"]);
    assert_eq!(check(port, &ca, Some(&gateway)).await, Ok(SERVING));
    assert!(
        check(port, &ca, None).await.is_err(),
        "a client without a certificate is refused"
    );
    let stranger = TestCa::new("someone else's CA");
    let other = stranger.sign(&["store-7.gateways.example"]);
    assert!(
        check(port, &ca, Some(&other)).await.is_err(),
        "a certificate another CA signed is refused"
    );
    running.stop().await.expect("stops");
}

#[tokio::test]
async fn bad_tls_settings_name_the_setting() {
    let dir = tempfile::tempdir().expect("dir");
    let only_cert = TlsSettings {
        cert_file: write(dir.path(), "server.pem", "not used"),
        ..TlsSettings::default()
    };
    assert_eq!(
        only_cert.validate().expect_err("no key").key,
        "tls.key_file"
    );
    let missing = TlsSettings {
        cert_file: dir.path().join("absent.pem").to_string_lossy().into_owned(),
        key_file: write(dir.path(), "server.key", "not used"),
        ..TlsSettings::default()
    };
    assert_eq!(missing.validate().expect_err("absent").key, "tls.cert_file");
    let ca_alone = TlsSettings {
        client_ca_file: write(dir.path(), "clients.pem", "not used"),
        ..TlsSettings::default()
    };
    assert_eq!(
        ca_alone.validate().expect_err("no server identity").key,
        "tls.client_ca_file"
    );
    assert_eq!(TlsSettings::default().validate(), Ok(()));
    assert_eq!(TlsSettings::default().mode(), TlsMode::Plaintext);

    // Files that exist but hold no certificate: the server does not start.
    let garbage = TlsSettings {
        cert_file: write(dir.path(), "garbage.pem", "not a certificate"),
        key_file: write(dir.path(), "garbage.key", "not a key"),
        ..TlsSettings::default()
    };
    let refused = GrpcServer::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .with_tls(&garbage);
    match refused {
        Err(ServeError::Tls { key, .. }) => assert!(key.starts_with("tls."), "{key}"),
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

#[test]
fn a_client_certificate_names_the_store_in_a_uri() {
    let ca = TestCa::new("store gateways CA");
    let caller =
        |leaf: &Leaf| Caller::from_certificate(Some(&CertificateDer::from(leaf.der.clone())));

    let gateway = ca.sign_with(&["gw.example"], &["urn:churnguard:store:store-7"]);
    assert_eq!(caller(&gateway), Caller::Store("store-7".into()));
    assert!(caller(&gateway).may_act_for_store("store-7"));
    assert!(!caller(&gateway).may_act_for_store("store-8"));

    let two = ca.sign_with(
        &[],
        &[
            "urn:churnguard:store:store-7",
            "urn:churnguard:store:store-8",
        ],
    );
    assert_eq!(
        caller(&two),
        Caller::NoStore,
        "a certificate for two stores is for none"
    );
    let none = ca.sign_with(&["store-7"], &["https://store-7.example"]);
    assert_eq!(caller(&none), Caller::NoStore, "only the URI names a store");
    assert!(!caller(&none).may_act_for_store("store-7"));
    let empty = ca.sign_with(&[], &["urn:churnguard:store:"]);
    assert_eq!(caller(&empty), Caller::NoStore);
    assert_eq!(
        Caller::from_certificate(Some(&CertificateDer::from(b"garbage".to_vec()))),
        Caller::NoStore
    );

    assert_eq!(Caller::from_certificate(None), Caller::Unidentified);
    assert!(Caller::Unidentified.may_act_for_store("store-7"));
}
