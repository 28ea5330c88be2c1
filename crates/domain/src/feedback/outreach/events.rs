//! What happened to an outreach case: the events its stream holds.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::case::{DefectorState, Returned};
use crate::feedback::vocab::{ContactMethod, DefectionReason, OutreachOutcome};
use crate::ids::{CustomerKey, OutreachCaseId, StoreId};

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
        /// The episode's first day (absent in cases opened before episodes were kept).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        as_of: Option<NaiveDate>,
    },
    OutreachRecorded {
        reason: Option<DefectionReason>,
        free_text: Option<String>,
        outcome: OutreachOutcome,
        method: ContactMethod,
        at: DateTime<Utc>,
    },
    /// Churn scoring reported the customer defected while the at-risk case was open.
    OutreachEscalated {
        signal_id: String,
        state: DefectorState,
        value_at_risk_minor: i64,
        clv_minor: i64,
        /// The case's deadline from now on.
        due_at: DateTime<Utc>,
        as_of: NaiveDate,
        at: DateTime<Utc>,
    },
    /// Churn scoring reported the customer back: the episode is over.
    OutreachEnded {
        signal_id: String,
        returned: Returned,
        as_of: NaiveDate,
        at: DateTime<Utc>,
    },
}

impl OutreachEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            OutreachEvent::OutreachOpened { .. } => "churnguard.feedback.outreach_opened.v1",
            OutreachEvent::OutreachRecorded { .. } => "churnguard.feedback.outreach_recorded.v1",
            OutreachEvent::OutreachEscalated { .. } => "churnguard.feedback.outreach_escalated.v1",
            OutreachEvent::OutreachEnded { .. } => "churnguard.feedback.outreach_ended.v1",
        }
    }

    pub fn at(&self) -> DateTime<Utc> {
        match self {
            OutreachEvent::OutreachOpened { at, .. }
            | OutreachEvent::OutreachRecorded { at, .. }
            | OutreachEvent::OutreachEscalated { at, .. }
            | OutreachEvent::OutreachEnded { at, .. } => *at,
        }
    }
}
