//! Buy-till-you-die models: BG/NBD and MBG/NBD for purchase counts and P(alive), and
//! Gamma-Gamma for spend, with maximum-likelihood fitting. Formulas as in Fader, Hardie &
//! Lee (2005); see `shared/reference/models.md`. Pure maths: times are plain numbers in
//! one unit (weeks for CDNOW). [`holdout`] checks a fit against a later period.

use libm::lgamma;
use serde::{Deserialize, Serialize};

mod fit;
pub mod holdout;
mod special;

pub use special::{digamma, hyp2f1};

/// One customer's summary: `x` repeat purchases (distinct repeat purchase days), the time
/// `t_x` of the last purchase and the customer's age `t`, both from the first purchase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rfm {
    pub x: f64,
    pub t_x: f64,
    pub t: f64,
}

/// A fitted model set, as stored (versioned) and announced by churn-scoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedModel {
    /// Increases by one with every refit.
    pub version: u64,
    /// When the fit ran (wall clock, RFC 3339).
    pub fitted_at: String,
    /// The day the customer summaries were taken at (days since 1970-01-01).
    pub as_of_day: i32,
    /// Customers fitted on: a uniform sample of the population, or all of it.
    pub customers: usize,
    /// Customers the sample was drawn from. Models announced before refits sampled
    /// carry none (0): they were fitted on every customer, `customers`.
    #[serde(default)]
    pub population: usize,
    pub bg_nbd: BgNbdParams,
    pub bg_nbd_log_likelihood: f64,
    /// Fitted on repeat buyers; absent when there are none yet.
    pub gamma_gamma: Option<GammaGammaParams>,
}

/// BG/NBD parameters in their serialised form.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BgNbdParams {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

/// Gamma-Gamma parameters in their serialised form.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GammaGammaParams {
    pub p: f64,
    pub q: f64,
    pub gamma: f64,
}

impl FittedModel {
    /// The CloudEvents type announcing a refit.
    pub const EVENT_TYPE: &'static str = "churnguard.scoring.model_fitted.v1";

    pub fn bg_nbd(&self) -> BgNbd {
        let BgNbdParams { r, alpha, a, b } = self.bg_nbd;
        BgNbd { r, alpha, a, b }
    }
}

/// Why a fit failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    #[error("no customers to fit on")]
    NoData,
    #[error("the optimiser did not reach a finite likelihood")]
    NotFinite,
}

/// BG/NBD parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

impl BgNbd {
    /// The log-likelihood of one customer.
    pub fn log_likelihood(&self, c: &Rfm) -> f64 {
        let Self { r, alpha, a, b } = *self;
        let x = c.x;
        let a1 = lgamma(r + x) - lgamma(r) + r * alpha.ln();
        let a2 = lgamma(a + b) + lgamma(b + x) - lgamma(b) - lgamma(a + b + x);
        let a3 = -(r + x) * (alpha + c.t).ln();
        if x > 0.0 {
            let a4 = a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + c.t_x).ln();
            a1 + a2 + log_sum_exp(a3, a4)
        } else {
            a1 + a2 + a3
        }
    }

    /// The probability that the customer is still active.
    pub fn p_alive(&self, c: &Rfm) -> f64 {
        if c.x == 0.0 {
            return 1.0;
        }
        let Self { r, alpha, a, b } = *self;
        1.0 / (1.0 + a / (b + c.x - 1.0) * ((alpha + c.t) / (alpha + c.t_x)).powf(r + c.x))
    }

    /// E[X(t)]: expected purchases in `t` for a customer just acquired.
    pub fn expected_purchases_new(&self, t: f64) -> f64 {
        let Self { r, alpha, a, b } = *self;
        (a + b - 1.0) / (a - 1.0)
            * (1.0 - (alpha / (alpha + t)).powf(r) * hyp2f1(r, b, a + b - 1.0, t / (alpha + t)))
    }

    /// E[Y(t) | x, t_x, T]: expected purchases in the next `t` for this customer.
    pub fn expected_purchases(&self, c: &Rfm, t: f64) -> f64 {
        let Self { r, alpha, a, b } = *self;
        let x = c.x;
        let z = t / (alpha + c.t + t);
        let head = (a + b + x - 1.0) / (a - 1.0);
        let body = 1.0
            - ((alpha + c.t) / (alpha + c.t + t)).powf(r + x)
                * hyp2f1(r + x, b + x, a + b + x - 1.0, z);
        let dropout = if x > 0.0 {
            a / (b + x - 1.0) * ((alpha + c.t) / (alpha + c.t_x)).powf(r + x)
        } else {
            0.0
        };
        head * body / (1.0 + dropout)
    }

    /// Maximum-likelihood fit over `customers`; returns the parameters and the total
    /// log-likelihood.
    pub fn fit(customers: &[Rfm]) -> Result<(Self, f64), FitError> {
        Self::fit_from(customers, None)
    }

    /// As [`BgNbd::fit`], starting from `start` (the current parameters, say): a refit on
    /// data that changed a little converges in a few steps.
    pub fn fit_from(customers: &[Rfm], start: Option<Self>) -> Result<(Self, f64), FitError> {
        let start = start.map(|m| [m.r, m.alpha, m.a, m.b]);
        let ([r, alpha, a, b], ll) = fit_rfm_model(customers, 0.0, start)?;
        Ok((Self { r, alpha, a, b }, ll))
    }
}

/// What a customer is worth, from a purchase model and expected spend per purchase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Value {
    /// Discounted expected revenue over the horizon, counting the chance the customer has
    /// already gone.
    pub clv: f64,
    /// What the chain expects to lose to possible defection: the customer's value if
    /// surely still active, minus `clv`.
    pub value_at_risk: f64,
}

impl BgNbd {
    /// Discounted customer lifetime value over `periods` periods of `period_len` (in the
    /// model's time unit), with `discount` per period (0.01 = 1 %), and the value at risk.
    /// Expected purchases per period come from E\[Y\]; each is worth `spend_per_purchase`.
    pub fn value(
        &self,
        c: &Rfm,
        spend_per_purchase: f64,
        periods: u32,
        period_len: f64,
        discount: f64,
    ) -> Value {
        let mut clv = 0.0;
        let mut before = 0.0;
        for i in 1..=periods {
            let cumulative = self.expected_purchases(c, f64::from(i) * period_len);
            clv += (cumulative - before) * spend_per_purchase / (1.0 + discount).powf(f64::from(i));
            before = cumulative;
        }
        // E[Y] = P(alive) * E[Y | alive], so the value if surely alive is clv / P(alive).
        let alive = self.p_alive(c);
        let value_at_risk = if alive > 0.0 { clv / alive - clv } else { 0.0 };
        Value { clv, value_at_risk }
    }
}

/// MBG/NBD parameters: like BG/NBD, but a customer may also drop out right after the
/// first purchase, so one-time buyers are not all counted alive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MbgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

impl MbgNbd {
    pub fn log_likelihood(&self, c: &Rfm) -> f64 {
        let Self { r, alpha, a, b } = *self;
        let x = c.x;
        let a1 = lgamma(r + x) - lgamma(r) + r * alpha.ln();
        let a2 = lgamma(a + b) + lgamma(b + x + 1.0) - lgamma(b) - lgamma(a + b + x + 1.0);
        let a3 = -(r + x) * (alpha + c.t).ln();
        let a4 = a.ln() - (b + x).ln() - (r + x) * (alpha + c.t_x).ln();
        a1 + a2 + log_sum_exp(a3, a4)
    }

    pub fn p_alive(&self, c: &Rfm) -> f64 {
        let Self { r, alpha, a, b } = *self;
        1.0 / (1.0 + a / (b + c.x) * ((alpha + c.t) / (alpha + c.t_x)).powf(r + c.x))
    }

    pub fn fit(customers: &[Rfm]) -> Result<(Self, f64), FitError> {
        Self::fit_from(customers, None)
    }

    /// As [`MbgNbd::fit`], starting from `start`.
    pub fn fit_from(customers: &[Rfm], start: Option<Self>) -> Result<(Self, f64), FitError> {
        let start = start.map(|m| [m.r, m.alpha, m.a, m.b]);
        let ([r, alpha, a, b], ll) = fit_rfm_model(customers, 1.0, start)?;
        Ok((Self { r, alpha, a, b }, ll))
    }
}

/// A repeat buyer's spend: `x` repeat purchases with mean value `mean_spend`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spend {
    pub x: f64,
    pub mean_spend: f64,
}

/// Gamma-Gamma spend parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub gamma: f64,
}

impl GammaGamma {
    /// The log-likelihood of one repeat buyer's mean spend (x > 0).
    pub fn log_likelihood(&self, s: &Spend) -> f64 {
        let Self { p, q, gamma } = *self;
        let px = p * s.x;
        lgamma(px + q) - lgamma(px) - lgamma(q)
            + q * gamma.ln()
            + (px - 1.0) * s.mean_spend.ln()
            + px * s.x.ln()
            - (px + q) * (gamma + s.x * s.mean_spend).ln()
    }

    /// The population's mean spend per purchase, `gamma * p / (q - 1)`.
    pub fn population_mean(&self) -> f64 {
        self.gamma * self.p / (self.q - 1.0)
    }

    /// E[M | x, mean spend]: a weighted mean of the population's and the customer's own.
    pub fn expected_spend(&self, s: &Spend) -> f64 {
        let w = self.p * s.x / (self.p * s.x + self.q - 1.0);
        (1.0 - w) * self.population_mean() + w * s.mean_spend
    }

    /// Maximum-likelihood fit on repeat buyers only (x > 0 and a positive mean spend).
    pub fn fit(buyers: &[Spend]) -> Result<(Self, f64), FitError> {
        Self::fit_from(buyers, None)
    }

    /// As [`GammaGamma::fit`], starting from `start`.
    pub fn fit_from(buyers: &[Spend], start: Option<Self>) -> Result<(Self, f64), FitError> {
        let data = fit::distinct_spend(buyers);
        let n: f64 = data.iter().map(|(_, w)| w).sum();
        if data.is_empty() {
            return Err(FitError::NoData);
        }
        let start = start
            .map(|m| [m.p, m.q, m.gamma])
            .filter(|p| p.iter().all(|v| v.is_finite() && *v > 0.0))
            .map_or([0.0; 3], |p| p.map(f64::ln));
        let m = fit::bfgs(|t, g| fit::spend_cost(&data, t, g), start, n)?;
        let [p, q, gamma] = m.theta.map(f64::exp);
        Ok((Self { p, q, gamma }, -m.cost))
    }
}

/// Fits BG/NBD (`shift` 0) or MBG/NBD (`shift` 1) on the distinct summaries of
/// `customers`, from `start` (the parameters) or from all parameters at 1.
fn fit_rfm_model(
    customers: &[Rfm],
    shift: f64,
    start: Option<[f64; 4]>,
) -> Result<([f64; 4], f64), FitError> {
    let data = fit::distinct_rfm(customers);
    if data.is_empty() {
        return Err(FitError::NoData);
    }
    let n: f64 = data.iter().map(|(_, w)| w).sum();
    let start = start
        .filter(|p| p.iter().all(|v| v.is_finite() && *v > 0.0))
        .map_or([0.0; 4], |p| p.map(f64::ln));
    let m = fit::bfgs(|t, g| fit::rfm_cost(&data, shift, t, g), start, n)?;
    Ok((m.theta.map(f64::exp), -m.cost))
}

fn log_sum_exp(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    m + ((a - m).exp() + (b - m).exp()).ln()
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
    fn golden_values_of_the_published_bg_nbd() {
        let c = Rfm {
            x: 2.0,
            t_x: 30.43,
            t: 38.86,
        };
        assert!(
            close(PUBLISHED.p_alive(&c), 0.7266, 5e-4),
            "{}",
            PUBLISHED.p_alive(&c)
        );
        assert!(
            close(PUBLISHED.expected_purchases(&c, 39.0), 1.226, 5e-3),
            "{}",
            PUBLISHED.expected_purchases(&c, 39.0)
        );
        for (t, want) in [(1.0, 0.053), (3.0, 0.151), (78.0, 1.86)] {
            let got = PUBLISHED.expected_purchases_new(t);
            assert!(close(got, want, want * 0.02), "E[X({t})] = {got}");
        }
    }

    #[test]
    fn value_grows_with_the_horizon_shrinks_with_discount_and_risk_follows_p_alive() {
        let loyal = Rfm {
            x: 10.0,
            t_x: 38.0,
            t: 39.0,
        };
        let drifting = Rfm {
            x: 10.0,
            t_x: 10.0,
            t: 39.0,
        };
        let v = |c: &Rfm, periods, discount| PUBLISHED.value(c, 30.0, periods, 4.0, discount);
        assert!(v(&loyal, 24, 0.01).clv > v(&loyal, 12, 0.01).clv);
        assert!(v(&loyal, 12, 0.05).clv < v(&loyal, 12, 0.0).clv);
        // Undiscounted value is spend times E[Y] over the horizon.
        let undiscounted = v(&loyal, 12, 0.0).clv;
        assert!(close(
            undiscounted,
            30.0 * PUBLISHED.expected_purchases(&loyal, 48.0),
            1e-9
        ));
        // The same history, gone quiet: less value, more of it at risk.
        assert!(v(&drifting, 12, 0.01).clv < v(&loyal, 12, 0.01).clv);
        assert!(v(&drifting, 12, 0.01).value_at_risk > v(&loyal, 12, 0.01).value_at_risk);
        let risk_share = |c: &Rfm| {
            let x = v(c, 12, 0.01);
            x.value_at_risk / (x.clv + x.value_at_risk)
        };
        assert!(close(
            risk_share(&drifting),
            1.0 - PUBLISHED.p_alive(&drifting),
            1e-9
        ));
    }

    #[test]
    fn one_time_buyers_are_alive_in_bg_nbd_but_not_in_mbg_nbd() {
        let c = Rfm {
            x: 0.0,
            t_x: 0.0,
            t: 30.0,
        };
        assert_eq!(PUBLISHED.p_alive(&c), 1.0);
        let m = MbgNbd {
            r: 0.525,
            alpha: 6.183,
            a: 0.891,
            b: 1.614,
        };
        assert!(m.p_alive(&c) < 1.0);
    }

    #[test]
    fn golden_values_of_the_published_gamma_gamma() {
        let g = GammaGamma {
            p: 6.25,
            q: 3.74,
            gamma: 15.44,
        };
        assert!(
            close(g.population_mean(), 35.22, 0.01),
            "{}",
            g.population_mean()
        );
        let e = g.expected_spend(&Spend {
            x: 2.0,
            mean_spend: 22.35,
        });
        assert!(close(e, 24.66, 0.01), "{e}");
    }
}
