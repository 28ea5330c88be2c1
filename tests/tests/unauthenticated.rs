//! A secured deployment (`auth.required` on every service) answers every RPC of every
//! service, reflection included, UNAUTHENTICATED to a caller without credentials, with
//! a store token one character off, an expired token, or a token of another issuer; gRPC
//! health answers all of them (probes carry no credentials). No answer repeats a
//! credential or the issuer's secret (the test kit's canaries). Every method is found in the services' descriptor set,
//! so an RPC added later is covered without touching this test.

use churnguard_config::{AuthSettings, JwtSettings};
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_testkit::auth::{AUDIENCE, ISSUER, TestIssuer};
use churnguard_testkit::{RedisServer, canary, init_test_logging};
use churnguard_vault::Kek;
use prost::Message;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

mod common;
use common::stack::{Stack, StackSettings};

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
        Err(status) => {
            // The answer never repeats a credential, good or bad, nor the secret.
            canary::assert_absent("a status message", status.message().as_bytes());
            canary::assert_absent("status details", status.details());
            status.code()
        }
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
        store_tokens_file: issuer.store_tokens_file(&[("s-1", &canary::store_token("s-1"))]),
        jwt: JwtSettings {
            algorithm: "HS256".into(),
            key_file: issuer.key_file(),
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
        },
    };

    let mut settings = StackSettings::new(&redis, &dir.path().join("log"));
    settings.ingest.auth = auth.clone();
    settings.scoring.auth = auth.clone();
    settings.feedback.auth = auth;
    let log = EmbeddedLog::open(dir.path().join("log")).expect("log");
    let stack = Stack::start(settings, &log, Kek::from_bytes([3; 32])).await;

    let expired = format!("Bearer {}", issuer.expired_token("owner", "o-1", &[]));
    let foreign = format!("Bearer {}", stranger.token("owner", "o-1", &[]));
    let near_miss = format!("Bearer {}x", canary::store_token("s-1"));
    let credentials = [
        ("no credentials", None),
        ("a store token one character off", Some(near_miss.as_str())),
        ("an unknown token", Some("Bearer not-a-token")),
        ("an expired token", Some(expired.as_str())),
        ("another issuer's token", Some(foreign.as_str())),
        ("a malformed header", Some("Basic b3duZXI6aHVudGVyMg==")),
    ];
    let mut calls = 0;
    for (endpoint, services) in [
        (
            stack.ingest.endpoint(),
            vec!["churnguard.ingest.v1.PurchaseIngest"],
        ),
        (
            stack.scoring.endpoint(),
            vec!["churnguard.scoring.v1.ChurnScoring"],
        ),
        (
            stack.feedback.endpoint(),
            vec!["churnguard.feedback.v1.Feedback"],
        ),
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
    assert!(calls >= 6 * 24, "every RPC of the three services: {calls}");
    stack.stop().await;
}
