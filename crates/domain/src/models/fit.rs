//! Maximum-likelihood fitting: the models' summed log-likelihoods with their analytic
//! gradients, and a BFGS minimiser on log-parameters (so every parameter stays positive).
//!
//! Two things make a fit of a chain's population cheap:
//! - equal summaries are counted once, with their multiplicity: at day resolution a
//!   population shares far fewer distinct `(x, t_x, T)` than it has customers;
//! - the terms that depend only on `x` (the `lgamma` and digamma terms) are computed once
//!   per distinct `x` and evaluation, since the summaries are sorted by `x`.
//!
//! With the gradient, BFGS converges in a few dozen evaluations where Nelder-Mead needed
//! thousands; a warm start from the current parameters needs fewer still.

use libm::lgamma;

use super::special::digamma;
use super::{FitError, Rfm, Spend};

/// Summaries counted once each, with how many customers share them, sorted by `x`.
pub(super) type Distinct<T> = Vec<(T, f64)>;

/// The distinct purchase summaries of `customers` (non-finite ones left out).
pub(super) fn distinct_rfm(customers: &[Rfm]) -> Distinct<Rfm> {
    let mut all: Vec<Rfm> = customers
        .iter()
        .copied()
        .filter(|c| c.x.is_finite() && c.t_x.is_finite() && c.t.is_finite())
        .collect();
    all.sort_unstable_by(|p, q| {
        p.x.total_cmp(&q.x)
            .then(p.t_x.total_cmp(&q.t_x))
            .then(p.t.total_cmp(&q.t))
    });
    counted(all)
}

/// The distinct spend summaries of repeat buyers (x > 0 and a positive mean spend).
pub(super) fn distinct_spend(buyers: &[Spend]) -> Distinct<Spend> {
    let mut all: Vec<Spend> = buyers
        .iter()
        .copied()
        .filter(|s| s.x > 0.0 && s.mean_spend > 0.0 && s.x.is_finite() && s.mean_spend.is_finite())
        .collect();
    all.sort_unstable_by(|p, q| {
        p.x.total_cmp(&q.x)
            .then(p.mean_spend.total_cmp(&q.mean_spend))
    });
    counted(all)
}

fn counted<T: PartialEq + Copy>(sorted: Vec<T>) -> Distinct<T> {
    let mut out: Distinct<T> = Vec::new();
    for item in sorted {
        match out.last_mut() {
            Some((last, n)) if *last == item => *n += 1.0,
            _ => out.push((item, 1.0)),
        }
    }
    out
}

/// Minus the summed log-likelihood of BG/NBD (`shift` 0) or MBG/NBD (`shift` 1) at
/// log-parameters `theta` = ln(r, alpha, a, b), and its gradient in `grad`.
///
/// The two models differ only in where the dropout opportunity sits: MBG/NBD's `A2`
/// counts `x + 1` transactions and its dropout term `A4` applies to every customer, with
/// `b + x` where BG/NBD has `b + x - 1` (and only for `x > 0`).
pub(super) fn rfm_cost(
    data: &[(Rfm, f64)],
    shift: f64,
    theta: &[f64; 4],
    grad: &mut [f64; 4],
) -> f64 {
    let [r, alpha, a, b] = theta.map(f64::exp);
    let (lg_r, psi_r) = (lgamma(r), digamma(r));
    let (lg_ab, psi_ab) = (lgamma(a + b), digamma(a + b));
    let (lg_b, psi_b) = (lgamma(b), digamma(b));
    let (ln_alpha, ln_a) = (alpha.ln(), a.ln());

    let mut ll = 0.0;
    let mut d = [0.0; 4]; // d LL / d (r, alpha, a, b)
    let mut per_x = PerX::default();
    for (c, w) in data {
        if per_x.x != Some(c.x) {
            let xs = c.x + shift;
            let dropout = c.x > 0.0 || shift > 0.0;
            per_x = PerX {
                x: Some(c.x),
                lg_rx: lgamma(r + c.x) - lg_r,
                psi_rx: digamma(r + c.x) - psi_r,
                a2: lg_ab - lg_b + lgamma(b + xs) - lgamma(a + b + xs),
                d2a: psi_ab - digamma(a + b + xs),
                d2b: psi_ab - psi_b + digamma(b + xs) - digamma(a + b + xs),
                dropout,
                // Only customers with a dropout term use these (BG/NBD's x = 0 has none,
                // and b + x - 1 may be below zero there).
                ln_a4: if dropout {
                    ln_a - (b + xs - 1.0).ln()
                } else {
                    0.0
                },
                inv_b4: if dropout { 1.0 / (b + xs - 1.0) } else { 0.0 },
            };
        }
        let rx = r + c.x;
        let ln_t = (alpha + c.t).ln();
        let a3 = -rx * ln_t;
        let (lse, w4, ln_tx) = if per_x.dropout {
            let ln_tx = (alpha + c.t_x).ln();
            let a4 = per_x.ln_a4 - rx * ln_tx;
            let m = a3.max(a4);
            let (e3, e4) = ((a3 - m).exp(), (a4 - m).exp());
            (m + (e3 + e4).ln(), e4 / (e3 + e4), ln_tx)
        } else {
            (a3, 0.0, 0.0)
        };
        let w3 = 1.0 - w4;
        ll += w * (per_x.lg_rx + r * ln_alpha + per_x.a2 + lse);
        d[0] += w * (per_x.psi_rx + ln_alpha - w3 * ln_t - w4 * ln_tx);
        d[1] += w * (r / alpha - rx * (w3 / (alpha + c.t) + w4 / (alpha + c.t_x)));
        d[2] += w * (per_x.d2a + w4 / a);
        d[3] += w * (per_x.d2b - w4 * per_x.inv_b4);
    }
    // d/d(ln p) = p d/dp, and the cost is minus the log-likelihood.
    *grad = [-d[0] * r, -d[1] * alpha, -d[2] * a, -d[3] * b];
    -ll
}

/// The terms of one distinct `x`, shared by every summary with that `x`.
#[derive(Default)]
struct PerX {
    x: Option<f64>,
    lg_rx: f64,
    psi_rx: f64,
    a2: f64,
    d2a: f64,
    d2b: f64,
    dropout: bool,
    ln_a4: f64,
    inv_b4: f64,
}

/// Minus the summed Gamma-Gamma log-likelihood at `theta` = ln(p, q, gamma), and its
/// gradient.
pub(super) fn spend_cost(data: &[(Spend, f64)], theta: &[f64; 3], grad: &mut [f64; 3]) -> f64 {
    let [p, q, gamma] = theta.map(f64::exp);
    let (lg_q, psi_q, ln_gamma) = (lgamma(q), digamma(q), gamma.ln());
    let mut ll = 0.0;
    let mut d = [0.0; 3];
    for (s, w) in data {
        let px = p * s.x;
        let (ln_m, ln_x, ln_tot) = (
            s.mean_spend.ln(),
            s.x.ln(),
            (gamma + s.x * s.mean_spend).ln(),
        );
        ll += w
            * (lgamma(px + q) - lgamma(px) - lg_q + q * ln_gamma + (px - 1.0) * ln_m + px * ln_x
                - (px + q) * ln_tot);
        let psi_pxq = digamma(px + q);
        d[0] += w * s.x * (psi_pxq - digamma(px) + ln_m + ln_x - ln_tot);
        d[1] += w * (psi_pxq - psi_q + ln_gamma - ln_tot);
        d[2] += w * (q / gamma - (px + q) / (gamma + s.x * s.mean_spend));
    }
    *grad = [-d[0] * p, -d[1] * q, -d[2] * gamma];
    -ll
}

/// Where a minimisation ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Minimum<const N: usize> {
    pub theta: [f64; N],
    pub cost: f64,
    pub evaluations: usize,
}

/// Minimises `cost` (value and gradient) from `start` by BFGS with a backtracking
/// (Armijo) line search. `scale` (the number of customers) normalises the gradient for
/// the stopping rule, so the same tolerance serves a sample of 100 and of a million.
pub(super) fn bfgs<const N: usize>(
    cost: impl Fn(&[f64; N], &mut [f64; N]) -> f64,
    start: [f64; N],
    scale: f64,
) -> Result<Minimum<N>, FitError> {
    const MAX_ITERATIONS: usize = 500;
    const GRADIENT_TOLERANCE: f64 = 1e-10;
    const RELATIVE_TOLERANCE: f64 = 1e-13;
    const MAX_LOG_PARAMETER: f64 = 30.0;

    let mut evaluations = 0;
    let mut eval = |theta: &[f64; N], grad: &mut [f64; N]| {
        evaluations += 1;
        let v = cost(theta, grad);
        if v.is_finite() && grad.iter().all(|g| g.is_finite()) {
            v
        } else {
            f64::INFINITY
        }
    };
    let mut theta = start;
    let mut grad = [0.0; N];
    let mut value = eval(&theta, &mut grad);
    if !value.is_finite() {
        return Err(FitError::NotFinite);
    }
    let mut h = identity::<N>();
    let mut fresh = true; // h is the (scaled) identity: not yet learnt
    let mut stalled = 0; // iterations in a row that barely moved the cost
    for _ in 0..MAX_ITERATIONS {
        if grad.iter().all(|g| (g / scale).abs() < GRADIENT_TOLERANCE) {
            break;
        }
        let mut dir = mul(&h, &grad).map(|v| -v);
        let mut slope = dot(&dir, &grad);
        if slope >= 0.0 {
            // Not a descent direction (rounding in a long run): start learning afresh.
            h = identity::<N>();
            fresh = true;
            dir = grad.map(|g| -g);
            slope = dot(&dir, &grad);
        }
        let Some((next, next_value, next_grad)) = backtrack(&mut eval, &theta, &dir, value, slope)
        else {
            if fresh {
                break; // no progress along the gradient itself: as far as floats go
            }
            h = identity::<N>();
            fresh = true;
            continue;
        };
        let s: [f64; N] = std::array::from_fn(|i| next[i] - theta[i]);
        let y: [f64; N] = std::array::from_fn(|i| next_grad[i] - grad[i]);
        let sy = dot(&s, &y);
        let improvement = value - next_value;
        (theta, value, grad) = (next, next_value, next_grad);
        if sy > 1e-300 {
            if fresh {
                // Shanno's scaling of the first inverse Hessian guess.
                let scale = sy / dot(&y, &y);
                h = identity::<N>().map(|row| row.map(|v| v * scale));
                fresh = false;
            }
            h = bfgs_update(&h, &s, &y, sy);
        }
        // Converged to what the data can tell: the cost no longer moves. This also ends a
        // fit whose optimum lies at a boundary (customers so alike that the heterogeneity
        // parameters run off to infinity): the likelihood has flattened out there.
        if improvement <= RELATIVE_TOLERANCE * value.abs() {
            stalled += 1;
            if stalled >= 3 {
                break;
            }
        } else {
            stalled = 0;
        }
        if theta.iter().any(|t| t.abs() > MAX_LOG_PARAMETER) {
            break; // a parameter beyond e^±30: at the boundary for any practical purpose
        }
    }
    Ok(Minimum {
        theta,
        cost: value,
        evaluations,
    })
}

/// The backtracking (Armijo) line search of [`bfgs`] from `theta` along the descent
/// direction `dir` (`slope` = dirᵀ∇): a first step of at most a factor e⁴ on any
/// parameter, halved until the cost has fallen by enough, at most 60 times. The accepted
/// point with its cost and gradient, or `None`.
fn backtrack<const N: usize>(
    eval: &mut impl FnMut(&[f64; N], &mut [f64; N]) -> f64,
    theta: &[f64; N],
    dir: &[f64; N],
    value: f64,
    slope: f64,
) -> Option<([f64; N], f64, [f64; N])> {
    const MAX_LOG_STEP: f64 = 4.0; // at most a factor e^4 on a parameter per step
    const ARMIJO: f64 = 1e-4;
    let longest = dir.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let mut step = if longest > MAX_LOG_STEP {
        MAX_LOG_STEP / longest
    } else {
        1.0
    };
    let mut next_grad = [0.0; N];
    for _ in 0..60 {
        let trial: [f64; N] = std::array::from_fn(|i| theta[i] + step * dir[i]);
        let v = eval(&trial, &mut next_grad);
        if v <= value + ARMIJO * step * slope {
            return Some((trial, v, next_grad));
        }
        step *= 0.5;
    }
    None
}

/// H ← (I − ρ s yᵀ) H (I − ρ y sᵀ) + ρ s sᵀ, with ρ = 1 / yᵀs.
fn bfgs_update<const N: usize>(
    h: &[[f64; N]; N],
    s: &[f64; N],
    y: &[f64; N],
    sy: f64,
) -> [[f64; N]; N] {
    let rho = 1.0 / sy;
    let hy = mul(h, y);
    let yhy = dot(y, &hy);
    std::array::from_fn(|i| {
        std::array::from_fn(|j| {
            h[i][j] - rho * (hy[i] * s[j] + s[i] * hy[j]) + (rho * rho * yhy + rho) * s[i] * s[j]
        })
    })
}

fn identity<const N: usize>() -> [[f64; N]; N] {
    std::array::from_fn(|i| std::array::from_fn(|j| if i == j { 1.0 } else { 0.0 }))
}

fn mul<const N: usize>(m: &[[f64; N]; N], v: &[f64; N]) -> [f64; N] {
    std::array::from_fn(|i| dot(&m[i], v))
}

fn dot<const N: usize>(u: &[f64; N], v: &[f64; N]) -> f64 {
    u.iter().zip(v).map(|(a, b)| a * b).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{BgNbd, GammaGamma, MbgNbd};

    fn population() -> Vec<Rfm> {
        // A deterministic spread of summaries at day resolution, in weeks, with repeats.
        (0..3_000u32)
            .map(|i| {
                let t = f64::from(20 + i % 300) / 7.0;
                let x = f64::from((i * 7919) % 13 / 3);
                let t_x = if x > 0.0 {
                    t * f64::from((i * 31) % 10) / 10.0
                } else {
                    0.0
                };
                Rfm {
                    x,
                    t_x: (t_x * 7.0).round() / 7.0,
                    t,
                }
            })
            .collect()
    }

    fn numeric_gradient<const N: usize>(f: impl Fn(&[f64; N]) -> f64, at: [f64; N]) -> [f64; N] {
        std::array::from_fn(|i| {
            let h = 1e-6;
            let (mut up, mut down) = (at, at);
            up[i] += h;
            down[i] -= h;
            (f(&up) - f(&down)) / (2.0 * h)
        })
    }

    #[test]
    fn equal_summaries_are_counted_once_with_their_multiplicity() {
        let all = population();
        let distinct = distinct_rfm(&all);
        assert!(distinct.len() < all.len());
        assert_eq!(
            distinct.iter().map(|(_, n)| n).sum::<f64>(),
            all.len() as f64
        );
        assert!(distinct.windows(2).all(|w| w[0].0.x <= w[1].0.x));
    }

    #[test]
    fn the_rfm_costs_are_the_summed_log_likelihoods_and_their_gradients_are_exact() {
        let all = population();
        let distinct = distinct_rfm(&all);
        for theta in [[0.0; 4], [-1.4, 1.5, -0.23, 0.89], [0.7, -0.3, 1.2, -0.5]] {
            let [r, alpha, a, b] = theta.map(f64::exp);
            for (shift, per_customer) in [
                (
                    0.0,
                    Box::new(move |c: &Rfm| BgNbd { r, alpha, a, b }.log_likelihood(c))
                        as Box<dyn Fn(&Rfm) -> f64>,
                ),
                (
                    1.0,
                    Box::new(move |c: &Rfm| MbgNbd { r, alpha, a, b }.log_likelihood(c)),
                ),
            ] {
                let mut grad = [0.0; 4];
                let cost = rfm_cost(&distinct, shift, &theta, &mut grad);
                let direct: f64 = all.iter().map(&per_customer).sum();
                assert!(
                    (cost + direct).abs() <= 1e-9 * direct.abs(),
                    "{cost} vs {direct}"
                );
                let numeric =
                    numeric_gradient(|t| rfm_cost(&distinct, shift, t, &mut [0.0; 4]), theta);
                for i in 0..4 {
                    assert!(
                        (grad[i] - numeric[i]).abs() <= 1e-5 * numeric[i].abs().max(1.0),
                        "shift {shift}, θ {theta:?}, ∂{i}: {} vs {}",
                        grad[i],
                        numeric[i]
                    );
                }
            }
        }
    }

    #[test]
    fn the_spend_cost_is_the_summed_log_likelihood_and_its_gradient_is_exact() {
        let buyers: Vec<Spend> = (1..2_000u32)
            .map(|i| Spend {
                x: f64::from(1 + i % 9),
                mean_spend: 5.0 + f64::from((i * 37) % 400) / 7.0,
            })
            .collect();
        let distinct = distinct_spend(&buyers);
        for theta in [[0.0; 3], [1.8, 1.3, 2.7]] {
            let [p, q, gamma] = theta.map(f64::exp);
            let mut grad = [0.0; 3];
            let cost = spend_cost(&distinct, &theta, &mut grad);
            let direct: f64 = buyers
                .iter()
                .map(|s| GammaGamma { p, q, gamma }.log_likelihood(s))
                .sum();
            assert!((cost + direct).abs() <= 1e-9 * direct.abs());
            let numeric = numeric_gradient(|t| spend_cost(&distinct, t, &mut [0.0; 3]), theta);
            for i in 0..3 {
                assert!((grad[i] - numeric[i]).abs() <= 1e-5 * numeric[i].abs().max(1.0));
            }
        }
    }

    #[test]
    fn bfgs_finds_the_minimum_of_the_rosenbrock_valley() {
        let rosenbrock = |p: &[f64; 2], g: &mut [f64; 2]| {
            let (x, y) = (p[0], p[1]);
            *g = [
                -2.0 * (1.0 - x) - 400.0 * x * (y - x * x),
                200.0 * (y - x * x),
            ];
            (1.0 - x).powi(2) + 100.0 * (y - x * x).powi(2)
        };
        let m = bfgs(rosenbrock, [-1.2, 1.0], 1.0).expect("minimum");
        assert!(m.cost < 1e-12, "{m:?}");
        assert!(
            (m.theta[0] - 1.0).abs() < 1e-5 && (m.theta[1] - 1.0).abs() < 1e-5,
            "{m:?}"
        );
    }

    #[test]
    fn a_fit_whose_optimum_is_at_the_boundary_ends_soon() {
        // Everyone buys like clockwork and is still buying: no heterogeneity and no
        // dropout to estimate, so r and alpha run off to infinity and a to zero.
        let alike: Vec<Rfm> = (0..500)
            .map(|i| Rfm {
                x: 10.0,
                t_x: 20.0 + f64::from(i % 2),
                t: 21.0,
            })
            .collect();
        let data = distinct_rfm(&alike);
        let m = bfgs(|t, g| rfm_cost(&data, 0.0, t, g), [0.0; 4], 500.0).expect("a fit");
        assert!(m.cost.is_finite());
        assert!(m.evaluations < 400, "{} evaluations", m.evaluations);
    }

    #[test]
    fn a_start_where_the_cost_is_not_finite_is_an_error() {
        let nan = |_: &[f64; 1], g: &mut [f64; 1]| {
            g[0] = 0.0;
            f64::NAN
        };
        assert_eq!(bfgs(nan, [0.0], 1.0), Err(FitError::NotFinite));
    }
}
