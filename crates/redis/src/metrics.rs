//! Redis as the services see it: how long each command took and how many failed, by
//! command (`op`: `EVALSHA`, `HGETALL`, `PIPELINE`, ...). Recorded by
//! [`crate::RedisConnection`] for every command through the [`metrics`] facade; the
//! service's admin endpoint exports them.

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

pub(crate) fn record(op: String, took: Duration, failed: bool) {
    if failed {
        metrics::counter!(ERRORS_TOTAL, "op" => op.clone()).increment(1);
    }
    metrics::histogram!(COMMAND_DURATION_SECONDS, "op" => op).record(took.as_secs_f64());
}
