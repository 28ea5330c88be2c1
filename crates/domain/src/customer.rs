//! A customer's purchase state as churn-scoring keeps it: the summary the models need
//! (purchases collapsed per local day), per-day buckets over a rolling horizon, and the
//! store mix. This is the reference: the Redis script must produce exactly this state,
//! and tests rebuild expected state from the log with it.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, NaiveDate};

use crate::models::{Rfm, Spend};

/// A local calendar day, as days since 1970-01-01.
pub type Day = i32;

/// The store-local day of an event time.
pub fn local_day(t: &DateTime<FixedOffset>) -> Day {
    day_of(t.date_naive())
}

pub fn day_of(date: NaiveDate) -> Day {
    (date - NaiveDate::default()).num_days() as Day
}

/// A stable 32-bit fingerprint of a swipe id (FNV-1a), for duplicate detection within a
/// day bucket. The Redis script computes the same from the same input.
pub fn swipe_fingerprint(swipe_id: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in swipe_id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// One local day of a customer's purchases.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DayBucket {
    pub visits: u32,
    pub spend: i64,
    /// Fingerprints of the swipes counted on this day.
    pub swipes: Vec<u32>,
}

/// What one swipe did to the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Counted,
    /// The same swipe was counted already (a POS retry).
    Duplicate,
    /// Older than the horizon before the customer's last purchase: it can no longer be
    /// told apart from a duplicate, so it is not counted.
    TooLate,
}

/// A customer's state. Spend is in minor units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerState {
    pub first_day: Day,
    pub first_day_spend: i64,
    pub last_day: Day,
    /// Distinct purchase days after the first.
    pub repeat_days: u32,
    /// Spend on those days.
    pub repeat_spend: i64,
    /// Per-day buckets from `last_day - horizon` on.
    pub days: BTreeMap<Day, DayBucket>,
    /// Swipes per store.
    pub stores: BTreeMap<String, u32>,
}

impl CustomerState {
    /// The state after a customer's first swipe.
    pub fn new(day: Day, spend: i64, store: &str, fingerprint: u32) -> Self {
        let mut s = Self {
            first_day: day,
            first_day_spend: 0,
            last_day: day,
            repeat_days: 0,
            repeat_spend: 0,
            days: BTreeMap::new(),
            stores: BTreeMap::new(),
        };
        s.first_day_spend = spend;
        s.add_to_bucket(day, spend, store, fingerprint);
        s
    }

    /// Applies one swipe. `horizon` is how many days of buckets are kept before the last
    /// purchase day; swipes older than that are [`Applied::TooLate`].
    pub fn apply(
        &mut self,
        day: Day,
        spend: i64,
        store: &str,
        fingerprint: u32,
        horizon: Day,
    ) -> Applied {
        if self
            .days
            .get(&day)
            .is_some_and(|b| b.swipes.contains(&fingerprint))
        {
            return Applied::Duplicate;
        }
        if day < self.last_day - horizon {
            return Applied::TooLate;
        }
        let seen_day = self.days.contains_key(&day);
        if day < self.first_day {
            // An earlier first purchase: the old first day becomes a repeat day.
            self.repeat_days += 1;
            self.repeat_spend += self.first_day_spend;
            self.first_day = day;
            self.first_day_spend = spend;
        } else if day == self.first_day {
            self.first_day_spend += spend;
        } else {
            if !seen_day {
                self.repeat_days += 1;
            }
            self.repeat_spend += spend;
        }
        self.add_to_bucket(day, spend, store, fingerprint);
        if day > self.last_day {
            self.last_day = day;
            let cutoff = self.last_day - horizon;
            self.days.retain(|d, _| *d >= cutoff);
        }
        Applied::Counted
    }

    fn add_to_bucket(&mut self, day: Day, spend: i64, store: &str, fingerprint: u32) {
        let b = self.days.entry(day).or_default();
        b.visits += 1;
        b.spend += spend;
        b.swipes.push(fingerprint);
        *self.stores.entry(store.to_owned()).or_insert(0) += 1;
    }

    /// The model summary at `as_of`, in weeks.
    pub fn rfm(&self, as_of: Day) -> Rfm {
        Rfm {
            x: f64::from(self.repeat_days),
            t_x: f64::from(self.last_day - self.first_day) / 7.0,
            t: f64::from(as_of - self.first_day) / 7.0,
        }
    }

    /// The customer's home store: the one with the most swipes in their store mix, the
    /// smallest store id on a tie. Defections count against it, and its policy applies.
    pub fn home_store(&self) -> Option<&str> {
        let mut home: Option<(&str, u32)> = None;
        for (store, n) in &self.stores {
            if home.is_none_or(|(_, best)| *n > best) {
                home = Some((store, *n));
            }
        }
        home.map(|(s, _)| s)
    }

    /// Mean spend per repeat purchase day, in major units (for Gamma-Gamma).
    pub fn spend(&self) -> Spend {
        let x = f64::from(self.repeat_days);
        Spend {
            x,
            mean_spend: if self.repeat_days > 0 {
                self.repeat_spend as f64 / 100.0 / x
            } else {
                0.0
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Day = 90;

    fn apply_all(swipes: &[(Day, i64, &str)]) -> CustomerState {
        let (d, s, id) = swipes[0];
        let mut st = CustomerState::new(d, s, "store-1", swipe_fingerprint(id));
        for (d, s, id) in &swipes[1..] {
            st.apply(*d, *s, "store-1", swipe_fingerprint(id), H);
        }
        st
    }

    #[test]
    fn purchases_collapse_per_day() {
        let s = apply_all(&[
            (100, 500, "a"),
            (100, 300, "b"),
            (107, 200, "c"),
            (107, 100, "d"),
            (120, 50, "e"),
        ]);
        assert_eq!(
            (s.first_day, s.first_day_spend, s.last_day),
            (100, 800, 120)
        );
        assert_eq!((s.repeat_days, s.repeat_spend), (2, 350));
        assert_eq!(s.days[&107].visits, 2);
        assert_eq!(s.stores["store-1"], 5);
        let rfm = s.rfm(127);
        assert_eq!((rfm.x, rfm.t_x, rfm.t), (2.0, 20.0 / 7.0, 27.0 / 7.0));
        assert_eq!(s.spend().mean_spend, 1.75);
    }

    #[test]
    fn duplicates_are_counted_once() {
        let once = apply_all(&[(100, 500, "a"), (107, 200, "b")]);
        let twice = apply_all(&[
            (100, 500, "a"),
            (107, 200, "b"),
            (107, 200, "b"),
            (100, 500, "a"),
        ]);
        assert_eq!(once, twice);
    }

    #[test]
    fn order_within_the_horizon_does_not_matter() {
        let swipes = [
            (100, 500, "a"),
            (103, 100, "b"),
            (103, 50, "c"),
            (110, 200, "d"),
            (150, 70, "e"),
        ];
        let ordered = apply_all(&swipes);
        // Every permutation of the five gives the same state.
        let mut idx = [0, 1, 2, 3, 4];
        let mut count = 0;
        permute(&mut idx, 0, &mut |p| {
            let shuffled: Vec<(Day, i64, &str)> = p.iter().map(|&i| swipes[i]).collect();
            let mut got = apply_all(&shuffled);
            for b in got.days.values_mut() {
                b.swipes.sort_unstable();
            }
            let mut want = ordered.clone();
            for b in want.days.values_mut() {
                b.swipes.sort_unstable();
            }
            assert_eq!(got, want, "order {p:?}");
            count += 1;
        });
        assert_eq!(count, 120);
    }

    fn permute(a: &mut [usize; 5], k: usize, f: &mut impl FnMut(&[usize; 5])) {
        if k == a.len() {
            f(a);
            return;
        }
        for i in k..a.len() {
            a.swap(k, i);
            permute(a, k + 1, f);
            a.swap(k, i);
        }
    }

    #[test]
    fn buckets_roll_with_the_horizon_and_too_late_swipes_are_refused() {
        let mut s = apply_all(&[(100, 500, "a"), (150, 100, "b")]);
        assert!(s.days.contains_key(&100));
        assert_eq!(
            s.apply(200, 10, "store-1", swipe_fingerprint("c"), H),
            Applied::Counted
        );
        assert!(
            !s.days.contains_key(&100),
            "older than the horizon: dropped"
        );
        assert_eq!(
            s.apply(105, 10, "store-1", swipe_fingerprint("late"), H),
            Applied::TooLate
        );
        assert_eq!(s.repeat_days, 2);
    }

    #[test]
    fn the_home_store_has_the_most_swipes_and_ties_go_to_the_smallest_id() {
        let mut s = CustomerState::new(1, 100, "b", swipe_fingerprint("1"));
        assert_eq!(s.home_store(), Some("b"));
        s.apply(2, 100, "a", swipe_fingerprint("2"), H);
        assert_eq!(s.home_store(), Some("a"), "one each: the smallest id");
        s.apply(3, 100, "b", swipe_fingerprint("3"), H);
        assert_eq!(s.home_store(), Some("b"));
    }

    #[test]
    fn fingerprints_are_fnv1a() {
        assert_eq!(swipe_fingerprint(""), 0x811c_9dc5);
        assert_eq!(swipe_fingerprint("a"), 0xe40c_292c);
    }
}
