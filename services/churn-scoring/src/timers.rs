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
use churnguard_telemetry::TRACEPARENT;
use tracing::Instrument;

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

    /// Lives through the days up to `day` (imported history, before a swipe of `day` is
    /// applied): each due deadline fires on its own day, the earliest first, so a
    /// customer is assessed on the day the clock would have reached it, and a deadline an
    /// assessment sets within the range fires on its day too. Afterwards none is due
    /// before `day`'s end.
    pub async fn live_through(&self, partition: u32, day: Day) -> Result<FireStats, ScoringError> {
        let mut stats = FireStats::default();
        while let Some(&(_, next)) = self.store.due(partition, day, 1).await?.first() {
            let fired = self.fire_due(partition, next).await?;
            stats.assessed += fired.assessed;
            stats.changed += fired.changed;
            stats.lost_races += fired.lost_races;
        }
        Ok(stats)
    }

    /// Assesses one due customer and commits the decision, in a span that continues the
    /// trace of the customer's latest swipe; a signal carries that span's context.
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
        let span = tracing::info_span!(
            "assess",
            otel.name = "assess customer",
            otel.kind = "internal",
            otel.status_code = tracing::field::Empty,
            churn.customer = %customer,
            churn.partition = partition,
            churn.deadline = deadline,
            churn.day = now,
            churn.previous_state = previous.as_str(),
            churn.state = tracing::field::Empty,
            churn.committed = tracing::field::Empty,
        );
        churnguard_telemetry::continue_trace(&span, read.traceparent.as_deref());
        let fired = self
            .assess(partition, &key, &customer, deadline, now, model, read)
            .instrument(span.clone())
            .await;
        match &fired {
            Ok(Fired::Assessed { committed, .. }) => {
                span.record("churn.committed", committed);
            }
            Ok(Fired::Dropped) => {}
            Err(_) => {
                span.record("otel.status_code", "ERROR");
            }
        }
        fired
    }

    /// Assesses a customer as read and commits the decision (in the assessment's span).
    #[allow(clippy::too_many_arguments)]
    async fn assess(
        &self,
        partition: u32,
        key: &str,
        customer: &str,
        deadline: Day,
        now: Day,
        model: &ScoringModel,
        read: crate::store::Assessable,
    ) -> Result<Fired, ScoringError> {
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
        tracing::Span::current().record("churn.state", r.assessment.state.as_str());
        let signal = (r.assessment.state != previous).then(|| {
            ChurnStateChanged::new(
                customer,
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
        let traceparent = signal
            .as_ref()
            .and_then(|_| churnguard_telemetry::traceparent_of(&tracing::Span::current()));
        let decision = Decision {
            state: r.assessment.state,
            next_deadline: next,
            signal: signal.as_deref(),
            traceparent: traceparent.as_deref(),
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
                key,
                customer,
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
    /// event id. Each signal is sent in a producer span continuing its assessment's trace,
    /// whose context the record carries.
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
        let spans: Vec<tracing::Span> = entries
            .iter()
            .map(|e| {
                let span = tracing::info_span!(
                    "publish",
                    otel.name = %format_args!("send {topic}"),
                    otel.kind = "producer",
                    otel.status_code = tracing::field::Empty,
                    messaging.system = "kafka",
                    messaging.destination.name = %topic,
                    messaging.operation.type = "send",
                    messaging.operation.name = "publish",
                    messaging.destination.partition.id = tracing::field::Empty,
                    messaging.kafka.destination.partition = tracing::field::Empty,
                    messaging.kafka.offset = tracing::field::Empty,
                );
                churnguard_telemetry::continue_trace(&span, e.traceparent.as_deref());
                span
            })
            .collect();
        let records = entries
            .iter()
            .zip(&spans)
            .map(|(e, span)| {
                let mut headers = vec![Header::new(
                    "content-type",
                    churnguard_domain::envelope::CONTENT_TYPE,
                )];
                if let Some(tp) =
                    churnguard_telemetry::traceparent_of(span).or_else(|| e.traceparent.clone())
                {
                    headers.push(Header::new(TRACEPARENT, tp));
                }
                OutgoingRecord {
                    key: e.customer.as_bytes().to_vec(),
                    payload: e.signal.clone(),
                    headers,
                    timestamp_ms: 0,
                }
            })
            .collect();
        let mut published = Vec::new();
        for ((entry, span), result) in entries
            .iter()
            .zip(&spans)
            .zip(log.append(topic, records).await)
        {
            match &result {
                Ok(at) => {
                    span.record("messaging.destination.partition.id", at.partition)
                        .record("messaging.kafka.destination.partition", at.partition)
                        .record("messaging.kafka.offset", at.offset);
                }
                Err(_) => {
                    span.record("otel.status_code", "ERROR");
                }
            }
            result.map_err(ScoringError::Log)?;
            published.push(entry.id.clone());
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
