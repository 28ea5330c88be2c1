//! `churnguard report` end to end: the CDNOW sample through `churnguard import` (the
//! CLI's library, as the binary runs it) into purchase-ingest and churn-scoring on the
//! embedded log and a real Redis, a refit, then the report with the holdout check
//! calibrated to 1997-09-30 (week 39), on the stores ListStores lists (no --stores), and
//! again on the store named. The check's fit is the published BG/NBD to three
//! significant figures (Fader, Hardie & Lee 2005: r 0.243, alpha 4.414, a 0.793, b 2.426),
//! and its holdout totals and rows equal the closed form computed here from the raw file
//! with the domain's model; the plot is a well-formed SVG.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use churnguard_domain::models::{BgNbd, Rfm};
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_testkit::{RedisServer, init_test_logging};

const SAMPLE: &str = "../crates/domain/tests/data/CDNOW_sample.txt";

fn sample_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(SAMPLE)
}

/// Straight from the raw file (columns: master id, sample id, YYYYMMDD, CDs, dollars):
/// per customer the calibration summary to `end` in weeks, and the purchase days after
/// it.
fn closed_form(end: NaiveDate) -> Vec<(Rfm, u32)> {
    let raw = std::fs::read_to_string(sample_path()).expect("the sample");
    let mut days: BTreeMap<String, BTreeSet<NaiveDate>> = BTreeMap::new();
    for line in raw.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let day = NaiveDate::parse_from_str(f[2], "%Y%m%d").expect("date");
        days.entry(f[0].to_owned()).or_default().insert(day);
    }
    days.into_values()
        .map(|d| {
            let first = *d.first().expect("a first purchase");
            let weeks = |x: NaiveDate| (x - first).num_days() as f64 / 7.0;
            let calibration: Vec<NaiveDate> = d.iter().copied().filter(|x| *x <= end).collect();
            (
                Rfm {
                    x: (calibration.len() - 1) as f64,
                    t_x: weeks(*calibration.last().expect("first")),
                    t: weeks(end),
                },
                (d.len() - calibration.len()) as u32,
            )
        })
        .collect()
}

fn sig3(v: f64) -> String {
    format!("{v:.2e}")
}

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-9 * want.abs().max(1.0)
}

/// Ingest (imports allowed) and scoring (refits on their daily schedule, so only when
/// asked) on `log` and `redis`.
async fn start(
    log: &EmbeddedLog,
    redis: &RedisServer,
) -> (
    purchase_ingest::Running,
    churn_scoring::Running<EmbeddedLog>,
) {
    let mut ingest = purchase_ingest::Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: String::new(),
        ..purchase_ingest::Settings::default()
    };
    ingest.limits.allow_import = true;
    let mut scoring = churn_scoring::config::Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: String::new(),
        timer_interval_ms: 100,
        ..churn_scoring::config::Settings::default()
    };
    scoring.redis.url = redis.url();
    let ingest = purchase_ingest::App::build(ingest, log.clone())
        .await
        .expect("ingest builds")
        .spawn();
    let scoring = churn_scoring::App::build(scoring, Arc::new(log.clone()))
        .await
        .expect("scoring builds")
        .spawn();
    (ingest, scoring)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cdnow_sample_imported_then_reported_with_its_holdout_check() {
    init_test_logging();
    let dir = tempfile::tempdir().expect("dir");
    let redis = RedisServer::start();
    let log = EmbeddedLog::open(dir.path().join("log")).expect("log");
    let (ingest, scoring) = start(&log, &redis).await;

    let mut opts = churnguard_cli::ImportOptions::new(
        sample_path(),
        churnguard_cli::Format::Cdnow(churnguard_cli::CdnowValues::default()),
        ingest.endpoint(),
    );
    opts.state = Some(dir.path().join("cdnow.import-state"));
    let imported = churnguard_cli::import(
        &opts,
        &churnguard_cli::progress::bar(true),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect("the import runs");
    assert_eq!(
        (imported.lines, imported.accepted),
        (6_919, 6_919),
        "{imported}"
    );
    churnguard_cli::refit::refit(
        &churnguard_cli::Connection::new(scoring.endpoint()),
        Duration::from_secs(120),
    )
    .await
    .expect("the refit asked for is stored");

    // No stores named: the report reads them from ListStores.
    let mut report_opts = churnguard_cli::ReportOptions::new(scoring.endpoint(), Vec::new());
    report_opts.top = 5;
    report_opts.calibration_end = NaiveDate::from_ymd_opt(1997, 9, 30);
    let report = churnguard_cli::model_report::report(&report_opts)
        .await
        .expect("the report");
    eprintln!("{report}");

    // The current model: every customer, as of the history's last day; the defection
    // period the year up to it; the one store ListStores lists; its at-risk list merged.
    assert_eq!(report.model.population, 2_357, "{report}");
    assert_eq!(report.model.as_of, "1998-06-30");
    assert_eq!(
        report.period,
        (
            NaiveDate::from_ymd_opt(1997, 7, 1).expect("date"),
            NaiveDate::from_ymd_opt(1998, 6, 30).expect("date")
        )
    );
    assert!(report.stores_listed);
    assert_eq!(report.stores.len(), 1, "{report}");
    assert_eq!(report.stores[0].store_id, "cdnow");
    assert_eq!(report.stores[0].home_customers, 2_357);
    assert!(
        report
            .to_string()
            .contains("to 1998-06-30; 1 store from ListStores\n"),
        "{report}"
    );
    // The store named: the same figures, and the text names no ListStores.
    let mut named_opts =
        churnguard_cli::ReportOptions::new(scoring.endpoint(), vec!["cdnow".into()]);
    named_opts.top = 5;
    let named = churnguard_cli::model_report::report(&named_opts)
        .await
        .expect("the report on the store named");
    assert!(!named.stores_listed);
    assert_eq!(
        (&named.stores, &named.at_risk),
        (&report.stores, &report.at_risk)
    );
    assert!(!named.to_string().contains("ListStores"), "{named}");
    assert!(report.at_risk.len() <= 5);
    assert!(
        report
            .at_risk
            .windows(2)
            .all(|w| w[0].value_at_risk_minor_units >= w[1].value_at_risk_minor_units)
    );

    // The holdout check: the published parameters.
    let h = report.holdout.as_ref().expect("a holdout check");
    let m = h.bg_nbd.expect("parameters");
    assert_eq!(
        [sig3(m.r), sig3(m.alpha), sig3(m.a), sig3(m.b)],
        [sig3(0.243), sig3(4.414), sig3(0.793), sig3(2.426)],
        "{m:?}"
    );
    assert_eq!(
        (h.first_day.as_str(), h.holdout_end.as_str()),
        ("1997-01-01", "1998-06-30")
    );
    assert_eq!((h.calibration_weeks, h.holdout_weeks), (39.0, 39.0));

    // The closed form from the raw file: the same fit, the same totals and rows.
    let raw = closed_form(NaiveDate::from_ymd_opt(1997, 9, 30).expect("date"));
    let calibration: Vec<Rfm> = raw.iter().map(|(c, _)| *c).collect();
    let (fit, ll) = BgNbd::fit(&calibration).expect("the closed-form fit");
    assert!(
        close(m.r, fit.r) && close(m.alpha, fit.alpha) && close(m.a, fit.a) && close(m.b, fit.b),
        "{m:?} vs {fit:?}"
    );
    assert!(
        close(h.bg_nbd_log_likelihood, ll),
        "{} vs {ll}",
        h.bg_nbd_log_likelihood
    );
    assert_eq!((h.customers, h.excluded_customers), (raw.len() as u64, 0));
    assert_eq!(h.customers, 2_357);
    assert_eq!(
        h.calibration_repeat_purchases,
        calibration.iter().map(|c| c.x as u64).sum::<u64>()
    );
    let actual: u64 = raw.iter().map(|(_, n)| u64::from(*n)).sum();
    let predicted: f64 = calibration
        .iter()
        .map(|c| fit.expected_purchases(c, 39.0))
        .sum();
    assert_eq!(h.actual_holdout_purchases, actual);
    assert!(
        close(h.predicted_holdout_purchases, predicted),
        "{} vs {predicted}",
        h.predicted_holdout_purchases
    );
    assert_eq!(h.by_calibration_purchases.len(), 8);
    for row in &h.by_calibration_purchases {
        let x = f64::from(row.calibration_purchases);
        let members: Vec<&(Rfm, u32)> = raw
            .iter()
            .filter(|(c, _)| c.x == x || (row.or_more && c.x > x))
            .collect();
        let n = members.len() as f64;
        assert_eq!(row.customers, members.len() as u64, "{row:?}");
        let actual = members.iter().map(|(_, h)| f64::from(*h)).sum::<f64>() / n;
        let predicted = members
            .iter()
            .map(|(c, _)| fit.expected_purchases(c, 39.0))
            .sum::<f64>()
            / n;
        assert!(close(row.actual_mean, actual), "{row:?}: {actual}");
        assert!(close(row.predicted_mean, predicted), "{row:?}: {predicted}");
    }
    // Weekly: 78 weeks; the calibration's repeat purchases by week 39, all by week 78;
    // predicted at week 78 is Σ E[X(78 - s_i)] (here: within a twentieth of the actual).
    assert_eq!(h.weekly.len(), 78);
    assert_eq!(h.weekly[38].actual, h.calibration_repeat_purchases);
    let end = h.weekly.last().expect("week 78");
    assert_eq!(end.actual, h.calibration_repeat_purchases + actual);
    assert!(
        (end.predicted / end.actual as f64 - 1.0).abs() < 0.05,
        "{end:?}"
    );

    // The text shows the table; the plot is a well-formed SVG with both figures.
    let text = report.to_string();
    assert!(text.contains("holdout check"), "{text}");
    assert!(text.contains(&format!("actual {actual},")), "{text}");
    let plot = dir.path().join("cdnow-holdout.svg");
    churnguard_cli::plot::write(h, &plot).expect("the plot is written");
    let svg = std::fs::read_to_string(&plot).expect("the plot");
    assert!(svg.len() > 1_000, "{} bytes", svg.len());
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<svg").count(), 1);
    assert!(svg.contains("Cumulative repeat purchases") && svg.contains("7+"));

    ingest.stop().await.expect("ingest stops");
    scoring.stop().await.expect("scoring stops");
}
