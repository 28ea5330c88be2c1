//! Absence detection. A customer who stops buying sends no events, so every customer has
//! a deadline in their partition's index: the day they are next due for assessment (the
//! day of a new purchase, or the first day their state would change if nothing else
//! happens). Firing a due deadline assesses the customer with the policy and commits the
//! outcome with a compare-and-set, so exactly one instance fires each deadline, and a
//! state change goes to the outbox in the same step. The relay then publishes it.

use churnguard_domain::customer::Day;
use churnguard_domain::models::BgNbd;
use churnguard_domain::policy::DefectionPolicy;
use churnguard_domain::signal::ChurnStateChanged;
use churnguard_eventlog::{EventLog, Header, OutgoingRecord};

use crate::scorer::ScoringError;
use crate::store::CustomerStore;

/// Counts of one firing round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FireStats {
    pub assessed: u64,
    pub changed: u64,
    /// Decisions another instance (or a newer swipe) got to first.
    pub lost_races: u64,
}

#[derive(Debug, Clone)]
pub struct Timers {
    store: CustomerStore,
    policy: DefectionPolicy,
    model: BgNbd,
    /// How far ahead a next deadline is searched, in days.
    lookahead: Day,
    /// Periods (of four weeks) of the CLV horizon, and the discount per period.
    clv_periods: u32,
    discount: f64,
}

impl Timers {
    pub fn new(store: CustomerStore, policy: DefectionPolicy, model: BgNbd) -> Self {
        Self {
            store,
            policy,
            model,
            lookahead: 400,
            clv_periods: 13,
            discount: 0.01,
        }
    }

    /// Fires every deadline of `partition` due on or before `now` (a day: stream time
    /// while replaying history, the wall clock once caught up).
    pub async fn fire_due(&self, partition: u32, now: Day) -> Result<FireStats, ScoringError> {
        let mut stats = FireStats::default();
        loop {
            let due = self.store.due(partition, now, 200).await?;
            if due.is_empty() {
                return Ok(stats);
            }
            for (key, deadline) in due {
                let customer = key
                    .rsplit_once('}')
                    .map_or(key.as_str(), |(_, c)| c.trim_start_matches(':'))
                    .to_owned();
                let Some((state, previous, swipes)) = self.store.for_assessment(&key).await? else {
                    // A deadline without a customer (state flushed): drop it.
                    self.store
                        .commit_transition(
                            partition, &key, &customer, deadline, 0, None, None, None,
                        )
                        .await?;
                    continue;
                };
                let a = self.policy.assess(previous, &state, &self.model, now);
                let next =
                    self.policy
                        .next_deadline(a.state, &state, &self.model, now, self.lookahead);
                let signal = (a.state != previous).then(|| {
                    let rfm = state.rfm(now);
                    let spend = state.spend();
                    let per_visit = if spend.x > 0.0 {
                        spend.mean_spend * 100.0
                    } else {
                        state.first_day_spend as f64
                    };
                    let v = self
                        .model
                        .value(&rfm, per_visit, self.clv_periods, 4.0, self.discount);
                    let home = state
                        .stores
                        .iter()
                        .max_by_key(|(_, n)| **n)
                        .map(|(s, _)| s.clone());
                    ChurnStateChanged::new(
                        &customer,
                        home,
                        previous,
                        &a,
                        v.clv,
                        v.value_at_risk,
                        now,
                    )
                    .into_envelope()
                    .to_json()
                });
                stats.assessed += 1;
                let committed = self
                    .store
                    .commit_transition(
                        partition,
                        &key,
                        &customer,
                        deadline,
                        swipes,
                        Some(a.state),
                        next,
                        signal.as_deref(),
                    )
                    .await?;
                if !committed {
                    stats.lost_races += 1;
                } else if signal.is_some() {
                    stats.changed += 1;
                }
            }
        }
    }

    /// Publishes the partition's outbox to `topic` (keyed by customer), then removes what
    /// was acknowledged. At least once: a crash in between publishes again, with the same
    /// event id.
    pub async fn relay<L: EventLog>(
        &self,
        partition: u32,
        log: &L,
        topic: &str,
    ) -> Result<usize, ScoringError> {
        let entries = self.store.outbox(partition, 500).await?;
        if entries.is_empty() {
            return Ok(0);
        }
        let records = entries
            .iter()
            .map(|(_, customer, payload)| OutgoingRecord {
                key: customer.as_bytes().to_vec(),
                payload: payload.clone(),
                headers: vec![Header::new(
                    "content-type",
                    churnguard_domain::envelope::CONTENT_TYPE,
                )],
                timestamp_ms: 0,
            })
            .collect();
        let mut published = Vec::new();
        for ((id, _, _), result) in entries.iter().zip(log.append(topic, records).await) {
            result.map_err(ScoringError::Log)?;
            published.push(id.clone());
        }
        self.store.ack_outbox(partition, &published).await?;
        Ok(published.len())
    }
}
