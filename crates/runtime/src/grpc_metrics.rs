//! gRPC request metrics for every call of every service a [`crate::GrpcServer`] serves:
//! [`REQUESTS_TOTAL`] `{service, method, code}`, [`REQUEST_DURATION_SECONDS`]
//! `{service, method}` and [`IN_FLIGHT_REQUESTS`] `{service, method}`.
//!
//! - Labels are bounded: `service` and `method` come from the request path
//!   `/pkg.Service/Method`, but only methods the server serves (as its descriptor sets
//!   describe them) are named; any other path counts as `service="unknown"` or
//!   `method="unknown"`, so a client cannot grow the label set.
//! - `code` is the `grpc-status` of the response: in its headers for a trailers-only
//!   answer (an error before any message), else in the trailers at the end of the
//!   body, unary and streaming alike. A call is counted when its status goes out, so a
//!   stream counts (and its duration runs) until its last message and status, and a
//!   client holding its answer finds the call counted. A call whose response never got
//!   a status (the client went away, the connection was cut at the end of the shutdown
//!   grace) counts as `CANCELLED`; trailers or a body end without any `grpc-status` as
//!   `UNKNOWN`.

use crate::call_status::{OnStatus, on_status};
use crate::status::code_name;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Gauge, Histogram, Label, SharedString};
use prost::Message;
use tonic::Code;

pub use crate::recorder::{IN_FLIGHT_REQUESTS, REQUEST_DURATION_SECONDS, REQUESTS_TOTAL};

/// The label of a service or method the server does not serve.
const UNKNOWN: &str = "unknown";

/// The labels of one method (or of the unknown ones), worked out once when the server is
/// built, and its metric handles, taken on its first call once the process's recorder is
/// installed: a call then costs no label strings and no registry look-ups.
#[derive(Debug)]
pub(crate) struct Method {
    pub(crate) service: SharedString,
    pub(crate) method: SharedString,
    /// `<service>/<method>`: the name of the call's span.
    pub(crate) span_name: SharedString,
    handles: OnceLock<Handles>,
}

/// The handles of a method's series; a counter per status code, taken when first needed
/// (no series for codes the method never answered).
#[derive(Debug)]
struct Handles {
    in_flight: Gauge,
    duration: Histogram,
    requests: [OnceLock<Counter>; CODES],
}

/// How many gRPC status codes there are (`OK` = 0 to `UNAUTHENTICATED` = 16).
const CODES: usize = 17;

impl Method {
    fn new(service: &str, method: &str) -> Arc<Self> {
        Arc::new(Self {
            service: SharedString::from(service.to_owned()),
            method: SharedString::from(method.to_owned()),
            span_name: SharedString::from(format!("{service}/{method}")),
            handles: OnceLock::new(),
        })
    }

    fn labels(&self) -> [Label; 2] {
        [
            Label::new("service", self.service.clone()),
            Label::new("method", self.method.clone()),
        ]
    }

    /// The method's handles, cached only once the process's recorder is installed: a
    /// handle taken before that would stay a no-op for good.
    fn with_handles(&self, f: impl FnOnce(&Handles)) {
        if let Some(handles) = self.handles.get() {
            return f(handles);
        }
        let handles = Handles {
            in_flight: metrics::gauge!(IN_FLIGHT_REQUESTS, self.labels().to_vec()),
            duration: metrics::histogram!(REQUEST_DURATION_SECONDS, self.labels().to_vec()),
            requests: Default::default(),
        };
        if crate::recorder::installed() {
            f(self.handles.get_or_init(|| handles));
        } else {
            f(&handles);
        }
    }

    fn requests(&self, handles: &Handles, code: Code) -> Counter {
        let counter = || {
            let [service, method] = self.labels();
            metrics::counter!(
                REQUESTS_TOTAL,
                vec![service, method, Label::new("code", code_name(code))]
            )
        };
        let slot = &handles.requests[(code as usize).min(CODES - 1)];
        match slot.get() {
            Some(counter) => counter.clone(),
            None if crate::recorder::installed() => slot.get_or_init(counter).clone(),
            None => counter(),
        }
    }
}

/// The methods a server serves, by service: what the labels may name.
#[derive(Debug)]
pub(crate) struct Methods {
    served: HashMap<String, Service>,
    unknown: Arc<Method>,
}

/// A served service's methods, and the labels of a call to one it does not serve.
#[derive(Debug)]
struct Service {
    methods: HashMap<String, Arc<Method>>,
    unknown: Arc<Method>,
}

impl Default for Methods {
    fn default() -> Self {
        Self {
            served: HashMap::new(),
            unknown: Method::new(UNKNOWN, UNKNOWN),
        }
    }
}

impl Methods {
    /// The methods of `services` as `descriptor_sets` (encoded `FileDescriptorSet`s)
    /// describe them. A set that does not decode is skipped: its methods count as
    /// unknown.
    pub(crate) fn of<'a>(
        services: &[&str],
        descriptor_sets: impl IntoIterator<Item = &'a [u8]>,
    ) -> Self {
        let mut methods: HashMap<String, HashSet<String>> = HashMap::new();
        for set in descriptor_sets {
            let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
                tracing::warn!("a descriptor set does not decode: its methods are not labelled");
                continue;
            };
            for file in set.file {
                let package = file.package.unwrap_or_default();
                for service in file.service {
                    let name = match (package.as_str(), service.name()) {
                        ("", name) => name.to_owned(),
                        (package, name) => format!("{package}.{name}"),
                    };
                    if services.contains(&name.as_str()) {
                        let served = methods.entry(name).or_default();
                        served.extend(service.method.into_iter().map(|m| m.name().to_owned()));
                    }
                }
            }
        }
        let served = methods
            .into_iter()
            .map(|(service, names)| {
                let methods = names
                    .into_iter()
                    .map(|m| {
                        let labels = Method::new(&service, &m);
                        (m, labels)
                    })
                    .collect();
                let unknown = Method::new(&service, UNKNOWN);
                (service, Service { methods, unknown })
            })
            .collect();
        Self {
            served,
            ..Self::default()
        }
    }

    /// The labels of a call to `path`: service and method named only if the server
    /// serves them, else [`UNKNOWN`].
    pub(crate) fn of_path(&self, path: &str) -> &Arc<Method> {
        let Some((service, method)) = parse_path(path) else {
            return &self.unknown;
        };
        match self.served.get(service) {
            None => &self.unknown,
            Some(served) => served.methods.get(method).unwrap_or(&served.unknown),
        }
    }

    /// The `(service, method)` labels of a call to `path`.
    #[cfg(test)]
    fn labels(&self, path: &str) -> (String, String) {
        let m = self.of_path(path);
        (m.service.to_string(), m.method.to_string())
    }
}

/// `("pkg.Service", "Method")` of a gRPC request path `/pkg.Service/Method`; `None` for
/// any other shape.
pub(crate) fn parse_path(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let fine = |part: &str| !part.is_empty() && !part.contains('/');
    (fine(service) && fine(method)).then_some((service, method))
}

/// The middleware ([`axum::middleware::from_fn_with_state`]) that measures every call.
pub(crate) async fn measure(
    State(methods): State<Arc<Methods>>,
    request: Request,
    next: Next,
) -> Response {
    let call = Call::start(methods.of_path(request.uri().path()).clone());
    let response = next.run(request).await;
    on_status(response, call)
}

/// One call being measured: in flight from [`Call::start`] until [`Call::end`], or until
/// dropped without a status (counted as `CANCELLED`).
struct Call {
    method: Arc<Method>,
    started: Instant,
    ended: bool,
}

impl Call {
    fn start(method: Arc<Method>) -> Self {
        method.with_handles(|h| h.in_flight.increment(1.0));
        Self {
            method,
            started: Instant::now(),
            ended: false,
        }
    }

    /// Counts the call as answered with `code` (once; later calls do nothing). Called
    /// before the status goes out, so that a client that has its answer finds the call
    /// counted.
    fn end(&mut self, code: Code) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let method = &self.method;
        method.with_handles(|h| {
            h.in_flight.decrement(1.0);
            h.duration.record(self.started.elapsed());
            method.requests(h, code).increment(1);
        });
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.end(Code::Cancelled);
    }
}

/// A call ends when its status goes out; a body that ends without one is `UNKNOWN`.
impl OnStatus for Call {
    fn status(&mut self, code: Code) {
        self.end(code);
    }

    fn ended_without_status(&mut self) {
        self.end(Code::Unknown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call_status::status_code;
    use tonic::codegen::http::HeaderMap;

    #[test]
    fn a_grpc_path_names_its_service_and_method() {
        assert_eq!(
            parse_path("/grpc.health.v1.Health/Check"),
            Some(("grpc.health.v1.Health", "Check"))
        );
        for bad in [
            "",
            "/",
            "//Check",
            "/grpc.health.v1.Health",
            "/grpc.health.v1.Health/",
            "grpc.health.v1.Health/Check",
            "/a/b/c",
        ] {
            assert_eq!(parse_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_served_methods_are_named() {
        let methods = Methods::of(
            &["grpc.health.v1.Health"],
            [tonic_health::pb::FILE_DESCRIPTOR_SET],
        );
        let labels = |path| methods.labels(path);
        assert_eq!(
            labels("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health".into(), "Check".into())
        );
        assert_eq!(
            labels("/grpc.health.v1.Health/Watch"),
            ("grpc.health.v1.Health".into(), "Watch".into())
        );
        assert_eq!(
            labels("/grpc.health.v1.Health/Made-Up"),
            ("grpc.health.v1.Health".into(), UNKNOWN.into())
        );
        assert_eq!(
            labels("/made.up.Service/Check"),
            (UNKNOWN.into(), UNKNOWN.into())
        );
        assert_eq!(labels("/not-grpc"), (UNKNOWN.into(), UNKNOWN.into()));

        let undescribed = Methods::of(&["grpc.health.v1.Health"], []);
        assert_eq!(
            undescribed.labels("/grpc.health.v1.Health/Check"),
            (UNKNOWN.into(), UNKNOWN.into()),
            "a service whose descriptor set is not given is not named"
        );
    }

    #[test]
    fn the_code_is_read_from_grpc_status() {
        let mut headers = HeaderMap::new();
        assert_eq!(status_code(&headers), None);
        for (value, code, name) in [
            ("0", Code::Ok, "OK"),
            ("5", Code::NotFound, "NOT_FOUND"),
            ("14", Code::Unavailable, "UNAVAILABLE"),
            ("99", Code::Unknown, "UNKNOWN"),
            ("not a number", Code::Unknown, "UNKNOWN"),
        ] {
            headers.insert("grpc-status", value.parse().expect("a header value"));
            assert_eq!(status_code(&headers), Some(code), "{value:?}");
            assert_eq!(code_name(code), name);
        }
    }
}
