//! The event-log backend a service binary runs on, chosen by its settings in one place.

use std::future::Future;
use std::path::PathBuf;

use churnguard_config::{Backend, LogSettings};
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_eventlog::{EventLog, LogError};
use churnguard_kafka::KafkaLog;

/// What a binary runs once its event log is open, on whichever backend that is.
pub trait OnLog {
    type Output;

    fn run<L: EventLog>(self, log: L) -> impl Future<Output = Self::Output>;
}

/// The event log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenLogError {
    #[error("opening the embedded log at {}: {source}", dir.display())]
    Embedded {
        dir: PathBuf,
        #[source]
        source: LogError,
    },
    #[error("creating the Kafka clients: {0}")]
    Kafka(#[source] LogError),
}

/// Opens the log `settings` choose (the embedded log's directory, or Kafka clients for
/// its brokers) and runs `then` on it.
pub async fn with_log<T: OnLog>(
    settings: &LogSettings,
    then: T,
) -> Result<T::Output, OpenLogError> {
    match settings.backend {
        Backend::Embedded => {
            let dir = &settings.embedded.dir;
            let log = EmbeddedLog::open(dir).map_err(|source| OpenLogError::Embedded {
                dir: dir.clone(),
                source,
            })?;
            tracing::info!(dir = %dir.display(), "event log: embedded");
            Ok(then.run(log).await)
        }
        Backend::Kafka => {
            let log = KafkaLog::new(settings.kafka.clone()).map_err(OpenLogError::Kafka)?;
            tracing::info!(bootstrap = %settings.kafka.bootstrap_servers, "event log: kafka");
            Ok(then.run(log).await)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends nothing; answers with the partition count the log reports for a topic.
    struct Partitions;

    impl OnLog for Partitions {
        type Output = Result<u32, LogError>;

        async fn run<L: EventLog>(self, log: L) -> Self::Output {
            log.ensure_topic("t", 3).await
        }
    }

    #[tokio::test]
    async fn the_embedded_backend_opens_its_directory_and_runs_the_callback() {
        let dir = tempfile::tempdir().expect("dir");
        let mut settings = LogSettings::for_client("test");
        settings.embedded.dir = dir.path().join("log");
        let n = with_log(&settings, Partitions)
            .await
            .expect("opens")
            .expect("topic");
        assert_eq!(n, 3);
        assert!(dir.path().join("log").join("t").is_dir());
    }

    #[tokio::test]
    async fn a_directory_that_cannot_be_made_is_named() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"not a directory").expect("file");
        let mut settings = LogSettings::for_client("test");
        settings.embedded.dir = file.join("log");
        let e = with_log(&settings, Partitions).await.expect_err("no dir");
        assert!(e.to_string().contains("a-file"), "{e}");
    }
}
