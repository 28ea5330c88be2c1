//! `feedback [--config FILE]`
//!
//! Loads settings (defaults, file, `CHURNGUARD_FEEDBACK_*` environment) and the contact
//! vault's key-encryption key, opens the configured event log, and serves the Feedback API
//! and runs the SLA timers on every partition until SIGTERM or Ctrl-C; then stops the
//! timers, lets in-flight calls finish and flushes the log.

use std::sync::Arc;

use churnguard_eventlog::EventLog;
use churnguard_runtime::cli;
use churnguard_runtime::{OnLog, with_log};
use churnguard_telemetry::Telemetry;
use churnguard_vault::Kek;
use feedback::App;
use feedback::config::Settings;

// The same allocator as the other services' binaries.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings = cli::start_service(
        "feedback",
        env!("CARGO_PKG_VERSION"),
        "Complaints, their SLA clocks and escalation, and defector outreach: event-sourced \
         on the log, read models in Redis; serves the Feedback API.",
    );
    let kek = cli::settings_or_exit("feedback", settings.load_kek());
    let _telemetry = Telemetry::init("feedback");
    with_log(&settings.log.clone(), Serve { settings, kek }).await?
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
