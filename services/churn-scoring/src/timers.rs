//! Absence detection. A customer who stops buying sends no events, so every customer has
//! a deadline in their partition's index: the day they are next due for assessment (the
//! day of a new purchase, or the first day their state would change if nothing else
//! happens). Firing a due deadline assesses the customer with the policy and commits the
//! outcome with a compare-and-set, so exactly one instance fires each deadline, and a
//! state change goes to the outbox in the same step. The relay then publishes it.

use std::sync::{Arc, PoisonError, RwLock};

use futures_util::{StreamExt, stream};

use churnguard_domain::customer::Day;
use churnguard_domain::policy::PolicyBook;
use churnguard_domain::risk::{self, ScoringModel, ValueHorizon};
use churnguard_domain::signal::ChurnStateChanged;
use churnguard_eventlog::{EventLog, Header, OutgoingRecord};

use crate::error::ScoringError;
use crate::store::{CustomerStore, Decision};

/// Counts of one firing round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FireStats {
    pub assessed: u64,
    pub changed: u64,
    /// Decisions another instance (or a newer swipe) got to first.
    pub lost_races: u64,
}

/// What firing one deadline did.
enum Fired {
    /// The customer's state was gone: the stale deadline was dropped.
    Dropped,
    /// Assessed; `committed` unless another instance or a new swipe got there first.
    Assessed { committed: bool, changed: bool },
}

#[derive(Debug, Clone)]
pub struct Timers {
    store: CustomerStore,
    policies: PolicyBook,
    /// The current models; replaced after a refit (clones share it).
    model: Arc<RwLock<ScoringModel>>,
    /// How far ahead a next deadline is searched, in days.
    lookahead: Day,
    /// The horizon over which CLV and value at risk are counted.
    horizon: ValueHorizon,
}

impl Timers {
    /// `policies`: the chain's policy book (a single [`DefectionPolicy`] converts into one
    /// for every store); `model`: BG/NBD, with Gamma-Gamma when fitted.
    ///
    /// [`DefectionPolicy`]: churnguard_domain::policy::DefectionPolicy
    pub fn new(
        store: CustomerStore,
        policies: impl Into<PolicyBook>,
        model: impl Into<ScoringModel>,
    ) -> Self {
        Self {
            store,
            policies: policies.into(),
            model: Arc::new(RwLock::new(model.into())),
            lookahead: 400,
            horizon: ValueHorizon::default(),
        }
    }

    /// The same timers counting value over another horizon.
    pub fn with_value_horizon(mut self, horizon: ValueHorizon) -> Self {
        self.horizon = horizon;
        self
    }

    /// The models decisions are made with now.
    pub fn model(&self) -> ScoringModel {
        *self.model.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Uses `model` from now on (after a refit).
    pub fn set_model(&self, model: ScoringModel) {
        *self.model.write().unwrap_or_else(PoisonError::into_inner) = model;
    }

    /// Fires every deadline of `partition` due on or before `now` (a day: stream time
    /// while replaying history, the wall clock once caught up). Customers are independent
    /// (each commit is its own compare-and-set), so up to `IN_FLIGHT` of them are assessed
    /// at once: their reads and commits share the connection's pipeline.
    pub async fn fire_due(&self, partition: u32, now: Day) -> Result<FireStats, ScoringError> {
        const IN_FLIGHT: usize = 64;
        let mut stats = FireStats::default();
        let model = self.model();
        loop {
            let due = self.store.due(partition, now, 500).await?;
            if due.is_empty() {
                crate::metrics::timers_fired(stats.assessed);
                return Ok(stats);
            }
            let mut fired = stream::iter(due)
                .map(|(key, deadline)| self.fire_one(partition, key, deadline, now, &model))
                .buffer_unordered(IN_FLIGHT);
            while let Some(outcome) = fired.next().await {
                match outcome? {
                    Fired::Dropped => {}
                    Fired::Assessed { committed, changed } => {
                        stats.assessed += 1;
                        if !committed {
                            stats.lost_races += 1;
                        } else if changed {
                            stats.changed += 1;
                        }
                    }
                }
            }
        }
    }

    /// Assesses one due customer and commits the decision.
    async fn fire_one(
        &self,
        partition: u32,
        key: String,
        deadline: Day,
        now: Day,
        model: &ScoringModel,
    ) -> Result<Fired, ScoringError> {
        let customer = key
            .rsplit_once('}')
            .map_or(key.as_str(), |(_, c)| c.trim_start_matches(':'))
            .to_owned();
        let Some(read) = self.store.for_assessment(&key).await? else {
            // A deadline without a customer (state flushed): drop it.
            self.store
                .commit_transition(partition, &key, &customer, deadline, 0, None)
                .await?;
            return Ok(Fired::Dropped);
        };
        let previous = read.churn;
        let r = risk::assess(
            previous,
            &read.state,
            &self.policies,
            model,
            &self.horizon,
            now,
        );
        let next = self.policies.for_customer(&read.state).next_deadline(
            r.assessment.state,
            &read.state,
            &model.bg_nbd,
            now,
            self.lookahead,
        );
        let signal = (r.assessment.state != previous).then(|| {
            ChurnStateChanged::new(
                &customer,
                r.home_store.clone(),
                previous,
                &r.assessment,
                r.clv,
                r.value_at_risk,
                now,
            )
            .into_envelope()
            .to_json()
        });
        let decision = Decision {
            state: r.assessment.state,
            next_deadline: next,
            signal: signal.as_deref(),
            old_home: read.home.as_deref(),
            // A stored customer has swiped somewhere.
            home: r.home_store.as_deref().unwrap_or_default(),
            value_at_risk_minor: r.value_at_risk_minor(),
            as_of: now,
        };
        let committed = self
            .store
            .commit_transition(
                partition,
                &key,
                &customer,
                deadline,
                read.swipes,
                Some(decision),
            )
            .await?;
        if committed && signal.is_some() {
            crate::metrics::signal(decision_home(&r.home_store), r.assessment.state.as_str());
        }
        Ok(Fired::Assessed {
            committed,
            changed: signal.is_some(),
        })
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

/// The store a decision counts for: the customer's home store (every stored customer has
/// swiped somewhere).
fn decision_home(home: &Option<String>) -> &str {
    home.as_deref().unwrap_or_default()
}
