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
            let (method, note) = acknowledgement(&mut check, &c);
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
            let (remedies, summary) = resolution(&mut check, &c);
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

/// The input of an acknowledgement: its method and note.
fn acknowledgement(check: &mut Check, c: &AcknowledgeComplaint) -> (Option<ContactMethod>, String) {
    let method = check.parse::<ContactMethod>("method", &c.method);
    let note = check.text("note", &c.note, Required::No, MAX_TEXT_CHARS);
    (method, note)
}

/// The input of a resolution: its remedies (each once) and summary.
fn resolution(check: &mut Check, c: &ResolveComplaint) -> (Vec<Remedy>, String) {
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
    (remedies, summary)
}

/// The violations of a command's own fields, whatever the complaint: what [`handle`]
/// reports after its existence, version and status checks, less the rules that depend on
/// the complaint (a personal first response for a major one). For an adapter that has
/// refused the request for its own fields (a bad complaint id) and names every bad
/// field at once. Filings are checked whole by [`handle`] (they need no complaint); timer
/// commands come from no caller: both have none here.
pub fn input_violations(cmd: &ComplaintCommand) -> Vec<FieldViolation> {
    let mut check = Check::default();
    let text = |check: &mut Check, field: &str, value: &str| {
        check.text(field, value, Required::Yes, MAX_TEXT_CHARS);
    };
    match cmd {
        ComplaintCommand::AcknowledgeComplaint(c) => {
            acknowledgement(&mut check, c);
        }
        ComplaintCommand::AddComplaintUpdate(AddComplaintUpdate { note, .. })
        | ComplaintCommand::WaitOnCustomer(WaitOnCustomer { note, .. }) => {
            text(&mut check, "note", note);
        }
        ComplaintCommand::EscalateComplaint(EscalateComplaint { reason, .. })
        | ComplaintCommand::ReopenComplaint(ReopenComplaint { reason, .. }) => {
            text(&mut check, "reason", reason);
        }
        ComplaintCommand::ResolveComplaint(c) => {
            resolution(&mut check, c);
        }
        ComplaintCommand::RecordSatisfaction(c) => {
            if let Err(ComplaintError::Invalid(v)) = validate_satisfaction(&c.satisfaction) {
                check.0.extend(v.0);
            }
        }
        ComplaintCommand::RecordRootCause(c) => {
            if let Err(ComplaintError::Invalid(v)) = validate_root_cause(&c.root_cause) {
                check.0.extend(v.0);
            }
        }
        ComplaintCommand::FileComplaint(_)
        | ComplaintCommand::RaiseSlaWarning(_)
        | ComplaintCommand::RecordSlaBreach(_) => {}
    }
    check.0
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
    let mut answer = |field: &str, value: u32| match u8::try_from(value) {
        Ok(v) if (1..=5).contains(&v) => v,
        _ => {
            check.fail(field, format!("must be 1..=5, got {value}"));
            0
        }
    };
    let score = answer("satisfaction.score", s.score);
    let ownership = answer("satisfaction.ownership", s.ownership);
    let felt_valued = answer("satisfaction.felt_valued", s.felt_valued);
    let speed = answer("satisfaction.speed", s.speed);
    let sincere_regret = answer("satisfaction.sincere_regret", s.sincere_regret);
    // A bad rating without a reason teaches nothing: ask why, as the best helpdesks do.
    let required = if (1..=2).contains(&s.score) {
        Required::Yes
    } else {
        Required::No
    };
    let reason = check.text("satisfaction.reason", &s.reason, required, MAX_TEXT_CHARS);
    check.finish()?;
    Ok(Satisfaction {
        score,
        ownership,
        felt_valued,
        speed,
        sincere_regret,
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

/// One of a customer's complaints, as far as their incident history goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub complaint_id: ComplaintId,
    pub filed_at: DateTime<Utc>,
    pub touchpoint: Touchpoint,
}

/// How far back earlier complaints count towards [`IncidentHistory::complaints_last_90d`].
pub const INCIDENT_WINDOW_DAYS: i64 = 90;

/// The incident history of complaint `this` among all of its customer's complaints
/// (`all` may include `this`): the complaints filed before it (by filing time, then id)
/// within [`INCIDENT_WINDOW_DAYS`], and whether one of those filed before it named the same
/// touchpoint, at any time. Relative to the filing, so a complaint's history does not
/// change as time passes, only as the customer's record is learned.
pub fn incident_history(this: &Incident, all: &[Incident]) -> IncidentHistory {
    let key = |i: &Incident| (i.filed_at, i.complaint_id.clone());
    let earlier = || all.iter().filter(|i| key(i) < key(this));
    let window = this.filed_at - TimeDelta::days(INCIDENT_WINDOW_DAYS);
    IncidentHistory {
        complaints_last_90d: u32::try_from(earlier().filter(|i| i.filed_at >= window).count())
            .unwrap_or(u32::MAX),
        same_touchpoint_before: earlier().any(|i| i.touchpoint == this.touchpoint),
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

    pub(super) fn into_violations(self) -> Vec<FieldViolation> {
        self.0
    }

    pub(super) fn finish(self) -> Result<(), Violations> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Violations(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incident_history_counts_earlier_complaints_of_the_window() {
        let t0 = DateTime::parse_from_rfc3339("2026-06-01T10:00:00Z")
            .expect("time")
            .to_utc();
        let incident = |id: &str, days: i64, touchpoint: Touchpoint| Incident {
            complaint_id: ComplaintId::parse(id).expect("id"),
            filed_at: t0 + TimeDelta::days(days),
            touchpoint,
        };
        let all = vec![
            incident("a", 0, Touchpoint::Staff),
            incident("b", 50, Touchpoint::Products),
            incident("c", 100, Touchpoint::Premises),
            incident("d", 100, Touchpoint::Products),
            incident("e", 200, Touchpoint::Staff),
        ];
        let h = |i: usize| incident_history(&all[i], &all);
        assert_eq!(h(0), IncidentHistory::default());
        // c: a and b are earlier, b within 90 days; nothing named the premises.
        assert_eq!(
            h(2),
            IncidentHistory {
                complaints_last_90d: 1,
                same_touchpoint_before: false
            }
        );
        // d: filed with c, after it by id; b named the products.
        assert_eq!(
            h(3),
            IncidentHistory {
                complaints_last_90d: 2,
                same_touchpoint_before: true
            }
        );
        // e: nothing within 90 days, but a named the staff long ago.
        assert_eq!(
            h(4),
            IncidentHistory {
                complaints_last_90d: 0,
                same_touchpoint_before: true
            }
        );
    }
    use proptest::prelude::*;

    fn t(minutes: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z")
            .expect("fixed time")
            .with_timezone(&Utc)
            + TimeDelta::minutes(minutes)
    }

    fn ctx() -> Context {
        Context::default()
    }

    fn filing(severity: &str) -> FileComplaint {
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
    fn given(history: Vec<(i64, ComplaintCommand)>) -> (Option<Complaint>, Vec<ComplaintEvent>) {
        let mut state = None;
        let mut log = Vec::new();
        for (at, cmd) in history {
            let events = handle(state.as_ref(), cmd, t(at), &ctx()).expect("given step accepted");
            for e in &events {
                state = apply(state, e);
            }
            log.extend(events);
        }
        (state, log)
    }

    fn when(
        state: &Option<Complaint>,
        at: i64,
        cmd: ComplaintCommand,
    ) -> Result<Vec<ComplaintEvent>, ComplaintError> {
        handle(state.as_ref(), cmd, t(at), &ctx())
    }

    fn file(severity: &str) -> ComplaintCommand {
        ComplaintCommand::FileComplaint(filing(severity))
    }
    fn ack(method: &str) -> ComplaintCommand {
        ComplaintCommand::AcknowledgeComplaint(AcknowledgeComplaint {
            expected_version: None,
            method: method.into(),
            note: "called, apologised".into(),
        })
    }
    fn update(note: &str, from_customer: bool) -> ComplaintCommand {
        ComplaintCommand::AddComplaintUpdate(AddComplaintUpdate {
            expected_version: None,
            note: note.into(),
            from_customer,
        })
    }
    fn wait() -> ComplaintCommand {
        ComplaintCommand::WaitOnCustomer(WaitOnCustomer {
            expected_version: None,
            note: "asked for the receipt".into(),
        })
    }
    fn escalate(reason: &str) -> ComplaintCommand {
        ComplaintCommand::EscalateComplaint(EscalateComplaint {
            expected_version: None,
            reason: reason.into(),
        })
    }
    fn resolve(remedies: &[&str]) -> ComplaintCommand {
        ComplaintCommand::ResolveComplaint(ResolveComplaint {
            expected_version: None,
            remedies: remedies.iter().map(|r| r.to_string()).collect(),
            summary: "refunded the coupon value and apologised in person".into(),
        })
    }
    fn reopen() -> ComplaintCommand {
        ComplaintCommand::ReopenComplaint(ReopenComplaint {
            expected_version: None,
            reason: "refund never arrived".into(),
        })
    }
    fn good_survey() -> SatisfactionInput {
        SatisfactionInput {
            score: 4,
            ownership: 5,
            felt_valued: 4,
            speed: 3,
            sincere_regret: 5,
            reason: String::new(),
        }
    }
    fn survey(s: SatisfactionInput) -> ComplaintCommand {
        ComplaintCommand::RecordSatisfaction(RecordSatisfaction {
            expected_version: None,
            satisfaction: s,
        })
    }
    fn good_root_cause() -> RootCauseInput {
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
    fn root_cause(r: RootCauseInput) -> ComplaintCommand {
        ComplaintCommand::RecordRootCause(RecordRootCause {
            expected_version: None,
            root_cause: r,
        })
    }
    fn warning(s: &Complaint, clock: SlaClock, fraction: u8, at: i64) -> ComplaintCommand {
        let run = s.clock_run(clock).expect("clock running");
        ComplaintCommand::RaiseSlaWarning(RaiseSlaWarning {
            expected_version: None,
            clock,
            started_at: run.started_at,
            fraction_percent: fraction,
            due_at: t(at),
        })
    }
    fn breach(s: &Complaint, clock: SlaClock, due: i64) -> ComplaintCommand {
        let run = s.clock_run(clock).expect("clock running");
        ComplaintCommand::RecordSlaBreach(RecordSlaBreach {
            expected_version: None,
            clock,
            started_at: run.started_at,
            due_at: t(due),
        })
    }

    fn fields(r: Result<Vec<ComplaintEvent>, ComplaintError>) -> Vec<String> {
        match r {
            Err(ComplaintError::Invalid(v)) => v.fields().map(str::to_owned).collect(),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn state_of(s: &Option<Complaint>) -> &Complaint {
        s.as_ref().expect("complaint exists")
    }

    #[test]
    fn a_full_lifecycle_replays_to_the_same_state() {
        let (state, log) = given(vec![
            (0, file("moderate")),
            (10, ack("phone")),
            (20, update("looked at the CCTV", false)),
            (30, wait()),
            (90, update("here is the receipt", true)),
            (100, escalate("customer asks for the regional manager")),
            (120, resolve(&["apology", "refund"])),
            (2000, survey(good_survey())),
            (2100, root_cause(good_root_cause())),
            (3000, reopen()),
            (3100, resolve(&["compensation"])),
        ]);
        let s = state_of(&state);
        assert_eq!(s.version, log.len() as u64);
        assert_eq!(s.status, ComplaintStatus::Resolved);
        assert_eq!(s.level, Level::RegionalManager);
        assert_eq!(
            s.pauses,
            vec![Pause {
                from: t(30),
                to: Some(t(90))
            }]
        );
        assert_eq!(s.resolutions.len(), 2);
        assert_eq!(
            s.resolutions[0].satisfaction.as_ref().map(|x| x.score),
            Some(4)
        );
        assert_eq!(s.reopenings.len(), 1);
        assert_eq!(s.resolved_at, Some(t(3100)));
        assert_eq!(
            s.first_response.as_ref().map(|f| (f.at, f.method)),
            Some((t(10), ContactMethod::Phone))
        );
        assert!(
            log.iter()
                .any(|e| matches!(e, ComplaintEvent::CustomerResponded { .. }))
        );

        // Replaying the log, and the log after a trip through JSON, rebuilds it exactly.
        assert_eq!(replay(&log), state);
        let json = serde_json::to_string(&log).expect("json");
        assert!(json.contains(r#""type":"complaint_filed""#), "{json}");
        assert!(json.contains(r#""kind":"manual""#), "{json}");
        let back: Vec<ComplaintEvent> = serde_json::from_str(&json).expect("decode");
        assert_eq!(replay(&back), state);
    }

    #[test]
    fn the_clocks_run_as_the_status_says() {
        let (state, _) = given(vec![(0, file("minor"))]);
        let s = state_of(&state);
        assert_eq!(
            s.running_clocks(),
            vec![
                ClockRun {
                    clock: SlaClock::FirstResponse,
                    level: Level::StoreManager,
                    started_at: t(0)
                },
                ClockRun {
                    clock: SlaClock::Resolution,
                    level: Level::StoreManager,
                    started_at: t(0)
                },
            ]
        );
        let (state, _) = given(vec![
            (0, file("minor")),
            (5, ack("letter")),
            (9, update("ordered a part", false)),
        ]);
        let clocks: Vec<_> = state_of(&state)
            .running_clocks()
            .iter()
            .map(|r| (r.clock, r.started_at))
            .collect();
        assert_eq!(
            clocks,
            vec![(SlaClock::Update, t(9)), (SlaClock::Resolution, t(0))]
        );
    }

    #[test]
    fn every_invalid_input_names_its_field_and_emits_nothing() {
        let bad_filing = FileComplaint {
            expected_version: None,
            complaint_id: ComplaintId::parse("c-1").expect("id"),
            idempotency_key: "has space".into(),
            customer: CustomerInput::CardToken("4111 1111 1111 1111".into()),
            contact: SealedContact::new(vec![]),
            store_id: "".into(),
            channel: "pigeon".into(),
            touchpoint: "vibes".into(),
            severity: "urgent".into(),
            description: "   ".into(),
            occurred_at: t(60 * 24),
        };
        assert_eq!(
            fields(when(&None, 0, ComplaintCommand::FileComplaint(bad_filing))),
            [
                "idempotency_key",
                "customer.card_token",
                "contact",
                "store_id",
                "channel",
                "touchpoint",
                "severity",
                "description",
                "occurred_at"
            ]
        );
        let mut old = filing("minor");
        old.occurred_at = t(-60 * 24 * 400);
        old.customer = CustomerInput::Missing;
        assert_eq!(
            fields(when(&None, 0, ComplaintCommand::FileComplaint(old))),
            ["customer", "occurred_at"]
        );
        let mut pan = filing("minor");
        pan.customer = CustomerInput::CardNumber("4111111111111111".into());
        assert_eq!(
            fields(when(&None, 0, ComplaintCommand::FileComplaint(pan))),
            ["customer.card_number"]
        );

        let (open, _) = given(vec![(0, file("major"))]);
        assert_eq!(fields(when(&open, 1, ack("fax"))), ["method"]);
        assert_eq!(fields(when(&open, 1, ack("email"))), ["method"]);
        assert_eq!(fields(when(&open, 1, update(" ", false))), ["note"]);
        assert_eq!(fields(when(&open, 1, escalate(""))), ["reason"]);
        assert_eq!(fields(when(&open, 1, resolve(&[]))), ["remedies"]);
        assert_eq!(
            fields(when(&open, 1, resolve(&["refund", "hug", "refund"]))),
            ["remedies[1]", "remedies[2]"]
        );
        let no_summary = ComplaintCommand::ResolveComplaint(ResolveComplaint {
            expected_version: None,
            remedies: vec!["fix".into()],
            summary: String::new(),
        });
        assert_eq!(fields(when(&open, 1, no_summary)), ["summary"]);
        let bad_rc = RootCauseInput {
            whys: vec!["a".into(), "".into()],
            category: "weather".into(),
            corrective_action: "".into(),
        };
        assert_eq!(
            fields(when(&open, 1, root_cause(bad_rc))),
            [
                "root_cause.whys[1]",
                "root_cause.category",
                "root_cause.corrective_action"
            ]
        );
        let too_many = RootCauseInput {
            whys: vec!["why".into(); 6],
            ..good_root_cause()
        };
        assert_eq!(
            fields(when(&open, 1, root_cause(too_many))),
            ["root_cause.whys"]
        );
        let no_whys = RootCauseInput {
            whys: vec![],
            ..good_root_cause()
        };
        assert_eq!(
            fields(when(&open, 1, root_cause(no_whys))),
            ["root_cause.whys"]
        );

        let s = state_of(&open);
        let mut w = warning(s, SlaClock::Resolution, 0, 10);
        if let ComplaintCommand::RaiseSlaWarning(c) = &mut w {
            c.due_at = c.started_at;
        }
        assert_eq!(fields(when(&open, 1, w)), ["fraction_percent", "due_at"]);
        assert_eq!(
            fields(when(&open, 1, breach(s, SlaClock::Resolution, 30))),
            ["due_at"]
        );

        let (acked, _) = given(vec![(0, file("minor")), (1, ack("phone"))]);
        assert_eq!(fields(when(&acked, 2, wait_with(""))), ["note"]);

        let (resolved, _) = given(vec![(0, file("minor")), (1, resolve(&["fix"]))]);
        let bad = SatisfactionInput {
            score: 0,
            ownership: 6,
            felt_valued: 1,
            speed: 5,
            sincere_regret: 9,
            reason: String::new(),
        };
        assert_eq!(
            fields(when(&resolved, 2, survey(bad))),
            [
                "satisfaction.score",
                "satisfaction.ownership",
                "satisfaction.sincere_regret"
            ]
        );
        assert_eq!(fields(when(&resolved, 2, reopen_with(""))), ["reason"]);
    }

    fn wait_with(note: &str) -> ComplaintCommand {
        ComplaintCommand::WaitOnCustomer(WaitOnCustomer {
            expected_version: None,
            note: note.into(),
        })
    }
    fn reopen_with(reason: &str) -> ComplaintCommand {
        ComplaintCommand::ReopenComplaint(ReopenComplaint {
            expected_version: None,
            reason: reason.into(),
        })
    }

    #[test]
    fn out_of_range_answers_are_reported_as_sent() {
        let (resolved, _) = given(vec![(0, file("minor")), (1, resolve(&["apology"]))]);
        let s = SatisfactionInput {
            score: 256,
            speed: u32::MAX,
            ..good_survey()
        };
        match when(&resolved, 2, survey(s)) {
            Err(ComplaintError::Invalid(v)) => {
                let d: Vec<(&str, &str)> =
                    v.0.iter()
                        .map(|f| (f.field.as_str(), f.description.as_str()))
                        .collect();
                assert_eq!(
                    d,
                    [
                        ("satisfaction.score", "must be 1..=5, got 256"),
                        ("satisfaction.speed", "must be 1..=5, got 4294967295"),
                    ]
                );
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn input_violations_name_a_commands_own_fields_whatever_the_complaint() {
        let names = |cmd: ComplaintCommand| {
            input_violations(&cmd)
                .into_iter()
                .map(|v| v.field)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(ack("carrier_pigeon")), ["method"]);
        assert_eq!(
            names(ack("letter")),
            Vec::<String>::new(),
            "needs the severity"
        );
        assert_eq!(names(wait_with(" ")), ["note"]);
        assert_eq!(names(reopen_with("")), ["reason"]);
        assert_eq!(
            names(ComplaintCommand::ResolveComplaint(ResolveComplaint {
                expected_version: None,
                remedies: vec!["apology".into(), "apology".into()],
                summary: String::new(),
            })),
            ["remedies[1]", "summary"]
        );
        assert_eq!(
            names(survey(SatisfactionInput {
                score: 9,
                ..good_survey()
            })),
            ["satisfaction.score"]
        );
        assert_eq!(names(file("minor")), Vec::<String>::new());
    }

    #[test]
    fn a_low_score_needs_a_reason() {
        let (resolved, _) = given(vec![(0, file("minor")), (1, resolve(&["apology"]))]);
        for score in [1, 2] {
            let s = SatisfactionInput {
                score,
                ..good_survey()
            };
            assert_eq!(
                fields(when(&resolved, 2, survey(s))),
                ["satisfaction.reason"]
            );
        }
        let s = SatisfactionInput {
            score: 2,
            reason: "nobody called back".into(),
            ..good_survey()
        };
        let events = when(&resolved, 2, survey(s)).expect("accepted");
        assert!(matches!(
            &events[..],
            [ComplaintEvent::SatisfactionRecorded { satisfaction, .. }]
                if satisfaction.reason.as_deref() == Some("nobody called back")
        ));
        let s = SatisfactionInput {
            score: 3,
            ..good_survey()
        };
        assert!(when(&resolved, 2, survey(s)).is_ok());
    }

    #[test]
    fn commands_out_of_order_are_invalid_transitions() {
        let (open, _) = given(vec![(0, file("minor"))]);
        let transition = |r: Result<Vec<ComplaintEvent>, ComplaintError>| match r {
            Err(ComplaintError::InvalidTransition {
                from_status,
                command,
            }) => (from_status, command),
            other => panic!("expected InvalidTransition, got {other:?}"),
        };
        assert_eq!(
            transition(when(&open, 1, reopen())),
            (ComplaintStatus::Open, "reopen_complaint")
        );
        assert_eq!(
            transition(when(&open, 1, survey(good_survey()))),
            (ComplaintStatus::Open, "record_satisfaction")
        );
        assert_eq!(
            transition(when(&open, 1, wait())),
            (ComplaintStatus::Open, "wait_on_customer")
        );

        let (resolved, _) = given(vec![
            (0, file("minor")),
            (1, ack("letter")),
            (2, resolve(&["fix"])),
        ]);
        assert_eq!(
            transition(when(&resolved, 3, resolve(&["fix"]))),
            (ComplaintStatus::Resolved, "resolve_complaint")
        );
        assert_eq!(
            transition(when(&resolved, 3, ack("phone"))),
            (ComplaintStatus::Resolved, "acknowledge_complaint")
        );
        assert_eq!(
            transition(when(&resolved, 3, escalate("why not"))),
            (ComplaintStatus::Resolved, "escalate_complaint")
        );

        let (surveyed, _) = given(vec![
            (0, file("minor")),
            (1, resolve(&["fix"])),
            (2, survey(good_survey())),
        ]);
        assert_eq!(
            when(&surveyed, 3, survey(good_survey())),
            Err(ComplaintError::AlreadyRecorded {
                what: "satisfaction"
            })
        );
        assert_eq!(when(&None, 0, ack("phone")), Err(ComplaintError::NotFound));
    }

    #[test]
    fn reopening_a_resolved_complaint_restarts_the_level_clocks() {
        let (state, _) = given(vec![
            (0, file("minor")),
            (5, ack("phone")),
            (60, resolve(&["replacement"])),
            (61, survey(good_survey())),
            (500, reopen()),
        ]);
        let s = state_of(&state);
        assert_eq!(s.status, ComplaintStatus::Acknowledged);
        assert_eq!(s.resolved_at, None);
        assert_eq!(s.current_resolution(), None);
        assert_eq!(
            s.clock_run(SlaClock::Resolution).map(|r| r.started_at),
            Some(t(500))
        );
        // A new resolution gets its own survey.
        let (state, _) = given(vec![
            (0, file("minor")),
            (60, resolve(&["replacement"])),
            (61, survey(good_survey())),
            (500, reopen()),
            (600, resolve(&["refund"])),
            (601, survey(good_survey())),
        ]);
        let s = state_of(&state);
        assert_eq!(s.status, ComplaintStatus::Resolved);
        assert!(s.resolutions.iter().all(|r| r.satisfaction.is_some()));
        // Never acknowledged: reopening goes back to open, first response still owed.
        assert_eq!(s.first_response, None);
        let reopened = apply(
            state.clone(),
            &ComplaintEvent::ComplaintReopened {
                reason: "x".into(),
                at: t(700),
            },
        );
        assert_eq!(reopened.map(|c| c.status), Some(ComplaintStatus::Open));
    }

    #[test]
    fn version_conflicts_are_refused() {
        let (state, _) = given(vec![(0, file("minor")), (1, ack("phone"))]);
        let cmd = ComplaintCommand::EscalateComplaint(EscalateComplaint {
            expected_version: Some(1),
            reason: "stale view".into(),
        });
        assert_eq!(
            when(&state, 2, cmd),
            Err(ComplaintError::VersionConflict {
                expected: 1,
                current: 2
            })
        );
        let cmd = ComplaintCommand::EscalateComplaint(EscalateComplaint {
            expected_version: Some(2),
            reason: "fresh view".into(),
        });
        assert!(when(&state, 2, cmd).is_ok());
        let mut f = filing("minor");
        f.expected_version = Some(3);
        assert_eq!(
            when(&None, 0, ComplaintCommand::FileComplaint(f)),
            Err(ComplaintError::VersionConflict {
                expected: 3,
                current: 0
            })
        );
    }

    #[test]
    fn a_retried_filing_changes_nothing_and_another_key_is_refused() {
        let (state, _) = given(vec![(0, file("minor"))]);
        assert_eq!(when(&state, 5, file("minor")), Ok(vec![]));
        let mut other = filing("minor");
        other.idempotency_key = "key-2".into();
        assert_eq!(
            when(&state, 5, ComplaintCommand::FileComplaint(other)),
            Err(ComplaintError::AlreadyExists)
        );
    }

    #[test]
    fn major_complaints_need_a_personal_first_response() {
        for severity in ["major", "critical"] {
            let (open, _) = given(vec![(0, file(severity))]);
            assert_eq!(fields(when(&open, 1, ack("letter"))), ["method"]);
            assert!(when(&open, 1, ack("in_person")).is_ok());
        }
        let (open, _) = given(vec![(0, file("moderate"))]);
        assert!(when(&open, 1, ack("email")).is_ok());
    }

    #[test]
    fn timer_commands_are_idempotent_and_stale_ones_are_ignored() {
        let (state, _) = given(vec![(0, file("minor"))]);
        let s = state_of(&state);
        let events = when(&state, 45, warning(s, SlaClock::FirstResponse, 75, 60)).expect("ok");
        assert_eq!(events.len(), 1);
        let state = events.iter().fold(state.clone(), apply);
        let s = state_of(&state);
        // The same warning again: nothing. Another fraction: a new warning.
        assert_eq!(
            when(&state, 46, warning(s, SlaClock::FirstResponse, 75, 60)),
            Ok(vec![])
        );
        assert_eq!(
            when(&state, 46, warning(s, SlaClock::FirstResponse, 90, 60)).map(|e| e.len()),
            Ok(1)
        );

        // Breach once; the second is a no-op even though the level moved on.
        let cmd = breach(s, SlaClock::FirstResponse, 60);
        let events = when(&state, 61, cmd.clone()).expect("ok");
        assert_eq!(events.len(), 2);
        let after = events.iter().fold(state.clone(), apply);
        assert_eq!(when(&after, 62, cmd), Ok(vec![]));

        // A run that ended (the complaint was answered) makes its warning stale.
        let (acked, _) = given(vec![(0, file("minor")), (10, ack("phone"))]);
        let stale = ComplaintCommand::RaiseSlaWarning(RaiseSlaWarning {
            expected_version: None,
            clock: SlaClock::FirstResponse,
            started_at: t(0),
            fraction_percent: 50,
            due_at: t(60),
        });
        assert_eq!(when(&acked, 30, stale), Ok(vec![]));
        // An update restarted the update clock: the old run's breach is stale.
        let old_update_run = state_of(&acked)
            .clock_run(SlaClock::Update)
            .expect("running");
        let (updated, _) = given(vec![
            (0, file("minor")),
            (10, ack("phone")),
            (20, update("on it", false)),
        ]);
        let stale = ComplaintCommand::RecordSlaBreach(RecordSlaBreach {
            expected_version: None,
            clock: SlaClock::Update,
            started_at: old_update_run.started_at,
            due_at: t(40),
        });
        assert_eq!(when(&updated, 41, stale), Ok(vec![]));

        // Paused or resolved: no timer event.
        let (waiting, _) = given(vec![(0, file("minor")), (10, ack("phone")), (20, wait())]);
        let w = state_of(&waiting);
        assert_eq!(
            when(&waiting, 50, breach(w, SlaClock::Resolution, 40)),
            Ok(vec![])
        );
        let (resolved, _) = given(vec![(0, file("minor")), (10, resolve(&["fix"]))]);
        assert!(state_of(&resolved).running_clocks().is_empty());
    }

    #[test]
    fn breaches_climb_the_chain_and_stay_breached_at_the_owner() {
        let (mut state, _) = given(vec![(0, file("moderate"))]);
        let mut now = 0;
        let chain = [
            (Level::StoreManager, Some(Level::RegionalManager)),
            (Level::RegionalManager, Some(Level::Owner)),
            (Level::Owner, None),
        ];
        for (from, to) in chain {
            let s = state_of(&state).clone();
            assert_eq!(s.level, from);
            let started = s
                .clock_run(SlaClock::Resolution)
                .expect("running")
                .started_at;
            assert_eq!(
                started,
                t(now),
                "each level's clock starts when it takes over"
            );
            now += 120;
            let events = when(&state, now, breach(&s, SlaClock::Resolution, now)).expect("ok");
            match to {
                Some(to) => assert!(matches!(
                    &events[..],
                    [
                        ComplaintEvent::SlaBreached { run, .. },
                        ComplaintEvent::ComplaintEscalated { from: f, to: t2, reason: EscalationReason::Breach { clock: SlaClock::Resolution }, .. },
                    ] if run.level == from && *f == from && *t2 == to
                )),
                None => assert!(matches!(&events[..], [ComplaintEvent::SlaBreached { .. }])),
            }
            state = events.iter().fold(state, apply);
        }
        let s = state_of(&state);
        assert_eq!(s.level, Level::Owner);
        assert!(s.is_breached());
        assert_eq!(s.breaches.len(), 3);
        assert_eq!(
            when(&state, now + 1, escalate("more")),
            Err(ComplaintError::NoLevelAbove(Level::Owner))
        );
    }

    #[test]
    fn critical_complaints_start_higher() {
        let (state, _) = given(vec![(0, file("critical"))]);
        assert_eq!(state_of(&state).level, Level::RegionalManager);
        let owner_first = Context {
            critical_starts_at: Level::Owner,
            ..Context::default()
        };
        let events = handle(None, file("critical"), t(0), &owner_first).expect("ok");
        assert_eq!(replay(&events).map(|c| c.level), Some(Level::Owner));
        let events = handle(None, file("major"), t(0), &owner_first).expect("ok");
        assert_eq!(replay(&events).map(|c| c.level), Some(Level::StoreManager));
    }

    #[test]
    fn contact_details_are_checked_before_sealing_and_never_printed() {
        let good = ContactDetails {
            name: "Ada Lovelace".into(),
            phone: "+44 20 7946 0000".into(),
            email: "ada@example.com".into(),
            address: String::new(),
        };
        assert_eq!(good.validate(), Ok(()));
        assert_eq!(
            ContactDetails::from_plaintext(&good.to_plaintext()),
            Some(good.clone())
        );
        assert!(!format!("{good:?}").contains("Ada"));
        let bad = ContactDetails {
            name: String::new(),
            phone: "call me".into(),
            email: "ada@localhost".into(),
            address: String::new(),
        };
        let fields: Vec<String> = bad
            .validate()
            .expect_err("bad")
            .fields()
            .map(str::to_owned)
            .collect();
        assert_eq!(fields, ["contact.name", "contact.phone", "contact.email"]);
        let unreachable = ContactDetails {
            name: "Ada".into(),
            ..ContactDetails::default()
        };
        let fields: Vec<String> = unreachable
            .validate()
            .expect_err("bad")
            .fields()
            .map(str::to_owned)
            .collect();
        assert_eq!(fields, ["contact"]);

        let sealed = SealedContact::new(vec![0xde, 0xad]);
        assert_eq!(format!("{sealed:?}"), "SealedContact(<2 bytes>)");
        assert_eq!(
            serde_json::to_string(&sealed).ok().as_deref(),
            Some("\"dead\"")
        );
    }

    fn customer(
        churn_state: ChurnState,
        clv_minor: i64,
        value_at_risk_minor: i64,
    ) -> CustomerContext {
        CustomerContext {
            value_at_risk_minor,
            clv_minor,
            churn_state,
        }
    }

    #[test]
    fn priority_orders_as_documented() {
        let plain = customer(ChurnState::Active, 1_000, 0);
        let first = IncidentHistory::default();
        let p = |s, c: &CustomerContext, i: &IncidentHistory| priority(s, c, i).score;

        // Severity alone.
        let by_severity: Vec<u32> = Severity::ALL
            .iter()
            .map(|s| p(*s, &plain, &first))
            .collect();
        assert!(
            by_severity.windows(2).all(|w| w[0] < w[1]),
            "{by_severity:?}"
        );
        // An at-risk, high-value customer moves up past the same complaint from an active one.
        let slipping = customer(ChurnState::AtRisk, 600_000, 200_000);
        assert!(p(Severity::Moderate, &slipping, &first) > p(Severity::Moderate, &plain, &first));
        // ... even past a bare major complaint.
        assert!(p(Severity::Moderate, &slipping, &first) > p(Severity::Major, &plain, &first));
        // A repeat incident moves up; the same touchpoint failing again more so.
        let repeat = IncidentHistory {
            complaints_last_90d: 2,
            same_touchpoint_before: false,
        };
        let same = IncidentHistory {
            complaints_last_90d: 2,
            same_touchpoint_before: true,
        };
        assert!(p(Severity::Minor, &plain, &repeat) > p(Severity::Minor, &plain, &first));
        assert!(p(Severity::Minor, &plain, &same) > p(Severity::Minor, &plain, &repeat));
        // Value at risk only counts for a customer who is slipping.
        let active_rich = customer(ChurnState::Active, 1_000, 900_000);
        assert_eq!(
            p(Severity::Minor, &active_rich, &first),
            p(Severity::Minor, &plain, &first)
        );
        let parts = priority(Severity::Major, &slipping, &same);
        assert_eq!(
            parts.score,
            parts.severity_points + parts.value_points + parts.churn_points + parts.incident_points
        );
    }

    fn any_churn() -> impl Strategy<Value = ChurnState> {
        prop_oneof![
            Just(ChurnState::Active),
            Just(ChurnState::AtRisk),
            Just(ChurnState::Defected),
            Just(ChurnState::WonBack)
        ]
    }

    fn any_context() -> impl Strategy<Value = (CustomerContext, IncidentHistory)> {
        (
            any_churn(),
            any::<i64>(),
            any::<i64>(),
            any::<u32>(),
            any::<bool>(),
        )
            .prop_map(|(churn_state, clv_minor, value_at_risk_minor, n, same)| {
                (
                    CustomerContext {
                        value_at_risk_minor,
                        clv_minor,
                        churn_state,
                    },
                    IncidentHistory {
                        complaints_last_90d: n,
                        same_touchpoint_before: same,
                    },
                )
            })
    }

    proptest! {
        #[test]
        fn critical_always_outranks_minor((c1, i1) in any_context(), (c2, i2) in any_context()) {
            prop_assert!(priority(Severity::Critical, &c1, &i1).score > priority(Severity::Minor, &c2, &i2).score);
        }

        #[test]
        fn more_incidents_never_lower_priority((c, i) in any_context(), extra in 0u32..10) {
            let more = IncidentHistory {
                complaints_last_90d: i.complaints_last_90d.saturating_add(extra),
                ..i
            };
            prop_assert!(priority(Severity::Moderate, &c, &more).score >= priority(Severity::Moderate, &c, &i).score);
        }
    }

    /// Commands that are well-formed; whether they fit the state is up to `handle`.
    fn any_command(state: Option<Complaint>) -> BoxedStrategy<ComplaintCommand> {
        let Some(s) = state else {
            return prop_oneof![
                Just("minor"),
                Just("moderate"),
                Just("major"),
                Just("critical")
            ]
            .prop_map(file)
            .boxed();
        };
        let run_started = |clock| s.clock_run(clock).map_or(s.level_since, |r| r.started_at);
        let clocks: Vec<(SlaClock, DateTime<Utc>)> = SlaClock::ALL
            .iter()
            .map(|c| (*c, run_started(*c)))
            .collect();
        let timer = (
            0usize..3,
            prop_oneof![Just(50u8), Just(75u8)],
            any::<bool>(),
        )
            .prop_map(move |(i, fraction, is_breach)| {
                let (clock, started_at) = clocks[i];
                if is_breach {
                    ComplaintCommand::RecordSlaBreach(RecordSlaBreach {
                        expected_version: None,
                        clock,
                        started_at,
                        due_at: started_at + TimeDelta::minutes(1),
                    })
                } else {
                    ComplaintCommand::RaiseSlaWarning(RaiseSlaWarning {
                        expected_version: None,
                        clock,
                        started_at,
                        fraction_percent: fraction,
                        due_at: started_at + TimeDelta::minutes(1),
                    })
                }
            });
        prop_oneof![
            if s.severity >= Severity::Major {
                prop_oneof![Just("phone"), Just("in_person")].boxed()
            } else {
                prop_oneof![
                    Just("phone"),
                    Just("in_person"),
                    Just("letter"),
                    Just("email")
                ]
                .boxed()
            }
            .prop_map(ack),
            any::<bool>().prop_map(|c| update("note", c)),
            Just(wait()),
            Just(escalate("manual")),
            proptest::sample::subsequence(
                vec!["apology", "refund", "replacement", "compensation", "fix"],
                1..=3
            )
            .prop_map(|r| resolve(&r)),
            Just(reopen()),
            (1u32..=5, 1u32..=5).prop_map(|(score, f)| survey(SatisfactionInput {
                score,
                ownership: f,
                felt_valued: f,
                speed: f,
                sincere_regret: f,
                reason: "because".into(),
            })),
            Just(root_cause(good_root_cause())),
            timer.clone(),
            timer,
        ]
        .boxed()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any sequence of valid commands: the events handle returned, replayed from the
        /// start (also after a JSON round trip), give the state built step by step; the
        /// version counts the events; the level never goes down; refusals emit nothing.
        #[test]
        fn replaying_handled_events_rebuilds_the_state(seeds in proptest::collection::vec(any::<u64>(), 1..40)) {
            use proptest::strategy::ValueTree;
            use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

            let mut state: Option<Complaint> = None;
            let mut log: Vec<ComplaintEvent> = Vec::new();
            let mut now = t(0);
            for seed in seeds {
                let mut bytes = [0u8; 32];
                bytes[..8].copy_from_slice(&seed.to_le_bytes());
                let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
                let cmd = any_command(state.clone()).new_tree(&mut runner).expect("tree").current();
                now += TimeDelta::minutes((seed % 300) as i64 + 1);
                let level_before = state.as_ref().map(|s| s.level);
                match handle(state.as_ref(), cmd, now, &ctx()) {
                    Ok(events) => {
                        for e in &events {
                            state = apply(state, e);
                        }
                        log.extend(events);
                    }
                    Err(ComplaintError::Invalid(v)) => prop_assert!(false, "valid command refused: {v}"),
                    Err(_) => {}
                }
                let s = state.as_ref().expect("filed first");
                prop_assert_eq!(s.version, log.len() as u64);
                prop_assert!(level_before.is_none_or(|l| l <= s.level));
            }
            prop_assert_eq!(&replay(&log), &state);
            let json = serde_json::to_vec(&log).expect("json");
            let back: Vec<ComplaintEvent> = serde_json::from_slice(&json).expect("decode");
            prop_assert_eq!(&replay(&back), &state);
        }
    }
}
