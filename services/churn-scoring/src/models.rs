//! The fitted models, rebuilt from the log like every other piece of state.
//!
//! A refit appends its model to `churn.models.v1` (one partition), the system of record.
//! This projection folds that topic into Redis, all keys under one hash tag (one slot on
//! a cluster):
//!
//! - `{models}:current`: hash `version`, `model` (JSON): the newest version seen;
//! - `{models}:versions`: hash version → model JSON, every version announced;
//! - `{models}:checkpoint`: the next offset of the topic to fold.
//!
//! `apply_models.lua` writes a batch of models and moves the checkpoint only if it is
//! still the one read: the checkpoint-guarded fold of [`churnguard_redis::guarded`], as
//! the scorer's batches do. A Redis that lost its state (flushed,
//! restarted empty, a new one) has no checkpoint: the projection reads the topic from the
//! start, and the current model is back within one round, without a restart and without
//! a refit. Every instance runs the projection; they write the same thing.

use std::sync::Arc;
use std::time::Duration;

use churnguard_domain::envelope::Envelope;
use churnguard_domain::models::FittedModel;
use churnguard_eventlog::{EventLog, Record};
use churnguard_redis::RedisConnection;
use churnguard_redis::guarded::{GuardedBatch, Read};
use churnguard_runtime::retry::Backoff;
use tokio_util::sync::CancellationToken;

use crate::error::ScoringError;

const CURRENT: &str = "{models}:current";
const VERSIONS: &str = "{models}:versions";
const CHECKPOINT: &str = "{models}:checkpoint";

/// Reads the models topic into Redis.
pub struct ModelProjection<L> {
    log: Arc<L>,
    conn: RedisConnection,
    topic: String,
    apply: redis::Script,
}

impl<L> std::fmt::Debug for ModelProjection<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelProjection")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

fn command(command: &'static str) -> impl FnOnce(redis::RedisError) -> ScoringError {
    move |source| ScoringError::Redis { command, source }
}

/// The newest fitted model in Redis, if any.
pub async fn current_model(conn: &RedisConnection) -> Result<Option<FittedModel>, ScoringError> {
    let mut conn = conn.clone();
    let json: Option<String> = redis::cmd("HGET")
        .arg(CURRENT)
        .arg("model")
        .query_async(&mut conn)
        .await
        .map_err(command("HGET {models}:current"))?;
    json.map(|j| {
        serde_json::from_str(&j).map_err(|e| ScoringError::Corrupt(format!("{CURRENT}: {e}")))
    })
    .transpose()
}

impl<L: EventLog> ModelProjection<L> {
    pub fn new(log: Arc<L>, conn: RedisConnection, topic: &str) -> Self {
        Self {
            log,
            conn,
            topic: topic.to_owned(),
            apply: redis::Script::new(include_str!("apply_models.lua")),
        }
    }

    /// The topic it reads.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The newest model projected so far.
    pub async fn current(&self) -> Result<Option<FittedModel>, ScoringError> {
        current_model(&self.conn).await
    }

    /// Folds the topic up to its end, then returns the newest model: after this, a model
    /// announced before the call is in Redis.
    pub async fn catch_up(&self) -> Result<Option<FittedModel>, ScoringError> {
        let end = self
            .log
            .end_offset(&self.topic, 0)
            .await
            .map_err(ScoringError::Log)?;
        while self.checkpoint().await? < end {
            self.round(Duration::from_millis(200)).await?;
        }
        self.current().await
    }

    /// Follows the topic until `stop`: new models, and a Redis that lost its state, are
    /// projected within about a second. Passing trouble is logged and retried with the
    /// runtime's backoff, from the start again after a round that went through.
    pub async fn run(&self, stop: CancellationToken) {
        let mut backoff = Backoff::new();
        while !stop.is_cancelled() {
            let round = tokio::select! {
                () = stop.cancelled() => return,
                r = self.round(Duration::from_secs(1)) => r,
            };
            match round {
                Ok(_) => backoff.reset(),
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, ?delay, "model projection interrupted; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    async fn checkpoint(&self) -> Result<u64, ScoringError> {
        let mut conn = self.conn.clone();
        let stored: Option<u64> = redis::cmd("GET")
            .arg(CHECKPOINT)
            .query_async(&mut conn)
            .await
            .map_err(command("GET {models}:checkpoint"))?;
        Ok(stored.unwrap_or(0))
    }

    /// One round: reads from the stored checkpoint (waiting up to `wait` for records) and
    /// applies what came. Returns how many records were folded.
    async fn round(&self, wait: Duration) -> Result<usize, ScoringError> {
        let from = self.checkpoint().await?;
        let records = self
            .log
            .read(&self.topic, 0, from, 100, wait)
            .await
            .map_err(ScoringError::Log)?;
        let Some(last) = records.last() else {
            return Ok(0);
        };
        let next = last.offset + 1;
        let batch = GuardedBatch::at_key(CHECKPOINT, from, next);
        let checkpoint = match batch
            .read(&self.conn, |_| {})
            .await
            .map_err(ScoringError::Store)?
        {
            Read::Skip { .. } => return Ok(0),
            Read::Fold { checkpoint, .. } => checkpoint,
        };
        let mut commit = batch.commit(&self.apply, checkpoint, &[CURRENT, VERSIONS]);
        for record in records.iter().filter(|r| r.offset >= checkpoint) {
            match decode(record) {
                Ok(model) => {
                    let json = serde_json::to_string(&model)
                        .map_err(|e| ScoringError::Corrupt(e.to_string()))?;
                    commit.arg(model.version).arg(json);
                }
                Err(e) => tracing::warn!(
                    topic = %self.topic,
                    offset = record.offset,
                    error = %e,
                    "not a fitted model: skipped"
                ),
            }
        }
        let committed = commit.run(&self.conn).await.map_err(ScoringError::Store)?;
        Ok(if committed.written { records.len() } else { 0 })
    }
}

fn decode(record: &Record) -> Result<FittedModel, ScoringError> {
    Envelope::<FittedModel>::decode(&record.payload, FittedModel::EVENT_TYPE)
        .map(|e| e.data)
        .map_err(|e| ScoringError::Corrupt(e.to_string()))
}
