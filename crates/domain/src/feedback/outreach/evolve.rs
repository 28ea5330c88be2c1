//! Folding: what each event does to an outreach case, only what the event says.

use super::case::{OutreachAttempt, OutreachCase, OutreachStatus};
use super::events::OutreachEvent;
use crate::feedback::vocab::OutreachOutcome;

/// The case an opening starts, at version 1; `None` for any other event.
pub(super) fn start(event: &OutreachEvent) -> Option<OutreachCase> {
    let OutreachEvent::OutreachOpened {
        case_id,
        signal_id,
        customer,
        home_store,
        state,
        value_at_risk_minor,
        clv_minor,
        due_at,
        at,
        as_of,
    } = event
    else {
        return None;
    };
    Some(OutreachCase {
        id: case_id.clone(),
        signal_id: signal_id.clone(),
        version: 1,
        status: OutreachStatus::Open,
        customer: customer.clone(),
        home_store: home_store.clone(),
        state: *state,
        value_at_risk_minor: *value_at_risk_minor,
        clv_minor: *clv_minor,
        opened_at: *at,
        due_at: *due_at,
        attempts: Vec::new(),
        since: *as_of,
        returned_on: None,
    })
}

/// Folds a later event into `s`; `false` for a second opening, which is ignored.
pub(super) fn evolve(s: &mut OutreachCase, event: &OutreachEvent) -> bool {
    match event {
        OutreachEvent::OutreachOpened { .. } => return false,
        OutreachEvent::OutreachEscalated {
            state,
            value_at_risk_minor,
            clv_minor,
            due_at,
            ..
        } => {
            s.state = *state;
            s.value_at_risk_minor = *value_at_risk_minor;
            s.clv_minor = *clv_minor;
            s.due_at = *due_at;
        }
        OutreachEvent::OutreachEnded { as_of, .. } => {
            s.returned_on = Some(*as_of);
            s.status = OutreachStatus::Closed;
        }
        OutreachEvent::OutreachRecorded {
            reason,
            free_text,
            outcome,
            method,
            at,
        } => {
            s.attempts.push(OutreachAttempt {
                at: *at,
                reason: *reason,
                free_text: free_text.clone(),
                outcome: *outcome,
                method: *method,
            });
            if matches!(outcome, OutreachOutcome::WonBack | OutreachOutcome::Lost) {
                s.status = OutreachStatus::Closed;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;
    use crate::aggregate::Aggregate;

    #[test]
    fn a_case_opens_records_and_replays() {
        let (state, log) = run(vec![
            (
                0,
                OutreachCommand::OpenOutreach(opening("o-1", "sig-1", "store-1", 50_000)),
            ),
            (2, record("", "", "not_reached")),
            (5, record("price", "", "reached")),
            (9, record("other", "the new manager", "lost")),
        ]);
        let s = state.as_ref().expect("opened");
        assert_eq!(s.version, 4);
        assert_eq!(s.status, OutreachStatus::Closed);
        assert_eq!(s.attempts.len(), 3);
        assert_eq!(s.attempts[0].reason, None);
        assert_eq!(OutreachCase::replay(&log), state);
        let json = serde_json::to_string(&log).expect("json");
        assert!(json.contains(r#""type":"outreach_recorded""#), "{json}");
        let back: Vec<OutreachEvent> = serde_json::from_str(&json).expect("decode");
        assert_eq!(OutreachCase::replay(&back), state);
        // Closed: nothing more to record.
        assert_eq!(
            handle(state.as_ref(), record("price", "", "reached"), t(10)),
            Err(OutreachError::InvalidTransition {
                from_status: OutreachStatus::Closed,
                command: "record_outreach"
            })
        );
    }
}
