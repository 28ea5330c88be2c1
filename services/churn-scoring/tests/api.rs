//! The query API end to end: swipes on the log → scorer → timers on stream time →
//! `churnguard.scoring.v1.ChurnScoring` through a real gRPC client, against a real
//! Kafka-protocol broker (Tansu) and a real Redis; the same scenario on the embedded log.
//! Finally Redis is flushed and the log replayed: the query indices come back identical.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate};
use churn_scoring::api::{ApiServer, QueryState, Running, SERVICE_NAME};
use churn_scoring::models::ModelProjection;
use churn_scoring::refit::{RefitScope, refit};
use churn_scoring::timers::Timers;
use churn_scoring::{CustomerStore, ScoredSwipe, Scorer};
use churnguard_domain::customer::{Day, day_of};
use churnguard_domain::models::BgNbd;
use churnguard_domain::policy::{ChurnState, DefectionPolicy, PolicyBook, Rule, RuleSet};
use churnguard_domain::risk::{self, ScoringModel, ValueHorizon};
use churnguard_domain::signal::ChurnStateChanged;
use churnguard_domain::{CustomerInput, Envelope, SwipeDraft, SwipeLimits, partition_for_key};
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_eventlog::{EventLog, OutgoingRecord};
use churnguard_kafka::{KafkaLog, KafkaSettings};
use churnguard_proto::scoring::v1 as pb;
use churnguard_proto::scoring::v1::churn_scoring_client::ChurnScoringClient;
use churnguard_testkit::{RedisCluster, RedisServer, Tansu, eventually, init_test_logging};
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

const TOPIC: &str = "purchases.v1";
const MODELS: &str = "churn.models.v1";
const PARTITIONS: u32 = 3;
const HORIZON: Day = 120;
const WEEKS: u64 = 40;
/// The week after which the quiet diners are at risk but not yet defected.
const CHECK_WEEK: u64 = 17;
/// The model the timers assess with; the API uses the fitted one.
const TIMER_MODEL: BgNbd = BgNbd {
    r: 0.243,
    alpha: 4.414,
    a: 0.793,
    b: 2.426,
};

fn restaurant() -> DefectionPolicy {
    DefectionPolicy {
        recent_days: 28,
        baseline_days: 56,
        min_baseline_visits: 4,
        at_risk: RuleSet {
            visits_below_fraction: Some(0.6),
            overdue_gaps: Some(3.0),
            min_rules: 1,
            ..RuleSet::default()
        },
        defected: RuleSet {
            overdue_gaps: Some(8.0),
            min_rules: 1,
            ..RuleSet::default()
        },
    }
}

fn supermarket() -> DefectionPolicy {
    DefectionPolicy {
        recent_days: 28,
        baseline_days: 56,
        min_baseline_visits: 4,
        at_risk: RuleSet {
            visits_below_fraction: Some(0.3),
            overdue_gaps: Some(5.0),
            min_rules: 1,
            ..RuleSet::default()
        },
        defected: RuleSet {
            overdue_gaps: Some(12.0),
            min_rules: 1,
            ..RuleSet::default()
        },
    }
}

/// The chain: supermarkets by default, store `r1` is a restaurant.
fn policies() -> PolicyBook {
    PolicyBook {
        default: supermarket(),
        formats: BTreeMap::from([("restaurant".to_owned(), restaurant())]),
        store_formats: BTreeMap::from([("r1".to_owned(), "restaurant".to_owned())]),
    }
}

fn start() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 5).expect("date")
}

fn date_of(day: Day) -> String {
    (NaiveDate::default() + chrono::Days::new(day as u64)).to_string()
}

fn swipe(customer: &str, store: &str, week: u64, weekday: u64, spend: i64) -> OutgoingRecord {
    let now = DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
        .expect("time")
        .to_utc();
    let date = start() + chrono::Days::new(week * 7 + weekday);
    let s = SwipeDraft {
        swipe_id: format!("{customer}-{week}-{weekday}"),
        customer: CustomerInput::CustomerId(customer.into()),
        store_id: store.into(),
        terminal_id: "t1".into(),
        employee_id: "e1".into(),
        occurred_at: format!("{}T19:30:00+01:00", date.format("%Y-%m-%d")),
        amount_minor_units: spend,
        currency: "EUR".into(),
        item_count: 2,
    }
    .validate(
        now,
        &SwipeLimits {
            max_age: chrono::TimeDelta::days(400),
            ..Default::default()
        },
        None,
    )
    .expect("valid");
    OutgoingRecord {
        key: customer.as_bytes().to_vec(),
        timestamp_ms: s.occurred_at.timestamp_millis(),
        payload: s.into_envelope().to_json(),
        headers: vec![],
    }
}

/// The diners who go quiet after 16 weeks at the restaurant, with their spend per dinner:
/// their values at risk are ordered like their spend (b and c tie).
const DINERS: [(&str, i64); 4] = [
    ("diner-a", 2_000),
    ("diner-b", 4_000),
    ("diner-c", 4_000),
    ("diner-d", 8_000),
];

/// One week of the chain's swipes.
fn week(w: u64) -> Vec<OutgoingRecord> {
    let mut out = Vec::new();
    for i in 0..6 {
        let c = format!("steady-{i}");
        for d in [0, 3] {
            out.push(swipe(&c, "r1", w, d, 3_000 + 250 * i));
        }
    }
    for i in 0..3 {
        out.push(swipe(
            &format!("shopper-{i}"),
            "s2",
            w,
            1,
            9_000 + 1_000 * i,
        ));
    }
    if w < 16 {
        for (c, spend) in DINERS {
            for d in [0, 3] {
                out.push(swipe(c, "r1", w, d, spend));
            }
        }
        out.push(swipe("market-1", "s2", w, 1, 12_000));
    }
    // Gone for four months, then back for good.
    if !(16..32).contains(&w) {
        for d in [0, 3] {
            out.push(swipe("back-1", "r1", w, d, 6_000));
        }
    }
    out
}

struct Chain<L: EventLog> {
    log: Arc<L>,
    store: CustomerStore,
    scorer: Scorer<L>,
    timers: Timers,
    /// Each partition's end offset after each week.
    ends: Vec<Vec<u64>>,
}

impl<L: EventLog> Chain<L> {
    async fn new(log: Arc<L>, store: CustomerStore) -> Self {
        log.ensure_topic(TOPIC, PARTITIONS).await.expect("topic");
        log.ensure_topic(MODELS, 1).await.expect("models topic");
        Self {
            scorer: Scorer::new(log.clone(), store.clone(), TOPIC, 500),
            timers: Timers::new(store.clone(), policies(), TIMER_MODEL),
            log,
            store,
            ends: Vec::new(),
        }
    }

    /// Stream time: the latest event day applied on any partition.
    async fn stream_time(&self) -> Day {
        let mut now = Day::MIN;
        for p in 0..PARTITIONS {
            if let Some(w) = self.store.watermark(p).await.expect("watermark") {
                now = now.max(w);
            }
        }
        now
    }

    async fn fire(&self) {
        let now = self.stream_time().await;
        for p in 0..PARTITIONS {
            self.timers.fire_due(p, now).await.expect("fire");
        }
    }

    /// Appends week `w`, scores it, and fires the timers on stream time.
    async fn live_week(&mut self, w: u64) {
        for r in self.log.append(TOPIC, week(w)).await {
            r.expect("append");
        }
        let mut ends = Vec::new();
        for p in 0..PARTITIONS {
            self.scorer
                .run_partition(p, CancellationToken::new(), true)
                .await
                .expect("score");
            ends.push(self.log.end_offset(TOPIC, p).await.expect("end"));
        }
        self.ends.push(ends);
        self.fire().await;
    }

    /// Replays the log from the start in the live run's weekly steps, firing the timers
    /// at the same stream times.
    async fn replay(&self) {
        for ends in &self.ends {
            for (p, end) in (0..PARTITIONS).zip(ends) {
                let mut from = self.store.checkpoint(p).await.expect("checkpoint");
                while from < *end {
                    let records = self
                        .log
                        .read(
                            TOPIC,
                            p,
                            from,
                            (*end - from) as usize,
                            Duration::from_secs(1),
                        )
                        .await
                        .expect("read");
                    let records: Vec<_> = records.into_iter().filter(|r| r.offset < *end).collect();
                    let Some(last) = records.last() else { continue };
                    let next = last.offset + 1;
                    let swipes: Vec<ScoredSwipe> = records
                        .iter()
                        .map(|r| ScoredSwipe::from_record(r).expect("swipe"))
                        .collect();
                    from = self
                        .store
                        .apply_batch(p, from, &swipes, next)
                        .await
                        .expect("apply")
                        .checkpoint;
                }
            }
            self.fire().await;
        }
    }

    /// Every churn signal committed so far (the outbox is not relayed in these tests).
    async fn signals(&self) -> Vec<ChurnStateChanged> {
        let mut out = Vec::new();
        for p in 0..PARTITIONS {
            for (_, _, payload) in self.store.outbox(p, 100_000).await.expect("outbox") {
                out.push(
                    Envelope::<ChurnStateChanged>::decode(&payload, ChurnStateChanged::EVENT_TYPE)
                        .expect("signal")
                        .data,
                );
            }
        }
        out
    }
}

async fn client(api: &Running) -> ChurnScoringClient<Channel> {
    ChurnScoringClient::connect(api.endpoint())
        .await
        .expect("connect")
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

fn state(s: ChurnState) -> i32 {
    (match s {
        ChurnState::Active => pb::ChurnState::Active,
        ChurnState::AtRisk => pb::ChurnState::AtRisk,
        ChurnState::Defected => pb::ChurnState::Defected,
        ChurnState::WonBack => pb::ChurnState::WonBack,
    }) as i32
}

fn rule(r: Rule) -> i32 {
    (match r {
        Rule::PAliveLow => pb::Rule::PAliveLow,
        Rule::VisitsDropped => pb::Rule::VisitsDropped,
        Rule::SpendDropped => pb::Rule::SpendDropped,
        Rule::Overdue => pb::Rule::Overdue,
    }) as i32
}

/// What the domain computes for `customer` on `as_of`, from the stored state.
async fn expected_risk(
    store: &CustomerStore,
    customer: &str,
    model: &ScoringModel,
    as_of: Day,
) -> (ChurnState, risk::Risk) {
    let p = partition_for_key(customer.as_bytes(), PARTITIONS);
    let read = store
        .for_assessment(&churn_scoring::store::customer_key(p, customer))
        .await
        .expect("read")
        .expect("exists");
    let r = risk::assess(
        read.churn,
        &read.state,
        &policies(),
        model,
        &ValueHorizon::default(),
        as_of,
    );
    (read.churn, r)
}

fn assert_risk_matches(got: &pb::CustomerRisk, recorded: ChurnState, want: &risk::Risk) {
    let a = &want.assessment;
    assert_eq!(got.state, state(recorded));
    assert_eq!(got.assessed_state, state(a.state));
    assert_eq!(
        got.reasons,
        a.fired.iter().map(|r| rule(*r)).collect::<Vec<_>>()
    );
    assert_eq!(got.p_alive, a.figures.p_alive);
    assert_eq!(got.expected_purchases, want.expected_purchases);
    assert_eq!(got.expected_spend_per_visit, want.spend_per_visit);
    assert_eq!(got.clv, want.clv);
    assert_eq!(got.value_at_risk, want.value_at_risk);
    assert_eq!(got.horizon_days, 364);
    assert_eq!(Some(got.home_store_id.as_str()), want.home_store.as_deref());
    let w = got.window.as_ref().expect("window figures");
    assert_eq!(
        (w.recent_days, w.baseline_days),
        (28, 56),
        "the restaurant's windows"
    );
    assert_eq!(
        (
            w.recent_visits,
            w.baseline_visits,
            w.recent_spend_minor_units,
            w.baseline_spend_minor_units,
            w.days_since_last_visit,
            w.typical_gap_days,
        ),
        (
            a.figures.recent_visits,
            a.figures.baseline_visits,
            a.figures.recent_spend,
            a.figures.baseline_spend,
            a.figures.days_since_last,
            a.figures.typical_gap,
        )
    );
}

/// The query indices' contents: home counts, at-risk sets, day stats, and each
/// customer's recorded state and home store.
async fn indices(redis: &RedisServer) -> BTreeMap<String, Vec<(String, String)>> {
    let client = redis::Client::open(redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .expect("keys");
    let mut out = BTreeMap::new();
    for key in keys {
        let contents: Vec<(String, String)> = if key.starts_with("hc:") || key.starts_with("ds:") {
            redis::cmd("HGETALL")
                .arg(&key)
                .query_async::<BTreeMap<String, String>>(&mut conn)
                .await
                .expect("hgetall")
                .into_iter()
                .collect()
        } else if key.starts_with("ar:") {
            redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query_async(&mut conn)
                .await
                .expect("zrange")
        } else if key.starts_with("cs:") {
            let (st, h): (Option<String>, Option<String>) = redis::cmd("HMGET")
                .arg(&key)
                .arg("st")
                .arg("h")
                .query_async(&mut conn)
                .await
                .expect("hmget");
            vec![
                ("st".into(), st.unwrap_or_default()),
                ("h".into(), h.unwrap_or_default()),
            ]
        } else {
            continue;
        };
        out.insert(key, contents);
    }
    out
}

async fn flushall(redis: &RedisServer) {
    let client = redis::Client::open(redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut conn)
        .await
        .expect("flushall");
}

async fn scenario<L: EventLog>(log: L) {
    let redis = RedisServer::start();
    let store = CustomerStore::connect(&redis.url(), TOPIC, HORIZON)
        .await
        .expect("store");
    let mut chain = Chain::new(Arc::new(log), store).await;
    let api = ApiServer::bind(
        "127.0.0.1:0",
        QueryState::new(chain.store.clone(), policies(), PARTITIONS),
    )
    .await
    .expect("bind")
    .with_timings(Duration::from_millis(200), Duration::from_secs(5))
    .spawn();
    let mut c = client(&api).await;

    // Health and reflection, as in purchase-ingest.
    health_and_reflection(&api).await;

    for w in 0..=CHECK_WEEK {
        chain.live_week(w).await;
    }

    // No model yet: risk figures cannot be computed.
    let status = c
        .get_model(pb::GetModelRequest {})
        .await
        .expect_err("no model");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let status = c
        .get_customer_risk(pb::GetCustomerRiskRequest {
            customer_id: "diner-b".into(),
            as_of: String::new(),
        })
        .await
        .expect_err("no model");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");

    // A refit; GetModel shows it.
    let now_day = chain.stream_time().await;
    let fitted_at = DateTime::parse_from_rfc3339("2026-11-22T08:00:00Z")
        .expect("time")
        .to_utc();
    let models = ModelProjection::new(chain.log.clone(), chain.store.connection(), MODELS);
    let scope = RefitScope {
        partitions: PARTITIONS,
        sample: 0,
    };
    let fitted = refit(
        &chain.store,
        &models,
        chain.log.as_ref(),
        scope,
        now_day,
        fitted_at,
    )
    .await
    .expect("refit");
    let m = c
        .get_model(pb::GetModelRequest {})
        .await
        .expect("model")
        .into_inner();
    assert_eq!(m.version, fitted.version);
    assert_eq!(m.fitted_at, fitted_at.to_rfc3339());
    assert_eq!(m.as_of, date_of(now_day));
    assert_eq!(m.customers, 15);
    let bg = m.bg_nbd.expect("BG/NBD");
    assert_eq!(
        (bg.r, bg.alpha, bg.a, bg.b),
        (
            fitted.bg_nbd.r,
            fitted.bg_nbd.alpha,
            fitted.bg_nbd.a,
            fitted.bg_nbd.b
        )
    );
    assert_eq!(m.bg_nbd_log_likelihood, fitted.bg_nbd_log_likelihood);
    assert_eq!(
        m.gamma_gamma.map(|g| (g.p, g.q, g.gamma)),
        fitted.gamma_gamma.map(|g| (g.p, g.q, g.gamma))
    );
    let model = ScoringModel::from(&fitted);

    // GetCustomerRisk is the domain's computation, on the partition's stream time by
    // default and on any day asked for.
    let p = partition_for_key(b"diner-b", PARTITIONS);
    let watermark = chain
        .store
        .watermark(p)
        .await
        .expect("watermark")
        .expect("set");
    let got = c
        .get_customer_risk(pb::GetCustomerRiskRequest {
            customer_id: "diner-b".into(),
            as_of: String::new(),
        })
        .await
        .expect("risk")
        .into_inner()
        .risk
        .expect("risk");
    assert_eq!(got.as_of, date_of(watermark));
    assert_eq!(got.model_version, fitted.version);
    let (recorded, want) = expected_risk(&chain.store, "diner-b", &model, watermark).await;
    assert_eq!(recorded, ChurnState::AtRisk, "the quiet diner is at risk");
    assert_eq!(want.assessment.state, ChurnState::AtRisk);
    assert!(want.assessment.fired.contains(&Rule::Overdue), "{want:?}");
    assert_risk_matches(&got, recorded, &want);

    let later = day_of(NaiveDate::from_ymd_opt(2026, 6, 1).expect("date"));
    let got = c
        .get_customer_risk(pb::GetCustomerRiskRequest {
            customer_id: "diner-b".into(),
            as_of: "2026-06-01".into(),
        })
        .await
        .expect("risk")
        .into_inner()
        .risk
        .expect("risk");
    let (recorded, want) = expected_risk(&chain.store, "diner-b", &model, later).await;
    assert_eq!(want.assessment.state, ChurnState::Defected, "months later");
    assert_risk_matches(&got, recorded, &want);

    // The at-risk list of the restaurant: by value at risk as the timers committed it
    // (their at_risk signals carry it), paged two at a time.
    let want = expected_at_risk(&chain).await;
    let by_two = pages(&mut c, 2).await;
    assert_eq!(by_two.len(), 3, "{by_two:?}");
    assert_eq!(by_two.concat(), want);
    // Three at a time cuts between the two customers of equal value.
    let by_three = pages(&mut c, 3).await;
    assert_eq!(by_three.len(), 2, "{by_three:?}");
    assert_eq!(by_three[0].last().map(|e| e.0.as_str()), Some("diner-b"));
    assert_eq!(by_three.concat(), want);
    let one_page = c
        .list_at_risk_customers(pb::ListAtRiskCustomersRequest {
            store_id: "r1".into(),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(one_page.customers.len(), 5);
    assert!(one_page.next_page_token.is_empty());
    let supermarket = c
        .list_at_risk_customers(pb::ListAtRiskCustomersRequest {
            store_id: "s2".into(),
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .expect("list")
        .into_inner();
    assert!(
        supermarket.customers.is_empty(),
        "the supermarket's weekly shopper is not yet missed: {supermarket:?}"
    );

    // The rest of the year: diners defect, the supermarket's shopper too, back-1 returns.
    for w in CHECK_WEEK + 1..WEEKS {
        chain.live_week(w).await;
    }
    let signals = chain.signals().await;
    let list = c
        .list_at_risk_customers(pb::ListAtRiskCustomersRequest {
            store_id: "r1".into(),
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .expect("list")
        .into_inner();
    assert!(
        list.customers.is_empty(),
        "defected and won-back customers leave the at-risk list: {list:?}"
    );

    let stats = |store: &str, from: &str, to: &str| {
        let mut c = c.clone();
        let req = pb::GetStoreDefectionStatsRequest {
            store_id: store.into(),
            from_date: from.into(),
            to_date: to.into(),
        };
        async move {
            c.get_store_defection_stats(req)
                .await
                .expect("stats")
                .into_inner()
        }
    };
    let expect = |store: &str, from: Day, to: Day| {
        let mine = signals.iter().filter(|s| {
            s.store_id.as_deref() == Some(store) && (from..=to).contains(&day_of(s.as_of))
        });
        let defected: Vec<&ChurnStateChanged> =
            mine.clone().filter(|s| s.state == "defected").collect();
        (
            defected.len() as u64,
            mine.filter(|s| s.state == "won_back").count() as u64,
            defected
                .iter()
                .map(|s| s.value_at_risk.round() as i64)
                .sum::<i64>(),
        )
    };
    let year = stats("r1", "2026-01-01", "2026-12-31").await;
    assert_eq!(
        (year.defected, year.won_back, year.value_lost_minor_units),
        expect("r1", day_of(start()) - 5, day_of(start()) + 400)
    );
    assert_eq!((year.defected, year.won_back), (5, 1), "{year:?}");
    assert!(year.value_lost_minor_units > 0);
    assert_eq!(year.home_customers, 11, "six steady, four diners, back-1");
    assert_eq!(year.defection_rate, 5.0 / 11.0);
    let market = stats("s2", "2026-01-01", "2026-12-31").await;
    assert_eq!(
        (market.defected, market.won_back, market.home_customers),
        (1, 0, 4)
    );
    // A period: the first defection's day only; and a period before any.
    let first = signals
        .iter()
        .filter(|s| s.state == "defected" && s.store_id.as_deref() == Some("r1"))
        .map(|s| day_of(s.as_of))
        .min()
        .expect("a defection");
    let day = stats("r1", &date_of(first), &date_of(first)).await;
    assert_eq!(
        (day.defected, day.won_back, day.value_lost_minor_units),
        expect("r1", first, first)
    );
    assert!(day.defected >= 1);
    let before = stats("r1", "2026-01-01", &date_of(first - 1)).await;
    assert_eq!(
        (
            before.defected,
            before.won_back,
            before.value_lost_minor_units
        ),
        (0, 0, 0)
    );

    // Bad requests name the field; unknown customers are NOT_FOUND.
    let status = c
        .get_customer_risk(pb::GetCustomerRiskRequest {
            customer_id: "nobody".into(),
            as_of: String::new(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = c
        .get_customer_risk(pb::GetCustomerRiskRequest {
            customer_id: "diner-a".into(),
            as_of: "2026-13-01".into(),
        })
        .await
        .expect_err("bad date");
    assert_eq!(bad_fields(&status), ["as_of"]);
    let status = c
        .get_customer_risk(pb::GetCustomerRiskRequest {
            customer_id: "diner-a".into(),
            as_of: "2025-01-01".into(),
        })
        .await
        .expect_err("before the first purchase");
    assert_eq!(bad_fields(&status), ["as_of"]);
    let status = c
        .get_customer_risk(pb::GetCustomerRiskRequest {
            customer_id: String::new(),
            as_of: String::new(),
        })
        .await
        .expect_err("no customer");
    assert_eq!(bad_fields(&status), ["customer_id"]);
    let status = c
        .list_at_risk_customers(pb::ListAtRiskCustomersRequest {
            store_id: "r1".into(),
            page_size: 10,
            page_token: "not-a-token".into(),
        })
        .await
        .expect_err("bad token");
    assert_eq!(bad_fields(&status), ["page_token"]);
    let status = c
        .list_at_risk_customers(pb::ListAtRiskCustomersRequest {
            store_id: String::new(),
            page_size: 5_000,
            page_token: String::new(),
        })
        .await
        .expect_err("no store");
    // Every bad field is named (issue 11), the page size too.
    assert_eq!(bad_fields(&status), ["store_id", "page_size"]);
    let status = c
        .get_store_defection_stats(pb::GetStoreDefectionStatsRequest {
            store_id: "r1".into(),
            from_date: "2026-05-01".into(),
            to_date: "2026-04-01".into(),
        })
        .await
        .expect_err("backwards period");
    assert_eq!(bad_fields(&status), ["to_date"]);
    let status = c
        .get_store_defection_stats(pb::GetStoreDefectionStatsRequest {
            store_id: String::new(),
            from_date: "May".into(),
            to_date: String::new(),
        })
        .await
        .expect_err("everything wrong");
    assert_eq!(bad_fields(&status), ["store_id", "from_date", "to_date"]);

    // Flush Redis and replay the log: the indices are rebuilt exactly.
    let before = indices(&redis).await;
    assert!(before.keys().any(|k| k.starts_with("ds:")), "{before:?}");
    assert!(before.keys().any(|k| k.starts_with("hc:")), "{before:?}");
    flushall(&redis).await;
    assert!(indices(&redis).await.is_empty());
    chain.replay().await;
    assert_eq!(indices(&redis).await, before);

    api.stop().await.expect("stop");
}

/// The restaurant's at-risk customers after [`CHECK_WEEK`], by value at risk as the timers
/// committed it (their at_risk signals carry it).
async fn expected_at_risk<L: EventLog>(chain: &Chain<L>) -> Vec<(String, i64)> {
    let mut want: Vec<(String, i64)> = chain
        .signals()
        .await
        .iter()
        .filter(|s| s.state == "at_risk")
        .map(|s| (s.customer.clone(), s.value_at_risk.round() as i64))
        .collect();
    want.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let names: Vec<&str> = want.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        names,
        ["diner-d", "back-1", "diner-b", "diner-c", "diner-a"],
        "{want:?}"
    );
    assert_eq!(want[2].1, want[3].1, "b and c are worth the same");
    want
}

/// The restaurant's at-risk list, paged `size` at a time.
async fn pages(c: &mut ChurnScoringClient<Channel>, size: u32) -> Vec<Vec<(String, i64)>> {
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_at_risk_customers(pb::ListAtRiskCustomersRequest {
                store_id: "r1".into(),
                page_size: size,
                page_token: token.clone(),
            })
            .await
            .expect("list")
            .into_inner();
        assert!(page.customers.len() <= size as usize);
        pages.push(
            page.customers
                .into_iter()
                .map(|e| (e.customer_id, e.value_at_risk_minor_units))
                .collect::<Vec<_>>(),
        );
        if page.next_page_token.is_empty() {
            return pages;
        }
        token = page.next_page_token;
    }
}

async fn health_and_reflection(api: &Running) {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let channel = Channel::from_shared(api.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let health = HealthClient::new(channel.clone());
    for service in ["", SERVICE_NAME] {
        eventually(Duration::from_secs(30), "SERVING", || {
            let mut health = health.clone();
            async move {
                let r = health
                    .check(HealthCheckRequest {
                        service: service.into(),
                    })
                    .await
                    .ok()?;
                (r.into_inner().status == ServingStatus::Serving as i32).then_some(())
            }
        })
        .await;
    }

    let mut reflection = ServerReflectionClient::new(channel.clone());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .expect("reflection")
        .into_inner();
    let answer = answers.message().await.expect("answer").expect("one");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&SERVICE_NAME.to_owned()), "{names:?}");
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );

    use tonic_reflection::pb::v1alpha::ServerReflectionRequest as AlphaRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaMessage;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaResponse;
    let mut alpha = AlphaClient::new(channel);
    let req = AlphaRequest {
        host: String::new(),
        message_request: Some(AlphaMessage::FileContainingSymbol(SERVICE_NAME.into())),
    };
    let answer = alpha
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .expect("v1alpha reflection")
        .into_inner()
        .message()
        .await
        .expect("answer")
        .expect("one");
    assert!(
        matches!(
            answer.message_response,
            Some(AlphaResponse::FileDescriptorResponse(_))
        ),
        "{:?}",
        answer.message_response
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_swipes_to_query_api_risk_lists_stats_model_errors_and_rebuild() {
    init_test_logging();
    let broker = Tansu::start();
    let log = KafkaLog::new(KafkaSettings {
        bootstrap_servers: broker.bootstrap(),
        ..KafkaSettings::default()
    })
    .expect("log");
    scenario(log).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_log_swipes_to_query_api_risk_lists_stats_model_errors_and_rebuild() {
    init_test_logging();
    let dir = tempfile::tempdir().expect("tempdir");
    scenario(EmbeddedLog::open(dir.path()).expect("log")).await;
}

/// The indices' keys share the partition's hash tag: on a three-master cluster the
/// transition script and the query reads work unchanged (no CROSSSLOT).
#[tokio::test(flavor = "multi_thread")]
async fn the_at_risk_index_and_stats_work_on_a_three_master_cluster() {
    init_test_logging();
    let cluster = RedisCluster::start();
    let store = CustomerStore::connect_cluster(&cluster.urls(), TOPIC, HORIZON)
        .await
        .expect("store");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(EmbeddedLog::open(dir.path()).expect("log"));
    let mut chain = Chain::new(log, store.clone()).await;
    for w in 0..=CHECK_WEEK {
        chain.live_week(w).await;
    }
    let api = ApiServer::bind(
        "127.0.0.1:0",
        QueryState::new(store, policies(), PARTITIONS),
    )
    .await
    .expect("bind")
    .spawn();
    let mut c = client(&api).await;
    let want = expected_at_risk(&chain).await;
    assert_eq!(pages(&mut c, 2).await.concat(), want);
    for w in CHECK_WEEK + 1..WEEKS {
        chain.live_week(w).await;
    }
    let year = c
        .get_store_defection_stats(pb::GetStoreDefectionStatsRequest {
            store_id: "r1".into(),
            from_date: "2026-01-01".into(),
            to_date: "2026-12-31".into(),
        })
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(
        (year.defected, year.won_back, year.home_customers),
        (5, 1, 11)
    );
    api.stop().await.expect("stop");
}
