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

use chrono::NaiveDate;
use churnguard_domain::feedback::complaint::{
    Complaint, ComplaintEvent, ComplaintStatus, Incident,
};
use churnguard_domain::feedback::outreach::{
    Cause, Contribution, OutreachCase, OutreachEvent, OutreachStatus, Tally,
    complaint_contribution, outreach_contribution,
};
use churnguard_domain::feedback::sla::{Directory, SlaPolicy};
use churnguard_domain::feedback::{DefectionReason, Level, OutreachOutcome, Severity, Touchpoint};
use churnguard_domain::ids::{ComplaintId, OutreachCaseId};
use churnguard_domain::partition_for_key;
use churnguard_eventlog::{EventLog, Record};
use churnguard_redis::{RedisConnection, checkpoint_key, load_checkpoint};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::CONSUMER;
use crate::error::FeedbackError;
use crate::journal::{Commit, Committed, OutreachCommit, StreamCommit};
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

/// The hash of an outreach case.
pub fn case_key(partition: u32, case: &str) -> String {
    format!("fo:{{p{partition}}}:{case}")
}

/// The outreach list index of a partition.
pub fn case_list_key(partition: u32) -> String {
    format!("fol:{{p{partition}}}")
}

/// A customer's complaints filed to a partition: complaint → `<filed_ms> <touchpoint>`.
/// Incident histories read the customer's hash in every partition.
pub fn customer_complaints_key(partition: u32, customer: &str) -> String {
    format!("fu:{{p{partition}}}:{customer}")
}

/// A customer's outreach cases opened in a partition: case → opened time (epoch ms). The
/// outreach opener reads the customer's hash in every partition to find the case of their
/// current episode.
pub fn customer_cases_key(partition: u32, customer: &str) -> String {
    format!("fuo:{{p{partition}}}:{customer}")
}

/// The defection-reason counters of a partition for one UTC day.
pub fn reasons_key(partition: u32, day: NaiveDate) -> String {
    format!("fr:{{p{partition}}}:{day}")
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
    pub severity: Severity,
    /// The complainant's customer key (customer id or card token).
    pub customer: String,
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
            severity: c.severity,
            customer: c.customer.key().as_str().to_owned(),
            store_id: c.store_id.as_str().to_owned(),
        }
    }

    /// The index value (the complaint id is the field).
    pub fn encode(&self) -> String {
        format!(
            "{} {} {} {} {} {} {}",
            self.filed_ms,
            self.level.as_str(),
            self.status.as_str(),
            u8::from(self.breached),
            self.severity.as_str(),
            self.customer,
            self.store_id
        )
    }

    pub fn decode(complaint_id: &str, value: &str) -> Option<Self> {
        let mut parts = value.splitn(7, ' ');
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
        let severity = parts.next()?.parse().ok()?;
        let customer = parts.next()?.to_owned();
        let store_id = parts.next()?.to_owned();
        Some(Self {
            complaint_id: complaint_id.to_owned(),
            filed_ms,
            level,
            status,
            breached,
            severity,
            customer,
            store_id,
        })
    }
}

/// What the outreach list index holds of a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseEntry {
    pub case_id: String,
    pub due_ms: i64,
    pub status: OutreachStatus,
    /// Someone got through at least once (so the case is not overdue, whatever the time).
    pub reached: bool,
    pub store_id: String,
}

impl CaseEntry {
    pub fn of(c: &OutreachCase) -> Self {
        Self {
            case_id: c.id.as_str().to_owned(),
            due_ms: c.due_at.timestamp_millis(),
            status: c.status,
            reached: c
                .attempts
                .iter()
                .any(|a| a.outcome != OutreachOutcome::NotReached),
            store_id: c.home_store.as_str().to_owned(),
        }
    }

    /// Open, past its deadline at `now_ms` and nobody reached: the rule of
    /// [`OutreachCase::is_overdue`], on the index entry.
    pub fn is_overdue(&self, now_ms: i64) -> bool {
        self.status == OutreachStatus::Open && now_ms > self.due_ms && !self.reached
    }

    /// The index value (the case id is the field).
    pub fn encode(&self) -> String {
        format!(
            "{} {} {} {}",
            self.due_ms,
            self.status.as_str(),
            u8::from(self.reached),
            self.store_id
        )
    }

    pub fn decode(case_id: &str, value: &str) -> Option<Self> {
        let mut parts = value.splitn(4, ' ');
        let due_ms = parts.next()?.parse().ok()?;
        let status = match parts.next()? {
            "open" => OutreachStatus::Open,
            "closed" => OutreachStatus::Closed,
            _ => return None,
        };
        let reached = match parts.next()? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        Some(Self {
            case_id: case_id.to_owned(),
            due_ms,
            status,
            reached,
            store_id: parts.next()?.to_owned(),
        })
    }
}

/// The counters of [`Tally`], by the names the reasons hashes use.
const COUNTERS: [&str; 6] = [
    "complaints",
    "defectors",
    "lost",
    "won_back",
    "value_lost",
    "value_saved",
];

fn counters(t: &Tally) -> [i64; 6] {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    [
        n(t.complaints),
        n(t.defectors),
        n(t.lost),
        n(t.won_back),
        t.value_lost_minor,
        t.value_saved_minor,
    ]
}

fn add_counter(t: &mut Tally, counter: usize, by: i64) {
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    match counter {
        0 => t.complaints += n(by),
        1 => t.defectors += n(by),
        2 => t.lost += n(by),
        3 => t.won_back += n(by),
        4 => t.value_lost_minor += by,
        _ => t.value_saved_minor += by,
    }
}

fn encode_cause(cause: Cause) -> String {
    match cause {
        Cause::Reason(r) => format!("reason:{}", r.as_str()),
        Cause::Touchpoint(t) => format!("touchpoint:{}", t.as_str()),
    }
}

fn decode_cause(s: &str) -> Option<Cause> {
    match s.split_once(':')? {
        ("reason", r) => r.parse::<DefectionReason>().ok().map(Cause::Reason),
        ("touchpoint", t) => t.parse::<Touchpoint>().ok().map(Cause::Touchpoint),
        _ => None,
    }
}

/// A batch's increments of the reasons hashes: day → field → amount, where a field is
/// `<counter> <cause> <store>` (the store last, as in the other indexes).
#[derive(Debug, Default)]
struct Tallies(BTreeMap<NaiveDate, BTreeMap<String, i64>>);

impl Tallies {
    fn add(&mut self, c: Option<Contribution>) {
        let Some(c) = c else { return };
        let day = self.0.entry(c.day).or_default();
        let cause = encode_cause(c.cause);
        for (name, by) in COUNTERS.iter().zip(counters(&c.tally)) {
            if by != 0 {
                *day.entry(format!("{name} {cause} {}", c.store.as_str()))
                    .or_default() += by;
            }
        }
    }
}

/// Sums reasons-hash fields (`<counter> <cause> <store>` → amount) per store and cause.
pub fn sum_reasons(
    fields: impl IntoIterator<Item = (String, i64)>,
    into: &mut BTreeMap<(String, Cause), Tally>,
) -> Result<(), FeedbackError> {
    for (field, by) in fields {
        let mut parts = field.splitn(3, ' ');
        let parsed = (|| {
            let name = parts.next()?;
            let counter = COUNTERS.iter().position(|c| *c == name)?;
            let cause = decode_cause(parts.next()?)?;
            Some((counter, cause, parts.next()?.to_owned()))
        })();
        let Some((counter, cause, store)) = parsed else {
            return Err(FeedbackError::Corrupt(format!("reasons field {field:?}")));
        };
        add_counter(into.entry((store, cause)).or_default(), counter, by);
    }
    Ok(())
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

/// The acceptance rule, the one place it is written: a commit takes effect when its
/// stream (complaint or outreach case) is still at the commit's base version (`version`:
/// 0 when it does not exist), its idempotency key (if any) has not been used
/// (`key_used`), and it changes something. The projection applies it in log order,
/// [`crate::Complaints::history`] reads the events it accepted back; the escalation
/// watch ([`crate::watch`]) reads its outcome from the read model instead
/// (`w:<base version>`), as it starts mid-partition.
pub fn accepts<C: StreamCommit>(commit: &C, version: u64, key_used: bool) -> bool {
    !key_used && commit.base_version() == version && !commit.events().is_empty()
}

/// A stream (complaint or case) as the read model holds it, and what the batch changes.
#[derive(Debug, Clone, PartialEq)]
struct Current<S> {
    state: Option<S>,
    keys: HashMap<String, Option<u64>>,
    changed: Vec<(String, String)>,
}

/// The streams a batch touches, in first-seen order, with the key fields to read.
fn wanted<C: StreamCommit>(commits: &[(u64, C)]) -> Vec<(&str, Vec<String>)> {
    let mut order: Vec<(&str, Vec<String>)> = Vec::new();
    let mut at: HashMap<&str, usize> = HashMap::new();
    for (_, c) in commits {
        let i = *at.entry(c.stream()).or_insert_with(|| {
            order.push((c.stream(), Vec::new()));
            order.len() - 1
        });
        if let Some(k) = c.idempotency_key() {
            order[i].1.push(format!("k:{k}"));
        }
    }
    order
}

/// Parses one `HMGET <hash> c <key fields...>` reply.
fn current<S: DeserializeOwned>(
    id: &str,
    key_fields: &[String],
    reply: redis::Value,
) -> Result<Current<S>, FeedbackError> {
    let mut values: Vec<Option<String>> =
        redis::from_redis_value(reply).map_err(|e| FeedbackError::Corrupt(format!("{id}: {e}")))?;
    let state = match values.first_mut().and_then(Option::take) {
        Some(json) => Some(
            serde_json::from_str::<S>(&json)
                .map_err(|e| FeedbackError::Corrupt(format!("{id} field c: {e}")))?,
        ),
        None => None,
    };
    let mut keys = HashMap::new();
    for (field, value) in key_fields.iter().zip(values.into_iter().skip(1)) {
        let version = match value {
            Some(v) => Some(
                v.parse()
                    .map_err(|_| FeedbackError::Corrupt(format!("{id} field {field}")))?,
            ),
            None => None,
        };
        keys.insert(field.clone(), version);
    }
    Ok(Current {
        state,
        keys,
        changed: Vec::new(),
    })
}

/// Applies the commits at or after `checkpoint` in log order by [`accepts`], calling
/// `on_event` with the state before each applied event. Returns (accepted, rejected).
fn fold<C: StreamCommit>(
    partition: u32,
    commits: &[(u64, C)],
    current: &mut HashMap<&str, Current<C::State>>,
    checkpoint: u64,
    mut on_event: impl FnMut(Option<&C::State>, &C::Event),
) -> (u64, u64) {
    let (mut accepted, mut rejected) = (0, 0);
    for (offset, c) in commits.iter().filter(|(o, _)| *o >= checkpoint) {
        let Some(cur) = current.get_mut(c.stream()) else {
            continue;
        };
        let version = cur.state.as_ref().map_or(0, C::version);
        let key_field = c.idempotency_key().map(|k| format!("k:{k}"));
        let key_used = key_field
            .as_ref()
            .is_some_and(|f| cur.keys.get(f).is_some_and(Option::is_some));
        if !accepts(c, version, key_used) {
            rejected += 1;
            tracing::debug!(partition, offset, stream = %c.stream(), base = c.base_version(), version, key_used, "commit rejected");
            continue;
        }
        let mut state = cur.state.take();
        for (i, e) in c.events().iter().enumerate() {
            on_event(state.as_ref(), e);
            state = C::apply(state, e);
            // The stream's history, one field per event (serialising plain data cannot
            // fail).
            cur.changed.push((
                format!("e:{}", version + i as u64 + 1),
                serde_json::to_string(e).unwrap_or_default(),
            ));
        }
        let after = state.as_ref().map_or(0, C::version);
        cur.state = state;
        cur.changed
            .push((format!("w:{}", c.base_version()), c.commit_id().to_owned()));
        if let Some(f) = key_field {
            cur.changed.push((f.clone(), after.to_string()));
            cur.keys.insert(f, Some(after));
        }
        accepted += 1;
    }
    (accepted, rejected)
}

/// The HSET arguments of a changed stream: `v`, `c` and the batch's fields.
fn hash_fields<S: Serialize>(
    id: &str,
    version: u64,
    state: &S,
    changed: &[(String, String)],
) -> Result<Vec<String>, FeedbackError> {
    let mut set = vec![
        "v".to_owned(),
        version.to_string(),
        "c".to_owned(),
        serde_json::to_string(state).map_err(|e| FeedbackError::Corrupt(format!("{id}: {e}")))?,
    ];
    for (f, v) in changed {
        set.push(f.clone());
        set.push(v.clone());
    }
    Ok(set)
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

    /// Applies one partition's records read from offset `from`, ending at `next`.
    pub async fn project(
        &self,
        partition: u32,
        from: u64,
        records: &[Record],
        next: u64,
    ) -> Result<Projected, FeedbackError> {
        let mut complaints: Vec<(u64, Commit)> = Vec::with_capacity(records.len());
        let mut cases: Vec<(u64, OutreachCommit)> = Vec::new();
        let mut unreadable = 0;
        for r in records {
            match Committed::decode(&r.payload) {
                Ok(Committed::Complaint(c)) => complaints.push((r.offset, c)),
                Ok(Committed::Outreach(c)) => cases.push((r.offset, c)),
                Err(e) => {
                    unreadable += 1;
                    tracing::warn!(partition, offset = r.offset, error = %e, "not a feedback commit: skipped");
                }
            }
        }
        // Read the checkpoint, then each stream's state and the keys used.
        let complaint_fields = wanted(&complaints);
        let case_fields = wanted(&cases);
        let mut conn = self.conn.clone();
        let checkpoint_key = checkpoint_key(CONSUMER, &self.topic, partition);
        let mut read = redis::pipe();
        read.cmd("GET").arg(&checkpoint_key);
        for (id, keys) in &complaint_fields {
            read.cmd("HMGET")
                .arg(complaint_key(partition, id))
                .arg("c")
                .arg(keys);
        }
        for (id, keys) in &case_fields {
            read.cmd("HMGET")
                .arg(case_key(partition, id))
                .arg("c")
                .arg(keys);
        }
        let replies: Vec<redis::Value> = read
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("HMGET streams"))?;
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
        let mut complaint_now: HashMap<&str, Current<Complaint>> = HashMap::new();
        for ((id, keys), reply) in complaint_fields.iter().zip(replies.by_ref()) {
            complaint_now.insert(id, current(id, keys, reply)?);
        }
        let mut case_now: HashMap<&str, Current<OutreachCase>> = HashMap::new();
        for ((id, keys), reply) in case_fields.iter().zip(replies) {
            case_now.insert(id, current(id, keys, reply)?);
        }

        let mut tallies = Tallies::default();
        let mut filings: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        let (a1, r1) = fold(
            partition,
            &complaints,
            &mut complaint_now,
            checkpoint,
            |_, e| {
                tallies.add(complaint_contribution(e));
                if let ComplaintEvent::ComplaintFiled {
                    complaint_id,
                    customer,
                    touchpoint,
                    at,
                    ..
                } = e
                {
                    filings
                        .entry(customer_complaints_key(partition, customer.key().as_str()))
                        .or_default()
                        .push((
                            complaint_id.as_str().to_owned(),
                            format!("{} {}", at.timestamp_millis(), touchpoint.as_str()),
                        ));
                }
            },
        );
        let (a2, r2) = fold(partition, &cases, &mut case_now, checkpoint, |before, e| {
            tallies.add(outreach_contribution(before, e));
            if let OutreachEvent::OutreachOpened {
                case_id,
                customer,
                at,
                ..
            } = e
            {
                filings
                    .entry(customer_cases_key(partition, customer.as_str()))
                    .or_default()
                    .push((
                        case_id.as_str().to_owned(),
                        at.timestamp_millis().to_string(),
                    ));
            }
        });

        let mut complaint_writes = Vec::new();
        for (id, _) in &complaint_fields {
            let cur = &complaint_now[id];
            let Some(state) = cur.state.as_ref().filter(|_| !cur.changed.is_empty()) else {
                continue;
            };
            let due = self
                .sla
                .as_ref()
                .and_then(|sla| sla_clock::next_alarm(state, &sla.policy, &sla.directory))
                .map_or_else(String::new, |a| a.due_at.timestamp().to_string());
            complaint_writes.push((
                complaint_key(partition, id),
                hash_fields(id, state.version, state, &cur.changed)?,
                *id,
                due,
                ListEntry::of(state).encode(),
            ));
        }
        let mut case_writes = Vec::new();
        for (id, _) in &case_fields {
            let cur = &case_now[id];
            let Some(state) = cur.state.as_ref().filter(|_| !cur.changed.is_empty()) else {
                continue;
            };
            case_writes.push((
                case_key(partition, id),
                hash_fields(id, state.version, state, &cur.changed)?,
                *id,
                CaseEntry::of(state).encode(),
            ));
        }

        let mut commit = self.commit.prepare_invoke();
        commit
            .key(&checkpoint_key)
            .key(deadline_key(partition))
            .key(list_key(partition))
            .key(case_list_key(partition))
            .arg(checkpoint)
            .arg(next)
            .arg(u8::from(self.sla.is_some()))
            .arg(complaint_writes.len())
            .arg(case_writes.len())
            .arg(tallies.0.len());
        for (key, set, id, due, entry) in complaint_writes {
            commit
                .key(key)
                .arg(set.len())
                .arg(set)
                .arg(id)
                .arg(due)
                .arg(entry);
        }
        for (key, set, id, entry) in case_writes {
            commit.key(key).arg(set.len()).arg(set).arg(id).arg(entry);
        }
        for (day, increments) in &tallies.0 {
            commit
                .key(reasons_key(partition, *day))
                .arg(increments.len());
            for (field, by) in increments {
                commit.arg(field).arg(*by);
            }
        }
        for (key, fields) in &filings {
            commit.key(key).arg(fields.len());
            for (field, value) in fields {
                commit.arg(field).arg(value);
            }
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
        Ok(Projected {
            accepted: a1 + a2,
            rejected: r1 + r2,
            unreadable,
            checkpoint,
        })
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

    /// A complaint's accepted events, oldest first (`e:<version>` of its hash).
    pub async fn events(
        &self,
        complaint: &ComplaintId,
    ) -> Result<Vec<ComplaintEvent>, FeedbackError> {
        let mut conn = self.conn.clone();
        let key = complaint_key(self.partition_of(complaint), complaint.as_str());
        let fields: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("HGETALL complaint"))?;
        let mut events = Vec::new();
        for (field, json) in fields {
            let Some(version) = field.strip_prefix("e:") else {
                continue;
            };
            let version: u64 = version
                .parse()
                .map_err(|_| FeedbackError::Corrupt(format!("{key} field {field}")))?;
            let event = serde_json::from_str(&json)
                .map_err(|e| FeedbackError::Corrupt(format!("{key} field {field}: {e}")))?;
            events.push((version, event));
        }
        events.sort_by_key(|(v, _)| *v);
        if events
            .iter()
            .enumerate()
            .any(|(i, (v, _))| *v != i as u64 + 1)
        {
            return Err(FeedbackError::Corrupt(format!(
                "{key}: a gap in the history"
            )));
        }
        Ok(events.into_iter().map(|(_, e)| e).collect())
    }

    /// An outreach case as the read model has it.
    pub async fn load_case(
        &self,
        case: &OutreachCaseId,
    ) -> Result<Option<OutreachCase>, FeedbackError> {
        let mut conn = self.conn.clone();
        let key = case_key(self.partition_of_stream(case.as_str()), case.as_str());
        let json: Option<String> = redis::cmd("HGET")
            .arg(&key)
            .arg("c")
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("HGET case"))?;
        json.map(|j| {
            serde_json::from_str(&j).map_err(|e| FeedbackError::Corrupt(format!("{key}: {e}")))
        })
        .transpose()
    }

    /// Several cases, in the order asked (`None` where the read model has none).
    pub async fn load_cases(
        &self,
        cases: &[&str],
    ) -> Result<Vec<Option<OutreachCase>>, FeedbackError> {
        if cases.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for c in cases {
            pipe.cmd("HGET")
                .arg(case_key(self.partition_of_stream(c), c))
                .arg("c");
        }
        let raw: Vec<Option<String>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("HGET cases"))?;
        raw.into_iter()
            .zip(cases)
            .map(|(json, c)| {
                json.map(|j| {
                    serde_json::from_str(&j)
                        .map_err(|e| FeedbackError::Corrupt(format!("{c}: {e}")))
                })
                .transpose()
            })
            .collect()
    }

    /// The outreach list index of `partition`, in no particular order.
    pub async fn listed_cases(&self, partition: u32) -> Result<Vec<CaseEntry>, FeedbackError> {
        let mut conn = self.conn.clone();
        let key = case_list_key(partition);
        let raw: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("HGETALL outreach index"))?;
        raw.iter()
            .map(|(id, v)| {
                CaseEntry::decode(id, v)
                    .ok_or_else(|| FeedbackError::Corrupt(format!("{key} field {id}")))
            })
            .collect()
    }

    /// The ids of a customer's outreach cases, from their hash in every partition (as far
    /// as each partition is projected).
    pub async fn customer_cases(&self, customer: &str) -> Result<Vec<String>, FeedbackError> {
        let mut pipe = redis::pipe();
        for p in 0..self.partitions {
            pipe.cmd("HKEYS").arg(customer_cases_key(p, customer));
        }
        let mut conn = self.conn.clone();
        let raw: Vec<Vec<String>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("HKEYS customer cases"))?;
        Ok(raw.into_iter().flatten().collect())
    }

    /// Every complaint of each customer, from their hash in every partition.
    pub async fn incidents(
        &self,
        customers: &[&str],
    ) -> Result<HashMap<String, Vec<Incident>>, FeedbackError> {
        let mut pipe = redis::pipe();
        for c in customers {
            for p in 0..self.partitions {
                pipe.cmd("HGETALL").arg(customer_complaints_key(p, c));
            }
        }
        if customers.is_empty() {
            return Ok(HashMap::new());
        }
        let mut conn = self.conn.clone();
        let raw: Vec<Vec<(String, String)>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("HGETALL customer complaints"))?;
        let per = self.partitions as usize;
        let mut all = HashMap::new();
        for (c, hashes) in customers.iter().zip(raw.chunks(per.max(1))) {
            let mut incidents = Vec::new();
            for (id, value) in hashes.iter().flatten() {
                let parsed = value.split_once(' ').and_then(|(ms, tp)| {
                    Some(Incident {
                        complaint_id: ComplaintId::parse(id.as_str()).ok()?,
                        filed_at: chrono::DateTime::from_timestamp_millis(ms.parse().ok()?)?,
                        touchpoint: tp.parse().ok()?,
                    })
                });
                incidents.push(parsed.ok_or_else(|| {
                    FeedbackError::Corrupt(format!("complaints of {c}: field {id}"))
                })?);
            }
            all.insert((*c).to_owned(), incidents);
        }
        Ok(all)
    }

    /// The reasons counters of every partition over the UTC days `from ..= to`, summed
    /// per store and cause. One HGETALL per partition and day, in one pipeline.
    pub async fn reasons(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<BTreeMap<(String, Cause), Tally>, FeedbackError> {
        let mut pipe = redis::pipe();
        let mut day = from;
        while day <= to {
            for p in 0..self.partitions {
                pipe.cmd("HGETALL").arg(reasons_key(p, day));
            }
            day = day.succ_opt().unwrap_or(NaiveDate::MAX);
            if day == NaiveDate::MAX {
                break;
            }
        }
        let mut conn = self.conn.clone();
        let raw: Vec<Vec<(String, i64)>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("HGETALL reasons"))?;
        let mut sums = BTreeMap::new();
        for fields in raw {
            sum_reasons(fields, &mut sums)?;
        }
        Ok(sums)
    }

    /// The commit accepted on `base_version`, and the version a key was used for.
    pub async fn outcome(
        &self,
        complaint: &ComplaintId,
        base_version: u64,
        key: Option<&str>,
    ) -> Result<(Option<String>, Option<u64>), FeedbackError> {
        let hash = complaint_key(self.partition_of(complaint), complaint.as_str());
        self.outcome_in(&hash, base_version, key).await
    }

    /// As [`Projection::outcome`], for an outreach case.
    pub async fn case_outcome(
        &self,
        case: &OutreachCaseId,
        base_version: u64,
        key: Option<&str>,
    ) -> Result<(Option<String>, Option<u64>), FeedbackError> {
        let hash = case_key(self.partition_of_stream(case.as_str()), case.as_str());
        self.outcome_in(&hash, base_version, key).await
    }

    async fn outcome_in(
        &self,
        hash: &str,
        base_version: u64,
        key: Option<&str>,
    ) -> Result<(Option<String>, Option<u64>), FeedbackError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(hash).arg(format!("w:{base_version}"));
        cmd.arg(format!("k:{}", key.unwrap_or("")));
        let (winner, version): (Option<String>, Option<u64>) = cmd
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("HMGET outcome"))?;
        Ok((winner, key.and(version)))
    }
}
