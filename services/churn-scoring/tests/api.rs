//! The query API end to end: swipes on the log → scorer → timers on stream time →
//! `churnguard.scoring.v1.ChurnScoring` through a real gRPC client, against a real
//! Kafka-protocol broker (Tansu) and a real Redis, and on the embedded log: one test per
//! behaviour and log, each on its own Redis (and broker), each scoring the retail chain of
//! [`common::chain`] as far into its year as the behaviour needs. Finally Redis is flushed
//! and the log replayed: the query indices come back identical.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use churn_scoring::CustomerStore;
use churn_scoring::api::{ApiServer, QueryState, Running, SERVICE_NAME};
use churn_scoring::models::ModelProjection;
use churn_scoring::refit::{RefitScope, refit};
use churnguard_domain::customer::{Day, day_of};
use churnguard_domain::models::FittedModel;
use churnguard_domain::partition_for_key;
use churnguard_domain::policy::{ChurnState, Rule};
use churnguard_domain::risk::{self, ScoringModel, ValueHorizon};
use churnguard_domain::signal::ChurnStateChanged;
use churnguard_eventlog::EventLog;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_kafka::KafkaLog;
use churnguard_proto::scoring::v1 as pb;
use churnguard_proto::scoring::v1::churn_scoring_client::ChurnScoringClient;
use churnguard_testkit::{RedisCluster, RedisServer, Tansu, canary, eventually, init_test_logging};
use common::HORIZON;
use common::chain::{
    CHECK_WEEK, Chain, MODELS, PARTITIONS, TOPIC, WEEKS, date_of, policies, start, swipe,
};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

async fn client(api: &Running) -> ChurnScoringClient<Channel> {
    ChurnScoringClient::connect(api.endpoint())
        .await
        .expect("connect")
}

/// The query API on `chain`'s Redis with identities required: JWTs from `issuer`, and
/// store r1's gateway token.
async fn secured_api<L: EventLog>(
    chain: &Chain<L>,
    issuer: &churnguard_testkit::auth::TestIssuer,
) -> Running {
    use churnguard_config::{AuthSettings, JwtSettings};
    use churnguard_testkit::auth::{AUDIENCE, ISSUER};
    let auth = AuthSettings {
        required: true,
        store_tokens_file: issuer.store_tokens_file(&[("r1", &canary::store_token("r1"))]),
        jwt: JwtSettings {
            algorithm: "HS256".into(),
            key_file: issuer.key_file(),
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
        },
    };
    ApiServer::bind(
        "127.0.0.1:0",
        QueryState::new(chain.store.clone(), policies(), PARTITIONS),
    )
    .await
    .expect("bind")
    .with_auth(&auth)
    .expect("auth settings")
    .spawn()
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

// ---------------------------------------------------------------------------------
// The shared set-up: the query API over the chain, scored as far as a behaviour needs.

/// Three more stores beside the chain's restaurant `r1` and supermarket `s2`, each with
/// this many regulars who shop there once a week all year: store ids that sort before,
/// between and after the chain's.
const MORE_STORES: [(&str, u64); 3] = [("a3", 3), ("m5", 2), ("z9", 1)];

/// One week of the [`MORE_STORES`] regulars' swipes.
fn more_stores_week(w: u64) -> Vec<churnguard_eventlog::OutgoingRecord> {
    let mut out = Vec::new();
    for (store, regulars) in MORE_STORES {
        for i in 0..regulars {
            out.push(swipe(&format!("{store}-regular-{i}"), store, w, 2, 5_000));
        }
    }
    out
}

/// Stores with their home customers, as ListStores lists them.
type StoreList = Vec<(String, u64)>;

/// Every store with home customers at the end of [`Fixture::year_with_more_stores`], by
/// store id, with its home customers: `r1` and `s2` as the year's stats count them.
fn year_stores() -> StoreList {
    [("a3", 3), ("m5", 2), ("r1", 11), ("s2", 4), ("z9", 1)]
        .into_iter()
        .map(|(s, n)| (s.to_owned(), n))
        .collect()
}

/// ListStores paged `size` at a time, as `token` (if any) calls it.
async fn store_pages(
    c: &mut ChurnScoringClient<Channel>,
    token: Option<&str>,
    size: u32,
) -> Result<Vec<StoreList>, tonic::Status> {
    let mut pages = Vec::new();
    let mut page_token = String::new();
    loop {
        let message = pb::ListStoresRequest {
            page_size: size,
            page_token: page_token.clone(),
        };
        let request = match token {
            Some(t) => churnguard_testkit::auth::with_bearer(message, t),
            None => tonic::Request::new(message),
        };
        let page = c.list_stores(request).await?.into_inner();
        if size > 0 {
            assert!(page.stores.len() <= size as usize, "{page:?}");
        }
        pages.push(
            page.stores
                .into_iter()
                .map(|s| (s.store_id, s.home_customers))
                .collect::<Vec<_>>(),
        );
        if page.next_page_token.is_empty() {
            return Ok(pages);
        }
        page_token = page.next_page_token;
    }
}

/// A fresh Redis, the chain's scorer and timers on a log, and the query API over them
/// with a client.
struct Fixture<L: EventLog> {
    redis: RedisServer,
    chain: Chain<L>,
    api: Running,
    c: ChurnScoringClient<Channel>,
}

/// The refit done after [`CHECK_WEEK`]: the model, the day it was fitted as of, and when.
struct Refit {
    fitted: FittedModel,
    now_day: Day,
    fitted_at: DateTime<Utc>,
}

impl<L: EventLog> Fixture<L> {
    /// Redis, the chain on `log` with no swipes yet, and the query API on a free port.
    async fn start(log: L) -> Self {
        let redis = RedisServer::start();
        let store = CustomerStore::connect(&redis.url(), TOPIC, HORIZON)
            .await
            .expect("store");
        let chain = Chain::new(Arc::new(log), store).await;
        let api = ApiServer::bind(
            "127.0.0.1:0",
            QueryState::new(chain.store.clone(), policies(), PARTITIONS),
        )
        .await
        .expect("bind")
        .with_timings(Duration::from_millis(200), Duration::from_secs(5))
        .spawn();
        let c = client(&api).await;
        Self {
            redis,
            chain,
            api,
            c,
        }
    }

    /// Weeks 0 to [`CHECK_WEEK`], live: the quiet diners are at risk, no model is fitted.
    async fn to_check_week(log: L) -> Self {
        let mut f = Self::start(log).await;
        for w in 0..=CHECK_WEEK {
            f.chain.live_week(w).await;
        }
        f
    }

    /// Weeks 0 to [`CHECK_WEEK`], then a refit on stream time.
    async fn refitted_at_check_week(log: L) -> (Self, Refit) {
        let f = Self::to_check_week(log).await;
        let refit = f.refit().await;
        (f, refit)
    }

    /// The whole year: weeks 0 to [`CHECK_WEEK`], a refit, and the rest of the year, in
    /// which the diners defect, the supermarket's shopper too, and back-1 returns.
    async fn whole_year(log: L) -> Self {
        let (mut f, _) = Self::refitted_at_check_week(log).await;
        for w in CHECK_WEEK + 1..WEEKS {
            f.chain.live_week(w).await;
        }
        f
    }

    /// The whole year without a refit, with [`MORE_STORES`]' regulars swiping beside the
    /// chain every week: five stores with home customers.
    async fn year_with_more_stores(log: L) -> Self {
        let mut f = Self::start(log).await;
        for w in 0..WEEKS {
            for r in f.chain.log.append(TOPIC, more_stores_week(w)).await {
                r.expect("append");
            }
            f.chain.live_week(w).await;
        }
        f
    }

    /// Refits the models on the chain's stream time, as fitted at 08:00 on 22 November.
    async fn refit(&self) -> Refit {
        let chain = &self.chain;
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
        Refit {
            fitted,
            now_day,
            fitted_at,
        }
    }
}

// ---------------------------------------------------------------------------------
// The behaviours, each run on both logs by `on_both_logs!` below.

/// Health reports SERVING and reflection lists the service, as in purchase-ingest.
async fn serves_health_and_reflection<L: EventLog>(log: L) {
    let Fixture {
        redis: _redis,
        chain: _chain,
        api,
        c: _c,
    } = Fixture::start(log).await;
    health_and_reflection(&api).await;
    api.stop().await.expect("stop");
}

/// Before any refit, GetModel and GetCustomerRisk are FAILED_PRECONDITION: risk figures
/// cannot be computed.
async fn without_a_model_risk_is_a_failed_precondition<L: EventLog>(log: L) {
    let Fixture {
        redis: _redis,
        chain: _chain,
        api,
        mut c,
    } = Fixture::to_check_week(log).await;

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
    api.stop().await.expect("stop");
}

/// After a refit, GetModel shows the fitted model: version, times, population and
/// parameters.
async fn get_model_shows_the_refit<L: EventLog>(log: L) {
    let (
        Fixture {
            redis: _redis,
            chain: _chain,
            api,
            mut c,
        },
        refit,
    ) = Fixture::refitted_at_check_week(log).await;
    let Refit {
        fitted,
        now_day,
        fitted_at,
    } = refit;
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
    api.stop().await.expect("stop");
}

/// GetCustomerRisk is the domain's computation: on the partition's stream time by default,
/// and on any day asked for.
async fn customer_risk_is_the_domains_assessment<L: EventLog>(log: L) {
    let (
        Fixture {
            redis: _redis,
            chain,
            api,
            mut c,
        },
        Refit { fitted, .. },
    ) = Fixture::refitted_at_check_week(log).await;
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
    api.stop().await.expect("stop");
}

/// A query API that requires identities, over the same scored chain: each caller reads
/// what its role allows, on every RPC:
///
/// | caller                 | r1's list, stats | s2's list, stats  | diner-b (r1) risk | model |
/// |------------------------|------------------|-------------------|-------------------|-------|
/// | none, expired token    | UNAUTHENTICATED  | UNAUTHENTICATED   | UNAUTHENTICATED   | UNAUTHENTICATED |
/// | r1's manager           | OK               | PERMISSION_DENIED | OK                | OK    |
/// | s2's manager           | PERMISSION_DENIED| OK                | NOT_FOUND         | OK    |
/// | analyst, owner         | OK               | OK                | OK                | OK    |
/// | a store gateway (r1)   | PERMISSION_DENIED| PERMISSION_DENIED | PERMISSION_DENIED | PERMISSION_DENIED |
/// | privacy officer        | PERMISSION_DENIED| PERMISSION_DENIED | NOT_FOUND         | OK    |
async fn each_identity_reads_what_its_role_allows<L: EventLog>(log: L) {
    use churnguard_testkit::auth::{TestIssuer, with_bearer};

    let (f, _) = Fixture::refitted_at_check_week(log).await;
    let issuer = TestIssuer::new();
    let secured = secured_api(&f.chain, &issuer).await;
    let mut c = client(&secured).await;

    use Code::{NotFound as Nf, Ok as Yes, PermissionDenied as No, Unauthenticated as Who};
    let callers: Vec<(&str, Option<String>, [Code; 4])> = vec![
        ("no credentials", None, [Who; 4]),
        (
            "expired",
            Some(issuer.expired_token("owner", "o-1", &[])),
            [Who; 4],
        ),
        (
            "r1's manager",
            Some(issuer.token("store_manager", "m-r1", &["r1"])),
            [Yes, No, Yes, Yes],
        ),
        (
            "s2's manager",
            Some(issuer.token("store_manager", "m-s2", &["s2"])),
            [No, Yes, Nf, Yes],
        ),
        (
            "regional manager",
            Some(issuer.token("regional_manager", "rm", &["r1", "s2"])),
            [Yes, Yes, Yes, Yes],
        ),
        (
            "analyst",
            Some(issuer.token("analyst", "a-1", &[])),
            [Yes, Yes, Yes, Yes],
        ),
        (
            "owner",
            Some(issuer.token("owner", "o-1", &[])),
            [Yes, Yes, Yes, Yes],
        ),
        ("r1's gateway", Some(canary::store_token("r1")), [No; 4]),
        (
            "privacy officer",
            Some(issuer.token("privacy_officer", "p-1", &[])),
            [No, No, Nf, Yes],
        ),
    ];
    let code = |r: Result<(), tonic::Status>| match r {
        Ok(()) => Code::Ok,
        Err(status) => status.code(),
    };
    for (who, token, want) in callers {
        fn req<T>(token: &Option<String>, message: T) -> tonic::Request<T> {
            match token {
                Some(t) => churnguard_testkit::auth::with_bearer(message, t),
                None => tonic::Request::new(message),
            }
        }
        let mut got = Vec::new();
        for store in ["r1", "s2"] {
            let list = c
                .list_at_risk_customers(req(
                    &token,
                    pb::ListAtRiskCustomersRequest {
                        store_id: store.into(),
                        page_size: 10,
                        page_token: String::new(),
                    },
                ))
                .await
                .map(drop);
            let stats = c
                .get_store_defection_stats(req(
                    &token,
                    pb::GetStoreDefectionStatsRequest {
                        store_id: store.into(),
                        from_date: "2026-01-01".into(),
                        to_date: "2026-12-31".into(),
                    },
                ))
                .await
                .map(drop);
            assert_eq!(
                code(list.clone()),
                code(stats),
                "{who}: list and stats of {store} agree"
            );
            got.push(code(list));
        }
        got.push(code(
            c.get_customer_risk(req(
                &token,
                pb::GetCustomerRiskRequest {
                    customer_id: "diner-b".into(),
                    as_of: String::new(),
                },
            ))
            .await
            .map(drop),
        ));
        got.push(code(
            c.get_model(req(&token, pb::GetModelRequest {}))
                .await
                .map(drop),
        ));
        assert_eq!(got, want, "{who}: r1, s2, diner-b, model");
    }
    // A customer of another store reads exactly like one that does not exist.
    let s2_manager = issuer.token("store_manager", "m-s2", &["s2"]);
    let hidden = c
        .get_customer_risk(with_bearer(
            pb::GetCustomerRiskRequest {
                customer_id: "diner-b".into(),
                as_of: String::new(),
            },
            &s2_manager,
        ))
        .await
        .expect_err("hidden");
    let missing = c
        .get_customer_risk(with_bearer(
            pb::GetCustomerRiskRequest {
                customer_id: "diner-zz".into(),
                as_of: String::new(),
            },
            &s2_manager,
        ))
        .await
        .expect_err("missing");
    assert_eq!(
        hidden.message().replace("diner-b", "X"),
        missing.message().replace("diner-zz", "X")
    );
    secured.stop().await.expect("stop");
    f.api.stop().await.expect("stop");
}

/// The server's limits are explicit: a request larger than `limits.max_message_bytes` is
/// refused with OUT_OF_RANGE, naming the limit, before it is read; one within it is
/// answered.
async fn a_request_over_the_message_limit_is_refused<L: EventLog>(log: L) {
    let f = Fixture::start(log).await;
    let limited = ApiServer::bind(
        "127.0.0.1:0",
        QueryState::new(f.chain.store.clone(), policies(), PARTITIONS),
    )
    .await
    .expect("bind")
    .with_limits(&churnguard_config::ServerLimits {
        max_message_bytes: 1024,
        max_streams_per_connection: 4,
    })
    .spawn();
    let mut c = client(&limited).await;
    let big = c
        .get_customer_risk(pb::GetCustomerRiskRequest {
            customer_id: "x".repeat(2000),
            as_of: String::new(),
        })
        .await
        .expect_err("too large");
    assert_eq!(big.code(), Code::OutOfRange, "{big:?}");
    assert!(
        big.message().contains("the limit is: 1024 bytes"),
        "{big:?}"
    );
    let small = c
        .get_customer_risk(pb::GetCustomerRiskRequest {
            customer_id: "nobody".into(),
            as_of: String::new(),
        })
        .await
        .expect_err("no such customer");
    assert_eq!(small.code(), Code::NotFound, "{small:?}");
    limited.stop().await.expect("stop");
    f.api.stop().await.expect("stop");
}

/// ListStores lists every store with home customers by store id, each with its home
/// customers summed over the partitions (GetStoreDefectionStats counts the same); pages of
/// any size give each store once; a bad page size or token is INVALID_ARGUMENT naming it.
async fn list_stores_sums_home_customers_by_store_and_pages<L: EventLog>(log: L) {
    let Fixture {
        redis: _redis,
        chain,
        api,
        mut c,
    } = Fixture::year_with_more_stores(log).await;
    let want = year_stores();

    // The restaurant's customers live on more than one partition: the count is a sum.
    let mut per_partition = Vec::new();
    for p in 0..PARTITIONS {
        per_partition.push(chain.store.home_customers(p, "r1").await.expect("count"));
    }
    assert!(
        per_partition.iter().filter(|n| **n > 0).count() > 1,
        "{per_partition:?}"
    );
    assert_eq!(per_partition.iter().sum::<u64>(), 11);

    // One page by default (0 means 50), with no next page.
    let all = store_pages(&mut c, None, 0).await.expect("list");
    assert_eq!(all, std::slice::from_ref(&want));
    for (store, customers) in &want {
        let stats = c
            .get_store_defection_stats(pb::GetStoreDefectionStatsRequest {
                store_id: store.clone(),
                from_date: "2026-01-01".into(),
                to_date: "2026-12-31".into(),
            })
            .await
            .expect("stats")
            .into_inner();
        assert_eq!(stats.home_customers, *customers, "{store}");
    }
    // Any page size gives every store once, in order.
    for (size, pages) in [(1, 5), (2, 3), (4, 2), (5, 1), (1_000, 1)] {
        let got = store_pages(&mut c, None, size).await.expect("list");
        assert_eq!(got.len(), pages, "by {size}: {got:?}");
        assert_eq!(got.concat(), want, "by {size}");
    }

    // Bad page sizes and tokens are named; a token of another list is not ours.
    let at_risk_token = churn_scoring::query::AtRisk {
        value_at_risk: 4_000,
        customer: "diner-b".into(),
    }
    .page_token();
    let bad = |page_size: u32, page_token: &str| {
        let mut c = c.clone();
        let req = pb::ListStoresRequest {
            page_size,
            page_token: page_token.into(),
        };
        async move { c.list_stores(req).await.expect_err("refused") }
    };
    assert_eq!(bad_fields(&bad(10, "not-a-token").await), ["page_token"]);
    assert_eq!(bad_fields(&bad(10, &at_risk_token).await), ["page_token"]);
    assert_eq!(bad_fields(&bad(5_000, "").await), ["page_size"]);
    assert_eq!(
        bad_fields(&bad(1_001, "zz").await),
        ["page_size", "page_token"]
    );
    api.stop().await.expect("stop");
}

/// With identities required, ListStores lists only the stores the caller reads: a store
/// manager's and a regional manager's own (those with home customers), every store for
/// an analyst or owner, none for a privacy officer; a store gateway is refused and a
/// caller without credentials unauthenticated.
async fn list_stores_shows_each_caller_only_its_stores<L: EventLog>(log: L) {
    use churnguard_testkit::auth::TestIssuer;

    let f = Fixture::year_with_more_stores(log).await;
    let issuer = TestIssuer::new();
    let secured = secured_api(&f.chain, &issuer).await;
    let mut c = client(&secured).await;

    let all = year_stores();
    let only = |stores: &[&str]| -> StoreList {
        all.iter()
            .filter(|(s, _)| stores.contains(&s.as_str()))
            .cloned()
            .collect()
    };
    let callers: Vec<(&str, String, StoreList)> = vec![
        (
            "r1's manager",
            issuer.token("store_manager", "m-r1", &["r1"]),
            only(&["r1"]),
        ),
        (
            "a manager of s2, z9 and a store without customers",
            issuer.token("store_manager", "m-3", &["s2", "z9", "empty-1"]),
            only(&["s2", "z9"]),
        ),
        (
            "regional manager",
            issuer.token("regional_manager", "rm", &["a3", "r1", "s2"]),
            only(&["a3", "r1", "s2"]),
        ),
        ("analyst", issuer.token("analyst", "a-1", &[]), all.clone()),
        ("owner", issuer.token("owner", "o-1", &[]), all.clone()),
        (
            "privacy officer",
            issuer.token("privacy_officer", "p-1", &[]),
            Vec::new(),
        ),
    ];
    for (who, token, want) in callers {
        // Pages of one: the pages hold the caller's stores only, each once.
        let by_one = store_pages(&mut c, Some(&token), 1).await.expect(who);
        assert_eq!(by_one.concat(), want, "{who}");
        assert_eq!(by_one.len(), want.len().max(1), "{who}: {by_one:?}");
        let one_page = store_pages(&mut c, Some(&token), 0).await.expect(who);
        assert_eq!(one_page, [want], "{who}");
    }
    let gateway = store_pages(&mut c, Some(&canary::store_token("r1")), 0)
        .await
        .expect_err("a store gateway reads no scores");
    assert_eq!(gateway.code(), Code::PermissionDenied, "{gateway:?}");
    let nobody = store_pages(&mut c, None, 0)
        .await
        .expect_err("no credentials");
    assert_eq!(nobody.code(), Code::Unauthenticated, "{nobody:?}");
    secured.stop().await.expect("stop");
    f.api.stop().await.expect("stop");
}

/// A store's at-risk list is ordered by value at risk as the timers committed it, and
/// pages of any size give each customer once; a store with nobody missed lists nobody.
async fn the_at_risk_list_is_by_value_and_pages<L: EventLog>(log: L) {
    let (
        Fixture {
            redis: _redis,
            chain,
            api,
            mut c,
        },
        _,
    ) = Fixture::refitted_at_check_week(log).await;

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
    api.stop().await.expect("stop");
}

/// By the end of the year, defected and won-back customers have left the at-risk list.
async fn defected_and_won_back_customers_leave_the_at_risk_list<L: EventLog>(log: L) {
    let Fixture {
        redis: _redis,
        chain: _chain,
        api,
        mut c,
    } = Fixture::whole_year(log).await;
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
    api.stop().await.expect("stop");
}

/// GetStoreDefectionStats sums the committed defections, returns and value lost of a
/// store's home customers over the period asked for.
async fn store_stats_sum_the_signals_of_the_period<L: EventLog>(log: L) {
    let Fixture {
        redis: _redis,
        chain,
        api,
        c,
    } = Fixture::whole_year(log).await;
    let signals = chain.signals().await;

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
    api.stop().await.expect("stop");
}

/// Bad requests are INVALID_ARGUMENT naming every bad field; an unknown customer is
/// NOT_FOUND.
async fn bad_requests_name_the_field_and_unknown_customers_are_not_found<L: EventLog>(log: L) {
    let Fixture {
        redis: _redis,
        chain: _chain,
        api,
        mut c,
    } = Fixture::whole_year(log).await;

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
    api.stop().await.expect("stop");
}

/// After the whole year, flushing Redis and replaying the log in the live run's steps
/// rebuilds the query indices exactly.
async fn replaying_the_log_into_an_empty_redis_rebuilds_the_indices<L: EventLog>(log: L) {
    let Fixture {
        redis,
        chain,
        api,
        c: _c,
    } = Fixture::whole_year(log).await;

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

// ---------------------------------------------------------------------------------
// The tests: each behaviour on the embedded log and on a Kafka-protocol broker.

/// An embedded log in a fresh directory (kept while the test runs).
fn embedded_log() -> (tempfile::TempDir, EmbeddedLog) {
    init_test_logging();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(dir.path()).expect("log");
    (dir, log)
}

/// A fresh Tansu broker (kept while the test runs) and a log on it.
fn kafka_log() -> (Tansu, KafkaLog) {
    init_test_logging();
    let broker = Tansu::start();
    let log = common::kafka_log(&broker);
    (broker, log)
}

/// For the behaviour `$name`, a module `$name` with two tests: `embedded_log` and `kafka`.
macro_rules! on_both_logs {
    ($($(#[$doc:meta])* $name:ident;)+) => {$(
        $(#[$doc])*
        mod $name {
            /// On the embedded log.
            #[tokio::test(flavor = "multi_thread")]
            async fn embedded_log() {
                let (_dir, log) = super::embedded_log();
                super::$name(log).await;
            }

            /// On a Kafka-protocol broker (Tansu).
            #[tokio::test(flavor = "multi_thread")]
            async fn kafka() {
                let (_broker, log) = super::kafka_log();
                super::$name(log).await;
            }
        }
    )+};
}

on_both_logs! {
    /// Health and reflection work for generic clients.
    serves_health_and_reflection;
    /// No model yet: FAILED_PRECONDITION.
    without_a_model_risk_is_a_failed_precondition;
    /// GetModel shows the refit.
    get_model_shows_the_refit;
    /// GetCustomerRisk is the domain's assessment.
    customer_risk_is_the_domains_assessment;
    /// The at-risk list is by value at risk, paged.
    the_at_risk_list_is_by_value_and_pages;
    /// Defected and won-back customers leave the at-risk list.
    defected_and_won_back_customers_leave_the_at_risk_list;
    /// Store defection stats sum the period's signals.
    store_stats_sum_the_signals_of_the_period;
    /// Bad requests name the field; unknown customers are NOT_FOUND.
    bad_requests_name_the_field_and_unknown_customers_are_not_found;
    /// Replay into an empty Redis rebuilds the indices.
    replaying_the_log_into_an_empty_redis_rebuilds_the_indices;
    /// With identities required, each role reads what it may.
    each_identity_reads_what_its_role_allows;
    /// A request over the message limit is OUT_OF_RANGE.
    a_request_over_the_message_limit_is_refused;
    /// ListStores: by store id, home customers summed over partitions, paged.
    list_stores_sums_home_customers_by_store_and_pages;
    /// With identities required, ListStores lists the caller's stores only.
    list_stores_shows_each_caller_only_its_stores;
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
    let stores = store_pages(&mut c, None, 1).await.expect("list stores");
    assert_eq!(
        stores.concat(),
        [("r1".to_owned(), 11), ("s2".to_owned(), 4)]
    );
    api.stop().await.expect("stop");
}
