//! The complaint aggregate, event-sourced: `handle` decides, `apply` remembers.
//!
//! A complaint is a customer telling us, once, what the chain got wrong. Most never do: the
//! ones who complain are the ones still willing to stay, and how the complaint is handled
//! decides whether they do. So the rules here push for three things:
//!
//! - **Urgency at a high enough level.** Every complaint has an owner on the chain
//!   store manager → regional manager → owner, with a first-response, update and resolution
//!   clock per level. A breach moves the complaint up one level and starts that level's
//!   clocks; a critical complaint starts higher (`Context::critical_starts_at`).
//! - **A voice, not a form letter.** A major or critical complaint's first response only
//!   counts when it is personal (phone or in person).
//! - **A tangible result, then learning.** A resolution names at least one remedy and what
//!   was done; afterwards the customer's satisfaction (with the four factors that matter
//!   most: ownership, feeling valued, speed, sincere regret) and a "5 whys" root cause are
//!   recorded so the same failure stops recurring.
//!
//! All business logic is in [`handle`], which is pure (time is passed in) and returns the
//! events to append; [`apply`] only folds an event into the state, so replaying a stream
//! rebuilds the state exactly. The SLA clocks themselves (business hours, targets per level)
//! live in the feedback service's timer: the aggregate says which clock runs since when
//! ([`Complaint::running_clocks`]) and which pauses to subtract ([`Complaint::pauses`]),
//! and records the timer's warnings and breaches idempotently.
//!
//! Personal data: the complainant's contact details reach the aggregate only as an opaque
//! [`SealedContact`], ciphertext made by the adapter. The plaintext is checked with
//! [`ContactDetails::validate`] before sealing, with the same `contact.*` field paths.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::vocab::Channel;
use super::vocab::{ContactMethod, Level, Remedy, Severity, Touchpoint, UnknownValue};
use crate::card::looks_like_payment_card;
use crate::error::{FieldViolation, Violations};
use crate::ids::{ComplaintId, CustomerKey, StoreId, check_id};
use crate::policy::ChurnState;
use crate::swipe::CustomerInput;

/// Longest free text accepted in any complaint field, in characters.
pub const MAX_TEXT_CHARS: usize = 4000;
/// Largest sealed contact accepted, in bytes: four plaintext fields plus cipher overhead.
pub const MAX_SEALED_CONTACT_BYTES: usize = 8 * 1024;
/// Most "whys" a root-cause analysis may have; the method is named after five.
pub const MAX_WHYS: usize = 5;

// ---------------------------------------------------------------------------------------
// Personal data
// ---------------------------------------------------------------------------------------

/// The complainant's contact details as ciphertext sealed by the adapter (for example with
/// a per-tenant key), so events and snapshots never hold them in plaintext and erasing the
/// key erases them. The domain never looks inside. Serialised as a hex string.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedContact(Vec<u8>);

impl SealedContact {
    pub fn new(ciphertext: Vec<u8>) -> Self {
        Self(ciphertext)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Never prints the bytes: even ciphertext does not belong in logs.
impl fmt::Debug for SealedContact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedContact(<{} bytes>)", self.0.len())
    }
}

impl Serialize for SealedContact {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for SealedContact {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text)
            .map(SealedContact)
            .map_err(serde::de::Error::custom)
    }
}

/// The contact details in plaintext, as the adapter receives them. Only lives long enough
/// to be validated and sealed; `Debug` redacts it.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContactDetails {
    pub name: String,
    pub phone: String,
    pub email: String,
    pub address: String,
}

impl fmt::Debug for ContactDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContactDetails { <redacted> }")
    }
}

impl ContactDetails {
    /// Checks the plaintext before it is sealed. Field paths are `contact.name`,
    /// `contact.phone`, `contact.email`, `contact.address`, or `contact` when there is no
    /// way at all to reach the customer (a phone, an email or an address is required: a
    /// complaint nobody can answer cannot be resolved).
    pub fn validate(&self) -> Result<(), Violations> {
        let mut c = Check::default();
        c.text("contact.name", &self.name, Required::Yes, 200);
        let phone = self.phone.trim();
        if !phone.is_empty() {
            let digits = phone.chars().filter(char::is_ascii_digit).count();
            if !phone
                .chars()
                .all(|ch| ch.is_ascii_digit() || matches!(ch, '+' | '-' | ' ' | '(' | ')'))
            {
                c.fail(
                    "contact.phone",
                    "may only contain digits, spaces and + - ( )",
                );
            } else if !(6..=20).contains(&digits) {
                c.fail("contact.phone", "must have 6 to 20 digits");
            }
        }
        let email = self.email.trim();
        if !email.is_empty() {
            let ok = email.len() <= 254
                && !email.chars().any(char::is_whitespace)
                && email.split_once('@').is_some_and(|(local, domain)| {
                    !local.is_empty()
                        && !domain.contains('@')
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                });
            if !ok {
                c.fail("contact.email", "must be an address like name@example.com");
            }
        }
        c.text("contact.address", &self.address, Required::No, 500);
        if phone.is_empty() && email.is_empty() && self.address.trim().is_empty() {
            c.fail("contact", "one of phone, email or address is required");
        }
        c.finish()
    }

    /// The bytes the adapter encrypts into a [`SealedContact`] (JSON).
    pub fn to_plaintext(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The details back from decrypted bytes, if they are what [`Self::to_plaintext`] made.
    pub fn from_plaintext(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

// ---------------------------------------------------------------------------------------
// Values recorded on a complaint
// ---------------------------------------------------------------------------------------

/// Who complained: a loyalty customer or the token of the card they paid with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Complainant {
    CustomerId(CustomerKey),
    CardToken(CustomerKey),
}

impl Complainant {
    /// The customer key, whichever kind it is: the key purchases are partitioned by.
    pub fn key(&self) -> &CustomerKey {
        match self {
            Complainant::CustomerId(k) | Complainant::CardToken(k) => k,
        }
    }
}

/// Where a complaint stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComplaintStatus {
    /// Filed, nobody has answered the customer yet.
    Open,
    /// A first response reached the customer; work goes on.
    Acknowledged,
    /// We asked the customer something; the clocks are paused until they answer.
    WaitingOnCustomer,
    /// Resolved with a remedy. May be reopened.
    Resolved,
}

impl ComplaintStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ComplaintStatus::Open => "open",
            ComplaintStatus::Acknowledged => "acknowledged",
            ComplaintStatus::WaitingOnCustomer => "waiting_on_customer",
            ComplaintStatus::Resolved => "resolved",
        }
    }
}

impl fmt::Display for ComplaintStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The three SLA clocks of a level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlaClock {
    /// Filing (or reaching this level) until the first response.
    FirstResponse,
    /// Time between updates from our side once the customer has been answered.
    Update,
    /// Reaching this level (or a reopening) until resolution.
    Resolution,
}

impl SlaClock {
    pub const ALL: &'static [SlaClock] = &[
        SlaClock::FirstResponse,
        SlaClock::Update,
        SlaClock::Resolution,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SlaClock::FirstResponse => "first_response",
            SlaClock::Update => "update",
            SlaClock::Resolution => "resolution",
        }
    }
}

impl fmt::Display for SlaClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One run of a clock: which clock, at which level, counting since when. The timer turns
/// it into a deadline (business time, the level's target, minus [`Complaint::pauses`])
/// and echoes `started_at` in its commands so a warning for a finished run is recognised
/// as stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockRun {
    pub clock: SlaClock,
    pub level: Level,
    pub started_at: DateTime<Utc>,
}

/// A warning or breach already recorded for one clock run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaMark {
    pub run: ClockRun,
    /// Percent of the target elapsed, for warnings; `None` for a breach.
    pub fraction_percent: Option<u8>,
    pub due_at: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

/// A stretch of time spent waiting on the customer; `to` is `None` while it lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub from: DateTime<Utc>,
    pub to: Option<DateTime<Utc>>,
}

/// The first response that counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstResponse {
    pub at: DateTime<Utc>,
    pub method: ContactMethod,
    pub note: String,
}

/// A note on the complaint, ours or the customer's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateNote {
    pub at: DateTime<Utc>,
    pub note: String,
    pub from_customer: bool,
}

/// Why a complaint moved up the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EscalationReason {
    /// Someone escalated it by hand, saying why.
    Manual { text: String },
    /// The level missed a target.
    Breach { clock: SlaClock },
}

/// One step up the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    pub at: DateTime<Utc>,
    pub from: Level,
    pub to: Level,
    pub reason: EscalationReason,
}

/// How the customer judged a resolution, each on 1..=5 (5 best). The four factors are the
/// ones that most decide whether a customer feels a problem was handled well.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Satisfaction {
    pub score: u8,
    /// Someone took ownership of the problem.
    pub ownership: u8,
    /// The customer felt valued.
    pub felt_valued: u8,
    /// It was handled quickly.
    pub speed: u8,
    /// The regret expressed was sincere.
    pub sincere_regret: u8,
    /// Why, in the customer's words; required for a score of 2 or less.
    pub reason: Option<String>,
}

/// A resolution and, once asked, how the customer judged it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub at: DateTime<Utc>,
    pub remedies: Vec<Remedy>,
    pub summary: String,
    pub satisfaction: Option<Satisfaction>,
}

/// A reopening and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reopening {
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// A "5 whys" analysis: each why answers the one before, down to the part of the business
/// that failed and what will change so it does not fail again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootCause {
    pub whys: Vec<String>,
    pub category: Touchpoint,
    pub corrective_action: String,
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

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

/// The customer's answers to the satisfaction survey, each 1..=5.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SatisfactionInput {
    pub score: u8,
    pub ownership: u8,
    pub felt_valued: u8,
    pub speed: u8,
    pub sincere_regret: u8,
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
    /// The run's start, from [`Complaint::running_clocks`]: a mismatch means the run the
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

// ---------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------

/// What happened to a complaint. Serialised with a `type` tag in snake_case; names and
/// fields are stable, a changed shape gets a new variant. Every event carries `at`, the
/// time `handle` was given, so `apply` never needs a clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ComplaintEvent {
    ComplaintFiled {
        complaint_id: ComplaintId,
        idempotency_key: String,
        customer: Complainant,
        contact: SealedContact,
        store_id: StoreId,
        channel: Channel,
        touchpoint: Touchpoint,
        severity: Severity,
        description: String,
        occurred_at: DateTime<Utc>,
        /// The level that owns the complaint first.
        level: Level,
        at: DateTime<Utc>,
    },
    ComplaintAcknowledged {
        method: ContactMethod,
        note: String,
        at: DateTime<Utc>,
    },
    ComplaintUpdated {
        note: String,
        from_customer: bool,
        at: DateTime<Utc>,
    },
    WaitingOnCustomer {
        note: String,
        at: DateTime<Utc>,
    },
    CustomerResponded {
        at: DateTime<Utc>,
    },
    ComplaintEscalated {
        from: Level,
        to: Level,
        reason: EscalationReason,
        at: DateTime<Utc>,
    },
    SlaWarningRaised {
        run: ClockRun,
        fraction_percent: u8,
        due_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    SlaBreached {
        run: ClockRun,
        due_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    ComplaintResolved {
        remedies: Vec<Remedy>,
        summary: String,
        at: DateTime<Utc>,
    },
    ComplaintReopened {
        reason: String,
        at: DateTime<Utc>,
    },
    SatisfactionRecorded {
        satisfaction: Satisfaction,
        at: DateTime<Utc>,
    },
    RootCauseRecorded {
        root_cause: RootCause,
        at: DateTime<Utc>,
    },
}

impl ComplaintEvent {
    /// The versioned CloudEvents `type` of this event.
    pub fn event_type(&self) -> &'static str {
        match self {
            ComplaintEvent::ComplaintFiled { .. } => "churnguard.feedback.complaint_filed.v1",
            ComplaintEvent::ComplaintAcknowledged { .. } => {
                "churnguard.feedback.complaint_acknowledged.v1"
            }
            ComplaintEvent::ComplaintUpdated { .. } => "churnguard.feedback.complaint_updated.v1",
            ComplaintEvent::WaitingOnCustomer { .. } => {
                "churnguard.feedback.waiting_on_customer.v1"
            }
            ComplaintEvent::CustomerResponded { .. } => "churnguard.feedback.customer_responded.v1",
            ComplaintEvent::ComplaintEscalated { .. } => {
                "churnguard.feedback.complaint_escalated.v1"
            }
            ComplaintEvent::SlaWarningRaised { .. } => "churnguard.feedback.sla_warning_raised.v1",
            ComplaintEvent::SlaBreached { .. } => "churnguard.feedback.sla_breached.v1",
            ComplaintEvent::ComplaintResolved { .. } => "churnguard.feedback.complaint_resolved.v1",
            ComplaintEvent::ComplaintReopened { .. } => "churnguard.feedback.complaint_reopened.v1",
            ComplaintEvent::SatisfactionRecorded { .. } => {
                "churnguard.feedback.satisfaction_recorded.v1"
            }
            ComplaintEvent::RootCauseRecorded { .. } => {
                "churnguard.feedback.root_cause_recorded.v1"
            }
        }
    }

    /// When it happened.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            ComplaintEvent::ComplaintFiled { at, .. }
            | ComplaintEvent::ComplaintAcknowledged { at, .. }
            | ComplaintEvent::ComplaintUpdated { at, .. }
            | ComplaintEvent::WaitingOnCustomer { at, .. }
            | ComplaintEvent::CustomerResponded { at }
            | ComplaintEvent::ComplaintEscalated { at, .. }
            | ComplaintEvent::SlaWarningRaised { at, .. }
            | ComplaintEvent::SlaBreached { at, .. }
            | ComplaintEvent::ComplaintResolved { at, .. }
            | ComplaintEvent::ComplaintReopened { at, .. }
            | ComplaintEvent::SatisfactionRecorded { at, .. }
            | ComplaintEvent::RootCauseRecorded { at, .. } => *at,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Errors and configuration
// ---------------------------------------------------------------------------------------

/// Why a complaint command produced no events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComplaintError {
    /// The input is bad; every bad field is named.
    #[error("invalid complaint command: {0}")]
    Invalid(#[from] Violations),
    /// The complaint changed since the caller read it.
    #[error("version conflict: expected version {expected}, the complaint is at {current}")]
    VersionConflict { expected: u64, current: u64 },
    #[error("no such complaint")]
    NotFound,
    /// The command does not apply to a complaint in this status.
    #[error("{command} is not allowed while the complaint is {from_status}")]
    InvalidTransition {
        from_status: ComplaintStatus,
        command: &'static str,
    },
    /// A complaint with this id was filed with another idempotency key.
    #[error("a complaint with this id already exists")]
    AlreadyExists,
    /// Satisfaction for this resolution is already on record.
    #[error("{what} is already recorded for this resolution")]
    AlreadyRecorded { what: &'static str },
    /// Escalation asked at the top of the chain.
    #[error("the complaint is already at {0}, the top of the chain")]
    NoLevelAbove(Level),
}

/// The chain's settings the aggregate needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// Where a critical complaint starts: a store manager is not senior enough for it.
    pub critical_starts_at: Level,
    /// How long ago a problem may have happened and still be filed.
    pub max_complaint_age: TimeDelta,
    /// How far `occurred_at` may be ahead of the server clock (device clocks drift).
    pub max_clock_skew: TimeDelta,
}

impl Default for Context {
    fn default() -> Self {
        Self {
            critical_starts_at: Level::RegionalManager,
            max_complaint_age: TimeDelta::days(365),
            max_clock_skew: TimeDelta::minutes(5),
        }
    }
}

impl Context {
    /// The level a new complaint of `severity` belongs to.
    pub fn starting_level(&self, severity: Severity) -> Level {
        if severity == Severity::Critical {
            self.critical_starts_at
        } else {
            Level::StoreManager
        }
    }
}

// ---------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------

/// A complaint as its events left it. Change it only through [`apply`]; fields are public
/// so adapters and read models can look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Complaint {
    pub id: ComplaintId,
    pub idempotency_key: String,
    /// Number of events applied.
    pub version: u64,
    pub status: ComplaintStatus,
    pub level: Level,
    /// When the current level took over, or the complaint was last reopened: its
    /// first-response and resolution clocks count from here.
    pub level_since: DateTime<Utc>,
    pub severity: Severity,
    pub touchpoint: Touchpoint,
    pub channel: Channel,
    pub store_id: StoreId,
    pub customer: Complainant,
    pub contact: SealedContact,
    pub description: String,
    pub occurred_at: DateTime<Utc>,
    pub filed_at: DateTime<Utc>,
    pub first_response: Option<FirstResponse>,
    pub last_update_at: DateTime<Utc>,
    /// When our side last spoke (or the customer answered a question); the update clock
    /// counts from the later of this and `level_since`.
    pub update_clock_since: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub pauses: Vec<Pause>,
    pub warnings: Vec<SlaMark>,
    pub breaches: Vec<SlaMark>,
    pub updates: Vec<UpdateNote>,
    pub escalations: Vec<Escalation>,
    pub resolutions: Vec<Resolution>,
    pub reopenings: Vec<Reopening>,
    pub root_cause: Option<RootCause>,
}

impl Complaint {
    /// The run of `clock` that is counting now, if any. While the complaint waits on the
    /// customer the run still exists (the timer needs its start) but is paused.
    pub fn clock_run(&self, clock: SlaClock) -> Option<ClockRun> {
        if self.status == ComplaintStatus::Resolved {
            return None;
        }
        let started_at = match clock {
            SlaClock::FirstResponse if self.first_response.is_none() => self.level_since,
            SlaClock::FirstResponse => return None,
            SlaClock::Update => {
                self.first_response.as_ref()?;
                self.update_clock_since
                    .map_or(self.level_since, |t| t.max(self.level_since))
            }
            SlaClock::Resolution => self.level_since,
        };
        Some(ClockRun {
            clock,
            level: self.level,
            started_at,
        })
    }

    /// Every clock run counting now: what the SLA timer schedules deadlines for.
    pub fn running_clocks(&self) -> Vec<ClockRun> {
        SlaClock::ALL
            .iter()
            .filter_map(|c| self.clock_run(*c))
            .collect()
    }

    /// The stretches to subtract from elapsed time; the last is open while waiting.
    pub fn pauses(&self) -> &[Pause] {
        &self.pauses
    }

    /// The resolution in force, if the complaint is resolved.
    pub fn current_resolution(&self) -> Option<&Resolution> {
        match self.status {
            ComplaintStatus::Resolved => self.resolutions.last(),
            _ => None,
        }
    }

    /// True if a clock at the current level has been breached: at the owner, where there
    /// is nobody left to escalate to, the complaint stays breached until resolved.
    pub fn is_breached(&self) -> bool {
        self.status != ComplaintStatus::Resolved
            && self.breaches.iter().any(|b| b.run.level == self.level)
    }

    fn close_pause(&mut self, at: DateTime<Utc>) {
        if let Some(p) = self.pauses.last_mut()
            && p.to.is_none()
        {
            p.to = Some(at);
        }
    }
}

// ---------------------------------------------------------------------------------------
// handle
// ---------------------------------------------------------------------------------------

/// Decides what `cmd` means for the complaint `state` (`None` if it does not exist yet)
/// at `now`. Returns the events to append, possibly none (a retried filing, a stale or
/// repeated timer command); on error nothing is to be appended.
///
/// Checks run in this order: existence, expected version, status (the command must make
/// sense now), then the input, reporting every bad field at once.
///
/// A major or critical complaint acknowledged by letter or email is **rejected** (field
/// `method`) rather than recorded without stopping the clock: the caller learns at once
/// that a call or visit is still owed, and the letter can be kept as an update.
pub fn handle(
    state: Option<&Complaint>,
    cmd: ComplaintCommand,
    now: DateTime<Utc>,
    ctx: &Context,
) -> Result<Vec<ComplaintEvent>, ComplaintError> {
    let name = cmd.name();
    if let ComplaintCommand::FileComplaint(c) = cmd {
        return file(state, c, now, ctx);
    }
    let state = state.ok_or(ComplaintError::NotFound)?;
    check_version(cmd.expected_version(), state.version)?;
    let status = state.status;
    let not_allowed = || ComplaintError::InvalidTransition {
        from_status: status,
        command: name,
    };
    let resolved = status == ComplaintStatus::Resolved;
    match cmd {
        ComplaintCommand::FileComplaint(_) => Err(ComplaintError::AlreadyExists),
        ComplaintCommand::AcknowledgeComplaint(c) => {
            if status != ComplaintStatus::Open {
                return Err(not_allowed());
            }
            let mut check = Check::default();
            let method = check.parse::<ContactMethod>("method", &c.method);
            let note = check.text("note", &c.note, Required::No, MAX_TEXT_CHARS);
            if let Some(m) = method
                && state.severity >= Severity::Major
                && !m.is_personal()
            {
                check.fail(
                    "method",
                    format!(
                        "a {} complaint needs a personal first response (phone or in_person), not {m}",
                        state.severity
                    ),
                );
            }
            check.finish()?;
            Ok(vec![ComplaintEvent::ComplaintAcknowledged {
                method: method.ok_or_else(internal)?,
                note,
                at: now,
            }])
        }
        ComplaintCommand::AddComplaintUpdate(c) => {
            let mut check = Check::default();
            let note = check.text("note", &c.note, Required::Yes, MAX_TEXT_CHARS);
            check.finish()?;
            let mut events = vec![ComplaintEvent::ComplaintUpdated {
                note,
                from_customer: c.from_customer,
                at: now,
            }];
            if c.from_customer && status == ComplaintStatus::WaitingOnCustomer {
                events.push(ComplaintEvent::CustomerResponded { at: now });
            }
            Ok(events)
        }
        ComplaintCommand::WaitOnCustomer(c) => {
            // Waiting needs a conversation: a complaint nobody has answered cannot be
            // parked on the customer, or the first-response clock could be dodged.
            if status != ComplaintStatus::Acknowledged {
                return Err(not_allowed());
            }
            let mut check = Check::default();
            let note = check.text("note", &c.note, Required::Yes, MAX_TEXT_CHARS);
            check.finish()?;
            Ok(vec![ComplaintEvent::WaitingOnCustomer { note, at: now }])
        }
        ComplaintCommand::EscalateComplaint(c) => {
            if resolved {
                return Err(not_allowed());
            }
            let to = state
                .level
                .above()
                .ok_or(ComplaintError::NoLevelAbove(state.level))?;
            let mut check = Check::default();
            let text = check.text("reason", &c.reason, Required::Yes, MAX_TEXT_CHARS);
            check.finish()?;
            Ok(vec![ComplaintEvent::ComplaintEscalated {
                from: state.level,
                to,
                reason: EscalationReason::Manual { text },
                at: now,
            }])
        }
        ComplaintCommand::ResolveComplaint(c) => {
            if resolved {
                return Err(not_allowed());
            }
            let mut check = Check::default();
            let mut remedies = Vec::with_capacity(c.remedies.len());
            if c.remedies.is_empty() {
                check.fail("remedies", "at least one remedy is required");
            }
            for (i, r) in c.remedies.iter().enumerate() {
                let field = format!("remedies[{i}]");
                if let Some(r) = check.parse::<Remedy>(&field, r) {
                    if remedies.contains(&r) {
                        check.fail(&field, format!("{r} is listed twice"));
                    } else {
                        remedies.push(r);
                    }
                }
            }
            let summary = check.text("summary", &c.summary, Required::Yes, MAX_TEXT_CHARS);
            check.finish()?;
            Ok(vec![ComplaintEvent::ComplaintResolved {
                remedies,
                summary,
                at: now,
            }])
        }
        ComplaintCommand::ReopenComplaint(c) => {
            if !resolved {
                return Err(not_allowed());
            }
            let mut check = Check::default();
            let reason = check.text("reason", &c.reason, Required::Yes, MAX_TEXT_CHARS);
            check.finish()?;
            Ok(vec![ComplaintEvent::ComplaintReopened { reason, at: now }])
        }
        ComplaintCommand::RecordSatisfaction(c) => {
            let current = state.current_resolution().ok_or_else(not_allowed)?;
            if current.satisfaction.is_some() {
                return Err(ComplaintError::AlreadyRecorded {
                    what: "satisfaction",
                });
            }
            let satisfaction = validate_satisfaction(&c.satisfaction)?;
            Ok(vec![ComplaintEvent::SatisfactionRecorded {
                satisfaction,
                at: now,
            }])
        }
        ComplaintCommand::RecordRootCause(c) => {
            let root_cause = validate_root_cause(&c.root_cause)?;
            Ok(vec![ComplaintEvent::RootCauseRecorded {
                root_cause,
                at: now,
            }])
        }
        ComplaintCommand::RaiseSlaWarning(c) => {
            let mut check = Check::default();
            if !(1..=99).contains(&c.fraction_percent) {
                check.fail("fraction_percent", "must be 1..=99");
            }
            if c.due_at <= c.started_at {
                check.fail("due_at", "must be after started_at");
            }
            check.finish()?;
            let Some(run) = live_run(state, c.clock, c.started_at) else {
                return Ok(vec![]);
            };
            let repeated = state.breaches.iter().any(|b| b.run == run)
                || state
                    .warnings
                    .iter()
                    .any(|w| w.run == run && w.fraction_percent == Some(c.fraction_percent));
            if repeated {
                return Ok(vec![]);
            }
            Ok(vec![ComplaintEvent::SlaWarningRaised {
                run,
                fraction_percent: c.fraction_percent,
                due_at: c.due_at,
                at: now,
            }])
        }
        ComplaintCommand::RecordSlaBreach(c) => {
            let mut check = Check::default();
            if c.due_at <= c.started_at {
                check.fail("due_at", "must be after started_at");
            } else if c.due_at > now {
                check.fail(
                    "due_at",
                    "is still ahead: a breach is recorded once it has passed",
                );
            }
            check.finish()?;
            let Some(run) = live_run(state, c.clock, c.started_at) else {
                return Ok(vec![]);
            };
            if state.breaches.iter().any(|b| b.run == run) {
                return Ok(vec![]);
            }
            let mut events = vec![ComplaintEvent::SlaBreached {
                run,
                due_at: c.due_at,
                at: now,
            }];
            // The level missed its target: the next one up takes over, with its own clocks.
            // The owner has nobody above; the complaint stays breached there.
            if let Some(to) = state.level.above() {
                events.push(ComplaintEvent::ComplaintEscalated {
                    from: state.level,
                    to,
                    reason: EscalationReason::Breach { clock: c.clock },
                    at: now,
                });
            }
            Ok(events)
        }
    }
}

/// The run a timer command is about, if it is still counting: none while resolved or
/// paused, or when the timer computed it from a run that has since ended (a stale command
/// is ignored, not an error: the timer races with people).
fn live_run(state: &Complaint, clock: SlaClock, started_at: DateTime<Utc>) -> Option<ClockRun> {
    if state.status == ComplaintStatus::WaitingOnCustomer {
        return None;
    }
    state
        .clock_run(clock)
        .filter(|run| run.started_at == started_at)
}

fn file(
    state: Option<&Complaint>,
    c: FileComplaint,
    now: DateTime<Utc>,
    ctx: &Context,
) -> Result<Vec<ComplaintEvent>, ComplaintError> {
    if let Some(existing) = state {
        // A retry of the same filing is answered with nothing new, whatever it says about
        // versions: the first filing won.
        return if existing.idempotency_key == c.idempotency_key {
            Ok(vec![])
        } else {
            Err(ComplaintError::AlreadyExists)
        };
    }
    check_version(c.expected_version, 0)?;

    let mut check = Check::default();
    if let Err(e) = check_id(&c.idempotency_key) {
        check.fail("idempotency_key", e);
    }
    let customer = match c.customer {
        CustomerInput::Missing => {
            check.fail("customer", "a customer_id or card_token is required");
            None
        }
        CustomerInput::CardNumber(_) => {
            check.fail(
                "customer.card_number",
                "card numbers are not accepted here: send the card token",
            );
            None
        }
        CustomerInput::CustomerId(v) => {
            customer_key(&mut check, "customer.customer_id", &v).map(Complainant::CustomerId)
        }
        CustomerInput::CardToken(v) => {
            customer_key(&mut check, "customer.card_token", &v).map(Complainant::CardToken)
        }
    };
    if c.contact.as_bytes().is_empty() {
        check.fail("contact", "the sealed contact details are missing");
    } else if c.contact.as_bytes().len() > MAX_SEALED_CONTACT_BYTES {
        check.fail(
            "contact",
            format!("must be at most {MAX_SEALED_CONTACT_BYTES} bytes sealed"),
        );
    }
    let store_id = StoreId::parse(c.store_id)
        .map_err(|e| check.fail("store_id", e))
        .ok();
    let channel = check.parse::<Channel>("channel", &c.channel);
    let touchpoint = check.parse::<Touchpoint>("touchpoint", &c.touchpoint);
    let severity = check.parse::<Severity>("severity", &c.severity);
    let description = check.text("description", &c.description, Required::Yes, MAX_TEXT_CHARS);
    if c.occurred_at > now + ctx.max_clock_skew {
        check.fail("occurred_at", "is in the future");
    } else if c.occurred_at < now - ctx.max_complaint_age {
        check.fail(
            "occurred_at",
            format!(
                "is older than the limit of {} days",
                ctx.max_complaint_age.num_days()
            ),
        );
    }
    check.finish()?;
    let (Some(customer), Some(store_id), Some(channel), Some(touchpoint), Some(severity)) =
        (customer, store_id, channel, touchpoint, severity)
    else {
        return Err(internal());
    };
    Ok(vec![ComplaintEvent::ComplaintFiled {
        complaint_id: c.complaint_id,
        idempotency_key: c.idempotency_key,
        customer,
        contact: c.contact,
        store_id,
        channel,
        touchpoint,
        severity,
        description,
        occurred_at: c.occurred_at,
        level: ctx.starting_level(severity),
        at: now,
    }])
}

fn customer_key(check: &mut Check, field: &str, value: &str) -> Option<CustomerKey> {
    if looks_like_payment_card(value) {
        check.fail(field, "looks like a card number: send the card token");
        return None;
    }
    CustomerKey::parse(value)
        .map_err(|e| check.fail(field, e))
        .ok()
}

fn validate_satisfaction(s: &SatisfactionInput) -> Result<Satisfaction, ComplaintError> {
    let mut check = Check::default();
    for (field, value) in [
        ("satisfaction.score", s.score),
        ("satisfaction.ownership", s.ownership),
        ("satisfaction.felt_valued", s.felt_valued),
        ("satisfaction.speed", s.speed),
        ("satisfaction.sincere_regret", s.sincere_regret),
    ] {
        if !(1..=5).contains(&value) {
            check.fail(field, format!("must be 1..=5, got {value}"));
        }
    }
    // A bad rating without a reason teaches nothing: ask why, as the best helpdesks do.
    let required = if (1..=2).contains(&s.score) {
        Required::Yes
    } else {
        Required::No
    };
    let reason = check.text("satisfaction.reason", &s.reason, required, MAX_TEXT_CHARS);
    check.finish()?;
    Ok(Satisfaction {
        score: s.score,
        ownership: s.ownership,
        felt_valued: s.felt_valued,
        speed: s.speed,
        sincere_regret: s.sincere_regret,
        reason: (!reason.is_empty()).then_some(reason),
    })
}

fn validate_root_cause(r: &RootCauseInput) -> Result<RootCause, ComplaintError> {
    let mut check = Check::default();
    if r.whys.is_empty() || r.whys.len() > MAX_WHYS {
        check.fail(
            "root_cause.whys",
            format!("must have 1 to {MAX_WHYS} answers, got {}", r.whys.len()),
        );
    }
    let whys: Vec<String> = r
        .whys
        .iter()
        .enumerate()
        .map(|(i, w)| {
            check.text(
                &format!("root_cause.whys[{i}]"),
                w,
                Required::Yes,
                MAX_TEXT_CHARS,
            )
        })
        .collect();
    let category = check.parse::<Touchpoint>("root_cause.category", &r.category);
    let corrective_action = check.text(
        "root_cause.corrective_action",
        &r.corrective_action,
        Required::Yes,
        MAX_TEXT_CHARS,
    );
    check.finish()?;
    Ok(RootCause {
        whys,
        category: category.ok_or_else(internal)?,
        corrective_action,
    })
}

fn check_version(expected: Option<u64>, current: u64) -> Result<(), ComplaintError> {
    match expected {
        Some(expected) if expected != current => {
            Err(ComplaintError::VersionConflict { expected, current })
        }
        _ => Ok(()),
    }
}

/// Unreachable: every `None` above has recorded a violation, so `finish` has returned.
/// Kept as an error rather than a panic.
fn internal() -> ComplaintError {
    ComplaintError::Invalid(Violations(vec![FieldViolation::new(
        "",
        "internal: a value was missing after validation",
    )]))
}

// ---------------------------------------------------------------------------------------
// apply
// ---------------------------------------------------------------------------------------

/// Folds one event into the state. No decisions and no clock: only what the event says.
/// An event that cannot follow the state (anything before `ComplaintFiled`, a second
/// `ComplaintFiled`) cannot come from [`handle`] and is ignored, leaving the version as
/// it was.
pub fn apply(state: Option<Complaint>, event: &ComplaintEvent) -> Option<Complaint> {
    match (state, event) {
        (
            None,
            ComplaintEvent::ComplaintFiled {
                complaint_id,
                idempotency_key,
                customer,
                contact,
                store_id,
                channel,
                touchpoint,
                severity,
                description,
                occurred_at,
                level,
                at,
            },
        ) => Some(Complaint {
            id: complaint_id.clone(),
            idempotency_key: idempotency_key.clone(),
            version: 1,
            status: ComplaintStatus::Open,
            level: *level,
            level_since: *at,
            severity: *severity,
            touchpoint: *touchpoint,
            channel: *channel,
            store_id: store_id.clone(),
            customer: customer.clone(),
            contact: contact.clone(),
            description: description.clone(),
            occurred_at: *occurred_at,
            filed_at: *at,
            first_response: None,
            last_update_at: *at,
            update_clock_since: None,
            resolved_at: None,
            pauses: Vec::new(),
            warnings: Vec::new(),
            breaches: Vec::new(),
            updates: Vec::new(),
            escalations: Vec::new(),
            resolutions: Vec::new(),
            reopenings: Vec::new(),
            root_cause: None,
        }),
        (None, _) => None,
        (Some(s), ComplaintEvent::ComplaintFiled { .. }) => Some(s),
        (Some(mut s), event) => {
            s.apply_event(event);
            s.version += 1;
            Some(s)
        }
    }
}

/// Replays a stream from the start.
pub fn replay<'a>(events: impl IntoIterator<Item = &'a ComplaintEvent>) -> Option<Complaint> {
    events.into_iter().fold(None, apply)
}

impl Complaint {
    fn apply_event(&mut self, event: &ComplaintEvent) {
        match event {
            ComplaintEvent::ComplaintFiled { .. } => {}
            ComplaintEvent::ComplaintAcknowledged { method, note, at } => {
                self.status = ComplaintStatus::Acknowledged;
                self.first_response = Some(FirstResponse {
                    at: *at,
                    method: *method,
                    note: note.clone(),
                });
                self.last_update_at = *at;
                self.update_clock_since = Some(*at);
            }
            ComplaintEvent::ComplaintUpdated {
                note,
                from_customer,
                at,
            } => {
                self.updates.push(UpdateNote {
                    at: *at,
                    note: note.clone(),
                    from_customer: *from_customer,
                });
                self.last_update_at = *at;
                if !from_customer {
                    self.update_clock_since = Some(*at);
                }
            }
            ComplaintEvent::WaitingOnCustomer { note, at } => {
                self.status = ComplaintStatus::WaitingOnCustomer;
                self.pauses.push(Pause {
                    from: *at,
                    to: None,
                });
                self.updates.push(UpdateNote {
                    at: *at,
                    note: note.clone(),
                    from_customer: false,
                });
                self.last_update_at = *at;
                self.update_clock_since = Some(*at);
            }
            ComplaintEvent::CustomerResponded { at } => {
                self.status = ComplaintStatus::Acknowledged;
                self.close_pause(*at);
                // The customer answered: now it is our turn to reply.
                self.update_clock_since = Some(*at);
            }
            ComplaintEvent::ComplaintEscalated {
                from,
                to,
                reason,
                at,
            } => {
                self.escalations.push(Escalation {
                    at: *at,
                    from: *from,
                    to: *to,
                    reason: reason.clone(),
                });
                self.level = *to;
                self.level_since = *at;
                self.last_update_at = *at;
            }
            ComplaintEvent::SlaWarningRaised {
                run,
                fraction_percent,
                due_at,
                at,
            } => self.warnings.push(SlaMark {
                run: *run,
                fraction_percent: Some(*fraction_percent),
                due_at: *due_at,
                at: *at,
            }),
            ComplaintEvent::SlaBreached { run, due_at, at } => self.breaches.push(SlaMark {
                run: *run,
                fraction_percent: None,
                due_at: *due_at,
                at: *at,
            }),
            ComplaintEvent::ComplaintResolved {
                remedies,
                summary,
                at,
            } => {
                self.status = ComplaintStatus::Resolved;
                self.close_pause(*at);
                self.resolutions.push(Resolution {
                    at: *at,
                    remedies: remedies.clone(),
                    summary: summary.clone(),
                    satisfaction: None,
                });
                self.resolved_at = Some(*at);
                self.last_update_at = *at;
            }
            ComplaintEvent::ComplaintReopened { reason, at } => {
                self.status = if self.first_response.is_some() {
                    ComplaintStatus::Acknowledged
                } else {
                    ComplaintStatus::Open
                };
                self.reopenings.push(Reopening {
                    at: *at,
                    reason: reason.clone(),
                });
                self.resolved_at = None;
                // The level gets a fresh resolution clock, and owes the customer an update.
                self.level_since = *at;
                self.update_clock_since = Some(*at);
                self.last_update_at = *at;
            }
            ComplaintEvent::SatisfactionRecorded { satisfaction, .. } => {
                if let Some(r) = self.resolutions.last_mut() {
                    r.satisfaction = Some(satisfaction.clone());
                }
            }
            ComplaintEvent::RootCauseRecorded { root_cause, .. } => {
                self.root_cause = Some(root_cause.clone());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Priority
// ---------------------------------------------------------------------------------------

/// What the chain knows about the complainant as a customer, from churn scoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustomerContext {
    /// Expected revenue lost if they defect, in minor units.
    pub value_at_risk_minor: i64,
    /// Discounted expected revenue over the next year, in minor units.
    pub clv_minor: i64,
    pub churn_state: ChurnState,
}

/// How often this customer has had problems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IncidentHistory {
    /// Earlier complaints in the last 90 days, not counting this one.
    pub complaints_last_90d: u32,
    /// An earlier complaint named the same touchpoint: the fix did not hold.
    pub same_touchpoint_before: bool,
}

/// A complaint's place in the queue (higher first), with its parts so the ordering can be
/// explained to the person working it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority {
    pub score: u32,
    pub severity_points: u32,
    pub value_points: u32,
    pub churn_points: u32,
    pub incident_points: u32,
}

/// Points for a value in minor units: 0, 5, 10, 15 or 20 from below 50.00, 200.00,
/// 1 000.00, 5 000.00 and above. Tiers, not a linear scale, so one huge basket cannot
/// swamp severity.
fn value_tier(minor: i64) -> u32 {
    match minor {
        i64::MIN..5_000 => 0,
        5_000..20_000 => 5,
        20_000..100_000 => 10,
        100_000..500_000 => 15,
        _ => 20,
    }
}

/// Orders complaints by how much handling them well matters.
///
/// `score = severity + value + churn + incidents`, where
/// - **severity**: minor 0, moderate 25, major 50, critical 100;
/// - **value**: [`value_tier`] of the customer's CLV (0..=20);
/// - **churn**: a customer already slipping is the one a complaint loses: 0 when active;
///   otherwise a base (won back 5, at risk 10, defected 10) plus the tier of the value at
///   risk (0..=20), so an at-risk high-value customer moves up;
/// - **incidents**: 5 per earlier complaint in 90 days (at most 4 counted) plus 10 when
///   the same touchpoint failed before: repeat incidents move up (0..=30).
///
/// Everything but severity adds up to at most 80, less than the 100 between minor and
/// critical: a critical complaint always outranks a minor one, while context can lift a
/// moderate complaint above a bare major one.
pub fn priority(
    severity: Severity,
    customer: &CustomerContext,
    incidents: &IncidentHistory,
) -> Priority {
    let severity_points = match severity {
        Severity::Minor => 0,
        Severity::Moderate => 25,
        Severity::Major => 50,
        Severity::Critical => 100,
    };
    let value_points = value_tier(customer.clv_minor);
    let churn_base = match customer.churn_state {
        ChurnState::Active => None,
        ChurnState::WonBack => Some(5),
        ChurnState::AtRisk | ChurnState::Defected => Some(10),
    };
    let churn_points = churn_base.map_or(0, |b| b + value_tier(customer.value_at_risk_minor));
    let incident_points = 5 * incidents.complaints_last_90d.min(4)
        + if incidents.same_touchpoint_before {
            10
        } else {
            0
        };
    Priority {
        score: severity_points + value_points + churn_points + incident_points,
        severity_points,
        value_points,
        churn_points,
        incident_points,
    }
}

// ---------------------------------------------------------------------------------------
// Validation helper, shared with the outreach aggregate
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Required {
    Yes,
    No,
}

/// Collects every violation of one command so the caller hears about all of them at once.
#[derive(Debug, Default)]
pub(super) struct Check(Vec<FieldViolation>);

impl Check {
    pub(super) fn fail(&mut self, field: &str, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// Trimmed free text, checked for presence and length.
    pub(super) fn text(
        &mut self,
        field: &str,
        value: &str,
        required: Required,
        max_chars: usize,
    ) -> String {
        let value = value.trim();
        if value.is_empty() && required == Required::Yes {
            self.fail(field, "must not be empty");
        } else if value.chars().count() > max_chars {
            self.fail(field, format!("must be at most {max_chars} characters"));
        }
        value.to_owned()
    }

    /// A vocabulary value, its error naming the choices.
    pub(super) fn parse<T: FromStr<Err = UnknownValue>>(
        &mut self,
        field: &str,
        value: &str,
    ) -> Option<T> {
        value
            .trim()
            .parse()
            .map_err(|e: UnknownValue| self.fail(field, e.to_string()))
            .ok()
    }

    pub(super) fn finish(self) -> Result<(), Violations> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Violations(self.0))
        }
    }
}
