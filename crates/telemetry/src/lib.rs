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
//! - Head sampling ([`Sampling`]): whether a trace is kept is decided once, where it
//!   starts. [`head_sampled`] decides it for a call at the edge (the runtime's gRPC
//!   tracing layer), before any span is made, so a call whose trace is not kept costs no
//!   span; [`untraced_traceparent`] is what such a call writes into its records, so the
//!   services downstream drop that trace too.

use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    Link, SamplingDecision, SamplingResult, SpanKind, TraceContextExt, TraceId, TraceState,
    TracerProvider,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SdkTracer, SdkTracerProvider, ShouldSample,
};
use tracing::Level;
use tracing_opentelemetry::{OpenTelemetrySpanExt, OtelData};
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// The header carrying W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// The environment variable naming the OTLP endpoint (the OpenTelemetry convention).
pub const OTLP_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// The environment variable naming the sampler (the OpenTelemetry convention), read by
/// [`Sampling::from_env`].
pub const SAMPLER_VAR: &str = "OTEL_TRACES_SAMPLER";

/// The environment variable carrying the sampler's argument (a ratio's fraction).
pub const SAMPLER_ARG_VAR: &str = "OTEL_TRACES_SAMPLER_ARG";

/// Where traces go and which are kept.
#[derive(Debug, Clone, Default)]
pub struct TraceSettings {
    /// The OTLP/gRPC endpoint (`http://collector:4317`). `None`: spans are still made, so
    /// trace context propagates and log lines carry trace ids, but none is exported.
    pub endpoint: Option<String>,
    /// Which traces are kept.
    pub sampling: Sampling,
}

impl TraceSettings {
    /// From the environment: [`OTLP_ENDPOINT_VAR`] (empty counts as unset) and the
    /// sampler ([`Sampling::from_env`]).
    pub fn from_env() -> Self {
        Self {
            endpoint: std::env::var(OTLP_ENDPOINT_VAR)
                .ok()
                .filter(|e| !e.trim().is_empty()),
            sampling: Sampling::from_env(),
        }
    }
}

/// Which traces are kept: head sampling, decided once where a trace starts and followed
/// by every span after it, in this process and downstream.
///
/// A call or record that brings a `traceparent` keeps its caller's decision (the sampled
/// flag). Of the traces that start here (a call without one, a scorer's batch, a timer)
/// the fraction [`Sampling::new_traces`] is kept. At the gRPC edge the decision is made
/// before any span is ([`head_sampled`]): a call whose trace is not kept makes no server
/// span and no producer span, which is what makes sampling cheap (a span dropped by the
/// SDK's sampler has already cost most of what a kept one costs, in `tracing` and its
/// OpenTelemetry bridge).
///
/// The default keeps a tenth of the new traces (`make bench` measures why: every trace
/// costs RecordSwipe a sixth to a third of its CPU time); `OTEL_TRACES_SAMPLER` says
/// otherwise, e.g. `parentbased_always_on`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    new_traces: f64,
}

impl Default for Sampling {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Sampling {
    /// Every trace kept.
    pub const EVERY_TRACE: Self = Self { new_traces: 1.0 };
    /// A tenth of the traces starting here kept, and every trace a caller keeps.
    pub const DEFAULT: Self = Self { new_traces: 0.1 };

    /// Keeps `fraction` (clamped to 0..=1; not a number counts as 0) of the traces that
    /// start here.
    pub fn new_traces_kept(fraction: f64) -> Self {
        Self {
            new_traces: if fraction.is_nan() {
                0.0
            } else {
                fraction.clamp(0.0, 1.0)
            },
        }
    }

    /// The fraction of the traces starting here that are kept.
    pub fn new_traces(self) -> f64 {
        self.new_traces
    }

    /// From [`SAMPLER_VAR`] and [`SAMPLER_ARG_VAR`], as the OpenTelemetry conventions name
    /// samplers; [`Sampling::DEFAULT`] when unset. A value it cannot read is said on
    /// stderr (no subscriber may be installed yet) and the default kept.
    pub fn from_env() -> Self {
        let sampler = std::env::var(SAMPLER_VAR).ok();
        let arg = std::env::var(SAMPLER_ARG_VAR).ok();
        Self::parse(sampler.as_deref(), arg.as_deref()).unwrap_or_else(|e| {
            eprintln!("{e}; keeping the default sampler (a tenth of new traces)");
            Self::DEFAULT
        })
    }

    /// Reads a sampler's name and argument. A caller's decision is always followed, so
    /// `always_on`, `always_off` and `traceidratio` are read as their `parentbased_`
    /// forms.
    pub fn parse(sampler: Option<&str>, arg: Option<&str>) -> Result<Self, String> {
        let Some(sampler) = sampler.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(Self::DEFAULT);
        };
        match sampler.strip_prefix("parentbased_").unwrap_or(sampler) {
            "always_on" => Ok(Self::EVERY_TRACE),
            "always_off" => Ok(Self::new_traces_kept(0.0)),
            "traceidratio" => match arg.map(str::trim).map(str::parse::<f64>) {
                Some(Ok(r)) if (0.0..=1.0).contains(&r) => Ok(Self::new_traces_kept(r)),
                _ => Err(format!(
                    "{SAMPLER_ARG_VAR}={:?} is not a fraction from 0 to 1 (the share of \
                     new traces {SAMPLER_VAR}={sampler} keeps)",
                    arg.unwrap_or("")
                )),
            },
            _ => Err(format!(
                "{SAMPLER_VAR}={sampler:?} is not a sampler this service knows (always_on, \
                 always_off, traceidratio and their parentbased_ forms)"
            )),
        }
    }

    /// The SDK's sampler: the parent's decision where there is one; a server span without
    /// one was decided at the edge before it was made ([`head_sampled`]), so it is kept;
    /// any other new trace by the trace id's ratio.
    fn sampler(self) -> Sampler {
        Sampler::ParentBased(Box::new(NewTraces(self.new_traces)))
    }
}

/// How a trace starting here is sampled (see [`Sampling::sampler`]).
#[derive(Debug, Clone)]
struct NewTraces(f64);

impl ShouldSample for NewTraces {
    fn should_sample(
        &self,
        parent: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        if *kind == SpanKind::Server {
            return SamplingResult {
                decision: SamplingDecision::RecordAndSample,
                attributes: Vec::new(),
                trace_state: TraceState::default(),
            };
        }
        Sampler::TraceIdRatioBased(self.0)
            .should_sample(parent, trace_id, name, kind, attributes, links)
    }
}

/// The fraction of new traces the installed telemetry keeps, as `f64` bits; every trace
/// until telemetry is installed (without a subscriber no span is made anyway).
static NEW_TRACES: AtomicU64 = AtomicU64::new(0x3FF0_0000_0000_0000);

/// Whether a call that arrives with `traceparent` (the caller's, if it sent one) is
/// traced: the caller's decision when its value is valid, else a draw keeping the
/// installed [`Sampling`]'s share of new traces. Made before any span of the call, so
/// one not traced need not make any.
pub fn head_sampled(traceparent: Option<&str>) -> bool {
    if let Some(tp) = traceparent {
        let cx = extract(tp);
        let caller = cx.span().span_context().clone();
        if caller.is_valid() {
            return caller.is_sampled();
        }
    }
    draw(f64::from_bits(NEW_TRACES.load(Ordering::Relaxed)))
}

/// True with probability `kept`.
fn draw(kept: f64) -> bool {
    kept >= 1.0 || (kept > 0.0 && fastrand::f64() < kept)
}

/// In a request's extensions: head sampling did not keep this call's trace, so it has no
/// server span and what it writes carries [`untraced_traceparent`].
#[derive(Debug, Clone, Copy)]
pub struct NotSampled;

/// The `traceparent` that what an untraced call writes carries: the caller's when it sent
/// a valid one (its trace, and its decision, go on), else a new trace's marked not
/// sampled, so that no service downstream traces what follows from it either.
pub fn untraced_traceparent(caller: Option<&str>) -> String {
    if let Some(value) = caller.and_then(|tp| inject(&extract(tp))) {
        return value;
    }
    let ids = RandomIdGenerator::default();
    format!("00-{}-{}-00", ids.new_trace_id(), ids.new_span_id())
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
        let sampling = traces.sampling;
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
            NEW_TRACES.store(sampling.new_traces.to_bits(), Ordering::Relaxed);
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
        let mut builder = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_sampler(traces.sampling.sampler());
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
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.provider.force_flush();
        let _ = self.provider.shutdown();
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
    fn an_untraced_call_writes_its_callers_context_or_a_new_unsampled_one() {
        assert_eq!(
            untraced_traceparent(Some(INCOMING)),
            INCOMING,
            "the caller's goes on"
        );
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert_eq!(untraced_traceparent(Some(unsampled)), unsampled);
        for caller in [None, Some("not-a-traceparent")] {
            let tp = untraced_traceparent(caller);
            let p = parts(&tp);
            assert_eq!(p.len(), 4, "{tp}");
            assert_eq!((p[1].len(), p[2].len()), (32, 16), "{tp}");
            assert_ne!(p[1], "0".repeat(32), "a valid trace id: {tp}");
            assert_eq!(p[3], "00", "marked not sampled: {tp}");
            let cx = extract(&tp);
            assert!(cx.span().span_context().is_valid(), "{tp}");
            assert!(!cx.span().span_context().is_sampled(), "{tp}");
        }
    }

    #[test]
    fn the_head_decision_follows_a_valid_caller_else_draws() {
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(head_sampled(Some(INCOMING)));
        assert!(!head_sampled(Some(unsampled)));
        // Nothing installed in this test binary: every new trace is kept.
        assert!(head_sampled(None));
        assert!(head_sampled(Some("garbage")));
        // A share is kept: a tenth of 100,000 draws is 10,000, give or take ~95.
        let kept = (0..100_000).filter(|_| draw(0.1)).count();
        assert!((9_000..11_000).contains(&kept), "{kept}");
        assert!(!(0..1_000).any(|_| draw(0.0)));
        assert!((0..1_000).all(|_| draw(1.0)));
    }

    #[test]
    fn samplers_are_read_as_the_conventions_name_them() {
        let read = |s, a| Sampling::parse(s, a).map(Sampling::new_traces);
        assert_eq!(read(None, None), Ok(0.1), "the default");
        assert_eq!(read(Some(""), Some("0.5")), Ok(0.1));
        assert_eq!(read(Some("always_on"), None), Ok(1.0));
        assert_eq!(read(Some("parentbased_always_on"), None), Ok(1.0));
        assert_eq!(read(Some("parentbased_always_off"), None), Ok(0.0));
        assert_eq!(read(Some("traceidratio"), Some("0.25")), Ok(0.25));
        assert_eq!(read(Some("parentbased_traceidratio"), Some(" 1 ")), Ok(1.0));
        for (sampler, arg, names) in [
            ("parentbased_traceidratio", None, SAMPLER_ARG_VAR),
            ("traceidratio", Some("1.5"), SAMPLER_ARG_VAR),
            ("traceidratio", Some("a tenth"), SAMPLER_ARG_VAR),
            ("jaeger_remote", None, SAMPLER_VAR),
        ] {
            let e = read(Some(sampler), arg).expect_err(sampler);
            assert!(e.starts_with(names), "{e}");
        }
        assert_eq!(Sampling::new_traces_kept(f64::NAN).new_traces(), 0.0);
        assert_eq!(Sampling::new_traces_kept(7.0).new_traces(), 1.0);
    }

    #[test]
    fn the_sdk_keeps_edge_decided_server_spans_and_parents_decisions() {
        use opentelemetry::trace::{Span as _, SpanContext, TraceFlags, Tracer as _};
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampling::new_traces_kept(0.0).sampler())
            .build();
        let tracer = provider.tracer("test");
        let sampled = |kind: SpanKind, parent: &Context| {
            let span = tracer
                .span_builder("s")
                .with_kind(kind)
                .start_with_context(&tracer, parent);
            span.span_context().is_sampled()
        };
        let root = Context::new();
        assert!(sampled(SpanKind::Server, &root), "decided at the edge");
        assert!(!sampled(SpanKind::Internal, &root), "no new trace kept");
        assert!(!sampled(SpanKind::Consumer, &root));
        let remote = |flags| {
            Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from(7),
                opentelemetry::trace::SpanId::from(9),
                flags,
                true,
                TraceState::default(),
            ))
        };
        assert!(sampled(SpanKind::Consumer, &remote(TraceFlags::SAMPLED)));
        assert!(!sampled(SpanKind::Server, &remote(TraceFlags::default())));
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
