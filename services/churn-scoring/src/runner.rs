//! One scorer instance in its consumer group. It joins the group on the purchases topic
//! and, for every partition the group gives it, runs two tasks until the partition is
//! revoked or the instance stops:
//!
//! - the consumer loop ([`Scorer::run_partition`]): swipes into Redis, exactly once;
//! - the partition's absence timers and signal relay: due deadlines are fired on stream
//!   time (the partition's watermark) while the partition is behind the log, and on the
//!   wall clock once it has caught up with live traffic (not while its newest swipe is
//!   imported history); churn signals then go from the outbox to the log.
//!
//! The group membership is the runtime's [`work_on_owned_partitions`], as feedback's is:
//! on a broker, with partition leases in Redis ([`Instance::with_liveness`]), so an
//! instance that sees a partition nobody works on (Tansu 0.6 leaves a killed member's
//! partitions assigned to it) joins the group again and the partitions are handed out
//! afresh.
//!
//! Instances scale out up to the partition count. Correctness does not depend on the
//! hand-over: the checkpoint check in the batch script and the compare-and-set of timer
//! decisions make a partition's work count once even if two instances overlap.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use churnguard_domain::customer::{Day, day_of};
use churnguard_domain::risk::ScoringModel;
use churnguard_eventlog::EventLog;
use churnguard_redis::RedisLeases;
use churnguard_runtime::{Clock, Liveness, Owned, system_clock, work_on_owned_partitions};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::error::ScoringError;
use crate::models::ModelProjection;
use crate::refit::RefitScope;
use crate::scorer::Scorer;
use crate::timers::Timers;

/// A scorer instance: what it runs and the partitions it owns at the moment.
pub struct Instance<L> {
    scorer: Arc<Scorer<L>>,
    timers: Arc<Timers>,
    log: Arc<L>,
    group: String,
    signals_topic: String,
    timer_interval: Duration,
    clock: Clock,
    refits: Option<Refits<L>>,
    liveness: Option<Liveness<RedisLeases>>,
    owned: Owned,
    /// The version of the fitted model the timers use (0: none yet).
    model_version: AtomicU64,
}

/// The periodic refit schedule, kept by whichever instance owns partition 0.
struct Refits<L> {
    every: Duration,
    scope: RefitScope,
    models: Arc<ModelProjection<L>>,
}

impl<L> Clone for Refits<L> {
    fn clone(&self) -> Self {
        Self {
            every: self.every,
            scope: self.scope,
            models: self.models.clone(),
        }
    }
}

impl<L> std::fmt::Debug for Instance<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl<L: EventLog> Instance<L> {
    /// An instance of consumer group `group` that publishes churn signals to
    /// `signals_topic`; timers run every second on the system clock unless changed.
    pub fn new(
        scorer: Arc<Scorer<L>>,
        timers: Arc<Timers>,
        log: Arc<L>,
        group: &str,
        signals_topic: &str,
    ) -> Self {
        Self {
            scorer,
            timers,
            log,
            group: group.to_owned(),
            signals_topic: signals_topic.to_owned(),
            timer_interval: Duration::from_secs(1),
            clock: system_clock(),
            refits: None,
            liveness: None,
            owned: Owned::default(),
            model_version: AtomicU64::new(0),
        }
    }

    /// How often each owned partition's timers and relay run.
    pub fn with_timer_interval(mut self, every: Duration) -> Self {
        self.timer_interval = every;
        self
    }

    /// The wall clock the timers use once a partition has caught up.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Refits the models every `every` (and soon after start when none is stored) on a
    /// sample of the customers of `scope`, announcing each on the topic `models` projects.
    /// Only the instance that owns partition 0 does it, so one refit runs per period
    /// across the group.
    pub fn with_refits(
        mut self,
        every: Duration,
        scope: RefitScope,
        models: Arc<ModelProjection<L>>,
    ) -> Self {
        self.refits = Some(Refits {
            every,
            scope,
            models,
        });
        self
    }

    /// Keeps partition leases, so that a partition the group leaves with a dead member is
    /// noticed and the group re-formed (see the module docs). For a broker's groups; the
    /// embedded log's in-process groups hand a leaving member's partitions on themselves.
    pub fn with_liveness(mut self, liveness: Liveness<RedisLeases>) -> Self {
        self.liveness = Some(liveness);
        self
    }

    /// The partitions this instance works on now.
    pub fn owned(&self) -> BTreeSet<u32> {
        self.owned.get()
    }

    /// Runs until `stop` is cancelled (then finishes the batches in flight, and leaves the
    /// group) or a permanent error ends a partition's work.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) -> Result<(), ScoringError> {
        self.scorer.prepare().await?;
        let (failed_tx, mut failed) = tokio::sync::mpsc::unbounded_channel();
        // Cancelled by `stop`, or when a partition's work fails for good.
        let group_stop = stop.child_token();
        let membership = work_on_owned_partitions(
            self.log.as_ref(),
            &self.group,
            self.scorer.topic(),
            &self.owned,
            self.liveness.as_ref(),
            group_stop.clone(),
            |partition, token| self.clone().work_on(partition, token, failed_tx.clone()),
        );
        tokio::pin!(membership);
        tokio::select! {
            outcome = &mut membership => outcome.map_err(ScoringError::Log),
            Some(e) = failed.recv() => {
                // Leave the group with every partition's work stopped, then report.
                group_stop.cancel();
                let _ = membership.await;
                Err(e)
            }
        }
    }

    /// A partition's work until `stop`: its consumer loop, its timers and relay, and on
    /// partition 0 the refit schedule.
    async fn work_on(
        self: Arc<Self>,
        partition: u32,
        stop: CancellationToken,
        failed: UnboundedSender<ScoringError>,
    ) {
        let mut tasks = JoinSet::new();
        let (me, token) = (self.clone(), stop.clone());
        tasks.spawn(reporting(
            partition,
            "scoring",
            failed.clone(),
            async move {
                me.scorer
                    .run_partition(partition, token, false)
                    .await
                    .map(|_| ())
            },
        ));
        let (me, token) = (self.clone(), stop.clone());
        tasks.spawn(reporting(partition, "timers", failed, async move {
            me.timer_loop(partition, token).await
        }));
        if partition == 0
            && let Some(refits) = self.refits.clone()
        {
            let (me, token) = (self.clone(), stop.clone());
            tasks.spawn(async move { me.refit_loop(&refits, token).await });
        }
        tasks.join_all().await;
    }

    /// Whether `partition` is applied up to the end of the log.
    async fn caught_up(&self, partition: u32) -> Result<bool, ScoringError> {
        let end = self
            .log
            .end_offset(self.scorer.topic(), partition)
            .await
            .map_err(ScoringError::Log)?;
        Ok(self.scorer.store().checkpoint(partition).await? >= end)
    }

    /// Refits on schedule, and when asked (RequestRefit): a request is looked for every
    /// timer interval. A failed refit (too few customers yet, Redis away) is logged and
    /// tried again next period; an asked-for one that must wait for the log to be applied
    /// stays asked for, so it runs within a timer interval of that. Scoring goes on with
    /// the stored model.
    async fn refit_loop(&self, refits: &Refits<L>, stop: CancellationToken) {
        let store = self.scorer.store();
        // No model yet: try soon, as data arrives, rather than a period from now.
        let mut wait = match store.current_model().await {
            Ok(Some(_)) => refits.every,
            _ => self.timer_interval.max(Duration::from_secs(5)),
        };
        loop {
            let scheduled = tokio::time::Instant::now() + wait;
            let asked = loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep_until(scheduled) => break false,
                    () = tokio::time::sleep(self.timer_interval) => {
                        match store.take_refit_request().await {
                            Ok(true) => break true,
                            Ok(false) => {}
                            Err(e) => tracing::warn!(error = %e, "looking for a requested refit failed"),
                        }
                    }
                }
            };
            match self.refit_once(refits).await {
                Ok((version, log_likelihood)) => {
                    crate::metrics::refit(Some(log_likelihood));
                    tracing::info!(version, asked, "refit stored");
                    wait = refits.every;
                }
                // Not a failure: the log is still being applied.
                Err(e) if asked => {
                    tracing::info!(reason = %e, "the refit asked for waits");
                    if let Err(e) = store.request_refit().await {
                        tracing::warn!(error = %e, "keeping the refit request failed");
                    }
                    wait = scheduled.saturating_duration_since(tokio::time::Instant::now());
                }
                Err(e) => {
                    crate::metrics::refit(None);
                    tracing::warn!(error = %e, "periodic refit failed; trying again later");
                    wait = refits.every.min(Duration::from_secs(60));
                }
            }
        }
    }

    /// One refit as of the stream time: the latest day applied on any partition. Returns
    /// the stored model's version and BG/NBD log-likelihood.
    async fn refit_once(&self, refits: &Refits<L>) -> Result<(u64, f64), ScoringError> {
        let store = self.scorer.store();
        let mut as_of = None;
        for p in 0..refits.scope.partitions {
            // Fitting on half-replayed history would bias the model: wait for the log.
            if !self.caught_up(p).await? {
                return Err(ScoringError::Fit(format!(
                    "partition {p} is still being applied; the fit waits for it"
                )));
            }
            as_of = as_of.max(store.watermark(p).await?);
        }
        let as_of = as_of.ok_or_else(|| ScoringError::Fit("no purchases applied yet".into()))?;
        let model = crate::refit::refit(
            store,
            &refits.models,
            self.log.as_ref(),
            refits.scope,
            as_of,
            (self.clock)(),
        )
        .await?;
        Ok((model.version, model.bg_nbd_log_likelihood))
    }

    /// Fires the partition's due deadlines and relays its signals, every
    /// `timer_interval`, retrying passing trouble.
    async fn timer_loop(
        &self,
        partition: u32,
        stop: CancellationToken,
    ) -> Result<(), ScoringError> {
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(self.timer_interval) => {}
            }
            match self.tick(partition).await {
                Ok(()) => {}
                Err(e) if e.is_retriable() => {
                    tracing::warn!(partition, error = %e, "timer round failed; next round retries");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One timer round: the day to fire up to is the partition's stream time while it is
    /// behind the log (history being replayed) or its newest swipe is imported history (an
    /// import being loaded: the customers' states follow the data's own days, as living
    /// through it would have), and the wall clock once it has caught up with live traffic.
    async fn tick(&self, partition: u32) -> Result<(), ScoringError> {
        let store = self.scorer.store();
        let Some(watermark) = store.watermark(partition).await? else {
            return Ok(()); // nothing applied yet
        };
        let now: Day = if !store.at_history(partition).await? && self.caught_up(partition).await? {
            watermark.max(day_of((self.clock)().date_naive()))
        } else {
            watermark
        };
        // Another instance may have refitted: decide with the newest models.
        if let Some(fitted) = store.current_model().await?
            && self.model_version.swap(fitted.version, Ordering::Relaxed) != fitted.version
        {
            self.timers.set_model(ScoringModel::from(&fitted));
            crate::metrics::model_in_use(fitted.bg_nbd_log_likelihood);
            tracing::info!(version = fitted.version, "timers use a newly fitted model");
        }
        self.timers.fire_due(partition, now).await?;
        while self
            .timers
            .relay(partition, self.log.as_ref(), &self.signals_topic)
            .await?
            > 0
        {}
        Ok(())
    }
}

/// Runs one of a partition's tasks; a permanent failure is logged and reported, so the
/// instance stops instead of going on without that partition's work.
async fn reporting(
    partition: u32,
    what: &'static str,
    failed: UnboundedSender<ScoringError>,
    task: impl Future<Output = Result<(), ScoringError>>,
) {
    if let Err(e) = task.await {
        tracing::error!(partition, error = %e, "{what} stopped");
        let _ = failed.send(ScoringError::PartitionFailed {
            partition,
            reason: e.to_string(),
        });
    }
}
