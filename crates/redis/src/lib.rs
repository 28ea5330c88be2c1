//! Redis holds state that replaying the event log rebuilds; Kafka is the system of record.
//!
//! This crate owns the connection and the one primitive every consumer of the log needs:
//! a per-partition checkpoint (the next offset to process) that only moves forward, so a
//! consumer that restarts, or a zombie instance that wakes up late, can never move it
//! back. Keys carry the partition as a Redis Cluster hash tag (`{p3}`), so a partition's
//! checkpoint and the state written with it live in one slot and one script can change
//! both atomically.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod connection;
pub mod guarded;
pub mod leases;
pub mod metrics;

pub use connection::RedisConnection;
pub use leases::{MemoryLeases, PartitionLeases, RedisLeases};

/// Where Redis is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://host:port/db` of a single Redis.
    pub url: String,
    /// Nodes of a Redis Cluster (`redis://host:port`); when set, `url` is not used.
    pub cluster_nodes: Vec<String>,
    /// How long one attempt to connect may take.
    pub connect_timeout_ms: u64,
    /// How long a command may wait for its answer before it fails as a timeout. Redis
    /// answers this project's commands in milliseconds; a Redis that does not answer
    /// in this time is treated as unavailable.
    pub response_timeout_ms: u64,
    /// Further attempts to reconnect (100 ms, then doubling) before a command fails.
    /// Keep it small: a caller waiting on a Redis that is down should hear UNAVAILABLE
    /// in well under a second, not after its deadline; consumers retry on their own.
    pub reconnect_attempts: usize,
    /// TLS (`rediss://` URLs and cluster nodes): the CA certificates (PEM file) that sign
    /// the server's certificate. Empty: the system's roots.
    pub tls_ca_file: String,
    /// A client certificate and its key (PEM files), for a Redis that asks for one
    /// (`tls-auth-clients yes`). Empty: none. ACL users go in the URL
    /// (`rediss://user:password@host:port/`).
    pub tls_client_cert_file: String,
    pub tls_client_key_file: String,
}

impl RedisSettings {
    /// Connects as configured: the cluster when nodes are given, else the single Redis;
    /// over TLS where the URLs say `rediss://`.
    pub async fn connect(&self) -> Result<RedisConnection, StoreError> {
        let tls = self.tls_certificates()?;
        if self.cluster_nodes.is_empty() {
            RedisConnection::single_tls(&self.url, self.timeouts(), tls).await
        } else {
            RedisConnection::cluster_tls(&self.cluster_nodes, self.timeouts(), tls).await
        }
    }

    /// The CA and client certificate the settings name, read now; `None` when they name
    /// none (plaintext, or TLS trusting the system's roots).
    fn tls_certificates(&self) -> Result<Option<redis::TlsCertificates>, StoreError> {
        let read = |key: &'static str, file: &str| -> Result<Option<Vec<u8>>, StoreError> {
            if file.is_empty() {
                return Ok(None);
            }
            std::fs::read(file).map(Some).map_err(|e| StoreError::Tls {
                key,
                message: format!("reading {file}: {e}"),
            })
        };
        let root_cert = read("redis.tls_ca_file", &self.tls_ca_file)?;
        let client_tls = match (
            read("redis.tls_client_cert_file", &self.tls_client_cert_file)?,
            read("redis.tls_client_key_file", &self.tls_client_key_file)?,
        ) {
            (Some(client_cert), Some(client_key)) => Some(redis::ClientTlsConfig {
                client_cert,
                client_key,
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(StoreError::Tls {
                    key: "redis.tls_client_key_file",
                    message: "must be set when redis.tls_client_cert_file is".into(),
                });
            }
            (None, Some(_)) => {
                return Err(StoreError::Tls {
                    key: "redis.tls_client_cert_file",
                    message: "must be set when redis.tls_client_key_file is".into(),
                });
            }
        };
        Ok(
            (root_cert.is_some() || client_tls.is_some()).then_some(redis::TlsCertificates {
                client_tls,
                root_cert,
            }),
        )
    }

    /// The timeouts and retries of a connection.
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: Duration::from_millis(self.connect_timeout_ms),
            response: Duration::from_millis(self.response_timeout_ms),
            reconnect_attempts: self.reconnect_attempts,
        }
    }
}

impl Default for RedisSettings {
    fn default() -> Self {
        let timeouts = Timeouts::default();
        Self {
            url: "redis://127.0.0.1:6379/".into(),
            cluster_nodes: Vec::new(),
            connect_timeout_ms: timeouts.connect.as_millis() as u64,
            response_timeout_ms: timeouts.response.as_millis() as u64,
            reconnect_attempts: timeouts.reconnect_attempts,
            tls_ca_file: String::new(),
            tls_client_cert_file: String::new(),
            tls_client_key_file: String::new(),
        }
    }
}

/// How long a connection waits for Redis, and how often it tries again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub response: Duration,
    pub reconnect_attempts: usize,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_millis(1_000),
            response: Duration::from_millis(5_000),
            reconnect_attempts: 2,
        }
    }
}

/// The one rule for a Redis error that passes: Redis unreachable, the connection lost
/// or refused, a command or connection timed out, the cluster moving slots or a node
/// lost, or a server loading its data or failing over (LOADING, MASTERDOWN, READONLY).
/// Retry those (or answer UNAVAILABLE); anything else is a bad command or bad data.
pub fn is_transient(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_cluster_error()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            ) | ErrorKind::ClusterConnectionNotFound
        )
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("connecting to Redis failed")]
    Connect(#[source] redis::RedisError),
    #[error("Redis command {command} failed")]
    Command {
        command: &'static str,
        #[source]
        source: redis::RedisError,
    },
    #[error("stored checkpoint is not an offset: {0:?}")]
    Corrupt(String),
    /// A TLS file that cannot be read, or half of a client certificate.
    #[error("invalid configuration at {key}: {message}")]
    Tls { key: &'static str, message: String },
}

impl StoreError {
    /// Connection trouble (retry later) rather than a bad command or bad data.
    pub fn is_retriable(&self) -> bool {
        match self {
            StoreError::Connect(_) => true,
            StoreError::Command { source, .. } => is_transient(source),
            StoreError::Corrupt(_) | StoreError::Tls { .. } => false,
        }
    }
}

/// The key of a partition's checkpoint for one consumer.
pub fn checkpoint_key(consumer: &str, topic: &str, partition: u32) -> String {
    format!("cg:{{p{partition}}}:checkpoint:{consumer}:{topic}")
}

/// Per-partition consumer checkpoints that only move forward.
pub trait CheckpointStore: Send + Sync + 'static {
    /// The next offset to process, if a checkpoint exists.
    fn load(
        &self,
        consumer: &str,
        topic: &str,
        partition: u32,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// Moves the checkpoint to `next_offset` if that is beyond the stored one, atomically.
    /// Returns the checkpoint in force afterwards.
    fn advance(
        &self,
        consumer: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Whether the store answers (health checks).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Checks and writes in one script: never moves a checkpoint backwards.
const ADVANCE: &str = r"
local raw = redis.call('GET', KEYS[1])
local current = -1
if raw then
  -- Digits only, and few enough for a Lua number to hold exactly: anything else is not
  -- a checkpoint this store wrote. Refused, never read as another offset or overwritten.
  if not string.match(raw, '^%d+$') or #raw > 15 then
    return redis.error_reply('CORRUPT stored checkpoint is not an offset: ' .. raw)
  end
  current = tonumber(raw)
end
local proposed = tonumber(ARGV[1])
if proposed > current then
  redis.call('SET', KEYS[1], ARGV[1])
  return proposed
end
return current
";

/// Checkpoints in Redis.
#[derive(Clone)]
pub struct RedisCheckpoints {
    conn: RedisConnection,
    advance: redis::Script,
}

impl std::fmt::Debug for RedisCheckpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCheckpoints").finish_non_exhaustive()
    }
}

impl RedisCheckpoints {
    /// Checkpoints on an open connection.
    pub fn new(conn: RedisConnection) -> Self {
        Self {
            conn,
            advance: redis::Script::new(ADVANCE),
        }
    }

    /// Connects to a single Redis or a cluster, as `settings` say.
    pub async fn connect(settings: &RedisSettings) -> Result<Self, StoreError> {
        Ok(Self {
            conn: settings.connect().await?,
            advance: redis::Script::new(ADVANCE),
        })
    }
}

/// A partition's checkpoint for one consumer: the next offset to process, if stored.
pub async fn load_checkpoint(
    conn: &RedisConnection,
    consumer: &str,
    topic: &str,
    partition: u32,
) -> Result<Option<u64>, StoreError> {
    let mut conn = conn.clone();
    let raw: Option<String> = redis::cmd("GET")
        .arg(checkpoint_key(consumer, topic, partition))
        .query_async(&mut conn)
        .await
        .map_err(|source| StoreError::Command {
            command: "GET",
            source,
        })?;
    raw.map(parse_checkpoint).transpose()
}

/// A stored checkpoint: a decimal offset, ASCII digits only (what this crate writes).
/// Anything else (a sign, a space, another notation, a number past `u64`) is
/// [`StoreError::Corrupt`], quoting it: never read as some other offset.
pub fn parse_checkpoint(raw: String) -> Result<u64, StoreError> {
    let digits = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
    match raw.parse() {
        Ok(offset) if digits => Ok(offset),
        _ => Err(StoreError::Corrupt(raw)),
    }
}

impl CheckpointStore for RedisCheckpoints {
    async fn load(
        &self,
        consumer: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>, StoreError> {
        load_checkpoint(&self.conn, consumer, topic, partition).await
    }

    async fn advance(
        &self,
        consumer: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let now: i64 = self
            .advance
            .key(checkpoint_key(consumer, topic, partition))
            .arg(next_offset)
            .invoke_async(&mut conn)
            .await
            .map_err(|source| StoreError::Command {
                command: "EVALSHA advance",
                source,
            })?;
        u64::try_from(now).map_err(|_| StoreError::Corrupt(now.to_string()))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.conn.ping().await
    }
}

/// Checkpoints in memory, for tests and the single-process mode.
#[derive(Debug, Default)]
pub struct MemoryCheckpoints {
    offsets: Mutex<HashMap<String, u64>>,
}

impl CheckpointStore for MemoryCheckpoints {
    async fn load(
        &self,
        consumer: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>, StoreError> {
        Ok(self
            .offsets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&checkpoint_key(consumer, topic, partition))
            .copied())
    }

    async fn advance(
        &self,
        consumer: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
    ) -> Result<u64, StoreError> {
        let mut offsets = self.offsets.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = offsets
            .entry(checkpoint_key(consumer, topic, partition))
            .or_insert(next_offset);
        *entry = (*entry).max(next_offset);
        Ok(*entry)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The contract both implementations pass.
pub mod contract {
    use super::CheckpointStore;

    pub async fn run_all<S: CheckpointStore>(store: &S) {
        assert_eq!(
            store.load("scorer", "purchases.v1", 0).await.expect("load"),
            None,
            "no checkpoint yet"
        );
        assert_eq!(
            store
                .advance("scorer", "purchases.v1", 0, 10)
                .await
                .expect("advance"),
            10
        );
        assert_eq!(
            store.load("scorer", "purchases.v1", 0).await.expect("load"),
            Some(10)
        );
        assert_eq!(
            store
                .advance("scorer", "purchases.v1", 0, 4)
                .await
                .expect("advance"),
            10,
            "a checkpoint never moves back"
        );
        assert_eq!(
            store
                .advance("scorer", "purchases.v1", 0, 11)
                .await
                .expect("advance"),
            11
        );
        assert_eq!(
            store.load("scorer", "purchases.v1", 1).await.expect("load"),
            None,
            "partitions are separate"
        );
        assert_eq!(
            store.load("other", "purchases.v1", 0).await.expect("load"),
            None,
            "consumers are separate"
        );
        store.ping().await.expect("ping");

        // Concurrent advances end at the highest offset, whatever the interleaving.
        let mut tasks = Vec::new();
        for i in 0..50u64 {
            tasks.push(store.advance("race", "t", 3, (i * 7919) % 1000));
        }
        for t in tasks {
            t.await.expect("advance");
        }
        let highest = (0..50u64).map(|i| (i * 7919) % 1000).max();
        assert_eq!(store.load("race", "t", 3).await.expect("load"), highest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_a_cluster_slot_per_partition() {
        assert_eq!(
            checkpoint_key("scorer", "purchases.v1", 3),
            "cg:{p3}:checkpoint:scorer:purchases.v1"
        );
    }
}
