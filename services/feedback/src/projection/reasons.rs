//! The per-day defection-reason counters `fr:{p<partition>}:<day>`: what a batch adds to
//! them, and how a reader sums them per store and cause.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use churnguard_domain::feedback::outreach::{Cause, Contribution, Tally};
use churnguard_domain::feedback::{DefectionReason, Touchpoint};

use crate::error::FeedbackError;

/// The counters of [`Tally`], by the names the reasons hashes use.
const COUNTERS: [&str; 6] = [
    "complaints",
    "defectors",
    "lost",
    "won_back",
    "value_lost",
    "value_saved",
];

fn counters(t: &Tally) -> [i64; 6] {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    [
        n(t.complaints),
        n(t.defectors),
        n(t.lost),
        n(t.won_back),
        t.value_lost_minor,
        t.value_saved_minor,
    ]
}

fn add_counter(t: &mut Tally, counter: usize, by: i64) {
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    match counter {
        0 => t.complaints += n(by),
        1 => t.defectors += n(by),
        2 => t.lost += n(by),
        3 => t.won_back += n(by),
        4 => t.value_lost_minor += by,
        _ => t.value_saved_minor += by,
    }
}

fn encode_cause(cause: Cause) -> String {
    match cause {
        Cause::Reason(r) => format!("reason:{}", r.as_str()),
        Cause::Touchpoint(t) => format!("touchpoint:{}", t.as_str()),
    }
}

fn decode_cause(s: &str) -> Option<Cause> {
    match s.split_once(':')? {
        ("reason", r) => r.parse::<DefectionReason>().ok().map(Cause::Reason),
        ("touchpoint", t) => t.parse::<Touchpoint>().ok().map(Cause::Touchpoint),
        _ => None,
    }
}

/// A batch's increments of the reasons hashes: day → field → amount, where a field is
/// `<counter> <cause> <store>` (the store last, as in the other indexes).
#[derive(Debug, Default)]
pub(super) struct Tallies(pub(super) BTreeMap<NaiveDate, BTreeMap<String, i64>>);

impl Tallies {
    pub(super) fn add(&mut self, c: Option<Contribution>) {
        let Some(c) = c else { return };
        let day = self.0.entry(c.day).or_default();
        let cause = encode_cause(c.cause);
        for (name, by) in COUNTERS.iter().zip(counters(&c.tally)) {
            if by != 0 {
                *day.entry(format!("{name} {cause} {}", c.store.as_str()))
                    .or_default() += by;
            }
        }
    }
}

/// Sums reasons-hash fields (`<counter> <cause> <store>` → amount) per store and cause.
pub fn sum_reasons(
    fields: impl IntoIterator<Item = (String, i64)>,
    into: &mut BTreeMap<(String, Cause), Tally>,
) -> Result<(), FeedbackError> {
    for (field, by) in fields {
        let mut parts = field.splitn(3, ' ');
        let parsed = (|| {
            let name = parts.next()?;
            let counter = COUNTERS.iter().position(|c| *c == name)?;
            let cause = decode_cause(parts.next()?)?;
            Some((counter, cause, parts.next()?.to_owned()))
        })();
        let Some((counter, cause, store)) = parsed else {
            return Err(FeedbackError::Corrupt(format!("reasons field {field:?}")));
        };
        add_counter(into.entry((store, cause)).or_default(), counter, by);
    }
    Ok(())
}
