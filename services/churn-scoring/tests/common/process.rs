//! The scorer as a process of its own on the real broker and Redis, for the fault tests
//! (kill, zombie): started, signalled, and the ends of the partitions the producer was
//! told it reached.

use std::process::{Child, Command, Stdio};

use churnguard_eventlog::{Appended, LogError};
use churnguard_testkit::{RedisServer, Tansu};

use super::{HORIZON, PARTITIONS};

/// The scorer binary on `broker` and `redis`, in one consumer group; a member that stops
/// answering loses its partitions after 3 s.
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
            "3000",
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
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
