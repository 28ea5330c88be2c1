//! Redis down (issue 11): reads fail fast with UNAVAILABLE instead of hanging until the
//! caller's deadline. Through the service as its binary builds it, on the embedded log,
//! with a real Redis that the test kills.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_proto::feedback::v1 as pb;
use churnguard_proto::feedback::v1::feedback_client::FeedbackClient;
use churnguard_testkit::{RedisServer, init_test_logging};
use churnguard_vault::Kek;
use feedback::App;
use feedback::config::Settings;
use tonic::Code;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0)
        .single()
        .expect("time")
}

/// The caller's deadline.
const DEADLINE: Duration = Duration::from_secs(5);
/// How long an answer may take: the aim is about 1.5 s; machines are noisy.
const BOUND: Duration = Duration::from_secs(3);

fn with_deadline<T>(message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.set_timeout(DEADLINE);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_fail_fast_with_unavailable_while_redis_is_down() {
    init_test_logging();
    let dir = tempfile::tempdir().expect("dir");
    let log = Arc::new(EmbeddedLog::open(dir.path()).expect("log"));
    let mut redis = RedisServer::start();
    let mut settings = Settings {
        listen_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        shutdown_grace_ms: 2_000,
        ..Settings::default()
    };
    settings.redis.url = redis.url();
    settings.topics.partitions = 3;
    let running = App::build_with_clock(settings, log, Kek::from_bytes([9; 32]), Arc::new(now))
        .await
        .expect("builds")
        .spawn();
    let mut c = FeedbackClient::connect(running.endpoint())
        .await
        .expect("connect");
    let id = c
        .file_complaint(common::filing("file-r"))
        .await
        .expect("file")
        .into_inner()
        .complaint
        .expect("summary")
        .complaint_id;

    redis.kill();
    for round in 0..2 {
        let started = Instant::now();
        let got = c
            .get_complaint(with_deadline(pb::GetComplaintRequest {
                complaint_id: id.clone(),
                include_contact: false,
            }))
            .await;
        let took = started.elapsed();
        eprintln!("GetComplaint with Redis down (round {round}): {took:?}");
        let s = got.expect_err("Redis is down");
        assert_eq!(s.code(), Code::Unavailable, "{s:?}");
        assert!(took < BOUND, "GetComplaint took {took:?}");

        let started = Instant::now();
        let listed = c
            .list_complaints(with_deadline(pb::ListComplaintsRequest::default()))
            .await;
        let took = started.elapsed();
        eprintln!("ListComplaints with Redis down (round {round}): {took:?}");
        let s = listed.expect_err("Redis is down");
        assert_eq!(s.code(), Code::Unavailable, "{s:?}");
        assert!(took < BOUND, "ListComplaints took {took:?}");
    }

    // Back up (empty): the service answers again, from the log.
    redis.restart();
    let started = Instant::now();
    loop {
        match c
            .get_complaint(with_deadline(pb::GetComplaintRequest {
                complaint_id: id.clone(),
                include_contact: false,
            }))
            .await
        {
            Ok(r) => {
                let complaint = r.into_inner().complaint.expect("complaint");
                assert_eq!(complaint.history.len(), 1);
                break;
            }
            Err(s) => {
                assert_eq!(s.code(), Code::Unavailable, "{s:?}");
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "still {s:?} after Redis came back"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    running.stop().await.expect("stop");
}
