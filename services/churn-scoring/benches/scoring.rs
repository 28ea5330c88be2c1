//! `make bench` (churn-scoring): swipes/s through the scorer (log read, decode, one Lua
//! script per partition batch), next to the naive one-script-per-swipe rate and a raw
//! Redis limit measured against the same Redis in the same run; then Redis bytes per
//! customer at one million customers.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use churn_scoring::timers::Timers;
use churn_scoring::{CustomerStore, ScoredSwipe, Scorer};
use churnguard_domain::customer::swipe_fingerprint;
use churnguard_domain::risk::ScoringModel;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_eventlog::{EventLog, OutgoingRecord};
use churnguard_testkit::RedisServer;
use tokio_util::sync::CancellationToken;

// The allocator of the churn-scoring binary (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TOPIC: &str = "purchases.v1";
const PARTITIONS: u32 = 4;
const HORIZON: i32 = 120;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!(
            "churn-scoring benchmarks: {} cores, {PARTITIONS} partitions, horizon {HORIZON} days",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        throughput(400_000, 50_000).await;
        memory(1_000_000).await;
    });
}

/// `n` swipes over `customers` customers, a few days apart, as the log holds them.
fn records(n: usize, customers: usize) -> Vec<OutgoingRecord> {
    (0..n)
        .map(|i| {
            common::card_swipe(
                i,
                &format!("cust-{}", i % customers),
                &format!("store-{}", i % 40),
                &format!("2026-10-{:02}T10:15:00+01:00", 1 + (i / customers) % 28),
                1_000 + (i % 5_000) as i64,
            )
        })
        .collect()
}

async fn load_log(dir: &std::path::Path, records: Vec<OutgoingRecord>) -> Arc<EmbeddedLog> {
    let log = Arc::new(EmbeddedLog::open(dir).expect("log"));
    log.ensure_topic(TOPIC, PARTITIONS).await.expect("topic");
    let mut chunks = records.into_iter().peekable();
    while chunks.peek().is_some() {
        let batch: Vec<OutgoingRecord> = chunks.by_ref().take(5_000).collect();
        for r in log.append(TOPIC, batch).await {
            r.expect("append");
        }
    }
    log
}

async fn score_all(log: Arc<EmbeddedLog>, store: CustomerStore, batch: usize) -> Duration {
    let scorer = Arc::new(Scorer::new(log, store, TOPIC, batch));
    let started = Instant::now();
    let tasks: Vec<_> = (0..PARTITIONS)
        .map(|p| {
            let scorer = scorer.clone();
            tokio::spawn(async move {
                scorer
                    .run_partition(p, CancellationToken::new(), true)
                    .await
                    .expect("scorer")
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("partition");
    }
    started.elapsed()
}

fn bench_dir() -> tempfile::TempDir {
    // The workspace's target/ may not exist when CARGO_TARGET_DIR points elsewhere.
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    std::fs::create_dir_all(&base).expect("bench dir base");
    tempfile::Builder::new()
        .prefix("bench-")
        .tempdir_in(base)
        .expect("bench dir")
}

/// CPU seconds Redis has used (INFO cpu: user + system of the main thread and children).
async fn redis_cpu_secs(conn: &mut redis::aio::MultiplexedConnection) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(conn)
        .await
        .expect("info");
    info.lines()
        .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum()
}

/// CPU seconds this process has used (user + system), from /proc.
fn own_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name in parentheses; utime and stime are 14th and 15th.
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    ticks / 100.0
}

async fn throughput(n: usize, customers: usize) {
    println!("\nthroughput: {n} swipes over {customers} customers");
    let dir = bench_dir();
    let log = load_log(dir.path(), records(n, customers)).await;
    let redis = RedisServer::start();

    // The limit: the same Redis executing one Lua script that does nothing but HSET, as
    // many times as a batch of the scorer issues commands, per record.
    let client = redis::Client::open(redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let raw = redis::Script::new(
        "for i = 1, tonumber(ARGV[1]) do redis.call('HSET', KEYS[1], 'f' .. (i % 16), i) end return 0",
    );
    let ops = 200_000u64;
    let started = Instant::now();
    for _ in 0..(ops / 2_000) {
        let _: i64 = raw
            .key("raw")
            .arg(2_000)
            .invoke_async(&mut conn)
            .await
            .expect("raw");
    }
    let hset_rate = ops as f64 / started.elapsed().as_secs_f64();
    println!(
        "  raw HSET inside Lua, one connection                {hset_rate:>10.0} /s   (Redis's limit)"
    );

    let store = CustomerStore::connect(&redis.url(), TOPIC, HORIZON)
        .await
        .expect("store");
    // The scorer's own share: reading the log and decoding every record, with no Redis.
    let started = Instant::now();
    let mut decoded = 0usize;
    for p in 0..PARTITIONS {
        let mut from = 0;
        loop {
            let records = log
                .read(TOPIC, p, from, 2_000, Duration::from_millis(1))
                .await
                .expect("read");
            let Some(last) = records.last() else { break };
            from = last.offset + 1;
            for r in &records {
                ScoredSwipe::from_record(r).expect("a swipe");
                decoded += 1;
            }
        }
    }
    let decode_rate = decoded as f64 / started.elapsed().as_secs_f64();
    println!("  log read + decode alone, one task                  {decode_rate:>10.0} /s");

    let redis_cpu_before = redis_cpu_secs(&mut conn).await;
    let own_cpu_before = own_cpu_secs();
    let took = score_all(log.clone(), store, 2_000).await;
    let redis_cpu = redis_cpu_secs(&mut conn).await - redis_cpu_before;
    let own_cpu = own_cpu_secs() - own_cpu_before;
    let batched = n as f64 / took.as_secs_f64();
    println!(
        "  scorer: read + decode + fold + commit per batch    {batched:>10.0} /s   {:.2} x raw HSET/s",
        batched / hset_rate
    );
    println!(
        "    busy: Redis {:.0} % of a core, the scorer {:.0} % ({:.1} us of Redis, {:.1} us of scorer CPU per swipe)",
        100.0 * redis_cpu / took.as_secs_f64(),
        100.0 * own_cpu / took.as_secs_f64(),
        1e6 * redis_cpu / n as f64,
        1e6 * own_cpu / n as f64,
    );

    // The naive way: one script call per swipe, 4 partitions in parallel, same Redis.
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut conn)
        .await
        .expect("flush");
    let store = CustomerStore::connect(&redis.url(), TOPIC, HORIZON)
        .await
        .expect("store");
    let naive_n = n / 8;
    let started = Instant::now();
    let tasks: Vec<_> = (0..PARTITIONS)
        .map(|p| {
            let store = store.clone();
            tokio::spawn(async move {
                for (offset, i) in (p as usize..naive_n)
                    .step_by(PARTITIONS as usize)
                    .enumerate()
                {
                    let offset = offset as u64;
                    let s = ScoredSwipe {
                        offset,
                        customer: format!("cust-{}", i % customers),
                        day: 20_400 + (i / customers) as i32,
                        spend: 1_000,
                        store: "store-1".into(),
                        fingerprint: swipe_fingerprint(&format!("sw-{i}")),
                    };
                    store
                        .apply_batch(p, offset, std::slice::from_ref(&s), offset + 1)
                        .await
                        .expect("apply");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("naive");
    }
    let naive = naive_n as f64 / started.elapsed().as_secs_f64();
    println!("  naive: one script per swipe                        {naive:>10.0} /s");
    println!(
        "  batched / naive: {:.1} x   (target: >= 2 x, and >= 100000 swipes/s)",
        batched / naive
    );
}

async fn memory(customers: usize) {
    println!("\nmemory: {customers} customers, 2 swipes each on different days");
    let dir = bench_dir();
    let log = load_log(dir.path(), records(customers * 2, customers)).await;
    let redis = RedisServer::start();
    let client = redis::Client::open(redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let used = |info: String| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let before = used(
        redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut conn)
            .await
            .expect("info"),
    );
    let store = CustomerStore::connect(&redis.url(), TOPIC, HORIZON)
        .await
        .expect("store");
    let took = score_all(log, store.clone(), 2_000).await;
    let after_scoring = used(
        redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut conn)
            .await
            .expect("info"),
    );
    // One timer round, as live: every customer assessed once, which adds their churn state
    // and home store, the per-store home counts and (for those at risk) the at-risk index.
    let timers = Arc::new(Timers::new(
        store.clone(),
        churn_scoring::config::default_policy(),
        ScoringModel::prior(),
    ));
    let fired = Instant::now();
    let rounds: Vec<_> = (0..PARTITIONS)
        .map(|p| {
            let (timers, store) = (timers.clone(), store.clone());
            tokio::spawn(async move {
                let now = store
                    .watermark(p)
                    .await
                    .expect("watermark")
                    .expect("applied");
                timers.fire_due(p, now).await.expect("timers").assessed
            })
        })
        .collect();
    let mut assessed = 0;
    for r in rounds {
        assessed += r.await.expect("timer round");
    }
    let fired = fired.elapsed();
    let after = used(
        redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut conn)
            .await
            .expect("info"),
    );
    let keys: u64 = redis::cmd("DBSIZE")
        .query_async(&mut conn)
        .await
        .expect("dbsize");
    println!(
        "  after scoring: Redis used_memory {} MiB -> {} MiB: {:.0} bytes per customer (summary, day buckets with dedup fingerprints, store mix, deadline-index entry)",
        before / (1 << 20),
        after_scoring / (1 << 20),
        (after_scoring - before) as f64 / customers as f64
    );
    println!(
        "  after one timer round ({assessed} assessed in {:.1} s): {} keys, {} MiB: {:.0} bytes per customer (plus churn state, home store, per-store indices)",
        fired.as_secs_f64(),
        keys,
        after / (1 << 20),
        (after - before) as f64 / customers as f64
    );
    println!(
        "  scored {} swipes in {:.1} s",
        customers * 2,
        took.as_secs_f64()
    );
}
