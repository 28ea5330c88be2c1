//! Why customers leave, per store: the read model fed by outreach and complaint events,
//! and the one definition of what each event adds to it.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::case::OutreachCase;
use super::events::OutreachEvent;
use crate::aggregate::Aggregate;
use crate::feedback::complaint::ComplaintEvent;
use crate::feedback::vocab::{DefectionReason, OutreachOutcome, Touchpoint};
use crate::ids::{ComplaintId, OutreachCaseId, StoreId};

/// What a row is about: a reason a defector gave, or the touchpoint a complaint named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Cause {
    Reason(DefectionReason),
    Touchpoint(Touchpoint),
}

/// Counts and money for one (store, cause) over some days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tally {
    /// Complaints filed naming this touchpoint.
    pub complaints: u64,
    /// Outreach cases in which the customer gave this reason (once per case).
    pub defectors: u64,
    /// Cases closed as lost, by the reason given when lost.
    pub lost: u64,
    /// Cases closed as won back.
    pub won_back: u64,
    /// Value at risk of the lost cases, in minor units.
    pub value_lost_minor: i64,
    /// Value at risk of the won-back cases, in minor units.
    pub value_saved_minor: i64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.complaints += other.complaints;
        self.defectors += other.defectors;
        self.lost += other.lost;
        self.won_back += other.won_back;
        self.value_lost_minor += other.value_lost_minor;
        self.value_saved_minor += other.value_saved_minor;
    }
}

/// One row of a [`DefectionReasons::between`] answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonRow {
    pub store: StoreId,
    pub cause: Cause,
    pub tally: Tally,
}

/// What one accepted event adds to the read model: a tally for one UTC day, store and
/// cause. The one definition of what counts, shared by [`DefectionReasons`] and the
/// service's Redis projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contribution {
    pub day: NaiveDate,
    pub store: StoreId,
    pub cause: Cause,
    pub tally: Tally,
}

/// What outreach event `event` adds, given the case as it stood before it (`None` before
/// the opening). A reason counts one defector the first time a case gives it; the
/// outcome that closes a case counts its value once, as lost or saved, under the reason
/// given with it. Openings and attempts without a reason add nothing.
pub fn outreach_contribution(
    before: Option<&OutreachCase>,
    event: &OutreachEvent,
) -> Option<Contribution> {
    let OutreachEvent::OutreachRecorded {
        reason: Some(reason),
        outcome,
        at,
        ..
    } = event
    else {
        return None;
    };
    let case = before?;
    let mut tally = Tally::default();
    if !case.attempts.iter().any(|a| a.reason == Some(*reason)) {
        tally.defectors = 1;
    }
    match outcome {
        OutreachOutcome::Lost => {
            tally.lost = 1;
            tally.value_lost_minor = case.value_at_risk_minor;
        }
        OutreachOutcome::WonBack => {
            tally.won_back = 1;
            tally.value_saved_minor = case.value_at_risk_minor;
        }
        OutreachOutcome::NotReached | OutreachOutcome::Reached => {}
    }
    (tally != Tally::default()).then(|| Contribution {
        day: at.date_naive(),
        store: case.home_store.clone(),
        cause: Cause::Reason(*reason),
        tally,
    })
}

/// What complaint event `event` adds: a filing counts one complaint for its touchpoint
/// and store, on the day it was filed. Nothing else counts: the touchpoint a customer
/// complained about is what they experienced.
pub fn complaint_contribution(event: &ComplaintEvent) -> Option<Contribution> {
    let ComplaintEvent::ComplaintFiled {
        store_id,
        touchpoint,
        at,
        ..
    } = event
    else {
        return None;
    };
    Some(Contribution {
        day: at.date_naive(),
        store: store_id.clone(),
        cause: Cause::Touchpoint(*touchpoint),
        tally: Tally {
            complaints: 1,
            ..Tally::default()
        },
    })
}

/// A pure fold over outreach and complaint events: per UTC day, store and cause, how many
/// complained, how many defectors gave which reason, and how much value was lost or saved.
///
/// Feed each stream's events in order with their version (1-based position in the
/// stream); an event at or below a stream's last seen version is a redelivery and is
/// skipped, so at-least-once delivery does not double count.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DefectionReasons {
    days: BTreeMap<(NaiveDate, StoreId, Cause), Tally>,
    cases: BTreeMap<OutreachCaseId, OutreachCase>,
    case_versions: BTreeMap<OutreachCaseId, u64>,
    complaint_versions: BTreeMap<ComplaintId, u64>,
}

impl DefectionReasons {
    pub fn new() -> Self {
        Self::default()
    }

    fn add(&mut self, c: Contribution) {
        self.days
            .entry((c.day, c.store, c.cause))
            .or_default()
            .add(&c.tally);
    }

    /// Adds event number `version` of outreach case `case`.
    pub fn add_outreach(&mut self, case: &OutreachCaseId, version: u64, event: &OutreachEvent) {
        let seen = self.case_versions.entry(case.clone()).or_default();
        if version <= *seen {
            return;
        }
        *seen = version;
        let before = self.cases.remove(case);
        if let Some(c) = outreach_contribution(before.as_ref(), event) {
            self.add(c);
        }
        if let Some(after) = OutreachCase::apply(before, event) {
            self.cases.insert(case.clone(), after);
        }
    }

    /// Adds event number `version` of complaint `complaint`. Only filings count: the
    /// touchpoint a customer complained about is what they experienced.
    pub fn add_complaint(&mut self, complaint: &ComplaintId, version: u64, event: &ComplaintEvent) {
        let seen = self
            .complaint_versions
            .entry(complaint.clone())
            .or_default();
        if version <= *seen {
            return;
        }
        *seen = version;
        if let Some(c) = complaint_contribution(event) {
            self.add(c);
        }
    }

    /// Totals per (store, cause) over the UTC days `from ..= to`, ordered by store, then
    /// by value lost (largest first), then by cause.
    pub fn between(&self, from: NaiveDate, to: NaiveDate) -> Vec<ReasonRow> {
        let mut totals: BTreeMap<(&StoreId, Cause), Tally> = BTreeMap::new();
        for ((day, store, cause), t) in &self.days {
            if *day >= from && *day <= to {
                totals.entry((store, *cause)).or_default().add(t);
            }
        }
        let mut rows: Vec<ReasonRow> = totals
            .into_iter()
            .map(|((store, cause), tally)| ReasonRow {
                store: store.clone(),
                cause,
                tally,
            })
            .collect();
        rows.sort_by(|a, b| {
            a.store
                .cmp(&b.store)
                .then(b.tally.value_lost_minor.cmp(&a.tally.value_lost_minor))
                .then(a.cause.cmp(&b.cause))
        });
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;
    use super::*;
    use crate::ids::ComplaintId;

    #[test]
    fn defection_reasons_sum_per_store_and_cause_over_a_period() {
        let mut model = DefectionReasons::new();
        let feed = |model: &mut DefectionReasons, case: &str, log: &[OutreachEvent]| {
            let id = OutreachCaseId::parse(case).expect("id");
            for (i, e) in log.iter().enumerate() {
                model.add_outreach(&id, i as u64 + 1, e);
            }
        };
        let (_, lost) = run(vec![
            (
                0,
                OutreachCommand::OpenOutreach(opening("o-1", "sig-1", "s1", 30_000)),
            ),
            (1, record("price", "", "reached")),
            (2, record("price", "", "lost")),
        ]);
        let (_, won) = run(vec![
            (
                0,
                OutreachCommand::OpenOutreach(opening("o-2", "sig-2", "s1", 10_000)),
            ),
            (1, record("staff", "", "won_back")),
        ]);
        let (_, later) = run(vec![
            (
                24 * 10,
                OutreachCommand::OpenOutreach(OpenOutreach {
                    due_at: t(24 * 12),
                    ..opening("o-3", "sig-3", "s1", 5_000)
                }),
            ),
            (24 * 10 + 1, record("price", "", "lost")),
        ]);
        feed(&mut model, "o-1", &lost);
        feed(&mut model, "o-1", &lost); // redelivered: ignored
        feed(&mut model, "o-2", &won);
        feed(&mut model, "o-3", &later);

        let complaint = crate::feedback::complaint::Complaint::handle(
            None,
            crate::feedback::complaint::ComplaintCommand::FileComplaint(
                crate::feedback::complaint::FileComplaint {
                    expected_version: None,
                    complaint_id: ComplaintId::parse("c-1").expect("id"),
                    idempotency_key: "k".into(),
                    customer: crate::swipe::CustomerInput::CustomerId("cust-1".into()),
                    contact: crate::feedback::complaint::SealedContact::new(vec![1]),
                    store_id: "s1".into(),
                    channel: "web".into(),
                    touchpoint: "staff".into(),
                    severity: "minor".into(),
                    description: "ignored at the counter".into(),
                    occurred_at: t(0),
                },
            ),
            t(1),
            &crate::feedback::complaint::Context::default(),
        )
        .expect("filed");
        let cid = ComplaintId::parse("c-1").expect("id");
        model.add_complaint(&cid, 1, &complaint[0]);

        let day = t(0).date_naive();
        let rows = model.between(day, day);
        let got: Vec<(Cause, Tally)> = rows.iter().map(|r| (r.cause, r.tally)).collect();
        assert_eq!(
            got,
            vec![
                (
                    Cause::Reason(DefectionReason::Price),
                    Tally {
                        defectors: 1,
                        lost: 1,
                        value_lost_minor: 30_000,
                        ..Tally::default()
                    }
                ),
                (
                    Cause::Reason(DefectionReason::Staff),
                    Tally {
                        defectors: 1,
                        won_back: 1,
                        value_saved_minor: 10_000,
                        ..Tally::default()
                    }
                ),
                (
                    Cause::Touchpoint(Touchpoint::Staff),
                    Tally {
                        complaints: 1,
                        ..Tally::default()
                    }
                ),
            ]
        );
        let all = model.between(day, day + chrono::Days::new(30));
        let price = all
            .iter()
            .find(|r| r.cause == Cause::Reason(DefectionReason::Price))
            .expect("price row");
        assert_eq!(
            (price.tally.defectors, price.tally.value_lost_minor),
            (2, 35_000)
        );
        assert!(all.iter().all(|r| r.store.as_str() == "s1"));
    }
}
