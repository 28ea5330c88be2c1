//! The next SLA alarm of a complaint, as a pure function of its state and configuration:
//! what the deadline index holds (`fd:{p<N>}`, see [`crate::projection`]) and what the
//! timer ([`crate::timers`]) fires.
//!
//! # Which target a clock runs against
//!
//! The aggregate says which clock runs at which level since when
//! ([`Complaint::running_clocks`]); the domain's [`SlaPolicy::run_target`] gives each run
//! its target and [`SlaPolicy::run_schedule`] its alarms:
//!
//! - `FirstResponse` → `targets[severity].first_response`;
//! - `Update` → `targets[severity].update_interval`;
//! - `Resolution` → the **earlier** of the severity's `resolution` target, counted from
//!   the filing, and the escalation target of the run's level (`escalation.store_manager`
//!   / `regional_manager` / `owner`), counted from when the complaint reached the level
//!   (the aggregate's `level_since`). Its breach moves the complaint up, where the new
//!   level's run is again due at the earlier of the two (a severity target already spent
//!   leaves the level its own).
//!
//! Every clock runs in the business time of the store's calendar ([`Directory::calendar_for`])
//! and stands still during the complaint's pauses (waiting on the customer). A complaint
//! that is resolved or waiting on the customer has no alarm: nothing may fire until it
//! runs again. An alarm already recorded on the complaint for the same run (a warning of
//! the same percent, or any alarm of a run already breached) is not due again, so the
//! index computed from the state alone is the same on every replay.

use chrono::{DateTime, Utc};
use churnguard_domain::feedback::complaint::{
    ClockRun, Complaint, ComplaintCommand, ComplaintStatus, RaiseSlaWarning, RecordSlaBreach,
};
use churnguard_domain::feedback::sla::{self, Directory, SlaPolicy};

/// What an alarm says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlarmKind {
    /// This percent of the target has run.
    Warning(u8),
    /// The whole target has run.
    Breach,
}

/// One alarm of one clock run, and the instant it falls due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueAlarm {
    pub run: ClockRun,
    pub kind: AlarmKind,
    pub due_at: DateTime<Utc>,
}

impl DueAlarm {
    /// The timer command that records this alarm.
    pub fn command(&self) -> ComplaintCommand {
        match self.kind {
            AlarmKind::Warning(fraction_percent) => {
                ComplaintCommand::RaiseSlaWarning(RaiseSlaWarning {
                    expected_version: None,
                    clock: self.run.clock,
                    started_at: self.run.started_at,
                    fraction_percent,
                    due_at: self.due_at,
                })
            }
            AlarmKind::Breach => ComplaintCommand::RecordSlaBreach(RecordSlaBreach {
                expected_version: None,
                clock: self.run.clock,
                started_at: self.run.started_at,
                due_at: self.due_at,
            }),
        }
    }
}

/// A warning fraction as the percent the aggregate records (0.5 → 50).
fn percent(fraction: f64) -> u8 {
    (fraction * 100.0).round().clamp(1.0, 99.0) as u8
}

/// Every alarm of the complaint's running clocks not yet recorded, in the order to fire
/// them: by instant, warnings before breaches at the same instant, then by clock.
pub fn pending_alarms(
    complaint: &Complaint,
    policy: &SlaPolicy,
    directory: &Directory,
) -> Vec<DueAlarm> {
    if matches!(
        complaint.status,
        ComplaintStatus::Resolved | ComplaintStatus::WaitingOnCustomer
    ) {
        return Vec::new();
    }
    let calendar = directory.calendar_for(complaint.store_id.as_str());
    let mut due = Vec::new();
    for run in complaint.running_clocks() {
        if complaint.breaches.iter().any(|b| b.run == run) {
            continue;
        }
        let schedule = policy.run_schedule(calendar, complaint, &run);
        for (alarm, at) in schedule.alarms() {
            let kind = match alarm {
                sla::Alarm::Warning(f) => AlarmKind::Warning(percent(f)),
                sla::Alarm::Breach => AlarmKind::Breach,
            };
            if let AlarmKind::Warning(p) = kind
                && complaint
                    .warnings
                    .iter()
                    .any(|w| w.run == run && w.fraction_percent == Some(p))
            {
                continue;
            }
            due.push(DueAlarm {
                run,
                kind,
                due_at: at,
            });
        }
    }
    due.sort_by_key(|a| {
        (
            a.due_at,
            matches!(a.kind, AlarmKind::Breach),
            a.run.clock,
            a.kind,
        )
    });
    due
}

/// The first alarm to fire, if any: what the deadline index holds for the complaint.
pub fn next_alarm(
    complaint: &Complaint,
    policy: &SlaPolicy,
    directory: &Directory,
) -> Option<DueAlarm> {
    pending_alarms(complaint, policy, directory)
        .into_iter()
        .next()
}

/// When each running clock not yet breached will breach: its due time.
pub fn breach_dues(
    complaint: &Complaint,
    policy: &SlaPolicy,
    directory: &Directory,
) -> Vec<(ClockRun, DateTime<Utc>)> {
    pending_alarms(complaint, policy, directory)
        .into_iter()
        .filter(|a| a.kind == AlarmKind::Breach)
        .map(|a| (a.run, a.due_at))
        .collect()
}
