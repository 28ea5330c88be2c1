//! The feedback API served: the Feedback service with gRPC health and reflection (v1 and
//! v1alpha) on one listener. [`App::bind`] binds, [`App::spawn`] serves on a background
//! task and returns a [`Running`] handle with the bound address and a graceful stop.
//!
//! Health follows Redis ([`App::with_health_probe`], as every service reports it:
//! `churnguard_telemetry::health::follow`): SERVING while it answers a PING, NOT_SERVING
//! while it does not, and NOT_SERVING once the server stops.

use std::net::SocketAddr;
use std::time::Duration;

use churnguard_eventlog::EventLog;
use churnguard_proto::feedback::v1::feedback_server::FeedbackServer;
use churnguard_redis::RedisConnection;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;

use crate::api::{FeedbackApi, SERVICE_NAME};

/// Why the server could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reflection: {0}")]
    Reflection(String),
    #[error("server: {0}")]
    Serve(String),
    #[error("server task: {0}")]
    Task(String),
}

/// A bound, not yet serving, feedback API.
#[derive(Debug)]
pub struct App<L> {
    listener: TcpListener,
    local_addr: SocketAddr,
    api: FeedbackApi<L>,
    grace: Duration,
    health: Option<(RedisConnection, Duration)>,
}

impl<L: EventLog + 'static> App<L> {
    /// Binds `addr` (port 0 picks a free one).
    pub async fn bind(addr: &str, api: FeedbackApi<L>) -> Result<Self, AppError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| AppError::Bind {
                addr: addr.to_owned(),
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| AppError::Bind {
            addr: addr.to_owned(),
            source,
        })?;
        Ok(Self {
            listener,
            local_addr,
            api,
            grace: Duration::from_secs(10),
            health: None,
        })
    }

    /// How long in-flight calls may take to finish at shutdown.
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Reports health by probing `redis` every `every`. Without it, health says SERVING
    /// for as long as the server serves.
    pub fn with_health_probe(mut self, redis: RedisConnection, every: Duration) -> Self {
        self.health = Some((redis, every));
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes; then stops accepting, lets in-flight calls
    /// finish within the grace period and reports NOT_SERVING.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(churnguard_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| AppError::Reflection(e.to_string()))?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(churnguard_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(|e| AppError::Reflection(e.to_string()))?;
        health
            .set_service_status(SERVICE_NAME, ServingStatus::Serving)
            .await;
        let probing = CancellationToken::new();
        let probe = self.health.map(|(redis, every)| {
            tokio::spawn(churnguard_telemetry::health::follow(
                health.clone(),
                SERVICE_NAME,
                "Redis",
                every,
                probing.clone(),
                move || {
                    let redis = redis.clone();
                    async move { redis.ping().await }
                },
            ))
        });

        let (stopping, mut stopped) = tokio::sync::watch::channel(false);
        // Escalation streams never end by themselves: end them at shutdown.
        let streams = self.api.stopping();
        let server = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(FeedbackServer::new(self.api))
            .serve_with_incoming_shutdown(TcpListenerStream::new(self.listener), async move {
                shutdown.await;
                streams.cancel();
                let _ = stopping.send(true);
            });
        tracing::info!(addr = %self.local_addr, "feedback API serving");

        let grace = self.grace;
        let mut server = std::pin::pin!(server);
        let served = tokio::select! {
            r = &mut server => r.map_err(|e| AppError::Serve(e.to_string())),
            () = async {
                let _ = stopped.wait_for(|s| *s).await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(?grace, "in-flight calls did not finish within the grace period");
                Ok(())
            }
        };
        probing.cancel();
        if let Some(probe) = probe {
            let _ = probe.await;
        }
        health
            .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
            .await;
        tracing::info!("feedback API stopped");
        served
    }

    /// Serves on a background task until [`Running::stop`] (or drop).
    pub fn spawn(self) -> Running {
        let addr = self.local_addr;
        Running::spawn(addr, |shutdown| self.run_until(shutdown.wait()))
    }
}

/// A serving feedback API: where it listens, and a graceful stop that lets in-flight
/// calls finish within the grace period.
pub type Running = churnguard_config::Serving<AppError>;

impl From<churnguard_config::TaskFailed> for AppError {
    fn from(e: churnguard_config::TaskFailed) -> Self {
        AppError::Task(e.0)
    }
}
