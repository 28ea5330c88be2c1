//! Faults under load, with real scorer processes, a real Kafka-protocol broker (Tansu,
//! in memory) and a real Redis; swipes flow the whole time. Each test ends the same way:
//! a last round of swipes, one scorer to the end of the log, and Redis compared with one
//! clean pass over the log (the checker), every acknowledged swipe counted once. Each
//! prints its counts: sent, acknowledged, found in the log, counted, duplicates.
//!
//! - a zombie scorer: paused (SIGSTOP) past the group's session timeout, its partitions
//!   taken over, then resumed (SIGCONT) with whatever batch it had in hand: no checkpoint
//!   ever moves back;
//! - Redis slowed (`CLIENT PAUSE`): the scorer waits, lag grows, nothing is lost, it
//!   catches up;
//! - Redis killed and restarted empty: the scorer rebuilds the state from the log.
//!
//! `make test` runs them at a short size; `make test-faults` (`CHURNGUARD_FAULTS_FULL`)
//! at ten times as many swipes.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use churn_scoring::CustomerStore;
use churnguard_eventlog::{EventLog, OutgoingRecord};
use churnguard_kafka::KafkaLog;
use churnguard_testkit::{RedisServer, Tansu, eventually, init_test_logging};
use common::process::{Scorer, append_one_by_one, extend_ends, keep_sending};
use common::{HORIZON, PARTITIONS, TOPIC, checkpoints, expected_at_checkpoints, stored};

/// Swipes sent while the zombie sleeps and wakes; ten times as many with
/// `CHURNGUARD_FAULTS_FULL` set (`make test-faults`).
fn flowing() -> usize {
    if std::env::var_os("CHURNGUARD_FAULTS_FULL").is_some() {
        60_000
    } else {
        6_000
    }
}

fn swipes(from: usize, to: usize) -> Vec<OutgoingRecord> {
    (from..to)
        .map(|i| {
            common::card_swipe(
                i,
                &format!("cust-{}", (i * 7919) % 400),
                &format!("store-{}", i % 5),
                &format!("2026-10-{:02}T18:30:00+01:00", 1 + (i / 300) % 28),
                500 + (i % 1_300) as i64,
            )
        })
        .collect()
}

/// Watches every partition's checkpoint until `stop`, failing on any that moves back;
/// returns how many readings it took.
async fn watch_checkpoints(
    store: CustomerStore,
    stop: tokio_util::sync::CancellationToken,
) -> usize {
    let mut last = checkpoints(&store).await;
    let mut readings = 0;
    while !stop.is_cancelled() {
        let now = checkpoints(&store).await;
        for (p, (before, after)) in last.iter().zip(&now).enumerate() {
            assert!(
                after >= before,
                "partition {p}'s checkpoint moved back from {before} to {after}"
            );
        }
        last = now;
        readings += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    readings
}

/// One fault at a time: each runs a broker, a Redis and two or three scorer processes,
/// and their timings mean something only if the machine is not shared with another.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A broker, a Redis, the topic, and swipes flowing into it in the background.
struct Flow {
    _turn: tokio::sync::MutexGuard<'static, ()>,
    broker: Tansu,
    redis: RedisServer,
    log: Arc<KafkaLog>,
    store: CustomerStore,
    producer: tokio::task::JoinHandle<(Vec<u64>, usize)>,
    flowing: usize,
}

impl Flow {
    async fn start() -> Self {
        let turn = ONE_AT_A_TIME.lock().await;
        init_test_logging();
        let broker = Tansu::start_in_memory();
        let redis = RedisServer::start();
        let log = Arc::new(common::kafka_log(&broker));
        log.ensure_topic(TOPIC, PARTITIONS).await.expect("topic");
        let store = CustomerStore::connect(&redis.url(), TOPIC, HORIZON)
            .await
            .expect("redis");
        let flowing = flowing();
        let producer = keep_sending(log.clone(), swipes, flowing, 200, Duration::from_millis(60));
        Self {
            _turn: turn,
            broker,
            redis,
            log,
            store,
            producer,
            flowing,
        }
    }

    /// Waits until some batch has been applied.
    async fn applying(&self) {
        let store = self.store.clone();
        eventually(Duration::from_secs(60), "a scorer applies a batch", || {
            let store = store.clone();
            async move { (checkpoints(&store).await.iter().sum::<u64>() > 0).then_some(()) }
        })
        .await;
    }

    /// Once the flow has ended and every scorer is stopped: a last round of swipes (one
    /// per customer), one scorer to the end of the log, and Redis checked against one
    /// clean pass. Prints the counts under `name`.
    async fn finish(self, name: &str) {
        let (mut ends, sent) = self.producer.await.expect("producer");
        let total = self.flowing + 400;
        let last_round = append_one_by_one(&self.log, swipes(self.flowing, total)).await;
        assert!(
            last_round.iter().all(Result::is_ok),
            "the last round is acknowledged"
        );
        extend_ends(&mut ends, &last_round);
        // A fresh connection: the fault may have cut the old one (Redis restarted).
        let store = CustomerStore::connect(&self.redis.url(), TOPIC, HORIZON)
            .await
            .expect("redis");
        // One scorer to the end of the log, started again if it exits (as a supervisor
        // would: a scorer that cannot reach the broker at start gives up).
        let mut finisher = Scorer::start(&self.broker, &self.redis);
        let mut restarts = 0;
        let deadline = Instant::now() + Duration::from_secs(180);
        while !common::reached(&store, &ends).await {
            if finisher.exited() {
                restarts += 1;
                finisher = Scorer::start(&self.broker, &self.redis);
            }
            if Instant::now() > deadline {
                panic!(
                    "{name}: no scorer reached the end of the log in 180 s ({restarts} restarts): \
                     acknowledged ends {ends:?}, reported ends {:?}, checkpoints {:?}",
                    common::log_ends(self.log.as_ref()).await,
                    checkpoints(&store).await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(finisher);
        if restarts > 0 {
            eprintln!("{name}: the finishing scorer was started again {restarts} times");
        }

        let want = expected_at_checkpoints(self.log.as_ref(), &store).await;
        let have = stored(&store).await;
        let (found, counted) = (common::visits(&want), common::visits(&have));
        eprintln!(
            "{name}: sent {} (resends included), acknowledged {total}, found in the log \
             {found}, counted in Redis {counted}, duplicates {}",
            sent + last_round.len(),
            counted.saturating_sub(total as u64),
        );
        assert_eq!(
            found, total as u64,
            "the log holds every acknowledged swipe once"
        );
        assert_eq!(have, want, "Redis equals one clean pass over the log");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zombie_scorer_resumed_after_its_partitions_moved_overwrites_nothing() {
    let flow = Flow::start().await;
    let store = flow.store.clone();
    // The first scorer works for a while...
    let zombie = Scorer::start(&flow.broker, &flow.redis);
    flow.applying().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    // ... and is paused in the middle of its work, past the session timeout (3 s).
    zombie.signal("STOP");
    let paused_at = checkpoints(&store).await;
    let watch_stop = tokio_util::sync::CancellationToken::new();
    let watcher = tokio::spawn(watch_checkpoints(store.clone(), watch_stop.clone()));
    let successor = Scorer::start(&flow.broker, &flow.redis);
    // The successor gets the partitions once the group has given up on the zombie, and
    // moves past where the zombie stopped.
    let started = Instant::now();
    eventually(
        Duration::from_secs(90),
        "the successor moves past the zombie",
        || {
            let store = store.clone();
            let paused_at = paused_at.clone();
            async move {
                let now = checkpoints(&store).await;
                now.iter().zip(&paused_at).any(|(n, p)| n > p).then_some(())
            }
        },
    )
    .await;
    eprintln!("zombie scorer: taken over after {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The zombie wakes with its old batch and its old assignment.
    zombie.signal("CONT");
    tokio::time::sleep(Duration::from_secs(6)).await;
    drop((zombie, successor));
    watch_stop.cancel();
    let readings = watcher.await.expect("no checkpoint moved back");
    eprintln!("zombie scorer: {readings} checkpoint readings, none moved back");
    flow.finish("zombie scorer").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_paused_under_load_holds_the_scorer_back_and_loses_nothing() {
    let flow = Flow::start().await;
    let scorer = Scorer::start(&flow.broker, &flow.redis);
    flow.applying().await;
    let client = redis::Client::open(flow.redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    // Three pauses of 1.5 s: writes (and the scorer's scripts) wait.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let before = checkpoints(&flow.store).await;
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(1_500)
            .arg("WRITE")
            .query_async(&mut conn)
            .await
            .expect("CLIENT PAUSE");
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let during = checkpoints(&flow.store).await;
        stalled.push(before == during);
        tokio::time::sleep(Duration::from_millis(2_000)).await;
    }
    eprintln!("redis paused: checkpoints held still during each pause: {stalled:?}");
    assert!(
        stalled.iter().all(|s| *s),
        "no batch commits while Redis is paused: {stalled:?}"
    );
    drop(scorer);
    flow.finish("redis paused").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_restarted_empty_under_load_is_rebuilt_from_the_log() {
    let mut flow = Flow::start().await;
    let scorer = Scorer::start(&flow.broker, &flow.redis);
    flow.applying().await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let before = checkpoints(&flow.store).await;
    flow.redis.restart();
    eprintln!("redis restarted empty: checkpoints were {before:?}");
    // The scorer carries on against the empty Redis: its checkpoints are gone, so it
    // starts its partitions again from the beginning of the log.
    tokio::time::sleep(Duration::from_secs(4)).await;
    drop(scorer);
    flow.finish("redis restarted empty").await;
}
