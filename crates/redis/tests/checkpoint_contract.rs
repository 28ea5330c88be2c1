//! The checkpoint contract, once in memory and once against a real `redis-server`.

use churnguard_redis::{
    CheckpointStore, MemoryCheckpoints, RedisCheckpoints, RedisSettings, contract,
};
use churnguard_testkit::RedisServer;

#[tokio::test]
async fn memory_checkpoints_pass_the_contract() {
    contract::run_all(&MemoryCheckpoints::default()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_checkpoints_pass_the_contract() {
    let redis = RedisServer::start();
    let store = RedisCheckpoints::connect(&RedisSettings {
        url: redis.url(),
        ..RedisSettings::default()
    })
    .await
    .expect("connect");
    contract::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_redis_is_reported_and_retriable() {
    let redis = RedisServer::start();
    let store = RedisCheckpoints::connect(&RedisSettings {
        url: redis.url(),
        ..RedisSettings::default()
    })
    .await
    .expect("connect");
    store.ping().await.expect("alive");
    drop(redis);
    let err = store.ping().await.expect_err("redis is gone");
    assert!(err.is_retriable(), "{err:?}");
}

/// While Redis is down, a command fails within the reconnect attempts (a fraction of a
/// second) instead of waiting for Redis: callers answer UNAVAILABLE, not after their
/// deadline. Before the timeouts, the connection retried six times with backoff (over six
/// seconds) per command.
#[tokio::test(flavor = "multi_thread")]
async fn a_command_on_a_redis_that_is_down_fails_fast() {
    let mut redis = RedisServer::start();
    let conn = RedisSettings {
        url: redis.url(),
        ..RedisSettings::default()
    }
    .connect()
    .await
    .expect("connect");
    conn.ping().await.expect("alive");
    redis.kill();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let err = conn.ping().await.expect_err("redis is down");
        let took = started.elapsed();
        eprintln!("failed after {took:?}: {err}");
        assert!(err.is_retriable(), "{err:?}");
        // Generous for a shared machine: the attempts take about 0.3 s.
        assert!(took < std::time::Duration::from_secs(3), "took {took:?}");
    }
    redis.restart();
    let mut back = false;
    for _ in 0..50 {
        if conn.ping().await.is_ok() {
            back = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(back, "the connection comes back with Redis");
}
