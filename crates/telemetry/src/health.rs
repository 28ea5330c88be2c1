//! gRPC health (`grpc.health.v1`) that follows a dependency: SERVING while a probe of it
//! succeeds, NOT_SERVING while it does not. Every service reports this way.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// Probes every `every` until `stop`, setting `service` and the server as a whole ("") to
/// the result; a probe that takes longer than `every` (at least 2 s) counts as failed.
/// `dependency` names what is probed in the log line written when the answer changes.
pub async fn follow<F, Fut, E>(
    health: HealthReporter,
    service: &str,
    dependency: &str,
    every: Duration,
    stop: CancellationToken,
    mut probe: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut last = None;
    loop {
        let ok = matches!(
            tokio::time::timeout(every.max(Duration::from_secs(2)), probe()).await,
            Ok(Ok(()))
        );
        let status = if ok {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        if last != Some(ok) {
            tracing::info!(dependency, healthy = ok, "health changed");
            last = Some(ok);
        }
        health.set_service_status(service, status).await;
        health.set_service_status("", status).await;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
