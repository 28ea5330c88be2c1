//! The complaint write path against the embedded log and a real Kafka-protocol broker
//! (Tansu), with a real Redis: lifecycle, replay into an empty Redis, concurrent commands,
//! idempotency keys and bad input. One test per behaviour and log, each on its own Redis
//! (and broker); the replay test takes every step before it as set-up.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use churnguard_domain::feedback::complaint::{
    AcknowledgeComplaint, AddComplaintUpdate, Complaint, ComplaintCommand, ComplaintError,
    ComplaintStatus, Context, FileComplaint, RecordRootCause, RecordSatisfaction, ResolveComplaint,
    RootCauseInput, SatisfactionInput, SealedContact,
};
use churnguard_domain::ids::ComplaintId;
use churnguard_domain::{Aggregate, CustomerInput};
use churnguard_eventlog::EventLog;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_kafka::{KafkaLog, KafkaSettings};
use churnguard_redis::RedisConnection;
use churnguard_testkit::{RedisServer, Tansu, init_test_logging};
use feedback::journal::Commit;
use feedback::projection::Projection;
use feedback::{Complaints, EVENTS_TOPIC, FeedbackError};

const PARTITIONS: u32 = 3;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0)
        .single()
        .expect("time")
}

fn id(s: &str) -> ComplaintId {
    ComplaintId::parse(s).expect("id")
}

fn filing(complaint: &str, severity: &str) -> ComplaintCommand {
    ComplaintCommand::FileComplaint(FileComplaint {
        expected_version: None,
        complaint_id: id(complaint),
        idempotency_key: format!("file-{complaint}"),
        customer: CustomerInput::CustomerId("cust-1".into()),
        contact: SealedContact::new(vec![9, 8, 7, 6]),
        store_id: "store-1".into(),
        channel: "till".into(),
        touchpoint: "staff".into(),
        severity: severity.into(),
        description: "Rude at the till, refused the coupon".into(),
        occurred_at: now() - chrono::TimeDelta::hours(2),
    })
}

fn update(note: &str, expected: Option<u64>) -> ComplaintCommand {
    ComplaintCommand::AddComplaintUpdate(AddComplaintUpdate {
        expected_version: expected,
        note: note.into(),
        from_customer: false,
    })
}

async fn setup<L: EventLog>(log: Arc<L>, redis: &RedisServer) -> Complaints<L> {
    log.ensure_topic(EVENTS_TOPIC, PARTITIONS)
        .await
        .expect("topic");
    let conn = RedisConnection::single(&redis.url()).await.expect("redis");
    Complaints::new(
        log,
        Projection::new(conn, EVENTS_TOPIC, PARTITIONS),
        Context::default(),
        Arc::new(now),
    )
}

/// Every read-model hash (complaints and list indexes), field by field.
async fn read_model(redis: &RedisServer) -> BTreeMap<String, BTreeMap<String, String>> {
    common::hashes(redis, &["fc:*", "fl:*"]).await
}

/// Every commit in the log, in order per partition.
async fn commits<L: EventLog>(log: &L) -> Vec<Commit> {
    let mut all = Vec::new();
    for p in 0..PARTITIONS {
        all.extend(common::commits(log, p).await);
    }
    all
}

/// What the service answered along c-1's lifecycle.
struct Lifecycle {
    filed: Complaint,
    again: Complaint,
    letter: FeedbackError,
    acked: Complaint,
    retried: Complaint,
    retried_again: Complaint,
    stale: FeedbackError,
    resolved: Complaint,
    /// After the root cause, the last command.
    last: Complaint,
}

/// c-1's lifecycle, end to end: filed (and the filing retried), acknowledged (by letter
/// first, refused), an update sent twice with one key, one with a stale version,
/// resolved, the customer's satisfaction and the root cause recorded.
async fn lifecycle<L: EventLog>(svc: &Complaints<L>) -> Lifecycle {
    let c1 = id("c-1");
    let filed = svc
        .execute(&c1, filing("c-1", "major"), None)
        .await
        .expect("file");
    let again = svc
        .execute(&c1, filing("c-1", "major"), None)
        .await
        .expect("a retried filing");
    let letter = svc
        .execute(
            &c1,
            ComplaintCommand::AcknowledgeComplaint(AcknowledgeComplaint {
                expected_version: Some(1),
                method: "letter".into(),
                note: String::new(),
            }),
            None,
        )
        .await
        .expect_err("a letter is no first response to a major complaint");
    let acked = svc
        .execute(
            &c1,
            ComplaintCommand::AcknowledgeComplaint(AcknowledgeComplaint {
                expected_version: Some(1),
                method: "phone".into(),
                note: "Called, apologised, will check the till staff rota".into(),
            }),
            Some("ack-1"),
        )
        .await
        .expect("acknowledge");
    let retried = svc
        .execute(&c1, update("a retried update", None), Some("upd-1"))
        .await
        .expect("update");
    let retried_again = svc
        .execute(&c1, update("a retried update", None), Some("upd-1"))
        .await
        .expect("update retried");
    let stale = svc
        .execute(&c1, update("stale", Some(1)), None)
        .await
        .expect_err("stale expected version");
    let resolved = svc
        .execute(
            &c1,
            ComplaintCommand::ResolveComplaint(ResolveComplaint {
                expected_version: None,
                remedies: vec!["apology".into(), "compensation".into()],
                summary: "Voucher and a personal apology from the manager".into(),
            }),
            None,
        )
        .await
        .expect("resolve");
    svc.execute(
        &c1,
        ComplaintCommand::RecordSatisfaction(RecordSatisfaction {
            expected_version: None,
            satisfaction: SatisfactionInput {
                score: 4,
                ownership: 5,
                felt_valued: 4,
                speed: 3,
                sincere_regret: 5,
                reason: String::new(),
            },
        }),
        None,
    )
    .await
    .expect("satisfaction");
    let last = svc
        .execute(
            &c1,
            ComplaintCommand::RecordRootCause(RecordRootCause {
                expected_version: None,
                root_cause: RootCauseInput {
                    whys: vec![
                        "The cashier refused the coupon".into(),
                        "The till rejected it".into(),
                        "The promotion was not loaded at this store".into(),
                    ],
                    category: "quality_and_price".into(),
                    corrective_action: "Promotions are checked on every till each Monday".into(),
                },
            }),
            None,
        )
        .await
        .expect("root cause");
    Lifecycle {
        filed,
        again,
        letter,
        acked,
        retried,
        retried_again,
        stale,
        resolved,
        last,
    }
}

/// Files c-bad with a severity that does not exist, and checks that it is refused naming
/// the field and that nothing is written.
async fn refuse_a_bad_filing<L: EventLog>(svc: &Complaints<L>, log: &L) {
    // Bad input: every bad field named, nothing written.
    let ends_before: Vec<u64> = {
        let mut v = Vec::new();
        for p in 0..PARTITIONS {
            v.push(log.end_offset(EVENTS_TOPIC, p).await.expect("end"));
        }
        v
    };
    let bad = svc
        .execute(&id("c-bad"), filing("c-bad", "urgent"), None)
        .await
        .expect_err("bad severity");
    assert_eq!(
        bad.violations().map(|v| v.fields().collect::<Vec<_>>()),
        Some(vec!["severity"])
    );
    for p in 0..PARTITIONS {
        assert_eq!(
            log.end_offset(EVENTS_TOPIC, p).await.expect("end"),
            ends_before[p as usize],
            "nothing appended for bad input"
        );
    }
    assert!(svc.get(&id("c-bad")).await.expect("get").is_none());
}

/// Files c-2, then eight commands race on its version 1: returns the notes of those that
/// won and how many lost with a version conflict.
async fn race_on_one_version<L: EventLog>(svc: &Arc<Complaints<L>>) -> (Vec<String>, i32) {
    svc.execute(&id("c-2"), filing("c-2", "minor"), None)
        .await
        .expect("file c-2");
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let svc = svc.clone();
            tokio::spawn(async move {
                svc.execute(&id("c-2"), update(&format!("note {i}"), Some(1)), None)
                    .await
            })
        })
        .collect();
    let mut won = Vec::new();
    let mut lost = 0;
    for (i, r) in racers.into_iter().enumerate() {
        match r.await.expect("racer") {
            Ok(_) => won.push(format!("note {i}")),
            Err(FeedbackError::Conflict { expected: 1, .. })
            | Err(FeedbackError::Complaint(ComplaintError::VersionConflict {
                expected: 1, ..
            })) => lost += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    (won, lost)
}

/// Six writers add an update to c-2 each, without an expected version, retrying on
/// conflict.
async fn racing_writers<L: EventLog>(svc: &Arc<Complaints<L>>) {
    let writers: Vec<_> = (0..6)
        .map(|i| {
            let svc = svc.clone();
            tokio::spawn(async move {
                loop {
                    match svc
                        .execute(
                            &id("c-2"),
                            update(&format!("w{i}"), None),
                            Some(&format!("w{i}")),
                        )
                        .await
                    {
                        Ok(_) => return,
                        Err(FeedbackError::Conflict { .. }) => continue,
                        Err(e) => panic!("unexpected error {e}"),
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
}

// ---------------------------------------------------------------------------------
// The behaviours, each run on both logs by `on_both_logs!` below.

/// A complaint is filed open at version 1, acknowledged, and resolved.
async fn a_complaint_is_filed_acknowledged_and_resolved<L: EventLog>(
    log: Arc<L>,
    redis: &RedisServer,
) {
    let svc = setup(log, redis).await;
    let Lifecycle {
        filed,
        acked,
        resolved,
        ..
    } = lifecycle(&svc).await;
    assert_eq!((filed.version, filed.status), (1, ComplaintStatus::Open));
    assert_eq!(acked.status, ComplaintStatus::Acknowledged);
    assert_eq!(resolved.status, ComplaintStatus::Resolved);
}

/// A retried filing, and an update sent again with the same idempotency key, change
/// nothing.
async fn retries_change_nothing<L: EventLog>(log: Arc<L>, redis: &RedisServer) {
    let svc = setup(log, redis).await;
    let Lifecycle {
        again,
        retried,
        retried_again,
        ..
    } = lifecycle(&svc).await;
    assert_eq!(again.version, 1, "a retried filing changes nothing");
    // The same key again: once.
    assert_eq!(retried.version, retried_again.version);
    assert_eq!(retried_again.updates.len(), 1, "one update for one key");
}

/// A letter is refused as the first response to a major complaint, naming the method.
async fn a_letter_is_no_first_response_to_a_major_complaint<L: EventLog>(
    log: Arc<L>,
    redis: &RedisServer,
) {
    let svc = setup(log, redis).await;
    let Lifecycle { letter, .. } = lifecycle(&svc).await;
    assert_eq!(
        letter.violations().map(|v| v.fields().collect::<Vec<_>>()),
        Some(vec!["method"])
    );
}

/// A command on a stale expected version is a version conflict.
async fn a_stale_expected_version_is_a_conflict<L: EventLog>(log: Arc<L>, redis: &RedisServer) {
    let svc = setup(log, redis).await;
    let Lifecycle { stale, .. } = lifecycle(&svc).await;
    assert!(matches!(
        stale,
        FeedbackError::Complaint(ComplaintError::VersionConflict { expected: 1, .. })
    ));
}

/// Bad input names every bad field and writes nothing.
async fn bad_input_names_the_field_and_writes_nothing<L: EventLog>(
    log: Arc<L>,
    redis: &RedisServer,
) {
    let svc = setup(log.clone(), redis).await;
    // Bad input: every bad field named, nothing written.
    refuse_a_bad_filing(&svc, log.as_ref()).await;
}

/// Concurrent commands decided on one version: exactly one lands, the others are version
/// conflicts.
async fn of_commands_racing_on_one_version_one_lands<L: EventLog>(
    log: Arc<L>,
    redis: &RedisServer,
) {
    let svc = Arc::new(setup(log, redis).await);
    // Concurrent commands decided on one version: exactly the acknowledged ones land.
    let (won, lost) = race_on_one_version(&svc).await;
    assert_eq!(won.len(), 1, "one command wins version 1");
    assert_eq!(lost, 7);
    let c2 = svc.get(&id("c-2")).await.expect("get").expect("c-2");
    assert_eq!(c2.version, 2);
    assert_eq!(
        c2.updates
            .iter()
            .map(|u| u.note.clone())
            .collect::<Vec<_>>(),
        won,
        "the winner's update is there and no other"
    );
}

/// Without an expected version, racing writers retry on conflict and none is lost.
async fn racing_writers_without_a_version_lose_nothing<L: EventLog>(
    log: Arc<L>,
    redis: &RedisServer,
) {
    let svc = Arc::new(setup(log, redis).await);
    race_on_one_version(&svc).await;
    // Without an expected version, racing writers retry on conflict and none is lost.
    racing_writers(&svc).await;
    let c2 = svc.get(&id("c-2")).await.expect("get").expect("c-2");
    let mut notes: Vec<String> = c2.updates.iter().map(|u| u.note.clone()).collect();
    notes.sort();
    assert_eq!(notes.len(), 7, "{notes:?}");
    assert!((0..6).all(|i| notes.contains(&format!("w{i}"))));
}

/// After all of the above, the read model equals the log's story, and a replay into an
/// empty Redis rebuilds it byte for byte.
async fn a_replay_into_an_empty_redis_rebuilds_the_read_model<L: EventLog>(
    log: Arc<L>,
    redis: &RedisServer,
) {
    let svc = Arc::new(setup(log.clone(), redis).await);
    let c1 = id("c-1");
    let Lifecycle { last, .. } = lifecycle(&svc).await;
    refuse_a_bad_filing(&svc, log.as_ref()).await;
    race_on_one_version(&svc).await;
    racing_writers(&svc).await;

    // The read model equals the log's story, and a replay into an empty Redis rebuilds it
    // byte for byte.
    let log_commits = commits(log.as_ref()).await;
    let c1_commits: Vec<_> = log_commits
        .iter()
        .filter(|c| c.complaint_id == c1)
        .collect();
    // File, acknowledge, update, resolve, satisfaction, root cause: the refused and
    // retried commands appended nothing.
    assert_eq!(
        c1_commits.len(),
        6,
        "every accepted c-1 commit is in the log, once"
    );
    let before = read_model(redis).await;
    assert_eq!(svc.get(&c1).await.expect("get"), Some(last.clone()));
    common::flush(redis).await;
    assert!(read_model(redis).await.is_empty());
    for p in 0..PARTITIONS {
        svc.projection()
            .catch_up(log.as_ref(), p, None)
            .await
            .expect("replay");
    }
    let after = read_model(redis).await;
    assert_eq!(after, before, "replay rebuilds the read model identically");
    let replayed = Complaint::replay(
        c1_commits
            .iter()
            .filter(|c| {
                after[&feedback::projection::complaint_key(
                    svc.projection().partition_of(&c1),
                    "c-1",
                )]
                    .get(&format!("w:{}", c.base_version))
                    == Some(&c.commit_id)
            })
            .flat_map(|c| c.events.iter()),
    );
    assert_eq!(
        replayed,
        Some(last),
        "the accepted commits replay to the state"
    );
    // c-2: the filing, the race's winner and the six writers were accepted; every losing
    // attempt is in the log too, rejected the same way on every replay.
    let c2_key =
        feedback::projection::complaint_key(svc.projection().partition_of(&id("c-2")), "c-2");
    let c2_commits: Vec<_> = log_commits
        .iter()
        .filter(|c| c.complaint_id == id("c-2"))
        .collect();
    let accepted = c2_commits
        .iter()
        .filter(|c| after[&c2_key].get(&format!("w:{}", c.base_version)) == Some(&c.commit_id))
        .count();
    assert_eq!(accepted, 8);
    assert!(c2_commits.len() >= 8);
}

// ---------------------------------------------------------------------------------
// The tests: each behaviour on the embedded log and on a Kafka-protocol broker, each
// with its own Redis.

/// For the behaviour `$name`, a module `$name` with two tests: `embedded_log` and `kafka`.
macro_rules! on_both_logs {
    ($($(#[$doc:meta])* $name:ident;)+) => {$(
        $(#[$doc])*
        mod $name {
            use super::*;

            /// On the embedded log.
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn embedded_log() {
                init_test_logging();
                let dir = tempfile::tempdir().expect("dir");
                let log = Arc::new(EmbeddedLog::open(dir.path()).expect("log"));
                let redis = RedisServer::start();
                $name(log, &redis).await;
            }

            /// On a Kafka-protocol broker (Tansu).
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn kafka() {
                init_test_logging();
                let broker = Tansu::start();
                let log = Arc::new(
                    KafkaLog::new(KafkaSettings {
                        bootstrap_servers: broker.bootstrap(),
                        ..KafkaSettings::default()
                    })
                    .expect("log"),
                );
                let redis = RedisServer::start();
                $name(log, &redis).await;
            }
        }
    )+};
}

on_both_logs! {
    /// Filed, acknowledged, resolved.
    a_complaint_is_filed_acknowledged_and_resolved;
    /// Retries change nothing.
    retries_change_nothing;
    /// A letter is no first response to a major complaint.
    a_letter_is_no_first_response_to_a_major_complaint;
    /// A stale expected version is a conflict.
    a_stale_expected_version_is_a_conflict;
    /// Bad input names the field and writes nothing.
    bad_input_names_the_field_and_writes_nothing;
    /// Of commands racing on one version, one lands.
    of_commands_racing_on_one_version_one_lands;
    /// Racing writers without a version lose nothing.
    racing_writers_without_a_version_lose_nothing;
    /// A replay into an empty Redis rebuilds the read model.
    a_replay_into_an_empty_redis_rebuilds_the_read_model;
}
