//! Refits as the service runs them: a refit of a large population must not stall the
//! API, and the fitted model is state that the models topic rebuilds, like every other.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use churn_scoring::App;
use churn_scoring::config::Settings;
use churn_scoring::store::customer_key;
use churnguard_domain::partition::partition_for_key;
use churnguard_eventlog::EventLog;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_proto::scoring::v1 as pb;
use churnguard_proto::scoring::v1::churn_scoring_client::ChurnScoringClient;
use churnguard_testkit::{RedisServer, eventually, init_test_logging};
use common::{PARTITIONS, TOPIC};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

fn settings(redis: &RedisServer, refit_every_secs: u64, sample: usize) -> Settings {
    let mut s = Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        timer_interval_ms: 100,
        refit_interval_secs: refit_every_secs,
        refit_sample_customers: sample,
        ..Settings::default()
    };
    s.redis.url = redis.url();
    s.topics.partitions = PARTITIONS;
    s
}

/// Real swipes of 200 customers over October, through the log: a population to fit on.
async fn some_history(log: &EmbeddedLog) {
    log.ensure_topic(TOPIC, PARTITIONS).await.expect("topic");
    let records = (0..2_000)
        .map(|i| {
            common::card_swipe(
                i,
                &format!("cust-{}", i % 200),
                "store-1",
                &format!("2026-10-{:02}T12:00:00+01:00", 1 + (i * 7 % 30)),
                1_500 + (i % 7) as i64 * 100,
            )
        })
        .collect();
    for r in log.append(TOPIC, records).await {
        r.expect("append");
    }
}

/// `n` more customers' summaries written straight into Redis, in the scorer's layout
/// (`s` = first,first_spend,last,repeat_days,repeat_spend,oldest_bucket,swipes): a large
/// population for the fit, without scoring millions of swipes first.
async fn bulk_customers(redis: &RedisServer, n: usize) {
    let client = redis::Client::open(redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let first = 20_300; // 2025-07-31, in days since 1970
    for chunk in (0..n).collect::<Vec<_>>().chunks(5_000) {
        let mut pipe = redis::pipe();
        for &i in chunk {
            let customer = format!("bulk-{i}");
            let p = partition_for_key(customer.as_bytes(), PARTITIONS);
            let repeat = i % 9;
            let start = first + (i % 200) as i64;
            let last = if repeat > 0 {
                start + (i * 13 % 250) as i64
            } else {
                start
            };
            pipe.cmd("HSET")
                .arg(customer_key(p, &customer))
                .arg("s")
                .arg(format!(
                    "{start},1500,{last},{repeat},{},{start},{}",
                    repeat as i64 * (1_000 + (i % 50) as i64 * 40),
                    repeat + 1
                ))
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await.expect("bulk write");
    }
}

async fn client(endpoint: String) -> (ChurnScoringClient<Channel>, HealthClient<Channel>) {
    let channel = Channel::from_shared(endpoint)
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    (
        ChurnScoringClient::new(channel.clone()),
        HealthClient::new(channel),
    )
}

async fn model_version(api: &mut ChurnScoringClient<Channel>) -> Option<pb::GetModelResponse> {
    api.get_model(pb::GetModelRequest {})
        .await
        .ok()
        .map(|r| r.into_inner())
}

async fn started(log: Arc<EmbeddedLog>, settings: Settings) -> churn_scoring::Running<EmbeddedLog> {
    let running = App::build(settings, log).await.expect("builds").spawn();
    let all: BTreeSet<u32> = (0..PARTITIONS).collect();
    eventually(Duration::from_secs(30), "every partition owned", || async {
        (running.state().owned() == all).then_some(())
    })
    .await;
    running
}

/// Health and GetCustomerRisk keep answering within 100 ms while a refit of 200,000
/// customers (all of them: no sampling) runs. The fit used to run on an async worker,
/// and on two cores every RPC of every service in the process timed out for the whole
/// fit (45 s to 4.5 min measured). This machine is shared and the test's own client runs
/// on the same two cores, so one call in a hundred may be late; none may fail or stall.
#[tokio::test(flavor = "multi_thread")]
async fn a_refit_of_a_large_population_leaves_the_api_answering() {
    init_test_logging();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let log = Arc::new(EmbeddedLog::open(dir.path()).expect("log"));
    some_history(&log).await;
    let running = started(log.clone(), settings(&redis, 3, 0)).await;
    let (mut api, mut health) = client(running.endpoint()).await;

    // The first refit, on the 200 real customers.
    let first = eventually(Duration::from_secs(60), "a first model", || {
        let mut api = api.clone();
        async move { model_version(&mut api).await }
    })
    .await;
    bulk_customers(&redis, 200_000).await;

    // Probe until the refit on the large population has been announced.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut latencies, mut failed) = (Vec::new(), Vec::new());
    let second = loop {
        assert!(
            Instant::now() < deadline,
            "no refit of the large population in 2 minutes"
        );
        for what in ["health", "risk"] {
            let sent = Instant::now();
            let answered = tokio::time::timeout(Duration::from_secs(1), async {
                match what {
                    "health" => health
                        .check(HealthCheckRequest {
                            service: String::new(),
                        })
                        .await
                        .is_ok(),
                    _ => api
                        .get_customer_risk(pb::GetCustomerRiskRequest {
                            customer_id: "cust-7".into(),
                            ..Default::default()
                        })
                        .await
                        .is_ok(),
                }
            })
            .await;
            let took = sent.elapsed();
            latencies.push(took);
            if answered != Ok(true) {
                failed.push((what, took, answered));
            }
        }
        if let Some(m) = model_version(&mut api).await
            && m.version > first.version
        {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    eprintln!(
        "refit v{} on {} customers: {} calls, p50 {:?}, p99 {p99:?}, slowest {:?}",
        second.version,
        second.customers,
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    assert_eq!(second.customers, 200_200, "every customer fitted on");
    assert!(
        failed.is_empty(),
        "calls that failed or stalled for 1 s during the refit: {failed:?}"
    );
    assert!(
        latencies.len() >= 20,
        "the refit ran between calls ({})",
        latencies.len()
    );
    assert!(
        p99 <= Duration::from_millis(100),
        "p99 {p99:?} during the refit"
    );
    running.stop().await.expect("a clean stop");
}

/// A refit samples: with `refit_sample_customers` below the population, the fit sees a
/// sample of that size and the model says how many it was drawn from.
#[tokio::test(flavor = "multi_thread")]
async fn a_refit_fits_on_a_uniform_sample_of_the_customers() {
    init_test_logging();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let log = Arc::new(EmbeddedLog::open(dir.path()).expect("log"));
    some_history(&log).await;
    bulk_customers(&redis, 20_000).await;
    let running = started(log.clone(), settings(&redis, 3_600, 5_000)).await;
    let (api, _) = client(running.endpoint()).await;
    let model = eventually(Duration::from_secs(60), "a model", || {
        let mut api = api.clone();
        async move { model_version(&mut api).await }
    })
    .await;
    assert_eq!(model.customers, 5_000);
    assert_eq!(model.population, 20_200);
    let bg = model.bg_nbd.expect("bg/nbd");
    assert!(
        bg.r > 0.0 && bg.alpha > 0.0 && bg.a > 0.0 && bg.b > 0.0,
        "{bg:?}"
    );
    running.stop().await.expect("a clean stop");
}

/// Redis flushed while the service runs: the model comes back from `churn.models.v1`
/// within seconds, without a restart or a refit, and the next refit continues the
/// versions instead of starting over at 1. A restart on an empty Redis starts with it.
#[tokio::test(flavor = "multi_thread")]
async fn the_model_is_rebuilt_from_the_log_after_redis_loses_it() {
    init_test_logging();
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let log = Arc::new(EmbeddedLog::open(dir.path()).expect("log"));
    some_history(&log).await;
    let running = started(log.clone(), settings(&redis, 3_600, 0)).await;
    let (api, _) = client(running.endpoint()).await;
    let fitted = eventually(Duration::from_secs(60), "a first model", || {
        let mut api = api.clone();
        async move { model_version(&mut api).await }
    })
    .await;
    assert_eq!(fitted.version, 1);

    redis.restart(); // empty, on the same port
    let back = eventually(Duration::from_secs(30), "the model back", || {
        let mut api = api.clone();
        async move { model_version(&mut api).await }
    })
    .await;
    assert_eq!(back, fitted, "the same model, from the log");
    running.stop().await.expect("a clean stop");

    // A new process on an empty Redis: the model is there before the first refit.
    redis.restart();
    let running = App::build(settings(&redis, 3_600, 0), log.clone())
        .await
        .expect("builds")
        .spawn();
    let (mut api, _) = client(running.endpoint()).await;
    assert_eq!(model_version(&mut api).await, Some(fitted.clone()));
    running.stop().await.expect("a clean stop");

    // The next refit is version 2, on top of what the log holds.
    redis.restart();
    let running = started(log.clone(), settings(&redis, 1, 0)).await;
    let (api, _) = client(running.endpoint()).await;
    let next = eventually(Duration::from_secs(60), "a second model", || {
        let mut api = api.clone();
        async move {
            model_version(&mut api)
                .await
                .filter(|m| m.version > fitted.version)
        }
    })
    .await;
    assert_eq!(next.version, 2);
    running.stop().await.expect("a clean stop");
    let announced: Vec<u64> = log
        .read("churn.models.v1", 0, 0, 100, Duration::from_millis(100))
        .await
        .expect("read")
        .iter()
        .map(|r| {
            churnguard_domain::Envelope::<churnguard_domain::models::FittedModel>::decode(
                &r.payload,
                churnguard_domain::models::FittedModel::EVENT_TYPE,
            )
            .expect("a model")
            .data
            .version
        })
        .collect();
    let expected: Vec<u64> = (1..=announced.len() as u64).collect();
    assert_eq!(
        announced, expected,
        "versions follow on from the log, once each"
    );
}

/// RequestRefit: with the schedule a day away, a refit asked for runs within seconds,
/// once, and GetModel shows it; where refits are off, asking is FAILED_PRECONDITION.
#[tokio::test(flavor = "multi_thread")]
async fn a_refit_asked_for_runs_at_once_and_once() {
    init_test_logging();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let log = Arc::new(EmbeddedLog::open(dir.path()).expect("log"));
    some_history(&log).await;
    let running = started(log.clone(), settings(&redis, 86_400, 0)).await;
    let (mut api, _) = client(running.endpoint()).await;
    // With no model yet, the first refit comes on its own, as data arrives.
    let first = eventually(Duration::from_secs(60), "a first model", || {
        let mut api = api.clone();
        async move { model_version(&mut api).await }
    })
    .await;

    let asked = api
        .request_refit(pb::RequestRefitRequest {})
        .await
        .expect("a refit may be asked for")
        .into_inner();
    assert_eq!(asked.current_version, first.version);
    let second = eventually(Duration::from_secs(30), "the refit asked for", || {
        let mut api = api.clone();
        async move {
            model_version(&mut api)
                .await
                .filter(|m| m.version > first.version)
        }
    })
    .await;
    assert_eq!(second.version, first.version + 1);
    // One request, one refit: the next is a day away.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = model_version(&mut api).await.expect("a model");
    assert_eq!(later.version, second.version, "no further refit");
    running.stop().await.expect("stops");

    // Refits off: nothing would run it.
    let off = started(log, settings(&redis, 0, 0)).await;
    let (mut api, _) = client(off.endpoint()).await;
    let refused = api
        .request_refit(pb::RequestRefitRequest {})
        .await
        .expect_err("refits are off");
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("refit_interval_secs = 0"),
        "{refused:?}"
    );
    off.stop().await.expect("stops");
}
