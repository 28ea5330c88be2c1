//! Test helpers of the outreach aggregate: commands as the tests write them, and steps.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

use super::*;
use crate::aggregate::Aggregate;
use crate::ids::OutreachCaseId;

/// [`Aggregate::handle`] of a case (outreach decisions take no context).
pub(super) fn handle(
    state: Option<&OutreachCase>,
    cmd: OutreachCommand,
    now: DateTime<Utc>,
) -> Result<Vec<OutreachEvent>, OutreachError> {
    OutreachCase::handle(state, cmd, now, &())
}

pub(super) fn t(hours: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z")
        .expect("fixed time")
        .with_timezone(&Utc)
        + TimeDelta::hours(hours)
}

pub(super) fn opening(case: &str, signal: &str, store: &str, value: i64) -> OpenOutreach {
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

pub(super) fn record(reason: &str, free_text: &str, outcome: &str) -> OutreachCommand {
    OutreachCommand::RecordOutreach(RecordOutreach {
        expected_version: None,
        reason: reason.into(),
        free_text: free_text.into(),
        outcome: outcome.into(),
        method: "phone".into(),
    })
}

pub(super) fn run(
    steps: Vec<(i64, OutreachCommand)>,
) -> (Option<OutreachCase>, Vec<OutreachEvent>) {
    let mut state = None;
    let mut log = Vec::new();
    for (at, cmd) in steps {
        let events = handle(state.as_ref(), cmd, t(at)).expect("accepted");
        for e in &events {
            state = OutreachCase::apply(state, e);
        }
        log.extend(events);
    }
    (state, log)
}

pub(super) fn fields(r: Result<Vec<OutreachEvent>, OutreachError>) -> Vec<String> {
    match r {
        Err(OutreachError::Invalid(v)) => v.fields().map(str::to_owned).collect(),
        other => panic!("expected Invalid, got {other:?}"),
    }
}
pub(super) fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).expect("day")
}

/// A case opened from signal `signal` into `state` assessed on day `on`.
pub(super) fn case_from(signal: &str, state: &str, on: u32, opened_hours: i64) -> OutreachCase {
    let open = OpenOutreach {
        state: state.into(),
        as_of: Some(day(on)),
        ..opening(&format!("o-{signal}"), signal, "s1", 1_000)
    };
    let events = handle(None, OutreachCommand::OpenOutreach(open), t(opened_hours)).expect("opens");
    OutreachCase::replay(&events).expect("a case")
}

pub(super) fn step(case: OutreachCase, cmd: OutreachCommand, at: i64) -> OutreachCase {
    let events = handle(Some(&case), cmd, t(at)).expect("accepted");
    events
        .iter()
        .fold(Some(case), OutreachCase::apply)
        .expect("still there")
}

pub(super) fn end(signal: &str, state: &str, on: u32) -> OutreachCommand {
    OutreachCommand::EndOutreach(EndOutreach {
        expected_version: None,
        signal_id: signal.into(),
        state: state.into(),
        as_of: day(on),
    })
}

pub(super) fn escalate(signal: &str, on: u32, due_hours: i64) -> OutreachCommand {
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
