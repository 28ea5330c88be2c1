//! What happened to a complaint: the events its stream holds, past tense and versioned.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::contact::SealedContact;
use super::state::{ClockRun, Complainant, EscalationReason, RootCause, Satisfaction};
use crate::feedback::vocab::{Channel, ContactMethod, Level, Remedy, Severity, Touchpoint};
use crate::ids::{ComplaintId, StoreId};

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
