//! A secured deployment (`auth.required` on every service) answers every RPC of every
//! service, reflection included, UNAUTHENTICATED to a caller without credentials, with
//! an expired token, or with a token of another issuer; gRPC health answers all of them
//! (probes carry no credentials). Every method is found in the services' descriptor set,
//! so an RPC added later is covered without touching this test.

use std::sync::Arc;

use churnguard_config::{AuthSettings, JwtSettings};
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_telemetry::Telemetry;
use churnguard_testkit::auth::{AUDIENCE, ISSUER, TestIssuer};
use churnguard_testkit::{RedisServer, init_test_logging};
use churnguard_vault::Kek;
use prost::Message;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// Every method of `service` (`churnguard.feedback.v1.Feedback`), as `/service/Method`.
fn methods_of(service: &str) -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(churnguard_proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    let mut paths = Vec::new();
    for file in set.file {
        let package = file.package().to_owned();
        for s in file.service {
            if format!("{package}.{}", s.name()) == service {
                paths.extend(s.method.iter().map(|m| format!("/{service}/{}", m.name())));
            }
        }
    }
    assert!(!paths.is_empty(), "{service} has methods");
    paths
}

/// Calls `path` with an empty message and `authorization` (if any); the status code.
async fn code_of(channel: Channel, path: &str, authorization: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let mut request = tonic::Request::new(());
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().expect("ascii"));
    }
    let path = PathAndQuery::try_from(path.to_owned()).expect("a path");
    match grpc
        .unary::<(), (), _>(request, path, tonic_prost::ProstCodec::default())
        .await
    {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rpc_of_a_secured_deployment_refuses_callers_without_valid_credentials() {
    init_test_logging();
    let redis = RedisServer::start();
    let issuer = TestIssuer::new();
    let stranger = TestIssuer::new();
    let dir = tempfile::tempdir().expect("dir");
    let auth = AuthSettings {
        required: true,
        store_tokens_file: issuer.store_tokens_file(&[("s-1", "gateway-token")]),
        jwt: JwtSettings {
            algorithm: "HS256".into(),
            key_file: issuer.key_file(),
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
        },
    };

    let mut ingest_settings = purchase_ingest::Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: String::new(),
        auth: auth.clone(),
        ..purchase_ingest::Settings::default()
    };
    ingest_settings.log.embedded.dir = dir.path().join("log");
    let log = EmbeddedLog::open(dir.path().join("log")).expect("log");
    let ingest = purchase_ingest::App::build(
        ingest_settings,
        log.clone(),
        Arc::new(Telemetry::tracer_only("e2e")),
    )
    .await
    .expect("purchase-ingest builds")
    .spawn();
    let mut scoring_settings = churn_scoring::config::Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: String::new(),
        auth: auth.clone(),
        ..churn_scoring::config::Settings::default()
    };
    scoring_settings.redis.url = redis.url();
    let scoring = churn_scoring::App::build(scoring_settings, Arc::new(log.clone()))
        .await
        .expect("churn-scoring builds")
        .spawn();
    let mut feedback_settings = feedback::config::Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: String::new(),
        auth,
        ..feedback::config::Settings::default()
    };
    feedback_settings.redis.url = redis.url();
    let feedback = feedback::App::build(feedback_settings, Arc::new(log), Kek::from_bytes([3; 32]))
        .await
        .expect("feedback builds")
        .spawn();

    let expired = format!("Bearer {}", issuer.expired_token("owner", "o-1", &[]));
    let foreign = format!("Bearer {}", stranger.token("owner", "o-1", &[]));
    let credentials = [
        ("no credentials", None),
        ("an unknown token", Some("Bearer not-a-token")),
        ("an expired token", Some(expired.as_str())),
        ("another issuer's token", Some(foreign.as_str())),
        ("a malformed header", Some("Basic b3duZXI6aHVudGVyMg==")),
    ];
    let mut calls = 0;
    for (endpoint, services) in [
        (
            ingest.endpoint(),
            vec!["churnguard.ingest.v1.PurchaseIngest"],
        ),
        (
            scoring.endpoint(),
            vec!["churnguard.scoring.v1.ChurnScoring"],
        ),
        (feedback.endpoint(), vec!["churnguard.feedback.v1.Feedback"]),
    ] {
        let channel = Channel::from_shared(endpoint)
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        let mut paths: Vec<String> = services.iter().flat_map(|s| methods_of(s)).collect();
        paths.push("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo".into());
        for path in &paths {
            for (what, authorization) in &credentials {
                assert_eq!(
                    code_of(channel.clone(), path, *authorization).await,
                    Code::Unauthenticated,
                    "{path} with {what}"
                );
                calls += 1;
            }
        }
        let health = HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .expect("health answers without credentials");
        assert_eq!(health.into_inner().status, 1, "SERVING");
    }
    eprintln!("{calls} calls without valid credentials, every one UNAUTHENTICATED");
    assert!(calls >= 5 * 24, "every RPC of the three services: {calls}");
    ingest.stop().await.expect("ingest stops");
    scoring.stop().await.expect("scoring stops");
    feedback.stop().await.expect("feedback stops");
}
