//! churn-scoring: consumes `purchases.v1` and keeps each customer's state in Redis,
//! exactly once. See ARCHITECTURE.md for the key layout.
//!
//! Built so far: the per-partition consumer loop, the Redis store (one atomic script per
//! batch, checkpoint included) and the dead-letter topic. Still to come (issue 3):
//! consumer-group assignment, Redis Cluster connections, absence timers, defection policy
//! and signals, the gRPC query API, periodic model refits, a binary.

pub mod config;
pub mod refit;
pub mod runner;
pub mod scorer;
pub mod store;
pub mod timers;

pub use scorer::{PartitionStats, Scorer, ScoringError, dead_letter_topic};
pub use store::{CustomerStore, ScoredSwipe};

/// The consumer name under which checkpoints are kept.
pub const CONSUMER: &str = "churn-scoring";
