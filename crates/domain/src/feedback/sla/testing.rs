//! Test helpers of the SLA modules: a store calendar with opening hours, a weekend and
//! bank holidays, London wall-clock instants, and a policy.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};

use super::*;
use crate::feedback::calendar::{BusinessCalendar, CalendarConfig, WeekHours};
use crate::feedback::vocab::Level;

pub(super) const HOUR: i64 = 3600;

/// Mon-Fri 09:00-17:00 in London, with the August 2025 bank holiday (Monday 25th).
pub(super) fn store_calendar() -> CalendarConfig {
    let day = vec!["09:00-17:00".to_owned()];
    CalendarConfig {
        timezone: "Europe/London".into(),
        hours: WeekHours {
            monday: day.clone(),
            tuesday: day.clone(),
            wednesday: day.clone(),
            thursday: day.clone(),
            friday: day,
            ..WeekHours::default()
        },
        holidays: vec!["2025-08-25".into(), "2025-12-25".into()],
    }
}

pub(super) fn calendar() -> BusinessCalendar {
    store_calendar().build("").expect("valid")
}

/// A UTC instant from a London wall-clock time.
pub(super) fn london(s: &str) -> DateTime<Utc> {
    let local = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("date");
    chrono_tz::Europe::London
        .from_local_datetime(&local)
        .single()
        .expect("unambiguous")
        .with_timezone(&Utc)
}

pub(super) fn h(hours: i64) -> BusinessDuration {
    BusinessDuration::from_secs(hours * HOUR)
}

pub(super) fn policy() -> SlaPolicy {
    let targets = |first: i64, update: i64, resolution: i64| Targets {
        first_response: h(first),
        update_interval: h(update),
        resolution: h(resolution),
    };
    SlaPolicy {
        targets: PerSeverity {
            minor: targets(16, 40, 80),
            moderate: targets(8, 24, 40),
            major: targets(4, 8, 24),
            critical: targets(1, 4, 8),
        },
        warnings: vec![0.5, 0.75],
        escalation: PerLevel {
            store_manager: h(8),
            regional_manager: h(16),
            owner: h(24),
        },
        critical_starts_at: Level::RegionalManager,
    }
}
