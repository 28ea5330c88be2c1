//! Defector outreach: when churn scoring says a customer is slipping away (at risk) or
//! gone (defected), someone at their home store reaches out, asks why, and records what
//! they said and what came of it. Defectors are specific about why they left; the reasons,
//! summed per store with the value that walked out, show the chain what to fix.
//!
//! The case is an [`Aggregate`], like the complaint: `handle` decides (pure, time passed
//! in), `apply` folds, expected versions guard concurrent writers. [`DefectionReasons`] is
//! the read model fed by both outreach and complaint events.
//!
//! **One case per episode.** An episode is a customer's run of risk: it starts when churn
//! scoring reports them `at_risk` or `defected`, and ends when it reports them back
//! (`active` or `won_back`). [`on_signal`] decides what a churn signal means given the
//! customer's cases, so that a signal re-emitted for an episode that already has a case
//! (churn scoring rebuilt after losing its state re-emits transitions, with new event ids
//! when they land on another day) never opens a second one, while a new episode after a
//! return does. Signals are ordered by their assessment day (`as_of`): a case remembers the
//! day its episode started and the day the customer came back, and a signal dated before
//! them belongs to an older episode.
//!
//! Files: `case.rs` (the case and the states a customer moves between), `commands.rs`,
//! `events.rs`, `decide.rs` (one function per command, the errors), `evolve.rs`,
//! `episodes.rs` (what a signal means) and `reasons.rs` (the defection-reasons read
//! model).

use chrono::{DateTime, Utc};

use crate::aggregate::Aggregate;

mod case;
mod commands;
mod decide;
mod episodes;
mod events;
mod evolve;
mod reasons;
#[cfg(test)]
mod testing;

pub use case::{DefectorState, OutreachAttempt, OutreachCase, OutreachStatus, Returned};
pub use commands::{EndOutreach, EscalateOutreach, OpenOutreach, OutreachCommand, RecordOutreach};
pub use decide::{OutreachError, input_violations};
pub use episodes::{SignalOutcome, latest_case, on_signal};
pub use events::OutreachEvent;
pub use reasons::{
    Cause, Contribution, DefectionReasons, ReasonRow, Tally, complaint_contribution,
    outreach_contribution,
};

impl Aggregate for OutreachCase {
    type Command = OutreachCommand;
    type Event = OutreachEvent;
    type Error = OutreachError;
    /// Outreach decisions need no settings: deadlines come computed in the commands.
    type Context = ();

    fn expected_version(command: &OutreachCommand) -> Option<u64> {
        command.expected_version()
    }

    /// An opening is identified by the churn signal it was opened from.
    fn creation_key(command: &OutreachCommand) -> Option<&str> {
        match command {
            OutreachCommand::OpenOutreach(c) => Some(&c.signal_id),
            _ => None,
        }
    }

    fn created_with(&self) -> &str {
        &self.signal_id
    }

    fn version(&self) -> u64 {
        self.version
    }

    fn set_version(&mut self, version: u64) {
        self.version = version;
    }

    fn create(
        command: OutreachCommand,
        now: DateTime<Utc>,
        _: &(),
    ) -> Result<Vec<OutreachEvent>, OutreachError> {
        decide::create(command, now)
    }

    fn decide(
        &self,
        command: OutreachCommand,
        now: DateTime<Utc>,
        _: &(),
    ) -> Result<Vec<OutreachEvent>, OutreachError> {
        decide::decide(self, command, now)
    }

    fn start(event: &OutreachEvent) -> Option<Self> {
        evolve::start(event)
    }

    fn evolve(&mut self, event: &OutreachEvent) -> bool {
        evolve::evolve(self, event)
    }
}
