//! `purchase-ingest [--config FILE] [--simulate-stores N]`
//!
//! Loads settings (defaults, file, `CHURNGUARD_INGEST_*` environment), opens the configured
//! event log and serves gRPC until SIGTERM or Ctrl-C. With `--simulate-stores N` it also
//! runs a simulated chain of N stores against itself.

use std::sync::Arc;
use std::time::Duration;

use churnguard_eventlog::EventLog;
use churnguard_runtime::cli::{self, ServiceArgs};
use churnguard_runtime::{OnLog, shutdown_signal, with_log};
use churnguard_telemetry::Telemetry;
use clap::Parser;
use purchase_ingest::simulator::{self, SimStats, SimulatorConfig};
use purchase_ingest::{App, Settings};
use tokio_util::sync::CancellationToken;

// glibc's malloc was the largest part of what tracing costs ingest in `make bench`
// (spans are made on the runtime's workers and freed on the exporter's thread), as it
// was a third of the scorer's CPU; mimalloc, as in the other services. The benchmark
// uses the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The gRPC front door for card swipes: validates them and publishes each as a CloudEvent
/// to the event log.
#[derive(Debug, Parser)]
#[command(name = "purchase-ingest", version)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
    /// Also run a simulated chain of N stores against this server.
    #[arg(long, value_name = "N")]
    simulate_stores: Option<u32>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (args, settings): (Args, Settings) = cli::start("purchase-ingest", |args| &args.service);
    // Flushes the spans still buffered when dropped, after the service has stopped.
    let _telemetry = Telemetry::init("purchase-ingest");
    let log = settings.log.clone();
    let serve = Serve {
        settings,
        simulate_stores: args.simulate_stores,
    };
    with_log(&log, serve).await?
}

struct Serve {
    settings: Settings,
    simulate_stores: Option<u32>,
}

impl OnLog for Serve {
    type Output = anyhow::Result<()>;

    async fn run<L: EventLog>(self, log: L) -> anyhow::Result<()> {
        let running = App::build(self.settings, log).await?.spawn();
        let stop = CancellationToken::new();
        let stats = Arc::new(SimStats::default());
        let sim = self.simulate_stores.map(|stores| {
            let cfg = SimulatorConfig {
                stores,
                ..SimulatorConfig::default()
            };
            tracing::info!(
                stores,
                per_store_per_sec = cfg.swipes_per_sec_per_store,
                "simulated stores starting"
            );
            tokio::spawn(report_progress(stats.clone(), stop.clone()));
            tokio::spawn(simulator::run(
                running.endpoint(),
                cfg,
                stats.clone(),
                stop.clone(),
            ))
        });
        let signal_stop = stop.clone();
        let result = running
            .until(async move {
                shutdown_signal().await;
                tracing::info!("shutdown requested");
                signal_stop.cancel();
            })
            .await;
        stop.cancel();
        if let Some(sim) = sim {
            let _ = sim.await;
            let (accepted, invalid, failed) = stats.snapshot();
            tracing::info!(accepted, invalid, failed, "simulated stores: final totals");
        }
        result.map_err(Into::into)
    }
}

/// Logs the simulated chain's totals every five seconds.
async fn report_progress(stats: Arc<SimStats>, stop: CancellationToken) {
    let mut last = 0;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        let (accepted, invalid, failed) = stats.snapshot();
        tracing::info!(
            accepted,
            invalid,
            failed,
            per_sec = (accepted - last) / 5,
            "simulated stores: swipes accepted, refused as invalid, failed"
        );
        last = accepted;
    }
}
