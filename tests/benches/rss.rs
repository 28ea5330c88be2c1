//! `make bench`: the resident memory (RSS) of each service under load. The three release
//! binaries, purchase-ingest, churn-scoring and feedback, run as processes of their own,
//! as deployed, on one Tansu broker (memory storage) and one Redis, configured
//! as the multi-process tests configure them (environment settings, admin endpoints
//! off). One store gateway streams 10,000 swipes a second for 20 s over 100,000 customers
//! into purchase-ingest (StreamSwipes, a message of 100 swipes every 10 ms, paced whatever
//! the answers do), while a trickle of complaints (5 a second) goes to feedback
//! (FileComplaint). Each process's VmRSS is read from `/proc/<pid>/status` every 250 ms.
//! Printed per service, in MiB: at idle (started, answering, 5 s without load), the peak
//! from the start of the load until churn-scoring has applied every acknowledged swipe,
//! and at the end (5 s after that); with Redis's `used_memory` and its own RSS for
//! context, since the per-customer state lives there and not in the services.
//!
//! The binaries are not built by this bench (a crate's benches get only its own
//! binaries): `cargo build --locked --release -p purchase-ingest -p churn-scoring -p
//! feedback` first, as `scripts/bench.sh` does; they are taken from the target directory
//! this bench runs from. `cargo bench -p churnguard-e2e --bench rss`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use churnguard_proto::feedback::v1 as fb;
use churnguard_proto::feedback::v1::feedback_client::FeedbackClient;
use churnguard_proto::ingest::v1 as pb;
use churnguard_proto::ingest::v1::purchase_ingest_client::PurchaseIngestClient;
use churnguard_testkit::{RedisServer, Tansu, canary, eventually, free_port};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Offered swipes per second.
const RATE: u64 = 10_000;
/// Swipes per message.
const MESSAGE: u64 = 100;
/// Seconds of load.
const SECONDS: u64 = 20;
/// Distinct customers.
const CUSTOMERS: u64 = 100_000;
/// Complaints filed per second meanwhile.
const COMPLAINTS_PER_SECOND: u64 = 5;
/// Partitions of every topic.
const PARTITIONS: u32 = 6;
/// How often each process's RSS is read.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// Quiet time before the idle figure and before the end figure.
const SETTLE: Duration = Duration::from_secs(5);
/// The key-encryption key feedback's contact vault is given (as its tests give it).
const KEK_VAR: &str = "RSS_BENCH_FEEDBACK_KEK";

/// The three services, in the order they are printed.
const SERVICES: [&str; 3] = ["purchase-ingest", "churn-scoring", "feedback"];

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    progress("start");
    let bins = release_dir();
    println!(
        "\nRSS per service under load: the release binaries as processes of their own on one \
         Tansu (memory storage) and one Redis; {RATE} swipes/s for {SECONDS} s over \
         {CUSTOMERS} customers (StreamSwipes, {MESSAGE} a message), {COMPLAINTS_PER_SECOND} \
         complaints/s; VmRSS every {} ms, in MiB",
        SAMPLE_EVERY.as_millis()
    );
    // Memory storage: Tansu 0.6's SQLite storage panicked under this load (in
    // `idempotent_message_check`, "more or less than one row", about 30 s in) and stored
    // nothing after, in both runs tried here (2026-12-05).
    let broker = Tansu::start_in_memory();
    let redis = RedisServer::start();
    let ports = [free_port(), free_port(), free_port()];
    let mut processes: Vec<Service> = SERVICES
        .iter()
        .zip(ports)
        .map(|(name, port)| Service::start(&bins, name, port, &broker, &redis))
        .collect();
    progress("broker and Redis up, services starting");
    for (s, port) in processes.iter_mut().zip(ports) {
        serving(s, port).await;
    }
    progress("every service serving");
    let redis_pid = redis_info(&redis, "server", "process_id") as u32;

    // Every process sampled from here on, Redis too (its last column).
    let mut pids: Vec<u32> = processes.iter().map(|s| s.child.id()).collect();
    pids.push(redis_pid);
    let sampler = Sampler::start(pids);

    tokio::time::sleep(SETTLE).await;
    let idle = sampler.latest();
    let redis_idle = redis_info(&redis, "memory", "used_memory");

    sampler.peak_from_now();
    let started = Instant::now();
    let complaints = tokio::spawn(complain(format!("http://127.0.0.1:{}", ports[2])));
    let mut load = offer(format!("http://127.0.0.1:{}", ports[0])).await;
    newest_batches_of_one(format!("http://127.0.0.1:{}", ports[0]), &mut load).await;
    let offered_for = started.elapsed();
    progress(&format!(
        "load offered and answered in {:.1} s",
        offered_for.as_secs_f64()
    ));
    let filed = complaints.await.expect("the complaints");

    // Under load until the scorer has applied every acknowledged swipe.
    let store = churn_scoring::CustomerStore::connect(&redis.url(), "purchases.v1", 400)
        .await
        .expect("the bench's view of Redis");
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last_said = Instant::now();
    loop {
        let mut behind = 0;
        for (p, end) in (0..PARTITIONS).zip(&load.ends) {
            behind += end.saturating_sub(store.checkpoint(p).await.expect("checkpoint"));
        }
        if behind == 0 {
            break;
        }
        for s in &mut processes {
            s.alive();
        }
        assert!(
            Instant::now() < deadline,
            "churn-scoring did not catch up: {behind} swipes behind"
        );
        if last_said.elapsed() >= Duration::from_secs(10) {
            progress(&format!("churn-scoring {behind} swipes behind"));
            last_said = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained = started.elapsed();
    progress("every acknowledged swipe scored");
    let peak = sampler.peak();
    let redis_peak = redis_info(&redis, "memory", "used_memory_peak");
    tokio::time::sleep(SETTLE).await;
    let end = sampler.latest();
    let redis_end = redis_info(&redis, "memory", "used_memory");
    let samples = sampler.stop();
    assert!(
        !broker.panicked(),
        "the broker panicked: the figures would not be of a working system"
    );
    for s in &mut processes {
        s.alive();
    }

    println!(
        "  load: {} swipes offered in {:.1} s, {} acknowledged (with the single swipes that close each partition){}; {} complaints filed \
         ({} answers asked for a retry, {} not filed after {ATTEMPTS} tries); \
         every swipe scored {:.1} s after the load began",
        RATE * SECONDS,
        offered_for.as_secs_f64(),
        load.accepted,
        if load.refused.is_empty() {
            String::new()
        } else {
            format!(", refused: {:?}", load.refused)
        },
        filed.filed,
        filed.retried,
        filed.failed,
        drained.as_secs_f64()
    );
    println!(
        "  {:<16} {:>8} {:>8} {:>8}   ({samples} samples each)",
        "RSS, MiB", "idle", "peak", "end"
    );
    for (i, name) in SERVICES.iter().enumerate() {
        println!(
            "  {name:<16} {:>8.1} {:>8.1} {:>8.1}",
            mib(idle[i]),
            mib(peak[i]),
            mib(end[i])
        );
    }
    println!(
        "  {:<16} {:>8.1} {:>8.1} {:>8.1}   (redis-server's own RSS, for context)",
        "redis-server",
        mib(idle[3]),
        mib(peak[3]),
        mib(end[3])
    );
    println!(
        "  Redis used_memory: {:.1} MiB idle, {:.1} MiB peak, {:.1} MiB at the end ({} customers' state)",
        mib(redis_idle),
        mib(redis_peak),
        mib(redis_end),
        CUSTOMERS
    );
    drop(processes);
}

/// A line on stderr with the time since the bench started: where a slow run spends it.
fn progress(what: &str) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let at = START.get_or_init(Instant::now).elapsed();
    eprintln!("rss [{:>6.1} s] {what}", at.as_secs_f64());
}

/// The directory holding the release binaries: the one this bench was built into
/// (`<target>/release/deps/rss-*` runs from `<target>/release`).
fn release_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("this benchmark");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the target's release directory")
        .to_path_buf();
    for name in SERVICES {
        assert!(
            dir.join(name).is_file(),
            "{} is missing: run `cargo build --locked --release -p purchase-ingest -p \
             churn-scoring -p feedback` first",
            dir.join(name).display()
        );
    }
    dir
}

/// A service binary running, killed when dropped (also when the bench fails).
struct Service {
    name: &'static str,
    child: Child,
}

impl Service {
    /// `name`'s binary on `port`, on `broker` and `redis`, with its admin endpoint off.
    fn start(
        bins: &Path,
        name: &'static str,
        port: u16,
        broker: &Tansu,
        redis: &RedisServer,
    ) -> Self {
        let prefix = match name {
            "purchase-ingest" => "CHURNGUARD_INGEST_",
            "churn-scoring" => "CHURNGUARD_SCORING_",
            _ => "CHURNGUARD_FEEDBACK_",
        };
        let mut command = Command::new(bins.join(name));
        let mut set = |key: &str, value: String| {
            command.env(format!("{prefix}{key}"), value);
        };
        set("LISTEN_ADDR", format!("127.0.0.1:{port}"));
        set("ADMIN_ADDR", String::new());
        set("LOG__BACKEND", "kafka".into());
        set("LOG__KAFKA__BOOTSTRAP_SERVERS", broker.bootstrap());
        set("TOPICS__PARTITIONS", PARTITIONS.to_string());
        if name != "purchase-ingest" {
            set("REDIS__URL", redis.url());
        }
        if name == "feedback" {
            set("KEK__ENV", KEK_VAR.into());
            command.env(KEK_VAR, "07".repeat(32));
        }
        let child = command
            .env("RUST_LOG", "info")
            .stdout(broker.log_for(name))
            .stderr(broker.log_for(name))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Self { name, child }
    }

    /// Fails the bench if the process has exited.
    fn alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited: {status}", self.name);
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the service on `port` reports SERVING (gRPC health).
async fn serving(service: &mut Service, port: u16) {
    let what = format!("{} to serve", service.name);
    eventually(Duration::from_secs(120), &what, || {
        service.alive();
        async move {
            let channel =
                tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                    .ok()?
                    .connect()
                    .await
                    .ok()?;
            let mut health = HealthClient::new(channel);
            let status = health
                .check(HealthCheckRequest::default())
                .await
                .ok()?
                .into_inner()
                .status;
            (status == ServingStatus::Serving as i32).then_some(())
        }
    })
    .await;
}

/// Every process's VmRSS in bytes, read every [`SAMPLE_EVERY`] on a thread of its own:
/// the latest reading, and the largest since [`Sampler::peak_from_now`].
struct Sampler {
    state: Arc<Mutex<Readings>>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

#[derive(Default)]
struct Readings {
    latest: Vec<u64>,
    peak: Vec<u64>,
    samples: usize,
}

impl Sampler {
    fn start(pids: Vec<u32>) -> Self {
        let state = Arc::new(Mutex::new(Readings {
            latest: vec![0; pids.len()],
            peak: vec![0; pids.len()],
            samples: 0,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let now: Vec<u64> = pids.iter().map(|pid| vm_rss(*pid)).collect();
                    let mut s = state.lock().unwrap_or_else(PoisonError::into_inner);
                    for (i, rss) in now.into_iter().enumerate() {
                        s.latest[i] = rss;
                        s.peak[i] = s.peak[i].max(rss);
                    }
                    s.samples += 1;
                    drop(s);
                    std::thread::sleep(SAMPLE_EVERY);
                }
            })
        };
        // The first reading, so that `latest` is never empty.
        while state.lock().unwrap_or_else(PoisonError::into_inner).samples == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        Self {
            state,
            stop,
            thread,
        }
    }

    fn latest(&self) -> Vec<u64> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .latest
            .clone()
    }

    /// Forgets the peaks so far: the next ones are under load.
    fn peak_from_now(&self) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.peak = s.latest.clone();
    }

    fn peak(&self) -> Vec<u64> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .peak
            .clone()
    }

    /// Stops sampling; returns how many samples were taken.
    fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the sampler");
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .samples
    }
}

/// `VmRSS` of process `pid`, in bytes (0 if it is gone).
fn vm_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1_024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// A number from Redis's INFO `section` (`redis-cli`: this crate has no Redis client).
fn redis_info(redis: &RedisServer, section: &str, field: &str) -> u64 {
    let out = Command::new("redis-cli")
        .args(["-p", &redis.port().to_string(), "INFO", section])
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("INFO {section} has no {field}"))
}

/// What the gateway's stream got back.
struct Load {
    accepted: u64,
    refused: std::collections::BTreeMap<String, u64>,
    /// Each partition's end, from the acknowledgements.
    ends: Vec<u64>,
}

/// Streams [`RATE`] swipes a second for [`SECONDS`] s to purchase-ingest at `endpoint`,
/// a message every `MESSAGE / RATE` s whatever the answers do; returns once every
/// message is answered.
async fn offer(endpoint: String) -> Load {
    let mut client = PurchaseIngestClient::connect(endpoint)
        .await
        .expect("connect to purchase-ingest");
    let messages = RATE * SECONDS / MESSAGE;
    let (tx, rx) = tokio::sync::mpsc::channel(1_024);
    let pacing = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_micros(1_000_000 * MESSAGE / RATE));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for m in 0..messages {
            every.tick().await;
            let now = chrono::Utc::now().to_rfc3339();
            let swipes = (0..MESSAGE).map(|i| swipe(m * MESSAGE + i, &now)).collect();
            let request = pb::StreamSwipesRequest {
                swipes,
                historical: false,
            };
            if tx.send(request).await.is_err() {
                break;
            }
        }
    });
    let mut answers = client
        .stream_swipes(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    let mut load = Load {
        accepted: 0,
        refused: Default::default(),
        ends: vec![0; PARTITIONS as usize],
    };
    while let Some(answer) = answers.message().await.expect("an answer") {
        for r in answer.results {
            match r.outcome {
                Some(pb::swipe_result::Outcome::Accepted(at)) => {
                    load.accepted += 1;
                    let end = &mut load.ends[at.partition as usize];
                    *end = (*end).max(at.offset + 1);
                }
                Some(pb::swipe_result::Outcome::Rejected(why)) => {
                    *load.refused.entry(why.code).or_insert(0) += 1;
                }
                None => *load.refused.entry("no outcome".into()).or_insert(0) += 1,
            }
        }
    }
    pacing.await.expect("the pacing");
    load
}

/// Records single swipes (RecordSwipe, one append each) until every partition's newest
/// batch holds one record: Tansu 0.6's memory storage does not answer a fetch from
/// inside a partition's newest batch, so a scorer whose checkpoint is there would wait
/// for good (as the scorer kill test found).
async fn newest_batches_of_one(endpoint: String, load: &mut Load) {
    let mut client = PurchaseIngestClient::connect(endpoint)
        .await
        .expect("connect to purchase-ingest");
    let mut single = vec![false; PARTITIONS as usize];
    let mut i = RATE * SECONDS;
    while !single.iter().all(|s| *s) {
        let now = chrono::Utc::now().to_rfc3339();
        let at = client
            .record_swipe(pb::RecordSwipeRequest {
                swipe: Some(swipe(i, &now)),
                historical: false,
            })
            .await
            .expect("a single swipe recorded")
            .into_inner()
            .accepted
            .expect("accepted");
        single[at.partition as usize] = true;
        let end = &mut load.ends[at.partition as usize];
        *end = (*end).max(at.offset + 1);
        load.accepted += 1;
        i += 1;
        assert!(
            i < RATE * SECONDS + 1_000,
            "single swipes reach every partition"
        );
    }
}

fn swipe(i: u64, occurred_at: &str) -> pb::Swipe {
    pb::Swipe {
        swipe_id: format!("rss-{i}"),
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

/// What the complaints trickle got.
struct Filed {
    filed: u64,
    /// Answers UNAVAILABLE or DEADLINE_EXCEEDED, each retried with the same idempotency
    /// key (which the API says is safe).
    retried: u64,
    /// Complaints still not filed after [`ATTEMPTS`] tries.
    failed: u64,
}

/// Tries per complaint.
const ATTEMPTS: usize = 20;

/// Files [`COMPLAINTS_PER_SECOND`] complaints a second for [`SECONDS`] s with feedback
/// at `endpoint`, one call at a time, as a client would: an answer asking for a retry
/// (UNAVAILABLE, DEADLINE_EXCEEDED) is retried after 200 ms with the same key.
async fn complain(endpoint: String) -> Filed {
    let mut client = FeedbackClient::connect(endpoint)
        .await
        .expect("connect to feedback");
    let mut every = tokio::time::interval(Duration::from_millis(1_000 / COMPLAINTS_PER_SECOND));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut out = Filed {
        filed: 0,
        retried: 0,
        failed: 0,
    };
    for i in 0..COMPLAINTS_PER_SECOND * SECONDS {
        every.tick().await;
        let request = fb::FileComplaintRequest {
            idempotency_key: format!("rss-complaint-{i}"),
            customer: Some(fb::Customer {
                kind: Some(fb::customer::Kind::CustomerId(format!(
                    "cust-{}",
                    i * 7_919 % CUSTOMERS
                ))),
            }),
            contact: Some(fb::ContactDetails {
                name: canary::CONTACT_NAME.into(),
                phone: canary::CONTACT_PHONE.into(),
                email: String::new(),
                address: canary::CONTACT_ADDRESS.into(),
            }),
            store_id: format!("store-{}", i % 40),
            channel: fb::Channel::Till as i32,
            touchpoint: fb::Touchpoint::Staff as i32,
            severity: fb::Severity::Minor as i32,
            description: "Waited twenty minutes at the till".into(),
            occurred_at: chrono::Utc::now().to_rfc3339(),
        };
        let mut filed = false;
        for _ in 0..ATTEMPTS {
            match client.file_complaint(request.clone()).await {
                Ok(_) => {
                    filed = true;
                    break;
                }
                Err(e)
                    if matches!(
                        e.code(),
                        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                    ) =>
                {
                    out.retried += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("complaint {i} refused: {e}"),
            }
        }
        if filed {
            out.filed += 1;
        } else {
            out.failed += 1;
        }
    }
    out
}
