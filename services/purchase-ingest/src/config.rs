//! Settings: defaults, then an optional TOML file, then `CHURNGUARD_INGEST_*` environment
//! variables (`__` separates nesting: `CHURNGUARD_INGEST_LOG__KAFKA__BOOTSTRAP_SERVERS`).
//! Everything is validated at start; a bad value stops the service with its key named.

use std::fmt;
use std::time::Duration;

/// How settings load; import it to call `Settings::load` and `validate`.
pub use churnguard_config::ServiceSettings;
use churnguard_config::{AuthSettings, RateLimitSettings, TlsSettings, check};
pub use churnguard_config::{Backend, ConfigError, EmbeddedSettings, LogSettings};
use churnguard_domain::{CardTokenizer, SwipeLimits};
use serde::{Deserialize, Serialize};

/// Prefix of the environment variables read.
pub const ENV_PREFIX: &str = "CHURNGUARD_INGEST_";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address of the gRPC server.
    pub listen_addr: String,
    /// Address of the admin HTTP endpoint: `/metrics` (Prometheus), `/healthz`,
    /// `/readyz`. Empty: none.
    pub admin_addr: String,
    /// TLS for the gRPC server (certificate, key, and a client CA for mutual TLS).
    /// Empty: plaintext.
    pub tls: TlsSettings,
    /// Who may call the gRPC server ([`AuthSettings`]): off by default (`make run`).
    pub auth: AuthSettings,
    /// Calls per second per caller ([`RateLimitSettings`]): none by default.
    pub rate_limits: RateLimitSettings,
    /// The longest a call waits for the log's acknowledgement; a shorter gRPC deadline
    /// from the caller wins.
    pub publish_timeout_ms: u64,
    /// How often the health check probes the event log.
    pub health_probe_interval_ms: u64,
    /// How long shutdown waits for in-flight calls and the producer flush.
    pub shutdown_grace_ms: u64,
    /// HMAC key for tokenising raw card numbers (at least 32 bytes). Unset: raw card
    /// numbers are refused.
    pub card_token_key: Option<Secret>,
    pub topics: Topics,
    pub limits: Limits,
    pub log: LogSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topics {
    /// The purchases topic.
    pub purchases: String,
    /// Partition count used when the topic is created.
    pub partitions: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Most swipes in one StreamSwipes batch.
    pub max_batch_swipes: usize,
    /// Largest gRPC message accepted, in bytes.
    pub max_message_bytes: usize,
    /// How far `occurred_at` may run ahead of the server clock.
    pub max_future_secs: i64,
    /// How old `occurred_at` may be in live traffic.
    pub max_age_days: i64,
    /// Whether the deployment takes imports of history (`historical` requests, as
    /// `churnguard import` sends): swipes older than `max_age_days`, from a `service`
    /// token (or any caller where the server asks for no identity). Off by
    /// default: a live deployment takes live traffic only.
    pub allow_import: bool,
    /// How old `occurred_at` may be in an import (at least `max_age_days`, whichever
    /// is larger).
    pub max_import_age_days: i64,
    pub max_amount_minor_units: i64,
    pub max_item_count: u32,
    /// Most swipes being published at once across all calls: memory stays bounded
    /// however many gateways connect. A call that cannot get room within its deadline
    /// gets UNAVAILABLE.
    pub max_in_flight_swipes: usize,
    /// How long a call waits for room under `max_in_flight_swipes` before it is refused:
    /// an overloaded service answers fast rather than holding callers.
    pub max_capacity_wait_ms: u64,
    /// Most concurrent gRPC streams (calls) per connection.
    pub max_streams_per_connection: u32,
    /// HTTP/2 receive window of each call, in bytes: how much a client may send on one
    /// call beyond what the service has read. With `max_streams_per_connection`, it bounds
    /// the unread data one connection can make the service hold (at most their product,
    /// 8 MiB by default); a client that sends faster than swipes are published waits for
    /// the window to reopen (backpressure). 16 KiB to 16 MiB.
    ///
    /// The connection window is derived, not set: 16 × `max_streams_per_connection` ×
    /// `stream_window_bytes` (128 MiB by default; it does not add memory, the stream
    /// windows bound that). The HTTP/2 library (h2) closes a connection with GOAWAY
    /// `too_many_data_frames` (ENHANCE_YOUR_CALM), as flood protection, when the DATA frames
    /// under 256 bytes it holds unread cost more than half the connection window, each
    /// costing 256 bytes minus its size. A StreamSwipes message of one swipe is one frame of
    /// roughly 60-100 bytes; with the connection window at 16 × every stream window, every
    /// call of a connection can fill its window with frames of 29 bytes or more, and the
    /// service never closes a connection for small messages, however fast they come.
    /// Frames smaller than that (a client splitting messages into tiny frames) can still
    /// trigger the protection.
    pub stream_window_bytes: u32,
    /// How many swipes of one StreamSwipes call are read ahead while the messages before
    /// them are being published. One call has one append to the log in flight at a time
    /// (so its swipes keep their order); while it is being written, the messages read
    /// meanwhile, up to this many swipes, are validated into the next append, and each
    /// message is answered in order. So a gateway sending one swipe per message gets up to
    /// this many swipes per log round trip (an fsync, or the broker's acknowledgement).
    /// Memory per call: up to this many swipes read ahead, twice as many prepared or being
    /// written, and the stream window. A single message with more swipes than this is
    /// taken on its own. Capped at `max_in_flight_swipes`.
    pub stream_read_ahead_swipes: usize,
}

/// A secret string that never appears in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen_addr: "127.0.0.1:50051".into(),
            admin_addr: "127.0.0.1:9464".into(),
            tls: TlsSettings::default(),
            auth: AuthSettings::default(),
            rate_limits: RateLimitSettings::default(),
            publish_timeout_ms: 5_000,
            health_probe_interval_ms: 1_000,
            shutdown_grace_ms: 10_000,
            card_token_key: None,
            topics: Topics::default(),
            limits: Limits::default(),
            log: LogSettings::for_client("purchase-ingest"),
        }
    }
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            purchases: "purchases.v1".into(),
            partitions: 6,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        let d = SwipeLimits::default();
        Self {
            max_batch_swipes: 1_000,
            max_message_bytes: 4 * 1024 * 1024,
            max_future_secs: d.max_future.num_seconds(),
            max_age_days: d.max_age.num_days(),
            allow_import: false,
            max_import_age_days: 50 * 366,
            max_amount_minor_units: d.max_amount_minor_units,
            max_item_count: d.max_item_count,
            max_in_flight_swipes: 50_000,
            max_capacity_wait_ms: 1_000,
            max_streams_per_connection: 128,
            stream_window_bytes: 64 * 1024,
            stream_read_ahead_swipes: 1_000,
        }
    }
}

const MIN_STREAM_WINDOW: u32 = 16 * 1024;
const MAX_STREAM_WINDOW: u32 = 16 * 1024 * 1024;
/// The connection window is this many times every stream window of a connection together.
const CONNECTION_WINDOW_FACTOR: u64 = 16;
/// The largest HTTP/2 window (2^31 - 1).
const MAX_WINDOW: u64 = (1 << 31) - 1;

impl Limits {
    /// The HTTP/2 connection window: `CONNECTION_WINDOW_FACTOR` × every stream window of
    /// a connection (see `stream_window_bytes`); `None` if that exceeds HTTP/2's largest.
    pub fn connection_window(&self) -> Option<u32> {
        let w = CONNECTION_WINDOW_FACTOR
            * u64::from(self.max_streams_per_connection)
            * u64::from(self.stream_window_bytes);
        u32::try_from(w)
            .ok()
            .filter(|&w| u64::from(w) <= MAX_WINDOW)
    }
}

impl ServiceSettings for Settings {
    const ENV_PREFIX: &'static str = ENV_PREFIX;
    const CONFIG_ENV: &'static str = "CHURNGUARD_INGEST_CONFIG";

    /// Checks every value, naming the first bad key.
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: &str| Err(ConfigError::new(key, message));
        check::addresses(
            (&self.listen_addr, "127.0.0.1:50051"),
            (&self.admin_addr, "127.0.0.1:9464"),
        )?;
        self.tls.validate()?;
        self.auth
            .validate(self.tls.mode() == churnguard_config::TlsMode::MutualTls)?;
        check::positive([
            ("publish_timeout_ms", self.publish_timeout_ms),
            ("health_probe_interval_ms", self.health_probe_interval_ms),
            ("shutdown_grace_ms", self.shutdown_grace_ms),
        ])?;
        if let Some(key) = &self.card_token_key
            && let Err(e) = CardTokenizer::new(key.expose().as_bytes())
        {
            return bad("card_token_key", &e);
        }
        check::topics([("topics.purchases", &self.topics.purchases)])?;
        check::partitions("topics.partitions", self.topics.partitions)?;
        let l = &self.limits;
        if !(1..=100_000).contains(&l.max_batch_swipes) {
            return bad("limits.max_batch_swipes", "must be between 1 and 100000");
        }
        if l.max_message_bytes < 1024 {
            return bad("limits.max_message_bytes", "must be at least 1024");
        }
        if l.max_future_secs < 0 {
            return bad("limits.max_future_secs", "must not be negative");
        }
        if l.max_age_days < 1 {
            return bad("limits.max_age_days", "must be at least 1");
        }
        if l.max_import_age_days < 1 {
            return bad("limits.max_import_age_days", "must be at least 1");
        }
        if l.max_amount_minor_units < 1 {
            return bad("limits.max_amount_minor_units", "must be positive");
        }
        if l.max_item_count < 1 {
            return bad("limits.max_item_count", "must be positive");
        }
        if l.max_in_flight_swipes < l.max_batch_swipes {
            return bad(
                "limits.max_in_flight_swipes",
                "must be at least limits.max_batch_swipes",
            );
        }
        if l.max_streams_per_connection < 1 {
            return bad("limits.max_streams_per_connection", "must be positive");
        }
        if !(MIN_STREAM_WINDOW..=MAX_STREAM_WINDOW).contains(&l.stream_window_bytes) {
            return bad(
                "limits.stream_window_bytes",
                "must be between 16384 (16 KiB) and 16777216 (16 MiB)",
            );
        }
        if l.connection_window().is_none() {
            return bad(
                "limits.stream_window_bytes",
                "times limits.max_streams_per_connection must be at most 128 MiB",
            );
        }
        if l.stream_read_ahead_swipes < 1 {
            return bad("limits.stream_read_ahead_swipes", "must be positive");
        }

        self.log.validate()
    }
}

impl Settings {
    /// Where the admin endpoint listens, if anywhere (`admin_addr` not empty).
    pub fn admin_addr(&self) -> Option<&str> {
        churnguard_config::optional_addr(&self.admin_addr)
    }

    pub fn swipe_limits(&self) -> SwipeLimits {
        SwipeLimits {
            max_future: chrono::TimeDelta::seconds(self.limits.max_future_secs),
            max_age: chrono::TimeDelta::days(self.limits.max_age_days),
            max_amount_minor_units: self.limits.max_amount_minor_units,
            max_item_count: self.limits.max_item_count,
        }
    }

    /// The limits of an import's swipes, where imports are allowed: the live ones with
    /// `max_import_age_days` as the maximum age (never less than live traffic's).
    pub fn import_limits(&self) -> Option<SwipeLimits> {
        let days = self
            .limits
            .max_import_age_days
            .max(self.limits.max_age_days);
        self.limits.allow_import.then(|| SwipeLimits {
            max_age: chrono::TimeDelta::days(days),
            ..self.swipe_limits()
        })
    }

    pub fn tokenizer(&self) -> Option<CardTokenizer> {
        self.card_token_key
            .as_ref()
            .and_then(|k| CardTokenizer::new(k.expose().as_bytes()).ok())
    }

    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

#[cfg(test)]
// figment's test jail returns its own large error type.
#[allow(clippy::result_large_err)]
mod tests {
    use std::path::Path;

    use super::*;

    fn key_of(r: Result<Settings, ConfigError>) -> String {
        match r {
            Err(ConfigError { key, .. }) => key,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().expect("defaults validate");
    }

    #[test]
    fn file_then_environment_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "ingest.toml",
                "publish_timeout_ms = 777\n[topics]\npartitions = 3\n",
            )?;
            jail.set_env("CHURNGUARD_INGEST_TOPICS__PARTITIONS", "12");
            jail.set_env("CHURNGUARD_INGEST_LOG__BACKEND", "kafka");
            jail.set_env("CHURNGUARD_INGEST_CONFIG", "ignored-here");
            let s = Settings::load(Some(Path::new("ingest.toml"))).expect("loads");
            assert_eq!(s.publish_timeout_ms, 777);
            assert_eq!(s.topics.partitions, 12);
            assert_eq!(s.log.backend, Backend::Kafka);
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_their_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CHURNGUARD_INGEST_PUBLISH_TIMEOUT_MS", "soon");
            assert_eq!(key_of(Settings::load(None)), "publish_timeout_ms");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("CHURNGUARD_INGEST_LOG__KAFKA__BOOTSTRAP_SERVERS", " ");
            assert_eq!(key_of(Settings::load(None)), "log.kafka.bootstrap_servers");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.create_file("typo.toml", "[limits]\nmax_batch = 5\n")?;
            let err = Settings::load(Some(Path::new("typo.toml")));
            assert!(format!("{err:?}").contains("max_batch"), "{err:?}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("CHURNGUARD_INGEST_CARD_TOKEN_KEY", "too-short");
            assert_eq!(key_of(Settings::load(None)), "card_token_key");
            Ok(())
        });
    }

    #[test]
    fn the_connection_window_covers_every_stream_window_sixteen_times() {
        let l = Limits::default();
        assert_eq!(l.connection_window(), Some(128 * 1024 * 1024));
        let too_much = Settings {
            limits: Limits {
                max_streams_per_connection: 1_000,
                stream_window_bytes: 1024 * 1024,
                ..Limits::default()
            },
            ..Settings::default()
        };
        assert_eq!(
            key_of(too_much.validate().map(|()| too_much.clone())),
            "limits.stream_window_bytes"
        );
        let no_read_ahead = Settings {
            limits: Limits {
                stream_read_ahead_swipes: 0,
                ..Limits::default()
            },
            ..Settings::default()
        };
        assert_eq!(
            key_of(no_read_ahead.validate().map(|()| no_read_ahead.clone())),
            "limits.stream_read_ahead_swipes"
        );
    }

    #[test]
    fn secrets_never_print() {
        let s = Settings {
            card_token_key: Some(Secret::new("0123456789abcdef0123456789abcdef")),
            ..Settings::default()
        };
        assert!(!format!("{s:?}").contains("0123456789"));
    }
}
