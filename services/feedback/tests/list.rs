//! ListComplaints through a real tonic client, over the embedded log and a real Redis:
//! complaints across stores, severities (a critical one starts at the regional manager),
//! statuses and levels (escalated by hand, one breached at the owner); every filter, paging
//! that returns each match once, bad tokens and sizes naming the field, and a replay into
//! an empty Redis that lists the same. Each test files the same six complaints
//! ([`Listed::start`]) on its own Redis.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use churnguard_domain::feedback::Level;
use churnguard_domain::feedback::calendar::{CalendarConfig, WeekHours};
use churnguard_domain::feedback::complaint::{ClockRun, ComplaintEvent, Context, SlaClock};
use churnguard_domain::feedback::sla::{Directory, DirectoryConfig, RegionEntry, StoreEntry};
use churnguard_domain::ids::ComplaintId;
use churnguard_eventlog::EventLog;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_proto::feedback::v1 as pb;
use churnguard_proto::feedback::v1::feedback_client::FeedbackClient;
use churnguard_redis::RedisConnection;
use churnguard_testkit::{RedisServer, init_test_logging};
use churnguard_vault::{Kek, RedisKeyStore, Vault};
use feedback::api::FeedbackApi;
use feedback::app::{ApiServer, Running};
use feedback::journal::Commit;
use feedback::projection::Projection;
use feedback::{Complaints, EVENTS_TOPIC};
use tonic::transport::Channel;

const PARTITIONS: u32 = 3;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0)
        .single()
        .expect("time")
}

/// Stores s-1 and s-2 in the north (regional manager e-20), s-3 in the south (e-30); the
/// owner is e-1.
fn directory() -> Directory {
    let day = vec!["09:00-17:00".to_owned()];
    let store = |manager: &str, region: &str| StoreEntry {
        manager: manager.into(),
        region: region.into(),
        calendar: None,
    };
    DirectoryConfig {
        owner: "e-1".into(),
        regions: BTreeMap::from([
            (
                "north".into(),
                RegionEntry {
                    manager: "e-20".into(),
                },
            ),
            (
                "south".into(),
                RegionEntry {
                    manager: "e-30".into(),
                },
            ),
        ]),
        stores: BTreeMap::from([
            ("s-1".into(), store("e-11", "north")),
            ("s-2".into(), store("e-12", "north")),
            ("s-3".into(), store("e-13", "south")),
        ]),
        calendars: BTreeMap::from([(
            "uk".into(),
            CalendarConfig {
                timezone: "Europe/London".into(),
                hours: WeekHours {
                    monday: day.clone(),
                    tuesday: day.clone(),
                    wednesday: day.clone(),
                    thursday: day.clone(),
                    friday: day,
                    ..WeekHours::default()
                },
                holidays: vec![],
            },
        )]),
        default_calendar: "uk".into(),
    }
    .build()
    .expect("directory")
}

fn filing(key: &str, store: &str, severity: pb::Severity) -> pb::FileComplaintRequest {
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
        severity: severity as i32,
        description: "Rude at the till".into(),
        occurred_at: "2026-11-23T08:00:00Z".into(),
    }
}

fn list() -> pb::ListComplaintsRequest {
    pb::ListComplaintsRequest::default()
}

/// Every page of a listing, each `page_size` long: the ids in order.
async fn all_pages(
    client: &mut FeedbackClient<Channel>,
    req: pb::ListComplaintsRequest,
) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut token = String::new();
    loop {
        let page = client
            .list_complaints(pb::ListComplaintsRequest {
                page_token: token,
                ..req.clone()
            })
            .await
            .expect("list")
            .into_inner();
        pages += 1;
        assert!(pages < 100, "paging does not end");
        ids.extend(page.complaints.into_iter().map(|c| c.complaint_id));
        if page.next_page_token.is_empty() {
            return (ids, pages);
        }
        token = page.next_page_token;
    }
}

async fn ids(client: &mut FeedbackClient<Channel>, req: pb::ListComplaintsRequest) -> Vec<String> {
    let (ids, pages) = all_pages(client, req).await;
    assert_eq!(pages, 1, "a default page holds every match here");
    ids
}

/// The list indexes and the per-customer complaint hashes as Redis holds them.
async fn list_indexes(redis: &RedisServer) -> BTreeMap<String, BTreeMap<String, String>> {
    common::hashes(redis, &["fl:*", "fu:*"]).await
}

// ---------------------------------------------------------------------------------
// The shared set-up: six complaints in every state, and what their listing must be.

/// The six complaints' ids, a to f as [`Listed::start`] files them.
#[derive(Clone)]
struct Filed {
    a: String,
    b: String,
    c: String,
    d: String,
    e: String,
    f: String,
}

/// The API on a fresh Redis and embedded log, with the six complaints filed and moved on.
struct Listed {
    _dir: tempfile::TempDir,
    redis: RedisServer,
    log: Arc<EmbeddedLog>,
    projection: Projection,
    running: Running,
    client: FeedbackClient<Channel>,
    ids: Filed,
    /// The level complaint c had when it was filed.
    c_filed_level: i32,
}

impl Listed {
    /// Starts the API and files, acknowledges, resolves, escalates and breaches the six
    /// complaints a to f.
    async fn start() -> Self {
        init_test_logging();
        let dir = tempfile::tempdir().expect("dir");
        let redis = RedisServer::start();
        let log = Arc::new(EmbeddedLog::open(dir.path()).expect("log"));
        log.ensure_topic(EVENTS_TOPIC, PARTITIONS)
            .await
            .expect("topic");
        let clock = Arc::new(Mutex::new(t0()));
        let now = {
            let clock = clock.clone();
            Arc::new(move || *clock.lock().expect("clock"))
        };
        let set_clock = |minutes: i64| {
            *clock.lock().expect("clock") = t0() + TimeDelta::minutes(minutes);
        };
        let conn = RedisConnection::single(&redis.url()).await.expect("redis");
        let projection = Projection::new(conn.clone(), EVENTS_TOPIC, PARTITIONS);
        let complaints = Arc::new(Complaints::new(
            log.clone(),
            projection.clone(),
            Context::default(),
            now,
        ));
        let vault = Arc::new(Vault::new(
            Kek::from_bytes([7; 32]),
            RedisKeyStore::new(conn.clone()),
        ));
        let api = FeedbackApi::new(complaints, vault, conn).with_directory(directory());
        let running = ApiServer::bind("127.0.0.1:0", api)
            .await
            .expect("bind")
            .with_shutdown_grace(Duration::from_secs(2))
            .spawn();
        let mut client = FeedbackClient::connect(running.endpoint())
            .await
            .expect("connect");

        // a: s-1 major, open at the store manager (e-11).
        // b: s-2 minor, acknowledged at the store manager (e-12).
        // c: s-1 critical, open at the regional manager (e-20).
        // d: s-3 moderate, escalated by hand to the regional manager (e-30).
        // e: s-1 minor, filed the same minute as d, resolved at the store manager (e-11).
        // f: s-2 major, escalated by hand twice to the owner (e-1), then breached there.
        let mut file = async |key: &str, minute: i64, store: &str, severity: pb::Severity| {
            set_clock(minute);
            client
                .file_complaint(filing(key, store, severity))
                .await
                .expect("file")
                .into_inner()
                .complaint
                .expect("summary")
        };
        let a = file("a", 0, "s-1", pb::Severity::Major).await;
        let b = file("b", 1, "s-2", pb::Severity::Minor).await;
        let c = file("c", 2, "s-1", pb::Severity::Critical).await;
        let d = file("d", 3, "s-3", pb::Severity::Moderate).await;
        let e = file("e", 3, "s-1", pb::Severity::Minor).await;
        let f = file("f", 4, "s-2", pb::Severity::Major).await;
        let c_filed_level = c.level;
        let [a, b, c, d, e, f] = [a, b, c, d, e, f].map(|s| s.complaint_id);
        set_clock(10);

        client
            .acknowledge_complaint(pb::AcknowledgeComplaintRequest {
                complaint_id: b.clone(),
                expected_version: Some(1),
                idempotency_key: String::new(),
                method: pb::ContactMethod::Phone as i32,
                note: "Called".into(),
            })
            .await
            .expect("acknowledge b");
        client
            .acknowledge_complaint(pb::AcknowledgeComplaintRequest {
                complaint_id: e.clone(),
                expected_version: Some(1),
                idempotency_key: String::new(),
                method: pb::ContactMethod::Phone as i32,
                note: "Called".into(),
            })
            .await
            .expect("acknowledge e");
        client
            .resolve_complaint(pb::ResolveComplaintRequest {
                complaint_id: e.clone(),
                expected_version: None,
                idempotency_key: String::new(),
                remedies: vec![pb::Remedy::Apology as i32],
                summary: "Apologised".into(),
            })
            .await
            .expect("resolve e");
        for (id, times) in [(&d, 1), (&f, 2)] {
            for i in 0..times {
                client
                    .escalate_complaint(pb::EscalateComplaintRequest {
                        complaint_id: id.clone(),
                        expected_version: None,
                        idempotency_key: String::new(),
                        reason: format!("escalation {i}"),
                    })
                    .await
                    .expect("escalate");
            }
        }
        // The owner's resolution clock on f runs out: the breach the SLA timers would record.
        let at = t0() + TimeDelta::hours(30);
        let breach = Commit {
            complaint_id: ComplaintId::parse(f.clone()).expect("id"),
            base_version: 3,
            commit_id: "breach-f".into(),
            idempotency_key: None,
            events: vec![ComplaintEvent::SlaBreached {
                run: ClockRun {
                    clock: SlaClock::Resolution,
                    level: Level::Owner,
                    started_at: t0() + TimeDelta::minutes(10),
                },
                due_at: at,
                at,
            }],
        };
        for r in log
            .append(EVENTS_TOPIC, vec![breach.to_record(at, None)])
            .await
        {
            r.expect("append the breach");
        }
        Self {
            _dir: dir,
            redis,
            log,
            projection,
            running,
            client,
            ids: Filed { a, b, c, d, e, f },
            c_filed_level,
        }
    }
}

impl Filed {
    /// Each complaint with its priority score and the minute it was filed. The listing
    /// puts the highest priority first, then the oldest filed, then by id. All six are cust-1's
    /// complaints about the staff, none with a churn signal: severity (minor 0, moderate
    /// 25, major 50, critical 100) plus 5 per complaint filed before (at most 4) and 10
    /// for the same touchpoint again. d and e were filed the same minute: the smaller id
    /// counts as the earlier.
    fn expected(&self) -> Vec<(&String, u32, i64)> {
        let Filed { a, b, c, d, e, f } = self;
        let d_first = d < e;
        vec![
            (a, 50, 0),
            (b, 15, 1),
            (c, 120, 2),
            (d, 25 + if d_first { 25 } else { 30 }, 3),
            (e, if d_first { 30 } else { 25 }, 3),
            (f, 80, 4),
        ]
    }

    /// Every complaint in the listing's order.
    fn everything(&self) -> Vec<String> {
        let mut ranked = self.expected();
        ranked
            .sort_by_key(|(id, score, minute)| (std::cmp::Reverse(*score), *minute, (*id).clone()));
        ranked.iter().map(|(id, _, _)| (*id).clone()).collect()
    }

    /// The `wanted` complaints in the listing's order.
    fn only(&self, wanted: &[&String]) -> Vec<String> {
        self.everything()
            .into_iter()
            .filter(|id| wanted.contains(&id))
            .collect()
    }
}

/// A listing of store `s`.
fn store(s: &str) -> pb::ListComplaintsRequest {
    pb::ListComplaintsRequest {
        store_id: s.into(),
        ..list()
    }
}

/// A listing at level `l`.
fn level(l: pb::Level) -> pb::ListComplaintsRequest {
    pb::ListComplaintsRequest {
        level: l as i32,
        ..list()
    }
}

/// A listing of what `h` holds.
fn holder_id(h: &str) -> pb::ListComplaintsRequest {
    pb::ListComplaintsRequest {
        holder_id: h.into(),
        ..list()
    }
}

/// A listing of the complaints in any of statuses `s`.
fn statuses(s: &[pb::ComplaintStatus]) -> pb::ListComplaintsRequest {
    pb::ListComplaintsRequest {
        statuses: s.iter().map(|s| *s as i32).collect(),
        ..list()
    }
}

/// A listing of the breached complaints, or of the others.
fn breached(b: bool) -> pb::ListComplaintsRequest {
    pb::ListComplaintsRequest {
        breached: Some(b),
        ..list()
    }
}

/// Each filter alone, and together: a name, the request, and the ids it must list.
fn filter_cases(ids: &Filed) -> Vec<(&'static str, pb::ListComplaintsRequest, Vec<String>)> {
    let Filed { a, b, c, d, e, f } = ids.clone();
    let only = |wanted: &[&String]| ids.only(wanted);
    use pb::ComplaintStatus as S;
    vec![
        ("store s-1", store("s-1"), only(&[&a, &c, &e])),
        ("store s-2", store("s-2"), only(&[&b, &f])),
        ("store s-9", store("s-9"), vec![]),
        (
            "store manager",
            level(pb::Level::StoreManager),
            only(&[&a, &b, &e]),
        ),
        (
            "regional manager",
            level(pb::Level::RegionalManager),
            only(&[&c, &d]),
        ),
        ("owner", level(pb::Level::Owner), only(&[&f])),
        ("holder e-11", holder_id("e-11"), only(&[&a, &e])),
        ("holder e-12", holder_id("e-12"), only(&[&b])),
        ("holder e-20", holder_id("e-20"), only(&[&c])),
        ("holder e-30", holder_id("e-30"), only(&[&d])),
        ("holder e-1", holder_id("e-1"), only(&[&f])),
        ("holder e-13", holder_id("e-13"), vec![]),
        ("open", statuses(&[S::Open]), only(&[&a, &c, &d, &f])),
        (
            "acknowledged or resolved",
            statuses(&[S::Acknowledged, S::Resolved]),
            only(&[&b, &e]),
        ),
        ("waiting", statuses(&[S::WaitingOnCustomer]), vec![]),
        ("breached", breached(true), only(&[&f])),
        ("not breached", breached(false), only(&[&a, &b, &c, &d, &e])),
        (
            "open at s-1",
            pb::ListComplaintsRequest {
                store_id: "s-1".into(),
                statuses: vec![S::Open as i32],
                ..list()
            },
            only(&[&a, &c]),
        ),
        (
            "north's regional manager, not breached",
            pb::ListComplaintsRequest {
                holder_id: "e-20".into(),
                level: pb::Level::RegionalManager as i32,
                breached: Some(false),
                ..list()
            },
            only(&[&c]),
        ),
    ]
}

// ---------------------------------------------------------------------------------
// The behaviours.

/// A critical complaint is filed straight at the regional manager.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_critical_complaint_starts_at_the_regional_manager() {
    let l = Listed::start().await;
    assert_eq!(l.c_filed_level, pb::Level::RegionalManager as i32);
    l.running.stop().await.expect("stop");
}

/// Without a filter every complaint is listed on one page, by priority, then oldest filed,
/// then id; each summary is GetComplaint's plus the holder, its priority the sum of its
/// points.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_filter_everything_is_listed_by_priority_with_its_holder() {
    let l = Listed::start().await;
    let mut client = l.client.clone();
    let Filed { a, b, c, d, e, f } = l.ids.clone();
    let expected = l.ids.expected();
    let everything = l.ids.everything();

    // No filter: everything, with summaries as GetComplaint's plus the holder.
    let page = client
        .list_complaints(list())
        .await
        .expect("list")
        .into_inner();
    assert!(page.next_page_token.is_empty());
    let got: Vec<_> = page.complaints.iter().map(|s| &s.complaint_id).collect();
    assert_eq!(got, everything.iter().collect::<Vec<_>>());
    let by_id: BTreeMap<_, _> = page
        .complaints
        .iter()
        .map(|s| (s.complaint_id.clone(), s))
        .collect();
    let holder = |id: &String| by_id[id].holder_id.clone();
    assert_eq!(
        [&a, &b, &c, &d, &e, &f].map(holder),
        ["e-11", "e-12", "e-20", "e-30", "e-11", "e-1"]
    );
    assert_eq!(by_id[&f].level, pb::Level::Owner as i32);
    assert_eq!(by_id[&f].version, 4);
    assert!(by_id[&f].breached);
    assert_eq!(by_id[&e].status, pb::ComplaintStatus::Resolved as i32);
    assert_eq!(by_id[&b].status, pb::ComplaintStatus::Acknowledged as i32);
    assert_eq!(by_id[&c].severity, pb::Severity::Critical as i32);
    assert_eq!(by_id[&a].filed_at, "2026-11-23T10:00:00Z");
    for (id, score, _) in &expected {
        let p = by_id[*id].priority.expect("a priority");
        assert_eq!(p.score, *score, "priority of {id}");
        assert_eq!(
            p.score,
            p.severity_points + p.value_points + p.churn_points + p.incident_points
        );
    }
    assert_eq!(by_id[&f].priority.map(|p| p.incident_points), Some(30));
    l.running.stop().await.expect("stop");
}

/// Each filter (store, level, holder, statuses, breached) alone and together lists exactly
/// the matching complaints, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_filter_alone_and_together_lists_the_matches() {
    let l = Listed::start().await;
    let mut client = l.client.clone();
    let cases = filter_cases(&l.ids);
    for (name, req, want) in &cases {
        assert_eq!(&ids(&mut client, req.clone()).await, want, "{name}");
    }
    l.running.stop().await.expect("stop");
}

/// Paging returns every match once, in order, the last page without a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_return_every_match_once_in_order() {
    let l = Listed::start().await;
    let mut client = l.client.clone();
    let Filed { a, c, d, e, f, .. } = l.ids.clone();
    let everything = l.ids.everything();
    let only = |wanted: &[&String]| l.ids.only(wanted);
    use pb::ComplaintStatus as S;

    // Pages of two: every match once, in order, the last page without a token.
    let (paged, pages) = all_pages(
        &mut client,
        pb::ListComplaintsRequest {
            page_size: 2,
            ..list()
        },
    )
    .await;
    assert_eq!(paged, everything);
    assert_eq!(pages, 3);
    let (paged, pages) = all_pages(
        &mut client,
        pb::ListComplaintsRequest {
            page_size: 2,
            ..statuses(&[S::Open])
        },
    )
    .await;
    assert_eq!(paged, only(&[&a, &c, &d, &f]));
    assert_eq!(pages, 2);
    let (paged, _) = all_pages(
        &mut client,
        pb::ListComplaintsRequest {
            page_size: 1,
            ..store("s-1")
        },
    )
    .await;
    assert_eq!(paged, only(&[&a, &c, &e]));
    l.running.stop().await.expect("stop");
}

/// Bad page tokens, page sizes, levels and statuses are refused naming the field; the
/// largest page is allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_tokens_sizes_levels_and_statuses_name_the_field() {
    let l = Listed::start().await;
    let mut client = l.client.clone();
    let everything = l.ids.everything();
    use pb::ComplaintStatus as S;

    // Bad input names the field.
    for token in ["garbage", "12:", ":abc", "x:abc", "12:not an id!"] {
        let s = client
            .list_complaints(pb::ListComplaintsRequest {
                page_token: token.into(),
                ..list()
            })
            .await
            .expect_err("bad token");
        assert_eq!(common::bad_fields(&s), ["page_token"], "{token}");
    }
    let s = client
        .list_complaints(pb::ListComplaintsRequest {
            page_size: 1001,
            ..list()
        })
        .await
        .expect_err("too big a page");
    assert_eq!(common::bad_fields(&s), ["page_size"]);
    let s = client
        .list_complaints(pb::ListComplaintsRequest { level: 9, ..list() })
        .await
        .expect_err("no such level");
    assert_eq!(common::bad_fields(&s), ["level"]);
    let s = client
        .list_complaints(pb::ListComplaintsRequest {
            statuses: vec![S::Open as i32, 9],
            ..list()
        })
        .await
        .expect_err("no such status");
    assert_eq!(common::bad_fields(&s), ["statuses"]);
    let most = client
        .list_complaints(pb::ListComplaintsRequest {
            page_size: 1000,
            ..list()
        })
        .await
        .expect("the largest page");
    assert_eq!(most.into_inner().complaints.len(), everything.len());
    l.running.stop().await.expect("stop");
}

/// After all six complaints' changes, a replay of the log into an empty Redis rebuilds the
/// list indexes exactly, and every listing is the same as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_into_an_empty_redis_lists_the_same() {
    let Listed {
        _dir,
        redis,
        log,
        projection,
        running,
        mut client,
        ids: filed,
        c_filed_level: _,
    } = Listed::start().await;
    let cases = filter_cases(&filed);
    // ListComplaints catches the read model up with the log first: the listings that come
    // before the replay in the scenario project the breach appended to the log directly.
    client.list_complaints(list()).await.expect("list");

    // A replay into an empty Redis rebuilds the index and lists the same.
    let indexes = list_indexes(&redis).await;
    // Six list entries, and the six complaints in cust-1's hashes.
    assert_eq!(indexes.values().map(BTreeMap::len).sum::<usize>(), 12);
    let before = client
        .list_complaints(list())
        .await
        .expect("list")
        .into_inner();
    common::flush(&redis).await;
    assert!(list_indexes(&redis).await.is_empty());
    for p in 0..PARTITIONS {
        projection
            .catch_up(log.as_ref(), p, None)
            .await
            .expect("replay");
    }
    assert_eq!(list_indexes(&redis).await, indexes);
    let after = client
        .list_complaints(list())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(after, before);
    for (name, req, want) in &cases {
        assert_eq!(
            &ids(&mut client, req.clone()).await,
            want,
            "{name} after replay"
        );
    }
    running.stop().await.expect("stop");
}
