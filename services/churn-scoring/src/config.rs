//! Settings: defaults, then an optional TOML file, then `CHURNGUARD_SCORING_*` environment
//! variables (`__` separates nesting: `CHURNGUARD_SCORING_REDIS__URL`). Everything is
//! validated at start; a bad value stops the service with its key named.

use std::time::Duration;

/// How settings load; import it to call `Settings::load` and `validate`.
pub use churnguard_config::ServiceSettings;
use churnguard_config::{
    AuthSettings, ConfigError, LogSettings, RateLimitSettings, ServerLimits, TlsSettings, check,
};
use churnguard_domain::customer::Day;
use churnguard_domain::policy::{DefectionPolicy, PolicyBook, RuleSet};
use churnguard_domain::risk::ValueHorizon;
use churnguard_redis::RedisSettings;
use serde::{Deserialize, Serialize};

/// Prefix of the environment variables read.
pub const ENV_PREFIX: &str = "CHURNGUARD_SCORING_";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address of the gRPC query API.
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
    /// How long shutdown waits for batches in flight and the API's calls.
    pub shutdown_grace_ms: u64,
    /// The consumer group instances of this service share.
    pub group: String,
    /// Most records applied in one Redis script.
    pub batch_records: usize,
    /// Days of per-day buckets kept per customer, counted back from their last purchase;
    /// at least the defection policy's recent plus baseline windows.
    pub horizon_days: Day,
    /// How often each owned partition's absence timers and signal relay run.
    pub timer_interval_ms: u64,
    /// How often the models are refitted (by the instance that owns partition 0). 0
    /// turns periodic refits off.
    pub refit_interval_secs: u64,
    /// How many customers a refit samples, uniformly, to fit on; 0 fits on every
    /// customer. 100,000 move no customer's P(alive) by more than about 0.01 against a
    /// full fit (see `refit.rs`), and bound a refit's reads and memory.
    pub refit_sample_customers: usize,
    /// How often the query API's health check probes Redis.
    pub health_probe_interval_ms: u64,
    /// What "at risk" and "defected" mean for this chain, per store format.
    pub policy: PolicyBook,
    /// How lifetime value and value at risk are counted.
    pub value: ValueHorizon,
    pub topics: Topics,
    pub redis: RedisSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topics {
    /// Card swipes, consumed.
    pub purchases: String,
    /// Partition count of the purchases topic when this service creates it.
    pub partitions: u32,
    /// Churn state changes, published.
    pub signals: String,
    /// Fitted model announcements, published.
    pub models: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen_addr: "127.0.0.1:50052".into(),
            admin_addr: "127.0.0.1:9465".into(),
            tls: TlsSettings::default(),
            auth: AuthSettings::default(),
            rate_limits: RateLimitSettings::default(),
            limits: ServerLimits::default(),
            shutdown_grace_ms: 10_000,
            group: "churn-scoring".into(),
            batch_records: 2_000,
            horizon_days: 400,
            timer_interval_ms: 1_000,
            refit_interval_secs: 24 * 3_600,
            refit_sample_customers: 100_000,
            health_probe_interval_ms: 1_000,
            policy: default_policy().into(),
            value: ValueHorizon::default(),
            topics: Topics::default(),
            redis: RedisSettings::default(),
            log: LogSettings::for_client("churn-scoring"),
        }
    }
}

/// A general-retail default: at risk when a regular's visits or spend over the last four
/// weeks fall below half of their own previous eight weeks, or they are three typical gaps
/// overdue; defected when P(alive) drops below 0.2 or they are eight typical gaps overdue.
pub fn default_policy() -> DefectionPolicy {
    DefectionPolicy {
        recent_days: 28,
        baseline_days: 56,
        min_baseline_visits: 4,
        at_risk: RuleSet {
            visits_below_fraction: Some(0.5),
            spend_below_fraction: Some(0.5),
            overdue_gaps: Some(3.0),
            min_rules: 1,
            ..RuleSet::default()
        },
        defected: RuleSet {
            p_alive_below: Some(0.2),
            overdue_gaps: Some(8.0),
            min_rules: 1,
            ..RuleSet::default()
        },
    }
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            purchases: "purchases.v1".into(),
            partitions: 6,
            signals: "churn.signals.v1".into(),
            models: "churn.models.v1".into(),
        }
    }
}

impl ServiceSettings for Settings {
    const ENV_PREFIX: &'static str = ENV_PREFIX;
    const CONFIG_ENV: &'static str = "CHURNGUARD_SCORING_CONFIG";

    /// Checks every value, naming the first bad key.
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: &str| Err(ConfigError::new(key, message));
        check::addresses(
            (&self.listen_addr, "127.0.0.1:50052"),
            (&self.admin_addr, "127.0.0.1:9465"),
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
        if self.group.trim().is_empty() {
            return bad("group", "must not be empty");
        }
        if !(1..=50_000).contains(&self.batch_records) {
            return bad("batch_records", "must be between 1 and 50000");
        }
        if !(1..=3_660).contains(&self.horizon_days) {
            return bad("horizon_days", "must be between 1 and 3660");
        }
        check::topics([
            ("topics.purchases", &self.topics.purchases),
            ("topics.signals", &self.topics.signals),
            ("topics.models", &self.topics.models),
        ])?;
        check::partitions("topics.partitions", self.topics.partitions)?;
        if self.redis.cluster_nodes.is_empty() && self.redis.url.trim().is_empty() {
            return bad(
                "redis.url",
                "must name a Redis (or set redis.cluster_nodes)",
            );
        }
        if let Err(v) = self.policy.validate()
            && let Some(first) = v.0.first()
        {
            return bad(&format!("policy.{}", first.field), &first.description);
        }
        let needed = self.policy.needed_horizon();
        if self.horizon_days < needed {
            return bad(
                "horizon_days",
                &format!("must cover the policy's recent and baseline windows ({needed} days)"),
            );
        }
        if self.value.periods == 0 || self.value.period_days < 1 {
            return bad("value", "periods and period_days must be positive");
        }
        if !(0.0..1.0).contains(&self.value.discount) {
            return bad("value.discount", "must be in [0, 1)");
        }
        self.log.validate()
    }
}

impl Settings {
    /// Where the admin endpoint listens, if anywhere (`admin_addr` not empty).
    pub fn admin_addr(&self) -> Option<&str> {
        churnguard_config::optional_addr(&self.admin_addr)
    }

    pub fn health_probe_interval(&self) -> Duration {
        Duration::from_millis(self.health_probe_interval_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    pub fn timer_interval(&self) -> Duration {
        Duration::from_millis(self.timer_interval_ms)
    }

    /// `None` when periodic refits are off.
    pub fn refit_interval(&self) -> Option<Duration> {
        (self.refit_interval_secs > 0).then(|| Duration::from_secs(self.refit_interval_secs))
    }
}

#[cfg(test)]
// figment's test jail returns its own large error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use std::path::Path;

    use churnguard_config::Backend;

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().expect("defaults validate");
    }

    #[test]
    fn a_store_format_gets_its_own_policy_as_the_readme_shows() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "scoring.toml",
                r#"
[policy.formats.restaurant]
recent_days = 28
baseline_days = 56
min_baseline_visits = 4
at_risk = { visits_below_fraction = 0.6, overdue_gaps = 3.0, min_rules = 1 }
defected = { overdue_gaps = 8.0, p_alive_below = 0.2, min_rules = 1 }

[policy.store_formats]
"store-7" = "restaurant"
"#,
            )?;
            let s = Settings::load(Some(Path::new("scoring.toml"))).expect("loads");
            let restaurant = s.policy.for_store("store-7");
            assert_eq!(restaurant.at_risk.visits_below_fraction, Some(0.6));
            assert_eq!(restaurant.defected.overdue_gaps, Some(8.0));
            assert_eq!(s.policy.for_store("store-1"), &default_policy());

            jail.create_file(
                "typo.toml",
                "[policy.store_formats]\n\"store-7\" = \"bistro\"\n",
            )?;
            let e = Settings::load(Some(Path::new("typo.toml"))).expect_err("unknown format");
            assert_eq!(e.key, "policy.store_formats.store-7");
            Ok(())
        });
    }

    #[test]
    fn file_and_environment_override_and_bad_values_name_their_key() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "scoring.toml",
                "horizon_days = 200\n[redis]\nurl = \"redis://10.0.0.5:6379/\"\n",
            )?;
            jail.set_env("CHURNGUARD_SCORING_LOG__BACKEND", "kafka");
            let s = Settings::load(Some(Path::new("scoring.toml"))).expect("loads");
            assert_eq!(s.horizon_days, 200);
            assert_eq!(s.redis.url, "redis://10.0.0.5:6379/");
            assert_eq!(s.log.backend, Backend::Kafka);
            assert_eq!(s.log.kafka.client_id, "churn-scoring");

            jail.set_env("CHURNGUARD_SCORING_BATCH_RECORDS", "0");
            let e = Settings::load(None).expect_err("zero batch");
            assert_eq!(e.key, "batch_records");
            jail.set_env("CHURNGUARD_SCORING_BATCH_RECORDS", "100");
            jail.set_env("CHURNGUARD_SCORING_TOPICS__SIGNALS", "churn signals");
            let e = Settings::load(None).expect_err("bad topic");
            assert_eq!(e.key, "topics.signals");
            Ok(())
        });
    }
}
