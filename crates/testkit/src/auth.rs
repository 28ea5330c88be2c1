//! Credentials made at test time for servers that require identities: a JWT issuer
//! with an HS256 key (the file `auth.jwt.key_file` names) that mints tokens for any role
//! and stores, and store tokens written to a file by their SHA-256, as
//! `auth.store_tokens_file` expects.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// The `iss` of the tokens a [`TestIssuer`] mints (`auth.jwt.issuer`).
pub const ISSUER: &str = "https://id.churnguard.test";
/// The `aud` of the tokens a [`TestIssuer`] mints (`auth.jwt.audience`).
pub const AUDIENCE: &str = "churnguard";

/// An identity provider for one test: its files live as long as it does.
#[derive(Debug)]
pub struct TestIssuer {
    dir: TempDir,
    secret: Vec<u8>,
}

impl Default for TestIssuer {
    fn default() -> Self {
        Self::new()
    }
}

impl TestIssuer {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a directory for the issuer's files");
        // The canary secret starts every issuer's key: the scans find it if it leaks.
        let secret = format!("{} {:?}", crate::canary::SECRET, SystemTime::now()).into_bytes();
        std::fs::write(dir.path().join("jwt.key"), &secret).expect("the key file");
        Self { dir, secret }
    }

    /// The HS256 key file (`auth.jwt.key_file`, algorithm `HS256`).
    pub fn key_file(&self) -> String {
        self.dir.path().join("jwt.key").display().to_string()
    }

    /// Writes `tokens` (store, token) by their hashes to a file and returns its path
    /// (`auth.store_tokens_file`).
    pub fn store_tokens_file(&self, tokens: &[(&str, &str)]) -> String {
        let path = self.dir.path().join("store-tokens");
        let lines: String = tokens
            .iter()
            .map(|(store, token)| format!("{store} {}\n", sha256_hex(token)))
            .collect();
        std::fs::write(&path, lines).expect("the store tokens file");
        path.display().to_string()
    }

    /// A token for `subject` in `role` over `stores`, valid for ten minutes.
    pub fn token(&self, role: &str, subject: &str, stores: &[&str]) -> String {
        self.token_with(claims(role, subject, stores, 600))
    }

    /// A token that expired ten minutes ago.
    pub fn expired_token(&self, role: &str, subject: &str, stores: &[&str]) -> String {
        self.token_with(claims(role, subject, stores, -600))
    }

    /// A token with exactly these claims, signed by this issuer.
    /// Every token minted is a [`crate::canary`]: the scans look for it too.
    pub fn token_with(&self, claims: serde_json::Value) -> String {
        let token = jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(&self.secret),
        )
        .expect("a signed token");
        crate::canary::register(&token);
        token
    }

    /// The directory the issuer's files are in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn claims(role: &str, subject: &str, stores: &[&str], expires_in: i64) -> serde_json::Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": subject, "role": role,
        "stores": stores, "iat": now, "exp": now + expires_in,
    })
}

/// The SHA-256 of `token`, in hex, as a store tokens file lists it.
pub fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// `message` as a request carrying `authorization: Bearer <token>`.
pub fn with_bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("an ASCII token"),
    );
    request
}
