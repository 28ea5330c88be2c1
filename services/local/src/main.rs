//! `churnguard-local [--simulate-stores N] [--history-days D] [--no-import]` (what `make run` starts)
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
//! (KEK) is `CHURNGUARD_LOCAL_KEK` (64 hex digits or base64) if set, else the one in
//! `local-kek` next to the embedded log directory (`data/local-kek`), generated on the
//! first start (file mode 0600) and reused after, so contact details filed before a
//! restart can still be read (as long as the vault's per-customer keys in Redis survive
//! the restart too). That file is for local use only: a real deployment takes its KEK
//! from a secret manager (`kek.env` or `kek.file`), never from a key kept next to the data
//! it protects. `make clean-data` deletes it with the log. Imports of history
//! (`churnguard import`, purchase-ingest's `historical` requests) are taken unless
//! `--no-import` says otherwise.
//!
//! The embedded log belongs to one process, which is why the services share this one;
//! past one machine each service runs its own binary on Kafka.

use std::path::{Path, PathBuf};
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
use purchase_ingest::config::ServiceSettings;
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
    /// Refuse imports of history (`churnguard import`). By default this one-machine
    /// deployment takes them, from any caller: it asks for no identity.
    #[arg(long)]
    no_import: bool,
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
    let mut ingest_settings = settings_or_exit(BINARY, purchase_ingest::Settings::load(None));
    ingest_settings.limits.allow_import = !args.no_import;
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
    let _telemetry = Telemetry::init("churnguard-local");
    let dir = &ingest_settings.log.embedded.dir;
    let kek = local_kek(&kek_path(dir))?;

    let log = EmbeddedLog::open(dir)
        .with_context(|| format!("opening the embedded log at {}", dir.display()))?;
    let (topic, partitions) = (
        ingest_settings.topics.purchases.clone(),
        ingest_settings.topics.partitions,
    );
    let ingest = purchase_ingest::App::build(ingest_settings, log.clone())
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

/// Where the local KEK is kept: `local-kek` in the directory holding the embedded log's
/// directory (`data/local-kek` for `data/log`).
fn kek_path(log_dir: &Path) -> PathBuf {
    log_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."))
        .join("local-kek")
}

/// `CHURNGUARD_LOCAL_KEK` if set, else the key in `path`, made there on first use.
fn local_kek(path: &Path) -> anyhow::Result<Kek> {
    const VAR: &str = "CHURNGUARD_LOCAL_KEK";
    if std::env::var_os(VAR).is_some() {
        return Kek::from_env(VAR).with_context(|| format!("reading {VAR}"));
    }
    let (kek, made) = load_or_create_kek(path)?;
    if made {
        tracing::info!(path = %path.display(), "feedback: contact vault key generated for local use (set {VAR} to use another)");
    } else {
        tracing::info!(path = %path.display(), "feedback: contact vault key from the data directory");
    }
    Ok(kek)
}

/// The KEK in `path` (hex), or a new random one written there first, readable by this
/// user only (mode 0600), if there is none. `true` when it was made now. Two processes
/// starting at once end with the one key that was written first.
fn load_or_create_kek(path: &Path) -> anyhow::Result<(Kek, bool)> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;

    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(mut file) => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            file.write_all(format!("{hex}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing the local KEK to {}", path.display()))?;
            Ok((Kek::from_bytes(bytes), true))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let kek = Kek::from_file(path).with_context(|| {
                format!(
                    "reading the local KEK from {} (delete it, or `make clean-data`, to start over)",
                    path.display()
                )
            })?;
            Ok((kek, false))
        }
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
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

/// Every ten seconds: swipes so far, the model, per store (every store ListStores lists:
/// the simulated ones and those of an imported history) the customers at risk and the
/// defections of the last 28 days (read through the ChurnScoring API), and the defector
/// outreach cases churn signals opened (through the Feedback API).
async fn report(
    endpoint: String,
    feedback_endpoint: String,
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
        let stores = churnguard_proto::list_all_stores(&mut client)
            .await
            .unwrap_or_else(|s| {
                tracing::warn!(status = %s.message(), "list stores");
                Vec::new()
            });
        for store_id in stores {
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::sync::Arc;

    use churnguard_vault::{MemoryKeyStore, Vault, VaultError};

    use super::*;

    #[test]
    fn the_kek_lives_next_to_the_log_directory() {
        assert_eq!(
            kek_path(Path::new("data/log")),
            PathBuf::from("data/local-kek")
        );
        assert_eq!(kek_path(Path::new("log")), PathBuf::from("./local-kek"));
        assert_eq!(
            kek_path(Path::new("/var/lib/cg/log")),
            PathBuf::from("/var/lib/cg/local-kek")
        );
    }

    #[tokio::test]
    async fn the_kek_is_made_once_private_and_reused_after_a_restart() {
        let dir = tempfile::tempdir().expect("dir");
        let path = kek_path(&dir.path().join("data").join("log"));
        let (first, made) = load_or_create_kek(&path).expect("made");
        assert!(made);
        let mode = std::fs::metadata(&path).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        let (again, made) = load_or_create_kek(&path).expect("read back");
        assert!(!made, "an existing key is reused");

        // What one run sealed, the next run opens; a key made elsewhere does not.
        let store = Arc::new(MemoryKeyStore::default());
        let sealed = Vault::new(first, Arc::clone(&store))
            .seal("cust-1", b"+44 7700 900123")
            .await
            .expect("seal");
        let opened = Vault::new(again, Arc::clone(&store))
            .open("cust-1", &sealed)
            .await
            .expect("the restarted run opens it");
        assert_eq!(opened, b"+44 7700 900123");
        let other = tempfile::tempdir().expect("dir");
        let (stranger, _) = load_or_create_kek(&other.path().join("local-kek")).expect("made");
        assert!(matches!(
            Vault::new(stranger, store).open("cust-1", &sealed).await,
            Err(VaultError::KeyUnwrap)
        ));
    }

    #[test]
    fn a_damaged_key_file_stops_the_start_with_its_path() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("local-kek");
        std::fs::write(&path, "not a key").expect("write");
        let e = load_or_create_kek(&path).expect_err("refused");
        assert!(format!("{e:#}").contains("local-kek"), "{e:#}");
    }
}
