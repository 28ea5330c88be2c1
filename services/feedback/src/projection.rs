//! The complaints read model in Redis, projected from `feedback.events.v1`.
//!
//! Per complaint, one hash `fc:{p<partition>}:<complaint>`:
//! - `v`: the version (events applied), `c`: the complaint as JSON (contact details only
//!   as the vault's ciphertext);
//! - `w:<base version>`: the id of the commit accepted on that version, so a writer learns
//!   whether its commit or a concurrent one won;
//! - `k:<idempotency key>`: the version after the commit that used the key.
//!
//! A partition's records are applied in log order, in Rust, from fields read after the
//! partition's checkpoint, and written by `commit.lua` only if the checkpoint has not
//! moved: so any number of processes may project the same partition (the writer of a
//! command projects up to its own record), and each record takes effect once. A commit is
//! accepted when the complaint is still at its base version and its idempotency key is
//! new; otherwise it is rejected, the same way on every replay.
//!
//! With an SLA policy ([`Projection::with_sla`]), the same step keeps the partition's
//! deadline index `fd:{p<partition>}`: a sorted set of complaint → the epoch second of its
//! next SLA alarm ([`crate::sla_clock::next_alarm`]), removed when it has none (resolved,
//! waiting on the customer, everything fired). It is a function of the complaint's state
//! alone, so replaying the log rebuilds it identically.
//!
//! Always, the same step keeps the partition's list index `fl:{p<partition>}`, which
//! ListComplaints filters and orders by without loading complaints: a hash of complaint →
//! `<filed_ms> <level> <status> <breached 0|1> <store>` ([`ListEntry`]; level and status
//! as their domain words, the store last so it may hold anything). The value is a function
//! of the complaint's state alone and is overwritten on every accepted change, so it is
//! exact as complaints move and a replay rebuilds it identically. Reading it is one HGETALL
//! per partition (O(complaints) small strings, no complaint JSON).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use churnguard_domain::feedback::Level;
use churnguard_domain::feedback::complaint::{Complaint, ComplaintStatus, apply};
use churnguard_domain::feedback::sla::{Directory, SlaPolicy};
use churnguard_domain::ids::ComplaintId;
use churnguard_domain::partition_for_key;
use churnguard_eventlog::{EventLog, Record};
use churnguard_redis::{RedisConnection, StoreError, checkpoint_key, load_checkpoint};

use crate::CONSUMER;
use crate::error::FeedbackError;
use crate::journal::Commit;
use crate::sla_clock;

/// The hash of a complaint.
pub fn complaint_key(partition: u32, complaint: &str) -> String {
    format!("fc:{{p{partition}}}:{complaint}")
}

/// The deadline index of a partition.
pub fn deadline_key(partition: u32) -> String {
    format!("fd:{{p{partition}}}")
}

/// The list index of a partition.
pub fn list_key(partition: u32) -> String {
    format!("fl:{{p{partition}}}")
}

const STATUSES: &[ComplaintStatus] = &[
    ComplaintStatus::Open,
    ComplaintStatus::Acknowledged,
    ComplaintStatus::WaitingOnCustomer,
    ComplaintStatus::Resolved,
];

/// What the list index holds of a complaint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub complaint_id: String,
    pub filed_ms: i64,
    pub level: Level,
    pub status: ComplaintStatus,
    pub breached: bool,
    pub store_id: String,
}

impl ListEntry {
    pub fn of(c: &Complaint) -> Self {
        Self {
            complaint_id: c.id.as_str().to_owned(),
            filed_ms: c.filed_at.timestamp_millis(),
            level: c.level,
            status: c.status,
            breached: c.is_breached(),
            store_id: c.store_id.as_str().to_owned(),
        }
    }

    /// The index value (the complaint id is the field).
    pub fn encode(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.filed_ms,
            self.level.as_str(),
            self.status.as_str(),
            u8::from(self.breached),
            self.store_id
        )
    }

    pub fn decode(complaint_id: &str, value: &str) -> Option<Self> {
        let mut parts = value.splitn(5, ' ');
        let filed_ms = parts.next()?.parse().ok()?;
        let level = parts.next()?;
        let level = *Level::ALL.iter().find(|l| l.as_str() == level)?;
        let status = parts.next()?;
        let status = *STATUSES.iter().find(|s| s.as_str() == status)?;
        let breached = match parts.next()? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        let store_id = parts.next()?.to_owned();
        Some(Self {
            complaint_id: complaint_id.to_owned(),
            filed_ms,
            level,
            status,
            breached,
            store_id,
        })
    }
}

/// The SLA configuration the deadline index is computed with.
#[derive(Debug, Clone)]
pub struct Sla {
    pub policy: SlaPolicy,
    pub directory: Directory,
}

/// What one projected batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Projected {
    pub accepted: u64,
    /// Commits decided on a version the complaint had left, or retried with a used key.
    pub rejected: u64,
    /// Records that are not a commit this service reads (skipped, logged).
    pub unreadable: u64,
    pub checkpoint: u64,
}

/// The acceptance rule, the one place it is written: a commit takes effect when the
/// complaint is still at the commit's base version (`version`: 0 when it does not exist),
/// its idempotency key (if any) has not been used (`key_used`), and it changes something.
/// The projection applies it in log order, [`crate::Complaints::history`] re-applies it
/// when reading the log back; the escalation watch ([`crate::watch`]) reads its outcome
/// from the read model instead (`w:<base version>`), as it starts mid-partition.
pub fn accepts(commit: &Commit, version: u64, key_used: bool) -> bool {
    !key_used && commit.base_version == version && !commit.events.is_empty()
}

/// A complaint as the read model holds it.
#[derive(Debug, Clone, PartialEq)]
struct Current {
    state: Option<Complaint>,
    keys: HashMap<String, Option<u64>>,
    changed: Vec<(String, String)>,
}

#[derive(Clone)]
pub struct Projection {
    conn: RedisConnection,
    commit: redis::Script,
    topic: String,
    partitions: u32,
    sla: Option<Arc<Sla>>,
}

impl std::fmt::Debug for Projection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projection")
            .field("topic", &self.topic)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl Projection {
    pub fn new(conn: RedisConnection, topic: &str, partitions: u32) -> Self {
        Self {
            conn,
            commit: redis::Script::new(include_str!("commit.lua")),
            topic: topic.to_owned(),
            partitions,
            sla: None,
        }
    }

    /// Keeps the deadline index with this SLA policy and directory. Without, the
    /// projection keeps no index (and no timer can run on it).
    pub fn with_sla(mut self, policy: SlaPolicy, directory: Directory) -> Self {
        self.sla = Some(Arc::new(Sla { policy, directory }));
        self
    }

    pub fn sla(&self) -> Option<&Sla> {
        self.sla.as_deref()
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The partition a complaint's records go to.
    pub fn partition_of(&self, complaint: &ComplaintId) -> u32 {
        partition_for_key(complaint.as_str().as_bytes(), self.partitions)
    }

    pub async fn checkpoint(&self, partition: u32) -> Result<u64, FeedbackError> {
        load_checkpoint(&self.conn, CONSUMER, &self.topic, partition)
            .await
            .map(|c| c.unwrap_or(0))
            .map_err(|e| match e {
                StoreError::Command { source, .. } | StoreError::Connect(source) => {
                    FeedbackError::Redis {
                        command: "GET checkpoint",
                        source,
                    }
                }
                StoreError::Corrupt(v) => FeedbackError::Corrupt(format!("checkpoint {v:?}")),
            })
    }

    /// Applies one partition's records read from offset `from`, ending at `next`.
    pub async fn project(
        &self,
        partition: u32,
        from: u64,
        records: &[Record],
        next: u64,
    ) -> Result<Projected, FeedbackError> {
        let mut commits = Vec::with_capacity(records.len());
        let mut unreadable = 0;
        for r in records {
            match Commit::decode(&r.payload) {
                Ok(c) => commits.push((r.offset, c)),
                Err(e) => {
                    unreadable += 1;
                    tracing::warn!(partition, offset = r.offset, error = %e, "not a complaint commit: skipped");
                }
            }
        }
        // Read the checkpoint, then each complaint's version, state and the keys used.
        let mut order: Vec<&str> = Vec::new();
        let mut keys_of: HashMap<&str, Vec<String>> = HashMap::new();
        for (_, c) in &commits {
            let id = c.complaint_id.as_str();
            let fields = keys_of.entry(id).or_insert_with(|| {
                order.push(id);
                Vec::new()
            });
            if let Some(k) = &c.idempotency_key {
                fields.push(format!("k:{k}"));
            }
        }
        let mut conn = self.conn.clone();
        let checkpoint_key = checkpoint_key(CONSUMER, &self.topic, partition);
        let mut read = redis::pipe();
        read.cmd("GET").arg(&checkpoint_key);
        for id in &order {
            read.cmd("HMGET")
                .arg(complaint_key(partition, id))
                .arg("c")
                .arg(&keys_of[id]);
        }
        let replies: Vec<redis::Value> = read
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("HMGET complaints"))?;
        let mut replies = replies.into_iter();
        let checkpoint: Option<u64> = replies
            .next()
            .map(redis::from_redis_value)
            .transpose()
            .map_err(|e| FeedbackError::Corrupt(format!("checkpoint: {e}")))?
            .flatten();
        let checkpoint = checkpoint.unwrap_or(0);
        let unchanged = Projected {
            checkpoint,
            ..Projected::default()
        };
        if checkpoint < from || checkpoint >= next {
            return Ok(unchanged);
        }
        let mut current: HashMap<&str, Current> = HashMap::new();
        for (id, values) in order.iter().zip(replies) {
            let mut values: Vec<Option<String>> = redis::from_redis_value(values)
                .map_err(|e| FeedbackError::Corrupt(format!("{id}: {e}")))?;
            let state = match values.first_mut().and_then(Option::take) {
                Some(json) => Some(
                    serde_json::from_str::<Complaint>(&json)
                        .map_err(|e| FeedbackError::Corrupt(format!("{id} field c: {e}")))?,
                ),
                None => None,
            };
            let mut keys = HashMap::new();
            for (field, value) in keys_of[id].iter().zip(values.into_iter().skip(1)) {
                let version = match value {
                    Some(v) => Some(
                        v.parse()
                            .map_err(|_| FeedbackError::Corrupt(format!("{id} field {field}")))?,
                    ),
                    None => None,
                };
                keys.insert(field.clone(), version);
            }
            current.insert(
                id,
                Current {
                    state,
                    keys,
                    changed: Vec::new(),
                },
            );
        }

        let mut outcome = Projected {
            unreadable,
            ..Projected::default()
        };
        for (offset, c) in commits.iter().filter(|(o, _)| *o >= checkpoint) {
            let Some(cur) = current.get_mut(c.complaint_id.as_str()) else {
                continue;
            };
            let version = cur.state.as_ref().map_or(0, |s| s.version);
            let key_field = c.idempotency_key.as_ref().map(|k| format!("k:{k}"));
            let key_used = key_field
                .as_ref()
                .is_some_and(|f| cur.keys.get(f).is_some_and(Option::is_some));
            if !accepts(c, version, key_used) {
                outcome.rejected += 1;
                tracing::debug!(partition, offset, complaint = %c.complaint_id.as_str(), base = c.base_version, version, key_used, "commit rejected");
                continue;
            }
            let mut state = cur.state.take();
            for e in &c.events {
                state = apply(state, e);
            }
            let after = state.as_ref().map_or(0, |s| s.version);
            cur.state = state;
            cur.changed
                .push((format!("w:{}", c.base_version), c.commit_id.clone()));
            if let Some(f) = key_field {
                cur.changed.push((f.clone(), after.to_string()));
                cur.keys.insert(f, Some(after));
            }
            outcome.accepted += 1;
        }

        let mut commit = self.commit.prepare_invoke();
        commit
            .key(&checkpoint_key)
            .key(deadline_key(partition))
            .key(list_key(partition))
            .arg(checkpoint)
            .arg(next)
            .arg(u8::from(self.sla.is_some()));
        for id in &order {
            let cur = &current[id];
            if cur.changed.is_empty() {
                continue;
            }
            let Some(state) = &cur.state else { continue };
            let mut set = vec![
                "v".to_owned(),
                state.version.to_string(),
                "c".to_owned(),
                serde_json::to_string(state)
                    .map_err(|e| FeedbackError::Corrupt(format!("{id}: {e}")))?,
            ];
            for (f, v) in &cur.changed {
                set.push(f.clone());
                set.push(v.clone());
            }
            let due = self
                .sla
                .as_ref()
                .and_then(|sla| sla_clock::next_alarm(state, &sla.policy, &sla.directory))
                .map_or_else(String::new, |a| a.due_at.timestamp().to_string());
            commit
                .key(complaint_key(partition, id))
                .arg(set.len())
                .arg(set)
                .arg(*id)
                .arg(due)
                .arg(ListEntry::of(state).encode());
        }
        let (written, checkpoint): (u8, u64) = commit
            .invoke_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("EVALSHA commit"))?;
        if written == 0 {
            return Ok(Projected {
                checkpoint,
                ..Projected::default()
            });
        }
        outcome.checkpoint = checkpoint;
        Ok(outcome)
    }

    /// Projects `partition` until its checkpoint passes `until` (or, with `None`, reaches
    /// the partition's end). Safe to run from any number of processes at once.
    pub async fn catch_up<L: EventLog>(
        &self,
        log: &L,
        partition: u32,
        until: Option<u64>,
    ) -> Result<u64, FeedbackError> {
        let end = match until {
            Some(u) => u,
            None => log.end_offset(&self.topic, partition).await?,
        };
        let mut from = self.checkpoint(partition).await?;
        while from < end {
            let records = log
                .read(
                    &self.topic,
                    partition,
                    from,
                    500,
                    Duration::from_millis(200),
                )
                .await?;
            let Some(last) = records.last() else { continue };
            if records[0].offset != from {
                return Err(FeedbackError::Log(
                    churnguard_eventlog::LogError::Unavailable(format!(
                        "partition {partition}: asked for offset {from}, got {}",
                        records[0].offset
                    )),
                ));
            }
            let next = last.offset + 1;
            from = self
                .project(partition, from, &records, next)
                .await?
                .checkpoint;
        }
        Ok(from)
    }

    /// A complaint as the read model has it.
    pub async fn load(&self, complaint: &ComplaintId) -> Result<Option<Complaint>, FeedbackError> {
        let mut conn = self.conn.clone();
        let key = complaint_key(self.partition_of(complaint), complaint.as_str());
        let json: Option<String> = redis::cmd("HGET")
            .arg(&key)
            .arg("c")
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("HGET complaint"))?;
        json.map(|j| {
            serde_json::from_str(&j).map_err(|e| FeedbackError::Corrupt(format!("{key}: {e}")))
        })
        .transpose()
    }

    /// The complaints of `partition` whose next alarm is due at or before `now_secs`
    /// (epoch seconds), earliest first.
    pub async fn due(&self, partition: u32, now_secs: i64) -> Result<Vec<String>, FeedbackError> {
        let mut conn = self.conn.clone();
        redis::cmd("ZRANGE")
            .arg(deadline_key(partition))
            .arg("-inf")
            .arg(now_secs)
            .arg("BYSCORE")
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("ZRANGE deadlines"))
    }

    /// The whole deadline index of `partition`: complaint and epoch second, earliest first.
    pub async fn deadlines(&self, partition: u32) -> Result<Vec<(String, i64)>, FeedbackError> {
        let mut conn = self.conn.clone();
        redis::cmd("ZRANGE")
            .arg(deadline_key(partition))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("ZRANGE deadlines"))
    }

    /// The list index of `partition`, in no particular order.
    pub async fn listed(&self, partition: u32) -> Result<Vec<ListEntry>, FeedbackError> {
        let mut conn = self.conn.clone();
        let key = list_key(partition);
        let raw: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("HGETALL list index"))?;
        raw.iter()
            .map(|(id, v)| {
                ListEntry::decode(id, v)
                    .ok_or_else(|| FeedbackError::Corrupt(format!("{key} field {id}")))
            })
            .collect()
    }

    /// Several complaints as the read model has them, in the order asked (`None` where
    /// the read model has none).
    pub async fn load_many(
        &self,
        complaints: &[ComplaintId],
    ) -> Result<Vec<Option<Complaint>>, FeedbackError> {
        if complaints.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for c in complaints {
            pipe.cmd("HGET")
                .arg(complaint_key(self.partition_of(c), c.as_str()))
                .arg("c");
        }
        let raw: Vec<Option<String>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("HGET complaints"))?;
        raw.into_iter()
            .zip(complaints)
            .map(|(json, c)| {
                json.map(|j| {
                    serde_json::from_str(&j)
                        .map_err(|e| FeedbackError::Corrupt(format!("{}: {e}", c.as_str())))
                })
                .transpose()
            })
            .collect()
    }

    /// The commit accepted on `base_version`, and the version a key was used for.
    pub async fn outcome(
        &self,
        complaint: &ComplaintId,
        base_version: u64,
        key: Option<&str>,
    ) -> Result<(Option<String>, Option<u64>), FeedbackError> {
        let mut conn = self.conn.clone();
        let hash = complaint_key(self.partition_of(complaint), complaint.as_str());
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(&hash).arg(format!("w:{base_version}"));
        cmd.arg(format!("k:{}", key.unwrap_or("")));
        let (winner, version): (Option<String>, Option<u64>) = cmd
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("HMGET outcome"))?;
        Ok((winner, key.and(version)))
    }
}
