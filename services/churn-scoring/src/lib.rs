//! churn-scoring: consumes `purchases.v1` and keeps each customer's state in Redis,
//! exactly once. See ARCHITECTURE.md for the key layout.
//!
//! Built so far: the per-partition consumer loop, the Redis store (one atomic script per
//! batch, checkpoint included), the dead-letter topic, absence timers with the defection
//! policy and signals, model refits, and the gRPC query API ([`api`]). Still to come
//! (issue 3): consumer-group assignment, periodic refits, a binary.

pub mod api;
pub mod error;
pub mod query;
pub mod refit;
pub mod scorer;
pub mod store;
pub mod timers;

pub use error::ScoringError;
pub use scorer::{PartitionStats, Scorer, dead_letter_topic};
pub use store::{CustomerStore, ScoredSwipe};

/// The consumer name under which checkpoints are kept.
pub const CONSUMER: &str = "churn-scoring";
