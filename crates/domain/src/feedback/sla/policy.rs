//! The SLA of a chain: targets per severity, when to warn, and the escalation chain.

use serde::{Deserialize, Serialize};

use super::duration::BusinessDuration;
use crate::error::{FieldViolation, Violations};
use crate::feedback::calendar::field;
use crate::feedback::vocab::{Level, Severity};

/// One value per severity; every severity must be configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerSeverity<T> {
    pub minor: T,
    pub moderate: T,
    pub major: T,
    pub critical: T,
}

impl<T> PerSeverity<T> {
    pub fn get(&self, s: Severity) -> &T {
        match s {
            Severity::Minor => &self.minor,
            Severity::Moderate => &self.moderate,
            Severity::Major => &self.major,
            Severity::Critical => &self.critical,
        }
    }
}

/// One value per escalation level; every level must be configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerLevel<T> {
    pub store_manager: T,
    pub regional_manager: T,
    pub owner: T,
}

impl<T> PerLevel<T> {
    pub fn get(&self, l: Level) -> &T {
        match l {
            Level::StoreManager => &self.store_manager,
            Level::RegionalManager => &self.regional_manager,
            Level::Owner => &self.owner,
        }
    }
}

/// The business-time targets of one severity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// From filing to the first (for major and critical, personal) response.
    pub first_response: BusinessDuration,
    /// The longest the customer waits between updates while the complaint is open.
    pub update_interval: BusinessDuration,
    /// From filing to resolution, less the time waiting on the customer. A level's
    /// resolution run falls due at the earlier of this and the level's own target
    /// ([`SlaPolicy::run_target`]).
    pub resolution: BusinessDuration,
}

/// The SLA of a chain: targets per severity, when to warn, and the escalation chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaPolicy {
    pub targets: PerSeverity<Targets>,
    /// Fractions of a target at which to warn its holder, ascending, each in (0, 1).
    /// Default: 50 % and 75 % (as ServiceNow does).
    #[serde(default = "default_warnings")]
    pub warnings: Vec<f64>,
    /// Per level, the business time its holder has to resolve the complaint before it
    /// moves to the level above. The clock of a level starts when the complaint reaches it,
    /// and falls due sooner if the severity's `resolution` target does
    /// ([`SlaPolicy::run_target`]).
    pub escalation: PerLevel<BusinessDuration>,
    /// The level a *critical* complaint starts at, skipping those below; every other
    /// severity starts with the store manager. Default: the regional manager.
    #[serde(default = "default_critical_starts_at")]
    pub critical_starts_at: Level,
}

fn default_warnings() -> Vec<f64> {
    vec![0.5, 0.75]
}

fn default_critical_starts_at() -> Level {
    Level::RegionalManager
}

impl SlaPolicy {
    /// Every problem, each naming its field under `path` (`sla.targets.major.resolution`,
    /// `sla.warnings`, `sla.escalation.owner`, ...).
    pub fn validate(&self, path: &str) -> Result<(), Violations> {
        let mut v = Vec::new();
        let positive = |v: &mut Vec<FieldViolation>, name: String, d: BusinessDuration| {
            if d.secs() <= 0 {
                v.push(FieldViolation::new(
                    field(path, &name),
                    format!("must be a positive duration, not {d}"),
                ));
            }
        };
        for s in Severity::ALL {
            let t = self.targets.get(*s);
            for (name, d) in [
                ("first_response", t.first_response),
                ("update_interval", t.update_interval),
                ("resolution", t.resolution),
            ] {
                positive(&mut v, format!("targets.{s}.{name}"), d);
            }
            if t.first_response > t.resolution {
                v.push(FieldViolation::new(
                    field(path, &format!("targets.{s}.first_response")),
                    format!(
                        "is {} but the resolution target is {}: a complaint cannot be \
                         resolved before it is answered",
                        t.first_response, t.resolution
                    ),
                ));
            }
        }
        for (i, f) in self.warnings.iter().enumerate() {
            if !(*f > 0.0 && *f < 1.0) {
                v.push(FieldViolation::new(
                    field(path, "warnings"),
                    format!("warning {i} is {f}; each must be in (0, 1)"),
                ));
            }
        }
        if self.warnings.windows(2).any(|w| w[0] >= w[1]) {
            v.push(FieldViolation::new(
                field(path, "warnings"),
                format!("must be ascending without repeats: {:?}", self.warnings),
            ));
        }
        for l in Level::ALL {
            positive(&mut v, format!("escalation.{l}"), *self.escalation.get(*l));
        }
        if v.is_empty() {
            Ok(())
        } else {
            Err(Violations(v))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn a_policy_reads_from_config_with_defaults_and_refuses_unknown_fields() {
        let t = r#"{"first_response": "4h", "update_interval": "8h", "resolution": "24h"}"#;
        let json = format!(
            r#"{{"targets": {{"minor": {t}, "moderate": {t}, "major": {t}, "critical": {t}}},
                "escalation": {{"store_manager": "8h", "regional_manager": 57600, "owner": "24h"}}}}"#
        );
        let p: SlaPolicy = serde_json::from_str(&json).expect("parses");
        p.validate("sla").expect("valid");
        assert_eq!(p.warnings, [0.5, 0.75]);
        assert_eq!(p.critical_starts_at, Level::RegionalManager);
        assert_eq!(*p.escalation.get(Level::RegionalManager), h(16));
        let typo = json.replace("update_interval", "update");
        assert!(serde_json::from_str::<SlaPolicy>(&typo).is_err());
    }

    #[test]
    fn policy_validation_names_every_bad_field() {
        let mut p = policy();
        p.targets.major.first_response = h(30);
        p.targets.minor.update_interval = h(0);
        p.warnings = vec![0.75, 0.5, 1.0];
        p.escalation.owner = h(0);
        let v = p.validate("sla").expect_err("invalid");
        assert_eq!(
            v.fields().collect::<Vec<_>>(),
            [
                "sla.targets.minor.update_interval",
                "sla.targets.major.first_response",
                "sla.warnings",
                "sla.warnings",
                "sla.escalation.owner",
            ],
            "{v}"
        );
    }
}
