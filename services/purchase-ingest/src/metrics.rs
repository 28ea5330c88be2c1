//! What ingest records for ops, on top of the runtime's gRPC metrics: swipes accepted and
//! rejected (by reason), how long the log took to acknowledge, how many swipes are being
//! published, and the size of the batches callers send.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

use crate::error::IngestError;

/// Swipes acknowledged: durable in the log.
pub const SWIPES_ACCEPTED_TOTAL: &str = "churnguard_ingest_swipes_accepted_total";
/// Swipes refused, by reason (`invalid`, `overloaded`, `unavailable`, `timeout`, `forbidden`).
pub const SWIPES_REJECTED_TOTAL: &str = "churnguard_ingest_swipes_rejected_total";
/// Seconds from handing a batch to the log to its acknowledgement.
pub const PUBLISH_DURATION_SECONDS: &str = "churnguard_ingest_publish_duration_seconds";
/// Swipes handed to the log and not yet acknowledged.
pub const PUBLISH_IN_FLIGHT: &str = "churnguard_ingest_publish_in_flight";
/// Swipes per call (RecordSwipe: 1) or per StreamSwipes batch.
pub const BATCH_SWIPES: &str = "churnguard_ingest_batch_swipes";

/// Every reason a swipe can be refused for: the `reason` label's values.
pub const REASONS: [&str; 5] = [
    "invalid",
    "overloaded",
    "unavailable",
    "timeout",
    "forbidden",
];

/// HELP text and units; the counters start at zero for every reason.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        SWIPES_ACCEPTED_TOTAL,
        Unit::Count,
        "Swipes acknowledged to the caller: durable in the log"
    );
    describe_counter!(
        SWIPES_REJECTED_TOTAL,
        Unit::Count,
        "Swipes refused, by reason (invalid, overloaded, unavailable, timeout, forbidden)"
    );
    describe_histogram!(
        PUBLISH_DURATION_SECONDS,
        Unit::Seconds,
        "Seconds from handing a batch of swipes to the event log to its acknowledgement"
    );
    describe_gauge!(
        PUBLISH_IN_FLIGHT,
        Unit::Count,
        "Swipes handed to the event log and not yet acknowledged"
    );
    describe_histogram!(
        BATCH_SWIPES,
        Unit::Count,
        "Swipes per RecordSwipe call (1) or StreamSwipes batch"
    );
    metrics::counter!(SWIPES_ACCEPTED_TOTAL).increment(0);
    for reason in REASONS {
        metrics::counter!(SWIPES_REJECTED_TOTAL, "reason" => reason).increment(0);
    }
    metrics::gauge!(PUBLISH_IN_FLIGHT).set(0.0);
}

/// The `reason` label of a refused swipe.
fn reason(e: &IngestError) -> &'static str {
    match e {
        IngestError::InvalidSwipe(_) | IngestError::BatchTooLarge { .. } => "invalid",
        IngestError::Overloaded => "overloaded",
        IngestError::OtherStore(_)
        | IngestError::ImportForbidden(_)
        | IngestError::ImportNotAllowed => "forbidden",
        IngestError::DeadlineExceeded(_) => "timeout",
        IngestError::Publish(_)
        | IngestError::Config(_)
        | IngestError::Startup(_)
        | IngestError::Serve(_) => "unavailable",
    }
}

/// The handles of ingest's series. Every call records into several of them, so they are
/// taken once (a `counter!` per call is a registry look-up: hashing the name and labels,
/// a read lock, a clone) and kept once the process's recorder is installed.
struct Handles {
    accepted: Counter,
    /// One per [`REASONS`], in that order.
    rejected: [Counter; REASONS.len()],
    publish_duration: Histogram,
    in_flight: Gauge,
    batch: Histogram,
}

static HANDLES: OnceLock<Handles> = OnceLock::new();

impl Handles {
    fn take() -> Self {
        Handles {
            accepted: metrics::counter!(SWIPES_ACCEPTED_TOTAL),
            rejected: REASONS
                .map(|reason| metrics::counter!(SWIPES_REJECTED_TOTAL, "reason" => reason)),
            publish_duration: metrics::histogram!(PUBLISH_DURATION_SECONDS),
            in_flight: metrics::gauge!(PUBLISH_IN_FLIGHT),
            batch: metrics::histogram!(BATCH_SWIPES),
        }
    }

    /// The kept handles, taken on the first call after the process's recorder is
    /// installed; `None` before that (a handle taken then would stay a no-op for good).
    fn kept() -> Option<&'static Handles> {
        if let Some(handles) = HANDLES.get() {
            return Some(handles);
        }
        churnguard_runtime::recorder::installed().then(|| HANDLES.get_or_init(Handles::take))
    }
}

/// Records through the kept handles (`with`), or, before the process's recorder is
/// installed, through the macro for the one series (`otherwise`): without a recorder
/// that records nothing, cheaply, and with some other recorder it records there.
fn record(with: impl FnOnce(&Handles), otherwise: impl FnOnce()) {
    match Handles::kept() {
        Some(handles) => with(handles),
        None => otherwise(),
    }
}

/// A batch's answers: counts accepted and refused swipes.
pub fn answered<T>(outcomes: &[Result<T, IngestError>]) {
    let mut accepted = 0;
    let mut refused = [0u64; REASONS.len()];
    for o in outcomes {
        match o {
            Ok(_) => accepted += 1,
            Err(e) => {
                let r = reason(e);
                if let Some(i) = REASONS.iter().position(|x| *x == r) {
                    refused[i] += 1;
                }
            }
        }
    }
    record(
        |h| h.accepted.increment(accepted),
        || metrics::counter!(SWIPES_ACCEPTED_TOTAL).increment(accepted),
    );
    for (i, n) in refused.into_iter().enumerate().filter(|(_, n)| *n > 0) {
        record(
            |h| h.rejected[i].increment(n),
            || metrics::counter!(SWIPES_REJECTED_TOTAL, "reason" => REASONS[i]).increment(n),
        );
    }
}

/// A batch of `swipes` received.
pub fn batch(swipes: usize) {
    let swipes = swipes as f64;
    record(
        |h| h.batch.record(swipes),
        || metrics::histogram!(BATCH_SWIPES).record(swipes),
    );
}

/// `swipes` handed to the log (positive) or answered by it (negative).
pub fn in_flight(swipes: f64) {
    record(
        |h| h.in_flight.increment(swipes),
        || metrics::gauge!(PUBLISH_IN_FLIGHT).increment(swipes),
    );
}

/// The log answered a batch after `took`.
pub fn published(took: Duration) {
    let seconds = took.as_secs_f64();
    record(
        |h| h.publish_duration.record(seconds),
        || metrics::histogram!(PUBLISH_DURATION_SECONDS).record(seconds),
    );
}
