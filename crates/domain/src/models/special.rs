//! The special functions the models need beyond `libm`: the digamma function (the
//! derivative of `lgamma`, for the likelihoods' gradients) and the Gauss hypergeometric
//! series.

/// The digamma function ψ(x) = d/dx ln Γ(x), for x > 0.
///
/// The recurrence ψ(x) = ψ(x + 1) − 1/x moves the argument to 10 or more, where the
/// asymptotic series ln x − 1/(2x) − Σ B₂ₖ/(2k x²ᵏ) is accurate to about 1e-14.
pub fn digamma(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 || x.is_infinite() {
        return f64::NAN;
    }
    let (mut x, mut shift) = (x, 0.0);
    while x < 10.0 {
        shift -= 1.0 / x;
        x += 1.0;
    }
    let f = 1.0 / (x * x);
    // Bernoulli terms B2/2, B4/4, ... B12/12 of the asymptotic expansion.
    let series = f
        * (1.0 / 12.0
            - f * (1.0 / 120.0
                - f * (1.0 / 252.0
                    - f * (1.0 / 240.0 - f * (1.0 / 132.0 - f * 691.0 / 32_760.0)))));
    shift + x.ln() - 0.5 / x - series
}

/// The Gauss hypergeometric function 2F1(a, b; c; z) for 0 <= z < 1, by its series.
///
/// Where c - a - b < 0 the series' terms fall off only like n^(a+b-c-1) z^n, slowly as
/// z nears 1 (E[X(t)] over long horizons, E[Y(t)] of frequent buyers): there it sums
/// Euler's transform 2F1(c-a, c-b; c; z) (1-z)^(c-a-b), whose terms fall off like
/// n^(c-a-b-1) z^n, as `shared/reference/models.md` advises.
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    if c - a - b < 0.0 && z > 0.5 {
        (1.0 - z).powf(c - a - b) * hyp2f1_series(c - a, c - b, c, z)
    } else {
        hyp2f1_series(a, b, c, z)
    }
}

/// The hypergeometric series, summed until a term no longer moves the sum.
fn hyp2f1_series(a: f64, b: f64, c: f64, z: f64) -> f64 {
    let mut term = 1.0;
    let mut sum = 1.0;
    for n in 0..1_000_000 {
        let n = f64::from(n);
        term *= (a + n) * (b + n) / ((c + n) * (n + 1.0)) * z;
        sum += term;
        if term.abs() <= 1e-15 * sum.abs() {
            break;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use libm::lgamma;

    const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

    #[test]
    fn digamma_has_its_closed_form_values() {
        assert!((digamma(1.0) + EULER_GAMMA).abs() < 1e-13);
        assert!((digamma(0.5) + EULER_GAMMA + 2.0 * 2f64.ln()).abs() < 1e-13);
        // ψ(n) = H(n-1) - γ
        let harmonic: f64 = (1..20).map(|k| 1.0 / f64::from(k)).sum();
        assert!((digamma(20.0) - (harmonic - EULER_GAMMA)).abs() < 1e-13);
    }

    #[test]
    fn digamma_is_the_derivative_of_lgamma() {
        for x in [1e-3f64, 0.05, 0.243, 0.793, 2.426, 7.5, 31.0, 480.0, 1e5] {
            let h = 1e-6 * x.max(1.0);
            let numeric = (lgamma(x + h) - lgamma(x - h.min(x / 2.0))) / (h + h.min(x / 2.0));
            let got = digamma(x);
            assert!(
                (got - numeric).abs() <= 1e-5 * got.abs().max(1.0),
                "ψ({x}) = {got}, numerically {numeric}"
            );
        }
        assert!(digamma(0.0).is_nan() && digamma(-1.0).is_nan());
    }

    #[test]
    fn the_series_matches_closed_forms() {
        // 2F1(1, 1; 2; z) = -ln(1 - z) / z
        for z in [0.1f64, 0.5, 0.9, 0.99] {
            let want = -(1.0 - z).ln() / z;
            let got = hyp2f1(1.0, 1.0, 2.0, z);
            assert!((got - want).abs() <= 1e-9 * want, "z = {z}");
        }
    }

    #[test]
    fn eulers_transform_agrees_with_the_series_and_closed_forms() {
        // 2F1(a, b; b; z) = (1 - z)^(-a): c - a - b = -a < 0, so the transform is used.
        for z in [0.6f64, 0.9, 0.999] {
            let want = (1.0 - z).powf(-1.5);
            let got = hyp2f1(1.5, 2.0, 2.0, z);
            assert!(
                (got - want).abs() <= 1e-9 * want,
                "z = {z}: {got} vs {want}"
            );
        }
        // Where both converge, the transform and the plain series agree: the BG/NBD
        // E[Y] series of a frequent buyer (r + x, b + x; a + b + x - 1).
        let (a, b, c) = (0.243 + 20.0, 2.426 + 20.0, 0.793 + 2.426 + 19.0);
        for z in [0.55f64, 0.8, 0.95] {
            let plain = hyp2f1_series(a, b, c, z);
            let euler = hyp2f1(a, b, c, z);
            assert!(
                (plain - euler).abs() <= 1e-9 * plain,
                "z = {z}: {plain} vs {euler}"
            );
        }
    }
}
