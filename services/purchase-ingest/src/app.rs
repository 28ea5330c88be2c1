//! The service put together: the PurchaseIngest API over the event log, served by the
//! runtime's gRPC server with health following a probe of the log.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use backon::Retryable;
use churnguard_eventlog::EventLog;
use churnguard_proto::ingest::v1::purchase_ingest_server::PurchaseIngestServer;
use churnguard_runtime::{Clock, GrpcServer, retry, system_clock};

use crate::api::{Core, IngestService};
use crate::config::{ServiceSettings, Settings};
use crate::error::IngestError;

/// The least time the log's flush gets at shutdown, even when the calls in flight took
/// the whole grace period.
const MIN_FLUSH: Duration = Duration::from_millis(200);

/// A built, not yet serving, purchase-ingest service.
pub struct App<L: EventLog> {
    server: GrpcServer,
    core: Arc<Core<L>>,
    grace: Duration,
}

impl<L: EventLog> std::fmt::Debug for App<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("local_addr", &self.server.local_addr())
            .finish_non_exhaustive()
    }
}

impl<L: EventLog> App<L> {
    /// Binds the listener and makes sure the purchases topic exists (retrying while the
    /// log is unreachable, with the runtime's backoff, for up to the publish timeout
    /// times ten).
    pub async fn build(settings: Settings, log: L) -> Result<Self, IngestError> {
        Self::build_with_clock(settings, log, system_clock()).await
    }

    pub async fn build_with_clock(
        settings: Settings,
        log: L,
        clock: Clock,
    ) -> Result<Self, IngestError> {
        settings.validate()?;
        let server = GrpcServer::bind(&settings.listen_addr)
            .await?
            .with_admin(settings.admin_addr())
            .await?
            .with_tls(&settings.tls)?
            .with_auth(&settings.auth)?
            .with_rate_limits(&settings.rate_limits);
        crate::metrics::describe();

        let topics = &settings.topics;
        let partitions = (|| log.ensure_topic(&topics.purchases, topics.partitions))
            .retry(retry::policy().with_total_delay(Some(settings.publish_timeout() * 10)))
            .notify(|e, after| tracing::warn!(error = %e, ?after, "event log not ready; retrying"))
            .await
            .map_err(|e| {
                IngestError::Startup(format!(
                    "topic {} could not be created: {e}",
                    topics.purchases
                ))
            })?;
        if partitions != topics.partitions {
            tracing::warn!(
                topic = %topics.purchases,
                existing = partitions,
                configured = topics.partitions,
                "the topic exists with another partition count; keeping the existing one"
            );
        }

        let limits = &settings.limits;
        let core = Arc::new(Core {
            log: Arc::new(log),
            topic: topics.purchases.clone(),
            limits: settings.swipe_limits(),
            import_limits: settings.import_limits(),
            tokenizer: settings.tokenizer(),
            publish_timeout: settings.publish_timeout(),
            max_batch: limits.max_batch_swipes,
            clock,
            in_flight: Arc::new(tokio::sync::Semaphore::new(limits.max_in_flight_swipes)),
            capacity_wait: Duration::from_millis(limits.max_capacity_wait_ms),
            // An append of the stream can never need more permits than there are.
            read_ahead: limits
                .stream_read_ahead_swipes
                .min(limits.max_in_flight_swipes),
        });
        let probed = core.log.clone();
        // Flow control keeps what a client may send ahead bounded, and the connection
        // window keeps h2's small-DATA-frame budget (half of it) above what those windows
        // can hold (see `Limits::stream_window_bytes`). The adaptive window stays off: it
        // would grow the windows past these bounds.
        let mut server = server
            .with_log_name("purchase-ingest API")
            .reflecting(churnguard_proto::FILE_DESCRIPTOR_SET)
            .add_service(
                PurchaseIngestServer::new(IngestService::new(core.clone()))
                    .max_decoding_message_size(limits.max_message_bytes),
            )
            .with_health_probe(
                "event log",
                Duration::from_millis(settings.health_probe_interval_ms),
                move || {
                    let log = probed.clone();
                    async move { log.check().await }
                },
            )
            .with_shutdown_grace(settings.shutdown_grace())
            .max_concurrent_streams(limits.max_streams_per_connection)
            .initial_stream_window_size(limits.stream_window_bytes)
            .http2_adaptive_window(false);
        if let Some(window) = limits.connection_window() {
            server = server.initial_connection_window_size(window);
        }
        Ok(Self {
            server,
            core,
            grace: settings.shutdown_grace(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Where the admin endpoint (`/metrics`, `/healthz`, `/readyz`) listens, if
    /// `admin_addr` asks for one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.server.admin_addr()
    }

    /// Serves until `shutdown` completes; then stops accepting, lets in-flight calls
    /// finish (up to the grace period) and flushes the log with what is left of it.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), IngestError> {
        tracing::info!(topic = %self.core.topic, "purchase-ingest publishing");
        let stopped = self.server.run_until(shutdown).await;
        let left = stopped
            .as_ref()
            .map_or(self.grace, |s| s.grace_left)
            .max(MIN_FLUSH);
        let flushed = self.core.log.flush(left).await;
        tracing::info!(flushed = flushed.is_ok(), "purchase-ingest stopped");
        stopped?;
        flushed.map_err(IngestError::Publish)
    }

    /// Serves on a background task until [`Running::stop`] (or drop).
    pub fn spawn(self) -> Running {
        Running::spawn(self.local_addr(), |shutdown| {
            self.run_until(shutdown.wait())
        })
    }
}

/// The service on a background task (tests, benchmarks, embedding): where it listens,
/// and a graceful stop that finishes in-flight calls and flushes the log.
pub type Running = churnguard_runtime::Running<IngestError>;
