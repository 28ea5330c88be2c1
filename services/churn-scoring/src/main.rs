//! `churn-scoring [--config FILE]`
//!
//! Loads settings (defaults, file, `CHURNGUARD_SCORING_*` environment), opens the
//! configured event log, joins the scorers' consumer group and serves the query API until
//! SIGTERM or Ctrl-C.

use std::sync::Arc;

use churn_scoring::App;
use churn_scoring::config::Settings;
use churnguard_eventlog::EventLog;
use churnguard_runtime::cli;
use churnguard_runtime::{OnLog, with_log};
use churnguard_telemetry::Telemetry;

// glibc's malloc took about a third of the scorer's CPU in `make bench`; mimalloc
// halves that. The benchmark uses the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings = cli::start_service(
        "churn-scoring",
        env!("CARGO_PKG_VERSION"),
        "Consumes card swipes, keeps per-customer state in Redis exactly once, scores \
         defection risk and serves the ChurnScoring query API.",
    );
    let _telemetry = Telemetry::init("churn-scoring");
    with_log(&settings.log.clone(), Serve(settings)).await?
}

struct Serve(Settings);

impl OnLog for Serve {
    type Output = anyhow::Result<()>;

    async fn run<L: EventLog>(self, log: L) -> anyhow::Result<()> {
        let app = App::build(self.0, Arc::new(log)).await?;
        app.spawn().until_shutdown_signal().await?;
        Ok(())
    }
}
