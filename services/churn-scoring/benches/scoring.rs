//! `make bench` (churn-scoring): swipes/s through the scorer (log read, decode, one Lua
//! script per partition batch), next to the naive one-script-per-swipe rate and a raw
//! Redis limit measured against the same Redis in the same run; then Redis bytes per
//! customer at one million customers; then refits: the fit on a million simulated
//! customers (full, sampled, warm), and a refit of the million customers in Redis with
//! the query API's latency while it runs.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use churn_scoring::api::{ApiServer, QueryState};
use churn_scoring::models::ModelProjection;
use churn_scoring::refit::{RefitScope, refit};
use churn_scoring::timers::Timers;
use churn_scoring::{CustomerStore, ScoredSwipe, Scorer};
use churnguard_domain::customer::swipe_fingerprint;
use churnguard_domain::envelope::INGESTED_AT_HEADER;
use churnguard_domain::models::{BgNbd, Rfm};
use churnguard_domain::risk::ScoringModel;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_eventlog::{EventLog, Header, OutgoingRecord};
use churnguard_proto::scoring::v1 as pb;
use churnguard_proto::scoring::v1::churn_scoring_client::ChurnScoringClient;
use churnguard_testkit::RedisServer;

use churnguard_testkit::bench_dir;
use support::{own_cpu_secs, redis_cpu_secs};
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
    // A child of `metrics_cost`: one scoring run, printed as a rate.
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--metrics-cost-run") {
        let (mode, dir, redis) = (&args[i + 1], &args[i + 2], &args[i + 3]);
        rt.block_on(metrics_cost_run(mode == "on", Path::new(dir), redis));
        return;
    }
    // `cargo bench -p churn-scoring --bench scoring -- --cost-only`: just that section.
    if args.iter().any(|a| a == "--cost-only") {
        rt.block_on(metrics_cost(400_000, 50_000));
        return;
    }
    rt.block_on(async {
        println!(
            "churn-scoring benchmarks: {} cores, {PARTITIONS} partitions, horizon {HORIZON} days",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        throughput(400_000, 50_000).await;
        metrics_cost(400_000, 50_000).await;
        fits(1_000_000, 100_000);
        let (redis, store, log, _dir) = memory(1_000_000).await;
        refits(&redis, store, log).await;
    });
}

/// `n` swipes over `customers` customers, a few days apart, as the log holds them.
fn records(n: usize, customers: usize) -> Vec<OutgoingRecord> {
    // Stamped as purchase-ingest stamps them, so the end-to-end histogram and the batch
    // span's links do their work.
    let ingested = chrono::Utc::now().timestamp_millis().to_string();
    (0..n)
        .map(|i| {
            let mut r = common::card_swipe(
                i,
                &format!("cust-{}", i % customers),
                &format!("store-{}", i % 40),
                &format!("2026-10-{:02}T10:15:00+01:00", 1 + (i / customers) % 28),
                1_000 + (i % 5_000) as i64,
            );
            r.headers
                .push(Header::new(INGESTED_AT_HEADER, ingested.as_str()));
            // Each swipe's own trace, as ingest's producer span writes it.
            r.headers.push(Header::new(
                "traceparent",
                format!("00-{:032x}-{:016x}-01", i + 1, i + 1),
            ));
            r
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

/// What metrics and tracing cost the scorer: the throughput run "on" (the Prometheus
/// recorder the admin endpoint installs, every span traced and exported over OTLP) and
/// "off" (every metric and span a no-op). Neither can be removed once installed, so each
/// run is a child process of this benchmark,
/// on the same log and Redis, alternating off, on, off, on, off, on: the best of three
/// each, so that a noisy neighbour hurts both alike.
async fn metrics_cost(n: usize, customers: usize) {
    println!(
        "\nmetrics and tracing cost: the scorer's {n} swipes, in child processes, best of 3 each"
    );
    let dir = bench_dir("bench-");
    drop(load_log(dir.path(), records(n, customers)).await);
    let redis = RedisServer::start();
    let mut best = [0.0f64; 2];
    for round in 0..6 {
        let on = round % 2 == 1;
        let out = std::process::Command::new(std::env::current_exe().expect("this benchmark"))
            .arg("--metrics-cost-run")
            .arg(if on { "on" } else { "off" })
            .arg(dir.path())
            .arg(redis.url())
            .output()
            .expect("a child run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rate: f64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("the child's rate");
        best[usize::from(on)] = best[usize::from(on)].max(rate);
    }
    let [off, on] = best;
    println!("  scorer, metrics and traces off                     {off:>10.0} /s");
    println!(
        "  scorer, metrics and traces on                      {on:>10.0} /s   {:.1} % of off (target: >= 95 %)",
        100.0 * on / off
    );
    instruction_cost(n / 10, customers).await;
}

/// The same cost counted in instructions ([`churnguard_testkit::instructions`]): a child
/// run of each setting on a tenth of the swipes under valgrind, twice, counting every
/// instruction of the process (the scorer, and where on the collector's decoding of
/// every batch's spans too; Redis's work is its own process's). A count hardly moves
/// with the machine's load, so a few per cent show. Skipped without valgrind.
async fn instruction_cost(n: usize, customers: usize) {
    use churnguard_testkit::instructions;
    if !instructions::available() {
        println!("  instructions: valgrind is not installed, not counted");
        return;
    }
    let dir = bench_dir("bench-");
    drop(load_log(dir.path(), records(n, customers)).await);
    let redis = RedisServer::start();
    // The children run to their end: this thread waits, the runtime's others go on.
    tokio::task::block_in_place(|| {
        let this = std::env::current_exe().expect("this benchmark");
        let dir = dir.path().to_str().expect("a UTF-8 path");
        let url = redis.url();
        let mut counts = [Vec::new(), Vec::new()];
        for _ in 0..2 {
            for (i, mode) in ["off", "on"].into_iter().enumerate() {
                let args = ["--metrics-cost-run", mode, dir, url.as_str()];
                counts[i].push(instructions::count(&this, &args));
            }
        }
        let per_swipe =
            |i: usize| counts[i].iter().sum::<f64>() / counts[i].len() as f64 / n as f64;
        let (off, on) = (per_swipe(0), per_swipe(1));
        println!(
            "  counted in instructions under valgrind ({n} swipes, 2 runs each): off {off:.0}, on {on:.0} per swipe, {:+.1} %: {:.1} % of off's throughput where the instructions bound it",
            100.0 * (on - off) / off,
            100.0 * off / on
        );
    });
}

/// One child run of [`metrics_cost`]: an empty Redis, the log at `dir`, every swipe
/// scored; prints the rate.
async fn metrics_cost_run(on: bool, dir: &Path, redis_url: &str) {
    let client = redis::Client::open(redis_url).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut conn)
        .await
        .expect("flush");
    // On: the metrics recorder, and every span traced and exported over OTLP to an
    // in-process collector.
    let receiver = if on {
        churnguard_runtime::recorder::prometheus();
        Some(churnguard_testkit::otlp::OtlpReceiver::start().await)
    } else {
        None
    };
    let _telemetry = receiver.as_ref().map(|r| {
        churnguard_telemetry::Telemetry::init_traces(
            "bench",
            churnguard_telemetry::TraceSettings {
                endpoint: Some(r.endpoint()),
                // The worst case: every batch's span kept (by default a tenth are).
                sampling: churnguard_telemetry::Sampling::EVERY_TRACE,
            },
        )
    });
    let log = Arc::new(EmbeddedLog::open(dir).expect("log"));
    let mut n = 0;
    for p in 0..PARTITIONS {
        n += log.end_offset(TOPIC, p).await.expect("end");
    }
    let store = CustomerStore::connect(redis_url, TOPIC, HORIZON)
        .await
        .expect("store");
    let took = score_all(log, store, 2_000).await;
    println!("{}", n as f64 / took.as_secs_f64());
}

async fn throughput(n: usize, customers: usize) {
    println!("\nthroughput: {n} swipes over {customers} customers");
    let dir = bench_dir("bench-");
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

async fn memory(
    customers: usize,
) -> (
    RedisServer,
    CustomerStore,
    Arc<EmbeddedLog>,
    tempfile::TempDir,
) {
    println!("\nmemory: {customers} customers, 2 swipes each on different days");
    let dir = bench_dir("bench-");
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
    let took = score_all(log.clone(), store.clone(), 2_000).await;
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
    (redis, store, log, dir)
}

/// The published CDNOW estimates, as the simulated population's truth.
const TRUTH: BgNbd = BgNbd {
    r: 0.243,
    alpha: 4.414,
    a: 0.793,
    b: 2.426,
};

/// `n` customers drawn from BG/NBD with `TRUTH`: ages up to 78 weeks, purchase times
/// rounded to days, as the scorer's summaries are.
fn simulated(n: usize, seed: u64) -> Vec<Rfm> {
    use rand::{Rng, SeedableRng};
    use rand_distr::{Beta, Distribution, Exp1, Gamma};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let rate = Gamma::new(TRUTH.r, 1.0 / TRUTH.alpha).expect("gamma");
    let dropout = Beta::new(TRUTH.a, TRUTH.b).expect("beta");
    let day = |t: f64| (t * 7.0).floor() / 7.0;
    (0..n)
        .map(|_| {
            let t = f64::from(rng.random_range(1..=546u32)) / 7.0;
            let (lambda, p): (f64, f64) = (rate.sample(&mut rng), dropout.sample(&mut rng));
            let (mut now, mut x, mut t_x) = (0.0, 0.0, 0.0);
            loop {
                let gap: f64 = Exp1.sample(&mut rng);
                now += gap / lambda;
                if now > t {
                    break;
                }
                if day(now) > t_x {
                    x += 1.0; // distinct repeat purchase days
                    t_x = day(now);
                }
                if rng.random::<f64>() < p {
                    break;
                }
            }
            Rfm { x, t_x, t }
        })
        .collect()
}

fn relative_errors(got: &BgNbd, want: &BgNbd) -> String {
    let e = |g: f64, w: f64| 100.0 * (g - w).abs() / w;
    format!(
        "r {:.2} %, alpha {:.2} %, a {:.2} %, b {:.2} %",
        e(got.r, want.r),
        e(got.alpha, want.alpha),
        e(got.a, want.a),
        e(got.b, want.b)
    )
}

/// The fit alone, in this thread: a million simulated customers, all of them and a
/// uniform sample, from a cold start and from the current parameters.
fn fits(n: usize, sample: usize) {
    println!(
        "
fit: {n} customers simulated from BG/NBD (r 0.243, alpha 4.414, a 0.793, b 2.426)"
    );
    let all = simulated(n, 7);
    let cpu = own_cpu_secs();
    let started = Instant::now();
    let (full, _) = BgNbd::fit(&all).expect("full fit");
    let full_took = started.elapsed();
    println!(
        "  all {n}, cold start                  {:>7.2} s ({:.2} s of CPU)   target: < 60 s of one core",
        full_took.as_secs_f64(),
        own_cpu_secs() - cpu
    );
    println!("    against the truth: {}", relative_errors(&full, &TRUTH));
    // The limit: one pass over the summaries, evaluating the likelihood once per customer.
    let started = Instant::now();
    let once: f64 = all.iter().map(|c| full.log_likelihood(c)).sum();
    let pass = started.elapsed();
    println!(
        "    one likelihood pass per customer     {:>7.3} s (ll {once:.0}): the fit took {:.1} passes",
        pass.as_secs_f64(),
        full_took.as_secs_f64() / pass.as_secs_f64()
    );
    let mut rng = fastrand::Rng::with_seed(11);
    let mut drawn = all.clone();
    rng.shuffle(&mut drawn);
    drawn.truncate(sample);
    let started = Instant::now();
    let (sampled, _) = BgNbd::fit(&drawn).expect("sample fit");
    println!(
        "  a uniform sample of {sample}, cold start  {:>7.3} s",
        started.elapsed().as_secs_f64()
    );
    println!(
        "    against the full fit: {}",
        relative_errors(&sampled, &full)
    );
    let mut worst = 0.0f64;
    for c in all.iter().step_by(97) {
        worst = worst.max((sampled.p_alive(c) - full.p_alive(c)).abs());
    }
    println!("    largest P(alive) difference to the full fit, every 97th customer: {worst:.4}");
    let started = Instant::now();
    BgNbd::fit_from(&drawn, Some(full)).expect("warm fit");
    println!(
        "  the sample, warm from the last model   {:>7.3} s",
        started.elapsed().as_secs_f64()
    );
}

/// GetCustomerRisk latencies, sorted, while `busy` runs (or for `idle` when given).
async fn probe_latency(
    endpoint: String,
    customers: usize,
    until: impl std::future::Future<Output = ()>,
) -> Vec<Duration> {
    let mut api = ChurnScoringClient::connect(endpoint).await.expect("client");
    let mut out = Vec::new();
    let mut until = std::pin::pin!(until);
    let mut i = 0usize;
    loop {
        let request = pb::GetCustomerRiskRequest {
            customer_id: format!("cust-{}", (i * 7919) % customers),
            ..Default::default()
        };
        i += 1;
        let sent = Instant::now();
        let answered = tokio::select! {
            () = &mut until => break,
            r = api.get_customer_risk(request) => r,
        };
        answered.expect("risk");
        out.push(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    out.sort();
    out
}

fn percentiles(sorted: &[Duration]) -> String {
    let at = |q: f64| {
        sorted
            .get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    format!(
        "p50 {:.2} ms, p99 {:.2} ms ({} calls)",
        at(0.5),
        at(0.99),
        sorted.len()
    )
}

/// Refits of the million customers scored into Redis, as the service runs them, with the
/// query API answering GetCustomerRisk on the same runtime meanwhile.
async fn refits(redis: &RedisServer, store: CustomerStore, log: Arc<EmbeddedLog>) {
    println!(
        "
refit: the 1000000 customers above, through Redis, with the query API running"
    );
    let models = ModelProjection::new(log.clone(), store.connection(), "churn.models.v1");
    log.ensure_topic("churn.models.v1", 1).await.expect("topic");
    let api = ApiServer::bind(
        "127.0.0.1:0",
        QueryState::new(
            store.clone(),
            churn_scoring::config::default_policy().into(),
            PARTITIONS,
        ),
    )
    .await
    .expect("api")
    .spawn();
    let mut as_of = 0;
    for p in 0..PARTITIONS {
        as_of = as_of.max(
            store
                .watermark(p)
                .await
                .expect("watermark")
                .expect("applied"),
        );
    }
    // The limit for the read: SCAN alone over the same keys.
    let started = Instant::now();
    let mut listed = 0;
    let conn = store.connection();
    for p in 0..PARTITIONS {
        listed += conn
            .scan_tagged(
                &churn_scoring::store::customer_key(p, ""),
                &format!("cs:{{p{p}}}:*"),
            )
            .await
            .expect("scan")
            .len();
    }
    let scan = started.elapsed();
    println!(
        "  SCAN of every customer key alone       {:>7.2} s ({listed} keys)",
        scan.as_secs_f64()
    );
    let refit_once = |sample: usize| {
        let (store, models, log) = (store.clone(), &models, log.clone());
        async move {
            let scope = RefitScope {
                partitions: PARTITIONS,
                sample,
            };
            refit(
                &store,
                models,
                log.as_ref(),
                scope,
                as_of,
                chrono::Utc::now(),
            )
            .await
            .expect("refit")
        }
    };
    let _ = refit_once(100_000).await; // a first model, so the next ones start warm
    let idle = probe_latency(
        api.endpoint(),
        listed,
        tokio::time::sleep(Duration::from_secs(3)),
    )
    .await;
    println!(
        "  GetCustomerRisk, idle                  {}",
        percentiles(&idle)
    );
    let _ = redis;
    for sample in [100_000usize, 0] {
        let cpu = own_cpu_secs();
        let started = Instant::now();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let probing = tokio::spawn(probe_latency(api.endpoint(), listed, async move {
            let _ = done_rx.await;
        }));
        let model = refit_once(sample).await;
        let took = started.elapsed();
        let _ = done_tx.send(());
        let during = probing.await.expect("probes");
        println!(
            "  refit on {:>7} of {} customers     {:>7.2} s ({:.2} s of this process's CPU, probes included), {:.1} x the SCAN",
            model.customers,
            model.population,
            took.as_secs_f64(),
            own_cpu_secs() - cpu,
            took.as_secs_f64() / scan.as_secs_f64()
        );
        println!(
            "    GetCustomerRisk meanwhile            {}",
            percentiles(&during)
        );
    }
    api.stop().await.expect("api stop");
}
