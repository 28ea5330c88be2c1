//! The producer span is one per append, not one per swipe: a StreamSwipes call sending
//! one swipe per message has the messages read while an append is in flight written
//! together, under one `send purchases.v1` span whose context every record of that
//! append carries. On a real Kafka-protocol broker (Tansu), exported over OTLP to the
//! test kit's in-process receiver. A call whose caller's `traceparent` says "not
//! sampled" makes no span at all (head sampling at the edge), and its record carries the
//! caller's value unchanged. (A tracer is process-wide, so this file holds one test.)

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use churnguard_kafka::KafkaLog;
use churnguard_proto::ingest::v1 as pb;
use churnguard_telemetry::{Sampling, Telemetry, TraceSettings};
use churnguard_testkit::Tansu;
use churnguard_testkit::otlp::{OtlpReceiver, ReceivedSpan, SpanKind};
use common::{TOPIC, client, kafka_settings, read_topic, settings, spawn_app, swipe};
use purchase_ingest::config::Backend;
use tokio_stream::wrappers::ReceiverStream;

/// The caller's trace and span, as its `traceparent` names them.
const CALLER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";
/// A caller whose trace is not sampled (flags `00`).
const UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
const MESSAGES: usize = 300;

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_of_single_swipes_makes_one_producer_span_per_append() {
    let receiver = OtlpReceiver::start().await;
    let telemetry = Telemetry::init_traces(
        "ingest-test",
        TraceSettings {
            endpoint: Some(receiver.endpoint()),
            sampling: Sampling::EVERY_TRACE,
        },
    );
    let broker = Tansu::start();
    let app = spawn_app(
        settings(Backend::Kafka),
        KafkaLog::new(kafka_settings(&broker)).expect("kafka"),
    )
    .await;

    // One stream, one swipe per message, all sent at once.
    let (tx, rx) = tokio::sync::mpsc::channel(MESSAGES);
    for i in 0..MESSAGES {
        tx.send(pb::StreamSwipesRequest {
            swipes: vec![swipe(&format!("sw-{i}"), &format!("cust-{}", i % 37))],
            historical: false,
        })
        .await
        .expect("queued");
    }
    drop(tx);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")
            .parse()
            .expect("ascii"),
    );
    let mut answers = client(&app)
        .await
        .stream_swipes(request)
        .await
        .expect("stream")
        .into_inner();
    let mut accepted = 0;
    while let Some(answer) = answers.message().await.expect("an answer") {
        accepted += answer
            .results
            .iter()
            .filter(|r| matches!(r.outcome, Some(pb::swipe_result::Outcome::Accepted(_))))
            .count();
    }
    assert_eq!(accepted, MESSAGES, "every swipe accepted");
    let mut unsampled = tonic::Request::new(pb::RecordSwipeRequest {
        swipe: Some(swipe("sw-unsampled", "cust-1")),
        historical: false,
    });
    unsampled
        .metadata_mut()
        .insert("traceparent", UNSAMPLED.parse().expect("ascii"));
    client(&app)
        .await
        .record_swipe(unsampled)
        .await
        .expect("the unsampled call is served as any other");
    app.stop().await.expect("stops");

    // Every record names the span of its append, in the caller's trace.
    let reader = KafkaLog::new(kafka_settings(&broker)).expect("reader");
    let mut records = read_topic(&reader).await;
    assert_eq!(records.len(), MESSAGES + 1);
    let at = records
        .iter()
        .position(|r| String::from_utf8_lossy(&r.payload).contains("\"sw-unsampled\""))
        .expect("the unsampled call's record");
    let last = records.swap_remove(at);
    assert_eq!(
        last.header("traceparent"),
        Some(UNSAMPLED.as_bytes()),
        "an untraced call's record carries its caller's context, not sampled"
    );
    let mut per_span: BTreeMap<String, usize> = BTreeMap::new();
    for r in &records {
        let tp = String::from_utf8(r.header("traceparent").expect("traceparent").to_vec())
            .expect("utf8");
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "a traceparent: {tp}");
        assert_eq!(parts[1], CALLER_TRACE, "the caller's trace continues: {tp}");
        *per_span.entry(parts[2].to_owned()).or_default() += 1;
    }

    // Those spans were exported: producer spans, children of the call's server span, each
    // counting exactly the records that carry it.
    let producers: Vec<ReceivedSpan> = wait_for_spans(&telemetry, &receiver, per_span.len()).await;
    let server: Vec<ReceivedSpan> = receiver
        .spans()
        .into_iter()
        .filter(|s| s.name() == "churnguard.ingest.v1.PurchaseIngest/StreamSwipes")
        .collect();
    assert_eq!(server.len(), 1, "one server span for the call");
    assert_eq!(server[0].parent_span_id(), CALLER_SPAN);
    for p in &producers {
        assert_eq!(p.kind(), SpanKind::Producer);
        assert_eq!(p.trace_id(), CALLER_TRACE);
        assert_eq!(p.parent_span_id(), server[0].span_id());
        assert_eq!(p.attr("messaging.destination.name").as_deref(), Some(TOPIC));
        assert_eq!(
            p.attr("messaging.batch.message_count"),
            per_span.get(&p.span_id()).map(usize::to_string),
            "span {} counts the records that carry it",
            p.span_id()
        );
    }
    assert!(
        per_span.len() < MESSAGES,
        "messages read while an append was in flight shared the next one's span: {} spans for {MESSAGES} messages",
        per_span.len()
    );
    eprintln!(
        "{MESSAGES} one-swipe messages: {} producer spans",
        per_span.len()
    );
    // Everything ended before the flush that brought the spans above.
    let unsampled_trace = UNSAMPLED.split('-').nth(1).expect("a trace id");
    let made: Vec<String> = receiver
        .spans()
        .iter()
        .filter(|s| s.trace_id() == unsampled_trace)
        .map(|s| s.name().to_owned())
        .collect();
    assert!(made.is_empty(), "no span for the unsampled call: {made:?}");
}

/// The exported `send purchases.v1` spans of the caller's trace, once there are `n`.
async fn wait_for_spans(
    telemetry: &Telemetry,
    receiver: &OtlpReceiver,
    n: usize,
) -> Vec<ReceivedSpan> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        telemetry.flush();
        let producers: Vec<ReceivedSpan> = receiver
            .spans()
            .into_iter()
            .filter(|s| s.name() == format!("send {TOPIC}") && s.trace_id() == CALLER_TRACE)
            .collect();
        if producers.len() >= n {
            assert_eq!(producers.len(), n, "one exported span per append");
            return producers;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} producer spans exported",
            producers.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
