//! `churn-scoring [--config FILE]`
//!
//! Loads settings (defaults, file, `CHURNGUARD_SCORING_*` environment), opens the
//! configured event log, joins the scorers' consumer group and serves the query API until
//! SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use churn_scoring::App;
use churn_scoring::config::Settings;
use churnguard_config::{Backend, shutdown_signal};
use churnguard_eventlog::EventLog;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_kafka::KafkaLog;
use churnguard_telemetry::Telemetry;

fn config_file() -> anyhow::Result<Option<PathBuf>> {
    let mut file = std::env::var_os("CHURNGUARD_SCORING_CONFIG").map(PathBuf::from);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--config" => file = Some(it.next().context("--config needs a file")?.into()),
            "-h" | "--help" => {
                println!("usage: churn-scoring [--config FILE]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    Ok(file)
}

// glibc's malloc took about a third of the scorer's CPU in `make bench`; mimalloc
// halves that. The benchmark uses the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let file = config_file()?;
    let settings = match Settings::load(file.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("churn-scoring: {e}");
            std::process::exit(2);
        }
    };
    let _telemetry = Telemetry::init("churn-scoring");
    match settings.log.backend {
        Backend::Embedded => {
            let dir = settings.log.embedded.dir.clone();
            let log = EmbeddedLog::open(&dir)
                .with_context(|| format!("opening the embedded log at {}", dir.display()))?;
            serve(settings, Arc::new(log)).await
        }
        Backend::Kafka => {
            let log =
                KafkaLog::new(settings.log.kafka.clone()).context("creating the Kafka clients")?;
            serve(settings, Arc::new(log)).await
        }
    }
}

async fn serve<L: EventLog>(settings: Settings, log: Arc<L>) -> anyhow::Result<()> {
    let app = App::build(settings, log).await?;
    tracing::info!(addr = %app.local_addr(), "churn-scoring started");
    app.spawn()
        .until(async {
            shutdown_signal().await;
            tracing::info!("shutdown requested");
        })
        .await?;
    Ok(())
}
