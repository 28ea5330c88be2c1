#![doc = include_str!("../README.md")]

mod format;
mod kek;
mod redis_store;
mod store;

#[cfg(feature = "testing")]
pub mod contract;

pub use kek::{Kek, KekError};
pub use redis_store::{RedisKeyStore, key_key, tombstone_key};
pub use store::{KeyStore, KeyStoreError, MemoryKeyStore, WrappedKey};

/// Why sealing or opening failed. Never carries contact data or key material.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The key that sealed this blob was erased: the contact details are gone for good.
    /// Callers show "erased".
    #[error("the customer's contact details were erased")]
    Erased,
    /// The customer has no key and none was ever erased: the blob was not sealed for this
    /// customer, or the key store lost its keys (flushed, or restored from before the key
    /// was made). The contact details cannot be read.
    #[error("no key for this customer")]
    KeyMissing,
    /// Authentication failed: the blob was altered, or sealed for another customer.
    #[error("sealed contact data failed authentication (altered, or another customer's)")]
    Tampered,
    /// Not a sealed blob of a known format version.
    #[error("not a sealed contact blob")]
    Malformed,
    /// The customer's wrapped key does not open under this KEK (wrong KEK, or a key stored
    /// under another customer).
    #[error("the customer's data key does not unwrap under the configured KEK")]
    KeyUnwrap,
    /// The plaintext is beyond what one AEAD message may hold.
    #[error("plaintext too large to seal")]
    TooLarge,
    /// The operating system's random number generator failed.
    #[error("the OS random number generator failed")]
    Random,
    /// Customer ids must be non-empty.
    #[error("customer id must be non-empty")]
    InvalidCustomer,
    #[error("key store failed")]
    Store(#[source] KeyStoreError),
}

impl From<KeyStoreError> for VaultError {
    fn from(e: KeyStoreError) -> Self {
        match e {
            KeyStoreError::InvalidCustomer => VaultError::InvalidCustomer,
            e => VaultError::Store(e),
        }
    }
}

impl VaultError {
    /// Key-store trouble worth retrying (connection), as opposed to a final answer.
    pub fn is_retriable(&self) -> bool {
        matches!(self, VaultError::Store(e) if e.is_retriable())
    }

    /// The blob is intact but the key that sealed it is not available here: the
    /// customer's data key is wrapped under another KEK ([`VaultError::KeyUnwrap`]), or the
    /// key store no longer holds it ([`VaultError::KeyMissing`], or
    /// [`VaultError::Tampered`] once a new key replaced it). Unlike an erasure this is not
    /// final: with the original KEK or key store the details open again. Callers answer
    /// "unavailable", not a server error.
    pub fn is_key_unavailable(&self) -> bool {
        matches!(
            self,
            VaultError::KeyUnwrap | VaultError::KeyMissing | VaultError::Tampered
        )
    }
}

/// Seals and opens a customer's contact details under that customer's data key.
///
/// No data key is cached: every call reads the key store, so an erasure takes effect at once
/// in every process.
pub struct Vault<K: KeyStore> {
    kek: Kek,
    store: K,
}

impl<K: KeyStore> std::fmt::Debug for Vault<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("kek", &self.kek)
            .finish_non_exhaustive()
    }
}

fn check(customer: &str) -> Result<(), VaultError> {
    if customer.is_empty() {
        Err(VaultError::InvalidCustomer)
    } else {
        Ok(())
    }
}

impl<K: KeyStore> Vault<K> {
    pub fn new(kek: Kek, store: K) -> Self {
        Self { kek, store }
    }

    /// The key store (for health checks and tests).
    pub fn store(&self) -> &K {
        &self.store
    }

    /// The customer's data key and its id, made and stored on first use. Two first seals at
    /// once both end with the key that reached the store first.
    async fn dek_for_seal(&self, customer: &str) -> Result<(u64, format::Dek), VaultError> {
        let wrapped = match self.store.get(customer).await? {
            Some(wrapped) => wrapped,
            None => {
                let (key_id, dek) = format::new_dek()?;
                let ours = format::wrap(self.kek.bytes(), customer, key_id, &dek)?;
                let winner = self
                    .store
                    .put_if_absent(customer, WrappedKey::new_unchecked(ours))
                    .await?;
                if winner.key_id() == key_id {
                    return Ok((key_id, dek));
                }
                winner
            }
        };
        let dek = format::unwrap(self.kek.bytes(), customer, wrapped.as_bytes())?;
        Ok((wrapped.key_id(), dek))
    }

    /// `contact` sealed for `customer`: safe to put in events, projections, logs and the
    /// dead-letter topic. Makes the customer's data key on first use, and a new one after
    /// an erasure.
    pub async fn seal(&self, customer: &str, contact: &[u8]) -> Result<Vec<u8>, VaultError> {
        check(customer)?;
        let (key_id, dek) = self.dek_for_seal(customer).await?;
        format::seal_blob(&dek, key_id, customer, contact)
    }

    /// The contact details in a blob sealed for `customer`. [`VaultError::Erased`] when the
    /// key that sealed it was erased.
    pub async fn open(&self, customer: &str, blob: &[u8]) -> Result<Vec<u8>, VaultError> {
        check(customer)?;
        let key_id = format::blob_key_id(blob)?;
        match self.store.get(customer).await? {
            Some(wrapped) if wrapped.key_id() == key_id => {
                let dek = format::unwrap(self.kek.bytes(), customer, wrapped.as_bytes())?;
                format::open_blob(&dek, customer, blob)
            }
            // Not the live key. If the customer was ever erased, the blob's key is taken to be
            // the erased one (a foreign blob cannot be told apart, and stays unreadable).
            Some(_) if self.store.is_erased(customer).await? => Err(VaultError::Erased),
            Some(_) => Err(VaultError::Tampered),
            None if self.store.is_erased(customer).await? => Err(VaultError::Erased),
            None => Err(VaultError::KeyMissing),
        }
    }

    /// Crypto-shreds the customer's contact details: deletes the data key, so every blob
    /// sealed under it, in every copy of the log, projection and backup, is unreadable.
    /// Complaint history and statistics are untouched. Idempotent.
    pub async fn erase(&self, customer: &str) -> Result<(), VaultError> {
        check(customer)?;
        self.store.erase(customer).await?;
        Ok(())
    }

    /// The customer's live data key in the clear, for tests that check it is stored only
    /// wrapped.
    #[cfg(feature = "testing")]
    pub(crate) async fn live_dek(&self, customer: &str) -> Option<[u8; 32]> {
        let wrapped = self.store.get(customer).await.ok()??;
        let dek = format::unwrap(self.kek.bytes(), customer, wrapped.as_bytes()).ok()?;
        Some(*dek)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault() -> Vault<MemoryKeyStore> {
        Vault::new(Kek::from_bytes([7; 32]), MemoryKeyStore::default())
    }

    #[tokio::test]
    async fn blob_layout_is_header_nonce_ciphertext_tag() {
        let v = vault();
        let blob = v.seal("c1", b"hello").await.expect("seal");
        assert_eq!(blob.len(), 1 + 8 + 24 + 5 + 16);
        assert_eq!(blob[0], 1, "format version");
        let wrapped = v.store().get("c1").await.expect("get").expect("key");
        assert_eq!(&blob[1..9], &wrapped.key_id().to_be_bytes());
        assert_eq!(wrapped.as_bytes().len(), 81);
    }

    #[tokio::test]
    async fn two_seals_of_one_value_differ() {
        let v = vault();
        let a = v.seal("c1", b"same").await.expect("seal");
        let b = v.seal("c1", b"same").await.expect("seal");
        assert_ne!(a, b, "random nonce per seal");
    }

    #[tokio::test]
    async fn malformed_and_unknown_version_blobs_are_rejected() {
        let v = vault();
        let mut blob = v.seal("c1", b"x").await.expect("seal");
        assert!(matches!(
            v.open("c1", &blob[..20]).await,
            Err(VaultError::Malformed)
        ));
        blob[0] = 2;
        assert!(matches!(
            v.open("c1", &blob).await,
            Err(VaultError::Malformed)
        ));
        assert!(matches!(
            v.open("c1", b"").await,
            Err(VaultError::Malformed)
        ));
    }

    #[tokio::test]
    async fn empty_customer_ids_are_refused() {
        let v = vault();
        assert!(matches!(
            v.seal("", b"x").await,
            Err(VaultError::InvalidCustomer)
        ));
        assert!(matches!(
            v.erase("").await,
            Err(VaultError::InvalidCustomer)
        ));
    }

    #[tokio::test]
    async fn a_blob_for_a_customer_without_a_key_reports_the_key_missing() {
        let v = vault();
        let blob = v.seal("c1", b"x").await.expect("seal");
        assert!(matches!(
            v.open("c2", &blob).await,
            Err(VaultError::KeyMissing)
        ));
    }

    #[tokio::test]
    async fn details_sealed_under_another_kek_or_a_lost_key_are_unavailable_not_erased() {
        let store = std::sync::Arc::new(MemoryKeyStore::default());
        let a = Vault::new(Kek::from_bytes([7; 32]), std::sync::Arc::clone(&store));
        let b = Vault::new(Kek::from_bytes([8; 32]), std::sync::Arc::clone(&store));
        let blob = a.seal("c1", b"+44 7700 900123").await.expect("seal");
        // Key A sealed it; key B (a restart with a new KEK) cannot unwrap the data key.
        let e = b.open("c1", &blob).await.expect_err("another KEK");
        assert!(matches!(e, VaultError::KeyUnwrap), "{e:?}");
        assert!(e.is_key_unavailable() && !e.is_retriable());
        // Key A still can: nothing was lost.
        assert_eq!(a.open("c1", &blob).await.expect("open"), b"+44 7700 900123");

        // The key store lost the key (an emptied Redis): missing, then replaced by the
        // next seal's new key. Both unavailable; neither is an erasure.
        let lost = Vault::new(Kek::from_bytes([7; 32]), MemoryKeyStore::default());
        let e = lost.open("c1", &blob).await.expect_err("no key");
        assert!(matches!(e, VaultError::KeyMissing) && e.is_key_unavailable());
        lost.seal("c1", b"new details").await.expect("a new key");
        let e = lost.open("c1", &blob).await.expect_err("another key");
        assert!(matches!(e, VaultError::Tampered) && e.is_key_unavailable());

        // An erasure and a broken blob are other answers.
        a.erase("c1").await.expect("erase");
        let e = a.open("c1", &blob).await.expect_err("erased");
        assert!(matches!(e, VaultError::Erased) && !e.is_key_unavailable());
        assert!(!VaultError::Malformed.is_key_unavailable());
    }

    #[tokio::test]
    async fn errors_and_debug_output_carry_no_secrets() {
        let v = vault();
        let shown = format!("{v:?}");
        assert!(!shown.contains("7, 7"), "{shown}");
        let blob = v.seal("c1", b"+44 7700 900123").await.expect("seal");
        let err = v
            .open("c1", &blob[..blob.len() - 1])
            .await
            .expect_err("cut");
        assert!(!format!("{err:?} {err}").contains("7700"));
    }
}
