//! The scorer as a process of its own on the real broker and Redis, for the fault tests
//! (kill, zombie): started, signalled, and the ends of the partitions the producer was
//! told it reached.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use churnguard_eventlog::{Appended, LogError};
use churnguard_testkit::{RedisServer, Tansu};

use super::{HORIZON, PARTITIONS};

/// The consumer group's session timeout the scorer processes run with.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(3);

/// The scorer binary on `broker` and `redis`, in one consumer group; a member that stops
/// answering loses its partitions after [`SESSION_TIMEOUT`].
pub fn start_scorer(broker: &Tansu, redis: &RedisServer) -> Child {
    Command::new(env!("CARGO_BIN_EXE_churn-scoring"))
        .env("CHURNGUARD_SCORING_LISTEN_ADDR", "127.0.0.1:0")
        .env("CHURNGUARD_SCORING_ADMIN_ADDR", "127.0.0.1:0")
        .env("CHURNGUARD_SCORING_LOG__BACKEND", "kafka")
        .env(
            "CHURNGUARD_SCORING_LOG__KAFKA__BOOTSTRAP_SERVERS",
            broker.bootstrap(),
        )
        .env("CHURNGUARD_SCORING_REDIS__URL", redis.url())
        .env(
            "CHURNGUARD_SCORING_TOPICS__PARTITIONS",
            PARTITIONS.to_string(),
        )
        .env("CHURNGUARD_SCORING_HORIZON_DAYS", HORIZON.to_string())
        .env("CHURNGUARD_SCORING_BATCH_RECORDS", "300")
        .env("CHURNGUARD_SCORING_REFIT_INTERVAL_SECS", "0")
        .env(
            "CHURNGUARD_SCORING_LOG__KAFKA__GROUP_SESSION_TIMEOUT_MS",
            SESSION_TIMEOUT.as_millis().to_string(),
        )
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(broker.log_for("churn-scoring"))
        .spawn()
        .expect("start the churn-scoring binary")
}

/// A scorer process that is killed when dropped, so that a failing test leaves none
/// behind.
pub struct Scorer(pub Child);

impl Scorer {
    pub fn start(broker: &Tansu, redis: &RedisServer) -> Self {
        Self(start_scorer(broker, redis))
    }

    /// Whether the process has exited (a scorer exits when it cannot start, e.g. the
    /// broker does not answer in time; a supervisor would start it again).
    pub fn exited(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(Some(_)))
    }

    pub fn signal(&self, signal: &str) {
        self::signal(&self.0, signal);
    }
}

impl Drop for Scorer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `signal` (`STOP`, `CONT`) to `child`.
pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {}", child.id());
}

/// Moves each partition's end past the records `results` acknowledged.
pub fn extend_ends(ends: &mut [u64], results: &[Result<Appended, LogError>]) {
    for at in results.iter().flatten() {
        let end = &mut ends[at.partition as usize];
        *end = (*end).max(at.offset + 1);
    }
}

/// Sends `make(from, to)` in chunks of `chunk` until `total` swipes, `pause` apart, in the
/// background, as tills would: a swipe the broker did not acknowledge is sent again
/// (same swipe id: the scorer counts it once, wherever it landed). Answers each
/// partition's end, from the acknowledgements (the end Tansu 0.6's memory storage reports
/// is its newest batch's base offset plus one, short of the batch's other records), and
/// how many swipes were sent, resends included.
pub fn keep_sending(
    log: std::sync::Arc<churnguard_kafka::KafkaLog>,
    make: fn(usize, usize) -> Vec<churnguard_eventlog::OutgoingRecord>,
    total: usize,
    chunk: usize,
    pause: std::time::Duration,
) -> tokio::task::JoinHandle<(Vec<u64>, usize)> {
    use churnguard_eventlog::EventLog;
    tokio::spawn(async move {
        let mut ends = vec![0u64; PARTITIONS as usize];
        let mut sent = 0;
        for from in (0..total).step_by(chunk) {
            let mut pending = make(from, (from + chunk).min(total));
            for _attempt in 0..10 {
                let results = log.append(super::TOPIC, pending.clone()).await;
                sent += pending.len();
                extend_ends(&mut ends, &results);
                if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
                    eprintln!("append from {from}: {e}; sending again");
                }
                pending = pending
                    .into_iter()
                    .zip(results)
                    .filter_map(|(r, res)| res.is_err().then_some(r))
                    .collect();
                if pending.is_empty() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            assert!(pending.is_empty(), "the broker refused swipes ten times");
            tokio::time::sleep(pause).await;
        }
        (ends, sent)
    })
}

/// Appends `records` one per append, so that every partition's newest batch holds one
/// record: Tansu 0.6's memory storage reports a partition's end as its newest batch's
/// base offset plus one, and a scorer whose checkpoint is that base offset was seen to
/// wait there for good (the kill test, stop 18 and 2026-12-03; the zombie test once).
pub async fn append_one_by_one(
    log: &churnguard_kafka::KafkaLog,
    records: Vec<churnguard_eventlog::OutgoingRecord>,
) -> Vec<Result<Appended, LogError>> {
    use churnguard_eventlog::EventLog;
    let mut results = Vec::with_capacity(records.len());
    for record in records {
        results.extend(log.append(super::TOPIC, vec![record]).await);
    }
    results
}
