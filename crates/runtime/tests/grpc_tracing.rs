//! The server span every call of a `GrpcServer` runs in, as an OTLP receiver gets it:
//! it continues the caller's `traceparent`, follows the RPC conventions, records the
//! status (from the trailers of a stream, from the headers of a trailers-only error), and
//! health checks are left out. Its own test binary: the subscriber is process-wide.

use std::time::Duration;

use churnguard_proto::scoring::v1 as pb;
use churnguard_proto::scoring::v1::churn_scoring_client::ChurnScoringClient;
use churnguard_runtime::{GrpcServer, ServeError};
use churnguard_telemetry::{Sampler, Telemetry, TraceSettings};
use churnguard_testkit::otlp::{OtlpReceiver, ReceivedSpan, SpanKind};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER: &str = "b7ad6b7169203331";

fn traced<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE}-{CALLER}-01").parse().expect("ascii"),
    );
    request
}

#[tokio::test(flavor = "multi_thread")]
async fn every_call_runs_in_a_server_span_continuing_the_callers_trace() {
    let receiver = OtlpReceiver::start().await;
    let telemetry = Telemetry::init_traces(
        "runtime-test",
        TraceSettings {
            endpoint: Some(receiver.endpoint()),
            sampler: Some(Sampler::AlwaysOn),
        },
    );
    let running = GrpcServer::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .spawn::<ServeError>();
    let channel = Channel::from_shared(running.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");

    // A stream (its status in the trailers), a health check, a method not served.
    let mut answers = ServerReflectionClient::new(channel.clone())
        .server_reflection_info(traced(tokio_stream::iter([ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }])))
        .await
        .expect("reflection")
        .into_inner();
    while answers.message().await.expect("answer").is_some() {}
    HealthClient::new(channel.clone())
        .check(traced(HealthCheckRequest::default()))
        .await
        .expect("health");
    let refused = ChurnScoringClient::new(channel)
        .get_model(traced(pb::GetModelRequest {}))
        .await
        .expect_err("not served");
    assert_eq!(refused.code(), Code::Unimplemented);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let spans = loop {
        telemetry.flush();
        let spans: Vec<ReceivedSpan> = receiver
            .spans()
            .into_iter()
            .filter(|s| s.trace_id() == TRACE)
            .collect();
        if spans.len() >= 2 {
            break spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "spans received: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let names: Vec<&str> = spans.iter().map(ReceivedSpan::name).collect();
    assert_eq!(names.len(), 2, "health checks are not traced: {names:?}");
    for span in &spans {
        assert_eq!(span.kind(), SpanKind::Server, "{}", span.name());
        assert_eq!(span.parent_span_id(), CALLER, "{}", span.name());
        assert_eq!(span.attr("rpc.system").as_deref(), Some("grpc"));
        assert_eq!(span.service, "runtime-test");
    }
    let reflection = spans
        .iter()
        .find(|s| s.name() == "grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
        .unwrap_or_else(|| panic!("the reflection call: {names:?}"));
    assert_eq!(
        reflection.attr("rpc.service").as_deref(),
        Some("grpc.reflection.v1.ServerReflection")
    );
    assert_eq!(
        reflection.attr("rpc.method").as_deref(),
        Some("ServerReflectionInfo")
    );
    assert_eq!(
        reflection.attr("rpc.grpc.status_code").as_deref(),
        Some("0")
    );
    assert_eq!(reflection.status_code(), 0, "unset: no error");
    // A service the server does not serve is named as the metrics name it.
    let unknown = spans
        .iter()
        .find(|s| s.name() == "unknown/unknown")
        .unwrap_or_else(|| panic!("the refused call: {names:?}"));
    assert_eq!(unknown.attr("rpc.grpc.status_code").as_deref(), Some("12"));
    assert_eq!(unknown.status_code(), 2, "UNIMPLEMENTED is a server error");

    running.stop().await.expect("a clean stop");
}
