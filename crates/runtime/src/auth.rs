//! Authentication: who a call comes from, proved by its credentials, as
//! [`churnguard_config::AuthSettings`] says they are checked. [`crate::GrpcServer::with_auth`]
//! authenticates every call (gRPC health aside, which probes call without
//! credentials): the [`Caller`] goes into the request's extensions for the service, or
//! the call is answered UNAUTHENTICATED, naming the `authorization` field and never
//! echoing the credential.
//!
//! Credentials, in this order:
//! 1. `authorization: Bearer <token>`: a store token (known to the server only by its
//!    SHA-256) or a JWT (signature, issuer, audience and expiry checked; its claims give
//!    `sub`, `role` and `stores`). A token presented must be valid, even where none is
//!    required.
//! 2. The client certificate of a mutual-TLS connection (a store gateway's).
//! 3. Nothing: [`Caller::Unidentified`] where identities are not required, else
//!    UNAUTHENTICATED.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use churnguard_config::{AuthSettings, ConfigError};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::identity::{Caller, Role, Staff};

/// Checks the credentials of calls.
pub struct Authenticator {
    required: bool,
    /// Store by the SHA-256 of its token.
    store_tokens: HashMap<[u8; 32], String>,
    jwt: Option<(DecodingKey, Validation)>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("required", &self.required)
            .field("store_tokens", &self.store_tokens.len())
            .field("jwt", &self.jwt.is_some())
            .finish()
    }
}

/// Why a call's credentials were refused: the message of its UNAUTHENTICATED answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("authorization: {0}")]
pub struct Unauthenticated(pub &'static str);

/// A JWT's claims that say who and what (issuer, audience and expiry are checked by the
/// validation).
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    role: String,
    #[serde(default)]
    stores: Vec<String>,
}

impl Authenticator {
    /// Reads the files `settings` name. Errors name the key.
    pub fn from_settings(settings: &AuthSettings) -> Result<Self, ConfigError> {
        let store_tokens = if settings.store_tokens_file.is_empty() {
            HashMap::new()
        } else {
            let file = &settings.store_tokens_file;
            let text = std::fs::read_to_string(file).map_err(|e| {
                ConfigError::new("auth.store_tokens_file", format!("reading {file}: {e}"))
            })?;
            parse_store_tokens(&text)?
        };
        let jwt = if settings.jwt.enabled() {
            let jwt = &settings.jwt;
            let key_error = |e: &dyn std::fmt::Display| {
                ConfigError::new("auth.jwt.key_file", format!("{}: {e}", jwt.key_file))
            };
            let bytes = std::fs::read(&jwt.key_file).map_err(|e| key_error(&e))?;
            let (algorithm, key) = match jwt.algorithm.as_str() {
                "HS256" => (Algorithm::HS256, Ok(DecodingKey::from_secret(&bytes))),
                "RS256" => (Algorithm::RS256, DecodingKey::from_rsa_pem(&bytes)),
                "ES256" => (Algorithm::ES256, DecodingKey::from_ec_pem(&bytes)),
                other => {
                    return Err(ConfigError::new(
                        "auth.jwt.algorithm",
                        format!("{other:?} is not one of HS256, RS256, ES256"),
                    ));
                }
            };
            let key = key.map_err(|e| key_error(&e))?;
            let mut validation = Validation::new(algorithm);
            validation.set_issuer(&[&jwt.issuer]);
            validation.set_audience(&[&jwt.audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            validation.leeway = 30;
            Some((key, validation))
        } else {
            None
        };
        Ok(Self {
            required: settings.required,
            store_tokens,
            jwt,
        })
    }

    /// Whether every call must prove who makes it.
    pub fn required(&self) -> bool {
        self.required
    }

    /// The caller that `authorization` (the metadata's value, if any) and the client
    /// certificate (if any) prove.
    pub fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        certificate: Option<&tonic::transport::CertificateDer<'_>>,
    ) -> Result<Caller, Unauthenticated> {
        if let Some(value) = authorization {
            let token = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or(Unauthenticated("expected \"Bearer <token>\""))?;
            return self.token(token);
        }
        match (certificate, self.required) {
            (Some(cert), _) => Ok(Caller::from_certificate(Some(cert))),
            (None, false) => Ok(Caller::Unidentified),
            (None, true) => Err(Unauthenticated(
                "missing: present a bearer token or a client certificate",
            )),
        }
    }

    fn token(&self, token: &str) -> Result<Caller, Unauthenticated> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(store) = self.store_tokens.get(&digest) {
            return Ok(Caller::Store(store.clone()));
        }
        let Some((key, validation)) = &self.jwt else {
            return Err(Unauthenticated("the token is not known"));
        };
        let claims = jsonwebtoken::decode::<Claims>(token, key, validation)
            .map_err(|e| {
                Unauthenticated(match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::ImmatureSignature => "the token is not valid yet",
                    ErrorKind::InvalidIssuer => "the token's issuer is not accepted",
                    ErrorKind::InvalidAudience => "the token's audience is not this system",
                    ErrorKind::InvalidSignature => "the token's signature does not verify",
                    ErrorKind::InvalidAlgorithm => "the token's algorithm is not accepted",
                    ErrorKind::MissingRequiredClaim(_) | ErrorKind::Json(_) => LACKS_CLAIM,
                    _ => "the token is not known",
                })
            })?
            .claims;
        let role = Role::parse(&claims.role).ok_or(Unauthenticated(
            "the token's role is not one this system knows",
        ))?;
        Ok(Caller::Staff(Staff {
            subject: claims.sub,
            role,
            stores: claims.stores,
        }))
    }
}

/// The store tokens file: `<store_id> <sha256 hex>` per line.
fn parse_store_tokens(text: &str) -> Result<HashMap<[u8; 32], String>, ConfigError> {
    let mut tokens = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |what: &str| {
            ConfigError::new(
                "auth.store_tokens_file",
                format!(
                    "line {}: {what} (expected \"<store_id> <sha256 hex>\")",
                    n + 1
                ),
            )
        };
        let mut parts = line.split_whitespace();
        let (Some(store), Some(hex), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("not two fields"));
        };
        let mut digest = [0u8; 32];
        hex::decode_to_slice(hex, &mut digest).map_err(|_| bad("the hash is not 64 hex digits"))?;
        if tokens.insert(digest, store.to_owned()).is_some() {
            return Err(bad("the same hash twice"));
        }
    }
    Ok(tokens)
}

/// A token without one of the claims every token must carry.
const LACKS_CLAIM: &str = "the token lacks a required claim (exp, iss, aud, sub, role)";

/// The middleware ([`axum::middleware::from_fn_with_state`]) that authenticates every
/// call.
pub(crate) async fn authenticate(
    State(auth): State<Arc<Authenticator>>,
    mut request: Request,
    next: Next,
) -> Response {
    if crate::health::is_health_call(request.uri().path()) {
        return next.run(request).await;
    }
    let certs = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.peer_certs());
    let authorization = request
        .headers()
        .get(tonic::codegen::http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    match auth.authenticate(authorization, certs.as_ref().and_then(|c| c.first())) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) => tonic::Status::unauthenticated(e.to_string()).into_http(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use churnguard_config::JwtSettings;
    use jsonwebtoken::{EncodingKey, Header};

    const SECRET: &[u8] = b"a shared secret of the test issuer";

    fn authenticator(required: bool) -> (Authenticator, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("dir");
        let tokens = dir.path().join("tokens");
        let key = dir.path().join("key");
        std::fs::write(
            &tokens,
            format!(
                "# gateways\ns-1 {}\n\ns-2 {}\n",
                hex::encode(Sha256::digest(b"token-of-s1")),
                hex::encode(Sha256::digest(b"token-of-s2"))
            ),
        )
        .expect("tokens");
        std::fs::write(&key, SECRET).expect("key");
        let settings = AuthSettings {
            required,
            store_tokens_file: tokens.display().to_string(),
            jwt: JwtSettings {
                algorithm: "HS256".into(),
                key_file: key.display().to_string(),
                issuer: "https://id.example".into(),
                audience: "churnguard".into(),
            },
        };
        (
            Authenticator::from_settings(&settings).expect("settings"),
            dir,
        )
    }

    fn jwt(claims: serde_json::Value, secret: &[u8]) -> String {
        jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .expect("encode")
    }

    fn claims(exp_from_now: i64) -> serde_json::Value {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        serde_json::json!({
            "sub": "m-7", "role": "store_manager", "stores": ["s-1"],
            "iss": "https://id.example", "aud": "churnguard", "exp": now + exp_from_now,
        })
    }

    fn bearer(token: &str) -> Vec<u8> {
        format!("Bearer {token}").into_bytes()
    }

    #[test]
    fn store_tokens_name_their_store() {
        let (auth, _dir) = authenticator(true);
        assert_eq!(
            auth.authenticate(Some(&bearer("token-of-s2")), None),
            Ok(Caller::Store("s-2".into()))
        );
        let unknown = auth.authenticate(Some(&bearer("token-of-s3")), None);
        assert_eq!(unknown, Err(Unauthenticated("the token is not known")));
        assert!(
            !unknown
                .expect_err("unknown")
                .to_string()
                .contains("token-of-s3"),
            "the credential is never echoed"
        );
    }

    #[test]
    fn a_jwt_gives_its_role_and_stores_once_every_check_passes() {
        let (auth, _dir) = authenticator(true);
        let caller = auth.authenticate(Some(&bearer(&jwt(claims(600), SECRET))), None);
        assert_eq!(
            caller,
            Ok(Caller::Staff(Staff {
                subject: "m-7".into(),
                role: Role::StoreManager,
                stores: vec!["s-1".into()]
            }))
        );
        let refused = |claims: serde_json::Value, secret: &[u8]| {
            auth.authenticate(Some(&bearer(&jwt(claims, secret))), None)
                .expect_err("refused")
                .0
        };
        assert_eq!(refused(claims(-600), SECRET), "the token has expired");
        assert_eq!(
            refused(claims(600), b"another issuer's secret"),
            "the token's signature does not verify"
        );
        let mut other = claims(600);
        other["iss"] = "https://elsewhere.example".into();
        assert_eq!(refused(other, SECRET), "the token's issuer is not accepted");
        let mut other = claims(600);
        other["aud"] = "another-system".into();
        assert_eq!(
            refused(other, SECRET),
            "the token's audience is not this system"
        );
        let mut other = claims(600);
        other["role"] = "admin".into();
        assert_eq!(
            refused(other, SECRET),
            "the token's role is not one this system knows"
        );
        let mut other = claims(600);
        other.as_object_mut().expect("object").remove("sub");
        assert_eq!(refused(other, SECRET), LACKS_CLAIM);
        let mut other = claims(600);
        other.as_object_mut().expect("object").remove("exp");
        assert_eq!(refused(other, SECRET), LACKS_CLAIM);
    }

    #[test]
    fn no_credentials_are_refused_only_where_identities_are_required() {
        let (required, _d1) = authenticator(true);
        let (optional, _d2) = authenticator(false);
        assert!(required.authenticate(None, None).is_err());
        assert_eq!(optional.authenticate(None, None), Ok(Caller::Unidentified));
        for bad in [&b"Basic abc"[..], b"Bearer ", b"token-of-s1", b"\xff\xfe"] {
            assert_eq!(
                optional.authenticate(Some(bad), None),
                Err(Unauthenticated("expected \"Bearer <token>\"")),
                "a malformed credential is refused even where none is required"
            );
        }
    }

    #[test]
    fn bad_settings_name_their_key() {
        let err = parse_store_tokens("s-1 abc\n").expect_err("short hash");
        assert_eq!(err.key, "auth.store_tokens_file");
        assert!(err.message.contains("line 1"), "{}", err.message);
        let line = format!("s-1 {}\n", "0".repeat(64));
        let err = parse_store_tokens(&format!("{line}{line}")).expect_err("twice");
        assert!(err.message.contains("line 2"), "{}", err.message);

        let settings = AuthSettings {
            required: true,
            ..AuthSettings::default()
        };
        assert_eq!(
            settings.validate(false).expect_err("no proof").key,
            "auth.required"
        );
        assert!(settings.validate(true).is_ok(), "mutual TLS is a proof");
        let jwt_without_issuer = AuthSettings {
            jwt: JwtSettings {
                algorithm: "HS256".into(),
                key_file: "Cargo.toml".into(),
                issuer: String::new(),
                audience: "a".into(),
            },
            ..AuthSettings::default()
        };
        assert_eq!(
            jwt_without_issuer.validate(false).expect_err("issuer").key,
            "auth.jwt.issuer"
        );
    }
}
