//! The admin HTTP endpoint a [`crate::GrpcServer`] serves beside its gRPC listener
//! ([`crate::GrpcServer::with_admin`]), for the platform rather than for clients:
//!
//! - `GET /metrics`: the process's metrics in the Prometheus text format
//!   ([`crate::recorder`]; the gRPC metrics are in [`crate::grpc_metrics`]).
//! - `GET /healthz`: 200 while the process serves (liveness).
//! - `GET /readyz`: 200 while the server's gRPC health (the server as a whole, `""`)
//!   is SERVING and it is not stopping, else 503 (readiness: take it out of rotation).
//!
//! It starts with the gRPC server and stops after it: `/readyz` says 503 from the moment
//! shutdown is asked for, and the endpoint keeps answering while calls in flight finish.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::Health;
use tonic_health::server::{HealthReporter, HealthService};

/// The content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often histogram samples are folded into their buckets between scrapes, so that
/// memory stays bounded however rarely `/metrics` is read.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// What the handlers read.
#[derive(Clone)]
struct Admin {
    prometheus: &'static PrometheusHandle,
    health: HealthReporter,
    /// Cancelled once shutdown is asked for: not ready any more.
    stopping: CancellationToken,
}

/// Serves the admin endpoint on `listener` until `stop` is cancelled, then finishes the
/// requests in flight. `stopping` turns `/readyz` to 503 before that.
pub(crate) fn spawn(
    listener: TcpListener,
    health: HealthReporter,
    stopping: CancellationToken,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let prometheus = crate::recorder::prometheus();
    let routes = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(Admin {
            prometheus,
            health,
            stopping,
        });
    let addr = listener.local_addr().ok();
    tokio::spawn(async move {
        let upkeep = async {
            let mut every = tokio::time::interval(UPKEEP_EVERY);
            loop {
                every.tick().await;
                prometheus.run_upkeep();
            }
        };
        let served = axum::serve(listener, routes).with_graceful_shutdown(stop.cancelled_owned());
        tokio::select! {
            served = served => {
                if let Err(e) = served {
                    tracing::error!(?addr, error = %e, "admin endpoint failed");
                }
            }
            () = upkeep => {}
        }
    })
}

/// `GET /metrics`.
async fn metrics(State(admin): State<Admin>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        admin.prometheus.render(),
    )
}

/// `GET /readyz`.
async fn ready(State(admin): State<Admin>) -> (StatusCode, &'static str) {
    if admin.stopping.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "stopping\n");
    }
    let asked = HealthService::from_health_reporter(admin.health)
        .check(tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        }))
        .await;
    match asked {
        Ok(answer) if answer.get_ref().status == ServingStatus::Serving as i32 => {
            (StatusCode::OK, "ready\n")
        }
        _ => (StatusCode::SERVICE_UNAVAILABLE, "not serving\n"),
    }
}
