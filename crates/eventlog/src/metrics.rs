//! What every log client records, whichever backend: records the log refused or failed
//! to acknowledge, by topic, and (Kafka) producers retired after a fatal or ambiguous
//! failure. Recorded through the [`metrics`] facade; a service's admin endpoint exports
//! them.

use crate::{Appended, LogError};

/// Records an append did not get acknowledged (refused, timed out, broker away), by
/// topic.
pub const PRODUCE_ERRORS_TOTAL: &str = "churnguard_log_produce_errors_total";
/// Producers retired after a failure that makes later writes unsafe (Kafka; the
/// embedded log has none).
pub const PRODUCER_RETIREMENTS_TOTAL: &str = "churnguard_log_producer_retirements_total";

/// HELP text and units; call once the process's recorder is installed.
pub fn describe() {
    metrics::describe_counter!(
        PRODUCE_ERRORS_TOTAL,
        metrics::Unit::Count,
        "Records an append to the event log did not get acknowledged, by topic"
    );
    metrics::describe_counter!(
        PRODUCER_RETIREMENTS_TOTAL,
        metrics::Unit::Count,
        "Kafka producers retired after a fatal or ambiguous failure (writes go on with a new one)"
    );
    metrics::counter!(PRODUCER_RETIREMENTS_TOTAL).increment(0);
}

/// A topic is in use: its error counter exists from now on, at zero.
pub fn topic_in_use(topic: &str) {
    metrics::counter!(PRODUCE_ERRORS_TOTAL, "topic" => topic.to_owned()).increment(0);
}

/// An append's results: counts the records not acknowledged.
pub fn appended(topic: &str, results: &[Result<Appended, LogError>]) {
    let failed = results.iter().filter(|r| r.is_err()).count();
    if failed > 0 {
        metrics::counter!(PRODUCE_ERRORS_TOTAL, "topic" => topic.to_owned())
            .increment(failed as u64);
    }
}

/// A producer was retired.
pub fn producer_retired() {
    metrics::counter!(PRODUCER_RETIREMENTS_TOTAL).increment(1);
}
