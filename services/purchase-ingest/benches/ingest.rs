//! `make bench`: purchase-ingest throughput, each figure next to the physical limit
//! measured in the same run on the same machine.
//!
//! - embedded log: raw `write` + `fdatasync` of the same bytes in the same group size
//!   (the disk's limit), then `EventLog::append`, then swipes through gRPC: batches from
//!   several gateways (with each batch's acknowledgement time), one gateway sending one
//!   swipe per message, and RecordSwipe from 64 callers (with each call's);
//! - Kafka (Tansu, SQLite and memory storage): a raw rdkafka idempotent producer (the
//!   broker's limit for this client), then `KafkaLog::append`, then swipes through gRPC
//!   as above.
//!
//! Figures are rates on a shared, noisy 2-core machine: compare ratios, not absolutes.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_eventlog::{EventLog, Header, OutgoingRecord};
use churnguard_kafka::{KafkaLog, KafkaSettings};
use churnguard_proto::ingest::v1 as pb;
use churnguard_proto::ingest::v1::purchase_ingest_client::PurchaseIngestClient;
use churnguard_telemetry::{Sampling, Telemetry, TraceSettings};
use churnguard_testkit::Tansu;
use purchase_ingest::config::Backend;
use purchase_ingest::{App, Settings};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{BufferSettings, Codec};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Endpoint;
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

// The allocator of the purchase-ingest binary (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 500;
const WRITERS: usize = 8;
/// The RecordSwipe run of the cost section sends this fraction of the stream runs' swipes
/// (a call per swipe is that much slower).
const RECORD_SWIPE_SHARE: usize = 5;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // A child of `observability_cost`: one run, printed as rates.
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--cost-run") {
        let n = args[i + 2].parse().expect("a count");
        rt.block_on(cost_run(Setting::from_arg(&args[i + 1]), n));
        return;
    }
    // `cargo bench -p purchase-ingest --bench ingest -- --only tansu-memory`: one section
    // (`cost`, `instructions`, `embedded`, `tansu-memory` or `tansu`), to profile it on
    // its own. `--cost-only` is `--only cost` (which counts the instructions too).
    let only = match args.iter().position(|a| a == "--only") {
        Some(i) => Some(args.get(i + 1).expect("--only names a section").as_str()),
        None if args.iter().any(|a| a == "--cost-only") => Some("cost"),
        None => None,
    };
    let runs = |section: &str| only.is_none_or(|o| o == section);
    rt.block_on(async {
        println!(
            "churnguard ingest benchmarks: {} cores, batches of {BATCH}, {WRITERS} concurrent writers",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let sample = sample_record(0);
        println!("record size: {} bytes payload (a real CloudEvent), key ~10 bytes\n", sample.payload.len());
        if runs("cost") {
            observability_cost(100_000).await;
        }
        if runs("cost") || runs("instructions") {
            instruction_cost(10_000);
        }
        if runs("embedded") {
            embedded(200_000).await;
        }
        if runs("tansu-memory") {
            kafka("Tansu, memory storage", Tansu::start_in_memory(), 200_000).await;
        }
        if runs("tansu") {
            kafka("Tansu, SQLite storage (durable)", Tansu::start(), 60_000).await;
        }
        println!("peak RSS of this process: {} MiB", peak_rss_kib() / 1024);
    });
}

fn sample_record(i: usize) -> OutgoingRecord {
    let swipe = swipe(i, "2026-11-22T10:15:00+01:00");
    let payload = format!(
        r#"{{"specversion":"1.0","id":"6f1c2b0e-54a4-4d5e-9b1f-{i:012}","source":"/churnguard/stores/{store}","type":"churnguard.purchase.card_swiped.v1","subject":"{cust}","time":"{t}","datacontenttype":"application/json","data":{{"swipe_id":"{id}","customer":"{cust}","store_id":"{store}","terminal_id":"till-1","employee_id":"emp-1","occurred_at":"{t}","amount":{{"minor_units":1250,"currency":"EUR"}},"item_count":3}}}}"#,
        store = swipe.store_id,
        cust = format!("cust-{}", i % 10_000),
        t = swipe.occurred_at,
        id = swipe.swipe_id
    );
    OutgoingRecord {
        key: format!("cust-{}", i % 10_000).into_bytes(),
        payload: payload.into_bytes(),
        headers: vec![
            Header::new(
                "content-type",
                "application/cloudevents+json; charset=utf-8",
            ),
            Header::new(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        ],
        timestamp_ms: 1_763_806_500_000,
    }
}

fn swipe(i: usize, occurred_at: &str) -> pb::Swipe {
    pb::Swipe {
        swipe_id: format!("bench-{i}"),
        customer: Some(pb::swipe::Customer::CustomerId(format!(
            "cust-{}",
            i % 10_000
        ))),
        store_id: format!("store-{}", i % 40),
        terminal_id: "till-1".into(),
        employee_id: "emp-1".into(),
        occurred_at: occurred_at.into(),
        amount: Some(pb::Amount {
            minor_units: 1250,
            currency: "EUR".into(),
        }),
        item_count: 3,
    }
}

fn report(what: &str, n: usize, took: Duration, limit: Option<f64>) -> f64 {
    let rate = n as f64 / took.as_secs_f64();
    match limit {
        Some(l) => println!(
            "  {what:<44} {rate:>10.0} /s   {:>5.2} x the limit",
            rate / l
        ),
        None => println!("  {what:<44} {rate:>10.0} /s   (the limit)"),
    }
    rate
}

/// Appends `n` records from `WRITERS` tasks in batches of `BATCH`.
async fn append_all<L: EventLog>(log: Arc<L>, topic: &'static str, n: usize) -> Duration {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = w * BATCH;
            while i < n {
                let records: Vec<OutgoingRecord> =
                    (i..(i + BATCH).min(n)).map(sample_record).collect();
                for r in log.append(topic, records).await {
                    r.expect("append");
                }
                i += WRITERS * BATCH;
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    started.elapsed()
}

/// How a load went: how long it took, and how long each call or batch waited for its
/// acknowledgement.
struct Load {
    took: Duration,
    acks: Vec<Duration>,
}

impl Load {
    /// The load's callers, each handing back the acknowledgement times it saw.
    async fn of(started: Instant, tasks: Vec<tokio::task::JoinHandle<Vec<Duration>>>) -> Self {
        let mut acks = Vec::new();
        for t in tasks {
            acks.extend(t.await.expect("a caller"));
        }
        Load {
            took: started.elapsed(),
            acks,
        }
    }

    /// p50, p99 and the slowest acknowledgement, in milliseconds, for a report line.
    fn acknowledgements(mut self, per: &str) -> String {
        self.acks.sort();
        let at = |q: f64| {
            let i = ((self.acks.len() as f64 * q).ceil() as usize).clamp(1, self.acks.len());
            self.acks[i - 1].as_secs_f64() * 1e3
        };
        format!(
            "    acknowledgement ({per}): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            at(0.50),
            at(0.99),
            at(1.0)
        )
    }
}

/// Sends `n` swipes through purchase-ingest's StreamSwipes from `WRITERS` gateways, each
/// sending a batch and waiting for its answers before the next.
async fn stream_all(addr: std::net::SocketAddr, n: usize) -> Load {
    let now = chrono::Utc::now().to_rfc3339();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let now = now.clone();
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            let mut client = PurchaseIngestClient::connect(format!("http://{addr}"))
                .await
                .expect("connect");
            let (tx, rx) = mpsc::channel(2);
            let mut answers = client
                .stream_swipes(ReceiverStream::new(rx))
                .await
                .expect("stream")
                .into_inner();
            let mut i = w * BATCH;
            while i < n {
                let swipes = (i..(i + BATCH).min(n)).map(|k| swipe(k, &now)).collect();
                let sent = Instant::now();
                tx.send(pb::StreamSwipesRequest {
                    swipes,
                    historical: false,
                })
                .await
                .expect("send");
                let answer = answers.message().await.expect("answer").expect("one");
                acks.push(sent.elapsed());
                assert!(
                    answer
                        .results
                        .iter()
                        .all(|r| matches!(r.outcome, Some(pb::swipe_result::Outcome::Accepted(_)))),
                    "every swipe accepted"
                );
                i += WRITERS * BATCH;
            }
            acks
        }));
    }
    Load::of(started, tasks).await
}

/// Prost, but every message in its own DATA frame: a gateway that sends each swipe as it
/// happens.
struct FramePerMessage;

impl Codec for FramePerMessage {
    type Encode = pb::StreamSwipesRequest;
    type Decode = pb::StreamSwipesResponse;
    type Encoder = ProstEncoder<pb::StreamSwipesRequest>;
    type Decoder = ProstDecoder<pb::StreamSwipesResponse>;

    fn encoder(&mut self) -> Self::Encoder {
        // Yield after every message.
        ProstEncoder::new(BufferSettings::new(1024, 1))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<Self::Encode, Self::Decode>::raw_decoder(BufferSettings::default())
    }
}

/// Sends `n` swipes through StreamSwipes from one gateway, one swipe per message, each
/// message its own DATA frame, as fast as it can, reading the answers as they come.
async fn stream_one_per_message(addr: std::net::SocketAddr, n: usize) -> Duration {
    let now = chrono::Utc::now().to_rfc3339();
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let started = Instant::now();
    let (tx, rx) = mpsc::channel(1024);
    let sender = tokio::spawn(async move {
        for i in 0..n {
            let swipes = vec![swipe(i, &now)];
            tx.send(pb::StreamSwipesRequest {
                swipes,
                historical: false,
            })
            .await
            .expect("send");
        }
    });
    let mut answers = grpc
        .streaming(
            tonic::Request::new(ReceiverStream::new(rx)),
            PathAndQuery::from_static("/churnguard.ingest.v1.PurchaseIngest/StreamSwipes"),
            FramePerMessage,
        )
        .await
        .expect("stream")
        .into_inner();
    let mut answered = 0;
    while let Some(answer) = answers.message().await.expect("answer") {
        assert!(
            answer
                .results
                .iter()
                .all(|r| matches!(r.outcome, Some(pb::swipe_result::Outcome::Accepted(_)))),
            "every swipe accepted"
        );
        answered += 1;
    }
    assert_eq!(answered, n, "one answer per message");
    sender.await.expect("sender");
    started.elapsed()
}

/// Sends `n` swipes through RecordSwipe from `callers` concurrent callers on one channel,
/// one swipe per call, each caller waiting for its answer before the next.
async fn record_swipes(addr: std::net::SocketAddr, n: usize, callers: usize) -> Load {
    let now = chrono::Utc::now().to_rfc3339();
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..callers {
        let (now, channel) = (now.clone(), channel.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = PurchaseIngestClient::new(channel);
            let mut acks = Vec::new();
            for i in (c..n).step_by(callers) {
                let sent = Instant::now();
                let accepted = client
                    .record_swipe(pb::RecordSwipeRequest {
                        swipe: Some(swipe(i, &now)),
                        historical: false,
                    })
                    .await
                    .expect("accepted")
                    .into_inner()
                    .accepted;
                acks.push(sent.elapsed());
                assert!(accepted.is_some(), "every swipe accepted");
            }
            acks
        }));
    }
    Load::of(started, tasks).await
}

/// purchase-ingest on `log`, serving in the background.
async fn ingest_app<L: EventLog>(settings: Settings, log: L) -> purchase_ingest::Running {
    App::build(settings, log).await.expect("app").spawn()
}

fn ingest_settings(backend: Backend) -> Settings {
    let mut s = Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        publish_timeout_ms: 30_000,
        ..Settings::default()
    };
    s.log.backend = backend;
    s
}

/// What metrics and tracing cost ingest: swipes through StreamSwipes on the embedded log,
/// in batches of 500 and one per message, and through RecordSwipe (a server span and a
/// producer span per swipe) from 16 callers (the rate follows the log's fsync latency)
/// and from 64 (the rate follows the CPU). Four settings ([`Setting`]), each against
/// "off" (no metrics recorder, no tracing subscriber: every metric and span a no-op):
/// the metrics alone; metrics and every span traced and exported over OTLP to a
/// collector in the same process; and the same with the default sampler, which keeps a
/// tenth of the traces that start at the service (head sampling: a call not kept makes
/// no span). None can be removed once
/// installed, so each run is a child process of this benchmark. The rates swing by a
/// fifth from run to run on this shared machine (the embedded log waits on fsync), so the
/// settings run in rounds, forwards then backwards (a drift hurts all alike), and each
/// setting is set against off's run of the same round: the figure is the median of those
/// paired ratios, printed with their range.
///
/// Two figures per kind of call: the rate, and the service's own CPU time per swipe
/// (its threads only: the callers run on a runtime of their own and the collector on a
/// thread of its own, see [`cost_run`]). Where the service is CPU-bound its throughput
/// is the inverse of that time, so off's time over a setting's is the throughput kept; it
/// counts the scheduler's own work too (workers spinning before they park), which is
/// most of a unary call's time at low load.
async fn observability_cost(n: usize) {
    const ROUNDS: usize = 6;
    println!(
        "metrics and tracing cost: swipes through gRPC on the embedded log ({n} per stream run, {} per RecordSwipe run; {ROUNDS} rounds of a child process per setting; medians of the rounds' ratios to off, [lowest - highest])",
        n / RECORD_SWIPE_SHARE
    );
    // rates[setting][kind] and cpu[setting][kind]: one per run.
    let mut rates = vec![vec![Vec::new(); 4]; Setting::ALL.len()];
    let mut cpu = vec![vec![Vec::new(); 4]; Setting::ALL.len()];
    let mut spans = vec![Vec::new(); Setting::ALL.len()];
    for round in 0..ROUNDS {
        let mut order: Vec<usize> = (0..Setting::ALL.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for s in order {
            let out = std::process::Command::new(std::env::current_exe().expect("this benchmark"))
                .args(["--cost-run", Setting::ALL[s].arg(), &n.to_string()])
                .output()
                .expect("a child run");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            let figures: Vec<f64> = stdout
                .split_whitespace()
                .map(|r| r.parse().expect("the child's figures"))
                .collect();
            for kind in 0..4 {
                rates[s][kind].push(figures[kind]);
                cpu[s][kind].push(figures[4 + kind]);
            }
            spans[s].push(figures[8]);
        }
    }
    println!(
        "  (rate: swipes/s through the whole machine, which the callers and the collector share; \
         CPU: the service's own CPU time per swipe, whose ratio is the throughput ratio once the \
         service has the cores to itself; target: >= 95 % of off)"
    );
    let kinds = [
        "StreamSwipes, batches of 500",
        "StreamSwipes, one swipe per message",
        "RecordSwipe, 16 callers",
        "RecordSwipe, 64 callers",
    ];
    for (kind, what) in kinds.into_iter().enumerate() {
        let off_rate = median(rates[0][kind].clone());
        let off_cpu = median(cpu[0][kind].clone());
        println!("  {what}:  off {off_rate:>8.0} /s, {off_cpu:>7.2} us CPU per swipe");
        for (s, setting) in Setting::ALL.iter().enumerate().skip(1) {
            let rate = median(rates[s][kind].clone());
            let micros = median(cpu[s][kind].clone());
            // Round by round: this setting's rate over off's, and off's CPU time over
            // this setting's (the throughput kept where the service is CPU-bound).
            let rate_kept = paired(&rates[s][kind], &rates[0][kind], |on, off| on / off);
            let cpu_kept = paired(&cpu[s][kind], &cpu[0][kind], |on, off| off / on);
            println!(
                "    {:<34} {rate:>8.0} /s {}; {micros:>7.2} us CPU {} of off's throughput",
                setting.describe(),
                rate_kept.percent("of off"),
                cpu_kept.percent(""),
            );
        }
    }
    for (s, setting) in Setting::ALL.iter().enumerate().skip(2) {
        println!(
            "  spans the collector received per run, {}: {:.0} (median)",
            setting.describe(),
            median(spans[s].clone())
        );
    }
    println!();
}

/// The same cost counted in instructions ([`churnguard_testkit::instructions`]): a child
/// run of each setting under valgrind, which counts every instruction the process
/// executes. Unlike a time, a count hardly moves with what else the machine is doing (two
/// runs of off tell how much it does move), so a few per cent can be told apart here
/// where [`observability_cost`]'s rounds swing by a fifth. It counts work, not waiting or
/// contention, and the whole process: the callers (the same in every setting, about a
/// quarter of off's instructions in a callgrind profile) and, where traced, the
/// collector's decoding too. Skipped where valgrind is not installed.
fn instruction_cost(n: usize) {
    use churnguard_testkit::instructions;
    const ROUNDS: usize = 2;
    if !instructions::available() {
        println!("instructions: valgrind is not installed, not counted\n");
        return;
    }
    let swipes = 2 * n + 2 * (n / RECORD_SWIPE_SHARE);
    println!(
        "the same, counted in instructions under valgrind: one child per setting and round \
         ({n} swipes per stream run, {} per RecordSwipe run: {swipes} swipes), {ROUNDS} rounds",
        n / RECORD_SWIPE_SHARE
    );
    let this = std::env::current_exe().expect("this benchmark");
    // counts[setting]: the process's instructions, one per round.
    let mut counts = vec![Vec::new(); Setting::ALL.len()];
    for _ in 0..ROUNDS {
        for (s, setting) in Setting::ALL.iter().enumerate() {
            let args = ["--cost-run", setting.arg(), &n.to_string()];
            counts[s].push(instructions::count(&this, &args));
        }
    }
    let per_swipe = |s: usize| median(counts[s].clone()) / swipes as f64;
    let off = per_swipe(0);
    let (low, high) = counts[0]
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(l, h), &c| (l.min(c), h.max(c)));
    println!(
        "  off {:>10.0} instructions per swipe (its {ROUNDS} runs {:.2} % apart)",
        off,
        100.0 * (high - low) / low
    );
    for (s, setting) in Setting::ALL.iter().enumerate().skip(1) {
        let on = per_swipe(s);
        println!(
            "    {:<48} {on:>10.0} per swipe, {:>+5.1} %: {:>5.1} % of off's throughput where the instructions bound it",
            setting.describe(),
            100.0 * (on - off) / off,
            100.0 * off / on
        );
    }
    println!();
}

/// What a child run of [`observability_cost`] installs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Setting {
    Off,
    Metrics,
    /// Metrics, and every span exported (`OTEL_TRACES_SAMPLER=parentbased_always_on`).
    Traced,
    /// Metrics, and the default sampler's traces exported: a tenth of those starting at
    /// the service ([`Sampling::DEFAULT`]).
    Sampled,
}

impl Setting {
    const ALL: [Setting; 4] = [
        Setting::Off,
        Setting::Metrics,
        Setting::Traced,
        Setting::Sampled,
    ];

    fn arg(self) -> &'static str {
        match self {
            Setting::Off => "off",
            Setting::Metrics => "metrics",
            Setting::Traced => "on",
            Setting::Sampled => "sampled",
        }
    }

    fn from_arg(arg: &str) -> Self {
        Setting::ALL
            .into_iter()
            .find(|s| s.arg() == arg)
            .unwrap_or_else(|| panic!("no cost setting {arg:?}"))
    }

    fn describe(self) -> &'static str {
        match self {
            Setting::Off => "off",
            Setting::Metrics => "metrics",
            Setting::Traced => "metrics, every trace exported",
            Setting::Sampled => "metrics, default sampler (a tenth of new traces)",
        }
    }

    fn metrics(self) -> bool {
        self != Setting::Off
    }

    fn traced(self) -> bool {
        matches!(self, Setting::Traced | Setting::Sampled)
    }

    /// Which traces are kept, where traced.
    fn sampling(self) -> Sampling {
        match self {
            Setting::Sampled => Sampling::DEFAULT,
            _ => Sampling::EVERY_TRACE,
        }
    }
}

/// Ratios of runs to off's run of the same round.
struct Paired(Vec<f64>);

/// `ratio(setting's run, off's run)` for each round.
fn paired(runs: &[f64], off: &[f64], ratio: impl Fn(f64, f64) -> f64) -> Paired {
    Paired(
        runs.iter()
            .zip(off)
            .map(|(&on, &off)| ratio(on, off))
            .collect(),
    )
}

impl Paired {
    /// `97.1 % <what> [93.0 - 101.2]`: the median ratio and the range, in percent.
    fn percent(&self, what: &str) -> String {
        let lowest = self.0.iter().copied().fold(f64::INFINITY, f64::min);
        let highest = self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let what = if what.is_empty() {
            String::new()
        } else {
            format!(" {what}")
        };
        format!(
            "{:>5.1} %{what} [{:>5.1} - {:>5.1}]",
            100.0 * median(self.0.clone()),
            100.0 * lowest,
            100.0 * highest
        )
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let mid = xs.len() / 2;
    if xs.len().is_multiple_of(2) {
        (xs[mid - 1] + xs[mid]) / 2.0
    } else {
        xs[mid]
    }
}

/// An OTLP receiver serving on a thread and runtime of its own, for the life of the
/// process, counting the spans it receives.
fn collector_apart() -> churnguard_testkit::otlp::OtlpReceiver {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(COLLECTOR_THREAD.into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the collector's runtime");
            rt.block_on(async move {
                let receiver = churnguard_testkit::otlp::OtlpReceiver::start_counting().await;
                tx.send(receiver).expect("hand the receiver over");
                std::future::pending::<()>().await;
            });
        })
        .expect("the collector's thread");
    rx.recv().expect("the collector started")
}

/// One child run of [`observability_cost`]: `n` swipes through a fresh service in
/// batches, then one per message, then `n / RECORD_SWIPE_SHARE` through RecordSwipe from
/// 16 callers and as many from 64. Prints the four rates, then the service's CPU time
/// per swipe in each (microseconds), then the number of spans the collector received.
///
/// The callers run on a runtime of their own (threads named [`LOAD_THREAD`]) and the
/// collector on its own thread ([`COLLECTOR_THREAD`]), so that the CPU time of every other
/// thread of the process (the service's workers, its log writer, the span exporter) is
/// the service's.
async fn cost_run(setting: Setting, n: usize) {
    // The collector stands apart from the service, as it would in a deployment: on its
    // own thread and runtime, so that decoding the spans does not hold up the service's
    // workers (it still shares the machine's cores).
    let receiver = setting.traced().then(collector_apart);
    let telemetry = receiver.as_ref().map(|r| {
        Telemetry::init_traces(
            "bench",
            TraceSettings {
                endpoint: Some(r.endpoint()),
                sampling: setting.sampling(),
            },
        )
    });
    let dir = churnguard_testkit::bench_dir("bench-");
    let mut settings = ingest_settings(Backend::Embedded);
    settings.admin_addr = if setting.metrics() {
        "127.0.0.1:0".into()
    } else {
        String::new()
    };
    let app = ingest_app(settings, EmbeddedLog::open(dir.path()).expect("open")).await;
    let addr = app.local_addr();
    let load = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(LOAD_THREAD)
        .enable_all()
        .build()
        .expect("the callers' runtime");
    let calls = n / RECORD_SWIPE_SHARE;
    let runs = [
        measured(&load, n, async move { stream_all(addr, n).await.took }).await,
        measured(&load, n, stream_one_per_message(addr, n)).await,
        measured(&load, calls, async move {
            record_swipes(addr, calls, 16).await.took
        })
        .await,
        measured(&load, calls, async move {
            record_swipes(addr, calls, 64).await.took
        })
        .await,
    ];
    let _ = app.stop().await;
    load.shutdown_background();
    let spans = match (&telemetry, &receiver) {
        (Some(telemetry), Some(receiver)) => {
            telemetry.flush();
            receiver.received()
        }
        _ => 0,
    };
    let rates = runs.iter().map(|(rate, _)| rate.to_string());
    let cpu = runs.iter().map(|(_, micros)| micros.to_string());
    let figures: Vec<String> = rates.chain(cpu).collect();
    println!("{} {spans}", figures.join(" "));
}

/// The name of the callers' threads in a cost run.
const LOAD_THREAD: &str = "load";
/// The name of the collector's thread in a cost run.
const COLLECTOR_THREAD: &str = "collector";

/// Runs `calls` (sending `swipes` swipes) on the callers' runtime: the swipes per second
/// and the service's CPU time per swipe, in microseconds.
async fn measured(
    load: &tokio::runtime::Runtime,
    swipes: usize,
    calls: impl std::future::Future<Output = Duration> + Send + 'static,
) -> (f64, f64) {
    let before = service_cpu();
    let took = load.spawn(calls).await.expect("the callers");
    let spent = service_cpu().saturating_sub(before);
    (
        swipes as f64 / took.as_secs_f64(),
        spent.as_secs_f64() * 1e6 / swipes as f64,
    )
}

/// The CPU time the service's threads have spent so far: every thread of this process
/// but the callers' and the collector's, from the scheduler's own account
/// (`/proc/self/task/*/schedstat`, nanoseconds on a CPU).
fn service_cpu() -> Duration {
    let mut nanos = 0u64;
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let path = task.expect("a thread").path();
        // A thread may end between the listing and the reading: it counts no more.
        let Ok(name) = std::fs::read_to_string(path.join("comm")) else {
            continue;
        };
        if matches!(name.trim_end(), LOAD_THREAD | COLLECTOR_THREAD) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("schedstat")) else {
            continue;
        };
        nanos += stat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Duration::from_nanos(nanos)
}

async fn embedded(n: usize) {
    println!("embedded log ({n} records)");
    let dir = churnguard_testkit::bench_dir("bench-");

    // The limit: the same bytes, appended and fdatasync'd once per BATCH records, by one
    // writer, as the log's group commit does at best.
    let frames: Vec<Vec<u8>> = (0..n).map(|i| sample_record(i).payload).collect();
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("raw.bin"))
        .expect("raw file");
    let started = Instant::now();
    for group in frames.chunks(BATCH) {
        let mut buf = Vec::with_capacity(group.len() * 520);
        for f in group {
            buf.extend_from_slice(&(f.len() as u32).to_le_bytes());
            buf.extend_from_slice(f);
        }
        file.write_all(&buf).expect("write");
        file.sync_data().expect("fdatasync");
    }
    let limit = report(
        "raw write + fdatasync per batch",
        n,
        started.elapsed(),
        None,
    );

    let log = Arc::new(EmbeddedLog::open(dir.path().join("log")).expect("open"));
    log.ensure_topic("bench", 6).await.expect("topic");
    let took = append_all(log.clone(), "bench", n).await;
    report("EventLog::append (embedded)", n, took, Some(limit));

    let app = ingest_app(
        ingest_settings(Backend::Embedded),
        EmbeddedLog::open(dir.path().join("app")).expect("open"),
    )
    .await;
    let load = stream_all(app.local_addr(), n).await;
    report(
        "swipes through gRPC StreamSwipes (embedded)",
        n,
        load.took,
        Some(limit),
    );
    println!("{}", load.acknowledgements(&format!("a batch of {BATCH}")));
    let took = stream_one_per_message(app.local_addr(), n).await;
    report("  one gateway, one swipe per message", n, took, Some(limit));
    record_swipe_line(app.local_addr(), n / RECORD_SWIPE_SHARE, limit).await;
    let _ = app.stop().await;
    println!();
}

async fn kafka(name: &str, broker: Tansu, n: usize) {
    println!("{name} ({n} records)");
    let settings = KafkaSettings {
        bootstrap_servers: broker.bootstrap(),
        delivery_timeout_ms: 30_000,
        queue_timeout_ms: 30_000,
        ..KafkaSettings::default()
    };
    let log = Arc::new(KafkaLog::new(settings.clone()).expect("log"));
    log.ensure_topic("raw", 6).await.expect("topic");
    log.ensure_topic("bench", 6).await.expect("topic");

    // The limit: the same records through a bare rdkafka producer with the same
    // durability settings. Its rate swings by a factor of two or more from run to run
    // here, so it runs warmed up, before and after the service, and the better of the
    // two is the limit the service's rates are set against.
    let records: Vec<OutgoingRecord> = (0..n).map(sample_record).collect();
    raw_produce(&broker, &records[..n / 10]).await;
    let before = raw_produce(&broker, &records).await;
    let append = append_all(log.clone(), "bench", n).await;

    let mut s = ingest_settings(Backend::Kafka);
    s.log.kafka = settings.clone();
    s.topics.purchases = "purchases.bench".into();
    let app = ingest_app(s, KafkaLog::new(settings).expect("log")).await;
    let streamed = stream_all(app.local_addr(), n).await;
    let one_per_message = stream_one_per_message(app.local_addr(), n).await;
    let calls = record_swipes(
        app.local_addr(),
        n / RECORD_SWIPE_SHARE,
        RECORD_SWIPE_CALLERS,
    )
    .await;
    let _ = app.stop().await;
    let after = raw_produce(&broker, &records).await;
    drop(broker);

    let rate = |took: Duration| n as f64 / took.as_secs_f64();
    println!(
        "  raw rdkafka producer (same broker), before the service {:>8.0} /s, after it {:>8.0} /s",
        rate(before),
        rate(after)
    );
    let limit = report(
        "raw rdkafka producer: the better of the two",
        n,
        before.min(after),
        None,
    );
    report("EventLog::append (KafkaLog)", n, append, Some(limit));
    report(
        "swipes through gRPC StreamSwipes (KafkaLog)",
        n,
        streamed.took,
        Some(limit),
    );
    println!(
        "{}",
        streamed.acknowledgements(&format!("a batch of {BATCH}"))
    );
    report(
        "  one gateway, one swipe per message",
        n,
        one_per_message,
        Some(limit),
    );
    record_swipe_report(n / RECORD_SWIPE_SHARE, calls, limit);
    println!();
}

/// `records` through a bare rdkafka idempotent producer (`acks=all`, `linger.ms` 2, as
/// KafkaLog's) to the topic `raw`, round-robin over its 6 partitions: `WRITERS` tasks
/// each hand it `BATCH` records and wait for their deliveries before the next (the
/// window the service's appends have; a single task enqueueing everything at once was
/// slower here, by up to half). How long that took.
async fn raw_produce(broker: &Tansu, records: &[OutgoingRecord]) -> Duration {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let records = Arc::new(records.to_vec());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (producer, records) = (producer.clone(), records.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = w * BATCH;
            while i < records.len() {
                let end = (i + BATCH).min(records.len());
                let mut deliveries = Vec::with_capacity(end - i);
                for (k, r) in records[i..end].iter().enumerate() {
                    let record = FutureRecord::to("raw")
                        .key(&r.key)
                        .payload(&r.payload)
                        .partition(((i + k) % 6) as i32);
                    deliveries.push(
                        producer
                            .send_result(record)
                            .map_err(|(e, _)| e)
                            .expect("enqueue"),
                    );
                }
                for d in deliveries {
                    d.await.expect("delivery").expect("acknowledged");
                }
                i += WRITERS * BATCH;
            }
        }));
    }
    for t in tasks {
        t.await.expect("a writer");
    }
    started.elapsed()
}

/// Callers of the RecordSwipe runs: enough that the rate follows the CPU, not the log's
/// latency.
const RECORD_SWIPE_CALLERS: usize = 64;

/// `n` swipes through RecordSwipe from [`RECORD_SWIPE_CALLERS`] callers: the rate
/// against `limit`, and each call's wait for its acknowledgement.
async fn record_swipe_line(addr: std::net::SocketAddr, n: usize, limit: f64) {
    let load = record_swipes(addr, n, RECORD_SWIPE_CALLERS).await;
    record_swipe_report(n, load, limit);
}

fn record_swipe_report(n: usize, load: Load, limit: f64) {
    report(
        &format!("  RecordSwipe, {RECORD_SWIPE_CALLERS} callers, a swipe per call"),
        n,
        load.took,
        Some(limit),
    );
    println!("{}", load.acknowledgements("a call"));
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
