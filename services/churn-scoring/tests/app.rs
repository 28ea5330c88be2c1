//! The service as its binary runs it: `App::build` → `spawn` → `stop`, and the refusal to
//! mix state built under another partition count.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use churn_scoring::App;
use churn_scoring::config::Settings;
use churnguard_eventlog::EventLog;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_testkit::{RedisServer, admin, eventually, init_test_logging};
use common::{PARTITIONS, TOPIC, caught_up};

fn settings(redis: &RedisServer, partitions: u32) -> Settings {
    let mut s = Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        timer_interval_ms: 100,
        refit_interval_secs: 0,
        ..Settings::default()
    };
    s.redis.url = redis.url();
    s.topics.partitions = partitions;
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_scores_what_arrives_and_stops_cleanly() {
    init_test_logging();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let log = Arc::new(EmbeddedLog::open(dir.path()).expect("log"));
    let app = App::build(settings(&redis, PARTITIONS), log.clone())
        .await
        .expect("builds");
    let admin = app.admin_addr().expect("admin_addr asks for one");
    let running = app.spawn();
    let all: BTreeSet<u32> = (0..PARTITIONS).collect();
    eventually(Duration::from_secs(30), "every partition owned", || async {
        (running.state().owned() == all).then_some(())
    })
    .await;
    let records = (0..2_000)
        .map(|i| {
            common::card_swipe(
                i,
                &format!("cust-{}", i % 100),
                "store-1",
                &format!("2026-10-{:02}T12:00:00+01:00", 1 + i / 100),
                1_500,
            )
        })
        .collect();
    for r in log.append(TOPIC, records).await {
        r.expect("append");
    }
    let store = churn_scoring::CustomerStore::connect(&redis.url(), TOPIC, common::HORIZON)
        .await
        .expect("store");
    eventually(
        Duration::from_secs(60),
        "the swipes are applied",
        || async { caught_up(log.as_ref(), &store).await.then_some(()) },
    )
    .await;
    assert_eq!(common::stored(&store).await.len(), 100);
    assert_eq!(
        admin::get(admin, "/readyz").0,
        200,
        "the query API is ready: Redis is up"
    );
    running.stop().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn state_built_under_another_partition_count_is_refused_with_the_way_out() {
    init_test_logging();
    let redis = RedisServer::start();
    let first = tempfile::tempdir().expect("dir");
    let log = Arc::new(EmbeddedLog::open(first.path()).expect("log"));
    let app = App::build(settings(&redis, 4), log).await.expect("builds");
    drop(app);

    // The same Redis, and a purchases topic that now has six partitions.
    let second = tempfile::tempdir().expect("dir");
    let log = Arc::new(EmbeddedLog::open(second.path()).expect("log"));
    let err = App::build(settings(&redis, 6), log)
        .await
        .expect_err("state for 4 partitions must not be mixed with 6");
    let message = err.to_string();
    assert!(
        message.contains("built for 4 partitions") && message.contains("FLUSHALL"),
        "{message}"
    );
}
