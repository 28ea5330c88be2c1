//! The key-encryption key (KEK): 32 bytes from configuration, never stored with the keys it
//! wraps, never logged.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use zeroize::Zeroizing;

/// The key-encryption key. Wraps every customer's data key; comes from a secret manager
/// through an environment variable or a mounted file. `Debug` prints no key material, and
/// the bytes are wiped from memory when the value is dropped.
#[derive(Clone)]
pub struct Kek(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

/// Why a KEK could not be loaded. Never carries the configured value.
#[derive(Debug, thiserror::Error)]
pub enum KekError {
    #[error("environment variable {0} is not set (or not UTF-8)")]
    MissingEnv(String),
    #[error("reading the KEK file {path}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the KEK must be 32 bytes, written as 64 hex digits or 44 base64 characters")]
    Invalid,
}

impl Kek {
    /// A KEK from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// 32 bytes written as 64 hex digits or as standard base64 (44 characters, padded).
    /// Surrounding whitespace (a file's trailing newline) is ignored.
    pub fn parse(text: &str) -> Result<Self, KekError> {
        let text = text.trim();
        let mut key = Zeroizing::new([0u8; 32]);
        if text.len() == 64 && hex::decode_to_slice(text, &mut key[..]).is_ok() {
            return Ok(Self(key));
        }
        // Room for any decoded length, so a wrong length is reported, not a panic.
        let mut buf = Zeroizing::new([0u8; 48]);
        match base64::engine::general_purpose::STANDARD.decode_slice(text, &mut buf[..]) {
            Ok(32) => {
                key.copy_from_slice(&buf[..32]);
                Ok(Self(key))
            }
            _ => Err(KekError::Invalid),
        }
    }

    /// The KEK from environment variable `name`.
    pub fn from_env(name: &str) -> Result<Self, KekError> {
        let value =
            Zeroizing::new(std::env::var(name).map_err(|_| KekError::MissingEnv(name.to_owned()))?);
        Self::parse(&value)
    }

    /// The KEK from a file (a mounted secret), hex or base64.
    pub fn from_file(path: &Path) -> Result<Self, KekError> {
        let value =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KekError::File {
                    path: path.to_owned(),
                    source,
                })?,
            );
        Self::parse(&value)
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BYTES: [u8; 32] = [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
        25, 26, 27, 28, 29, 30, 31,
    ];

    #[test]
    fn parses_hex_and_base64() {
        let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
        assert_eq!(Kek::parse(hex).expect("hex").bytes(), &BYTES);
        let b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        assert_eq!(Kek::parse(b64).expect("base64").bytes(), &BYTES);
    }

    #[test]
    fn rejects_wrong_lengths_and_garbage() {
        for bad in [
            "",
            "00",
            "zz",
            &"ab".repeat(33),
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==",
        ] {
            assert!(matches!(Kek::parse(bad), Err(KekError::Invalid)), "{bad:?}");
        }
    }

    #[test]
    fn debug_never_shows_the_key() {
        let kek = Kek::from_bytes([0xAB; 32]);
        let shown = format!("{kek:?} {:?}", Kek::parse("x").expect_err("invalid"));
        assert!(!shown.to_lowercase().contains("abab"), "{shown}");
        assert!(!shown.contains("q6ur"), "{shown}");
        assert_eq!(format!("{kek:?}"), "Kek(<redacted>)");
    }

    #[test]
    fn reads_a_file_and_reports_a_missing_one() {
        let dir = std::env::temp_dir().join(format!("cg-vault-kek-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("kek");
        std::fs::write(&path, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").expect("write");
        assert_eq!(Kek::from_file(&path).expect("file").bytes(), &BYTES);
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert!(matches!(Kek::from_file(&path), Err(KekError::File { .. })));
        assert!(matches!(
            Kek::from_env("CHURNGUARD_VAULT_TEST_SURELY_UNSET"),
            Err(KekError::MissingEnv(_))
        ));
    }
}
