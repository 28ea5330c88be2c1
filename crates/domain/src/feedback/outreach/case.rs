//! What an outreach case is as its events left it: the [`OutreachCase`] and the states a
//! customer moves between.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::feedback::vocab::{ContactMethod, DefectionReason, OutreachOutcome};
use crate::ids::{CustomerKey, OutreachCaseId, StoreId};

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

    /// `at_risk` or `defected`, as churn signals spell them.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "at_risk" => Some(DefectorState::AtRisk),
            "defected" => Some(DefectorState::Defected),
            _ => None,
        }
    }

    /// How urgent: a defection is more so than a risk.
    pub(super) fn severity(self) -> u8 {
        match self {
            DefectorState::AtRisk => 1,
            DefectorState::Defected => 2,
        }
    }
}

/// How churn scoring reported a customer back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Returned {
    /// Back to their usual pattern from at risk.
    Active,
    /// Back after a defection.
    WonBack,
}

impl Returned {
    pub fn as_str(self) -> &'static str {
        match self {
            Returned::Active => "active",
            Returned::WonBack => "won_back",
        }
    }

    /// `active` or `won_back`, as churn signals spell them.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "active" => Some(Returned::Active),
            "won_back" => Some(Returned::WonBack),
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
    /// The episode's first day: the assessment day of the signal that opened the case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<NaiveDate>,
    /// The day churn scoring reported the customer back, which ended the episode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returned_on: Option<NaiveDate>,
}

impl OutreachCase {
    /// The first day of the case's episode (for a case opened before episodes were kept,
    /// the UTC day it was opened).
    pub fn episode_start(&self) -> NaiveDate {
        self.since.unwrap_or_else(|| self.opened_at.date_naive())
    }

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

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;
    use crate::aggregate::Aggregate;

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
        let s = reached
            .iter()
            .fold(Some(s), OutreachCase::apply)
            .expect("still there");
        assert!(!s.is_overdue(t(51)));
    }
}
