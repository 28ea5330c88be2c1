//! Scale-out: scorer instances in one consumer group (round robin on Kafka) share
//! the partitions, hand them over when members come and go, and the state in Redis is
//! the same as one clean pass over the log.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use churn_scoring::runner::Instance;
use churn_scoring::timers::Timers;
use churn_scoring::{CustomerStore, Scorer};
use churnguard_domain::policy::{DefectionPolicy, RuleSet};
use churnguard_domain::risk::ScoringModel;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_eventlog::{EventLog, OutgoingRecord};
use churnguard_testkit::{RedisServer, Tansu, eventually, init_test_logging};
use common::{HORIZON, PARTITIONS, TOPIC, caught_up, log_ends, reference, stored, swipes_in_log};
use tokio_util::sync::CancellationToken;

const SIGNALS: &str = "churn.signals.v1";
const WAIT: Duration = Duration::from_secs(120);

/// Swipes `from..to`, over 300 customers, dated in October 2026.
fn swipes(from: usize, to: usize) -> Vec<OutgoingRecord> {
    (from..to)
        .map(|i| {
            common::card_swipe(
                i,
                &format!("cust-{}", i % 300),
                &format!("store-{}", i % 7),
                &format!("2026-10-{:02}T10:15:00+01:00", 1 + (i / 300) % 28),
                1_000 + (i % 900) as i64,
            )
        })
        .collect()
}

/// Appends `records`, as a till would: a record the broker did not acknowledge in time
/// (Tansu can stall while the group rebalances) is sent again, up to three times. A record
/// sent twice is a duplicate the scorer counts once, and the reference is built from the
/// log, so the comparison stays exact.
async fn append<L: EventLog>(log: &L, records: Vec<OutgoingRecord>) {
    let mut pending = records;
    for attempt in 1..=3 {
        let results = log.append(TOPIC, pending.clone()).await;
        let mut failed = Vec::new();
        for (record, r) in pending.into_iter().zip(results) {
            match r {
                Ok(_) => {}
                Err(e) if e.is_retriable() && attempt < 3 => failed.push(record),
                Err(e) => panic!("append: {e:?}"),
            }
        }
        if failed.is_empty() {
            return;
        }
        eprintln!(
            "append attempt {attempt}: {} records not acknowledged in time; sending them again",
            failed.len()
        );
        pending = failed;
    }
}

fn policy() -> DefectionPolicy {
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

fn instance<L: EventLog>(log: &Arc<L>, store: &CustomerStore) -> Arc<Instance<L>> {
    let scorer = Arc::new(Scorer::new(log.clone(), store.clone(), TOPIC, 500));
    let timers = Arc::new(Timers::new(store.clone(), policy(), ScoringModel::prior()));
    Arc::new(
        Instance::new(scorer, timers, log.clone(), "churn-scoring", SIGNALS)
            .with_timer_interval(Duration::from_millis(200)),
    )
}

/// Two instances split the partitions while swipes flow; the second leaves and the
/// first takes everything back; the result equals one clean pass.
async fn instances_share_and_hand_over<L: EventLog>(log: Arc<L>, redis: &RedisServer) {
    log.ensure_topic(TOPIC, PARTITIONS).await.expect("topic");
    log.ensure_topic(SIGNALS, PARTITIONS).await.expect("topic");
    let store = CustomerStore::connect(&redis.url(), TOPIC, HORIZON)
        .await
        .expect("redis");
    append(log.as_ref(), swipes(0, 3_000)).await;

    let all: BTreeSet<u32> = (0..PARTITIONS).collect();
    let (a, a_stop) = (instance(&log, &store), CancellationToken::new());
    let a_run = tokio::spawn(a.clone().run(a_stop.clone()));
    eventually(WAIT, "the first instance owns every partition", || async {
        (a.owned() == all).then_some(())
    })
    .await;

    let (b, b_stop) = (instance(&log, &store), CancellationToken::new());
    let b_run = tokio::spawn(b.clone().run(b_stop.clone()));
    append(log.as_ref(), swipes(3_000, 6_000)).await;
    eventually(WAIT, "two instances split the partitions", || async {
        let (oa, ob) = (a.owned(), b.owned());
        (oa.len() == 2 && ob.len() == 2 && oa.is_disjoint(&ob)).then_some(())
    })
    .await;
    append(log.as_ref(), swipes(6_000, 9_000)).await;

    b_stop.cancel();
    b_run.await.expect("b task").expect("b ends cleanly");
    eventually(
        WAIT,
        "the remaining instance takes every partition back",
        || async { (a.owned() == all).then_some(()) },
    )
    .await;
    append(log.as_ref(), swipes(9_000, 12_000)).await;
    eventually(
        WAIT,
        "every partition is applied up to the end of the log",
        || async { caught_up(log.as_ref(), &store).await.then_some(()) },
    )
    .await;
    a_stop.cancel();
    a_run.await.expect("a task").expect("a ends cleanly");

    let want = reference(&swipes_in_log(log.as_ref(), &log_ends(log.as_ref()).await).await);
    assert_eq!(want.len(), 300);
    assert_eq!(
        stored(&store).await,
        want,
        "state equals one clean pass over the log"
    );
}

/// On Tansu. Its storage can die under the group's churn (see [`Tansu::panicked`]): a
/// run that fails on a broker that panicked is run once more on a new broker, and says
/// so; any other failure, or a second panic, fails the test.
#[tokio::test(flavor = "multi_thread")]
async fn kafka_group_members_share_partitions_and_hand_them_over() {
    init_test_logging();
    for attempt in 1..=2 {
        let broker = Tansu::start();
        let redis = RedisServer::start();
        let log = common::kafka_log(&broker);
        let run = tokio::spawn(async move {
            instances_share_and_hand_over(Arc::new(log), &redis).await;
        });
        match run.await {
            Ok(()) => return,
            Err(e) if e.is_panic() && attempt == 1 && broker.panicked() => {
                let log = broker.log();
                let first = log
                    .lines()
                    .find(|l| l.contains("panicked at"))
                    .unwrap_or_default();
                eprintln!(
                    "attempt 1 failed on a broker that panicked ({first}): \
                     Tansu's storage, not churnguard; running it again on a new broker"
                );
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("the scenario's task: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_group_members_share_partitions_and_hand_them_over() {
    init_test_logging();
    let dir = tempfile::tempdir().expect("dir");
    let redis = RedisServer::start();
    let log = EmbeddedLog::open(dir.path()).expect("log");
    instances_share_and_hand_over(Arc::new(log), &redis).await;
}
