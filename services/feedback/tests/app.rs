//! The service as its binary runs it: settings from a TOML file and the environment (a
//! bad value named by its key, the KEK required), then `App::build` → `spawn` →
//! `stop` on the embedded log and a real Redis, answering health and a filing; health
//! following Redis down and back up.

// figment's test jail returns its own large error type.
#![allow(clippy::result_large_err)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use churnguard_config::Backend;
use churnguard_eventlog::EventLog;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_proto::feedback::v1 as pb;
use churnguard_proto::feedback::v1::feedback_client::FeedbackClient;
use churnguard_testkit::{RedisServer, admin, eventually, init_test_logging};
use churnguard_vault::Kek;
use feedback::App;
use feedback::api::SERVICE_NAME;
use feedback::config::{ServiceSettings, Settings};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[test]
fn settings_come_from_a_file_and_the_environment_and_name_a_bad_key() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "feedback.toml",
            r#"
listen_addr = "0.0.0.0:50053"
timer_interval_ms = 500

[topics]
partitions = 12

[kek]
file = "/etc/churnguard/kek"

[sla.targets.critical]
first_response = "30m"
update_interval = "2h"
resolution = "6h"

[directory]
owner = "e-1"
[directory.regions.north]
manager = "e-20"
[directory.stores.s-7]
manager = "e-71"
region = "north"
"#,
        )?;
        jail.set_env("CHURNGUARD_FEEDBACK_REDIS__URL", "redis://10.0.0.5:6379/");
        jail.set_env("CHURNGUARD_FEEDBACK_LOG__BACKEND", "kafka");
        let s = Settings::load(Some(Path::new("feedback.toml"))).expect("loads");
        assert_eq!(s.listen_addr, "0.0.0.0:50053");
        assert_eq!(s.topics.partitions, 12);
        assert_eq!(s.topics.events, "feedback.events.v1");
        assert_eq!(s.redis.url, "redis://10.0.0.5:6379/");
        assert_eq!(s.log.backend, Backend::Kafka);
        assert_eq!(s.sla.targets.critical.first_response.secs(), 1_800);
        // Untouched severities keep their defaults, and so do the warnings.
        assert_eq!(s.sla.targets.major.first_response.secs(), 4 * 3_600);
        assert_eq!(s.sla.warnings, vec![0.5, 0.75]);
        let directory = s.directory().expect("directory");
        assert_eq!(directory.region_of("s-7"), Some("north"));
        // The file does not exist: the error names the key, not the key material.
        let e = s.load_kek().expect_err("no such file");
        assert_eq!(e.key, "kek.file");

        jail.set_env("CHURNGUARD_FEEDBACK_TOPICS__PARTITIONS", "0");
        let e = Settings::load(Some(Path::new("feedback.toml"))).expect_err("zero");
        assert_eq!(e.key, "topics.partitions");
        jail.set_env("CHURNGUARD_FEEDBACK_TOPICS__PARTITIONS", "6");
        // Without a file there is no KEK source: the service refuses to start.
        let e = Settings::load(None).expect_err("the KEK is required");
        assert_eq!(e.key, "kek");
        assert!(e.message.contains("kek.env"), "{e}");

        jail.set_env(
            "CHURNGUARD_FEEDBACK_DIRECTORY__STORES__S-7__REGION",
            "south",
        );
        let e = Settings::load(Some(Path::new("feedback.toml"))).expect_err("no region");
        assert_eq!(e.key, "directory.stores.s-7.region");
        Ok(())
    });
}

#[test]
fn the_kubernetes_config_file_loads() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/k8s/feedback.toml");
    figment::Jail::expect_with(|_| {
        let s = Settings::load(Some(&file)).expect("deploy/k8s/feedback.toml loads");
        assert_eq!(s.listen_addr, "0.0.0.0:50053");
        assert_eq!(s.admin_addr, "0.0.0.0:9466");
        assert_eq!(s.log.backend, Backend::Kafka);
        assert_eq!(s.sla, feedback::config::default_sla());
        assert_eq!(s.topics.signals, "churn.signals.v1");
        assert_eq!(s.outreach, feedback::config::OutreachTargets::default());
        assert_eq!(
            s.kek.file.as_deref(),
            Some(Path::new("/etc/churnguard-secrets/kek"))
        );
        let directory = s.directory().expect("directory");
        assert_eq!(directory.region_of("store-7"), Some("north"));
        Ok(())
    });
}

fn filing() -> pb::FileComplaintRequest {
    pb::FileComplaintRequest {
        idempotency_key: "app-file-1".into(),
        customer: Some(pb::Customer {
            kind: Some(pb::customer::Kind::CustomerId("cust-1".into())),
        }),
        contact: Some(pb::ContactDetails {
            name: "Ada Lovelace".into(),
            phone: "+44 7700 900123".into(),
            email: String::new(),
            address: String::new(),
        }),
        store_id: "store-1".into(),
        channel: pb::Channel::Till as i32,
        touchpoint: pb::Touchpoint::Staff as i32,
        severity: pb::Severity::Major as i32,
        description: "Rude at the till".into(),
        occurred_at: (chrono::Utc::now() - chrono::TimeDelta::hours(1)).to_rfc3339(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_built_from_settings_serves_health_and_a_filing_and_stops_cleanly() {
    init_test_logging();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let log = Arc::new(EmbeddedLog::open(dir.path()).expect("log"));
    let mut settings = Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        timer_interval_ms: 100,
        shutdown_grace_ms: 2_000,
        ..Settings::default()
    };
    settings.redis.url = redis.url();
    settings.topics.partitions = 3;
    let service = App::build(settings, log.clone(), Kek::from_bytes([9; 32]))
        .await
        .expect("builds");
    assert_eq!(service.partitions(), 3);
    let admin = service.admin_addr().expect("admin_addr asks for one");
    let running = service.spawn();

    let channel = tonic::transport::Channel::from_shared(running.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel.clone());
    for service in ["", SERVICE_NAME] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health")
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }

    let mut client = FeedbackClient::new(channel);
    let filed = client
        .file_complaint(filing())
        .await
        .expect("file")
        .into_inner()
        .complaint
        .expect("summary");
    assert_eq!(filed.version, 1);
    assert_eq!(filed.status, pb::ComplaintStatus::Open as i32);
    // Through the vault and back.
    let got = client
        .get_complaint(pb::GetComplaintRequest {
            complaint_id: filed.complaint_id.clone(),
            include_contact: true,
        })
        .await
        .expect("get")
        .into_inner()
        .complaint
        .expect("complaint");
    assert_eq!(
        got.summary.expect("summary").complaint_id,
        filed.complaint_id
    );
    match got.contact.and_then(|c| c.state) {
        Some(pb::contact_on_record::State::Details(d)) => assert_eq!(d.name, "Ada Lovelace"),
        other => panic!("contact details expected, got {other:?}"),
    }
    let mut total = 0;
    for p in 0..3 {
        total += log
            .end_offset(feedback::EVENTS_TOPIC, p)
            .await
            .expect("end");
    }
    assert_eq!(total, 1, "one commit on the log");

    // The admin endpoint: ready (Redis is up), and the filing counted by its code.
    assert_eq!(admin::get(admin, "/readyz").0, 200);
    let (_, metrics) = admin::get(admin, "/metrics");
    let filed = format!(
        r#"grpc_server_requests_total{{service="{SERVICE_NAME}",method="FileComplaint",code="OK"}}"#
    );
    assert!(
        admin::sample(&metrics, &filed).is_some_and(|n| n >= 1.0),
        "{filed} in\n{metrics}"
    );

    tokio::time::timeout(Duration::from_secs(10), running.stop())
        .await
        .expect("stops in time")
        .expect("a clean stop");
}

/// What health says for `service`; `None` when the call fails.
async fn status(health: &HealthClient<tonic::transport::Channel>, service: &str) -> Option<i32> {
    let mut health = health.clone();
    health
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .ok()
        .map(|r| r.into_inner().status)
}

/// Until both the server ("") and the Feedback service report `want`.
async fn health_becomes(
    health: &HealthClient<tonic::transport::Channel>,
    want: ServingStatus,
    what: &str,
) {
    eventually(Duration::from_secs(20), what, || async {
        for service in ["", SERVICE_NAME] {
            if status(health, service).await != Some(want as i32) {
                return None;
            }
        }
        Some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn health_follows_redis_down_and_back_up() {
    init_test_logging();
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let log = Arc::new(EmbeddedLog::open(dir.path()).expect("log"));
    let mut settings = Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        timer_interval_ms: 100,
        health_probe_interval_ms: 100,
        shutdown_grace_ms: 2_000,
        ..Settings::default()
    };
    settings.redis.url = redis.url();
    settings.topics.partitions = 3;
    let running = App::build(settings, log, Kek::from_bytes([9; 32]))
        .await
        .expect("builds")
        .spawn();
    let channel = tonic::transport::Channel::from_shared(running.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let health = HealthClient::new(channel);
    health_becomes(&health, ServingStatus::Serving, "SERVING with Redis up").await;

    redis.kill();
    health_becomes(
        &health,
        ServingStatus::NotServing,
        "NOT_SERVING while Redis is down",
    )
    .await;

    redis.restart();
    health_becomes(
        &health,
        ServingStatus::Serving,
        "SERVING again once Redis answers",
    )
    .await;

    tokio::time::timeout(Duration::from_secs(10), running.stop())
        .await
        .expect("stops in time")
        .expect("a clean stop");
}
