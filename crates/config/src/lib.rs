//! What every service's settings share.
//!
//! - [`load`]: defaults, then an optional TOML file, then `<PREFIX>*` environment
//!   variables (`__` separates nesting: `CHURNGUARD_SCORING_LOG__KAFKA__BOOTSTRAP_SERVERS`).
//!   A bad value comes back as a [`ConfigError`] naming its key.
//! - [`LogSettings`]: which event-log backend a service runs on, and its settings.
//! - [`check`]: the checks every service's settings share (listen address, positive
//!   durations, topic names, partition counts), each naming its key.
//!
//! How a binary uses them (load or exit, open the chosen log) is `churnguard-runtime`.

use std::fmt;
use std::path::{Path, PathBuf};

use churnguard_kafka::KafkaSettings;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A setting that is missing, malformed or out of range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key, dotted (`log.kafka.bootstrap_servers`), or `--config` for the file itself.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration at {}: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Loads `defaults`, then `file` (if given), then the environment variables starting with
/// `env_prefix` (`<env_prefix>CONFIG` itself, which names the file, is skipped).
pub fn load<T>(defaults: T, file: Option<&Path>, env_prefix: &str) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned,
{
    let mut figment = Figment::from(Serialized::defaults(defaults));
    if let Some(path) = file {
        if !path.is_file() {
            return Err(ConfigError::new(
                "--config",
                format!("file {} does not exist", path.display()),
            ));
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(Env::prefixed(env_prefix).split("__").ignore(&["config"]));
    figment.extract().map_err(|e| {
        let key = e.path.join(".");
        ConfigError::new(
            if key.is_empty() { "(file)".into() } else { key },
            e.to_string(),
        )
    })
}

/// [`load`], then `validate`: what [`ServiceSettings::load`] does.
pub fn load_checked<T>(
    defaults: T,
    file: Option<&Path>,
    env_prefix: &str,
    validate: impl FnOnce(&T) -> Result<(), ConfigError>,
) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned,
{
    let settings = load(defaults, file, env_prefix)?;
    validate(&settings)?;
    Ok(settings)
}

/// What a service's settings are: defaults ([`Default`]), the prefix of the environment
/// variables that override them, and their checks. [`ServiceSettings::load`] is the one
/// way every service loads them.
pub trait ServiceSettings: Default + Serialize + DeserializeOwned {
    /// Variables starting with it are settings: `CHURNGUARD_SCORING_`.
    const ENV_PREFIX: &'static str;
    /// The variable that names the settings file when `--config` is not given
    /// (`<ENV_PREFIX>CONFIG`; [`load`] skips it).
    const CONFIG_ENV: &'static str;

    /// Checks every value, naming the first bad key.
    fn validate(&self) -> Result<(), ConfigError>;

    /// Loads defaults, then `file` (if given), then the environment, and validates.
    fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        load_checked(Self::default(), file, Self::ENV_PREFIX, Self::validate)
    }
}

/// An address setting where empty means "off" (`admin_addr`): the address, if any.
pub fn optional_addr(value: &str) -> Option<&str> {
    Some(value).filter(|addr| !addr.is_empty())
}

/// TLS for a service's gRPC server. All empty (the default): plaintext, which only
/// `make run` should use; every server says at start which it serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// The server's certificate chain (PEM). With `key_file`, the server serves TLS only.
    pub cert_file: String,
    /// The server's private key (PEM).
    pub key_file: String,
    /// The CA certificates (PEM) that sign client certificates. Set: mutual TLS, every
    /// client (a store gateway, another service) presents a certificate signed by one.
    pub client_ca_file: String,
}

/// What a server's transport is, by its [`TlsSettings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Plaintext,
    Tls,
    MutualTls,
}

impl TlsMode {
    /// As the server's start line says it: `plaintext`, `tls`, `mutual tls`.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Plaintext => "plaintext",
            TlsMode::Tls => "tls",
            TlsMode::MutualTls => "mutual tls",
        }
    }
}

impl TlsSettings {
    pub fn mode(&self) -> TlsMode {
        match (self.cert_file.is_empty(), self.client_ca_file.is_empty()) {
            (true, _) => TlsMode::Plaintext,
            (false, true) => TlsMode::Tls,
            (false, false) => TlsMode::MutualTls,
        }
    }

    /// The certificate and key come together, a client CA only with them, and every file
    /// named exists. Errors name the key (`tls.key_file`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let files = [
            ("tls.cert_file", &self.cert_file),
            ("tls.key_file", &self.key_file),
            ("tls.client_ca_file", &self.client_ca_file),
        ];
        match (self.cert_file.is_empty(), self.key_file.is_empty()) {
            (false, true) => {
                return Err(ConfigError::new(
                    "tls.key_file",
                    "must be set when tls.cert_file is",
                ));
            }
            (true, false) => {
                return Err(ConfigError::new(
                    "tls.cert_file",
                    "must be set when tls.key_file is",
                ));
            }
            (true, true) if !self.client_ca_file.is_empty() => {
                return Err(ConfigError::new(
                    "tls.client_ca_file",
                    "mutual TLS needs the server's own tls.cert_file and tls.key_file",
                ));
            }
            _ => {}
        }
        for (key, file) in files {
            if !file.is_empty() && !Path::new(file).is_file() {
                return Err(ConfigError::new(key, format!("file {file} does not exist")));
            }
        }
        Ok(())
    }
}

/// Who may call a service's gRPC server. Off (the default, `make run` only): callers
/// are not identified and may call anything; the server says so at start. Required:
/// every call (gRPC health aside) proves an identity, or gets UNAUTHENTICATED:
/// - a store gateway by its client certificate (mutual TLS, [`TlsSettings`]) or by a
///   store token, presented as `authorization: Bearer <token>`, that the server knows
///   only by its SHA-256 ([`AuthSettings::store_tokens_file`]);
/// - a manager, an analyst or another service by a signed JWT ([`JwtSettings`]), whose
///   claims say the role and the stores.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Every call must prove who makes it.
    pub required: bool,
    /// Store tokens by their hash: one line per token, `<store_id> <sha256 in hex>`
    /// (`printf %s "$TOKEN" | sha256sum`); blank lines and `#` comments are skipped.
    pub store_tokens_file: String,
    pub jwt: JwtSettings,
}

/// How the JWTs of managers, analysts and services are checked: signature (by the
/// algorithm and key here), issuer, audience and expiry. Empty (the default): no JWT is
/// taken.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtSettings {
    /// `HS256` (the key file holds the shared secret), `RS256` or `ES256` (the key file
    /// holds the issuer's public key, PEM).
    pub algorithm: String,
    pub key_file: String,
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The `aud` every token must carry.
    pub audience: String,
}

/// The JWT algorithms [`JwtSettings::algorithm`] may name.
pub const JWT_ALGORITHMS: [&str; 3] = ["HS256", "RS256", "ES256"];

impl JwtSettings {
    /// Whether JWTs are taken at all.
    pub fn enabled(&self) -> bool {
        !self.key_file.is_empty()
    }
}

impl AuthSettings {
    /// The files named exist, a JWT key comes with its algorithm, issuer and audience,
    /// and a required identity has some way to be proved (`client_certificates`: the
    /// server asks for client certificates, mutual TLS). Errors name the key.
    pub fn validate(&self, client_certificates: bool) -> Result<(), ConfigError> {
        let jwt = &self.jwt;
        let files = [
            ("auth.store_tokens_file", &self.store_tokens_file),
            ("auth.jwt.key_file", &jwt.key_file),
        ];
        for (key, file) in files {
            if !file.is_empty() && !Path::new(file).is_file() {
                return Err(ConfigError::new(key, format!("file {file} does not exist")));
            }
        }
        if jwt.enabled() {
            if !JWT_ALGORITHMS.contains(&jwt.algorithm.as_str()) {
                return Err(ConfigError::new(
                    "auth.jwt.algorithm",
                    format!("must be one of {}", JWT_ALGORITHMS.join(", ")),
                ));
            }
            for (key, value) in [
                ("auth.jwt.issuer", &jwt.issuer),
                ("auth.jwt.audience", &jwt.audience),
            ] {
                if value.is_empty() {
                    return Err(ConfigError::new(
                        key,
                        "must be set when auth.jwt.key_file is",
                    ));
                }
            }
        } else if !jwt.algorithm.is_empty() || !jwt.issuer.is_empty() || !jwt.audience.is_empty() {
            return Err(ConfigError::new(
                "auth.jwt.key_file",
                "must be set when any other auth.jwt setting is",
            ));
        }
        let some_proof = client_certificates || !self.store_tokens_file.is_empty() || jwt.enabled();
        if self.required && !some_proof {
            return Err(ConfigError::new(
                "auth.required",
                "needs a way to prove an identity: tls.client_ca_file, auth.store_tokens_file or auth.jwt.key_file",
            ));
        }
        Ok(())
    }
}

/// Calls per second each caller may make of a gRPC server, by the kind of caller (a
/// store gateway, staff, a service, an unidentified caller by its address). 0: no limit
/// (the default). A caller may burst up to a second's worth at once. A stream counts as
/// one call when it opens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Each store gateway (by its store).
    pub store_calls_per_second: u32,
    /// Each manager, analyst or privacy officer (by their token's subject).
    pub staff_calls_per_second: u32,
    /// Each service (by its token's subject).
    pub service_calls_per_second: u32,
    /// Each unidentified caller, by its IP address (where identities are not required).
    pub unidentified_calls_per_second: u32,
}

impl RateLimitSettings {
    /// Whether any kind of caller is limited.
    pub fn any(&self) -> bool {
        self.store_calls_per_second > 0
            || self.staff_calls_per_second > 0
            || self.service_calls_per_second > 0
            || self.unidentified_calls_per_second > 0
    }
}

/// The limits of a query or command server (churn-scoring, feedback): the largest
/// request message it decodes, and how many calls (HTTP/2 streams) one connection may
/// have open at once. A larger message is refused with OUT_OF_RANGE before it is read
/// into memory; calls past the stream limit wait for one to end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerLimits {
    pub max_message_bytes: usize,
    pub max_streams_per_connection: u32,
}

impl Default for ServerLimits {
    /// 256 KiB: a complaint with a long note and its contact details is a few KiB; 100
    /// calls per connection.
    fn default() -> Self {
        Self {
            max_message_bytes: 256 * 1024,
            max_streams_per_connection: 100,
        }
    }
}

impl ServerLimits {
    /// 1 KiB to 16 MiB; at least one stream. Errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1024..=16 * 1024 * 1024).contains(&self.max_message_bytes) {
            return Err(ConfigError::new(
                "limits.max_message_bytes",
                "must be between 1024 and 16777216",
            ));
        }
        if self.max_streams_per_connection == 0 {
            return Err(ConfigError::new(
                "limits.max_streams_per_connection",
                "must be positive",
            ));
        }
        Ok(())
    }
}

/// The checks every service's settings share; each error names the key.
pub mod check {
    use std::net::SocketAddr;

    use super::ConfigError;

    /// A server's two addresses, each with an example for its error:
    /// [`listen_addr`] and [`admin_addr`].
    pub fn addresses(listen: (&str, &str), admin: (&str, &str)) -> Result<(), ConfigError> {
        listen_addr(listen.0, listen.1)?;
        admin_addr(admin.0, admin.1)
    }

    /// `listen_addr` must be an IP address and port, like `example`.
    pub fn listen_addr(value: &str, example: &str) -> Result<(), ConfigError> {
        socket_addr("listen_addr", value, example)
    }

    /// `admin_addr` (the admin HTTP endpoint) must be an IP address and port, like
    /// `example`, or empty: no admin endpoint.
    pub fn admin_addr(value: &str, example: &str) -> Result<(), ConfigError> {
        if value.is_empty() {
            return Ok(());
        }
        socket_addr("admin_addr", value, example)
    }

    fn socket_addr(key: &str, value: &str, example: &str) -> Result<(), ConfigError> {
        match value.parse::<SocketAddr>() {
            Ok(_) => Ok(()),
            Err(_) => Err(ConfigError::new(
                key,
                format!("must be an IP address and port, e.g. {example}"),
            )),
        }
    }

    /// Every value (a duration or an interval) must be positive.
    pub fn positive<const N: usize>(values: [(&str, u64); N]) -> Result<(), ConfigError> {
        match values.iter().find(|(_, v)| *v == 0) {
            Some((key, _)) => Err(ConfigError::new(*key, "must be positive")),
            None => Ok(()),
        }
    }

    /// Every value must be a valid topic name.
    pub fn topics<const N: usize>(names: [(&str, &str); N]) -> Result<(), ConfigError> {
        match names
            .iter()
            .find(|(_, name)| churnguard_eventlog::check_topic_name(name).is_err())
        {
            Some((key, _)) => Err(ConfigError::new(
                *key,
                "must be 1-249 characters of [A-Za-z0-9._-]",
            )),
            None => Ok(()),
        }
    }

    /// The partition count of a topic a service creates.
    pub fn partitions(key: &str, count: u32) -> Result<(), ConfigError> {
        if (1..=10_000).contains(&count) {
            Ok(())
        } else {
            Err(ConfigError::new(key, "must be between 1 and 10000"))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A local log directory: one machine, no Kafka.
    Embedded,
    /// Apache Kafka or another Kafka-protocol broker.
    Kafka,
}

/// The event log a service uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub backend: Backend,
    pub embedded: EmbeddedSettings,
    pub kafka: KafkaSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedSettings {
    /// Directory of the embedded log.
    pub dir: PathBuf,
}

impl Default for EmbeddedSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("data/log"),
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self::for_client("churnguard")
    }
}

impl LogSettings {
    /// The defaults (embedded log in `data/log`), naming the service to the brokers.
    pub fn for_client(client_id: &str) -> Self {
        Self {
            backend: Backend::Embedded,
            embedded: EmbeddedSettings::default(),
            kafka: KafkaSettings {
                client_id: client_id.into(),
                ..KafkaSettings::default()
            },
        }
    }

    /// Checks the values; keys are named relative to the service's `log` table.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.backend == Backend::Embedded && self.embedded.dir.as_os_str().is_empty() {
            return Err(ConfigError::new("log.embedded.dir", "must not be empty"));
        }
        self.kafka
            .validate()
            .map_err(|(key, message)| ConfigError::new(format!("log.kafka.{key}"), message))
    }
}

#[cfg(test)]
// figment's test jail returns its own large error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Demo {
        size: u32,
        log: LogSettings,
    }

    impl Default for Demo {
        fn default() -> Self {
            Self {
                size: 1,
                log: LogSettings::for_client("demo"),
            }
        }
    }

    #[test]
    fn file_then_environment_override_defaults_and_bad_keys_are_named() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("demo.toml", "size = 5\n[log]\nbackend = \"kafka\"\n")?;
            jail.set_env("DEMO_SIZE", "7");
            let d: Demo =
                load(Demo::default(), Some(Path::new("demo.toml")), "DEMO_").expect("loads");
            assert_eq!((d.size, d.log.backend), (7, Backend::Kafka));
            assert_eq!(d.log.kafka.client_id, "demo");

            jail.set_env("DEMO_SIZE", "many");
            let e = load(Demo::default(), None, "DEMO_").expect_err("bad size");
            assert_eq!(e.key, "size");

            jail.create_file("typo.toml", "[log]\nbakend = \"kafka\"\n")?;
            jail.set_env("DEMO_SIZE", "7");
            let e = load(Demo::default(), Some(Path::new("typo.toml")), "DEMO_").expect_err("typo");
            assert!(e.to_string().contains("bakend"), "{e}");

            let e = load(Demo::default(), Some(Path::new("missing.toml")), "DEMO_")
                .expect_err("no file");
            assert_eq!(e.key, "--config");
            Ok(())
        });
    }

    #[test]
    fn the_shared_checks_name_the_bad_key() {
        check::listen_addr("127.0.0.1:1", "x").expect("valid");
        let e = check::listen_addr("localhost", "127.0.0.1:50051").expect_err("no port");
        assert_eq!(e.key, "listen_addr");
        assert!(e.message.contains("127.0.0.1:50051"), "{e}");
        check::admin_addr("", "x").expect("empty: off");
        check::admin_addr("0.0.0.0:9464", "x").expect("valid");
        let e = check::admin_addr(":9464", "127.0.0.1:9464").expect_err("no host");
        assert_eq!(e.key, "admin_addr");
        assert!(e.message.contains("127.0.0.1:9464"), "{e}");
        check::positive([("a", 1), ("b", 2)]).expect("positive");
        assert_eq!(
            check::positive([("a", 1), ("b", 0)]).expect_err("zero").key,
            "b"
        );
        check::topics([("t", "purchases.v1")]).expect("valid");
        assert_eq!(
            check::topics([("t", "ok"), ("u", "not ok")])
                .expect_err("space")
                .key,
            "u"
        );
        check::partitions("p", 10_000).expect("valid");
        for bad in [0, 10_001] {
            assert_eq!(check::partitions("p", bad).expect_err("range").key, "p");
        }
    }

    #[test]
    fn log_settings_name_the_bad_key() {
        let mut s = LogSettings::default();
        s.validate().expect("defaults");
        s.kafka.bootstrap_servers = " ".into();
        assert_eq!(
            s.validate().expect_err("bad").key,
            "log.kafka.bootstrap_servers"
        );
    }
}
