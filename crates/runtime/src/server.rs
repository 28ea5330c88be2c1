//! The one gRPC server every service runs: its tonic services, gRPC health and
//! reflection on one listener, and a graceful stop.
//!
//! ```text
//! GrpcServer::bind(addr)              listening from here on (port 0: a free one)
//!     .add_service(MyServer::new(..)) the service's generated servers
//!     .reflecting(FILE_DESCRIPTOR_SET) what reflection describes (health's is built in)
//!     .with_health_probe(..)          health follows a dependency (else SERVING)
//!     .with_shutdown_grace(..)        how long in-flight calls get at shutdown
//!     .with_layer(..)                 middleware around every call
//!     .with_admin(Some(addr)).await?  /metrics, /healthz, /readyz over HTTP (crate::admin)
//!     .with_tls(&settings.tls)?       TLS or mutual TLS (plaintext when the settings are empty)
//!     .run_until(shutdown) / .spawn()
//! ```
//!
//! Shutdown: when `shutdown` completes the listener closes, every token given to
//! [`GrpcServer::cancel_on_shutdown`] is cancelled (so never-ending streams end), calls in
//! flight get the grace period to finish (after it their connections are closed, which
//! drops them: nothing of the server outlives the stop), health probing stops and every
//! served service, and the server as a whole, is reported NOT_SERVING.
//!
//! Every call of every service is measured ([`crate::grpc_metrics`]: counts by status
//! code, durations, calls in flight), whether or not this server has an admin endpoint:
//! the metrics go to the process's recorder, which any admin endpoint of the process
//! renders.
//!
//! Every call (health checks aside) is traced too ([`crate::grpc_tracing`]): a server
//! span continuing the caller's `traceparent`, the parent of what the call does.
//!
//! Where later concerns go: authentication and rate limits are layers
//! ([`GrpcServer::with_layer`]), applied to every call of every service the server
//! serves; TLS is a setting of the transport ([`GrpcServer::with_tls`]: TLS or mutual
//! TLS with rustls, plaintext unless set; the start line says which).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use churnguard_config::{AuthSettings, RateLimitSettings, TlsMode, TlsSettings};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::body::Body;
use tonic::codegen::{Service, http};
use tonic::server::NamedService;
use tonic::service::{AxumRouter, Routes, RoutesBuilder};
use tonic::transport::server::{Connected, ServerTlsConfig, TcpConnectInfo};
use tonic::transport::{Certificate, Identity};
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

use crate::auth::Authenticator;
use crate::grpc_metrics::Methods;
use crate::rate_limit::RateLimits;
use crate::running::{Running, TaskFailed};
use crate::{admin, auth, grpc_metrics, grpc_tracing, health, rate_limit};

/// Why a server could not start, or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reflection: {0}")]
    Reflection(#[source] tonic_reflection::server::Error),
    #[error("serving: {0}")]
    Serve(#[source] tonic::transport::Error),
    #[error("server task: {0}")]
    Task(String),
    /// A TLS file that cannot be read or does not hold what it should.
    #[error("invalid configuration at {key}: {message}")]
    Tls { key: &'static str, message: String },
    /// An authentication setting that is invalid, or a file it names that cannot be read.
    #[error("invalid configuration at {key}: {message}")]
    Config { key: String, message: String },
}

impl From<TaskFailed> for ServeError {
    fn from(e: TaskFailed) -> Self {
        ServeError::Task(e.0)
    }
}

/// How a server stopped: what is left of the grace period, counted from the moment
/// shutdown was asked for, for the shutdown steps that follow (flushing a producer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    pub grace_left: Duration,
}

type Probe = Box<
    dyn FnOnce(
            HealthReporter,
            Vec<&'static str>,
            CancellationToken,
            oneshot::Sender<()>,
        ) -> Pin<Box<dyn Future<Output = ()> + Send>>
        + Send,
>;

type Layer = Box<dyn FnOnce(AxumRouter) -> AxumRouter + Send>;

/// A bound gRPC server, being set up. See the module documentation.
pub struct GrpcServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    /// What the log lines call this server ("feedback API serving").
    log_name: &'static str,
    transport: tonic::transport::Server,
    routes: RoutesBuilder,
    /// The names of the services added, as health reports them and reflection lists them.
    names: Vec<&'static str>,
    descriptor_sets: Vec<&'static [u8]>,
    grace: Duration,
    health: HealthReporter,
    probe: Option<Probe>,
    cancel_on_shutdown: Vec<CancellationToken>,
    layers: Vec<Layer>,
    /// The admin endpoint's listener, if [`GrpcServer::with_admin`] asked for one.
    admin: Option<TcpListener>,
    /// Plaintext unless [`GrpcServer::with_tls`] set TLS up; the start line says which.
    tls: TlsMode,
    /// Whether callers must prove who they are ([`GrpcServer::with_auth`]); the start
    /// line says it.
    auth: AuthMode,
    authenticator: Option<Arc<Authenticator>>,
    /// Calls per second per caller ([`GrpcServer::with_rate_limits`]).
    rate_limits: Option<Arc<RateLimits>>,
}

/// What a server asks of its callers, as its start line says it (`auth=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Nothing: any caller may call anything (`make run`).
    Off,
    /// Credentials are checked when presented (a client certificate, a token), not
    /// required.
    Optional,
    /// Every call proves who makes it, or gets UNAUTHENTICATED.
    Required,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Off => "off",
            AuthMode::Optional => "optional",
            AuthMode::Required => "required",
        }
    }
}

impl std::fmt::Debug for GrpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcServer")
            .field("log_name", &self.log_name)
            .field("local_addr", &self.local_addr)
            .field("services", &self.names)
            .field("grace", &self.grace)
            .field("admin_addr", &self.admin_addr())
            .finish_non_exhaustive()
    }
}

/// The shutdown grace period unless [`GrpcServer::with_shutdown_grace`] sets one.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// What every call passes before the service's own layers: who it is, then whether it
/// is within its rate.
struct Guards {
    authenticator: Option<Arc<Authenticator>>,
    rate_limits: Option<Arc<RateLimits>>,
}

/// The served routes inside the given layers, those inside the rate limit, that inside
/// authentication, and around everything the call's span and its metrics: calls refused
/// by a layer are traced and counted too, and the layers run inside the call's span.
fn wrapped(
    routes: RoutesBuilder,
    layers: Vec<Layer>,
    guards: Guards,
    names: &[&'static str],
    descriptor_sets: &[&'static [u8]],
) -> AxumRouter {
    let mut router = layers
        .into_iter()
        .fold(routes.routes().into_axum_router(), |router, wrap| {
            wrap(router)
        });
    if let Some(limits) = guards.rate_limits {
        router = router.layer(axum::middleware::from_fn_with_state(
            limits,
            rate_limit::limit,
        ));
    }
    if let Some(authenticator) = guards.authenticator {
        router = router.layer(axum::middleware::from_fn_with_state(
            authenticator,
            auth::authenticate,
        ));
    }
    let methods = Arc::new(measured_methods(names, descriptor_sets));
    router
        .layer(axum::middleware::from_fn_with_state(
            methods.clone(),
            grpc_tracing::trace,
        ))
        .layer(axum::middleware::from_fn_with_state(
            methods,
            grpc_metrics::measure,
        ))
}

impl GrpcServer {
    /// Binds `addr` (port 0 picks a free one): the server listens from now on, and
    /// [`GrpcServer::local_addr`] says where.
    pub async fn bind(addr: &str) -> Result<Self, ServeError> {
        let bind_error = |source| ServeError::Bind {
            addr: addr.to_owned(),
            source,
        };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(Self {
            listener,
            local_addr,
            log_name: "gRPC server",
            transport: tonic::transport::Server::builder(),
            routes: RoutesBuilder::default(),
            names: Vec::new(),
            descriptor_sets: Vec::new(),
            grace: DEFAULT_GRACE,
            health: HealthReporter::new(),
            probe: None,
            cancel_on_shutdown: Vec::new(),
            layers: Vec::new(),
            admin: None,
            tls: TlsMode::Plaintext,
            auth: AuthMode::Off,
            authenticator: None,
            rate_limits: None,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves the admin HTTP endpoint ([`crate::admin`]: `/metrics`, `/healthz`,
    /// `/readyz`) on `addr` (port 0 picks a free one; [`GrpcServer::admin_addr`] says
    /// which), from when the server runs until after it stopped. Binds now, and installs
    /// the process's metrics recorder if it is not yet. `None` (the setting left empty):
    /// no admin endpoint.
    pub async fn with_admin(mut self, addr: Option<&str>) -> Result<Self, ServeError> {
        let Some(addr) = addr else {
            return Ok(self);
        };
        let bind_error = |source| ServeError::Bind {
            addr: addr.to_owned(),
            source,
        };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        crate::recorder::prometheus();
        self.admin = Some(listener);
        Ok(self)
    }

    /// Serves TLS as `settings` say ([`TlsSettings`]: all empty leaves the server on
    /// plaintext): the certificate and key (PEM files), and with a client CA, mutual TLS,
    /// where every client must present a certificate that CA signed (a call's
    /// `peer_certs()` then holds it). Reads the files now; an error names the setting.
    pub fn with_tls(mut self, settings: &TlsSettings) -> Result<Self, ServeError> {
        let mode = settings.mode();
        if mode == TlsMode::Plaintext {
            return Ok(self);
        }
        let read = |key: &'static str, file: &str| {
            std::fs::read(file).map_err(|e| ServeError::Tls {
                key,
                message: format!("reading {file}: {e}"),
            })
        };
        let identity = Identity::from_pem(
            read("tls.cert_file", &settings.cert_file)?,
            read("tls.key_file", &settings.key_file)?,
        );
        let mut config = ServerTlsConfig::new().identity(identity);
        if mode == TlsMode::MutualTls {
            config = config.client_ca_root(Certificate::from_pem(read(
                "tls.client_ca_file",
                &settings.client_ca_file,
            )?));
        }
        self.transport = self
            .transport
            .tls_config(config)
            .map_err(|e| ServeError::Tls {
                key: "tls.cert_file",
                message: format!("the certificate, key or client CA: {e}"),
            })?;
        self.tls = mode;
        Ok(self)
    }

    /// Authenticates every call (gRPC health aside) as `settings` say
    /// ([`crate::auth`]): the [`crate::identity::Caller`] goes into the request's
    /// extensions, where `Caller::of` finds it, or the call is answered UNAUTHENTICATED.
    /// Without any setting (the default), nothing is checked and the start line says
    /// `auth="off"`. Reads the files now; an error names the setting. Call it after
    /// [`GrpcServer::with_tls`]: whether client certificates are asked for counts as a
    /// way to prove an identity.
    pub fn with_auth(mut self, settings: &AuthSettings) -> Result<Self, ServeError> {
        let config = |e: churnguard_config::ConfigError| ServeError::Config {
            key: e.key,
            message: e.message,
        };
        settings
            .validate(self.tls == TlsMode::MutualTls)
            .map_err(config)?;
        let configured =
            settings.required || !settings.store_tokens_file.is_empty() || settings.jwt.enabled();
        if !configured {
            if self.tls == TlsMode::MutualTls {
                self.auth = AuthMode::Optional;
            }
            return Ok(self);
        }
        let authenticator = Arc::new(Authenticator::from_settings(settings).map_err(config)?);
        self.auth = if settings.required {
            AuthMode::Required
        } else {
            AuthMode::Optional
        };
        self.authenticator = Some(authenticator);
        Ok(self)
    }

    /// Keeps each caller to its calls per second ([`crate::rate_limit`]; nothing is
    /// limited when `settings` limit nothing). The limits apply to the caller that
    /// [`GrpcServer::with_auth`] identifies, whichever is called first.
    pub fn with_rate_limits(mut self, settings: &RateLimitSettings) -> Self {
        if !settings.any() {
            return self;
        }
        let limits = Arc::new(RateLimits::new(settings));
        // Forget callers whose budgets are full again, once a minute, for as long as the
        // server's limiter lives.
        let idle = Arc::downgrade(&limits);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            every.tick().await;
            loop {
                every.tick().await;
                match idle.upgrade() {
                    Some(limits) => limits.forget_idle(),
                    None => break,
                }
            }
        });
        self.rate_limits = Some(limits);
        self
    }

    /// What the server asks of its callers ([`GrpcServer::with_auth`]).
    pub fn auth_mode(&self) -> AuthMode {
        self.auth
    }

    /// Plaintext, TLS or mutual TLS ([`GrpcServer::with_tls`]).
    pub fn tls_mode(&self) -> TlsMode {
        self.tls
    }

    /// Where the admin endpoint listens, if there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// What its log lines call the server (default "gRPC server"): `<name> serving`,
    /// `<name> stopped`.
    pub fn with_log_name(mut self, name: &'static str) -> Self {
        self.log_name = name;
        self
    }

    /// Serves `service` (a generated `...Server`); health reports it by its gRPC name and
    /// reflection lists it.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.names.push(S::NAME);
        self.routes.add_service(service);
        self
    }

    /// Describes the messages and services of `descriptor_set` (an encoded
    /// `FileDescriptorSet`) through reflection. Health's is always included.
    pub fn reflecting(mut self, descriptor_set: &'static [u8]) -> Self {
        self.descriptor_sets.push(descriptor_set);
        self
    }

    /// How long calls in flight may take to finish once shutdown is asked for
    /// (default `DEFAULT_GRACE`, 10 s).
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Health follows `probe`, run every `every`: every served service and the server
    /// as a whole are SERVING while it succeeds and NOT_SERVING while it fails or takes
    /// longer than `every` (at least 2 s). The first answer is in before the first call
    /// is served. `dependency` names what is probed in logs. Without a probe, health
    /// says SERVING for as long as the server serves.
    pub fn with_health_probe<F, Fut, E>(
        mut self,
        dependency: &'static str,
        every: Duration,
        probe: F,
    ) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: 'static,
    {
        self.probe = Some(Box::new(move |reporter, names, stop, first| {
            Box::pin(async move {
                health::follow(reporter, &names, dependency, every, stop, first, probe).await;
            })
        }));
        self
    }

    /// The health reporter, for a service that sets its status itself. A probe given to
    /// [`GrpcServer::with_health_probe`] overwrites what is set here while it runs.
    pub fn health(&self) -> HealthReporter {
        self.health.clone()
    }

    /// Cancels `token` as soon as shutdown is asked for, before calls in flight are
    /// waited for: for calls that never end by themselves (watch streams).
    pub fn cancel_on_shutdown(mut self, token: CancellationToken) -> Self {
        self.cancel_on_shutdown.push(token);
        self
    }

    /// The extension point for what every call goes through: `wrap` gets the router
    /// holding every service of this server (health and reflection included) and
    /// returns it wrapped, e.g. `server.with_layer(|routes| routes.layer(metrics))` with
    /// any tower layer. Layers given later wrap the earlier ones.
    pub fn with_layer(
        mut self,
        wrap: impl FnOnce(AxumRouter) -> AxumRouter + Send + 'static,
    ) -> Self {
        self.layers.push(Box::new(wrap));
        self
    }

    /// The most concurrent calls (HTTP/2 streams) one connection may have open.
    pub fn max_concurrent_streams(mut self, max: u32) -> Self {
        self.transport = self.transport.max_concurrent_streams(max);
        self
    }

    /// The HTTP/2 flow-control window of one call: what a client may send ahead of what
    /// the service has read.
    pub fn initial_stream_window_size(mut self, bytes: u32) -> Self {
        self.transport = self.transport.initial_stream_window_size(bytes);
        self
    }

    /// The HTTP/2 flow-control window of a whole connection.
    pub fn initial_connection_window_size(mut self, bytes: u32) -> Self {
        self.transport = self.transport.initial_connection_window_size(bytes);
        self
    }

    /// Whether HTTP/2 may grow the windows by itself (BDP estimation); off keeps the
    /// windows set above as the bounds.
    pub fn http2_adaptive_window(mut self, enabled: bool) -> Self {
        self.transport = self.transport.http2_adaptive_window(Some(enabled));
        self
    }

    /// Serves until `shutdown` completes, then stops gracefully (see the module
    /// documentation). Returns what is left of the grace period.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Stopped, ServeError> {
        let GrpcServer {
            listener,
            local_addr,
            log_name,
            mut transport,
            mut routes,
            names,
            descriptor_sets,
            grace,
            health,
            probe,
            cancel_on_shutdown,
            layers,
            admin,
            tls,
            auth,
            authenticator,
            rate_limits,
        } = self;

        add_health_and_reflection(&mut routes, &health, &names, &descriptor_sets)?;
        let router = wrapped(
            routes,
            layers,
            Guards {
                authenticator,
                rate_limits,
            },
            &names,
            &descriptor_sets,
        );

        let stop = CancellationToken::new();
        let probing = start_health(probe, &health, &names, &stop).await;
        let admin_stop = CancellationToken::new();
        let admin = admin.map(|listener| {
            tracing::info!(addr = ?listener.local_addr().ok(), "{log_name}: admin endpoint serving");
            admin::spawn(listener, health.clone(), stop.clone(), admin_stop.clone())
        });

        // One grace budget for everything shutdown does, from the moment it is asked for.
        let requested: Arc<OnceLock<Instant>> = Arc::default();
        let requested_at = requested.clone();
        let stopping = stop.clone();
        // Connections run on tasks of their own: once the grace period is over, closing
        // them is what ends the calls still in flight.
        let cut = CancellationToken::new();
        let incoming = TcpListenerStream::new(listener).map({
            let cut = cut.clone();
            move |accepted| accepted.map(|io| Cuttable::new(io, cut.clone()))
        });
        let server = transport
            .add_routes(Routes::from(router))
            .serve_with_incoming_shutdown(incoming, async move {
                shutdown.await;
                let _ = requested_at.set(Instant::now());
                for token in cancel_on_shutdown {
                    token.cancel();
                }
                stopping.cancel();
            });
        tracing::info!(addr = %local_addr, services = ?names, transport = tls.as_str(), auth = auth.as_str(), "{log_name} serving");
        if auth == AuthMode::Off {
            tracing::warn!(
                "{log_name}: callers are not identified; anyone who can reach {local_addr} may call anything (set auth.required for a deployment)"
            );
        }

        let mut server = std::pin::pin!(server);
        let served = tokio::select! {
            r = &mut server => r,
            () = async { stop.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(?grace, "{log_name}: calls in flight did not finish within the grace period: cut off");
                Ok(())
            }
        };
        cut.cancel();
        stop.cancel();
        if let Some(probing) = probing {
            let _ = probing.await;
        }
        health::set_all(&health, &names, ServingStatus::NotServing).await;
        let grace_left = || {
            requested
                .get()
                .map_or(grace, |at| grace.saturating_sub(at.elapsed()))
        };
        if let Some(mut admin) = admin {
            admin_stop.cancel();
            // Scrapes are short; one not done within the grace is cut off with its task.
            if tokio::time::timeout(grace_left(), &mut admin)
                .await
                .is_err()
            {
                admin.abort();
            }
        }
        tracing::info!(addr = %local_addr, "{log_name} stopped");
        served.map_err(ServeError::Serve)?;
        Ok(Stopped {
            grace_left: grace_left(),
        })
    }

    /// Serves on a background task until [`Running::stop`] (or drop).
    pub fn spawn<E>(self) -> Running<E>
    where
        E: From<ServeError> + From<TaskFailed> + Send + 'static,
    {
        let addr = self.local_addr;
        Running::spawn(addr, |shutdown| async move {
            self.run_until(shutdown.wait()).await?;
            Ok(())
        })
    }
}

/// An accepted connection that fails every read and write once `cut` is cancelled, so
/// that hyper closes it and drops the calls on it.
struct Cuttable {
    io: TcpStream,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Cuttable {
    /// Also turns Nagle's algorithm off, as tonic does for the connections it accepts
    /// itself (this server accepts its own, to cut them): a small answer (a stream's
    /// acknowledgement, a unary reply) is sent at once instead of waiting for the
    /// client's next packet or its delayed ACK.
    fn new(io: TcpStream, cut: CancellationToken) -> Self {
        if let Err(e) = io.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY could not be set on an accepted connection");
        }
        Self {
            io,
            cut: Box::pin(cut.cancelled_owned()),
        }
    }

    /// `Err` once cut; else registers to be woken when it is.
    fn check(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
        match self.cut.as_mut().poll(cx) {
            Poll::Ready(()) => Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the shutdown grace period is over",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl AsyncRead for Cuttable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Cuttable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Connected for Cuttable {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// The methods the gRPC metrics name: those of the services `names` as
/// `descriptor_sets` describe them, and of health and reflection.
fn measured_methods(names: &[&'static str], descriptor_sets: &[&'static [u8]]) -> Methods {
    let served: Vec<&str> = names
        .iter()
        .copied()
        .chain([
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ])
        .collect();
    Methods::of(
        &served,
        descriptor_sets.iter().copied().chain([
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ]),
    )
}

/// Adds the health service and server reflection (v1 and v1alpha) to `routes`, listing
/// the services `names` and the two of their own.
fn add_health_and_reflection(
    routes: &mut RoutesBuilder,
    health: &HealthReporter,
    names: &[&'static str],
    descriptor_sets: &[&'static [u8]],
) -> Result<(), ServeError> {
    routes.add_service(HealthServer::new(HealthService::from_health_reporter(
        health.clone(),
    )));
    let reflection = |builder: tonic_reflection::server::Builder<'static>| {
        let builder = descriptor_sets
            .iter()
            .fold(builder, |b, set| {
                b.register_encoded_file_descriptor_set(set)
            })
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        // List what this server serves, not every service the descriptor sets hold.
        names
            .iter()
            .chain(&[
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            ])
            .fold(builder, |b, name| b.with_service_name(*name))
    };
    let configure = tonic_reflection::server::Builder::configure;
    routes.add_service(
        reflection(configure())
            .build_v1()
            .map_err(ServeError::Reflection)?,
    );
    routes.add_service(
        reflection(configure())
            .build_v1alpha()
            .map_err(ServeError::Reflection)?,
    );
    Ok(())
}

/// Makes health right from the first call on: starts the probe and waits for its first
/// answer, or, without one, says SERVING for every service.
async fn start_health(
    probe: Option<Probe>,
    health: &HealthReporter,
    names: &[&'static str],
    stop: &CancellationToken,
) -> Option<JoinHandle<()>> {
    match probe {
        Some(start) => {
            let (first, answered) = oneshot::channel();
            let probing = tokio::spawn(start(health.clone(), names.to_vec(), stop.clone(), first));
            let _ = answered.await;
            Some(probing)
        }
        None => {
            health::set_all(health, names, ServingStatus::Serving).await;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use churnguard_proto::scoring::v1 as pb;
    use churnguard_proto::scoring::v1::churn_scoring_client::ChurnScoringClient;
    use churnguard_proto::scoring::v1::churn_scoring_server::{ChurnScoring, ChurnScoringServer};
    use tokio::sync::Notify;
    use tonic::transport::Channel;
    use tonic::{Code, Request, Response, Status};
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::health_server::Health;
    use tonic_health::pb::{HealthCheckRequest, health_check_response};

    use super::*;

    const SCORING: &str = "churnguard.scoring.v1.ChurnScoring";

    /// GetModel answers after `delay`, telling `started` when a call begins; the rest
    /// is not needed here.
    #[derive(Clone)]
    struct Slow {
        delay: Duration,
        started: Arc<Notify>,
    }

    #[tonic::async_trait]
    impl ChurnScoring for Slow {
        async fn get_customer_risk(
            &self,
            _: Request<pb::GetCustomerRiskRequest>,
        ) -> Result<Response<pb::GetCustomerRiskResponse>, Status> {
            Err(Status::unimplemented("test"))
        }
        async fn list_at_risk_customers(
            &self,
            _: Request<pb::ListAtRiskCustomersRequest>,
        ) -> Result<Response<pb::ListAtRiskCustomersResponse>, Status> {
            Err(Status::unimplemented("test"))
        }
        async fn get_store_defection_stats(
            &self,
            _: Request<pb::GetStoreDefectionStatsRequest>,
        ) -> Result<Response<pb::GetStoreDefectionStatsResponse>, Status> {
            Err(Status::unimplemented("test"))
        }
        async fn list_stores(
            &self,
            _: Request<pb::ListStoresRequest>,
        ) -> Result<Response<pb::ListStoresResponse>, Status> {
            Err(Status::unimplemented("test"))
        }
        async fn get_model(
            &self,
            _: Request<pb::GetModelRequest>,
        ) -> Result<Response<pb::GetModelResponse>, Status> {
            self.started.notify_one();
            tokio::time::sleep(self.delay).await;
            Ok(Response::new(pb::GetModelResponse {
                version: 7,
                ..Default::default()
            }))
        }
        async fn request_refit(
            &self,
            _: Request<pb::RequestRefitRequest>,
        ) -> Result<Response<pb::RequestRefitResponse>, Status> {
            Err(Status::unimplemented("test"))
        }
        async fn check_holdout(
            &self,
            _: Request<pb::CheckHoldoutRequest>,
        ) -> Result<Response<pb::CheckHoldoutResponse>, Status> {
            Err(Status::unimplemented("test"))
        }
    }

    async fn server(delay: Duration) -> (GrpcServer, Arc<Notify>) {
        let started = Arc::new(Notify::new());
        let server = GrpcServer::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .reflecting(churnguard_proto::FILE_DESCRIPTOR_SET)
            .add_service(ChurnScoringServer::new(Slow {
                delay,
                started: started.clone(),
            }));
        (server, started)
    }

    async fn channel(running: &Running<ServeError>) -> Channel {
        Channel::from_shared(running.endpoint())
            .expect("endpoint")
            .connect()
            .await
            .expect("connect")
    }

    async fn status_over(channel: &Channel, service: &str) -> Option<i32> {
        HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .ok()
            .map(|r| r.into_inner().status)
    }

    /// What `health` says for `service`, asked in process (the server may be gone).
    async fn status_of(health: &HealthReporter, service: &str) -> i32 {
        HealthService::from_health_reporter(health.clone())
            .check(Request::new(HealthCheckRequest {
                service: service.into(),
            }))
            .await
            .expect("known")
            .into_inner()
            .status
    }

    const SERVING: i32 = health_check_response::ServingStatus::Serving as i32;
    const NOT_SERVING: i32 = health_check_response::ServingStatus::NotServing as i32;

    #[tokio::test(flavor = "multi_thread")]
    async fn health_says_serving_while_it_serves_and_not_serving_once_stopped() {
        let (server, _) = server(Duration::ZERO).await;
        let health = server.health();
        let running = server.spawn::<ServeError>();
        assert_ne!(running.local_addr().port(), 0, "a free port was picked");
        let channel = channel(&running).await;
        for service in ["", SCORING] {
            assert_eq!(
                status_over(&channel, service).await,
                Some(SERVING),
                "{service:?}"
            );
        }
        let answer = ChurnScoringClient::new(channel)
            .get_model(pb::GetModelRequest {})
            .await
            .expect("the service answers");
        assert_eq!(answer.into_inner().version, 7);

        running.stop().await.expect("a clean stop");
        for service in ["", SCORING] {
            assert_eq!(
                status_of(&health, service).await,
                NOT_SERVING,
                "{service:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn health_follows_the_probe() {
        let up = Arc::new(AtomicBool::new(true));
        let probed = up.clone();
        let (server, _) = server(Duration::ZERO).await;
        let running = server
            .with_health_probe("the flag", Duration::from_millis(50), move || {
                let ok = probed.load(Ordering::SeqCst);
                async move { if ok { Ok(()) } else { Err("down") } }
            })
            .spawn::<ServeError>();
        let channel = channel(&running).await;
        for (flag, want) in [(true, SERVING), (false, NOT_SERVING), (true, SERVING)] {
            up.store(flag, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let now = (
                    status_over(&channel, "").await,
                    status_over(&channel, SCORING).await,
                );
                if now == (Some(want), Some(want)) {
                    break;
                }
                assert!(Instant::now() < deadline, "health {now:?}, wanted {want}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        running.stop().await.expect("a clean stop");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn reflection_v1_lists_what_the_server_serves_and_v1alpha_describes_it() {
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::v1alpha;

        let (server, _) = server(Duration::ZERO).await;
        let running = server.spawn::<ServeError>();
        let channel = channel(&running).await;
        let answer = ServerReflectionClient::new(channel.clone())
            .server_reflection_info(tokio_stream::iter([ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            }]))
            .await
            .expect("reflection")
            .into_inner()
            .message()
            .await
            .expect("answer")
            .expect("one");
        let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
            panic!("unexpected answer {:?}", answer.message_response);
        };
        let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        names.sort();
        assert_eq!(
            names,
            [
                SCORING,
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            ],
            "the services served, not every one in the descriptor set"
        );

        let answer = v1alpha::server_reflection_client::ServerReflectionClient::new(channel)
            .server_reflection_info(tokio_stream::iter([v1alpha::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(
                    v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                        SCORING.into(),
                    ),
                ),
            }]))
            .await
            .expect("v1alpha reflection")
            .into_inner()
            .message()
            .await
            .expect("answer")
            .expect("one");
        assert!(
            matches!(
                answer.message_response,
                Some(
                    v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_)
                )
            ),
            "{:?}",
            answer.message_response
        );
        running.stop().await.expect("a clean stop");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_graceful_stop_lets_a_call_in_flight_finish_and_cancels_streams() {
        let (server, started) = server(Duration::from_millis(600)).await;
        let streams = CancellationToken::new();
        let running = server
            .with_shutdown_grace(Duration::from_secs(10))
            .cancel_on_shutdown(streams.clone())
            .spawn::<ServeError>();
        let mut client = ChurnScoringClient::new(channel(&running).await);
        let call = tokio::spawn(async move { client.get_model(pb::GetModelRequest {}).await });
        started.notified().await;

        let asked = Instant::now();
        running.stop().await.expect("a clean stop");
        assert!(streams.is_cancelled(), "streams are told to end");
        let answer = call
            .await
            .expect("task")
            .expect("the call in flight finishes");
        assert_eq!(answer.into_inner().version, 7);
        let took = asked.elapsed();
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_secs(5),
            "the stop waited for the call, no longer: {took:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_stop_waits_no_longer_than_the_grace_period() {
        let (server, started) = server(Duration::from_secs(60)).await;
        let health = server.health();
        let running = server
            .with_shutdown_grace(Duration::from_millis(300))
            .spawn::<ServeError>();
        let mut client = ChurnScoringClient::new(channel(&running).await);
        let call = tokio::spawn(async move { client.get_model(pb::GetModelRequest {}).await });
        started.notified().await;

        let asked = Instant::now();
        running
            .stop()
            .await
            .expect("a stop past the grace is still clean");
        let took = asked.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(5),
            "{took:?}"
        );
        let outcome = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .expect("the call does not outlive the server")
            .expect("task");
        assert!(outcome.is_err(), "a call cut off by the grace period fails");
        assert_eq!(status_of(&health, SCORING).await, NOT_SERVING);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn run_until_returns_what_is_left_of_the_grace_period() {
        let (server, _) = server(Duration::ZERO).await;
        let stopped = server
            .with_shutdown_grace(Duration::from_secs(10))
            .run_until(std::future::ready(()))
            .await
            .expect("stops");
        assert!(
            stopped.grace_left > Duration::from_secs(8)
                && stopped.grace_left <= Duration::from_secs(10),
            "{stopped:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_layer_wraps_every_call() {
        use tonic::service::InterceptorLayer;

        fn needs_a_key(request: Request<()>) -> Result<Request<()>, Status> {
            match request.metadata().get("x-key") {
                Some(v) if v == "let-me-in" => Ok(request),
                _ => Err(Status::unauthenticated("no key")),
            }
        }
        let (server, _) = server(Duration::ZERO).await;
        let running = server
            .with_layer(|routes| routes.layer(InterceptorLayer::new(needs_a_key)))
            .spawn::<ServeError>();
        let channel = channel(&running).await;
        let mut client = ChurnScoringClient::new(channel.clone());
        let refused = client
            .get_model(pb::GetModelRequest {})
            .await
            .expect_err("no key");
        assert_eq!(refused.code(), Code::Unauthenticated);
        assert_eq!(
            status_over(&channel, "").await,
            None,
            "health goes through it too"
        );
        let mut request = Request::new(pb::GetModelRequest {});
        request
            .metadata_mut()
            .insert("x-key", "let-me-in".parse().expect("value"));
        assert_eq!(
            client
                .get_model(request)
                .await
                .expect("let in")
                .into_inner()
                .version,
            7
        );
        running.stop().await.expect("a clean stop");
    }

    /// Nagle's algorithm would hold a small answer until the client's next packet or
    /// its delayed ACK: a stream's acknowledgement came a message interval late.
    #[tokio::test]
    async fn accepted_connections_send_small_writes_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (io, _) = listener.accept().await.expect("accept");
        assert!(!io.nodelay().expect("read"), "Nagle is on by default");
        let accepted = Cuttable::new(io, CancellationToken::new());
        assert!(accepted.io.nodelay().expect("read"), "TCP_NODELAY set");
    }

    #[tokio::test]
    async fn a_taken_address_is_named() {
        let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = taken.local_addr().expect("addr").to_string();
        let e = GrpcServer::bind(&addr).await.expect_err("taken");
        assert!(e.to_string().contains(&addr), "{e}");
    }
}
