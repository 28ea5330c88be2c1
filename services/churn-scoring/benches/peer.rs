//! The scorer against a peer (issue 15): the same per-customer daily windows computed by
//! quixstreams, a Python stream-processing library (PyPI), from the same topic on the
//! same broker, in the same run. quixstreams' rate is the baseline the scorer's is
//! reported against: it says what a general-purpose stream processor gets out of this
//! machine and this broker for the same work, where the scoring benchmark's limits (raw
//! Redis, the naive one-script-per-swipe scorer) say what our own parts allow.
//!
//! One Tansu broker (memory storage, as the other throughput benchmarks use: with its
//! SQLite storage the scorer's first reads of a 200,000-record topic did not finish in
//! five minutes) and one Redis (the test kit's, on free ports). The purchases topic is
//! filled through [`KafkaLog`] with the scoring benchmark's records (`card_swipe`, the
//! ingest headers): [`SWIPES`] swipes over [`CUSTOMERS`] customers, two on each of
//! [`DAYS`] store-local days per customer, the first just after local midnight in UTC+2
//! and the second just before it in UTC-5, so a customer's day spans two UTC days and
//! only a window on the local day counts both together. Then, one after the other:
//!
//! - churn-scoring's scorer reads the topic from the start into an empty Redis through a
//!   fresh [`KafkaLog`], as the service does (each partition's `run_partition`, with the
//!   service's default batch size and horizon; without the absence timers, as in the
//!   scoring benchmark): read, decode, fold into the customers' day buckets and
//!   summaries, commit each batch with its checkpoint in Redis. The time runs from
//!   starting it until every partition's checkpoint in Redis is at the partition's end:
//!   every swipe applied;
//! - the peer, `bench/peer/daily_windows.py` (installed by `scripts/ensure-peer.sh` into a
//!   venv under `~/.cache/churnguard`), in a consumer group of its own from the earliest
//!   offset: decode each record as the scorer does, then a one-day tumbling window per
//!   customer over the store-local event time with quixstreams' own aggregations (count
//!   of swipes, sum of spend) in its default state store (RocksDB with a changelog topic
//!   on the same broker), the grace period set to the scorer's horizon. Its time runs
//!   from the first record's arrival to the last record processed (it also reports the
//!   time to the end of its shutdown: the last checkpoint committed). A second, untimed
//!   run emits every window and checks their sum against the records written, so the
//!   baseline is known to compute the same windows.
//!
//! The scorer does more per swipe than the peer: it keeps duplicate fingerprints per day,
//! the customer's summary (first and last day, repeat days and spend) and store mix, and
//! commits each batch exactly once with its checkpoint; the peer keeps two numbers per
//! customer-day and commits at intervals (at least once). And the scorer uses both cores
//! (a task per partition, with Redis beside it), the peer one (Python). Both share the
//! machine with the broker. Where the peer cannot be installed (no registry), the scorer's
//! rate is printed alone and the peer is reported skipped.
//!
//! `scripts/with-infra.sh cargo bench --locked -p churn-scoring --bench peer`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use churn_scoring::{CustomerStore, Scorer};
use churnguard_domain::customer::{Day, day_of};
use churnguard_domain::envelope::INGESTED_AT_HEADER;
use churnguard_eventlog::{EventLog, Header, OutgoingRecord};
use churnguard_kafka::{KafkaLog, KafkaSettings};
use churnguard_testkit::{RedisServer, Tansu};
use tokio_util::sync::CancellationToken;

// The allocator of the churn-scoring binary (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TOPIC: &str = "purchases.v1";
const PARTITIONS: u32 = 4;
/// Swipes in the topic.
const SWIPES: usize = 200_000;
/// Distinct customers.
const CUSTOMERS: usize = 20_000;
/// Store-local days each customer has swipes on (two a day).
const DAYS: usize = SWIPES / CUSTOMERS / 2;
/// How long either side may take before the benchmark gives up on it.
const PATIENCE: Duration = Duration::from_secs(600);

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let defaults = churn_scoring::config::Settings::default();
    let (batch, horizon) = (defaults.batch_records, defaults.horizon_days);
    println!(
        "peer: per-customer daily windows from one topic, churn-scoring against quixstreams \
         (Python, PyPI); {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "  {SWIPES} swipes over {CUSTOMERS} customers (2 a day on {DAYS} store-local days each), \
         {PARTITIONS} partitions, Tansu (memory storage), scorer batch {batch}, horizon {horizon} days"
    );
    let peer = install_peer();

    // Its end offsets are not to be trusted (see `start_in_memory`): the partitions' ends
    // come from the appends' acknowledgements.
    let broker = Tansu::start_in_memory();
    let redis = RedisServer::start();
    let settings = KafkaSettings {
        bootstrap_servers: broker.bootstrap(),
        ..KafkaSettings::default()
    };
    let (ends, loaded) = load(&settings).await;
    row(
        "written through KafkaLog",
        SWIPES as f64 / loaded.as_secs_f64(),
        "",
    );

    let scored = score(&settings, &redis.url(), &ends, batch, horizon).await;
    let scorer_rate = SWIPES as f64 / scored.as_secs_f64();
    row(
        "churn-scoring scorer (KafkaLog -> Redis)",
        scorer_rate,
        &format!(
            "{:.2} s until every checkpoint is at the end",
            scored.as_secs_f64()
        ),
    );

    let python = match peer {
        Ok(python) => python,
        Err(why) => {
            println!("  quixstreams: not measured, the peer could not be installed: {why}");
            println!("  scorer / quixstreams: n/a (skipped)");
            return;
        }
    };
    let bootstrap = broker.bootstrap();
    let timed = run_peer(&python, &bootstrap, horizon, false);
    let version = timed["version"].as_str().unwrap_or("?").to_owned();
    let peer_rate = timed["rate"].as_f64().expect("the peer's rate");
    row(
        &format!("quixstreams {version} (RocksDB + changelog)"),
        peer_rate,
        &format!(
            "{:.2} s from the first record to the last processed",
            timed["seconds"].as_f64().unwrap_or(f64::NAN)
        ),
    );
    row(
        "  through its last commit and shutdown",
        timed["rate_through_commit"].as_f64().unwrap_or(f64::NAN),
        &format!(
            "{:.2} s",
            timed["seconds_through_commit"].as_f64().unwrap_or(f64::NAN)
        ),
    );
    let checked = run_peer(&python, &bootstrap, horizon, true);
    let want = expected_windows();
    let got = (
        checked["windows"].as_u64().unwrap_or(0),
        checked["swipes"].as_u64().unwrap_or(0),
        checked["spend"].as_i64().unwrap_or(0),
        checked["digest"].as_str().unwrap_or(""),
    );
    assert_eq!(
        got,
        (
            want.windows,
            want.swipes,
            want.spend,
            want.digest.to_string().as_str()
        ),
        "quixstreams' windows (windows, swipes, spend, digest) differ from the records written"
    );
    println!(
        "  quixstreams' windows checked (untimed run): {} customer-days, {} swipes, spend {}, digest equal",
        want.windows, want.swipes, want.spend
    );
    println!("  scorer / quixstreams: {:.1} x", scorer_rate / peer_rate);
}

/// One line of the table: what, its rate, and a note.
fn row(what: &str, rate: f64, note: &str) {
    let note = if note.is_empty() {
        String::new()
    } else {
        format!("   ({note})")
    };
    println!("  {what:<46}{rate:>10.0} /s{note}");
}

/// Swipe `i`: customer `i % CUSTOMERS`, in rounds of one swipe per customer; two rounds
/// per store-local day, the first at 00:30 in UTC+2 (the day before in UTC), the second
/// at 23:45 in UTC-5 (the day after in UTC).
fn swipe(i: usize) -> (String, u32, &'static str, i64) {
    let round = i / CUSTOMERS;
    let day = 1 + (round / 2) as u32;
    let time = if round.is_multiple_of(2) {
        "00:30:00+02:00"
    } else {
        "23:45:00-05:00"
    };
    (
        format!("cust-{}", i % CUSTOMERS),
        day,
        time,
        1_000 + (i % 5_000) as i64,
    )
}

/// The records, as the scoring benchmark builds them: `card_swipe`, stamped with the
/// ingest time and a trace as purchase-ingest stamps them.
fn records() -> Vec<OutgoingRecord> {
    let ingested = chrono::Utc::now().timestamp_millis().to_string();
    (0..SWIPES)
        .map(|i| {
            let (customer, day, time, spend) = swipe(i);
            let mut r = common::card_swipe(
                i,
                &customer,
                &format!("store-{}", i % 40),
                &format!("2026-10-{day:02}T{time}"),
                spend,
            );
            r.headers
                .push(Header::new(INGESTED_AT_HEADER, ingested.as_str()));
            r.headers.push(Header::new(
                "traceparent",
                format!("00-{:032x}-{:016x}-01", i + 1, i + 1),
            ));
            r
        })
        .collect()
}

/// Fills the topic; each partition's end, from the appends' acknowledgements, and how
/// long the writing took.
async fn load(settings: &KafkaSettings) -> (Vec<u64>, Duration) {
    let log = KafkaLog::new(settings.clone()).expect("the loader's log");
    log.ensure_topic(TOPIC, PARTITIONS).await.expect("topic");
    let mut ends = vec![0u64; PARTITIONS as usize];
    let mut records = records().into_iter().peekable();
    let started = Instant::now();
    while records.peek().is_some() {
        let batch: Vec<OutgoingRecord> = records.by_ref().take(5_000).collect();
        for appended in log.append(TOPIC, batch).await {
            let a = appended.expect("append");
            let end = &mut ends[a.partition as usize];
            *end = (*end).max(a.offset + 1);
        }
    }
    let took = started.elapsed();
    assert_eq!(
        ends.iter().sum::<u64>(),
        SWIPES as u64,
        "every swipe written"
    );
    (ends, took)
}

/// The scorer on every partition, from an empty Redis, until each checkpoint is at its
/// partition's end: the time that took.
async fn score(
    settings: &KafkaSettings,
    redis_url: &str,
    ends: &[u64],
    batch: usize,
    horizon: Day,
) -> Duration {
    let log = Arc::new(KafkaLog::new(settings.clone()).expect("the scorer's log"));
    let store = CustomerStore::connect(redis_url, TOPIC, horizon)
        .await
        .expect("store");
    let scorer = Arc::new(Scorer::new(log, store.clone(), TOPIC, batch));
    let stop = CancellationToken::new();
    let started = Instant::now();
    let tasks: Vec<_> = (0..PARTITIONS)
        .map(|p| {
            let (scorer, stop) = (scorer.clone(), stop.clone());
            // As the service runs a partition it owns: until told to stop.
            tokio::spawn(async move { scorer.run_partition(p, stop, false).await })
        })
        .collect();
    let took = loop {
        let mut done = true;
        for (p, end) in ends.iter().enumerate() {
            done &= store.checkpoint(p as u32).await.expect("checkpoint") >= *end;
        }
        if done {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the scorer did not apply every swipe"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    stop.cancel();
    for t in tasks {
        t.await.expect("partition").expect("scorer");
    }
    took
}

/// The peer's python, from `scripts/ensure-peer.sh` (which installs it once), or why not.
fn install_peer() -> Result<PathBuf, String> {
    let script = repo().join("scripts/ensure-peer.sh");
    let out = Command::new(&script)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        return Err(format!(
            "scripts/ensure-peer.sh exited with {}: {}",
            out.status,
            last.unwrap_or("no message")
        ));
    }
    let python = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Ok(PathBuf::from(python))
}

/// One run of `bench/peer/daily_windows.py` over every swipe; its JSON line.
fn run_peer(python: &Path, bootstrap: &str, horizon: Day, check: bool) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("a directory for the peer's output");
    let (stdout, stderr) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Command::new(python)
        .arg(repo().join("bench/peer/daily_windows.py"))
        .args(["--broker", bootstrap, "--topic", TOPIC])
        .args(["--records", &SWIPES.to_string()])
        .args(["--grace-days", &horizon.to_string()])
        .args(check.then_some("--check"))
        .stdout(std::fs::File::create(&stdout).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("starting the peer");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("the peer") {
            break status;
        }
        if started.elapsed() > PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the peer did not finish within {PATIENCE:?}: {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = std::fs::read_to_string(&stdout).unwrap_or_default();
    assert!(
        status.success(),
        "the peer failed ({status}): {}{out}",
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    let line = out.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("the peer's line {line:?}: {e}"))
}

/// What the peer's windows must add up to, from the swipes written.
struct Windows {
    windows: u64,
    swipes: u64,
    spend: i64,
    /// The wrapping sum of FNV-1a-64 over `customer,day,swipes,spend` of every window.
    digest: u64,
}

fn expected_windows() -> Windows {
    let mut days: std::collections::BTreeMap<(String, Day), (u64, i64)> = Default::default();
    for i in 0..SWIPES {
        let (customer, day, _, spend) = swipe(i);
        let date = chrono::NaiveDate::from_ymd_opt(2026, 10, day).expect("a date");
        let w = days.entry((customer, day_of(date))).or_default();
        w.0 += 1;
        w.1 += spend;
    }
    Windows {
        windows: days.len() as u64,
        swipes: days.values().map(|w| w.0).sum(),
        spend: days.values().map(|w| w.1).sum(),
        digest: days
            .iter()
            .map(|((c, d), (s, m))| fnv1a64(&format!("{c},{d},{s},{m}")))
            .fold(0u64, u64::wrapping_add),
    }
}

fn fnv1a64(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
