//! Defector outreach end to end, on the embedded log and on a Kafka-protocol broker
//! (Tansu) with a real Redis, through the service as its binary builds it: churn signals
//! published on `churn.signals.v1` open cases with business-time deadlines, a redelivered
//! or re-read signal opens nothing twice, ListOutreach filters and pages by due time,
//! RecordOutreach closes cases, and GetDefectionReasons sums the reasons and the value
//! lost per store, together with the touchpoints complaints named. Bad input names its
//! field and writes nothing; replaying the log into an empty Redis rebuilds the same
//! outreach read model. One test per behaviour and log, each on its own Redis (and broker)
//! and set up by the steps of [`Outreach`] that come before its behaviour.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use churnguard_domain::envelope::{CONTENT_TYPE, Envelope};
use churnguard_domain::signal::ChurnStateChanged;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_eventlog::{EventLog, Header, OutgoingRecord};
use churnguard_kafka::{KafkaLog, KafkaSettings};
use churnguard_proto::feedback::v1 as pb;
use churnguard_proto::feedback::v1::feedback_client::FeedbackClient;
use churnguard_redis::RedisConnection;
use churnguard_runtime::Clock;
use churnguard_testkit::{RedisServer, Tansu, init_test_logging};
use churnguard_vault::Kek;
use feedback::EVENTS_TOPIC;
use feedback::config::Settings;
use feedback::outreach::OPENER;
use feedback::projection::Projection;
use feedback::{App, Running};
use tonic::Code;
use tonic::transport::Channel;

const PARTITIONS: u32 = 3;
const SIGNALS: &str = "churn.signals.v1";
/// The read model's keys: complaints, their list index and per-customer hashes, outreach
/// cases, their list index and the reasons counters.
const READ_MODEL: &[&str] = &["fc:*", "fl:*", "fu:*", "fo:*", "fol:*", "fr:*"];

/// Monday 23 November 2026, 10:00 in London (UTC in winter); the default calendar is
/// open Monday to Saturday 09:00-18:00.
fn monday_ten() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0)
        .single()
        .expect("time")
}

/// A clock the test moves.
struct TestClock(Arc<AtomicI64>);

impl TestClock {
    fn new(at: DateTime<Utc>) -> Self {
        Self(Arc::new(AtomicI64::new(at.timestamp())))
    }

    fn set(&self, at: DateTime<Utc>) {
        self.0.store(at.timestamp(), Ordering::SeqCst);
    }

    fn clock(&self) -> Clock {
        let secs = self.0.clone();
        Arc::new(move || {
            Utc.timestamp_opt(secs.load(Ordering::SeqCst), 0)
                .single()
                .unwrap_or_default()
        })
    }
}

struct Harness<L> {
    log: Arc<L>,
    running: Running,
    client: FeedbackClient<Channel>,
    clock: TestClock,
}

async fn start<L: EventLog + 'static>(log: Arc<L>, redis: &RedisServer) -> Harness<L> {
    let mut settings = Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        timer_interval_ms: 200,
        shutdown_grace_ms: 2_000,
        ..Settings::default()
    };
    settings.redis.url = redis.url();
    settings.topics.partitions = PARTITIONS;
    let clock = TestClock::new(monday_ten());
    let running = App::build_with_clock(
        settings,
        log.clone(),
        Kek::from_bytes([5; 32]),
        clock.clock(),
    )
    .await
    .expect("builds")
    .spawn();
    let client = FeedbackClient::connect(running.endpoint())
        .await
        .expect("connect");
    Harness {
        log,
        running,
        client,
        clock,
    }
}

fn signal(
    customer: &str,
    store: Option<&str>,
    previous: &str,
    state: &str,
    value: f64,
) -> Envelope<ChurnStateChanged> {
    ChurnStateChanged {
        customer: customer.into(),
        store_id: store.map(str::to_owned),
        previous: previous.into(),
        state: state.into(),
        rules: vec!["overdue".into()],
        p_alive: 0.1,
        clv: value * 3.0,
        value_at_risk: value,
        as_of: NaiveDate::from_ymd_opt(2026, 11, 22).expect("day"),
    }
    .into_envelope()
}

/// Publishes on the signals topic as churn scoring does: keyed by customer, CloudEvents.
async fn publish<L: EventLog>(log: &L, payloads: Vec<(String, Vec<u8>)>) {
    let records = payloads
        .into_iter()
        .map(|(key, payload)| OutgoingRecord {
            key: key.into_bytes(),
            payload,
            headers: vec![Header::new("content-type", CONTENT_TYPE)],
            timestamp_ms: monday_ten().timestamp_millis(),
        })
        .collect();
    for r in log.append(SIGNALS, records).await {
        r.expect("published");
    }
}

async fn list(
    client: &mut FeedbackClient<Channel>,
    req: pb::ListOutreachRequest,
) -> Vec<pb::OutreachCase> {
    client
        .list_outreach(req)
        .await
        .expect("list")
        .into_inner()
        .cases
}

fn ids(cases: &[pb::OutreachCase]) -> Vec<String> {
    cases.iter().map(|c| c.case_id.clone()).collect()
}

/// Waits until ListOutreach shows `n` cases.
async fn until_listed(client: &mut FeedbackClient<Channel>, n: usize) -> Vec<pb::OutreachCase> {
    let started = Instant::now();
    loop {
        let cases = list(client, pb::ListOutreachRequest::default()).await;
        if cases.len() >= n {
            return cases;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{} of {n} cases opened",
            cases.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn record(
    case_id: &str,
    key: &str,
    reason: pb::DefectionReason,
    outcome: pb::OutreachOutcome,
) -> pb::RecordOutreachRequest {
    pb::RecordOutreachRequest {
        case_id: case_id.into(),
        expected_version: None,
        idempotency_key: key.into(),
        reason: reason as i32,
        free_text: String::new(),
        outcome: outcome as i32,
        method: pb::ContactMethod::Phone as i32,
    }
}

async fn reasons(
    client: &mut FeedbackClient<Channel>,
    store: &str,
    from: &str,
    to: &str,
) -> Result<Vec<pb::DefectionReasonRow>, tonic::Status> {
    client
        .get_defection_reasons(pb::GetDefectionReasonsRequest {
            store_id: store.into(),
            from_date: from.into(),
            to_date: to.into(),
        })
        .await
        .map(|r| r.into_inner().rows)
}

fn row(store: &str, cause: pb::defection_reason_row::Cause) -> pb::DefectionReasonRow {
    pb::DefectionReasonRow {
        store_id: store.into(),
        cause: Some(cause),
        ..Default::default()
    }
}

fn reason(r: pb::DefectionReason) -> pb::defection_reason_row::Cause {
    pb::defection_reason_row::Cause::Reason(r as i32)
}

/// The end offsets of every partition of the events topic.
async fn ends<L: EventLog>(log: &L) -> Vec<u64> {
    let mut all = Vec::new();
    for p in 0..PARTITIONS {
        all.push(log.end_offset(EVENTS_TOPIC, p).await.expect("end"));
    }
    all
}

/// The outreach case a signal opens.
fn case(s: &Envelope<ChurnStateChanged>) -> String {
    format!("o-{}", s.id)
}

/// A signal as churn scoring publishes it: its key and its JSON.
fn json(s: &Envelope<ChurnStateChanged>) -> (String, Vec<u8>) {
    (s.data.customer.clone(), s.to_json())
}

/// The defection reasons of the week once every attempt and the complaint are recorded.
fn expected_reasons() -> Vec<pb::DefectionReasonRow> {
    use pb::DefectionReason as R;
    vec![
        pb::DefectionReasonRow {
            defectors: 1,
            lost: 1,
            value_lost_minor_units: 30_000,
            ..row("store-1", reason(R::Price))
        },
        pb::DefectionReasonRow {
            defectors: 1,
            won_back: 1,
            value_saved_minor_units: 10_000,
            ..row("store-1", reason(R::Staff))
        },
        pb::DefectionReasonRow {
            complaints: 1,
            ..row(
                "store-1",
                pb::defection_reason_row::Cause::Touchpoint(pb::Touchpoint::Staff as i32),
            )
        },
        pb::DefectionReasonRow {
            defectors: 1,
            lost: 1,
            value_lost_minor_units: 5_000,
            ..row("store-2", reason(R::Other))
        },
    ]
}

// ---------------------------------------------------------------------------------
// The shared set-up: the scenario's steps, each test taking those before its behaviour.

/// The service on a log and a fresh Redis, with the three cases the first signals open.
struct Outreach<L> {
    redis: RedisServer,
    h: Harness<L>,
    /// The cases of cust-a (defected, store-1), cust-b (at risk, store-1) and cust-c
    /// (defected, store-2).
    a: String,
    b: String,
    cc: String,
    /// ListOutreach once the three cases are open.
    cases: Vec<pb::OutreachCase>,
}

/// What RecordOutreach answered to each attempt of [`Outreach::record_attempts`].
struct Attempts {
    c_not_reached: pb::OutreachCase,
    a_reached: pb::OutreachCase,
    a_lost: pb::OutreachCase,
    b_won_back: pb::OutreachCase,
    b_again: pb::OutreachCase,
    c_lost: pb::OutreachCase,
}

impl<L: EventLog + 'static> Outreach<L> {
    /// Starts the service on `log` and publishes five state changes, one of them twice,
    /// and a record that is no signal; waits until the three cases they open are listed.
    async fn start(log: Arc<L>) -> Self {
        let redis = RedisServer::start();
        let mut h = start(log, &redis).await;
        let c = &mut h.client;

        // Five state changes: three open cases; a return to active and a customer with no
        // home store open none. One signal is delivered twice, and one record is not a
        // signal at all.
        let defected_a = signal("cust-a", Some("store-1"), "active", "defected", 30_000.0);
        let at_risk_b = signal("cust-b", Some("store-1"), "active", "at_risk", 10_000.0);
        let defected_c = signal("cust-c", Some("store-2"), "at_risk", "defected", 5_000.0);
        let back_d = signal("cust-d", Some("store-1"), "at_risk", "active", 0.0);
        let homeless_e = signal("cust-e", None, "active", "defected", 900.0);
        let (a, b, cc) = (case(&defected_a), case(&at_risk_b), case(&defected_c));
        publish(
            h.log.as_ref(),
            vec![
                json(&defected_a),
                ("junk".into(), b"not a churn signal".to_vec()),
                json(&at_risk_b),
                json(&back_d),
                json(&defected_a),
                json(&homeless_e),
                json(&defected_c),
            ],
        )
        .await;

        let cases = until_listed(c, 3).await;
        Self {
            redis,
            h,
            a,
            b,
            cc,
            cases,
        }
    }

    /// The two defectors' cases, due on Tuesday, in case id order.
    fn tuesday(&self) -> Vec<String> {
        let mut tuesday = vec![self.a.clone(), self.cc.clone()];
        tuesday.sort();
        tuesday
    }

    /// Moves the clock to Wednesday noon: both defectors are past due.
    fn wednesday_noon(&self) {
        self.h.clock.set(
            Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
                .single()
                .expect("time"),
        );
    }

    /// Records attempts that close the three cases (c's reason as free text), and retries
    /// b's with the same key.
    async fn record_attempts(&mut self) -> Attempts {
        let (a, b, cc) = (self.a.clone(), self.b.clone(), self.cc.clone());
        let c = &mut self.h.client;
        let got = |r: Result<tonic::Response<pb::RecordOutreachResponse>, tonic::Status>| {
            r.expect("recorded")
                .into_inner()
                .outreach_case
                .expect("case")
        };
        use pb::DefectionReason as R;
        use pb::OutreachOutcome as O;
        let c_not_reached = got(c
            .record_outreach(record(&cc, "c-1", R::Unspecified, O::NotReached))
            .await);
        let a_reached = got(c
            .record_outreach(record(&a, "a-1", R::Price, O::Reached))
            .await);
        let a_lost = got(c
            .record_outreach(record(&a, "a-2", R::Price, O::Lost))
            .await);
        let b_won_back = got(c
            .record_outreach(record(&b, "b-1", R::Staff, O::WonBack))
            .await);
        let b_again = got(c
            .record_outreach(record(&b, "b-1", R::Staff, O::WonBack))
            .await);
        let mut other = record(&cc, "c-2", R::Other, O::Lost);
        other.free_text = "a rival opened next to the station".into();
        let c_lost = got(c.record_outreach(other).await);
        Attempts {
            c_not_reached,
            a_reached,
            a_lost,
            b_won_back,
            b_again,
            c_lost,
        }
    }

    /// Files a minor complaint of cust-b's about staff at store-1.
    async fn file_complaint(&mut self) -> pb::ComplaintSummary {
        let c = &mut self.h.client;
        let filed = c
            .file_complaint(pb::FileComplaintRequest {
                idempotency_key: "complaint-1".into(),
                customer: Some(pb::Customer {
                    kind: Some(pb::customer::Kind::CustomerId("cust-b".into())),
                }),
                contact: Some(pb::ContactDetails {
                    name: "Grace Hopper".into(),
                    phone: "+44 7700 900456".into(),
                    email: String::new(),
                    address: String::new(),
                }),
                store_id: "store-1".into(),
                channel: pb::Channel::Web as i32,
                touchpoint: pb::Touchpoint::Staff as i32,
                severity: pb::Severity::Minor as i32,
                description: "Nobody at the counter".into(),
                occurred_at: "2026-11-25T09:30:00Z".into(),
            })
            .await;
        filed
            .expect("filed")
            .into_inner()
            .complaint
            .expect("summary")
    }

    /// The three cases opened, then on Wednesday noon closed by the attempts, and the
    /// complaint filed: everything recorded on the 25th.
    async fn recorded(log: Arc<L>) -> Self {
        let mut o = Self::start(log).await;
        o.wednesday_noon();
        o.record_attempts().await;
        o.file_complaint().await;
        o
    }

    /// Publishes a defection of cust-g at store-3 and waits for its case (cases a, b and c
    /// are closed: a fresh case for the field checks); returns the case and the events
    /// topic's end offsets.
    async fn open_late_case(&mut self) -> (String, Vec<u64>) {
        let c = &mut self.h.client;
        let late = signal("cust-g", Some("store-3"), "active", "defected", 100.0);
        let g = case(&late);
        publish(self.h.log.as_ref(), vec![json(&late)]).await;
        until_listed(c, 4).await;
        let written = ends(self.h.log.as_ref()).await;
        (g, written)
    }

    /// Sends bad input, open case `g` being the one to act on, and checks that each is
    /// refused naming its field (or as unknown, closed or stale) and that nothing is
    /// appended past `written`.
    async fn refuse_bad_input(&mut self, g: String, written: Vec<u64>) {
        let a = self.a.clone();
        let h = &mut self.h;
        let c = &mut h.client;
        use pb::DefectionReason as R;
        use pb::OutreachOutcome as O;
        let bad = |r: Result<tonic::Response<pb::RecordOutreachResponse>, tonic::Status>| {
            let mut f = common::bad_fields(&r.expect_err("refused"));
            f.sort();
            f
        };
        assert_eq!(
            bad(c
                .record_outreach(record("not an id!", "", R::Price, O::Lost))
                .await),
            ["case_id"]
        );
        assert_eq!(
            bad(c
                .record_outreach(record(&g, "a key", R::Price, O::Lost))
                .await),
            ["idempotency_key"]
        );
        assert_eq!(
            bad(c
                .record_outreach(record(&g, "", R::Unspecified, O::Reached))
                .await),
            ["reason"]
        );
        assert_eq!(
            bad(c.record_outreach(record(&g, "", R::Other, O::Lost)).await),
            ["free_text"]
        );
        let mut nothing = record(&g, "", R::Price, O::Unspecified);
        nothing.method = 0;
        assert_eq!(bad(c.record_outreach(nothing).await), ["method", "outcome"]);
        let mut unknown = record(&g, "", R::Price, O::Lost);
        unknown.reason = 42;
        assert_eq!(bad(c.record_outreach(unknown).await), ["reason"]);
        let s = c
            .record_outreach(record("o-no-such-case", "", R::Price, O::Lost))
            .await
            .expect_err("unknown");
        assert_eq!(s.code(), Code::NotFound);
        let s = c
            .record_outreach(record(&a, "", R::Price, O::Lost))
            .await
            .expect_err("closed");
        assert_eq!(s.code(), Code::FailedPrecondition);
        let mut stale = record(&g, "", R::Price, O::Lost);
        stale.expected_version = Some(7);
        let s = c.record_outreach(stale).await.expect_err("stale");
        assert_eq!(s.code(), Code::Aborted);
        for (req, field) in [
            (
                pb::ListOutreachRequest {
                    status: 9,
                    ..Default::default()
                },
                "status",
            ),
            (
                pb::ListOutreachRequest {
                    page_size: 5_000,
                    ..Default::default()
                },
                "page_size",
            ),
            (
                pb::ListOutreachRequest {
                    page_token: "page two please".into(),
                    ..Default::default()
                },
                "page_token",
            ),
            (
                pb::ListOutreachRequest {
                    store_id: "store 1".into(),
                    ..Default::default()
                },
                "store_id",
            ),
        ] {
            let s = c.list_outreach(req).await.expect_err("refused");
            assert_eq!(common::bad_fields(&s), [field]);
        }
        for (store, from, to, fields) in [
            ("", "yesterday", "", vec!["from_date", "to_date"]),
            ("", "2026-11-25", "2026-11-24", vec!["to_date"]),
            ("", "2025-01-01", "2026-11-24", vec!["to_date"]),
            ("store 1", "2026-11-25", "2026-11-25", vec!["store_id"]),
        ] {
            let s = reasons(c, store, from, to).await.expect_err("refused");
            assert_eq!(common::bad_fields(&s), fields, "{store:?} {from} {to}");
        }
        assert_eq!(ends(h.log.as_ref()).await, written, "nothing appended");
    }

    /// Makes the opener read every signal again, as after losing its checkpoints, and
    /// waits until it has read all eight.
    async fn read_the_signals_again(&self) {
        let redis = &self.redis;
        let mut conn = redis::Client::open(redis.url())
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("conn");
        for p in 0..PARTITIONS {
            let _: () = redis::cmd("DEL")
                .arg(churnguard_redis::checkpoint_key(OPENER, SIGNALS, p))
                .query_async(&mut conn)
                .await
                .expect("del");
        }
        let started = Instant::now();
        loop {
            let mut back = 0;
            for p in 0..PARTITIONS {
                let k: Option<u64> = redis::cmd("GET")
                    .arg(churnguard_redis::checkpoint_key(OPENER, SIGNALS, p))
                    .query_async(&mut conn)
                    .await
                    .expect("get");
                back += k.unwrap_or(0);
            }
            if back == 8 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "re-read {back} of 8"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Everything: [`Self::recorded`], the late case, the bad input, and the signals read
    /// again; returns the events topic's end offsets after the late case.
    async fn everything(log: Arc<L>) -> (Self, Vec<u64>) {
        let mut o = Self::recorded(log).await;
        let (g, written) = o.open_late_case().await;
        o.refuse_bad_input(g, written.clone()).await;
        o.read_the_signals_again().await;
        (o, written)
    }

    async fn stop(self) {
        self.h.running.stop().await.expect("stop");
    }
}

// ---------------------------------------------------------------------------------
// The behaviours, each run on both logs by `on_both_logs!` below.

/// Signals open one case per defector or customer at risk with a home store, none for a
/// return to active, a redelivery or a record that is no signal; each due after its
/// business hours, one commit each.
async fn signals_open_one_case_each_due_in_business_hours<L: EventLog + 'static>(log: Arc<L>) {
    let o = Outreach::start(log).await;
    let (a, b, cases) = (o.a.clone(), o.b.clone(), o.cases.clone());
    // By due time: the two defectors are due after 9 business hours (Tuesday 10:00), ties
    // by case id; the at-risk customer after 27 (8 on Monday, 9 each on Tuesday and
    // Wednesday, 1 on Thursday).
    let tuesday = o.tuesday();
    assert_eq!(
        ids(&cases),
        [tuesday[0].clone(), tuesday[1].clone(), b.clone()]
    );
    let by_id = |id: &str| {
        cases
            .iter()
            .find(|x| x.case_id == id)
            .expect("listed")
            .clone()
    };
    let case_a = by_id(&a);
    assert_eq!(case_a.customer_id, "cust-a");
    assert_eq!(case_a.home_store_id, "store-1");
    assert_eq!(case_a.defector_state, pb::DefectorState::Defected as i32);
    assert_eq!(case_a.value_at_risk_minor_units, 30_000);
    assert_eq!(case_a.clv_minor_units, 90_000);
    assert_eq!(case_a.opened_at, "2026-11-23T10:00:00Z");
    assert_eq!(case_a.due_at, "2026-11-24T10:00:00Z");
    assert_eq!(
        (case_a.version, case_a.status),
        (1, pb::OutreachStatus::Open as i32)
    );
    assert!(!case_a.overdue);
    let case_b = by_id(&b);
    assert_eq!(case_b.defector_state, pb::DefectorState::AtRisk as i32);
    assert_eq!(case_b.due_at, "2026-11-26T10:00:00Z");
    let opened = ends(o.h.log.as_ref()).await;
    assert_eq!(
        opened.iter().sum::<u64>(),
        3,
        "one commit per case, the duplicate none"
    );
    o.stop().await;
}

/// ListOutreach filters by store, and pages of one give each case once, in order.
async fn list_outreach_filters_by_store_and_pages_each_case_once<L: EventLog + 'static>(
    log: Arc<L>,
) {
    let mut o = Outreach::start(log).await;
    let (a, b, cases) = (o.a.clone(), o.b.clone(), o.cases.clone());
    let c = &mut o.h.client;
    // Filters and paging.
    let store_1 = list(
        c,
        pb::ListOutreachRequest {
            store_id: "store-1".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&store_1), [a.clone(), b.clone()]);
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_outreach(pb::ListOutreachRequest {
                page_size: 1,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("page")
            .into_inner();
        assert!(page.cases.len() <= 1);
        paged.extend(ids(&page.cases));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, ids(&cases), "each case once, in order");
    o.stop().await;
}

/// On Wednesday noon the defectors nobody has reached are overdue, the customer at risk
/// not.
async fn cases_past_due_are_overdue<L: EventLog + 'static>(log: Arc<L>) {
    let mut o = Outreach::start(log).await;
    o.wednesday_noon();
    let (b, tuesday) = (o.b.clone(), o.tuesday());
    let c = &mut o.h.client;
    // Wednesday noon: both defectors are past due and nobody has reached them.
    let overdue = |o: bool| pb::ListOutreachRequest {
        overdue: Some(o),
        ..Default::default()
    };
    assert_eq!(ids(&list(c, overdue(true)).await), tuesday);
    assert_eq!(ids(&list(c, overdue(false)).await), [b.as_str()]);
    o.stop().await;
}

/// RecordOutreach adds attempts: reaching a customer ends the overdue, a final outcome
/// closes the case, a retry with the same key changes nothing, and free text is kept.
async fn record_outreach_adds_attempts_and_closes_cases<L: EventLog + 'static>(log: Arc<L>) {
    let mut o = Outreach::start(log).await;
    o.wednesday_noon();
    let attempts = o.record_attempts().await;
    let c = &mut o.h.client;

    // Attempts.
    let x = attempts.c_not_reached;
    assert!(x.overdue, "still nobody reached");
    let x = attempts.a_reached;
    assert!(!x.overdue);
    assert_eq!((x.version, x.status), (2, pb::OutreachStatus::Open as i32));
    let x = attempts.a_lost;
    assert_eq!(
        (x.version, x.status),
        (3, pb::OutreachStatus::Closed as i32)
    );
    assert_eq!(x.attempts.len(), 2);
    assert_eq!(x.attempts[1].at, "2026-11-25T12:00:00Z");
    let x = attempts.b_won_back;
    assert_eq!(x.status, pb::OutreachStatus::Closed as i32);
    // A retry with the same key changes nothing.
    let again = attempts.b_again;
    assert_eq!(again.version, x.version);
    let x = attempts.c_lost;
    assert_eq!(
        x.attempts[1].free_text,
        "a rival opened next to the station"
    );
    assert_eq!(
        ids(&list(
            c,
            pb::ListOutreachRequest {
                status: pb::OutreachStatus::Open as i32,
                ..Default::default()
            }
        )
        .await),
        Vec::<String>::new()
    );
    o.stop().await;
}

/// A complaint of a customer churn scoring reported at risk is prioritised by their value
/// and standing, and is due on business time.
async fn a_complaint_is_prioritised_by_the_customers_value_and_standing<L: EventLog + 'static>(
    log: Arc<L>,
) {
    let mut o = Outreach::start(log).await;
    o.wednesday_noon();
    o.record_attempts().await;
    let filed = o.file_complaint().await;
    // A complaint at store-1 about staff counts under its touchpoint. It is cust-b's, whom
    // churn scoring reported at risk: its priority counts their value (CLV 300.00: 10
    // points) and their standing (at risk 10, plus 5 for 100.00 at risk) on top of the
    // severity (minor: 0).
    let p = filed.priority.expect("a priority");
    assert_eq!(
        (
            p.score,
            p.severity_points,
            p.value_points,
            p.churn_points,
            p.incident_points
        ),
        (25, 0, 10, 15, 0)
    );
    // Filed Wednesday 12:00; the store manager's 8 business hours to resolve (6 on
    // Wednesday, 2 on Thursday) run out before the minor complaint's 16 to first answer.
    assert_eq!(
        (filed.next_due_at.as_str(), filed.next_due_clock),
        ("2026-11-26T11:00:00Z", pb::SlaClock::Resolution as i32)
    );
    assert_eq!(
        filed.holder_id, "",
        "the default directory names no store managers"
    );
    o.stop().await;
}

/// GetDefectionReasons sums the reasons, the value lost and saved per store, and the
/// complaints per touchpoint, for the store and days asked for.
async fn defection_reasons_sum_per_store_and_period<L: EventLog + 'static>(log: Arc<L>) {
    let mut o = Outreach::recorded(log).await;
    let c = &mut o.h.client;
    let expected = expected_reasons();
    let week = reasons(c, "", "2026-11-23", "2026-11-29")
        .await
        .expect("reasons");
    assert_eq!(week, expected);
    let only_2 = reasons(c, "store-2", "2026-11-25", "2026-11-25")
        .await
        .expect("reasons");
    assert_eq!(only_2, expected[3..]);
    let before = reasons(c, "", "2026-11-01", "2026-11-24")
        .await
        .expect("reasons");
    assert_eq!(
        before,
        Vec::<pb::DefectionReasonRow>::new(),
        "everything was recorded on the 25th"
    );
    o.stop().await;
}

/// Bad input to RecordOutreach, ListOutreach and GetDefectionReasons names its field (an
/// unknown, closed or stale case its own code) and writes nothing.
async fn bad_input_names_the_field_and_writes_nothing<L: EventLog + 'static>(log: Arc<L>) {
    let mut o = Outreach::recorded(log).await;
    // Bad input names the field and writes nothing. Cases a, b and c are closed: a
    // fresh case for the field checks.
    let (g, written) = o.open_late_case().await;
    o.refuse_bad_input(g, written).await;
    o.stop().await;
}

/// The opener reading every signal again (as after losing its checkpoints) opens nothing
/// twice and appends nothing; the reasons are unchanged.
async fn signals_read_again_open_nothing_twice<L: EventLog + 'static>(log: Arc<L>) {
    let (mut o, written) = Outreach::everything(log).await;
    let h = &mut o.h;
    let c = &mut h.client;
    let expected = expected_reasons();
    assert_eq!(ends(h.log.as_ref()).await, written, "nothing opened twice");
    assert_eq!(
        reasons(c, "", "2026-11-23", "2026-11-29")
            .await
            .expect("reasons"),
        expected
    );
    o.stop().await;
}

/// After everything, the log replayed into an empty Redis rebuilds the same outreach read
/// model.
async fn replaying_the_log_into_an_empty_redis_rebuilds_the_read_model<L: EventLog + 'static>(
    log: Arc<L>,
) {
    let (Outreach { redis, h, .. }, _) = Outreach::everything(log).await;
    // Replay: the log into an empty Redis rebuilds the same read model.
    h.running.stop().await.expect("stop");
    let model = common::hashes(&redis, READ_MODEL).await;
    assert!(
        model.keys().any(|k| k.starts_with("fr:")),
        "{:?}",
        model.keys()
    );
    assert_eq!(model.keys().filter(|k| k.starts_with("fo:")).count(), 4);
    common::flush(&redis).await;
    let projection = Projection::new(
        RedisConnection::single(&redis.url()).await.expect("redis"),
        EVENTS_TOPIC,
        PARTITIONS,
    );
    for p in 0..PARTITIONS {
        projection
            .catch_up(h.log.as_ref(), p, None)
            .await
            .expect("replay");
    }
    assert_eq!(common::hashes(&redis, READ_MODEL).await, model);
}

// ---------------------------------------------------------------------------------
// The tests: each behaviour on the embedded log and on a Kafka-protocol broker.

/// An embedded log in a fresh directory (kept while the test runs).
fn embedded_log() -> (tempfile::TempDir, Arc<EmbeddedLog>) {
    init_test_logging();
    let dir = tempfile::tempdir().expect("dir");
    let log = Arc::new(EmbeddedLog::open(dir.path()).expect("log"));
    (dir, log)
}

/// A fresh Tansu broker (kept while the test runs) and a log on it.
fn kafka_log() -> (Tansu, Arc<KafkaLog>) {
    init_test_logging();
    let broker = Tansu::start();
    let log = Arc::new(
        KafkaLog::new(KafkaSettings {
            bootstrap_servers: broker.bootstrap(),
            ..KafkaSettings::default()
        })
        .expect("log"),
    );
    (broker, log)
}

/// For the behaviour `$name`, a module `$name` with two tests: `embedded_log` and `kafka`.
macro_rules! on_both_logs {
    ($($(#[$doc:meta])* $name:ident;)+) => {$(
        $(#[$doc])*
        mod $name {
            /// On the embedded log.
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn embedded_log() {
                let (_dir, log) = super::embedded_log();
                super::$name(log).await;
            }

            /// On a Kafka-protocol broker (Tansu).
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn kafka() {
                let (_broker, log) = super::kafka_log();
                super::$name(log).await;
            }
        }
    )+};
}

on_both_logs! {
    /// Signals open one case each, due in business hours.
    signals_open_one_case_each_due_in_business_hours;
    /// ListOutreach filters by store and pages.
    list_outreach_filters_by_store_and_pages_each_case_once;
    /// Cases past due are overdue.
    cases_past_due_are_overdue;
    /// RecordOutreach adds attempts and closes cases.
    record_outreach_adds_attempts_and_closes_cases;
    /// A complaint is prioritised by the customer's value and standing.
    a_complaint_is_prioritised_by_the_customers_value_and_standing;
    /// GetDefectionReasons sums per store and period.
    defection_reasons_sum_per_store_and_period;
    /// Bad input names the field and writes nothing.
    bad_input_names_the_field_and_writes_nothing;
    /// Signals read again open nothing twice.
    signals_read_again_open_nothing_twice;
    /// Replay into an empty Redis rebuilds the read model.
    replaying_the_log_into_an_empty_redis_rebuilds_the_read_model;
}
