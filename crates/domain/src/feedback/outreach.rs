//! Defector outreach: when churn scoring says a customer is slipping away (at risk) or
//! gone (defected), someone at their home store reaches out, asks why, and records what
//! they said and what came of it. Defectors are specific about why they left; the reasons,
//! summed per store with the value that walked out, show the chain what to fix.
//!
//! Same shape as the complaint aggregate: [`handle`] decides (pure, time passed in),
//! [`apply`] folds, expected versions guard concurrent writers. [`DefectionReasons`] is the
//! read model fed by both outreach and complaint events.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::complaint::{Check, ComplaintEvent, MAX_TEXT_CHARS, Required};
use super::vocab::{ContactMethod, DefectionReason, OutreachOutcome, Touchpoint};
use crate::error::Violations;
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

    fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "at_risk" => Some(DefectorState::AtRisk),
            "defected" => Some(DefectorState::Defected),
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
}

impl OutreachCommand {
    pub fn name(&self) -> &'static str {
        match self {
            OutreachCommand::OpenOutreach(_) => "open_outreach",
            OutreachCommand::RecordOutreach(_) => "record_outreach",
        }
    }

    pub fn expected_version(&self) -> Option<u64> {
        match self {
            OutreachCommand::OpenOutreach(c) => c.expected_version,
            OutreachCommand::RecordOutreach(c) => c.expected_version,
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
    },
    OutreachRecorded {
        reason: Option<DefectionReason>,
        free_text: Option<String>,
        outcome: OutreachOutcome,
        method: ContactMethod,
        at: DateTime<Utc>,
    },
}

impl OutreachEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            OutreachEvent::OutreachOpened { .. } => "churnguard.feedback.outreach_opened.v1",
            OutreachEvent::OutreachRecorded { .. } => "churnguard.feedback.outreach_recorded.v1",
        }
    }

    pub fn at(&self) -> DateTime<Utc> {
        match self {
            OutreachEvent::OutreachOpened { at, .. }
            | OutreachEvent::OutreachRecorded { at, .. } => *at,
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
}

impl OutreachCase {
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
    }
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
        }),
        (None, OutreachEvent::OutreachRecorded { .. }) => None,
        (Some(s), OutreachEvent::OutreachOpened { .. }) => Some(s),
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

#[derive(Debug, Clone, PartialEq, Eq)]
struct CaseFacts {
    store: StoreId,
    value_at_risk_minor: i64,
    reasons_counted: BTreeSet<DefectionReason>,
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
    cases: BTreeMap<OutreachCaseId, CaseFacts>,
    case_versions: BTreeMap<OutreachCaseId, u64>,
    complaint_versions: BTreeMap<ComplaintId, u64>,
}

impl DefectionReasons {
    pub fn new() -> Self {
        Self::default()
    }

    fn tally(&mut self, at: DateTime<Utc>, store: &StoreId, cause: Cause) -> &mut Tally {
        self.days
            .entry((at.date_naive(), store.clone(), cause))
            .or_default()
    }

    /// Adds event number `version` of outreach case `case`.
    pub fn add_outreach(&mut self, case: &OutreachCaseId, version: u64, event: &OutreachEvent) {
        let seen = self.case_versions.entry(case.clone()).or_default();
        if version <= *seen {
            return;
        }
        *seen = version;
        match event {
            OutreachEvent::OutreachOpened {
                home_store,
                value_at_risk_minor,
                ..
            } => {
                self.cases.insert(
                    case.clone(),
                    CaseFacts {
                        store: home_store.clone(),
                        value_at_risk_minor: *value_at_risk_minor,
                        reasons_counted: BTreeSet::new(),
                    },
                );
            }
            OutreachEvent::OutreachRecorded {
                reason,
                outcome,
                at,
                ..
            } => {
                let Some(facts) = self.cases.get_mut(case) else {
                    return;
                };
                let Some(reason) = *reason else {
                    return;
                };
                let first_time = facts.reasons_counted.insert(reason);
                let store = facts.store.clone();
                let value = facts.value_at_risk_minor;
                let t = self.tally(*at, &store, Cause::Reason(reason));
                if first_time {
                    t.defectors += 1;
                }
                // The case closes with this outcome, so it counts once.
                match outcome {
                    OutreachOutcome::Lost => {
                        t.lost += 1;
                        t.value_lost_minor += value;
                    }
                    OutreachOutcome::WonBack => {
                        t.won_back += 1;
                        t.value_saved_minor += value;
                    }
                    OutreachOutcome::NotReached | OutreachOutcome::Reached => {}
                }
            }
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
        if let ComplaintEvent::ComplaintFiled {
            store_id,
            touchpoint,
            at,
            ..
        } = event
        {
            self.tally(*at, store_id, Cause::Touchpoint(*touchpoint))
                .complaints += 1;
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
