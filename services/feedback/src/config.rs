//! Settings: defaults, then an optional TOML file, then `CHURNGUARD_FEEDBACK_*` environment
//! variables (`__` separates nesting: `CHURNGUARD_FEEDBACK_REDIS__URL`). Everything is
//! validated at start; a bad value stops the service with its key named.
//!
//! The contact vault's key-encryption key has no default: `kek.env` names the environment
//! variable holding it, or `kek.file` the file (a mounted secret). The variable must not
//! start with `CHURNGUARD_FEEDBACK_`: every such variable is read as a setting, and an
//! unknown one stops the service.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How settings load; import it to call `Settings::load` and `validate`.
pub use churnguard_config::ServiceSettings;
use churnguard_config::{
    AuthSettings, ConfigError, LogSettings, RateLimitSettings, ServerLimits, TlsSettings, check,
};
use churnguard_domain::error::Violations;
use churnguard_domain::feedback::calendar::{CalendarConfig, WeekHours};
use churnguard_domain::feedback::complaint::Context;
use churnguard_domain::feedback::sla::{
    BusinessDuration, Directory, DirectoryConfig, PerLevel, PerSeverity, SlaPolicy, Targets,
};
use churnguard_redis::RedisSettings;
use churnguard_vault::Kek;
use serde::{Deserialize, Serialize};

/// Prefix of the environment variables read.
pub const ENV_PREFIX: &str = "CHURNGUARD_FEEDBACK_";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address of the gRPC Feedback API.
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
    /// The largest request and the calls per connection ([`ServerLimits`]).
    pub limits: ServerLimits,
    /// How long shutdown lets in-flight calls finish, and bounds the log's flush.
    pub shutdown_grace_ms: u64,
    /// How often the SLA timers look for due warnings and breaches on each partition this
    /// replica owns.
    pub timer_interval_ms: u64,
    /// Replicas share the work through two consumer groups named after this:
    /// `<group>-timers` on the events topic (SLA timers) and `<group>-outreach` on the
    /// signals topic (defector outreach). Each partition's work runs on one replica.
    pub group: String,
    /// How often Redis is probed for gRPC health (NOT_SERVING while it does not answer).
    pub health_probe_interval_ms: u64,
    /// Targets per severity, warnings and the escalation chain.
    pub sla: SlaPolicy,
    /// Who holds each level for each store, and the stores' business calendars.
    pub directory: DirectoryConfig,
    pub topics: Topics,
    /// How soon, in the home store's business time, someone must reach a customer.
    pub outreach: OutreachTargets,
    /// Where the contact vault's key-encryption key comes from (required).
    pub kek: KekSource,
    pub redis: RedisSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topics {
    /// Complaint and outreach commits, published (the system of record).
    pub events: String,
    /// Partition count of the topics when this service creates them.
    pub partitions: u32,
    /// Churn state changes, consumed: defector outreach opens cases from them.
    pub signals: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            events: crate::EVENTS_TOPIC.into(),
            partitions: 6,
            signals: "churn.signals.v1".into(),
        }
    }
}

/// Outreach deadlines per churn state, in the home store's business time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutreachTargets {
    /// For a customer whose pattern is slipping (visits or spend down, overdue).
    pub at_risk: BusinessDuration,
    /// For a customer who has probably stopped coming: the sooner the better.
    pub defected: BusinessDuration,
    /// Cases are opened only for changes of state dated at most this many days before
    /// today: a change found in history being imported (a customer who left years ago)
    /// opens none.
    pub open_within_days: u32,
}

/// 27 business hours (three opening days of the default calendar) for at-risk customers,
/// 9 (one opening day) for defectors; changes of the last 90 days (the live maximum age of
/// a swipe) open cases.
impl Default for OutreachTargets {
    fn default() -> Self {
        Self {
            at_risk: hours(27),
            defected: hours(9),
            open_within_days: 90,
        }
    }
}

/// Where the key-encryption key is read from: exactly one of the two.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KekSource {
    /// The name of an environment variable holding the key (64 hex digits or base64).
    pub env: Option<String>,
    /// A file holding the key, e.g. a mounted Kubernetes Secret.
    pub file: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen_addr: "127.0.0.1:50053".into(),
            admin_addr: "127.0.0.1:9466".into(),
            tls: TlsSettings::default(),
            auth: AuthSettings::default(),
            rate_limits: RateLimitSettings::default(),
            limits: ServerLimits::default(),
            shutdown_grace_ms: 10_000,
            timer_interval_ms: 1_000,
            group: "feedback".into(),
            health_probe_interval_ms: 1_000,
            sla: default_sla(),
            directory: default_directory(),
            topics: Topics::default(),
            outreach: OutreachTargets::default(),
            kek: KekSource::default(),
            redis: RedisSettings::default(),
            log: LogSettings::for_client("feedback"),
        }
    }
}

const HOUR: i64 = 3_600;

fn hours(h: i64) -> BusinessDuration {
    BusinessDuration::from_secs(h * HOUR)
}

/// Business-time targets per severity (first response, update interval, resolution):
/// minor 16 h / 40 h / 80 h, moderate 8 h / 24 h / 40 h, major 4 h / 8 h / 24 h, critical
/// 1 h / 4 h / 8 h; warnings at 50 % and 75 %; 8 h for a store manager, 16 h for a
/// regional manager and 24 h for the owner before moving up; critical complaints start
/// with the regional manager.
pub fn default_sla() -> SlaPolicy {
    let targets = |first: i64, update: i64, resolution: i64| Targets {
        first_response: hours(first),
        update_interval: hours(update),
        resolution: hours(resolution),
    };
    SlaPolicy {
        targets: PerSeverity {
            minor: targets(16, 40, 80),
            moderate: targets(8, 24, 40),
            major: targets(4, 8, 24),
            critical: targets(1, 4, 8),
        },
        warnings: vec![0.5, 0.75],
        escalation: PerLevel {
            store_manager: hours(8),
            regional_manager: hours(16),
            owner: hours(24),
        },
        critical_starts_at: churnguard_domain::feedback::vocab::Level::RegionalManager,
    }
}

/// The name of the default calendar.
pub const DEFAULT_CALENDAR: &str = "uk-high-street";

/// No regions or stores (configure yours), an owner placeholder, and one calendar:
/// Monday to Saturday 09:00-18:00, Europe/London, no holidays.
pub fn default_directory() -> DirectoryConfig {
    let day = vec!["09:00-18:00".to_owned()];
    DirectoryConfig {
        owner: "owner".into(),
        regions: BTreeMap::new(),
        stores: BTreeMap::new(),
        calendars: BTreeMap::from([(
            DEFAULT_CALENDAR.to_owned(),
            CalendarConfig {
                timezone: "Europe/London".into(),
                hours: WeekHours {
                    monday: day.clone(),
                    tuesday: day.clone(),
                    wednesday: day.clone(),
                    thursday: day.clone(),
                    friday: day.clone(),
                    saturday: day,
                    sunday: Vec::new(),
                },
                holidays: Vec::new(),
            },
        )]),
        default_calendar: DEFAULT_CALENDAR.into(),
    }
}

fn first_violation(prefix: &str, v: &Violations) -> ConfigError {
    match v.0.first() {
        Some(first) if first.field.is_empty() => ConfigError::new(prefix, &first.description),
        Some(first) => ConfigError::new(
            if first.field.starts_with(&format!("{prefix}.")) {
                first.field.clone()
            } else {
                format!("{prefix}.{}", first.field)
            },
            &first.description,
        ),
        None => ConfigError::new(prefix, "is invalid"),
    }
}

impl ServiceSettings for Settings {
    const ENV_PREFIX: &'static str = ENV_PREFIX;
    const CONFIG_ENV: &'static str = "CHURNGUARD_FEEDBACK_CONFIG";

    /// Checks every value, naming the first bad key. The KEK source must be set, but the
    /// key itself is read only by [`Settings::load_kek`].
    fn validate(&self) -> Result<(), ConfigError> {
        self.validate_except_kek()?;
        match (&self.kek.env, &self.kek.file) {
            (None, None) => Err(ConfigError::new(
                "kek",
                "the contact vault's key-encryption key is required and has no default: \
                 set kek.env to the name of an environment variable holding it (not \
                 starting with CHURNGUARD_FEEDBACK_), or kek.file to a file holding it",
            )),
            (Some(_), Some(_)) => Err(ConfigError::new("kek", "set kek.env or kek.file, not both")),
            (Some(name), None) if name.trim().is_empty() => Err(ConfigError::new(
                "kek.env",
                "must name an environment variable",
            )),
            (Some(name), None) if name.to_ascii_uppercase().starts_with(ENV_PREFIX) => {
                Err(ConfigError::new(
                    "kek.env",
                    format!("must not start with {ENV_PREFIX}: those variables are settings"),
                ))
            }
            (None, Some(path)) if path.as_os_str().is_empty() => {
                Err(ConfigError::new("kek.file", "must not be empty"))
            }
            _ => Ok(()),
        }
    }
}

impl Settings {
    /// Where the admin endpoint listens, if anywhere (`admin_addr` not empty).
    pub fn admin_addr(&self) -> Option<&str> {
        churnguard_config::optional_addr(&self.admin_addr)
    }

    /// Every check but the KEK source's (for a process that brings its own key, as
    /// `churnguard-local` does).
    pub fn validate_except_kek(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: &str| Err(ConfigError::new(key, message));
        check::addresses(
            (&self.listen_addr, "127.0.0.1:50053"),
            (&self.admin_addr, "127.0.0.1:9466"),
        )?;
        self.tls.validate()?;
        self.limits.validate()?;
        self.auth
            .validate(self.tls.mode() == churnguard_config::TlsMode::MutualTls)?;
        check::positive([
            ("shutdown_grace_ms", self.shutdown_grace_ms),
            ("timer_interval_ms", self.timer_interval_ms),
            ("health_probe_interval_ms", self.health_probe_interval_ms),
        ])?;
        // A group name has the topics' alphabet.
        check::topics([
            ("topics.events", &self.topics.events),
            ("topics.signals", &self.topics.signals),
            ("group", &self.group),
        ])?;
        for (key, target) in [
            ("outreach.at_risk", self.outreach.at_risk),
            ("outreach.defected", self.outreach.defected),
        ] {
            if target.secs() <= 0 {
                return bad(key, "must be positive, e.g. \"9h\"");
            }
        }
        check::partitions("topics.partitions", self.topics.partitions)?;
        if self.redis.cluster_nodes.is_empty() && self.redis.url.trim().is_empty() {
            return bad(
                "redis.url",
                "must name a Redis (or set redis.cluster_nodes)",
            );
        }
        if let Err(v) = self.sla.validate("sla") {
            return Err(first_violation("sla", &v));
        }
        self.directory()?;
        self.log.validate()
    }

    /// The directory with its calendars built.
    pub fn directory(&self) -> Result<Directory, ConfigError> {
        self.directory
            .build()
            .map_err(|v| first_violation("directory", &v))
    }

    /// Reads the key-encryption key from where `kek` says; the error names the key
    /// (`kek.env`, `kek.file`) and never carries key material.
    pub fn load_kek(&self) -> Result<Kek, ConfigError> {
        match (&self.kek.env, &self.kek.file) {
            (Some(name), None) => {
                Kek::from_env(name).map_err(|e| ConfigError::new("kek.env", e.to_string()))
            }
            (None, Some(path)) => {
                Kek::from_file(path).map_err(|e| ConfigError::new("kek.file", e.to_string()))
            }
            _ => self
                .validate()
                .and(Err(ConfigError::new("kek", "set kek.env or kek.file"))),
        }
    }

    /// The chain's settings the aggregate decides with.
    pub fn context(&self) -> Context {
        Context {
            critical_starts_at: self.sla.critical_starts_at,
            ..Context::default()
        }
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    pub fn timer_interval(&self) -> Duration {
        Duration::from_millis(self.timer_interval_ms)
    }

    pub fn health_probe_interval(&self) -> Duration {
        Duration::from_millis(self.health_probe_interval_ms)
    }
}

#[cfg(test)]
// figment's test jail returns its own large error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use std::path::Path;

    use churnguard_config::Backend;

    fn with_kek() -> Settings {
        Settings {
            kek: KekSource {
                env: Some("FEEDBACK_KEK".into()),
                file: None,
            },
            ..Settings::default()
        }
    }

    #[test]
    fn defaults_are_valid_but_for_the_missing_kek() {
        let e = Settings::default().validate().expect_err("no KEK source");
        assert_eq!(e.key, "kek");
        with_kek().validate().expect("defaults validate");
        let d = Settings::default().directory().expect("builds");
        assert_eq!(d.calendar_name("any-store"), DEFAULT_CALENDAR);
    }

    #[test]
    fn file_and_environment_override_and_bad_values_name_their_key() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "feedback.toml",
                "[topics]\npartitions = 3\n[kek]\nenv = \"FEEDBACK_KEK\"\n[redis]\nurl = \"redis://10.0.0.5:6379/\"\n",
            )?;
            jail.set_env("CHURNGUARD_FEEDBACK_LOG__BACKEND", "kafka");
            let s = Settings::load(Some(Path::new("feedback.toml"))).expect("loads");
            assert_eq!(s.topics.partitions, 3);
            assert_eq!(s.redis.url, "redis://10.0.0.5:6379/");
            assert_eq!(s.log.backend, Backend::Kafka);
            assert_eq!(s.log.kafka.client_id, "feedback");
            let e = s.load_kek().expect_err("variable not set");
            assert_eq!(e.key, "kek.env");
            assert!(e.message.contains("FEEDBACK_KEK"), "{e}");
            jail.set_env("FEEDBACK_KEK", "00".repeat(32));
            s.load_kek().expect("the key");

            jail.set_env("CHURNGUARD_FEEDBACK_SLA__WARNINGS", "[0.75, 0.5]");
            let e = Settings::load(Some(Path::new("feedback.toml"))).expect_err("descending");
            assert_eq!(e.key, "sla.warnings");
            jail.set_env("CHURNGUARD_FEEDBACK_SLA__WARNINGS", "[0.5, 0.75]");
            jail.set_env("CHURNGUARD_FEEDBACK_OUTREACH__DEFECTED", "0s");
            let e = Settings::load(Some(Path::new("feedback.toml"))).expect_err("zero target");
            assert_eq!(e.key, "outreach.defected");
            jail.set_env("CHURNGUARD_FEEDBACK_OUTREACH__DEFECTED", "4h30m");
            let s = Settings::load(Some(Path::new("feedback.toml"))).expect("loads");
            assert_eq!(s.outreach.defected.secs(), 4 * 3_600 + 1_800);
            jail.set_env("CHURNGUARD_FEEDBACK_DIRECTORY__DEFAULT_CALENDAR", "nowhere");
            let e = Settings::load(Some(Path::new("feedback.toml"))).expect_err("no calendar");
            assert_eq!(e.key, "directory.default_calendar");
            Ok(())
        });
    }
}
