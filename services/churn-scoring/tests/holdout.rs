//! CheckHoldout against a real Kafka-protocol broker (Tansu) and a real Redis: the whole
//! CDNOW sample sent through purchase-ingest (and two records the scorer dead-letters,
//! written straight to the topic), then the holdout check of Fader, Hardie & Lee (2005)
//! calibrated to 1997-09-30 (week 39), read from the log by the churn-scoring service:
//! the published BG/NBD estimates, and holdout totals and rows equal to the closed form
//! computed here from the raw file; an explicit holdout end. Then the request's checks
//! (INVALID_ARGUMENT naming the field, FAILED_PRECONDITION with nothing to check) and who
//! may ask (owner, analyst, service; not a store's manager or gateway).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use churnguard_config::{AuthSettings, JwtSettings};
use churnguard_domain::models::{BgNbd, Rfm};
use churnguard_eventlog::{EventLog, Header, OutgoingRecord};
use churnguard_kafka::{KafkaLog, KafkaSettings};
use churnguard_proto::ingest::v1 as ingest;
use churnguard_proto::ingest::v1::purchase_ingest_client::PurchaseIngestClient;
use churnguard_proto::scoring::v1 as pb;
use churnguard_proto::scoring::v1::churn_scoring_client::ChurnScoringClient;
use churnguard_testkit::auth::{AUDIENCE, ISSUER, TestIssuer, with_bearer};
use churnguard_testkit::{RedisServer, Tansu, canary, init_test_logging};
use common::{PARTITIONS, TOPIC};
use tonic::Code;
use tonic_types::StatusExt as _;

const SAMPLE: &str = include_str!("../../../crates/domain/tests/data/CDNOW_sample.txt");

fn date(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y%m%d").expect("date")
}

/// Every line of the sample as a swipe: one store, noon UTC on the day.
fn cdnow_swipes() -> Vec<ingest::Swipe> {
    SAMPLE
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let f: Vec<&str> = line.split_whitespace().collect();
            ingest::Swipe {
                swipe_id: format!("cdnow-{i}"),
                customer: Some(ingest::swipe::Customer::CustomerId(format!(
                    "cdnow-{}",
                    f[1]
                ))),
                store_id: "cdnow".into(),
                terminal_id: "web".into(),
                employee_id: "web".into(),
                occurred_at: format!("{}T12:00:00+00:00", date(f[2]).format("%Y-%m-%d")),
                amount: Some(ingest::Amount {
                    minor_units: (f[4].parse::<f64>().expect("dollars") * 100.0).round() as i64,
                    currency: "USD".into(),
                }),
                item_count: f[3].parse().expect("cds"),
            }
        })
        .collect()
}

/// The closed form from the raw file: per customer the calibration summary to `end` (in
/// weeks) and the purchase days after it.
fn raw_split(end: NaiveDate) -> Vec<(Rfm, u32)> {
    let mut days: BTreeMap<&str, BTreeSet<NaiveDate>> = BTreeMap::new();
    for line in SAMPLE.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        days.entry(f[1]).or_default().insert(date(f[2]));
    }
    days.into_values()
        .map(|d| {
            let first = *d.first().expect("a first day");
            let calibration: Vec<NaiveDate> = d.iter().copied().filter(|x| *x <= end).collect();
            let weeks = |x: NaiveDate| (x - first).num_days() as f64 / 7.0;
            let rfm = Rfm {
                x: (calibration.len() - 1) as f64,
                t_x: weeks(*calibration.last().expect("first")),
                t: weeks(end),
            };
            (rfm, (d.len() - calibration.len()) as u32)
        })
        .collect()
}

fn sig3(v: f64) -> String {
    format!("{v:.2e}")
}

/// Sends the sample through purchase-ingest on the broker, on a clock of 1 July 1998.
async fn send_cdnow(kafka: &KafkaSettings) {
    let mut settings = purchase_ingest::Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: String::new(),
        ..purchase_ingest::Settings::default()
    };
    settings.log.backend = purchase_ingest::config::Backend::Kafka;
    settings.topics.partitions = PARTITIONS;
    settings.limits.max_age_days = 100_000;
    let then: DateTime<Utc> = DateTime::parse_from_rfc3339("1998-07-01T00:00:00Z")
        .expect("time")
        .to_utc();
    let app = purchase_ingest::App::build_with_clock(
        settings,
        KafkaLog::new(kafka.clone()).expect("log"),
        Arc::new(move || then),
    )
    .await
    .expect("ingest")
    .spawn();
    let mut client = PurchaseIngestClient::connect(format!("http://{}", app.local_addr()))
        .await
        .expect("connect");
    let batches: Vec<ingest::StreamSwipesRequest> = cdnow_swipes()
        .chunks(500)
        .map(|b| ingest::StreamSwipesRequest {
            swipes: b.to_vec(),
            historical: false,
        })
        .collect();
    let mut answers = client
        .stream_swipes(tokio_stream::iter(batches))
        .await
        .expect("stream")
        .into_inner();
    let mut accepted = 0;
    while let Some(answer) = answers.message().await.expect("answer") {
        for r in answer.results {
            assert!(
                matches!(r.outcome, Some(ingest::swipe_result::Outcome::Accepted(_))),
                "{r:?}"
            );
            accepted += 1;
        }
    }
    assert_eq!(accepted, 6_919);
    app.stop().await.expect("ingest stops");
}

/// churn-scoring on the broker and `redis`, refits off, identities required.
async fn start_scoring(
    kafka: &KafkaSettings,
    redis: &RedisServer,
    issuer: &TestIssuer,
) -> churn_scoring::Running<KafkaLog> {
    let mut settings = churn_scoring::config::Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: String::new(),
        refit_interval_secs: 0,
        ..churn_scoring::config::Settings::default()
    };
    settings.redis.url = redis.url();
    settings.topics.partitions = PARTITIONS;
    settings.auth = AuthSettings {
        required: true,
        store_tokens_file: issuer.store_tokens_file(&[("cdnow", &canary::store_token("cdnow"))]),
        jwt: JwtSettings {
            algorithm: "HS256".into(),
            key_file: issuer.key_file(),
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
        },
    };
    churn_scoring::App::build(
        settings,
        Arc::new(KafkaLog::new(kafka.clone()).expect("log")),
    )
    .await
    .expect("scoring builds")
    .spawn()
}

fn request(calibration_end: &str, holdout_end: &str) -> pb::CheckHoldoutRequest {
    pb::CheckHoldoutRequest {
        calibration_end: calibration_end.into(),
        holdout_end: holdout_end.into(),
    }
}

fn bad_fields(status: &tonic::Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .expect("google.rpc.BadRequest detail")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cdnow_holdout_check_read_from_the_log_is_the_closed_form() {
    init_test_logging();
    let broker = Tansu::start();
    let redis = RedisServer::start();
    let kafka = KafkaSettings {
        bootstrap_servers: broker.bootstrap(),
        ..KafkaSettings::default()
    };
    send_cdnow(&kafka).await;
    // Two records the scorer dead-letters: the check skips them as it does.
    let log = KafkaLog::new(kafka.clone()).expect("log");
    let poison = |payload: &str| OutgoingRecord {
        key: b"cdnow-0001".to_vec(),
        payload: payload.as_bytes().to_vec(),
        headers: vec![Header::new("content-type", "application/json")],
        timestamp_ms: 0,
    };
    for r in log
        .append(TOPIC, vec![poison("{not json"), poison("{\"type\":\"x\"}")])
        .await
    {
        r.expect("append");
    }
    let issuer = TestIssuer::new();
    let scoring = start_scoring(&kafka, &redis, &issuer).await;
    let mut client = ChurnScoringClient::connect(scoring.endpoint())
        .await
        .expect("connect");
    let analyst = issuer.token("analyst", "a-1", &[]);

    let check = client
        .check_holdout(with_bearer(request("1997-09-30", ""), &analyst))
        .await
        .expect("the check")
        .into_inner();
    let m = check.bg_nbd.expect("parameters");
    eprintln!(
        "BG/NBD {m:?}, LL {:.2}; holdout actual {} predicted {:.2}",
        check.bg_nbd_log_likelihood,
        check.actual_holdout_purchases,
        check.predicted_holdout_purchases
    );
    assert_eq!(
        [sig3(m.r), sig3(m.alpha), sig3(m.a), sig3(m.b)],
        [sig3(0.243), sig3(4.414), sig3(0.793), sig3(2.426)]
    );
    assert_eq!(
        (
            check.first_day.as_str(),
            check.calibration_end.as_str(),
            check.holdout_end.as_str()
        ),
        ("1997-01-01", "1997-09-30", "1998-06-30")
    );
    assert_eq!((check.calibration_weeks, check.holdout_weeks), (39.0, 39.0));
    assert_eq!((check.customers, check.excluded_customers), (2_357, 0));
    assert_eq!(check.calibration_repeat_purchases, 2_457);

    // The closed form, from the raw file, with the parameters the check fitted.
    let model = BgNbd {
        r: m.r,
        alpha: m.alpha,
        a: m.a,
        b: m.b,
    };
    let raw = raw_split(NaiveDate::from_ymd_opt(1997, 9, 30).expect("date"));
    let actual: u64 = raw.iter().map(|(_, h)| u64::from(*h)).sum();
    let predicted: f64 = raw
        .iter()
        .map(|(c, _)| model.expected_purchases(c, 39.0))
        .sum();
    assert_eq!(check.actual_holdout_purchases, actual);
    assert!(
        (check.predicted_holdout_purchases - predicted).abs() <= 1e-9 * predicted,
        "{} vs {predicted}",
        check.predicted_holdout_purchases
    );
    assert_eq!(check.by_calibration_purchases.len(), 8);
    for row in &check.by_calibration_purchases {
        let x = f64::from(row.calibration_purchases);
        let members: Vec<&(Rfm, u32)> = raw
            .iter()
            .filter(|(c, _)| c.x == x || (row.or_more && c.x >= x))
            .collect();
        let n = members.len() as f64;
        assert_eq!(row.customers, members.len() as u64, "{row:?}");
        let actual = members.iter().map(|(_, h)| f64::from(*h)).sum::<f64>() / n;
        let predicted = members
            .iter()
            .map(|(c, _)| model.expected_purchases(c, 39.0))
            .sum::<f64>()
            / n;
        assert!((row.actual_mean - actual).abs() < 1e-12, "{row:?}");
        assert!(
            (row.predicted_mean - predicted).abs() <= 1e-9 * predicted,
            "{row:?}"
        );
    }
    assert_eq!(check.weekly.len(), 78);
    assert_eq!(check.weekly[38].actual, 2_457, "week 39: the calibration's");
    assert_eq!(
        check.weekly.last().map(|w| w.actual),
        Some(2_457 + actual),
        "week 78"
    );

    // An explicit holdout end cuts the holdout short.
    let short = client
        .check_holdout(with_bearer(request("1997-09-30", "1997-12-31"), &analyst))
        .await
        .expect("the check")
        .into_inner();
    assert_eq!(short.holdout_end, "1997-12-31");
    assert!(short.actual_holdout_purchases < actual);
    assert_eq!(short.bg_nbd, check.bg_nbd, "the same calibration");

    // The request's checks, each naming its field.
    for (req, field) in [
        (request("", ""), "calibration_end"),
        (request("1997-9-30", ""), "calibration_end"),
        (request("1997-02-30", ""), "calibration_end"),
        (request("1997-09-30", "30.6.1998"), "holdout_end"),
        (request("1997-09-30", "1997-09-30"), "holdout_end"),
        (request("1997-09-30", "1997-01-01"), "holdout_end"),
    ] {
        let status = client
            .check_holdout(with_bearer(req.clone(), &analyst))
            .await
            .expect_err("refused");
        assert_eq!(bad_fields(&status), vec![field], "{req:?}");
    }
    // Nothing to check: a calibration before the first purchase.
    let status = client
        .check_holdout(with_bearer(request("1996-12-31", ""), &analyst))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");

    // Who may ask: those who read every store. Asked with a bad date, which is looked at
    // only once the caller may ask, so that no call reads the log again.
    for (who, token, code) in [
        (
            "owner",
            issuer.token("owner", "o-1", &[]),
            Code::InvalidArgument,
        ),
        (
            "service",
            issuer.token("service", "svc", &[]),
            Code::InvalidArgument,
        ),
        (
            "the store's manager",
            issuer.token("store_manager", "m-1", &["cdnow"]),
            Code::PermissionDenied,
        ),
        (
            "the store's gateway",
            canary::store_token("cdnow"),
            Code::PermissionDenied,
        ),
    ] {
        let got = client
            .check_holdout(with_bearer(request("30.9.1997", ""), &token))
            .await
            .expect_err("refused");
        assert_eq!(got.code(), code, "{who}: {got:?}");
    }
    let status = client
        .check_holdout(request("1997-09-30", ""))
        .await
        .expect_err("no credentials");
    assert_eq!(status.code(), Code::Unauthenticated);

    if let Err(e) = scoring.stop().await {
        panic!("scoring stops: {e} ({:?})", std::error::Error::source(&e));
    }
}
