//! `churnguard report`: what churn-scoring knows, read through its API as any client
//! would: the current model (GetModel), defection by store over a period
//! (GetStoreDefectionStats), the customers with the most value at risk
//! (ListAtRiskCustomers, per store, merged), and, given a calibration end, the holdout
//! check of Fader, Hardie & Lee (2005) that churn-scoring makes on its purchases log
//! (CheckHoldout): predicted against actual holdout purchases in total and by calibration
//! repeat purchases, and the weekly cumulative series. [`crate::plot`] draws the check.
//!
//! The stores are those named ([`ReportOptions::stores`]) or, when none are, every store
//! churn-scoring lists (ListStores, all pages): the stores with home customers that the
//! caller may read. The defection period is, unless given, the 365 days ending on the
//! model's `as_of` (the last day the model saw: the history's last day after an import),
//! as the store gauges count a year.

use std::fmt;

use chrono::{Days, NaiveDate};
use churnguard_proto::scoring::v1 as pb;

use crate::client::{self, ScoringClient};
use crate::error::CliError;
use crate::options::Connection;

/// Days in the default defection period, ending on the model's `as_of`.
pub const DEFAULT_PERIOD_DAYS: u64 = 365;

/// What to report on.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// churn-scoring.
    pub connection: Connection,
    /// The stores for defection and the at-risk list; empty: every store ListStores
    /// lists.
    pub stores: Vec<String>,
    /// At-risk customers listed, at most (1 to 1,000).
    pub top: u32,
    /// The defection period's first day; `None`: [`DEFAULT_PERIOD_DAYS`] up to the
    /// model's `as_of`.
    pub from: Option<NaiveDate>,
    /// The calibration end of a holdout check; `None`: no check.
    pub calibration_end: Option<NaiveDate>,
    /// The holdout's end; `None`: the last purchase day in the log.
    pub holdout_end: Option<NaiveDate>,
}

impl ReportOptions {
    /// A report on `stores` (empty: every store listed) from churn-scoring at `scoring`:
    /// the top 10, no holdout check.
    pub fn new(scoring: impl Into<String>, stores: Vec<String>) -> Self {
        Self {
            connection: Connection::new(scoring),
            stores,
            top: 10,
            from: None,
            calibration_end: None,
            holdout_end: None,
        }
    }
}

/// One customer at risk, with the store whose list named them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtRisk {
    pub store: String,
    pub customer: String,
    pub value_at_risk_minor_units: i64,
}

/// What the report read.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelReport {
    pub model: pb::GetModelResponse,
    /// The defection period, both days included.
    pub period: (NaiveDate, NaiveDate),
    /// Per store, in the order named, or by store id as listed.
    pub stores: Vec<pb::GetStoreDefectionStatsResponse>,
    /// Whether the stores came from ListStores (none were named).
    pub stores_listed: bool,
    /// The most value at risk first, at most `top`.
    pub at_risk: Vec<AtRisk>,
    pub holdout: Option<pb::CheckHoldoutResponse>,
}

/// Reads the report from churn-scoring.
pub async fn report(opts: &ReportOptions) -> Result<ModelReport, CliError> {
    if !(1..=1_000).contains(&opts.top) {
        return Err(CliError::Usage(format!(
            "--top must be 1 to 1000, got {}",
            opts.top
        )));
    }
    let mut scoring = client::scoring(&opts.connection)?;
    let url = &opts.connection.url;
    let failed = |call: &'static str| {
        move |status: tonic::Status| CliError::Scoring {
            url: url.clone(),
            call,
            status,
        }
    };
    let model = scoring
        .get_model(pb::GetModelRequest {})
        .await
        .map_err(failed("GetModel"))?
        .into_inner();
    let to = NaiveDate::parse_from_str(&model.as_of, "%Y-%m-%d").map_err(|_| {
        CliError::Usage(format!(
            "churn-scoring's model is as of {:?}, not a date",
            model.as_of
        ))
    })?;
    let from = opts
        .from
        .unwrap_or_else(|| to - Days::new(DEFAULT_PERIOD_DAYS - 1));
    if from > to {
        return Err(CliError::Usage(format!(
            "--from {from} is after the model's as_of, {to}"
        )));
    }

    let stores_listed = opts.stores.is_empty();
    let names = if stores_listed {
        churnguard_proto::list_all_stores(&mut scoring)
            .await
            .map_err(failed("ListStores"))?
    } else {
        opts.stores.clone()
    };

    let mut stores = Vec::with_capacity(names.len());
    let mut at_risk = Vec::new();
    for store in &names {
        stores.push(
            scoring
                .get_store_defection_stats(pb::GetStoreDefectionStatsRequest {
                    store_id: store.clone(),
                    from_date: from.to_string(),
                    to_date: to.to_string(),
                })
                .await
                .map_err(failed("GetStoreDefectionStats"))?
                .into_inner(),
        );
        at_risk.extend(
            top_at_risk(&mut scoring, store, opts.top)
                .await
                .map_err(failed("ListAtRiskCustomers"))?,
        );
    }
    // Merged: the most value at risk first, ties by customer (as each list orders them).
    at_risk.sort_by(|a, b| {
        b.value_at_risk_minor_units
            .cmp(&a.value_at_risk_minor_units)
            .then_with(|| a.customer.cmp(&b.customer))
    });
    at_risk.truncate(opts.top as usize);

    let holdout = match opts.calibration_end {
        None => None,
        Some(end) => Some(
            scoring
                .check_holdout(pb::CheckHoldoutRequest {
                    calibration_end: end.to_string(),
                    holdout_end: opts.holdout_end.map(|d| d.to_string()).unwrap_or_default(),
                })
                .await
                .map_err(failed("CheckHoldout"))?
                .into_inner(),
        ),
    };
    Ok(ModelReport {
        model,
        period: (from, to),
        stores,
        stores_listed,
        at_risk,
        holdout,
    })
}

/// The first page of `store`'s at-risk list: its `top` customers with most at risk.
async fn top_at_risk(
    scoring: &mut ScoringClient,
    store: &str,
    top: u32,
) -> Result<Vec<AtRisk>, tonic::Status> {
    let page = scoring
        .list_at_risk_customers(pb::ListAtRiskCustomersRequest {
            store_id: store.to_owned(),
            page_size: top,
            page_token: String::new(),
        })
        .await?
        .into_inner();
    Ok(page
        .customers
        .into_iter()
        .map(|c| AtRisk {
            store: store.to_owned(),
            customer: c.customer_id,
            value_at_risk_minor_units: c.value_at_risk_minor_units,
        })
        .collect())
}

/// `12.3 %`, or `-` for nothing to compare with.
fn percent(part: f64, whole: f64) -> String {
    if whole == 0.0 {
        "-".into()
    } else {
        format!("{:+.1} %", 100.0 * (part / whole - 1.0))
    }
}

fn write_bg_nbd(
    f: &mut fmt::Formatter<'_>,
    b: Option<&pb::BgNbdParameters>,
    ll: f64,
) -> fmt::Result {
    match b {
        Some(b) => writeln!(
            f,
            "  BG/NBD r {:.4}, alpha {:.4}, a {:.4}, b {:.4}; log-likelihood {:.2}",
            b.r, b.alpha, b.a, b.b, ll
        ),
        None => writeln!(f, "  BG/NBD: no parameters"),
    }
}

impl fmt::Display for ModelReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.model;
        writeln!(
            f,
            "model version {}, fitted {} on {} of {} customers, as of {}",
            m.version, m.fitted_at, m.customers, m.population, m.as_of
        )?;
        write_bg_nbd(f, m.bg_nbd.as_ref(), m.bg_nbd_log_likelihood)?;
        if let Some(g) = &m.gamma_gamma {
            writeln!(
                f,
                "  Gamma-Gamma p {:.4}, q {:.4}, gamma {:.4}",
                g.p, g.q, g.gamma
            )?;
        }

        write!(
            f,
            "\ndefection by store, decided {} to {}",
            self.period.0, self.period.1
        )?;
        if self.stores_listed {
            let n = self.stores.len();
            let noun = if n == 1 { "store" } else { "stores" };
            write!(f, "; {n} {noun} from ListStores")?;
        }
        writeln!(f)?;
        if self.stores.is_empty() {
            writeln!(f, "  none")?;
        } else {
            writeln!(
                f,
                "  {:<16} {:>10} {:>9} {:>9} {:>8} {:>22}",
                "store", "customers", "defected", "won back", "rate", "value lost (minor)"
            )?;
        }
        for s in &self.stores {
            writeln!(
                f,
                "  {:<16} {:>10} {:>9} {:>9} {:>6.1} % {:>22}",
                s.store_id,
                s.home_customers,
                s.defected,
                s.won_back,
                100.0 * s.defection_rate,
                s.value_lost_minor_units
            )?;
        }

        writeln!(
            f,
            "\ntop {} at-risk customers, by value at risk",
            self.at_risk.len()
        )?;
        if self.at_risk.is_empty() {
            writeln!(f, "  none")?;
        } else {
            writeln!(
                f,
                "  {:<24} {:<16} {:>22}",
                "customer", "store", "value at risk (minor)"
            )?;
            for c in &self.at_risk {
                writeln!(
                    f,
                    "  {:<24} {:<16} {:>22}",
                    c.customer, c.store, c.value_at_risk_minor_units
                )?;
            }
        }

        if let Some(h) = &self.holdout {
            writeln!(f)?;
            write!(f, "{}", HoldoutTable(h))?;
        }
        Ok(())
    }
}

/// A holdout check as text: the fit, the totals, the rows by calibration repeat
/// purchases and the weekly cumulative series.
#[derive(Debug, Clone, Copy)]
pub struct HoldoutTable<'a>(pub &'a pb::CheckHoldoutResponse);

impl fmt::Display for HoldoutTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = self.0;
        writeln!(
            f,
            "holdout check (Fader, Hardie & Lee 2005): calibration {} to {} ({:.1} weeks), holdout to {} ({:.1} weeks)",
            h.first_day, h.calibration_end, h.calibration_weeks, h.holdout_end, h.holdout_weeks
        )?;
        write_bg_nbd(f, h.bg_nbd.as_ref(), h.bg_nbd_log_likelihood)?;
        writeln!(
            f,
            "  customers {} ({} first bought after the calibration end, left out); calibration repeat purchases {}",
            h.customers, h.excluded_customers, h.calibration_repeat_purchases
        )?;
        writeln!(
            f,
            "  holdout purchases: actual {}, predicted {:.1} ({})",
            h.actual_holdout_purchases,
            h.predicted_holdout_purchases,
            percent(
                h.predicted_holdout_purchases,
                h.actual_holdout_purchases as f64
            )
        )?;
        writeln!(
            f,
            "\n  {:>4} {:>10} {:>12} {:>15}",
            "x", "customers", "actual mean", "predicted mean"
        )?;
        for r in &h.by_calibration_purchases {
            let x = if r.or_more {
                format!("{}+", r.calibration_purchases)
            } else {
                r.calibration_purchases.to_string()
            };
            writeln!(
                f,
                "  {:>4} {:>10} {:>12.3} {:>15.3}",
                x, r.customers, r.actual_mean, r.predicted_mean
            )?;
        }
        writeln!(
            f,
            "\n  cumulative repeat purchases (week {:.0} ends the calibration)",
            h.calibration_weeks.ceil()
        )?;
        writeln!(f, "  {:>4} {:>8} {:>10}", "week", "actual", "predicted")?;
        for w in &h.weekly {
            writeln!(f, "  {:>4} {:>8} {:>10.1}", w.week, w.actual, w.predicted)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(stores: &[&str], stores_listed: bool) -> ModelReport {
        ModelReport {
            model: pb::GetModelResponse::default(),
            period: (
                NaiveDate::from_ymd_opt(1997, 7, 1).expect("date"),
                NaiveDate::from_ymd_opt(1998, 6, 30).expect("date"),
            ),
            stores: stores
                .iter()
                .map(|s| pb::GetStoreDefectionStatsResponse {
                    store_id: (*s).into(),
                    home_customers: 4,
                    ..Default::default()
                })
                .collect(),
            stores_listed,
            at_risk: Vec::new(),
            holdout: None,
        }
    }

    #[test]
    fn the_text_says_when_the_stores_came_from_list_stores_and_how_many() {
        let listed = report(&["a", "b"], true).to_string();
        assert!(
            listed.contains("decided 1997-07-01 to 1998-06-30; 2 stores from ListStores\n"),
            "{listed}"
        );
        assert!(listed.contains("\n  a  "), "{listed}");
        let one = report(&["a"], true).to_string();
        assert!(one.contains("; 1 store from ListStores\n"), "{one}");
        let none = report(&[], true).to_string();
        assert!(
            none.contains("; 0 stores from ListStores\n  none\n"),
            "{none}"
        );
        let named = report(&["a"], false).to_string();
        assert!(
            named.contains("decided 1997-07-01 to 1998-06-30\n  store "),
            "{named}"
        );
        assert!(!named.contains("ListStores"), "{named}");
    }

    #[test]
    fn the_holdout_table_names_the_open_row_and_the_difference() {
        let h = pb::CheckHoldoutResponse {
            first_day: "1997-01-01".into(),
            calibration_end: "1997-09-30".into(),
            holdout_end: "1998-06-30".into(),
            calibration_weeks: 39.0,
            holdout_weeks: 39.0,
            customers: 10,
            actual_holdout_purchases: 20,
            predicted_holdout_purchases: 18.0,
            by_calibration_purchases: vec![pb::HoldoutRow {
                calibration_purchases: 7,
                or_more: true,
                customers: 1,
                actual_mean: 6.0,
                predicted_mean: 5.5,
            }],
            weekly: vec![pb::HoldoutWeek {
                week: 1,
                actual: 3,
                predicted: 2.5,
            }],
            ..Default::default()
        };
        let text = HoldoutTable(&h).to_string();
        assert!(
            text.contains("actual 20, predicted 18.0 (-10.0 %)"),
            "{text}"
        );
        assert!(text.contains("  7+ "), "{text}");
        assert!(text.contains("     1        3        2.5"), "{text}");
    }
}
