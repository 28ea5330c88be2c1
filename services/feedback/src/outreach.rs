//! Defector outreach opened from churn signals. Churn scoring publishes a
//! `churn_state_changed` event on `churn.signals.v1` when a customer's state changes; for
//! each one into `at_risk` or `defected`, this opens an outreach case at the customer's
//! home store with its own deadline, through the same write path as complaints.
//!
//! Every signal also updates the customer's standing ([`crate::standing`]), which
//! complaint priorities use.
//!
//! Exactly once: the case id and the commit's idempotency key are both derived from the
//! signal's event id (which churn scoring makes deterministic), so a signal read twice
//! (after a crash before the checkpoint moved, or by two instances at once) opens one
//! case. The reader's checkpoint per partition of the signals topic is kept in Redis
//! under [`OPENER`]; it only moves forward, past signals whose case is in the log.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use churnguard_domain::envelope::Envelope;
use churnguard_domain::feedback::outreach::{OpenOutreach, OutreachCommand, OutreachError};
use churnguard_domain::feedback::sla::Directory;
use churnguard_domain::ids::OutreachCaseId;
use churnguard_domain::signal::ChurnStateChanged;
use churnguard_eventlog::{EventLog, Record};
use churnguard_redis::{CheckpointStore, RedisCheckpoints};

use crate::config::OutreachTargets;
use crate::error::FeedbackError;
use crate::service::Complaints;
use crate::standing::{self, minor};

/// The consumer name of the signals reader's checkpoints.
pub const OPENER: &str = "feedback-outreach";

/// Signals read per partition and round.
const BATCH: usize = 200;

/// What a signal means for outreach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Open this case (the signal id is the idempotency key).
    Open(OutreachCaseId, OpenOutreach),
    /// Nothing to do, and why (for the log).
    Skip(&'static str),
}

/// The case a signal opens, decided at `now`: due after the state's target in the home
/// store's business time (per `directory`'s calendar for the store).
pub fn decide(
    signal: &Envelope<ChurnStateChanged>,
    now: DateTime<Utc>,
    targets: &OutreachTargets,
    directory: Option<&Directory>,
) -> Decision {
    let s = &signal.data;
    let target = match s.state.as_str() {
        "at_risk" => targets.at_risk,
        "defected" => targets.defected,
        _ => return Decision::Skip("not a move into at_risk or defected"),
    };
    let Some(store) = s.store_id.clone() else {
        return Decision::Skip("no home store to reach out from");
    };
    let Ok(case_id) = OutreachCaseId::parse(format!("o-{}", signal.id)) else {
        return Decision::Skip("the signal id does not make a case id");
    };
    let due_at = directory
        .and_then(|d| d.calendar_for(&store).add_business(now, target.secs()))
        .unwrap_or_else(|| now + TimeDelta::seconds(target.secs()));
    Decision::Open(
        case_id.clone(),
        OpenOutreach {
            expected_version: None,
            case_id,
            signal_id: signal.id.clone(),
            customer: s.customer.clone(),
            home_store: store,
            state: s.state.clone(),
            value_at_risk_minor: minor(s.value_at_risk),
            clv_minor: minor(s.clv),
            due_at,
        },
    )
}

/// Reads churn signals and opens outreach cases.
pub struct Opener<L> {
    complaints: Arc<Complaints<L>>,
    checkpoints: RedisCheckpoints,
    topic: String,
    targets: OutreachTargets,
}

impl<L> std::fmt::Debug for Opener<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// What one round over a partition did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Opened {
    /// Cases this round opened.
    pub opened: u64,
    /// Signals that open nothing (other states, no home store, already opened).
    pub skipped: u64,
    /// Records that are not a churn signal, or a signal the aggregate refuses.
    pub unreadable: u64,
}

impl<L: EventLog> Opener<L> {
    pub fn new(
        complaints: Arc<Complaints<L>>,
        checkpoints: RedisCheckpoints,
        signals_topic: &str,
        targets: OutreachTargets,
    ) -> Self {
        Self {
            complaints,
            checkpoints,
            topic: signals_topic.to_owned(),
            targets,
        }
    }

    /// Handles the signals of `partition` from its checkpoint on, at most one batch,
    /// waiting up to `wait` for one to arrive; moves the checkpoint past what it handled.
    /// On an error the checkpoint stays where the failing signal is.
    pub async fn round(&self, partition: u32, wait: Duration) -> Result<Opened, FeedbackError> {
        let from = self
            .checkpoints
            .load(OPENER, &self.topic, partition)
            .await?
            .unwrap_or(0);
        let records = self
            .complaints
            .log()
            .read(&self.topic, partition, from, BATCH, wait)
            .await?;
        let mut done = Opened::default();
        let mut next = from;
        for r in records.iter().filter(|r| r.offset >= from) {
            let outcome = self.one(partition, r).await;
            match outcome {
                Ok(Some(true)) => done.opened += 1,
                Ok(Some(false)) => done.skipped += 1,
                Ok(None) => done.unreadable += 1,
                Err(e) => {
                    self.advance(partition, next).await?;
                    return Err(e);
                }
            }
            next = r.offset + 1;
        }
        self.advance(partition, next).await?;
        Ok(done)
    }

    async fn advance(&self, partition: u32, next: u64) -> Result<(), FeedbackError> {
        self.checkpoints
            .advance(OPENER, &self.topic, partition, next)
            .await?;
        Ok(())
    }

    /// `Some(true)`: opened; `Some(false)`: nothing to open; `None`: unreadable.
    async fn one(&self, partition: u32, r: &Record) -> Result<Option<bool>, FeedbackError> {
        let signal = match Envelope::<ChurnStateChanged>::decode(
            &r.payload,
            ChurnStateChanged::EVENT_TYPE,
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(partition, offset = r.offset, error = %e, "not a churn signal: skipped");
                return Ok(None);
            }
        };
        if let Err(e) =
            standing::record(self.complaints.projection().connection(), &signal.data).await
        {
            if e.is_retriable() || matches!(e, FeedbackError::Redis { .. }) {
                return Err(e);
            }
            tracing::warn!(partition, offset = r.offset, error = %e, "churn signal skipped");
            return Ok(None);
        }
        let now = self.complaints.now();
        let directory = self.complaints.projection().sla().map(|s| &s.directory);
        let (case_id, open) = match decide(&signal, now, &self.targets, directory) {
            Decision::Open(id, open) => (id, open),
            Decision::Skip(why) => {
                tracing::debug!(partition, offset = r.offset, signal = %signal.id, why, "signal opens no case");
                return Ok(Some(false));
            }
        };
        let key = signal.id.clone();
        match self
            .complaints
            .execute_outreach(&case_id, OutreachCommand::OpenOutreach(open), Some(&key))
            .await
        {
            Ok((_, applied)) => {
                if applied {
                    tracing::debug!(case = %case_id.as_str(), signal = %key, "outreach case opened");
                }
                Ok(Some(applied))
            }
            Err(FeedbackError::Outreach(OutreachError::Invalid(v))) => {
                tracing::warn!(partition, offset = r.offset, signal = %key, fields = ?v.fields().collect::<Vec<_>>(), "churn signal refused: skipped");
                Ok(None)
            }
            Err(FeedbackError::Outreach(OutreachError::AlreadyExists)) => Ok(Some(false)),
            Err(e) => Err(e),
        }
    }

    /// Runs rounds over `partitions` until `stop` resolves. Errors are logged and the
    /// partition is tried again after the runtime's backoff, which starts over after a
    /// pass over every partition without one.
    pub async fn run(&self, partitions: &[u32], stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let wait = Duration::from_millis(200);
        let mut backoff = churnguard_runtime::retry::Backoff::new();
        loop {
            let mut clean = true;
            for &p in partitions {
                let round = tokio::select! {
                    () = &mut stop => return,
                    r = self.round(p, wait) => r,
                };
                if let Err(e) = round {
                    clean = false;
                    let delay = backoff.next_delay();
                    tracing::warn!(partition = p, error = %e, ?delay, "outreach from churn signals failed; retrying");
                    tokio::select! {
                        () = &mut stop => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
            if clean {
                backoff.reset();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use churnguard_domain::feedback::sla::BusinessDuration;

    fn signal(state: &str, store: Option<&str>) -> Envelope<ChurnStateChanged> {
        ChurnStateChanged {
            customer: "cust-7".into(),
            store_id: store.map(str::to_owned),
            previous: "active".into(),
            state: state.into(),
            rules: vec!["overdue".into()],
            p_alive: 0.2,
            clv: 12_345.6,
            value_at_risk: 9_876.4,
            as_of: chrono::NaiveDate::from_ymd_opt(2026, 11, 20).expect("date"),
        }
        .into_envelope()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
            .expect("time")
            .to_utc()
    }

    #[test]
    fn a_defection_opens_a_case_due_in_business_time() {
        let targets = OutreachTargets {
            at_risk: BusinessDuration::from_secs(27 * 3_600),
            defected: BusinessDuration::from_secs(9 * 3_600),
        };
        let directory = crate::config::default_directory().build().expect("builds");
        let s = signal("defected", Some("store-3"));
        let Decision::Open(id, open) = decide(&s, now(), &targets, Some(&directory)) else {
            panic!("expected a case");
        };
        assert_eq!(id.as_str(), format!("o-{}", s.id));
        assert_eq!(open.signal_id, s.id);
        assert_eq!((open.value_at_risk_minor, open.clv_minor), (9_876, 12_346));
        // Monday 10:00 London (UTC in November), open 09:00-18:00: 8 hours left today,
        // one more on Tuesday.
        assert_eq!(open.due_at.to_rfc3339(), "2026-11-24T10:00:00+00:00");
        // Without a calendar, wall time.
        let Decision::Open(_, open) = decide(&s, now(), &targets, None) else {
            panic!("expected a case");
        };
        assert_eq!(open.due_at, now() + TimeDelta::hours(9));
    }

    #[test]
    fn other_moves_and_storeless_signals_open_nothing() {
        let targets = OutreachTargets::default();
        for state in ["active", "won_back"] {
            assert!(matches!(
                decide(&signal(state, Some("s")), now(), &targets, None),
                Decision::Skip(_)
            ));
        }
        assert_eq!(
            decide(&signal("at_risk", None), now(), &targets, None),
            Decision::Skip("no home store to reach out from")
        );
    }
}
