//! SLA timers against the embedded log and a real Kafka-protocol broker (Tansu), with a
//! real Redis: the deadline index, alarms fired to the second on a fake clock, automatic
//! escalation up the chain, two timer instances racing, a replay into an empty Redis
//! rebuilding the index, and WatchEscalations through a real gRPC client reporting exactly
//! the scenario's alerts. The scenario itself is [`common::sla::play`]; each test plays it
//! on its own Redis (and broker) and checks one behaviour.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use churnguard_domain::CustomerInput;
use churnguard_domain::feedback::complaint::{
    ComplaintCommand, ComplaintEvent, EscalationReason, FileComplaint, SealedContact,
};
use churnguard_domain::feedback::vocab::Level;
use churnguard_eventlog::EventLog;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_kafka::{KafkaLog, KafkaSettings};
use churnguard_proto::feedback::v1 as pb;
use churnguard_proto::feedback::v1::feedback_client::FeedbackClient;
use churnguard_redis::RedisConnection;
use churnguard_testkit::{RedisServer, Tansu, init_test_logging};
use churnguard_vault::{Kek, RedisKeyStore, Vault};
use common::sla::{
    FakeClock, PARTITIONS, Played, id, instance, london, next_due, play, read_model, show, timeline,
};
use feedback::EVENTS_TOPIC;
use feedback::api::FeedbackApi;
use feedback::app::ApiServer;
use feedback::journal::Commit;
use feedback::projection::complaint_key;

// ---------------------------------------------------------------------------------
// The timers, each behaviour run on both logs by `on_both_logs!` below.

/// Filing indexes the first alarm: 50 % of the 4 h first response, on the Tuesday after
/// the bank holiday Monday.
async fn filing_indexes_the_first_alarm_after_the_bank_holiday<L: EventLog>(
    log: Arc<L>,
    redis: &RedisServer,
) {
    let played = play(log, redis).await;
    // The index holds the first alarm: 50 % of the 4 h first response, on Tuesday (Monday
    // is the bank holiday).
    assert_eq!(
        played.first_index,
        vec![(
            "c-sla".to_owned(),
            london("2025-08-26 10:30:00").timestamp()
        )]
    );
}

/// A tick a second before an alarm is due fires nothing; the tick at the second fires it.
async fn nothing_fires_a_second_early_and_something_fires_when_due<L: EventLog>(
    log: Arc<L>,
    redis: &RedisServer,
) {
    let played = play(log, redis).await;
    assert!(!played.on_time_ticks.is_empty(), "alarms fell due");
    for (t, early) in &played.early_ticks {
        assert_eq!(
            (early.warnings, early.breaches),
            (0, 0),
            "nothing fires before {}",
            show(*t)
        );
    }
    for (t, f) in &played.on_time_ticks {
        assert!(
            f.warnings + f.breaches >= 1,
            "something fires at {}",
            show(*t)
        );
    }
}

/// The accepted events tell the story to the second: warnings, breaches and escalations
/// through all three levels on business hours, over the bank holiday and the pause.
async fn the_timeline_escalates_through_all_three_levels_to_the_second<L: EventLog>(
    log: Arc<L>,
    redis: &RedisServer,
) {
    let Played {
        log_commits,
        accepted,
        fired,
        steps,
        wall,
        ..
    } = play(log, redis).await;
    // The story as the log tells it: only accepted commits count.
    let timeline = timeline(&accepted);
    println!("{}", timeline.join("\n"));
    println!(
        "{steps} steps, {} log records on the partition, {} accepted, {:?} of wall time, {fired:?}",
        log_commits.len(),
        accepted.len(),
        wall
    );
    let expected = [
        "Fri 2025-08-22 16:30:00 churnguard.feedback.complaint_filed.v1",
        "Tue 2025-08-26 10:00:00 churnguard.feedback.complaint_acknowledged.v1",
        // Resolution at the store manager (8 h from Friday 16:30): 30 min on Friday,
        // then Tuesday from 09:00.
        "Tue 2025-08-26 12:30:00 warning 50% resolution at store_manager (run since Fri 2025-08-22 16:30:00)",
        "Tue 2025-08-26 13:00:00 churnguard.feedback.waiting_on_customer.v1",
        "Wed 2025-08-27 10:00:00 churnguard.feedback.complaint_updated.v1",
        "Wed 2025-08-27 10:00:00 churnguard.feedback.customer_responded.v1",
        // Paused Tuesday 13:00 to Wednesday 10:00 (5 business hours): 4.5 h had run.
        "Wed 2025-08-27 11:30:00 warning 75% resolution at store_manager (run since Fri 2025-08-22 16:30:00)",
        "Wed 2025-08-27 13:30:00 breach resolution at store_manager (run since Fri 2025-08-22 16:30:00)",
        "Wed 2025-08-27 13:30:00 escalated store_manager -> regional_manager",
        // The regional manager's clocks start at the breach: update 8 h, resolution 16 h.
        "Thu 2025-08-28 09:30:00 warning 50% update at regional_manager (run since Wed 2025-08-27 13:30:00)",
        "Thu 2025-08-28 11:30:00 warning 75% update at regional_manager (run since Wed 2025-08-27 13:30:00)",
        "Thu 2025-08-28 13:30:00 warning 50% resolution at regional_manager (run since Wed 2025-08-27 13:30:00)",
        "Thu 2025-08-28 13:30:00 breach update at regional_manager (run since Wed 2025-08-27 13:30:00)",
        "Thu 2025-08-28 13:30:00 escalated regional_manager -> owner",
        // The owner's: update 8 h, resolution 24 h, from Thursday 13:30.
        "Fri 2025-08-29 09:30:00 warning 50% update at owner (run since Thu 2025-08-28 13:30:00)",
        "Fri 2025-08-29 11:30:00 warning 75% update at owner (run since Thu 2025-08-28 13:30:00)",
        "Fri 2025-08-29 13:30:00 breach update at owner (run since Thu 2025-08-28 13:30:00)",
        "Mon 2025-09-01 09:30:00 warning 50% resolution at owner (run since Thu 2025-08-28 13:30:00)",
        "Mon 2025-09-01 15:30:00 warning 75% resolution at owner (run since Thu 2025-08-28 13:30:00)",
        "Tue 2025-09-02 13:30:00 breach resolution at owner (run since Thu 2025-08-28 13:30:00)",
    ];
    assert_eq!(timeline, expected);
}

/// Each alarm is recorded once, though two instances fired every one of them.
async fn two_racing_instances_record_each_alarm_once<L: EventLog>(
    log: Arc<L>,
    redis: &RedisServer,
) {
    let Played {
        accepted, fired, ..
    } = play(log, redis).await;
    let timeline = timeline(&accepted);
    // Each alarm once, though two instances fired every one of them.
    let warnings = timeline.iter().filter(|l| l.contains(" warning ")).count() as u64;
    let breaches = timeline.iter().filter(|l| l.contains(" breach ")).count() as u64;
    assert_eq!((warnings, breaches), (9, 4));
    assert_eq!(
        (fired.warnings, fired.breaches),
        (warnings, breaches),
        "each alarm recorded by exactly one of the two instances"
    );
}

/// Once everything has fired, the complaint has no alarm left: the index is empty.
async fn once_everything_has_fired_the_index_is_empty<L: EventLog>(
    log: Arc<L>,
    redis: &RedisServer,
) {
    let played = play(log, redis).await;
    // Everything fired: the complaint has no alarm left, the index is empty.
    assert!(played.last_index.is_empty());
}

/// After the scenario, a replay into an empty Redis rebuilds the index and the hashes
/// identically.
async fn a_replay_into_an_empty_redis_rebuilds_the_index_and_the_hashes<L: EventLog>(
    log: Arc<L>,
    redis: &RedisServer,
) {
    let Played { a, before, .. } = play(log, redis).await;
    let before = &before;
    // A replay into an empty Redis rebuilds the index and the hashes identically.
    common::flush(redis).await;
    assert!(read_model(redis).await.is_empty());
    for q in 0..PARTITIONS {
        a.catch_up(q).await.expect("replay");
    }
    assert_eq!(
        &read_model(redis).await,
        before,
        "replay rebuilds identically"
    );
}

/// A replay part way, up to the escalation to the owner, leaves the owner's first alarm
/// in the index.
async fn a_replay_up_to_the_owner_indexes_the_owners_first_alarm<L: EventLog>(
    log: Arc<L>,
    redis: &RedisServer,
) {
    let Played {
        a, p, log_commits, ..
    } = play(log.clone(), redis).await;
    let log = log.as_ref();
    // As after the whole replay: Redis flushed and every partition caught up again.
    common::flush(redis).await;
    for q in 0..PARTITIONS {
        a.catch_up(q).await.expect("replay");
    }
    common::flush(redis).await;
    let to_owner = log_commits
        .iter()
        .position(|cm| {
            cm.events.iter().any(|e| {
                matches!(
                    e,
                    ComplaintEvent::ComplaintEscalated {
                        to: Level::Owner,
                        ..
                    }
                )
            })
        })
        .expect("escalated to the owner") as u64;
    let records = log
        .read(
            EVENTS_TOPIC,
            p,
            0,
            500,
            std::time::Duration::from_millis(500),
        )
        .await
        .expect("read");
    let upto: Vec<_> = records
        .into_iter()
        .filter(|r| r.offset <= to_owner)
        .collect();
    a.projection()
        .project(p, 0, &upto, to_owner + 1)
        .await
        .expect("partial replay");
    assert_eq!(
        a.projection().deadlines(p).await.expect("index"),
        vec![(
            "c-sla".to_owned(),
            london("2025-08-29 09:30:00").timestamp()
        )],
        "after the escalation to the owner, the index holds the owner's first alarm"
    );
}

/// For the behaviour `$name`, a module `$name` with two tests: `embedded_log` and `kafka`,
/// each with its own Redis.
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
    /// The first alarm is indexed after the bank holiday.
    filing_indexes_the_first_alarm_after_the_bank_holiday;
    /// Nothing fires a second early; something fires when due.
    nothing_fires_a_second_early_and_something_fires_when_due;
    /// The timeline escalates through all three levels, to the second.
    the_timeline_escalates_through_all_three_levels_to_the_second;
    /// Two racing instances record each alarm once.
    two_racing_instances_record_each_alarm_once;
    /// Once everything has fired, the index is empty.
    once_everything_has_fired_the_index_is_empty;
    /// A replay rebuilds the index and the hashes.
    a_replay_into_an_empty_redis_rebuilds_the_index_and_the_hashes;
    /// A replay up to the owner indexes the owner's first alarm.
    a_replay_up_to_the_owner_indexes_the_owners_first_alarm;
}

// ---------------------------------------------------------------------------------
// WatchEscalations while the scenario plays.

/// A watch from the beginning of the log: every partition from offset 0.
const BEGINNING: &str = "p0:0,p1:0,p2:0";

/// Who holds each level for store s-7, as [`directory`] names them.
fn holder(level: Level) -> &'static str {
    match level {
        Level::StoreManager => "e-71",
        Level::RegionalManager => "e-20",
        Level::Owner => "e-1",
    }
}

/// An alert in words, its instants to the second (London time).
fn alert_line(a: &pb::EscalationAlert) -> String {
    fn word(name: &str, prefix: &str) -> String {
        name.strip_prefix(prefix)
            .unwrap_or(name)
            .to_ascii_lowercase()
    }
    let instant = |s: &str| {
        show(
            DateTime::parse_from_rfc3339(s)
                .unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"))
                .with_timezone(&Utc),
        )
    };
    let kind = pb::EscalationAlertKind::try_from(a.kind).expect("alert kind");
    let level = pb::Level::try_from(a.level).expect("level");
    let clock = pb::SlaClock::try_from(a.clock).expect("clock");
    format!(
        "{} {} {}% {} at {} due {} | v{} {} holder {} store {}",
        instant(&a.at),
        word(kind.as_str_name(), "ESCALATION_ALERT_KIND_"),
        a.percent_elapsed,
        word(clock.as_str_name(), "SLA_CLOCK_"),
        word(level.as_str_name(), "LEVEL_"),
        if a.due_at.is_empty() {
            "-".to_owned()
        } else {
            instant(&a.due_at)
        },
        a.complaint_version,
        a.complaint_id,
        a.holder_id,
        a.store_id,
    )
}

/// The alerts the accepted commits' events call for, in log order, in [`alert_line`]'s
/// words, with the level each is about.
fn alerts_from_events(accepted: &[Commit]) -> Vec<(Level, String)> {
    let mut out = Vec::new();
    for cm in accepted {
        for (i, e) in cm.events.iter().enumerate() {
            let (kind, percent, clock, level, due, at) = match e {
                ComplaintEvent::SlaWarningRaised {
                    run,
                    fraction_percent,
                    due_at,
                    at,
                } => (
                    "warning_raised",
                    u32::from(*fraction_percent),
                    run.clock.to_string(),
                    run.level,
                    show(*due_at),
                    *at,
                ),
                ComplaintEvent::SlaBreached { run, due_at, at } => (
                    "breached",
                    0,
                    run.clock.to_string(),
                    run.level,
                    show(*due_at),
                    *at,
                ),
                ComplaintEvent::ComplaintEscalated { to, reason, at, .. } => {
                    let clock = match reason {
                        EscalationReason::Breach { clock } => clock.to_string(),
                        EscalationReason::Manual { .. } => "unspecified".to_owned(),
                    };
                    ("escalated", 0, clock, *to, "-".to_owned(), *at)
                }
                _ => continue,
            };
            let line = format!(
                "{} {kind} {percent}% {clock} at {level} due {due} | v{} {} holder {} store s-7",
                show(at),
                cm.base_version + i as u64 + 1,
                cm.complaint_id.as_str(),
                holder(level),
            );
            out.push((level, line));
        }
    }
    out
}

async fn open(
    client: &mut FeedbackClient<tonic::transport::Channel>,
    request: pb::WatchEscalationsRequest,
) -> tonic::Streaming<pb::WatchEscalationsResponse> {
    client
        .watch_escalations(request)
        .await
        .expect("watch")
        .into_inner()
}

fn watch_request(
    level: Option<pb::Level>,
    holder: &str,
    from: &str,
) -> pb::WatchEscalationsRequest {
    pb::WatchEscalationsRequest {
        holder_id: holder.into(),
        level: level.map_or(0, |l| l as i32),
        store_id: String::new(),
        from_position: from.into(),
    }
}

/// WatchEscalations while the timer-driven scenario plays: watchers opened before it
/// starts (everything from the beginning; the owner's level; the regional manager by
/// holder id) and after it ends (from the beginning, also resumed part way through a
/// commit, and with a planted losing duplicate of a breach on the log) receive exactly
/// the alerts the accepted events call for, each once, to the second.
async fn watch_the_sla_timers<L: EventLog + 'static>(log: Arc<L>, redis: &RedisServer) {
    log.ensure_topic(EVENTS_TOPIC, PARTITIONS)
        .await
        .expect("topic");
    // A third instance serves the watch; it fires no timer.
    let served = FakeClock(Arc::new(Mutex::new(london("2025-08-22 16:30:00"))));
    let complaints = Arc::new(instance(log.clone(), redis, &served).await);
    let conn = RedisConnection::single(&redis.url()).await.expect("redis");
    let vault = Arc::new(Vault::new(
        Kek::from_bytes([7; 32]),
        RedisKeyStore::new(conn.clone()),
    ));
    let running = ApiServer::bind("127.0.0.1:0", FeedbackApi::new(complaints, vault, conn))
        .await
        .expect("bind")
        .with_shutdown_grace(std::time::Duration::from_secs(2))
        .spawn();
    let mut client = FeedbackClient::connect(running.endpoint())
        .await
        .expect("connect");
    let mut live_all = open(&mut client, watch_request(None, "", BEGINNING)).await;
    let mut live_owner = open(
        &mut client,
        watch_request(Some(pb::Level::Owner), "", BEGINNING),
    )
    .await;
    let mut live_regional = open(&mut client, watch_request(None, "e-20", BEGINNING)).await;

    let played = play(log.clone(), redis).await;
    let expected = alerts_from_events(&played.accepted);
    let lines = |v: &[(Level, String)], only: Option<Level>| -> Vec<String> {
        v.iter()
            .filter(|(l, _)| only.is_none_or(|o| o == *l))
            .map(|(_, s)| s.clone())
            .collect()
    };
    let all = lines(&expected, None);
    // 9 warnings, 4 breaches and the 2 escalations they caused.
    assert_eq!(all.len(), 15, "{all:#?}");
    println!("{}", all.join("\n"));
    let racing = played
        .log_commits
        .iter()
        .filter(|cm| {
            cm.events.iter().any(|e| {
                matches!(
                    e,
                    ComplaintEvent::SlaWarningRaised { .. } | ComplaintEvent::SlaBreached { .. }
                )
            })
        })
        .count();
    println!("{racing} alarm commits on the log for 13 alarms: the rest lost the race");

    let got = |alerts: Vec<pb::EscalationAlert>| alerts.iter().map(alert_line).collect::<Vec<_>>();
    assert_eq!(
        got(common::take(&mut live_all, all.len(), true).await),
        all,
        "everything, watched live from the beginning"
    );
    let owner = lines(&expected, Some(Level::Owner));
    assert_eq!(owner.len(), 7);
    assert_eq!(
        got(common::take(&mut live_owner, owner.len(), true).await),
        owner,
        "the owner's level"
    );
    let regional = lines(&expected, Some(Level::RegionalManager));
    assert_eq!(regional.len(), 5);
    assert_eq!(
        got(common::take(&mut live_regional, regional.len(), true).await),
        regional,
        "the regional manager, by holder id"
    );

    // A losing duplicate of the store manager's breach and escalation, decided on the
    // same version, as a racing timer instance appends it: never reported.
    let breach = played
        .accepted
        .iter()
        .find(|cm| {
            cm.events
                .iter()
                .any(|e| matches!(e, ComplaintEvent::SlaBreached { .. }))
        })
        .expect("a breach");
    let loser = Commit {
        commit_id: "a-racing-duplicate".into(),
        ..breach.clone()
    };
    for r in log
        .append(
            EVENTS_TOPIC,
            vec![loser.to_record(london("2025-08-27 13:30:00"), None)],
        )
        .await
    {
        r.expect("append the duplicate");
    }

    let mut after = open(&mut client, watch_request(None, "", BEGINNING)).await;
    let whole = common::take(&mut after, all.len(), true).await;
    assert_eq!(
        got(whole.clone()),
        all,
        "everything, watched from the beginning afterwards"
    );
    let store_manager = lines(&expected, Some(Level::StoreManager));
    assert_eq!(
        got(common::take(
            &mut open(
                &mut client,
                watch_request(Some(pb::Level::StoreManager), "e-71", BEGINNING)
            )
            .await,
            store_manager.len(),
            true
        )
        .await),
        store_manager,
        "the store manager, by level and holder id"
    );
    // Resumed after the breach, inside the commit it shares with the escalation.
    let cut = all
        .iter()
        .position(|l| l.contains(" breached "))
        .expect("a breach")
        + 1;
    let resume = whole[cut - 1].position.clone();
    assert!(resume.contains('+'), "a position inside a commit: {resume}");
    assert_eq!(
        got(common::take(
            &mut open(&mut client, watch_request(None, "", &resume)).await,
            all.len() - cut,
            true
        )
        .await),
        all[cut..].to_vec(),
        "resumed from {resume}"
    );

    drop((live_all, live_owner, live_regional, after));
    running.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_escalations_reports_the_sla_timers_on_the_embedded_log() {
    init_test_logging();
    let dir = tempfile::tempdir().expect("dir");
    let log = Arc::new(EmbeddedLog::open(dir.path()).expect("log"));
    let redis = RedisServer::start();
    watch_the_sla_timers(log, &redis).await;
}

/// On Tansu. The watch's per-partition followers and the projection read one partition
/// at different offsets at once; this is the test that found the Kafka adapter re-assigning
/// one shared consumer back and forth, which aborted the process inside librdkafka 2.12.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_escalations_reports_the_sla_timers_on_a_kafka_protocol_broker() {
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
    watch_the_sla_timers(log, &redis).await;
}

/// Two `timers::run` loops tick every 2 ms of wall time while the fake clock moves an
/// hour of business-calendar time at a step, from a Friday afternoon over the bank
/// holiday to the owner's breach: every alarm fires once, within the step after it fell
/// due, and the complaint climbs to the owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_run_loops_on_a_moving_fake_clock() {
    init_test_logging();
    let dir = tempfile::tempdir().expect("dir");
    let log = Arc::new(EmbeddedLog::open(dir.path()).expect("log"));
    let redis = RedisServer::start();
    log.ensure_topic(EVENTS_TOPIC, PARTITIONS)
        .await
        .expect("topic");
    let start = london("2025-08-22 16:30:00");
    let fake = FakeClock(Arc::new(Mutex::new(start)));
    let a = Arc::new(instance(log.clone(), &redis, &fake).await);
    let b = Arc::new(instance(log.clone(), &redis, &fake).await);
    let c = id("c-run");
    a.execute(
        &c,
        ComplaintCommand::FileComplaint(FileComplaint {
            expected_version: None,
            complaint_id: c.clone(),
            idempotency_key: "file-c-run".into(),
            customer: CustomerInput::CustomerId("cust-2".into()),
            contact: SealedContact::new(vec![4, 5, 6]),
            store_id: "s-7".into(),
            channel: "till".into(),
            touchpoint: "staff".into(),
            severity: "major".into(),
            description: "Nobody answered".into(),
            occurred_at: start - TimeDelta::minutes(10),
        }),
        None,
    )
    .await
    .expect("file");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let partitions: Vec<u32> = (0..PARTITIONS).collect();
    let loops: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .map(|svc| {
            let mut stop = stop_rx.clone();
            let partitions = partitions.clone();
            let clock = fake.clock();
            tokio::spawn(async move {
                feedback::timers::run(
                    &svc,
                    &partitions,
                    clock,
                    std::time::Duration::from_millis(2),
                    async move {
                        let _ = stop.wait_for(|s| *s).await;
                    },
                )
                .await;
            })
        })
        .collect();
    let step = TimeDelta::hours(1);
    let end = london("2025-09-05 17:00:00");
    let mut t = start;
    while t < end {
        t += step;
        fake.set(t);
        // Wait (in wall time) until the loops have fired everything due by now.
        let waited = std::time::Instant::now();
        while next_due(&a).await.is_some_and(|d| d <= t) {
            assert!(
                waited.elapsed() < std::time::Duration::from_secs(10),
                "the timer loops fire what is due by {}",
                show(t)
            );
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }
    stop_tx.send(true).expect("stop");
    for l in loops {
        l.await.expect("loop");
    }

    let p = a.projection().partition_of(&c);
    a.catch_up(p).await.expect("catch up");
    let state = a.projection().load(&c).await.expect("load").expect("c-run");
    assert_eq!(state.level, Level::Owner);
    assert!(a.projection().deadlines(p).await.expect("index").is_empty());
    let hash: BTreeMap<String, String> = {
        let client = redis::Client::open(redis.url()).expect("client");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("conn");
        redis::cmd("HGETALL")
            .arg(complaint_key(p, "c-run"))
            .query_async(&mut conn)
            .await
            .expect("hash")
    };
    let log_commits = common::commits(log.as_ref(), p).await;
    let mut marks = Vec::new();
    let mut escalations = Vec::new();
    for e in log_commits
        .iter()
        .filter(|cm| hash.get(&format!("w:{}", cm.base_version)) == Some(&cm.commit_id))
        .flat_map(|cm| cm.events.iter())
    {
        match e {
            ComplaintEvent::SlaWarningRaised {
                run,
                fraction_percent,
                due_at,
                at,
            } => marks.push((*run, Some(*fraction_percent), *due_at, *at)),
            ComplaintEvent::SlaBreached { run, due_at, at } => {
                marks.push((*run, None, *due_at, *at));
            }
            ComplaintEvent::ComplaintEscalated { to, at, .. } => escalations.push((*to, *at)),
            _ => {}
        }
    }
    for (run, kind, due, at) in &marks {
        assert!(
            *due <= *at && *at - *due < step,
            "{run:?} {kind:?} due {} fired {}",
            show(*due),
            show(*at)
        );
    }
    let mut keys: Vec<_> = marks.iter().map(|(r, k, _, _)| (*r, *k)).collect();
    keys.sort_by_key(|(r, k)| (r.started_at, r.clock, *k));
    let n = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), n, "each alarm once");
    assert_eq!(
        marks.iter().filter(|m| m.1.is_none()).count(),
        state.breaches.len()
    );
    // Never acknowledged: the first response breaches at every level, and each breach
    // below the owner moves the complaint up at that instant.
    assert_eq!(
        escalations.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        vec![Level::RegionalManager, Level::Owner]
    );
    // The store manager's first response: 4 h from Friday 16:30 is Tuesday 12:30.
    assert!(marks.iter().any(|(r, k, due, _)| {
        r.level == Level::StoreManager
            && k.is_none()
            && r.clock.as_str() == "first_response"
            && *due == london("2025-08-26 12:30:00")
    }));
    println!(
        "{} alarms, {} records on the partition, {} escalations",
        marks.len(),
        log_commits.len(),
        escalations.len()
    );
}
