//! Authorization in the Feedback API (the rules of `feedback::api::access`), through the
//! service as its binary builds it with `auth.required`: store tokens and HS256 JWTs
//! from files, on the embedded log with a real Redis.
//!
//! Without credentials nothing is answered; a manager sees and acts on the complaints of
//! their stores at their level or below, and another store's read as NOT_FOUND, exactly
//! as an id that does not exist; the owner sees all; the escalation watch delivers only
//! what its caller sees; erasing is the privacy officer's, and each erasure is recorded
//! with who did it.

mod common;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use churnguard_config::{AuthSettings, JwtSettings};
use churnguard_eventlog::EventLog;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_proto::feedback::v1 as pb;
use churnguard_proto::feedback::v1::feedback_client::FeedbackClient;
use churnguard_testkit::auth::{AUDIENCE, ISSUER, TestIssuer, with_bearer};
use churnguard_testkit::{RedisServer, canary, init_test_logging};
use churnguard_vault::Kek;
use feedback::api::ERASURES_KEY;
use feedback::config::Settings;
use feedback::{App, Running};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

static GATEWAY_S1: LazyLock<String> = LazyLock::new(|| canary::store_token("s-1"));
static GATEWAY_S2: LazyLock<String> = LazyLock::new(|| canary::store_token("s-2"));

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0)
        .single()
        .expect("time")
}

/// Required identities: the gateways' store tokens and the issuer's JWTs.
fn auth_settings(issuer: &TestIssuer) -> AuthSettings {
    AuthSettings {
        required: true,
        store_tokens_file: issuer
            .store_tokens_file(&[("s-1", GATEWAY_S1.as_str()), ("s-2", GATEWAY_S2.as_str())]),
        jwt: JwtSettings {
            algorithm: "HS256".into(),
            key_file: issuer.key_file(),
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
        },
    }
}

/// `message` with `authorization: Bearer <token>`.
fn as_<T>(token: &str, message: T) -> Request<T> {
    with_bearer(message, token)
}

async fn start(
    log: Arc<EmbeddedLog>,
    redis: &RedisServer,
    auth: AuthSettings,
) -> (Running, FeedbackClient<Channel>) {
    let mut settings = Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        shutdown_grace_ms: 2_000,
        auth,
        ..Settings::default()
    };
    settings.redis.url = redis.url();
    settings.topics.partitions = 3;
    let running = App::build_with_clock(settings, log, Kek::from_bytes([9; 32]), Arc::new(now))
        .await
        .expect("builds")
        .spawn();
    let client = FeedbackClient::connect(running.endpoint())
        .await
        .expect("connect");
    (running, client)
}

fn filing(key: &str, store: &str, customer: &str) -> pb::FileComplaintRequest {
    let mut f = common::filing(key);
    f.store_id = store.into();
    f.customer = common::customer(customer);
    f
}

fn get(id: &str) -> pb::GetComplaintRequest {
    pb::GetComplaintRequest {
        complaint_id: id.into(),
        include_contact: false,
    }
}

fn escalate(id: &str, reason: &str) -> pb::EscalateComplaintRequest {
    pb::EscalateComplaintRequest {
        complaint_id: id.into(),
        expected_version: None,
        idempotency_key: String::new(),
        reason: reason.into(),
    }
}

fn list(store: &str) -> pb::ListComplaintsRequest {
    pb::ListComplaintsRequest {
        store_id: store.into(),
        ..Default::default()
    }
}

fn denied(s: &Status, field: &str) {
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    assert!(
        s.message().starts_with(&format!("{field}:")),
        "names {field}: {s:?}"
    );
}

async fn ids(client: &mut FeedbackClient<Channel>, token: &str, store: &str) -> Vec<String> {
    client
        .list_complaints(as_(token, list(store)))
        .await
        .expect("list")
        .into_inner()
        .complaints
        .into_iter()
        .map(|c| c.complaint_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_see_and_act_on_what_their_role_and_stores_allow() {
    init_test_logging();
    let issuer = TestIssuer::new();
    let log_dir = tempfile::tempdir().expect("log dir");
    let log = Arc::new(EmbeddedLog::open(log_dir.path()).expect("log"));
    let redis = RedisServer::start();
    let (running, mut c) = start(log.clone(), &redis, auth_settings(&issuer)).await;

    let manager_s1 = issuer.token("store_manager", "m-1", &["s-1"]);
    let manager_s2 = issuer.token("store_manager", "m-2", &["s-2"]);
    let regional_s2 = issuer.token("regional_manager", "r-2", &["s-2"]);
    let owner = issuer.token("owner", "o-1", &[]);
    let analyst = issuer.token("analyst", "a-1", &[]);
    let privacy = issuer.token("privacy_officer", "po-1", &[]);

    // No credentials: nothing is answered.
    let s = c.get_complaint(get("c-none")).await.expect_err("anonymous");
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");

    // Store gateways file for their own store only.
    let s = c
        .file_complaint(as_(GATEWAY_S1.as_str(), filing("file-x", "s-2", "cust-1")))
        .await
        .expect_err("another store");
    denied(&s, "store_id");
    let id = c
        .file_complaint(as_(GATEWAY_S1.as_str(), filing("file-1", "s-1", "cust-1")))
        .await
        .expect("the gateway files for its store")
        .into_inner()
        .complaint
        .expect("summary")
        .complaint_id;

    // The store manager of s-1 sees it; the one of s-2 does not, exactly as an id that
    // does not exist, and cannot act on it; the owner sees it.
    let seen = c
        .get_complaint(as_(&manager_s1, get(&id)))
        .await
        .expect("s-1's manager sees it")
        .into_inner()
        .complaint
        .expect("complaint");
    let version = seen.summary.as_ref().expect("summary").version;
    let hidden = c
        .get_complaint(as_(&manager_s2, get(&id)))
        .await
        .expect_err("s-2's manager");
    let missing = c
        .get_complaint(as_(&manager_s2, get("c-no-such-complaint")))
        .await
        .expect_err("no such complaint");
    assert_eq!(hidden.code(), Code::NotFound, "{hidden:?}");
    assert_eq!(
        (hidden.code(), hidden.message()),
        (missing.code(), missing.message())
    );
    let acted = c
        .acknowledge_complaint(as_(
            &manager_s2,
            pb::AcknowledgeComplaintRequest {
                complaint_id: id.clone(),
                expected_version: None,
                idempotency_key: String::new(),
                method: pb::ContactMethod::Phone as i32,
                note: "not mine".into(),
            },
        ))
        .await
        .expect_err("s-2's manager acts");
    assert_eq!(
        (acted.code(), acted.message()),
        (missing.code(), missing.message())
    );
    let s = c
        .escalate_complaint(as_(&manager_s2, escalate(&id, "not mine either")))
        .await
        .expect_err("s-2's manager escalates");
    assert_eq!(s.code(), Code::NotFound, "{s:?}");
    let after = c
        .get_complaint(as_(&owner, get(&id)))
        .await
        .expect("the owner sees it")
        .into_inner()
        .complaint
        .expect("complaint");
    assert_eq!(
        after.summary.expect("summary").version,
        version,
        "nothing was appended"
    );
    // Store gateways and analysts see no complaints.
    for token in [GATEWAY_S1.as_str(), analyst.as_str()] {
        let s = c
            .get_complaint(as_(token, get(&id)))
            .await
            .expect_err("no complaints");
        assert_eq!(s.code(), Code::NotFound, "{s:?}");
        let s = c
            .list_complaints(as_(token, list("")))
            .await
            .expect_err("no list");
        denied(&s, "authorization");
    }

    // Lists: only the caller's stores; another store named is an empty list.
    assert_eq!(ids(&mut c, &manager_s1, "").await, vec![id.clone()]);
    assert!(ids(&mut c, &manager_s2, "").await.is_empty());
    assert!(ids(&mut c, &manager_s2, "s-1").await.is_empty());
    assert_eq!(ids(&mut c, &owner, "").await, vec![id.clone()]);

    // Watches from now: the owner's and that of s-2's regional manager.
    let watch = |token: &str| {
        as_(
            token,
            pb::WatchEscalationsRequest {
                // The request's filters do not widen what the caller sees.
                store_id: String::new(),
                ..Default::default()
            },
        )
    };
    let mut owner_watch = c
        .watch_escalations(watch(&owner))
        .await
        .expect("owner watches")
        .into_inner();
    let mut regional_watch = c
        .watch_escalations(watch(&regional_s2))
        .await
        .expect("regional manager watches")
        .into_inner();
    let s = c
        .watch_escalations(watch(GATEWAY_S2.as_str()))
        .await
        .expect_err("a gateway watches");
    denied(&s, "authorization");

    // s-1's manager escalates their complaint to the regional level: out of their sight
    // from then on. Then an s-2 complaint goes up the same way.
    c.escalate_complaint(as_(&manager_s1, escalate(&id, "needs the region")))
        .await
        .expect("s-1's manager escalates");
    let s = c
        .get_complaint(as_(&manager_s1, get(&id)))
        .await
        .expect_err("above the store manager now");
    assert_eq!(s.code(), Code::NotFound, "{s:?}");
    let id2 = c
        .file_complaint(as_(GATEWAY_S2.as_str(), filing("file-2", "s-2", "cust-2")))
        .await
        .expect("s-2's gateway files")
        .into_inner()
        .complaint
        .expect("summary")
        .complaint_id;
    c.escalate_complaint(as_(&manager_s2, escalate(&id2, "needs the region")))
        .await
        .expect("s-2's manager escalates");

    let seen_by_owner = common::take(&mut owner_watch, 2, false).await;
    let mut stores: Vec<_> = seen_by_owner.iter().map(|a| a.store_id.as_str()).collect();
    stores.sort_unstable();
    assert_eq!(stores, ["s-1", "s-2"]);
    let seen_by_regional = common::take(&mut regional_watch, 1, true).await;
    assert_eq!(seen_by_regional[0].complaint_id, id2);
    assert_eq!(seen_by_regional[0].store_id, "s-2");
    assert_eq!(
        ids(&mut c, &regional_s2, "").await,
        vec![id2.clone()],
        "the region's complaint at the regional level"
    );

    // Erasing is the privacy officer's; each erasure records who, when and whom.
    let erase = |token: &str| {
        as_(
            token,
            pb::EraseCustomerContactRequest {
                customer: common::customer("cust-1"),
            },
        )
    };
    for token in [analyst.as_str(), manager_s1.as_str(), GATEWAY_S1.as_str()] {
        let s = c
            .erase_customer_contact(erase(token))
            .await
            .expect_err("erase");
        denied(&s, "authorization");
    }
    let erased = c
        .erase_customer_contact(erase(&privacy))
        .await
        .expect("the privacy officer erases")
        .into_inner();
    assert!(erased.erased);
    let mut conn = redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(ERASURES_KEY)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("xrange");
    assert_eq!(entries.len(), 1, "{entries:?}");
    let fields: std::collections::BTreeMap<_, _> = entries[0].1.iter().cloned().collect();
    assert_eq!(fields["actor"], "privacy_officer:po-1");
    assert_eq!(fields["customer"], "cust-1");
    assert_eq!(fields["at"], erased.erased_at);
    assert!(
        !format!("{entries:?}").contains(common::PHONE),
        "no contact data"
    );

    // History says who did what: every commit names its actor.
    let mut actors = Vec::new();
    for p in 0..3 {
        let end = log
            .end_offset(feedback::EVENTS_TOPIC, p)
            .await
            .expect("end");
        for r in log
            .read(
                feedback::EVENTS_TOPIC,
                p,
                0,
                end as usize + 1,
                Duration::from_millis(500),
            )
            .await
            .expect("read")
        {
            let json: serde_json::Value = serde_json::from_slice(&r.payload).expect("json");
            let actor = json["actor"]
                .as_str()
                .expect("every commit names its actor");
            actors.push(actor.to_owned());
        }
    }
    for who in [
        "store:s-1",
        "store:s-2",
        "store_manager:m-1",
        "store_manager:m-2",
    ] {
        assert!(actors.iter().any(|a| a == who), "{who} in {actors:?}");
    }

    drop((owner_watch, regional_watch));
    tokio::time::timeout(Duration::from_secs(10), running.stop())
        .await
        .expect("stops in time")
        .expect("stop");
}
