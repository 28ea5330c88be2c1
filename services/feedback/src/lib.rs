//! feedback: complaints, SLA escalation and defector outreach, event-sourced.
//!
//! Every accepted command becomes one record on `feedback.events.v1`, keyed by the
//! complaint: a [`journal::Commit`] holding the command's events (a breach and the
//! escalation it causes land together or not at all). The log is the system of record;
//! Redis holds the read model ([`projection`]), which replaying the topic rebuilds.
//!
//! Concurrency: a commit names the version it was decided on. The projection applies a
//! commit only if the complaint is still at that version, in log order, so of two
//! commands decided on the same version the first in the log wins and the other is
//! rejected, on every replay alike. The writer projects up to its own record and answers
//! from the outcome ([`service::Complaints::execute`]): OK when its commit won, or when
//! its idempotency key produced a version (a concurrent call with the same key came first:
//! this call is its retry, never a conflict); else a version conflict.
//!
//! Defector outreach: [`outreach::Opener`] reads churn signals and opens a case per
//! customer who moved into at risk or defected, through the same write path (outreach
//! commits share the topic, keyed by case); the projection also keeps the outreach list
//! index and the defection-reason counters.
//!
//! SLA timers: the projection also keeps a per-partition deadline index of each
//! complaint's next alarm ([`sla_clock`]); [`timers::fire_due`] fires what is due through
//! the same write path, so racing timer instances record each warning and breach once.

pub mod api;
pub mod app;
pub mod config;
pub mod error;
pub mod journal;
pub mod mapping;
pub mod metrics;
pub mod outreach;
pub mod projection;
pub mod service;
pub mod sla_clock;
pub mod standing;
pub mod timers;
pub mod watch;

pub use app::{App, Running};
pub use error::FeedbackError;
pub use service::Complaints;

/// The consumer name under which the projection's checkpoints are kept.
pub const CONSUMER: &str = "feedback";

/// The topic of complaint commits.
pub const EVENTS_TOPIC: &str = "feedback.events.v1";
