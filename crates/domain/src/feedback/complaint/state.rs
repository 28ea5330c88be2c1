//! What a complaint is as its events left it: the [`Complaint`] and the values recorded
//! on it, and which SLA clocks run since when.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::contact::SealedContact;
use crate::feedback::vocab::{Channel, ContactMethod, Level, Remedy, Severity, Touchpoint};
use crate::ids::{ComplaintId, CustomerKey, StoreId};

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
    /// Reaching this level (or a reopening) until resolution; due by the earlier of the
    /// level's target and the severity's (counted from filing).
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
/// it into a deadline (business time, the run's target from
/// [`SlaPolicy::run_target`](crate::feedback::sla::SlaPolicy::run_target), minus
/// [`Complaint::pauses`]) and echoes `started_at` in its commands so a warning for a
/// finished run is recognised as stale.
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

/// A complaint as its events left it. Change it only through
/// [`Aggregate::apply`](crate::aggregate::Aggregate::apply); fields are public
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
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

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
}
