//! One partition batch, folded in Rust: what the batch must read of each customer hash,
//! and what it writes back. The store reads those fields in one pipeline, this module
//! applies the records in log order, and `commit_batch.lua` writes the result only if the
//! partition's checkpoint is still the one read with them (see `CustomerStore::apply_batch`).
//!
//! It mirrors `churnguard_domain::customer::CustomerState::apply` on the stored layout of
//! a customer hash (ARCHITECTURE.md, "churn-scoring's state"):
//! - `s`: `first,first_spend,last,repeat_days,repeat_spend,oldest_bucket,swipes`;
//! - `d:<day>`: `visits,spend,fingerprint,fingerprint,...` for each day within the horizon;
//! - `m:<store>`: swipes at that store.
//!
//! Only the fields a batch touches are read: the summary, the buckets of the days its
//! records fall on and the store-mix entries of their stores. When the last purchase day
//! moves so far that buckets fall out of the horizon, the store lists the hash's bucket
//! names (rare: once per customer per horizon) and [`Pending::roll`] drops them.

use std::collections::{BTreeMap, BTreeSet};

use churnguard_domain::customer::{Day, local_day, swipe_fingerprint};
use churnguard_domain::{CardSwiped, DecodeError};
use churnguard_eventlog::Record;

/// One swipe, ready for the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoredSwipe {
    pub offset: u64,
    pub customer: String,
    pub day: Day,
    pub spend: i64,
    pub store: String,
    pub fingerprint: u32,
}

impl ScoredSwipe {
    /// The swipe a log record carries, or why it is not a card swipe this scorer reads.
    pub fn from_record(r: &Record) -> Result<Self, DecodeError> {
        let e = CardSwiped::decode(&r.payload)?;
        Ok(Self {
            offset: r.offset,
            customer: e.data.customer.to_string(),
            day: local_day(&e.data.occurred_at),
            spend: e.data.amount.minor_units,
            store: e.data.store_id.to_string(),
            fingerprint: swipe_fingerprint(e.data.swipe_id.as_str()),
        })
    }
}

/// The summary field `s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub first: Day,
    pub first_spend: i64,
    pub last: Day,
    pub repeat_days: u32,
    pub repeat_spend: i64,
    /// The oldest day bucket kept (a lower bound is enough to know when to roll).
    pub oldest: Day,
    /// Swipes counted: the timers' compare-and-set reads it (transition.lua).
    pub swipes: u64,
}

impl Summary {
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.split(',');
        let mut next = || it.next();
        let summary = Summary {
            first: next()?.parse().ok()?,
            first_spend: next()?.parse().ok()?,
            last: next()?.parse().ok()?,
            repeat_days: next()?.parse().ok()?,
            repeat_spend: next()?.parse().ok()?,
            oldest: next()?.parse().ok()?,
            swipes: next()?.parse().ok()?,
        };
        next().is_none().then_some(summary)
    }

    pub fn render(&self) -> String {
        format!(
            "{},{},{},{},{},{},{}",
            self.first,
            self.first_spend,
            self.last,
            self.repeat_days,
            self.repeat_spend,
            self.oldest,
            self.swipes
        )
    }
}

/// A day bucket `d:<day>`: visits, spend and the fingerprints of the swipes counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub visits: u64,
    pub spend: i64,
    /// The fingerprints as stored, comma-separated.
    pub fingerprints: String,
}

impl Bucket {
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.splitn(3, ',');
        Some(Bucket {
            visits: it.next()?.parse().ok()?,
            spend: it.next()?.parse().ok()?,
            fingerprints: it.next()?.to_owned(),
        })
    }

    fn new(spend: i64, fingerprint: &str) -> Self {
        Bucket {
            visits: 1,
            spend,
            fingerprints: fingerprint.to_owned(),
        }
    }

    fn contains(&self, fingerprint: &str) -> bool {
        self.fingerprints.split(',').any(|f| f == fingerprint)
    }

    fn add(&mut self, spend: i64, fingerprint: &str) {
        self.visits += 1;
        self.spend += spend;
        self.fingerprints.push(',');
        self.fingerprints.push_str(fingerprint);
    }

    pub fn render(&self) -> String {
        format!("{},{},{}", self.visits, self.spend, self.fingerprints)
    }
}

/// What one record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Counted,
    Duplicate,
    TooLate,
}

/// A field of the hash a batch needs, in the order [`Pending::fields`] names them.
pub fn bucket_field(day: Day) -> String {
    format!("d:{day}")
}

pub fn mix_field(store: &str) -> String {
    format!("m:{store}")
}

/// One customer's share of a batch: the fields as read, then as the records leave them.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub key: String,
    summary: Option<Summary>,
    /// Every day the batch's records fall on; `None` when there is no bucket (never had
    /// one, or dropped from the horizon).
    buckets: BTreeMap<Day, Option<Bucket>>,
    /// Every store the batch's records name.
    mix: BTreeMap<String, Option<u64>>,
    changed_days: BTreeSet<Day>,
    changed_stores: BTreeSet<String>,
    /// The earliest day counted: the customer is due for assessment then (stream time).
    due: Option<Day>,
    /// Buckets before this day must go (the horizon moved past the oldest bucket).
    roll_below: Option<Day>,
    /// Bucket days known to exist in Redis after a roll, besides those read.
    listed: Option<BTreeSet<Day>>,
}

impl Pending {
    /// The fields to read for these records (all of one customer).
    pub fn fields<'a>(records: impl IntoIterator<Item = &'a ScoredSwipe>) -> Vec<String> {
        let mut days = BTreeSet::new();
        let mut stores = BTreeSet::new();
        for r in records {
            days.insert(r.day);
            stores.insert(r.store.as_str());
        }
        let mut fields = Vec::with_capacity(1 + days.len() + stores.len());
        fields.push("s".to_owned());
        fields.extend(days.into_iter().map(bucket_field));
        fields.extend(stores.into_iter().map(mix_field));
        fields
    }

    /// The customer as read: `values` answers `fields` (made by [`Pending::fields`] for
    /// the records to apply), in order (HMGET). A value that does not parse is named.
    pub fn read(
        key: String,
        fields: &[String],
        values: Vec<Option<String>>,
    ) -> Result<Self, String> {
        if values.len() != fields.len() {
            return Err(format!(
                "{key}: asked for {} fields, got {}",
                fields.len(),
                values.len()
            ));
        }
        let corrupt = |field: &str| format!("{key} field {field}");
        let key = key.clone();
        let mut pending = Pending {
            key,
            summary: None,
            buckets: BTreeMap::new(),
            mix: BTreeMap::new(),
            changed_days: BTreeSet::new(),
            changed_stores: BTreeSet::new(),
            due: None,
            roll_below: None,
            listed: None,
        };
        for (field, value) in fields.iter().zip(values) {
            if field == "s" {
                pending.summary = match value {
                    Some(v) => Some(Summary::parse(&v).ok_or_else(|| corrupt(field))?),
                    None => None,
                };
            } else if let Some(day) = field.strip_prefix("d:") {
                let day: Day = day.parse().map_err(|_| corrupt(field))?;
                let bucket = match value {
                    Some(v) => Some(Bucket::parse(&v).ok_or_else(|| corrupt(field))?),
                    None => None,
                };
                pending.buckets.insert(day, bucket);
            } else if let Some(store) = field.strip_prefix("m:") {
                let n = match value {
                    Some(v) => Some(v.parse().map_err(|_| corrupt(field))?),
                    None => None,
                };
                pending.mix.insert(store.to_owned(), n);
            }
        }
        Ok(pending)
    }

    /// Applies one record, as `CustomerState::apply` does: a fingerprint already in its
    /// day's bucket is a duplicate; a day older than the horizon before the last purchase
    /// is too late; anything else is counted.
    pub fn apply(&mut self, r: &ScoredSwipe, horizon: Day) -> Effect {
        let fingerprint = r.fingerprint.to_string();
        let Some(mut s) = self.summary else {
            // A new customer: the hash has no summary, so nothing of it counts.
            self.summary = Some(Summary {
                first: r.day,
                first_spend: r.spend,
                last: r.day,
                repeat_days: 0,
                repeat_spend: 0,
                oldest: r.day,
                swipes: 1,
            });
            self.buckets
                .insert(r.day, Some(Bucket::new(r.spend, &fingerprint)));
            self.changed_days.insert(r.day);
            self.mix.insert(r.store.clone(), Some(1));
            self.changed_stores.insert(r.store.clone());
            self.counted(r.day);
            return Effect::Counted;
        };
        let bucket = self.buckets.get(&r.day).and_then(Option::as_ref);
        if bucket.is_some_and(|b| b.contains(&fingerprint)) {
            return Effect::Duplicate;
        }
        if r.day < s.last - horizon {
            return Effect::TooLate;
        }
        let seen_day = bucket.is_some();
        if r.day < s.first {
            // An earlier first purchase: the old first day becomes a repeat day.
            s.repeat_days += 1;
            s.repeat_spend += s.first_spend;
            s.first = r.day;
            s.first_spend = r.spend;
        } else if r.day == s.first {
            s.first_spend += r.spend;
        } else {
            if !seen_day {
                s.repeat_days += 1;
            }
            s.repeat_spend += r.spend;
        }
        s.swipes += 1;
        s.oldest = s.oldest.min(r.day);
        match self.buckets.get_mut(&r.day) {
            Some(Some(b)) => b.add(r.spend, &fingerprint),
            _ => {
                self.buckets
                    .insert(r.day, Some(Bucket::new(r.spend, &fingerprint)));
            }
        }
        self.changed_days.insert(r.day);
        let n = self.mix.entry(r.store.clone()).or_insert(None);
        *n = Some(n.unwrap_or(0) + 1);
        self.changed_stores.insert(r.store.clone());
        if r.day > s.last {
            s.last = r.day;
            let cutoff = s.last - horizon;
            if s.oldest < cutoff {
                // Buckets before the cutoff go; those this batch read or made go now,
                // so later records of the batch see them gone, the rest at the roll.
                for (_, b) in self.buckets.range_mut(..cutoff) {
                    *b = None;
                }
                self.roll_below = Some(cutoff);
            }
        }
        self.summary = Some(s);
        self.counted(r.day);
        Effect::Counted
    }

    fn counted(&mut self, day: Day) {
        self.due = Some(self.due.map_or(day, |d| d.min(day)));
    }

    /// Whether the hash's bucket names must be listed before writing (see [`Pending::roll`]).
    pub fn needs_listing(&self) -> bool {
        self.roll_below.is_some()
    }

    /// Takes the hash's field names (HKEYS) when [`Pending::needs_listing`]: its buckets
    /// before the cutoff are deleted, and the oldest bucket left becomes exact again.
    pub fn roll(&mut self, field_names: &[String]) {
        self.listed = Some(
            field_names
                .iter()
                .filter_map(|f| f.strip_prefix("d:")?.parse().ok())
                .collect(),
        );
    }

    /// Whether the batch changed this customer (counted one of its records).
    pub fn changed(&self) -> bool {
        self.due.is_some()
    }

    /// What to write for a changed customer: field/value pairs for HSET, the bucket
    /// fields to delete, and the day the customer is due for assessment.
    pub fn writes(&self) -> (Vec<String>, Vec<String>, Day) {
        let mut set = Vec::new();
        let mut delete = Vec::new();
        let (Some(mut s), Some(due)) = (self.summary, self.due) else {
            return (set, delete, Day::MAX);
        };
        if let Some(cutoff) = self.roll_below {
            // The buckets left: those in Redis from the cutoff on, and this batch's.
            let listed = self.listed.iter().flatten().copied();
            let mut oldest = None;
            for day in listed {
                if day < cutoff {
                    delete.push(bucket_field(day));
                } else if self.buckets.get(&day).is_none_or(Option::is_some) {
                    oldest = Some(oldest.map_or(day, |o: Day| o.min(day)));
                }
            }
            for (day, b) in &self.buckets {
                if b.is_some() {
                    oldest = Some(oldest.map_or(*day, |o: Day| o.min(*day)));
                }
            }
            s.oldest = oldest.unwrap_or(s.last);
        }
        set.push("s".to_owned());
        set.push(s.render());
        for day in &self.changed_days {
            if let Some(Some(b)) = self.buckets.get(day) {
                set.push(bucket_field(*day));
                set.push(b.render());
            }
        }
        for store in &self.changed_stores {
            if let Some(Some(n)) = self.mix.get(store) {
                set.push(mix_field(store));
                set.push(n.to_string());
            }
        }
        (set, delete, due)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use churnguard_domain::customer::{Applied, CustomerState};
    use proptest::prelude::*;

    use super::*;

    /// A customer hash held in memory, written the way commit_batch.lua writes.
    fn apply_batch(
        hash: &mut BTreeMap<String, String>,
        records: &[ScoredSwipe],
        horizon: Day,
    ) -> Vec<Effect> {
        let fields = Pending::fields(records);
        let values = fields.iter().map(|f| hash.get(f).cloned()).collect();
        let mut p = Pending::read("k".into(), &fields, values).expect("read");
        let effects = records.iter().map(|r| p.apply(r, horizon)).collect();
        if p.needs_listing() {
            let names: Vec<String> = hash.keys().cloned().collect();
            p.roll(&names);
        }
        let (set, delete, _) = p.writes();
        for f in delete {
            hash.remove(&f);
        }
        for pair in set.chunks(2) {
            hash.insert(pair[0].clone(), pair[1].clone());
        }
        effects
    }

    /// The hash read back as the domain's state (as store.rs parses it).
    fn state(hash: &BTreeMap<String, String>) -> Option<CustomerState> {
        let s = Summary::parse(hash.get("s")?)?;
        let mut days = BTreeMap::new();
        let mut stores = BTreeMap::new();
        for (k, v) in hash {
            if let Some(d) = k.strip_prefix("d:") {
                let b = Bucket::parse(v).expect("bucket");
                days.insert(
                    d.parse().expect("day"),
                    churnguard_domain::customer::DayBucket {
                        visits: b.visits as u32,
                        spend: b.spend,
                        swipes: b
                            .fingerprints
                            .split(',')
                            .map(|f| f.parse().expect("fp"))
                            .collect(),
                    },
                );
                assert!(
                    s.oldest <= d.parse().expect("day"),
                    "oldest is a lower bound"
                );
            } else if let Some(st) = k.strip_prefix("m:") {
                stores.insert(st.to_owned(), v.parse().expect("mix"));
            }
        }
        Some(CustomerState {
            first_day: s.first,
            first_day_spend: s.first_spend,
            last_day: s.last,
            repeat_days: s.repeat_days,
            repeat_spend: s.repeat_spend,
            days,
            stores,
        })
    }

    fn swipe(day: Day, spend: i64, store: u8, fingerprint: u32) -> ScoredSwipe {
        ScoredSwipe {
            offset: 0,
            customer: "c".into(),
            day,
            spend,
            store: format!("s{store}"),
            fingerprint,
        }
    }

    proptest! {
        /// Any records, cut into any batches, leave the hash equal to the domain's state
        /// after the same records one by one, with the same effect for each.
        #[test]
        fn batches_equal_the_domain_record_by_record(
            records in prop::collection::vec((0..60i32, 1..5_000i64, 0..3u8, 0..40u32), 1..60),
            cuts in prop::collection::vec(1..8usize, 1..30),
            horizon in 1..30i32,
        ) {
            let records: Vec<ScoredSwipe> = records
                .into_iter()
                .map(|(d, s, st, fp)| swipe(20_000 + d, s, st, fp))
                .collect();
            let mut reference: Option<CustomerState> = None;
            let mut expected = Vec::new();
            for r in &records {
                expected.push(match &mut reference {
                    None => {
                        reference = Some(CustomerState::new(r.day, r.spend, &r.store, r.fingerprint));
                        Effect::Counted
                    }
                    Some(st) => match st.apply(r.day, r.spend, &r.store, r.fingerprint, horizon) {
                        Applied::Counted => Effect::Counted,
                        Applied::Duplicate => Effect::Duplicate,
                        Applied::TooLate => Effect::TooLate,
                    },
                });
            }
            let mut hash = BTreeMap::new();
            let mut effects = Vec::new();
            let mut at = 0;
            for cut in cuts.iter().cycle() {
                if at >= records.len() {
                    break;
                }
                let end = (at + cut).min(records.len());
                effects.extend(apply_batch(&mut hash, &records[at..end], horizon));
                at = end;
            }
            prop_assert_eq!(effects, expected);
            prop_assert_eq!(state(&hash), reference);
        }
    }

    #[test]
    fn a_summary_round_trips_and_refuses_a_short_one() {
        let s = Summary {
            first: 20_000,
            first_spend: -5,
            last: 20_010,
            repeat_days: 3,
            repeat_spend: 700,
            oldest: 20_001,
            swipes: 9,
        };
        assert_eq!(Summary::parse(&s.render()), Some(s));
        assert_eq!(Summary::parse("1,2,3"), None);
        assert_eq!(Summary::parse("1,2,3,4,5,6,7,8"), None);
    }

    #[test]
    fn a_corrupt_field_is_named() {
        let r = [swipe(20_000, 10, 1, 7)];
        let e = Pending::read(
            "cs:{p0}:c".into(),
            &Pending::fields(&r),
            vec![Some("1,2".into()), None, None],
        )
        .expect_err("a short summary is corrupt");
        assert_eq!(e, "cs:{p0}:c field s");
    }
}
