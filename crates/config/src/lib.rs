//! What every service's settings share.
//!
//! - [`load`]: defaults, then an optional TOML file, then `<PREFIX>*` environment
//!   variables (`__` separates nesting: `CHURNGUARD_SCORING_LOG__KAFKA__BOOTSTRAP_SERVERS`).
//!   A bad value comes back as a [`ConfigError`] naming its key.
//! - [`LogSettings`]: which event-log backend a service runs on, and its settings.
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
