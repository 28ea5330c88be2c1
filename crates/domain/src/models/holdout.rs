//! The holdout check of Fader, Hardie & Lee (2005): fit BG/NBD on a calibration period,
//! then compare what it predicts for a later holdout period with what the customers did.
//!
//! The input is every purchase as (customer, local day), folded into [`PurchaseDays`]
//! (duplicates and several purchases a day collapse: the models count purchase days).
//! [`PurchaseDays::check`] then, for the customers whose first purchase is on or before
//! the calibration end:
//!
//! - takes the calibration summaries as of the calibration end (x distinct repeat
//!   purchase days, t_x and T in weeks from the first purchase, as
//!   [`crate::customer::CustomerState::rfm`] does) and fits BG/NBD on them;
//! - counts each customer's purchase days after the calibration end up to the holdout
//!   end (the actuals) and sets E\[Y(t) | x, t_x, T\] against them, t the holdout's length:
//!   in total and by calibration repeat purchases x = 0, 1, ..., 6 and 7 or more (their
//!   Table and Figure);
//! - tracks cumulative repeat purchases week by week from the first customer's first
//!   purchase to the holdout end: actual (repeat purchase days up to the end of the
//!   week) against predicted, Σ E\[X(w - s_i)\] over the customers with s_i < w, s_i the
//!   week of their first purchase (their weekly tracking figure).
//!
//! Pure: days are passed in, nothing is read.

use std::collections::{BTreeMap, HashMap};

use super::{BgNbd, FitError, Rfm};
use crate::customer::Day;

/// Customers with this many calibration repeat purchases or more share the last row of
/// [`HoldoutCheck::by_x`] (the literature's "7+").
pub const OPEN_ROW: u32 = 7;

/// Every customer's purchase days, in any order, repeats allowed.
#[derive(Debug, Clone, Default)]
pub struct PurchaseDays {
    days: HashMap<String, Vec<Day>>,
}

/// One customer, split at the calibration end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split {
    /// The day of the first purchase.
    pub first_day: Day,
    /// The calibration summary, in weeks, as of the calibration end.
    pub calibration: Rfm,
    /// Purchase days after the calibration end, up to the holdout end.
    pub holdout: u32,
}

/// Predicted against actual holdout purchases of the customers with `x` calibration
/// repeat purchases (`x` or more where `or_more`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HoldoutRow {
    pub x: u32,
    pub or_more: bool,
    pub customers: u64,
    /// Mean purchase days in the holdout period (0 without customers).
    pub actual_mean: f64,
    /// Mean E\[Y(t) | x, t_x, T\] over the holdout's length t (0 without customers).
    pub predicted_mean: f64,
}

/// Cumulative repeat purchases up to the end of `week` (1: the week starting on the
/// first customer's first purchase).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HoldoutWeek {
    pub week: u32,
    pub actual: u64,
    pub predicted: f64,
}

/// What the holdout check found.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldoutCheck {
    /// The first purchase of the first customer: week 1 starts on it.
    pub first_day: Day,
    /// The last day of the calibration period.
    pub calibration_end: Day,
    /// The last day of the holdout period.
    pub holdout_end: Day,
    /// Weeks from `first_day` to the end of the calibration period (39 for CDNOW).
    pub calibration_weeks: f64,
    /// The holdout's length in weeks, the t of E\[Y(t)\].
    pub holdout_weeks: f64,
    /// BG/NBD fitted on the calibration summaries, and its log-likelihood.
    pub model: BgNbd,
    pub log_likelihood: f64,
    /// Customers whose first purchase is on or before the calibration end.
    pub customers: u64,
    /// Customers whose first purchase is after it: not in the check.
    pub excluded: u64,
    /// Repeat purchase days in the calibration period.
    pub calibration_purchases: u64,
    /// Purchase days in the holdout period.
    pub actual: u64,
    /// Σ E\[Y(t) | x, t_x, T\] over the customers.
    pub predicted: f64,
    /// By calibration repeat purchases: 0, 1, ..., 6 and [`OPEN_ROW`] or more.
    pub by_x: Vec<HoldoutRow>,
    /// Every week from `first_day` to the holdout end.
    pub weekly: Vec<HoldoutWeek>,
}

/// Why a holdout check cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HoldoutError {
    #[error("the holdout period is empty: it must end after the calibration end")]
    NoHoldout,
    #[error("no customer made a first purchase on or before the calibration end")]
    NoCustomers,
    #[error("fitting BG/NBD on the calibration period failed: {0}")]
    Fit(#[from] FitError),
}

/// Days as weeks.
fn weeks(days: Day) -> f64 {
    f64::from(days) / 7.0
}

impl PurchaseDays {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a purchase of `customer` on `day`.
    pub fn add(&mut self, customer: &str, day: Day) {
        match self.days.get_mut(customer) {
            Some(days) => days.push(day),
            None => {
                self.days.insert(customer.to_owned(), vec![day]);
            }
        }
    }

    /// Customers with a purchase.
    pub fn customers(&self) -> usize {
        self.days.len()
    }

    /// The last day with a purchase.
    pub fn last_day(&self) -> Option<Day> {
        self.days.values().flatten().copied().max()
    }

    /// Sorts each customer's days and drops repeats: one entry per purchase day.
    fn collapse(&mut self) {
        for days in self.days.values_mut() {
            days.sort_unstable();
            days.dedup();
        }
    }

    /// Each customer whose first purchase is on or before `calibration_end`, split there,
    /// with the holdout purchases up to `holdout_end`; in no particular order.
    pub fn splits(&mut self, calibration_end: Day, holdout_end: Day) -> Vec<Split> {
        self.collapse();
        self.days
            .values()
            .filter_map(|days| split(days, calibration_end, holdout_end))
            .collect()
    }

    /// The holdout check with the calibration period ending on `calibration_end` and the
    /// holdout period on `holdout_end` (default: the last day with a purchase).
    /// CPU-bound: a fit, and E\[Y\] for every customer.
    pub fn check(
        mut self,
        calibration_end: Day,
        holdout_end: Option<Day>,
    ) -> Result<HoldoutCheck, HoldoutError> {
        let holdout_end = holdout_end
            .or_else(|| self.last_day())
            .filter(|end| *end > calibration_end)
            .ok_or(HoldoutError::NoHoldout)?;
        let splits = self.splits(calibration_end, holdout_end);
        let first_day = splits
            .iter()
            .map(|s| s.first_day)
            .min()
            .ok_or(HoldoutError::NoCustomers)?;
        let excluded = (self.days.len() - splits.len()) as u64;

        let calibration: Vec<Rfm> = splits.iter().map(|s| s.calibration).collect();
        let (model, log_likelihood) = BgNbd::fit(&calibration)?;
        let holdout_weeks = weeks(holdout_end - calibration_end);

        let mut rows: Vec<(u64, u64, f64)> = vec![(0, 0, 0.0); OPEN_ROW as usize + 1];
        let (mut actual, mut predicted) = (0, 0.0);
        for s in &splits {
            let expected = model.expected_purchases(&s.calibration, holdout_weeks);
            let row = &mut rows[(s.calibration.x as usize).min(OPEN_ROW as usize)];
            row.0 += 1;
            row.1 += u64::from(s.holdout);
            row.2 += expected;
            actual += u64::from(s.holdout);
            predicted += expected;
        }
        let by_x = rows
            .into_iter()
            .zip(0..)
            .map(|((customers, actual, predicted), x)| {
                let mean = |total: f64| {
                    if customers == 0 {
                        0.0
                    } else {
                        total / customers as f64
                    }
                };
                HoldoutRow {
                    x,
                    or_more: x == OPEN_ROW,
                    customers,
                    actual_mean: mean(actual as f64),
                    predicted_mean: mean(predicted),
                }
            })
            .collect();

        let weekly = self.weekly(&model, &splits, first_day, calibration_end, holdout_end);
        Ok(HoldoutCheck {
            first_day,
            calibration_end,
            holdout_end,
            calibration_weeks: weeks(calibration_end + 1 - first_day),
            holdout_weeks,
            model,
            log_likelihood,
            customers: splits.len() as u64,
            excluded,
            calibration_purchases: calibration.iter().map(|c| c.x as u64).sum(),
            actual,
            predicted,
            by_x,
            weekly,
        })
    }

    /// The weekly cumulative series. Actual: the calibration customers' repeat purchase
    /// days, each in the week it falls in. Predicted at the end of week w (the holdout
    /// end, for a last week it cuts short): Σ E\[X(w - s_i)\], computed once per day of
    /// first purchase (a cohort), not once per customer.
    fn weekly(
        &self,
        model: &BgNbd,
        splits: &[Split],
        first_day: Day,
        calibration_end: Day,
        holdout_end: Day,
    ) -> Vec<HoldoutWeek> {
        let span = holdout_end + 1 - first_day;
        let count = (span + 6) / 7;
        let mut repeats = vec![0u64; count.max(0) as usize];
        for days in self.days.values() {
            let Some(first) = days.first().filter(|f| **f <= calibration_end) else {
                continue;
            };
            debug_assert!(*first >= first_day);
            for d in days.iter().skip(1).take_while(|d| **d <= holdout_end) {
                repeats[((d - first_day) / 7) as usize] += 1;
            }
        }
        let mut cohorts: BTreeMap<Day, u64> = BTreeMap::new();
        for s in splits {
            *cohorts.entry(s.first_day).or_default() += 1;
        }
        let mut actual = 0;
        repeats
            .into_iter()
            .zip(1..)
            .map(|(n, week)| {
                actual += n;
                let end = (f64::from(week)).min(weeks(span));
                let predicted = cohorts
                    .iter()
                    .map(|(first, n)| (weeks(first - first_day), *n as f64))
                    .filter(|(start, _)| *start < end)
                    .map(|(start, n)| n * model.expected_purchases_new(end - start))
                    .sum();
                HoldoutWeek {
                    week,
                    actual,
                    predicted,
                }
            })
            .collect()
    }
}

/// One customer's sorted, distinct days split at `calibration_end`; `None` for a customer
/// whose first purchase is after it.
fn split(days: &[Day], calibration_end: Day, holdout_end: Day) -> Option<Split> {
    let first = *days.first().filter(|f| **f <= calibration_end)?;
    let calibration = days.partition_point(|d| *d <= calibration_end);
    let holdout = days.partition_point(|d| *d <= holdout_end) - calibration;
    let last = days[calibration - 1];
    Some(Split {
        first_day: first,
        calibration: Rfm {
            x: (calibration - 1) as f64,
            t_x: weeks(last - first),
            t: weeks(calibration_end - first),
        },
        holdout: holdout as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLISHED: BgNbd = BgNbd {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };

    fn close(got: f64, want: f64, tol: f64) -> bool {
        (got - want).abs() <= tol
    }

    #[test]
    fn the_conditional_and_unconditional_expectations_have_the_golden_values() {
        let c = Rfm {
            x: 2.0,
            t_x: 30.43,
            t: 38.86,
        };
        let e = PUBLISHED.expected_purchases(&c, 39.0);
        assert!(close(e, 1.226, 5e-3), "E[Y(39)] = {e}");
        for (t, want) in [(1.0, 0.053), (3.0, 0.151), (78.0, 1.86)] {
            let got = PUBLISHED.expected_purchases_new(t);
            assert!(close(got, want, want * 0.02), "E[X({t})] = {got}");
        }
        // E[Y(t) | 0, 0, 0]: a customer seen only at the start is a new customer.
        let new = Rfm {
            x: 0.0,
            t_x: 0.0,
            t: 0.0,
        };
        for t in [1.0, 39.0, 78.0] {
            let (y, x) = (
                PUBLISHED.expected_purchases(&new, t),
                PUBLISHED.expected_purchases_new(t),
            );
            assert!(close(y, x, 1e-9 * x), "t = {t}: {y} vs {x}");
        }
    }

    #[test]
    fn days_split_at_the_calibration_end_into_summaries_and_holdout_counts() {
        let mut p = PurchaseDays::new();
        // Days 0, 7 (twice: one purchase day), 14 | 21, 28 | 35 (after the holdout end).
        for d in [14, 0, 7, 7, 21, 28, 35] {
            p.add("a", d);
        }
        p.add("b", 10);
        p.add("late", 20);
        let mut splits = p.splits(14, 30);
        splits.sort_by_key(|s| s.first_day);
        assert_eq!(
            splits,
            vec![
                Split {
                    first_day: 0,
                    calibration: Rfm {
                        x: 2.0,
                        t_x: 2.0,
                        t: 2.0
                    },
                    holdout: 2,
                },
                Split {
                    first_day: 10,
                    calibration: Rfm {
                        x: 0.0,
                        t_x: 0.0,
                        t: 4.0 / 7.0
                    },
                    holdout: 0,
                },
            ]
        );
    }

    /// Customers drawn deterministically: each buys every `gap` days from their first
    /// day until they stop.
    fn population() -> PurchaseDays {
        let mut p = PurchaseDays::new();
        for i in 0..400 {
            let first = i % 60;
            let gap = 5 + (i * 7) % 40;
            let stop = first + 20 + (i * 13) % 500;
            let mut d = first;
            while d <= stop.min(540) {
                p.add(&format!("c{i}"), d);
                d += gap;
            }
        }
        p
    }

    #[test]
    fn the_check_adds_up_by_row_and_week() {
        let mut p = population();
        p.add("after", 300);
        let last = p.last_day().expect("days");
        let check = p.clone().check(272, None).expect("a check");
        assert_eq!(check.holdout_end, last);
        assert_eq!((check.customers, check.excluded), (400, 1));
        assert_eq!(check.first_day, 0);
        assert!(close(check.calibration_weeks, 39.0, 1e-12));
        assert!(close(
            check.holdout_weeks,
            f64::from(last - 272) / 7.0,
            1e-12
        ));

        // The rows add up to the totals.
        assert_eq!(check.by_x.len(), OPEN_ROW as usize + 1);
        assert_eq!(check.by_x.iter().map(|r| r.customers).sum::<u64>(), 400);
        let actual: f64 = check
            .by_x
            .iter()
            .map(|r| r.actual_mean * r.customers as f64)
            .sum();
        assert!(close(actual, check.actual as f64, 1e-6));
        let predicted: f64 = check
            .by_x
            .iter()
            .map(|r| r.predicted_mean * r.customers as f64)
            .sum();
        assert!(close(predicted, check.predicted, 1e-6));

        // The totals are the closed form over the splits with the fitted model.
        let splits = p.splits(272, last);
        let calibration: Vec<Rfm> = splits
            .iter()
            .filter(|s| s.first_day <= 272)
            .map(|s| s.calibration)
            .collect();
        let (model, ll) = BgNbd::fit(&calibration).expect("fit");
        assert_eq!((check.model, check.log_likelihood), (model, ll));
        let want: f64 = calibration
            .iter()
            .map(|c| model.expected_purchases(c, check.holdout_weeks))
            .sum();
        assert!(close(check.predicted, want, 1e-9 * want));
        assert_eq!(
            check.actual,
            splits.iter().map(|s| u64::from(s.holdout)).sum::<u64>()
        );

        // Weekly: every week to the holdout end; cumulative; the actual ends at the
        // calibration and holdout repeat purchases together.
        assert_eq!(check.weekly.len(), ((last + 1 + 6) / 7) as usize);
        assert!(
            check
                .weekly
                .windows(2)
                .all(|w| w[0].actual <= w[1].actual && w[0].predicted <= w[1].predicted)
        );
        let end = check.weekly.last().expect("weeks");
        assert_eq!(end.actual, check.calibration_purchases + check.actual);
        // At the calibration end, the actual is the calibration's repeat purchases.
        assert_eq!(check.weekly[38].actual, check.calibration_purchases);
        // The predicted at week w is Σ E[X(w - s_i)].
        let w = 20.0;
        let want: f64 = splits
            .iter()
            .map(|s| f64::from(s.first_day) / 7.0)
            .filter(|s| *s < w)
            .map(|s| model.expected_purchases_new(w - s))
            .sum();
        assert!(close(check.weekly[19].predicted, want, 1e-9 * want));
    }

    #[test]
    fn no_holdout_or_no_customers_is_said() {
        let p = population();
        assert_eq!(
            p.clone().check(600, None).err(),
            Some(HoldoutError::NoHoldout)
        );
        assert_eq!(
            p.clone().check(100, Some(100)).err(),
            Some(HoldoutError::NoHoldout)
        );
        assert_eq!(
            PurchaseDays::new().check(100, Some(200)).err(),
            Some(HoldoutError::NoCustomers)
        );
        let mut late = PurchaseDays::new();
        late.add("x", 150);
        assert_eq!(
            late.check(100, Some(200)).err(),
            Some(HoldoutError::NoCustomers)
        );
    }
}
