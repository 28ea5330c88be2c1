//! A customer's risk on a day: the one computation behind both the timers' churn signals
//! and the query API. The policy decides the state and the rules that fired; the models
//! give P(alive), expected purchases, spend per visit, the discounted lifetime value and
//! the value at risk.

use serde::{Deserialize, Serialize};

use crate::customer::{CustomerState, Day};
use crate::models::{BgNbd, FittedModel, GammaGamma};
use crate::policy::{Assessment, ChurnState, PolicyBook};

/// The models a risk is computed with: BG/NBD for purchases, Gamma-Gamma for spend when
/// it has been fitted (it needs repeat buyers).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoringModel {
    pub bg_nbd: BgNbd,
    pub gamma_gamma: Option<GammaGamma>,
}

impl ScoringModel {
    /// What a chain's models start from before their first refit: BG/NBD as published
    /// for the CDNOW sample (Fader, Hardie and Lee 2005; time in weeks), no Gamma-Gamma.
    /// A refit on the chain's own customers replaces it.
    pub fn prior() -> Self {
        BgNbd {
            r: 0.243,
            alpha: 4.414,
            a: 0.793,
            b: 2.426,
        }
        .into()
    }
}

impl From<BgNbd> for ScoringModel {
    fn from(bg_nbd: BgNbd) -> Self {
        Self {
            bg_nbd,
            gamma_gamma: None,
        }
    }
}

impl From<&FittedModel> for ScoringModel {
    fn from(m: &FittedModel) -> Self {
        Self {
            bg_nbd: m.bg_nbd(),
            gamma_gamma: m.gamma_gamma.map(|g| GammaGamma {
                p: g.p,
                q: g.q,
                gamma: g.gamma,
            }),
        }
    }
}

/// How lifetime value is counted: `periods` periods of `period_days`, discounted by
/// `discount` per period (0.01 = 1 %).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueHorizon {
    pub periods: u32,
    pub period_days: Day,
    pub discount: f64,
}

impl Default for ValueHorizon {
    /// A year of four-week periods at 1 % per period.
    fn default() -> Self {
        Self {
            periods: 13,
            period_days: 28,
            discount: 0.01,
        }
    }
}

impl ValueHorizon {
    /// The whole horizon, in days.
    pub fn days(&self) -> Day {
        self.period_days * self.periods as Day
    }
}

/// A customer's risk on one day. Money is in minor units (expected values, so fractional).
#[derive(Debug, Clone, PartialEq)]
pub struct Risk {
    /// The state the policy implies, the rules that fired and the window figures
    /// (P(alive) included).
    pub assessment: Assessment,
    /// The store whose policy applied and against which a defection counts.
    pub home_store: Option<String>,
    /// Expected purchase days over the value horizon.
    pub expected_purchases: f64,
    /// Expected spend per purchase day.
    pub spend_per_visit: f64,
    /// Discounted expected revenue over the value horizon.
    pub clv: f64,
    /// The value if surely still active, minus `clv`: what possible defection costs.
    pub value_at_risk: f64,
}

impl Risk {
    pub fn p_alive(&self) -> f64 {
        self.assessment.figures.p_alive
    }

    /// The value at risk rounded to whole minor units, as the at-risk index stores it.
    pub fn value_at_risk_minor(&self) -> i64 {
        self.value_at_risk.round() as i64
    }
}

/// Expected spend per purchase day in minor units: Gamma-Gamma's conditional expectation
/// when fitted (for a customer with no repeat purchase that is the population mean);
/// otherwise the customer's own mean repeat-day spend, or their first day's spend.
pub fn spend_per_visit(c: &CustomerState, gamma_gamma: Option<&GammaGamma>) -> f64 {
    let spend = c.spend();
    let fitted = gamma_gamma
        .map(|g| g.expected_spend(&spend) * 100.0)
        .filter(|m| m.is_finite() && *m >= 0.0);
    fitted.unwrap_or(if spend.x > 0.0 {
        spend.mean_spend * 100.0
    } else {
        c.first_day_spend as f64
    })
}

/// The risk of `c` on day `as_of`, coming from churn state `previous`, under the policy of
/// the customer's home store.
pub fn assess(
    previous: ChurnState,
    c: &CustomerState,
    policies: &PolicyBook,
    model: &ScoringModel,
    horizon: &ValueHorizon,
    as_of: Day,
) -> Risk {
    let assessment = policies
        .for_customer(c)
        .assess(previous, c, &model.bg_nbd, as_of);
    let rfm = c.rfm(as_of);
    let per_visit = spend_per_visit(c, model.gamma_gamma.as_ref());
    let period_weeks = f64::from(horizon.period_days) / 7.0;
    let value = model.bg_nbd.value(
        &rfm,
        per_visit,
        horizon.periods,
        period_weeks,
        horizon.discount,
    );
    Risk {
        assessment,
        home_store: c.home_store().map(str::to_owned),
        expected_purchases: model
            .bg_nbd
            .expected_purchases(&rfm, f64::from(horizon.days()) / 7.0),
        spend_per_visit: per_visit,
        clv: value.clv,
        value_at_risk: value.value_at_risk,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::customer::swipe_fingerprint;
    use crate::policy::{DefectionPolicy, RuleSet};

    const BG: BgNbd = BgNbd {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };
    const GG: GammaGamma = GammaGamma {
        p: 6.25,
        q: 3.74,
        gamma: 15.44,
    };

    fn policies() -> PolicyBook {
        PolicyBook::from(DefectionPolicy {
            recent_days: 28,
            baseline_days: 56,
            min_baseline_visits: 4,
            at_risk: RuleSet {
                overdue_gaps: Some(3.0),
                ..RuleSet::default()
            },
            defected: RuleSet {
                overdue_gaps: Some(8.0),
                ..RuleSet::default()
            },
        })
    }

    fn customer(spends: &[(Day, i64)]) -> CustomerState {
        let (d, s) = spends[0];
        let mut c = CustomerState::new(d, s, "s1", swipe_fingerprint("0"));
        for (i, (d, s)) in spends.iter().enumerate().skip(1) {
            c.apply(*d, *s, "s1", swipe_fingerprint(&i.to_string()), 400);
        }
        c
    }

    #[test]
    fn spend_per_visit_uses_gamma_gamma_when_fitted_and_the_customer_otherwise() {
        // Two repeat days averaging 22.35: the published E[M] is 24.66 (major units).
        let c = customer(&[(0, 1_000), (7, 2_000), (14, 2_470)]);
        let with = spend_per_visit(&c, Some(&GG));
        assert!((with - 2_466.0).abs() < 1.0, "{with}");
        assert_eq!(spend_per_visit(&c, None), 2_235.0);
        // A one-time buyer: the population mean with Gamma-Gamma, their own spend without.
        let once = customer(&[(0, 1_000)]);
        assert!((spend_per_visit(&once, Some(&GG)) - 3_522.0).abs() < 1.0);
        assert_eq!(spend_per_visit(&once, None), 1_000.0);
    }

    #[test]
    fn value_at_risk_grows_with_silence_and_clv_is_the_models_value() {
        let c = customer(&(0..20).map(|w| (w * 7, 3_000)).collect::<Vec<_>>());
        let model = ScoringModel {
            bg_nbd: BG,
            gamma_gamma: Some(GG),
        };
        let h = ValueHorizon::default();
        let soon = assess(
            ChurnState::Active,
            &c,
            &policies(),
            &model,
            &h,
            c.last_day + 7,
        );
        let late = assess(
            ChurnState::Active,
            &c,
            &policies(),
            &model,
            &h,
            c.last_day + 70,
        );
        assert_eq!(soon.assessment.state, ChurnState::Active);
        assert_eq!(late.assessment.state, ChurnState::Defected);
        assert!(late.p_alive() < soon.p_alive());
        assert!(late.value_at_risk > soon.value_at_risk);
        assert!(late.clv < soon.clv);
        let v = BG.value(&c.rfm(c.last_day + 7), soon.spend_per_visit, 13, 4.0, 0.01);
        assert_eq!((soon.clv, soon.value_at_risk), (v.clv, v.value_at_risk));
        assert_eq!(
            soon.expected_purchases,
            BG.expected_purchases(&c.rfm(c.last_day + 7), 52.0)
        );
        assert_eq!(soon.home_store.as_deref(), Some("s1"));
    }
}
