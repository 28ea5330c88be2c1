//! The one error type of the feedback service.

use churnguard_domain::Violations;
use churnguard_domain::feedback::complaint::ComplaintError;
use churnguard_eventlog::LogError;

#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    /// The aggregate refused the command (bad input, wrong status, stale version...).
    #[error(transparent)]
    Complaint(#[from] ComplaintError),
    /// Another command on the complaint was decided on the same version and came first
    /// in the log.
    #[error(
        "version conflict: the command was decided on version {expected}, the complaint is at {current}"
    )]
    Conflict { expected: u64, current: u64 },
    #[error("event log: {0}")]
    Log(#[from] LogError),
    #[error("redis {command}: {source}")]
    Redis {
        command: &'static str,
        #[source]
        source: redis::RedisError,
    },
    /// A stored value that does not parse: the read model needs a rebuild from the log.
    #[error("corrupt read model: {0}")]
    Corrupt(String),
    /// The writer's record is in the log but the projection did not reach it in time; the
    /// command may still take effect.
    #[error("the projection did not reach offset {offset} of partition {partition} in time")]
    Timeout { partition: u32, offset: u64 },
}

impl FeedbackError {
    /// The field violations, when the input was bad.
    pub fn violations(&self) -> Option<&Violations> {
        match self {
            FeedbackError::Complaint(ComplaintError::Invalid(v)) => Some(v),
            _ => None,
        }
    }

    pub(crate) fn redis(command: &'static str) -> impl FnOnce(redis::RedisError) -> Self {
        move |source| FeedbackError::Redis { command, source }
    }
}
