//! purchase-ingest's calls in flight: a graceful shutdown finishes and flushes them, and
//! the swipes in flight are bounded, the excess refused with UNAVAILABLE.

mod common;

use std::time::{Duration, Instant};

use churnguard_eventlog::EventLog;
use churnguard_eventlog::contract::{BeforeAppend, Intercepted};
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_kafka::KafkaLog;
use churnguard_proto::ingest::v1 as pb;
use churnguard_testkit::Tansu;
use common::{client, envelope, kafka_settings, read_topic, request, settings, spawn_app, swipe};
use purchase_ingest::config::Backend;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

/// `log` with every append delayed, so a call is surely in flight when shutdown starts.
fn slow<L: EventLog>(log: L, delay: Duration) -> Intercepted<L> {
    Intercepted::new(log, move || BeforeAppend::Wait(delay))
}

/// A graceful shutdown answers the call in flight with OK and writes its swipe first.
#[tokio::test(flavor = "multi_thread")]
async fn kafka_shutdown_finishes_in_flight_calls_and_flushes() {
    let broker = Tansu::start();
    let reader = KafkaLog::new(kafka_settings(&broker)).expect("reader");
    let log = slow(
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

/// While the swipes in flight hold every permit, another swipe gets UNAVAILABLE after the
/// capacity wait and is not written.
#[tokio::test(flavor = "multi_thread")]
async fn embedded_swipes_in_flight_are_bounded_and_the_excess_gets_unavailable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(dir.path()).expect("open");
    let mut s = settings(Backend::Embedded);
    s.publish_timeout_ms = 5_000;
    s.limits.max_batch_swipes = 5;
    s.limits.max_in_flight_swipes = 5;
    s.limits.max_capacity_wait_ms = 200;
    let app = spawn_app(s, slow(log.clone(), Duration::from_millis(1_500))).await;

    // Five swipes hold every permit while the (slow) log writes them.
    let mut first = client(&app).await;
    let (tx, rx) = mpsc::channel(1);
    let five: Vec<pb::Swipe> = (0..5)
        .map(|i| swipe(&format!("sw-hold-{i}"), "c"))
        .collect();
    tx.send(pb::StreamSwipesRequest {
        swipes: five,
        historical: false,
    })
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
