//! Episodes: what a churn signal means for a customer's outreach, given their cases. A
//! customer gets one case per episode (see the module documentation of `outreach`).

use chrono::NaiveDate;

use super::case::{DefectorState, OutreachCase, OutreachStatus, Returned};
use crate::ids::OutreachCaseId;

/// What a churn signal means for a customer's outreach, given their cases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalOutcome {
    /// A new episode: open a case for it.
    Open,
    /// The episode's open at-risk case becomes a defection case ([`EscalateOutreach`](super::EscalateOutreach)).
    Escalate(OutreachCaseId),
    /// The customer is back: the episode of this case ends ([`EndOutreach`](super::EndOutreach)).
    End(OutreachCaseId),
    /// Nothing to do, and why.
    Skip(&'static str),
}

/// The customer's case of their latest episode: the one whose episode started last (ties:
/// opened last, then the greatest id).
pub fn latest_case(cases: &[OutreachCase]) -> Option<&OutreachCase> {
    cases.iter().max_by(|a, b| {
        (a.episode_start(), a.opened_at, &a.id).cmp(&(b.episode_start(), b.opened_at, &b.id))
    })
}

/// What a churn signal into `state` assessed on `as_of` means, given all of the
/// customer's cases. The rules, on the case of the latest episode ([`latest_case`]):
///
/// - Into `at_risk` or `defected`:
///   - no case yet: [`SignalOutcome::Open`];
///   - the latest episode ended (the customer came back on day `r`): a new episode if the
///     signal is from after `r`, else it belongs to an older episode (skip);
///   - the latest episode still runs and the signal is no more severe than its case
///     (at risk after at risk, anything after defected): skip: the episode has its case,
///     whether the store is still on it or has closed it;
///   - it runs, the signal is more severe (defected after at risk) and not older than the
///     episode: an open case is escalated; a closed one has ended the episode for the
///     store, and the defection opens a new case (a second conversation about leaving,
///     not a duplicate: after it, no signal is more severe);
/// - into `active` or `won_back`: the latest episode ends ([`SignalOutcome::End`]) unless
///   it has ended already or began after the signal's day;
/// - anything else: skip.
pub fn on_signal(cases: &[OutreachCase], state: &str, as_of: NaiveDate) -> SignalOutcome {
    let latest = latest_case(cases);
    if Returned::parse(state).is_some() {
        return match latest {
            None => SignalOutcome::Skip("no case to end"),
            Some(c) if c.returned_on.is_some() => {
                SignalOutcome::Skip("the latest episode has ended already")
            }
            Some(c) if as_of < c.episode_start() => {
                SignalOutcome::Skip("the return is older than the latest episode")
            }
            Some(c) => SignalOutcome::End(c.id.clone()),
        };
    }
    let Some(to) = DefectorState::parse(state) else {
        return SignalOutcome::Skip("not a move into at_risk, defected, active or won_back");
    };
    let Some(c) = latest else {
        return SignalOutcome::Open;
    };
    if let Some(back) = c.returned_on {
        return if as_of > back {
            SignalOutcome::Open
        } else {
            SignalOutcome::Skip("from an episode that has ended")
        };
    }
    if to.severity() <= c.state.severity() {
        return SignalOutcome::Skip("the episode has its case");
    }
    if as_of < c.episode_start() {
        return SignalOutcome::Skip("older than the episode's case");
    }
    match c.status {
        OutreachStatus::Open => SignalOutcome::Escalate(c.id.clone()),
        OutreachStatus::Closed => SignalOutcome::Open,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;

    #[test]
    fn a_re_emitted_signal_finds_its_episode_and_a_new_episode_opens_a_new_case() {
        use SignalOutcome::{End, Escalate, Open, Skip};
        assert_eq!(on_signal(&[], "at_risk", day(10)), Open);
        assert!(matches!(on_signal(&[], "active", day(10)), Skip(_)));
        assert!(matches!(on_signal(&[], "gone", day(10)), Skip(_)));

        let first = case_from("sig-1", "at_risk", 10, 0);
        let id = first.id.clone();
        // Re-emitted (another id: another day) or repeated: the episode has its case.
        for d in [9, 10, 12] {
            assert!(matches!(
                on_signal(std::slice::from_ref(&first), "at_risk", day(d)),
                Skip(_)
            ));
        }
        // A defection during the episode makes the open case more urgent...
        assert_eq!(
            on_signal(std::slice::from_ref(&first), "defected", day(12)),
            Escalate(id.clone())
        );
        // ...unless it is older than the episode.
        assert!(matches!(
            on_signal(std::slice::from_ref(&first), "defected", day(9)),
            Skip(_)
        ));
        let escalated = step(first.clone(), escalate("sig-2", 12, 3), 1);
        assert_eq!(
            (escalated.state, escalated.version, escalated.due_at),
            (DefectorState::Defected, 2, t(3))
        );
        assert_eq!(
            (escalated.value_at_risk_minor, escalated.clv_minor),
            (4_000, 9_000)
        );
        // The deadline only ever moves up; a second defection changes nothing.
        let later = handle(Some(&first), escalate("sig-2", 12, 100), t(1)).expect("ok");
        assert!(matches!(
            later.as_slice(),
            [OutreachEvent::OutreachEscalated { due_at, .. }] if *due_at == first.due_at
        ));
        assert_eq!(
            handle(Some(&escalated), escalate("sig-3", 13, 3), t(2)),
            Ok(vec![])
        );
        for s in ["at_risk", "defected"] {
            assert!(matches!(
                on_signal(std::slice::from_ref(&escalated), s, day(13)),
                Skip(_)
            ));
        }

        // The customer comes back: the episode ends and the case closes.
        assert!(matches!(
            on_signal(std::slice::from_ref(&escalated), "won_back", day(9)),
            Skip(_)
        ));
        assert_eq!(
            on_signal(std::slice::from_ref(&escalated), "won_back", day(14)),
            End(id.clone())
        );
        let ended = step(escalated, end("sig-4", "won_back", 14), 5);
        assert_eq!(
            (ended.status, ended.returned_on, ended.version),
            (OutreachStatus::Closed, Some(day(14)), 3)
        );
        assert_eq!(
            handle(Some(&ended), end("sig-4", "won_back", 14), t(6)),
            Ok(vec![])
        );
        assert!(matches!(
            on_signal(std::slice::from_ref(&ended), "active", day(15)),
            Skip(_)
        ));
        // Signals of the ended episode, re-emitted, open nothing; a later move does.
        for (s, d) in [("at_risk", 10), ("defected", 12), ("at_risk", 14)] {
            assert!(matches!(
                on_signal(std::slice::from_ref(&ended), s, day(d)),
                Skip(_)
            ));
        }
        assert_eq!(
            on_signal(std::slice::from_ref(&ended), "at_risk", day(20)),
            Open
        );
        // Then the new episode's case is the latest, whatever order the cases come in.
        let second = case_from("sig-5", "at_risk", 20, 0);
        let both = [second.clone(), ended.clone()];
        assert_eq!(latest_case(&both).map(|c| &c.id), Some(&second.id));
        assert!(matches!(on_signal(&both, "at_risk", day(21)), Skip(_)));
        assert!(matches!(on_signal(&both, "active", day(16)), Skip(_)));
        assert_eq!(on_signal(&both, "active", day(22)), End(second.id.clone()));
    }

    #[test]
    fn a_defection_after_the_store_closed_the_at_risk_case_opens_a_defection_case() {
        let first = case_from("sig-1", "at_risk", 10, 0);
        let closed = step(first, record("price", "", "lost"), 2);
        assert_eq!(closed.status, OutreachStatus::Closed);
        // The same episode at the same severity: nothing, closed or not.
        assert!(matches!(
            on_signal(std::slice::from_ref(&closed), "at_risk", day(11)),
            SignalOutcome::Skip(_)
        ));
        assert_eq!(
            on_signal(std::slice::from_ref(&closed), "defected", day(12)),
            SignalOutcome::Open
        );
        // A closed case is not escalated; it still records the customer's return.
        assert_eq!(
            handle(Some(&closed), escalate("sig-2", 12, 3), t(3)),
            Err(OutreachError::InvalidTransition {
                from_status: OutreachStatus::Closed,
                command: "escalate_outreach"
            })
        );
        let returned = step(closed, end("sig-3", "active", 13), 4);
        assert_eq!(returned.returned_on, Some(day(13)));
        // The defection case is the episode's latest: re-emissions of either open nothing.
        let defection = case_from("sig-2", "defected", 12, 3);
        let cases = [
            defection.clone(),
            step(
                case_from("sig-1", "at_risk", 10, 0),
                record("price", "", "lost"),
                2,
            ),
        ];
        for (s, d) in [("at_risk", 10), ("defected", 12), ("defected", 13)] {
            assert!(matches!(
                on_signal(&cases, s, day(d)),
                SignalOutcome::Skip(_)
            ));
        }
    }
}
