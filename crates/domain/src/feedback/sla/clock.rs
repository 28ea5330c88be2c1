//! A clock's running time in business time, less its pauses, and when its alarms fall
//! due.

use chrono::{DateTime, Utc};

use crate::feedback::calendar::BusinessCalendar;

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
    use chrono::Duration;
    use proptest::prelude::*;

    use super::super::testing::*;
    use super::*;

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
