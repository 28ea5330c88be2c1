//! The query API's answers to a caller's mistakes and to a Redis that is down: every bad
//! field named at once, with a short message, and UNAVAILABLE at once rather than at the
//! caller's deadline.

use std::time::{Duration, Instant};

use churn_scoring::CustomerStore;
use churn_scoring::api::{ApiServer, QueryState, Running};
use churnguard_proto::scoring::v1 as pb;
use churnguard_proto::scoring::v1::churn_scoring_client::ChurnScoringClient;
use churnguard_testkit::{RedisServer, init_test_logging};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

async fn api(redis: &RedisServer) -> (Running, ChurnScoringClient<Channel>) {
    let store = CustomerStore::connect(&redis.url(), "purchases.v1", 120)
        .await
        .expect("store");
    let running = ApiServer::bind(
        "127.0.0.1:0",
        QueryState::new(store, churn_scoring::config::default_policy().into(), 4),
    )
    .await
    .expect("bind")
    .spawn();
    let client = ChurnScoringClient::connect(running.endpoint())
        .await
        .expect("client");
    (running, client)
}

/// The fields a BadRequest detail names, in order.
fn fields(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_field_is_named_with_a_short_message() {
    init_test_logging();
    let redis = RedisServer::start();
    let (running, mut c) = api(&redis).await;

    let s = c
        .get_customer_risk(pb::GetCustomerRiskRequest {
            customer_id: String::new(),
            as_of: "garbage".into(),
        })
        .await
        .expect_err("bad");
    assert_eq!(s.code(), Code::InvalidArgument);
    assert_eq!(fields(&s), ["customer_id", "as_of"], "{s:?}");

    // YYYY-MM-DD means exactly that.
    for as_of in [
        "1997-9-30",
        "97-09-30",
        "1997-09-30T00:00:00Z",
        "1997-02-30",
        " 1997-09-30",
    ] {
        let s = c
            .get_customer_risk(pb::GetCustomerRiskRequest {
                customer_id: "cust-1".into(),
                as_of: as_of.into(),
            })
            .await
            .expect_err("bad date");
        assert_eq!(s.code(), Code::InvalidArgument, "{as_of}: {s:?}");
        assert_eq!(fields(&s), ["as_of"], "{as_of}");
    }
    let s = c
        .get_store_defection_stats(pb::GetStoreDefectionStatsRequest {
            store_id: String::new(),
            from_date: "2026-1-01".into(),
            to_date: "2026-13-01".into(),
        })
        .await
        .expect_err("bad");
    assert_eq!(fields(&s), ["store_id", "from_date", "to_date"], "{s:?}");
    let s = c
        .list_at_risk_customers(pb::ListAtRiskCustomersRequest {
            store_id: String::new(),
            page_size: 100_000,
            page_token: "not a token".into(),
        })
        .await
        .expect_err("bad");
    assert_eq!(fields(&s), ["store_id", "page_size", "page_token"], "{s:?}");

    // 100 KiB in a field comes back as a short message naming it, not as 100 KiB (which
    // the client would see as RESOURCE_EXHAUSTED: metadata too large). The request stays
    // under the server's message limit (256 KiB); a larger one is OUT_OF_RANGE before it
    // is read (tests/api.rs, a_request_over_the_message_limit_is_refused).
    let huge = "x".repeat(100 * 1024);
    let s = c
        .get_customer_risk(pb::GetCustomerRiskRequest {
            customer_id: huge.clone(),
            as_of: huge.clone(),
        })
        .await
        .expect_err("bad");
    assert_eq!(
        s.code(),
        Code::InvalidArgument,
        "{}",
        &s.message()[..200.min(s.message().len())]
    );
    assert_eq!(fields(&s), ["customer_id", "as_of"]);
    assert!(s.message().len() < 1_000, "{} bytes", s.message().len());
    running.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_answer_unavailable_at_once_while_redis_is_down() {
    init_test_logging();
    let mut redis = RedisServer::start();
    let (running, mut c) = api(&redis).await;
    redis.kill();
    for _ in 0..3 {
        let mut request = tonic::Request::new(pb::GetCustomerRiskRequest {
            customer_id: "cust-1".into(),
            as_of: String::new(),
        });
        request.set_timeout(Duration::from_secs(10));
        let sent = Instant::now();
        let s = c
            .get_customer_risk(request)
            .await
            .expect_err("redis is down");
        let took = sent.elapsed();
        eprintln!("answered {:?} after {took:?}", s.code());
        assert_eq!(s.code(), Code::Unavailable, "{s:?}");
        // The reconnect attempts take about 0.3 s; generous for a shared machine, and far
        // below the caller's 10 s deadline, which the call used to run into.
        assert!(took < Duration::from_secs(3), "took {took:?}");
    }
    redis.restart();
    running.stop().await.expect("stop");
}
