//! The process's metrics: one Prometheus recorder behind the [`metrics`] facade, installed
//! the first time an admin endpoint asks for it and shared by every server of the process
//! (`churnguard-local` runs all services in one process: each admin endpoint shows them
//! all), and the gRPC metrics every [`crate::GrpcServer`] records.
//!
//! Without an admin endpoint no recorder is installed and the facade's macros do nothing.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Calls answered, by service, method and gRPC status code.
pub const REQUESTS_TOTAL: &str = "grpc_server_requests_total";
/// How long calls took, from the request to the end of the response (its status).
pub const REQUEST_DURATION_SECONDS: &str = "grpc_server_request_duration_seconds";
/// Calls started and not yet ended.
pub const IN_FLIGHT_REQUESTS: &str = "grpc_server_in_flight_requests";

/// The buckets of [`REQUEST_DURATION_SECONDS`], in seconds: 1 ms (a cache read) to 60 s
/// (a long stream); calls slower than that land in `+Inf`.
pub const DURATION_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The buckets of histograms counting things (`*_records`, `*_swipes`): 1 to 10,000.
pub const COUNT_BUCKETS: [f64; 9] = [
    1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 10000.0,
];

/// The buckets of `*_business_seconds` histograms (SLA clocks): 5 minutes to 5 days.
pub const BUSINESS_SECONDS_BUCKETS: [f64; 10] = [
    300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0, 172800.0, 432000.0,
];

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus recorder, installed on the first call: what `/metrics`
/// renders. Later calls (a second server, another test) get the same one. If some other
/// recorder was installed first, this one renders without receiving anything (a warning
/// says so).
///
/// Every histogram gets buckets by its name's ending (so none is rendered as a summary):
/// `_business_seconds` [`BUSINESS_SECONDS_BUCKETS`], `_seconds` [`DURATION_BUCKETS`],
/// `_records` and `_swipes` [`COUNT_BUCKETS`].
pub fn prometheus() -> &'static PrometheusHandle {
    RECORDER.get_or_init(|| {
        let buckets: [(&str, &[f64]); 4] = [
            ("_business_seconds", &BUSINESS_SECONDS_BUCKETS),
            ("_seconds", &DURATION_BUCKETS),
            ("_records", &COUNT_BUCKETS),
            ("_swipes", &COUNT_BUCKETS),
        ];
        let mut builder = PrometheusBuilder::new();
        for (suffix, values) in buckets {
            builder = builder
                .set_buckets_for_metric(Matcher::Suffix(suffix.to_owned()), values)
                .expect("bucket lists are not empty");
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if let Err(e) = metrics::set_global_recorder(recorder) {
            tracing::warn!(error = %e, "another metrics recorder is installed: /metrics stays empty");
        }
        describe();
        crate::consumer_metrics::describe();
        churnguard_eventlog::metrics::describe();
        handle
    })
}

/// Whether [`prometheus`] has installed the process's recorder: metric handles taken
/// from then on record (one taken before stays a no-op), so a service caches its handles
/// only once this is true.
pub fn installed() -> bool {
    RECORDER.get().is_some()
}

/// HELP text and units of the metrics the runtime records.
fn describe() {
    metrics::describe_counter!(
        REQUESTS_TOTAL,
        metrics::Unit::Count,
        "gRPC calls ended, by service, method and status code"
    );
    metrics::describe_histogram!(
        REQUEST_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "How long gRPC calls took, from the request to the status (streams: to their end)"
    );
    metrics::describe_gauge!(
        IN_FLIGHT_REQUESTS,
        metrics::Unit::Count,
        "gRPC calls started and not yet ended"
    );
}
