//! Defector outreach: when churn scoring says a customer is slipping away (at risk) or
//! gone (defected), someone at their home store reaches out, asks why, and records what
//! they said and what came of it. Defectors are specific about why they left; the reasons,
//! summed per store with the value that walked out, show the chain what to fix.
//!
//! Same shape as the complaint aggregate: [`handle`] decides (pure, time passed in),
//! [`apply`] folds, expected versions guard concurrent writers. [`DefectionReasons`] is the
//! read model fed by both outreach and complaint events.
//!
//! **One case per episode.** An episode is a customer's run of risk: it starts when churn
//! scoring reports them `at_risk` or `defected`, and ends when it reports them back
//! (`active` or `won_back`). [`on_signal`] decides what a churn signal means given the
//! customer's cases, so that a signal re-emitted for an episode that already has a case
//! (churn scoring rebuilt after losing its state re-emits transitions, with new event ids
//! when they land on another day) never opens a second one, while a new episode after a
//! return does. Signals are ordered by their assessment day (`as_of`): a case remembers the
//! day its episode started and the day the customer came back, and a signal dated before
//! them belongs to an older episode.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::complaint::{Check, ComplaintEvent, MAX_TEXT_CHARS, Required};
use super::vocab::{ContactMethod, DefectionReason, OutreachOutcome, Touchpoint};
use crate::error::{FieldViolation, Violations};
use crate::ids::{ComplaintId, CustomerKey, OutreachCaseId, StoreId, check_id};

/// Where the customer stood when the case was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefectorState {
    AtRisk,
    Defected,
}

impl DefectorState {
    pub fn as_str(self) -> &'static str {
        match self {
            DefectorState::AtRisk => "at_risk",
            DefectorState::Defected => "defected",
        }
    }

    /// `at_risk` or `defected`, as churn signals spell them.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "at_risk" => Some(DefectorState::AtRisk),
            "defected" => Some(DefectorState::Defected),
            _ => None,
        }
    }

    /// How urgent: a defection is more so than a risk.
    fn severity(self) -> u8 {
        match self {
            DefectorState::AtRisk => 1,
            DefectorState::Defected => 2,
        }
    }
}

/// How churn scoring reported a customer back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Returned {
    /// Back to their usual pattern from at risk.
    Active,
    /// Back after a defection.
    WonBack,
}

impl Returned {
    pub fn as_str(self) -> &'static str {
        match self {
            Returned::Active => "active",
            Returned::WonBack => "won_back",
        }
    }

    /// `active` or `won_back`, as churn signals spell them.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "active" => Some(Returned::Active),
            "won_back" => Some(Returned::WonBack),
            _ => None,
        }
    }
}

/// Whether anyone still has to act on the case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutreachStatus {
    /// Nobody reached yet, or reached without a final answer: keep trying.
    Open,
    /// Won back or lost: the case is over.
    Closed,
}

impl OutreachStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutreachStatus::Open => "open",
            OutreachStatus::Closed => "closed",
        }
    }
}

impl fmt::Display for OutreachStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Open a case from a churn signal. Values come as the signal carried them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOutreach {
    pub expected_version: Option<u64>,
    /// The stream to create; the adapter derives it from `signal_id`.
    pub case_id: OutreachCaseId,
    /// The churn signal's event id: a redelivered signal opens nothing new.
    pub signal_id: String,
    pub customer: String,
    pub home_store: String,
    /// `at_risk` or `defected`.
    pub state: String,
    pub value_at_risk_minor: i64,
    pub clv_minor: i64,
    /// By when the store should have reached the customer (computed by the service).
    pub due_at: DateTime<Utc>,
    /// The day churn scoring assessed the move (the signal's `as_of`): the episode's
    /// first day.
    pub as_of: Option<NaiveDate>,
}

/// Make an open at-risk case a defection case: churn scoring reported the customer
/// defected while the store was still to reach them. The deadline moves up to `due_at`
/// if that is sooner; the value and CLV become the defection signal's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalateOutreach {
    pub expected_version: Option<u64>,
    /// The churn signal's event id.
    pub signal_id: String,
    /// `defected` (an at-risk case cannot be escalated to at risk).
    pub state: String,
    pub value_at_risk_minor: i64,
    pub clv_minor: i64,
    /// The defection deadline counted from now (computed by the service).
    pub due_at: DateTime<Utc>,
    /// The signal's assessment day.
    pub as_of: NaiveDate,
}

/// End the case's episode: churn scoring reported the customer back. An open case closes
/// (nobody needs to call any more); a closed one only records the day, so that the
/// customer's next move into risk opens a new case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndOutreach {
    pub expected_version: Option<u64>,
    /// The churn signal's event id.
    pub signal_id: String,
    /// `active` or `won_back`.
    pub state: String,
    /// The signal's assessment day: the day the customer came back.
    pub as_of: NaiveDate,
}

/// Record one attempt to reach the customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOutreach {
    pub expected_version: Option<u64>,
    /// Why they say they left. Required unless the outcome is `not_reached` (nobody to
    /// ask), in which case it may be empty.
    pub reason: String,
    /// The customer's words; required when the reason is `other`.
    pub free_text: String,
    pub outcome: String,
    pub method: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutreachCommand {
    OpenOutreach(OpenOutreach),
    RecordOutreach(RecordOutreach),
    EscalateOutreach(EscalateOutreach),
    EndOutreach(EndOutreach),
}

impl OutreachCommand {
    pub fn name(&self) -> &'static str {
        match self {
            OutreachCommand::OpenOutreach(_) => "open_outreach",
            OutreachCommand::RecordOutreach(_) => "record_outreach",
            OutreachCommand::EscalateOutreach(_) => "escalate_outreach",
            OutreachCommand::EndOutreach(_) => "end_outreach",
        }
    }

    pub fn expected_version(&self) -> Option<u64> {
        match self {
            OutreachCommand::OpenOutreach(c) => c.expected_version,
            OutreachCommand::RecordOutreach(c) => c.expected_version,
            OutreachCommand::EscalateOutreach(c) => c.expected_version,
            OutreachCommand::EndOutreach(c) => c.expected_version,
        }
    }
}

/// What happened to an outreach case; `type`-tagged, snake_case, stable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutreachEvent {
    OutreachOpened {
        case_id: OutreachCaseId,
        signal_id: String,
        customer: CustomerKey,
        home_store: StoreId,
        state: DefectorState,
        value_at_risk_minor: i64,
        clv_minor: i64,
        due_at: DateTime<Utc>,
        at: DateTime<Utc>,
        /// The episode's first day (absent in cases opened before episodes were kept).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        as_of: Option<NaiveDate>,
    },
    OutreachRecorded {
        reason: Option<DefectionReason>,
        free_text: Option<String>,
        outcome: OutreachOutcome,
        method: ContactMethod,
        at: DateTime<Utc>,
    },
    /// Churn scoring reported the customer defected while the at-risk case was open.
    OutreachEscalated {
        signal_id: String,
        state: DefectorState,
        value_at_risk_minor: i64,
        clv_minor: i64,
        /// The case's deadline from now on.
        due_at: DateTime<Utc>,
        as_of: NaiveDate,
        at: DateTime<Utc>,
    },
    /// Churn scoring reported the customer back: the episode is over.
    OutreachEnded {
        signal_id: String,
        returned: Returned,
        as_of: NaiveDate,
        at: DateTime<Utc>,
    },
}

impl OutreachEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            OutreachEvent::OutreachOpened { .. } => "churnguard.feedback.outreach_opened.v1",
            OutreachEvent::OutreachRecorded { .. } => "churnguard.feedback.outreach_recorded.v1",
            OutreachEvent::OutreachEscalated { .. } => "churnguard.feedback.outreach_escalated.v1",
            OutreachEvent::OutreachEnded { .. } => "churnguard.feedback.outreach_ended.v1",
        }
    }

    pub fn at(&self) -> DateTime<Utc> {
        match self {
            OutreachEvent::OutreachOpened { at, .. }
            | OutreachEvent::OutreachRecorded { at, .. }
            | OutreachEvent::OutreachEscalated { at, .. }
            | OutreachEvent::OutreachEnded { at, .. } => *at,
        }
    }
}

/// Why an outreach command produced no events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutreachError {
    #[error("invalid outreach command: {0}")]
    Invalid(#[from] Violations),
    #[error("version conflict: expected version {expected}, the case is at {current}")]
    VersionConflict { expected: u64, current: u64 },
    #[error("no such outreach case")]
    NotFound,
    #[error("{command} is not allowed while the case is {from_status}")]
    InvalidTransition {
        from_status: OutreachStatus,
        command: &'static str,
    },
    /// A case with this id was opened from another signal.
    #[error("an outreach case with this id already exists")]
    AlreadyExists,
}

/// One attempt to reach the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutreachAttempt {
    pub at: DateTime<Utc>,
    pub reason: Option<DefectionReason>,
    pub free_text: Option<String>,
    pub outcome: OutreachOutcome,
    pub method: ContactMethod,
}

/// An outreach case as its events left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutreachCase {
    pub id: OutreachCaseId,
    pub signal_id: String,
    /// Number of events applied.
    pub version: u64,
    pub status: OutreachStatus,
    pub customer: CustomerKey,
    pub home_store: StoreId,
    pub state: DefectorState,
    pub value_at_risk_minor: i64,
    pub clv_minor: i64,
    pub opened_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub attempts: Vec<OutreachAttempt>,
    /// The episode's first day: the assessment day of the signal that opened the case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<NaiveDate>,
    /// The day churn scoring reported the customer back, which ended the episode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returned_on: Option<NaiveDate>,
}

impl OutreachCase {
    /// The first day of the case's episode (for a case opened before episodes were kept,
    /// the UTC day it was opened).
    pub fn episode_start(&self) -> NaiveDate {
        self.since.unwrap_or_else(|| self.opened_at.date_naive())
    }

    /// Past its deadline with nobody reached yet: the store owes a call.
    pub fn is_overdue(&self, now: DateTime<Utc>) -> bool {
        self.status == OutreachStatus::Open
            && now > self.due_at
            && self
                .attempts
                .iter()
                .all(|a| a.outcome == OutreachOutcome::NotReached)
    }
}

/// Decides what `cmd` means for the case `state` (`None` if not opened yet) at `now`.
/// Order of checks: existence, expected version, status, input.
pub fn handle(
    state: Option<&OutreachCase>,
    cmd: OutreachCommand,
    now: DateTime<Utc>,
) -> Result<Vec<OutreachEvent>, OutreachError> {
    let name = cmd.name();
    match cmd {
        OutreachCommand::OpenOutreach(c) => open(state, c, now),
        OutreachCommand::RecordOutreach(c) => {
            let state = state.ok_or(OutreachError::NotFound)?;
            check_version(c.expected_version, state.version)?;
            if state.status != OutreachStatus::Open {
                return Err(OutreachError::InvalidTransition {
                    from_status: state.status,
                    command: name,
                });
            }
            let mut check = Check::default();
            let (outcome, method, reason, free_text) = attempt(&mut check, &c);
            check.finish()?;
            let (Some(outcome), Some(method)) = (outcome, method) else {
                return Err(internal());
            };
            Ok(vec![OutreachEvent::OutreachRecorded {
                reason,
                free_text: (!free_text.is_empty()).then_some(free_text),
                outcome,
                method,
                at: now,
            }])
        }
        OutreachCommand::EscalateOutreach(c) => {
            let state = state.ok_or(OutreachError::NotFound)?;
            check_version(c.expected_version, state.version)?;
            if state.status != OutreachStatus::Open {
                return Err(OutreachError::InvalidTransition {
                    from_status: state.status,
                    command: name,
                });
            }
            let mut check = Check::default();
            if let Err(e) = check_id(&c.signal_id) {
                check.fail("signal_id", e);
            }
            let to = DefectorState::parse(&c.state);
            if to.is_none() {
                check.fail("state", "must be at_risk or defected");
            }
            if c.value_at_risk_minor < 0 {
                check.fail("value_at_risk_minor", "must not be negative");
            }
            if c.clv_minor < 0 {
                check.fail("clv_minor", "must not be negative");
            }
            check.finish()?;
            let Some(to) = to else {
                return Err(internal());
            };
            if to.severity() <= state.state.severity() {
                // Already as urgent: a repeated or stale signal changes nothing.
                return Ok(vec![]);
            }
            Ok(vec![OutreachEvent::OutreachEscalated {
                signal_id: c.signal_id,
                state: to,
                value_at_risk_minor: c.value_at_risk_minor,
                clv_minor: c.clv_minor,
                due_at: c.due_at.min(state.due_at),
                as_of: c.as_of,
                at: now,
            }])
        }
        OutreachCommand::EndOutreach(c) => {
            let state = state.ok_or(OutreachError::NotFound)?;
            check_version(c.expected_version, state.version)?;
            let mut check = Check::default();
            if let Err(e) = check_id(&c.signal_id) {
                check.fail("signal_id", e);
            }
            let returned = Returned::parse(&c.state);
            if returned.is_none() {
                check.fail("state", "must be active or won_back");
            }
            check.finish()?;
            let Some(returned) = returned else {
                return Err(internal());
            };
            if state.returned_on.is_some() {
                // The episode is over already.
                return Ok(vec![]);
            }
            Ok(vec![OutreachEvent::OutreachEnded {
                signal_id: c.signal_id,
                returned,
                as_of: c.as_of,
                at: now,
            }])
        }
    }
}

/// The input of an attempt: outcome, method, reason (required once someone was reached)
/// and free text (required with the reason `other`).
fn attempt(
    check: &mut Check,
    c: &RecordOutreach,
) -> (
    Option<OutreachOutcome>,
    Option<ContactMethod>,
    Option<DefectionReason>,
    String,
) {
    let outcome = check.parse::<OutreachOutcome>("outcome", &c.outcome);
    let method = check.parse::<ContactMethod>("method", &c.method);
    let reason = if c.reason.trim().is_empty() {
        if outcome.is_some_and(|o| o != OutreachOutcome::NotReached) {
            check.fail(
                "reason",
                "is required once the customer was reached: ask why they left",
            );
        }
        None
    } else {
        check.parse::<DefectionReason>("reason", &c.reason)
    };
    let required = if reason == Some(DefectionReason::Other) {
        Required::Yes
    } else {
        Required::No
    };
    let free_text = check.text("free_text", &c.free_text, required, MAX_TEXT_CHARS);
    (outcome, method, reason, free_text)
}

/// The violations of an attempt's own fields, whatever the case: what [`handle`] reports
/// after its existence, version and status checks. For an adapter that has refused the
/// request for its own fields (a bad case id) and names every bad field at once. The
/// other commands come from churn signals, not callers: none here.
pub fn input_violations(cmd: &OutreachCommand) -> Vec<FieldViolation> {
    let mut check = Check::default();
    if let OutreachCommand::RecordOutreach(c) = cmd {
        attempt(&mut check, c);
    }
    check.into_violations()
}

fn open(
    state: Option<&OutreachCase>,
    c: OpenOutreach,
    now: DateTime<Utc>,
) -> Result<Vec<OutreachEvent>, OutreachError> {
    if let Some(existing) = state {
        return if existing.signal_id == c.signal_id {
            Ok(vec![])
        } else {
            Err(OutreachError::AlreadyExists)
        };
    }
    check_version(c.expected_version, 0)?;
    let mut check = Check::default();
    if let Err(e) = check_id(&c.signal_id) {
        check.fail("signal_id", e);
    }
    let customer = CustomerKey::parse(c.customer)
        .map_err(|e| check.fail("customer", e))
        .ok();
    let home_store = StoreId::parse(c.home_store)
        .map_err(|e| check.fail("home_store", e))
        .ok();
    let defector_state = DefectorState::parse(&c.state);
    if defector_state.is_none() {
        check.fail("state", "must be at_risk or defected");
    }
    if c.value_at_risk_minor < 0 {
        check.fail("value_at_risk_minor", "must not be negative");
    }
    if c.clv_minor < 0 {
        check.fail("clv_minor", "must not be negative");
    }
    if c.due_at <= now {
        check.fail("due_at", "must be after now");
    }
    check.finish()?;
    let (Some(customer), Some(home_store), Some(state)) = (customer, home_store, defector_state)
    else {
        return Err(internal());
    };
    Ok(vec![OutreachEvent::OutreachOpened {
        case_id: c.case_id,
        signal_id: c.signal_id,
        customer,
        home_store,
        state,
        value_at_risk_minor: c.value_at_risk_minor,
        clv_minor: c.clv_minor,
        due_at: c.due_at,
        at: now,
        as_of: c.as_of,
    }])
}

fn check_version(expected: Option<u64>, current: u64) -> Result<(), OutreachError> {
    match expected {
        Some(expected) if expected != current => {
            Err(OutreachError::VersionConflict { expected, current })
        }
        _ => Ok(()),
    }
}

/// Unreachable: every `None` above has recorded a violation.
fn internal() -> OutreachError {
    OutreachError::Invalid(Violations(vec![crate::error::FieldViolation::new(
        "",
        "internal: a value was missing after validation",
    )]))
}

/// Folds one event into the case; events that cannot follow the state are ignored (they
/// cannot come from [`handle`]).
pub fn apply(state: Option<OutreachCase>, event: &OutreachEvent) -> Option<OutreachCase> {
    match (state, event) {
        (
            None,
            OutreachEvent::OutreachOpened {
                case_id,
                signal_id,
                customer,
                home_store,
                state,
                value_at_risk_minor,
                clv_minor,
                due_at,
                at,
                as_of,
            },
        ) => Some(OutreachCase {
            id: case_id.clone(),
            signal_id: signal_id.clone(),
            version: 1,
            status: OutreachStatus::Open,
            customer: customer.clone(),
            home_store: home_store.clone(),
            state: *state,
            value_at_risk_minor: *value_at_risk_minor,
            clv_minor: *clv_minor,
            opened_at: *at,
            due_at: *due_at,
            attempts: Vec::new(),
            since: *as_of,
            returned_on: None,
        }),
        (
            None,
            OutreachEvent::OutreachRecorded { .. }
            | OutreachEvent::OutreachEscalated { .. }
            | OutreachEvent::OutreachEnded { .. },
        ) => None,
        (Some(s), OutreachEvent::OutreachOpened { .. }) => Some(s),
        (
            Some(mut s),
            OutreachEvent::OutreachEscalated {
                state,
                value_at_risk_minor,
                clv_minor,
                due_at,
                ..
            },
        ) => {
            s.state = *state;
            s.value_at_risk_minor = *value_at_risk_minor;
            s.clv_minor = *clv_minor;
            s.due_at = *due_at;
            s.version += 1;
            Some(s)
        }
        (Some(mut s), OutreachEvent::OutreachEnded { as_of, .. }) => {
            s.returned_on = Some(*as_of);
            s.status = OutreachStatus::Closed;
            s.version += 1;
            Some(s)
        }
        (
            Some(mut s),
            OutreachEvent::OutreachRecorded {
                reason,
                free_text,
                outcome,
                method,
                at,
            },
        ) => {
            s.attempts.push(OutreachAttempt {
                at: *at,
                reason: *reason,
                free_text: free_text.clone(),
                outcome: *outcome,
                method: *method,
            });
            if matches!(outcome, OutreachOutcome::WonBack | OutreachOutcome::Lost) {
                s.status = OutreachStatus::Closed;
            }
            s.version += 1;
            Some(s)
        }
    }
}

/// Replays a case's stream from the start.
pub fn replay<'a>(events: impl IntoIterator<Item = &'a OutreachEvent>) -> Option<OutreachCase> {
    events.into_iter().fold(None, apply)
}

/// What a churn signal means for a customer's outreach, given their cases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalOutcome {
    /// A new episode: open a case for it.
    Open,
    /// The episode's open at-risk case becomes a defection case ([`EscalateOutreach`]).
    Escalate(OutreachCaseId),
    /// The customer is back: the episode of this case ends ([`EndOutreach`]).
    End(OutreachCaseId),
    /// Nothing to do, and why.
    Skip(&'static str),
}

/// The customer's case of their latest episode: the one whose episode started last (ties:
/// opened last, then the greatest id).
pub fn latest_case(cases: &[OutreachCase]) -> Option<&OutreachCase> {
    cases.iter().max_by(|a, b| {
        (a.episode_start(), a.opened_at, &a.id).cmp(&(b.episode_start(), b.opened_at, &b.id))
    })
}

/// What a churn signal into `state` assessed on `as_of` means, given all of the
/// customer's cases. The rules, on the case of the latest episode ([`latest_case`]):
///
/// - Into `at_risk` or `defected`:
///   - no case yet: [`SignalOutcome::Open`];
///   - the latest episode ended (the customer came back on day `r`): a new episode if the
///     signal is from after `r`, else it belongs to an older episode (skip);
///   - the latest episode still runs and the signal is no more severe than its case
///     (at risk after at risk, anything after defected): skip: the episode has its case,
///     whether the store is still on it or has closed it;
///   - it runs, the signal is more severe (defected after at risk) and not older than the
///     episode: an open case is escalated; a closed one has ended the episode for the
///     store, and the defection opens a new case (a second conversation about leaving,
///     not a duplicate: after it, no signal is more severe);
/// - into `active` or `won_back`: the latest episode ends ([`SignalOutcome::End`]) unless
///   it has ended already or began after the signal's day;
/// - anything else: skip.
pub fn on_signal(cases: &[OutreachCase], state: &str, as_of: NaiveDate) -> SignalOutcome {
    let latest = latest_case(cases);
    if Returned::parse(state).is_some() {
        return match latest {
            None => SignalOutcome::Skip("no case to end"),
            Some(c) if c.returned_on.is_some() => {
                SignalOutcome::Skip("the latest episode has ended already")
            }
            Some(c) if as_of < c.episode_start() => {
                SignalOutcome::Skip("the return is older than the latest episode")
            }
            Some(c) => SignalOutcome::End(c.id.clone()),
        };
    }
    let Some(to) = DefectorState::parse(state) else {
        return SignalOutcome::Skip("not a move into at_risk, defected, active or won_back");
    };
    let Some(c) = latest else {
        return SignalOutcome::Open;
    };
    if let Some(back) = c.returned_on {
        return if as_of > back {
            SignalOutcome::Open
        } else {
            SignalOutcome::Skip("from an episode that has ended")
        };
    }
    if to.severity() <= c.state.severity() {
        return SignalOutcome::Skip("the episode has its case");
    }
    if as_of < c.episode_start() {
        return SignalOutcome::Skip("older than the episode's case");
    }
    match c.status {
        OutreachStatus::Open => SignalOutcome::Escalate(c.id.clone()),
        OutreachStatus::Closed => SignalOutcome::Open,
    }
}

// ---------------------------------------------------------------------------------------
// Read model: why customers leave, per store
// ---------------------------------------------------------------------------------------

/// What a row is about: a reason a defector gave, or the touchpoint a complaint named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Cause {
    Reason(DefectionReason),
    Touchpoint(Touchpoint),
}

/// Counts and money for one (store, cause) over some days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tally {
    /// Complaints filed naming this touchpoint.
    pub complaints: u64,
    /// Outreach cases in which the customer gave this reason (once per case).
    pub defectors: u64,
    /// Cases closed as lost, by the reason given when lost.
    pub lost: u64,
    /// Cases closed as won back.
    pub won_back: u64,
    /// Value at risk of the lost cases, in minor units.
    pub value_lost_minor: i64,
    /// Value at risk of the won-back cases, in minor units.
    pub value_saved_minor: i64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.complaints += other.complaints;
        self.defectors += other.defectors;
        self.lost += other.lost;
        self.won_back += other.won_back;
        self.value_lost_minor += other.value_lost_minor;
        self.value_saved_minor += other.value_saved_minor;
    }
}

/// One row of a [`DefectionReasons::between`] answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonRow {
    pub store: StoreId,
    pub cause: Cause,
    pub tally: Tally,
}

/// What one accepted event adds to the read model: a tally for one UTC day, store and
/// cause. The one definition of what counts, shared by [`DefectionReasons`] and the
/// service's Redis projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contribution {
    pub day: NaiveDate,
    pub store: StoreId,
    pub cause: Cause,
    pub tally: Tally,
}

/// What outreach event `event` adds, given the case as it stood before it (`None` before
/// the opening). A reason counts one defector the first time a case gives it; the
/// outcome that closes a case counts its value once, as lost or saved, under the reason
/// given with it. Openings and attempts without a reason add nothing.
pub fn outreach_contribution(
    before: Option<&OutreachCase>,
    event: &OutreachEvent,
) -> Option<Contribution> {
    let OutreachEvent::OutreachRecorded {
        reason: Some(reason),
        outcome,
        at,
        ..
    } = event
    else {
        return None;
    };
    let case = before?;
    let mut tally = Tally::default();
    if !case.attempts.iter().any(|a| a.reason == Some(*reason)) {
        tally.defectors = 1;
    }
    match outcome {
        OutreachOutcome::Lost => {
            tally.lost = 1;
            tally.value_lost_minor = case.value_at_risk_minor;
        }
        OutreachOutcome::WonBack => {
            tally.won_back = 1;
            tally.value_saved_minor = case.value_at_risk_minor;
        }
        OutreachOutcome::NotReached | OutreachOutcome::Reached => {}
    }
    (tally != Tally::default()).then(|| Contribution {
        day: at.date_naive(),
        store: case.home_store.clone(),
        cause: Cause::Reason(*reason),
        tally,
    })
}

/// What complaint event `event` adds: a filing counts one complaint for its touchpoint
/// and store, on the day it was filed. Nothing else counts: the touchpoint a customer
/// complained about is what they experienced.
pub fn complaint_contribution(event: &ComplaintEvent) -> Option<Contribution> {
    let ComplaintEvent::ComplaintFiled {
        store_id,
        touchpoint,
        at,
        ..
    } = event
    else {
        return None;
    };
    Some(Contribution {
        day: at.date_naive(),
        store: store_id.clone(),
        cause: Cause::Touchpoint(*touchpoint),
        tally: Tally {
            complaints: 1,
            ..Tally::default()
        },
    })
}

/// A pure fold over outreach and complaint events: per UTC day, store and cause, how many
/// complained, how many defectors gave which reason, and how much value was lost or saved.
///
/// Feed each stream's events in order with their version (1-based position in the
/// stream); an event at or below a stream's last seen version is a redelivery and is
/// skipped, so at-least-once delivery does not double count.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DefectionReasons {
    days: BTreeMap<(NaiveDate, StoreId, Cause), Tally>,
    cases: BTreeMap<OutreachCaseId, OutreachCase>,
    case_versions: BTreeMap<OutreachCaseId, u64>,
    complaint_versions: BTreeMap<ComplaintId, u64>,
}

impl DefectionReasons {
    pub fn new() -> Self {
        Self::default()
    }

    fn add(&mut self, c: Contribution) {
        self.days
            .entry((c.day, c.store, c.cause))
            .or_default()
            .add(&c.tally);
    }

    /// Adds event number `version` of outreach case `case`.
    pub fn add_outreach(&mut self, case: &OutreachCaseId, version: u64, event: &OutreachEvent) {
        let seen = self.case_versions.entry(case.clone()).or_default();
        if version <= *seen {
            return;
        }
        *seen = version;
        let before = self.cases.remove(case);
        if let Some(c) = outreach_contribution(before.as_ref(), event) {
            self.add(c);
        }
        if let Some(after) = apply(before, event) {
            self.cases.insert(case.clone(), after);
        }
    }

    /// Adds event number `version` of complaint `complaint`. Only filings count: the
    /// touchpoint a customer complained about is what they experienced.
    pub fn add_complaint(&mut self, complaint: &ComplaintId, version: u64, event: &ComplaintEvent) {
        let seen = self
            .complaint_versions
            .entry(complaint.clone())
            .or_default();
        if version <= *seen {
            return;
        }
        *seen = version;
        if let Some(c) = complaint_contribution(event) {
            self.add(c);
        }
    }

    /// Totals per (store, cause) over the UTC days `from ..= to`, ordered by store, then
    /// by value lost (largest first), then by cause.
    pub fn between(&self, from: NaiveDate, to: NaiveDate) -> Vec<ReasonRow> {
        let mut totals: BTreeMap<(&StoreId, Cause), Tally> = BTreeMap::new();
        for ((day, store, cause), t) in &self.days {
            if *day >= from && *day <= to {
                totals.entry((store, *cause)).or_default().add(t);
            }
        }
        let mut rows: Vec<ReasonRow> = totals
            .into_iter()
            .map(|((store, cause), tally)| ReasonRow {
                store: store.clone(),
                cause,
                tally,
            })
            .collect();
        rows.sort_by(|a, b| {
            a.store
                .cmp(&b.store)
                .then(b.tally.value_lost_minor.cmp(&a.tally.value_lost_minor))
                .then(a.cause.cmp(&b.cause))
        });
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn t(hours: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z")
            .expect("fixed time")
            .with_timezone(&Utc)
            + TimeDelta::hours(hours)
    }

    fn opening(case: &str, signal: &str, store: &str, value: i64) -> OpenOutreach {
        OpenOutreach {
            expected_version: None,
            case_id: OutreachCaseId::parse(case).expect("id"),
            signal_id: signal.into(),
            customer: "cust-1".into(),
            home_store: store.into(),
            state: "defected".into(),
            value_at_risk_minor: value,
            clv_minor: value * 2,
            due_at: t(48),
            as_of: None,
        }
    }

    fn record(reason: &str, free_text: &str, outcome: &str) -> OutreachCommand {
        OutreachCommand::RecordOutreach(RecordOutreach {
            expected_version: None,
            reason: reason.into(),
            free_text: free_text.into(),
            outcome: outcome.into(),
            method: "phone".into(),
        })
    }

    fn run(steps: Vec<(i64, OutreachCommand)>) -> (Option<OutreachCase>, Vec<OutreachEvent>) {
        let mut state = None;
        let mut log = Vec::new();
        for (at, cmd) in steps {
            let events = handle(state.as_ref(), cmd, t(at)).expect("accepted");
            for e in &events {
                state = apply(state, e);
            }
            log.extend(events);
        }
        (state, log)
    }

    fn fields(r: Result<Vec<OutreachEvent>, OutreachError>) -> Vec<String> {
        match r {
            Err(OutreachError::Invalid(v)) => v.fields().map(str::to_owned).collect(),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_case_opens_records_and_replays() {
        let (state, log) = run(vec![
            (
                0,
                OutreachCommand::OpenOutreach(opening("o-1", "sig-1", "store-1", 50_000)),
            ),
            (2, record("", "", "not_reached")),
            (5, record("price", "", "reached")),
            (9, record("other", "the new manager", "lost")),
        ]);
        let s = state.as_ref().expect("opened");
        assert_eq!(s.version, 4);
        assert_eq!(s.status, OutreachStatus::Closed);
        assert_eq!(s.attempts.len(), 3);
        assert_eq!(s.attempts[0].reason, None);
        assert_eq!(replay(&log), state);
        let json = serde_json::to_string(&log).expect("json");
        assert!(json.contains(r#""type":"outreach_recorded""#), "{json}");
        let back: Vec<OutreachEvent> = serde_json::from_str(&json).expect("decode");
        assert_eq!(replay(&back), state);
        // Closed: nothing more to record.
        assert_eq!(
            handle(state.as_ref(), record("price", "", "reached"), t(10)),
            Err(OutreachError::InvalidTransition {
                from_status: OutreachStatus::Closed,
                command: "record_outreach"
            })
        );
    }

    #[test]
    fn opening_is_idempotent_per_signal() {
        let (state, _) = run(vec![(
            0,
            OutreachCommand::OpenOutreach(opening("o-1", "sig-1", "s1", 1)),
        )]);
        let again = OutreachCommand::OpenOutreach(opening("o-1", "sig-1", "s1", 1));
        assert_eq!(handle(state.as_ref(), again, t(1)), Ok(vec![]));
        let other = OutreachCommand::OpenOutreach(opening("o-1", "sig-2", "s1", 1));
        assert_eq!(
            handle(state.as_ref(), other, t(1)),
            Err(OutreachError::AlreadyExists)
        );
        assert_eq!(
            handle(None, record("price", "", "reached"), t(1)),
            Err(OutreachError::NotFound)
        );
    }

    #[test]
    fn bad_input_names_its_field_and_emits_nothing() {
        let bad = OpenOutreach {
            signal_id: "".into(),
            customer: "a b".into(),
            home_store: "".into(),
            state: "active".into(),
            value_at_risk_minor: -1,
            clv_minor: -1,
            due_at: t(0),
            ..opening("o-1", "sig-1", "s1", 1)
        };
        assert_eq!(
            fields(handle(None, OutreachCommand::OpenOutreach(bad), t(0))),
            [
                "signal_id",
                "customer",
                "home_store",
                "state",
                "value_at_risk_minor",
                "clv_minor",
                "due_at"
            ]
        );
        let (state, _) = run(vec![(
            0,
            OutreachCommand::OpenOutreach(opening("o-1", "sig-1", "s1", 1)),
        )]);
        let s = state.as_ref();
        assert_eq!(
            fields(handle(s, record("", "", "reached"), t(1))),
            ["reason"]
        );
        assert_eq!(
            fields(handle(s, record("other", " ", "lost"), t(1))),
            ["free_text"]
        );
        assert_eq!(
            fields(handle(s, record("weather", "", "maybe"), t(1))),
            ["outcome", "reason"]
        );
        let bad_method = OutreachCommand::RecordOutreach(RecordOutreach {
            expected_version: None,
            reason: "price".into(),
            free_text: String::new(),
            outcome: "reached".into(),
            method: "carrier_pigeon".into(),
        });
        assert_eq!(fields(handle(s, bad_method, t(1))), ["method"]);
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).expect("day")
    }

    /// A case opened from signal `signal` into `state` assessed on day `on`.
    fn case_from(signal: &str, state: &str, on: u32, opened_hours: i64) -> OutreachCase {
        let open = OpenOutreach {
            state: state.into(),
            as_of: Some(day(on)),
            ..opening(&format!("o-{signal}"), signal, "s1", 1_000)
        };
        let events =
            handle(None, OutreachCommand::OpenOutreach(open), t(opened_hours)).expect("opens");
        replay(&events).expect("a case")
    }

    fn step(case: OutreachCase, cmd: OutreachCommand, at: i64) -> OutreachCase {
        let events = handle(Some(&case), cmd, t(at)).expect("accepted");
        events.iter().fold(Some(case), apply).expect("still there")
    }

    fn end(signal: &str, state: &str, on: u32) -> OutreachCommand {
        OutreachCommand::EndOutreach(EndOutreach {
            expected_version: None,
            signal_id: signal.into(),
            state: state.into(),
            as_of: day(on),
        })
    }

    fn escalate(signal: &str, on: u32, due_hours: i64) -> OutreachCommand {
        OutreachCommand::EscalateOutreach(EscalateOutreach {
            expected_version: None,
            signal_id: signal.into(),
            state: "defected".into(),
            value_at_risk_minor: 4_000,
            clv_minor: 9_000,
            due_at: t(due_hours),
            as_of: day(on),
        })
    }

    #[test]
    fn a_re_emitted_signal_finds_its_episode_and_a_new_episode_opens_a_new_case() {
        use SignalOutcome::{End, Escalate, Open, Skip};
        assert_eq!(on_signal(&[], "at_risk", day(10)), Open);
        assert!(matches!(on_signal(&[], "active", day(10)), Skip(_)));
        assert!(matches!(on_signal(&[], "gone", day(10)), Skip(_)));

        let first = case_from("sig-1", "at_risk", 10, 0);
        let id = first.id.clone();
        // Re-emitted (another id: another day) or repeated: the episode has its case.
        for d in [9, 10, 12] {
            assert!(matches!(
                on_signal(std::slice::from_ref(&first), "at_risk", day(d)),
                Skip(_)
            ));
        }
        // A defection during the episode makes the open case more urgent...
        assert_eq!(
            on_signal(std::slice::from_ref(&first), "defected", day(12)),
            Escalate(id.clone())
        );
        // ...unless it is older than the episode.
        assert!(matches!(
            on_signal(std::slice::from_ref(&first), "defected", day(9)),
            Skip(_)
        ));
        let escalated = step(first.clone(), escalate("sig-2", 12, 3), 1);
        assert_eq!(
            (escalated.state, escalated.version, escalated.due_at),
            (DefectorState::Defected, 2, t(3))
        );
        assert_eq!(
            (escalated.value_at_risk_minor, escalated.clv_minor),
            (4_000, 9_000)
        );
        // The deadline only ever moves up; a second defection changes nothing.
        let later = handle(Some(&first), escalate("sig-2", 12, 100), t(1)).expect("ok");
        assert!(matches!(
            later.as_slice(),
            [OutreachEvent::OutreachEscalated { due_at, .. }] if *due_at == first.due_at
        ));
        assert_eq!(
            handle(Some(&escalated), escalate("sig-3", 13, 3), t(2)),
            Ok(vec![])
        );
        for s in ["at_risk", "defected"] {
            assert!(matches!(
                on_signal(std::slice::from_ref(&escalated), s, day(13)),
                Skip(_)
            ));
        }

        // The customer comes back: the episode ends and the case closes.
        assert!(matches!(
            on_signal(std::slice::from_ref(&escalated), "won_back", day(9)),
            Skip(_)
        ));
        assert_eq!(
            on_signal(std::slice::from_ref(&escalated), "won_back", day(14)),
            End(id.clone())
        );
        let ended = step(escalated, end("sig-4", "won_back", 14), 5);
        assert_eq!(
            (ended.status, ended.returned_on, ended.version),
            (OutreachStatus::Closed, Some(day(14)), 3)
        );
        assert_eq!(
            handle(Some(&ended), end("sig-4", "won_back", 14), t(6)),
            Ok(vec![])
        );
        assert!(matches!(
            on_signal(std::slice::from_ref(&ended), "active", day(15)),
            Skip(_)
        ));
        // Signals of the ended episode, re-emitted, open nothing; a later move does.
        for (s, d) in [("at_risk", 10), ("defected", 12), ("at_risk", 14)] {
            assert!(matches!(
                on_signal(std::slice::from_ref(&ended), s, day(d)),
                Skip(_)
            ));
        }
        assert_eq!(
            on_signal(std::slice::from_ref(&ended), "at_risk", day(20)),
            Open
        );
        // Then the new episode's case is the latest, whatever order the cases come in.
        let second = case_from("sig-5", "at_risk", 20, 0);
        let both = [second.clone(), ended.clone()];
        assert_eq!(latest_case(&both).map(|c| &c.id), Some(&second.id));
        assert!(matches!(on_signal(&both, "at_risk", day(21)), Skip(_)));
        assert!(matches!(on_signal(&both, "active", day(16)), Skip(_)));
        assert_eq!(on_signal(&both, "active", day(22)), End(second.id.clone()));
    }

    #[test]
    fn a_defection_after_the_store_closed_the_at_risk_case_opens_a_defection_case() {
        let first = case_from("sig-1", "at_risk", 10, 0);
        let closed = step(first, record("price", "", "lost"), 2);
        assert_eq!(closed.status, OutreachStatus::Closed);
        // The same episode at the same severity: nothing, closed or not.
        assert!(matches!(
            on_signal(std::slice::from_ref(&closed), "at_risk", day(11)),
            SignalOutcome::Skip(_)
        ));
        assert_eq!(
            on_signal(std::slice::from_ref(&closed), "defected", day(12)),
            SignalOutcome::Open
        );
        // A closed case is not escalated; it still records the customer's return.
        assert_eq!(
            handle(Some(&closed), escalate("sig-2", 12, 3), t(3)),
            Err(OutreachError::InvalidTransition {
                from_status: OutreachStatus::Closed,
                command: "escalate_outreach"
            })
        );
        let returned = step(closed, end("sig-3", "active", 13), 4);
        assert_eq!(returned.returned_on, Some(day(13)));
        // The defection case is the episode's latest: re-emissions of either open nothing.
        let defection = case_from("sig-2", "defected", 12, 3);
        let cases = [
            defection.clone(),
            step(
                case_from("sig-1", "at_risk", 10, 0),
                record("price", "", "lost"),
                2,
            ),
        ];
        for (s, d) in [("at_risk", 10), ("defected", 12), ("defected", 13)] {
            assert!(matches!(
                on_signal(&cases, s, day(d)),
                SignalOutcome::Skip(_)
            ));
        }
    }

    #[test]
    fn escalations_and_endings_name_their_bad_fields() {
        let case = case_from("sig-1", "at_risk", 10, 0);
        let bad = OutreachCommand::EscalateOutreach(EscalateOutreach {
            expected_version: None,
            signal_id: String::new(),
            state: "gone".into(),
            value_at_risk_minor: -1,
            clv_minor: -1,
            due_at: t(1),
            as_of: day(10),
        });
        assert_eq!(
            fields(handle(Some(&case), bad, t(0))),
            ["signal_id", "state", "value_at_risk_minor", "clv_minor"]
        );
        assert_eq!(
            fields(handle(Some(&case), end("", "at_risk", 10), t(0))),
            ["signal_id", "state"]
        );
        assert_eq!(
            handle(None, end("sig-2", "active", 10), t(0)),
            Err(OutreachError::NotFound)
        );
        // Old cases (no episode day) count from the day they were opened, and their
        // stored form still reads.
        let mut old = serde_json::to_value(&case).expect("json");
        old.as_object_mut().expect("object").remove("since");
        let old: OutreachCase = serde_json::from_value(old).expect("reads");
        assert_eq!(old.episode_start(), t(0).date_naive());
    }

    #[test]
    fn version_conflicts_are_refused() {
        let (state, _) = run(vec![(
            0,
            OutreachCommand::OpenOutreach(opening("o-1", "sig-1", "s1", 1)),
        )]);
        let stale = OutreachCommand::RecordOutreach(RecordOutreach {
            expected_version: Some(0),
            reason: "price".into(),
            free_text: String::new(),
            outcome: "reached".into(),
            method: "phone".into(),
        });
        assert_eq!(
            handle(state.as_ref(), stale, t(1)),
            Err(OutreachError::VersionConflict {
                expected: 0,
                current: 1
            })
        );
    }

    #[test]
    fn overdue_until_someone_is_reached() {
        let (state, _) = run(vec![
            (
                0,
                OutreachCommand::OpenOutreach(opening("o-1", "sig-1", "s1", 1)),
            ),
            (1, record("", "", "not_reached")),
        ]);
        let s = state.expect("opened");
        assert!(!s.is_overdue(t(47)));
        assert!(s.is_overdue(t(49)));
        let reached = handle(Some(&s), record("staff", "", "reached"), t(50)).expect("ok");
        let s = reached.iter().fold(Some(s), apply).expect("still there");
        assert!(!s.is_overdue(t(51)));
    }

    #[test]
    fn defection_reasons_sum_per_store_and_cause_over_a_period() {
        let mut model = DefectionReasons::new();
        let feed = |model: &mut DefectionReasons, case: &str, log: &[OutreachEvent]| {
            let id = OutreachCaseId::parse(case).expect("id");
            for (i, e) in log.iter().enumerate() {
                model.add_outreach(&id, i as u64 + 1, e);
            }
        };
        let (_, lost) = run(vec![
            (
                0,
                OutreachCommand::OpenOutreach(opening("o-1", "sig-1", "s1", 30_000)),
            ),
            (1, record("price", "", "reached")),
            (2, record("price", "", "lost")),
        ]);
        let (_, won) = run(vec![
            (
                0,
                OutreachCommand::OpenOutreach(opening("o-2", "sig-2", "s1", 10_000)),
            ),
            (1, record("staff", "", "won_back")),
        ]);
        let (_, later) = run(vec![
            (
                24 * 10,
                OutreachCommand::OpenOutreach(OpenOutreach {
                    due_at: t(24 * 12),
                    ..opening("o-3", "sig-3", "s1", 5_000)
                }),
            ),
            (24 * 10 + 1, record("price", "", "lost")),
        ]);
        feed(&mut model, "o-1", &lost);
        feed(&mut model, "o-1", &lost); // redelivered: ignored
        feed(&mut model, "o-2", &won);
        feed(&mut model, "o-3", &later);

        let complaint = crate::feedback::complaint::handle(
            None,
            crate::feedback::complaint::ComplaintCommand::FileComplaint(
                crate::feedback::complaint::FileComplaint {
                    expected_version: None,
                    complaint_id: ComplaintId::parse("c-1").expect("id"),
                    idempotency_key: "k".into(),
                    customer: crate::swipe::CustomerInput::CustomerId("cust-1".into()),
                    contact: crate::feedback::complaint::SealedContact::new(vec![1]),
                    store_id: "s1".into(),
                    channel: "web".into(),
                    touchpoint: "staff".into(),
                    severity: "minor".into(),
                    description: "ignored at the counter".into(),
                    occurred_at: t(0),
                },
            ),
            t(1),
            &crate::feedback::complaint::Context::default(),
        )
        .expect("filed");
        let cid = ComplaintId::parse("c-1").expect("id");
        model.add_complaint(&cid, 1, &complaint[0]);

        let day = t(0).date_naive();
        let rows = model.between(day, day);
        let got: Vec<(Cause, Tally)> = rows.iter().map(|r| (r.cause, r.tally)).collect();
        assert_eq!(
            got,
            vec![
                (
                    Cause::Reason(DefectionReason::Price),
                    Tally {
                        defectors: 1,
                        lost: 1,
                        value_lost_minor: 30_000,
                        ..Tally::default()
                    }
                ),
                (
                    Cause::Reason(DefectionReason::Staff),
                    Tally {
                        defectors: 1,
                        won_back: 1,
                        value_saved_minor: 10_000,
                        ..Tally::default()
                    }
                ),
                (
                    Cause::Touchpoint(Touchpoint::Staff),
                    Tally {
                        complaints: 1,
                        ..Tally::default()
                    }
                ),
            ]
        );
        let all = model.between(day, day + chrono::Days::new(30));
        let price = all
            .iter()
            .find(|r| r.cause == Cause::Reason(DefectionReason::Price))
            .expect("price row");
        assert_eq!(
            (price.tally.defectors, price.tally.value_lost_minor),
            (2, 35_000)
        );
        assert!(all.iter().all(|r| r.store.as_str() == "s1"));
    }
}
