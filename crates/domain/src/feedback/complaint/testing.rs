//! Test helpers of the complaint aggregate: commands as the tests write them, and the
//! given / when steps.

use chrono::{DateTime, TimeDelta, Utc};

use super::*;
use crate::aggregate::Aggregate;
use crate::ids::ComplaintId;
use crate::swipe::CustomerInput;

pub(super) fn t(minutes: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z")
        .expect("fixed time")
        .with_timezone(&Utc)
        + TimeDelta::minutes(minutes)
}

pub(super) fn ctx() -> Context {
    Context::default()
}

pub(super) fn filing(severity: &str) -> FileComplaint {
    FileComplaint {
        expected_version: None,
        complaint_id: ComplaintId::parse("c-1").expect("id"),
        idempotency_key: "key-1".into(),
        customer: CustomerInput::CustomerId("cust-1".into()),
        contact: SealedContact::new(vec![1, 2, 3, 4]),
        store_id: "store-1".into(),
        channel: "till".into(),
        touchpoint: "staff".into(),
        severity: severity.into(),
        description: "Rude at the till, refused the coupon".into(),
        occurred_at: t(-60),
    }
}

/// Given `history` was handled in order (each at its own time), the state and every
/// event so far. Panics (in tests only) if a step is refused.
pub(super) fn given(
    history: Vec<(i64, ComplaintCommand)>,
) -> (Option<Complaint>, Vec<ComplaintEvent>) {
    let mut state = None;
    let mut log = Vec::new();
    for (at, cmd) in history {
        let events =
            Complaint::handle(state.as_ref(), cmd, t(at), &ctx()).expect("given step accepted");
        for e in &events {
            state = Complaint::apply(state, e);
        }
        log.extend(events);
    }
    (state, log)
}

pub(super) fn when(
    state: &Option<Complaint>,
    at: i64,
    cmd: ComplaintCommand,
) -> Result<Vec<ComplaintEvent>, ComplaintError> {
    Complaint::handle(state.as_ref(), cmd, t(at), &ctx())
}

pub(super) fn file(severity: &str) -> ComplaintCommand {
    ComplaintCommand::FileComplaint(filing(severity))
}
pub(super) fn ack(method: &str) -> ComplaintCommand {
    ComplaintCommand::AcknowledgeComplaint(AcknowledgeComplaint {
        expected_version: None,
        method: method.into(),
        note: "called, apologised".into(),
    })
}
pub(super) fn update(note: &str, from_customer: bool) -> ComplaintCommand {
    ComplaintCommand::AddComplaintUpdate(AddComplaintUpdate {
        expected_version: None,
        note: note.into(),
        from_customer,
    })
}
pub(super) fn wait() -> ComplaintCommand {
    ComplaintCommand::WaitOnCustomer(WaitOnCustomer {
        expected_version: None,
        note: "asked for the receipt".into(),
    })
}
pub(super) fn escalate(reason: &str) -> ComplaintCommand {
    ComplaintCommand::EscalateComplaint(EscalateComplaint {
        expected_version: None,
        reason: reason.into(),
    })
}
pub(super) fn resolve(remedies: &[&str]) -> ComplaintCommand {
    ComplaintCommand::ResolveComplaint(ResolveComplaint {
        expected_version: None,
        remedies: remedies.iter().map(|r| r.to_string()).collect(),
        summary: "refunded the coupon value and apologised in person".into(),
    })
}
pub(super) fn reopen() -> ComplaintCommand {
    ComplaintCommand::ReopenComplaint(ReopenComplaint {
        expected_version: None,
        reason: "refund never arrived".into(),
    })
}
pub(super) fn good_survey() -> SatisfactionInput {
    SatisfactionInput {
        score: 4,
        ownership: 5,
        felt_valued: 4,
        speed: 3,
        sincere_regret: 5,
        reason: String::new(),
    }
}
pub(super) fn survey(s: SatisfactionInput) -> ComplaintCommand {
    ComplaintCommand::RecordSatisfaction(RecordSatisfaction {
        expected_version: None,
        satisfaction: s,
    })
}
pub(super) fn good_root_cause() -> RootCauseInput {
    RootCauseInput {
        whys: vec![
            "the cashier refused the coupon".into(),
            "the till rejected it".into(),
            "the promotion was not loaded at this store".into(),
        ],
        category: "signage_and_advertising".into(),
        corrective_action: "promotions are loaded centrally the day before".into(),
    }
}
pub(super) fn root_cause(r: RootCauseInput) -> ComplaintCommand {
    ComplaintCommand::RecordRootCause(RecordRootCause {
        expected_version: None,
        root_cause: r,
    })
}
pub(super) fn warning(s: &Complaint, clock: SlaClock, fraction: u8, at: i64) -> ComplaintCommand {
    let run = s.clock_run(clock).expect("clock running");
    ComplaintCommand::RaiseSlaWarning(RaiseSlaWarning {
        expected_version: None,
        clock,
        started_at: run.started_at,
        fraction_percent: fraction,
        due_at: t(at),
    })
}
pub(super) fn breach(s: &Complaint, clock: SlaClock, due: i64) -> ComplaintCommand {
    let run = s.clock_run(clock).expect("clock running");
    ComplaintCommand::RecordSlaBreach(RecordSlaBreach {
        expected_version: None,
        clock,
        started_at: run.started_at,
        due_at: t(due),
    })
}

pub(super) fn fields(r: Result<Vec<ComplaintEvent>, ComplaintError>) -> Vec<String> {
    match r {
        Err(ComplaintError::Invalid(v)) => v.fields().map(str::to_owned).collect(),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

pub(super) fn state_of(s: &Option<Complaint>) -> &Complaint {
    s.as_ref().expect("complaint exists")
}

pub(super) fn wait_with(note: &str) -> ComplaintCommand {
    ComplaintCommand::WaitOnCustomer(WaitOnCustomer {
        expected_version: None,
        note: note.into(),
    })
}
pub(super) fn reopen_with(reason: &str) -> ComplaintCommand {
    ComplaintCommand::ReopenComplaint(ReopenComplaint {
        expected_version: None,
        reason: reason.into(),
    })
}
