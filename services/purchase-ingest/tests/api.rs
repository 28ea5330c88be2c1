//! purchase-ingest through its real gRPC API, against a real Kafka-protocol broker (Tansu)
//! and, where the behaviour is backend-independent, the embedded log too: what an accepted
//! swipe becomes on the topic, retries of one swipe, card numbers, and health and
//! reflection for generic clients. Refused input is in `invalid.rs`, bytes that are not a
//! message and one-swipe streams in `wire.rs`, a lost broker in `broker_loss.rs`, calls in
//! flight at shutdown and under load in `in_flight.rs`.

mod common;

use std::time::Duration;

use chrono::DateTime;
use churnguard_eventlog::EventLog;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_kafka::KafkaLog;
use churnguard_proto::ingest::v1 as pb;
use churnguard_testkit::{Tansu, eventually};
use common::{
    channel, client, envelope, kafka_settings, read_topic, request, settings, spawn_app, swipe,
};
use purchase_ingest::config::{Backend, Secret};
use serde_json::json;

// ---------------------------------------------------------------------------------
// The exact event, on both backends.

async fn the_exact_event_comes_out<L: EventLog, R: EventLog>(app_log: L, reader: &R) {
    let app = spawn_app(settings(Backend::Kafka), app_log).await;
    let mut client = client(&app).await;
    let mut req = tonic::Request::new(request(swipe("sw-exact-1", "cust-42")));
    req.metadata_mut().insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .expect("ascii"),
    );
    let accepted = client
        .record_swipe(req)
        .await
        .expect("swipe accepted")
        .into_inner()
        .accepted
        .expect("accepted");

    let records = read_topic(reader).await;
    assert_eq!(records.len(), 1, "exactly one event written");
    let r = &records[0];
    assert_eq!(
        (r.partition, r.offset),
        (accepted.partition, accepted.offset)
    );
    assert_eq!(r.key, b"cust-42", "keyed by customer");
    assert_eq!(
        r.timestamp_ms,
        DateTime::parse_from_rfc3339("2026-11-22T10:15:00+01:00")
            .expect("time")
            .timestamp_millis(),
        "the record carries event time"
    );
    assert_eq!(
        r.header("content-type"),
        Some(&b"application/cloudevents+json; charset=utf-8"[..])
    );
    let tp = String::from_utf8(
        r.header("traceparent")
            .expect("traceparent header")
            .to_vec(),
    )
    .expect("utf8");
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "the caller's trace continues into the record: {tp}"
    );
    assert_eq!(
        envelope(r),
        json!({
            "specversion": "1.0",
            "id": accepted.event_id,
            "source": "/churnguard/stores/store-1",
            "type": "churnguard.purchase.card_swiped.v1",
            "subject": "cust-42",
            "time": "2026-11-22T10:15:00+01:00",
            "datacontenttype": "application/json",
            "data": {
                "swipe_id": "sw-exact-1",
                "customer": "cust-42",
                "store_id": "store-1",
                "terminal_id": "till-1",
                "employee_id": "emp-1",
                "occurred_at": "2026-11-22T10:15:00+01:00",
                "amount": {"minor_units": 1250, "currency": "EUR"},
                "item_count": 3
            }
        })
    );
    assert_eq!(accepted.event_id.len(), 36, "a UUID");
    app.stop().await.expect("clean shutdown");
}

/// On Kafka: an accepted swipe is on the topic as the exact CloudEvent, keyed by customer,
/// at event time, with the caller's trace.
#[tokio::test(flavor = "multi_thread")]
async fn kafka_a_swipe_comes_out_of_the_topic_as_the_exact_event() {
    let broker = Tansu::start();
    let reader = KafkaLog::new(kafka_settings(&broker)).expect("reader");
    the_exact_event_comes_out(
        KafkaLog::new(kafka_settings(&broker)).expect("log"),
        &reader,
    )
    .await;
}

/// On the embedded log: an accepted swipe is on the topic as the exact CloudEvent.
#[tokio::test(flavor = "multi_thread")]
async fn embedded_a_swipe_comes_out_of_the_topic_as_the_exact_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(dir.path()).expect("open");
    the_exact_event_comes_out(log.clone(), &log).await;
}

// ---------------------------------------------------------------------------------
// Retries, card numbers, health and reflection: against Kafka.

/// A retried swipe id is published again with the first event id; another swipe gets its
/// own.
#[tokio::test(flavor = "multi_thread")]
async fn kafka_a_duplicate_swipe_id_is_published_with_the_same_event_id() {
    let broker = Tansu::start();
    let reader = KafkaLog::new(kafka_settings(&broker)).expect("reader");
    let app = spawn_app(
        settings(Backend::Kafka),
        KafkaLog::new(kafka_settings(&broker)).expect("log"),
    )
    .await;
    let mut client = client(&app).await;
    let first = client
        .record_swipe(request(swipe("sw-dup", "cust-7")))
        .await
        .expect("first")
        .into_inner();
    let again = client
        .record_swipe(request(swipe("sw-dup", "cust-7")))
        .await
        .expect("retry")
        .into_inner();
    let other = client
        .record_swipe(request(swipe("sw-other", "cust-7")))
        .await
        .expect("other")
        .into_inner();
    let (first, again, other) = (
        first.accepted.expect("accepted"),
        again.accepted.expect("accepted"),
        other.accepted.expect("accepted"),
    );
    assert_eq!(first.event_id, again.event_id);
    assert_ne!(first.event_id, other.event_id);
    assert_eq!(
        first.partition, again.partition,
        "same customer, same partition"
    );
    assert_eq!(
        again.offset,
        first.offset + 1,
        "the retry is published again, after the first"
    );

    let ids: Vec<String> = read_topic(&reader)
        .await
        .iter()
        .map(|r| envelope(r)["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        ids,
        [first.event_id.clone(), first.event_id, other.event_id]
    );
    app.stop().await.expect("clean shutdown");
}

/// Card numbers, also one sent as a customer id, are tokenised before anything is written.
#[tokio::test(flavor = "multi_thread")]
async fn kafka_raw_card_numbers_are_tokenised_before_anything_is_written() {
    let broker = Tansu::start();
    let reader = KafkaLog::new(kafka_settings(&broker)).expect("reader");
    let mut s = settings(Backend::Kafka);
    s.card_token_key = Some(Secret::new("test-key-test-key-test-key-test-key"));
    let app = spawn_app(s, KafkaLog::new(kafka_settings(&broker)).expect("log")).await;
    let mut client = client(&app).await;
    for (id, customer) in [
        (
            "sw-pan-1",
            pb::swipe::Customer::CardNumber("4111 1111 1111 1111".into()),
        ),
        (
            "sw-pan-2",
            pb::swipe::Customer::CardNumber("4111111111111111".into()),
        ),
        // A card number sent in the id field by mistake is caught too.
        (
            "sw-pan-3",
            pb::swipe::Customer::CustomerId("4111111111111111".into()),
        ),
    ] {
        let s = pb::Swipe {
            customer: Some(customer),
            ..swipe(id, "x")
        };
        client.record_swipe(request(s)).await.expect("accepted");
    }
    let records = read_topic(&reader).await;
    assert_eq!(records.len(), 3);
    let customers: Vec<String> = records
        .iter()
        .map(|r| {
            envelope(r)["data"]["customer"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert!(
        customers
            .iter()
            .all(|c| c.starts_with("ct_") && *c == customers[0]),
        "{customers:?}"
    );
    for r in &records {
        let raw = String::from_utf8_lossy(&r.payload);
        assert!(
            !raw.contains("4111111111111111") && !raw.contains("4111 1111"),
            "PAN leaked: {raw}"
        );
        assert!(!String::from_utf8_lossy(&r.key).contains("4111"));
    }
    app.stop().await.expect("clean shutdown");
}

/// gRPC health reports SERVING, and reflection (v1 and v1alpha) lists the services.
#[tokio::test(flavor = "multi_thread")]
async fn kafka_health_and_reflection_work_for_generic_clients() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let broker = Tansu::start();
    let app = spawn_app(
        settings(Backend::Kafka),
        KafkaLog::new(kafka_settings(&broker)).expect("log"),
    )
    .await;
    let mut health = HealthClient::new(channel(&app).await);
    for service in ["", "churnguard.ingest.v1.PurchaseIngest"] {
        let status = eventually(Duration::from_secs(30), "SERVING", || {
            let mut health = health.clone();
            async move {
                let r = health
                    .check(HealthCheckRequest {
                        service: service.into(),
                    })
                    .await
                    .ok()?;
                (r.into_inner().status == ServingStatus::Serving as i32).then_some(())
            }
        })
        .await;
        let () = status;
    }
    let _ = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("check");

    let mut reflection = ServerReflectionClient::new(channel(&app).await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .expect("reflection")
        .into_inner();
    let answer = answers.message().await.expect("answer").expect("one");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"churnguard.ingest.v1.PurchaseIngest".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );

    // v1alpha too, for older grpcurl versions.
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest as AlphaReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    let mut alpha = AlphaClient::new(channel(&app).await);
    let req = AlphaReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::FileContainingSymbol(
            "churnguard.ingest.v1.PurchaseIngest".into(),
        )),
    };
    let answer = alpha
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .expect("v1alpha")
        .into_inner()
        .message()
        .await
        .expect("answer")
        .expect("one");
    assert!(answer.message_response.is_some());
    app.stop().await.expect("clean shutdown");
}
