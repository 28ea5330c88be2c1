//! Imports of history (`historical` requests) on Kafka (Tansu), with identities required:
//! old swipes are taken only as an import, only where the deployment allows imports, and
//! only from a service; live traffic keeps its maximum age.
//!
//! | request                              | 1997 swipe          | today's swipe |
//! |--------------------------------------|---------------------|---------------|
//! | live, any writer                     | INVALID_ARGUMENT    | OK            |
//! | historical, service                  | OK                  | OK            |
//! | historical, store-1's gateway        | PERMISSION_DENIED   | PERMISSION_DENIED |
//! | historical, owner                    | PERMISSION_DENIED   | PERMISSION_DENIED |
//! | historical, imports not allowed      | FAILED_PRECONDITION | FAILED_PRECONDITION |

mod common;

use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_kafka::KafkaLog;
use churnguard_proto::ingest::v1 as pb;
use churnguard_testkit::auth::{TestIssuer, with_bearer};
use churnguard_testkit::{Tansu, canary};
use common::*;
use purchase_ingest::config::Backend;
use tonic::Code;

/// A swipe of 1 January 1997 (CDNOW's first day), far older than the live limit.
fn old_swipe(id: &str) -> pb::Swipe {
    pb::Swipe {
        occurred_at: "1997-01-01T12:00:00+00:00".into(),
        ..swipe(id, "00001")
    }
}

fn historical(s: pb::Swipe) -> pb::RecordSwipeRequest {
    pb::RecordSwipeRequest {
        swipe: Some(s),
        historical: true,
    }
}

/// The code of a RecordSwipe call, and its message.
async fn record(
    client: &mut pb::purchase_ingest_client::PurchaseIngestClient<tonic::transport::Channel>,
    request: pb::RecordSwipeRequest,
    token: &str,
) -> (Code, String) {
    match client.record_swipe(with_bearer(request, token)).await {
        Ok(_) => (Code::Ok, String::new()),
        Err(status) => (status.code(), status.message().to_owned()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_history_is_taken_only_as_an_import_by_a_service() {
    let broker = Tansu::start();
    let issuer = TestIssuer::new();
    let mut settings = settings(Backend::Kafka);
    settings.log.kafka = kafka_settings(&broker);
    settings.limits.allow_import = true;
    settings.auth = secured(&issuer);
    let reader = KafkaLog::new(kafka_settings(&broker)).expect("reader");
    let app = spawn_app(
        settings,
        KafkaLog::new(kafka_settings(&broker)).expect("log"),
    )
    .await;
    let mut client = client(&app).await;
    let service = issuer.token("service", "importer", &[]);
    let gateway = canary::store_token("store-1");
    let owner = issuer.token("owner", "o-1", &[]);

    // Live traffic keeps its maximum age, whoever sends it.
    for (who, token) in [("service", &service), ("gateway", &gateway)] {
        let (code, message) = record(
            &mut client,
            request(old_swipe(&format!("sw-live-{who}"))),
            token,
        )
        .await;
        assert_eq!(code, Code::InvalidArgument, "{who}: {message}");
        assert!(
            message.contains("occurred_at: is older than the limit of 90 days"),
            "{message}"
        );
    }

    // A service imports old and recent swipes alike.
    let (code, message) = record(&mut client, historical(old_swipe("sw-imp-1")), &service).await;
    assert_eq!(code, Code::Ok, "{message}");
    let (code, message) = record(
        &mut client,
        historical(swipe("sw-imp-2", "00002")),
        &service,
    )
    .await;
    assert_eq!(code, Code::Ok, "{message}");

    // A gateway and a person may not import, not even today's swipes.
    for (who, token) in [("gateway", &gateway), ("owner", &owner)] {
        for (n, s) in [old_swipe("x"), swipe("x", "00003")]
            .into_iter()
            .enumerate()
        {
            let s = pb::Swipe {
                swipe_id: format!("sw-refused-{who}-{n}"),
                ..s
            };
            let (code, message) = record(&mut client, historical(s), token).await;
            assert_eq!(code, Code::PermissionDenied, "{who}: {message}");
            assert!(message.starts_with("historical: "), "{message}");
            assert!(message.contains("may not import history"), "{message}");
        }
    }

    // One stream mixing a live batch and a historical one: each is validated as sent.
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tx.send(pb::StreamSwipesRequest {
        swipes: vec![old_swipe("sw-s-live-old"), swipe("sw-s-live-new", "00004")],
        historical: false,
    })
    .await
    .expect("send");
    let too_old = pb::Swipe {
        occurred_at: "1900-01-01T00:00:00+00:00".into(),
        ..old_swipe("sw-s-imp-1900")
    };
    tx.send(pb::StreamSwipesRequest {
        swipes: vec![old_swipe("sw-s-imp-old"), too_old],
        historical: true,
    })
    .await
    .expect("send");
    drop(tx);
    let mut answers = client
        .stream_swipes(with_bearer(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            &service,
        ))
        .await
        .expect("the stream opens")
        .into_inner();
    let mut outcomes = Vec::new();
    while let Some(answer) = answers.message().await.expect("an answer") {
        for r in answer.results {
            let outcome = match r.outcome {
                Some(pb::swipe_result::Outcome::Accepted(_)) => "OK".to_owned(),
                Some(pb::swipe_result::Outcome::Rejected(r)) => {
                    let fields: Vec<String> = r
                        .field_violations
                        .iter()
                        .map(|f| format!("{}: {}", f.field, f.description))
                        .collect();
                    format!("{} {}", r.code, fields.join("; "))
                }
                None => "none".to_owned(),
            };
            outcomes.push((r.swipe_id, outcome));
        }
    }
    let import_days = 50 * 366;
    assert_eq!(
        outcomes,
        [
            (
                "sw-s-live-old".to_owned(),
                "INVALID_ARGUMENT occurred_at: is older than the limit of 90 days".to_owned()
            ),
            ("sw-s-live-new".to_owned(), "OK".to_owned()),
            ("sw-s-imp-old".to_owned(), "OK".to_owned()),
            (
                "sw-s-imp-1900".to_owned(),
                format!(
                    "INVALID_ARGUMENT occurred_at: is older than the limit of {import_days} days"
                )
            ),
        ]
    );

    // Exactly the accepted swipes are on the topic, the imported ones with their own time.
    let mut written: Vec<(String, String)> = read_topic(&reader)
        .await
        .iter()
        .map(|r| {
            let event = envelope(r);
            (
                event["data"]["swipe_id"]
                    .as_str()
                    .expect("swipe_id")
                    .to_owned(),
                event["data"]["occurred_at"]
                    .as_str()
                    .expect("occurred_at")
                    .to_owned(),
            )
        })
        .collect();
    written.sort();
    let today = "2026-11-22T10:15:00+01:00".to_owned();
    let day_one = "1997-01-01T12:00:00Z".to_owned();
    assert_eq!(
        written,
        [
            ("sw-imp-1".to_owned(), day_one.clone()),
            ("sw-imp-2".to_owned(), today.clone()),
            ("sw-s-imp-old".to_owned(), day_one),
            ("sw-s-live-new".to_owned(), today),
        ]
    );
    app.stop().await.expect("stops");
}

/// A deployment that takes no imports (the default) refuses every historical swipe,
/// saying why, and writes none; live swipes go on.
#[tokio::test(flavor = "multi_thread")]
async fn without_allow_import_history_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("dir");
    let settings = settings(Backend::Embedded);
    assert!(!settings.limits.allow_import, "off by default");
    let app = spawn_app(settings, EmbeddedLog::open(dir.path()).expect("log")).await;
    let mut client = client(&app).await;
    let refused = client
        .record_swipe(historical(old_swipe("sw-no-import")))
        .await
        .expect_err("no imports here");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().starts_with(
            "historical: this deployment takes no imports of history (limits.allow_import is off)"
        ),
        "{refused:?}"
    );
    client
        .record_swipe(request(swipe("sw-live", "00001")))
        .await
        .expect("live traffic goes on");
    app.stop().await.expect("stops");
    let reader = EmbeddedLog::open(dir.path()).expect("reopen");
    let ids: Vec<String> = read_topic(&reader)
        .await
        .iter()
        .map(|r| {
            envelope(r)["data"]["swipe_id"]
                .as_str()
                .expect("id")
                .to_owned()
        })
        .collect();
    assert_eq!(ids, ["sw-live"]);
}
