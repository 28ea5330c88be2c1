//! One place for telemetry: structured logs through `tracing`, and OpenTelemetry trace
//! context so a swipe's trace continues from the caller's gRPC request into the Kafka
//! record's `traceparent` header and on to every consumer.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{Span, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_subscriber::EnvFilter;

/// The header carrying W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// Installed telemetry; dropping it flushes and shuts the tracer down (do that last).
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Telemetry {
    /// Sets up logging (`RUST_LOG`, default `info`; `LOG_FORMAT=json` for JSON lines) and
    /// a tracer for `service`. Safe to call more than once: later calls keep the first
    /// subscriber.
    pub fn init(service: &'static str) -> Self {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        let json = std::env::var("LOG_FORMAT")
            .map(|v| v == "json")
            .unwrap_or(false);
        let builder = tracing_subscriber::fmt().with_env_filter(filter);
        let _ = if json {
            builder.json().try_init()
        } else {
            builder.try_init()
        };
        Self::tracer_only(service)
    }

    /// A tracer without installing a log subscriber (tests, embedded use).
    pub fn tracer_only(service: &'static str) -> Self {
        let provider = SdkTracerProvider::builder().build();
        let tracer = provider.tracer(service);
        Self { provider, tracer }
    }

    /// Starts a span named `name` that continues the trace in `incoming` (a `traceparent`
    /// value from the caller), or starts a new trace when there is none or it is invalid.
    pub fn span(&self, name: &'static str, incoming: Option<&str>) -> TraceSpan {
        let mut carrier = HashMap::new();
        if let Some(tp) = incoming {
            carrier.insert(TRACEPARENT.to_owned(), tp.to_owned());
        }
        let parent = TraceContextPropagator::new().extract(&carrier);
        let mut span = self.tracer.start_with_context(name, &parent);
        span.set_attribute(KeyValue::new("messaging.system", "kafka"));
        TraceSpan {
            cx: parent.with_span(span),
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// An open span; it ends when dropped.
#[derive(Debug)]
pub struct TraceSpan {
    cx: Context,
}

impl TraceSpan {
    /// The `traceparent` value for records written inside this span.
    pub fn traceparent(&self) -> String {
        let mut carrier = HashMap::new();
        TraceContextPropagator::new().inject_context(&self.cx, &mut Carrier(&mut carrier));
        carrier.remove(TRACEPARENT).unwrap_or_default()
    }

    /// The trace id, for log lines.
    pub fn trace_id(&self) -> String {
        self.cx.span().span_context().trace_id().to_string()
    }
}

impl Drop for TraceSpan {
    fn drop(&mut self) {
        self.cx.span().end();
    }
}

struct Carrier<'a>(&'a mut HashMap<String, String>);

impl Injector for Carrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

impl Extractor for Carrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn parts(tp: &str) -> Vec<String> {
        tp.split('-').map(str::to_owned).collect()
    }

    #[test]
    fn continues_the_callers_trace_with_a_new_span() {
        let t = Telemetry::tracer_only("test");
        let tp = t.span("publish", Some(INCOMING)).traceparent();
        let p = parts(&tp);
        assert_eq!(p.len(), 4, "{tp}");
        assert_eq!(p[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
        assert_ne!(p[2], "00f067aa0ba902b7", "a new span id");
    }

    #[test]
    fn starts_a_trace_when_there_is_none_or_it_is_garbage() {
        let t = Telemetry::tracer_only("test");
        for incoming in [None, Some("not-a-traceparent")] {
            let tp = t.span("publish", incoming).traceparent();
            let p = parts(&tp);
            assert_eq!(p.len(), 4, "{tp}");
            assert_ne!(p[1], "00000000000000000000000000000000");
        }
    }
}
