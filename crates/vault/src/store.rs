//! Where wrapped data keys live: the [`KeyStore`] port and its in-memory adapter.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};

use crate::format::{self, KeyId};

/// A customer's data key sealed under the KEK (layout in the crate's README): safe to
/// store, useless without the KEK.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey(Vec<u8>);

impl WrappedKey {
    /// Checks the layout of bytes read back from a store.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, KeyStoreError> {
        if bytes.len() == format::WRAPPED_LEN
            && format::key_id(&bytes, format::WRAP_VERSION, format::WRAPPED_LEN).is_some()
        {
            Ok(Self(bytes))
        } else {
            Err(KeyStoreError::Corrupt(
                "stored wrapped key has the wrong layout",
            ))
        }
    }

    pub(crate) fn new_unchecked(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The bytes to store.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Which of the customer's data keys this is.
    pub fn key_id(&self) -> u64 {
        self.raw_key_id()
    }

    fn raw_key_id(&self) -> KeyId {
        format::key_id(&self.0, format::WRAP_VERSION, format::WRAPPED_LEN).unwrap_or_default()
    }
}

impl std::fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrappedKey")
            .field("key_id", &format_args!("{:016x}", self.raw_key_id()))
            .finish_non_exhaustive()
    }
}

/// A key store failed. Carries no key material and no contact data.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error(transparent)]
    Redis(#[from] churnguard_redis::StoreError),
    #[error("key store data is corrupt: {0}")]
    Corrupt(&'static str),
    #[error("customer id must be non-empty")]
    InvalidCustomer,
}

impl KeyStoreError {
    /// Connection trouble (retry later) rather than bad data.
    pub fn is_retriable(&self) -> bool {
        match self {
            KeyStoreError::Redis(e) => e.is_retriable(),
            KeyStoreError::Corrupt(_) | KeyStoreError::InvalidCustomer => false,
        }
    }
}

/// Wrapped data keys, one live key per customer, and a tombstone for each erased customer.
///
/// The one piece of state that replaying the log does not rebuild, by design.
pub trait KeyStore: Send + Sync {
    /// The customer's live wrapped key, if any.
    fn get(
        &self,
        customer: &str,
    ) -> impl Future<Output = Result<Option<WrappedKey>, KeyStoreError>> + Send;

    /// Stores `key` unless the customer already has a live key, atomically; returns the key
    /// in force afterwards (the caller's, or the one a concurrent caller stored first).
    fn put_if_absent(
        &self,
        customer: &str,
        key: WrappedKey,
    ) -> impl Future<Output = Result<WrappedKey, KeyStoreError>> + Send;

    /// Deletes the customer's live key and records a tombstone, atomically. Idempotent.
    /// A later `put_if_absent` stores a new key (with a new id); the erased one is gone.
    fn erase(&self, customer: &str) -> impl Future<Output = Result<(), KeyStoreError>> + Send;

    /// Whether the customer's key was ever erased (a tombstone exists).
    fn is_erased(&self, customer: &str)
    -> impl Future<Output = Result<bool, KeyStoreError>> + Send;
}

#[derive(Debug, Default)]
struct Entry {
    live: Option<WrappedKey>,
    erased: bool,
}

/// Wrapped keys in memory, for tests and the single-process mode. Losing the process loses
/// the keys, hence every sealed contact detail (never the history).
#[derive(Debug, Default)]
pub struct MemoryKeyStore {
    entries: Mutex<HashMap<String, Entry>>,
}

impl MemoryKeyStore {
    /// Everything the store holds, as bytes: for tests that search it for secrets.
    pub fn raw_contents(&self) -> Vec<Vec<u8>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        for (customer, entry) in entries.iter() {
            out.push(customer.as_bytes().to_vec());
            if let Some(key) = &entry.live {
                out.push(key.as_bytes().to_vec());
            }
        }
        out
    }
}

fn check(customer: &str) -> Result<(), KeyStoreError> {
    if customer.is_empty() {
        Err(KeyStoreError::InvalidCustomer)
    } else {
        Ok(())
    }
}

impl KeyStore for MemoryKeyStore {
    async fn get(&self, customer: &str) -> Result<Option<WrappedKey>, KeyStoreError> {
        check(customer)?;
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(entries.get(customer).and_then(|e| e.live.clone()))
    }

    async fn put_if_absent(
        &self,
        customer: &str,
        key: WrappedKey,
    ) -> Result<WrappedKey, KeyStoreError> {
        check(customer)?;
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.entry(customer.to_owned()).or_default();
        Ok(entry.live.get_or_insert(key).clone())
    }

    async fn erase(&self, customer: &str) -> Result<(), KeyStoreError> {
        check(customer)?;
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.entry(customer.to_owned()).or_default();
        entry.live = None;
        entry.erased = true;
        Ok(())
    }

    async fn is_erased(&self, customer: &str) -> Result<bool, KeyStoreError> {
        check(customer)?;
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(entries.get(customer).is_some_and(|e| e.erased))
    }
}

/// A shared store is a store (one store behind several vaults or tasks).
impl<K: KeyStore> KeyStore for std::sync::Arc<K> {
    fn get(
        &self,
        customer: &str,
    ) -> impl Future<Output = Result<Option<WrappedKey>, KeyStoreError>> + Send {
        (**self).get(customer)
    }

    fn put_if_absent(
        &self,
        customer: &str,
        key: WrappedKey,
    ) -> impl Future<Output = Result<WrappedKey, KeyStoreError>> + Send {
        (**self).put_if_absent(customer, key)
    }

    fn erase(&self, customer: &str) -> impl Future<Output = Result<(), KeyStoreError>> + Send {
        (**self).erase(customer)
    }

    fn is_erased(
        &self,
        customer: &str,
    ) -> impl Future<Output = Result<bool, KeyStoreError>> + Send {
        (**self).is_erased(customer)
    }
}
