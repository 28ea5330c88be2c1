//! churn-scoring: consumes `purchases.v1` and keeps each customer's state in Redis,
//! exactly once. See ARCHITECTURE.md for the key layout.
//!
//! Built so far: the per-partition consumer loop and the Redis store (one atomic script
//! per batch, checkpoint included). Still to come (issue 3): consumer-group assignment,
//! the dead-letter topic, absence timers, defection policy and signals, the gRPC query
//! API, periodic model refits.

pub mod scorer;
pub mod store;

pub use scorer::{Scorer, ScoringError};
pub use store::{CustomerStore, ScoredSwipe};

/// The consumer name under which checkpoints are kept.
pub const CONSUMER: &str = "churn-scoring";
