//! What "defected" means for a business: a policy of rules over a customer's own history,
//! and the state machine active → at_risk → defected → won_back. Each chain configures
//! its policy and may override it per store format (a restaurant is not a supermarket).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::customer::{CustomerState, Day};
use crate::error::{FieldViolation, Violations, quoted};
use crate::models::BgNbd;

/// Where a customer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChurnState {
    Active,
    AtRisk,
    Defected,
    /// Came back after being counted as defected.
    WonBack,
}

impl ChurnState {
    /// Every state.
    pub const ALL: [ChurnState; 4] = [
        ChurnState::Active,
        ChurnState::AtRisk,
        ChurnState::Defected,
        ChurnState::WonBack,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChurnState::Active => "active",
            ChurnState::AtRisk => "at_risk",
            ChurnState::Defected => "defected",
            ChurnState::WonBack => "won_back",
        }
    }
}

/// A rule that can fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// P(alive) below the threshold.
    PAliveLow,
    /// Visit days in the recent window fell below a fraction of the customer's baseline.
    VisitsDropped,
    /// Spend in the recent window fell below a fraction of the baseline.
    SpendDropped,
    /// Days since the last visit exceed a multiple of the customer's typical gap.
    Overdue,
}

/// Thresholds of one rule set; an unset threshold is a rule that never fires. The set
/// fires when at least `min_rules` of its rules fire (at least one in any case).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleSet {
    pub p_alive_below: Option<f64>,
    pub visits_below_fraction: Option<f64>,
    pub spend_below_fraction: Option<f64>,
    pub overdue_gaps: Option<f64>,
    pub min_rules: usize,
}

/// A chain's (or a store format's) definition of at risk and defected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefectionPolicy {
    /// The recent window, in days, ending at the evaluation day.
    pub recent_days: Day,
    /// The baseline window, in days, just before the recent one.
    pub baseline_days: Day,
    /// Rate rules need at least this many visit days in the baseline.
    #[serde(default)]
    pub min_baseline_visits: u32,
    pub at_risk: RuleSet,
    pub defected: RuleSet,
}

impl RuleSet {
    fn check(&self, path: &str, v: &mut Vec<FieldViolation>) {
        let mut fraction = |name: &str, value: Option<f64>| {
            if let Some(x) = value
                && !(x > 0.0 && x <= 1.0)
            {
                v.push(FieldViolation::new(
                    format!("{path}.{name}"),
                    format!("must be in (0, 1], not {x}"),
                ));
            }
        };
        fraction("p_alive_below", self.p_alive_below);
        fraction("visits_below_fraction", self.visits_below_fraction);
        fraction("spend_below_fraction", self.spend_below_fraction);
        if let Some(k) = self.overdue_gaps
            && !(k.is_finite() && k > 0.0)
        {
            v.push(FieldViolation::new(
                format!("{path}.overdue_gaps"),
                format!("must be a positive number of gaps, not {k}"),
            ));
        }
        let rules = self.rules();
        if rules == 0 {
            v.push(FieldViolation::new(
                path.to_owned(),
                "sets no rule: at least one threshold is needed",
            ));
        } else if self.min_rules > rules {
            v.push(FieldViolation::new(
                format!("{path}.min_rules"),
                format!("is {} but only {rules} rules are set", self.min_rules),
            ));
        }
    }

    /// How many of the rules have a threshold.
    fn rules(&self) -> usize {
        [
            self.p_alive_below.is_some(),
            self.visits_below_fraction.is_some(),
            self.spend_below_fraction.is_some(),
            self.overdue_gaps.is_some(),
        ]
        .into_iter()
        .filter(|set| *set)
        .count()
    }
}

/// The policies of one chain: a default, overrides per store format, and which format
/// each store has. Stores not listed use the default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyBook {
    pub default: DefectionPolicy,
    /// Store format (e.g. `restaurant`) -> its policy.
    #[serde(default)]
    pub formats: BTreeMap<String, DefectionPolicy>,
    /// Store id -> its format, which must be a key of `formats`.
    #[serde(default)]
    pub store_formats: BTreeMap<String, String>,
}

impl From<DefectionPolicy> for PolicyBook {
    /// One policy for every store.
    fn from(default: DefectionPolicy) -> Self {
        Self {
            default,
            formats: BTreeMap::new(),
            store_formats: BTreeMap::new(),
        }
    }
}

impl PolicyBook {
    /// The policy that applies to a store.
    pub fn for_store(&self, store: &str) -> &DefectionPolicy {
        self.store_formats
            .get(store)
            .and_then(|format| self.formats.get(format))
            .unwrap_or(&self.default)
    }

    /// The policy that applies to a customer: their home store's
    /// ([`CustomerState::home_store`]), or the default.
    pub fn for_customer(&self, c: &CustomerState) -> &DefectionPolicy {
        c.home_store().map_or(&self.default, |s| self.for_store(s))
    }

    /// The longest bucket horizon any of the policies needs.
    pub fn needed_horizon(&self) -> Day {
        self.formats
            .values()
            .map(DefectionPolicy::needed_horizon)
            .fold(self.default.needed_horizon(), Day::max)
    }

    /// Every problem, each naming its field (`default.recent_days`,
    /// `formats.restaurant.at_risk.p_alive_below`, `store_formats.s-12`, ...).
    pub fn validate(&self) -> Result<(), Violations> {
        let mut v = Vec::new();
        self.default.check("default", &mut v);
        for (name, policy) in &self.formats {
            policy.check(&format!("formats.{name}"), &mut v);
        }
        for (store, format) in &self.store_formats {
            if !self.formats.contains_key(format) {
                v.push(FieldViolation::new(
                    format!("store_formats.{store}"),
                    format!("names format {}, which is not in formats", quoted(format)),
                ));
            }
        }
        if v.is_empty() {
            Ok(())
        } else {
            Err(Violations(v))
        }
    }
}

/// The window figures a decision was based on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowFigures {
    pub recent_visits: u32,
    pub baseline_visits: u32,
    pub recent_spend: i64,
    pub baseline_spend: i64,
    pub days_since_last: Day,
    /// Mean days between visit days, if the customer has repeat visits.
    pub typical_gap: Option<f64>,
    pub p_alive: f64,
}

/// An evaluation: the state it implies and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub state: ChurnState,
    pub fired: Vec<Rule>,
    pub figures: WindowFigures,
}

impl DefectionPolicy {
    fn check(&self, path: &str, v: &mut Vec<FieldViolation>) {
        for (name, days) in [
            ("recent_days", self.recent_days),
            ("baseline_days", self.baseline_days),
        ] {
            if days <= 0 {
                v.push(FieldViolation::new(
                    format!("{path}.{name}"),
                    format!("must be a positive number of days, not {days}"),
                ));
            }
        }
        self.at_risk.check(&format!("{path}.at_risk"), v);
        self.defected.check(&format!("{path}.defected"), v);
    }

    /// Validates one policy on its own; fields are named from `path`.
    pub fn validate(&self, path: &str) -> Result<(), Violations> {
        let mut v = Vec::new();
        self.check(path, &mut v);
        if v.is_empty() {
            Ok(())
        } else {
            Err(Violations(v))
        }
    }

    /// The horizon of day buckets this policy needs.
    pub fn needed_horizon(&self) -> Day {
        self.recent_days + self.baseline_days
    }

    /// The window figures of `c` on day `as_of`.
    pub fn figures(&self, c: &CustomerState, model: &BgNbd, as_of: Day) -> WindowFigures {
        let recent_from = as_of - self.recent_days;
        let baseline_from = recent_from - self.baseline_days;
        let (mut rv, mut bv, mut rs, mut bs) = (0, 0, 0, 0);
        for (day, b) in &c.days {
            if *day > recent_from && *day <= as_of {
                rv += 1;
                rs += b.spend;
            } else if *day > baseline_from && *day <= recent_from {
                bv += 1;
                bs += b.spend;
            }
        }
        WindowFigures {
            recent_visits: rv,
            baseline_visits: bv,
            recent_spend: rs,
            baseline_spend: bs,
            days_since_last: as_of - c.last_day,
            typical_gap: (c.repeat_days > 0)
                .then(|| f64::from(c.last_day - c.first_day) / f64::from(c.repeat_days)),
            p_alive: model.p_alive(&c.rfm(as_of)),
        }
    }

    fn fired(&self, set: &RuleSet, f: &WindowFigures) -> Vec<Rule> {
        let scale = f64::from(self.recent_days) / f64::from(self.baseline_days);
        let enough_history = f.baseline_visits >= self.min_baseline_visits;
        let mut fired = Vec::new();
        if set.p_alive_below.is_some_and(|t| f.p_alive < t) {
            fired.push(Rule::PAliveLow);
        }
        if enough_history
            && set.visits_below_fraction.is_some_and(|t| {
                f64::from(f.recent_visits) < t * f64::from(f.baseline_visits) * scale
            })
        {
            fired.push(Rule::VisitsDropped);
        }
        if enough_history
            && f.baseline_spend > 0
            && set
                .spend_below_fraction
                .is_some_and(|t| (f.recent_spend as f64) < t * f.baseline_spend as f64 * scale)
        {
            fired.push(Rule::SpendDropped);
        }
        if let (Some(k), Some(gap)) = (set.overdue_gaps, f.typical_gap)
            && f64::from(f.days_since_last) > k * gap
        {
            fired.push(Rule::Overdue);
        }
        fired
    }

    /// The state `c` should be in on day `as_of`, coming from `previous`.
    pub fn assess(
        &self,
        previous: ChurnState,
        c: &CustomerState,
        model: &BgNbd,
        as_of: Day,
    ) -> Assessment {
        let figures = self.figures(c, model, as_of);
        let defected = self.fired(&self.defected, &figures);
        if !defected.is_empty() && defected.len() >= self.defected.min_rules.max(1) {
            return Assessment {
                state: ChurnState::Defected,
                fired: defected,
                figures,
            };
        }
        let at_risk = self.fired(&self.at_risk, &figures);
        if !at_risk.is_empty() && at_risk.len() >= self.at_risk.min_rules.max(1) {
            return Assessment {
                state: ChurnState::AtRisk,
                fired: at_risk,
                figures,
            };
        }
        let state = match previous {
            ChurnState::Defected | ChurnState::WonBack => ChurnState::WonBack,
            ChurnState::Active | ChurnState::AtRisk => ChurnState::Active,
        };
        Assessment {
            state,
            fired: Vec::new(),
            figures,
        }
    }

    /// Absence detection: the first day after `from` on which, with no new purchase, the
    /// customer's state would change from `current`; `None` within `limit_days`. This is
    /// the deadline a timer index holds, so a customer who stops buying is still noticed.
    pub fn next_deadline(
        &self,
        current: ChurnState,
        c: &CustomerState,
        model: &BgNbd,
        from: Day,
        limit_days: Day,
    ) -> Option<Day> {
        let end = from + limit_days;
        // With no new purchase the figures only change on a few days: when a day bucket
        // enters the recent window, moves to the baseline or leaves it; when the days
        // since the last visit pass an overdue threshold; when P(alive), which only falls
        // as time passes, drops below a threshold. Assessing those days (and a day either
        // side, against rounding) finds the same first change as trying every day.
        // The first day counts too: the state may already be due to change.
        let mut days: Vec<Day> = vec![from + 1];
        for d in c.days.keys() {
            days.extend([
                *d,
                d + self.recent_days,
                d + self.recent_days + self.baseline_days,
            ]);
        }
        let sets = [&self.at_risk, &self.defected];
        if c.repeat_days > 0 {
            let gap = f64::from(c.last_day - c.first_day) / f64::from(c.repeat_days);
            for k in sets.iter().filter_map(|s| s.overdue_gaps) {
                let edge = c.last_day as f64 + k * gap;
                if edge.is_finite() && edge < f64::from(end) {
                    days.push(edge.floor() as Day);
                }
            }
        }
        for t in sets.iter().filter_map(|s| s.p_alive_below) {
            let below = |day: Day| model.p_alive(&c.rfm(day)) < t;
            if below(end) {
                // Falling in time: the first day below is found by bisection.
                let (mut lo, mut hi) = (from, end);
                while hi - lo > 1 {
                    let mid = lo + (hi - lo) / 2;
                    if below(mid) { hi = mid } else { lo = mid }
                }
                days.push(hi);
            }
        }
        let mut candidates: Vec<Day> = days
            .into_iter()
            .flat_map(|d| [d - 1, d, d + 1])
            .filter(|d| *d > from && *d <= end)
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        candidates
            .into_iter()
            .find(|day| self.assess(current, c, model, *day).state != current)
    }

    /// The first change found by trying every day: the reference for `next_deadline`.
    #[cfg(test)]
    fn next_deadline_by_scan(
        &self,
        current: ChurnState,
        c: &CustomerState,
        model: &BgNbd,
        from: Day,
        limit_days: Day,
    ) -> Option<Day> {
        ((from + 1)..=(from + limit_days))
            .find(|day| self.assess(current, c, model, *day).state != current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::customer::swipe_fingerprint;

    const MODEL: BgNbd = BgNbd {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };

    /// A family restaurant: dinner out is twice a week; a quarter of a year's memory.
    fn restaurant() -> DefectionPolicy {
        DefectionPolicy {
            recent_days: 28,
            baseline_days: 56,
            min_baseline_visits: 4,
            at_risk: RuleSet {
                visits_below_fraction: Some(0.6),
                spend_below_fraction: Some(0.6),
                overdue_gaps: Some(3.0),
                min_rules: 1,
                ..RuleSet::default()
            },
            defected: RuleSet {
                overdue_gaps: Some(8.0),
                p_alive_below: Some(0.2),
                min_rules: 1,
                ..RuleSet::default()
            },
        }
    }

    fn history(days: &[Day]) -> CustomerState {
        let mut s = CustomerState::new(days[0], 4_000, "r1", swipe_fingerprint("0"));
        for (i, d) in days.iter().enumerate().skip(1) {
            s.apply(*d, 4_000, "r1", swipe_fingerprint(&i.to_string()), 200);
        }
        s
    }

    #[test]
    fn a_family_that_starts_eating_elsewhere_half_the_time_is_flagged() {
        // Twice a week for twelve weeks...
        let mut days: Vec<Day> = (0..12).flat_map(|w| [w * 7, w * 7 + 3]).collect();
        // ...then once a week for four weeks: half their dinners out are elsewhere now.
        days.extend((12..16).map(|w| w * 7));
        let s = history(&days);
        let a = restaurant().assess(ChurnState::Active, &s, &MODEL, 16 * 7 - 1);
        assert_eq!(a.state, ChurnState::AtRisk, "{a:?}");
        assert!(a.fired.contains(&Rule::VisitsDropped), "{a:?}");
        assert_eq!(
            (a.figures.recent_visits, a.figures.baseline_visits),
            (4, 16)
        );

        // The same family still coming twice a week is fine.
        let steady: Vec<Day> = (0..16).flat_map(|w| [w * 7, w * 7 + 3]).collect();
        let a = restaurant().assess(ChurnState::Active, &history(&steady), &MODEL, 16 * 7 - 1);
        assert_eq!(a.state, ChurnState::Active, "{a:?}");
    }

    #[test]
    fn silence_leads_to_at_risk_then_defected_and_a_return_is_won_back() {
        let days: Vec<Day> = (0..16).flat_map(|w| [w * 7, w * 7 + 3]).collect();
        let s = history(&days);
        let last = s.last_day;
        let policy = restaurant();
        let at_risk = policy
            .next_deadline(ChurnState::Active, &s, &MODEL, last, 365)
            .expect("noticed");
        assert!(
            at_risk > last && at_risk <= last + 12,
            "at risk within a dozen days of silence: {at_risk}"
        );
        assert_eq!(
            policy.assess(ChurnState::Active, &s, &MODEL, at_risk).state,
            ChurnState::AtRisk
        );
        let defected = policy
            .next_deadline(ChurnState::AtRisk, &s, &MODEL, at_risk, 365)
            .expect("defected");
        assert!(defected > at_risk);
        assert_eq!(
            policy
                .assess(ChurnState::AtRisk, &s, &MODEL, defected)
                .state,
            ChurnState::Defected
        );

        // They come back, twice a week again for a while: won back, not merely active.
        let mut back = s.clone();
        let restart = defected + 10;
        for (i, d) in (0..6)
            .flat_map(|w| [restart + w * 7, restart + w * 7 + 3])
            .enumerate()
        {
            back.apply(d, 4_000, "r1", swipe_fingerprint(&format!("back-{i}")), 200);
        }
        let a = policy.assess(ChurnState::Defected, &back, &MODEL, back.last_day);
        assert_eq!(a.state, ChurnState::WonBack, "{a:?}");
    }

    #[test]
    fn nothing_changes_without_a_reason() {
        let days: Vec<Day> = (0..16).flat_map(|w| [w * 7, w * 7 + 3]).collect();
        let s = history(&days);
        let policy = restaurant();
        // Every day of a steady customer's normal gap: no state change, so no signal.
        for day in s.last_day..s.last_day + 3 {
            assert_eq!(
                policy.assess(ChurnState::Active, &s, &MODEL, day).state,
                ChurnState::Active
            );
        }
        // Too little history: the rate rules stay quiet.
        let newcomer = history(&[0, 30]);
        let a = policy.assess(ChurnState::Active, &newcomer, &MODEL, 31);
        assert!(!a.fired.contains(&Rule::VisitsDropped));
    }

    /// A supermarket: a weekly shop; one week in four elsewhere is normal.
    fn supermarket() -> DefectionPolicy {
        DefectionPolicy {
            recent_days: 28,
            baseline_days: 56,
            min_baseline_visits: 4,
            at_risk: RuleSet {
                visits_below_fraction: Some(0.3),
                overdue_gaps: Some(5.0),
                min_rules: 1,
                ..RuleSet::default()
            },
            defected: RuleSet {
                overdue_gaps: Some(12.0),
                min_rules: 1,
                ..RuleSet::default()
            },
        }
    }

    fn chain() -> PolicyBook {
        PolicyBook {
            default: supermarket(),
            formats: BTreeMap::from([("restaurant".to_owned(), restaurant())]),
            store_formats: BTreeMap::from([("r1".to_owned(), "restaurant".to_owned())]),
        }
    }

    fn history_at(store: &str, days: &[Day]) -> CustomerState {
        let mut s = CustomerState::new(days[0], 4_000, store, swipe_fingerprint("0"));
        for (i, d) in days.iter().enumerate().skip(1) {
            s.apply(*d, 4_000, store, swipe_fingerprint(&i.to_string()), 200);
        }
        s
    }

    #[test]
    fn the_restaurant_format_flags_the_half_elsewhere_family_and_the_supermarket_default_does_not()
    {
        let book = chain();
        book.validate().expect("valid");
        let mut days: Vec<Day> = (0..12).flat_map(|w| [w * 7, w * 7 + 3]).collect();
        days.extend((12..16).map(|w| w * 7));
        let as_of = 16 * 7 - 1;

        let family_at_restaurant = history_at("r1", &days);
        assert_eq!(book.for_customer(&family_at_restaurant), &restaurant());
        let a = book.for_customer(&family_at_restaurant).assess(
            ChurnState::Active,
            &family_at_restaurant,
            &MODEL,
            as_of,
        );
        assert_eq!(a.state, ChurnState::AtRisk, "{a:?}");

        // The same pattern at a supermarket (not listed: the chain default) is no alarm.
        let same_at_supermarket = history_at("s7", &days);
        assert_eq!(book.for_customer(&same_at_supermarket), &supermarket());
        let a = book.for_customer(&same_at_supermarket).assess(
            ChurnState::Active,
            &same_at_supermarket,
            &MODEL,
            as_of,
        );
        assert_eq!(a.state, ChurnState::Active, "{a:?}");
    }

    #[test]
    fn a_policy_book_reads_from_config_and_refuses_unknown_fields() {
        let json = r#"{
            "default": {"recent_days": 28, "baseline_days": 56,
                        "at_risk": {"overdue_gaps": 5.0}, "defected": {"overdue_gaps": 12.0}},
            "formats": {"restaurant": {"recent_days": 28, "baseline_days": 56,
                        "min_baseline_visits": 4,
                        "at_risk": {"visits_below_fraction": 0.6, "overdue_gaps": 3.0, "min_rules": 1},
                        "defected": {"overdue_gaps": 8.0}}},
            "store_formats": {"r1": "restaurant"}
        }"#;
        let book: PolicyBook = serde_json::from_str(json).expect("parses");
        book.validate().expect("valid");
        assert_eq!(
            book.for_store("r1").at_risk.visits_below_fraction,
            Some(0.6)
        );
        assert_eq!(book.for_store("other").at_risk.overdue_gaps, Some(5.0));
        assert_eq!(book.needed_horizon(), 84);

        let typo = json.replace("\"overdue_gaps\": 3.0", "\"overdue_gap\": 3.0");
        let e = serde_json::from_str::<PolicyBook>(&typo).expect_err("unknown field");
        assert!(e.to_string().contains("overdue_gap"), "{e}");
    }

    #[test]
    fn validation_names_every_bad_field() {
        let mut book = chain();
        book.store_formats.insert("c9".into(), "cafe".into());
        book.default.recent_days = 0;
        if let Some(r) = book.formats.get_mut("restaurant") {
            r.at_risk.visits_below_fraction = Some(1.5);
            r.defected.min_rules = 3;
        }
        book.default.at_risk = RuleSet::default();
        let v = book.validate().expect_err("invalid");
        let fields: Vec<&str> = v.fields().collect();
        assert_eq!(
            fields,
            [
                "default.recent_days",
                "default.at_risk",
                "formats.restaurant.at_risk.visits_below_fraction",
                "formats.restaurant.defected.min_rules",
                "store_formats.c9",
            ],
            "{v}"
        );
        assert!(v.to_string().contains("cafe"), "{v}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

        /// The candidate days give the same deadline as trying every day.
        #[test]
        fn next_deadline_equals_a_day_by_day_scan(
            gaps in proptest::collection::vec(1i32..30, 1..25),
            recent in 7i32..40,
            baseline in 14i32..90,
            visits in proptest::option::of(0.2f64..0.9),
            spend in proptest::option::of(0.2f64..0.9),
            overdue in proptest::option::of(1.5f64..6.0),
            p_alive in proptest::option::of(0.05f64..0.6),
            defect_overdue in proptest::option::of(4.0f64..12.0),
            state in 0usize..4,
            wait in 0i32..60,
        ) {
            let mut days = vec![0];
            for g in &gaps {
                days.push(days[days.len() - 1] + g);
            }
            let s = history(&days);
            let policy = DefectionPolicy {
                recent_days: recent,
                baseline_days: baseline,
                min_baseline_visits: 2,
                at_risk: RuleSet {
                    visits_below_fraction: visits,
                    spend_below_fraction: spend,
                    overdue_gaps: overdue,
                    min_rules: 1,
                    ..RuleSet::default()
                },
                defected: RuleSet {
                    overdue_gaps: defect_overdue,
                    p_alive_below: p_alive,
                    min_rules: 1,
                    ..RuleSet::default()
                },
            };
            let current = [ChurnState::Active, ChurnState::AtRisk, ChurnState::Defected, ChurnState::WonBack][state];
            let from = s.last_day + wait;
            proptest::prop_assert_eq!(
                policy.next_deadline(current, &s, &MODEL, from, 400),
                policy.next_deadline_by_scan(current, &s, &MODEL, from, 400)
            );
        }
    }
}
