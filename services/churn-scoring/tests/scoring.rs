//! churn-scoring against a real Redis and a real Kafka-protocol broker (Tansu).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use churn_scoring::models::ModelProjection;
use churn_scoring::refit::RefitScope;
use churn_scoring::store::customer_key;
use churn_scoring::{CustomerStore, ScoredSwipe, Scorer};
use churnguard_domain::customer::{Day, day_of, swipe_fingerprint};
use churnguard_domain::models::{BgNbd, Rfm};
use churnguard_domain::{Envelope, partition_for_key};
use churnguard_eventlog::{EventLog, contract};
use churnguard_kafka::{KafkaLog, KafkaSettings};
use churnguard_proto::ingest::v1 as pb;
use churnguard_proto::ingest::v1::purchase_ingest_client::PurchaseIngestClient;
use churnguard_testkit::{RedisCluster, RedisServer, Tansu, init_test_logging};
use common::{HORIZON, PARTITIONS, TOPIC, log_ends, reference, stored, swipes_in_log};
use purchase_ingest::config::Backend;
use purchase_ingest::{App, Settings};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn the_redis_script_matches_the_domain_state_with_duplicates_and_disorder() {
    init_test_logging();
    let redis = RedisServer::start();
    let store = CustomerStore::connect(&redis.url(), TOPIC, HORIZON)
        .await
        .expect("connect");
    script_matches_reference(store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_redis_script_matches_the_domain_state_on_a_three_master_cluster() {
    init_test_logging();
    let cluster = RedisCluster::start();
    let store = CustomerStore::connect_cluster(&cluster.urls(), TOPIC, HORIZON)
        .await
        .expect("connect");
    script_matches_reference(store).await;
}

/// 40 customers, 2,000 swipes over ~200 days, 10 % retried (duplicates), arriving jittered
/// by up to 20 days. Each customer's swipes go to its partition (as the log places them);
/// every partition is applied in uneven batches, each batch twice: the checkpoint makes
/// the repeat a no-op. The result must equal the domain's reference state.
async fn script_matches_reference(store: CustomerStore) {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut swipes = Vec::new();
    for i in 0..2_000u64 {
        let s = ScoredSwipe {
            offset: 0,
            customer: format!("c{}", next() % 40),
            day: 10_000 + (i / 10) as Day - (next() % 20) as Day,
            spend: (next() % 5_000) as i64,
            store: format!("store-{}", next() % 3),
            fingerprint: swipe_fingerprint(&format!("sw-{i}")),
        };
        swipes.push(s.clone());
        if next() % 10 == 0 {
            swipes.push(s);
        }
    }
    for p in 0..PARTITIONS {
        let mut mine: Vec<ScoredSwipe> = swipes
            .iter()
            .filter(|s| partition_for_key(s.customer.as_bytes(), PARTITIONS) == p)
            .cloned()
            .collect();
        for (offset, s) in mine.iter_mut().enumerate() {
            s.offset = offset as u64;
        }
        let mut at = 0;
        while at < mine.len() {
            let n = 1 + (next() % 97) as usize;
            let batch = &mine[at..(at + n).min(mine.len())];
            let end = batch.last().map_or(0, |s| s.offset + 1);
            let from = batch[0].offset;
            store.apply_batch(p, from, batch, end).await.expect("apply");
            let again = store
                .apply_batch(p, from, batch, end)
                .await
                .expect("apply again");
            assert_eq!(again.counted, 0, "a replayed batch changes nothing");
            at += n;
        }
        assert_eq!(
            store.checkpoint(p).await.expect("checkpoint"),
            mine.len() as u64
        );
    }
    assert_eq!(stored(&store).await, reference(&swipes));
}

// ---------------------------------------------------------------------------------

/// The CDNOW sample's calibration rows as swipes: one store, noon UTC on the day.
fn cdnow_swipes() -> Vec<pb::Swipe> {
    let end = NaiveDate::from_ymd_opt(1997, 9, 30).expect("date");
    include_str!("../../../crates/domain/tests/data/CDNOW_sample.txt")
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let date = NaiveDate::parse_from_str(f[2], "%Y%m%d").expect("date");
            (date <= end).then(|| pb::Swipe {
                swipe_id: format!("cdnow-{i}"),
                customer: Some(pb::swipe::Customer::CustomerId(format!("cdnow-{}", f[1]))),
                store_id: "cdnow".into(),
                terminal_id: "web".into(),
                employee_id: "web".into(),
                occurred_at: format!("{}T12:00:00+00:00", date.format("%Y-%m-%d")),
                amount: Some(pb::Amount {
                    minor_units: (f[4].parse::<f64>().expect("dollars") * 100.0).round() as i64,
                    currency: "USD".into(),
                }),
                item_count: f[3].parse().expect("cds"),
            })
        })
        .collect()
}

/// The closed-form summary straight from the raw file (purchases collapsed per day).
fn cdnow_raw_rfm() -> BTreeMap<String, Rfm> {
    let end = NaiveDate::from_ymd_opt(1997, 9, 30).expect("date");
    let mut days: BTreeMap<String, std::collections::BTreeSet<NaiveDate>> = BTreeMap::new();
    for line in include_str!("../../../crates/domain/tests/data/CDNOW_sample.txt").lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let date = NaiveDate::parse_from_str(f[2], "%Y%m%d").expect("date");
        if date <= end {
            days.entry(format!("cdnow-{}", f[1]))
                .or_default()
                .insert(date);
        }
    }
    days.into_iter()
        .map(|(c, d)| {
            let first = *d.iter().next().expect("first");
            let last = *d.iter().last().expect("last");
            let weeks = |x: NaiveDate| (x - first).num_days() as f64 / 7.0;
            (
                c,
                Rfm {
                    x: (d.len() - 1) as f64,
                    t_x: weeks(last),
                    t: weeks(end),
                },
            )
        })
        .collect()
}

async fn send_through_ingest(addr: std::net::SocketAddr, swipes: Vec<pb::Swipe>) {
    let mut client = PurchaseIngestClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let (tx, rx) = mpsc::channel(2);
    let mut answers = client
        .stream_swipes(ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    for batch in swipes.chunks(500) {
        tx.send(pb::StreamSwipesRequest {
            swipes: batch.to_vec(),
            historical: false,
        })
        .await
        .expect("send");
        let answer = answers.message().await.expect("answer").expect("one");
        for r in answer.results {
            assert!(
                matches!(r.outcome, Some(pb::swipe_result::Outcome::Accepted(_))),
                "swipe {} refused: {:?}",
                r.swipe_id,
                r.outcome
            );
        }
    }
}

async fn run_until_caught_up<L: EventLog>(scorer: &Arc<Scorer<L>>) {
    let mut tasks = Vec::new();
    for p in 0..PARTITIONS {
        let scorer = scorer.clone();
        tasks.push(tokio::spawn(async move {
            scorer
                .run_partition(p, CancellationToken::new(), true)
                .await
                .expect("scorer")
        }));
    }
    for t in tasks {
        t.await.expect("partition task");
    }
}

struct Pipeline {
    _broker: Tansu,
    _redis: RedisServer,
    redis_url: String,
    kafka: KafkaSettings,
}

async fn pipeline_with_cdnow() -> Pipeline {
    init_test_logging();
    let broker = Tansu::start();
    let redis = RedisServer::start();
    let kafka = KafkaSettings {
        bootstrap_servers: broker.bootstrap(),
        ..KafkaSettings::default()
    };
    let mut settings = Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        ..Settings::default()
    };
    settings.log.backend = Backend::Kafka;
    settings.topics.partitions = PARTITIONS;
    settings.limits.max_age_days = 100_000;
    let historic_now: DateTime<Utc> = DateTime::parse_from_rfc3339("1997-10-01T00:00:00Z")
        .expect("time")
        .to_utc();
    let app = App::build_with_clock(
        settings,
        KafkaLog::new(kafka.clone()).expect("log"),
        Arc::new(move || historic_now),
    )
    .await
    .expect("ingest")
    .spawn();
    send_through_ingest(app.local_addr(), cdnow_swipes()).await;
    app.stop().await.expect("clean shutdown");
    Pipeline {
        redis_url: redis.url(),
        _broker: broker,
        _redis: redis,
        kafka,
    }
}

async fn scorer(p: &Pipeline) -> (Arc<Scorer<KafkaLog>>, CustomerStore) {
    let store = CustomerStore::connect(&p.redis_url, TOPIC, HORIZON)
        .await
        .expect("redis");
    let log = Arc::new(KafkaLog::new(p.kafka.clone()).expect("log"));
    (
        Arc::new(Scorer::new(log, store.clone(), TOPIC, 2_000)),
        store,
    )
}

fn sig3(v: f64) -> String {
    format!("{v:.2e}")
}

#[tokio::test(flavor = "multi_thread")]
async fn cdnow_through_ingest_kafka_and_scoring_gives_the_published_model() {
    let p = pipeline_with_cdnow().await;
    let (scorer, store) = scorer(&p).await;
    run_until_caught_up(&scorer).await;

    let as_of = day_of(NaiveDate::from_ymd_opt(1997, 9, 30).expect("date"));
    let mut from_redis: BTreeMap<String, Rfm> = BTreeMap::new();
    for p in 0..PARTITIONS {
        for (c, s) in store.partition_customers(p).await.expect("scan") {
            assert_eq!(
                p,
                partition_for_key(c.as_bytes(), PARTITIONS),
                "customer {c} keyed by its partition"
            );
            from_redis.insert(c, s.rfm(as_of));
        }
    }
    let raw = cdnow_raw_rfm();
    assert_eq!(from_redis.len(), 2_357);
    let rfm: Vec<Rfm> = from_redis.values().copied().collect();
    let (m, _) = BgNbd::fit(&rfm).expect("fit");
    assert_eq!(
        [sig3(m.r), sig3(m.alpha), sig3(m.a), sig3(m.b)],
        [sig3(0.243), sig3(4.414), sig3(0.793), sig3(2.426)]
    );
    let mut worst = 0.0f64;
    for (c, want) in &raw {
        let got = from_redis
            .get(c)
            .unwrap_or_else(|| panic!("customer {c} missing"));
        worst = worst.max((m.p_alive(got) - m.p_alive(want)).abs());
    }
    assert!(worst <= 1e-6, "largest P(alive) difference {worst}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flushed_redis_is_rebuilt_from_the_log_and_aborts_at_random_points_change_nothing() {
    let p = pipeline_with_cdnow().await;
    let (scorer, store) = scorer(&p).await;

    // The checker: expected state from the log itself, in log order, per partition.
    let reader = KafkaLog::new(p.kafka.clone()).expect("reader");
    let log_swipes = swipes_in_log(&reader, &log_ends(&reader).await).await;
    let expected = reference(&log_swipes);

    // Abort the scorer at pseudo-random moments, then let it finish.
    for delay_ms in [37u64, 110, 5, 260, 71] {
        let mut tasks = Vec::new();
        for part in 0..PARTITIONS {
            let scorer = scorer.clone();
            tasks.push(tokio::spawn(async move {
                scorer
                    .run_partition(part, CancellationToken::new(), true)
                    .await
            }));
        }
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
    run_until_caught_up(&scorer).await;
    assert_eq!(
        stored(&store).await,
        expected,
        "state after aborts equals a clean pass"
    );

    // Flush everything and rebuild from the log.
    let client = redis::Client::open(p.redis_url.as_str()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut conn)
        .await
        .expect("flush");
    assert!(stored(&store).await.is_empty());
    run_until_caught_up(&scorer).await;
    assert_eq!(
        stored(&store).await,
        expected,
        "a rebuilt Redis equals the clean pass"
    );
    let key = customer_key(partition_for_key(b"cdnow-0001", PARTITIONS), "cdnow-0001");
    let exists: bool = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("exists");
    assert!(exists, "{key}");
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_records_go_to_the_dead_letter_topic_and_the_partition_moves_on() {
    init_test_logging();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(churnguard_eventlog::embedded::EmbeddedLog::open(dir.path()).expect("log"));
    log.ensure_topic(TOPIC, 1).await.expect("topic");
    let redis = RedisServer::start();
    let store = CustomerStore::connect(&redis.url(), TOPIC, HORIZON)
        .await
        .expect("store");
    let now = DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
        .expect("time")
        .to_utc();
    let good = |id: &str| churnguard_eventlog::OutgoingRecord {
        key: b"cust-1".to_vec(),
        payload: churnguard_domain::SwipeDraft {
            swipe_id: id.into(),
            customer: churnguard_domain::CustomerInput::CustomerId("cust-1".into()),
            store_id: "s1".into(),
            terminal_id: "t1".into(),
            employee_id: "e1".into(),
            occurred_at: "2026-11-20T10:00:00+01:00".into(),
            amount_minor_units: 100,
            currency: "EUR".into(),
            item_count: 1,
        }
        .validate(now, &churnguard_domain::SwipeLimits::default(), None)
        .expect("valid")
        .into_envelope()
        .to_json(),
        headers: vec![],
        timestamp_ms: 0,
    };
    let poison = |payload: &str| churnguard_eventlog::OutgoingRecord {
        key: b"cust-1".to_vec(),
        payload: payload.as_bytes().to_vec(),
        headers: vec![churnguard_eventlog::Header::new(
            "content-type",
            "application/json",
        )],
        timestamp_ms: 0,
    };
    let v2 = String::from_utf8(good("sw-v2").payload)
        .expect("utf8")
        .replace("card_swiped.v1", "card_swiped.v2");
    for r in log
        .append(
            TOPIC,
            vec![good("sw-1"), poison("{not json"), poison(&v2), good("sw-2")],
        )
        .await
    {
        r.expect("append");
    }
    let scorer = Scorer::new(log.clone(), store.clone(), TOPIC, 100);
    scorer.prepare().await.expect("dlq topic");
    let stats = scorer
        .run_partition(0, CancellationToken::new(), true)
        .await
        .expect("scorer");
    assert_eq!((stats.counted, stats.poison), (2, 2));
    assert_eq!(
        store.checkpoint(0).await.expect("checkpoint"),
        4,
        "the partition moved on"
    );
    let state = store
        .customer(0, "cust-1")
        .await
        .expect("read")
        .expect("state");
    assert_eq!(state.days.values().map(|b| b.visits).sum::<u32>(), 2);

    let dlq = churn_scoring::dead_letter_topic(TOPIC);
    let letters = contract::read_all(log.as_ref(), &dlq, 0, 2).await;
    assert_eq!(letters[0].payload, b"{not json");
    assert_eq!(letters[1].payload, v2.as_bytes());
    assert_eq!(
        letters[0].header("dlq-origin-topic"),
        Some(TOPIC.as_bytes())
    );
    assert_eq!(letters[0].header("dlq-origin-offset"), Some(&b"1"[..]));
    assert_eq!(letters[1].header("dlq-origin-offset"), Some(&b"2"[..]));
    assert_eq!(
        letters[0].header("content-type"),
        Some(&b"application/json"[..]),
        "original headers kept"
    );
    assert!(
        String::from_utf8_lossy(letters[1].header("dlq-reason").expect("reason"))
            .contains("card_swiped.v2")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cdnow_scored_into_a_three_master_cluster_equals_the_checker() {
    let p = pipeline_with_cdnow().await;
    let cluster = RedisCluster::start();
    let store = CustomerStore::connect_cluster(&cluster.urls(), TOPIC, HORIZON)
        .await
        .expect("cluster");
    let log = Arc::new(KafkaLog::new(p.kafka.clone()).expect("log"));
    let scorer = Arc::new(Scorer::new(log.clone(), store.clone(), TOPIC, 2_000));
    run_until_caught_up(&scorer).await;

    for part in 0..PARTITIONS {
        let end = log.end_offset(TOPIC, part).await.expect("end");
        assert_eq!(store.checkpoint(part).await.expect("checkpoint"), end);
    }
    let log_swipes = swipes_in_log(log.as_ref(), &log_ends(log.as_ref()).await).await;
    let got = stored(&store).await;
    assert_eq!(got.len(), 2_357);
    assert_eq!(got, reference(&log_swipes));
}

#[tokio::test(flavor = "multi_thread")]
async fn refits_are_versioned_stored_and_announced() {
    let p = pipeline_with_cdnow().await;
    let (scorer, store) = scorer(&p).await;
    run_until_caught_up(&scorer).await;
    let log = KafkaLog::new(p.kafka.clone()).expect("log");
    log.ensure_topic("churn.models.v1", 1).await.expect("topic");
    let as_of = day_of(NaiveDate::from_ymd_opt(1997, 9, 30).expect("date"));
    let now = Utc::now();
    let log = Arc::new(log);
    let models = ModelProjection::new(log.clone(), store.connection(), "churn.models.v1");
    // Every customer: CDNOW's 2,357 are fewer than the default sample anyway.
    let scope = RefitScope {
        partitions: PARTITIONS,
        sample: 0,
    };

    let first = churn_scoring::refit::refit(&store, &models, log.as_ref(), scope, as_of, now)
        .await
        .expect("refit");
    assert_eq!(first.version, 1);
    assert_eq!(first.customers, 2_357);
    let b = first.bg_nbd;
    assert_eq!(
        [sig3(b.r), sig3(b.alpha), sig3(b.a), sig3(b.b)],
        [sig3(0.243), sig3(4.414), sig3(0.793), sig3(2.426)]
    );
    let g = first.gamma_gamma.expect("gamma-gamma");
    assert_eq!(
        [sig3(g.p), sig3(g.q), sig3(g.gamma)],
        [sig3(6.25), sig3(3.74), sig3(15.44)]
    );

    let second = churn_scoring::refit::refit(&store, &models, log.as_ref(), scope, as_of, now)
        .await
        .expect("refit");
    assert_eq!(second.version, 2);
    assert_eq!(
        store.current_model().await.expect("read"),
        Some(second.clone())
    );

    let announced: Vec<u64> = contract::read_all(log.as_ref(), "churn.models.v1", 0, 2)
        .await
        .iter()
        .map(|r| {
            Envelope::<churnguard_domain::models::FittedModel>::decode(
                &r.payload,
                churnguard_domain::models::FittedModel::EVENT_TYPE,
            )
            .expect("a model_fitted event")
            .data
            .version
        })
        .collect();
    assert_eq!(announced, [1, 2]);
}
