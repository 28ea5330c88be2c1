//! The checkpoint-guarded fold: how a consumer applies one batch of a partition's records
//! to Redis exactly once, however many processes apply the same partition at once.
//!
//! 1. [`GuardedBatch::read`]: one pipeline reads the partition's checkpoint and then the
//!    state the batch touches (the caller adds those reads);
//! 2. the caller folds the records at or after that checkpoint over the state, in Rust;
//! 3. [`GuardedBatch::commit`]: the caller's Lua script writes the result and moves the
//!    checkpoint to the batch's end, but only if the checkpoint is still the one read in
//!    step 1. Every change to the state goes through such a script and moves the
//!    checkpoint, so an unchanged checkpoint means nothing changed since the read: a batch
//!    applied twice, or by two instances at once, lands once.
//!
//! What differs per service is the state and its script: the scorer's customer windows
//! (`commit_batch.lua`) and fitted models (`apply_models.lua`), the feedback read model
//! (`commit.lua`). Every script follows one
//! calling convention: `KEYS[1]` is the checkpoint, `ARGV[1]` the checkpoint read and
//! `ARGV[2]` the offset after the batch, then the script's own keys and arguments; it
//! replies `{1, checkpoint after}` when it wrote, `{0, checkpoint now}` when the
//! checkpoint had moved.

use crate::{RedisConnection, StoreError, checkpoint_key};

/// One batch of a partition: the records read from offset `from`, ending before `next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardedBatch {
    checkpoint_key: String,
    from: u64,
    next: u64,
}

/// What step 1 found.
#[derive(Debug)]
pub enum Read {
    /// The checkpoint is within the batch: fold the records at or after `checkpoint` over
    /// `replies` (the caller's reads, in the order added).
    Fold {
        checkpoint: u64,
        replies: std::vec::IntoIter<redis::Value>,
    },
    /// The checkpoint is behind the batch (Redis lost state: read again from it) or at or
    /// past its end (applied already): apply nothing; read on from `checkpoint`.
    Skip { checkpoint: u64 },
}

/// What step 3 did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The script wrote (false: the checkpoint had moved since the read).
    pub written: bool,
    /// The checkpoint now.
    pub checkpoint: u64,
}

impl GuardedBatch {
    /// The batch of `consumer` on `topic`'s `partition` from `from` up to `next`.
    pub fn new(consumer: &str, topic: &str, partition: u32, from: u64, next: u64) -> Self {
        Self {
            checkpoint_key: checkpoint_key(consumer, topic, partition),
            from,
            next,
        }
    }

    /// A batch whose checkpoint is kept at `checkpoint_key`, for a projection whose keys
    /// share another hash tag than the partition's (the scorer's models, `{models}`).
    pub fn at_key(checkpoint_key: &str, from: u64, next: u64) -> Self {
        Self {
            checkpoint_key: checkpoint_key.to_owned(),
            from,
            next,
        }
    }

    /// The key of the partition's checkpoint.
    pub fn checkpoint_key(&self) -> &str {
        &self.checkpoint_key
    }

    /// Step 1: reads the checkpoint and, in the same pipeline, what `reads` adds. The
    /// other replies are read only when the checkpoint says the batch is to be folded.
    pub async fn read(
        &self,
        conn: &RedisConnection,
        reads: impl FnOnce(&mut redis::Pipeline),
    ) -> Result<Read, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(&self.checkpoint_key);
        reads(&mut pipe);
        let mut conn = conn.clone();
        let replies: Vec<redis::Value> =
            pipe.query_async(&mut conn)
                .await
                .map_err(|source| StoreError::Command {
                    command: "read batch state",
                    source,
                })?;
        let mut replies = replies.into_iter();
        let stored: Option<String> = replies
            .next()
            .map(redis::from_redis_value)
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?
            .flatten();
        let checkpoint = match stored {
            Some(c) => crate::parse_checkpoint(c)?,
            None => 0,
        };
        Ok(if checkpoint < self.from || checkpoint >= self.next {
            Read::Skip { checkpoint }
        } else {
            Read::Fold {
                checkpoint,
                replies,
            }
        })
    }

    /// Step 3, begun: the script's `EVALSHA` with the checkpoint, `keys` after it, the
    /// checkpoint read (`checkpoint`) and the batch's end. Add the script's own arguments
    /// with [`Commit::arg`], then [`Commit::run`] it. The command is built in one buffer:
    /// a batch's arguments are copied once.
    pub fn commit<'s, K: redis::ToRedisArgs>(
        &self,
        script: &'s redis::Script,
        checkpoint: u64,
        keys: &[K],
    ) -> Commit<'s> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.get_hash())
            .arg(1 + keys.len())
            .arg(&self.checkpoint_key);
        for k in keys {
            cmd.arg(k);
        }
        cmd.arg(checkpoint).arg(self.next);
        Commit { script, cmd }
    }
}

/// A guarded commit being built (see [`GuardedBatch::commit`]).
#[must_use = "a commit does nothing until it is run"]
pub struct Commit<'s> {
    script: &'s redis::Script,
    cmd: redis::Cmd,
}

impl Commit<'_> {
    /// Adds the script's next argument.
    pub fn arg<T: redis::ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        self.cmd.arg(arg);
        self
    }

    /// Runs the script; a Redis that lost its scripts (restarted, failed over) is given
    /// it again.
    pub async fn run(&self, conn: &RedisConnection) -> Result<Committed, StoreError> {
        let mut conn = conn.clone();
        let failed = |source| StoreError::Command {
            command: "EVALSHA guarded commit",
            source,
        };
        let reply = match self.cmd.query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.script
                    .prepare_invoke()
                    .load_async(&mut conn)
                    .await
                    .map_err(failed)?;
                self.cmd.query_async(&mut conn).await
            }
            reply => reply,
        };
        let (written, checkpoint): (u8, u64) = reply.map_err(failed)?;
        Ok(Committed {
            written: written == 1,
            checkpoint,
        })
    }
}

impl std::fmt::Debug for Commit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commit")
            .field("script", &self.script.get_hash())
            .finish_non_exhaustive()
    }
}
