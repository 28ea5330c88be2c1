//! The models against the CDNOW sample (2,357 customers, calibration to 1997-09-30): the
//! fits reproduce the published estimates to three significant figures.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use churnguard_domain::models::{BgNbd, GammaGamma, MbgNbd, Rfm, Spend};

struct Customer {
    rfm: Rfm,
    spend: Spend,
}

/// Per customer: purchases collapsed per day, then x, t_x, T in weeks and the mean spend
/// of the repeat purchase days.
fn calibration_summaries() -> Vec<Customer> {
    let raw = include_str!("data/CDNOW_sample.txt");
    let end = NaiveDate::from_ymd_opt(1997, 9, 30).expect("date");
    let mut days: BTreeMap<u32, BTreeMap<NaiveDate, f64>> = BTreeMap::new();
    for line in raw.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let customer: u32 = f[1].parse().expect("sample id");
        let date = NaiveDate::parse_from_str(f[2], "%Y%m%d").expect("date");
        let dollars: f64 = f[4].parse().expect("dollars");
        *days.entry(customer).or_default().entry(date).or_default() += dollars;
    }
    days.into_values()
        .map(|d| {
            let first = *d.keys().next().expect("a first purchase");
            let repeat: Vec<(NaiveDate, f64)> = d
                .into_iter()
                .filter(|(day, _)| *day > first && *day <= end)
                .collect();
            let weeks = |day: NaiveDate| (day - first).num_days() as f64 / 7.0;
            let x = repeat.len() as f64;
            Customer {
                rfm: Rfm {
                    x,
                    t_x: repeat.last().map_or(0.0, |(day, _)| weeks(*day)),
                    t: weeks(end),
                },
                spend: Spend {
                    x,
                    mean_spend: if x > 0.0 {
                        repeat.iter().map(|(_, s)| s).sum::<f64>() / x
                    } else {
                        0.0
                    },
                },
            }
        })
        .collect()
}

fn sig3(v: f64) -> String {
    format!("{:.2e}", v)
}

#[test]
fn the_sample_has_the_literatures_totals() {
    let c = calibration_summaries();
    assert_eq!(c.len(), 2_357);
    assert_eq!(
        c.iter().map(|c| c.rfm.x).sum::<f64>(),
        2_457.0,
        "repeat purchase-days"
    );
    assert_eq!(c.iter().filter(|c| c.rfm.x > 0.0).count(), 946, "repeaters");
    assert_eq!(
        c.iter().filter(|c| c.rfm.x == 0.0).count(),
        1_411,
        "one-time buyers"
    );
}

#[test]
fn bg_nbd_fit_reproduces_the_published_estimates() {
    let rfm: Vec<Rfm> = calibration_summaries().iter().map(|c| c.rfm).collect();
    let (m, ll) = BgNbd::fit(&rfm).expect("fit");
    eprintln!("BG/NBD fit: {m:?}, log-likelihood {ll:.2}");
    assert_eq!(
        [sig3(m.r), sig3(m.alpha), sig3(m.a), sig3(m.b)],
        [sig3(0.243), sig3(4.414), sig3(0.793), sig3(2.426)]
    );
}

#[test]
fn gamma_gamma_fit_reproduces_the_published_estimates() {
    let spend: Vec<Spend> = calibration_summaries().iter().map(|c| c.spend).collect();
    let (m, ll) = GammaGamma::fit(&spend).expect("fit");
    eprintln!("Gamma-Gamma fit: {m:?}, log-likelihood {ll:.2}");
    assert_eq!(
        [sig3(m.p), sig3(m.q), sig3(m.gamma)],
        [sig3(6.25), sig3(3.74), sig3(15.44)]
    );
}

#[test]
fn mbg_nbd_fit_reproduces_the_published_estimates_and_one_time_buyers_can_be_gone() {
    let rfm: Vec<Rfm> = calibration_summaries().iter().map(|c| c.rfm).collect();
    let (m, ll) = MbgNbd::fit(&rfm).expect("fit");
    eprintln!("MBG/NBD fit: {m:?}, log-likelihood {ll:.2}");
    assert_eq!(
        [sig3(m.r), sig3(m.alpha), sig3(m.a), sig3(m.b)],
        [sig3(0.525), sig3(6.183), sig3(0.891), sig3(1.614)]
    );
    assert!(ll.is_finite());
    let one_time = rfm.iter().find(|c| c.x == 0.0).expect("a one-time buyer");
    assert!(m.p_alive(one_time) < 1.0);
}

#[test]
fn a_warm_start_from_other_parameters_reaches_the_same_estimates() {
    let rfm: Vec<Rfm> = calibration_summaries().iter().map(|c| c.rfm).collect();
    let (cold, cold_ll) = BgNbd::fit(&rfm).expect("fit");
    for start in [
        BgNbd {
            r: 0.5,
            alpha: 10.0,
            a: 0.3,
            b: 5.0,
        },
        BgNbd {
            r: 0.2,
            alpha: 3.0,
            a: 1.5,
            b: 1.0,
        },
        cold,
    ] {
        let (warm, ll) = BgNbd::fit_from(&rfm, Some(start)).expect("fit");
        assert!(
            (ll - cold_ll).abs() < 1e-6,
            "{ll} vs {cold_ll} from {start:?}"
        );
        for (w, c) in [
            (warm.r, cold.r),
            (warm.alpha, cold.alpha),
            (warm.a, cold.a),
            (warm.b, cold.b),
        ] {
            assert!(
                (w - c).abs() <= 1e-4 * c,
                "{warm:?} vs {cold:?} from {start:?}"
            );
        }
    }
    let spend: Vec<Spend> = calibration_summaries().iter().map(|c| c.spend).collect();
    let (cold, _) = GammaGamma::fit(&spend).expect("fit");
    let (warm, _) = GammaGamma::fit_from(
        &spend,
        Some(GammaGamma {
            p: 2.0,
            q: 8.0,
            gamma: 40.0,
        }),
    )
    .expect("fit");
    for (w, c) in [(warm.p, cold.p), (warm.q, cold.q), (warm.gamma, cold.gamma)] {
        assert!((w - c).abs() <= 1e-4 * c, "{warm:?} vs {cold:?}");
    }
}

/// The holdout check on the sample's purchase days, calibrated to 1997-09-30 (week 39):
/// the published estimates, the literature's totals, and the holdout to 1998-06-30.
#[test]
fn the_holdout_check_fits_the_published_estimates_on_the_calibration_period() {
    use churnguard_domain::customer::day_of;
    use churnguard_domain::models::holdout::PurchaseDays;

    let raw = include_str!("data/CDNOW_sample.txt");
    let mut days = PurchaseDays::new();
    for line in raw.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let date = NaiveDate::parse_from_str(f[2], "%Y%m%d").expect("date");
        days.add(f[1], day_of(date));
    }
    let end = day_of(NaiveDate::from_ymd_opt(1997, 9, 30).expect("date"));
    let check = days.check(end, None).expect("a check");
    let m = check.model;
    eprintln!(
        "holdout check: {m:?}, LL {:.2}; actual {} predicted {:.1}",
        check.log_likelihood, check.actual, check.predicted
    );
    assert_eq!(
        [sig3(m.r), sig3(m.alpha), sig3(m.a), sig3(m.b)],
        [sig3(0.243), sig3(4.414), sig3(0.793), sig3(2.426)]
    );
    assert_eq!((check.customers, check.excluded), (2_357, 0));
    assert_eq!(check.calibration_purchases, 2_457);
    assert_eq!(
        check.holdout_end,
        day_of(NaiveDate::from_ymd_opt(1998, 6, 30).expect("date"))
    );
    assert!((check.calibration_weeks - 39.0).abs() < 1e-12);
    assert!((check.holdout_weeks - 39.0).abs() < 1e-12);
    assert_eq!(check.weekly.len(), 78);
    let end = check.weekly.last().expect("weeks");
    eprintln!(
        "week 78: actual {} predicted {:.1}; by x: {:?}",
        end.actual, end.predicted, check.by_x
    );
    assert_eq!(end.actual, 2_457 + check.actual);
    // The model tracks the cumulative repeat purchases within a few percent (their
    // Figure 3), and, conditioned on each customer's past, the holdout's total within a
    // sixth (it predicts too little for those with no repeat purchase: their Figure 4).
    assert!(
        (end.predicted / end.actual as f64 - 1.0).abs() < 0.05,
        "{} vs {}",
        end.predicted,
        end.actual
    );
    assert!(
        (check.predicted / check.actual as f64 - 1.0).abs() < 0.15,
        "{} vs {}",
        check.predicted,
        check.actual
    );
}
