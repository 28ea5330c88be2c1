//! purchase-ingest when its Kafka-protocol broker (Tansu) goes away, killed or paused:
//! no OK for a swipe that was not written, failures within the bound, NOT_SERVING while
//! the broker is down, and the service resumes when it is back.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use churnguard_kafka::KafkaLog;
use churnguard_proto::ingest::v1 as pb;
use churnguard_testkit::{Tansu, eventually};
use common::{
    channel, client, envelope, kafka_settings, read_topic, request, settings, spawn_app, swipe,
};
use purchase_ingest::config::Backend;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

// ---------------------------------------------------------------------------------
// The broker dies mid-stream.

/// A broker killed under a stream of batches: failures are retriable and bounded, never OK
/// for an unwritten swipe; health goes NOT_SERVING and back; every acknowledged swipe is in
/// the log once.
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
                .send(pb::StreamSwipesRequest {
                    swipes,
                    historical: false,
                })
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

// ---------------------------------------------------------------------------------
// A paused broker.

/// A paused broker gets retriable failures within the bound, never OK; after it resumes,
/// writes succeed and every acknowledged swipe is in the log.
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
