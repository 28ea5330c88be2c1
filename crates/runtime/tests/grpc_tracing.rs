//! The server span every call of a `GrpcServer` runs in, as an OTLP receiver gets it:
//! it continues the caller's `traceparent`, follows the RPC conventions, records the
//! status (from the trailers of a stream, from the headers of a trailers-only error), and
//! health checks are left out. A call whose caller's trace is not sampled gets no span
//! (head sampling at the edge); one without a caller's context starts a trace. Its own
//! test binary: the subscriber is process-wide.

use std::time::Duration;

use churnguard_proto::scoring::v1 as pb;
use churnguard_proto::scoring::v1::churn_scoring_client::ChurnScoringClient;
use churnguard_runtime::{GrpcServer, ServeError};
use churnguard_telemetry::{Sampling, Telemetry, TraceSettings};
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
/// The trace of a caller that does not sample it (flags `00`).
const UNSAMPLED_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

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
            sampling: Sampling::EVERY_TRACE,
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
    let mut scoring = ChurnScoringClient::new(channel);
    let refused = scoring
        .get_model(traced(pb::GetModelRequest {}))
        .await
        .expect_err("not served");
    assert_eq!(refused.code(), Code::Unimplemented);
    // Not sampled by its caller; and no caller's context at all.
    let mut unsampled = tonic::Request::new(pb::GetModelRequest {});
    unsampled.metadata_mut().insert(
        "traceparent",
        format!("00-{UNSAMPLED_TRACE}-{CALLER}-00")
            .parse()
            .expect("ascii"),
    );
    let refused = scoring.get_model(unsampled).await.expect_err("not served");
    assert_eq!(
        refused.code(),
        Code::Unimplemented,
        "served as any other call"
    );
    let refused = scoring
        .get_model(pb::GetModelRequest {})
        .await
        .expect_err("not served");
    assert_eq!(refused.code(), Code::Unimplemented);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let spans = loop {
        telemetry.flush();
        let all = receiver.spans();
        // The root span of the last call too (spans end when the server drops the
        // response body, which may be after the client has the answer).
        let root = all.iter().any(|s| s.parent_span_id().is_empty());
        let spans: Vec<ReceivedSpan> = all.into_iter().filter(|s| s.trace_id() == TRACE).collect();
        if spans.len() >= 2 && root {
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

    // The unsampled call, made before the last one, exported no span (the unit test in
    // src/grpc_tracing.rs shows none is made at all); the call without a
    // caller's context made a root span of its own trace.
    let all = receiver.spans();
    let unsampled: Vec<&str> = all
        .iter()
        .filter(|s| s.trace_id() == UNSAMPLED_TRACE)
        .map(ReceivedSpan::name)
        .collect();
    assert!(
        unsampled.is_empty(),
        "spans of an unsampled call: {unsampled:?}"
    );
    let roots: Vec<&ReceivedSpan> = all
        .iter()
        .filter(|s| s.name() == "unknown/unknown" && s.parent_span_id().is_empty())
        .collect();
    assert_eq!(
        roots.len(),
        1,
        "the call without a caller's context: {all:#?}"
    );
    assert_ne!(roots[0].trace_id(), TRACE, "a trace of its own");
    assert_eq!(roots[0].kind(), SpanKind::Server);

    running.stop().await.expect("a clean stop");
}
