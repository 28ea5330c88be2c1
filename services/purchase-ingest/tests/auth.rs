//! purchase-ingest with identities required, on Kafka (Tansu): each caller gets exactly
//! the answer its identity allows, and only the swipes a store gateway or a service may
//! write are on the topic.
//!
//! | caller                           | own store's swipe   | another store's swipe |
//! |----------------------------------|---------------------|-----------------------|
//! | no credentials                   | UNAUTHENTICATED     | UNAUTHENTICATED       |
//! | unknown token, expired JWT       | UNAUTHENTICATED     | UNAUTHENTICATED       |
//! | store-1's gateway token          | OK                  | PERMISSION_DENIED     |
//! | service JWT                      | OK                  | OK                    |
//! | store manager, analyst, owner    | PERMISSION_DENIED   | PERMISSION_DENIED     |
//!
//! gRPC health answers without credentials (probes carry none).

mod common;

use churnguard_config::AuthSettings;
use churnguard_kafka::KafkaLog;
use churnguard_proto::ingest::v1 as pb;
use churnguard_proto::ingest::v1::purchase_ingest_client;
use churnguard_testkit::auth::{TestIssuer, with_bearer};
use churnguard_testkit::{Tansu, canary};
use common::*;
use purchase_ingest::config::Backend;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test(flavor = "multi_thread")]
async fn kafka_every_identity_gets_what_it_may_and_only_allowed_swipes_are_written() {
    let broker = Tansu::start();
    let issuer = TestIssuer::new();
    let mut settings = settings(Backend::Kafka);
    settings.log.kafka = kafka_settings(&broker);
    settings.auth = secured(&issuer);
    let reader = KafkaLog::new(kafka_settings(&broker)).expect("reader");
    let app = spawn_app(
        settings,
        KafkaLog::new(kafka_settings(&broker)).expect("log"),
    )
    .await;
    let mut client = client(&app).await;

    let health = HealthClient::new(channel(&app).await)
        .check(HealthCheckRequest::default())
        .await
        .expect("health answers without credentials");
    assert_eq!(health.into_inner().status, 1, "SERVING");

    let gateway = canary::store_token("store-1");
    let callers: Vec<(&str, Option<String>, [Code; 2])> = vec![
        ("no credentials", None, [Code::Unauthenticated; 2]),
        (
            "unknown token",
            Some("not-a-token".into()),
            [Code::Unauthenticated; 2],
        ),
        (
            "expired service JWT",
            Some(issuer.expired_token("service", "importer", &[])),
            [Code::Unauthenticated; 2],
        ),
        (
            "store-1's gateway",
            Some(gateway.clone()),
            [Code::Ok, Code::PermissionDenied],
        ),
        (
            "service",
            Some(issuer.token("service", "importer", &[])),
            [Code::Ok, Code::Ok],
        ),
        (
            "store-1's manager",
            Some(issuer.token("store_manager", "m-1", &["store-1"])),
            [Code::PermissionDenied; 2],
        ),
        (
            "analyst",
            Some(issuer.token("analyst", "a-1", &[])),
            [Code::PermissionDenied; 2],
        ),
        (
            "owner",
            Some(issuer.token("owner", "o-1", &[])),
            [Code::PermissionDenied; 2],
        ),
    ];
    let mut expected_written = Vec::new();
    for (n, (who, token, expected)) in callers.iter().enumerate() {
        for (store, want) in ["store-1", "store-2"].into_iter().zip(expected) {
            let mut s = swipe(&format!("sw-auth-{n}-{store}"), "cust-7");
            s.store_id = store.into();
            let message = request(s.clone());
            let call = match token {
                Some(token) => with_bearer(message, token),
                None => tonic::Request::new(message),
            };
            let got = match client.record_swipe(call).await {
                Ok(_) => Code::Ok,
                Err(status) => {
                    assert!(
                        canary::found_in(status.message().as_bytes()).is_empty(),
                        "a credential is never echoed: {status:?}"
                    );
                    let field = if status.code() == Code::Unauthenticated {
                        "authorization:"
                    } else {
                        "store_id:"
                    };
                    assert!(status.message().starts_with(field), "{who}: {status:?}");
                    status.code()
                }
            };
            assert_eq!(got, *want, "{who} recording a swipe of {store}");
            if got == Code::Ok {
                expected_written.push(s.swipe_id.clone());
            }
        }
    }

    // StreamSwipes: the gateway's batch with another store's swipe in the middle.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut elsewhere = swipe("sw-auth-b1", "cust-2");
    elsewhere.store_id = "store-2".into();
    tx.send(pb::StreamSwipesRequest {
        swipes: vec![
            swipe("sw-auth-b0", "cust-1"),
            elsewhere,
            swipe("sw-auth-b2", "cust-3"),
        ],
        historical: false,
    })
    .await
    .expect("send");
    drop(tx);
    let answer = client
        .stream_swipes(with_bearer(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            &gateway,
        ))
        .await
        .expect("the stream opens")
        .into_inner()
        .message()
        .await
        .expect("an answer")
        .expect("one answer");
    let accepted: Vec<bool> = answer
        .results
        .iter()
        .map(|r| matches!(r.outcome, Some(pb::swipe_result::Outcome::Accepted(_))))
        .collect();
    assert_eq!(accepted, [true, false, true]);
    expected_written.extend(["sw-auth-b0".to_string(), "sw-auth-b2".to_string()]);

    let unauthenticated = client
        .stream_swipes(tokio_stream::iter(Vec::<pb::StreamSwipesRequest>::new()))
        .await
        .expect_err("a stream without credentials");
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);

    let records = read_topic(&reader).await;
    let mut written = Vec::new();
    for r in &records {
        let event = envelope(r);
        let id = event["data"]["swipe_id"]
            .as_str()
            .expect("swipe_id")
            .to_owned();
        // Each event says who sent it: the gateway, or the service.
        let actor = if id.starts_with("sw-auth-4-") {
            "service:importer"
        } else {
            "store:store-1"
        };
        assert_eq!(event["actor"], actor, "{event}");
        written.push(id);
    }
    written.sort();
    expected_written.sort();
    assert_eq!(
        written, expected_written,
        "exactly the allowed swipes are on the topic"
    );
    app.stop().await.expect("stops");
}

/// Store gateways limited to 3 calls a second, on the embedded log: store-1's gateway
/// calling 10 times at once gets its burst through and then RESOURCE_EXHAUSTED, told when
/// to retry (a RetryInfo detail and `grpc-retry-pushback-ms`); store-2's gateway is not
/// held up by it; after the wait, store-1 gets through again. Refused calls write nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_over_its_rate_is_told_when_to_retry_and_other_gateways_are_not_held_up() {
    use churnguard_eventlog::embedded::EmbeddedLog;
    use tonic_types::StatusExt;

    let dir = tempfile::tempdir().expect("dir");
    let issuer = TestIssuer::new();
    let (token_1, token_2) = (
        canary::store_token("store-1"),
        canary::store_token("store-2"),
    );
    let mut settings = settings(Backend::Embedded);
    settings.auth = AuthSettings {
        required: true,
        store_tokens_file: issuer
            .store_tokens_file(&[("store-1", &token_1), ("store-2", &token_2)]),
        ..AuthSettings::default()
    };
    settings.rate_limits.store_calls_per_second = 3;
    let log = EmbeddedLog::open(dir.path()).expect("log");
    let app = spawn_app(settings, log).await;
    let mut client = client(&app).await;

    let call = |c: &mut purchase_ingest_client::PurchaseIngestClient<tonic::transport::Channel>,
                id: String,
                store: &str,
                token: &str| {
        let mut s = swipe(&id, "cust-1");
        s.store_id = store.into();
        let mut c = c.clone();
        let token = token.to_owned();
        async move { c.record_swipe(with_bearer(request(s), &token)).await }
    };
    let mut accepted = 0;
    let mut throttled = Vec::new();
    for i in 0..10 {
        match call(&mut client, format!("sw-rate-1-{i}"), "store-1", &token_1).await {
            Ok(_) => accepted += 1,
            Err(status) => throttled.push(status),
        }
    }
    assert!(
        (3..10).contains(&accepted),
        "the burst goes through, then no more: {accepted}"
    );
    let first = throttled.first().expect("some calls are refused");
    assert_eq!(first.code(), Code::ResourceExhausted, "{first:?}");
    let wait = first
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .expect("a RetryInfo detail");
    assert!(
        wait > std::time::Duration::ZERO && wait <= std::time::Duration::from_millis(400),
        "{wait:?}"
    );
    assert!(
        first.metadata().get("grpc-retry-pushback-ms").is_some(),
        "{first:?}"
    );

    call(&mut client, "sw-rate-2-0".into(), "store-2", &token_2)
        .await
        .expect("another gateway has its own budget");
    tokio::time::sleep(wait).await;
    call(&mut client, "sw-rate-1-after".into(), "store-1", &token_1)
        .await
        .expect("after the wait, the gateway gets through");
    app.stop().await.expect("stops");

    let log = EmbeddedLog::open(dir.path()).expect("reopen");
    assert_eq!(
        total_records(&log).await,
        accepted + 2,
        "exactly the accepted swipes are written"
    );
}
