//! SLA timers against the embedded log and a real Redis: the deadline index, alarms fired
//! to the second on a fake clock, automatic escalation up the chain, two timer instances
//! racing, a replay into an empty Redis rebuilding the index, and WatchEscalations through
//! a real gRPC client reporting exactly the scenario's alerts.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDateTime, TimeDelta, TimeZone, Utc};
use churnguard_domain::CustomerInput;
use churnguard_domain::feedback::calendar::{CalendarConfig, WeekHours};
use churnguard_domain::feedback::complaint::{
    AcknowledgeComplaint, AddComplaintUpdate, ComplaintCommand, ComplaintEvent, Context,
    EscalationReason, FileComplaint, SealedContact, WaitOnCustomer,
};
use churnguard_domain::feedback::sla::{
    BusinessDuration, DirectoryConfig, PerLevel, PerSeverity, RegionEntry, SlaPolicy, StoreEntry,
    Targets,
};
use churnguard_domain::feedback::vocab::Level;
use churnguard_domain::ids::ComplaintId;
use churnguard_eventlog::EventLog;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_kafka::{KafkaLog, KafkaSettings};
use churnguard_proto::feedback::v1 as pb;
use churnguard_proto::feedback::v1::feedback_client::FeedbackClient;
use churnguard_redis::RedisConnection;
use churnguard_runtime::Clock;
use churnguard_testkit::{RedisServer, Tansu, init_test_logging};
use churnguard_vault::{Kek, RedisKeyStore, Vault};
use feedback::api::FeedbackApi;
use feedback::app::ApiServer;
use feedback::journal::Commit;
use feedback::projection::{Projection, complaint_key};
use feedback::timers::{Fired, fire_due};
use feedback::{Complaints, EVENTS_TOPIC};

const PARTITIONS: u32 = 3;
const HOUR: i64 = 3600;

/// A UTC instant from a London wall-clock time.
fn london(s: &str) -> DateTime<Utc> {
    // Every instant of this test is in August or September 2025: BST, UTC+1.
    let local = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("date");
    Utc.from_utc_datetime(&(local - TimeDelta::hours(1)))
}

fn show(t: DateTime<Utc>) -> String {
    (t + TimeDelta::hours(1))
        .format("%a %Y-%m-%d %H:%M:%S")
        .to_string()
}

fn h(hours: i64) -> BusinessDuration {
    BusinessDuration::from_secs(hours * HOUR)
}

/// The default targets, but for a major complaint's resolution: 40 h, the sum of the three
/// levels' 8 h + 16 h + 24 h, so that in these scenarios (major complaints) every level's
/// resolution run is due by the level's own target. A resolution run falls due at the
/// earlier of the level's target and what is left of the severity's (counted from
/// filing); with the default 24 h the owner, taking over with 16 h of it spent, would
/// have 8 h rather than 24.
fn policy() -> SlaPolicy {
    let targets = |first: i64, update: i64, resolution: i64| Targets {
        first_response: h(first),
        update_interval: h(update),
        resolution: h(resolution),
    };
    SlaPolicy {
        targets: PerSeverity {
            minor: targets(16, 40, 80),
            moderate: targets(8, 24, 40),
            major: targets(4, 8, 40),
            critical: targets(1, 4, 8),
        },
        warnings: vec![0.5, 0.75],
        escalation: PerLevel {
            store_manager: h(8),
            regional_manager: h(16),
            owner: h(24),
        },
        critical_starts_at: Level::RegionalManager,
    }
}

/// Store s-7: Mon-Fri 09:00-17:00 in London, with the August 2025 bank holiday.
fn directory() -> DirectoryConfig {
    let day = vec!["09:00-17:00".to_owned()];
    DirectoryConfig {
        owner: "e-1".into(),
        regions: BTreeMap::from([(
            "north".into(),
            RegionEntry {
                manager: "e-20".into(),
            },
        )]),
        stores: BTreeMap::from([(
            "s-7".into(),
            StoreEntry {
                manager: "e-71".into(),
                region: "north".into(),
                calendar: None,
            },
        )]),
        calendars: BTreeMap::from([(
            "uk-high-street".into(),
            CalendarConfig {
                timezone: "Europe/London".into(),
                hours: WeekHours {
                    monday: day.clone(),
                    tuesday: day.clone(),
                    wednesday: day.clone(),
                    thursday: day.clone(),
                    friday: day,
                    ..WeekHours::default()
                },
                holidays: vec!["2025-08-25".into()],
            },
        )]),
        default_calendar: "uk-high-street".into(),
    }
}

/// A clock the test moves by hand.
#[derive(Clone)]
struct FakeClock(Arc<Mutex<DateTime<Utc>>>);

impl FakeClock {
    fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().expect("clock") = t;
    }
    fn clock(&self) -> Clock {
        let me = self.0.clone();
        Arc::new(move || *me.lock().expect("clock"))
    }
}

async fn instance<L: EventLog>(
    log: Arc<L>,
    redis: &RedisServer,
    clock: &FakeClock,
) -> Complaints<L> {
    let conn = RedisConnection::single(&redis.url()).await.expect("redis");
    Complaints::new(
        log,
        Projection::new(conn, EVENTS_TOPIC, PARTITIONS)
            .with_sla(policy(), directory().build().expect("directory")),
        Context::default(),
        clock.clock(),
    )
}

/// Every hash (complaints, list indexes) and the deadline indexes, as Redis holds them.
async fn read_model(redis: &RedisServer) -> BTreeMap<String, String> {
    let mut all: BTreeMap<String, String> = common::hashes(redis, &["fc:*", "fl:*"])
        .await
        .into_iter()
        .map(|(k, h)| (k, format!("{h:?}")))
        .collect();
    for (k, z) in common::sorted_sets(redis, "fd:*").await {
        all.insert(k, format!("{z:?}"));
    }
    all
}

/// The earliest entry of every partition's deadline index.
async fn next_due<L: EventLog>(svc: &Complaints<L>) -> Option<DateTime<Utc>> {
    let mut best: Option<i64> = None;
    for p in 0..PARTITIONS {
        svc.catch_up(p).await.expect("catch up");
        if let Some((_, s)) = svc.projection().deadlines(p).await.expect("index").first() {
            best = Some(best.map_or(*s, |b| b.min(*s)));
        }
    }
    best.map(|s| DateTime::from_timestamp(s, 0).expect("instant"))
}

/// Both timer instances tick at once on every partition.
async fn tick_both<L: EventLog>(a: &Complaints<L>, b: &Complaints<L>, now: DateTime<Utc>) -> Fired {
    let mut total = Fired::default();
    for p in 0..PARTITIONS {
        let (x, y) = tokio::join!(fire_due(a, p, now), fire_due(b, p, now));
        total += x.expect("timer a");
        total += y.expect("timer b");
    }
    total
}

fn id(s: &str) -> ComplaintId {
    ComplaintId::parse(s).expect("id")
}

/// The timer-driven scenario, played out and checked to the second.
struct Played<L> {
    a: Complaints<L>,
    /// The complaint's partition.
    p: u32,
    /// Every commit on that partition, in log order, losers of the timer race included.
    log_commits: Vec<Commit>,
    /// The accepted ones, in log order.
    accepted: Vec<Commit>,
    /// The read model at the end.
    before: BTreeMap<String, String>,
}

async fn sla_timers<L: EventLog>(log: Arc<L>, redis: &RedisServer) {
    let played = play(log.clone(), redis).await;
    replay(&played, log.as_ref(), redis).await;
}

/// A major complaint auto-escalates through all three levels on business hours, over a
/// bank holiday and a pause, with two timer instances racing on every alarm: its 20
/// events are checked to the second.
async fn play<L: EventLog>(log: Arc<L>, redis: &RedisServer) -> Played<L> {
    log.ensure_topic(EVENTS_TOPIC, PARTITIONS)
        .await
        .expect("topic");
    let fake = FakeClock(Arc::new(Mutex::new(london("2025-08-22 16:30:00"))));
    let a = instance(log.clone(), redis, &fake).await;
    let b = instance(log.clone(), redis, &fake).await;
    let c = id("c-sla");

    // A major complaint filed on Friday 22 August 2025 at 16:30, half an hour before
    // closing, before the bank holiday weekend.
    a.execute(
        &c,
        ComplaintCommand::FileComplaint(FileComplaint {
            expected_version: None,
            complaint_id: c.clone(),
            idempotency_key: "file-c-sla".into(),
            customer: CustomerInput::CustomerId("cust-1".into()),
            contact: SealedContact::new(vec![1, 2, 3]),
            store_id: "s-7".into(),
            channel: "till".into(),
            touchpoint: "staff".into(),
            severity: "major".into(),
            description: "Charged twice for the same basket".into(),
            occurred_at: london("2025-08-22 16:00:00"),
        }),
        None,
    )
    .await
    .expect("file");
    let p = a.projection().partition_of(&c);
    // The index holds the first alarm: 50 % of the 4 h first response, on Tuesday (Monday
    // is the bank holiday).
    assert_eq!(
        a.projection().deadlines(p).await.expect("index"),
        vec![(
            "c-sla".to_owned(),
            london("2025-08-26 10:30:00").timestamp()
        )]
    );

    // What people do, and when.
    let mut actions: Vec<(DateTime<Utc>, ComplaintCommand)> = vec![
        // Tuesday 10:00: the store manager phones the customer (before the 50 % warning
        // of the first response, due 10:30).
        (
            london("2025-08-26 10:00:00"),
            ComplaintCommand::AcknowledgeComplaint(AcknowledgeComplaint {
                expected_version: None,
                method: "phone".into(),
                note: "Called, refund being checked".into(),
            }),
        ),
        // Tuesday 13:00: the store asks for the bank statement; the clocks stop.
        (
            london("2025-08-26 13:00:00"),
            ComplaintCommand::WaitOnCustomer(WaitOnCustomer {
                expected_version: None,
                note: "Please send the bank statement".into(),
            }),
        ),
        // Wednesday 10:00: the customer answers; the clocks run again.
        (
            london("2025-08-27 10:00:00"),
            ComplaintCommand::AddComplaintUpdate(AddComplaintUpdate {
                expected_version: None,
                note: "Statement attached".into(),
                from_customer: true,
            }),
        ),
    ];
    actions.reverse();

    let mut fired = Fired::default();
    let mut steps = 0;
    let wall = std::time::Instant::now();
    loop {
        steps += 1;
        assert!(steps < 200, "the timeline does not end");
        let due = next_due(&a).await;
        let action = actions.last().map(|(t, _)| *t);
        let t = match (due, action) {
            (Some(d), Some(x)) => d.min(x),
            (Some(d), None) => d,
            (None, Some(x)) => x,
            (None, None) => break,
        };
        if due == Some(t) {
            // A second early, nothing fires.
            fake.set(t - TimeDelta::seconds(1));
            let early = tick_both(&a, &b, t - TimeDelta::seconds(1)).await;
            assert_eq!(
                (early.warnings, early.breaches),
                (0, 0),
                "nothing fires before {}",
                show(t)
            );
        }
        fake.set(t);
        if action == Some(t) {
            let (_, cmd) = actions.pop().expect("action");
            a.execute(&c, cmd, None).await.expect("action");
        }
        if due == Some(t) {
            let f = tick_both(&a, &b, t).await;
            assert!(
                f.warnings + f.breaches >= 1,
                "something fires at {}",
                show(t)
            );
            fired += f;
        }
    }
    let wall = wall.elapsed();

    // The story as the log tells it: only accepted commits count.
    let before = read_model(redis).await;
    let hash: BTreeMap<String, String> = {
        let client = redis::Client::open(redis.url()).expect("client");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("conn");
        redis::cmd("HGETALL")
            .arg(complaint_key(p, "c-sla"))
            .query_async(&mut conn)
            .await
            .expect("hash")
    };
    let log_commits = common::commits(log.as_ref(), p).await;
    let accepted: Vec<&Commit> = log_commits
        .iter()
        .filter(|cm| hash.get(&format!("w:{}", cm.base_version)) == Some(&cm.commit_id))
        .collect();
    let mut timeline = Vec::new();
    for e in accepted.iter().flat_map(|cm| cm.events.iter()) {
        let line = match e {
            ComplaintEvent::SlaWarningRaised {
                run,
                fraction_percent,
                due_at,
                at,
            } => {
                assert_eq!(at, due_at, "fired at the second it fell due");
                format!(
                    "{} warning {}% {} at {} (run since {})",
                    show(*due_at),
                    fraction_percent,
                    run.clock,
                    run.level,
                    show(run.started_at)
                )
            }
            ComplaintEvent::SlaBreached { run, due_at, at } => {
                assert_eq!(at, due_at, "fired at the second it fell due");
                format!(
                    "{} breach {} at {} (run since {})",
                    show(*due_at),
                    run.clock,
                    run.level,
                    show(run.started_at)
                )
            }
            ComplaintEvent::ComplaintEscalated { from, to, at, .. } => {
                format!("{} escalated {from} -> {to}", show(*at))
            }
            other => format!("{} {}", show(other.at()), other.event_type()),
        };
        timeline.push(line);
    }
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
    // Each alarm once, though two instances fired every one of them.
    let warnings = timeline.iter().filter(|l| l.contains(" warning ")).count() as u64;
    let breaches = timeline.iter().filter(|l| l.contains(" breach ")).count() as u64;
    assert_eq!((warnings, breaches), (9, 4));
    assert_eq!(
        (fired.warnings, fired.breaches),
        (warnings, breaches),
        "each alarm recorded by exactly one of the two instances"
    );
    // Everything fired: the complaint has no alarm left, the index is empty.
    assert!(a.projection().deadlines(p).await.expect("index").is_empty());
    let accepted = accepted.into_iter().cloned().collect();
    Played {
        a,
        p,
        log_commits,
        accepted,
        before,
    }
}

/// A replay of the played scenario into an empty Redis rebuilds the index and the hashes
/// identically; part way, the index holds the owner's first alarm.
async fn replay<L: EventLog>(played: &Played<L>, log: &L, redis: &RedisServer) {
    let Played {
        a,
        p,
        log_commits,
        before,
        ..
    } = played;
    let p = *p;
    // A replay into an empty Redis rebuilds the index and the hashes identically, also
    // and part way: up to the escalation to the owner, the index holds the owner's first
    // alarm.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sla_timers_on_the_embedded_log() {
    init_test_logging();
    let dir = tempfile::tempdir().expect("dir");
    let log = Arc::new(EmbeddedLog::open(dir.path()).expect("log"));
    let redis = RedisServer::start();
    sla_timers(log, &redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sla_timers_on_a_kafka_protocol_broker() {
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
    sla_timers(log, &redis).await;
}

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
            vec![loser.to_record(london("2025-08-27 13:30:00"))],
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
