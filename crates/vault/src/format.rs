//! The two byte layouts this crate writes, and the associated data that binds them.
//!
//! A **sealed blob** (what goes into events, projections and the dead-letter topic):
//!
//! ```text
//! offset  size   field
//! 0       1      format version, 0x01
//! 1       8      key id (u64, big-endian) of the customer's data key that sealed it
//! 9       24     XChaCha20 nonce, random per seal
//! 33      n+16   XChaCha20-Poly1305 ciphertext of the n plaintext bytes, then the tag
//! ```
//!
//! Associated data: `"churnguard-vault/contact/v1" ‖ bytes 0..9 ‖ customer id (UTF-8)`, so
//! the version and key id are authenticated and a blob opened as another customer fails.
//!
//! A **wrapped key** (what the key store holds for a customer):
//!
//! ```text
//! offset  size   field
//! 0       1      format version, 0x01
//! 1       8      key id (u64, big-endian), random per data key
//! 9       24     XChaCha20 nonce, random per wrap
//! 33      48     the 32-byte data key sealed under the KEK, then the 16-byte tag
//! ```
//!
//! Associated data: `"churnguard-vault/dek/v1" ‖ bytes 0..9 ‖ customer id (UTF-8)`, so a
//! wrapped key copied to another customer's slot does not unwrap.

use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::VaultError;

pub(crate) const BLOB_VERSION: u8 = 1;
pub(crate) const WRAP_VERSION: u8 = 1;
pub(crate) const HEADER: usize = 1 + 8;
pub(crate) const NONCE: usize = 24;
pub(crate) const TAG: usize = 16;
/// Length of a wrapped key.
pub(crate) const WRAPPED_LEN: usize = HEADER + NONCE + 32 + TAG;

const BLOB_LABEL: &[u8] = b"churnguard-vault/contact/v1";
const WRAP_LABEL: &[u8] = b"churnguard-vault/dek/v1";

/// A customer's data key in the clear: only ever in memory, wiped on drop.
pub(crate) type Dek = Zeroizing<[u8; 32]>;

/// Identifies one data key of one customer; a new one after every erasure.
pub(crate) type KeyId = u64;

fn header(version: u8, key_id: KeyId) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[0] = version;
    h[1..].copy_from_slice(&key_id.to_be_bytes());
    h
}

fn aad(label: &[u8], header: &[u8], customer: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(label.len() + header.len() + customer.len());
    aad.extend_from_slice(label);
    aad.extend_from_slice(header);
    aad.extend_from_slice(customer.as_bytes());
    aad
}

/// Reads the key id of a blob or wrapped key whose first byte is `version`.
pub(crate) fn key_id(bytes: &[u8], version: u8, min_len: usize) -> Option<KeyId> {
    if bytes.len() < min_len || bytes[0] != version {
        return None;
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[1..HEADER]);
    Some(KeyId::from_be_bytes(id))
}

fn random<T: Generate>() -> Result<T, VaultError> {
    T::try_generate().map_err(|_| VaultError::Random)
}

fn cipher(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.into())
}

/// Encrypts `plaintext` under `key` as `header ‖ nonce ‖ ciphertext ‖ tag`.
fn seal_raw(
    key: &[u8; 32],
    label: &[u8],
    header: [u8; HEADER],
    customer: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, VaultError> {
    let nonce: XNonce = random()?;
    let aad = aad(label, &header, customer);
    let ciphertext = cipher(key)
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| VaultError::TooLarge)?;
    let mut out = Vec::with_capacity(HEADER + NONCE + ciphertext.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Opens `header ‖ nonce ‖ ciphertext ‖ tag`; `None` when authentication fails.
fn open_raw(key: &[u8; 32], label: &[u8], bytes: &[u8], customer: &str) -> Option<Vec<u8>> {
    if bytes.len() < HEADER + NONCE + TAG {
        return None;
    }
    let (head, rest) = bytes.split_at(HEADER);
    let (nonce, ciphertext) = rest.split_at(NONCE);
    let nonce = XNonce::try_from(nonce).ok()?;
    let aad = aad(label, head, customer);
    cipher(key)
        .decrypt(
            &nonce,
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .ok()
}

/// A fresh data key and its id.
pub(crate) fn new_dek() -> Result<(KeyId, Dek), VaultError> {
    Ok((random()?, Zeroizing::new(random()?)))
}

/// The data key sealed under the KEK, bound to `customer` and `key_id`.
pub(crate) fn wrap(
    kek: &[u8; 32],
    customer: &str,
    key_id: KeyId,
    dek: &Dek,
) -> Result<Vec<u8>, VaultError> {
    seal_raw(
        kek,
        WRAP_LABEL,
        header(WRAP_VERSION, key_id),
        customer,
        &dek[..],
    )
}

/// The data key inside a wrapped key, if the KEK and the customer match.
pub(crate) fn unwrap(kek: &[u8; 32], customer: &str, wrapped: &[u8]) -> Result<Dek, VaultError> {
    if wrapped.len() != WRAPPED_LEN || wrapped[0] != WRAP_VERSION {
        return Err(VaultError::KeyUnwrap);
    }
    let plain =
        Zeroizing::new(open_raw(kek, WRAP_LABEL, wrapped, customer).ok_or(VaultError::KeyUnwrap)?);
    let mut dek = Zeroizing::new([0u8; 32]);
    if plain.len() != 32 {
        return Err(VaultError::KeyUnwrap);
    }
    dek.copy_from_slice(&plain);
    Ok(dek)
}

/// `plaintext` sealed under the customer's data key.
pub(crate) fn seal_blob(
    dek: &Dek,
    key_id: KeyId,
    customer: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, VaultError> {
    seal_raw(
        dek,
        BLOB_LABEL,
        header(BLOB_VERSION, key_id),
        customer,
        plaintext,
    )
}

/// The key id a sealed blob names, or `Malformed` when it is not a sealed blob.
pub(crate) fn blob_key_id(blob: &[u8]) -> Result<KeyId, VaultError> {
    key_id(blob, BLOB_VERSION, HEADER + NONCE + TAG).ok_or(VaultError::Malformed)
}

/// The plaintext of a sealed blob; `Tampered` when authentication fails.
pub(crate) fn open_blob(dek: &Dek, customer: &str, blob: &[u8]) -> Result<Vec<u8>, VaultError> {
    open_raw(dek, BLOB_LABEL, blob, customer).ok_or(VaultError::Tampered)
}
