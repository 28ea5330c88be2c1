//! The checkpoint-guarded fold against a real `redis-server`: a batch lands once, however
//! often and by however many folders it is applied, and a batch the checkpoint is not in
//! is skipped.

use churnguard_redis::guarded::{Committed, GuardedBatch, Read};
use churnguard_redis::{RedisConnection, StoreError};
use churnguard_testkit::RedisServer;

/// A script in the guarded convention: adds ARGV[3] to the counter KEYS[2].
const ADD: &str = r"
local checkpoint = tonumber(redis.call('GET', KEYS[1]) or '0')
if checkpoint ~= tonumber(ARGV[1]) then
  return {0, checkpoint}
end
redis.call('INCRBY', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[2])
return {1, tonumber(ARGV[2])}
";
const COUNTER: &str = "counter:{p0}";

/// Folds `by` into the counter as the batch [from, next): read, then commit.
async fn apply(
    conn: &RedisConnection,
    script: &redis::Script,
    from: u64,
    next: u64,
    by: i64,
) -> Result<Option<Committed>, StoreError> {
    let batch = GuardedBatch::new("test", "topic", 0, from, next);
    match batch
        .read(conn, |pipe| {
            pipe.cmd("GET").arg(COUNTER);
        })
        .await?
    {
        Read::Skip { .. } => Ok(None),
        Read::Fold {
            checkpoint,
            mut replies,
        } => {
            let now: Option<i64> =
                redis::from_redis_value(replies.next().expect("the counter's reply"))
                    .expect("a number");
            assert!(now.is_some() || checkpoint == 0);
            let mut commit = batch.commit(script, checkpoint, &[COUNTER]);
            commit.arg(by);
            commit.run(conn).await.map(Some)
        }
    }
}

async fn counter(conn: &RedisConnection) -> i64 {
    let mut conn = conn.clone();
    let v: Option<i64> = redis::cmd("GET")
        .arg(COUNTER)
        .query_async(&mut conn)
        .await
        .expect("get");
    v.unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_lands_once_however_often_it_is_applied() {
    let redis = RedisServer::start();
    let conn = RedisConnection::single(&redis.url()).await.expect("conn");
    let script = redis::Script::new(ADD);

    let first = apply(&conn, &script, 0, 10, 5).await.expect("apply");
    assert_eq!(
        first,
        Some(Committed {
            written: true,
            checkpoint: 10
        })
    );
    assert_eq!(apply(&conn, &script, 0, 10, 5).await.expect("again"), None);
    assert_eq!(counter(&conn).await, 5);

    // A batch ahead of the checkpoint (a gap: state was lost) is not folded.
    assert_eq!(apply(&conn, &script, 20, 30, 1).await.expect("ahead"), None);
    // A batch that starts before the checkpoint but runs past it is folded.
    let overlap = apply(&conn, &script, 5, 15, 2).await.expect("overlap");
    assert_eq!(overlap.map(|c| c.checkpoint), Some(15));
    assert_eq!(counter(&conn).await, 7);
}

#[tokio::test(flavor = "multi_thread")]
async fn of_two_folders_that_read_the_same_checkpoint_one_writes() {
    let redis = RedisServer::start();
    let conn = RedisConnection::single(&redis.url()).await.expect("conn");
    let script = redis::Script::new(ADD);
    let batch = GuardedBatch::new("test", "topic", 0, 0, 3);
    let mut checkpoints = Vec::new();
    for _ in 0..2 {
        match batch.read(&conn, |_| {}).await.expect("read") {
            Read::Fold { checkpoint, .. } => checkpoints.push(checkpoint),
            Read::Skip { checkpoint } => panic!("skipped at {checkpoint}"),
        }
    }
    let mut outcomes = Vec::new();
    for checkpoint in checkpoints {
        let mut commit = batch.commit(&script, checkpoint, &[COUNTER]);
        commit.arg(1);
        outcomes.push(commit.run(&conn).await.expect("commit"));
    }
    assert_eq!(
        outcomes,
        vec![
            Committed {
                written: true,
                checkpoint: 3
            },
            Committed {
                written: false,
                checkpoint: 3
            }
        ]
    );
    assert_eq!(counter(&conn).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_that_lost_its_scripts_is_given_them_again() {
    let redis = RedisServer::start();
    let conn = RedisConnection::single(&redis.url()).await.expect("conn");
    let script = redis::Script::new(ADD);
    apply(&conn, &script, 0, 1, 1).await.expect("first");
    let mut c = conn.clone();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut c)
        .await
        .expect("flush");
    let second = apply(&conn, &script, 1, 2, 1).await.expect("second");
    assert_eq!(second.map(|c| c.written), Some(true));
    assert_eq!(counter(&conn).await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_checkpoint_that_is_not_an_offset_is_corrupt() {
    let redis = RedisServer::start();
    let conn = RedisConnection::single(&redis.url()).await.expect("conn");
    let batch = GuardedBatch::new("test", "topic", 0, 0, 1);
    let mut c = conn.clone();
    let _: () = redis::cmd("SET")
        .arg(batch.checkpoint_key())
        .arg("seven")
        .query_async(&mut c)
        .await
        .expect("set");
    let err = batch.read(&conn, |_| {}).await.expect_err("corrupt");
    assert!(
        matches!(&err, StoreError::Corrupt(v) if v == "seven"),
        "{err:?}"
    );
}
