//! Business time: when a store is open, so that an SLA clock only runs while someone
//! can act on a complaint.
//!
//! A [`BusinessCalendar`] is an IANA timezone, opening hours per weekday in local
//! wall-clock time, and holidays (local dates, closed all day). Every operation takes
//! and returns UTC instants, precise to the second: an instant's fraction of a second is
//! dropped on the way in, so `business_between` and `add_business` agree exactly.
//!
//! # Wall-clock times that do not exist, or exist twice
//!
//! Opening hours are wall-clock times, so on a DST change a boundary may fall in the
//! skipped hour (spring forward) or in the repeated one (fall back). Both cases follow one
//! rule: a local time stands for **the first instant at which the local clock shows that
//! time or later**. So a time in a gap maps forward to the end of the gap (01:30 on the
//! London spring-forward day is 02:00 BST), and an ambiguous time takes the earlier of its
//! two instants (01:30 on the fall-back day is 01:30 BST). The rule is monotone: a later
//! wall-clock time never maps to an earlier instant, so intervals stay ordered and an
//! interval wholly inside a gap is simply empty instead of inverted.
//!
//! # Configuration
//!
//! ```toml
//! [calendars.uk-high-street]
//! timezone = "Europe/London"
//! holidays = ["2025-08-25", "2025-12-25", "2025-12-26"]
//! [calendars.uk-high-street.hours]
//! monday = ["09:00-12:30", "13:30-17:30"]
//! saturday = ["10:00-16:00"]
//! sunday = []
//! ```
//!
//! Days not listed are closed. An interval may end at `24:00`; one that runs past
//! midnight is written as two, one on each day. Holidays are quoted `YYYY-MM-DD` strings.

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, SubsecRound,
    TimeZone, Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::error::{FieldViolation, Violations};

/// Seconds in a wall-clock day; also the value of `24:00`.
const DAY_SECS: u32 = 86_400;

/// How far [`BusinessCalendar::add_business`] looks, in local days from its start,
/// before it gives up and says `None`. Four years: more than any SLA target over any
/// run of holidays, while a calendar that cannot fit the duration still returns quickly.
pub const HORIZON_DAYS: u32 = 4 * 366;

/// Opening hours of a week, as configured: per weekday, zero or more `"HH:MM-HH:MM"`
/// intervals of local wall-clock time. A day with none is closed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WeekHours {
    pub monday: Vec<String>,
    pub tuesday: Vec<String>,
    pub wednesday: Vec<String>,
    pub thursday: Vec<String>,
    pub friday: Vec<String>,
    pub saturday: Vec<String>,
    pub sunday: Vec<String>,
}

impl WeekHours {
    /// The days in calendar order, Monday first, with their field names.
    fn days(&self) -> [(&'static str, &[String]); 7] {
        [
            ("monday", &self.monday),
            ("tuesday", &self.tuesday),
            ("wednesday", &self.wednesday),
            ("thursday", &self.thursday),
            ("friday", &self.friday),
            ("saturday", &self.saturday),
            ("sunday", &self.sunday),
        ]
    }
}

/// A calendar as written in configuration. [`CalendarConfig::build`] turns it into a
/// [`BusinessCalendar`] or names every field that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarConfig {
    /// An IANA timezone name, e.g. `Europe/London`.
    pub timezone: String,
    #[serde(default)]
    pub hours: WeekHours,
    /// Local dates, `YYYY-MM-DD`, closed all day.
    #[serde(default)]
    pub holidays: Vec<String>,
}

/// `path.name`, or just `name` at the top.
pub(super) fn field(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// `HH:MM` as seconds after midnight; `24:00` is allowed (as the end of a day).
fn parse_clock(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let two_digits = |x: &str| x.len() == 2 && x.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(h) || !two_digits(m) {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(DAY_SECS),
        (0..=23, 0..=59) => Some(h * 3600 + m * 60),
        _ => None,
    }
}

/// `"09:00-17:30"` as `[open, close)` in seconds after local midnight.
fn parse_interval(s: &str) -> Result<(u32, u32), String> {
    let malformed = || format!("{s:?} is not an interval like \"09:00-17:30\"");
    let (a, b) = s.split_once('-').ok_or_else(malformed)?;
    let open = parse_clock(a.trim()).ok_or_else(malformed)?;
    let close = parse_clock(b.trim()).ok_or_else(malformed)?;
    if open == DAY_SECS {
        return Err(format!("{s:?} opens at 24:00, which is the end of the day"));
    }
    if close == open {
        return Err(format!("{s:?} is empty"));
    }
    if close < open {
        return Err(format!(
            "{s:?} closes before it opens; hours past midnight are two intervals, \
             one ending at 24:00 and one on the next day starting at 00:00"
        ));
    }
    Ok((open, close))
}

impl CalendarConfig {
    /// Every problem, each naming its field under `path` (`path.timezone`,
    /// `path.hours.monday`, `path.holidays`); the description quotes the bad value.
    pub fn validate(&self, path: &str) -> Result<(), Violations> {
        self.build(path).map(|_| ())
    }

    /// The calendar this configuration describes, or every problem in it (see
    /// [`CalendarConfig::validate`]).
    pub fn build(&self, path: &str) -> Result<BusinessCalendar, Violations> {
        let mut v = Vec::new();
        let tz = match Tz::from_str(self.timezone.trim()) {
            Ok(tz) => Some(tz),
            Err(_) => {
                v.push(FieldViolation::new(
                    field(path, "timezone"),
                    format!(
                        "{:?} is not an IANA timezone name such as \"Europe/London\"",
                        self.timezone
                    ),
                ));
                None
            }
        };

        let mut week: [Vec<(u32, u32)>; 7] = Default::default();
        for (day, (name, texts)) in week.iter_mut().zip(self.hours.days()) {
            let path = field(path, &format!("hours.{name}"));
            for text in texts {
                match parse_interval(text) {
                    Ok(interval) => day.push(interval),
                    Err(e) => v.push(FieldViolation::new(path.clone(), e)),
                }
            }
            // Order does not matter in configuration; overlap does (it would count the
            // same hour twice). Touching intervals ("09:00-12:00", "12:00-17:00") are fine.
            day.sort_unstable();
            for pair in day.windows(2) {
                if pair[1].0 < pair[0].1 {
                    v.push(FieldViolation::new(
                        path.clone(),
                        format!(
                            "intervals {} and {} overlap",
                            show_interval(pair[0]),
                            show_interval(pair[1])
                        ),
                    ));
                }
            }
        }
        if self.hours.days().iter().all(|(_, texts)| texts.is_empty()) {
            v.push(FieldViolation::new(
                field(path, "hours"),
                "opens on no day of the week: no business time would ever pass",
            ));
        }

        let mut holidays = BTreeSet::new();
        for text in &self.holidays {
            match NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
                Ok(d) => {
                    holidays.insert(d);
                }
                Err(_) => v.push(FieldViolation::new(
                    field(path, "holidays"),
                    format!("{text:?} is not a date like \"2025-12-25\""),
                )),
            }
        }

        match tz {
            Some(tz) if v.is_empty() => Ok(BusinessCalendar {
                tz,
                week,
                holidays,
                config: self.clone(),
            }),
            _ => Err(Violations(v)),
        }
    }
}

fn show_clock(secs: u32) -> String {
    format!("{:02}:{:02}", secs / 3600, secs % 3600 / 60)
}

fn show_interval((open, close): (u32, u32)) -> String {
    format!("{}-{}", show_clock(open), show_clock(close))
}

/// Opening hours, holidays and a timezone: the clock SLA deadlines run on.
///
/// Built from a [`CalendarConfig`] (or deserialized through one; a bad configuration
/// then fails with the violations as its message), so an invalid calendar cannot exist.
/// In particular it is open on at least one weekday.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CalendarConfig", into = "CalendarConfig")]
pub struct BusinessCalendar {
    tz: Tz,
    /// `[open, close)` in seconds after local midnight, sorted and disjoint, indexed by
    /// `Weekday::num_days_from_monday`.
    week: [Vec<(u32, u32)>; 7],
    holidays: BTreeSet<NaiveDate>,
    /// What it was built from, so it serializes back the way it was written.
    config: CalendarConfig,
}

impl TryFrom<CalendarConfig> for BusinessCalendar {
    type Error = Violations;

    fn try_from(config: CalendarConfig) -> Result<Self, Self::Error> {
        config.build("")
    }
}

impl From<BusinessCalendar> for CalendarConfig {
    fn from(c: BusinessCalendar) -> Self {
        c.config
    }
}

/// Instants are counted in whole seconds: the fraction is dropped.
fn whole(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(0)
}

impl BusinessCalendar {
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    pub fn config(&self) -> &CalendarConfig {
        &self.config
    }

    /// The local date of an instant.
    pub fn local_date(&self, t: DateTime<Utc>) -> NaiveDate {
        t.with_timezone(&self.tz).date_naive()
    }

    /// Whether `date` is a configured holiday.
    pub fn is_holiday(&self, date: NaiveDate) -> bool {
        self.holidays.contains(&date)
    }

    /// The intervals open on a local date, as seconds after local midnight.
    fn hours_on(&self, date: NaiveDate) -> &[(u32, u32)] {
        if self.is_holiday(date) {
            &[]
        } else {
            &self.week[date.weekday().num_days_from_monday() as usize]
        }
    }

    /// The first instant at which the local clock shows `secs` after midnight of `date`
    /// or later (see the module doc). `None` only at the ends of chrono's range.
    fn instant(&self, date: NaiveDate, secs: u32) -> Option<DateTime<Utc>> {
        let (date, secs) = if secs >= DAY_SECS {
            (date.succ_opt()?, secs - DAY_SECS)
        } else {
            (date, secs)
        };
        let local = date.and_time(NaiveTime::from_num_seconds_from_midnight_opt(secs, 0)?);
        match self.tz.from_local_datetime(&local) {
            LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(a, b) => Some(a.min(b).with_timezone(&Utc)),
            LocalResult::None => self.end_of_gap(local),
        }
    }

    /// The first instant whose local time is at or after `local`, a time the local clock
    /// skips. Found by bisection on UTC seconds: every UTC offset lies within ±26 hours,
    /// and the local clock only moves forward around a gap.
    fn end_of_gap(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        let reached = |secs: i64| {
            DateTime::from_timestamp(secs, 0)
                .is_some_and(|u| u.with_timezone(&self.tz).naive_local() >= local)
        };
        let (mut before, mut after) = {
            let t = local.and_utc().timestamp();
            (t - 26 * 3600, t + 26 * 3600)
        };
        while after - before > 1 {
            let mid = before + (after - before) / 2;
            if reached(mid) {
                after = mid;
            } else {
                before = mid;
            }
        }
        DateTime::from_timestamp(after, 0)
    }

    /// The open periods `[open, close)` in UTC from `from` on, in order, the first
    /// clipped to start at `from`, for local dates up to and including `last`.
    fn periods(&self, from: DateTime<Utc>, last: NaiveDate) -> Periods<'_> {
        Periods {
            calendar: self,
            from,
            // No instant of an earlier local date can be open at or after `from`: the
            // mapping of wall-clock times to instants is monotone, and `from` is at or
            // after the first instant of its own local date.
            date: Some(self.local_date(from)),
            index: 0,
            last,
        }
    }

    /// The open periods from `from` on (the first clipped to start at `from`), for up to
    /// [`HORIZON_DAYS`] local days.
    pub fn open_periods(
        &self,
        from: DateTime<Utc>,
    ) -> impl Iterator<Item = (DateTime<Utc>, DateTime<Utc>)> + '_ {
        let from = whole(from);
        let last = self.horizon(from);
        self.periods(from, last)
    }

    fn horizon(&self, from: DateTime<Utc>) -> NaiveDate {
        let first = self.local_date(from);
        first
            .checked_add_days(chrono::Days::new(u64::from(HORIZON_DAYS)))
            .unwrap_or(NaiveDate::MAX)
    }

    /// The instant when `secs` seconds of open time have passed since `start`: the
    /// earliest `t >= start` with `business_between(start, t) == secs`.
    ///
    /// So a clock started outside opening hours starts counting at the next opening, and
    /// one that runs out exactly at closing time is due at closing time (not at the next
    /// opening). Zero (or a negative duration) is due at once: `start` itself, open or
    /// not. With this rule `business_between(a, add_business(a, d)) == d` for every `a`,
    /// and `add_business(add_business(a, x), y) == add_business(a, x + y)`.
    ///
    /// `None` if the calendar does not hold that much open time within
    /// [`HORIZON_DAYS`] local days of `start`.
    pub fn add_business(&self, start: DateTime<Utc>, secs: i64) -> Option<DateTime<Utc>> {
        let start = whole(start);
        let mut remaining = secs;
        if remaining <= 0 {
            return Some(start);
        }
        for (open, close) in self.periods(start, self.horizon(start)) {
            let length = (close - open).num_seconds();
            if remaining <= length {
                return Some(open + Duration::seconds(remaining));
            }
            remaining -= length;
        }
        None
    }

    /// Seconds of open time in `[a, b)`; zero if `b <= a`.
    pub fn business_between(&self, a: DateTime<Utc>, b: DateTime<Utc>) -> i64 {
        let (a, b) = (whole(a), whole(b));
        if b <= a {
            return 0;
        }
        // A period of a local date after b's cannot start before b; a day's margin
        // covers a fall-back across midnight.
        let last = self.local_date(b).succ_opt().unwrap_or(NaiveDate::MAX);
        self.periods(a, last)
            .take_while(|(open, _)| *open < b)
            .map(|(open, close)| (close.min(b) - open).num_seconds())
            .sum()
    }

    /// Whether the store is open at `t` (that is, during the second starting at `t`).
    pub fn is_open(&self, t: DateTime<Utc>) -> bool {
        self.business_between(t, t + Duration::seconds(1)) == 1
    }

    /// `t` if the store is open then, else the next opening; `None` beyond the horizon.
    pub fn next_open(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.open_periods(t).next().map(|(open, _)| open)
    }
}

/// The open periods of a calendar from an instant on, day by day.
struct Periods<'a> {
    calendar: &'a BusinessCalendar,
    from: DateTime<Utc>,
    /// The local date being walked; `None` once past the end of chrono's range.
    date: Option<NaiveDate>,
    /// The next interval of `date`'s hours.
    index: usize,
    last: NaiveDate,
}

impl Iterator for Periods<'_> {
    type Item = (DateTime<Utc>, DateTime<Utc>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let date = self.date.filter(|d| *d <= self.last)?;
            let Some(&(open, close)) = self.calendar.hours_on(date).get(self.index) else {
                self.date = date.succ_opt();
                self.index = 0;
                continue;
            };
            self.index += 1;
            let open = self.calendar.instant(date, open)?.max(self.from);
            let close = self.calendar.instant(date, close)?;
            // Empty when the interval is already over at `from`, or lies in a DST gap.
            if open < close {
                return Some((open, close));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;
    use proptest::prelude::*;

    fn config(timezone: &str, weekdays: &[&str], holidays: &[&str]) -> CalendarConfig {
        let hours: Vec<String> = weekdays.iter().map(|s| (*s).to_owned()).collect();
        CalendarConfig {
            timezone: timezone.to_owned(),
            hours: WeekHours {
                monday: hours.clone(),
                tuesday: hours.clone(),
                wednesday: hours.clone(),
                thursday: hours.clone(),
                friday: hours,
                ..WeekHours::default()
            },
            holidays: holidays.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// Mon-Fri 09:00-17:00 in London.
    fn london(holidays: &[&str]) -> BusinessCalendar {
        config("Europe/London", &["09:00-17:00"], holidays)
            .build("")
            .expect("valid")
    }

    /// Open every hour of every day.
    fn always(tz: &str) -> BusinessCalendar {
        let all = vec!["00:00-24:00".to_owned()];
        CalendarConfig {
            timezone: tz.to_owned(),
            hours: WeekHours {
                monday: all.clone(),
                tuesday: all.clone(),
                wednesday: all.clone(),
                thursday: all.clone(),
                friday: all.clone(),
                saturday: all.clone(),
                sunday: all,
            },
            holidays: vec![],
        }
        .build("")
        .expect("valid")
    }

    /// A UTC instant from a London (or any zone's) wall-clock time, which must be
    /// unambiguous.
    fn at(cal: &BusinessCalendar, s: &str) -> DateTime<Utc> {
        let local = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("date");
        cal.timezone()
            .from_local_datetime(&local)
            .single()
            .expect("unambiguous")
            .with_timezone(&Utc)
    }

    fn utc(s: &str) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
            .expect("date")
            .and_utc()
    }

    const HOUR: i64 = 3600;

    #[test]
    fn a_friday_afternoon_complaint_is_due_on_monday_or_tuesday_after_a_holiday() {
        let cal = london(&[]);
        // Friday 14 March 2025, 16:00: one hour left that day, three more on Monday.
        let filed = at(&cal, "2025-03-14 16:00:00");
        assert_eq!(
            cal.add_business(filed, 4 * HOUR),
            Some(at(&cal, "2025-03-17 12:00:00"))
        );
        // The same with Monday a holiday.
        let cal = london(&["2025-03-17"]);
        let due = cal.add_business(filed, 4 * HOUR);
        assert_eq!(due, Some(at(&cal, "2025-03-18 12:00:00")));
        assert_eq!(
            cal.business_between(filed, at(&cal, "2025-03-18 12:00:00")),
            4 * HOUR
        );
    }

    #[test]
    fn a_clock_that_runs_out_at_closing_time_is_due_at_closing_time() {
        let cal = london(&[]);
        let filed = at(&cal, "2025-03-14 16:00:00");
        assert_eq!(
            cal.add_business(filed, HOUR),
            Some(at(&cal, "2025-03-14 17:00:00"))
        );
        assert_eq!(
            cal.add_business(filed, HOUR + 1),
            Some(at(&cal, "2025-03-17 09:00:01"))
        );
        // Zero is due at once, open or not.
        let saturday = at(&cal, "2025-03-15 11:00:00");
        assert_eq!(cal.add_business(saturday, 0), Some(saturday));
        // Outside hours, counting starts at the next opening.
        assert_eq!(
            cal.add_business(saturday, 90),
            Some(at(&cal, "2025-03-17 09:01:30"))
        );
        assert_eq!(
            cal.next_open(saturday),
            Some(at(&cal, "2025-03-17 09:00:00"))
        );
        assert!(!cal.is_open(saturday));
        assert!(cal.is_open(at(&cal, "2025-03-17 09:00:00")));
        assert!(!cal.is_open(at(&cal, "2025-03-17 17:00:00")));
    }

    #[test]
    fn fractions_of_a_second_are_dropped() {
        let cal = london(&[]);
        let t = at(&cal, "2025-03-14 10:00:00") + Duration::milliseconds(700);
        assert_eq!(
            cal.add_business(t, 60),
            Some(at(&cal, "2025-03-14 10:01:00"))
        );
        assert_eq!(
            cal.business_between(
                t,
                at(&cal, "2025-03-14 10:01:00") + Duration::milliseconds(900)
            ),
            60
        );
    }

    #[test]
    fn a_dst_weekend_counts_business_hours_not_utc_hours() {
        let cal = london(&[]);
        // Clocks go forward on Sunday 30 March 2025: Friday is GMT, Monday is BST.
        let friday = at(&cal, "2025-03-28 16:00:00");
        assert_eq!(friday, utc("2025-03-28 16:00:00"));
        let due = cal.add_business(friday, 4 * HOUR);
        assert_eq!(due, Some(at(&cal, "2025-03-31 12:00:00")));
        assert_eq!(due, Some(utc("2025-03-31 11:00:00")));
        // They go back on Sunday 26 October 2025: Friday is BST, Monday is GMT.
        let friday = at(&cal, "2025-10-24 16:00:00");
        assert_eq!(friday, utc("2025-10-24 15:00:00"));
        assert_eq!(
            cal.add_business(friday, 4 * HOUR),
            Some(utc("2025-10-27 12:00:00"))
        );
    }

    #[test]
    fn a_day_open_round_the_clock_is_23_or_25_hours_long_on_dst_days() {
        let cal = always("Europe/London");
        let day = |d: &str| {
            let date = NaiveDate::parse_from_str(d, "%Y-%m-%d").expect("date");
            let from = cal.instant(date, 0).expect("in range");
            let to = cal.instant(date, DAY_SECS).expect("in range");
            cal.business_between(from, to)
        };
        assert_eq!(day("2025-03-30"), 23 * HOUR);
        assert_eq!(day("2025-10-26"), 25 * HOUR);
        assert_eq!(day("2025-06-01"), 24 * HOUR);
    }

    #[test]
    fn hours_in_a_gap_map_forward_and_ambiguous_hours_take_the_earlier_instant() {
        let mut c = config("Europe/London", &[], &[]);
        c.hours.sunday = vec!["01:30-02:30".to_owned()];
        let cal = c.build("").expect("valid");
        // 30 March 2025: 01:00 GMT jumps to 02:00 BST. 01:30 does not exist: it maps to
        // 02:00 BST (01:00 UTC); 02:30 BST is 01:30 UTC. Half an hour open.
        let spring = cal.open_periods(utc("2025-03-29 12:00:00")).next();
        assert_eq!(
            spring,
            Some((utc("2025-03-30 01:00:00"), utc("2025-03-30 01:30:00")))
        );
        // 26 October 2025: 02:00 BST falls back to 01:00 GMT. 01:30 happens twice; the
        // first is 00:30 UTC. 02:30 GMT is 02:30 UTC. Two hours open.
        let autumn = cal.open_periods(utc("2025-10-25 12:00:00")).next();
        assert_eq!(
            autumn,
            Some((utc("2025-10-26 00:30:00"), utc("2025-10-26 02:30:00")))
        );

        // An interval wholly inside the gap is empty that day, not inverted.
        let mut c = config("Europe/London", &[], &[]);
        c.hours.sunday = vec!["01:10-01:50".to_owned(), "12:00-13:00".to_owned()];
        let cal = c.build("").expect("valid");
        assert_eq!(
            cal.open_periods(utc("2025-03-29 12:00:00")).next(),
            Some((utc("2025-03-30 11:00:00"), utc("2025-03-30 12:00:00")))
        );
    }

    #[test]
    fn a_long_closure_and_a_duration_too_large_for_the_horizon() {
        // Closed for Christmas week and New Year's Day.
        let holidays: Vec<String> = (22..=31)
            .map(|d| format!("2025-12-{d}"))
            .chain(["2026-01-01".to_owned()])
            .collect();
        let holidays: Vec<&str> = holidays.iter().map(String::as_str).collect();
        let cal = london(&holidays);
        let filed = at(&cal, "2025-12-19 16:59:00");
        assert_eq!(
            cal.add_business(filed, 2 * 60),
            Some(at(&cal, "2026-01-02 09:01:00"))
        );
        // Forty hours a week for four years is about 8,300 hours; a million is too many.
        assert_eq!(cal.add_business(filed, 1_000_000 * HOUR), None);
    }

    #[test]
    fn a_calendar_deserializes_from_config_and_back() {
        let json = r#"{"timezone": "Europe/London",
            "hours": {"monday": ["13:30-17:30", "09:00-12:30"], "saturday": ["10:00-24:00"]},
            "holidays": ["2025-12-25"]}"#;
        let cal: BusinessCalendar = serde_json::from_str(json).expect("valid");
        assert_eq!(cal.week[0], vec![(9 * 3600, 45_000), (48_600, 63_000)]);
        assert_eq!(cal.week[5], vec![(36_000, DAY_SECS)]);
        let again: BusinessCalendar =
            serde_json::from_str(&serde_json::to_string(&cal).expect("serializes")).expect("ok");
        assert_eq!(again, cal);

        let bad = json.replace("Europe/London", "Europe/Londres");
        let e = serde_json::from_str::<BusinessCalendar>(&bad).expect_err("bad zone");
        assert!(e.to_string().contains("timezone"), "{e}");
        let typo = json.replace("holidays", "holiday");
        assert!(serde_json::from_str::<BusinessCalendar>(&typo).is_err());
    }

    #[test]
    fn validation_names_every_bad_field() {
        let mut c = config(
            "Mars/Olympus",
            &["09:00-17:00"],
            &["2025-02-30", "2025-12-25"],
        );
        c.hours.monday = vec!["9-17".into()];
        c.hours.tuesday = vec!["09:00-13:00".into(), "12:00-17:00".into()];
        c.hours.wednesday = vec!["17:00-09:00".into()];
        c.hours.thursday = vec!["24:00-24:00".into(), "10:00-10:00".into()];
        c.hours.friday = vec!["09:00-24:00".into(), "08:60-09:00".into()];
        let v = c.validate("calendars.store-7").expect_err("invalid");
        let fields: Vec<&str> = v.fields().collect();
        assert_eq!(
            fields,
            [
                "calendars.store-7.timezone",
                "calendars.store-7.hours.monday",
                "calendars.store-7.hours.tuesday",
                "calendars.store-7.hours.wednesday",
                "calendars.store-7.hours.thursday",
                "calendars.store-7.hours.thursday",
                "calendars.store-7.hours.friday",
                "calendars.store-7.holidays",
            ],
            "{v}"
        );
        for quoted in ["Mars/Olympus", "9-17", "12:00-17:00", "2025-02-30", "08:60"] {
            assert!(v.to_string().contains(quoted), "{quoted}: {v}");
        }

        let closed = CalendarConfig {
            timezone: "UTC".into(),
            hours: WeekHours::default(),
            holidays: vec![],
        };
        let v = closed.validate("").expect_err("never open");
        assert_eq!(v.fields().collect::<Vec<_>>(), ["hours"]);
    }

    // ---- Properties -------------------------------------------------------------------

    /// Zones with DST of an hour, half an hour (Lord Howe), in the south, and none.
    const ZONES: &[&str] = &[
        "Europe/London",
        "America/New_York",
        "Australia/Lord_Howe",
        "Australia/Sydney",
        "Asia/Kolkata",
        "UTC",
    ];

    /// UTC instants near DST changes of those zones in 2025, to start ranges from.
    const NEAR: &[&str] = &[
        "2025-03-28 12:00:00",
        "2025-10-24 12:00:00",
        "2025-03-07 12:00:00",
        "2025-10-31 12:00:00",
        "2025-04-04 12:00:00",
        "2025-10-03 12:00:00",
        "2025-06-11 12:00:00",
    ];

    /// One day's hours: up to three intervals on a quarter-hour grid, possibly running
    /// to 24:00. Built from sorted cut points so they never overlap.
    fn day_hours() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::btree_set(0u32..=96, 0..=6).prop_map(|cuts| {
            let cuts: Vec<u32> = cuts.into_iter().collect();
            cuts.chunks_exact(2)
                .map(|p| show_interval((p[0] * 900, p[1] * 900)))
                .collect()
        })
    }

    fn calendars() -> impl Strategy<Value = BusinessCalendar> {
        (
            proptest::sample::select(ZONES),
            proptest::collection::vec(day_hours(), 7),
            proptest::collection::vec(0u32..20, 0..4),
        )
            .prop_filter_map("open some day", |(tz, days, holidays)| {
                let mut days = days.into_iter();
                let mut next = || days.next().unwrap_or_default();
                CalendarConfig {
                    timezone: tz.to_owned(),
                    hours: WeekHours {
                        monday: next(),
                        tuesday: next(),
                        wednesday: next(),
                        thursday: next(),
                        friday: next(),
                        saturday: next(),
                        sunday: next(),
                    },
                    // Holidays among the days around the ranges tested.
                    holidays: holidays
                        .iter()
                        .flat_map(|d| {
                            NEAR.iter().map(move |n| {
                                let base = utc(n).date_naive();
                                (base + Duration::days(i64::from(*d) - 5)).to_string()
                            })
                        })
                        .collect(),
                }
                .build("")
                .ok()
            })
    }

    fn instants() -> impl Strategy<Value = DateTime<Utc>> {
        (proptest::sample::select(NEAR), -3 * 86_400i64..4 * 86_400)
            .prop_map(|(near, secs)| utc(near) + Duration::seconds(secs))
    }

    /// The reference: step minute by minute. The local clock "as if it never went back"
    /// (the running maximum of local times) is at or after a wall-clock time exactly
    /// from the first instant showing it, which is the module's rule; so a minute is open
    /// when that clock reads a time inside its date's hours.
    fn open_minutes(cal: &BusinessCalendar, from: DateTime<Utc>, minutes: i64) -> Vec<bool> {
        let mut clock = NaiveDateTime::MIN;
        let warm_up = 2 * 24 * 60;
        (-warm_up..minutes)
            .map(|m| {
                let t = from + Duration::minutes(m);
                clock = clock.max(t.with_timezone(&cal.tz).naive_local());
                let secs = clock.time().num_seconds_from_midnight();
                cal.hours_on(clock.date())
                    .iter()
                    .any(|(o, c)| *o <= secs && secs < *c)
            })
            .skip(warm_up as usize)
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn between_and_add_match_a_minute_by_minute_reference(
            cal in calendars(),
            from in instants(),
            minutes in 0i64..4 * 24 * 60,
        ) {
            let from = DateTime::from_timestamp(from.timestamp().div_euclid(60) * 60, 0).expect("in range");
            let open = open_minutes(&cal, from, minutes);
            let to = from + Duration::minutes(minutes);
            let counted = open.iter().filter(|o| **o).count() as i64;
            prop_assert_eq!(cal.business_between(from, to), counted * 60);

            // add_business(from, k minutes) is the end of the k-th open minute.
            if counted > 0 {
                let k = (minutes * 7919) % counted + 1;
                let minute = open
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| **o)
                    .nth((k - 1) as usize)
                    .map(|(i, _)| i as i64);
                prop_assert_eq!(
                    cal.add_business(from, k * 60),
                    minute.map(|i| from + Duration::minutes(i + 1))
                );
            }
        }

        #[test]
        fn add_then_measure_gives_the_duration_back(
            cal in calendars(),
            a in instants(),
            d in 0i64..10 * 86_400,
        ) {
            let Some(due) = cal.add_business(a, d) else {
                // Only when the calendar has too little open time in the horizon.
                let horizon = a + Duration::days(i64::from(HORIZON_DAYS) - 1);
                prop_assert!(cal.business_between(a, horizon) < d);
                return Ok(());
            };
            prop_assert!(due >= a.trunc_subsecs(0));
            prop_assert_eq!(cal.business_between(a, due), d);
            // And it is the earliest such instant.
            if d > 0 {
                prop_assert_eq!(cal.business_between(a, due - Duration::seconds(1)), d - 1);
            }
        }

        #[test]
        fn adding_is_monotone_and_additive(
            cal in calendars(),
            a in instants(),
            x in 0i64..3 * 86_400,
            y in 0i64..3 * 86_400,
        ) {
            let (Some(after_x), Some(after_xy)) = (cal.add_business(a, x), cal.add_business(a, x + y)) else {
                return Ok(()); // a calendar open a few minutes a week: beyond the horizon
            };
            prop_assert!(after_x <= after_xy);
            prop_assert_eq!(cal.add_business(after_x, y), Some(after_xy));
        }

        #[test]
        fn measuring_is_monotone_and_additive(
            cal in calendars(),
            a in instants(),
            x in 0i64..3 * 86_400,
            y in 0i64..3 * 86_400,
        ) {
            let b = a + Duration::seconds(x);
            let c = b + Duration::seconds(y);
            let (ab, bc, ac) = (cal.business_between(a, b), cal.business_between(b, c), cal.business_between(a, c));
            prop_assert!(ab <= x && bc <= y);
            prop_assert_eq!(ab + bc, ac);
        }
    }
}
