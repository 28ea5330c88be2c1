//! Which target a complaint's clock run counts against, and so when its alarms fall due.
//!
//! The aggregate says which clock runs at which level since when
//! ([`Complaint::running_clocks`]); the policy gives each run its target, in business
//! time from the run's start, less the complaint's pauses:
//!
//! - first response: the severity's `first_response`;
//! - update: the severity's `update_interval`;
//! - resolution: **the earlier of two deadlines.** The severity's `resolution` target
//!   counts in business time from the filing, less the time spent waiting on the customer;
//!   the level's `escalation.<level>` target counts from when the complaint reached that
//!   level (or was reopened there). The run falls due at whichever comes first, so a
//!   critical complaint is due by its short severity target even at a level with a long
//!   one, and a minor complaint is due by its level's target, well inside its own. After
//!   an escalation the new level's run is again due at the earlier of the two.
//!
//!   A severity deadline that is not after the level's start does not count for that
//!   level: it has been breached already (its breach is what escalated the complaint) or
//!   passed while the complaint was resolved, and a deadline before the run even starts
//!   would leave the level no time at all. The level then has its own target, which is
//!   what the owner gets once a complaint's severity target is spent.
//!
//! Expressed as the run's target, the severity deadline is what is left of the severity's
//! target when the run starts (the target less the running time from filing to the run's
//! start); running time adds up, so counting that remainder from the run's start falls
//! due at the very instant the severity's target, counted from the filing, does. The
//! warnings fall at their fractions of the run's target, from its start.

use chrono::{DateTime, Utc};

use super::clock::{Pause, Schedule, running_secs, schedule};
use super::duration::BusinessDuration;
use super::policy::SlaPolicy;
use crate::feedback::calendar::BusinessCalendar;
use crate::feedback::complaint::{ClockRun, Complaint, SlaClock};
use crate::feedback::vocab::{Level, Severity};

impl SlaPolicy {
    /// The business time `run` of `complaint` has from its start until it is breached, in
    /// `calendar` (the store's): see the module documentation for the rule per clock.
    pub fn run_target(
        &self,
        calendar: &BusinessCalendar,
        complaint: &Complaint,
        run: &ClockRun,
    ) -> BusinessDuration {
        let targets = self.targets.get(complaint.severity);
        match run.clock {
            SlaClock::FirstResponse => targets.first_response,
            SlaClock::Update => targets.update_interval,
            SlaClock::Resolution => self.resolution_target(
                calendar,
                complaint.severity,
                run.level,
                complaint.filed_at,
                run.started_at,
                &pauses_of(complaint),
            ),
        }
    }

    /// When the alarms of `run` of `complaint` fall due in `calendar`: its warnings at the
    /// policy's fractions of [`SlaPolicy::run_target`] and its breach at the whole of it,
    /// counted from the run's start, less the complaint's pauses.
    pub fn run_schedule(
        &self,
        calendar: &BusinessCalendar,
        complaint: &Complaint,
        run: &ClockRun,
    ) -> Schedule {
        schedule(
            calendar,
            run.started_at,
            self.run_target(calendar, complaint, run).secs(),
            &pauses_of(complaint),
            &self.warnings,
        )
    }

    /// The resolution rule: the level's target, or what is left of the severity's target
    /// at the level's start if that is less (and more than nothing).
    fn resolution_target(
        &self,
        calendar: &BusinessCalendar,
        severity: Severity,
        level: Level,
        filed_at: DateTime<Utc>,
        level_since: DateTime<Utc>,
        pauses: &[Pause],
    ) -> BusinessDuration {
        let level_target = *self.escalation.get(level);
        let spent = running_secs(calendar, filed_at, pauses, level_since);
        let left = self.targets.get(severity).resolution.secs() - spent;
        if left > 0 {
            level_target.min(BusinessDuration::from_secs(left))
        } else {
            level_target
        }
    }
}

/// The complaint's pauses (waiting on the customer) as the clock functions take them.
fn pauses_of(complaint: &Complaint) -> Vec<Pause> {
    complaint.pauses().iter().map(|p| (p.from, p.to)).collect()
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use proptest::prelude::*;

    use super::super::clock::reached_at;
    use super::super::testing::*;
    use super::*;
    use crate::aggregate::Aggregate;
    use crate::feedback::complaint::{
        AcknowledgeComplaint, ComplaintCommand, Context, EscalateComplaint, FileComplaint,
        Pause as Waiting, RecordSlaBreach, SealedContact,
    };
    use crate::ids::ComplaintId;
    use crate::swipe::CustomerInput;

    /// The test policy (resolution: minor 80 h, moderate 40 h, major 24 h; levels 8 h,
    /// 16 h, 24 h), with a critical complaint to be resolved within 6 h.
    fn policy_6h_critical() -> SlaPolicy {
        let mut p = policy();
        p.targets.critical.resolution = h(6);
        p
    }

    /// A complaint of `severity` filed at `at` at a store on [`calendar`]'s hours (Monday
    /// to Friday, 09:00-17:00: the weekend is closed).
    fn filed(severity: &str, at: DateTime<Utc>) -> Complaint {
        let filing = ComplaintCommand::FileComplaint(FileComplaint {
            expected_version: None,
            complaint_id: ComplaintId::parse("c-1").expect("id"),
            idempotency_key: "k-1".into(),
            customer: CustomerInput::CustomerId("cust-1".into()),
            contact: SealedContact::new(vec![1]),
            store_id: "s-7".into(),
            channel: "till".into(),
            touchpoint: "staff".into(),
            severity: severity.into(),
            description: "Charged twice".into(),
            occurred_at: at,
        });
        let events = Complaint::handle(None, filing, at, &Context::default()).expect("filed");
        Complaint::replay(&events).expect("a complaint")
    }

    /// The complaint after `command` at `at`.
    fn then(c: Complaint, command: ComplaintCommand, at: DateTime<Utc>) -> Complaint {
        let events = Complaint::handle(Some(&c), command, at, &Context::default()).expect("ok");
        events
            .iter()
            .fold(Some(c), Complaint::apply)
            .expect("still there")
    }

    /// The complaint after the timer recorded the breach of its resolution run.
    fn breached(policy: &SlaPolicy, c: Complaint) -> Complaint {
        let (run, due) = resolution_due(policy, &c);
        let breach = ComplaintCommand::RecordSlaBreach(RecordSlaBreach {
            expected_version: None,
            clock: SlaClock::Resolution,
            started_at: run.started_at,
            due_at: due,
        });
        then(c, breach, due)
    }

    /// The running resolution run, and when it falls due.
    fn resolution_due(policy: &SlaPolicy, c: &Complaint) -> (ClockRun, DateTime<Utc>) {
        let run = c.clock_run(SlaClock::Resolution).expect("running");
        let due = policy
            .run_schedule(&calendar(), c, &run)
            .breach
            .expect("due");
        (run, due)
    }

    /// Friday 5 September 2025, 13:00 in London: four business hours before the weekend.
    fn friday_1pm() -> DateTime<Utc> {
        london("2025-09-05 13:00:00")
    }

    #[test]
    fn a_critical_complaint_falls_due_by_its_severity_target_before_the_levels() {
        let policy = policy_6h_critical();
        let c = filed("critical", friday_1pm());
        let (run, due) = resolution_due(&policy, &c);
        assert_eq!(run.level, Level::RegionalManager);
        // 6 h from filing: Friday 13:00-17:00, the weekend closed, Monday 09:00-11:00. The
        // regional manager's own 16 h would run to Tuesday 13:00.
        assert_eq!(due, london("2025-09-08 11:00:00"));
        assert_eq!(policy.run_target(&calendar(), &c, &run), h(6));
        let s = policy.run_schedule(&calendar(), &c, &run);
        // The warnings at 50 % and 75 % of those 6 h: 3 h and 4.5 h in.
        assert_eq!(
            s.warnings,
            vec![
                (0.5, Some(london("2025-09-05 16:00:00"))),
                (0.75, Some(london("2025-09-08 09:30:00"))),
            ]
        );
    }

    #[test]
    fn a_minor_complaint_falls_due_by_its_levels_target() {
        let policy = policy_6h_critical();
        let c = filed("minor", friday_1pm());
        let (run, due) = resolution_due(&policy, &c);
        assert_eq!(run.level, Level::StoreManager);
        // The store manager's 8 h: Friday 4 h, Monday 4 h; the minor target (80 h from
        // filing) is two weeks away.
        assert_eq!(due, london("2025-09-08 13:00:00"));
        assert_eq!(policy.run_target(&calendar(), &c, &run), h(8));
    }

    #[test]
    fn after_an_escalation_the_earlier_of_the_two_again() {
        let policy = policy_6h_critical();

        // A moderate complaint (40 h from filing) climbing by breaches.
        let c = filed("moderate", friday_1pm());
        assert_eq!(resolution_due(&policy, &c).1, london("2025-09-08 13:00:00"));
        // The regional manager from Monday 13:00 (8 h of the 40 spent): its own 16 h
        // come first, to Wednesday 13:00.
        let c = breached(&policy, c);
        assert_eq!(c.level, Level::RegionalManager);
        assert_eq!(resolution_due(&policy, &c).1, london("2025-09-10 13:00:00"));
        // The owner from Wednesday 13:00 (24 h spent): the 16 h left of the severity's
        // target come before the owner's 24 h (Monday 15th 13:00), to Friday 12th 13:00.
        let c = breached(&policy, c);
        assert_eq!(c.level, Level::Owner);
        let (run, due) = resolution_due(&policy, &c);
        assert_eq!(due, london("2025-09-12 13:00:00"));
        assert_eq!(policy.run_target(&calendar(), &c, &run), h(16));

        // A critical complaint escalated by hand before its 6 h are up stays due then:
        // the owner's 24 h would run to Thursday.
        let c = filed("critical", friday_1pm());
        let escalate = ComplaintCommand::EscalateComplaint(EscalateComplaint {
            expected_version: None,
            reason: "the customer asked for the owner".into(),
        });
        let c = then(c, escalate, london("2025-09-08 10:00:00"));
        assert_eq!(c.level, Level::Owner);
        assert_eq!(resolution_due(&policy, &c).1, london("2025-09-08 11:00:00"));

        // Escalated by the breach of its severity target, the critical complaint's target
        // is spent: the owner has their own 24 h, from Monday 11:00 to Thursday 11:00.
        let c = breached(&policy, filed("critical", friday_1pm()));
        assert_eq!(c.level, Level::Owner);
        assert_eq!(c.level_since, london("2025-09-08 11:00:00"));
        assert_eq!(resolution_due(&policy, &c).1, london("2025-09-11 11:00:00"));
    }

    fn instants() -> impl Strategy<Value = DateTime<Utc>> {
        (0i64..14 * 86_400).prop_map(|s| london("2025-09-01 00:00:00") + Duration::seconds(s))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// The rule as stated: due at the earlier of the severity's target from filing
        /// and the level's from its start, both less the pauses, where the severity's
        /// counts only if it falls after the level's start.
        #[test]
        fn the_resolution_run_falls_due_at_the_earlier_deadline(
            filed_at in instants(),
            severity_target in 1i64..60 * HOUR,
            level_target in 1i64..30 * HOUR,
            level_after in 0i64..5 * 86_400,
            gaps in proptest::collection::vec((0i64..86_400, 1i64..86_400), 0..3),
        ) {
            let cal = calendar();
            let mut policy = policy();
            policy.targets.minor.resolution = BusinessDuration::from_secs(severity_target);
            policy.escalation.store_manager = BusinessDuration::from_secs(level_target);
            let mut c = filed("minor", filed_at);
            c.level_since = filed_at + Duration::seconds(level_after);
            let mut t = filed_at;
            for (gap, length) in gaps {
                let from = t + Duration::seconds(gap);
                t = from + Duration::seconds(length);
                c.pauses.push(Waiting { from, to: Some(t) });
            }
            let run = c.clock_run(SlaClock::Resolution).expect("running");
            let pauses = pauses_of(&c);
            let by_severity = reached_at(&cal, filed_at, &pauses, severity_target).expect("due");
            let by_level = reached_at(&cal, c.level_since, &pauses, level_target).expect("due");
            let expected = if by_severity > c.level_since {
                by_severity.min(by_level)
            } else {
                by_level
            };
            prop_assert_eq!(policy.run_schedule(&cal, &c, &run).breach, Some(expected));
            prop_assert!(expected > run.started_at, "a run is never due at its start");
        }
    }

    #[test]
    fn first_response_and_update_count_the_severitys_targets() {
        let policy = policy();
        let c = filed("major", friday_1pm());
        let run = c.clock_run(SlaClock::FirstResponse).expect("running");
        assert_eq!(policy.run_target(&calendar(), &c, &run), h(4));
        let c = then(
            c,
            ComplaintCommand::AcknowledgeComplaint(AcknowledgeComplaint {
                expected_version: None,
                method: "phone".into(),
                note: String::new(),
            }),
            london("2025-09-05 14:00:00"),
        );
        let run = c.clock_run(SlaClock::Update).expect("running");
        assert_eq!(policy.run_target(&calendar(), &c, &run), h(8));
    }
}
