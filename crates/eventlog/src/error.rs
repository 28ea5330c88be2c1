use std::time::Duration;

/// Everything that can go wrong talking to an event log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("invalid topic name {0:?}: use 1-249 characters of [A-Za-z0-9._-]")]
    InvalidTopic(String),
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    #[error("partition {partition} of topic {topic:?} does not exist")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("record of {size} bytes is larger than the limit of {limit} bytes")]
    RecordTooLarge { size: usize, limit: usize },
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    #[error("event log did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("event log rejected the write: {0}")]
    Rejected(String),
    #[error("event log I/O failed while {action}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("event log is shutting down")]
    Closed,
}

impl LogError {
    pub(crate) fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> LogError {
        let action = action.into();
        move |source| LogError::Io { action, source }
    }

    /// This error as the outcome of each of `count` records of a batch that failed as a
    /// whole: an unknown topic stays itself, anything else is reported as unavailable with
    /// its message (the error itself cannot be cloned).
    pub fn for_each_record<T>(&self, count: usize) -> Vec<Result<T, LogError>> {
        (0..count)
            .map(|_| {
                Err(match self {
                    LogError::UnknownTopic(t) => LogError::UnknownTopic(t.clone()),
                    other => LogError::Unavailable(other.to_string()),
                })
            })
            .collect()
    }

    /// Whether trying the same write again later may succeed. A retried write whose
    /// first attempt did in fact land is harmless: event ids make duplicates detectable.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            LogError::Unavailable(_)
                | LogError::TimedOut(_)
                | LogError::Io { .. }
                | LogError::Closed
        )
    }
}
