//! gRPC health (`grpc.health.v1`) that follows a dependency: SERVING while a probe of it
//! succeeds, NOT_SERVING while it does not. [`crate::GrpcServer::with_health_probe`]
//! runs it for every service a server serves.

use std::future::Future;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// Probes every `every` until `stop`, setting each of `services` and the server as a
/// whole ("") to the result; a probe that takes longer than `every` (at least 2 s) counts
/// as failed. `dependency` names what is probed in the log line written when the answer
/// changes. `first` is told once the first answer is set.
/// Whether a request path calls gRPC health (`/grpc.health.v1.Health/...`): probes
/// every few seconds, without credentials, that no guard stops and no trace records.
pub(crate) fn is_health_call(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
}

pub(crate) async fn follow<F, Fut, E>(
    health: HealthReporter,
    services: &[&str],
    dependency: &str,
    every: Duration,
    stop: CancellationToken,
    first: oneshot::Sender<()>,
    mut probe: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut last = None;
    let mut first = Some(first);
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
        set_all(&health, services, status).await;
        if let Some(first) = first.take() {
            let _ = first.send(());
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Sets each of `services` and the server as a whole ("") to `status`.
pub(crate) async fn set_all(health: &HealthReporter, services: &[&str], status: ServingStatus) {
    for service in services {
        health.set_service_status(*service, status).await;
    }
    health.set_service_status("", status).await;
}
