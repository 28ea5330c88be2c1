//! The service put together from its [`Settings`]: the Feedback API over the complaint
//! write path and the contact vault, the SLA timers on the partitions of the events topic
//! this replica owns (consumer group `<group>-timers`), and the outreach opener on the
//! partitions of the churn-signals topic it owns (`<group>-outreach`), sharing one Redis.
//! Replicas split the partitions between them; a replica that stops or dies has its
//! partitions handed to the others (within the group session timeout when it dies). The
//! API and the projection serve every partition on every replica. The binary (`main.rs`) and `churnguard-local` only load settings, open the
//! log, get the key-encryption key and call this.
//!
//! [`ApiServer`] is the Feedback API alone on the runtime's gRPC server (health,
//! reflection, graceful stop): what [`App`] serves, and what tests start on its own.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use churnguard_config::ConfigError;
use churnguard_domain::feedback::complaint::ComplaintStatus;
use churnguard_eventlog::{EventLog, LogError};
use churnguard_proto::feedback::v1::feedback_server::FeedbackServer;
use churnguard_redis::{RedisConnection, RedisLeases, StoreError};
use churnguard_runtime::{
    Clock, GrpcServer, Liveness, Owned, ServeError, TaskFailed, system_clock,
    work_on_owned_partitions,
};
use churnguard_vault::{Kek, RedisKeyStore, Vault};
use tokio_util::sync::CancellationToken;

use crate::api::FeedbackApi;
use crate::config::Settings;
use crate::outreach::Opener;
use crate::projection::Projection;
use crate::service::Complaints;
use crate::timers;

/// Why the service could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("event log: {0}")]
    Log(#[from] LogError),
    #[error("redis: {0}")]
    Redis(#[from] StoreError),
    #[error("the API's server: {0}")]
    Serve(#[from] ServeError),
    #[error("{0}")]
    Task(String),
}

impl From<TaskFailed> for AppError {
    fn from(e: TaskFailed) -> Self {
        AppError::Task(format!("service task: {}", e.0))
    }
}

/// A service on a background task: where its API listens, and a graceful stop.
pub type Running = churnguard_runtime::Running<AppError>;

/// A built, not yet serving, feedback service.
pub struct App<L> {
    api: ApiServer<L>,
    complaints: Arc<Complaints<L>>,
    log: Arc<L>,
    partitions: u32,
    clock: Clock,
    timer_interval: Duration,
    grace: Duration,
    opener: Arc<Opener<L>>,
    group: String,
    topics: crate::config::Topics,
    ownership: Ownership,
    /// On a broker, partition leases for the timers' and the opener's groups, so a
    /// replica notices partitions a killed one left unowned ([`Liveness::on_broker`]).
    timers_liveness: Option<Liveness<RedisLeases>>,
    outreach_liveness: Option<Liveness<RedisLeases>>,
}

/// The partitions a replica works on right now.
#[derive(Debug, Clone, Default)]
pub struct Ownership {
    /// Partitions of the events topic whose SLA timers this replica runs.
    pub timers: Owned,
    /// Partitions of the signals topic this replica opens outreach cases from.
    pub outreach: Owned,
}

impl<L> std::fmt::Debug for App<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl<L: EventLog + 'static> App<L> {
    /// Creates the topics if needed, connects to Redis and binds the API.
    pub async fn build(settings: Settings, log: Arc<L>, kek: Kek) -> Result<Self, AppError> {
        Self::build_with_clock(settings, log, kek, system_clock()).await
    }

    /// As [`App::build`], with the clock commands are decided at and timers fire by.
    pub async fn build_with_clock(
        settings: Settings,
        log: Arc<L>,
        kek: Kek,
        clock: Clock,
    ) -> Result<Self, AppError> {
        settings.validate_except_kek()?;
        let directory = settings.directory()?;
        let topics = &settings.topics;
        // The broker is the authority on the partition count of an existing topic.
        let partitions = log.ensure_topic(&topics.events, topics.partitions).await?;
        // Churn scoring usually creates the signals topic; whoever starts first does.
        let signal_partitions = log.ensure_topic(&topics.signals, topics.partitions).await?;
        let conn = settings.redis.connect().await?;
        let timers_liveness = Liveness::on_broker(&settings.log, &conn, partitions);
        let outreach_liveness = Liveness::on_broker(&settings.log, &conn, signal_partitions);
        let projection = Projection::new(conn.clone(), &topics.events, partitions)
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
            &topics.signals,
            settings.outreach,
        ));
        let vault = Arc::new(Vault::new(kek, RedisKeyStore::new(conn.clone())));
        let api = FeedbackApi::new(complaints.clone(), vault, conn.clone());
        let api = ApiServer::bind(&settings.listen_addr, api)
            .await?
            .with_shutdown_grace(settings.shutdown_grace())
            .with_health_probe(conn, settings.health_probe_interval())
            .with_admin(settings.admin_addr())
            .await?
            .with_tls(&settings.tls)?
            .with_auth(&settings.auth)?
            .with_rate_limits(&settings.rate_limits)
            .with_limits(&settings.limits);
        crate::metrics::describe();
        Ok(Self {
            api,
            complaints,
            log,
            partitions,
            clock,
            timer_interval: settings.timer_interval(),
            grace: settings.shutdown_grace(),
            opener,
            group: settings.group.clone(),
            topics: settings.topics.clone(),
            ownership: Ownership::default(),
            timers_liveness,
            outreach_liveness,
        })
    }

    /// The partitions this replica works on, as they change.
    pub fn ownership(&self) -> Ownership {
        self.ownership.clone()
    }

    /// Where the API listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.api.local_addr()
    }

    /// Where the admin endpoint (`/metrics`, `/healthz`, `/readyz`) listens, if
    /// `admin_addr` asks for one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.api.admin_addr()
    }

    /// The partition count of the events topic.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Serves the API, runs the SLA timers over every partition and opens outreach cases
    /// from churn signals until `shutdown` completes; then stops the timers (after the
    /// tick in progress) and the opener, stops the API gracefully (in-flight calls finish
    /// within the grace period) and flushes the log.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let stop = CancellationToken::new();
        let timers = tokio::spawn({
            let (complaints, log, clock) = (
                self.complaints.clone(),
                self.log.clone(),
                self.clock.clone(),
            );
            let (every, stop, owned) = (
                self.timer_interval,
                stop.clone(),
                self.ownership.timers.clone(),
            );
            let (group, topic) = (format!("{}-timers", self.group), self.topics.events.clone());
            let liveness = self.timers_liveness;
            async move {
                let liveness = liveness.as_ref();
                work_on_owned_partitions(
                    log.as_ref(),
                    &group,
                    &topic,
                    &owned,
                    liveness,
                    stop,
                    |p, token| {
                        let (complaints, clock) = (complaints.clone(), clock.clone());
                        async move {
                            timers::run(&complaints, &[p], clock, every, token.cancelled()).await;
                        }
                    },
                )
                .await
            }
        });
        let opener = tokio::spawn({
            let (opener, log) = (self.opener.clone(), self.log.clone());
            let (stop, owned) = (stop.clone(), self.ownership.outreach.clone());
            let (group, topic) = (
                format!("{}-outreach", self.group),
                self.topics.signals.clone(),
            );
            let liveness = self.outreach_liveness;
            async move {
                let liveness = liveness.as_ref();
                work_on_owned_partitions(
                    log.as_ref(),
                    &group,
                    &topic,
                    &owned,
                    liveness,
                    stop,
                    |p, token| {
                        let opener = opener.clone();
                        async move { opener.run(&[p], token.cancelled()).await }
                    },
                )
                .await
            }
        });
        tokio::spawn(open_complaint_gauges(
            self.complaints.clone(),
            self.partitions,
            stop.clone(),
        ));
        let api = self.api.spawn();
        tracing::info!(
            addr = %api.local_addr(),
            partitions = self.partitions,
            "feedback started"
        );

        shutdown.await;
        stop.cancel();
        let timers = timers
            .await
            .map_err(|e| AppError::Task(format!("SLA timers task: {e}")))
            .and_then(|r| r.map_err(AppError::Log));
        let opener = opener
            .await
            .map_err(|e| AppError::Task(format!("outreach opener task: {e}")))
            .and_then(|r| r.map_err(AppError::Log));
        let api = api.stop().await;
        let flushed = self.log.flush(self.grace).await;
        timers?;
        opener?;
        api?;
        flushed?;
        tracing::info!("feedback stopped");
        Ok(())
    }

    /// Runs the service on a background task until [`Running::stop`] (or drop).
    pub fn spawn(self) -> Running {
        Running::spawn(self.local_addr(), |shutdown| {
            self.run_until(shutdown.wait())
        })
    }
}

/// How often the open-complaint gauges are read from the list index.
const OPEN_GAUGES_EVERY: Duration = Duration::from_secs(15);

/// Sets the open-complaint gauges ([`crate::metrics::complaints_open`]) from every
/// partition's list index every [`OPEN_GAUGES_EVERY`] until `stop`. Every replica reports
/// the whole count (dashboards take the largest); a failed read leaves the gauges as
/// they were.
async fn open_complaint_gauges<L: EventLog>(
    complaints: Arc<Complaints<L>>,
    partitions: u32,
    stop: CancellationToken,
) {
    loop {
        let mut open = BTreeMap::new();
        let mut read = Ok(());
        for p in 0..partitions {
            match complaints.projection().listed(p).await {
                Ok(entries) => {
                    for e in entries
                        .iter()
                        .filter(|e| e.status != ComplaintStatus::Resolved)
                    {
                        *open.entry((e.severity, e.level)).or_insert(0) += 1;
                    }
                }
                Err(e) => {
                    read = Err(e);
                    break;
                }
            }
        }
        match read {
            Ok(()) => crate::metrics::complaints_open(&open),
            Err(e) => tracing::debug!(error = %e, "open-complaint gauges not read"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(OPEN_GAUGES_EVERY) => {}
        }
    }
}

/// The Feedback API alone, bound, on the runtime's gRPC server: health follows Redis
/// ([`ApiServer::with_health_probe`]; without it, SERVING while the server serves) and
/// open escalation streams end when shutdown begins.
#[derive(Debug)]
pub struct ApiServer<L> {
    server: GrpcServer,
    api: FeedbackApi<L>,
    grace: Duration,
    health: Option<(RedisConnection, Duration)>,
    limits: churnguard_config::ServerLimits,
}

impl<L: EventLog + 'static> ApiServer<L> {
    /// Binds `addr` (port 0 picks a free one).
    pub async fn bind(addr: &str, api: FeedbackApi<L>) -> Result<Self, AppError> {
        Ok(Self {
            server: GrpcServer::bind(addr).await?,
            api,
            grace: Duration::from_secs(10),
            health: None,
            limits: churnguard_config::ServerLimits::default(),
        })
    }

    /// How long in-flight calls may take to finish at shutdown.
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Reports health by probing `redis` every `every`.
    pub fn with_health_probe(mut self, redis: RedisConnection, every: Duration) -> Self {
        self.health = Some((redis, every));
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Serves the admin endpoint (`/metrics`, `/healthz`, `/readyz`) on `addr` too, if
    /// any ([`GrpcServer::with_admin`]).
    pub async fn with_admin(mut self, addr: Option<&str>) -> Result<Self, AppError> {
        self.server = self.server.with_admin(addr).await?;
        Ok(self)
    }

    /// Serves TLS or mutual TLS as `tls` says; plaintext when it is empty
    /// ([`GrpcServer::with_tls`]).
    pub fn with_tls(mut self, tls: &churnguard_config::TlsSettings) -> Result<Self, AppError> {
        self.server = self.server.with_tls(tls)?;
        Ok(self)
    }

    /// Authenticates callers as `auth` says; off when it is empty
    /// ([`GrpcServer::with_auth`]; after [`ApiServer::with_tls`]).
    pub fn with_auth(mut self, auth: &churnguard_config::AuthSettings) -> Result<Self, AppError> {
        self.server = self.server.with_auth(auth)?;
        Ok(self)
    }

    /// The largest request and the calls per connection (defaults: [`ServerLimits`]).
    ///
    /// [`ServerLimits`]: churnguard_config::ServerLimits
    pub fn with_limits(mut self, limits: &churnguard_config::ServerLimits) -> Self {
        self.limits = limits.clone();
        self
    }

    /// Keeps each caller to its calls per second ([`GrpcServer::with_rate_limits`]).
    pub fn with_rate_limits(mut self, limits: &churnguard_config::RateLimitSettings) -> Self {
        self.server = self.server.with_rate_limits(limits);
        self
    }

    /// Where the admin endpoint listens, if there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.server.admin_addr()
    }

    fn into_server(self) -> GrpcServer {
        // Escalation streams never end by themselves: end them at shutdown.
        let mut server = self
            .server
            .with_log_name("feedback API")
            .reflecting(churnguard_proto::FILE_DESCRIPTOR_SET)
            .cancel_on_shutdown(self.api.stopping())
            .add_service(
                FeedbackServer::new(self.api)
                    .max_decoding_message_size(self.limits.max_message_bytes),
            )
            .max_concurrent_streams(self.limits.max_streams_per_connection)
            .with_shutdown_grace(self.grace);
        if let Some((redis, every)) = self.health {
            server = server.with_health_probe("Redis", every, move || {
                let redis = redis.clone();
                async move { redis.ping().await }
            });
        }
        server
    }

    /// Serves until `shutdown` completes; then stops accepting, lets in-flight calls
    /// finish within the grace period and reports NOT_SERVING.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        self.into_server().run_until(shutdown).await?;
        Ok(())
    }

    /// Serves on a background task until [`Running::stop`] (or drop).
    pub fn spawn(self) -> Running {
        self.into_server().spawn()
    }
}
