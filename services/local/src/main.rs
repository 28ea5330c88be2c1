//! `churnguard-local [--simulate-stores N] [--history-days D]` (what `make run` starts)
//!
//! Every service in one process on the embedded log (`data/log`): purchase-ingest's gRPC
//! API on 127.0.0.1:50051, churn-scoring's query API on 127.0.0.1:50052 and the Feedback
//! API (complaints, with its SLA timers) on 127.0.0.1:50053, fed by a simulated chain of N
//! stores. On the first start (an empty log) the chain's last D days of history are loaded
//! first, so churn scoring has defectors to find. Every ten seconds
//! a summary is logged, read through the ChurnScoring API like any client would. Redis
//! comes from `CHURNGUARD_SCORING_REDIS__URL`; settings are the services' own
//! (`CHURNGUARD_INGEST_*`, `CHURNGUARD_SCORING_*`, `CHURNGUARD_FEEDBACK_*`), except that
//! all use ingest's log and feedback uses scoring's Redis. Feedback's contact vault key
//! (KEK) is `CHURNGUARD_LOCAL_KEK` (64 hex digits or base64) if set, else one generated
//! at start: for local use only, and contact details sealed under it cannot be read after
//! a restart.
//!
//! The embedded log belongs to one process, which is why the services share this one;
//! past one machine each service runs its own binary on Kafka.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use churnguard_config::Backend;
use churnguard_eventlog::EventLog;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_proto::scoring::v1 as pb;
use churnguard_proto::scoring::v1::churn_scoring_client::ChurnScoringClient;
use churnguard_runtime::cli::settings_or_exit;
use churnguard_runtime::shutdown_signal;
use churnguard_telemetry::Telemetry;
use churnguard_vault::Kek;
use clap::Parser;
use purchase_ingest::simulator::{self, SimStats, SimulatorConfig};
use tokio_util::sync::CancellationToken;

/// Every churnguard service in one process on the embedded log, fed by a simulated chain
/// of stores (what `make run` starts). Settings are the services' own environment
/// variables (CHURNGUARD_INGEST_*, CHURNGUARD_SCORING_*, CHURNGUARD_FEEDBACK_*).
#[derive(Debug, Parser)]
#[command(name = "churnguard-local", version)]
struct Args {
    /// How many stores the simulated chain has.
    #[arg(long = "simulate-stores", value_name = "N", default_value_t = 5)]
    stores: u32,
    /// Days of the chain's history loaded first when the log is empty; below 90, since
    /// purchase-ingest refuses older swipes.
    #[arg(long, value_name = "D", default_value_t = 84,
          value_parser = clap::value_parser!(u32).range(0..90))]
    history_days: u32,
}

/// How this binary names itself in messages.
const BINARY: &str = "churnguard-local";

// glibc's malloc took about a third of the scorer's CPU in `make bench`; mimalloc
// halves that. The benchmark uses the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let ingest_settings = settings_or_exit(BINARY, purchase_ingest::Settings::load(None));
    let mut scoring_settings =
        settings_or_exit(BINARY, churn_scoring::config::Settings::load(None));
    let mut feedback_settings = settings_or_exit(BINARY, load_feedback_settings());
    if ingest_settings.log.backend != Backend::Embedded {
        bail!("churnguard-local runs on the embedded log; run each service's binary on Kafka");
    }
    scoring_settings.log = ingest_settings.log.clone();
    scoring_settings.topics.purchases = ingest_settings.topics.purchases.clone();
    scoring_settings.topics.partitions = ingest_settings.topics.partitions;
    feedback_settings.log = ingest_settings.log.clone();
    feedback_settings.redis = scoring_settings.redis.clone();
    let telemetry = Arc::new(Telemetry::init("churnguard-local"));
    let kek = local_kek()?;

    let dir = &ingest_settings.log.embedded.dir;
    let log = EmbeddedLog::open(dir)
        .with_context(|| format!("opening the embedded log at {}", dir.display()))?;
    let (topic, partitions) = (
        ingest_settings.topics.purchases.clone(),
        ingest_settings.topics.partitions,
    );
    let ingest = purchase_ingest::App::build(ingest_settings, log.clone(), telemetry)
        .await?
        .spawn();
    tracing::info!(addr = %ingest.local_addr(), "purchase-ingest serving");

    let stats = Arc::new(SimStats::default());
    let sim_config = SimulatorConfig {
        stores: args.stores,
        ..SimulatorConfig::default()
    };
    if is_empty(&log, &topic, partitions).await? && args.history_days > 0 {
        tracing::info!(
            days = args.history_days,
            stores = args.stores,
            "empty log: loading the chain's history first"
        );
        simulator::backfill(
            ingest.endpoint(),
            &sim_config,
            args.history_days,
            stats.clone(),
        )
        .await
        .context("loading the simulated history")?;
        let (accepted, _, failed) = stats.snapshot();
        tracing::info!(accepted, failed, "history loaded");
    }

    let scoring = churn_scoring::App::build(scoring_settings, Arc::new(log.clone()))
        .await?
        .spawn();
    tracing::info!(addr = %scoring.local_addr(), "churn-scoring serving");

    let feedback = feedback::App::build(feedback_settings, Arc::new(log.clone()), kek)
        .await?
        .spawn();
    tracing::info!(addr = %feedback.local_addr(), "feedback serving");

    let stop = CancellationToken::new();
    let sim = tokio::spawn(simulator::run(
        ingest.endpoint(),
        sim_config,
        stats.clone(),
        stop.clone(),
    ));
    let report = tokio::spawn(report(
        scoring.endpoint(),
        feedback.endpoint(),
        args.stores,
        stats.clone(),
        stop.clone(),
    ));

    shutdown_signal().await;
    tracing::info!("shutdown requested");
    stop.cancel();
    let _ = sim.await;
    let _ = report.await;
    let complaints = feedback.stop().await;
    let scored = scoring.stop().await;
    let ingested = ingest.stop().await;
    complaints?;
    scored?;
    ingested?;
    Ok(())
}

/// Feedback's settings (defaults and `CHURNGUARD_FEEDBACK_*`), checked but for the KEK
/// source: this process brings its own key.
fn load_feedback_settings() -> Result<feedback::config::Settings, churnguard_config::ConfigError> {
    let settings = churnguard_config::load(
        feedback::config::Settings::default(),
        None,
        feedback::config::ENV_PREFIX,
    )?;
    settings.validate_except_kek()?;
    Ok(settings)
}

/// `CHURNGUARD_LOCAL_KEK` if set, else a key made up now (never written anywhere).
fn local_kek() -> anyhow::Result<Kek> {
    const VAR: &str = "CHURNGUARD_LOCAL_KEK";
    if std::env::var_os(VAR).is_some() {
        return Kek::from_env(VAR).with_context(|| format!("reading {VAR}"));
    }
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    tracing::info!("feedback: contact vault key generated for this run (set {VAR} to keep one)");
    Ok(Kek::from_bytes(bytes))
}

/// Whether the purchases topic (which purchase-ingest has made sure of) holds nothing yet.
async fn is_empty(log: &EmbeddedLog, topic: &str, partitions: u32) -> anyhow::Result<bool> {
    let partitions = log.ensure_topic(topic, partitions).await?;
    for p in 0..partitions {
        if log.end_offset(topic, p).await? > 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Every ten seconds: swipes so far, the model, per store the customers at risk and the
/// defections of the last 28 days (read through the ChurnScoring API), and the defector
/// outreach cases churn signals opened (through the Feedback API).
async fn report(
    endpoint: String,
    feedback_endpoint: String,
    stores: u32,
    stats: Arc<SimStats>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
        let (accepted, invalid, failed) = stats.snapshot();
        tracing::info!(accepted, invalid, failed, "simulated stores: swipes so far");
        let Ok(mut client) = ChurnScoringClient::connect(endpoint.clone()).await else {
            continue;
        };
        match client.get_model(pb::GetModelRequest {}).await {
            Ok(m) => {
                let m = m.into_inner();
                let bg = m.bg_nbd.unwrap_or_default();
                tracing::info!(
                    version = m.version,
                    customers = m.customers,
                    r = bg.r,
                    alpha = bg.alpha,
                    a = bg.a,
                    b = bg.b,
                    "model"
                );
            }
            Err(s) => tracing::info!(status = %s.message(), "model: none yet"),
        }
        let today = chrono::Utc::now().date_naive();
        let period = (
            (today - chrono::Days::new(28)).to_string(),
            today.to_string(),
        );
        for store in 0..stores {
            let store_id = format!("store-{store}");
            let at_risk = client
                .list_at_risk_customers(pb::ListAtRiskCustomersRequest {
                    store_id: store_id.clone(),
                    page_size: 3,
                    page_token: String::new(),
                })
                .await
                .map(|r| r.into_inner().customers)
                .unwrap_or_default();
            let top: Vec<String> = at_risk
                .iter()
                .map(|c| {
                    format!(
                        "{} ({:.2})",
                        c.customer_id,
                        c.value_at_risk_minor_units as f64 / 100.0
                    )
                })
                .collect();
            let stats = client
                .get_store_defection_stats(pb::GetStoreDefectionStatsRequest {
                    store_id: store_id.clone(),
                    from_date: period.0.clone(),
                    to_date: period.1.clone(),
                })
                .await
                .map(|r| r.into_inner());
            match stats {
                Ok(s) => tracing::info!(
                    store = %store_id,
                    home_customers = s.home_customers,
                    defected_28d = s.defected,
                    won_back_28d = s.won_back,
                    defection_rate = format!("{:.1}%", s.defection_rate * 100.0),
                    value_lost = format!("{:.2}", s.value_lost_minor_units as f64 / 100.0),
                    top_at_risk = ?top,
                    "store"
                ),
                Err(s) => tracing::warn!(store = %store_id, status = %s.message(), "store stats"),
            }
        }
        outreach_report(&feedback_endpoint).await;
    }
}

/// The open outreach cases per home store, and how many are overdue.
async fn outreach_report(endpoint: &str) {
    use churnguard_proto::feedback::v1 as fb;
    let Ok(mut client) = churnguard_proto::feedback::v1::feedback_client::FeedbackClient::connect(
        endpoint.to_owned(),
    )
    .await
    else {
        return;
    };
    let mut per_store: std::collections::BTreeMap<String, (u32, u32)> = Default::default();
    let mut token = String::new();
    loop {
        let page = client
            .list_outreach(fb::ListOutreachRequest {
                status: fb::OutreachStatus::Open as i32,
                page_size: 1000,
                page_token: token,
                ..Default::default()
            })
            .await;
        let page = match page {
            Ok(p) => p.into_inner(),
            Err(s) => {
                tracing::warn!(status = %s.message(), "outreach");
                return;
            }
        };
        for c in &page.cases {
            let e = per_store.entry(c.home_store_id.clone()).or_default();
            e.0 += 1;
            e.1 += u32::from(c.overdue);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let open: u32 = per_store.values().map(|v| v.0).sum();
    let overdue: u32 = per_store.values().map(|v| v.1).sum();
    let stores: Vec<String> = per_store
        .iter()
        .map(|(s, (n, late))| format!("{s}: {n} ({late} overdue)"))
        .collect();
    tracing::info!(open, overdue, per_store = ?stores, "outreach cases from churn signals");
}
