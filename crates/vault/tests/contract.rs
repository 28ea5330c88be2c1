//! The key-store contract, once in memory and once against a real `redis-server`, and the
//! canary: a phone number sealed and searched for in everything that is stored.

use churnguard_redis::{RedisConnection, RedisSettings};
use churnguard_testkit::RedisServer;
use churnguard_vault::{Kek, MemoryKeyStore, RedisKeyStore, Vault, VaultError, contract};

const CANARY: &[u8] = b"+44 7700 900123";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The canary and its digits alone, as they might be stored.
fn canaries() -> [&'static [u8]; 2] {
    [CANARY, b"7700900123"]
}

async fn redis_store(redis: &RedisServer) -> RedisKeyStore {
    RedisKeyStore::connect(&RedisSettings {
        url: redis.url(),
        ..RedisSettings::default()
    })
    .await
    .expect("connect")
}

/// Every key name, value (GET) and serialized value (DUMP) in the Redis.
async fn redis_raw_contents(redis: &RedisServer) -> Vec<Vec<u8>> {
    let mut conn = RedisConnection::single(&redis.url())
        .await
        .expect("connect");
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    assert!(!keys.is_empty(), "the store holds something");
    let mut out = Vec::new();
    for key in keys {
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("GET");
        let dump: Option<Vec<u8>> = redis::cmd("DUMP")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("DUMP");
        out.push(key);
        out.extend(value);
        out.extend(dump);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_key_store_passes_the_contract() {
    contract::run_all(MemoryKeyStore::default()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_key_store_passes_the_contract() {
    let redis = RedisServer::start();
    contract::run_all(redis_store(&redis).await).await;
}

#[tokio::test]
async fn canary_phone_is_nowhere_in_memory() {
    let kek = [0x11; 32];
    let vault = Vault::new(Kek::from_bytes(kek), MemoryKeyStore::default());
    let sealed = vault.seal("cust-canary", CANARY).await.expect("seal");
    let mut stored = vault.store().raw_contents();
    assert!(!stored.is_empty());
    stored.push(sealed.clone());
    for bytes in &stored {
        for canary in canaries() {
            assert!(!contains(bytes, canary), "canary found in stored bytes");
        }
        assert!(!contains(bytes, &kek[..8]), "KEK found in stored bytes");
    }
    assert_eq!(
        vault.open("cust-canary", &sealed).await.expect("open"),
        CANARY
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn canary_phone_is_nowhere_in_redis_and_erasure_shreds_it() {
    let redis = RedisServer::start();
    let kek = [0x22; 32];
    let vault = Vault::new(Kek::from_bytes(kek), redis_store(&redis).await);
    let sealed = vault.seal("cust-canary", CANARY).await.expect("seal");
    let mut stored = redis_raw_contents(&redis).await;
    stored.push(sealed.clone());
    for bytes in &stored {
        for canary in canaries() {
            assert!(
                !contains(bytes, canary),
                "canary found in Redis or the blob"
            );
        }
        assert!(!contains(bytes, &kek[..8]), "KEK found in Redis");
    }
    assert_eq!(
        vault.open("cust-canary", &sealed).await.expect("open"),
        CANARY
    );

    vault.erase("cust-canary").await.expect("erase");
    let err = vault
        .open("cust-canary", &sealed)
        .await
        .expect_err("erased");
    assert!(matches!(err, VaultError::Erased), "{err:?}");
    // Only the tombstone is left, and it says nothing about the key.
    let mut conn = RedisConnection::single(&redis.url())
        .await
        .expect("connect");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    assert_eq!(keys, vec!["vk:{cust-canary}:erased".to_owned()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_redis_is_a_retriable_error_not_erased() {
    let redis = RedisServer::start();
    let vault = Vault::new(Kek::from_bytes([0x33; 32]), redis_store(&redis).await);
    let sealed = vault.seal("c", b"x").await.expect("seal");
    drop(redis);
    let err = vault.open("c", &sealed).await.expect_err("redis is gone");
    assert!(err.is_retriable(), "{err:?}");
    assert!(!matches!(err, VaultError::Erased));
}
