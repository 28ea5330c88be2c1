//! The partition-lease contract, once in memory and once against a real `redis-server`.

use churnguard_redis::leases::contract;
use churnguard_redis::{MemoryLeases, RedisLeases, RedisSettings};
use churnguard_testkit::RedisServer;

#[tokio::test]
async fn memory_leases_pass_the_contract() {
    contract::run_all(&MemoryLeases::default()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_leases_pass_the_contract() {
    let redis = RedisServer::start();
    let conn = RedisSettings {
        url: redis.url(),
        ..RedisSettings::default()
    }
    .connect()
    .await
    .expect("connect");
    contract::run_all(&RedisLeases::new(conn)).await;
}
