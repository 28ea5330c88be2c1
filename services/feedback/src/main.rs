//! `feedback [--config FILE]`
//!
//! Loads settings (defaults, file, `CHURNGUARD_FEEDBACK_*` environment) and the contact
//! vault's key-encryption key, opens the configured event log, and serves the Feedback API
//! and runs the SLA timers on every partition until SIGTERM or Ctrl-C; then stops the
//! timers, lets in-flight calls finish and flushes the log.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use churnguard_config::{Backend, shutdown_signal};
use churnguard_eventlog::EventLog;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_kafka::KafkaLog;
use churnguard_telemetry::Telemetry;
use churnguard_vault::Kek;
use feedback::config::Settings;
use feedback::runtime::Service;

fn config_file() -> anyhow::Result<Option<PathBuf>> {
    let mut file = std::env::var_os("CHURNGUARD_FEEDBACK_CONFIG").map(PathBuf::from);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--config" => file = Some(it.next().context("--config needs a file")?.into()),
            "-h" | "--help" => {
                println!("usage: feedback [--config FILE]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    Ok(file)
}

// The same allocator as the other services' binaries.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let file = config_file()?;
    let (settings, kek) = match Settings::load(file.as_deref()).and_then(|s| {
        let kek = s.load_kek()?;
        Ok((s, kek))
    }) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("feedback: {e}");
            std::process::exit(2);
        }
    };
    let _telemetry = Telemetry::init("feedback");
    match settings.log.backend {
        Backend::Embedded => {
            let dir = settings.log.embedded.dir.clone();
            let log = EmbeddedLog::open(&dir)
                .with_context(|| format!("opening the embedded log at {}", dir.display()))?;
            serve(settings, kek, Arc::new(log)).await
        }
        Backend::Kafka => {
            let log =
                KafkaLog::new(settings.log.kafka.clone()).context("creating the Kafka clients")?;
            serve(settings, kek, Arc::new(log)).await
        }
    }
}

async fn serve<L: EventLog + 'static>(
    settings: Settings,
    kek: Kek,
    log: Arc<L>,
) -> anyhow::Result<()> {
    let service = Service::build(&settings, log, kek).await?;
    tracing::info!(
        addr = %service.local_addr(),
        partitions = service.partitions(),
        "feedback started"
    );
    service
        .spawn()
        .until(async {
            shutdown_signal().await;
            tracing::info!("shutdown requested");
        })
        .await?;
    Ok(())
}
