//! The service put together from its [`Settings`]: the Feedback API over the complaint
//! write path and the contact vault, and the SLA timers on every partition of the events
//! topic, and the outreach opener on every partition of the churn-signals topic, sharing
//! one Redis. The binary (`main.rs`) and `churnguard-local` only load
//! settings, open the log, get the key-encryption key and call this.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use churnguard_config::ConfigError;
use churnguard_eventlog::{EventLog, LogError};
use churnguard_redis::StoreError;
use churnguard_vault::{Kek, RedisKeyStore, Vault};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::FeedbackApi;
use crate::app::{self, App, AppError};
use crate::config::Settings;
use crate::outreach::Opener;
use crate::projection::Projection;
use crate::service::{Clock, Complaints};
use crate::timers;

/// Why the service could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("event log: {0}")]
    Log(#[from] LogError),
    #[error("redis: {0}")]
    Redis(#[from] StoreError),
    #[error(transparent)]
    App(#[from] AppError),
    #[error("SLA timers task: {0}")]
    Timers(String),
}

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(chrono::Utc::now)
}

/// A built, not yet serving, feedback service.
pub struct Service<L> {
    app: App<L>,
    complaints: Arc<Complaints<L>>,
    log: Arc<L>,
    partitions: u32,
    clock: Clock,
    timer_interval: Duration,
    grace: Duration,
    opener: Arc<Opener<L>>,
    signal_partitions: u32,
}

impl<L> std::fmt::Debug for Service<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl<L: EventLog + 'static> Service<L> {
    /// Creates the topic if needed, connects to Redis and binds the API.
    pub async fn build(settings: &Settings, log: Arc<L>, kek: Kek) -> Result<Self, RunError> {
        Self::build_with_clock(settings, log, kek, system_clock()).await
    }

    /// As [`Service::build`], with the clock commands are decided at and timers fire by.
    pub async fn build_with_clock(
        settings: &Settings,
        log: Arc<L>,
        kek: Kek,
        clock: Clock,
    ) -> Result<Self, RunError> {
        settings.validate_except_kek()?;
        let directory = settings.directory()?;
        // The broker is the authority on the partition count of an existing topic.
        let partitions = log
            .ensure_topic(&settings.topic, settings.partitions)
            .await?;
        // Churn scoring usually creates the signals topic; whoever starts first does.
        let signal_partitions = log
            .ensure_topic(&settings.signals_topic, settings.partitions)
            .await?;
        let conn = settings.redis.connect().await?;
        let projection = Projection::new(conn.clone(), &settings.topic, partitions)
            .with_sla(settings.sla.clone(), directory);
        let complaints = Arc::new(Complaints::new(
            log.clone(),
            projection,
            settings.context(),
            clock.clone(),
        ));
        let opener = Arc::new(Opener::new(
            complaints.clone(),
            churnguard_redis::RedisCheckpoints::new(conn.clone()),
            &settings.signals_topic,
            settings.outreach,
        ));
        let vault = Arc::new(Vault::new(kek, RedisKeyStore::new(conn.clone())));
        let api = FeedbackApi::new(complaints.clone(), vault, conn.clone());
        let app = App::bind(&settings.listen_addr, api)
            .await?
            .with_shutdown_grace(settings.shutdown_grace())
            .with_health_probe(conn, settings.health_probe_interval());
        Ok(Self {
            app,
            complaints,
            log,
            partitions,
            clock,
            timer_interval: settings.timer_interval(),
            grace: settings.shutdown_grace(),
            opener,
            signal_partitions,
        })
    }

    /// Where the API listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.app.local_addr()
    }

    /// The partition count of the events topic.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Serves the API, runs the SLA timers over every partition and opens outreach cases
    /// from churn signals, on background tasks.
    pub fn spawn(self) -> RunningService<L> {
        let stop = CancellationToken::new();
        let partitions: Vec<u32> = (0..self.partitions).collect();
        let timers = tokio::spawn({
            let complaints = self.complaints.clone();
            let stop = stop.clone();
            let clock = self.clock.clone();
            let every = self.timer_interval;
            async move {
                timers::run(&complaints, &partitions, clock, every, stop.cancelled()).await;
            }
        });
        let opener = tokio::spawn({
            let opener = self.opener.clone();
            let stop = stop.clone();
            let partitions: Vec<u32> = (0..self.signal_partitions).collect();
            async move {
                opener.run(&partitions, stop.cancelled()).await;
            }
        });
        RunningService {
            api: self.app.spawn(),
            timers,
            opener,
            stop,
            log: self.log,
            grace: self.grace,
        }
    }
}

/// A running feedback service: the API and the SLA timers.
#[derive(Debug)]
pub struct RunningService<L> {
    api: app::Running,
    timers: JoinHandle<()>,
    opener: JoinHandle<()>,
    stop: CancellationToken,
    log: Arc<L>,
    grace: Duration,
}

impl<L: EventLog> RunningService<L> {
    /// Where the API listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.api.local_addr()
    }

    /// `http://host:port`, for gRPC clients.
    pub fn endpoint(&self) -> String {
        self.api.endpoint()
    }

    /// Stops the timers (after the tick in progress), stops the API gracefully (in-flight
    /// calls finish within the grace period) and flushes the log.
    pub async fn stop(self) -> Result<(), RunError> {
        self.stop.cancel();
        let timers = self
            .timers
            .await
            .map_err(|e| RunError::Timers(e.to_string()));
        let opener = self
            .opener
            .await
            .map_err(|e| RunError::Timers(format!("outreach opener: {e}")));
        let api = self.api.stop().await;
        let flushed = self.log.flush(self.grace).await;
        timers?;
        opener?;
        api?;
        flushed?;
        tracing::info!("feedback stopped");
        Ok(())
    }

    /// Runs until `signal` completes, then stops as [`RunningService::stop`] does.
    pub async fn until(self, signal: impl Future<Output = ()>) -> Result<(), RunError> {
        signal.await;
        self.stop().await
    }
}
