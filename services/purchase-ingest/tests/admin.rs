//! purchase-ingest's admin endpoint (`admin_addr`): its calls counted on `/metrics` by
//! method and status code, and readiness following its health.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_proto::ingest::v1 as pb;
use churnguard_proto::ingest::v1::purchase_ingest_client::PurchaseIngestClient;
use churnguard_testkit::admin::{assert_promtool_accepts, get, sample};
use churnguard_testkit::init_test_logging;
use purchase_ingest::{App, Settings};
use tonic::Code;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
        .expect("fixed time")
        .to_utc()
}

fn swipe(id: &str) -> pb::Swipe {
    pb::Swipe {
        swipe_id: id.into(),
        customer: Some(pb::swipe::Customer::CustomerId("cust-1".into())),
        store_id: "store-1".into(),
        terminal_id: "till-1".into(),
        employee_id: "emp-1".into(),
        occurred_at: "2026-11-22T10:15:00+01:00".into(),
        amount: Some(pb::Amount {
            minor_units: 1250,
            currency: "EUR".into(),
        }),
        item_count: 3,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_endpoint_counts_its_calls_by_code_and_says_ready() {
    init_test_logging();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(dir.path()).expect("open");
    let settings = Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        ..Settings::default()
    };
    let app = App::build_with_clock(settings, log, Arc::new(now))
        .await
        .expect("build purchase-ingest");
    let admin = app.admin_addr().expect("admin_addr asks for one");
    let app = app.spawn();

    let mut client = PurchaseIngestClient::connect(app.endpoint())
        .await
        .expect("connect");
    client
        .record_swipe(pb::RecordSwipeRequest {
            swipe: Some(swipe("sw-admin-1")),
            historical: false,
        })
        .await
        .expect("a good swipe is recorded");
    let mut bad = swipe("sw-admin-2");
    bad.store_id.clear();
    let refused = client
        .record_swipe(pb::RecordSwipeRequest {
            swipe: Some(bad),
            historical: false,
        })
        .await
        .expect_err("a swipe without a store is refused");
    assert_eq!(refused.code(), Code::InvalidArgument);

    let (status, text) = get(admin, "/metrics");
    assert_eq!(status, 200);
    for code in ["OK", "INVALID_ARGUMENT"] {
        let series = format!(
            r#"grpc_server_requests_total{{service="churnguard.ingest.v1.PurchaseIngest",method="RecordSwipe",code="{code}"}}"#
        );
        assert!(
            sample(&text, &series).is_some_and(|n| n >= 1.0),
            "{series} in\n{text}"
        );
    }
    assert_promtool_accepts(&text);
    assert_eq!(get(admin, "/readyz").0, 200, "the log is reachable");
    assert_eq!(get(admin, "/healthz").0, 200);
    app.stop().await.expect("a clean stop");
}
