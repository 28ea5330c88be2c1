//! `make bench`: `churnguard import` of the CDNOW master file (the vendored sample where
//! the master file is not beside the project) into purchase-ingest on the embedded log,
//! next to the same number of swipes streamed through StreamSwipes by one gateway that
//! has them already built: what reading, parsing, batching and the resume state cost on
//! top of the service's own path, measured in the same run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use churnguard_cli::{CdnowValues, Format, ImportOptions};
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_proto::ingest::v1 as pb;
use churnguard_proto::ingest::v1::purchase_ingest_client::PurchaseIngestClient;
use purchase_ingest::{App, Running, Settings};

const BATCH: usize = 500;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let file = history_file();
        let lines = std::fs::read_to_string(&file)
            .expect("the history file")
            .lines()
            .filter(|l| l.trim().chars().next().is_some_and(|c| c.is_ascii_digit()))
            .count();
        println!(
            "churnguard import benchmarks: {} ({lines} purchase lines), into purchase-ingest on the embedded log",
            file.display()
        );

        let dir = tempfile::tempdir().expect("dir");
        let ingest = start(&dir.path().join("streamed")).await;
        let streamed = stream(&ingest, lines).await;
        ingest.stop().await.expect("stops");
        let streamed_rate = lines as f64 / streamed.as_secs_f64();
        println!(
            "  StreamSwipes, one gateway, swipes already built   {streamed_rate:>9.0} /s   (the service's own path)"
        );

        let ingest = start(&dir.path().join("imported")).await;
        let mut opts = ImportOptions::new(
            &file,
            Format::Cdnow(CdnowValues::default()),
            ingest.endpoint(),
        );
        opts.state = Some(dir.path().join("import-state"));
        let started = Instant::now();
        let report = churnguard_cli::import(
            &opts,
            &churnguard_cli::progress::bar(true),
            tokio_util::sync::CancellationToken::new(),
        )
        .await
        .expect("the import runs");
        let took = started.elapsed();
        ingest.stop().await.expect("stops");
        assert_eq!(report.accepted as usize, lines, "{report}");
        let rate = lines as f64 / took.as_secs_f64();
        println!(
            "  churnguard import (read, parse, state, stream)   {rate:>9.0} /s   {:.2} x StreamSwipes ({:.2} s)",
            rate / streamed_rate,
            took.as_secs_f64()
        );
        println!();
    });
}

/// The CDNOW master file beside the project, else the sample vendored in the tree.
fn history_file() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let master = here.join("../../../shared/data/cdnow/CDNOW_master.txt");
    if master.exists() {
        master.canonicalize().unwrap_or(master)
    } else {
        here.join("../../crates/domain/tests/data/CDNOW_sample.txt")
    }
}

/// purchase-ingest taking imports, on a fresh embedded log in `dir`.
async fn start(dir: &Path) -> Running {
    let mut settings = Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: String::new(),
        ..Settings::default()
    };
    settings.limits.allow_import = true;
    settings.log.embedded.dir = dir.to_path_buf();
    App::build(settings, EmbeddedLog::open(dir).expect("log"))
        .await
        .expect("purchase-ingest builds")
        .spawn()
}

/// `n` CDNOW-like swipes (1997, 23,570 customers) in batches of [`BATCH`] on one
/// StreamSwipes call, historical; the time until every batch is answered.
async fn stream(ingest: &Running, n: usize) -> Duration {
    let batches: Vec<pb::StreamSwipesRequest> = (0..n)
        .map(|i| pb::Swipe {
            swipe_id: format!("bench.{i}"),
            customer: Some(pb::swipe::Customer::CustomerId(format!(
                "{:05}",
                i % 23_570
            ))),
            store_id: "cdnow".into(),
            terminal_id: "import".into(),
            employee_id: "import".into(),
            occurred_at: format!("1997-{:02}-{:02}T12:00:00+00:00", 1 + i % 12, 1 + i % 28),
            amount: Some(pb::Amount {
                minor_units: 1_177 + (i % 5_000) as i64,
                currency: "USD".into(),
            }),
            item_count: 1 + (i % 3) as u32,
        })
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(|b| pb::StreamSwipesRequest {
            swipes: b.to_vec(),
            historical: true,
        })
        .collect();
    let mut client = PurchaseIngestClient::connect(ingest.endpoint())
        .await
        .expect("connect");
    let started = Instant::now();
    let mut answers = client
        .stream_swipes(tokio_stream::iter(batches))
        .await
        .expect("stream")
        .into_inner();
    let mut accepted = 0;
    while let Some(answer) = answers.message().await.expect("answer") {
        accepted += answer
            .results
            .iter()
            .filter(|r| matches!(r.outcome, Some(pb::swipe_result::Outcome::Accepted(_))))
            .count();
    }
    let took = started.elapsed();
    assert_eq!(accepted, n, "every swipe accepted");
    took
}
