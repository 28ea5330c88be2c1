//! A store's till clock hours off, under load, through purchase-ingest's gRPC API into
//! churn-scoring, on a real Kafka-protocol broker (Tansu) and a real Redis. The rule
//! (README, "Event time and a store's clock"):
//!
//! - a swipe more than `limits.max_future_secs` (300 s) ahead of the server's clock is
//!   refused, naming `occurred_at`, and never written: a till hours ahead gets every
//!   swipe back;
//! - one behind is a late event: accepted (up to `limits.max_age_days`) and counted on
//!   its own store-local day;
//! - a partition's stream time never moves back: late swipes applied after today's
//!   leave the day every customer is assessed on where it was.
//!
//! Three stores' gateways stream at once: one on time (up to four minutes either way,
//! within the allowance), one three hours ahead, one five and twenty-nine hours behind
//! (today and yesterday). Then, with everything applied, a last round of yesterday's
//! swipes from the late store reaches customers of every partition. The checker is the
//! accepted swipes themselves: every customer's visit days, spend and last visit as the
//! scorer reports them equal those the swipes give. It prints its counts: sent,
//! acknowledged, refused, found in the log, counted, duplicates.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDate, TimeDelta, Utc};
use churnguard_domain::CardSwiped;
use churnguard_eventlog::EventLog;
use churnguard_proto::ingest::v1 as pb;
use churnguard_proto::ingest::v1::purchase_ingest_client::PurchaseIngestClient;
use churnguard_proto::scoring::v1 as sc;
use churnguard_proto::scoring::v1::churn_scoring_client::ChurnScoringClient;
use churnguard_runtime::Clock;
use churnguard_testkit::{RedisServer, Tansu, init_test_logging};
use purchase_ingest::config::Backend;
use tokio_stream::StreamExt;

const PARTITIONS: u32 = 3;

/// Swipes per customer of each gateway; ten times as many with `CHURNGUARD_FAULTS_FULL`
/// set (`make test-faults`).
fn per_customer() -> usize {
    if std::env::var_os("CHURNGUARD_FAULTS_FULL").is_some() {
        100
    } else {
        10
    }
}
const MODELS: &str = "churn.models.v1";
const BATCH: usize = 25;
const WAIT: Duration = Duration::from_secs(120);

/// The servers' clock: 2026-11-20 12:00 UTC, 13:00 at the stores (UTC+1).
fn now() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(2026, 11, 20)
        .and_then(|d| d.and_hms_opt(12, 0, 0))
        .expect("time")
        .and_utc()
}

fn clock() -> Clock {
    let now = now();
    Arc::new(move || now)
}

fn store_offset() -> FixedOffset {
    FixedOffset::east_opt(3_600).expect("UTC+1")
}

/// A store and how far its till's clock is off, by swipe.
#[derive(Clone, Copy)]
enum Till {
    /// Up to four minutes either way: within the 300 s allowance.
    OnTime,
    /// Three hours ahead.
    Ahead,
    /// Five hours behind (today) or twenty-nine (yesterday), alternately.
    Behind,
}

impl Till {
    fn store(self) -> &'static str {
        match self {
            Till::OnTime => "store-on-time",
            Till::Ahead => "store-ahead",
            Till::Behind => "store-behind",
        }
    }

    /// The time the till stamps on its `i`-th swipe.
    fn stamp(self, i: usize) -> DateTime<FixedOffset> {
        let off = match self {
            Till::OnTime => TimeDelta::seconds((i % 9) as i64 * 60 - 240),
            Till::Ahead => TimeDelta::hours(3) + TimeDelta::seconds(i as i64 % 60),
            Till::Behind if i.is_multiple_of(2) => TimeDelta::hours(-5),
            Till::Behind => TimeDelta::hours(-29),
        };
        (now() + off).with_timezone(&store_offset())
    }
}

fn swipe(till: Till, id: String, customer: &str, i: usize) -> pb::Swipe {
    pb::Swipe {
        swipe_id: id,
        customer: Some(pb::swipe::Customer::CustomerId(customer.into())),
        store_id: till.store().into(),
        terminal_id: "till-1".into(),
        employee_id: "emp-1".into(),
        occurred_at: till.stamp(i).to_rfc3339(),
        amount: Some(pb::Amount {
            minor_units: 700 + (i % 23) as i64 * 50,
            currency: "EUR".into(),
        }),
        item_count: 1 + (i % 4) as u32,
    }
}

/// A gateway's swipes: `per_customer` for each of `customers`.
fn gateway(till: Till, customers: &[String], per_customer: usize, round: &str) -> Vec<pb::Swipe> {
    let mut out = Vec::new();
    for k in 0..per_customer {
        for (c, customer) in customers.iter().enumerate() {
            let i = k * customers.len() + c;
            let id = format!("{}-{round}-{i}", till.store());
            out.push(swipe(till, id, customer, i));
        }
    }
    out
}

/// What the gateway got back.
#[derive(Default)]
struct Answers {
    accepted: Vec<pb::Swipe>,
    /// (swipe id, code, the fields named).
    refused: Vec<(String, String, Vec<String>)>,
}

/// Streams `swipes` in batches over one StreamSwipes call.
async fn stream(endpoint: String, swipes: Vec<pb::Swipe>) -> Answers {
    let mut client = PurchaseIngestClient::connect(endpoint)
        .await
        .expect("connect");
    let batches: Vec<pb::StreamSwipesRequest> = swipes
        .chunks(BATCH)
        .map(|b| pb::StreamSwipesRequest {
            swipes: b.to_vec(),
            historical: false,
        })
        .collect();
    let by_id: HashMap<String, pb::Swipe> = swipes
        .into_iter()
        .map(|s| (s.swipe_id.clone(), s))
        .collect();
    let mut responses = client
        .stream_swipes(tokio_stream::iter(batches))
        .await
        .expect("StreamSwipes")
        .into_inner();
    let mut answers = Answers::default();
    while let Some(response) = responses.next().await {
        for result in response.expect("a batch's answer").results {
            match result.outcome.expect("an outcome") {
                pb::swipe_result::Outcome::Accepted(_) => {
                    answers.accepted.push(by_id[&result.swipe_id].clone())
                }
                pb::swipe_result::Outcome::Rejected(r) => answers.refused.push((
                    result.swipe_id,
                    r.code,
                    r.field_violations.into_iter().map(|v| v.field).collect(),
                )),
            }
        }
    }
    answers
}

/// A customer's figures as the accepted swipes give them: visit days and spend.
#[derive(Debug, Default, PartialEq)]
struct Figures {
    days: BTreeSet<NaiveDate>,
    spend: i64,
}

fn checker(accepted: &[pb::Swipe]) -> BTreeMap<String, Figures> {
    let mut out: BTreeMap<String, Figures> = BTreeMap::new();
    for s in accepted {
        let Some(pb::swipe::Customer::CustomerId(customer)) = &s.customer else {
            unreachable!("every swipe here names its customer")
        };
        let day = DateTime::parse_from_rfc3339(&s.occurred_at)
            .expect("the swipe's time")
            .date_naive();
        let figures = out.entry(customer.clone()).or_default();
        figures.days.insert(day);
        figures.spend += s.amount.as_ref().expect("amount").minor_units;
    }
    out
}

/// Waits until the scorer reports every customer as the checker does: (day assessed,
/// visit days, spend, days since the last visit) equal, for each; the visit days counted.
async fn scored_as(
    scoring: &ChurnScoringClient<tonic::transport::Channel>,
    expected: &BTreeMap<String, Figures>,
    what: &str,
) -> u64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match compare(&mut scoring.clone(), expected).await {
            Ok(counted) => return counted,
            Err(differs) => assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {WAIT:?} waiting for {what}: {differs}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The visit days counted when the scorer reports every customer as the checker does;
/// else the first that differs.
async fn compare(
    scoring: &mut ChurnScoringClient<tonic::transport::Channel>,
    expected: &BTreeMap<String, Figures>,
) -> Result<u64, String> {
    let today = now().with_timezone(&store_offset()).date_naive();
    let mut counted = 0;
    for (customer, figures) in expected {
        let risk = scoring
            .get_customer_risk(sc::GetCustomerRiskRequest {
                customer_id: customer.clone(),
                as_of: String::new(),
            })
            .await
            .map_err(|e| format!("{customer}: {e:?}"))?
            .into_inner()
            .risk
            .expect("a risk");
        let window = risk.window.expect("window figures");
        let last = figures.days.last().expect("a visit");
        let reported = (
            risk.as_of.as_str(),
            window.recent_visits as usize,
            window.recent_spend_minor_units,
            i64::from(window.days_since_last_visit),
        );
        let wanted = (
            "2026-11-20",
            figures.days.len(),
            figures.spend,
            (today - *last).num_days(),
        );
        if reported != wanted {
            return Err(format!(
                "{customer}: (as of, visit days, spend, days since) {reported:?}, the swipes give {wanted:?}"
            ));
        }
        counted += u64::from(window.recent_visits);
    }
    Ok(counted)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_till_hours_ahead_is_refused_and_one_hours_behind_counts_on_its_own_day() {
    init_test_logging();
    let broker = Tansu::start();
    let redis = RedisServer::start();

    let mut ingest_settings = purchase_ingest::Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: String::new(),
        ..purchase_ingest::Settings::default()
    };
    ingest_settings.log.backend = Backend::Kafka;
    ingest_settings.topics.partitions = PARTITIONS;
    assert_eq!(
        ingest_settings.limits.max_future_secs, 300,
        "the allowance this test is written for"
    );
    let purchases = ingest_settings.topics.purchases.clone();
    let ingest = purchase_ingest::App::build_with_clock(
        ingest_settings,
        common::kafka(&broker, "purchase-ingest"),
        clock(),
    )
    .await
    .expect("purchase-ingest builds")
    .spawn();

    let writer = common::kafka(&broker, "e2e-writer");
    writer.ensure_topic(MODELS, 1).await.expect("topic");
    for written in writer
        .append(MODELS, vec![common::model_record(now())])
        .await
    {
        written.expect("the model announced");
    }
    let mut scoring_settings = churn_scoring::config::Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: String::new(),
        shutdown_grace_ms: 5_000,
        timer_interval_ms: 200,
        refit_interval_secs: 0,
        ..churn_scoring::config::Settings::default()
    };
    scoring_settings.topics.partitions = PARTITIONS;
    scoring_settings.topics.purchases = purchases.clone();
    scoring_settings.redis.url = redis.url();
    assert_eq!(scoring_settings.topics.models, MODELS);
    let scoring = churn_scoring::App::build_with_clock(
        scoring_settings,
        Arc::new(common::kafka(&broker, "churn-scoring")),
        clock(),
    )
    .await
    .expect("churn-scoring builds")
    .spawn();

    // The three gateways at once.
    let names = |prefix: &str, n: usize| -> Vec<String> {
        (0..n).map(|i| format!("{prefix}-{i}")).collect()
    };
    let on_time_customers = names("regular", 30);
    let sent_on_time = gateway(Till::OnTime, &on_time_customers, per_customer(), "a");
    let sent_ahead = gateway(Till::Ahead, &names("early", 15), per_customer(), "a");
    let sent_behind = gateway(Till::Behind, &names("late", 15), per_customer(), "a");
    let sent = sent_on_time.len() + sent_ahead.len() + sent_behind.len();
    let endpoint = ingest.endpoint();
    let (on_time, ahead, behind) = tokio::join!(
        stream(endpoint.clone(), sent_on_time.clone()),
        stream(endpoint.clone(), sent_ahead.clone()),
        stream(endpoint.clone(), sent_behind.clone()),
    );

    assert!(
        on_time.refused.is_empty(),
        "a till within the allowance is taken: {:?}",
        &on_time.refused[..on_time.refused.len().min(3)]
    );
    assert_eq!(on_time.accepted.len(), sent_on_time.len());
    assert!(ahead.accepted.is_empty(), "no swipe of a till hours ahead");
    assert_eq!(ahead.refused.len(), sent_ahead.len());
    for (id, code, fields) in &ahead.refused {
        assert_eq!(code, "INVALID_ARGUMENT", "{id}");
        assert_eq!(fields, &["occurred_at".to_owned()], "{id}: the field named");
    }
    assert!(behind.refused.is_empty(), "late swipes are taken");
    assert_eq!(behind.accepted.len(), sent_behind.len());

    let mut accepted: Vec<pb::Swipe> = on_time.accepted;
    accepted.extend(behind.accepted);
    let scoring_client = ChurnScoringClient::connect(scoring.endpoint())
        .await
        .expect("connect to churn-scoring");
    scored_as(
        &scoring_client,
        &checker(&accepted),
        "the scorer to count every accepted swipe",
    )
    .await;

    // Yesterday's swipes, from the late store, for today's regulars (whose partitions
    // are all past today): counted on yesterday, and nobody's day moves back.
    let late_round: Vec<pb::Swipe> = on_time_customers
        .iter()
        .enumerate()
        .map(|(c, customer)| {
            // An odd swipe of the late till: twenty-nine hours behind.
            let s = swipe(
                Till::Behind,
                format!("store-behind-b-{c}"),
                customer,
                2 * c + 1,
            );
            assert!(s.occurred_at.starts_with("2026-11-19"), "{}", s.occurred_at);
            s
        })
        .collect();
    let last = stream(endpoint.clone(), late_round.clone()).await;
    assert!(last.refused.is_empty(), "late swipes are taken");
    let sent = sent + late_round.len();
    accepted.extend(last.accepted);
    let counted = scored_as(
        &scoring_client,
        &checker(&accepted),
        "the scorer to count yesterday's swipes",
    )
    .await;

    // The log holds every accepted swipe once and no refused one.
    let reader = common::kafka(&broker, "e2e-reader");
    let mut found: HashMap<String, usize> = HashMap::new();
    let mut stores: BTreeMap<String, usize> = BTreeMap::new();
    for p in 0..PARTITIONS {
        let end = reader.end_offset(&purchases, p).await.expect("end offset");
        for r in churnguard_eventlog::contract::read_all(&reader, &purchases, p, end).await {
            let swipe = CardSwiped::decode(&r.payload).expect("a swipe").data;
            *stores
                .entry(swipe.store_id.as_str().to_owned())
                .or_default() += 1;
            *found.entry(swipe.swipe_id.as_str().to_owned()).or_default() += 1;
        }
    }
    let duplicates = found.values().filter(|n| **n > 1).count();
    eprintln!(
        "clock_skew: sent {sent}, acknowledged {}, refused {} (all from the till 3 h ahead), \
         found in the log {}, counted {counted} visit days, duplicates {duplicates}; by store {stores:?}",
        accepted.len(),
        ahead.refused.len(),
        found.len(),
    );
    assert_eq!(duplicates, 0, "no swipe written twice");
    assert_eq!(
        found.len(),
        accepted.len(),
        "every acknowledged swipe in the log"
    );
    assert!(
        accepted.iter().all(|s| found.contains_key(&s.swipe_id)),
        "the log holds exactly the acknowledged swipes"
    );
    assert_eq!(
        stores.get(Till::Ahead.store()),
        None,
        "nothing of the till ahead"
    );

    scoring.stop().await.expect("churn-scoring stops");
    let _ = ingest.stop().await;
}
