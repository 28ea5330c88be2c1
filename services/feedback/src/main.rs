//! `feedback [--config FILE]`
//!
//! Loads settings (defaults, file, `CHURNGUARD_FEEDBACK_*` environment) and the contact
//! vault's key-encryption key, opens the configured event log, and serves the Feedback API
//! and runs the SLA timers on every partition until SIGTERM or Ctrl-C; then stops the
//! timers, lets in-flight calls finish and flushes the log.

use std::path::PathBuf;
use std::sync::Arc;

use churnguard_eventlog::EventLog;
use churnguard_runtime::cli::settings_or_exit;
use churnguard_runtime::{OnLog, with_log};
use churnguard_telemetry::Telemetry;
use churnguard_vault::Kek;
use clap::Parser;
use feedback::App;
use feedback::config::Settings;

/// Complaints, their SLA clocks and escalation, and defector outreach: event-sourced on
/// the log, read models in Redis; serves the Feedback API.
#[derive(Debug, Parser)]
#[command(name = "feedback", version)]
struct Args {
    /// Settings file (TOML); CHURNGUARD_FEEDBACK_* environment variables override it.
    #[arg(long, value_name = "FILE", env = "CHURNGUARD_FEEDBACK_CONFIG")]
    config: Option<PathBuf>,
}

// The same allocator as the other services' binaries.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (settings, kek) = settings_or_exit(
        "feedback",
        Settings::load(args.config.as_deref()).and_then(|s| {
            let kek = s.load_kek()?;
            Ok((s, kek))
        }),
    );
    let _telemetry = Telemetry::init("feedback");
    let log = settings.log.clone();
    with_log(&log, Serve { settings, kek }).await?
}

struct Serve {
    settings: Settings,
    kek: Kek,
}

impl OnLog for Serve {
    type Output = anyhow::Result<()>;

    async fn run<L: EventLog>(self, log: L) -> anyhow::Result<()> {
        let app = App::build(self.settings, Arc::new(log), self.kek).await?;
        app.spawn().until_shutdown_signal().await?;
        Ok(())
    }
}
