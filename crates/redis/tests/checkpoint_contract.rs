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
