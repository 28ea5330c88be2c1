//! The three services in the test's process on one embedded log and one Redis, each
//! on a free loopback port with its admin port off: what the tests of every RPC at once
//! (generated requests, callers without credentials) start.

use std::sync::Arc;

use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_testkit::RedisServer;
use churnguard_vault::Kek;

/// Each service's settings: on a free port, no admin port, on `redis` and the embedded
/// log in `log_dir`. A test changes what it needs before [`Stack::start`].
pub struct StackSettings {
    pub ingest: purchase_ingest::Settings,
    pub scoring: churn_scoring::config::Settings,
    pub feedback: feedback::config::Settings,
}

impl StackSettings {
    pub fn new(redis: &RedisServer, log_dir: &std::path::Path) -> Self {
        let mut ingest = purchase_ingest::Settings {
            listen_addr: "127.0.0.1:0".into(),
            admin_addr: String::new(),
            ..purchase_ingest::Settings::default()
        };
        ingest.log.embedded.dir = log_dir.to_path_buf();
        let mut scoring = churn_scoring::config::Settings {
            listen_addr: "127.0.0.1:0".into(),
            admin_addr: String::new(),
            ..churn_scoring::config::Settings::default()
        };
        scoring.log.embedded.dir = log_dir.to_path_buf();
        scoring.redis.url = redis.url();
        let mut feedback = feedback::config::Settings {
            listen_addr: "127.0.0.1:0".into(),
            admin_addr: String::new(),
            ..feedback::config::Settings::default()
        };
        feedback.log.embedded.dir = log_dir.to_path_buf();
        feedback.redis.url = redis.url();
        Self {
            ingest,
            scoring,
            feedback,
        }
    }
}

/// The three services, running.
pub struct Stack {
    pub ingest: purchase_ingest::Running,
    pub scoring: churn_scoring::Running<EmbeddedLog>,
    pub feedback: feedback::Running,
}

impl Stack {
    /// Builds and starts the three on `log` (opened on the settings' directory), the
    /// feedback contact vault under `kek`.
    pub async fn start(settings: StackSettings, log: &EmbeddedLog, kek: Kek) -> Self {
        let ingest = purchase_ingest::App::build(settings.ingest, log.clone())
            .await
            .expect("purchase-ingest builds")
            .spawn();
        let scoring = churn_scoring::App::build(settings.scoring, Arc::new(log.clone()))
            .await
            .expect("churn-scoring builds")
            .spawn();
        let feedback = feedback::App::build(settings.feedback, Arc::new(log.clone()), kek)
            .await
            .expect("feedback builds")
            .spawn();
        Self {
            ingest,
            scoring,
            feedback,
        }
    }

    /// Stops the three, each cleanly.
    pub async fn stop(self) {
        self.ingest.stop().await.expect("ingest stops");
        self.scoring.stop().await.expect("scoring stops");
        self.feedback.stop().await.expect("feedback stops");
    }
}
