//! One connection type for a single Redis and a Redis Cluster. Every script this project
//! runs touches keys of one hash tag (one slot), so the same code runs on either.

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use std::future::Future;
use std::time::Instant;

use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use crate::{StoreError, Timeouts};

/// A reconnecting connection to a single Redis, or a connection to a cluster.
#[derive(Clone)]
pub enum RedisConnection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RedisConnection::Single(_) => "RedisConnection::Single",
            RedisConnection::Cluster(_) => "RedisConnection::Cluster",
        })
    }
}

impl RedisConnection {
    /// A single Redis at `url` (`redis://host:port/db`), with the default timeouts;
    /// reconnects by itself.
    pub async fn single(url: &str) -> Result<Self, StoreError> {
        Self::single_with(url, Timeouts::default()).await
    }

    /// A single Redis at `url`. While Redis is down, a command fails after the reconnect
    /// attempts (a fraction of a second by default) instead of waiting for it.
    pub async fn single_with(url: &str, timeouts: Timeouts) -> Result<Self, StoreError> {
        Self::single_tls(url, timeouts, None).await
    }

    /// A single Redis at `url`; for a `rediss://` URL, trusting `tls`'s CA (else the
    /// system's roots) and presenting its client certificate, if any.
    pub async fn single_tls(
        url: &str,
        timeouts: Timeouts,
        tls: Option<redis::TlsCertificates>,
    ) -> Result<Self, StoreError> {
        let client = match tls {
            Some(certs) => redis::Client::build_with_tls(url, certs),
            None => redis::Client::open(url),
        }
        .map_err(StoreError::Connect)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeouts.connect))
            .set_response_timeout(Some(timeouts.response))
            .set_number_of_retries(timeouts.reconnect_attempts)
            .set_max_delay(std::time::Duration::from_millis(500));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(StoreError::Connect)?;
        Ok(RedisConnection::Single(conn))
    }

    /// A Redis Cluster, reached through any of `nodes`, with the default timeouts.
    pub async fn cluster(nodes: &[String]) -> Result<Self, StoreError> {
        Self::cluster_with(nodes, Timeouts::default()).await
    }

    /// A Redis Cluster, reached through any of `nodes`.
    pub async fn cluster_with(nodes: &[String], timeouts: Timeouts) -> Result<Self, StoreError> {
        Self::cluster_tls(nodes, timeouts, None).await
    }

    /// A Redis Cluster, reached through any of `nodes` (`rediss://` for TLS, with `tls`
    /// as for [`RedisConnection::single_tls`]).
    pub async fn cluster_tls(
        nodes: &[String],
        timeouts: Timeouts,
        tls: Option<redis::TlsCertificates>,
    ) -> Result<Self, StoreError> {
        let mut builder = redis::cluster::ClusterClientBuilder::new(nodes.to_vec())
            .connection_timeout(timeouts.connect)
            .response_timeout(timeouts.response)
            .retries(timeouts.reconnect_attempts as u32);
        if let Some(certs) = tls {
            builder = builder.certs(certs);
        }
        let client = builder.build().map_err(StoreError::Connect)?;
        let conn = client
            .get_async_connection()
            .await
            .map_err(StoreError::Connect)?;
        Ok(RedisConnection::Cluster(conn))
    }

    /// Whether Redis answers a PING (health checks). On a cluster, the node the
    /// connection routes PING to.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|source| StoreError::Command {
                command: "PING",
                source,
            })
    }

    /// All keys matching `pattern`, where every match shares the hash tag of `tagged_key`:
    /// on a cluster, the scan goes to the master owning that slot.
    pub async fn scan_tagged(
        &self,
        tagged_key: &str,
        pattern: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.clone();
        let route = match &mut conn {
            RedisConnection::Single(_) => None,
            RedisConnection::Cluster(c) => {
                let slot: u16 = redis::cmd("CLUSTER")
                    .arg("KEYSLOT")
                    .arg(tagged_key)
                    .query_async(c)
                    .await
                    .map_err(|source| StoreError::Command {
                        command: "CLUSTER KEYSLOT",
                        source,
                    })?;
                Some(RoutingInfo::SingleNode(
                    SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master)),
                ))
            }
        };
        let mut cursor = 0u64;
        let mut out = Vec::new();
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000);
            let reply = match (&mut conn, &route) {
                (RedisConnection::Cluster(c), Some(route)) => {
                    c.route_command(scan, route.clone()).await
                }
                (c, _) => scan.query_async::<Value>(c).await,
            }
            .map_err(|source| StoreError::Command {
                command: "SCAN",
                source,
            })?;
            let (next, keys): (u64, Vec<String>) = redis::from_redis_value(reply)
                .map_err(|e| StoreError::Corrupt(format!("SCAN reply: {e}")))?;
            out.extend(keys);
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }
}

/// Every command and pipeline is timed ([`crate::metrics`]): the services see Redis's
/// latency and errors as their callers do, network included.
impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let op = command_name(cmd);
        let reply = match self {
            RedisConnection::Single(c) => c.req_packed_command(cmd),
            RedisConnection::Cluster(c) => c.req_packed_command(cmd),
        };
        Box::pin(timed(op, reply))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let replies = match self {
            RedisConnection::Single(c) => c.req_packed_commands(cmd, offset, count),
            RedisConnection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        };
        Box::pin(timed("PIPELINE".to_owned(), replies))
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(c) => c.get_db(),
            RedisConnection::Cluster(c) => c.get_db(),
        }
    }
}

/// A command's name, upper case (`EVALSHA`, `HGETALL`): the `op` label. The code issues a
/// fixed set of commands, so the label's values are few.
fn command_name(cmd: &Cmd) -> String {
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name)) => String::from_utf8_lossy(name).to_ascii_uppercase(),
        _ => "UNKNOWN".to_owned(),
    }
}

/// Runs `reply`, recording how long it took and whether it failed, under `op`.
async fn timed<T>(op: String, reply: impl Future<Output = RedisResult<T>>) -> RedisResult<T> {
    let started = Instant::now();
    let result = reply.await;
    crate::metrics::record(op, started.elapsed(), result.is_err());
    result
}
