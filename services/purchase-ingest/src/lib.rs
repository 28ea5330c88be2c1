//! purchase-ingest: the front door for card swipes.
//!
//! A library with a thin `main`: [`App::build`] binds the listener and prepares the
//! topic, [`App::local_addr`] tells where it listens (tests bind port 0), and
//! [`App::run_until`] serves until the shutdown future completes, then finishes
//! in-flight calls and flushes the event log ([`App::spawn`] does it on a background
//! task and returns the [`Running`] handle).

pub mod api;
pub mod app;
pub mod config;
pub mod error;
pub mod metrics;
pub mod simulator;

pub use api::{Core, IngestService};
pub use app::{App, Running};
pub use config::Settings;
pub use error::IngestError;

/// The fully-qualified gRPC service name, as health checks report it.
pub const SERVICE_NAME: &str = "churnguard.ingest.v1.PurchaseIngest";
