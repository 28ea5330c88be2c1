//! Refits: fit the models on a uniform sample of the customers' summaries and announce
//! the result on the models topic, from which [`ModelProjection`] puts it in Redis.
//!
//! A refit must never stall the service. Reading the sample is asynchronous I/O (SCAN,
//! then pipelined reads of the sampled summaries only); the fit itself is CPU work and
//! runs on a blocking thread, off the async runtime, so gRPC calls, health checks and
//! scoring keep their latency while it runs. It starts from the current parameters, and
//! with the likelihoods' gradients (BFGS) converges in a few dozen evaluations over the
//! distinct summaries.
//!
//! Why a sample: four (or three) parameters are estimated well from 100,000 customers,
//! and the sample bounds a refit's reads and memory whatever the chain's size. On a
//! simulated population of a million (`make bench`, 2026-12-02), a 100,000 sample's
//! estimates were within 0.4 % (r, alpha) and 4-6 % (a, b: the dropout parameters, which
//! trade off against each other) of the full fit's, and no customer's P(alive) moved by
//! more than 0.009. The full fit of the million took about a second; a refit through
//! Redis is dominated by listing the keys (SCAN). The sample is drawn afresh at
//! every refit, seeded by the model version, so a refit is repeatable.

use std::time::Instant;

use chrono::{DateTime, Utc};
use churnguard_domain::customer::{CustomerState, Day};
use churnguard_domain::envelope::{CONTENT_TYPE, Envelope, event_id};
use churnguard_domain::models::{
    BgNbd, BgNbdParams, FitError, FittedModel, GammaGamma, GammaGammaParams, Rfm, Spend,
};
use churnguard_eventlog::{EventLog, Header, OutgoingRecord};

use crate::error::ScoringError;
use crate::models::ModelProjection;
use crate::store::CustomerStore;

/// What a refit fits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefitScope {
    /// Partitions of the purchases topic.
    pub partitions: u32,
    /// Customers sampled; 0 fits on every customer.
    pub sample: usize,
}

/// Fits on a sample of the customers of all partitions as of `as_of`, announces the new
/// version on the models topic and waits until it is projected into Redis. Returns what
/// was announced.
pub async fn refit<L: EventLog>(
    store: &CustomerStore,
    models: &ModelProjection<L>,
    log: &L,
    scope: RefitScope,
    as_of: Day,
    now: DateTime<Utc>,
) -> Result<FittedModel, ScoringError> {
    // The newest announced model: where the fit starts, and the version to follow.
    let current = models.catch_up().await?;
    let version = current.as_ref().map_or(1, |m| m.version + 1);

    let started = Instant::now();
    let sample = store
        .sample_summaries(scope.partitions, scope.sample, as_of, version)
        .await?;
    let read = started.elapsed();

    let started = Instant::now();
    let population = sample.population;
    let warm = current.clone();
    let fitted = tokio::task::spawn_blocking(move || fit(&sample.summaries, as_of, warm.as_ref()))
        .await
        .map_err(|e| ScoringError::Fit(format!("the fit's thread failed: {e}")))?
        .map_err(|e| ScoringError::Fit(e.to_string()))?;
    let fit_time = started.elapsed();

    let model = FittedModel {
        version,
        fitted_at: now.to_rfc3339(),
        as_of_day: as_of,
        customers: fitted.customers,
        population,
        bg_nbd: fitted.bg_nbd,
        bg_nbd_log_likelihood: fitted.bg_nbd_log_likelihood,
        gamma_gamma: fitted.gamma_gamma,
    };
    announce(log, models.topic(), &model, now).await?;
    models.catch_up().await?;
    let BgNbdParams { r, alpha, a, b } = model.bg_nbd;
    tracing::info!(
        version,
        customers = model.customers,
        population,
        read_ms = read.as_millis() as u64,
        fit_ms = fit_time.as_millis() as u64,
        r,
        alpha,
        a,
        b,
        "models refitted"
    );
    Ok(model)
}

/// The parameters fitted on a set of summaries.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    pub customers: usize,
    pub bg_nbd: BgNbdParams,
    pub bg_nbd_log_likelihood: f64,
    pub gamma_gamma: Option<GammaGammaParams>,
}

/// Fits BG/NBD on every summary and Gamma-Gamma on the repeat buyers among them, from
/// `warm`'s parameters when given. CPU-bound: call it off the async runtime.
pub fn fit(
    summaries: &[CustomerState],
    as_of: Day,
    warm: Option<&FittedModel>,
) -> Result<Fitted, FitError> {
    let rfm: Vec<Rfm> = summaries.iter().map(|s| s.rfm(as_of)).collect();
    let spend: Vec<Spend> = summaries.iter().map(CustomerState::spend).collect();
    let (bg, ll) = BgNbd::fit_from(&rfm, warm.map(FittedModel::bg_nbd))?;
    let warm_spend = warm.and_then(|m| m.gamma_gamma).map(|g| GammaGamma {
        p: g.p,
        q: g.q,
        gamma: g.gamma,
    });
    let gamma_gamma =
        GammaGamma::fit_from(&spend, warm_spend)
            .ok()
            .map(|(g, _)| GammaGammaParams {
                p: g.p,
                q: g.q,
                gamma: g.gamma,
            });
    Ok(Fitted {
        customers: rfm.len(),
        bg_nbd: BgNbdParams {
            r: bg.r,
            alpha: bg.alpha,
            a: bg.a,
            b: bg.b,
        },
        bg_nbd_log_likelihood: ll,
        gamma_gamma,
    })
}

/// Appends `model` to the models topic; returns once the log acknowledged it.
async fn announce<L: EventLog>(
    log: &L,
    topic: &str,
    model: &FittedModel,
    now: DateTime<Utc>,
) -> Result<(), ScoringError> {
    let envelope = Envelope::new(
        event_id(FittedModel::EVENT_TYPE, &model.version.to_string()),
        "/churnguard/churn-scoring".into(),
        FittedModel::EVENT_TYPE,
        None,
        now.fixed_offset(),
        model.clone(),
    );
    let record = OutgoingRecord {
        key: b"model".to_vec(),
        payload: envelope.to_json(),
        headers: vec![Header::new("content-type", CONTENT_TYPE)],
        timestamp_ms: now.timestamp_millis(),
    };
    for r in log.append(topic, vec![record]).await {
        r.map_err(ScoringError::Log)?;
    }
    Ok(())
}
