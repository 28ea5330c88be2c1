//! Defector outreach: when churn scoring says a customer is slipping away (at risk) or
//! gone (defected), someone at their home store reaches out, asks why, and records what
//! they said and what came of it. Defectors are specific about why they left; the reasons,
//! summed per store with the value that walked out, show the chain what to fix.
//!
//! Same shape as the complaint aggregate: [`handle`] decides (pure, time passed in),
//! [`apply`] folds, expected versions guard concurrent writers. [`DefectionReasons`] is the
//! read model fed by both outreach and complaint events.

use std::collections::BTreeMap;
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
