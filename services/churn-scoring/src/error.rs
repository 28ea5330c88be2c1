//! churn-scoring's one error type, and the one place it becomes a gRPC status.

use churnguard_domain::models::holdout::HoldoutError;
use churnguard_domain::{FieldViolation, Violations};
use churnguard_eventlog::LogError;
use churnguard_runtime::{ServeError, TaskFailed};
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum ScoringError {
    #[error("Redis command {command} failed")]
    Redis {
        command: &'static str,
        #[source]
        source: redis::RedisError,
    },
    #[error("the Redis adapter failed")]
    Store(#[source] churnguard_redis::StoreError),
    #[error("stored customer state is corrupt at field {0}")]
    Corrupt(String),
    #[error("the event log failed: {0}")]
    Log(#[source] LogError),
    #[error("fitting the models failed: {0}")]
    Fit(String),
    #[error("invalid request: {0}")]
    InvalidArgument(Violations),
    #[error("no customer {0}")]
    UnknownCustomer(String),
    /// The caller may not read what it asked for: `field` names what it asked.
    #[error("{field}: {message}")]
    Forbidden {
        field: &'static str,
        message: String,
    },
    #[error("no model has been fitted yet")]
    NoModel,
    #[error("refits are off in this deployment (refit_interval_secs = 0)")]
    RefitsOff,
    /// The holdout check asked for cannot be made on the log's data.
    #[error("the holdout check cannot be made: {0}")]
    CheckHoldout(#[source] HoldoutError),
    /// The purchases log no longer holds a partition's first records (deleted by the
    /// topic's retention): a holdout check on what is left would be silently wrong.
    #[error(
        "partition {partition} of the purchases log starts at offset {start}: the records before it were deleted (the topic's retention), and the holdout check needs every purchase since the first"
    )]
    HistoryDeleted { partition: u32, start: u64 },
    /// This query API was given no purchases log to read (tests that build it alone).
    #[error("this query API reads no purchases log, so it makes no holdout check")]
    NoPurchaseLog,
    #[error("churn-scoring could not start: {0}")]
    Startup(String),
    #[error("the query API's server: {0}")]
    Serve(#[from] ServeError),
    #[error("work on partition {partition} stopped: {reason}")]
    PartitionFailed { partition: u32, reason: String },
}

impl ScoringError {
    /// One bad request field.
    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        ScoringError::InvalidArgument(Violations(vec![FieldViolation::new(field, description)]))
    }

    /// Trouble that passes (a broker or Redis briefly unreachable or slow): retry.
    pub fn is_retriable(&self) -> bool {
        match self {
            ScoringError::Redis { source, .. } => churnguard_redis::is_transient(source),
            ScoringError::Log(e) => e.is_retriable(),
            ScoringError::Store(e) => e.is_retriable(),
            ScoringError::Corrupt(_)
            | ScoringError::Fit(_)
            | ScoringError::InvalidArgument(_)
            | ScoringError::UnknownCustomer(_)
            | ScoringError::Forbidden { .. }
            | ScoringError::NoModel
            | ScoringError::RefitsOff
            | ScoringError::CheckHoldout(_)
            | ScoringError::HistoryDeleted { .. }
            | ScoringError::NoPurchaseLog
            | ScoringError::Startup(_)
            | ScoringError::Serve(_)
            | ScoringError::PartitionFailed { .. } => false,
        }
    }

    /// The status a caller sees. Internal details stay in our logs, never in the status.
    pub fn status(&self) -> Status {
        match self {
            ScoringError::InvalidArgument(v) => {
                churnguard_runtime::status::invalid_argument(self.to_string(), v)
            }
            ScoringError::UnknownCustomer(_) => Status::not_found(self.to_string()),
            ScoringError::Forbidden { .. } => Status::permission_denied(self.to_string()),
            ScoringError::NoModel => Status::failed_precondition(
                "no model has been fitted yet: risk figures need a first refit",
            ),
            ScoringError::RefitsOff
            | ScoringError::CheckHoldout(_)
            | ScoringError::HistoryDeleted { .. }
            | ScoringError::NoPurchaseLog => Status::failed_precondition(self.to_string()),
            e if e.is_retriable() => Status::unavailable("customer state is unavailable: retry"),
            ScoringError::Redis { .. }
            | ScoringError::Store(_)
            | ScoringError::Corrupt(_)
            | ScoringError::Log(_)
            | ScoringError::Fit(_)
            | ScoringError::Startup(_)
            | ScoringError::Serve(_)
            | ScoringError::PartitionFailed { .. } => {
                Status::internal("the request could not be answered")
            }
        }
    }
}

impl From<TaskFailed> for ScoringError {
    fn from(e: TaskFailed) -> Self {
        ScoringError::Startup(format!("server task: {}", e.0))
    }
}
