//! feedback killed (SIGKILL) between a command's append and its projection, then
//! restarted: the real binary, on a real Kafka-protocol broker (Tansu) and a real Redis.
//!
//! Redis writes are paused (`CLIENT PAUSE ... WRITE`) while a FileComplaint is in flight:
//! its commit reaches the log, its projection waits on Redis, and the process is killed
//! right there; the caller gets no answer. Restarted (Redis writes again), the command
//! is applied once: the caller's retry with the same idempotency key is answered with
//! the complaint at version 1, a second retry gets the same answer, and the log holds
//! one commit for the key.
//!
//! The same for an escalation the SLA clock makes: a store manager's 8 s (a calendar open
//! around the clock) run out while Redis refuses the service's writes but to its
//! partition leases (an ACL on its Redis user; a pause would hold up the lease renewals
//! the clock's ticks wait on); the breach and escalation reach the log, their projection
//! fails, the process is killed, and restarted with its writes back: the complaint is
//! with the regional manager, escalated once, and stays so. Each prints its counts.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use churnguard_domain::feedback::complaint::ComplaintEvent;
use churnguard_eventlog::EventLog;
use churnguard_kafka::{KafkaLog, KafkaSettings};
use churnguard_proto::feedback::v1 as pb;
use churnguard_proto::feedback::v1::feedback_client::FeedbackClient;
use churnguard_testkit::{RedisServer, Tansu, eventually, free_port, init_test_logging};
use feedback::EVENTS_TOPIC;
use tonic::transport::Channel;

const PARTITIONS: u32 = 3;
const KEK_VAR: &str = "FEEDBACK_KILL_TEST_KEK";

/// A feedback process, killed when dropped so that a failing test leaves none behind.
struct Feedback(Child);

impl Feedback {
    fn start(broker: &Tansu, redis: &RedisServer, port: u16) -> Self {
        Self::start_with(broker, &redis.url(), port, None)
    }

    /// As [`Feedback::start`], with a settings file and Redis at `redis_url`.
    fn start_with(
        broker: &Tansu,
        redis_url: &str,
        port: u16,
        config: Option<&std::path::Path>,
    ) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_feedback"));
        if let Some(path) = config {
            command.env("CHURNGUARD_FEEDBACK_CONFIG", path);
        }
        let child = command
            .env(
                "CHURNGUARD_FEEDBACK_LISTEN_ADDR",
                format!("127.0.0.1:{port}"),
            )
            .env("CHURNGUARD_FEEDBACK_ADMIN_ADDR", "")
            .env("CHURNGUARD_FEEDBACK_LOG__BACKEND", "kafka")
            .env(
                "CHURNGUARD_FEEDBACK_LOG__KAFKA__BOOTSTRAP_SERVERS",
                broker.bootstrap(),
            )
            .env("CHURNGUARD_FEEDBACK_REDIS__URL", redis_url)
            .env(
                "CHURNGUARD_FEEDBACK_TOPICS__PARTITIONS",
                PARTITIONS.to_string(),
            )
            .env("CHURNGUARD_FEEDBACK_KEK__ENV", KEK_VAR)
            .env(KEK_VAR, "07".repeat(32))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(broker.log_for("feedback"))
            .spawn()
            .expect("start the feedback binary");
        Self(child)
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Feedback {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client of the service on `port`, once it answers.
async fn client(port: u16) -> FeedbackClient<Channel> {
    eventually(
        Duration::from_secs(60),
        "feedback to answer",
        || async move {
            let mut c = FeedbackClient::connect(format!("http://127.0.0.1:{port}"))
                .await
                .ok()?;
            c.list_complaints(pb::ListComplaintsRequest::default())
                .await
                .ok()?;
            Some(c)
        },
    )
    .await
}

/// `redis-cli` against `redis` with `args`: what it printed.
fn redis_cli(redis: &RedisServer, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &redis.port().to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `redis-cli` with `args`, which must answer OK.
fn redis_ok(redis: &RedisServer, args: &[&str]) {
    let answer = redis_cli(redis, args);
    assert_eq!(answer, "OK", "redis-cli {args:?}");
}

/// The test's own client of the broker, reading the events topic.
fn reader(broker: &Tansu) -> KafkaLog {
    KafkaLog::new(KafkaSettings {
        bootstrap_servers: broker.bootstrap(),
        client_id: "kill-test".into(),
        ..KafkaSettings::default()
    })
    .expect("kafka log")
}

async fn events_end(log: &KafkaLog) -> u64 {
    let mut end = 0;
    for p in 0..PARTITIONS {
        end += log.end_offset(EVENTS_TOPIC, p).await.unwrap_or(0);
    }
    end
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_between_append_and_projection_the_command_is_applied_once() {
    init_test_logging();
    let broker = Tansu::start();
    let redis = RedisServer::start();
    let log = reader(&broker);
    let port = free_port();
    let mut first = Feedback::start(&broker, &redis, port);
    let mut c = client(port).await;
    c.file_complaint(common::filing("warm-up"))
        .await
        .expect("a complaint filed before the fault");

    // Redis takes no writes: the next command's commit reaches the log, its projection
    // waits.
    let before = events_end(&log).await;
    redis_ok(&redis, &["CLIENT", "PAUSE", "60000", "WRITE"]);
    let call = tokio::spawn({
        let mut c = c.clone();
        async move { c.file_complaint(common::filing("key-kill")).await }
    });
    eventually(
        Duration::from_secs(30),
        "the commit to reach the log",
        || async { (events_end(&log).await > before).then_some(()) },
    )
    .await;
    first.kill();
    let lost = call.await.expect("the caller's task");
    assert!(lost.is_err(), "the killed call was not answered: {lost:?}");
    redis_ok(&redis, &["CLIENT", "UNPAUSE"]);

    let _second = Feedback::start(&broker, &redis, port);
    let mut c = client(port).await;
    let retried = c
        .file_complaint(common::filing("key-kill"))
        .await
        .expect("the retry is answered")
        .into_inner();
    let again = c
        .file_complaint(common::filing("key-kill"))
        .await
        .expect("a second retry is answered")
        .into_inner();
    let summary = retried.complaint.clone().expect("the complaint");
    assert_eq!(summary.version, 1, "filed once: {summary:?}");
    assert_eq!(again, retried, "every retry gets the same answer");

    let mut commits = Vec::new();
    for p in 0..PARTITIONS {
        commits.extend(common::commits(&log, p).await);
    }
    let of_key = commits
        .iter()
        .filter(|c| c.idempotency_key.as_deref() == Some("key-kill"))
        .count();
    eprintln!(
        "feedback kill: commands sent 2 (and 2 retries), answered {} of them before the kill, \
         commits in the log {} ({of_key} for the killed command's key), complaint {} at version {}",
        1,
        commits.len(),
        summary.complaint_id,
        summary.version
    );
    assert_eq!(of_key, 1, "the killed command's commit is in the log once");
    assert_eq!(commits.len(), 2, "the warm-up's and the killed command's");
}

/// An SLA whose store manager has 8 s, on a calendar open around the clock, warning at a
/// quarter; store `store-1` in region `north`.
const FAST_SLA: &str = r#"
timer_interval_ms = 200

[sla]
warnings = [0.25]

[sla.escalation]
store_manager = "8s"
regional_manager = "16h"
owner = "24h"

[directory]
owner = "e-1"
default_calendar = "always"

[directory.regions.north]
manager = "e-20"

[directory.stores.store-1]
manager = "e-11"
region = "north"

[directory.calendars.always]
timezone = "UTC"
holidays = []

[directory.calendars.always.hours]
monday = ["00:00-24:00"]
tuesday = ["00:00-24:00"]
wednesday = ["00:00-24:00"]
thursday = ["00:00-24:00"]
friday = ["00:00-24:00"]
saturday = ["00:00-24:00"]
sunday = ["00:00-24:00"]
"#;

/// The version of `complaint` in the read model (`fc:{p<partition>}:<id>`, field `v`).
fn projected_version(redis: &RedisServer, complaint: &str) -> u64 {
    let key = redis_cli(
        redis,
        &["--scan", "--pattern", &format!("fc:*:{complaint}")],
    );
    assert!(!key.is_empty() && !key.contains('\n'), "one hash: {key:?}");
    redis_cli(redis, &["HGET", &key, "v"])
        .parse()
        .expect("a version")
}

/// Escalations of `complaint` in the log: (from, to) of each.
async fn escalations(log: &KafkaLog, complaint: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in 0..PARTITIONS {
        for commit in common::commits(log, p).await {
            if commit.complaint_id.as_str() != complaint {
                continue;
            }
            for e in commit.events {
                if let ComplaintEvent::ComplaintEscalated { from, to, .. } = e {
                    out.push((from.as_str().to_owned(), to.as_str().to_owned()));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_between_an_escalations_append_and_its_projection_it_escalates_once() {
    init_test_logging();
    let broker = Tansu::start();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("feedback.toml");
    std::fs::write(&config, FAST_SLA).expect("settings");
    let log = reader(&broker);
    // The service's own Redis user, whose rights the fault takes away.
    redis_ok(
        &redis,
        &[
            "ACL",
            "SETUSER",
            "feedback",
            "on",
            ">kill-test",
            "~*",
            "&*",
            "+@all",
        ],
    );
    let url = format!("redis://feedback:kill-test@127.0.0.1:{}/", redis.port());
    let port = free_port();
    let mut first = Feedback::start_with(&broker, &url, port, Some(&config));
    let mut c = client(port).await;
    let filed = c
        .file_complaint(common::filing("escalate-me"))
        .await
        .expect("filed")
        .into_inner()
        .complaint
        .expect("the complaint");
    assert_eq!(filed.level, pb::Level::StoreManager as i32, "{filed:?}");

    // The quarter's warning (at 2 s) is recorded and projected; then Redis refuses the
    // service's writes but to its leases, and the store manager's 8 s run out.
    let filed_end = events_end(&log).await;
    eventually(Duration::from_secs(30), "the SLA warning", || async {
        (events_end(&log).await > filed_end).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let warned_end = events_end(&log).await;
    redis_ok(
        &redis,
        &[
            "ACL",
            "SETUSER",
            "feedback",
            "resetkeys",
            "%R~*",
            "~lease:*",
        ],
    );
    eventually(
        Duration::from_secs(30),
        "the breach to reach the log",
        || async { (events_end(&log).await > warned_end).then_some(()) },
    )
    .await;
    first.kill();
    let appended = escalations(&log, &filed.complaint_id).await;
    let projected = projected_version(&redis, &filed.complaint_id);
    redis_ok(&redis, &["ACL", "SETUSER", "feedback", "resetkeys", "~*"]);

    let _second = Feedback::start_with(&broker, &url, port, Some(&config));
    let mut c = client(port).await;
    let request = pb::GetComplaintRequest {
        complaint_id: filed.complaint_id.clone(),
        ..Default::default()
    };
    let escalated = eventually(
        Duration::from_secs(30),
        "the complaint with the regional manager",
        || {
            let (mut c, request) = (c.clone(), request.clone());
            async move {
                let summary = c
                    .get_complaint(request)
                    .await
                    .ok()?
                    .into_inner()
                    .complaint?
                    .summary?;
                (summary.level == pb::Level::RegionalManager as i32).then_some(summary)
            }
        },
    )
    .await;
    // A few of the restarted clock's ticks: nothing fires again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = c
        .get_complaint(request)
        .await
        .expect("the complaint")
        .into_inner()
        .complaint
        .and_then(|c| c.summary)
        .expect("a summary");
    let recorded = escalations(&log, &filed.complaint_id).await;
    eprintln!(
        "feedback kill (escalation): escalations in the log when killed {appended:?}, \
         after the restart {recorded:?}; the read model had version {projected} when the \
         process died; complaint at version {} with {}",
        after.version, after.holder_id
    );
    assert!(
        projected < after.version,
        "killed before the escalation was projected: {projected} of {}",
        after.version
    );
    assert_eq!(
        appended,
        [("store_manager".to_owned(), "regional_manager".to_owned())],
        "the escalation was in the log when the process died"
    );
    assert_eq!(
        recorded, appended,
        "escalated once: not again after the restart"
    );
    assert_eq!(
        after, escalated,
        "nothing changed after the restart's own ticks"
    );
}
