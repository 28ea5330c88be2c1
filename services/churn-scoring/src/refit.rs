//! Periodic refits: fit the models on every customer's summary, store the result
//! versioned in Redis (`model:v<N>`, and `model:current`), and announce it on the log.

use chrono::{DateTime, Utc};
use churnguard_domain::customer::Day;
use churnguard_domain::envelope::{CONTENT_TYPE, Envelope, event_id};
use churnguard_domain::models::{BgNbd, BgNbdParams, FittedModel, GammaGamma, GammaGammaParams};
use churnguard_eventlog::{EventLog, Header, OutgoingRecord};

use crate::error::ScoringError;
use crate::store::CustomerStore;

/// Fits on the summaries of all `partitions` as of `as_of`, stores the new version and
/// announces it on `topic`. Returns what was stored.
pub async fn refit<L: EventLog>(
    store: &CustomerStore,
    partitions: u32,
    as_of: Day,
    now: DateTime<Utc>,
    log: &L,
    topic: &str,
) -> Result<FittedModel, ScoringError> {
    let mut rfm = Vec::new();
    let mut spend = Vec::new();
    for p in 0..partitions {
        for state in store.partition_customers(p).await?.into_values() {
            if state.first_day <= as_of {
                rfm.push(state.rfm(as_of));
                spend.push(state.spend());
            }
        }
    }
    let (bg, ll) = BgNbd::fit(&rfm).map_err(|e| ScoringError::Fit(e.to_string()))?;
    let gamma_gamma = GammaGamma::fit(&spend).ok().map(|(g, _)| GammaGammaParams {
        p: g.p,
        q: g.q,
        gamma: g.gamma,
    });
    let version = store.next_model_version().await?;
    let model = FittedModel {
        version,
        fitted_at: now.to_rfc3339(),
        as_of_day: as_of,
        customers: rfm.len(),
        bg_nbd: BgNbdParams {
            r: bg.r,
            alpha: bg.alpha,
            a: bg.a,
            b: bg.b,
        },
        bg_nbd_log_likelihood: ll,
        gamma_gamma,
    };
    store.save_model(&model).await?;
    let envelope = Envelope::new(
        event_id(FittedModel::EVENT_TYPE, &version.to_string()),
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
    tracing::info!(
        version,
        customers = model.customers,
        r = bg.r,
        alpha = bg.alpha,
        a = bg.a,
        b = bg.b,
        "models refitted"
    );
    Ok(model)
}
