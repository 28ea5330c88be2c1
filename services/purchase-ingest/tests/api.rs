//! purchase-ingest through its real gRPC API, against a real Kafka-protocol broker (Tansu)
//! and, where the behaviour is backend-independent, the embedded log too.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_eventlog::{EventLog, LogError, OutgoingRecord, Record, contract};
use churnguard_kafka::{KafkaLog, KafkaSettings};
use churnguard_proto::ingest::v1 as pb;
use churnguard_proto::ingest::v1::purchase_ingest_client::PurchaseIngestClient;
use churnguard_telemetry::Telemetry;
use churnguard_testkit::{Tansu, eventually, init_test_logging};
use purchase_ingest::config::{Backend, Secret};
use purchase_ingest::{App, Running, Settings};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

const TOPIC: &str = "purchases.v1";
const PARTITIONS: u32 = 4;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
        .expect("fixed time")
        .to_utc()
}

fn settings(backend: Backend) -> Settings {
    let mut s = Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        publish_timeout_ms: 4_000,
        health_probe_interval_ms: 200,
        shutdown_grace_ms: 5_000,
        ..Settings::default()
    };
    s.topics.partitions = PARTITIONS;
    s.log.backend = backend;
    s
}

fn kafka_settings(broker: &Tansu) -> KafkaSettings {
    KafkaSettings {
        bootstrap_servers: broker.bootstrap(),
        delivery_timeout_ms: 2_000,
        queue_timeout_ms: 500,
        request_timeout_ms: 2_000,
        ..KafkaSettings::default()
    }
}

async fn client(app: &Running) -> PurchaseIngestClient<Channel> {
    PurchaseIngestClient::connect(app.endpoint())
        .await
        .expect("connect to purchase-ingest")
}

async fn channel(app: &Running) -> Channel {
    Channel::from_shared(app.endpoint())
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

async fn spawn_app<L: EventLog>(settings: Settings, log: L) -> Running {
    init_test_logging();
    App::build_with_clock(
        settings,
        log,
        Arc::new(Telemetry::tracer_only("test")),
        Arc::new(now),
    )
    .await
    .expect("build purchase-ingest")
    .spawn()
}

fn swipe(id: &str, customer: &str) -> pb::Swipe {
    pb::Swipe {
        swipe_id: id.into(),
        customer: Some(pb::swipe::Customer::CustomerId(customer.into())),
        store_id: "store-1".into(),
        terminal_id: "till-1".into(),
        employee_id: "emp-1".into(),
        occurred_at: "2026-11-22T10:15:00+01:00".into(),
        amount: Some(pb::Amount {
            minor_units: 1250,
            currency: "EUR".into(),
        }),
        item_count: 3,
    }
}

fn request(s: pb::Swipe) -> pb::RecordSwipeRequest {
    pb::RecordSwipeRequest { swipe: Some(s) }
}

/// Every record of the topic, by partition.
async fn read_topic<L: EventLog>(log: &L) -> Vec<Record> {
    let mut out = Vec::new();
    for p in 0..PARTITIONS {
        let end = log.end_offset(TOPIC, p).await.expect("end offset");
        out.extend(contract::read_all(log, TOPIC, p, end).await);
    }
    out
}

async fn total_records<L: EventLog>(log: &L) -> u64 {
    let mut n = 0;
    for p in 0..PARTITIONS {
        n += log.end_offset(TOPIC, p).await.expect("end offset");
    }
    n
}

fn envelope(r: &Record) -> Value {
    serde_json::from_slice(&r.payload).expect("payload is JSON")
}

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

#[tokio::test(flavor = "multi_thread")]
async fn embedded_a_swipe_comes_out_of_the_topic_as_the_exact_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(dir.path()).expect("open");
    the_exact_event_comes_out(log.clone(), &log).await;
}

// ---------------------------------------------------------------------------------
// A bad swipe in a batch, on both backends.

async fn a_bad_swipe_is_refused_alone<L: EventLog, R: EventLog>(app_log: L, reader: &R) {
    let app = spawn_app(settings(Backend::Kafka), app_log).await;
    let mut client = client(&app).await;
    let mut batch: Vec<pb::Swipe> = (0..5)
        .map(|i| swipe(&format!("sw-b-{i}"), &format!("cust-{i}")))
        .collect();
    batch[2].amount = Some(pb::Amount {
        minor_units: 100,
        currency: "euro".into(),
    });
    let (tx, rx) = mpsc::channel(1);
    tx.send(pb::StreamSwipesRequest { swipes: batch })
        .await
        .expect("send");
    drop(tx);
    let mut answers = client
        .stream_swipes(ReceiverStream::new(rx))
        .await
        .expect("stream opens")
        .into_inner();
    let answer = answers
        .message()
        .await
        .expect("answer")
        .expect("one answer");
    assert!(
        answers.message().await.expect("end").is_none(),
        "one answer per batch"
    );
    assert_eq!(answer.results.len(), 5);
    for (i, r) in answer.results.iter().enumerate() {
        assert_eq!(r.index as usize, i);
        assert_eq!(r.swipe_id, format!("sw-b-{i}"));
        match (&r.outcome, i) {
            (Some(pb::swipe_result::Outcome::Rejected(rej)), 2) => {
                assert_eq!(rej.code, "INVALID_ARGUMENT");
                let fields: Vec<&str> = rej
                    .field_violations
                    .iter()
                    .map(|v| v.field.as_str())
                    .collect();
                assert_eq!(fields, ["amount.currency"]);
            }
            (Some(pb::swipe_result::Outcome::Accepted(_)), i) if i != 2 => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    let ids: Vec<String> = read_topic(reader)
        .await
        .iter()
        .map(|r| {
            envelope(r)["data"]["swipe_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let mut ids = ids;
    ids.sort();
    assert_eq!(ids, ["sw-b-0", "sw-b-1", "sw-b-3", "sw-b-4"]);
    app.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_a_batch_with_one_bad_swipe_gives_one_error_and_publishes_the_rest() {
    let broker = Tansu::start();
    let reader = KafkaLog::new(kafka_settings(&broker)).expect("reader");
    a_bad_swipe_is_refused_alone(
        KafkaLog::new(kafka_settings(&broker)).expect("log"),
        &reader,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_a_batch_with_one_bad_swipe_gives_one_error_and_publishes_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(dir.path()).expect("open");
    a_bad_swipe_is_refused_alone(log.clone(), &log).await;
}

// ---------------------------------------------------------------------------------
// Validation, duplicates, card numbers, health and reflection: against Kafka.

#[tokio::test(flavor = "multi_thread")]
async fn kafka_invalid_input_names_every_field_and_writes_nothing() {
    let broker = Tansu::start();
    let reader = KafkaLog::new(kafka_settings(&broker)).expect("reader");
    let mut s = settings(Backend::Kafka);
    s.limits.max_batch_swipes = 3;
    let app = spawn_app(s, KafkaLog::new(kafka_settings(&broker)).expect("log")).await;
    let mut client = client(&app).await;

    let bad = pb::Swipe {
        swipe_id: String::new(),
        customer: None,
        store_id: "store 1".into(),
        terminal_id: String::new(),
        employee_id: "emp/1".into(),
        occurred_at: "2026-11-22 10:15".into(),
        amount: Some(pb::Amount {
            minor_units: -5,
            currency: "EU".into(),
        }),
        item_count: 0,
    };
    let cases: Vec<(pb::RecordSwipeRequest, Vec<&str>)> = vec![
        (
            request(bad),
            vec![
                "swipe_id",
                "customer",
                "store_id",
                "terminal_id",
                "employee_id",
                "occurred_at",
                "amount.minor_units",
                "amount.currency",
                "item_count",
            ],
        ),
        (pb::RecordSwipeRequest { swipe: None }, vec!["swipe"]),
        (
            request(pb::Swipe {
                occurred_at: "2026-11-22T12:30:00Z".into(),
                ..swipe("sw-future", "c")
            }),
            vec!["occurred_at"],
        ),
        (
            request(pb::Swipe {
                occurred_at: "2024-01-01T00:00:00Z".into(),
                ..swipe("sw-old", "c")
            }),
            vec!["occurred_at"],
        ),
        (
            request(pb::Swipe {
                customer: Some(pb::swipe::Customer::CardNumber("4111111111111111".into())),
                ..swipe("sw-pan", "c")
            }),
            vec!["customer.card_number"],
        ),
    ];
    for (req, fields) in cases {
        let status = client.record_swipe(req).await.expect_err("must be refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        let bad_request = status
            .get_details_bad_request()
            .expect("google.rpc.BadRequest detail");
        let got: Vec<&str> = bad_request
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(got, fields);
        assert!(
            !status.message().contains("4111111111111111"),
            "never echo a card number"
        );
    }

    // A batch over the limit is refused as a whole, naming the field.
    let (tx, rx) = mpsc::channel(1);
    let four: Vec<pb::Swipe> = (0..4).map(|i| swipe(&format!("sw-big-{i}"), "c")).collect();
    tx.send(pb::StreamSwipesRequest { swipes: four })
        .await
        .expect("send");
    drop(tx);
    let mut answers = client
        .stream_swipes(ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    let status = answers.message().await.expect_err("batch too large");
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: Vec<String> = status
        .get_details_bad_request()
        .expect("detail")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["swipes"]);

    assert_eq!(total_records(&reader).await, 0, "nothing was written");
    app.stop().await.expect("clean shutdown");
}

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

// ---------------------------------------------------------------------------------
// The broker dies mid-stream.

#[tokio::test(flavor = "multi_thread")]
async fn kafka_broker_killed_mid_stream_no_ok_for_unwritten_swipes_and_service_resumes() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let mut broker = Tansu::start();
    let reader = KafkaLog::new(kafka_settings(&broker)).expect("reader");
    let s = settings(Backend::Kafka);
    let publish_timeout = s.publish_timeout();
    let app = spawn_app(s, KafkaLog::new(kafka_settings(&broker)).expect("log")).await;
    let mut client = client(&app).await;
    let health = HealthClient::new(channel(&app).await);

    // One gateway stream, batch after batch, for the whole test.
    let (batches, rx) = mpsc::channel::<pb::StreamSwipesRequest>(1);
    let mut answers = client
        .stream_swipes(ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    let (progress_tx, mut progress) = mpsc::unbounded_channel::<(usize, usize)>();
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let driver = tokio::spawn(async move {
        let mut accepted: HashMap<String, String> = HashMap::new();
        let mut failures: Vec<(String, Duration)> = Vec::new();
        let mut seq = 0;
        loop {
            if stop_rx.try_recv().is_ok() {
                break;
            }
            let swipes: Vec<pb::Swipe> = (0..20)
                .map(|_| {
                    seq += 1;
                    swipe(&format!("sw-kill-{seq}"), &format!("cust-{}", seq % 50))
                })
                .collect();
            let started = Instant::now();
            batches
                .send(pb::StreamSwipesRequest { swipes })
                .await
                .expect("send batch");
            let answer = answers
                .message()
                .await
                .expect("stream stays up")
                .expect("an answer per batch");
            let took = started.elapsed();
            for r in answer.results {
                match r.outcome {
                    Some(pb::swipe_result::Outcome::Accepted(a)) => {
                        accepted.insert(r.swipe_id, a.event_id);
                    }
                    Some(pb::swipe_result::Outcome::Rejected(rej)) => {
                        failures.push((rej.code, took))
                    }
                    None => panic!("a result without an outcome"),
                }
            }
            let _ = progress_tx.send((accepted.len(), failures.len()));
        }
        (accepted, failures)
    });

    wait_for(&mut progress, "swipes flowing", |(a, _)| a >= 300).await;
    broker.kill();
    let (accepted_at_kill, _) = wait_for(
        &mut progress,
        "failures while the broker is down",
        |(_, f)| f >= 40,
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "NOT_SERVING while the broker is down",
        || {
            let mut h = health.clone();
            async move {
                let s = h
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .ok()?
                    .into_inner();
                (s.status == ServingStatus::NotServing as i32).then_some(())
            }
        },
    )
    .await;

    broker.restart();
    wait_for(
        &mut progress,
        "service resuming after the broker returns",
        move |(a, _)| a >= accepted_at_kill + 300,
    )
    .await;
    eventually(Duration::from_secs(30), "SERVING again", || {
        let mut h = health.clone();
        async move {
            let s = h
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .ok()?
                .into_inner();
            (s.status == ServingStatus::Serving as i32).then_some(())
        }
    })
    .await;
    let _ = stop_tx.send(());
    let (accepted, failures) = driver.await.expect("driver");

    // Failures were retriable codes, answered within the bound, never OK.
    assert!(!failures.is_empty());
    for (code, took) in &failures {
        assert!(
            code == "UNAVAILABLE" || code == "DEADLINE_EXCEEDED",
            "failure code {code}"
        );
        assert!(
            *took <= publish_timeout + Duration::from_secs(3),
            "a failed batch took {took:?}"
        );
    }
    // Every acknowledged swipe is in the log, once.
    let mut in_log: HashMap<String, usize> = HashMap::new();
    for r in read_topic(&reader).await {
        *in_log
            .entry(envelope(&r)["id"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    let lost: Vec<&String> = accepted
        .iter()
        .filter(|(_, id)| !in_log.contains_key(*id))
        .map(|(s, _)| s)
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged swipes lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
    let twice: Vec<&String> = accepted
        .values()
        .filter(|id| in_log.get(*id).copied().unwrap_or(0) > 1)
        .collect();
    assert!(
        twice.is_empty(),
        "acknowledged swipes written twice: {}",
        twice.len()
    );
    eprintln!(
        "broker kill: {} swipes acknowledged, {} refused while the broker was down, all acknowledged found once",
        accepted.len(),
        failures.len()
    );
    app.stop().await.expect("clean shutdown");
}

// ---------------------------------------------------------------------------------
// Graceful shutdown finishes what is in flight.

/// Waits until the driver reports progress `(accepted, failed)` that satisfies `f`.
async fn wait_for(
    progress: &mut mpsc::UnboundedReceiver<(usize, usize)>,
    what: &str,
    f: impl Fn((usize, usize)) -> bool,
) -> (usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let p = tokio::time::timeout(left, progress.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .expect("driver running");
        if f(p) {
            return p;
        }
    }
}

/// Delays every append, so a call is surely in flight when shutdown starts.
struct SlowLog<L>(L, Duration);

impl<L: EventLog> EventLog for SlowLog<L> {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32, LogError> {
        self.0.ensure_topic(topic, partitions).await
    }
    async fn append(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Vec<Result<churnguard_eventlog::Appended, LogError>> {
        tokio::time::sleep(self.1).await;
        self.0.append(topic, records).await
    }
    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Record>, LogError> {
        self.0.read(topic, partition, from, max, wait).await
    }
    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        self.0.end_offset(topic, partition).await
    }
    async fn join_group(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<churnguard_eventlog::Membership, LogError> {
        self.0.join_group(group, topic).await
    }
    async fn check(&self) -> Result<(), LogError> {
        self.0.check().await
    }
    async fn flush(&self, timeout: Duration) -> Result<(), LogError> {
        self.0.flush(timeout).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_shutdown_finishes_in_flight_calls_and_flushes() {
    let broker = Tansu::start();
    let reader = KafkaLog::new(kafka_settings(&broker)).expect("reader");
    let log = SlowLog(
        KafkaLog::new(kafka_settings(&broker)).expect("log"),
        Duration::from_millis(700),
    );
    let app = spawn_app(settings(Backend::Kafka), log).await;
    let mut client = client(&app).await;
    let in_flight = tokio::spawn(async move {
        client
            .record_swipe(request(swipe("sw-inflight", "cust-1")))
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = Instant::now();
    app.stop().await.expect("clean shutdown");
    let answer = in_flight
        .await
        .expect("task")
        .expect("the in-flight call completes with OK");
    assert!(answer.into_inner().accepted.is_some());
    assert!(stopped.elapsed() < Duration::from_secs(5));
    let records = read_topic(&reader).await;
    assert_eq!(
        records.len(),
        1,
        "the in-flight swipe was written before the service stopped"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_swipes_in_flight_are_bounded_and_the_excess_gets_unavailable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(dir.path()).expect("open");
    let mut s = settings(Backend::Embedded);
    s.publish_timeout_ms = 5_000;
    s.limits.max_batch_swipes = 5;
    s.limits.max_in_flight_swipes = 5;
    s.limits.max_capacity_wait_ms = 200;
    let app = spawn_app(s, SlowLog(log.clone(), Duration::from_millis(1_500))).await;

    // Five swipes hold every permit while the (slow) log writes them.
    let mut first = client(&app).await;
    let (tx, rx) = mpsc::channel(1);
    let five: Vec<pb::Swipe> = (0..5)
        .map(|i| swipe(&format!("sw-hold-{i}"), "c"))
        .collect();
    tx.send(pb::StreamSwipesRequest { swipes: five })
        .await
        .expect("send");
    let mut held = first
        .stream_swipes(ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    tokio::time::sleep(Duration::from_millis(150)).await;

    let mut second = client(&app).await;
    let started = Instant::now();
    let status = second
        .record_swipe(request(swipe("sw-excess", "c")))
        .await
        .expect_err("no room");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused after the capacity wait, not the publish timeout"
    );

    drop(tx);
    let answer = held.message().await.expect("answer").expect("one");
    assert!(
        answer
            .results
            .iter()
            .all(|r| matches!(r.outcome, Some(pb::swipe_result::Outcome::Accepted(_)))),
        "the batch holding the permits was written"
    );
    let ids: Vec<String> = read_topic(&log)
        .await
        .iter()
        .map(|r| {
            envelope(r)["data"]["swipe_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert!(
        !ids.contains(&"sw-excess".to_owned()),
        "the refused swipe was not written"
    );
    app.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_a_paused_broker_gets_bounded_failures_never_ok_then_service_resumes() {
    let broker = Tansu::start();
    let reader = KafkaLog::new(kafka_settings(&broker)).expect("reader");
    let s = settings(Backend::Kafka);
    let bound = s.publish_timeout() + Duration::from_secs(2);
    let app = spawn_app(s, KafkaLog::new(kafka_settings(&broker)).expect("log")).await;
    let mut client = client(&app).await;
    let mut accepted = Vec::new();
    for i in 0..20 {
        let a = client
            .record_swipe(request(swipe(&format!("sw-pre-{i}"), "c")))
            .await
            .expect("healthy broker");
        accepted.push(a.into_inner().accepted.expect("accepted").event_id);
    }

    broker.pause();
    for i in 0..3 {
        let started = Instant::now();
        let outcome = client
            .record_swipe(request(swipe(&format!("sw-paused-{i}"), "c")))
            .await;
        let took = started.elapsed();
        let status = outcome.expect_err("a paused broker never yields OK");
        assert!(
            matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded),
            "{status:?}"
        );
        assert!(took <= bound, "answered in {took:?}, bound {bound:?}");
    }
    broker.resume();

    let resumed = eventually(
        Duration::from_secs(60),
        "writes after the broker resumes",
        || {
            let mut client = client.clone();
            async move {
                let r = client
                    .record_swipe(request(swipe("sw-after-pause", "c")))
                    .await
                    .ok()?;
                r.into_inner().accepted.map(|a| a.event_id)
            }
        },
    )
    .await;
    accepted.push(resumed);
    let in_log: Vec<String> = read_topic(&reader)
        .await
        .iter()
        .map(|r| envelope(r)["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    for id in &accepted {
        assert!(in_log.contains(id), "acknowledged event {id} missing");
    }
    app.stop().await.expect("clean shutdown");
}

// ---------------------------------------------------------------------------------
// On the wire: small messages at full speed, bytes that are not a message, huge values.

/// Sends raw bytes as gRPC messages, each in its own DATA frame (as a gateway sending
/// each swipe as it happens does), and decodes the answers as `D`.
struct RawCodec<D>(std::marker::PhantomData<D>);

impl<D> Default for RawCodec<D> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

struct RawEncoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        buf.put_slice(&item);
        Ok(())
    }

    fn buffer_settings(&self) -> tonic::codec::BufferSettings {
        // Yield after every message: one message, one DATA frame.
        tonic::codec::BufferSettings::new(1024, 1)
    }
}

impl<D: prost::Message + Default + Send + 'static> tonic::codec::Codec for RawCodec<D> {
    type Encode = Vec<u8>;
    type Decode = D;
    type Encoder = RawEncoder;
    type Decoder = tonic_prost::ProstDecoder<D>;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstCodec::<Vec<u8>, D>::raw_decoder(Default::default())
    }
}

const RECORD_SWIPE: &str = "/churnguard.ingest.v1.PurchaseIngest/RecordSwipe";
const STREAM_SWIPES: &str = "/churnguard.ingest.v1.PurchaseIngest/StreamSwipes";

async fn raw_client(app: &Running) -> tonic::client::Grpc<Channel> {
    let mut grpc = tonic::client::Grpc::new(channel(app).await);
    grpc.ready().await.expect("ready");
    grpc
}

/// A unary call with `body` as the request message's bytes.
async fn raw_record_swipe(
    app: &Running,
    body: Vec<u8>,
) -> Result<pb::RecordSwipeResponse, tonic::Status> {
    let mut grpc = raw_client(app).await;
    grpc.unary(
        tonic::Request::new(body),
        tonic::codegen::http::uri::PathAndQuery::from_static(RECORD_SWIPE),
        RawCodec::<pb::RecordSwipeResponse>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

/// Opens StreamSwipes with `messages` as the request messages' bytes.
async fn raw_stream_swipes(
    app: &Running,
    messages: impl tokio_stream::Stream<Item = Vec<u8>> + Send + 'static,
) -> tonic::Streaming<pb::StreamSwipesResponse> {
    let mut grpc = raw_client(app).await;
    grpc.streaming(
        tonic::Request::new(messages),
        tonic::codegen::http::uri::PathAndQuery::from_static(STREAM_SWIPES),
        RawCodec::<pb::StreamSwipesResponse>::default(),
    )
    .await
    .expect("stream opens")
    .into_inner()
}

fn one_swipe_message(i: usize) -> Vec<u8> {
    use prost::Message;
    pb::StreamSwipesRequest {
        swipes: vec![swipe(&format!("sw-{i}"), &format!("cust-{}", i % 1_000))],
    }
    .encode_to_vec()
}

/// `n` messages of one swipe each, each its own DATA frame, sent as fast as the client can;
/// the answers are read from the start, or only after `reader_pause`.
async fn one_swipe_per_message(n: usize, reader_pause: Duration) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(dir.path()).expect("open");
    let app = spawn_app(settings(Backend::Embedded), log.clone()).await;
    let frame = one_swipe_message(0).len();
    let (tx, rx) = mpsc::channel::<Vec<u8>>(1_024);
    let sender = tokio::spawn(async move {
        for i in 0..n {
            if tx.send(one_swipe_message(i)).await.is_err() {
                return i;
            }
        }
        n
    });
    let started = Instant::now();
    let mut answers = raw_stream_swipes(&app, ReceiverStream::new(rx)).await;
    tokio::time::sleep(reader_pause).await;
    let mut answered = 0;
    while let Some(answer) = answers
        .message()
        .await
        .unwrap_or_else(|status| panic!("the stream failed after {answered} answers: {status:?}"))
    {
        assert_eq!(answer.results.len(), 1, "one result per one-swipe message");
        let r = &answer.results[0];
        assert_eq!(
            r.swipe_id,
            format!("sw-{answered}"),
            "answers come in order"
        );
        assert!(
            matches!(r.outcome, Some(pb::swipe_result::Outcome::Accepted(_))),
            "{r:?}"
        );
        answered += 1;
    }
    let took = started.elapsed();
    assert_eq!(sender.await.expect("sender"), n, "every message was sent");
    assert_eq!(answered, n, "every message was answered");

    // None lost, none written twice, and each customer's swipes in the order sent.
    assert_eq!(total_records(&log).await, n as u64);
    let mut last: HashMap<String, usize> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for r in read_topic(&log).await {
        let e = envelope(&r);
        let id = e["data"]["swipe_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let seq: usize = id.trim_start_matches("sw-").parse().expect("sw-<n>");
        let customer = e["data"]["customer"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if let Some(before) = last.insert(customer.clone(), seq) {
            assert!(
                before < seq,
                "{customer}: sw-{seq} written after sw-{before}"
            );
        }
        assert!(seen.insert(seq), "sw-{seq} written twice");
    }
    assert_eq!(seen.len(), n, "every swipe once");
    let rate = n as f64 / took.as_secs_f64();
    eprintln!(
        "{n} one-swipe messages ({frame} bytes each), reader paused {reader_pause:?}: \
         all accepted in {took:?}, {rate:.0} messages/s"
    );
    app.stop().await.expect("clean shutdown");
    rate
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_100k_one_swipe_messages_stream_at_full_speed_without_goaway() {
    one_swipe_per_message(100_000, Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_one_swipe_messages_with_a_reader_that_waits_are_held_back_not_cut_off() {
    one_swipe_per_message(30_000, Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_an_undecodable_batch_ends_the_stream_with_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(dir.path()).expect("open");
    let app = spawn_app(settings(Backend::Embedded), log.clone()).await;
    let garbage = b"not a protobuf message".to_vec();
    let messages = vec![one_swipe_message(0), garbage, one_swipe_message(2)];
    let mut answers = raw_stream_swipes(&app, tokio_stream::iter(messages)).await;
    let first = answers
        .message()
        .await
        .expect("batch 0 is answered")
        .expect("an answer");
    assert_eq!(first.results.len(), 1);
    assert_eq!(first.results[0].swipe_id, "sw-0");
    assert!(matches!(
        first.results[0].outcome,
        Some(pb::swipe_result::Outcome::Accepted(_))
    ));
    let status = answers
        .message()
        .await
        .expect_err("a stream that stops reading never ends with OK");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("batch 1 ") && status.message().contains("could not be"),
        "says which batch and why: {}",
        status.message()
    );
    assert!(
        !status.message().contains("not a protobuf"),
        "never echoes the bytes"
    );
    let ids: Vec<String> = read_topic(&log)
        .await
        .iter()
        .map(|r| {
            envelope(r)["data"]["swipe_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(ids, ["sw-0"], "nothing after the bad batch was processed");
    app.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_undecodable_requests_are_invalid_argument() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(dir.path()).expect("open");
    let app = spawn_app(settings(Backend::Embedded), log.clone()).await;
    let cases: [(&str, Vec<u8>); 3] = [
        // A varint that never ends.
        ("random bytes", vec![0xff; 11]),
        // Field 1 (`swipe`, a message) sent as a varint.
        ("wrong wire type", vec![0x08, 0x01]),
        // `swipe { swipe_id: <0xff 0xfe> }`: a string that is not UTF-8.
        ("invalid UTF-8", vec![0x0a, 0x04, 0x0a, 0x02, 0xff, 0xfe]),
    ];
    for (what, body) in cases {
        let status = raw_record_swipe(&app, body).await.expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(
            status
                .message()
                .starts_with("the request could not be decoded: "),
            "{what}: {}",
            status.message()
        );
    }
    // The first message of a stream too.
    let mut answers = raw_stream_swipes(&app, tokio_stream::iter([vec![0x0a, 0x01, 0x08]])).await;
    let status = answers.message().await.expect_err("undecodable");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("batch 0 "),
        "{}",
        status.message()
    );
    assert_eq!(total_records(&log).await, 0);
    app.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_megabyte_values_get_a_short_invalid_argument_naming_each_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(dir.path()).expect("open");
    let app = spawn_app(settings(Backend::Embedded), log.clone()).await;
    let mut client = client(&app).await;
    let mb = 1024 * 1024;
    let huge = pb::Swipe {
        customer: Some(pb::swipe::Customer::CustomerId("c".repeat(mb))),
        occurred_at: "t".repeat(mb),
        amount: Some(pb::Amount {
            minor_units: 1,
            currency: "Q".repeat(mb),
        }),
        ..swipe("sw-huge", "x")
    };
    let status = client
        .record_swipe(request(huge))
        .await
        .expect_err("must be refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.code());
    let fields: Vec<String> = status
        .get_details_bad_request()
        .expect("google.rpc.BadRequest detail")
        .field_violations
        .into_iter()
        .map(|v| {
            assert!(v.description.len() <= 200, "{}: {}", v.field, v.description);
            v.field
        })
        .collect();
    assert_eq!(
        fields,
        ["customer.customer_id", "occurred_at", "amount.currency"]
    );
    assert!(
        status.message().len() < 1_000,
        "a short message, not the values: {} bytes",
        status.message().len()
    );
    assert_eq!(total_records(&log).await, 0);
    app.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_only_currencies_in_current_use_are_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(dir.path()).expect("open");
    let app = spawn_app(settings(Backend::Embedded), log.clone()).await;
    let mut client = client(&app).await;
    let with_currency = |id: &str, currency: &str| {
        request(pb::Swipe {
            amount: Some(pb::Amount {
                minor_units: 500,
                currency: currency.into(),
            }),
            ..swipe(id, "cust-1")
        })
    };
    let status = client
        .record_swipe(with_currency("sw-xyz", "XYZ"))
        .await
        .expect_err("XYZ is no currency");
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: Vec<String> = status
        .get_details_bad_request()
        .expect("detail")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["amount.currency"]);
    for code in ["EUR", "USD", "JPY"] {
        client
            .record_swipe(with_currency(&format!("sw-{code}"), code))
            .await
            .unwrap_or_else(|s| panic!("{code} refused: {s:?}"));
    }
    assert_eq!(total_records(&log).await, 3);
    app.stop().await.expect("clean shutdown");
}
