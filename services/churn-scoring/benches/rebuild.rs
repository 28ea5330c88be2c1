//! `make bench` (churn-scoring): the rebuild. The log is the system of record and Redis
//! holds only what replaying it rebuilds, so losing Redis costs the time churn-scoring
//! takes to apply the whole purchases topic again. Measured here: a topic holding the
//! swipes of one million customers (two or three each, on different days), and
//! churn-scoring started on an empty Redis as its binary starts (`App::build`, then
//! `spawn`: the consumer group, the per-partition consumer loops from the checkpoint
//! Redis has, none, so from offset 0, and the timers), timed from the start until every
//! partition's checkpoint in Redis is at the log's end. Printed: swipes (events) per
//! second and the seconds the million customers took, next to the two limits measured in
//! the same run:
//!
//! - the log's: reading every record back and decoding it, with no Redis (one task, as
//!   the scoring bench measures it);
//! - Redis's: the same Redis executing HSETs inside one Lua script (as the scoring bench
//!   measures it), and a fresh Redis taking one pipelined HSET per customer of the
//!   rebuilt customers' own fields: the least Redis can do to hold a million customers.
//!
//! Then the rebuilt state is checked: a customer hash and a deadline-index entry for each
//! of the million, and a sample of customers equal, field for field, to the domain's
//! reference fold of their swipes.
//!
//! On the embedded log and on Tansu (memory storage: SQLite storage appends at about
//! 19,000 records/s here, so filling it would take minutes), each in a child process of
//! its own with a Redis of its own. `cargo bench -p churn-scoring --bench rebuild`;
//! `-- embedded` or `-- tansu-memory` runs one backend.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use churn_scoring::store::{customer_key, deadline_key};
use churn_scoring::{CustomerStore, ScoredSwipe};
use churnguard_domain::envelope::INGESTED_AT_HEADER;
use churnguard_domain::partition_for_key;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_eventlog::{EventLog, Header, OutgoingRecord};
use churnguard_kafka::{KafkaLog, KafkaSettings};
use churnguard_testkit::{RedisServer, Tansu};

use churnguard_testkit::bench_dir;
use support::{own_cpu_secs, redis_cpu_secs};

// The allocator of the churn-scoring binary (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Customers in the log.
const CUSTOMERS: usize = 1_000_000;
/// Records per append while the log is filled.
const CHUNK: usize = 5_000;
/// The last records, appended one per append: Tansu 0.6's memory storage does not
/// answer a fetch from inside a partition's newest batch, so each partition's newest
/// batch must hold one record (as the scorer kill test does it).
const TAIL: usize = 600;
/// How long the rebuild may take before the run fails.
const GIVE_UP: Duration = Duration::from_secs(1_800);

/// Swipes of customer `c`: two, and a third for every other customer.
fn swipes_of(c: usize) -> usize {
    2 + usize::from(c.is_multiple_of(2))
}

/// Swipes in the log.
fn total_swipes() -> usize {
    (0..CUSTOMERS).map(swipes_of).sum()
}

/// Swipe `k` (0-based) of customer `c`, as purchase-ingest writes it: October 1st, 11th
/// and 21st, at the customer's own store, with the headers ingest stamps.
fn swipe(c: usize, k: usize, ingested_at: &str) -> OutgoingRecord {
    let mut r = common::card_swipe(
        k * CUSTOMERS + c,
        &format!("cust-{c}"),
        &format!("store-{}", c % 40),
        &format!("2026-10-{:02}T10:15:00+01:00", 1 + 10 * k),
        1_000 + ((c * 7 + k * 13) % 5_000) as i64,
    );
    r.headers.push(Header::new(INGESTED_AT_HEADER, ingested_at));
    let trace = (k * CUSTOMERS + c + 1) as u128;
    r.headers.push(Header::new(
        "traceparent",
        format!("00-{trace:032x}-{:016x}-01", trace as u64),
    ));
    r
}

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
    let partitions = churn_scoring::config::Settings::default().topics.partitions;
    println!(
        "\nrebuild: {CUSTOMERS} customers, {} swipes (2 or 3 each, on different days), \
         {partitions} partitions, replayed into an empty Redis by churn-scoring as it starts; \
         {} cores",
        total_swipes(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let only: Vec<&String> = args
        .iter()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for backend in ["embedded", "tansu-memory"] {
        if !only.is_empty() && !only.iter().any(|a| a.as_str() == backend) {
            continue;
        }
        let out = std::process::Command::new(std::env::current_exe().expect("this benchmark"))
            .args(["--run", backend])
            .output()
            .expect("a child run");
        assert!(
            out.status.success(),
            "the {backend} run failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}

/// One backend's run, in a child process: fill, limits, rebuild, check.
async fn run(backend: &str) {
    let settings = churn_scoring::config::Settings::default();
    let topic = settings.topics.purchases.clone();
    let partitions = settings.topics.partitions;
    let redis = RedisServer::start();
    match backend {
        "embedded" => {
            let dir = bench_dir("bench-rebuild-");
            let log = Arc::new(EmbeddedLog::open(dir.path()).expect("log"));
            println!("  embedded log:");
            rebuild(log.clone(), log, &redis, &topic, partitions).await;
        }
        "tansu-memory" => {
            let broker = Tansu::start_in_memory();
            let client = |id: &str| {
                KafkaLog::new(KafkaSettings {
                    bootstrap_servers: broker.bootstrap(),
                    client_id: id.into(),
                    ..KafkaSettings::default()
                })
                .expect("kafka log")
            };
            println!("  Tansu, memory storage:");
            rebuild(
                Arc::new(client("rebuild-writer")),
                Arc::new(client("churn-scoring")),
                &redis,
                &topic,
                partitions,
            )
            .await;
        }
        other => panic!("no backend {other:?}"),
    }
}

/// Fills `writer`'s topic, measures the limits, then starts churn-scoring on `scoring`
/// (the same log) and an empty `redis` and waits until everything is applied.
async fn rebuild<W: EventLog, S: EventLog>(
    writer: Arc<W>,
    scoring: Arc<S>,
    redis: &RedisServer,
    topic: &str,
    partitions: u32,
) {
    let n = total_swipes();
    let (ends, filled) = fill(writer.clone(), topic, partitions).await;
    assert_eq!(ends.iter().sum::<u64>(), n as u64, "every swipe appended");
    println!(
        "    log filled: {n} swipes in {:.1} s ({:.0} /s, building the records included)",
        filled.as_secs_f64(),
        n as f64 / filled.as_secs_f64()
    );

    // The log's limit: every record read back and decoded, nothing written.
    let started = Instant::now();
    let mut decoded = 0usize;
    for (p, end) in (0..partitions).zip(&ends) {
        let mut from = 0;
        while from < *end {
            let records = writer
                .read(topic, p, from, 2_000, Duration::from_millis(100))
                .await
                .expect("read");
            let Some(last) = records.last() else { continue };
            from = last.offset + 1;
            for r in &records {
                ScoredSwipe::from_record(r).expect("a swipe");
                decoded += 1;
            }
        }
    }
    assert_eq!(decoded, n, "every record read back");
    let decode_rate = n as f64 / started.elapsed().as_secs_f64();
    println!(
        "    log read + decode alone, one task                {decode_rate:>10.0} /s   (the log's limit)"
    );

    // Redis's limit, as the scoring bench measures it, on the Redis the rebuild uses.
    let client = redis::Client::open(redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let hset_rate = raw_hset_in_lua(&mut conn).await;
    println!(
        "    raw HSET inside Lua, one connection              {hset_rate:>10.0} /s   (Redis's limit)"
    );
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut conn)
        .await
        .expect("flush");

    // The rebuild: the service as its binary starts it, on an empty Redis.
    let mut settings = churn_scoring::config::Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: String::new(),
        ..churn_scoring::config::Settings::default()
    };
    settings.redis.url = redis.url();
    // The bench's own view of Redis: the checkpoints, then the check.
    let store = CustomerStore::connect(&redis.url(), topic, settings.horizon_days)
        .await
        .expect("store");
    let redis_cpu_before = redis_cpu_secs(&mut conn).await;
    let own_cpu_before = own_cpu_secs();
    let started = Instant::now();
    let service = churn_scoring::App::build(settings, scoring)
        .await
        .expect("churn-scoring builds")
        .spawn();
    let mut first_commit = None;
    loop {
        let mut applied = 0;
        let mut done = true;
        for (p, end) in (0..partitions).zip(&ends) {
            let at = store.checkpoint(p).await.expect("checkpoint");
            applied += at.min(*end);
            done &= at >= *end;
        }
        if applied > 0 && first_commit.is_none() {
            first_commit = Some(started.elapsed());
        }
        if done {
            break;
        }
        assert!(
            started.elapsed() < GIVE_UP,
            "the rebuild did not finish: {applied} of {n} records applied in {GIVE_UP:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    let redis_cpu = redis_cpu_secs(&mut conn).await - redis_cpu_before;
    let own_cpu = own_cpu_secs() - own_cpu_before;
    service.stop().await.expect("churn-scoring stops");
    let rate = n as f64 / took.as_secs_f64();
    println!(
        "    rebuild: start to every partition committed      {rate:>10.0} /s   {:.2} x read + decode, {:.2} x raw HSET/s",
        rate / decode_rate,
        rate / hset_rate
    );
    println!(
        "      {CUSTOMERS} customers rebuilt in {:.1} s (the first batch committed {:.2} s after the start)",
        took.as_secs_f64(),
        first_commit.unwrap_or_default().as_secs_f64()
    );
    println!(
        "      busy: Redis {:.0} % of a core, churn-scoring {:.0} % ({:.1} us of Redis, {:.1} us of churn-scoring CPU per swipe)",
        100.0 * redis_cpu / took.as_secs_f64(),
        100.0 * own_cpu / took.as_secs_f64(),
        1e6 * redis_cpu / n as f64,
        1e6 * own_cpu / n as f64,
    );

    let shape = check(&store, partitions, &mut conn).await;

    // Redis's floor for holding the customers: a fresh Redis given each customer's hash,
    // with the fields of a rebuilt one, one HSET per customer, pipelined.
    let fresh = RedisServer::start();
    let floor = hashes_alone(&fresh, &shape, partitions).await;
    println!(
        "    Redis alone: {CUSTOMERS} customer hashes ({} fields each), pipelined HSET   {:.1} s ({:.0} customers/s): the rebuild took {:.1} x that",
        shape.len() / 2,
        floor.as_secs_f64(),
        CUSTOMERS as f64 / floor.as_secs_f64(),
        took.as_secs_f64() / floor.as_secs_f64()
    );
}

/// Appends every swipe to `topic`, in log order (every customer's first swipe, then the
/// seconds, then the thirds); the records are built on a thread of their own while the
/// appends go on. Returns each partition's end, from the acknowledgements (Tansu's
/// memory storage reports ends short), and how long it took.
async fn fill<W: EventLog>(log: Arc<W>, topic: &str, partitions: u32) -> (Vec<u64>, Duration) {
    log.ensure_topic(topic, partitions).await.expect("topic");
    let started = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<OutgoingRecord>>(8);
    let n = total_swipes();
    let building = std::thread::spawn(move || {
        let ingested = chrono::Utc::now().timestamp_millis().to_string();
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut built = 0;
        for k in 0..3 {
            for c in (0..CUSTOMERS).filter(|c| k < swipes_of(*c)) {
                chunk.push(swipe(c, k, &ingested));
                built += 1;
                // The tail goes in a chunk of its own.
                if chunk.len() == CHUNK || built == n - TAIL {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                    if tx.blocking_send(full).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.blocking_send(chunk);
    });
    let mut ends = vec![0u64; partitions as usize];
    let mut in_tail = vec![false; partitions as usize];
    let mut appended = 0;
    while let Some(chunk) = rx.recv().await {
        let tail = appended >= n - TAIL;
        appended += chunk.len();
        let mut results = Vec::with_capacity(chunk.len());
        if tail {
            for r in chunk {
                results.extend(log.append(topic, vec![r]).await);
            }
        } else {
            results = log.append(topic, chunk).await;
        }
        for at in results {
            let at = at.expect("append");
            let end = &mut ends[at.partition as usize];
            *end = (*end).max(at.offset + 1);
            in_tail[at.partition as usize] |= tail;
        }
    }
    building.join().expect("records built");
    assert!(
        in_tail.iter().all(|t| *t),
        "every partition's newest batch holds one record"
    );
    (ends, started.elapsed())
}

/// Calls per second of HSET inside one Lua script on `conn`: the scoring bench's raw
/// Redis limit.
async fn raw_hset_in_lua(conn: &mut redis::aio::MultiplexedConnection) -> f64 {
    let raw = redis::Script::new(
        "for i = 1, tonumber(ARGV[1]) do redis.call('HSET', KEYS[1], 'f' .. (i % 16), i) end return 0",
    );
    let ops = 200_000u64;
    let started = Instant::now();
    for _ in 0..(ops / 2_000) {
        let _: i64 = raw
            .key("raw")
            .arg(2_000)
            .invoke_async(conn)
            .await
            .expect("raw");
    }
    ops as f64 / started.elapsed().as_secs_f64()
}

/// Checks the rebuilt state is complete: a hash and a deadline-index entry for every
/// customer, and every 9,973rd customer's state equal to the domain's fold of their
/// swipes. Prints what it found; returns the field/value pairs of a rebuilt customer's
/// hash (as stored), for [`hashes_alone`].
async fn check(
    store: &CustomerStore,
    partitions: u32,
    conn: &mut redis::aio::MultiplexedConnection,
) -> Vec<Vec<u8>> {
    let mut keys = 0;
    let mut armed = 0u64;
    for p in 0..partitions {
        keys += store
            .connection()
            .scan_tagged(&customer_key(p, ""), &format!("cs:{{p{p}}}:*"))
            .await
            .expect("scan")
            .len();
        armed += redis::cmd("ZCARD")
            .arg(deadline_key(p))
            .query_async::<u64>(conn)
            .await
            .expect("zcard");
    }
    let mut sampled = 0;
    for c in (0..CUSTOMERS).step_by(9_973) {
        let id = format!("cust-{c}");
        let p = partition_for_key(id.as_bytes(), partitions);
        let swipes: Vec<ScoredSwipe> = (0..swipes_of(c))
            .map(|k| {
                let r = swipe(c, k, "0");
                ScoredSwipe::from_record(&churnguard_eventlog::Record {
                    partition: p,
                    offset: k as u64,
                    timestamp_ms: r.timestamp_ms,
                    key: r.key,
                    payload: r.payload,
                    headers: r.headers,
                })
                .expect("a swipe")
            })
            .collect();
        let want = common::reference(&swipes).remove(&id).expect("expected");
        let got = store
            .customer(p, &id)
            .await
            .expect("read")
            .map(common::normalised);
        assert_eq!(got.as_ref(), Some(&want), "{id} rebuilt");
        sampled += 1;
    }
    let used: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await
        .expect("info");
    let used: u64 = used
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    println!(
        "    check: {keys} customer hashes, {armed} deadlines armed, {sampled} sampled customers equal to the reference fold; Redis used_memory {} MiB",
        used >> 20
    );
    assert_eq!(keys, CUSTOMERS, "a hash for every customer");
    assert_eq!(armed, CUSTOMERS as u64, "a deadline for every customer");
    let p = partition_for_key(b"cust-0", partitions);
    redis::cmd("HGETALL")
        .arg(customer_key(p, "cust-0"))
        .query_async::<Vec<Vec<u8>>>(conn)
        .await
        .expect("a rebuilt hash")
}

/// The time a fresh `redis` takes to store a million customer hashes with `fields`
/// (field, value, ...), one HSET per customer, a thousand per pipeline, on one connection.
async fn hashes_alone(redis: &RedisServer, fields: &[Vec<u8>], partitions: u32) -> Duration {
    let client = redis::Client::open(redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let started = Instant::now();
    for from in (0..CUSTOMERS).step_by(1_000) {
        let mut pipe = redis::pipe();
        for c in from..(from + 1_000).min(CUSTOMERS) {
            let id = format!("cust-{c}");
            let p = partition_for_key(id.as_bytes(), partitions);
            pipe.cmd("HSET")
                .arg(customer_key(p, &id))
                .arg(fields)
                .ignore();
        }
        let _: () = pipe.query_async(&mut conn).await.expect("pipelined HSET");
    }
    let took = started.elapsed();
    let keys: u64 = redis::cmd("DBSIZE")
        .query_async(&mut conn)
        .await
        .expect("dbsize");
    assert_eq!(keys, CUSTOMERS as u64, "every hash stored");
    took
}
