//! Customer state in Redis: `cs:{p<partition>}:<customer>` hashes. Swipes change them
//! only through `commit_batch.lua`, which checks and advances the partition's checkpoint
//! in the same atomic step (see [`CustomerStore::apply_batch`]).

use std::collections::{BTreeMap, HashMap};

use churnguard_domain::customer::{CustomerState, Day, DayBucket};
use churnguard_domain::models::FittedModel;
use churnguard_domain::policy::ChurnState;
use churnguard_redis::guarded::{GuardedBatch, Read};
use churnguard_redis::{RedisConnection, load_checkpoint};

use crate::CONSUMER;
use crate::batch::{Effect, Pending, ScoredSwipe, Summary};
use crate::error::ScoringError;

/// What one batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchOutcome {
    pub counted: u64,
    pub duplicates: u64,
    pub too_late: u64,
    /// The partition's checkpoint afterwards.
    pub checkpoint: u64,
    /// The commit found the checkpoint moved by another instance: nothing written.
    pub conflict: bool,
}

impl BatchOutcome {
    /// Nothing applied; read on from `checkpoint`.
    fn unchanged(checkpoint: u64) -> Self {
        Self {
            checkpoint,
            ..Self::default()
        }
    }
}

/// A batch's records grouped by customer, in the order customers first appear, with
/// each customer's hash and the fields its records touch. Each record goes with its
/// position in the batch.
struct ByCustomer<'a> {
    order: Vec<&'a str>,
    records: HashMap<&'a str, Vec<(usize, &'a ScoredSwipe)>>,
    keys: Vec<String>,
    fields: Vec<Vec<String>>,
}

impl<'a> ByCustomer<'a> {
    fn of(partition: u32, swipes: &'a [ScoredSwipe]) -> Self {
        let mut order: Vec<&str> = Vec::new();
        let mut records: HashMap<&str, Vec<(usize, &ScoredSwipe)>> = HashMap::new();
        for (i, s) in swipes.iter().enumerate() {
            records
                .entry(&s.customer)
                .or_insert_with(|| {
                    order.push(&s.customer);
                    Vec::new()
                })
                .push((i, s));
        }
        let keys = order.iter().map(|c| customer_key(partition, c)).collect();
        let fields = order
            .iter()
            .map(|c| Pending::fields(records[c].iter().map(|(_, r)| *r)))
            .collect();
        Self {
            order,
            records,
            keys,
            fields,
        }
    }
}

/// One stream entry as XRANGE returns it: id and field/value pairs.
type StreamEntry = (String, Vec<(String, Vec<u8>)>);

/// The key of a customer's hash.
pub fn customer_key(partition: u32, customer: &str) -> String {
    format!("cs:{{p{partition}}}:{customer}")
}

/// The partition's deadline index: customer key -> the day they are due for assessment.
pub fn deadline_key(partition: u32) -> String {
    format!("dl:{{p{partition}}}")
}

/// The partition's stream-time watermark: the latest event day applied.
pub fn watermark_key(partition: u32) -> String {
    format!("wm:{{p{partition}}}")
}

/// Whether the partition's newest applied swipe was imported history (`1`) or live
/// (`0`): while it is history, the partition's timers follow its stream time.
pub fn history_key(partition: u32) -> String {
    format!("hs:{{p{partition}}}")
}

/// A refit asked for (RequestRefit) and not yet run.
pub const REFIT_REQUESTED_KEY: &str = "rf:requested";

/// The partition's outbox of churn signals waiting to be published.
pub fn outbox_key(partition: u32) -> String {
    format!("ob:{{p{partition}}}")
}

/// The partition's count of customers per home store: store -> customers at home there.
pub fn home_counts_key(partition: u32) -> String {
    format!("hc:{{p{partition}}}")
}

/// The partition's at-risk customers of one home store: customer -> value at risk in
/// whole minor units, as of their last assessment.
pub fn at_risk_key(partition: u32, store: &str) -> String {
    format!("ar:{{p{partition}}}:{store}")
}

/// The partition's day stats of one home store: `<day>:defected`, `<day>:won_back`,
/// `<day>:lost` (value at risk of the defections, whole minor units) -> count or sum.
pub fn day_stats_key(partition: u32, store: &str) -> String {
    format!("ds:{{p{partition}}}:{store}")
}

/// What a timer reads of a customer.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessable {
    pub state: CustomerState,
    pub churn: ChurnState,
    /// The swipe count, for the compare-and-set.
    pub swipes: u64,
    /// The home store recorded at the last committed assessment.
    pub home: Option<String>,
    /// The trace context (`traceparent`) of the customer's latest swipe counted, if it
    /// carried one: the trace an assessment continues.
    pub traceparent: Option<String>,
}

/// The customer hash's field holding the `traceparent` of the latest swipe counted.
pub const TRACEPARENT_FIELD: &str = "tp";

/// A churn signal waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The stream entry's id.
    pub id: String,
    pub customer: String,
    /// The signal's envelope, as published.
    pub signal: Vec<u8>,
    /// The trace context of the assessment that made it, if traced.
    pub traceparent: Option<String>,
}

/// A timer's decision, as `transition.lua` commits it.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a> {
    pub state: ChurnState,
    pub next_deadline: Option<Day>,
    /// The signal to publish when the state changed.
    pub signal: Option<&'a [u8]>,
    /// The trace context the signal carries (the assessment's span).
    pub traceparent: Option<&'a str>,
    /// The home store as read with the state, and the one now.
    pub old_home: Option<&'a str>,
    pub home: &'a str,
    pub value_at_risk_minor: i64,
    pub as_of: Day,
}

#[derive(Clone)]
pub struct CustomerStore {
    conn: RedisConnection,
    commit: redis::Script,
    transition: redis::Script,
    topic: String,
    horizon: Day,
}

impl std::fmt::Debug for CustomerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomerStore")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

fn command(command: &'static str) -> impl FnOnce(redis::RedisError) -> ScoringError {
    move |source| ScoringError::Redis { command, source }
}

impl CustomerStore {
    /// Connects as configured: a Redis Cluster when nodes are given, else one Redis.
    pub async fn open(
        settings: &churnguard_redis::RedisSettings,
        topic: &str,
        horizon: Day,
    ) -> Result<Self, ScoringError> {
        let conn = settings.connect().await.map_err(ScoringError::Store)?;
        Ok(Self::with(conn, topic, horizon))
    }

    pub async fn connect(url: &str, topic: &str, horizon: Day) -> Result<Self, ScoringError> {
        let conn = RedisConnection::single(url)
            .await
            .map_err(ScoringError::Store)?;
        Ok(Self::with(conn, topic, horizon))
    }

    /// Connects to a Redis Cluster through any of its nodes.
    pub async fn connect_cluster(
        nodes: &[String],
        topic: &str,
        horizon: Day,
    ) -> Result<Self, ScoringError> {
        let conn = RedisConnection::cluster(nodes)
            .await
            .map_err(ScoringError::Store)?;
        Ok(Self::with(conn, topic, horizon))
    }

    fn with(conn: RedisConnection, topic: &str, horizon: Day) -> Self {
        Self {
            conn,
            commit: redis::Script::new(include_str!("commit_batch.lua")),
            transition: redis::Script::new(include_str!("transition.lua")),
            topic: topic.to_owned(),
            horizon,
        }
    }

    pub fn horizon(&self) -> Day {
        self.horizon
    }

    /// The connection, for the query side's reads.
    pub fn connection(&self) -> RedisConnection {
        self.conn.clone()
    }

    /// Records the purchases topic's partition count with the state, or checks it
    /// against the one recorded. Customers are placed by partition, so state built under
    /// another count is wrong everywhere: the answer then is a rebuild from the log into an
    /// empty Redis, never a silent mix.
    pub async fn check_partition_count(&self, partitions: u32) -> Result<(), ScoringError> {
        let key = format!("cg:partitions:{}", self.topic);
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(&key)
            .arg(partitions)
            .arg("NX")
            .query_async::<Option<String>>(&mut conn)
            .await
            .map_err(command("SET NX partitions"))?;
        let stored: u32 = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(command("GET partitions"))?;
        if stored == partitions {
            Ok(())
        } else {
            Err(ScoringError::Startup(format!(
                "the state in Redis was built for {stored} partitions of {}, which now has \
                 {partitions}: customers have moved between partitions. Rebuild: empty this \
                 Redis (FLUSHALL) and start again; the log replays into it",
                self.topic
            )))
        }
    }

    /// The partition's checkpoint: the next offset to apply (0 when none is stored).
    pub async fn checkpoint(&self, partition: u32) -> Result<u64, ScoringError> {
        let stored = load_checkpoint(&self.conn, CONSUMER, &self.topic, partition)
            .await
            .map_err(ScoringError::Store)?;
        Ok(stored.unwrap_or(0))
    }

    /// As [`CustomerStore::apply_batch_traced`], the records carrying no trace context.
    pub async fn apply_batch(
        &self,
        partition: u32,
        from: u64,
        swipes: &[ScoredSwipe],
        next_offset: u64,
    ) -> Result<BatchOutcome, ScoringError> {
        self.apply_batch_traced(partition, from, swipes, &[], next_offset)
            .await
    }

    /// Applies a batch of one partition: the records read from offset `from` up to
    /// `next_offset` (poison records left out), exactly once, by the checkpoint-guarded
    /// fold ([`churnguard_redis::guarded`]):
    /// 1. one pipeline reads the checkpoint and then, per customer, the fields the batch
    ///    touches (summary, the buckets of its days, the store-mix entries of its stores);
    /// 2. [`Pending`] applies the records in log order, in Rust; the rare customer whose
    ///    buckets fall out of the horizon has its field names listed (HKEYS) first;
    /// 3. `commit_batch.lua` writes the result and moves the checkpoint only if it is
    ///    still the one read in step 1: a batch applied twice, or by two instances at
    ///    once, lands once.
    ///
    /// Records below the stored checkpoint are skipped. When the checkpoint is behind
    /// `from` (Redis lost state) or moved meanwhile, nothing is written and the outcome
    /// carries the checkpoint to read from.
    ///
    /// `traceparents` (empty, or one per swipe): each swipe's trace context; a changed
    /// customer keeps that of their latest swipe counted in [`TRACEPARENT_FIELD`].
    pub async fn apply_batch_traced(
        &self,
        partition: u32,
        from: u64,
        swipes: &[ScoredSwipe],
        traceparents: &[Option<String>],
        next_offset: u64,
    ) -> Result<BatchOutcome, ScoringError> {
        let batch = GuardedBatch::new(CONSUMER, &self.topic, partition, from, next_offset);
        let customers = ByCustomer::of(partition, swipes);
        let read = batch
            .read(&self.conn, |pipe| {
                for (key, fields) in customers.keys.iter().zip(&customers.fields) {
                    pipe.cmd("HMGET").arg(key).arg(fields);
                }
            })
            .await
            .map_err(ScoringError::Store)?;
        let (checkpoint, replies) = match read {
            Read::Skip { checkpoint } => return Ok(BatchOutcome::unchanged(checkpoint)),
            Read::Fold {
                checkpoint,
                replies,
            } => (checkpoint, replies),
        };
        let (mut pending, mut outcome, latest) =
            self.fold(&customers, replies, checkpoint, traceparents)?;
        self.roll(&mut pending).await?;

        let mut keys = vec![deadline_key(partition), watermark_key(partition)];
        keys.extend(pending.iter().map(|(p, _)| p.key.clone()));
        let mut commit = batch.commit(&self.commit, checkpoint, &keys);
        commit.arg(latest.map(|d| d.to_string()).unwrap_or_default());
        for (p, traceparent) in &pending {
            let (mut set, delete, due) = p.writes();
            if let Some(tp) = traceparent {
                set.push(TRACEPARENT_FIELD.to_owned());
                set.push(tp.clone());
            }
            commit
                .arg(set.len())
                .arg(set)
                .arg(delete.len())
                .arg(delete)
                .arg(due);
        }
        let committed = commit.run(&self.conn).await.map_err(ScoringError::Store)?;
        if !committed.written {
            return Ok(BatchOutcome {
                conflict: true,
                ..BatchOutcome::unchanged(committed.checkpoint)
            });
        }
        outcome.checkpoint = committed.checkpoint;
        Ok(outcome)
    }

    /// Step 2 of [`CustomerStore::apply_batch_traced`]: each customer's records at or
    /// after the checkpoint, applied in log order to the fields read. Returns the
    /// customers that changed, each with the trace context of their latest swipe counted,
    /// the counts, and the latest day counted.
    #[allow(clippy::type_complexity)]
    fn fold(
        &self,
        customers: &ByCustomer<'_>,
        replies: impl Iterator<Item = redis::Value>,
        checkpoint: u64,
        traceparents: &[Option<String>],
    ) -> Result<(Vec<(Pending, Option<String>)>, BatchOutcome, Option<Day>), ScoringError> {
        let mut outcome = BatchOutcome::default();
        let mut latest: Option<Day> = None;
        let mut pending = Vec::with_capacity(customers.order.len());
        for (((customer, key), fields), values) in customers
            .order
            .iter()
            .zip(&customers.keys)
            .zip(&customers.fields)
            .zip(replies)
        {
            let values: Vec<Option<String>> = redis::from_redis_value(values)
                .map_err(|e| ScoringError::Corrupt(format!("HMGET reply: {e}")))?;
            let mut p =
                Pending::read(key.clone(), fields, values).map_err(ScoringError::Corrupt)?;
            let mut traceparent = None;
            for (i, r) in customers.records[customer]
                .iter()
                .filter(|(_, r)| r.offset >= checkpoint)
            {
                match p.apply(r, self.horizon) {
                    Effect::Counted => {
                        outcome.counted += 1;
                        latest = Some(latest.map_or(r.day, |l| l.max(r.day)));
                        if let Some(Some(tp)) = traceparents.get(*i) {
                            traceparent = Some(tp.clone());
                        }
                    }
                    Effect::Duplicate => outcome.duplicates += 1,
                    Effect::TooLate => outcome.too_late += 1,
                }
            }
            if p.changed() {
                pending.push((p, traceparent));
            }
        }
        Ok((pending, outcome, latest))
    }

    /// Buckets falling out of the horizon: lists the hash's fields of the customers that
    /// need it, so the commit can drop them.
    async fn roll(&self, pending: &mut [(Pending, Option<String>)]) -> Result<(), ScoringError> {
        let rolling: Vec<usize> = (0..pending.len())
            .filter(|i| pending[*i].0.needs_listing())
            .collect();
        if rolling.is_empty() {
            return Ok(());
        }
        let mut list = redis::pipe();
        for i in &rolling {
            list.cmd("HKEYS").arg(&pending[*i].0.key);
        }
        let mut conn = self.conn.clone();
        let names: Vec<Vec<String>> = list
            .query_async(&mut conn)
            .await
            .map_err(command("HKEYS"))?;
        for (i, names) in rolling.iter().zip(names) {
            pending[*i].0.roll(&names);
        }
        Ok(())
    }

    /// The partition's stream time: the latest event day applied.
    pub async fn watermark(&self, partition: u32) -> Result<Option<Day>, ScoringError> {
        let mut conn = self.conn.clone();
        redis::cmd("GET")
            .arg(watermark_key(partition))
            .query_async(&mut conn)
            .await
            .map_err(command("GET watermark"))
    }

    /// Whether the partition's newest applied swipe was imported history (false when
    /// none was applied yet, or it was live).
    pub async fn at_history(&self, partition: u32) -> Result<bool, ScoringError> {
        let mut conn = self.conn.clone();
        let flag: Option<u8> = redis::cmd("GET")
            .arg(history_key(partition))
            .query_async(&mut conn)
            .await
            .map_err(command("GET history"))?;
        Ok(flag == Some(1))
    }

    /// Records whether the partition's newest applied swipe was imported history.
    pub async fn set_history(&self, partition: u32, history: bool) -> Result<(), ScoringError> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(history_key(partition))
            .arg(u8::from(history))
            .query_async::<()>(&mut conn)
            .await
            .map_err(command("SET history"))
    }

    /// Asks the refitting instance for a refit (see [`CustomerStore::take_refit_request`]).
    pub async fn request_refit(&self) -> Result<(), ScoringError> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(REFIT_REQUESTED_KEY)
            .arg(1)
            .query_async::<()>(&mut conn)
            .await
            .map_err(command("SET refit request"))
    }

    /// Whether a refit was asked for since the last call; takes the request.
    pub async fn take_refit_request(&self) -> Result<bool, ScoringError> {
        let mut conn = self.conn.clone();
        let taken: Option<u8> = redis::cmd("GETDEL")
            .arg(REFIT_REQUESTED_KEY)
            .query_async(&mut conn)
            .await
            .map_err(command("GETDEL refit request"))?;
        Ok(taken.is_some())
    }

    /// Customers due for assessment on or before `day`: (customer key, deadline).
    pub async fn due(
        &self,
        partition: u32,
        day: Day,
        limit: usize,
    ) -> Result<Vec<(String, Day)>, ScoringError> {
        let mut conn = self.conn.clone();
        redis::cmd("ZRANGE")
            .arg(deadline_key(partition))
            .arg("-inf")
            .arg(day)
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .map_err(command("ZRANGE due"))
    }

    /// What a timer (or the query API) needs of a customer.
    pub async fn for_assessment(&self, key: &str) -> Result<Option<Assessable>, ScoringError> {
        let mut conn = self.conn.clone();
        let fields: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(command("HGETALL"))?;
        let churn = match fields.get("st").map(String::as_str) {
            None | Some("active") => ChurnState::Active,
            Some("at_risk") => ChurnState::AtRisk,
            Some("defected") => ChurnState::Defected,
            Some("won_back") => ChurnState::WonBack,
            Some(other) => return Err(ScoringError::Corrupt(format!("st = {other}"))),
        };
        // The swipe count is the last value of the summary field.
        let swipes = fields
            .get("s")
            .and_then(|s| s.rsplit(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let home = fields.get("h").cloned();
        let traceparent = fields.get(TRACEPARENT_FIELD).cloned();
        Ok(parse_state(&fields)?.map(|state| Assessable {
            state,
            churn,
            swipes,
            home,
            traceparent,
        }))
    }

    /// Commits a timer decision if nobody else did and no swipe arrived since it was
    /// read; returns whether it was committed. `None` drops a stale deadline. The
    /// query API's indices (home store, at-risk set, day stats) change in the same step.
    pub async fn commit_transition(
        &self,
        partition: u32,
        key: &str,
        customer: &str,
        due: Day,
        swipes_seen: u64,
        decision: Option<Decision<'_>>,
    ) -> Result<bool, ScoringError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.transition.prepare_invoke();
        invocation
            .key(deadline_key(partition))
            .key(key)
            .key(outbox_key(partition))
            .arg(due)
            .arg(swipes_seen);
        match decision {
            None => {
                invocation.arg("").arg("").arg("").arg(customer);
            }
            Some(d) => {
                invocation
                    .key(home_counts_key(partition))
                    .key(at_risk_key(partition, d.old_home.unwrap_or(d.home)))
                    .key(at_risk_key(partition, d.home))
                    .key(day_stats_key(partition, d.home))
                    .arg(d.state.as_str())
                    .arg(d.next_deadline.map(|n| n.to_string()).unwrap_or_default())
                    .arg(d.signal.unwrap_or_default())
                    .arg(customer)
                    .arg(d.old_home.unwrap_or_default())
                    .arg(d.home)
                    .arg(d.value_at_risk_minor)
                    .arg(d.as_of)
                    .arg(d.traceparent.unwrap_or_default());
            }
        }
        let committed: i64 = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(command("EVALSHA transition"))?;
        Ok(committed == 1)
    }

    /// Signals waiting in the outbox, oldest first.
    pub async fn outbox(
        &self,
        partition: u32,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, ScoringError> {
        let mut conn = self.conn.clone();
        let entries: Vec<StreamEntry> = redis::cmd("XRANGE")
            .arg(outbox_key(partition))
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(command("XRANGE outbox"))?;
        Ok(entries
            .into_iter()
            .map(|(id, fields)| {
                let get = |name: &str| {
                    fields
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                let traceparent = String::from_utf8_lossy(&get("traceparent")).into_owned();
                OutboxEntry {
                    id,
                    customer: String::from_utf8_lossy(&get("customer")).into_owned(),
                    signal: get("signal"),
                    traceparent: (!traceparent.is_empty()).then_some(traceparent),
                }
            })
            .collect())
    }

    /// Removes published outbox entries.
    pub async fn ack_outbox(&self, partition: u32, ids: &[String]) -> Result<(), ScoringError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        redis::cmd("XDEL")
            .arg(outbox_key(partition))
            .arg(ids)
            .query_async::<i64>(&mut conn)
            .await
            .map_err(command("XDEL outbox"))?;
        Ok(())
    }

    /// The current fitted model, as projected from the models topic.
    pub async fn current_model(&self) -> Result<Option<FittedModel>, ScoringError> {
        crate::models::current_model(&self.conn).await
    }

    /// A customer's state, if any.
    pub async fn customer(
        &self,
        partition: u32,
        customer: &str,
    ) -> Result<Option<CustomerState>, ScoringError> {
        let mut conn = self.conn.clone();
        let fields: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(customer_key(partition, customer))
            .query_async(&mut conn)
            .await
            .map_err(command("HGETALL"))?;
        parse_state(&fields)
    }

    /// Every customer of a partition, by customer id.
    pub async fn partition_customers(
        &self,
        partition: u32,
    ) -> Result<BTreeMap<String, CustomerState>, ScoringError> {
        let prefix = customer_key(partition, "");
        let keys = self
            .conn
            .scan_tagged(&prefix, &format!("cs:{{p{partition}}}:*"))
            .await
            .map_err(ScoringError::Store)?;
        let mut out = BTreeMap::new();
        for key in keys {
            let customer = key.strip_prefix(&prefix).unwrap_or(&key).to_owned();
            if let Some(state) = self.customer(partition, &customer).await? {
                out.insert(customer, state);
            }
        }
        Ok(out)
    }
}

impl CustomerStore {
    /// A uniform random sample of at most `size` customers' summaries (`size` 0: every
    /// customer), taken among those whose first purchase is on or before `as_of`, and the
    /// number of such customers in all. Keys are listed with SCAN and sampled by
    /// reservoir (`seed` makes the sample repeatable), then only the sampled customers'
    /// summary fields are read, in pipelines of a thousand per partition.
    ///
    /// The summaries carry no day buckets or store mix: what the models need, no more.
    pub async fn sample_summaries(
        &self,
        partitions: u32,
        size: usize,
        as_of: Day,
        seed: u64,
    ) -> Result<Sample, ScoringError> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut reservoir: Vec<(u32, String)> = Vec::new();
        let mut listed = 0usize;
        for p in 0..partitions {
            let keys = self
                .conn
                .scan_tagged(&customer_key(p, ""), &format!("cs:{{p{p}}}:*"))
                .await
                .map_err(ScoringError::Store)?;
            for key in keys {
                listed += 1;
                if size == 0 || reservoir.len() < size {
                    reservoir.push((p, key));
                } else {
                    let slot = rng.usize(..listed);
                    if slot < size {
                        reservoir[slot] = (p, key);
                    }
                }
            }
        }
        // Read per partition (one slot each on a cluster), a thousand keys a round trip.
        reservoir.sort_unstable();
        let mut summaries = Vec::with_capacity(reservoir.len());
        for chunk in reservoir.chunk_by(|a, b| a.0 == b.0) {
            for keys in chunk.chunks(1_000) {
                let mut pipe = redis::pipe();
                for (_, key) in keys {
                    pipe.cmd("HGET").arg(key).arg("s");
                }
                let mut conn = self.conn.clone();
                let values: Vec<Option<String>> = pipe
                    .query_async(&mut conn)
                    .await
                    .map_err(command("HGET s (sample)"))?;
                for value in values.into_iter().flatten() {
                    let state = parse_summary(&value)?;
                    if state.first_day <= as_of {
                        summaries.push(state);
                    }
                }
            }
        }
        // Customers who first bought after `as_of` were listed but are not in the
        // population the fit describes: scale the count by the sample's share of them.
        let read = reservoir.len().max(1);
        let population = if size == 0 || listed <= size {
            summaries.len()
        } else {
            (listed as f64 * summaries.len() as f64 / read as f64).round() as usize
        };
        Ok(Sample {
            summaries,
            population,
        })
    }
}

/// Customers' summaries drawn for a refit.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sampled customers' states, summary fields only.
    pub summaries: Vec<CustomerState>,
    /// How many customers the sample was drawn from.
    pub population: usize,
}

/// Reads the summary field `s` alone: a state without day buckets and store mix.
fn parse_summary(s: &str) -> Result<CustomerState, ScoringError> {
    let summary = Summary::parse(s).ok_or_else(|| ScoringError::Corrupt("s".to_owned()))?;
    Ok(CustomerState {
        first_day: summary.first,
        first_day_spend: summary.first_spend,
        last_day: summary.last,
        repeat_days: summary.repeat_days,
        repeat_spend: summary.repeat_spend,
        days: BTreeMap::new(),
        stores: BTreeMap::new(),
    })
}

/// Reads a customer hash back into the domain's state.
fn parse_state(fields: &BTreeMap<String, String>) -> Result<Option<CustomerState>, ScoringError> {
    if fields.is_empty() {
        return Ok(None);
    }
    let corrupt = |what: &str| ScoringError::Corrupt(what.to_owned());
    let mut state = parse_summary(fields.get("s").ok_or_else(|| corrupt("s"))?)?;
    let mut days = BTreeMap::new();
    let mut stores = BTreeMap::new();
    for (name, value) in fields {
        if let Some(day) = name.strip_prefix("d:") {
            let day: Day = day.parse().map_err(|_| corrupt(name))?;
            let mut parts = value.split(',');
            let visits = parts
                .next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| corrupt(name))?;
            let spend = parts
                .next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| corrupt(name))?;
            let swipes = parts
                .map(|p| p.parse().map_err(|_| corrupt(name)))
                .collect::<Result<_, _>>()?;
            days.insert(
                day,
                DayBucket {
                    visits,
                    spend,
                    swipes,
                },
            );
        } else if let Some(store) = name.strip_prefix("m:") {
            stores.insert(store.to_owned(), value.parse().map_err(|_| corrupt(name))?);
        }
    }
    state.days = days;
    state.stores = stores;
    Ok(Some(state))
}
