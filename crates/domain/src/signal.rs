//! The churn signal: a customer's churn state changed. Published on `churn.signals.v1`.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime};
use serde::{Deserialize, Serialize};

use crate::customer::Day;
use crate::envelope::{Envelope, event_id};
use crate::policy::{Assessment, ChurnState, Rule};

/// The data of a `churnguard.scoring.churn_state_changed.v1` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnStateChanged {
    pub customer: String,
    /// The store the customer used most: where the defection counts.
    pub store_id: Option<String>,
    pub previous: String,
    pub state: String,
    /// The rules that fired (`p_alive_low`, `visits_dropped`, `spend_dropped`, `overdue`).
    pub rules: Vec<String>,
    pub p_alive: f64,
    /// Discounted expected revenue over the next year, in minor units.
    pub clv: f64,
    /// Expected revenue lost to possible defection, in minor units.
    pub value_at_risk: f64,
    /// The day assessed (store-local calendar day).
    pub as_of: NaiveDate,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::PAliveLow => "p_alive_low",
            Rule::VisitsDropped => "visits_dropped",
            Rule::SpendDropped => "spend_dropped",
            Rule::Overdue => "overdue",
        }
    }
}

impl ChurnStateChanged {
    pub const EVENT_TYPE: &'static str = "churnguard.scoring.churn_state_changed.v1";

    pub fn new(
        customer: &str,
        store_id: Option<String>,
        previous: ChurnState,
        a: &Assessment,
        clv: f64,
        value_at_risk: f64,
        as_of: Day,
    ) -> Self {
        Self {
            customer: customer.to_owned(),
            store_id,
            previous: previous.as_str().into(),
            state: a.state.as_str().into(),
            rules: a.fired.iter().map(|r| r.as_str().to_owned()).collect(),
            p_alive: a.figures.p_alive,
            clv,
            value_at_risk,
            as_of: NaiveDate::default() + chrono::Days::new(as_of.max(0) as u64),
        }
    }

    /// Deterministic: the same transition on the same day always has the same id, so a
    /// re-published signal is a detectable duplicate.
    pub fn into_envelope(self) -> Envelope<Self> {
        let id = event_id(
            Self::EVENT_TYPE,
            &format!(
                "{}/{}/{}/{}",
                self.customer, self.as_of, self.previous, self.state
            ),
        );
        let time: DateTime<FixedOffset> =
            self.as_of.and_time(NaiveTime::MIN).and_utc().fixed_offset();
        Envelope::new(
            id,
            "/churnguard/churn-scoring".into(),
            Self::EVENT_TYPE,
            Some(self.customer.clone()),
            time,
            self,
        )
    }
}
