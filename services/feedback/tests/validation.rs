//! Bad input through the gRPC API (issue 11): INVALID_ARGUMENT naming every bad field of a
//! request at once, days only as `YYYY-MM-DD`, satisfaction answers reported as sent, and
//! no huge value echoed back. Nothing bad is written. On the embedded log with a real
//! Redis, through the service as its binary builds it.

mod common;

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use churnguard_eventlog::EventLog;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_proto::feedback::v1 as pb;
use churnguard_proto::feedback::v1::feedback_client::FeedbackClient;
use churnguard_testkit::{RedisServer, init_test_logging};
use churnguard_vault::Kek;
use feedback::App;
use feedback::EVENTS_TOPIC;
use feedback::config::Settings;
use tonic::Status;
use tonic_types::StatusExt;

const PARTITIONS: u32 = 3;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0)
        .single()
        .expect("time")
}

/// The fields an INVALID_ARGUMENT names, sorted.
fn fields(s: &Status) -> Vec<String> {
    let mut f = common::bad_fields(s);
    f.sort();
    f
}

/// The description of `field` in an INVALID_ARGUMENT.
fn description(s: &Status, field: &str) -> String {
    s.get_details_bad_request()
        .expect("a BadRequest detail")
        .field_violations
        .into_iter()
        .find(|v| v.field == field)
        .unwrap_or_else(|| panic!("no violation on {field}: {s:?}"))
        .description
}

fn sorted(f: &[&str]) -> Vec<String> {
    let mut f: Vec<String> = f.iter().map(|s| (*s).to_owned()).collect();
    f.sort();
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_names_every_field() {
    init_test_logging();
    let dir = tempfile::tempdir().expect("dir");
    let log = Arc::new(EmbeddedLog::open(dir.path()).expect("log"));
    let redis = RedisServer::start();
    let mut settings = Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        shutdown_grace_ms: 2_000,
        ..Settings::default()
    };
    settings.redis.url = redis.url();
    settings.topics.partitions = PARTITIONS;
    let running = App::build_with_clock(
        settings,
        log.clone(),
        Kek::from_bytes([6; 32]),
        Arc::new(now),
    )
    .await
    .expect("builds")
    .spawn();
    let mut c = FeedbackClient::connect(running.endpoint())
        .await
        .expect("connect");

    // A resolved complaint, for the commands that need one.
    let id = c
        .file_complaint(common::filing("file-v"))
        .await
        .expect("file")
        .into_inner()
        .complaint
        .expect("summary")
        .complaint_id;
    c.acknowledge_complaint(pb::AcknowledgeComplaintRequest {
        complaint_id: id.clone(),
        expected_version: None,
        idempotency_key: String::new(),
        method: pb::ContactMethod::Phone as i32,
        note: String::new(),
    })
    .await
    .expect("ack");
    c.resolve_complaint(pb::ResolveComplaintRequest {
        complaint_id: id.clone(),
        expected_version: None,
        idempotency_key: String::new(),
        remedies: vec![pb::Remedy::Apology as i32],
        summary: "Apologised".into(),
    })
    .await
    .expect("resolve");
    let mut ends = Vec::new();
    for p in 0..PARTITIONS {
        ends.push(log.end_offset(EVENTS_TOPIC, p).await.expect("end"));
    }

    // Days: exactly YYYY-MM-DD.
    for bad in [
        "1997-9-30",
        "2026-11-1",
        "+2026-11-23",
        "2026-11-23T00:00:00Z",
        "20261123",
        "2026-02-30",
    ] {
        let s = c
            .get_defection_reasons(pb::GetDefectionReasonsRequest {
                store_id: String::new(),
                from_date: bad.into(),
                to_date: "2026-11-30".into(),
            })
            .await
            .expect_err(bad);
        assert_eq!(fields(&s), ["from_date"], "{bad}");
    }
    c.get_defection_reasons(pb::GetDefectionReasonsRequest {
        store_id: String::new(),
        from_date: "2026-11-01".into(),
        to_date: "2026-11-30".into(),
    })
    .await
    .expect("a well-formed period");
    let s = c
        .get_defection_reasons(pb::GetDefectionReasonsRequest {
            store_id: "store 1".into(),
            from_date: "1997-9-30".into(),
            to_date: "soon".into(),
        })
        .await
        .expect_err("all bad");
    assert_eq!(fields(&s), sorted(&["store_id", "from_date", "to_date"]));

    // Complaint commands: the id, the key and the command's own fields, together.
    let s = c
        .add_complaint_update(pb::AddComplaintUpdateRequest {
            complaint_id: String::new(),
            expected_version: None,
            idempotency_key: "a key".into(),
            note: " ".into(),
            from_customer: false,
        })
        .await
        .expect_err("bad update");
    assert_eq!(
        fields(&s),
        sorted(&["complaint_id", "idempotency_key", "note"])
    );
    let s = c
        .acknowledge_complaint(pb::AcknowledgeComplaintRequest {
            complaint_id: "not an id!".into(),
            expected_version: None,
            idempotency_key: String::new(),
            method: 42,
            note: String::new(),
        })
        .await
        .expect_err("bad ack");
    assert_eq!(fields(&s), sorted(&["complaint_id", "method"]));
    let s = c
        .resolve_complaint(pb::ResolveComplaintRequest {
            complaint_id: String::new(),
            expected_version: None,
            idempotency_key: String::new(),
            remedies: vec![],
            summary: String::new(),
        })
        .await
        .expect_err("bad resolution");
    assert_eq!(fields(&s), sorted(&["complaint_id", "remedies", "summary"]));
    let s = c
        .escalate_complaint(pb::EscalateComplaintRequest {
            complaint_id: String::new(),
            expected_version: None,
            idempotency_key: "k/1".into(),
            reason: String::new(),
        })
        .await
        .expect_err("bad escalation");
    assert_eq!(
        fields(&s),
        sorted(&["complaint_id", "idempotency_key", "reason"])
    );
    let s = c
        .record_satisfaction(pb::RecordSatisfactionRequest {
            complaint_id: String::new(),
            expected_version: None,
            idempotency_key: String::new(),
            satisfaction: None,
        })
        .await
        .expect_err("no survey");
    assert_eq!(fields(&s), sorted(&["complaint_id", "satisfaction"]));
    let s = c
        .record_root_cause(pb::RecordRootCauseRequest {
            complaint_id: String::new(),
            expected_version: None,
            idempotency_key: String::new(),
            root_cause: Some(pb::RootCause {
                whys: vec![],
                category: 0,
                corrective_action: String::new(),
            }),
        })
        .await
        .expect_err("no analysis");
    assert_eq!(
        fields(&s),
        sorted(&[
            "complaint_id",
            "root_cause.whys",
            "root_cause.category",
            "root_cause.corrective_action"
        ])
    );

    // Satisfaction answers are reported as sent, not cut to a byte.
    let survey = |score: u32, speed: u32| pb::RecordSatisfactionRequest {
        complaint_id: id.clone(),
        expected_version: None,
        idempotency_key: String::new(),
        satisfaction: Some(pb::Satisfaction {
            score,
            ownership: 4,
            felt_valued: 4,
            speed,
            sincere_regret: 4,
            reason: String::new(),
        }),
    };
    let s = c
        .record_satisfaction(survey(256, 4_000_000_000))
        .await
        .expect_err("out of range");
    assert_eq!(
        fields(&s),
        sorted(&["satisfaction.score", "satisfaction.speed"])
    );
    assert!(
        description(&s, "satisfaction.score").contains("got 256"),
        "{s:?}"
    );
    assert!(
        description(&s, "satisfaction.speed").contains("got 4000000000"),
        "{s:?}"
    );

    // Outreach: the case id, the key and the attempt's fields, together.
    let s = c
        .record_outreach(pb::RecordOutreachRequest {
            case_id: "not an id!".into(),
            expected_version: None,
            idempotency_key: "a key".into(),
            reason: 0,
            free_text: String::new(),
            outcome: 0,
            method: 0,
        })
        .await
        .expect_err("bad attempt");
    assert_eq!(
        fields(&s),
        sorted(&["case_id", "idempotency_key", "method", "outcome"])
    );

    // Lists and the watch: every bad filter at once.
    let s = c
        .list_complaints(pb::ListComplaintsRequest {
            page_size: 5_000,
            page_token: "page two".into(),
            level: 9,
            statuses: vec![9],
            ..Default::default()
        })
        .await
        .expect_err("bad list");
    assert_eq!(
        fields(&s),
        sorted(&["page_size", "page_token", "level", "statuses"])
    );
    let s = c
        .list_outreach(pb::ListOutreachRequest {
            store_id: "store 1".into(),
            status: 9,
            page_size: 5_000,
            page_token: "page two".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad outreach list");
    assert_eq!(
        fields(&s),
        sorted(&["store_id", "status", "page_size", "page_token"])
    );
    let s = c
        .watch_escalations(pb::WatchEscalationsRequest {
            holder_id: String::new(),
            level: 9,
            store_id: String::new(),
            from_position: "the start".into(),
        })
        .await
        .expect_err("bad watch");
    assert_eq!(fields(&s), sorted(&["from_position", "level"]));

    // A filing: every bad field, the adapter's and the aggregate's.
    let mut filing = common::filing("");
    filing.customer = common::customer("");
    filing.occurred_at = "yesterday".into();
    filing.store_id = String::new();
    let s = c.file_complaint(filing).await.expect_err("bad filing");
    assert_eq!(
        fields(&s),
        sorted(&[
            "idempotency_key",
            "customer.customer_id",
            "store_id",
            "occurred_at"
        ])
    );

    // Huge values are not echoed back whole.
    let huge = "9".repeat(100_000);
    let s = c
        .watch_escalations(pb::WatchEscalationsRequest {
            from_position: format!("p0:{huge}x"),
            ..Default::default()
        })
        .await
        .expect_err("huge position");
    let d = description(&s, "from_position");
    assert!(
        d.len() < 300 && d.contains("bytes"),
        "{} chars: {}",
        d.len(),
        &d[..d.len().min(300)]
    );
    assert!(s.message().len() < 600, "{} chars", s.message().len());
    let s = c
        .get_defection_reasons(pb::GetDefectionReasonsRequest {
            store_id: String::new(),
            from_date: huge.clone(),
            to_date: "2026-11-30".into(),
        })
        .await
        .expect_err("huge day");
    let d = description(&s, "from_date");
    assert!(d.len() < 300 && d.contains("bytes"), "{} chars", d.len());

    let mut after = Vec::new();
    for p in 0..PARTITIONS {
        after.push(log.end_offset(EVENTS_TOPIC, p).await.expect("end"));
    }
    assert_eq!(after, ends, "nothing appended for bad input");
    running.stop().await.expect("stop");
}
