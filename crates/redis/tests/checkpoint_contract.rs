//! The checkpoint contract, once in memory and once against a real `redis-server`.

use churnguard_redis::{
    CheckpointStore, MemoryCheckpoints, RedisCheckpoints, RedisSettings, StoreError,
    checkpoint_key, contract,
};
use churnguard_testkit::RedisServer;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

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

/// What a checkpoint key may hold after a fault or a hand edit: offsets, offsets with a
/// character changed or junk around them, numbers in other notations, and more digits
/// than any offset.
fn stored_values() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,6}",
        "[0-9]{15,22}",
        ("[0-9]{1,6}", any::<prop::sample::Index>(), any::<char>()).prop_map(|(s, i, c)| {
            let mut chars: Vec<char> = s.chars().collect();
            let at = i.index(chars.len());
            chars[at] = c;
            chars.into_iter().collect()
        }),
        ("[ +\\-.eEx_a-z]{1,2}", "[0-9]{1,6}", any::<bool>()).prop_map(|(junk, digits, before)| {
            if before {
                format!("{junk}{digits}")
            } else {
                format!("{digits}{junk}")
            }
        }),
        prop::sample::select(vec![
            "", " ", "-1", "+7", " 7", "7 ", "1e3", "0x10", "12.0", "NaN", "inf", "٣",
        ])
        .prop_map(str::to_owned),
    ]
}

/// A checkpoint is a decimal offset and nothing else. Whatever else its key holds,
/// loading it is an error that quotes it, and advancing it is an error that leaves it as
/// it was: never read as another offset, never overwritten. What is an offset loads as
/// itself and advances as any other.
#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_checkpoint_is_refused_and_left_as_it_is() {
    let redis = RedisServer::start();
    let settings = RedisSettings {
        url: redis.url(),
        ..RedisSettings::default()
    };
    let store = RedisCheckpoints::connect(&settings).await.expect("connect");
    let mut conn = settings.connect().await.expect("connect");
    let mut runner = TestRunner::new(Config::default());
    let values = stored_values();
    let (mut offsets, mut corrupt) = (0, 0);
    for partition in 0..256u32 {
        let raw = values.new_tree(&mut runner).expect("a value").current();
        let key = checkpoint_key("checker", "purchases.v1", partition);
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(&raw)
            .query_async(&mut conn)
            .await
            .expect("SET");
        let is_digits = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
        let offset = raw.parse::<u64>().ok().filter(|_| is_digits);
        let loaded = store.load("checker", "purchases.v1", partition).await;
        let advanced = store.advance("checker", "purchases.v1", partition, 5).await;
        let now: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("GET");
        match offset {
            Some(n) => {
                offsets += 1;
                assert_eq!(loaded.expect("an offset loads"), Some(n), "{raw:?}");
                if raw.len() <= 15 {
                    assert_eq!(advanced.expect("an offset advances"), n.max(5), "{raw:?}");
                    continue;
                }
                // Past what the script's numbers hold exactly (no log gets there):
                // refused as well.
                let e = advanced.expect_err("refused");
                assert!(
                    format!("{e:?}").contains("stored checkpoint is not an offset"),
                    "{raw:?}: {e:?}"
                );
            }
            None => {
                corrupt += 1;
                match loaded {
                    Err(StoreError::Corrupt(quoted)) => assert_eq!(quoted, raw),
                    other => panic!("{raw:?} loaded as {other:?}"),
                }
                let e = advanced.expect_err("a corrupt checkpoint is not advanced");
                assert!(
                    format!("{e:?}").contains("stored checkpoint is not an offset"),
                    "{raw:?}: {e:?}"
                );
            }
        }
        assert_eq!(now.as_deref(), Some(raw.as_str()), "left as it was");
    }
    eprintln!("checkpoints: {offsets} offsets, {corrupt} corrupt values, each refused");
    assert!(offsets > 0 && corrupt > 0);
}
