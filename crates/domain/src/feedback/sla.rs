//! The SLA clocks of a complaint, as pure functions of configuration and a timeline of
//! facts (when a clock started, when it was paused and resumed).
//!
//! A clock runs in the business time of the store's [`BusinessCalendar`] and stands still
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

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::calendar::{BusinessCalendar, CalendarConfig, field};
use super::vocab::{Level, Severity};
use crate::error::{FieldViolation, Violations};

// ---- Durations ---------------------------------------------------------------------

/// A length of business time in whole seconds. Configured as a number of seconds or as
/// hours, minutes and seconds in that order: `"4h"`, `"30m"`, `"1h30m"`, `"90s"`. There
/// are no days: "2 days" of business time is ambiguous (two opening days, or 48 hours).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BusinessDuration(i64);

impl BusinessDuration {
    pub const fn from_secs(secs: i64) -> Self {
        Self(secs)
    }

    pub const fn secs(self) -> i64 {
        self.0
    }

    /// Parses `"4h"`, `"1h30m"`, `"45s"`, ... (see the type's doc).
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a duration like \"4h\", \"30m\", \"1h30m\" or \"90s\"");
        let mut total: i64 = 0;
        let mut number = String::new();
        // Units must come in the order h, m, s, each at most once.
        let mut next_unit = 0;
        for c in s.trim().chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let (rank, scale) = match c {
                'h' => (1, 3600),
                'm' => (2, 60),
                's' => (3, 1),
                _ => return Err(bad()),
            };
            if number.is_empty() || rank <= next_unit {
                return Err(bad());
            }
            next_unit = rank;
            let n: i64 = number.parse().map_err(|_| bad())?;
            total = n
                .checked_mul(scale)
                .and_then(|x| total.checked_add(x))
                .ok_or_else(bad)?;
            number.clear();
        }
        if next_unit == 0 || !number.is_empty() {
            return Err(bad());
        }
        Ok(Self(total))
    }
}

impl fmt::Display for BusinessDuration {
    /// The configuration spelling: `4h`, `1h30m`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (h, m, s) = (self.0 / 3600, self.0 % 3600 / 60, self.0 % 60);
        if self.0 < 0 {
            return write!(f, "{}s", self.0);
        }
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 || self.0 == 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

impl Serialize for BusinessDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BusinessDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = BusinessDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds or a duration like \"4h\" or \"1h30m\"")
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map(BusinessDuration)
                    .map_err(|_| E::custom(format!("{v} seconds is too long")))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                if v < 0 {
                    return Err(E::custom(format!("{v} seconds is negative")));
                }
                Ok(BusinessDuration(v))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                BusinessDuration::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

// ---- Policy ------------------------------------------------------------------------

/// One value per severity; every severity must be configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerSeverity<T> {
    pub minor: T,
    pub moderate: T,
    pub major: T,
    pub critical: T,
}

impl<T> PerSeverity<T> {
    pub fn get(&self, s: Severity) -> &T {
        match s {
            Severity::Minor => &self.minor,
            Severity::Moderate => &self.moderate,
            Severity::Major => &self.major,
            Severity::Critical => &self.critical,
        }
    }
}

/// One value per escalation level; every level must be configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerLevel<T> {
    pub store_manager: T,
    pub regional_manager: T,
    pub owner: T,
}

impl<T> PerLevel<T> {
    pub fn get(&self, l: Level) -> &T {
        match l {
            Level::StoreManager => &self.store_manager,
            Level::RegionalManager => &self.regional_manager,
            Level::Owner => &self.owner,
        }
    }
}

/// The business-time targets of one severity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// From filing to the first (for major and critical, personal) response.
    pub first_response: BusinessDuration,
    /// The longest the customer waits between updates while the complaint is open.
    pub update_interval: BusinessDuration,
    /// From filing to resolution.
    pub resolution: BusinessDuration,
}

/// The SLA of a chain: targets per severity, when to warn, and the escalation chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaPolicy {
    pub targets: PerSeverity<Targets>,
    /// Fractions of a target at which to warn its holder, ascending, each in (0, 1).
    /// Default: 50 % and 75 % (as ServiceNow does).
    #[serde(default = "default_warnings")]
    pub warnings: Vec<f64>,
    /// Per level, the business time its holder has to resolve the complaint before it
    /// moves to the level above. The clock of a level starts when the complaint reaches it.
    pub escalation: PerLevel<BusinessDuration>,
    /// The level a *critical* complaint starts at, skipping those below; every other
    /// severity starts with the store manager. Default: the regional manager.
    #[serde(default = "default_critical_starts_at")]
    pub critical_starts_at: Level,
}

fn default_warnings() -> Vec<f64> {
    vec![0.5, 0.75]
}

fn default_critical_starts_at() -> Level {
    Level::RegionalManager
}

impl SlaPolicy {
    /// Every problem, each naming its field under `path` (`sla.targets.major.resolution`,
    /// `sla.warnings`, `sla.escalation.owner`, ...).
    pub fn validate(&self, path: &str) -> Result<(), Violations> {
        let mut v = Vec::new();
        let positive = |v: &mut Vec<FieldViolation>, name: String, d: BusinessDuration| {
            if d.secs() <= 0 {
                v.push(FieldViolation::new(
                    field(path, &name),
                    format!("must be a positive duration, not {d}"),
                ));
            }
        };
        for s in Severity::ALL {
            let t = self.targets.get(*s);
            for (name, d) in [
                ("first_response", t.first_response),
                ("update_interval", t.update_interval),
                ("resolution", t.resolution),
            ] {
                positive(&mut v, format!("targets.{s}.{name}"), d);
            }
            if t.first_response > t.resolution {
                v.push(FieldViolation::new(
                    field(path, &format!("targets.{s}.first_response")),
                    format!(
                        "is {} but the resolution target is {}: a complaint cannot be \
                         resolved before it is answered",
                        t.first_response, t.resolution
                    ),
                ));
            }
        }
        for (i, f) in self.warnings.iter().enumerate() {
            if !(*f > 0.0 && *f < 1.0) {
                v.push(FieldViolation::new(
                    field(path, "warnings"),
                    format!("warning {i} is {f}; each must be in (0, 1)"),
                ));
            }
        }
        if self.warnings.windows(2).any(|w| w[0] >= w[1]) {
            v.push(FieldViolation::new(
                field(path, "warnings"),
                format!("must be ascending without repeats: {:?}", self.warnings),
            ));
        }
        for l in Level::ALL {
            positive(&mut v, format!("escalation.{l}"), *self.escalation.get(*l));
        }
        if v.is_empty() {
            Ok(())
        } else {
            Err(Violations(v))
        }
    }
}

// ---- Directory ---------------------------------------------------------------------

/// A store: who manages it, its region, and its calendar (the default if unset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreEntry {
    pub manager: String,
    pub region: String,
    #[serde(default)]
    pub calendar: Option<String>,
}

/// A region: who manages it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionEntry {
    pub manager: String,
}

/// Who holds each level for each store, and each store's calendar, as configured.
/// [`DirectoryConfig::build`] checks it and builds the calendars once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// The owner's employee id: the top of every chain.
    pub owner: String,
    #[serde(default)]
    pub regions: BTreeMap<String, RegionEntry>,
    #[serde(default)]
    pub stores: BTreeMap<String, StoreEntry>,
    /// Calendars by name.
    pub calendars: BTreeMap<String, CalendarConfig>,
    /// The calendar of stores that name none; a key of `calendars`.
    pub default_calendar: String,
}

impl DirectoryConfig {
    /// Every problem, each naming its field (`stores.s-7.region`,
    /// `calendars.uk.hours.monday`, `default_calendar`, ...).
    pub fn validate(&self) -> Result<(), Violations> {
        self.build().map(|_| ())
    }

    /// The directory, with every calendar built, or every problem in the configuration.
    pub fn build(&self) -> Result<Directory, Violations> {
        let mut v = Vec::new();
        let mut id = |name: String, value: &str| {
            if value.trim().is_empty() {
                v.push(FieldViolation::new(name, "must name an employee"));
            }
        };
        id("owner".to_owned(), &self.owner);
        for (region, r) in &self.regions {
            id(format!("regions.{region}.manager"), &r.manager);
        }
        for (store, s) in &self.stores {
            id(format!("stores.{store}.manager"), &s.manager);
        }
        for (store, s) in &self.stores {
            if !self.regions.contains_key(&s.region) {
                v.push(FieldViolation::new(
                    format!("stores.{store}.region"),
                    format!("names region {:?}, which is not in regions", s.region),
                ));
            }
            if let Some(c) = &s.calendar
                && !self.calendars.contains_key(c)
            {
                v.push(FieldViolation::new(
                    format!("stores.{store}.calendar"),
                    format!("names calendar {c:?}, which is not in calendars"),
                ));
            }
        }
        let mut calendars = BTreeMap::new();
        for (name, c) in &self.calendars {
            match c.build(&format!("calendars.{name}")) {
                Ok(cal) => {
                    calendars.insert(name.clone(), cal);
                }
                Err(e) => v.extend(e.0),
            }
        }
        let default = self.calendars.get(&self.default_calendar);
        if default.is_none() {
            v.push(FieldViolation::new(
                "default_calendar",
                format!(
                    "names calendar {:?}, which is not in calendars",
                    self.default_calendar
                ),
            ));
        }
        match calendars.get(&self.default_calendar).cloned() {
            Some(default) if v.is_empty() => Ok(Directory {
                config: self.clone(),
                calendars,
                default,
            }),
            _ => Err(Violations(v)),
        }
    }
}

/// Who holds each level for each store, and the calendar each store's clocks run on.
/// Valid by construction; deserializes through [`DirectoryConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "DirectoryConfig", into = "DirectoryConfig")]
pub struct Directory {
    config: DirectoryConfig,
    calendars: BTreeMap<String, BusinessCalendar>,
    default: BusinessCalendar,
}

impl TryFrom<DirectoryConfig> for Directory {
    type Error = Violations;

    fn try_from(c: DirectoryConfig) -> Result<Self, Self::Error> {
        c.build()
    }
}

impl From<Directory> for DirectoryConfig {
    fn from(d: Directory) -> Self {
        d.config
    }
}

impl Directory {
    pub fn config(&self) -> &DirectoryConfig {
        &self.config
    }

    /// The employee who holds `level` for `store`. `None` for the store and regional
    /// levels of a store the directory does not list; the owner holds every store.
    pub fn holder(&self, level: Level, store: &str) -> Option<&str> {
        let entry = self.config.stores.get(store);
        match level {
            Level::StoreManager => entry.map(|s| s.manager.as_str()),
            Level::RegionalManager => entry
                .and_then(|s| self.config.regions.get(&s.region))
                .map(|r| r.manager.as_str()),
            Level::Owner => Some(self.config.owner.as_str()),
        }
    }

    /// The region of a listed store.
    pub fn region_of(&self, store: &str) -> Option<&str> {
        self.config.stores.get(store).map(|s| s.region.as_str())
    }

    /// The name of the calendar a store's clocks run on: its own, or the default.
    pub fn calendar_name(&self, store: &str) -> &str {
        self.config
            .stores
            .get(store)
            .and_then(|s| s.calendar.as_deref())
            .unwrap_or(&self.config.default_calendar)
    }

    /// The calendar a store's clocks run on: its own, or the default (also for a store
    /// the directory does not list).
    pub fn calendar_for(&self, store: &str) -> &BusinessCalendar {
        self.calendars
            .get(self.calendar_name(store))
            .unwrap_or(&self.default)
    }
}

// ---- Clocks ------------------------------------------------------------------------

/// A pause of a clock: from, and until (`None`: still paused).
pub type Pause = (DateTime<Utc>, Option<DateTime<Utc>>);

/// The business seconds of running time at which a warning at `fraction` of `target`
/// falls due: `fraction × target` rounded down to the second. The product is first
/// taken to the nearest millionth of a second, so that a fraction with no exact binary
/// form is not a second early (0.3 × 10 h is 3 h, not 3 h less a second).
pub fn warning_offset(target_secs: i64, fraction: f64) -> i64 {
    let x = fraction * target_secs as f64;
    let nearest = x.round();
    if (x - nearest).abs() < 1e-6 {
        nearest as i64
    } else {
        x.floor() as i64
    }
}

/// The periods a clock runs, `[from, until)`, in order from `start` (`until: None`: on
/// and on), and when it stopped if an open pause stops it. Pauses are taken as a set:
/// their union is when the clock stands still, in whatever order they are given; a pause
/// before `start` or ending before it begins takes nothing.
fn running_periods(start: DateTime<Utc>, pauses: &[Pause]) -> (Vec<Pause>, Option<DateTime<Utc>>) {
    let mut pauses = pauses.to_vec();
    pauses.sort_by_key(|(from, _)| *from);
    let mut periods = Vec::new();
    let mut cursor = start;
    for (from, until) in pauses {
        if until.is_some_and(|u| u <= from) {
            continue;
        }
        if from > cursor {
            periods.push((cursor, Some(from)));
        }
        match until {
            None => return (periods, Some(from.max(cursor))),
            Some(u) => cursor = cursor.max(u),
        }
    }
    periods.push((cursor, None));
    (periods, None)
}

/// When a clock started at `start` with these pauses has run `secs` business seconds:
/// the first instant its running time reaches `secs` (`start` itself for zero). `None`
/// if it is paused before then, or the calendar's horizon is reached first.
pub fn reached_at(
    calendar: &BusinessCalendar,
    start: DateTime<Utc>,
    pauses: &[Pause],
    secs: i64,
) -> Option<DateTime<Utc>> {
    if secs <= 0 {
        return Some(start);
    }
    let mut remaining = secs;
    for (from, until) in running_periods(start, pauses).0 {
        let Some(until) = until else {
            return calendar.add_business(from, remaining);
        };
        let run = calendar.business_between(from, until);
        if remaining <= run {
            return calendar.add_business(from, remaining);
        }
        remaining -= run;
    }
    None
}

/// The business seconds a clock has run by `now`.
pub fn running_secs(
    calendar: &BusinessCalendar,
    start: DateTime<Utc>,
    pauses: &[Pause],
    now: DateTime<Utc>,
) -> i64 {
    running_periods(start, pauses)
        .0
        .into_iter()
        .map(|(from, until)| calendar.business_between(from, until.map_or(now, |u| u.min(now))))
        .sum()
}

/// An alarm of a clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Alarm {
    /// A fraction of the target has run.
    Warning(f64),
    /// The whole target has run.
    Breach,
}

/// When a clock's alarms fall due. An instant is `None` when the clock stops (an open
/// pause) before it — it is then due at no instant until the clock resumes — or, for an
/// absurd target, beyond the calendar's horizon. Alarms due before an open pause keep
/// their instants: they did happen.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Each warning fraction with its instant, in the order of the fractions.
    pub warnings: Vec<(f64, Option<DateTime<Utc>>)>,
    pub breach: Option<DateTime<Utc>>,
    /// Since when an open pause has stopped the clock.
    pub paused_since: Option<DateTime<Utc>>,
}

impl Schedule {
    /// The alarms that have an instant, in order of their instants (warnings before the
    /// breach at the same instant).
    pub fn alarms(&self) -> Vec<(Alarm, DateTime<Utc>)> {
        let mut alarms: Vec<(Alarm, DateTime<Utc>)> = self
            .warnings
            .iter()
            .filter_map(|(f, t)| t.map(|t| (Alarm::Warning(*f), t)))
            .chain(self.breach.map(|t| (Alarm::Breach, t)))
            .collect();
        // A stable sort keeps warnings (in ascending fractions) ahead of the breach.
        alarms.sort_by_key(|(_, t)| *t);
        alarms
    }
}

/// The schedule of a clock started at `start` with `target_secs` of business time, given
/// its pauses: each warning at [`warning_offset`] of the target, and the breach at the
/// whole target, each at the first instant the clock's running time reaches it.
pub fn schedule(
    calendar: &BusinessCalendar,
    start: DateTime<Utc>,
    target_secs: i64,
    pauses: &[Pause],
    fractions: &[f64],
) -> Schedule {
    Schedule {
        warnings: fractions
            .iter()
            .map(|f| {
                let at = reached_at(calendar, start, pauses, warning_offset(target_secs, *f));
                (*f, at)
            })
            .collect(),
        breach: reached_at(calendar, start, pauses, target_secs),
        paused_since: running_periods(start, pauses).1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feedback::calendar::WeekHours;
    use chrono::{Duration, NaiveDateTime, TimeZone};
    use proptest::prelude::*;

    const HOUR: i64 = 3600;

    /// Mon-Fri 09:00-17:00 in London, with the August 2025 bank holiday (Monday 25th).
    fn store_calendar() -> CalendarConfig {
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

    fn calendar() -> BusinessCalendar {
        store_calendar().build("").expect("valid")
    }

    /// A UTC instant from a London wall-clock time.
    fn london(s: &str) -> DateTime<Utc> {
        let local = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("date");
        chrono_tz::Europe::London
            .from_local_datetime(&local)
            .single()
            .expect("unambiguous")
            .with_timezone(&Utc)
    }

    fn h(hours: i64) -> BusinessDuration {
        BusinessDuration::from_secs(hours * HOUR)
    }

    fn policy() -> SlaPolicy {
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

    #[test]
    fn a_major_complaint_filed_before_a_bank_holiday_weekend() {
        let cal = calendar();
        let policy = policy();
        policy.validate("sla").expect("valid");
        // Friday 22 August 2025, 16:30: half an hour before closing. Monday is the
        // summer bank holiday, so the rest of the four hours run on Tuesday.
        let filed = london("2025-08-22 16:30:00");
        let target = policy.targets.major.first_response.secs();
        let s = schedule(&cal, filed, target, &[], &policy.warnings);
        assert_eq!(
            s,
            Schedule {
                warnings: vec![
                    (0.5, Some(london("2025-08-26 10:30:00"))),
                    (0.75, Some(london("2025-08-26 11:30:00"))),
                ],
                breach: Some(london("2025-08-26 12:30:00")),
                paused_since: None,
            }
        );

        // Tuesday 10:00 the store asks the customer for a receipt; the clock stops.
        let mut pauses: Vec<Pause> = vec![(london("2025-08-26 10:00:00"), None)];
        let paused = schedule(&cal, filed, target, &pauses, &policy.warnings);
        assert_eq!(paused.paused_since, Some(london("2025-08-26 10:00:00")));
        assert_eq!(paused.breach, None);
        assert_eq!(paused.warnings, vec![(0.5, None), (0.75, None)]);
        assert_eq!(paused.alarms(), vec![]);
        assert_eq!(
            running_secs(&cal, filed, &pauses, london("2025-08-26 15:00:00")),
            90 * 60
        );

        // The receipt arrives Wednesday 14:00. The pause took 7 h on Tuesday and 5 h on
        // Wednesday from the clock; every alarm still ahead moves by exactly that.
        pauses[0].1 = Some(london("2025-08-27 14:00:00"));
        let resumed = schedule(&cal, filed, target, &pauses, &policy.warnings);
        let paused_business =
            cal.business_between(london("2025-08-26 10:00:00"), london("2025-08-27 14:00:00"));
        assert_eq!(paused_business, 12 * HOUR);
        assert_eq!(
            resumed.breach,
            cal.add_business(london("2025-08-26 12:30:00"), paused_business)
        );
        assert_eq!(
            resumed,
            Schedule {
                warnings: vec![
                    (0.5, Some(london("2025-08-27 14:30:00"))),
                    (0.75, Some(london("2025-08-27 15:30:00"))),
                ],
                breach: Some(london("2025-08-27 16:30:00")),
                paused_since: None,
            }
        );
        assert_eq!(
            resumed.alarms(),
            vec![
                (Alarm::Warning(0.5), london("2025-08-27 14:30:00")),
                (Alarm::Warning(0.75), london("2025-08-27 15:30:00")),
                (Alarm::Breach, london("2025-08-27 16:30:00")),
            ]
        );
        let remaining = |now| target - running_secs(&cal, filed, &pauses, now);
        assert_eq!(remaining(london("2025-08-27 16:00:00")), 30 * 60);
        assert_eq!(remaining(london("2025-08-28 09:10:00")), -40 * 60);

        // The same complaint's 24 h from filing over the month: the pause moves it by the
        // same 12 business hours, into the next week.
        let s = schedule(
            &cal,
            filed,
            policy.targets.major.resolution.secs(),
            &pauses,
            &policy.warnings,
        );
        // 24 h unpaused: Fri 0.5 + Tue 8 + Wed 8 + Thu 7.5 → Thursday 28th 16:30;
        // plus 12 h: Thu 0.5 + Fri 29th 8 + Mon 1 Sep 3.5 → 12:30.
        assert_eq!(s.breach, Some(london("2025-09-01 12:30:00")));
        // 12 h (50 %): Fri 0.5 + Tue 1 before the pause, Wed 3 after it, Thu 7.5.
        assert_eq!(s.warnings[0], (0.5, Some(london("2025-08-28 16:30:00"))));
        // 18 h (75 %): 12.5 h by Thursday's close, then 5.5 h into Friday 29th.
        assert_eq!(s.warnings[1], (0.75, Some(london("2025-08-29 14:30:00"))));
    }

    #[test]
    fn warnings_are_due_to_the_second_rounding_down() {
        let cal = calendar();
        // A target of 1h0m1s: half is 1800.5 s, rounded down to 1800.
        let start = london("2025-09-02 09:00:00");
        let s = schedule(&cal, start, HOUR + 1, &[], &[0.5, 0.75, 0.999]);
        assert_eq!(s.warnings[0], (0.5, Some(london("2025-09-02 09:30:00"))));
        // 0.75 × 3601 = 2700.75 → 2700.
        assert_eq!(s.warnings[1], (0.75, Some(london("2025-09-02 09:45:00"))));
        // 0.999 × 3601 = 3597.399 → 3597.
        assert_eq!(s.warnings[2], (0.999, Some(london("2025-09-02 09:59:57"))));
        assert_eq!(s.breach, Some(london("2025-09-02 10:00:01")));
        // A fraction with no exact binary form is not a second early.
        assert_eq!(warning_offset(10 * HOUR, 0.3), 3 * HOUR);
        assert_eq!(warning_offset(10 * HOUR, 0.7), 7 * HOUR);
        assert_eq!(warning_offset(3, 0.5), 1);
    }

    #[test]
    fn alarms_due_before_an_open_pause_keep_their_instants() {
        let cal = calendar();
        let start = london("2025-09-01 09:00:00");
        let pauses = [(london("2025-09-01 11:30:00"), None)];
        let s = schedule(&cal, start, 4 * HOUR, &pauses, &[0.5, 0.75]);
        assert_eq!(s.warnings[0], (0.5, Some(london("2025-09-01 11:00:00"))));
        assert_eq!(s.warnings[1], (0.75, None));
        assert_eq!(s.breach, None);
        assert_eq!(s.paused_since, Some(london("2025-09-01 11:30:00")));
        assert_eq!(
            s.alarms(),
            vec![(Alarm::Warning(0.5), london("2025-09-01 11:00:00"))]
        );

        // An alarm reached at the very instant of the pause is due then.
        let pauses = [(london("2025-09-01 12:00:00"), None)];
        let s = schedule(&cal, start, 4 * HOUR, &pauses, &[0.5, 0.75]);
        assert_eq!(s.warnings[1], (0.75, Some(london("2025-09-01 12:00:00"))));
        assert_eq!(s.breach, None);
    }

    #[test]
    fn durations_read_as_seconds_or_hours_and_minutes() {
        for (text, secs) in [
            ("4h", 4 * HOUR),
            ("30m", 1800),
            ("1h30m", 5400),
            ("90s", 90),
            ("1h0m5s", 3605),
        ] {
            assert_eq!(
                BusinessDuration::parse(text),
                Ok(BusinessDuration::from_secs(secs))
            );
        }
        for bad in ["", "4", "h", "4 hours", "30m1h", "4h4h", "2d", "-4h"] {
            assert!(BusinessDuration::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(BusinessDuration::from_secs(5400).to_string(), "1h30m");
        assert_eq!(BusinessDuration::from_secs(0).to_string(), "0s");
        let d: BusinessDuration = serde_json::from_str("14400").expect("seconds");
        assert_eq!(d, h(4));
        assert_eq!(serde_json::to_string(&d).ok(), Some("\"4h\"".to_owned()));
    }

    #[test]
    fn a_policy_reads_from_config_with_defaults_and_refuses_unknown_fields() {
        let t = r#"{"first_response": "4h", "update_interval": "8h", "resolution": "24h"}"#;
        let json = format!(
            r#"{{"targets": {{"minor": {t}, "moderate": {t}, "major": {t}, "critical": {t}}},
                "escalation": {{"store_manager": "8h", "regional_manager": 57600, "owner": "24h"}}}}"#
        );
        let p: SlaPolicy = serde_json::from_str(&json).expect("parses");
        p.validate("sla").expect("valid");
        assert_eq!(p.warnings, [0.5, 0.75]);
        assert_eq!(p.critical_starts_at, Level::RegionalManager);
        assert_eq!(*p.escalation.get(Level::RegionalManager), h(16));
        let typo = json.replace("update_interval", "update");
        assert!(serde_json::from_str::<SlaPolicy>(&typo).is_err());
    }

    #[test]
    fn policy_validation_names_every_bad_field() {
        let mut p = policy();
        p.targets.major.first_response = h(30);
        p.targets.minor.update_interval = h(0);
        p.warnings = vec![0.75, 0.5, 1.0];
        p.escalation.owner = h(0);
        let v = p.validate("sla").expect_err("invalid");
        assert_eq!(
            v.fields().collect::<Vec<_>>(),
            [
                "sla.targets.minor.update_interval",
                "sla.targets.major.first_response",
                "sla.warnings",
                "sla.warnings",
                "sla.escalation.owner",
            ],
            "{v}"
        );
    }

    fn directory() -> DirectoryConfig {
        let mut late = store_calendar();
        late.hours.saturday = vec!["10:00-16:00".into()];
        DirectoryConfig {
            owner: "e-1".into(),
            regions: BTreeMap::from([(
                "north".into(),
                RegionEntry {
                    manager: "e-20".into(),
                },
            )]),
            stores: BTreeMap::from([
                (
                    "s-7".into(),
                    StoreEntry {
                        manager: "e-71".into(),
                        region: "north".into(),
                        calendar: Some("saturdays".into()),
                    },
                ),
                (
                    "s-8".into(),
                    StoreEntry {
                        manager: "e-81".into(),
                        region: "north".into(),
                        calendar: None,
                    },
                ),
            ]),
            calendars: BTreeMap::from([
                ("weekdays".into(), store_calendar()),
                ("saturdays".into(), late),
            ]),
            default_calendar: "weekdays".into(),
        }
    }

    #[test]
    fn the_directory_names_each_level_and_calendar_of_a_store() {
        let d = directory().build().expect("valid");
        assert_eq!(d.holder(Level::StoreManager, "s-7"), Some("e-71"));
        assert_eq!(d.holder(Level::RegionalManager, "s-7"), Some("e-20"));
        assert_eq!(d.holder(Level::Owner, "s-7"), Some("e-1"));
        assert_eq!(d.holder(Level::StoreManager, "s-99"), None);
        assert_eq!(d.holder(Level::RegionalManager, "s-99"), None);
        assert_eq!(d.holder(Level::Owner, "s-99"), Some("e-1"));
        assert_eq!(d.region_of("s-8"), Some("north"));
        assert_eq!(d.calendar_name("s-7"), "saturdays");
        assert_eq!(d.calendar_name("s-8"), "weekdays");
        assert_eq!(d.calendar_name("s-99"), "weekdays");
        let saturday = london("2025-08-23 11:00:00");
        assert!(d.calendar_for("s-7").is_open(saturday));
        assert!(!d.calendar_for("s-8").is_open(saturday));

        let json = serde_json::to_string(&d).expect("serializes");
        let again: Directory = serde_json::from_str(&json).expect("parses");
        assert_eq!(again, d);
    }

    #[test]
    fn directory_validation_names_every_bad_field() {
        let mut c = directory();
        c.owner = " ".into();
        if let Some(s) = c.stores.get_mut("s-8") {
            s.region = "south".into();
            s.calendar = Some("sundays".into());
        }
        if let Some(cal) = c.calendars.get_mut("saturdays") {
            cal.hours.monday = vec!["09:00-17:00".into(), "16:00-18:00".into()];
        }
        c.default_calendar = "nowhere".into();
        let v = c.validate().expect_err("invalid");
        assert_eq!(
            v.fields().collect::<Vec<_>>(),
            [
                "owner",
                "stores.s-8.region",
                "stores.s-8.calendar",
                "calendars.saturdays.hours.monday",
                "default_calendar",
            ],
            "{v}"
        );
    }

    // ---- Properties -------------------------------------------------------------------

    fn instants() -> impl Strategy<Value = DateTime<Utc>> {
        (0i64..21 * 86_400).prop_map(|s| london("2025-08-18 00:00:00") + Duration::seconds(s))
    }

    /// Gaps before and lengths of closed pauses, each after the last.
    fn pauses() -> impl Strategy<Value = Vec<(i64, i64)>> {
        proptest::collection::vec((0i64..2 * 86_400, 1i64..2 * 86_400), 0..4)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// The breach is where the running time reaches the target, and a pause that
        /// begins before the unpaused breach moves it by the business time it takes.
        #[test]
        fn running_time_reaches_the_target_at_the_breach(
            start in instants(),
            target in 1i64..40 * HOUR,
            gaps in pauses(),
        ) {
            let cal = calendar();
            let mut pauses: Vec<Pause> = Vec::new();
            let mut t = start;
            for (gap, length) in gaps {
                let from = t + Duration::seconds(gap);
                t = from + Duration::seconds(length);
                pauses.push((from, Some(t)));
            }
            let s = schedule(&cal, start, target, &pauses, &[0.5, 0.75]);
            let breach = s.breach.expect("no open pause");
            prop_assert_eq!(running_secs(&cal, start, &pauses, breach), target);
            prop_assert_eq!(running_secs(&cal, start, &pauses, breach - Duration::seconds(1)), target - 1);
            for (f, at) in &s.warnings {
                let at = at.expect("no open pause");
                prop_assert_eq!(running_secs(&cal, start, &pauses, at), warning_offset(target, *f));
                prop_assert!(at <= breach);
            }

            if let Some(first) = pauses.first().copied() {
                let unpaused = schedule(&cal, start, target, &[], &[]).breach.expect("due");
                if first.0 < unpaused {
                    let paused = cal.business_between(first.0, first.1.expect("closed"));
                    let one = schedule(&cal, start, target, &[first], &[]).breach;
                    prop_assert_eq!(one, cal.add_business(unpaused, paused));
                }
            }
        }
    }
}
