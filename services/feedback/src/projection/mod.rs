//! The complaints read model in Redis, projected from `feedback.events.v1`.
//!
//! Per complaint, one hash `fc:{p<partition>}:<complaint>`:
//! - `v`: the version (events applied), `c`: the complaint as JSON (contact details only
//!   as the vault's ciphertext);
//! - `w:<base version>`: the id of the commit accepted on that version, so a writer learns
//!   whether its commit or a concurrent one won;
//! - `k:<idempotency key>`: the version after the commit that used the key;
//! - `e:<version>`: the event that made that version (JSON): the complaint's history,
//!   which GetComplaint shows without reading the log back.
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
//! `<filed_ms> <level> <status> <breached 0|1> <severity> <customer> <store>`
//! ([`ListEntry`]; level, status and severity as their domain words, the store last so it
//! may hold anything). A filing also adds the complaint to its customer's hash in the
//! partition, `fu:{p<partition>}:<customer>` (complaint → `<filed_ms> <touchpoint>`), which
//! incident histories read across partitions.
//!
//! Outreach commits (same topic, keyed by case) keep the case hash
//! `fo:{p<partition>}:<case>` (fields as a complaint's), the outreach list index
//! `fol:{p<partition>}` (case → `<due_ms> <status> <reached 0|1> <store>`, [`CaseEntry`]),
//! the customer's cases `fuo:{p<partition>}:<customer>` (case → opened ms, written by the
//! opening)
//! and, with complaint filings, the per-day defection-reason counters
//! `fr:{p<partition>}:<YYYY-MM-DD>` (`<counter> <cause> <store>` → amount, by HINCRBY),
//! whose increments come from the domain's [`outreach_contribution`] and
//! [`complaint_contribution`]. The value is a function
//! of the complaint's state alone and is overwritten on every accepted change, so it is
//! exact as complaints move and a replay rebuilds it identically. Reading it is one HGETALL
//! per partition (O(complaints) small strings, no complaint JSON).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use churnguard_domain::feedback::complaint::{Complaint, ComplaintEvent};
use churnguard_domain::feedback::outreach::{
    OutreachCase, OutreachEvent, complaint_contribution, outreach_contribution,
};
use churnguard_domain::feedback::sla::{Directory, SlaPolicy};
use churnguard_domain::ids::ComplaintId;
use churnguard_domain::partition_for_key;
use churnguard_eventlog::{EventLog, Record};
use churnguard_redis::guarded::{GuardedBatch, Read};
use churnguard_redis::{RedisConnection, load_checkpoint};
use serde::de::DeserializeOwned;

use crate::CONSUMER;
use crate::error::FeedbackError;
use crate::journal::{Commit, Committed, OutreachCommit};
use crate::metrics::PROJECTION;
use crate::sla_clock;

mod fold;
mod index;
mod keys;
mod reads;
mod reasons;

pub use fold::accepts;
use fold::{Current, current, fold, hash_fields, wanted};
pub use index::{CaseEntry, ListEntry};
pub use keys::{
    case_key, case_list_key, complaint_key, customer_cases_key, customer_complaints_key,
    deadline_key, list_key, reasons_key,
};
use reasons::Tallies;
pub use reasons::sum_reasons;

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

impl Projected {
    /// Nothing applied; read on from `checkpoint`.
    fn unchanged(checkpoint: u64) -> Self {
        Self {
            checkpoint,
            ..Self::default()
        }
    }
}

/// The acceptance rule, the one place it is written: a commit takes effect when its
/// stream (complaint or outreach case) is still at the commit's base version (`version`:
/// 0 when it does not exist), its idempotency key (if any) has not been used

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
            commit: redis::Script::new(include_str!("../commit.lua")),
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

    /// The Redis connection the read model lives on.
    pub fn connection(&self) -> &RedisConnection {
        &self.conn
    }

    /// The partition a complaint's records go to.
    pub fn partition_of(&self, complaint: &ComplaintId) -> u32 {
        self.partition_of_stream(complaint.as_str())
    }

    /// The partition a stream's records go to (the record key is the stream id).
    pub fn partition_of_stream(&self, stream: &str) -> u32 {
        partition_for_key(stream.as_bytes(), self.partitions)
    }

    pub async fn checkpoint(&self, partition: u32) -> Result<u64, FeedbackError> {
        Ok(
            load_checkpoint(&self.conn, CONSUMER, &self.topic, partition)
                .await?
                .unwrap_or(0),
        )
    }

    /// Applies one partition's records read from offset `from`, ending at `next`, by the
    /// checkpoint-guarded fold ([`churnguard_redis::guarded`]): one pipeline reads the
    /// checkpoint and the streams the commits touch, `fold` applies the commits at or
    /// after the checkpoint in log order, and `commit.lua` writes the changed streams,
    /// the indexes and the counters and moves the checkpoint, only if it has not moved.
    pub async fn project(
        &self,
        partition: u32,
        from: u64,
        records: &[Record],
        next: u64,
    ) -> Result<Projected, FeedbackError> {
        let decoded = Decoded::of(partition, records);
        let complaint_fields = wanted(&decoded.complaints);
        let case_fields = wanted(&decoded.cases);
        let batch = GuardedBatch::new(CONSUMER, &self.topic, partition, from, next);
        let read = batch
            .read(&self.conn, |pipe| {
                for (id, keys) in &complaint_fields {
                    pipe.cmd("HMGET")
                        .arg(complaint_key(partition, id))
                        .arg("c")
                        .arg(keys);
                }
                for (id, keys) in &case_fields {
                    pipe.cmd("HMGET")
                        .arg(case_key(partition, id))
                        .arg("c")
                        .arg(keys);
                }
            })
            .await?;
        let (checkpoint, mut replies) = match read {
            Read::Skip { checkpoint } => return Ok(Projected::unchanged(checkpoint)),
            Read::Fold {
                checkpoint,
                replies,
            } => (checkpoint, replies),
        };
        let mut complaints = read_streams::<Complaint>(&complaint_fields, &mut replies)?;
        let mut cases = read_streams::<OutreachCase>(&case_fields, &mut replies)?;

        let mut side = SideEffects::new(partition);
        let directory = self.sla.as_ref().map(|sla| &sla.directory);
        let (a1, r1) = fold(
            partition,
            &decoded.complaints,
            &mut complaints,
            checkpoint,
            |before, e| side.complaint_event(before, e, directory),
        );
        let (a2, r2) = fold(
            partition,
            &decoded.cases,
            &mut cases,
            checkpoint,
            |before, e| side.outreach_event(before, e),
        );

        let complaint_writes = self.complaint_writes(partition, &complaint_fields, &complaints)?;
        let case_writes = case_writes(partition, &case_fields, &cases)?;
        let keys = commit_keys(partition, &complaint_writes, &case_writes, &side);
        let mut commit = batch.commit(&self.commit, checkpoint, &keys);
        commit
            .arg(u8::from(self.sla.is_some()))
            .arg(complaint_writes.len())
            .arg(case_writes.len())
            .arg(side.tallies.0.len());
        for w in complaint_writes {
            commit
                .arg(w.set.len())
                .arg(w.set)
                .arg(w.id)
                .arg(w.due)
                .arg(w.entry);
        }
        for w in case_writes {
            commit.arg(w.set.len()).arg(w.set).arg(w.id).arg(w.entry);
        }
        side.add_to(&mut commit);
        let committed = commit.run(&self.conn).await?;
        if !committed.written {
            PROJECTION.checkpoint_conflict();
            return Ok(Projected::unchanged(committed.checkpoint));
        }
        side.counted.record();
        PROJECTION.applied(partition, records.len(), r1 + r2);
        Ok(Projected {
            accepted: a1 + a2,
            rejected: r1 + r2,
            unreadable: decoded.unreadable,
            checkpoint: committed.checkpoint,
        })
    }

    /// The hash writes of the complaints the batch changed, with each one's next SLA
    /// alarm (when the deadline index is kept) and list entry.
    fn complaint_writes(
        &self,
        partition: u32,
        order: &[(&str, Vec<String>)],
        now: &HashMap<&str, Current<Complaint>>,
    ) -> Result<Vec<StreamWrite>, FeedbackError> {
        let mut writes = Vec::new();
        for (id, _) in order {
            let cur = &now[id];
            let Some(state) = cur.state.as_ref().filter(|_| !cur.changed.is_empty()) else {
                continue;
            };
            let due = self
                .sla
                .as_ref()
                .and_then(|sla| sla_clock::next_alarm(state, &sla.policy, &sla.directory))
                .map_or_else(String::new, |a| a.due_at.timestamp().to_string());
            writes.push(StreamWrite {
                key: complaint_key(partition, id),
                set: hash_fields(id, state.version, state, &cur.changed)?,
                id: (*id).to_owned(),
                due,
                entry: ListEntry::of(state).encode(),
            });
        }
        Ok(writes)
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
}

/// A batch's records, split by the stream they commit to.
struct Decoded {
    complaints: Vec<(u64, Commit)>,
    cases: Vec<(u64, OutreachCommit)>,
    /// Records that are not a feedback commit (skipped, logged).
    unreadable: u64,
}

impl Decoded {
    fn of(partition: u32, records: &[Record]) -> Self {
        let mut out = Self {
            complaints: Vec::with_capacity(records.len()),
            cases: Vec::new(),
            unreadable: 0,
        };
        for r in records {
            match Committed::decode(&r.payload) {
                Ok(Committed::Complaint(c)) => out.complaints.push((r.offset, c)),
                Ok(Committed::Outreach(c)) => out.cases.push((r.offset, c)),
                Err(e) => {
                    out.unreadable += 1;
                    tracing::warn!(partition, offset = r.offset, error = %e, "not a feedback commit: skipped");
                }
            }
        }
        out
    }
}

/// Parses the `HMGET` replies of the streams in `order`, taking one reply each.
fn read_streams<'a, S: DeserializeOwned>(
    order: &[(&'a str, Vec<String>)],
    replies: &mut impl Iterator<Item = redis::Value>,
) -> Result<HashMap<&'a str, Current<S>>, FeedbackError> {
    let mut now = HashMap::with_capacity(order.len());
    for (id, keys) in order {
        let reply = replies
            .next()
            .ok_or_else(|| FeedbackError::Corrupt(format!("{id}: no reply")))?;
        now.insert(*id, current(id, keys, reply)?);
    }
    Ok(now)
}

/// The hash writes of the outreach cases the batch changed, with each one's list entry.
fn case_writes(
    partition: u32,
    order: &[(&str, Vec<String>)],
    now: &HashMap<&str, Current<OutreachCase>>,
) -> Result<Vec<StreamWrite>, FeedbackError> {
    let mut writes = Vec::new();
    for (id, _) in order {
        let cur = &now[id];
        let Some(state) = cur.state.as_ref().filter(|_| !cur.changed.is_empty()) else {
            continue;
        };
        writes.push(StreamWrite {
            key: case_key(partition, id),
            set: hash_fields(id, state.version, state, &cur.changed)?,
            id: (*id).to_owned(),
            due: String::new(),
            entry: CaseEntry::of(state).encode(),
        });
    }
    Ok(writes)
}

/// The keys `commit.lua` touches, in its order: the partition's deadline index and
/// lists, the changed streams' hashes, the reasons counters' days and the customers'
/// filing hashes.
fn commit_keys(
    partition: u32,
    complaints: &[StreamWrite],
    cases: &[StreamWrite],
    side: &SideEffects,
) -> Vec<String> {
    let mut keys = vec![
        deadline_key(partition),
        list_key(partition),
        case_list_key(partition),
    ];
    keys.extend(complaints.iter().map(|w| w.key.clone()));
    keys.extend(cases.iter().map(|w| w.key.clone()));
    keys.extend(
        side.tallies
            .0
            .keys()
            .map(|day| reasons_key(partition, *day)),
    );
    keys.extend(side.filings.keys().cloned());
    keys
}

/// One changed stream's write: its hash, the HSET arguments, its id, its next alarm
/// (complaints only; '' for none) and its list entry.
struct StreamWrite {
    key: String,
    set: Vec<String>,
    id: String,
    due: String,
    entry: String,
}

/// What a batch's accepted events add besides the streams themselves: the reasons
/// counters and the customers' complaint and case hashes.
struct SideEffects {
    partition: u32,
    tallies: Tallies,
    /// customer hash -> (field, value) pairs to set.
    filings: BTreeMap<String, Vec<(String, String)>>,
    /// The events' counts for the metrics, recorded once the batch is committed.
    counted: crate::metrics::Tally,
}

impl SideEffects {
    fn new(partition: u32) -> Self {
        Self {
            partition,
            tallies: Tallies::default(),
            filings: BTreeMap::new(),
            counted: crate::metrics::Tally::default(),
        }
    }

    fn complaint_event(
        &mut self,
        before: Option<&Complaint>,
        e: &ComplaintEvent,
        directory: Option<&Directory>,
    ) {
        self.tallies.add(complaint_contribution(e));
        self.counted.complaint(before, e, directory);
        if let ComplaintEvent::ComplaintFiled {
            complaint_id,
            customer,
            touchpoint,
            at,
            ..
        } = e
        {
            self.filings
                .entry(customer_complaints_key(
                    self.partition,
                    customer.key().as_str(),
                ))
                .or_default()
                .push((
                    complaint_id.as_str().to_owned(),
                    format!("{} {}", at.timestamp_millis(), touchpoint.as_str()),
                ));
        }
    }

    fn outreach_event(&mut self, before: Option<&OutreachCase>, e: &OutreachEvent) {
        self.tallies.add(outreach_contribution(before, e));
        self.counted.outreach(e);
        if let OutreachEvent::OutreachOpened {
            case_id,
            customer,
            at,
            ..
        } = e
        {
            self.filings
                .entry(customer_cases_key(self.partition, customer.as_str()))
                .or_default()
                .push((
                    case_id.as_str().to_owned(),
                    at.timestamp_millis().to_string(),
                ));
        }
    }

    /// The script's arguments for the reasons hashes, then the customers' hashes (their
    /// keys were added in the same order).
    fn add_to(&self, commit: &mut churnguard_redis::guarded::Commit<'_>) {
        for increments in self.tallies.0.values() {
            commit.arg(increments.len());
            for (field, by) in increments {
                commit.arg(field).arg(*by);
            }
        }
        for fields in self.filings.values() {
            commit.arg(fields.len());
            for (field, value) in fields {
                commit.arg(field).arg(value);
            }
        }
    }
}
