//! purchase-ingest: the front door for card swipes.
//!
//! A library with a thin `main`: [`App::build`] binds the listener and prepares the
//! topic, [`App::local_addr`] tells where it listens (tests bind port 0), and
//! [`App::run_until`] serves until the shutdown future completes, then finishes
//! in-flight calls and flushes the event log.

pub mod config;
pub mod error;
pub mod service;
pub mod simulator;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use churnguard_eventlog::EventLog;
use churnguard_proto::ingest::v1::purchase_ingest_server::PurchaseIngestServer;
use churnguard_telemetry::Telemetry;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;

pub use config::Settings;
pub use error::IngestError;
pub use service::{Clock, Core, IngestService};

/// The fully-qualified gRPC service name, as health checks report it.
pub const SERVICE_NAME: &str = "churnguard.ingest.v1.PurchaseIngest";

/// A ready-to-run purchase-ingest server.
pub struct App<L: EventLog> {
    listener: TcpListener,
    local_addr: SocketAddr,
    core: Arc<Core<L>>,
    settings: Settings,
}

impl<L: EventLog> std::fmt::Debug for App<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl<L: EventLog> App<L> {
    /// Binds the listener and makes sure the purchases topic exists (retrying while the
    /// log is unreachable, up to the publish timeout times ten).
    pub async fn build(
        settings: Settings,
        log: L,
        telemetry: Arc<Telemetry>,
    ) -> Result<Self, IngestError> {
        Self::build_with_clock(settings, log, telemetry, Arc::new(chrono::Utc::now)).await
    }

    pub async fn build_with_clock(
        settings: Settings,
        log: L,
        telemetry: Arc<Telemetry>,
        clock: Clock,
    ) -> Result<Self, IngestError> {
        settings.validate()?;
        let listener = TcpListener::bind(&settings.listen_addr)
            .await
            .map_err(|e| IngestError::Startup(format!("binding {}: {e}", settings.listen_addr)))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| IngestError::Startup(e.to_string()))?;

        let deadline = Instant::now() + settings.publish_timeout() * 10;
        let partitions = loop {
            match log
                .ensure_topic(&settings.topics.purchases, settings.topics.partitions)
                .await
            {
                Ok(n) => break n,
                Err(e) if Instant::now() >= deadline => {
                    return Err(IngestError::Startup(format!(
                        "topic {} could not be created: {e}",
                        settings.topics.purchases
                    )));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "event log not ready; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        if partitions != settings.topics.partitions {
            tracing::warn!(
                topic = %settings.topics.purchases,
                existing = partitions,
                configured = settings.topics.partitions,
                "the topic exists with another partition count; keeping the existing one"
            );
        }

        let core = Arc::new(Core {
            log: Arc::new(log),
            topic: settings.topics.purchases.clone(),
            limits: settings.swipe_limits(),
            tokenizer: settings.tokenizer(),
            publish_timeout: settings.publish_timeout(),
            max_batch: settings.limits.max_batch_swipes,
            telemetry,
            clock,
            in_flight: Arc::new(tokio::sync::Semaphore::new(
                settings.limits.max_in_flight_swipes,
            )),
            capacity_wait: Duration::from_millis(settings.limits.max_capacity_wait_ms),
            // An append of the stream can never need more permits than there are.
            read_ahead: settings
                .limits
                .stream_read_ahead_swipes
                .min(settings.limits.max_in_flight_swipes),
        });
        Ok(Self {
            listener,
            local_addr,
            core,
            settings,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes; then stops accepting, lets in-flight calls
    /// finish (up to the grace period) and flushes the log.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), IngestError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(churnguard_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| IngestError::Startup(format!("reflection: {e}")))?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(churnguard_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(|e| IngestError::Startup(format!("reflection: {e}")))?;
        let max_message = self.settings.limits.max_message_bytes;
        let ingest = PurchaseIngestServer::new(IngestService::new(self.core.clone()))
            .max_decoding_message_size(max_message);

        let stop = CancellationToken::new();
        let log = self.core.log.clone();
        let probe = tokio::spawn(churnguard_telemetry::health::follow(
            health.clone(),
            SERVICE_NAME,
            "event log",
            Duration::from_millis(self.settings.health_probe_interval_ms),
            stop.clone(),
            move || {
                let log = log.clone();
                async move { log.check().await }
            },
        ));

        // One grace budget for everything shutdown does, from the moment it is asked for.
        let requested: Arc<std::sync::OnceLock<Instant>> = Arc::default();
        let stop_serving = stop.clone();
        let requested_at = requested.clone();
        let limits = &self.settings.limits;
        // Flow control keeps what a client may send ahead bounded, and the connection
        // window keeps h2's small-DATA-frame budget (half of it) above what those windows
        // can hold (see `Limits::stream_window_bytes`). The adaptive window stays off: it
        // would grow the windows past these bounds.
        let server = tonic::transport::Server::builder()
            .max_concurrent_streams(limits.max_streams_per_connection)
            .initial_stream_window_size(limits.stream_window_bytes)
            .initial_connection_window_size(limits.connection_window())
            .http2_adaptive_window(Some(false))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(ingest)
            .serve_with_incoming_shutdown(TcpListenerStream::new(self.listener), async move {
                shutdown.await;
                let _ = requested_at.set(Instant::now());
                stop_serving.cancel();
            });
        tracing::info!(addr = %self.local_addr, topic = %self.core.topic, "purchase-ingest serving");

        let grace = self.settings.shutdown_grace();
        let mut server = std::pin::pin!(server);
        let served = tokio::select! {
            r = &mut server => r,
            () = async { stop.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(?grace, "in-flight calls did not finish within the grace period");
                Ok(())
            }
        };
        stop.cancel();
        let _ = probe.await;
        health
            .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
            .await;
        let left = requested
            .get()
            .map_or(grace, |at| grace.saturating_sub(at.elapsed()))
            .max(Duration::from_millis(200));
        let flushed = self.core.log.flush(left).await;
        tracing::info!(flushed = flushed.is_ok(), "purchase-ingest stopped");
        served.map_err(|e| IngestError::Startup(format!("server: {e}")))?;
        flushed.map_err(IngestError::Publish)
    }
}

/// The service on a background task (tests, benchmarks, embedding): where it listens,
/// and a graceful stop that finishes in-flight calls and flushes the log.
pub type Running = churnguard_config::Serving<IngestError>;

impl<L: EventLog> App<L> {
    /// Serves on a background task until [`Running::stop`] (or drop).
    pub fn spawn(self) -> Running {
        let addr = self.local_addr;
        Running::spawn(addr, |shutdown| self.run_until(shutdown.wait()))
    }
}

pub use churnguard_config::shutdown_signal;
