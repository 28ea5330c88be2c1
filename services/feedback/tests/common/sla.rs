//! The SLA timer scenario that `sla.rs` checks and watches: a major complaint
//! auto-escalating through all three levels on business hours, over a bank holiday and a
//! pause, with two timer instances racing on every alarm; the policy, directory and clock
//! it runs on.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDateTime, TimeDelta, TimeZone, Utc};
use churnguard_domain::CustomerInput;
use churnguard_domain::feedback::calendar::{CalendarConfig, WeekHours};
use churnguard_domain::feedback::complaint::{
    AcknowledgeComplaint, AddComplaintUpdate, ComplaintCommand, ComplaintEvent, Context,
    FileComplaint, SealedContact, WaitOnCustomer,
};
use churnguard_domain::feedback::sla::{
    BusinessDuration, DirectoryConfig, PerLevel, PerSeverity, RegionEntry, SlaPolicy, StoreEntry,
    Targets,
};
use churnguard_domain::feedback::vocab::Level;
use churnguard_domain::ids::ComplaintId;
use churnguard_eventlog::EventLog;
use churnguard_redis::RedisConnection;
use churnguard_runtime::Clock;
use churnguard_testkit::RedisServer;
use feedback::journal::Commit;
use feedback::projection::{Projection, complaint_key};
use feedback::timers::{Fired, fire_due};
use feedback::{Complaints, EVENTS_TOPIC};

/// The events topic's partitions in the SLA tests.
pub const PARTITIONS: u32 = 3;
/// An hour in seconds.
pub const HOUR: i64 = 3600;

/// A UTC instant from a London wall-clock time.
pub fn london(s: &str) -> DateTime<Utc> {
    // Every instant of this test is in August or September 2025: BST, UTC+1.
    let local = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("date");
    Utc.from_utc_datetime(&(local - TimeDelta::hours(1)))
}

/// A UTC instant as London wall-clock time, with the weekday.
pub fn show(t: DateTime<Utc>) -> String {
    (t + TimeDelta::hours(1))
        .format("%a %Y-%m-%d %H:%M:%S")
        .to_string()
}

/// `hours` business hours.
pub fn h(hours: i64) -> BusinessDuration {
    BusinessDuration::from_secs(hours * HOUR)
}

/// The default targets, but for a major complaint's resolution: 40 h, the sum of the three
/// levels' 8 h + 16 h + 24 h, so that in these scenarios (major complaints) every level's
/// resolution run is due by the level's own target. A resolution run falls due at the
/// earlier of the level's target and what is left of the severity's (counted from
/// filing); with the default 24 h the owner, taking over with 16 h of it spent, would
/// have 8 h rather than 24.
pub fn policy() -> SlaPolicy {
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
pub fn directory() -> DirectoryConfig {
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
pub struct FakeClock(pub Arc<Mutex<DateTime<Utc>>>);

impl FakeClock {
    pub fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().expect("clock") = t;
    }
    pub fn clock(&self) -> Clock {
        let me = self.0.clone();
        Arc::new(move || *me.lock().expect("clock"))
    }
}

/// A complaints service (a timer instance) on `log` and `redis`, with the SLA policy,
/// the directory and `clock`.
pub async fn instance<L: EventLog>(
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
pub async fn read_model(redis: &RedisServer) -> BTreeMap<String, String> {
    let mut all: BTreeMap<String, String> = super::hashes(redis, &["fc:*", "fl:*"])
        .await
        .into_iter()
        .map(|(k, h)| (k, format!("{h:?}")))
        .collect();
    for (k, z) in super::sorted_sets(redis, "fd:*").await {
        all.insert(k, format!("{z:?}"));
    }
    all
}

/// The earliest entry of every partition's deadline index.
pub async fn next_due<L: EventLog>(svc: &Complaints<L>) -> Option<DateTime<Utc>> {
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
pub async fn tick_both<L: EventLog>(
    a: &Complaints<L>,
    b: &Complaints<L>,
    now: DateTime<Utc>,
) -> Fired {
    let mut total = Fired::default();
    for p in 0..PARTITIONS {
        let (x, y) = tokio::join!(fire_due(a, p, now), fire_due(b, p, now));
        total += x.expect("timer a");
        total += y.expect("timer b");
    }
    total
}

/// A complaint id.
pub fn id(s: &str) -> ComplaintId {
    ComplaintId::parse(s).expect("id")
}

/// The timer-driven scenario of [`play`], played out: what it did, for the tests to check
/// to the second.
pub struct Played<L> {
    pub a: Complaints<L>,
    /// The complaint's partition.
    pub p: u32,
    /// Every commit on that partition, in log order, losers of the timer race included.
    pub log_commits: Vec<Commit>,
    /// The accepted ones, in log order.
    pub accepted: Vec<Commit>,
    /// The read model at the end.
    pub before: BTreeMap<String, String>,
    /// The partition's deadline index right after the filing.
    pub first_index: Vec<(String, i64)>,
    /// Each alarm's instant, and what both instances' ticks a second before it fired.
    pub early_ticks: Vec<(DateTime<Utc>, Fired)>,
    /// Each alarm's instant, and what both instances' ticks at it fired.
    pub on_time_ticks: Vec<(DateTime<Utc>, Fired)>,
    /// Everything the two instances recorded.
    pub fired: Fired,
    /// The partition's deadline index at the end.
    pub last_index: Vec<(String, i64)>,
    /// Steps of the timeline, and the wall time it took.
    pub steps: usize,
    pub wall: std::time::Duration,
}

/// Plays the scenario on `log` and `redis`: a major complaint filed on Friday 22 August
/// 2025 at 16:30, what people do and when, and two timer instances ticking a second
/// before and at every alarm, until nothing is left to fire.
pub async fn play<L: EventLog>(log: Arc<L>, redis: &RedisServer) -> Played<L> {
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
    let first_index = a.projection().deadlines(p).await.expect("index");

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
    let (mut early_ticks, mut on_time_ticks) = (Vec::new(), Vec::new());
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
            // A second early.
            fake.set(t - TimeDelta::seconds(1));
            let early = tick_both(&a, &b, t - TimeDelta::seconds(1)).await;
            early_ticks.push((t, early));
        }
        fake.set(t);
        if action == Some(t) {
            let (_, cmd) = actions.pop().expect("action");
            a.execute(&c, cmd, None).await.expect("action");
        }
        if due == Some(t) {
            let f = tick_both(&a, &b, t).await;
            on_time_ticks.push((t, f));
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
    let log_commits = super::commits(log.as_ref(), p).await;
    let accepted: Vec<Commit> = log_commits
        .iter()
        .filter(|cm| hash.get(&format!("w:{}", cm.base_version)) == Some(&cm.commit_id))
        .cloned()
        .collect();
    let last_index = a.projection().deadlines(p).await.expect("index");
    Played {
        a,
        p,
        log_commits,
        accepted,
        before,
        first_index,
        early_ticks,
        on_time_ticks,
        fired,
        last_index,
        steps,
        wall,
    }
}

/// The story as the accepted commits tell it, a line per event, each alarm checked to
/// have been recorded at the second it fell due.
pub fn timeline(accepted: &[Commit]) -> Vec<String> {
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
    timeline
}
