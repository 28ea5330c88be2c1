//! Wrapped data keys in Redis.
//!
//! Layout: `vk:{<customer>}` holds the live wrapped key (81 binary bytes);
//! `vk:{<customer>}:erased` is the tombstone (`"1"`). Both carry the customer as a hash tag,
//! so on a cluster they share one slot and one script changes both atomically.

use churnguard_redis::{RedisConnection, RedisSettings, StoreError};

use crate::store::{KeyStore, KeyStoreError, WrappedKey};

/// Stores the caller's key unless one is live; returns the key in force.
const PUT_IF_ABSENT: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  return ARGV[1]
end
return redis.call('GET', KEYS[1])
";

/// Tombstone first, then the key goes.
const ERASE: &str = r"
redis.call('SET', KEYS[2], '1')
return redis.call('DEL', KEYS[1])
";

/// The key of a customer's live wrapped key.
pub fn key_key(customer: &str) -> String {
    format!("vk:{{{customer}}}")
}

/// The key of a customer's tombstone.
pub fn tombstone_key(customer: &str) -> String {
    format!("vk:{{{customer}}}:erased")
}

/// Wrapped data keys in Redis (in production a Redis, or at least a database index, of
/// their own: see the crate's README).
#[derive(Clone)]
pub struct RedisKeyStore {
    conn: RedisConnection,
    put_if_absent: redis::Script,
    erase: redis::Script,
}

impl std::fmt::Debug for RedisKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKeyStore").finish_non_exhaustive()
    }
}

fn command(command: &'static str) -> impl FnOnce(redis::RedisError) -> KeyStoreError {
    move |source| KeyStoreError::Redis(StoreError::Command { command, source })
}

fn check(customer: &str) -> Result<(), KeyStoreError> {
    // An empty hash tag would hash the whole key, splitting a customer's keys across slots.
    if customer.is_empty() {
        Err(KeyStoreError::InvalidCustomer)
    } else {
        Ok(())
    }
}

impl RedisKeyStore {
    /// Uses an existing connection.
    pub fn new(conn: RedisConnection) -> Self {
        Self {
            conn,
            put_if_absent: redis::Script::new(PUT_IF_ABSENT),
            erase: redis::Script::new(ERASE),
        }
    }

    /// Connects to a single Redis or a cluster, as `settings` say.
    pub async fn connect(settings: &RedisSettings) -> Result<Self, KeyStoreError> {
        Ok(Self::new(settings.connect().await?))
    }
}

impl KeyStore for RedisKeyStore {
    async fn get(&self, customer: &str) -> Result<Option<WrappedKey>, KeyStoreError> {
        check(customer)?;
        let mut conn = self.conn.clone();
        let raw: Option<Vec<u8>> = redis::cmd("GET")
            .arg(key_key(customer))
            .query_async(&mut conn)
            .await
            .map_err(command("GET"))?;
        raw.map(WrappedKey::from_bytes).transpose()
    }

    async fn put_if_absent(
        &self,
        customer: &str,
        key: WrappedKey,
    ) -> Result<WrappedKey, KeyStoreError> {
        check(customer)?;
        let mut conn = self.conn.clone();
        let raw: Option<Vec<u8>> = self
            .put_if_absent
            .key(key_key(customer))
            .arg(key.as_bytes())
            .invoke_async(&mut conn)
            .await
            .map_err(command("EVALSHA put_if_absent"))?;
        WrappedKey::from_bytes(raw.ok_or(KeyStoreError::Corrupt("SET NX then GET found nothing"))?)
    }

    async fn erase(&self, customer: &str) -> Result<(), KeyStoreError> {
        check(customer)?;
        let mut conn = self.conn.clone();
        let _deleted: i64 = self
            .erase
            .key(key_key(customer))
            .key(tombstone_key(customer))
            .invoke_async(&mut conn)
            .await
            .map_err(command("EVALSHA erase"))?;
        Ok(())
    }

    async fn is_erased(&self, customer: &str) -> Result<bool, KeyStoreError> {
        check(customer)?;
        let mut conn = self.conn.clone();
        let n: i64 = redis::cmd("EXISTS")
            .arg(tombstone_key(customer))
            .query_async(&mut conn)
            .await
            .map_err(command("EXISTS"))?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_customers_keys_share_a_cluster_slot() {
        assert_eq!(key_key("cust-1"), "vk:{cust-1}");
        assert_eq!(tombstone_key("cust-1"), "vk:{cust-1}:erased");
    }
}
