//! Defector outreach opened from churn signals. Churn scoring publishes a
//! `churn_state_changed` event on `churn.signals.v1` when a customer's state changes; a
//! move into `at_risk` or `defected` opens an outreach case at the customer's home store
//! with its own deadline, through the same write path as complaints.
//!
//! Every signal also updates the customer's standing ([`crate::standing`]), which
//! complaint priorities use.
//!
//! One case per episode ([`churnguard_domain::feedback::outreach::on_signal`]): before
//! acting on a signal, the opener reads the customer's cases (the projection's per-customer
//! index, every partition caught up first) and the domain decides: open a case for a new
//! episode, escalate the open at-risk case on a defection, end the episode when the
//! customer is back, or nothing. So a signal that churn scoring re-emits for an episode
//! that has a case (after losing its Redis, with another event id when it lands on
//! another day) opens nothing, and the customer's next episode after a return opens a new
//! case.
//!
//! Exactly once: a case's id and each commit's idempotency key derive from the signal's
//! event id (which churn scoring makes deterministic), so a signal read twice (after a
//! crash before the checkpoint moved, or by two instances at once) acts once. The reader's
//! checkpoint per partition of the signals topic is kept in Redis under [`OPENER`]; it
//! only moves forward, past signals whose commit is in the log. A customer's signals share
//! a partition and are handled in log order, so instances that read the same partition
//! decide on the same cases.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use churnguard_domain::envelope::Envelope;
use churnguard_domain::feedback::outreach::{
    EndOutreach, EscalateOutreach, OpenOutreach, OutreachCase, OutreachCommand, OutreachError,
    SignalOutcome, on_signal,
};
use churnguard_domain::feedback::sla::Directory;
use churnguard_domain::ids::OutreachCaseId;
use churnguard_domain::signal::ChurnStateChanged;
use churnguard_eventlog::{EventLog, Record};
use churnguard_redis::{CheckpointStore, RedisCheckpoints};
use churnguard_runtime::consumer_metrics::LagProbe;
use churnguard_telemetry::TRACEPARENT;
use tracing::Instrument;

use crate::config::OutreachTargets;
use crate::error::FeedbackError;
use crate::metrics::OUTREACH;
use crate::service::Complaints;
use crate::standing::{self, minor};

/// The `actor` of the commands the outreach opener makes (opening and ending cases).
pub const OPENER_ACTOR: &str = "system:outreach-opener";

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

/// How many times a signal is decided again when the case it acted on changed meanwhile
/// (another writer came first).
const ATTEMPTS: usize = 3;

/// The case a signal opens when it starts an episode, decided at `now`: due after the
/// state's target in the home store's business time (per `directory`'s calendar for the
/// store).
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
    let oldest = now.date_naive() - chrono::Days::new(u64::from(targets.open_within_days));
    if s.as_of < oldest {
        return Decision::Skip("the change is older than outreach.open_within_days");
    }
    let Some(store) = s.store_id.clone() else {
        return Decision::Skip("no home store to reach out from");
    };
    let Ok(case_id) = OutreachCaseId::parse(format!("o-{}", signal.id)) else {
        return Decision::Skip("the signal id does not make a case id");
    };
    let due_at = due(now, target.secs(), &store, directory);
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
            as_of: Some(s.as_of),
        },
    )
}

/// `secs` of business time after `now` in `store`'s calendar (wall time without one).
fn due(now: DateTime<Utc>, secs: i64, store: &str, directory: Option<&Directory>) -> DateTime<Utc> {
    directory
        .and_then(|d| d.calendar_for(store).add_business(now, secs))
        .unwrap_or_else(|| now + TimeDelta::seconds(secs))
}

/// What one signal did to the customer's cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Acted {
    Opened,
    Escalated,
    Ended,
    Nothing,
    Unreadable,
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
    /// Open at-risk cases made defection cases.
    pub escalated: u64,
    /// Episodes ended (the customer came back).
    pub ended: u64,
    /// Signals that change nothing (other states, no home store, an episode that has its
    /// case, already handled).
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
        if records.iter().any(|r| r.offset >= from) {
            // Decide on every case in the log before these signals, whoever wrote it.
            for p in 0..self.complaints.projection().partitions() {
                self.complaints.catch_up(p).await?;
            }
        }
        let handled = records.iter().filter(|r| r.offset >= from).count();
        if handled > 0 {
            OUTREACH.applied(partition, handled, 0);
        }
        for r in records.iter().filter(|r| r.offset >= from) {
            let span = self.signal_span(partition, r);
            let outcome = self.one(partition, r).instrument(span.clone()).await;
            match &outcome {
                Ok(acted) => {
                    span.record("outreach.acted", format!("{acted:?}").as_str());
                }
                Err(_) => {
                    span.record("otel.status_code", "ERROR");
                }
            }
            match outcome {
                Ok(Acted::Opened) => done.opened += 1,
                Ok(Acted::Escalated) => done.escalated += 1,
                Ok(Acted::Ended) => done.ended += 1,
                Ok(Acted::Nothing) => done.skipped += 1,
                Ok(Acted::Unreadable) => done.unreadable += 1,
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

    /// The span one signal is handled in: a consumer span, the child of the span that
    /// sent the signal (its `traceparent`), so an outreach case opened from it is in the
    /// trace of the swipe or timer that caused the signal.
    fn signal_span(&self, partition: u32, r: &Record) -> tracing::Span {
        let span = tracing::info_span!(
            "process",
            otel.name = %format_args!("process {}", self.topic),
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            messaging.system = "kafka",
            messaging.operation.type = "process",
            messaging.operation.name = "process",
            messaging.destination.name = %self.topic,
            messaging.consumer.group.name = OPENER,
            messaging.destination.partition.id = partition,
            messaging.kafka.destination.partition = partition,
            messaging.kafka.offset = r.offset,
            outreach.acted = tracing::field::Empty,
        );
        let traceparent = r
            .header(TRACEPARENT)
            .and_then(|v| std::str::from_utf8(v).ok());
        churnguard_telemetry::continue_trace(&span, traceparent);
        span
    }

    /// What one signal did.
    async fn one(&self, partition: u32, r: &Record) -> Result<Acted, FeedbackError> {
        let signal = match Envelope::<ChurnStateChanged>::decode(
            &r.payload,
            ChurnStateChanged::EVENT_TYPE,
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(partition, offset = r.offset, error = %e, "not a churn signal: skipped");
                return Ok(Acted::Unreadable);
            }
        };
        if let Err(e) =
            standing::record(self.complaints.projection().connection(), &signal.data).await
        {
            if e.is_retriable() || matches!(e, FeedbackError::Redis { .. }) {
                return Err(e);
            }
            tracing::warn!(partition, offset = r.offset, error = %e, "churn signal skipped");
            return Ok(Acted::Unreadable);
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.act(&signal).await {
                // The case changed between the decision and the commit (another writer
                // came first): decide again on what is there now.
                Err(
                    FeedbackError::Conflict { .. }
                    | FeedbackError::Outreach(
                        OutreachError::VersionConflict { .. }
                        | OutreachError::InvalidTransition { .. },
                    ),
                ) if attempt < ATTEMPTS => continue,
                Err(FeedbackError::Outreach(OutreachError::Invalid(v))) => {
                    tracing::warn!(partition, offset = r.offset, signal = %signal.id, fields = ?v.fields().collect::<Vec<_>>(), "churn signal refused: skipped");
                    return Ok(Acted::Unreadable);
                }
                Err(FeedbackError::Outreach(OutreachError::AlreadyExists)) => {
                    return Ok(Acted::Nothing);
                }
                other => return other,
            }
        }
    }

    /// Decides what `signal` means for its customer's cases and acts on it.
    async fn act(&self, signal: &Envelope<ChurnStateChanged>) -> Result<Acted, FeedbackError> {
        let s = &signal.data;
        let cases = self.cases_of(&s.customer).await?;
        let key = signal.id.as_str();
        let now = self.complaints.now();
        let directory = self.complaints.projection().sla().map(|sla| &sla.directory);
        let (case_id, command, acted) = match on_signal(&cases, &s.state, s.as_of) {
            SignalOutcome::Skip(why) => {
                tracing::debug!(signal = %signal.id, why, "signal changes no case");
                return Ok(Acted::Nothing);
            }
            SignalOutcome::Open => match decide(signal, now, &self.targets, directory) {
                Decision::Open(id, open) => {
                    (id, OutreachCommand::OpenOutreach(open), Acted::Opened)
                }
                Decision::Skip(why) => {
                    tracing::debug!(signal = %signal.id, why, "signal opens no case");
                    return Ok(Acted::Nothing);
                }
            },
            SignalOutcome::Escalate(id) => {
                let store = cases
                    .iter()
                    .find(|c| c.id == id)
                    .map(|c| c.home_store.as_str().to_owned())
                    .unwrap_or_default();
                let escalate = EscalateOutreach {
                    expected_version: None,
                    signal_id: signal.id.clone(),
                    state: s.state.clone(),
                    value_at_risk_minor: minor(s.value_at_risk),
                    clv_minor: minor(s.clv),
                    due_at: due(now, self.targets.defected.secs(), &store, directory),
                    as_of: s.as_of,
                };
                (
                    id,
                    OutreachCommand::EscalateOutreach(escalate),
                    Acted::Escalated,
                )
            }
            SignalOutcome::End(id) => {
                let end = EndOutreach {
                    expected_version: None,
                    signal_id: signal.id.clone(),
                    state: s.state.clone(),
                    as_of: s.as_of,
                };
                (id, OutreachCommand::EndOutreach(end), Acted::Ended)
            }
        };
        let (_, applied) = self
            .complaints
            .execute_outreach(&case_id, command, Some(key), Some(OPENER_ACTOR))
            .await?;
        if applied {
            tracing::debug!(case = %case_id.as_str(), signal = %key, ?acted, "outreach case changed");
            Ok(acted)
        } else {
            Ok(Acted::Nothing)
        }
    }

    /// Every outreach case of `customer`, as projected.
    async fn cases_of(&self, customer: &str) -> Result<Vec<OutreachCase>, FeedbackError> {
        let projection = self.complaints.projection();
        let ids = projection.customer_cases(customer).await?;
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut cases = Vec::with_capacity(ids.len());
        for (case, id) in projection.load_cases(&ids).await?.into_iter().zip(&ids) {
            cases.push(case.ok_or_else(|| {
                FeedbackError::Corrupt(format!("{id} is a customer's case but not projected"))
            })?);
        }
        Ok(cases)
    }

    /// Runs rounds over `partitions` until `stop` resolves. Errors are logged and the
    /// partition is tried again after the runtime's backoff, which starts over after a
    /// pass over every partition without one.
    pub async fn run(&self, partitions: &[u32], stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let wait = Duration::from_millis(200);
        let mut backoff = churnguard_runtime::retry::Backoff::new();
        let mut lags: Vec<LagProbe> = partitions
            .iter()
            .map(|&p| LagProbe::new(OUTREACH, p))
            .collect();
        loop {
            let mut clean = true;
            for (&p, lag) in partitions.iter().zip(&mut lags) {
                let round = tokio::select! {
                    () = &mut stop => return,
                    r = self.round(p, wait) => r,
                };
                if lag.due()
                    && let Ok(Some(next)) = self.checkpoints.load(OPENER, &self.topic, p).await
                {
                    let now = chrono::Utc::now().timestamp_millis();
                    lag.observe(self.complaints.log().as_ref(), &self.topic, next, &[], now)
                        .await;
                }
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
            open_within_days: 90,
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

    /// A change found in imported history (a customer who left in 1998) opens no case;
    /// one dated within the window does, up to its first day.
    #[test]
    fn only_recent_changes_open_cases() {
        let targets = OutreachTargets {
            open_within_days: 3,
            ..OutreachTargets::default()
        };
        let on = |y, m, d| {
            let mut s = signal("defected", Some("store-3"));
            s.data.as_of = chrono::NaiveDate::from_ymd_opt(y, m, d).expect("date");
            decide(&s, now(), &targets, None)
        };
        assert_eq!(
            on(1998, 6, 30),
            Decision::Skip("the change is older than outreach.open_within_days")
        );
        assert_eq!(
            on(2026, 11, 19),
            Decision::Skip("the change is older than outreach.open_within_days")
        );
        assert!(matches!(on(2026, 11, 20), Decision::Open(..)));
        assert!(matches!(on(2026, 11, 23), Decision::Open(..)));
    }
}
