//! The contract every [`KeyStore`] adapter passes through a [`Vault`]: run once in memory
//! and once against a real Redis by this crate's tests.

use std::sync::Arc;

use crate::{Kek, KeyStore, Vault, VaultError, WrappedKey};

/// The KEK the contract seals under.
pub const KEK: [u8; 32] = [0x5A; 32];

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn key_id(blob: &[u8]) -> u64 {
    crate::format::blob_key_id(blob).expect("a sealed blob")
}

async fn wrapped(vault: &Vault<impl KeyStore>, customer: &str) -> WrappedKey {
    vault
        .store()
        .get(customer)
        .await
        .expect("get")
        .expect("a live key")
}

/// What the first clause sealed, for the later ones.
struct Sealed {
    a1: Vec<u8>,
    empty: Vec<u8>,
    b1: Vec<u8>,
    alice_dek: [u8; 32],
    bob_dek: [u8; 32],
}

/// Runs every clause against an empty `store`.
pub async fn run_all<K: KeyStore + 'static>(store: K) {
    let store = Arc::new(store);
    let vault = Arc::new(Vault::new(Kek::from_bytes(KEK), Arc::clone(&store)));
    let sealed = seals_open_only_for_their_customer(&vault).await;
    wrapped_keys_are_bound_to_customer_and_kek(&vault, &store, &sealed).await;
    concurrent_first_seals_end_with_one_key(&vault).await;
    put_if_absent_keeps_the_first_key(&store).await;
    erasure_shreds_every_earlier_blob(&vault, &store, &sealed).await;
}

/// Round trip (the empty value too), a key per customer, and a blob that was moved or
/// has any bit flipped does not open.
async fn seals_open_only_for_their_customer<K: KeyStore>(vault: &Vault<Arc<K>>) -> Sealed {
    let alice_phone = b"+44 7700 900001".as_slice();
    // Round trip, including the empty value.
    let a1 = vault.seal("alice", alice_phone).await.expect("seal");
    assert_eq!(vault.open("alice", &a1).await.expect("open"), alice_phone);
    let empty = vault.seal("alice", b"").await.expect("seal empty");
    assert!(vault.open("alice", &empty).await.expect("open").is_empty());
    assert!(
        !contains(&a1, alice_phone),
        "sealed bytes hold no plaintext"
    );

    // Two customers, two keys.
    let b1 = vault.seal("bob", b"bob@example.com").await.expect("seal");
    let (alice_dek, bob_dek) = (
        vault.live_dek("alice").await.expect("alice's key"),
        vault.live_dek("bob").await.expect("bob's key"),
    );
    assert_ne!(alice_dek, bob_dek, "each customer has a key of their own");
    assert_ne!(key_id(&a1), key_id(&b1));

    // A blob moved to another customer does not open.
    assert!(
        matches!(vault.open("bob", &a1).await, Err(VaultError::Tampered)),
        "alice's blob opened as bob"
    );

    // Any flipped bit anywhere fails.
    for i in 0..a1.len() {
        let mut t = a1.clone();
        t[i] ^= 0x01;
        let err = vault
            .open("alice", &t)
            .await
            .expect_err("tampered blob opened");
        assert!(
            matches!(
                err,
                VaultError::Tampered | VaultError::Malformed | VaultError::KeyMissing
            ),
            "byte {i}: {err:?}"
        );
    }

    Sealed {
        a1,
        empty,
        b1,
        alice_dek,
        bob_dek,
    }
}

/// Wrapped keys hold no data key and no KEK, and are bound to their customer and KEK.
async fn wrapped_keys_are_bound_to_customer_and_kek<K: KeyStore + 'static>(
    vault: &Vault<Arc<K>>,
    store: &Arc<K>,
    sealed: &Sealed,
) {
    let Sealed {
        a1,
        alice_dek,
        bob_dek,
        ..
    } = sealed;
    let (alice_dek, bob_dek) = (*alice_dek, *bob_dek);
    // Wrapped keys: no data key, no KEK inside; bound to their customer and to the KEK.
    for (customer, dek) in [("alice", alice_dek), ("bob", bob_dek)] {
        let w = wrapped(vault, customer).await;
        assert!(
            !contains(w.as_bytes(), &dek),
            "{customer}'s data key stored in the clear"
        );
        for chunk in dek.chunks(8).chain(KEK.chunks(8)) {
            assert!(
                !contains(w.as_bytes(), chunk),
                "{customer}: key bytes leaked"
            );
        }
    }
    let alice_wrapped = wrapped(vault, "alice").await;
    store
        .put_if_absent("carol", alice_wrapped.clone())
        .await
        .expect("copy alice's wrapped key to carol");
    assert!(
        matches!(vault.open("carol", a1).await, Err(VaultError::KeyUnwrap)),
        "a wrapped key copied to another customer does not unwrap"
    );
    let other_kek = Vault::new(Kek::from_bytes([0xA5; 32]), Arc::clone(store));
    assert!(matches!(
        other_kek.open("alice", a1).await,
        Err(VaultError::KeyUnwrap)
    ));
}

/// Concurrent first seals for one customer all end with one key.
async fn concurrent_first_seals_end_with_one_key<K: KeyStore + 'static>(
    vault: &Arc<Vault<Arc<K>>>,
) {
    // Concurrent first seals for one customer all end with one key.
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (vault, barrier) = (Arc::clone(vault), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                let contact = format!("dave-{i}@example.com");
                let blob = vault.seal("dave", contact.as_bytes()).await.expect("seal");
                (contact, blob)
            })
        })
        .collect();
    let mut daves = Vec::new();
    for t in tasks {
        daves.push(t.await.expect("task"));
    }
    let dave_key = wrapped(vault, "dave").await.key_id();
    for (contact, blob) in &daves {
        assert_eq!(
            key_id(blob),
            dave_key,
            "every racer sealed with the stored key"
        );
        assert_eq!(
            vault.open("dave", blob).await.expect("open"),
            contact.as_bytes()
        );
    }
}

/// put_if_absent itself: the first key stored stays, whoever comes second.
async fn put_if_absent_keeps_the_first_key<K: KeyStore>(store: &Arc<K>) {
    // put_if_absent itself: the first key stored stays, whoever comes second.
    let fresh = |id: u64| {
        let (_, dek) = crate::format::new_dek().expect("random");
        WrappedKey::new_unchecked(crate::format::wrap(&KEK, "frank", id, &dek).expect("wrap"))
    };
    let (first, second) = (fresh(1), fresh(2));
    assert_eq!(
        store
            .put_if_absent("frank", first.clone())
            .await
            .expect("put"),
        first
    );
    assert_eq!(
        store.put_if_absent("frank", second).await.expect("put"),
        first,
        "a second put_if_absent returns the first key"
    );
    assert_eq!(store.get("frank").await.expect("get"), Some(first));
}

/// Erasure shreds every earlier blob, is idempotent and touches no one else; sealing
/// after it makes a new key; erasing a customer who never had one leaves a tombstone.
async fn erasure_shreds_every_earlier_blob<K: KeyStore>(
    vault: &Vault<Arc<K>>,
    store: &Arc<K>,
    sealed: &Sealed,
) {
    let Sealed {
        a1,
        empty,
        b1,
        alice_dek,
        ..
    } = sealed;
    let alice_dek = *alice_dek;
    // Erasure shreds every earlier blob; it is idempotent and touches no one else.
    let a2 = vault.seal("alice", b"1 High Street").await.expect("seal");
    assert!(!store.is_erased("alice").await.expect("is_erased"));
    vault.erase("alice").await.expect("erase");
    vault.erase("alice").await.expect("erase again");
    assert!(store.is_erased("alice").await.expect("is_erased"));
    assert!(
        store.get("alice").await.expect("get").is_none(),
        "key deleted"
    );
    for blob in [a1, empty, &a2] {
        assert!(
            matches!(vault.open("alice", blob).await, Err(VaultError::Erased)),
            "an erased customer's blob opened"
        );
    }
    assert_eq!(
        vault.open("bob", b1).await.expect("bob unaffected"),
        b"bob@example.com"
    );

    // Sealing after erasure makes a new key; the old blobs stay erased.
    let a3 = vault.seal("alice", b"+44 7700 900002").await.expect("seal");
    assert_eq!(
        vault.open("alice", &a3).await.expect("open"),
        b"+44 7700 900002"
    );
    assert_ne!(key_id(&a3), key_id(a1), "a new key after erasure");
    assert_ne!(vault.live_dek("alice").await.expect("new key"), alice_dek);
    for blob in [a1, &a2] {
        assert!(matches!(
            vault.open("alice", blob).await,
            Err(VaultError::Erased)
        ));
    }

    // Erasing a customer who never had a key is fine, and leaves a tombstone.
    vault.erase("erin").await.expect("erase unknown");
    assert!(store.is_erased("erin").await.expect("is_erased"));
    assert!(matches!(
        vault.open("erin", b1).await,
        Err(VaultError::Erased)
    ));
    let e1 = vault.seal("erin", b"erin").await.expect("seal after erase");
    assert_eq!(vault.open("erin", &e1).await.expect("open"), b"erin");
}
