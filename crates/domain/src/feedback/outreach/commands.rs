//! What can be asked of an outreach case: opening it from a churn signal, recording an
//! attempt to reach the customer, and the signals that escalate or end its episode.

use chrono::{DateTime, NaiveDate, Utc};

use crate::ids::OutreachCaseId;

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
