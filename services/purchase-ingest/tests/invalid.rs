//! purchase-ingest refuses bad swipes through its real gRPC API: every bad field is named
//! (google.rpc.BadRequest), nothing refused is written, and a bad swipe in a batch is
//! refused alone. Against a Kafka-protocol broker (Tansu) and the embedded log.

mod common;

use churnguard_eventlog::EventLog;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_kafka::KafkaLog;
use churnguard_proto::ingest::v1 as pb;
use churnguard_testkit::Tansu;
use common::{
    client, envelope, kafka_settings, read_topic, request, settings, spawn_app, swipe,
    total_records,
};
use purchase_ingest::config::Backend;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic_types::StatusExt;

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
    tx.send(pb::StreamSwipesRequest {
        swipes: batch,
        historical: false,
    })
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

/// On Kafka: in a batch, only the bad swipe is refused (naming its field); the rest are
/// published.
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

/// On the embedded log: in a batch, only the bad swipe is refused; the rest are published.
#[tokio::test(flavor = "multi_thread")]
async fn embedded_a_batch_with_one_bad_swipe_gives_one_error_and_publishes_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(dir.path()).expect("open");
    a_bad_swipe_is_refused_alone(log.clone(), &log).await;
}

// ---------------------------------------------------------------------------------
// Every bad field named, against Kafka and on the embedded log.

/// A refused swipe names every bad field and never echoes a card number; a batch over the
/// limit is refused whole; nothing is written.
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
        (
            pb::RecordSwipeRequest {
                swipe: None,
                historical: false,
            },
            vec!["swipe"],
        ),
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
    tx.send(pb::StreamSwipesRequest {
        swipes: four,
        historical: false,
    })
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

/// Megabyte values get a short INVALID_ARGUMENT naming each field, not echoing the values.
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

/// Only ISO currencies in current use are accepted.
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
