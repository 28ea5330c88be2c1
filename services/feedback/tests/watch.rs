//! WatchEscalations through a real tonic client, over the embedded log and a real Redis:
//! a level filter, a reconnect from the last position that loses nothing and repeats
//! nothing, a losing commit that never shows, and malformed positions.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use churnguard_domain::feedback::Level;
use churnguard_domain::feedback::complaint::{ComplaintEvent, Context, EscalationReason};
use churnguard_domain::ids::ComplaintId;
use churnguard_eventlog::EventLog;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_proto::feedback::v1 as pb;
use churnguard_proto::feedback::v1::feedback_client::FeedbackClient;
use churnguard_redis::RedisConnection;
use churnguard_testkit::{RedisServer, init_test_logging};
use churnguard_vault::{Kek, RedisKeyStore, Vault};
use feedback::api::FeedbackApi;
use feedback::app::ApiServer;
use feedback::journal::Commit;
use feedback::projection::Projection;
use feedback::{Complaints, EVENTS_TOPIC};
use tonic::Code;
use tonic::Streaming;
use tonic::transport::Channel;
use tonic_types::StatusExt;

const PARTITIONS: u32 = 3;
const BEGINNING: &str = "p0:0,p1:0,p2:0";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0)
        .single()
        .expect("time")
}

fn filing(key: &str, store: &str) -> pb::FileComplaintRequest {
    pb::FileComplaintRequest {
        idempotency_key: key.into(),
        customer: Some(pb::Customer {
            kind: Some(pb::customer::Kind::CustomerId("cust-1".into())),
        }),
        contact: Some(pb::ContactDetails {
            name: "Ada Lovelace".into(),
            phone: "+44 7700 900123".into(),
            email: String::new(),
            address: String::new(),
        }),
        store_id: store.into(),
        channel: pb::Channel::Till as i32,
        touchpoint: pb::Touchpoint::Staff as i32,
        severity: pb::Severity::Major as i32,
        description: "Rude at the till".into(),
        occurred_at: "2026-11-23T08:00:00Z".into(),
    }
}

async fn watch(
    client: &mut FeedbackClient<Channel>,
    level: Option<pb::Level>,
    from: &str,
) -> Streaming<pb::WatchEscalationsResponse> {
    client
        .watch_escalations(pb::WatchEscalationsRequest {
            holder_id: String::new(),
            level: level.map_or(0, |l| l as i32),
            store_id: String::new(),
            from_position: from.into(),
        })
        .await
        .expect("watch")
        .into_inner()
}

/// What an alert reports, without its position.
fn what(a: &pb::EscalationAlert) -> (String, u64, i32, i32, String) {
    let reason = match a.reason.as_ref().and_then(|r| r.kind.clone()) {
        Some(pb::escalation_reason::Kind::Manual(t)) => t,
        other => format!("{other:?}"),
    };
    (
        a.complaint_id.clone(),
        a.complaint_version,
        a.kind,
        a.level,
        reason,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watchers_see_accepted_escalations_once_across_reconnects() {
    init_test_logging();
    let dir = tempfile::tempdir().expect("dir");
    let redis = RedisServer::start();
    let log = Arc::new(EmbeddedLog::open(dir.path()).expect("log"));
    log.ensure_topic(EVENTS_TOPIC, PARTITIONS)
        .await
        .expect("topic");
    let conn = RedisConnection::single(&redis.url()).await.expect("redis");
    let complaints = Arc::new(Complaints::new(
        log.clone(),
        Projection::new(conn.clone(), EVENTS_TOPIC, PARTITIONS),
        Context::default(),
        Arc::new(now),
    ));
    let vault = Arc::new(Vault::new(
        Kek::from_bytes([7; 32]),
        RedisKeyStore::new(conn.clone()),
    ));
    let running = ApiServer::bind("127.0.0.1:0", FeedbackApi::new(complaints, vault, conn))
        .await
        .expect("bind")
        .with_shutdown_grace(Duration::from_secs(2))
        .spawn();
    let mut client = FeedbackClient::connect(running.endpoint())
        .await
        .expect("connect");

    // Malformed positions name the field.
    for bad in [
        "nonsense",
        "p0:1,p1:2",
        "p0:1,p1:0,p2:x",
        "p0:999,p1:0,p2:0",
    ] {
        let status = client
            .watch_escalations(pb::WatchEscalationsRequest {
                from_position: bad.into(),
                ..Default::default()
            })
            .await
            .expect_err(bad);
        assert_eq!(status.code(), Code::InvalidArgument, "{bad}: {status:?}");
        let fields: Vec<String> = status
            .get_details_bad_request()
            .expect("a BadRequest detail")
            .field_violations
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, ["from_position"], "{bad}");
    }

    // Watchers from now on, before anything happens.
    let mut live_all = watch(&mut client, None, "").await;
    let mut live_owner = watch(&mut client, Some(pb::Level::Owner), "").await;

    // Three complaints, each escalated by hand to the regional manager, then the owner.
    let mut ids = Vec::new();
    for (i, store) in ["store-1", "store-2", "store-3"].iter().enumerate() {
        let c = client
            .file_complaint(filing(&format!("file-{i}"), store))
            .await
            .expect("file")
            .into_inner()
            .complaint
            .expect("summary");
        ids.push(c.complaint_id);
    }
    for step in ["up to regional", "up to owner"] {
        for id in &ids {
            client
                .escalate_complaint(pb::EscalateComplaintRequest {
                    complaint_id: id.clone(),
                    expected_version: None,
                    idempotency_key: String::new(),
                    reason: format!("{step} {id}"),
                })
                .await
                .expect("escalate");
        }
    }
    // A losing commit: decided on version 1 of the first complaint, which has moved on.
    let loser = Commit {
        complaint_id: ComplaintId::parse(ids[0].clone()).expect("id"),
        base_version: 1,
        commit_id: "the-loser".into(),
        idempotency_key: None,
        events: vec![ComplaintEvent::ComplaintEscalated {
            from: Level::StoreManager,
            to: Level::RegionalManager,
            reason: EscalationReason::Manual {
                text: "LOSER".into(),
            },
            at: now(),
        }],
    };
    for r in log
        .append(EVENTS_TOPIC, vec![loser.to_record(now(), None)])
        .await
    {
        r.expect("append the loser");
    }

    let mut expected = Vec::new();
    for step in ["up to regional", "up to owner"] {
        for id in &ids {
            let (version, level) = if step == "up to owner" {
                (3, pb::Level::Owner)
            } else {
                (2, pb::Level::RegionalManager)
            };
            expected.push((
                id.clone(),
                version,
                pb::EscalationAlertKind::Escalated as i32,
                level as i32,
                format!("{step} {id}"),
            ));
        }
    }
    let by_complaint = |mut v: Vec<(String, u64, i32, i32, String)>| {
        // Partitions are followed independently: order holds per complaint.
        v.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        v
    };

    // The unfiltered live watcher: every accepted escalation, in each complaint's order,
    // and never the loser.
    let all = common::take(&mut live_all, 6, true).await;
    let all_what: Vec<_> = all.iter().map(what).collect();
    for id in &ids {
        let versions: Vec<u64> = all_what
            .iter()
            .filter(|w| &w.0 == id)
            .map(|w| w.1)
            .collect();
        assert_eq!(versions, [2, 3], "{id}");
    }
    assert_eq!(
        by_complaint(all_what.clone()),
        by_complaint(expected.clone())
    );
    assert!(all_what.iter().all(|w| w.4 != "LOSER"));
    assert!(all.iter().all(|a| a.store_id.starts_with("store-")));
    assert!(all.iter().all(|a| a.severity == pb::Severity::Major as i32));

    // The owner-level watcher: exactly the three escalations to the owner.
    let owner: Vec<_> = common::take(&mut live_owner, 3, true)
        .await
        .iter()
        .map(what)
        .collect();
    let expected_owner: Vec<_> = expected
        .iter()
        .filter(|e| e.3 == pb::Level::Owner as i32)
        .cloned()
        .collect();
    assert_eq!(by_complaint(owner), by_complaint(expected_owner));

    // From the beginning, uninterrupted, against interrupted after each count of alerts:
    // the union is the same, nothing lost, nothing twice.
    let whole: Vec<_> = common::take(&mut watch(&mut client, None, BEGINNING).await, 6, true)
        .await
        .iter()
        .map(what)
        .collect();
    assert_eq!(by_complaint(whole.clone()), by_complaint(expected.clone()));
    for cut in 1..6 {
        let mut first = watch(&mut client, None, BEGINNING).await;
        let head = common::take(&mut first, cut, false).await;
        drop(first);
        let resume = head.last().expect("an alert").position.clone();
        let tail = common::take(&mut watch(&mut client, None, &resume).await, 6 - cut, true).await;
        let union: Vec<_> = head.iter().chain(&tail).map(what).collect();
        assert_eq!(
            by_complaint(union),
            by_complaint(whole.clone()),
            "cut {cut}"
        );
    }
    // A position at the end: nothing more.
    let last = all.last().expect("alerts").position.clone();
    let mut after = watch(&mut client, None, &last).await;
    // The last position covers every partition's alerts sent before it.
    let rest = tokio::time::timeout(Duration::from_millis(1500), after.message()).await;
    if let Ok(Ok(Some(m))) = rest {
        let a = m.alert.expect("alert");
        panic!("an alert after the last position: {a:?}");
    }

    drop(live_all);
    drop(live_owner);
    drop(after);
    running.stop().await.expect("stop");
}
