//! One trace from the till to the outreach call, on a real Kafka-protocol broker (Tansu)
//! and a real Redis, exported over OTLP to an in-process receiver: a customer dines twice
//! a week for ten weeks and then stays away; their last swipe comes in with the till's
//! `traceparent`; churn-scoring finds them at risk and feedback opens an outreach case.
//! The spans of that swipe, the assessment, the signal and the case are one trace, each
//! the child of the one before, with the conventions' kinds and attributes.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use churnguard_domain::policy::{DefectionPolicy, RuleSet};
use churnguard_eventlog::{EventLog, contract};
use churnguard_kafka::{KafkaLog, KafkaSettings};
use churnguard_proto::feedback::v1 as fb;
use churnguard_proto::feedback::v1::feedback_client::FeedbackClient;
use churnguard_proto::ingest::v1 as pb;
use churnguard_proto::ingest::v1::purchase_ingest_client::PurchaseIngestClient;
use churnguard_telemetry::{Sampling, Telemetry, TraceSettings};
use churnguard_testkit::otlp::{OtlpReceiver, ReceivedSpan, SpanKind};
use churnguard_testkit::{RedisServer, Tansu};
use churnguard_vault::Kek;
use purchase_ingest::config::Backend;

const WAIT: Duration = Duration::from_secs(120);
/// The till's trace and span, as its `traceparent` names them.
const TILL_TRACE: &str = "5ee1f7c0a1d2b3c4d5e6f708192a3b4c";
const TILL_SPAN: &str = "1a2b3c4d5e6f7081";
const CUSTOMER: &str = "cust-traced";

/// At risk three typical gaps after the last visit, defected after eight.
fn restaurant() -> DefectionPolicy {
    DefectionPolicy {
        recent_days: 28,
        baseline_days: 56,
        min_baseline_visits: 4,
        at_risk: RuleSet {
            overdue_gaps: Some(3.0),
            min_rules: 1,
            ..RuleSet::default()
        },
        defected: RuleSet {
            overdue_gaps: Some(8.0),
            min_rules: 1,
            ..RuleSet::default()
        },
    }
}

fn swipe(n: usize, days_ago: i64) -> pb::Swipe {
    let at = Utc::now() - TimeDelta::days(days_ago);
    pb::Swipe {
        swipe_id: format!("sw-traced-{n}"),
        customer: Some(pb::swipe::Customer::CustomerId(CUSTOMER.into())),
        store_id: "store-7".into(),
        terminal_id: "till-1".into(),
        employee_id: "emp-1".into(),
        occurred_at: at.to_rfc3339(),
        amount: Some(pb::Amount {
            minor_units: 4_000,
            currency: "EUR".into(),
        }),
        item_count: 2,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_trace_runs_from_the_till_to_the_outreach_case() {
    // The exporter first: the subscriber and its tracer are process-wide.
    let receiver = OtlpReceiver::start().await;
    let traces = TraceSettings {
        endpoint: Some(receiver.endpoint()),
        sampling: Sampling::EVERY_TRACE,
    };
    let telemetry = if std::env::var_os("TEST_LOG").is_some() {
        Telemetry::init_with("churnguard-e2e", traces)
    } else {
        Telemetry::init_traces("churnguard-e2e", traces)
    };

    let broker = Tansu::start();
    let redis = RedisServer::start();
    let kafka = |client: &str| {
        KafkaLog::new(KafkaSettings {
            bootstrap_servers: broker.bootstrap(),
            client_id: client.into(),
            ..KafkaSettings::default()
        })
        .expect("kafka log")
    };

    let mut ingest_settings = purchase_ingest::Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: String::new(),
        ..purchase_ingest::Settings::default()
    };
    ingest_settings.log.backend = Backend::Kafka;
    let purchases = ingest_settings.topics.purchases.clone();
    let partitions = ingest_settings.topics.partitions;
    let ingest = purchase_ingest::App::build(ingest_settings.clone(), kafka("purchase-ingest"))
        .await
        .expect("purchase-ingest builds")
        .spawn();

    // Twice a week for ten weeks, the last visit 19 days ago: three typical gaps
    // (10.5 days) have gone by, eight (28 days) have not.
    let mut till = PurchaseIngestClient::connect(ingest.endpoint())
        .await
        .expect("connect to purchase-ingest");
    let days_ago: Vec<i64> = (0..10).flat_map(|w| [85 - 7 * w, 82 - 7 * w]).collect();
    let mut last = None;
    for (n, ago) in days_ago.iter().enumerate() {
        let mut request = tonic::Request::new(pb::RecordSwipeRequest {
            swipe: Some(swipe(n, *ago)),
            historical: false,
        });
        if n + 1 == days_ago.len() {
            request.metadata_mut().insert(
                "traceparent",
                format!("00-{TILL_TRACE}-{TILL_SPAN}-01")
                    .parse()
                    .expect("ascii"),
            );
        }
        let accepted = till
            .record_swipe(request)
            .await
            .expect("swipe accepted")
            .into_inner()
            .accepted
            .expect("accepted");
        last = Some(accepted);
    }
    let last = last.expect("swipes sent");

    let mut scoring_settings = churn_scoring::config::Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: String::new(),
        shutdown_grace_ms: 5_000,
        timer_interval_ms: 300,
        policy: restaurant().into(),
        ..churn_scoring::config::Settings::default()
    };
    scoring_settings.log = ingest_settings.log.clone();
    scoring_settings.topics.purchases = purchases.clone();
    scoring_settings.topics.partitions = partitions;
    scoring_settings.redis.url = redis.url();
    let signals = scoring_settings.topics.signals.clone();
    let group = scoring_settings.group.clone();
    let scoring = churn_scoring::App::build(scoring_settings, Arc::new(kafka("churn-scoring")))
        .await
        .expect("churn-scoring builds")
        .spawn();

    let mut feedback_settings = feedback::config::Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: String::new(),
        shutdown_grace_ms: 5_000,
        ..feedback::config::Settings::default()
    };
    feedback_settings.log = ingest_settings.log.clone();
    feedback_settings.redis.url = redis.url();
    let events_topic = feedback_settings.topics.events.clone();
    let feedback = feedback::App::build(
        feedback_settings,
        Arc::new(kafka("feedback")),
        Kek::from_bytes([7; 32]),
    )
    .await
    .expect("feedback builds")
    .spawn();

    // The case, through the Feedback API.
    let mut client = FeedbackClient::connect(feedback.endpoint())
        .await
        .expect("connect to feedback");
    let deadline = tokio::time::Instant::now() + WAIT;
    let case = loop {
        let page = client
            .list_outreach(fb::ListOutreachRequest {
                page_size: 10,
                ..Default::default()
            })
            .await
            .expect("ListOutreach")
            .into_inner();
        if let Some(case) = page.cases.into_iter().find(|c| c.customer_id == CUSTOMER) {
            break case;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no outreach case for {CUSTOMER} within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(case.defector_state, fb::DefectorState::AtRisk as i32);

    // Every span of the chain, exported: the case's command span ends last.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let spans = loop {
        telemetry.flush();
        let spans: Vec<ReceivedSpan> = receiver
            .spans()
            .into_iter()
            .filter(|s| s.trace_id() == TILL_TRACE)
            .collect();
        if spans
            .iter()
            .any(|s| s.name() == "outreach case open_outreach")
        {
            break spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the chain's spans were not all exported: {:#?}",
            spans
                .iter()
                .map(|s| (s.name(), s.kind()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let one = |name: &str| -> &ReceivedSpan {
        let found: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name() == name).collect();
        assert_eq!(
            found.len(),
            1,
            "one {name:?} span in the trace: {:#?}",
            spans.iter().map(ReceivedSpan::name).collect::<Vec<_>>()
        );
        found[0]
    };
    let child_of = |child: &ReceivedSpan, parent: &ReceivedSpan| {
        assert_eq!(
            child.parent_span_id(),
            parent.span_id(),
            "{:?} is the child of {:?}",
            child.name(),
            parent.name()
        );
    };

    // The till's call: a server span continuing the till's trace.
    let server = one("churnguard.ingest.v1.PurchaseIngest/RecordSwipe");
    assert_eq!(server.kind(), SpanKind::Server);
    assert_eq!(server.parent_span_id(), TILL_SPAN);
    assert_eq!(server.attr("rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        server.attr("rpc.service").as_deref(),
        Some("churnguard.ingest.v1.PurchaseIngest")
    );
    assert_eq!(server.attr("rpc.method").as_deref(), Some("RecordSwipe"));
    assert_eq!(server.attr("rpc.grpc.status_code").as_deref(), Some("0"));
    assert_eq!(server.service, "churnguard-e2e");

    // Ingest's publish: a producer span, where the record landed.
    let publish = one(&format!("send {purchases}"));
    child_of(publish, server);
    assert_eq!(publish.kind(), SpanKind::Producer);
    assert_eq!(publish.attr("messaging.system").as_deref(), Some("kafka"));
    assert_eq!(
        publish.attr("messaging.destination.name").as_deref(),
        Some(purchases.as_str())
    );
    assert_eq!(
        publish.attr("messaging.operation.type").as_deref(),
        Some("send")
    );
    assert_eq!(
        publish
            .attr("messaging.kafka.destination.partition")
            .as_deref(),
        Some(last.partition.to_string().as_str())
    );
    assert_eq!(
        publish.attr("messaging.kafka.offset").as_deref(),
        Some(last.offset.to_string().as_str())
    );
    assert_eq!(
        publish.attr("messaging.batch.message_count").as_deref(),
        Some("1")
    );

    // The scorer's batch links to the record's producer span (its own trace is new).
    let batches: Vec<ReceivedSpan> = receiver
        .spans()
        .into_iter()
        .filter(|s| s.name() == format!("process {purchases}"))
        .collect();
    let batch = batches
        .iter()
        .find(|b| {
            b.links()
                .contains(&(TILL_TRACE.to_owned(), publish.span_id()))
        })
        .unwrap_or_else(|| panic!("a scorer batch links to the swipe: {batches:#?}"));
    assert_eq!(batch.kind(), SpanKind::Consumer);
    assert_eq!(
        batch.attr("messaging.operation.type").as_deref(),
        Some("process")
    );
    assert_eq!(
        batch.attr("messaging.consumer.group.name").as_deref(),
        Some(group.as_str())
    );
    assert_eq!(
        batch.attr("messaging.destination.partition.id").as_deref(),
        Some(last.partition.to_string().as_str())
    );
    assert_eq!(
        batch.attr("messaging.batch.message_count"),
        Some(batch.links().len().to_string()),
        "one link per record of the batch"
    );

    // The assessment continues the customer's last swipe's trace and makes the signal.
    let assess = one("assess customer");
    child_of(assess, publish);
    assert_eq!(assess.attr("churn.customer").as_deref(), Some(CUSTOMER));
    assert_eq!(assess.attr("churn.state").as_deref(), Some("at_risk"));
    assert_eq!(assess.attr("churn.committed").as_deref(), Some("true"));

    // The signal's send, then the opener's handling of it.
    let send = one(&format!("send {signals}"));
    child_of(send, assess);
    assert_eq!(send.kind(), SpanKind::Producer);
    assert!(send.attr("messaging.kafka.offset").is_some());
    let opener = one(&format!("process {signals}"));
    child_of(opener, send);
    assert_eq!(opener.kind(), SpanKind::Consumer);
    assert_eq!(opener.attr("outreach.acted").as_deref(), Some("Opened"));

    // The case's command, whose commit record carries the trace on.
    let open = one("outreach case open_outreach");
    child_of(open, opener);
    assert_eq!(open.attr("feedback.applied").as_deref(), Some("true"));
    assert_eq!(
        open.attr("feedback.stream.id").as_deref(),
        Some(case.case_id.as_str())
    );
    let reader = kafka("e2e-reader");
    let mut commit_traces = Vec::new();
    for p in 0..partitions {
        let end = reader.end_offset(&events_topic, p).await.expect("end");
        for r in contract::read_all(&reader, &events_topic, p, end).await {
            if r.key == case.case_id.as_bytes()
                && let Some(tp) = r.header("traceparent")
            {
                commit_traces.push(String::from_utf8_lossy(tp).into_owned());
            }
        }
    }
    assert_eq!(
        commit_traces,
        [format!("00-{TILL_TRACE}-{}-01", open.span_id())],
        "the OutreachOpened commit carries the command span's context"
    );

    drop(client);
    drop(till);
    feedback.stop().await.expect("feedback stops cleanly");
    scoring.stop().await.expect("churn-scoring stops cleanly");
    ingest.stop().await.expect("purchase-ingest stops cleanly");
}
