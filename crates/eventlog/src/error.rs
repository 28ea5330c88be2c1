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
    /// whole: each a copy of it, but an I/O error (which cannot be copied) is reported
    /// as unavailable with its message.
    pub fn for_each_record<T>(&self, count: usize) -> Vec<Result<T, LogError>> {
        (0..count).map(|_| Err(self.copy())).collect()
    }

    fn copy(&self) -> LogError {
        match self {
            LogError::InvalidTopic(t) => LogError::InvalidTopic(t.clone()),
            LogError::UnknownTopic(t) => LogError::UnknownTopic(t.clone()),
            LogError::UnknownPartition { topic, partition } => LogError::UnknownPartition {
                topic: topic.clone(),
                partition: *partition,
            },
            LogError::RecordTooLarge { size, limit } => LogError::RecordTooLarge {
                size: *size,
                limit: *limit,
            },
            LogError::Unavailable(m) => LogError::Unavailable(m.clone()),
            LogError::TimedOut(d) => LogError::TimedOut(*d),
            LogError::Rejected(m) => LogError::Rejected(m.clone()),
            io @ LogError::Io { .. } => LogError::Unavailable(io.to_string()),
            LogError::Closed => LogError::Closed,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_failing_as_a_whole_fails_each_record_with_the_same_error() {
        let unavailable = LogError::Unavailable("fetching metadata: refused".into());
        let each: Vec<Result<(), LogError>> = unavailable.for_each_record(2);
        assert_eq!(each.len(), 2);
        for r in &each {
            let e = r.as_ref().expect_err("failed");
            assert_eq!(
                e.to_string(),
                "event log unavailable: fetching metadata: refused"
            );
        }
        let invalid = LogError::InvalidTopic("a b".into()).for_each_record::<()>(1);
        assert!(matches!(&invalid[0], Err(LogError::InvalidTopic(t)) if t == "a b"));
        assert!(!invalid[0].as_ref().expect_err("failed").is_retriable());
        let io =
            LogError::io("writing")(std::io::Error::other("disk full")).for_each_record::<()>(1);
        assert!(matches!(&io[0], Err(LogError::Unavailable(m)) if m.contains("writing")));
    }
}
