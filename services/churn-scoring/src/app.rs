//! The service put together: the scorer instance in its consumer group (consumer loops,
//! absence timers, signal relay, scheduled refits) and the gRPC query API, sharing one
//! Redis store. The binary (`main.rs`) only loads settings, opens the log and calls this.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use churnguard_domain::customer::day_of;
use churnguard_domain::risk::ScoringModel;
use churnguard_eventlog::EventLog;
use churnguard_runtime::{Clock, Liveness, system_clock};
use tokio_util::sync::CancellationToken;

use crate::api::{ApiServer, QueryState};
use crate::config::Settings;
use crate::error::ScoringError;
use crate::holdout::LogHistory;
use crate::models::ModelProjection;
use crate::refit::RefitScope;
use crate::runner::Instance;
use crate::scorer::Scorer;
use crate::store::CustomerStore;
use crate::timers::Timers;

/// A built, not yet running, churn-scoring service.
#[derive(Debug)]
pub struct App<L> {
    instance: Arc<Instance<L>>,
    models: Arc<ModelProjection<L>>,
    log: Arc<L>,
    api: ApiServer,
    grace: Duration,
    /// What the store gauges read, and how often.
    figures: (CustomerStore, u32, Duration),
}

/// How often the store gauges ([`crate::metrics::store`]) are read from Redis.
const STORE_GAUGES_EVERY: Duration = Duration::from_secs(5);

impl<L: EventLog> App<L> {
    pub async fn build(settings: Settings, log: Arc<L>) -> Result<Self, ScoringError> {
        Self::build_with_clock(settings, log, system_clock()).await
    }

    /// As [`App::build`], with the wall clock the timers use once caught up.
    pub async fn build_with_clock(
        settings: Settings,
        log: Arc<L>,
        clock: Clock,
    ) -> Result<Self, ScoringError> {
        let topics = &settings.topics;
        // The broker is the authority on the partition count of an existing topic.
        let partitions = log
            .ensure_topic(&topics.purchases, topics.partitions)
            .await
            .map_err(ScoringError::Log)?;
        log.ensure_topic(&topics.signals, partitions)
            .await
            .map_err(ScoringError::Log)?;
        log.ensure_topic(&topics.models, 1)
            .await
            .map_err(ScoringError::Log)?;
        let store =
            CustomerStore::open(&settings.redis, &topics.purchases, settings.horizon_days).await?;
        store.check_partition_count(partitions).await?;
        // The models are state like any other: an empty Redis gets them back from the log
        // before the timers decide anything.
        let models = Arc::new(ModelProjection::new(
            log.clone(),
            store.connection(),
            &topics.models,
        ));
        let fitted = models.catch_up().await?;
        let log_likelihood = fitted.as_ref().map(|f| f.bg_nbd_log_likelihood);
        let model = match fitted {
            Some(fitted) => ScoringModel::from(&fitted),
            None => {
                tracing::info!("no fitted model yet: timers use the prior until the first refit");
                ScoringModel::prior()
            }
        };
        let timers = Arc::new(
            Timers::new(store.clone(), settings.policy.clone(), model)
                .with_value_horizon(settings.value),
        );
        let figures = (store.clone(), partitions, STORE_GAUGES_EVERY);
        let scorer = Arc::new(
            Scorer::new(
                log.clone(),
                store.clone(),
                &topics.purchases,
                settings.batch_records,
            )
            .with_group(&settings.group)
            .with_timers(timers.clone()),
        );
        let log_handle = log.clone();
        let mut instance = Instance::new(scorer, timers, log, &settings.group, &topics.signals)
            .with_timer_interval(settings.timer_interval())
            .with_clock(clock);
        if let Some(every) = settings.refit_interval() {
            let scope = RefitScope {
                partitions,
                sample: settings.refit_sample_customers,
            };
            instance = instance.with_refits(every, scope, models.clone());
        }
        if let Some(liveness) = Liveness::on_broker(&settings.log, &store.connection(), partitions)
        {
            instance = instance.with_liveness(liveness);
        }
        let api = ApiServer::bind(
            &settings.listen_addr,
            QueryState::new(store, settings.policy.clone(), partitions)
                .with_history(Arc::new(LogHistory::new(
                    log_handle.clone(),
                    &topics.purchases,
                    partitions,
                    settings.batch_records,
                )))
                .with_value_horizon(settings.value)
                .with_refits(settings.refit_interval().is_some()),
        )
        .await?
        .with_timings(settings.health_probe_interval(), settings.shutdown_grace())
        .with_admin(settings.admin_addr())
        .await?
        .with_tls(&settings.tls)?
        .with_auth(&settings.auth)?
        .with_rate_limits(&settings.rate_limits)
        .with_limits(&settings.limits);
        crate::metrics::describe();
        if let Some(ll) = log_likelihood {
            crate::metrics::model_in_use(ll);
        }
        Ok(Self {
            instance: Arc::new(instance),
            models,
            log: log_handle,
            api,
            grace: settings.shutdown_grace(),
            figures,
        })
    }

    /// Where the query API listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.api.local_addr()
    }

    /// Where the admin endpoint (`/metrics`, `/healthz`, `/readyz`) listens, if
    /// `admin_addr` asks for one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.api.admin_addr()
    }

    /// Scores and serves until `shutdown` completes, then stops gracefully: the batches
    /// in flight are applied (each with its checkpoint, in one script), the group is
    /// left, signals handed to the log are flushed, and the API finishes its calls. If
    /// scoring fails first, stops the API and returns the failure.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ScoringError> {
        let stop = CancellationToken::new();
        let mut scoring = tokio::spawn(self.instance.clone().run(stop.clone()));
        let models = self.models.clone();
        let token = stop.clone();
        let projection = tokio::spawn(async move { models.run(token).await });
        let (store, partitions, every) = self.figures.clone();
        tokio::spawn(store_gauges(store, partitions, every, stop.clone()));
        let api = self.api.spawn();
        tracing::info!(addr = %api.local_addr(), "churn-scoring started");
        tokio::select! {
            () = shutdown => {}
            ended = &mut scoring => {
                stop.cancel();
                let _ = projection.await;
                let _ = api.stop().await;
                return joined(ended);
            }
        }
        stop.cancel();
        let scored = joined(scoring.await);
        let _ = projection.await;
        let flushed = self.log.flush(self.grace).await.map_err(ScoringError::Log);
        let served = api.stop().await;
        scored.and(flushed).and(served)
    }

    /// Starts scoring and serving on a background task; the handle's
    /// [`state`](churnguard_runtime::Running::state) is the group instance (`owned()`: the
    /// partitions it works on now).
    pub fn spawn(self) -> Running<L> {
        let instance = self.instance.clone();
        churnguard_runtime::Running::spawn(self.local_addr(), |shutdown| {
            self.run_until(shutdown.wait())
        })
        .with_state(instance)
    }
}

/// A running service, scoring in its consumer group and serving the query API; its
/// state is its group instance.
pub type Running<L> = churnguard_runtime::Running<ScoringError, Arc<Instance<L>>>;

/// Sets the store gauges from Redis every `every` until `stop`. Every replica reports
/// every store (the figures are global); dashboards take the largest. A failed read
/// leaves the gauges as they were.
async fn store_gauges(
    store: CustomerStore,
    partitions: u32,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        let today = day_of(chrono::Utc::now().date_naive());
        let year = (today.saturating_sub(364), today);
        match store.store_figures(partitions, year).await {
            Ok(figures) => {
                for (name, f) in figures {
                    crate::metrics::store(&name, &f);
                }
            }
            Err(e) => tracing::debug!(error = %e, "store gauges not read"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

fn joined(r: Result<Result<(), ScoringError>, tokio::task::JoinError>) -> Result<(), ScoringError> {
    r.map_err(|e| ScoringError::Startup(format!("scoring task: {e}")))?
}
