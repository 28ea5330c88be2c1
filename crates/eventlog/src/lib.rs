//! The event log is churnguard's system of record. Services talk to it through the
//! [`EventLog`] port, which has two implementations:
//!
//! - [`embedded::EmbeddedLog`]: a local directory of append-only, checksummed files,
//!   fsync'd before a write is acknowledged (one machine, no Kafka);
//! - `churnguard_kafka::KafkaLog`: Apache Kafka or any Kafka-protocol broker.
//!
//! Both place a record on partition `murmur2(key) % partitions`, as Kafka's Java client
//! does, and both pass the same [`contract`] tests.

use std::future::Future;
use std::time::Duration;

pub mod contract;
pub mod embedded;
mod error;
pub mod group;
pub mod metrics;

pub use error::LogError;
pub use group::{AssignmentChange, Membership, Revocation};

/// A record header (`content-type`, `traceparent`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Vec<u8>,
}

impl Header {
    pub fn new(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A record to append. The partition follows from the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingRecord {
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: u32,
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub headers: Vec<Header>,
}

impl Record {
    /// The first header called `name`, if any.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.value.as_slice())
    }
}

/// Where an acknowledged record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Appended {
    pub partition: u32,
    pub offset: u64,
}

/// The port every event-log backend implements.
///
/// Durability contract: `append` reports `Ok` for a record only once the backend has
/// made it durable (fsync for the embedded log, the broker's acknowledgement with
/// `acks=all` for Kafka). Records of one partition keep the order they were given in.
pub trait EventLog: Send + Sync + 'static {
    /// Creates `topic` with `partitions` partitions unless it exists, and returns the
    /// topic's actual partition count.
    fn ensure_topic(
        &self,
        topic: &str,
        partitions: u32,
    ) -> impl Future<Output = Result<u32, LogError>> + Send;

    /// Appends `records` to `topic` and returns one result per record, in order.
    fn append(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> impl Future<Output = Vec<Result<Appended, LogError>>> + Send;

    /// Reads at most `max` records of one partition from offset `from` on, waiting up to
    /// `wait` for the first one when there is none yet. What it returns is dense: the
    /// record at `from`, then the one after it, and so on, never a gap or a repeat.
    fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Record>, LogError>> + Send;

    /// The offset of the partition's first record the log still holds: 0 unless records
    /// were deleted before it (a Kafka topic's retention; this project's topics keep
    /// everything, but a topic made some other way may not).
    fn start_offset(
        &self,
        topic: &str,
        partition: u32,
    ) -> impl Future<Output = Result<u64, LogError>> + Send;

    /// The offset the next record of the partition will get.
    fn end_offset(
        &self,
        topic: &str,
        partition: u32,
    ) -> impl Future<Output = Result<u64, LogError>> + Send;

    /// Joins consumer group `group` on `topic`: the membership says which of the topic's
    /// partitions this member works on, and hands them over cooperatively when members
    /// come and go. Leaves when the membership is dropped.
    fn join_group(
        &self,
        group: &str,
        topic: &str,
    ) -> impl Future<Output = Result<Membership, LogError>> + Send;

    /// Whether the log can take writes now (health checks).
    fn check(&self) -> impl Future<Output = Result<(), LogError>> + Send;

    /// Waits, at most `timeout`, until every write handed over so far has finished.
    fn flush(&self, timeout: Duration) -> impl Future<Output = Result<(), LogError>> + Send;
}

/// Kafka's rules for topic names, also used to name the embedded log's directories.
pub fn check_topic_name(topic: &str) -> Result<(), LogError> {
    let ok = !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(LogError::InvalidTopic(topic.to_owned()))
    }
}
