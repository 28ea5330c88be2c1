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
//!
//! Head sampling comes first ([`churnguard_telemetry::head_sampled`]): the caller's
//! decision when it sends a `traceparent`, else a draw keeping the configured share of
//! new traces. A call whose trace is not kept gets no span at all (making one costs
//! nearly as much as keeping it), and carries [`churnguard_telemetry::NotSampled`] in its
//! extensions so the service makes none either (ingest's producer span).

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
    mut request: Request,
    next: Next,
) -> Response {
    if crate::health::is_health_call(request.uri().path()) {
        return next.run(request).await;
    }
    let traceparent = request
        .headers()
        .get(churnguard_telemetry::TRACEPARENT)
        .and_then(|v| v.to_str().ok());
    if !churnguard_telemetry::head_sampled(traceparent) {
        request
            .extensions_mut()
            .insert(churnguard_telemetry::NotSampled);
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::body::Body;
    use axum::extract::Request;
    use tower::ServiceExt;
    use tracing_subscriber::layer::{Context, SubscriberExt};

    use crate::grpc_metrics::Methods;

    /// Counts the spans made.
    struct Made(Arc<AtomicUsize>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Made {
        fn on_new_span(
            &self,
            _: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: Context<'_, S>,
        ) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Spans made for one call with `traceparent`, and whether the handler saw
    /// `NotSampled`.
    fn call(traceparent: Option<&str>) -> (usize, bool) {
        let made = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry().with(Made(made.clone()));
        let _default = tracing::subscriber::set_default(subscriber);
        let methods = Arc::new(Methods::of(&["grpc.health.v1.Health"], []));
        let router = axum::Router::new()
            .route(
                "/x.v1.Thing/Do",
                axum::routing::post(|request: Request| async move {
                    request
                        .extensions()
                        .get::<churnguard_telemetry::NotSampled>()
                        .is_some()
                        .to_string()
                }),
            )
            .layer(axum::middleware::from_fn_with_state(methods, super::trace));
        let mut request = Request::post("/x.v1.Thing/Do");
        if let Some(tp) = traceparent {
            request = request.header("traceparent", tp);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let not_sampled = runtime.block_on(async {
            let response = router
                .oneshot(request.body(Body::empty()).expect("request"))
                .await
                .expect("answered");
            let body = axum::body::to_bytes(response.into_body(), 64)
                .await
                .expect("body");
            body.as_ref() == b"true"
        });
        (made.load(Ordering::Relaxed), not_sampled)
    }

    #[test]
    fn a_call_whose_trace_is_not_kept_makes_no_span_and_says_so() {
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let sampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(call(Some(unsampled)), (0, true));
        assert_eq!(call(Some(sampled)), (1, false), "the server span");
        // No telemetry installed in this test binary: every new trace is kept.
        assert_eq!(call(None), (1, false));
    }
}
