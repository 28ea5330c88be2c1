//! A complaint's place in the queue: its priority from the severity, the customer's
//! standing (from churn scoring) and their incident history.

use chrono::{DateTime, TimeDelta, Utc};

use crate::feedback::vocab::{Severity, Touchpoint};
use crate::ids::ComplaintId;
use crate::policy::ChurnState;

/// What the chain knows about the complainant as a customer, from churn scoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustomerContext {
    /// Expected revenue lost if they defect, in minor units.
    pub value_at_risk_minor: i64,
    /// Discounted expected revenue over the next year, in minor units.
    pub clv_minor: i64,
    pub churn_state: ChurnState,
}

/// How often this customer has had problems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IncidentHistory {
    /// Earlier complaints in the last 90 days, not counting this one.
    pub complaints_last_90d: u32,
    /// An earlier complaint named the same touchpoint: the fix did not hold.
    pub same_touchpoint_before: bool,
}

/// A complaint's place in the queue (higher first), with its parts so the ordering can be
/// explained to the person working it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority {
    pub score: u32,
    pub severity_points: u32,
    pub value_points: u32,
    pub churn_points: u32,
    pub incident_points: u32,
}

/// Points for a value in minor units: 0, 5, 10, 15 or 20 from below 50.00, 200.00,
/// 1 000.00, 5 000.00 and above. Tiers, not a linear scale, so one huge basket cannot
/// swamp severity.
fn value_tier(minor: i64) -> u32 {
    match minor {
        i64::MIN..5_000 => 0,
        5_000..20_000 => 5,
        20_000..100_000 => 10,
        100_000..500_000 => 15,
        _ => 20,
    }
}

/// Orders complaints by how much handling them well matters.
///
/// `score = severity + value + churn + incidents`, where
/// - **severity**: minor 0, moderate 25, major 50, critical 100;
/// - **value**: `value_tier` of the customer's CLV (0..=20);
/// - **churn**: a customer already slipping is the one a complaint loses: 0 when active;
///   otherwise a base (won back 5, at risk 10, defected 10) plus the tier of the value at
///   risk (0..=20), so an at-risk high-value customer moves up;
/// - **incidents**: 5 per earlier complaint in 90 days (at most 4 counted) plus 10 when
///   the same touchpoint failed before: repeat incidents move up (0..=30).
///
/// Everything but severity adds up to at most 80, less than the 100 between minor and
/// critical: a critical complaint always outranks a minor one, while context can lift a
/// moderate complaint above a bare major one.
pub fn priority(
    severity: Severity,
    customer: &CustomerContext,
    incidents: &IncidentHistory,
) -> Priority {
    let severity_points = match severity {
        Severity::Minor => 0,
        Severity::Moderate => 25,
        Severity::Major => 50,
        Severity::Critical => 100,
    };
    let value_points = value_tier(customer.clv_minor);
    let churn_base = match customer.churn_state {
        ChurnState::Active => None,
        ChurnState::WonBack => Some(5),
        ChurnState::AtRisk | ChurnState::Defected => Some(10),
    };
    let churn_points = churn_base.map_or(0, |b| b + value_tier(customer.value_at_risk_minor));
    let incident_points = 5 * incidents.complaints_last_90d.min(4)
        + if incidents.same_touchpoint_before {
            10
        } else {
            0
        };
    Priority {
        score: severity_points + value_points + churn_points + incident_points,
        severity_points,
        value_points,
        churn_points,
        incident_points,
    }
}

/// One of a customer's complaints, as far as their incident history goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub complaint_id: ComplaintId,
    pub filed_at: DateTime<Utc>,
    pub touchpoint: Touchpoint,
}

/// How far back earlier complaints count towards [`IncidentHistory::complaints_last_90d`].
pub const INCIDENT_WINDOW_DAYS: i64 = 90;

/// The incident history of complaint `this` among all of its customer's complaints
/// (`all` may include `this`): the complaints filed before it (by filing time, then id)
/// within [`INCIDENT_WINDOW_DAYS`], and whether one of those filed before it named the same
/// touchpoint, at any time. Relative to the filing, so a complaint's history does not
/// change as time passes, only as the customer's record is learned.
pub fn incident_history(this: &Incident, all: &[Incident]) -> IncidentHistory {
    let key = |i: &Incident| (i.filed_at, i.complaint_id.clone());
    let earlier = || all.iter().filter(|i| key(i) < key(this));
    let window = this.filed_at - TimeDelta::days(INCIDENT_WINDOW_DAYS);
    IncidentHistory {
        complaints_last_90d: u32::try_from(earlier().filter(|i| i.filed_at >= window).count())
            .unwrap_or(u32::MAX),
        same_touchpoint_before: earlier().any(|i| i.touchpoint == this.touchpoint),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn incident_history_counts_earlier_complaints_of_the_window() {
        let t0 = DateTime::parse_from_rfc3339("2026-06-01T10:00:00Z")
            .expect("time")
            .to_utc();
        let incident = |id: &str, days: i64, touchpoint: Touchpoint| Incident {
            complaint_id: ComplaintId::parse(id).expect("id"),
            filed_at: t0 + TimeDelta::days(days),
            touchpoint,
        };
        let all = vec![
            incident("a", 0, Touchpoint::Staff),
            incident("b", 50, Touchpoint::Products),
            incident("c", 100, Touchpoint::Premises),
            incident("d", 100, Touchpoint::Products),
            incident("e", 200, Touchpoint::Staff),
        ];
        let h = |i: usize| incident_history(&all[i], &all);
        assert_eq!(h(0), IncidentHistory::default());
        // c: a and b are earlier, b within 90 days; nothing named the premises.
        assert_eq!(
            h(2),
            IncidentHistory {
                complaints_last_90d: 1,
                same_touchpoint_before: false
            }
        );
        // d: filed with c, after it by id; b named the products.
        assert_eq!(
            h(3),
            IncidentHistory {
                complaints_last_90d: 2,
                same_touchpoint_before: true
            }
        );
        // e: nothing within 90 days, but a named the staff long ago.
        assert_eq!(
            h(4),
            IncidentHistory {
                complaints_last_90d: 0,
                same_touchpoint_before: true
            }
        );
    }

    fn customer(
        churn_state: ChurnState,
        clv_minor: i64,
        value_at_risk_minor: i64,
    ) -> CustomerContext {
        CustomerContext {
            value_at_risk_minor,
            clv_minor,
            churn_state,
        }
    }

    #[test]
    fn priority_orders_as_documented() {
        let plain = customer(ChurnState::Active, 1_000, 0);
        let first = IncidentHistory::default();
        let p = |s, c: &CustomerContext, i: &IncidentHistory| priority(s, c, i).score;

        // Severity alone.
        let by_severity: Vec<u32> = Severity::ALL
            .iter()
            .map(|s| p(*s, &plain, &first))
            .collect();
        assert!(
            by_severity.windows(2).all(|w| w[0] < w[1]),
            "{by_severity:?}"
        );
        // An at-risk, high-value customer moves up past the same complaint from an active one.
        let slipping = customer(ChurnState::AtRisk, 600_000, 200_000);
        assert!(p(Severity::Moderate, &slipping, &first) > p(Severity::Moderate, &plain, &first));
        // ... even past a bare major complaint.
        assert!(p(Severity::Moderate, &slipping, &first) > p(Severity::Major, &plain, &first));
        // A repeat incident moves up; the same touchpoint failing again more so.
        let repeat = IncidentHistory {
            complaints_last_90d: 2,
            same_touchpoint_before: false,
        };
        let same = IncidentHistory {
            complaints_last_90d: 2,
            same_touchpoint_before: true,
        };
        assert!(p(Severity::Minor, &plain, &repeat) > p(Severity::Minor, &plain, &first));
        assert!(p(Severity::Minor, &plain, &same) > p(Severity::Minor, &plain, &repeat));
        // Value at risk only counts for a customer who is slipping.
        let active_rich = customer(ChurnState::Active, 1_000, 900_000);
        assert_eq!(
            p(Severity::Minor, &active_rich, &first),
            p(Severity::Minor, &plain, &first)
        );
        let parts = priority(Severity::Major, &slipping, &same);
        assert_eq!(
            parts.score,
            parts.severity_points + parts.value_points + parts.churn_points + parts.incident_points
        );
    }

    fn any_churn() -> impl Strategy<Value = ChurnState> {
        prop_oneof![
            Just(ChurnState::Active),
            Just(ChurnState::AtRisk),
            Just(ChurnState::Defected),
            Just(ChurnState::WonBack)
        ]
    }

    fn any_context() -> impl Strategy<Value = (CustomerContext, IncidentHistory)> {
        (
            any_churn(),
            any::<i64>(),
            any::<i64>(),
            any::<u32>(),
            any::<bool>(),
        )
            .prop_map(|(churn_state, clv_minor, value_at_risk_minor, n, same)| {
                (
                    CustomerContext {
                        value_at_risk_minor,
                        clv_minor,
                        churn_state,
                    },
                    IncidentHistory {
                        complaints_last_90d: n,
                        same_touchpoint_before: same,
                    },
                )
            })
    }

    proptest! {
        #[test]
        fn critical_always_outranks_minor((c1, i1) in any_context(), (c2, i2) in any_context()) {
            prop_assert!(priority(Severity::Critical, &c1, &i1).score > priority(Severity::Minor, &c2, &i2).score);
        }

        #[test]
        fn more_incidents_never_lower_priority((c, i) in any_context(), extra in 0u32..10) {
            let more = IncidentHistory {
                complaints_last_90d: i.complaints_last_90d.saturating_add(extra),
                ..i
            };
            prop_assert!(priority(Severity::Moderate, &c, &more).score >= priority(Severity::Moderate, &c, &i).score);
        }
    }
}
