//! A server span for every call of every service a [`crate::GrpcServer`] serves (gRPC
//! health checks aside: probes every few seconds are noise in a trace store).
//!
//! The span continues the caller's trace (its `traceparent` metadata), is the parent of
//! whatever the call does (it is entered while the handler runs, and a service spawning
//! work for the call carries it along with `Instrument::in_current_span`), and follows
//! the RPC conventions: kind server, named `<service>/<method>`, `rpc.system=grpc`,
//! `rpc.service`, `rpc.method`, and `rpc.grpc.status_code` once the status goes out (in
//! the headers of a trailers-only answer, else in the trailers, as [`crate::grpc_metrics`]
//! reads it). Server-side errors (`UNKNOWN`, `DEADLINE_EXCEEDED`, `UNIMPLEMENTED`,
//! `INTERNAL`, `UNAVAILABLE`, `DATA_LOSS`) set the span's status to error. The span ends
//! when the response body is done with (a stream's last message and status).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tonic::Code;
use tracing::Instrument;

use crate::call_status::{OnStatus, on_status};
use crate::grpc_metrics::Methods;

/// The middleware ([`axum::middleware::from_fn_with_state`]) that traces every call.
pub(crate) async fn trace(
    State(methods): State<Arc<Methods>>,
    request: Request,
    next: Next,
) -> Response {
    if crate::health::is_health_call(request.uri().path()) {
        return next.run(request).await;
    }
    let method = methods.of_path(request.uri().path());
    let span = tracing::info_span!(
        "grpc call",
        otel.name = &*method.span_name,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = &*method.service,
        rpc.method = &*method.method,
        rpc.grpc.status_code = tracing::field::Empty,
    );
    let traceparent = request
        .headers()
        .get(churnguard_telemetry::TRACEPARENT)
        .and_then(|v| v.to_str().ok());
    churnguard_telemetry::continue_trace(&span, traceparent);
    let response = next.run(request).instrument(span.clone()).await;
    on_status(response, CallSpan(span))
}

/// Records the call's status on its span.
fn record(span: &tracing::Span, code: Code) {
    span.record("rpc.grpc.status_code", code as i32);
    let server_error = matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    );
    if server_error {
        span.record("otel.status_code", "ERROR");
    }
}

/// The call's span, held open as long as the response body, with the status recorded
/// when it goes out.
struct CallSpan(tracing::Span);

impl OnStatus for CallSpan {
    fn status(&mut self, code: Code) {
        record(&self.0, code);
    }
}
