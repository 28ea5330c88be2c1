//! How every churnguard service binary runs, written once.
//!
//! - [`GrpcServer`]: binds (port 0 for tests), serves the service's tonic services with
//!   gRPC health (set by the service or following a probe) and reflection v1 and
//!   v1alpha, and stops gracefully: stop accepting, let in-flight calls finish within a
//!   grace period, report NOT_SERVING. Server-wide HTTP/2 knobs are builder options, and
//!   [`GrpcServer::with_auth`] and [`GrpcServer::with_rate_limits`] guard every call, and
//!   [`GrpcServer::with_layer`] takes any other tower layer.
//! - [`admin`]: the admin HTTP endpoint ([`GrpcServer::with_admin`]): `/metrics`
//!   (Prometheus text, from the process's [`recorder`]), `/healthz`, `/readyz`; and
//!   [`grpc_metrics`], what every call of every server records; [`grpc_tracing`], the
//!   server span every call runs in;
//!   [`consumer_metrics`], what every consumer of the log records (applied, lag, dead
//!   letters, duplicates, conflicts).
//! - [`Running`]: a service (or just its server) on a background task: where it listens,
//!   `stop`, `until(signal)`. Every service's `App::spawn` returns one.
//! - [`cli`]: settings loaded or the binary exits with code 2 naming the bad key.
//! - [`with_log`]: the event-log backend the settings choose, opened once, handed to a
//!   generic callback ([`OnLog`]).
//! - [`work_on_owned_partitions`]: one task per partition a consumer group gives this
//!   replica, stopped before the partition moves: how replicas split a topic's work.
//! - [`shutdown_signal`], [`Clock`] / [`system_clock`], and [`retry`]'s one backoff.
//! - [`status`]: the gRPC statuses every service answers alike (bad fields named).
//! - [`auth`] and [`identity`]: who calls ([`GrpcServer::with_auth`]: a client
//!   certificate, a store token or a JWT), and what each caller may do; [`rate_limit`],
//!   each caller's calls per second ([`GrpcServer::with_rate_limits`]).

pub mod admin;
pub mod auth;
mod call_status;
pub mod cli;
mod clock;
pub mod consumer_metrics;
pub mod grpc_metrics;
pub mod grpc_tracing;
mod health;
pub mod identity;
mod log;
mod partitions;
pub mod rate_limit;
pub mod recorder;
pub mod retry;
mod running;
mod server;
mod shutdown;
pub mod status;

pub use clock::{Clock, system_clock};
pub use log::{OnLog, OpenLogError, with_log};
pub use partitions::{Liveness, Owned, work_on_owned_partitions};
pub use running::{Running, ShutdownSignal, TaskFailed};
pub use server::{AuthMode, GrpcServer, ServeError, Stopped};
pub use shutdown::shutdown_signal;
