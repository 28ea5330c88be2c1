//! Feedback scales like churn-scoring: replicas split the SLA timers' partitions through
//! a consumer group, every alarm fires once, and a replica that stops hands its partitions
//! to the other: at once when it stops (SIGTERM: it leaves the group), after its leases
//! run out when it is killed (SIGKILL). One replica is the `feedback` binary (so it can be
//! signalled), the other runs in the test; both on a real Kafka-protocol broker (Tansu)
//! and a real Redis.
//!
//! Why leases for SIGKILL: Tansu 0.6's group coordinator drops a member whose session
//! expired only when a survivor's heartbeat finds it missing; it answers that heartbeat
//! REBALANCE_IN_PROGRESS but keeps the group in its formed state, so the survivor's rejoin
//! (same member id, same metadata) is handed back the old generation's assignment and the
//! dead member's partitions stay unowned (read in its `coordinator/group/administrator.rs`;
//! seen with both the cooperative-sticky and the round-robin protocol). The survivor
//! cannot learn the member count from the broker either (DescribeGroups fails on Tansu's
//! SQLite storage). So members keep partition leases in Redis (`churnguard_redis::leases`),
//! and one that sees a partition without a lease for a session timeout leaves and joins
//! again as a new member, which makes the broker form a new generation
//! (`churnguard_runtime::partitions`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use churnguard_domain::feedback::calendar::{CalendarConfig, WeekHours};
use churnguard_domain::feedback::complaint::ComplaintEvent;
use churnguard_domain::feedback::sla::{BusinessDuration, PerLevel, PerSeverity, Targets};
use churnguard_kafka::{KafkaLog, KafkaSettings};
use churnguard_proto::feedback::v1 as pb;
use churnguard_proto::feedback::v1::feedback_client::FeedbackClient;
use churnguard_testkit::{RedisServer, Tansu, init_test_logging};
use churnguard_vault::Kek;
use feedback::App;
use feedback::config::Settings;
use tonic::transport::Channel;

const PARTITIONS: u32 = 4;
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);
const KEK_HEX: &str = "0707070707070707070707070707070707070707070707070707070707070707";
const COMPLAINTS: usize = 12;

fn secs(s: i64) -> BusinessDuration {
    BusinessDuration::from_secs(s)
}

/// Settings both replicas share: four partitions, a calendar that never closes, and SLA
/// targets of seconds, so alarms fall due while the test watches.
fn settings(broker: &Tansu, redis: &RedisServer, client: &str) -> Settings {
    let mut s = Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        timer_interval_ms: 200,
        shutdown_grace_ms: 2_000,
        ..Settings::default()
    };
    s.topics.partitions = PARTITIONS;
    let t = Targets {
        first_response: secs(6),
        update_interval: secs(60),
        resolution: secs(600),
    };
    s.sla.targets = PerSeverity {
        minor: t.clone(),
        moderate: t.clone(),
        major: t.clone(),
        critical: t,
    };
    s.sla.warnings = vec![0.5];
    s.sla.escalation = PerLevel {
        store_manager: secs(600),
        regional_manager: secs(600),
        owner: secs(600),
    };
    let always = vec!["00:00-24:00".to_owned()];
    s.directory.calendars = BTreeMap::from([(
        "always".to_owned(),
        CalendarConfig {
            timezone: "UTC".into(),
            hours: WeekHours {
                monday: always.clone(),
                tuesday: always.clone(),
                wednesday: always.clone(),
                thursday: always.clone(),
                friday: always.clone(),
                saturday: always.clone(),
                sunday: always,
            },
            holidays: Vec::new(),
        },
    )]);
    s.directory.default_calendar = "always".into();
    s.redis.url = redis.url();
    s.log.backend = churnguard_config::Backend::Kafka;
    s.log.kafka = KafkaSettings {
        bootstrap_servers: broker.bootstrap(),
        client_id: client.into(),
        group_session_timeout_ms: SESSION_TIMEOUT.as_millis() as u64,
        ..KafkaSettings::default()
    };
    s
}

/// A child process killed when dropped, also when the test fails.
struct Replica(Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `feedback` binary with `settings` as its config file, its log beside `broker`'s.
fn spawn_binary(settings: &Settings, dir: &std::path::Path, broker: &Tansu) -> Replica {
    let mut settings = settings.clone();
    settings.kek.env = Some("TEST_FEEDBACK_KEK".into());
    let file = dir.join("feedback.toml");
    std::fs::write(&file, toml::to_string(&settings).expect("toml")).expect("config file");
    let child = Command::new(env!("CARGO_BIN_EXE_feedback"))
        .arg("--config")
        .arg(&file)
        .env("TEST_FEEDBACK_KEK", KEK_HEX)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(broker.log_for("feedback"))
        .spawn()
        .expect("the feedback binary starts");
    Replica(child)
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_split_the_timers_fire_each_alarm_once_and_a_stopped_one_hands_over() {
    hand_over("TERM").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_replica_hands_its_partitions_over_once_its_leases_run_out() {
    hand_over("KILL").await;
}

/// Two replicas split the partitions and fire the alarms of theirs; then A gets `signal`
/// and B takes over all partitions and fires every later alarm; no alarm fires twice.
async fn hand_over(signal: &str) {
    init_test_logging();
    let broker = Tansu::start();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");

    let (mut a, b, log, owned) = two_replicas(&broker, &redis, dir.path()).await;

    // Complaints over every partition; their first-response warnings (3 s) and breaches
    // (6 s) fire on whichever replica owns the partition.
    let mut client = FeedbackClient::connect(b.endpoint()).await.expect("client");
    let ids = file(&mut client, "file", COMPLAINTS).await;
    let partitions: BTreeSet<u32> = ids
        .iter()
        .map(|id| churnguard_domain::partition_for_key(id.as_bytes(), PARTITIONS))
        .collect();
    assert_eq!(
        partitions.len() as u32,
        PARTITIONS,
        "complaints on every partition"
    );

    // They breach with both replicas up, each firing the partitions it owns.
    breached(&log, &ids).await;

    // Signal A. SIGTERM: it finishes its ticks and leaves the group, so B need not wait
    // for A's session to expire. SIGKILL: A is gone at once; its leases run out after a
    // session timeout, and B rejoins once they have been out for another.
    let stopped = Instant::now();
    let pid = a.0.id().to_string();
    let signalled = Command::new("kill")
        .args([format!("-{signal}").as_str(), &pid])
        .status()
        .expect("kill");
    assert!(signalled.success());
    let status = a.0.wait().expect("A exits");
    if signal == "TERM" {
        assert!(status.success(), "A stops cleanly: {status}");
    }
    // The time it took is printed (seen: about 5 s after SIGTERM); the bound is generous,
    // as these machines are shared and a timed assertion would be noise.
    wait_for(SESSION_TIMEOUT * 10, "B takes over A's partitions", || {
        (owned.get().len() == PARTITIONS as usize).then_some(())
    })
    .await;
    eprintln!(
        "B owned every partition {:?} after A got SIG{signal} (session timeout {SESSION_TIMEOUT:?})",
        stopped.elapsed()
    );

    // New complaints on A's old partitions: B fires their alarms now.
    let mut later = Vec::new();
    for i in 0..COMPLAINTS {
        let filed = client
            .file_complaint(common::filing(&format!("later-{i}")))
            .await
            .expect("filed")
            .into_inner()
            .complaint
            .expect("complaint");
        later.push(filed.complaint_id);
    }
    breached(&log, &later).await;
    b.stop().await.expect("B stops");

    // Each alarm was fired once: two replicas firing the same alarm would leave two
    // commits decided on the same version of the complaint (the loser rejected). None
    // was lost either: every complaint breached.
    let all: Vec<String> = ids.iter().chain(&later).cloned().collect();
    let (per_version, alarms, breaches) = alarm_commits(log.as_ref(), &all).await;
    assert_eq!(breaches.len(), all.len(), "every complaint breached");
    let doubled: Vec<_> = per_version.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        doubled.is_empty(),
        "commits on the same version, fired twice: {doubled:?}"
    );
    eprintln!(
        "{alarms} alarm commits for {} complaints, none fired twice",
        all.len()
    );
}

/// Replica A (the binary) and replica B (in the test, on `log`), once the group has split
/// the four partitions two and two; B's owned partitions follow `Owned`.
async fn two_replicas(
    broker: &Tansu,
    redis: &RedisServer,
    dir: &std::path::Path,
) -> (
    Replica,
    feedback::Running,
    Arc<KafkaLog>,
    churnguard_runtime::Owned,
) {
    // Replica A, the binary, first: it takes every partition.
    let a = spawn_binary(&settings(broker, redis, "feedback-a"), dir, broker);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Replica B in the test: the group splits the four partitions between the two.
    let b_settings = settings(broker, redis, "feedback-b");
    let log = Arc::new(KafkaLog::new(b_settings.log.kafka.clone()).expect("kafka"));
    let b = App::build(b_settings, log.clone(), Kek::parse(KEK_HEX).expect("kek"))
        .await
        .expect("builds");
    let owned = b.ownership().timers;
    let b = b.spawn();
    let split = wait_for(
        Duration::from_secs(60),
        "the partitions split two and two",
        || {
            let mine = owned.get();
            (mine.len() == 2).then_some(mine)
        },
    )
    .await;
    eprintln!("replica B runs the timers of partitions {split:?}, A the others");
    (a, b, log, owned)
}

/// Files `n` minor complaints through `client`, ids prefixed with `tag`.
async fn file(client: &mut FeedbackClient<Channel>, tag: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let mut filing = common::filing(&format!("{tag}-{i}"));
        filing.severity = pb::Severity::Minor as i32;
        let c = client
            .file_complaint(filing)
            .await
            .expect("filed")
            .into_inner()
            .complaint
            .expect("complaint");
        ids.push(c.complaint_id);
    }
    ids
}

/// Waits until every complaint of `ids` has breached.
async fn breached(log: &KafkaLog, ids: &[String]) {
    let started = Instant::now();
    loop {
        let (_, _, breaches) = alarm_commits(log, ids).await;
        if breaches.len() == ids.len() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{} of {} complaints breached in 90 s",
            breaches.len(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The commits of `ids` in the log: how many were decided on each (complaint, version),
/// how many carry an alarm, and which complaints have breached.
async fn alarm_commits(
    log: &KafkaLog,
    ids: &[String],
) -> (BTreeMap<(String, u64), usize>, usize, BTreeSet<String>) {
    let wanted: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    let (mut per_version, mut alarms, mut breaches) = (BTreeMap::new(), 0, BTreeSet::new());
    for p in 0..PARTITIONS {
        for commit in common::commits(log, p).await {
            let id = commit.complaint_id.as_str().to_owned();
            if !wanted.contains(id.as_str()) {
                continue;
            }
            *per_version
                .entry((id.clone(), commit.base_version))
                .or_insert(0) += 1;
            for e in &commit.events {
                match e {
                    ComplaintEvent::SlaWarningRaised { .. } => alarms += 1,
                    ComplaintEvent::SlaBreached { .. } => {
                        alarms += 1;
                        breaches.insert(id.clone());
                    }
                    _ => {}
                }
            }
        }
    }
    (per_version, alarms, breaches)
}

/// Polls `check` every 200 ms until it gives a value, or fails after `within`.
async fn wait_for<T>(within: Duration, what: &str, check: impl Fn() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
