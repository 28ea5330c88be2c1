//! The scorer process is killed (SIGKILL) at pseudo-random moments while swipes flow into
//! Kafka, and started again each time; afterwards Redis holds exactly what one clean pass
//! over the log gives (the checker rebuilds it from the log up to the stored offsets).
//! And a scorer killed while another runs has its partitions taken over by the other.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use churn_scoring::{CustomerStore, ScoredSwipe};
use churnguard_domain::customer::CustomerState;
use churnguard_eventlog::{EventLog, OutgoingRecord, contract};
use churnguard_kafka::{KafkaLog, KafkaSettings};
use churnguard_testkit::{RedisServer, Tansu, eventually, init_test_logging};
use common::process::{SESSION_TIMEOUT, Scorer, append_one_by_one, extend_ends, keep_sending};
use common::{HORIZON, PARTITIONS, TOPIC, caught_up, checkpoints, expected_at_checkpoints, stored};

/// Swipes sent while scorers are killed.
const FLOWING: usize = 24_000;
/// Then one more for each of the 500 customers, once no scorer runs (see the test).
const TOTAL: usize = FLOWING + 500;

fn swipes(from: usize, to: usize) -> Vec<OutgoingRecord> {
    (from..to)
        .map(|i| {
            common::card_swipe(
                i,
                &format!("cust-{}", (i * 7919) % 500),
                &format!("store-{}", i % 5),
                &format!("2026-10-{:02}T18:30:00+01:00", 1 + (i / 400) % 28),
                500 + (i % 1_300) as i64,
            )
        })
        .collect()
}

/// Which records below the checkpoints are missing from Redis (for a failure message).
async fn explain(log: &KafkaLog, store: &CustomerStore, have: &BTreeMap<String, CustomerState>) {
    for p in 0..PARTITIONS {
        let upto = store.checkpoint(p).await.expect("checkpoint");
        let mut missing = Vec::new();
        for r in contract::read_all(log, TOPIC, p, upto).await {
            let s = ScoredSwipe::from_record(&r).expect("swipe");
            let found = have
                .get(&s.customer)
                .and_then(|c| c.days.get(&s.day))
                .is_some_and(|b| b.swipes.contains(&s.fingerprint));
            if !found {
                missing.push(r.offset);
            }
        }
        eprintln!("partition {p}: checkpoint {upto}, missing offsets {missing:?}");
    }
}

/// Where the swipes the checker did not count went (for a failure message): each partition
/// is read again, record by record, with a fresh client, and its offsets and swipe ids are
/// checked, so a read that skipped or repeated records tells apart from a log that lacks them.
async fn explain_total(broker: &Tansu) {
    let fresh = KafkaLog::new(KafkaSettings {
        bootstrap_servers: broker.bootstrap(),
        client_id: "kill-explain".into(),
        ..KafkaSettings::default()
    })
    .expect("log");
    let mut seen = vec![0u32; TOTAL];
    for p in 0..PARTITIONS {
        let end = fresh.end_offset(TOPIC, p).await.expect("end offset");
        let mut next = 0u64;
        let mut jumps = Vec::new();
        loop {
            let batch = fresh
                .read(TOPIC, p, next, 5_000, Duration::from_secs(2))
                .await
                .expect("read");
            if batch.is_empty() {
                break;
            }
            for r in batch {
                if r.offset != next {
                    jumps.push(format!("{next} -> {}", r.offset));
                }
                next = r.offset + 1;
                let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("json");
                let id = v["data"]["swipe_id"].as_str().expect("swipe id");
                let i: usize = id.trim_start_matches("sw-").parse().expect("swipe number");
                seen[i] += 1;
            }
        }
        eprintln!(
            "partition {p}: reported end {end}, read to {next}, offset jumps in a re-read: {jumps:?}"
        );
    }
    let missing: Vec<usize> = (0..TOTAL).filter(|i| seen[*i] == 0).collect();
    let twice = seen.iter().filter(|n| **n > 1).count();
    eprintln!(
        "a fresh re-read finds {} of {TOTAL} swipes missing, {twice} present more than once; missing: {missing:?}",
        missing.len()
    );
}

/// The sum of the stored checkpoints.
async fn progress(store: &CustomerStore) -> u64 {
    checkpoints(store).await.iter().sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scorer_killed_at_random_points_while_swipes_flow_ends_equal_to_a_clean_pass() {
    init_test_logging();
    // Tansu's in-memory storage: under this test's load (a producer, six scorer processes
    // SIGKILLed mid-request, group rebalances) Tansu 0.6 on SQLite stops answering produce
    // and metadata requests within seconds. Seen again 2026-12-04 with its whole log kept
    // (TANSU_KEEP_LOGS): no error, no panic, ListOffsets timed out. Its SQLite storage
    // serves the requests of every connection one at a time (one task behind a channel
    // of one, tansu-storage `lite.rs`), the likely reason. What is under test is the
    // scorer's exactly-once, not the broker's storage.
    let broker = Tansu::start_in_memory();
    let redis = RedisServer::start();
    let log = Arc::new(common::kafka_log(&broker));
    log.ensure_topic(TOPIC, PARTITIONS).await.expect("topic");
    let store = CustomerStore::connect(&redis.url(), TOPIC, HORIZON)
        .await
        .expect("redis");

    // Swipes keep flowing in the background the whole time.
    let producer = keep_sending(log.clone(), swipes, FLOWING, 500, Duration::from_millis(40));

    let mut rng = fastrand::Rng::with_seed(0x5ca1ab1e);
    let mut kills = 0;
    for _ in 0..6 {
        // Killed when dropped: a failing run leaves no scorer behind to join the group of
        // a later test's broker, which may get this broker's port.
        let mut scorer = Scorer::start(&broker, &redis);
        // Once it is at work (the group has handed it partitions and a batch has been
        // applied), kill it at a random moment.
        let before = progress(&store).await;
        eventually(
            Duration::from_secs(60),
            "the scorer applies a batch",
            || async {
                (progress(&store).await > before || caught_up(log.as_ref(), &store).await)
                    .then_some(())
            },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(rng.u64(50..1_500))).await;
        scorer.0.kill().expect("SIGKILL");
        scorer.0.wait().expect("reaped");
        kills += 1;
        // Whatever a kill cut short, Redis equals the checker up to its own offsets.
        let (have, want) = (
            stored(&store).await,
            expected_at_checkpoints(log.as_ref(), &store).await,
        );
        if have != want {
            explain(&log, &store, &have).await;
        }
        assert_eq!(
            have, want,
            "after kill {kills}, Redis equals a clean pass up to the stored offsets"
        );
    }
    let (mut ends, sent) = producer.await.expect("producer");
    // A last round of swipes, now that no scorer runs. A killed scorer's checkpoint can lie
    // inside the broker's newest batch, and Tansu 0.6's memory storage answers a fetch from
    // inside a batch with the next batch only (the Kafka adapter then starts further back);
    // while that batch is the newest, it answers with nothing, as if at the end. So the
    // last round goes one swipe per append.
    let last_round = append_one_by_one(&log, swipes(FLOWING, TOTAL)).await;
    assert!(
        last_round.iter().all(Result::is_ok),
        "the last round is acknowledged"
    );
    extend_ends(&mut ends, &last_round);

    let mut scorer = Scorer::start(&broker, &redis);
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        if common::reached(&store, &ends).await {
            break;
        }
        if std::time::Instant::now() > deadline {
            eprintln!(
                "acknowledged ends {ends:?}, reported ends {:?}, checkpoints {:?}",
                common::log_ends(log.as_ref()).await,
                checkpoints(&store).await
            );
            explain_total(&broker).await;
            scorer.0.kill().expect("stop");
            panic!("the scorer did not reach the end of the log in 180 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    scorer.0.kill().expect("stop");
    scorer.0.wait().expect("reaped");

    let want = expected_at_checkpoints(log.as_ref(), &store).await;
    let have = stored(&store).await;
    let (total, counted) = (common::visits(&want), common::visits(&have));
    eprintln!(
        "scorer killed {kills} times: sent {} (resends included), acknowledged {TOTAL}, \
         found in the log {total}, counted in Redis {counted}, duplicates {}",
        sent + last_round.len(),
        counted.saturating_sub(TOTAL as u64),
    );
    if total != TOTAL as u64 {
        eprintln!(
            "the checker counted {total}; acknowledged ends {ends:?}, reported ends {:?}, \
             checkpoints {:?}",
            common::log_ends(log.as_ref()).await,
            checkpoints(&store).await
        );
        explain_total(&broker).await;
    }
    assert_eq!(
        total, TOTAL as u64,
        "every swipe counted once, resent ones too"
    );
    assert_eq!(have, want, "Redis equals one clean pass");
}

/// A scorer in the test process, on `broker` and `redis`, built as the binary builds
/// itself (`App::build` from settings) and in the binary's consumer group; returns it
/// running, and its admin endpoint.
async fn scorer_in_process(
    broker: &Tansu,
    redis: &RedisServer,
) -> (churn_scoring::app::Running<KafkaLog>, std::net::SocketAddr) {
    let mut s = churn_scoring::config::Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        horizon_days: HORIZON,
        batch_records: 300,
        refit_interval_secs: 0,
        ..Default::default()
    };
    s.redis.url = redis.url();
    s.topics.partitions = PARTITIONS;
    s.log.backend = churnguard_config::Backend::Kafka;
    s.log.kafka = KafkaSettings {
        bootstrap_servers: broker.bootstrap(),
        client_id: "scorer-in-test".into(),
        group_session_timeout_ms: SESSION_TIMEOUT.as_millis() as u64,
        ..KafkaSettings::default()
    };
    let log = Arc::new(KafkaLog::new(s.log.kafka.clone()).expect("log"));
    let app = churn_scoring::App::build(s, log)
        .await
        .expect("the scorer builds");
    let admin = app.admin_addr().expect("admin_addr asks for one");
    (app.spawn(), admin)
}

/// Two scorers split the partitions; one is SIGKILLed. Tansu 0.6 keeps the dead member's
/// partitions assigned to it (its group coordinator drops an expired member only when a
/// survivor's heartbeat finds it, and hands the survivor's rejoin the old assignment), so
/// the survivor would score half the partitions for good. It notices the partitions have
/// no lease and joins the group again; then it owns every partition and applies the log to
/// its end, every swipe once.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_scorers_partitions_go_to_the_scorer_left() {
    init_test_logging();
    let broker = Tansu::start_in_memory();
    let redis = RedisServer::start();
    let log = common::kafka_log(&broker);
    log.ensure_topic(TOPIC, PARTITIONS).await.expect("topic");
    let store = CustomerStore::connect(&redis.url(), TOPIC, HORIZON)
        .await
        .expect("redis");
    for r in log.append(TOPIC, swipes(0, 2_000)).await {
        r.expect("appended");
    }

    // A, a process, takes every partition and applies what is there.
    let mut a = Scorer::start(&broker, &redis);
    eventually(Duration::from_secs(60), "A applies the log", || async {
        caught_up(&log, &store).await.then_some(())
    })
    .await;
    // B, in the test, joins: the group splits the partitions two and two.
    let (b, b_admin) = scorer_in_process(&broker, &redis).await;
    let split = eventually(Duration::from_secs(60), "the partitions split", || async {
        let mine = b.state().owned();
        (mine.len() == PARTITIONS as usize / 2).then_some(mine)
    })
    .await;
    eprintln!("B scores partitions {split:?}, A the others");

    a.0.kill().expect("SIGKILL");
    a.0.wait().expect("reaped");
    let killed = std::time::Instant::now();
    // The bound is generous (these machines are shared); the time taken is printed.
    eventually(
        SESSION_TIMEOUT * 20,
        "B takes over the partitions of the killed A",
        || async { (b.state().owned().len() == PARTITIONS as usize).then_some(()) },
    )
    .await;
    eprintln!(
        "B owned every partition {:?} after A was killed (session timeout {SESSION_TIMEOUT:?})",
        killed.elapsed()
    );
    // Ops see it: B counted its rejoin and reports every partition as its own. (On Tansu
    // 0.6 the take-over is always B's rejoin; Apache Kafka would move the partitions at
    // the session timeout without one, and this count would be 0 there.)
    let (status, metrics) = churnguard_testkit::admin::get(b_admin, "/metrics");
    assert_eq!(status, 200);
    let value = |series: &str| {
        churnguard_testkit::admin::sample(&metrics, series)
            .unwrap_or_else(|| panic!("{series} in B's metrics:\n{metrics}"))
    };
    assert!(value(r#"churnguard_group_rejoins_total{group="churn-scoring"}"#) >= 1.0);
    assert_eq!(
        value(r#"churnguard_group_partitions_owned{group="churn-scoring"}"#),
        f64::from(PARTITIONS)
    );
    assert_eq!(
        value(r#"churnguard_group_partitions{group="churn-scoring"}"#),
        f64::from(PARTITIONS)
    );

    // New swipes on every partition: B applies them all, each once.
    for r in log.append(TOPIC, swipes(2_000, 4_000)).await {
        r.expect("appended");
    }
    eventually(
        Duration::from_secs(60),
        "B applies the log to its end",
        || async { caught_up(&log, &store).await.then_some(()) },
    )
    .await;
    b.stop().await.expect("B stops cleanly");
    let want = expected_at_checkpoints(&log, &store).await;
    assert_eq!(
        common::visits(&want),
        4_000,
        "every swipe is in the log once"
    );
    assert_eq!(stored(&store).await, want, "Redis equals one clean pass");
}
