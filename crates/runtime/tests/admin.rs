//! The admin endpoint of a running `GrpcServer`, over HTTP as Prometheus and a
//! platform's probes read it.

use std::net::TcpStream;

use churnguard_runtime::{GrpcServer, ServeError};
use churnguard_testkit::admin::{assert_promtool_accepts, get, sample};
use tonic::transport::Channel;
use tonic_health::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;

const SERVING: i32 = health_check_response::ServingStatus::Serving as i32;

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_endpoint_serves_grpc_metrics_and_follows_health() {
    let server = GrpcServer::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .with_admin(Some("127.0.0.1:0"))
        .await
        .expect("bind admin");
    let admin = server.admin_addr().expect("an admin endpoint");
    assert_ne!(admin.port(), 0, "a free port was picked");
    let health = server.health();
    let running = server.spawn::<ServeError>();

    let channel = Channel::from_shared(running.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let answer = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers");
    assert_eq!(answer.into_inner().status, SERVING);
    // A bidirectional stream, its status in the trailers: read to its end.
    let mut stream = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }]))
        .await
        .expect("reflection")
        .into_inner();
    let mut answers = 0;
    while stream.message().await.expect("a clean stream").is_some() {
        answers += 1;
    }
    assert_eq!(answers, 1);

    let (status, text) = get(admin, "/metrics");
    assert_eq!(status, 200, "{text}");
    for line in [
        "# HELP grpc_server_requests_total ",
        "# TYPE grpc_server_requests_total counter",
        "# HELP grpc_server_request_duration_seconds ",
        "# TYPE grpc_server_request_duration_seconds histogram",
        "# HELP grpc_server_in_flight_requests ",
        "# TYPE grpc_server_in_flight_requests gauge",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(line)),
            "no {line:?} in\n{text}"
        );
    }
    let checks = sample(
        &text,
        r#"grpc_server_requests_total{service="grpc.health.v1.Health",method="Check",code="OK"}"#,
    );
    assert!(
        checks.is_some_and(|n| n >= 1.0),
        "the health check is counted: {checks:?}\n{text}"
    );
    let streams = sample(
        &text,
        r#"grpc_server_requests_total{service="grpc.reflection.v1.ServerReflection",method="ServerReflectionInfo",code="OK"}"#,
    );
    assert!(
        streams.is_some_and(|n| n >= 1.0),
        "the stream is counted with the status of its trailers: {streams:?}\n{text}"
    );
    let timed = sample(
        &text,
        r#"grpc_server_request_duration_seconds_count{service="grpc.health.v1.Health",method="Check"}"#,
    );
    assert!(
        timed.is_some_and(|n| n >= 1.0),
        "the health check is timed: {timed:?}\n{text}"
    );
    assert!(
        text.contains(r#"grpc_server_request_duration_seconds_bucket{service="grpc.health.v1.Health",method="Check",le="0.005"}"#),
        "the duration buckets are the runtime's\n{text}"
    );
    assert_promtool_accepts(&text);

    assert_eq!(get(admin, "/healthz").0, 200);
    assert_eq!(get(admin, "/readyz").0, 200, "ready while SERVING");
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    assert_eq!(get(admin, "/readyz").0, 503, "not ready while NOT_SERVING");
    assert_eq!(get(admin, "/healthz").0, 200, "alive all the same");
    health.set_service_status("", ServingStatus::Serving).await;
    assert_eq!(get(admin, "/readyz").0, 200, "ready again");
    assert_eq!(get(admin, "/nothing-here").0, 404);

    running.stop().await.expect("a clean stop");
    assert!(
        TcpStream::connect(admin).is_err(),
        "the admin endpoint stops with the server"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_server_of_a_process_shares_one_recorder() {
    // Two servers with admin endpoints in one process, as `churnguard-local` runs them:
    // neither fails to install its recorder, and both show the same metrics.
    let first = GrpcServer::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .with_admin(Some("127.0.0.1:0"))
        .await
        .expect("first admin");
    let second = GrpcServer::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .with_admin(Some("127.0.0.1:0"))
        .await
        .expect("second admin");
    let (first_admin, second_admin) = (
        first.admin_addr().expect("first"),
        second.admin_addr().expect("second"),
    );
    let first = first.spawn::<ServeError>();
    let second = second.spawn::<ServeError>();
    let channel = Channel::from_shared(second.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = HealthClient::new(channel);
    let unknown = client
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("an unknown service is NOT_FOUND");
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let series = r#"grpc_server_requests_total{service="grpc.health.v1.Health",method="Check",code="NOT_FOUND"}"#;
    let (_, from_first) = get(first_admin, "/metrics");
    assert!(
        sample(&from_first, series).is_some_and(|n| n >= 1.0),
        "a call to the second server shows on the first's endpoint\n{from_first}"
    );
    let (_, from_second) = get(second_admin, "/metrics");
    assert!(sample(&from_second, series).is_some_and(|n| n >= 1.0));
    first.stop().await.expect("a clean stop");
    second.stop().await.expect("a clean stop");
}
