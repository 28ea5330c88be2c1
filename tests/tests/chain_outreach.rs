//! The whole chain end to end on a real Kafka-protocol broker (Tansu) and a real Redis:
//! a simulated chain of stores streams its history of card swipes through
//! purchase-ingest into Kafka, churn-scoring scores the customers and publishes churn
//! signals on `churn.signals.v1`, and feedback's outreach opener turns the signals of
//! customers at risk or gone into defector-outreach cases, read back through the
//! Feedback API's `ListOutreach`. Wired as `churnguard-local` wires it, with Kafka in
//! place of the embedded log.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use churnguard_domain::envelope::Envelope;
use churnguard_domain::signal::ChurnStateChanged;
use churnguard_eventlog::{EventLog, contract};
use churnguard_kafka::{KafkaLog, KafkaSettings};
use churnguard_proto::feedback::v1 as fb;
use churnguard_proto::feedback::v1::feedback_client::FeedbackClient;
use churnguard_testkit::{RedisServer, Tansu, admin, init_test_logging};
use churnguard_vault::Kek;
use purchase_ingest::config::Backend;
use purchase_ingest::simulator::{self, SimStats, SimulatorConfig};

const SIGNALS: &str = "churn.signals.v1";
/// Generous: the chain is small, but a debug build on a busy machine is slow.
const WAIT: Duration = Duration::from_secs(120);
/// Twelve weeks of history: long enough for the policy's 28 + 56 day windows, and for
/// the customers who stop coming partway to be overdue by today.
const HISTORY_DAYS: u32 = 84;

#[tokio::test(flavor = "multi_thread")]
async fn swipes_become_churn_signals_and_outreach_cases_on_kafka() {
    init_test_logging();
    let broker = Tansu::start();
    let redis = RedisServer::start();
    let kafka = |client: &str| {
        KafkaLog::new(KafkaSettings {
            bootstrap_servers: broker.bootstrap(),
            client_id: client.into(),
            ..KafkaSettings::default()
        })
        .expect("kafka log")
    };

    // purchase-ingest, and the chain's history streamed through its gRPC API.
    let mut ingest_settings = purchase_ingest::Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        ..purchase_ingest::Settings::default()
    };
    ingest_settings.log.backend = Backend::Kafka;
    let purchases = ingest_settings.topics.purchases.clone();
    let partitions = ingest_settings.topics.partitions;
    let ingest = purchase_ingest::App::build(ingest_settings.clone(), kafka("purchase-ingest"))
        .await
        .expect("purchase-ingest builds");
    // The services share this process's metrics, as in churnguard-local: one admin
    // endpoint shows them all.
    let admin = ingest.admin_addr().expect("admin_addr asks for one");
    let ingest = ingest.spawn();

    let stats = Arc::new(SimStats::default());
    let chain = SimulatorConfig {
        stores: 2,
        customers_per_store: 100,
        ..SimulatorConfig::default()
    };
    simulator::backfill(ingest.endpoint(), &chain, HISTORY_DAYS, stats.clone())
        .await
        .expect("the history streams through purchase-ingest");
    let (accepted, _, failed) = stats.snapshot();
    assert!(
        accepted > 1_000,
        "the history got through: {accepted} swipes"
    );
    assert_eq!(failed, 0, "no swipe of the history was refused");

    // churn-scoring and feedback, as churnguard-local starts them: ingest's topics,
    // one Redis.
    let mut scoring_settings = churn_scoring::config::Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        shutdown_grace_ms: 5_000,
        timer_interval_ms: 500,
        ..churn_scoring::config::Settings::default()
    };
    scoring_settings.log = ingest_settings.log.clone();
    scoring_settings.topics.purchases = purchases.clone();
    scoring_settings.topics.partitions = partitions;
    scoring_settings.redis.url = redis.url();
    assert_eq!(scoring_settings.topics.signals, SIGNALS);
    let scoring = churn_scoring::App::build(scoring_settings, Arc::new(kafka("churn-scoring")))
        .await
        .expect("churn-scoring builds")
        .spawn();

    let mut feedback_settings = feedback::config::Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        shutdown_grace_ms: 5_000,
        ..feedback::config::Settings::default()
    };
    feedback_settings.log = ingest_settings.log.clone();
    feedback_settings.redis.url = redis.url();
    assert_eq!(feedback_settings.topics.signals, SIGNALS);
    let feedback = feedback::App::build(
        feedback_settings,
        Arc::new(kafka("feedback")),
        Kek::from_bytes([7; 32]),
    )
    .await
    .expect("feedback builds")
    .spawn();

    // Cases appear through the Feedback API: wait until there are some, and every signal
    // of a customer at risk or gone that is in the topic has opened its case.
    let mut client = FeedbackClient::connect(feedback.endpoint())
        .await
        .expect("connect to feedback");
    let reader = kafka("e2e-reader");
    let signal_partitions = reader
        .ensure_topic(SIGNALS, partitions)
        .await
        .expect("signals topic");
    let deadline = tokio::time::Instant::now() + WAIT;
    let cases = loop {
        let signals = read_signals(&reader, signal_partitions).await;
        let cases = list_outreach(&mut client).await;
        let opened: HashSet<&str> = cases.iter().map(|c| c.case_id.as_str()).collect();
        // One case per customer and episode: a signal opens its own case, or escalates
        // (or repeats) the case its customer's episode already has.
        let reached: HashSet<&str> = cases.iter().map(|c| c.customer_id.as_str()).collect();
        let waiting = signals
            .iter()
            .filter(|(id, s)| {
                opens_a_case(s)
                    && s.store_id.is_some()
                    && !opened.contains(format!("o-{id}").as_str())
                    && !reached.contains(s.customer.as_str())
            })
            .count();
        if !cases.is_empty() && waiting == 0 {
            break cases;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "within {WAIT:?}: {} outreach cases, {} churn signals, {waiting} of them at risk \
             or defected without their case ({accepted} swipes ingested)",
            cases.len(),
            signals.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    // Every churn signal in the topic now, by envelope id: each case read above was opened
    // from one of them.
    let signals = read_signals(&reader, signal_partitions).await;
    let mut states: BTreeMap<&str, u32> = BTreeMap::new();
    for s in signals.values() {
        *states.entry(s.state.as_str()).or_default() += 1;
    }

    let mut per_signal = HashSet::new();
    let mut per_state: BTreeMap<&str, u32> = BTreeMap::new();
    for case in &cases {
        let signal_id = case
            .case_id
            .strip_prefix("o-")
            .unwrap_or_else(|| panic!("case id {:?} is o-<signal id>", case.case_id));
        let signal = signals.get(signal_id).unwrap_or_else(|| {
            panic!(
                "case {} has its churn signal in {SIGNALS} ({} signals there)",
                case.case_id,
                signals.len()
            )
        });
        assert!(
            per_signal.insert(signal_id.to_owned()),
            "one case per signal: {signal_id}"
        );
        assert_eq!(case.customer_id, signal.customer, "case {}", case.case_id);
        assert!(
            opens_a_case(signal),
            "case {} opened from a {:?} signal",
            case.case_id,
            signal.state
        );
        // A case opened at risk becomes a defection case when its customer defects while
        // it is open (escalation), so it may carry the later, graver state.
        let expected_states = match signal.state.as_str() {
            "at_risk" => vec![fb::DefectorState::AtRisk, fb::DefectorState::Defected],
            "defected" => vec![fb::DefectorState::Defected],
            other => panic!("case {} opened from a {other:?} signal", case.case_id),
        };
        assert!(
            expected_states
                .iter()
                .any(|s| *s as i32 == case.defector_state),
            "case {}: state {} from a {} signal",
            case.case_id,
            case.defector_state,
            signal.state
        );
        *per_state.entry(signal.state.as_str()).or_default() += 1;
        assert_eq!(
            Some(&case.home_store_id),
            signal.store_id.as_ref(),
            "case {}: the home store is the signal's",
            case.case_id
        );
        assert!(
            case.home_store_id == "store-0" || case.home_store_id == "store-1",
            "case {}: a store of the chain, not {:?}",
            case.case_id,
            case.home_store_id
        );
        let opened_at = DateTime::parse_from_rfc3339(&case.opened_at).unwrap_or_else(|e| {
            panic!("case {} opened_at {:?}: {e}", case.case_id, case.opened_at)
        });
        let due_at = DateTime::parse_from_rfc3339(&case.due_at)
            .unwrap_or_else(|e| panic!("case {} due_at {:?}: {e}", case.case_id, case.due_at));
        assert!(
            due_at > opened_at,
            "case {}: due {due_at} after opened {opened_at}",
            case.case_id
        );
    }
    eprintln!(
        "chain_outreach: {accepted} swipes, {} signals {states:?}, {} cases {per_state:?}",
        signals.len(),
        cases.len()
    );

    ops_see_the_chain(admin, accepted, signals.len(), cases.len()).await;

    drop(client);
    feedback.stop().await.expect("feedback stops cleanly");
    scoring.stop().await.expect("churn-scoring stops cleanly");
    ingest.stop().await.expect("purchase-ingest stops cleanly");
}

/// What `/metrics` says of the run: every swipe accepted is counted once, the scorer
/// applied them and timed each from ingest to its committed state, the signals and cases
/// are counted, Redis is timed, lag is measured, and promtool accepts the text.
async fn ops_see_the_chain(
    admin: std::net::SocketAddr,
    accepted: u64,
    signals: usize,
    cases: usize,
) {
    // The store gauges and lag probes are periodic: scrape until the store gauges are in.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let text = loop {
        let (status, text) = tokio::task::spawn_blocking(move || admin::get(admin, "/metrics"))
            .await
            .expect("scrape");
        assert_eq!(status, 200);
        if text.contains("\nchurnguard_store_customers{") {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no store gauges within 30 s: {text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let total = |series: &str| -> f64 {
        let (name, filter) = series.split_once('{').unwrap_or((series, ""));
        let filter = filter.trim_end_matches('}');
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter(|(s, _)| {
                (s == &name || s.starts_with(&format!("{name}{{"))) && s.contains(filter)
            })
            .filter_map(|(_, v)| v.parse::<f64>().ok())
            .sum()
    };
    let accepted = accepted as f64;
    assert_eq!(
        total("churnguard_ingest_swipes_accepted_total"),
        accepted,
        "{text}"
    );
    assert_eq!(total("churnguard_ingest_swipes_rejected_total"), 0.0);
    assert!(total("churnguard_ingest_publish_duration_seconds_count") > 0.0);
    assert!(total("churnguard_ingest_batch_swipes_sum") >= accepted);
    let applied = total(r#"churnguard_consumer_records_applied_total{consumer="scorer""#);
    assert!(
        applied >= accepted,
        "scorer applied {applied} of {accepted}"
    );
    let scored = total("churnguard_swipe_to_score_seconds_count");
    assert!(
        scored >= accepted,
        "{scored} swipes timed to their score of {accepted}"
    );
    let mean = total("churnguard_swipe_to_score_seconds_sum") / scored;
    assert!(
        mean > 0.0 && mean < WAIT.as_secs_f64(),
        "mean swipe-to-score {mean} s"
    );
    let lag_series = text
        .lines()
        .filter(|l| l.starts_with(r#"churnguard_consumer_lag_records{consumer="scorer""#))
        .count();
    assert!(lag_series > 0, "the scorer's lag is measured");
    assert!(total("churnguard_churn_signals_total") >= signals as f64);
    assert!(
        total("churnguard_store_customers") > 0.0,
        "store gauges are set"
    );
    assert!(total("churnguard_outreach_cases_opened_total") >= cases as f64);
    assert!(total(r#"churnguard_consumer_records_applied_total{consumer="projection""#) > 0.0);
    assert!(total(r#"churnguard_consumer_records_applied_total{consumer="outreach""#) > 0.0);
    assert!(total(r#"churnguard_redis_command_duration_seconds_count{op="EVALSHA""#) > 0.0);
    assert_eq!(total("churnguard_consumer_dead_letters_total"), 0.0);
    admin::assert_promtool_accepts(&text);
    eprintln!(
        "chain_outreach metrics: {accepted} accepted, {applied} applied, mean swipe-to-score \
         {mean:.3} s, {} lag series",
        lag_series
    );
}

/// Whether a signal moves its customer into a state outreach is for.
fn opens_a_case(signal: &ChurnStateChanged) -> bool {
    signal.state == "at_risk" || signal.state == "defected"
}

/// Every churn signal in the topic, by envelope id (a redelivered one counts once).
async fn read_signals(reader: &KafkaLog, partitions: u32) -> HashMap<String, ChurnStateChanged> {
    let mut signals = HashMap::new();
    for p in 0..partitions {
        let end = reader.end_offset(SIGNALS, p).await.expect("end offset");
        for r in contract::read_all(reader, SIGNALS, p, end).await {
            let signal =
                Envelope::<ChurnStateChanged>::decode(&r.payload, ChurnStateChanged::EVENT_TYPE)
                    .expect("every record on the signals topic is a churn signal");
            signals.insert(signal.id, signal.data);
        }
    }
    signals
}

/// Every outreach case, open or closed, paged through.
async fn list_outreach(
    client: &mut FeedbackClient<tonic::transport::Channel>,
) -> Vec<fb::OutreachCase> {
    let mut cases = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_outreach(fb::ListOutreachRequest {
                page_size: 100,
                page_token: token,
                ..Default::default()
            })
            .await
            .expect("ListOutreach")
            .into_inner();
        cases.extend(page.cases);
        if page.next_page_token.is_empty() {
            return cases;
        }
        token = page.next_page_token;
    }
}
