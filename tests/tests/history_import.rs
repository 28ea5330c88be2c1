//! An import of history is scored as history, not as today: while a partition's newest
//! swipe is imported (`historical`), its absence timers follow the data's own days, so
//! customers who stopped coming in the history change state on the history's days, and
//! feedback opens no outreach case for them; once live traffic arrives, the timers move
//! to the wall clock, and today's defectors get a case. On the embedded log and a real
//! Redis, through purchase-ingest's gRPC API, with both services' clocks on 1 December
//! 2026 and the history in the first half of 2025.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use churnguard_domain::Envelope;
use churnguard_domain::signal::ChurnStateChanged;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_eventlog::{EventLog, contract};
use churnguard_proto::feedback::v1 as fb;
use churnguard_proto::feedback::v1::feedback_client::FeedbackClient;
use churnguard_proto::ingest::v1 as pb;
use churnguard_proto::ingest::v1::purchase_ingest_client::PurchaseIngestClient;
use churnguard_proto::scoring::v1 as sc;
use churnguard_proto::scoring::v1::churn_scoring_client::ChurnScoringClient;
use churnguard_runtime::Clock;
use churnguard_testkit::{RedisServer, eventually, init_test_logging};

const SIGNALS: &str = "churn.signals.v1";
const MODELS: &str = "churn.models.v1";

fn today() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
        .expect("time")
        .to_utc()
}

fn clock() -> Clock {
    Arc::new(today)
}

fn swipe(customer: &str, day: NaiveDate) -> pb::Swipe {
    pb::Swipe {
        swipe_id: format!("{customer}-{day}"),
        customer: Some(pb::swipe::Customer::CustomerId(customer.into())),
        store_id: "store-1".into(),
        terminal_id: "till-1".into(),
        employee_id: "emp-1".into(),
        occurred_at: format!("{day}T18:00:00+00:00"),
        amount: Some(pb::Amount {
            minor_units: 4_000,
            currency: "EUR".into(),
        }),
        item_count: 1,
    }
}

/// The history: a regular who comes twice a week from January to April 2025 and then
/// stops, and a steady customer who comes every week until the start of July 2025.
fn history() -> Vec<pb::Swipe> {
    let start = NaiveDate::from_ymd_opt(2025, 1, 6).expect("date");
    let mut swipes = Vec::new();
    for week in 0..26u64 {
        let monday = start + chrono::Days::new(week * 7);
        if week < 16 {
            swipes.push(swipe("regular", monday));
            swipes.push(swipe("regular", monday + chrono::Days::new(3)));
        }
        swipes.push(swipe("steady", monday + chrono::Days::new(1)));
    }
    swipes
}

/// Sends `swipes` in one StreamSwipes call; every one must be accepted.
async fn send(ingest: &purchase_ingest::Running, swipes: Vec<pb::Swipe>, historical: bool) {
    let mut client = PurchaseIngestClient::connect(ingest.endpoint())
        .await
        .expect("connect");
    let batches: Vec<pb::StreamSwipesRequest> = swipes
        .chunks(100)
        .map(|b| pb::StreamSwipesRequest {
            swipes: b.to_vec(),
            historical,
        })
        .collect();
    let mut answers = client
        .stream_swipes(tokio_stream::iter(batches))
        .await
        .expect("stream")
        .into_inner();
    while let Some(answer) = answers.message().await.expect("answer") {
        for r in answer.results {
            assert!(
                matches!(r.outcome, Some(pb::swipe_result::Outcome::Accepted(_))),
                "{r:?}"
            );
        }
    }
}

/// The churn signals published so far: (customer, state, as of).
async fn signals(log: &EmbeddedLog) -> Vec<(String, String, NaiveDate)> {
    let end = log.end_offset(SIGNALS, 0).await.unwrap_or(0);
    contract::read_all(log, SIGNALS, 0, end)
        .await
        .iter()
        .map(|r| {
            let s =
                Envelope::<ChurnStateChanged>::decode(&r.payload, ChurnStateChanged::EVENT_TYPE)
                    .expect("a churn signal")
                    .data;
            (s.customer, s.state, s.as_of)
        })
        .collect()
}

/// Waits until the signals have been the same for a second (the timers tick every 100 ms),
/// and `done` holds of them.
async fn settled(
    log: &EmbeddedLog,
    done: impl Fn(&[(String, String, NaiveDate)]) -> bool,
) -> Vec<(String, String, NaiveDate)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut last = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = signals(log).await;
        if now == last && done(&now) {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the signals did not settle: {now:?}"
        );
        last = now;
    }
}

/// Ingest (imports allowed) and scoring on `log` and `redis`, both on the run's clock,
/// timers every 100 ms; `partitions` of the purchases topic (default when `None`) and
/// refits every `refit_secs` (0: off).
async fn start(
    log: &EmbeddedLog,
    redis: &RedisServer,
    partitions: Option<u32>,
    refit_secs: u64,
) -> (
    purchase_ingest::Running,
    churn_scoring::Running<EmbeddedLog>,
) {
    start_on(log, redis, partitions, refit_secs, clock(), 100).await
}

/// As [`start`], on `clock`, the timers every `timer_ms`.
async fn start_on(
    log: &EmbeddedLog,
    redis: &RedisServer,
    partitions: Option<u32>,
    refit_secs: u64,
    clock: Clock,
    timer_ms: u64,
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
        timer_interval_ms: timer_ms,
        refit_interval_secs: refit_secs,
        ..churn_scoring::config::Settings::default()
    };
    scoring.redis.url = redis.url();
    if let Some(n) = partitions {
        ingest.topics.partitions = n;
        scoring.topics.partitions = n;
    }
    let ingest = purchase_ingest::App::build_with_clock(ingest, log.clone(), clock.clone())
        .await
        .expect("ingest builds")
        .spawn();
    let scoring = churn_scoring::App::build_with_clock(scoring, Arc::new(log.clone()), clock)
        .await
        .expect("scoring builds")
        .spawn();
    (ingest, scoring)
}

#[tokio::test(flavor = "multi_thread")]
async fn imported_history_changes_states_on_its_own_days_and_live_traffic_moves_timers_to_today() {
    init_test_logging();
    let dir = tempfile::tempdir().expect("dir");
    let redis = RedisServer::start();
    let log = EmbeddedLog::open(dir.path()).expect("log");
    // Refits off: the timers decide with the published CDNOW model.
    log.ensure_topic(MODELS, 1).await.expect("topic");
    for r in log
        .append(MODELS, vec![common::model_record(today())])
        .await
    {
        r.expect("model");
    }

    // One partition, so one watermark for both customers; refits off. Feedback opens
    // outreach cases from the signals.
    let (ingest, scoring) = start(&log, &redis, Some(1), 0).await;
    let feedback = start_feedback(&log, &redis).await;
    let mut outreach = FeedbackClient::connect(feedback.endpoint())
        .await
        .expect("connect to feedback");

    let history = history();
    let end_of_history = history
        .iter()
        .map(|s| NaiveDate::parse_from_str(&s.occurred_at[..10], "%Y-%m-%d").expect("day"))
        .max()
        .expect("a history");
    send(&ingest, history, true).await;
    let imported = settled(&log, |s| s.iter().any(|(c, _, _)| c == "regular")).await;
    eprintln!("signals after the import: {imported:?}");
    assert!(
        imported
            .iter()
            .all(|(c, _, as_of)| c == "regular" && *as_of <= end_of_history),
        "only the regular, who stopped in April, changed state, on days of the history: {imported:?}"
    );
    // A customer who left in 2025 is history: no outreach case for them. (The signals
    // settled a second ago; feedback reads them within its poll.)
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        cases(&mut outreach).await,
        Vec::<String>::new(),
        "no case from history"
    );

    // Live traffic: yesterday evening's swipe of someone else. The timers now run on the
    // wall clock, and the steady customer, gone since July 2025, is noticed today.
    let yesterday = today().date_naive() - chrono::Days::new(1);
    send(&ingest, vec![swipe("newcomer", yesterday)], false).await;
    let live = settled(&log, |s| s.iter().any(|(c, _, _)| c == "steady")).await;
    eprintln!("signals after live traffic: {live:?}");
    assert_eq!(
        &live[..imported.len()],
        &imported[..],
        "history's signals stand"
    );
    let steady: Vec<_> = live[imported.len()..]
        .iter()
        .filter(|(c, _, _)| c == "steady")
        .collect();
    assert!(
        !steady.is_empty()
            && steady
                .iter()
                .all(|(_, _, as_of)| *as_of == today().date_naive()),
        "the steady customer is noticed today: {live:?}"
    );
    // Noticed today: someone to call.
    let open = eventually(
        Duration::from_secs(30),
        "a case for the steady customer",
        || {
            let mut outreach = outreach.clone();
            async move {
                let open = cases(&mut outreach).await;
                (!open.is_empty()).then_some(open)
            }
        },
    )
    .await;
    assert_eq!(open, ["steady"], "a case for today's defector only");

    feedback.stop().await.expect("feedback stops");
    ingest.stop().await.expect("ingest stops");
    scoring.stop().await.expect("scoring stops");
}

/// A population whose patterns change over half a year: customers who stop after
/// a few weeks or months, one whose visits thin out, one who stays away two months and
/// comes back, and steady ones; one swipe per visit, in day order.
fn changing_history() -> Vec<pb::Swipe> {
    let start = NaiveDate::from_ymd_opt(2025, 1, 6).expect("date");
    let mut visits: Vec<(NaiveDate, String)> = Vec::new();
    let mut visit = |customer: &str, day: u64| {
        visits.push((start + chrono::Days::new(day), customer.to_owned()));
    };
    for week in 0..26 {
        visit("steady", week * 7 + 1);
        if week < 6 {
            visit("early-leaver", week * 7 + 2);
        }
        if week < 14 {
            visit("regular", week * 7);
            visit("regular", week * 7 + 3);
        }
        if !(8..17).contains(&week) {
            visit("returner", week * 7 + 4);
        }
    }
    // Every 5, then 10, then 20, then 40 days apart.
    let mut day = 0;
    for gap in [5, 5, 5, 10, 10, 20, 20, 40] {
        visit("thinning", day);
        day += gap;
    }
    for k in 0..6u64 {
        visit("sporadic", 3 + k * 29);
    }
    visits.sort();
    visits
        .into_iter()
        .map(|(day, customer)| swipe(&customer, day))
        .collect()
}

/// The day a swipe of [`swipe`] was made.
fn day_of_swipe(s: &pb::Swipe) -> NaiveDate {
    NaiveDate::parse_from_str(&s.occurred_at[..10], "%Y-%m-%d").expect("day")
}

/// What scoring says of `customers` at the end: each one's state, and the store's
/// defection figures over the history's year.
async fn standing(
    scoring: &churn_scoring::Running<EmbeddedLog>,
    customers: &[String],
) -> (Vec<(String, i32)>, sc::GetStoreDefectionStatsResponse) {
    let mut client = ChurnScoringClient::connect(scoring.endpoint())
        .await
        .expect("connect to scoring");
    let mut states = Vec::new();
    for c in customers {
        let risk = client
            .get_customer_risk(sc::GetCustomerRiskRequest {
                customer_id: c.clone(),
                as_of: String::new(),
            })
            .await
            .expect("GetCustomerRisk")
            .into_inner()
            .risk
            .expect("a risk");
        states.push((c.clone(), risk.state));
    }
    let stats = client
        .get_store_defection_stats(sc::GetStoreDefectionStatsRequest {
            store_id: "store-1".into(),
            from_date: "2025-01-01".into(),
            to_date: "2025-12-31".into(),
        })
        .await
        .expect("GetStoreDefectionStats")
        .into_inner();
    (states, stats)
}

/// The same half year imported (all at once, as history) and lived through (each day's
/// swipes sent live with the services' clock on that day, the timers firing as the
/// days pass): the churn signals (every customer's states and the days they changed),
/// the states at the end and the store's defection figures are the same.
#[tokio::test(flavor = "multi_thread")]
async fn an_imported_history_ends_as_living_through_it_would_have() {
    init_test_logging();
    let history = changing_history();
    let first = day_of_swipe(&history[0]);
    let last = day_of_swipe(history.last().expect("a history"));
    let mut customers: Vec<String> = history
        .iter()
        .filter_map(|s| match &s.customer {
            Some(pb::swipe::Customer::CustomerId(c)) => Some(c.clone()),
            _ => None,
        })
        .collect();
    customers.sort();
    customers.dedup();
    // Both on one partition, with the published model and refits off.
    let stack = |dir: &std::path::Path| {
        let log = EmbeddedLog::open(dir).expect("log");
        async move {
            log.ensure_topic(MODELS, 1).await.expect("topic");
            for r in log
                .append(MODELS, vec![common::model_record(today())])
                .await
            {
                r.expect("model");
            }
            log
        }
    };

    // Imported: the whole half year at once, the services' clock on 1 December 2026.
    let imported_dir = tempfile::tempdir().expect("dir");
    let imported_redis = RedisServer::start();
    let imported_log = stack(imported_dir.path()).await;
    let (ingest, scoring) = start(&imported_log, &imported_redis, Some(1), 0).await;
    send(&ingest, history.clone(), true).await;
    // Customers due on one day are assessed concurrently: their signals' order varies.
    let mut imported_signals = settled(&imported_log, |_| true).await;
    imported_signals.sort();
    let imported = standing(&scoring, &customers).await;
    ingest.stop().await.expect("ingest stops");
    scoring.stop().await.expect("scoring stops");

    // Lived through: day by day, the clock at 20:00 of the day; the timers (every 20 ms)
    // get a round on the new day before its swipes (18:00) are sent, and each day's
    // swipes are scored, and the timers get rounds after them (the rest of the day: a
    // return is assessed won back by the timers, on the day of the swipe), before the
    // clock moves on.
    let lived_dir = tempfile::tempdir().expect("dir");
    let lived_redis = RedisServer::start();
    let lived_log = stack(lived_dir.path()).await;
    let now_ms = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let set_day = |day: NaiveDate| {
        let at = day.and_hms_opt(20, 0, 0).expect("time").and_utc();
        now_ms.store(at.timestamp_millis(), std::sync::atomic::Ordering::SeqCst);
    };
    set_day(first);
    let read = now_ms.clone();
    let lived_clock: Clock = Arc::new(move || {
        DateTime::from_timestamp_millis(read.load(std::sync::atomic::Ordering::SeqCst))
            .expect("a time")
    });
    let (ingest, scoring) = start_on(&lived_log, &lived_redis, Some(1), 0, lived_clock, 20).await;
    let store = churn_scoring::CustomerStore::connect(
        &lived_redis.url(),
        &churn_scoring::config::Settings::default().topics.purchases,
        120,
    )
    .await
    .expect("scoring's store");
    let purchases = churn_scoring::config::Settings::default().topics.purchases;
    let mut day = first;
    while day <= last {
        set_day(day);
        tokio::time::sleep(Duration::from_millis(120)).await;
        let todays: Vec<pb::Swipe> = history
            .iter()
            .filter(|s| day_of_swipe(s) == day)
            .cloned()
            .collect();
        if !todays.is_empty() {
            send(&ingest, todays, false).await;
            let end = lived_log.end_offset(&purchases, 0).await.expect("end");
            eventually(Duration::from_secs(10), "the day's swipes scored", || {
                let store = store.clone();
                async move { (store.checkpoint(0).await.ok()? >= end).then_some(()) }
            })
            .await;
            tokio::time::sleep(Duration::from_millis(120)).await;
        }
        day = day + chrono::Days::new(1);
    }
    tokio::time::sleep(Duration::from_millis(120)).await;
    let mut lived_signals = settled(&lived_log, |_| true).await;
    lived_signals.sort();
    let lived = standing(&scoring, &customers).await;
    ingest.stop().await.expect("ingest stops");
    scoring.stop().await.expect("scoring stops");

    eprintln!("signals, lived through: {lived_signals:?}");
    assert!(
        lived_signals.len() >= 4,
        "the history changes states: {lived_signals:?}"
    );
    assert_eq!(
        imported_signals, lived_signals,
        "the same changes on the same days"
    );
    assert_eq!(imported.0, lived.0, "the same states at the end");
    assert_eq!(imported.1, lived.1, "the same defection figures");
    assert!(imported.1.defected > 0, "{:?}", imported.1);
}

/// Feedback on `log` and `redis`, on the run's clock, reading the one-partition signals.
async fn start_feedback(log: &EmbeddedLog, redis: &RedisServer) -> feedback::Running {
    let mut settings = feedback::config::Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: String::new(),
        ..feedback::config::Settings::default()
    };
    settings.topics.partitions = 1;
    settings.redis.url = redis.url();
    feedback::App::build_with_clock(
        settings,
        Arc::new(log.clone()),
        churnguard_vault::Kek::from_bytes([7; 32]),
        clock(),
    )
    .await
    .expect("feedback builds")
    .spawn()
}

/// The customers of the outreach cases feedback has opened, sorted.
async fn cases(client: &mut FeedbackClient<tonic::transport::Channel>) -> Vec<String> {
    let page = client
        .list_outreach(fb::ListOutreachRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("ListOutreach")
        .into_inner();
    let mut customers: Vec<String> = page.cases.into_iter().map(|c| c.customer_id).collect();
    customers.sort();
    customers
}

/// The CDNOW sample through `churnguard import` (the CLI's library, as the binary runs it)
/// into ingest and scoring, then `churnguard refit`: every line accepted, and the refit
/// asked for right after stores a model fitted on all 2,357 customers, at the history's
/// end (not on the day of the run).
#[tokio::test(flavor = "multi_thread")]
async fn the_cdnow_sample_imported_then_refitted_on_request() {
    init_test_logging();
    let dir = tempfile::tempdir().expect("dir");
    let redis = RedisServer::start();
    let log = EmbeddedLog::open(dir.path().join("log")).expect("log");
    // The default partitions, and refits on their daily schedule.
    let day = churn_scoring::config::Settings::default().refit_interval_secs;
    let (ingest, scoring) = start(&log, &redis, None, day).await;

    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/domain/tests/data/CDNOW_sample.txt");
    let mut opts = churnguard_cli::ImportOptions::new(
        sample,
        churnguard_cli::Format::Cdnow(churnguard_cli::CdnowValues::default()),
        ingest.endpoint(),
    );
    opts.state = Some(dir.path().join("cdnow.import-state"));
    let report = churnguard_cli::import(
        &opts,
        &churnguard_cli::progress::bar(true),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect("the import runs");
    assert_eq!((report.lines, report.accepted), (6_919, 6_919), "{report}");

    let refitted = churnguard_cli::refit::refit(
        &churnguard_cli::Connection::new(scoring.endpoint()),
        Duration::from_secs(120),
    )
    .await
    .expect("the refit asked for is stored");
    eprintln!("{refitted}");
    assert!(refitted.model.version > refitted.previous, "{refitted}");
    assert_eq!(
        refitted.model.population, 2_357,
        "every customer: {refitted}"
    );
    assert_eq!(
        refitted.model.as_of, "1998-06-30",
        "the history's last day: {refitted}"
    );

    ingest.stop().await.expect("ingest stops");
    scoring.stop().await.expect("scoring stops");
}
