//! Between the proto messages of `churnguard.feedback.v1` and the domain's values: what
//! the gRPC API ([`crate::api`]) and the escalation watch ([`crate::watch`]) both answer
//! with, and how request fields are read.
//!
//! Pure functions, no I/O: this module uses neither the API nor the watch, so both can
//! use it.
//!
//! - [`enums`]: every proto enum and its domain vocabulary, mapped value by value in both
//!   directions ([`ProtoEnum`]);
//! - [`time`]: times and days as the proto writes them;
//! - [`complaint`] and [`outreach`]: complaints, outreach cases and defection reasons as
//!   responses show them.

pub mod complaint;
pub mod enums;
pub mod outreach;
pub mod time;

pub use complaint::{
    contact_details_in, contact_details_out, escalation_reason, full_complaint, priority, summary,
};
pub use enums::{ProtoEnum, command_input, optional};
pub use outreach::{defection_reason_row, outreach_case};
pub use time::{day, timestamp, timestamp_out};
