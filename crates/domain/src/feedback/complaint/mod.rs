//! The complaint aggregate, event-sourced: `handle` decides, `apply` remembers (the
//! [`Aggregate`] trait; this module is its one implementation for complaints).
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
//! All business logic is in the decisions (`decide.rs`, reached through
//! [`Aggregate::handle`]), which are pure (time is passed in) and return the events to
//! append; the fold ([`Aggregate::apply`], `evolve.rs`) only records what an event says,
//! so replaying a stream rebuilds the state exactly. The SLA clocks themselves
//! (business hours, targets) are the [`sla`](crate::feedback::sla) module's and the
//! feedback service's timer's: the aggregate says which clock runs since when
//! ([`Complaint::running_clocks`]) and which pauses to subtract ([`Complaint::pauses`]),
//! and records the timer's warnings and breaches idempotently.
//!
//! Personal data: the complainant's contact details reach the aggregate only as an opaque
//! [`SealedContact`], ciphertext made by the adapter. The plaintext is checked with
//! [`ContactDetails::validate`] before sealing, with the same `contact.*` field paths.
//!
//! Files: `state.rs` (the complaint and its values, which clocks run), `commands.rs`,
//! `events.rs`, `decide.rs` (one function per command, the errors and the context),
//! `evolve.rs`, `contact.rs` (sealed and plaintext contact details) and `priority.rs`
//! (queue order and incident history).

use chrono::{DateTime, Utc};

use crate::aggregate::Aggregate;

mod commands;
mod contact;
mod decide;
mod events;
mod evolve;
mod priority;
mod state;
#[cfg(test)]
mod testing;

pub use super::check::MAX_TEXT_CHARS;
pub use commands::{
    AcknowledgeComplaint, AddComplaintUpdate, ComplaintCommand, EscalateComplaint, FileComplaint,
    RaiseSlaWarning, RecordRootCause, RecordSatisfaction, RecordSlaBreach, ReopenComplaint,
    ResolveComplaint, RootCauseInput, SatisfactionInput, WaitOnCustomer,
};
pub use contact::{ContactDetails, MAX_SEALED_CONTACT_BYTES, SealedContact};
pub use decide::{ComplaintError, Context, MAX_WHYS, input_violations};
pub use events::ComplaintEvent;
pub use priority::{
    CustomerContext, INCIDENT_WINDOW_DAYS, Incident, IncidentHistory, Priority, incident_history,
    priority,
};
pub use state::{
    ClockRun, Complainant, Complaint, ComplaintStatus, Escalation, EscalationReason, FirstResponse,
    Pause, Reopening, Resolution, RootCause, Satisfaction, SlaClock, SlaMark, UpdateNote,
};

impl Aggregate for Complaint {
    type Command = ComplaintCommand;
    type Event = ComplaintEvent;
    type Error = ComplaintError;
    type Context = Context;

    fn expected_version(command: &ComplaintCommand) -> Option<u64> {
        command.expected_version()
    }

    /// A filing is identified by its idempotency key.
    fn creation_key(command: &ComplaintCommand) -> Option<&str> {
        match command {
            ComplaintCommand::FileComplaint(c) => Some(&c.idempotency_key),
            _ => None,
        }
    }

    fn created_with(&self) -> &str {
        &self.idempotency_key
    }

    fn version(&self) -> u64 {
        self.version
    }

    fn set_version(&mut self, version: u64) {
        self.version = version;
    }

    fn create(
        command: ComplaintCommand,
        now: DateTime<Utc>,
        context: &Context,
    ) -> Result<Vec<ComplaintEvent>, ComplaintError> {
        decide::create(command, now, context)
    }

    fn decide(
        &self,
        command: ComplaintCommand,
        now: DateTime<Utc>,
        _: &Context,
    ) -> Result<Vec<ComplaintEvent>, ComplaintError> {
        decide::decide(self, command, now)
    }

    fn start(event: &ComplaintEvent) -> Option<Self> {
        evolve::start(event)
    }

    fn evolve(&mut self, event: &ComplaintEvent) -> bool {
        evolve::evolve(self, event)
    }
}
