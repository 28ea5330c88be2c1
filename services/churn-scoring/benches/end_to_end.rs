//! End to end at a fixed offered load: purchase-ingest and churn-scoring (the services as
//! their binaries build them, in one process) on one log and a real Redis, fed 10,000
//! swipes a second by one store gateway (StreamSwipes, a message of 100 swipes every
//! 10 ms, paced whatever the answers do). Two figures, each as p50 / p99 / max:
//!
//! - acknowledgement: from sending a message to its answer (every swipe durable in the
//!   log);
//! - end to end: from ingest taking a swipe (the `churnguard-ingested-at` header it
//!   stamps before the append that is acknowledged, in milliseconds) to the scorer's
//!   commit of the batch holding it in Redis: what the scorer records as
//!   `churnguard_swipe_to_score_seconds`, captured here value by value.
//!
//! Under the end to end, where its time goes: the log's acknowledgement of each of
//! ingest's appends, and Redis's answer to each script (the scorer's batch commits and
//! the timers' transitions); the rest is the log's delivery to the scorer.
//!
//! On the embedded log and on Tansu (memory storage, and SQLite storage, durable). Target:
//! end-to-end p99 at most 50 ms. Where the log cannot take the load, the refused swipes
//! are counted by code and the figures are of those acknowledged. Each backend runs in a
//! child process of its own (the metrics recorder is process-wide).
//!
//! Tansu 0.6 holds every fetch for the consumer's whole `fetch.wait.max.ms`, records or
//! not (Apache Kafka answers once a record is there), so on Tansu a record waits for the
//! fetch under way and then for a whole next one: the scorer's reads are run with
//! `log.kafka.fetch_wait_max_ms` at 10 ms, and once on memory storage at the default
//! 100 ms to show what the wait costs. `cargo bench -p churn-scoring --bench end_to_end`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use churnguard_eventlog::EventLog;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_kafka::{KafkaLog, KafkaSettings};
use churnguard_proto::ingest::v1 as pb;
use churnguard_proto::ingest::v1::purchase_ingest_client::PurchaseIngestClient;
use churnguard_testkit::{RedisServer, Tansu};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};

// The allocator of the services' binaries.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Offered swipes per second.
const RATE: u64 = 10_000;
/// Swipes per message.
const MESSAGE: u64 = 100;
/// Seconds of load.
const SECONDS: u64 = 10;
/// Distinct customers.
const CUSTOMERS: u64 = 10_000;
/// `log.kafka.fetch_wait_max_ms` on Tansu, which holds every fetch this long.
const TANSU_FETCH_WAIT_MS: u32 = 10;
/// The scorer's swipe-to-score histogram: the end-to-end figure.
const SCORED: &str = churn_scoring::metrics::SWIPE_TO_SCORE_SECONDS;
/// How long the scorer may take to catch up after the load.
const CATCH_UP: Duration = Duration::from_secs(60);
/// The end-to-end target, p99.
const TARGET: Duration = Duration::from_millis(50);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Some(i) = args.iter().position(|a| a == "--run") {
        rt.block_on(run(&args[i + 1]));
        return;
    }
    println!(
        "end to end at a fixed offered load: {RATE} swipes/s for {SECONDS} s from one gateway \
         (StreamSwipes, {MESSAGE} swipes a message every {} ms), {CUSTOMERS} customers; \
         p50 / p99 / max; target: end-to-end p99 <= {} ms",
        1_000 * MESSAGE / RATE,
        TARGET.as_millis()
    );
    for backend in [
        "embedded",
        "tansu-memory",
        "tansu-memory-default-wait",
        "tansu",
    ] {
        let out = std::process::Command::new(std::env::current_exe().expect("this benchmark"))
            .args(["--run", backend])
            .output()
            .expect("a child run");
        assert!(
            out.status.success(),
            "the {backend} run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}

/// One backend's run: the services, the load, the figures.
async fn run(backend: &str) {
    let captured = Capture::default();
    metrics::set_global_recorder(captured.clone()).expect("the only recorder");
    let redis = RedisServer::start();
    let dir = churnguard_testkit::bench_dir("bench-e2e-");
    let figures = match backend {
        "embedded" => {
            let log = EmbeddedLog::open(dir.path()).expect("log");
            load(log.clone(), log, &redis, &captured).await
        }
        "tansu" | "tansu-memory" | "tansu-memory-default-wait" => {
            let broker = if backend == "tansu" {
                Tansu::start()
            } else {
                Tansu::start_in_memory()
            };
            let mut settings = KafkaSettings {
                bootstrap_servers: broker.bootstrap(),
                ..KafkaSettings::default()
            };
            if backend != "tansu-memory-default-wait" {
                settings.fetch_wait_max_ms = TANSU_FETCH_WAIT_MS;
            }
            load(
                KafkaLog::new(settings.clone()).expect("ingest's log"),
                KafkaLog::new(settings).expect("scoring's log"),
                &redis,
                &captured,
            )
            .await
        }
        other => panic!("no backend {other:?}"),
    };
    let default_wait = KafkaSettings::default().fetch_wait_max_ms;
    let name = match backend {
        "embedded" => "embedded log".to_owned(),
        "tansu-memory" => format!("Tansu, memory storage, fetch wait {TANSU_FETCH_WAIT_MS} ms"),
        "tansu-memory-default-wait" => {
            format!("Tansu, memory storage, fetch wait {default_wait} ms (the default)")
        }
        _ => format!("Tansu, SQLite storage (durable), fetch wait {TANSU_FETCH_WAIT_MS} ms"),
    };
    println!("  {name}: {}", figures.offered);
    println!("    acknowledgement              {}", figures.ack);
    println!(
        "    end to end                   {}   p99 {:.2} x the target",
        figures.e2e,
        figures.e2e_p99.as_secs_f64() / TARGET.as_secs_f64()
    );
    // Where the time goes: the log's acknowledgement of ingest's appends, and Redis's
    // answer to the scorer's batch commits and the timers' transitions (EVALSHA; every
    // swipe makes its customer due for assessment that day, so the timers assess about
    // as many customers a second as there are swipes). What is left of the end to end is
    // the log's delivery to the scorer.
    for (what, key) in [
        (
            "ingest: an append's acknowledgement",
            purchase_ingest::metrics::PUBLISH_DURATION_SECONDS.to_owned(),
        ),
        (
            "Redis: a script's answer (EVALSHA)",
            format!(
                "{}{{op=EVALSHA}}",
                churnguard_redis::metrics::COMMAND_DURATION_SECONDS
            ),
        ),
    ] {
        let mut xs: Vec<Duration> = captured
            .values(&key)
            .into_iter()
            .map(|v| Duration::from_secs_f64(v.max(0.0)))
            .collect();
        if !xs.is_empty() {
            println!("      {what:<37} {}", spread(&mut xs));
        }
    }
}

struct Figures {
    offered: String,
    ack: String,
    e2e: String,
    e2e_p99: Duration,
}

/// Starts ingest on `ingest_log` and scoring on `scoring_log` (the same log), offers the
/// load and waits until every swipe is scored.
async fn load<I: EventLog, S: EventLog>(
    ingest_log: I,
    scoring_log: S,
    redis: &RedisServer,
    captured: &Capture,
) -> Figures {
    let ingest = purchase_ingest::App::build(
        purchase_ingest::Settings {
            listen_addr: "127.0.0.1:0".into(),
            admin_addr: String::new(),
            ..purchase_ingest::Settings::default()
        },
        ingest_log,
    )
    .await
    .expect("ingest builds")
    .spawn();
    let mut settings = churn_scoring::config::Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: String::new(),
        ..churn_scoring::config::Settings::default()
    };
    settings.redis.url = redis.url();
    let scoring = churn_scoring::App::build(settings, Arc::new(scoring_log))
        .await
        .expect("scoring builds")
        .spawn();

    let mut client = PurchaseIngestClient::connect(ingest.endpoint())
        .await
        .expect("connect");
    let messages = RATE * SECONDS / MESSAGE;
    let (tx, rx) = tokio::sync::mpsc::channel(1_024);
    let sent = Arc::new(Mutex::new(std::collections::VecDeque::new()));
    let pacing = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut every =
                tokio::time::interval(Duration::from_micros(1_000_000 * MESSAGE / RATE));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let started = Instant::now();
            for m in 0..messages {
                every.tick().await;
                let now = chrono::Utc::now().to_rfc3339();
                let swipes = (0..MESSAGE).map(|i| swipe(m * MESSAGE + i, &now)).collect();
                sent.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push_back(Instant::now());
                if tx
                    .send(pb::StreamSwipesRequest {
                        swipes,
                        historical: false,
                    })
                    .await
                    .is_err()
                {
                    break;
                }
            }
            started.elapsed()
        })
    };
    let mut answers = client
        .stream_swipes(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    let mut acks = Vec::with_capacity(messages as usize);
    let mut accepted = 0usize;
    let mut refused = std::collections::BTreeMap::new();
    while let Some(answer) = answers.message().await.expect("an answer") {
        let at = sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
            .expect("a message sent");
        acks.push(at.elapsed());
        for r in &answer.results {
            match &r.outcome {
                Some(pb::swipe_result::Outcome::Accepted(_)) => accepted += 1,
                Some(pb::swipe_result::Outcome::Rejected(why)) => {
                    *refused.entry(why.code.clone()).or_insert(0u64) += 1;
                }
                None => *refused.entry("no outcome".into()).or_insert(0) += 1,
            }
        }
    }
    let offered_for = pacing.await.expect("the load");
    let n = accepted;
    // A broker that breaks under the load (Tansu 0.6's SQLite storage has) leaves
    // acknowledged swipes unread: say so, with the figures of those scored, and go on
    // to the next backend.
    let deadline = Instant::now() + CATCH_UP;
    let mut behind = None;
    loop {
        let done = captured.count(SCORED);
        if done >= n {
            break;
        }
        if Instant::now() >= deadline {
            behind = Some(format!(
                "; the scorer had scored {done} of them {} s after the load, when the wait ended",
                CATCH_UP.as_secs()
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if behind.is_none() {
        ingest.stop().await.expect("ingest stops");
        scoring.stop().await.expect("scoring stops");
    } else {
        let _ = tokio::time::timeout(Duration::from_secs(30), ingest.stop()).await;
        let _ = tokio::time::timeout(Duration::from_secs(30), scoring.stop()).await;
    }

    let mut e2e: Vec<Duration> = captured
        .values(SCORED)
        .into_iter()
        .map(Duration::from_secs_f64)
        .collect();
    let e2e_p99 = percentile(&mut e2e, 0.99);
    let offered = RATE * SECONDS;
    Figures {
        offered: format!(
            "{offered} swipes offered in {:.2} s ({:.0} /s); {accepted} acknowledged{}{}",
            offered_for.as_secs_f64(),
            offered as f64 / offered_for.as_secs_f64(),
            if refused.is_empty() {
                String::new()
            } else {
                format!(", refused: {refused:?} (the load is not sustained)")
            },
            behind.unwrap_or_default()
        ),
        ack: spread(&mut acks),
        e2e: spread(&mut e2e),
        e2e_p99,
    }
}

fn swipe(i: u64, occurred_at: &str) -> pb::Swipe {
    pb::Swipe {
        swipe_id: format!("e2e-{i}"),
        customer: Some(pb::swipe::Customer::CustomerId(format!(
            "cust-{}",
            i % CUSTOMERS
        ))),
        store_id: format!("store-{}", i % 40),
        terminal_id: "till-1".into(),
        employee_id: "emp-1".into(),
        occurred_at: occurred_at.into(),
        amount: Some(pb::Amount {
            minor_units: 1_250,
            currency: "EUR".into(),
        }),
        item_count: 3,
    }
}

/// The `q` quantile of `xs` (sorted here).
fn percentile(xs: &mut [Duration], q: f64) -> Duration {
    xs.sort();
    let i = ((xs.len() as f64 * q).ceil() as usize).clamp(1, xs.len()) - 1;
    xs[i]
}

/// p50 / p99 / max of `xs`, in milliseconds.
fn spread(xs: &mut [Duration]) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1_000.0;
    let (p50, p99) = (percentile(xs, 0.5), percentile(xs, 0.99));
    let max = *xs.last().expect("figures");
    format!(
        "{:>7.1} / {:>7.1} / {:>7.1} ms ({} values)",
        ms(p50),
        ms(p99),
        ms(max),
        xs.len()
    )
}

/// A recorder keeping every value of every histogram, by name and labels; counters and
/// gauges are no-ops.
#[derive(Debug, Default, Clone)]
struct Capture(Arc<Mutex<BTreeMap<String, Series>>>);

/// One histogram's values.
type Series = Arc<Mutex<Vec<f64>>>;

impl Capture {
    /// The values recorded so far under `key` (`name` or `name{label=value,...}`).
    fn values(&self, key: &str) -> Vec<f64> {
        let series = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        series.get(key).map_or_else(Vec::new, |v| {
            v.lock().unwrap_or_else(PoisonError::into_inner).clone()
        })
    }

    /// How many values `key` has.
    fn count(&self, key: &str) -> usize {
        let series = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        series.get(key).map_or(0, |v| {
            v.lock().unwrap_or_else(PoisonError::into_inner).len()
        })
    }
}

fn series_key(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    if labels.is_empty() {
        key.name().to_owned()
    } else {
        format!("{}{{{}}}", key.name(), labels.join(","))
    }
}

#[derive(Debug)]
struct Values(Arc<Mutex<Vec<f64>>>);

impl metrics::HistogramFn for Values {
    fn record(&self, value: f64) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(value);
    }
}

impl metrics::Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let values = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(series_key(key))
            .or_default()
            .clone();
        Histogram::from_arc(Arc::new(Values(values)))
    }
}
