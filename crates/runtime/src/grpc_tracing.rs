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

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::Frame;
use tonic::Code;
use tracing::Instrument;

use crate::grpc_metrics::{Methods, status_code};

const HEALTH: &str = "grpc.health.v1.Health";

/// The middleware ([`axum::middleware::from_fn_with_state`]) that traces every call.
pub(crate) async fn trace(
    State(methods): State<Arc<Methods>>,
    request: Request,
    next: Next,
) -> Response {
    let (service, method) = methods.labels(request.uri().path());
    if service == HEALTH {
        return next.run(request).await;
    }
    let span = tracing::info_span!(
        "grpc call",
        otel.name = %format_args!("{service}/{method}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = tracing::field::Empty,
    );
    let traceparent = request
        .headers()
        .get(churnguard_telemetry::TRACEPARENT)
        .and_then(|v| v.to_str().ok());
    churnguard_telemetry::continue_trace(&span, traceparent);
    let response = next.run(request).instrument(span.clone()).await;
    match status_code(response.headers()) {
        Some(code) => {
            record(&span, code);
            response
        }
        None => response.map(|body| {
            Body::new(Traced {
                body,
                span,
                recorded: false,
            })
        }),
    }
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

/// A response body that records its call's status when it goes by in the trailers, and
/// holds the call's span open until the body is dropped.
struct Traced {
    body: Body,
    span: tracing::Span,
    recorded: bool,
}

impl http_body::Body for Traced {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(trailers) = frame.trailers_ref()
            && !self.recorded
        {
            self.recorded = true;
            record(&self.span, status_code(trailers).unwrap_or(Code::Unknown));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
