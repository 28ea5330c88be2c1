//! A simulated chain of stores: each store is a gateway streaming batches of swipes to
//! purchase-ingest through the public gRPC API, from tills in its own timezone. A few
//! swipes are deliberately malformed, to show they are refused on their own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{FixedOffset, Utc};
use churnguard_proto::ingest::v1 as pb;
use churnguard_proto::ingest::v1::purchase_ingest_client::PurchaseIngestClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    pub stores: u32,
    pub customers_per_store: u32,
    pub swipes_per_sec_per_store: u32,
    pub batch: usize,
    /// Every n-th swipe carries a bad currency code (0: never).
    pub bad_every: u64,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            stores: 5,
            customers_per_store: 500,
            swipes_per_sec_per_store: 20,
            batch: 10,
            bad_every: 200,
        }
    }
}

/// Running totals, shared by every store.
#[derive(Debug, Default)]
pub struct SimStats {
    pub accepted: AtomicU64,
    pub invalid: AtomicU64,
    pub failed: AtomicU64,
}

impl SimStats {
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.accepted.load(Ordering::Relaxed),
            self.invalid.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

const STORE_OFFSETS_SECS: [i32; 5] = [3600, 0, -5 * 3600, 19_800, 9 * 3600];

/// Runs the chain until `stop` is cancelled, counting outcomes in `stats`.
pub async fn run(
    endpoint: String,
    cfg: SimulatorConfig,
    stats: Arc<SimStats>,
    stop: CancellationToken,
) {
    let run_id = Utc::now().timestamp_millis();
    let mut stores = Vec::new();
    for store in 0..cfg.stores {
        stores.push(tokio::spawn(run_store(
            endpoint.clone(),
            cfg.clone(),
            store,
            run_id,
            stats.clone(),
            stop.clone(),
        )));
    }
    for s in stores {
        let _ = s.await;
    }
}

async fn run_store(
    endpoint: String,
    cfg: SimulatorConfig,
    store: u32,
    run_id: i64,
    stats: Arc<SimStats>,
    stop: CancellationToken,
) {
    let offset =
        FixedOffset::east_opt(STORE_OFFSETS_SECS[store as usize % STORE_OFFSETS_SECS.len()])
            .unwrap_or(FixedOffset::east_opt(0).unwrap_or_else(|| unreachable!()));
    let mut rng = fastrand::Rng::with_seed(u64::from(store) ^ run_id as u64);
    let mut seq = 0u64;
    let interval =
        Duration::from_secs_f64(cfg.batch as f64 / f64::from(cfg.swipes_per_sec_per_store.max(1)));
    while !stop.is_cancelled() {
        let Ok(mut client) = PurchaseIngestClient::connect(endpoint.clone()).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let (batches, rx) = mpsc::channel(2);
        let Ok(response) = client.stream_swipes(ReceiverStream::new(rx)).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let mut answers = response.into_inner();
        let mut tick = tokio::time::interval(interval);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let swipes: Vec<pb::Swipe> = (0..cfg.batch)
                .map(|_| {
                    seq += 1;
                    // Regulars buy more often: a skewed pick of the store's customers.
                    let r = rng.f64();
                    let customer = (r * r * f64::from(cfg.customers_per_store)) as u32;
                    let bad = cfg.bad_every > 0 && seq.is_multiple_of(cfg.bad_every);
                    pb::Swipe {
                        swipe_id: format!("sim-{run_id}-{store}-{seq}"),
                        customer: Some(pb::swipe::Customer::CustomerId(format!(
                            "cust-{store}-{customer}"
                        ))),
                        store_id: format!("store-{store}"),
                        terminal_id: format!("till-{}", rng.u32(1..=4)),
                        employee_id: format!("emp-{store}-{}", rng.u32(1..=12)),
                        occurred_at: Utc::now().with_timezone(&offset).to_rfc3339(),
                        amount: Some(pb::Amount {
                            minor_units: i64::from(rng.u32(150..=25_000)),
                            currency: if bad { "eur".into() } else { "EUR".into() },
                        }),
                        item_count: rng.u32(1..=12),
                    }
                })
                .collect();
            if batches
                .send(pb::StreamSwipesRequest {
                    swipes,
                    historical: false,
                })
                .await
                .is_err()
            {
                break;
            }
            match answers.message().await {
                Ok(Some(answer)) => {
                    for r in answer.results {
                        match r.outcome {
                            Some(pb::swipe_result::Outcome::Accepted(_)) => {
                                stats.accepted.fetch_add(1, Ordering::Relaxed)
                            }
                            Some(pb::swipe_result::Outcome::Rejected(rej))
                                if rej.code == "INVALID_ARGUMENT" =>
                            {
                                stats.invalid.fetch_add(1, Ordering::Relaxed)
                            }
                            _ => stats.failed.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                }
                _ => break,
            }
        }
    }
}

/// How the chain's customers behave in [`backfill`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Habit {
    /// Keeps coming at their own rate.
    Loyal,
    /// Stops coming from this day (of the history) on: a defector.
    StopsOn(u32),
    /// Comes half as often from this day on: starting to go elsewhere.
    HalvesOn(u32),
}

/// A chain's recent history, as a store export would bring it on the first start: `days`
/// days up to now, `customers_per_store` customers per store, each with a visit rate of
/// their own (half a visit to three visits a week). A quarter of them stop coming at some
/// point (defectors) and a tenth start coming half as often, so churn scoring has
/// something to find. Swipe ids are deterministic. Sent in time order through
/// StreamSwipes; returns once every batch is answered.
pub async fn backfill(
    endpoint: String,
    cfg: &SimulatorConfig,
    days: u32,
    stats: Arc<SimStats>,
) -> Result<(), tonic::Status> {
    let mut client = PurchaseIngestClient::connect(endpoint)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let today = Utc::now();
    let customers: Vec<(u32, u32, f64, Habit)> = (0..cfg.stores)
        .flat_map(|store| (0..cfg.customers_per_store).map(move |c| (store, c)))
        .map(|(store, c)| {
            let mut rng = fastrand::Rng::with_seed(u64::from(store) << 32 | u64::from(c));
            let per_week = 0.5 + 2.5 * rng.f64();
            let habit = match rng.u32(0..20) {
                0..5 => {
                    Habit::StopsOn(rng.u32(days / 3..days.saturating_sub(14).max(days / 3 + 1)))
                }
                5..7 => {
                    Habit::HalvesOn(rng.u32(days / 3..days.saturating_sub(28).max(days / 3 + 1)))
                }
                _ => Habit::Loyal,
            };
            (store, c, per_week, habit)
        })
        .collect();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut batch = Vec::new();
    for day in 0..days {
        let date = today - chrono::TimeDelta::days(i64::from(days - day));
        for &(store, c, per_week, habit) in &customers {
            let rate = match habit {
                Habit::StopsOn(d) if day >= d => 0.0,
                Habit::HalvesOn(d) if day >= d => per_week / 2.0,
                _ => per_week,
            };
            if rng.f64() >= rate / 7.0 {
                continue;
            }
            let offset = FixedOffset::east_opt(
                STORE_OFFSETS_SECS[store as usize % STORE_OFFSETS_SECS.len()],
            )
            .unwrap_or(FixedOffset::east_opt(0).unwrap_or_else(|| unreachable!()));
            let at = (date + chrono::TimeDelta::minutes(i64::from(rng.u32(0..600))))
                .with_timezone(&offset);
            batch.push(pb::Swipe {
                swipe_id: format!("hist-{store}-{c}-{day}"),
                customer: Some(pb::swipe::Customer::CustomerId(format!("cust-{store}-{c}"))),
                store_id: format!("store-{store}"),
                terminal_id: format!("till-{}", rng.u32(1..=4)),
                employee_id: format!("emp-{store}-{}", rng.u32(1..=12)),
                occurred_at: at.to_rfc3339(),
                amount: Some(pb::Amount {
                    minor_units: i64::from(rng.u32(500..=12_000)),
                    currency: "EUR".into(),
                }),
                item_count: rng.u32(1..=12),
            });
        }
        if batch.len() >= 500 || day + 1 == days {
            let requests: Vec<pb::StreamSwipesRequest> = std::mem::take(&mut batch)
                .chunks(500)
                .map(|swipes| pb::StreamSwipesRequest {
                    swipes: swipes.to_vec(),
                    historical: false,
                })
                .collect();
            let mut answers = client
                .stream_swipes(tokio_stream::iter(requests))
                .await?
                .into_inner();
            while let Some(answer) = answers.message().await? {
                for r in answer.results {
                    match r.outcome {
                        Some(pb::swipe_result::Outcome::Accepted(_)) => {
                            stats.accepted.fetch_add(1, Ordering::Relaxed)
                        }
                        _ => stats.failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }
        }
    }
    Ok(())
}
