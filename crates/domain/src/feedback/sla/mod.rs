//! The SLA clocks of a complaint, as pure functions of configuration and a timeline of
//! facts (when a clock started, when it was paused and resumed).
//!
//! A clock runs in the business time of the store's [`BusinessCalendar`](crate::feedback::calendar::BusinessCalendar) and stands still
//! while paused (waiting on the customer). Its *running time* at an instant is the open
//! time since its start less the open time spent paused; an alarm set at `k` seconds of
//! running time falls due at the first instant the running time reaches `k`. So a
//! deadline is precise to the second, and a pause moves it by exactly the business time
//! the pause took from the clock. The deadline index of the feedback service holds the
//! first alarm of each complaint not yet recorded; no cron, no polling.
//!
//! # Configuration
//!
//! ```toml
//! [sla]
//! warnings = [0.5, 0.75]
//! critical_starts_at = "regional_manager"
//! [sla.targets.major]
//! first_response = "4h"
//! update_interval = "8h"
//! resolution = "40h"
//! # ... minor, moderate, critical alike
//! [sla.escalation]
//! store_manager = "8h"
//! regional_manager = "16h"
//! owner = "24h"
//!
//! [directory]
//! owner = "e-1"
//! default_calendar = "uk-high-street"
//! [directory.regions.north]
//! manager = "e-20"
//! [directory.stores.s-7]
//! manager = "e-71"
//! region = "north"
//! calendar = "uk-late-opening"   # optional: else the default
//! [directory.calendars.uk-high-street]
//! timezone = "Europe/London"
//! # ... see the calendar module
//! ```

//!
//! Which target a complaint's clock run counts against is [`SlaPolicy::run_target`]:
//! first response and update by the severity's targets, and the resolution by the
//! **earlier** of the severity's `resolution` target (from filing) and the level's
//! `escalation` target (from reaching the level); see `deadline.rs`.
//!
//! Files: `duration.rs` (lengths of business time), `policy.rs` (targets, warnings, the
//! escalation chain), `directory.rs` (who holds each level, each store's calendar),
//! `clock.rs` (running time and schedules), `deadline.rs` (the target of a clock run, the
//! resolution rule).

mod clock;
mod deadline;
mod directory;
mod duration;
mod policy;
#[cfg(test)]
mod testing;

pub use clock::{Alarm, Pause, Schedule, reached_at, running_secs, schedule, warning_offset};
pub use directory::{Directory, DirectoryConfig, RegionEntry, StoreEntry};
pub use duration::BusinessDuration;
pub use policy::{PerLevel, PerSeverity, SlaPolicy, Targets};
