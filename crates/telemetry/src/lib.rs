//! One place for telemetry: structured logs and traces through `tracing`, its spans
//! bridged to OpenTelemetry (`tracing-opentelemetry`) and exported over OTLP/gRPC when an
//! endpoint is set, and W3C trace context so a swipe's trace continues from the caller's
//! gRPC request into the Kafka record's `traceparent` header and on to every consumer.
//!
//! - [`Telemetry::init`] (the binaries) / [`Telemetry::init_with`] (tests, explicit
//!   settings) install the process's subscriber once: the log layer (`RUST_LOG`,
//!   `LOG_FORMAT=json`), every log line inside a span carrying its `trace_id`, and the
//!   OpenTelemetry layer. Dropping the [`Telemetry`] flushes and shuts the tracer down.
//! - Spans are ordinary `tracing` spans; the conventions' special fields set their
//!   OpenTelemetry side (`otel.name`, `otel.kind`, `otel.status_code`).
//! - [`continue_trace`], [`link_to`] and [`traceparent_of`] move context between a span
//!   and a `traceparent` value (gRPC metadata, record headers, the outbox).

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{Span, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::Level;
use tracing_opentelemetry::{OpenTelemetrySpanExt, OtelData};
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

pub use opentelemetry_sdk::trace::Sampler;

/// The header carrying W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// The environment variable naming the OTLP endpoint (the OpenTelemetry convention).
pub const OTLP_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Where traces go and which are kept.
#[derive(Debug, Clone, Default)]
pub struct TraceSettings {
    /// The OTLP/gRPC endpoint (`http://collector:4317`). `None`: spans are still made, so
    /// trace context propagates and log lines carry trace ids, but none is exported.
    pub endpoint: Option<String>,
    /// The sampler. `None`: the SDK's reading of `OTEL_TRACES_SAMPLER` and
    /// `OTEL_TRACES_SAMPLER_ARG` (e.g. `parentbased_traceidratio` and `0.1`), parent-based
    /// always-on when unset.
    pub sampler: Option<Sampler>,
}

impl TraceSettings {
    /// From the environment: [`OTLP_ENDPOINT_VAR`] (empty counts as unset); the sampler's
    /// variables are read by the SDK.
    pub fn from_env() -> Self {
        Self {
            endpoint: std::env::var(OTLP_ENDPOINT_VAR)
                .ok()
                .filter(|e| !e.trim().is_empty()),
            sampler: None,
        }
    }
}

/// Installed telemetry; dropping it flushes and shuts the tracer down (do that last).
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Telemetry {
    /// Sets up logging (`RUST_LOG`, default `info`; `LOG_FORMAT=json` for JSON lines) and
    /// tracing for `service`, exporting to `OTEL_EXPORTER_OTLP_ENDPOINT` when it is set
    /// ([`TraceSettings::from_env`]). Call it inside the Tokio runtime (the exporter's
    /// gRPC channel lives there). Safe to call more than once: later calls keep the
    /// first subscriber.
    pub fn init(service: &'static str) -> Self {
        Self::init_with(service, TraceSettings::from_env())
    }

    /// As [`Telemetry::init`], with explicit trace settings. The subscriber is
    /// process-wide and installed once: spans go to the tracer of the first call, so a
    /// test installs its exporter before it builds the services.
    pub fn init_with(service: &'static str, traces: TraceSettings) -> Self {
        Self::install(service, traces, true)
    }

    /// As [`Telemetry::init_with`], without the log layer: traces only (tests that keep
    /// their output quiet).
    pub fn init_traces(service: &'static str, traces: TraceSettings) -> Self {
        Self::install(service, traces, false)
    }

    fn install(service: &'static str, traces: TraceSettings, with_logs: bool) -> Self {
        let telemetry = Self::build(service, traces);
        // RUST_LOG chooses the log lines; the spans traced are always there for them to
        // belong to (and to carry the trace id).
        let logs = EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info"))
            .or(filter_fn(traced));
        let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v == "json");
        let log_layer = if !with_logs {
            None
        } else if json {
            tracing_subscriber::fmt::layer()
                .event_format(WithTraceId(format::format().json()))
                .fmt_fields(format::JsonFields::new())
                .with_filter(logs)
                .boxed()
                .into()
        } else {
            tracing_subscriber::fmt::layer()
                .event_format(WithTraceId(format::format()))
                .with_filter(logs)
                .boxed()
                .into()
        };
        // Spans at info and above are traced whatever RUST_LOG says of log lines; warnings
        // and errors also become events on their span.
        //
        // No level hint (`with_max_level_hint(INFO)`), though without one each `trace!`
        // and `debug!` of h2, hyper and tonic asks the subscriber at run time: with it,
        // the scorer's batch spans went missing from tests/tests/trace.rs (2026-12-04;
        // cause not found yet), and it saved only ~3 µs of a ~50 µs RecordSwipe call.
        let trace_filter =
            filter_fn(|meta| traced(meta) || (meta.is_event() && *meta.level() <= Level::WARN));
        let trace_layer = tracing_opentelemetry::layer()
            .with_tracer(telemetry.tracer.clone())
            .with_tracked_inactivity(false)
            // No OpenTelemetry context attached on every enter (a thread-local guard
            // pushed and popped per poll of an instrumented future): nothing here reads
            // `Context::current()`; context moves through `span.context()` (below).
            .with_context_activation(false)
            .with_threads(false)
            // No code.filepath/namespace/lineno or target per span: four attributes made,
            // sent and stored for every span, which the span's name already places.
            .with_location(false)
            .with_target(false)
            .with_filter(trace_filter);
        // Without a log layer, none is added: an absent (`None`) layer counts as wanting
        // every span and event, so every `trace_span!` of h2 would be made (and dropped)
        // per frame.
        let installed = match log_layer {
            Some(logs) => Registry::default().with(trace_layer).with(logs).try_init(),
            None => Registry::default().with(trace_layer).try_init(),
        }
        .is_ok();
        if installed {
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            opentelemetry::global::set_tracer_provider(telemetry.provider.clone());
        }
        telemetry
    }

    /// A tracer without installing a log subscriber (tests, embedded use); nothing is
    /// exported.
    pub fn tracer_only(service: &'static str) -> Self {
        Self::build(service, TraceSettings::default())
    }

    fn build(service: &'static str, traces: TraceSettings) -> Self {
        let resource = Resource::builder()
            .with_service_name(service)
            .with_attributes([
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                KeyValue::new("service.instance.id", uuid::Uuid::new_v4().to_string()),
            ])
            .build();
        let mut builder = SdkTracerProvider::builder().with_resource(resource);
        if let Some(sampler) = traces.sampler {
            builder = builder.with_sampler(sampler);
        }
        if let Some(endpoint) = traces.endpoint {
            match opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .build()
            {
                Ok(exporter) => builder = builder.with_batch_exporter(exporter),
                // No subscriber may be installed yet: say it on stderr.
                Err(e) => eprintln!("traces are not exported: OTLP exporter to {endpoint}: {e}"),
            }
        }
        let provider = builder.build();
        let tracer = provider.tracer(service);
        Self { provider, tracer }
    }

    /// Exports the spans ended so far (tests; [`Drop`] does it too).
    pub fn flush(&self) {
        let _ = self.provider.force_flush();
    }

    /// Starts a span named `name`, outside `tracing`, that continues the trace in
    /// `incoming` (a `traceparent` value from the caller), or starts a new trace when
    /// there is none or it is invalid: the trace context of records written where no
    /// subscriber traces the `tracing` spans (tests, benchmarks).
    pub fn span(&self, name: &'static str, incoming: Option<&str>) -> TraceSpan {
        let parent = incoming.map(extract).unwrap_or_default();
        let mut span = self.tracer.start_with_context(name, &parent);
        span.set_attribute(KeyValue::new("messaging.system", "kafka"));
        TraceSpan {
            cx: parent.with_span(span),
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.provider.force_flush();
        let _ = self.provider.shutdown();
    }
}

/// An open span made by [`Telemetry::span`]; it ends when dropped.
#[derive(Debug)]
pub struct TraceSpan {
    cx: Context,
}

impl TraceSpan {
    /// The `traceparent` value for records written inside this span.
    pub fn traceparent(&self) -> String {
        inject(&self.cx).unwrap_or_default()
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

/// Makes `span` continue the trace in `traceparent` (its remote parent), before the span
/// is first entered. False when there is no valid context in it, or no OpenTelemetry
/// layer traces the span: it then keeps the parent `tracing` gave it.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) -> bool {
    let Some(cx) = traceparent.map(extract) else {
        return false;
    };
    cx.span().span_context().is_valid() && span.set_parent(cx).is_ok()
}

/// Links `span` to the span in `traceparent` (a record it handles among others), if valid.
pub fn link_to(span: &tracing::Span, traceparent: &str) {
    let cx = extract(traceparent);
    let linked = cx.span().span_context().clone();
    if linked.is_valid() {
        span.add_link(linked);
    }
}

/// The `traceparent` value of `span`, for what is written inside it; `None` when no
/// OpenTelemetry layer traces it.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    inject(&span.context())
}

/// The trace id of `span`, if it is traced.
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// The context a `traceparent` value carries (empty when it is not one).
fn extract(traceparent: &str) -> Context {
    TraceContextPropagator::new().extract(&Incoming(traceparent))
}

/// The `traceparent` of `cx`'s span, if it has a valid one.
fn inject(cx: &Context) -> Option<String> {
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut out = Outgoing(None);
    TraceContextPropagator::new().inject_context(cx, &mut out);
    out.0
}

/// A carrier of just a `traceparent` value (no `tracestate`: this system sets none), read
/// without building a map.
struct Incoming<'a>(&'a str);

impl Extractor for Incoming<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0)
    }
    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

/// Where [`inject`] writes: the `traceparent` value only.
struct Outgoing(Option<String>);

impl Injector for Outgoing {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.0 = Some(value);
        }
    }
}

/// Whether a span is traced: those at info and above.
fn traced(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span() && *meta.level() <= Level::INFO
}

/// A log line format (text or JSON) with the trace id of the span the line belongs to:
/// ` trace_id=<id>` at the end of a text line, a `"trace_id"` member of a JSON line.
/// Read from the span's OpenTelemetry data; the log layer sees every traced span (its
/// filter lets spans at info and above through whatever `RUST_LOG` says of events).
struct WithTraceId<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceId<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        // The nearest span of the event's scope that OpenTelemetry traces (entered, so
        // its context is built).
        let trace_id = ctx.event_scope().and_then(|scope| {
            scope.into_iter().find_map(|span| {
                let id = span.extensions().get::<OtelData>()?.trace_id()?;
                (id != opentelemetry::TraceId::INVALID).then_some(id)
            })
        });
        let Some(trace_id) = trace_id else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let body = line.trim_end_matches('\n');
        match body.strip_suffix('}') {
            Some(object) if body.starts_with('{') => {
                writeln!(writer, "{object},\"trace_id\":\"{trace_id}\"}}")
            }
            _ => writeln!(writer, "{body} trace_id={trace_id}"),
        }
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

    /// Log lines written through [`WithTraceId`] into a buffer, inside a span continuing
    /// [`INCOMING`] and outside any span.
    fn log_lines(json: bool) -> Vec<String> {
        use std::sync::{Arc, Mutex, PoisonError};

        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        let t = Telemetry::tracer_only("test");
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let fmt = tracing_subscriber::fmt::layer().with_writer(move || writer.clone());
        let fmt = if json {
            fmt.event_format(WithTraceId(format::format().json()))
                .fmt_fields(format::JsonFields::new())
                .boxed()
        } else {
            fmt.event_format(WithTraceId(format::format()))
                .with_ansi(false)
                .boxed()
        };
        let subscriber = Registry::default()
            .with(tracing_opentelemetry::layer().with_tracer(t.tracer.clone()))
            .with(fmt);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("call", customer = "c-1");
            continue_trace(&span, Some(INCOMING));
            span.in_scope(|| tracing::info!(n = 1, "inside"));
            tracing::info!("outside");
        });
        let bytes = buffer
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        String::from_utf8(bytes)
            .expect("utf8")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn log_lines_in_a_span_carry_its_trace_id() {
        let text = log_lines(false);
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(
            text[0].ends_with(" trace_id=4bf92f3577b34da6a3ce929d0e0e4736"),
            "{}",
            text[0]
        );
        assert!(text[0].contains("inside"), "{}", text[0]);
        assert!(!text[1].contains("trace_id"), "{}", text[1]);

        let json = log_lines(true);
        assert_eq!(json.len(), 2, "{json:?}");
        assert!(
            json[0].starts_with('{')
                && json[0].ends_with(r#","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}"#),
            "{}",
            json[0]
        );
        assert!(json[0].contains(r#""customer":"c-1""#), "{}", json[0]);
        assert!(!json[1].contains("trace_id"), "{}", json[1]);
    }

    #[test]
    fn tracing_spans_carry_context_in_and_out() {
        let t = Telemetry::tracer_only("test");
        let layer = tracing_opentelemetry::layer().with_tracer(t.tracer.clone());
        let subscriber = Registry::default().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("consume");
            assert!(continue_trace(&span, Some(INCOMING)));
            let tp = traceparent_of(&span).expect("traced");
            let p = parts(&tp);
            assert_eq!(p[1], "4bf92f3577b34da6a3ce929d0e0e4736", "{tp}");
            assert_ne!(p[2], "00f067aa0ba902b7");
            assert_eq!(
                trace_id_of(&span).as_deref(),
                Some("4bf92f3577b34da6a3ce929d0e0e4736")
            );
            let child = span.in_scope(|| tracing::info_span!("child"));
            assert_eq!(trace_id_of(&child), trace_id_of(&span));
            assert!(!continue_trace(&tracing::info_span!("x"), Some("garbage")));
        });
        // No OpenTelemetry layer: nothing to carry.
        let span = tracing::info_span!("untraced");
        assert_eq!(traceparent_of(&span), None);
        assert!(!continue_trace(&span, Some(INCOMING)));
    }
}
