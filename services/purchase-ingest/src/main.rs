//! `purchase-ingest [--config FILE] [--simulate-stores N]`
//!
//! Loads settings (defaults, file, `CHURNGUARD_INGEST_*` environment), opens the configured
//! event log and serves gRPC until SIGTERM or Ctrl-C. With `--simulate-stores N` it also
//! runs a simulated chain of N stores against itself (what `make run` does).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use churnguard_eventlog::EventLog;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_kafka::KafkaLog;
use churnguard_telemetry::Telemetry;
use purchase_ingest::config::Backend;
use purchase_ingest::simulator::{self, SimStats, SimulatorConfig};
use purchase_ingest::{App, Settings, shutdown_signal};
use tokio_util::sync::CancellationToken;

struct Args {
    config: Option<PathBuf>,
    simulate_stores: Option<u32>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        config: std::env::var_os("CHURNGUARD_INGEST_CONFIG").map(PathBuf::from),
        simulate_stores: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--config" => args.config = Some(it.next().context("--config needs a file")?.into()),
            "--simulate-stores" => {
                let n = it.next().context("--simulate-stores needs a number")?;
                args.simulate_stores = Some(n.parse().context("--simulate-stores needs a number")?);
            }
            "-h" | "--help" => {
                println!("usage: purchase-ingest [--config FILE] [--simulate-stores N]");
                std::process::exit(0);
            }
            other => bail!(
                "unknown argument {} (see --help)",
                churnguard_domain::quoted(other)
            ),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let settings = match Settings::load(args.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("purchase-ingest: {e}");
            std::process::exit(2);
        }
    };
    let telemetry = Arc::new(Telemetry::init("purchase-ingest"));
    match settings.log.backend {
        Backend::Embedded => {
            let log = EmbeddedLog::open(&settings.log.embedded.dir).with_context(|| {
                format!(
                    "opening the embedded log at {}",
                    settings.log.embedded.dir.display()
                )
            })?;
            tracing::info!(dir = %settings.log.embedded.dir.display(), "event log: embedded");
            serve(settings, log, telemetry, args.simulate_stores).await
        }
        Backend::Kafka => {
            let log =
                KafkaLog::new(settings.log.kafka.clone()).context("creating the Kafka clients")?;
            tracing::info!(bootstrap = %settings.log.kafka.bootstrap_servers, "event log: kafka");
            serve(settings, log, telemetry, args.simulate_stores).await
        }
    }
}

async fn serve<L: EventLog>(
    settings: Settings,
    log: L,
    telemetry: Arc<Telemetry>,
    simulate_stores: Option<u32>,
) -> anyhow::Result<()> {
    let app = App::build(settings, log, telemetry).await?;
    let addr = app.local_addr();
    let stop = CancellationToken::new();
    let stats = Arc::new(SimStats::default());
    let sim = simulate_stores.map(|stores| {
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
            format!("http://{addr}"),
            cfg,
            stats.clone(),
            stop.clone(),
        ))
    });
    let signal_stop = stop.clone();
    let result = app
        .run_until(async move {
            shutdown_signal().await;
            signal_stop.cancel();
        })
        .await;
    if let Some(sim) = sim {
        let _ = sim.await;
        let (accepted, invalid, failed) = stats.snapshot();
        tracing::info!(accepted, invalid, failed, "simulated stores: final totals");
    }
    result.map_err(Into::into)
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
