//! Redis as the services see it: how long each command took and how many failed, by
//! command (`op`: `EVALSHA`, `HGETALL`, `PIPELINE`, ...). Recorded by
//! [`crate::RedisConnection`] for every command through the [`metrics`] facade; the
//! service's admin endpoint exports them.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Seconds from sending a command (or pipeline) to its reply, by `op`.
pub const COMMAND_DURATION_SECONDS: &str = "churnguard_redis_command_duration_seconds";
/// Commands that failed (connection lost, timeout, error reply), by `op`.
pub const ERRORS_TOTAL: &str = "churnguard_redis_errors_total";

/// HELP text and units; call once the process's recorder is installed.
pub fn describe() {
    metrics::describe_histogram!(
        COMMAND_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "Seconds from sending a Redis command (or pipeline) to its reply, by command"
    );
    metrics::describe_counter!(
        ERRORS_TOTAL,
        metrics::Unit::Count,
        "Redis commands that failed (connection, timeout or error reply), by command"
    );
}

/// The ops seen so far: each gets its error counter, at zero, when first seen, so an
/// error rate can be read before the first error.
static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);

pub(crate) fn record(op: String, took: Duration, failed: bool) {
    let first = {
        let mut seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = seen.get_or_insert_with(HashSet::new);
        !seen.contains(&op) && seen.insert(op.clone())
    };
    if failed || first {
        metrics::counter!(ERRORS_TOTAL, "op" => op.clone()).increment(u64::from(failed));
    }
    metrics::histogram!(COMMAND_DURATION_SECONDS, "op" => op).record(took.as_secs_f64());
}
