//! Complaints and defector outreach: the words both sides of the feedback service share,
//! the business-time calendar its SLA clocks run on, the complaint and outreach
//! aggregates (both [`Aggregate`](crate::aggregate::Aggregate)s), and the SLA clocks.

pub mod calendar;
mod check;
pub mod complaint;
pub mod outreach;
pub mod sla;
pub mod vocab;

pub use calendar::{BusinessCalendar, CalendarConfig, WeekHours};
pub use vocab::{
    Channel, ContactMethod, DefectionReason, Level, OutreachOutcome, Remedy, Severity, Touchpoint,
    UnknownValue,
};
