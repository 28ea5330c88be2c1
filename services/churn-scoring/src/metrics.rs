//! What the scorer records for ops, on top of the runtime's gRPC and consumer metrics
//! ([`churnguard_runtime::consumer_metrics`], consumer `scorer`) and Redis's
//! ([`churnguard_redis::metrics`]). Labels are bounded: `store`, `signal` (a churn state),
//! `result`; never a customer.

use std::time::Duration;

use churnguard_domain::policy::ChurnState;
use churnguard_runtime::consumer_metrics::ConsumerMetrics;

/// The scorer as a consumer of the purchases topic.
pub const CONSUMER: ConsumerMetrics = ConsumerMetrics::new("scorer");

/// Seconds from ingest accepting a swipe to its customer's state being committed.
pub const SWIPE_TO_SCORE_SECONDS: &str = "churnguard_swipe_to_score_seconds";
/// Churn-state changes committed, by the customer's home store and the new state.
pub const SIGNALS_TOTAL: &str = "churnguard_churn_signals_total";
/// Absence deadlines assessed by the timers.
pub const TIMER_FIRINGS_TOTAL: &str = "churnguard_timer_firings_total";
/// Model refits, by result (`ok`, `failed`).
pub const MODEL_REFITS_TOTAL: &str = "churnguard_model_refits_total";
/// The BG/NBD log-likelihood of the model in use.
pub const MODEL_LOG_LIKELIHOOD: &str = "churnguard_model_log_likelihood";
/// Customers whose home store it is, by store.
pub const STORE_CUSTOMERS: &str = "churnguard_store_customers";
/// Customers at risk of defecting, by home store.
pub const STORE_AT_RISK_CUSTOMERS: &str = "churnguard_store_at_risk_customers";
/// Customers of a store counted as defected in the last 365 days and not won back.
pub const STORE_DEFECTED_CUSTOMERS: &str = "churnguard_store_defected_customers";
/// The value at risk of a store's at-risk customers, in minor currency units.
pub const STORE_VALUE_AT_RISK: &str = "churnguard_store_value_at_risk_minor_units";

/// HELP text and units, and the series that should exist before anything happened.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        SWIPE_TO_SCORE_SECONDS,
        Unit::Seconds,
        "Seconds from purchase-ingest accepting a swipe to the scorer committing its customer's state"
    );
    describe_counter!(
        SIGNALS_TOTAL,
        Unit::Count,
        "Churn-state changes committed, by home store and new state (active, at_risk, defected, won_back)"
    );
    describe_counter!(
        TIMER_FIRINGS_TOTAL,
        Unit::Count,
        "Absence deadlines the timers assessed"
    );
    describe_counter!(MODEL_REFITS_TOTAL, Unit::Count, "Model refits, by result");
    describe_gauge!(
        MODEL_LOG_LIKELIHOOD,
        "BG/NBD log-likelihood of the fitted model the timers use"
    );
    describe_gauge!(
        STORE_CUSTOMERS,
        Unit::Count,
        "Customers whose home store (most swipes) it is, by store"
    );
    describe_gauge!(
        STORE_AT_RISK_CUSTOMERS,
        Unit::Count,
        "Customers at risk of defecting, by home store"
    );
    describe_gauge!(
        STORE_DEFECTED_CUSTOMERS,
        Unit::Count,
        "Customers of a home store counted as defected in the last 365 days, less those won back"
    );
    describe_gauge!(
        STORE_VALUE_AT_RISK,
        "Expected revenue of a store's at-risk customers that possible defection would lose, in minor currency units"
    );
    churnguard_redis::metrics::describe();
    CONSUMER.register();
    metrics::counter!(TIMER_FIRINGS_TOTAL).increment(0);
    for result in ["ok", "failed"] {
        metrics::counter!(MODEL_REFITS_TOTAL, "result" => result).increment(0);
    }
}

/// A committed change of a customer's churn state.
pub fn signal(store: &str, state: &'static str) {
    metrics::counter!(SIGNALS_TOTAL, "store" => store.to_owned(), "signal" => state).increment(1);
}

/// `count` deadlines assessed.
pub fn timers_fired(count: u64) {
    metrics::counter!(TIMER_FIRINGS_TOTAL).increment(count);
}

/// A refit ended: the new model's log-likelihood, or a failure.
pub fn refit(log_likelihood: Option<f64>) {
    let result = if log_likelihood.is_some() {
        "ok"
    } else {
        "failed"
    };
    metrics::counter!(MODEL_REFITS_TOTAL, "result" => result).increment(1);
    if let Some(ll) = log_likelihood {
        model_in_use(ll);
    }
}

/// The log-likelihood of the model the timers now use.
pub fn model_in_use(log_likelihood: f64) {
    metrics::gauge!(MODEL_LOG_LIKELIHOOD).set(log_likelihood);
}

/// A store's figures, read from Redis.
pub fn store(store: &str, f: &crate::query::StoreFigures) {
    let store = store.to_owned();
    // Every churn state's counter exists for a store once the store does.
    for state in ChurnState::ALL {
        metrics::counter!(SIGNALS_TOTAL, "store" => store.clone(), "signal" => state.as_str())
            .increment(0);
    }
    metrics::gauge!(STORE_CUSTOMERS, "store" => store.clone()).set(f.customers as f64);
    metrics::gauge!(STORE_AT_RISK_CUSTOMERS, "store" => store.clone()).set(f.at_risk as f64);
    metrics::gauge!(STORE_DEFECTED_CUSTOMERS, "store" => store.clone()).set(f.defected as f64);
    metrics::gauge!(STORE_VALUE_AT_RISK, "store" => store).set(f.value_at_risk);
}

/// How long swipes took from ingest to committed state.
pub fn swipes_scored(took: impl Iterator<Item = Duration>) {
    let histogram = metrics::histogram!(SWIPE_TO_SCORE_SECONDS);
    for t in took {
        histogram.record(t.as_secs_f64());
    }
}
