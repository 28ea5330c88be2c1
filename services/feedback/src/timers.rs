//! The SLA timer: fires the warnings and breaches the deadline index says are due.
//!
//! Any number of timer instances may tick on the same partition. Each alarm becomes a
//! `RaiseSlaWarning` / `RecordSlaBreach` command through [`Complaints::execute`]: of two
//! instances firing the same alarm, the projection's base-version rule accepts the first
//! commit in the log and the aggregate answers the second (decided on the newer state)
//! with no events, so every alarm is recorded once. A breach escalates the complaint and
//! restarts its clocks; the projection then indexes the new level's first alarm.

use std::time::Duration;

use chrono::{DateTime, Utc};
use churnguard_domain::ids::ComplaintId;
use churnguard_eventlog::EventLog;
use churnguard_runtime::Clock;
use churnguard_runtime::consumer_metrics::LagProbe;
use tracing::Instrument;

use crate::error::FeedbackError;
use crate::metrics::PROJECTION;
use crate::service::Complaints;
use crate::sla_clock::{self, AlarmKind};

/// What one tick did on one partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fired {
    /// Complaints the index said were due.
    pub due: u64,
    /// Warnings and breaches this instance recorded (its commit won).
    pub warnings: u64,
    pub breaches: u64,
    /// Commands that lost to a concurrent change, after one retry: left for the next tick.
    pub conflicts: u64,
}

impl std::ops::AddAssign for Fired {
    fn add_assign(&mut self, o: Self) {
        self.due += o.due;
        self.warnings += o.warnings;
        self.breaches += o.breaches;
        self.conflicts += o.conflicts;
    }
}

/// At most this many alarms are fired for one complaint in one tick (a guard: a
/// complaint has a handful of alarms per level and three levels).
const MAX_ALARMS_PER_COMPLAINT: usize = 64;

/// The `actor` of the commands the SLA clock makes (warnings, breaches, escalations).
pub const SLA_CLOCK_ACTOR: &str = "system:sla-clock";

/// Fires every alarm due at or before `now` on `partition`.
pub async fn fire_due<L: EventLog>(
    complaints: &Complaints<L>,
    partition: u32,
    now: DateTime<Utc>,
) -> Result<Fired, FeedbackError> {
    let projection = complaints.projection();
    let Some(sla) = projection.sla() else {
        return Ok(Fired::default());
    };
    let mut fired = Fired::default();
    // Bring the index up to date with the log first.
    complaints.catch_up(partition).await?;
    let due = projection.due(partition, now.timestamp()).await?;
    fired.due = due.len() as u64;
    for raw in due {
        let id = ComplaintId::parse(&raw)
            .map_err(|e| FeedbackError::Corrupt(format!("deadline index member {raw}: {e}")))?;
        let mut retried = false;
        for _ in 0..MAX_ALARMS_PER_COMPLAINT {
            let Some(state) = projection.load(&id).await? else {
                break;
            };
            let Some(alarm) = sla_clock::next_alarm(&state, &sla.policy, &sla.directory) else {
                break;
            };
            if alarm.due_at > now {
                break;
            }
            let span = tracing::info_span!(
                "sla alarm",
                otel.name = match alarm.kind {
                    AlarmKind::Breach => "sla breach",
                    AlarmKind::Warning(_) => "sla warning",
                },
                otel.kind = "internal",
                feedback.complaint.id = %raw,
                feedback.alarm = ?alarm.kind,
                feedback.alarm.due_at = %alarm.due_at,
                feedback.applied = tracing::field::Empty,
            );
            let executed = complaints
                .execute_applied(&id, alarm.command(), None, Some(SLA_CLOCK_ACTOR))
                .instrument(span.clone())
                .await;
            if let Ok((_, applied)) = &executed {
                span.record("feedback.applied", applied);
            }
            match executed {
                Ok((after, applied)) => {
                    if applied {
                        match alarm.kind {
                            AlarmKind::Breach => fired.breaches += 1,
                            AlarmKind::Warning(_) => fired.warnings += 1,
                        }
                    }
                    if sla_clock::next_alarm(&after, &sla.policy, &sla.directory) == Some(alarm) {
                        // Nothing changed for this alarm (the aggregate ignored it): do
                        // not spin on it.
                        tracing::warn!(complaint = %raw, ?alarm, "an alarm did not take effect");
                        break;
                    }
                }
                Err(FeedbackError::Conflict { .. }) if !retried => {
                    // Someone else changed the complaint: reload and decide again once.
                    retried = true;
                }
                Err(FeedbackError::Conflict { .. }) => {
                    fired.conflicts += 1;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(fired)
}

/// Ticks every `every` (wall time), firing what is due at the injectable clock's `now`
/// on each of `partitions`, until `stop` resolves. Errors are logged and the next tick
/// tries again.
pub async fn run<L: EventLog>(
    complaints: &Complaints<L>,
    partitions: &[u32],
    clock: Clock,
    every: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let projection = complaints.projection();
    let mut lags: Vec<LagProbe> = partitions
        .iter()
        .map(|&p| LagProbe::new(PROJECTION, p))
        .collect();
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = ticker.tick() => {}
        }
        let now = clock();
        for (&p, lag) in partitions.iter().zip(&mut lags) {
            if let Err(e) = fire_due(complaints, p, now).await {
                tracing::warn!(partition = p, error = %e, "SLA timer tick failed");
            }
            // The projection's lag, as the partition's owner sees it after its tick.
            if lag.due()
                && let Ok(next) = projection.checkpoint(p).await
            {
                let wall = chrono::Utc::now().timestamp_millis();
                lag.observe(
                    complaints.log().as_ref(),
                    projection.topic(),
                    next,
                    &[],
                    wall,
                )
                .await;
            }
        }
    }
}
