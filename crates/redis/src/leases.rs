//! Partition leases: each member of a consumer group says, every few seconds, which of the
//! group's partitions it works on, with a time to live. A partition whose lease has run
//! out has no member working on it: the member that owned it is gone and the broker has
//! not handed it on. The runtime's partition workers (`churnguard-runtime`) read the
//! leases to notice that and join the group again (Tansu 0.6 leaves a killed member's
//! partitions unowned; see `services/feedback/tests/replicas.rs`).
//!
//! A lease is only a hint for liveness, never a lock: the broker's assignment decides who
//! works on what, and losing every lease (a Redis restart) costs at most a needless rejoin.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::{RedisConnection, StoreError};

/// Where members of consumer groups keep their partition leases.
pub trait PartitionLeases: Send + Sync + 'static {
    /// `member` holds `partitions` of `group` for `ttl` from now (renewing them).
    fn hold(
        &self,
        group: &str,
        member: &str,
        partitions: &[u32],
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Which of the partitions `0..partitions` of `group` some member holds now.
    fn held(
        &self,
        group: &str,
        partitions: u32,
    ) -> impl Future<Output = Result<BTreeSet<u32>, StoreError>> + Send;
}

/// The key of a partition's lease. The group is the Redis Cluster hash tag, so one MGET
/// reads all of a group's leases.
pub fn lease_key(group: &str, partition: u32) -> String {
    format!("lease:{{{group}}}:{partition}")
}

/// Leases in Redis: a key per partition, its value the member, expiring after the TTL.
#[derive(Clone)]
pub struct RedisLeases {
    conn: RedisConnection,
}

impl std::fmt::Debug for RedisLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLeases").finish_non_exhaustive()
    }
}

impl RedisLeases {
    /// Leases on an open connection.
    pub fn new(conn: RedisConnection) -> Self {
        Self { conn }
    }
}

impl PartitionLeases for RedisLeases {
    async fn hold(
        &self,
        group: &str,
        member: &str,
        partitions: &[u32],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        if partitions.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        for p in partitions {
            pipe.cmd("SET")
                .arg(lease_key(group, *p))
                .arg(member)
                .arg("PX")
                .arg(ms)
                .ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|source| StoreError::Command {
                command: "SET lease",
                source,
            })
    }

    async fn held(&self, group: &str, partitions: u32) -> Result<BTreeSet<u32>, StoreError> {
        if partitions == 0 {
            return Ok(BTreeSet::new());
        }
        let keys: Vec<String> = (0..partitions).map(|p| lease_key(group, p)).collect();
        let mut conn = self.conn.clone();
        let holders: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .map_err(|source| StoreError::Command {
                command: "MGET leases",
                source,
            })?;
        Ok((0..partitions)
            .zip(holders)
            .filter_map(|(p, holder)| holder.map(|_| p))
            .collect())
    }
}

/// Leases in memory, for tests and the single-process mode.
#[derive(Debug, Default)]
pub struct MemoryLeases {
    leases: Mutex<HashMap<(String, u32), Instant>>,
}

impl PartitionLeases for MemoryLeases {
    async fn hold(
        &self,
        group: &str,
        _member: &str,
        partitions: &[u32],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let until = Instant::now() + ttl;
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        for p in partitions {
            leases.insert((group.to_owned(), *p), until);
        }
        Ok(())
    }

    async fn held(&self, group: &str, partitions: u32) -> Result<BTreeSet<u32>, StoreError> {
        let now = Instant::now();
        let leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        Ok((0..partitions)
            .filter(|p| {
                leases
                    .get(&(group.to_owned(), *p))
                    .is_some_and(|until| *until > now)
            })
            .collect())
    }
}

/// The contract both implementations pass.
pub mod contract {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::PartitionLeases;

    pub async fn run_all<S: PartitionLeases>(leases: &S) {
        let long = Duration::from_secs(30);
        assert!(
            leases.held("g", 4).await.expect("held").is_empty(),
            "nothing held yet"
        );
        leases.hold("g", "a", &[0, 2], long).await.expect("hold");
        leases.hold("g", "b", &[1], long).await.expect("hold");
        leases
            .hold("g", "b", &[], long)
            .await
            .expect("holding none");
        assert_eq!(
            leases.held("g", 4).await.expect("held"),
            BTreeSet::from([0, 1, 2])
        );
        assert!(
            leases.held("other", 4).await.expect("held").is_empty(),
            "groups are apart"
        );
        assert_eq!(
            leases.held("g", 2).await.expect("held"),
            BTreeSet::from([0, 1]),
            "only the partitions asked about"
        );

        // A lease not renewed runs out; one renewed stays.
        let short = Duration::from_millis(300);
        leases.hold("h", "a", &[0, 1], short).await.expect("hold");
        tokio::time::sleep(Duration::from_millis(150)).await;
        leases.hold("h", "a", &[1], short).await.expect("renew");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(
            leases.held("h", 2).await.expect("held"),
            BTreeSet::from([1]),
            "partition 0 ran out, 1 was renewed"
        );
        // Another member renews a partition: it is held again.
        leases.hold("h", "b", &[0], long).await.expect("hold");
        assert_eq!(
            leases.held("h", 2).await.expect("held"),
            BTreeSet::from([0, 1])
        );
    }
}
