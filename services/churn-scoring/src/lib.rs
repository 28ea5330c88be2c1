//! churn-scoring: consumes `purchases.v1` and keeps each customer's state in Redis,
//! exactly once. See ARCHITECTURE.md for the key layout.
//!
//! The parts: [`runner`] (one instance in the consumer group: per owned partition the
//! consumer loop of [`scorer`], the absence [`timers`] and the signal relay, plus the
//! scheduled [`refit`]), [`models`] (the fitted models projected from their topic),
//! [`store`] (the Redis layout and its atomic scripts), [`api`] and
//! [`query`] (the gRPC query side, with [`holdout`] reading the purchases log for
//! CheckHoldout), and [`app`], which puts them together for the binary.

pub mod api;
pub mod app;
pub mod batch;
pub mod config;
pub mod error;
pub mod holdout;
pub mod metrics;
pub mod models;
pub mod query;
pub mod refit;
pub mod runner;
pub mod scorer;
pub mod store;
pub mod timers;

pub use app::{App, Running};
pub use batch::ScoredSwipe;
pub use error::ScoringError;
pub use scorer::{PartitionStats, Scorer, dead_letter_topic};
pub use store::CustomerStore;

/// The consumer name under which checkpoints are kept.
pub const CONSUMER: &str = "churn-scoring";
