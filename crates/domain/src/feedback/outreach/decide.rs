//! Deciding: what each command means for an outreach case, one function per command.
//!
//! [`Aggregate::handle`](crate::aggregate::Aggregate::handle) checks existence and the
//! expected version; then [`decide`] checks the status (recording an attempt or
//! escalating needs an open case; ending an episode is taken in any status) and the
//! command's own function checks its input, reporting every bad field at once.

use chrono::{DateTime, Utc};

use super::case::{DefectorState, OutreachCase, OutreachStatus, Returned};
use super::commands::{
    EndOutreach, EscalateOutreach, OpenOutreach, OutreachCommand, RecordOutreach,
};
use super::events::OutreachEvent;
use crate::aggregate::Refusal;
use crate::error::{FieldViolation, Violations};
use crate::feedback::check::{Check, MAX_TEXT_CHARS, Required, missing_after_check};
use crate::feedback::vocab::{ContactMethod, DefectionReason, OutreachOutcome};
use crate::ids::{CustomerKey, StoreId, check_id};

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

impl From<Refusal> for OutreachError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::NotFound => OutreachError::NotFound,
            Refusal::AlreadyExists => OutreachError::AlreadyExists,
            Refusal::VersionConflict { expected, current } => {
                OutreachError::VersionConflict { expected, current }
            }
        }
    }
}

/// Decides a command on no case: only an opening creates one.
pub(super) fn create(
    command: OutreachCommand,
    now: DateTime<Utc>,
) -> Result<Vec<OutreachEvent>, OutreachError> {
    match command {
        OutreachCommand::OpenOutreach(c) => open(c, now),
        _ => Err(OutreachError::NotFound),
    }
}

/// Decides a command on an existing case: the status first, then the command's own
/// function.
pub(super) fn decide(
    state: &OutreachCase,
    command: OutreachCommand,
    now: DateTime<Utc>,
) -> Result<Vec<OutreachEvent>, OutreachError> {
    let needs_open = matches!(
        command,
        OutreachCommand::RecordOutreach(_) | OutreachCommand::EscalateOutreach(_)
    );
    if needs_open && state.status != OutreachStatus::Open {
        return Err(OutreachError::InvalidTransition {
            from_status: state.status,
            command: command.name(),
        });
    }
    match command {
        OutreachCommand::OpenOutreach(_) => Err(OutreachError::AlreadyExists),
        OutreachCommand::RecordOutreach(c) => record(&c, now),
        OutreachCommand::EscalateOutreach(c) => escalate(state, c, now),
        OutreachCommand::EndOutreach(c) => end(state, c, now),
    }
}

/// Opens a case from a churn signal, due at the deadline the service computed.
fn open(c: OpenOutreach, now: DateTime<Utc>) -> Result<Vec<OutreachEvent>, OutreachError> {
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

/// Records one attempt to reach the customer.
fn record(c: &RecordOutreach, now: DateTime<Utc>) -> Result<Vec<OutreachEvent>, OutreachError> {
    let mut check = Check::default();
    let (outcome, method, reason, free_text) = attempt(&mut check, c);
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

/// Makes an open at-risk case a defection case; a signal no more severe than the case
/// changes nothing.
fn escalate(
    state: &OutreachCase,
    c: EscalateOutreach,
    now: DateTime<Utc>,
) -> Result<Vec<OutreachEvent>, OutreachError> {
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

/// Ends the case's episode: the customer is back. Once is enough.
fn end(
    state: &OutreachCase,
    c: EndOutreach,
    now: DateTime<Utc>,
) -> Result<Vec<OutreachEvent>, OutreachError> {
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

/// The violations of an attempt's own fields, whatever the case: what
/// [`Aggregate::handle`](crate::aggregate::Aggregate::handle) reports
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

fn internal() -> OutreachError {
    OutreachError::Invalid(missing_after_check())
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;

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
}
