//! What can be asked of a complaint. Commands are imperative and carry fields that come
//! from people unparsed, as the adapter received them, so every bad value is reported
//! with its field path.

use chrono::{DateTime, Utc};

use super::contact::SealedContact;
use super::state::SlaClock;
use crate::ids::ComplaintId;
use crate::swipe::CustomerInput;

/// Record a new complaint. Fields that come from people arrive unparsed, as the gRPC
/// adapter received them, so every bad value is reported with its field path.
#[derive(Debug, Clone, PartialEq)]
pub struct FileComplaint {
    pub expected_version: Option<u64>,
    /// The stream to create; the adapter derives it from `idempotency_key`.
    pub complaint_id: ComplaintId,
    /// The client's key for this filing: a retry with the same key changes nothing.
    pub idempotency_key: String,
    pub customer: CustomerInput,
    pub contact: SealedContact,
    pub store_id: String,
    pub channel: String,
    pub touchpoint: String,
    pub severity: String,
    pub description: String,
    /// When the problem happened (not when it was reported).
    pub occurred_at: DateTime<Utc>,
}

/// Record the first response to the customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcknowledgeComplaint {
    pub expected_version: Option<u64>,
    /// How the customer was reached: `phone`, `in_person`, `letter` or `email`.
    pub method: String,
    /// What was said; optional.
    pub note: String,
}

/// Add a note. A note from the customer while we wait on them resumes the clocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddComplaintUpdate {
    pub expected_version: Option<u64>,
    pub note: String,
    pub from_customer: bool,
}

/// We asked the customer something and cannot go on without the answer: pause the clocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitOnCustomer {
    pub expected_version: Option<u64>,
    /// What we asked.
    pub note: String,
}

/// Move the complaint up one level by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalateComplaint {
    pub expected_version: Option<u64>,
    pub reason: String,
}

/// Close the complaint with a tangible result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveComplaint {
    pub expected_version: Option<u64>,
    /// At least one of `apology`, `refund`, `replacement`, `compensation`, `fix`.
    pub remedies: Vec<String>,
    /// What was done.
    pub summary: String,
}

/// The resolution did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReopenComplaint {
    pub expected_version: Option<u64>,
    pub reason: String,
}

/// The customer's answers to the satisfaction survey, each 1..=5, as the caller sent
/// them (wide, so an out-of-range answer is reported as it was given).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SatisfactionInput {
    pub score: u32,
    pub ownership: u32,
    pub felt_valued: u32,
    pub speed: u32,
    pub sincere_regret: u32,
    /// Required when `score <= 2`.
    pub reason: String,
}

/// Record how the customer judged the current resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSatisfaction {
    pub expected_version: Option<u64>,
    pub satisfaction: SatisfactionInput,
}

/// A "5 whys" analysis as entered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RootCauseInput {
    /// 1..=5 non-empty answers, each to the "why?" of the one before.
    pub whys: Vec<String>,
    /// The touchpoint that failed.
    pub category: String,
    pub corrective_action: String,
}

/// Record (or replace with a better one) the root cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRootCause {
    pub expected_version: Option<u64>,
    pub root_cause: RootCauseInput,
}

/// System: the timer says a clock run has used `fraction_percent` of its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaiseSlaWarning {
    pub expected_version: Option<u64>,
    pub clock: SlaClock,
    /// The run's start, from
    /// [`Complaint::running_clocks`](super::Complaint::running_clocks): a mismatch means the run the
    /// timer computed has ended, and the command is ignored.
    pub started_at: DateTime<Utc>,
    /// 1..=99, e.g. 50 and 75.
    pub fraction_percent: u8,
    pub due_at: DateTime<Utc>,
}

/// System: the timer says a clock run has passed its deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSlaBreach {
    pub expected_version: Option<u64>,
    pub clock: SlaClock,
    /// As in [`RaiseSlaWarning::started_at`].
    pub started_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
}

/// Everything that can be asked of a complaint.
#[derive(Debug, Clone, PartialEq)]
pub enum ComplaintCommand {
    FileComplaint(FileComplaint),
    AcknowledgeComplaint(AcknowledgeComplaint),
    AddComplaintUpdate(AddComplaintUpdate),
    WaitOnCustomer(WaitOnCustomer),
    EscalateComplaint(EscalateComplaint),
    ResolveComplaint(ResolveComplaint),
    ReopenComplaint(ReopenComplaint),
    RecordSatisfaction(RecordSatisfaction),
    RecordRootCause(RecordRootCause),
    RaiseSlaWarning(RaiseSlaWarning),
    RecordSlaBreach(RecordSlaBreach),
}

impl ComplaintCommand {
    /// The command's name in errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            ComplaintCommand::FileComplaint(_) => "file_complaint",
            ComplaintCommand::AcknowledgeComplaint(_) => "acknowledge_complaint",
            ComplaintCommand::AddComplaintUpdate(_) => "add_complaint_update",
            ComplaintCommand::WaitOnCustomer(_) => "wait_on_customer",
            ComplaintCommand::EscalateComplaint(_) => "escalate_complaint",
            ComplaintCommand::ResolveComplaint(_) => "resolve_complaint",
            ComplaintCommand::ReopenComplaint(_) => "reopen_complaint",
            ComplaintCommand::RecordSatisfaction(_) => "record_satisfaction",
            ComplaintCommand::RecordRootCause(_) => "record_root_cause",
            ComplaintCommand::RaiseSlaWarning(_) => "raise_sla_warning",
            ComplaintCommand::RecordSlaBreach(_) => "record_sla_breach",
        }
    }

    /// The version the caller last saw, if it wants the command to fail on a change.
    pub fn expected_version(&self) -> Option<u64> {
        match self {
            ComplaintCommand::FileComplaint(c) => c.expected_version,
            ComplaintCommand::AcknowledgeComplaint(c) => c.expected_version,
            ComplaintCommand::AddComplaintUpdate(c) => c.expected_version,
            ComplaintCommand::WaitOnCustomer(c) => c.expected_version,
            ComplaintCommand::EscalateComplaint(c) => c.expected_version,
            ComplaintCommand::ResolveComplaint(c) => c.expected_version,
            ComplaintCommand::ReopenComplaint(c) => c.expected_version,
            ComplaintCommand::RecordSatisfaction(c) => c.expected_version,
            ComplaintCommand::RecordRootCause(c) => c.expected_version,
            ComplaintCommand::RaiseSlaWarning(c) => c.expected_version,
            ComplaintCommand::RecordSlaBreach(c) => c.expected_version,
        }
    }
}
