//! Folding: what each event does to the complaint. No decisions and no clock: only what
//! the event says, so replaying a stream rebuilds the complaint exactly.

use chrono::{DateTime, Utc};

use super::events::ComplaintEvent;
use super::state::{
    Complaint, ComplaintStatus, Escalation, FirstResponse, Pause, Reopening, Resolution, SlaMark,
    UpdateNote,
};

/// The complaint a filing starts, at version 1; `None` for any other event.
pub(super) fn start(event: &ComplaintEvent) -> Option<Complaint> {
    let ComplaintEvent::ComplaintFiled {
        complaint_id,
        idempotency_key,
        customer,
        contact,
        store_id,
        channel,
        touchpoint,
        severity,
        description,
        occurred_at,
        level,
        at,
    } = event
    else {
        return None;
    };
    Some(Complaint {
        id: complaint_id.clone(),
        idempotency_key: idempotency_key.clone(),
        version: 1,
        status: ComplaintStatus::Open,
        level: *level,
        level_since: *at,
        severity: *severity,
        touchpoint: *touchpoint,
        channel: *channel,
        store_id: store_id.clone(),
        customer: customer.clone(),
        contact: contact.clone(),
        description: description.clone(),
        occurred_at: *occurred_at,
        filed_at: *at,
        first_response: None,
        last_update_at: *at,
        update_clock_since: None,
        resolved_at: None,
        pauses: Vec::new(),
        warnings: Vec::new(),
        breaches: Vec::new(),
        updates: Vec::new(),
        escalations: Vec::new(),
        resolutions: Vec::new(),
        reopenings: Vec::new(),
        root_cause: None,
    })
}

/// Folds a later event into `s`; `false` for a second filing, which is ignored.
pub(super) fn evolve(s: &mut Complaint, event: &ComplaintEvent) -> bool {
    match event {
        ComplaintEvent::ComplaintFiled { .. } => return false,
        ComplaintEvent::ComplaintAcknowledged { method, note, at } => {
            s.status = ComplaintStatus::Acknowledged;
            s.first_response = Some(FirstResponse {
                at: *at,
                method: *method,
                note: note.clone(),
            });
            s.last_update_at = *at;
            s.update_clock_since = Some(*at);
        }
        ComplaintEvent::ComplaintUpdated {
            note,
            from_customer,
            at,
        } => {
            s.updates.push(UpdateNote {
                at: *at,
                note: note.clone(),
                from_customer: *from_customer,
            });
            s.last_update_at = *at;
            if !from_customer {
                s.update_clock_since = Some(*at);
            }
        }
        ComplaintEvent::WaitingOnCustomer { note, at } => waiting(s, note, *at),
        ComplaintEvent::CustomerResponded { at } => {
            s.status = ComplaintStatus::Acknowledged;
            close_pause(s, *at);
            // The customer answered: now it is our turn to reply.
            s.update_clock_since = Some(*at);
        }
        ComplaintEvent::ComplaintEscalated {
            from,
            to,
            reason,
            at,
        } => {
            s.escalations.push(Escalation {
                at: *at,
                from: *from,
                to: *to,
                reason: reason.clone(),
            });
            s.level = *to;
            s.level_since = *at;
            s.last_update_at = *at;
        }
        ComplaintEvent::SlaWarningRaised {
            run,
            fraction_percent,
            due_at,
            at,
        } => s.warnings.push(SlaMark {
            run: *run,
            fraction_percent: Some(*fraction_percent),
            due_at: *due_at,
            at: *at,
        }),
        ComplaintEvent::SlaBreached { run, due_at, at } => s.breaches.push(SlaMark {
            run: *run,
            fraction_percent: None,
            due_at: *due_at,
            at: *at,
        }),
        ComplaintEvent::ComplaintResolved {
            remedies,
            summary,
            at,
        } => resolved(
            s,
            Resolution {
                at: *at,
                remedies: remedies.clone(),
                summary: summary.clone(),
                satisfaction: None,
            },
        ),
        ComplaintEvent::ComplaintReopened { reason, at } => reopened(s, reason, *at),
        ComplaintEvent::SatisfactionRecorded { satisfaction, .. } => {
            if let Some(r) = s.resolutions.last_mut() {
                r.satisfaction = Some(satisfaction.clone());
            }
        }
        ComplaintEvent::RootCauseRecorded { root_cause, .. } => {
            s.root_cause = Some(root_cause.clone());
        }
    }
    true
}

fn waiting(s: &mut Complaint, note: &str, at: DateTime<Utc>) {
    s.status = ComplaintStatus::WaitingOnCustomer;
    s.pauses.push(Pause { from: at, to: None });
    s.updates.push(UpdateNote {
        at,
        note: note.to_owned(),
        from_customer: false,
    });
    s.last_update_at = at;
    s.update_clock_since = Some(at);
}

fn resolved(s: &mut Complaint, resolution: Resolution) {
    let at = resolution.at;
    s.status = ComplaintStatus::Resolved;
    close_pause(s, at);
    s.resolutions.push(resolution);
    s.resolved_at = Some(at);
    s.last_update_at = at;
}

fn reopened(s: &mut Complaint, reason: &str, at: DateTime<Utc>) {
    s.status = if s.first_response.is_some() {
        ComplaintStatus::Acknowledged
    } else {
        ComplaintStatus::Open
    };
    s.reopenings.push(Reopening {
        at,
        reason: reason.to_owned(),
    });
    s.resolved_at = None;
    // The level gets a fresh resolution clock, and owes the customer an update.
    s.level_since = at;
    s.update_clock_since = Some(at);
    s.last_update_at = at;
}

fn close_pause(s: &mut Complaint, at: DateTime<Utc>) {
    if let Some(p) = s.pauses.last_mut()
        && p.to.is_none()
    {
        p.to = Some(at);
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use proptest::prelude::*;

    use super::super::testing::*;
    use super::super::*;
    use crate::aggregate::Aggregate;
    use crate::feedback::vocab::{ContactMethod, Level, Severity};

    #[test]
    fn a_full_lifecycle_replays_to_the_same_state() {
        let (state, log) = given(vec![
            (0, file("moderate")),
            (10, ack("phone")),
            (20, update("looked at the CCTV", false)),
            (30, wait()),
            (90, update("here is the receipt", true)),
            (100, escalate("customer asks for the regional manager")),
            (120, resolve(&["apology", "refund"])),
            (2000, survey(good_survey())),
            (2100, root_cause(good_root_cause())),
            (3000, reopen()),
            (3100, resolve(&["compensation"])),
        ]);
        let s = state_of(&state);
        assert_eq!(s.version, log.len() as u64);
        assert_eq!(s.status, ComplaintStatus::Resolved);
        assert_eq!(s.level, Level::RegionalManager);
        assert_eq!(
            s.pauses,
            vec![Pause {
                from: t(30),
                to: Some(t(90))
            }]
        );
        assert_eq!(s.resolutions.len(), 2);
        assert_eq!(
            s.resolutions[0].satisfaction.as_ref().map(|x| x.score),
            Some(4)
        );
        assert_eq!(s.reopenings.len(), 1);
        assert_eq!(s.resolved_at, Some(t(3100)));
        assert_eq!(
            s.first_response.as_ref().map(|f| (f.at, f.method)),
            Some((t(10), ContactMethod::Phone))
        );
        assert!(
            log.iter()
                .any(|e| matches!(e, ComplaintEvent::CustomerResponded { .. }))
        );

        // Replaying the log, and the log after a trip through JSON, rebuilds it exactly.
        assert_eq!(Complaint::replay(&log), state);
        let json = serde_json::to_string(&log).expect("json");
        assert!(json.contains(r#""type":"complaint_filed""#), "{json}");
        assert!(json.contains(r#""kind":"manual""#), "{json}");
        let back: Vec<ComplaintEvent> = serde_json::from_str(&json).expect("decode");
        assert_eq!(Complaint::replay(&back), state);
    }

    #[test]
    fn reopening_a_resolved_complaint_restarts_the_level_clocks() {
        let (state, _) = given(vec![
            (0, file("minor")),
            (5, ack("phone")),
            (60, resolve(&["replacement"])),
            (61, survey(good_survey())),
            (500, reopen()),
        ]);
        let s = state_of(&state);
        assert_eq!(s.status, ComplaintStatus::Acknowledged);
        assert_eq!(s.resolved_at, None);
        assert_eq!(s.current_resolution(), None);
        assert_eq!(
            s.clock_run(SlaClock::Resolution).map(|r| r.started_at),
            Some(t(500))
        );
        // A new resolution gets its own survey.
        let (state, _) = given(vec![
            (0, file("minor")),
            (60, resolve(&["replacement"])),
            (61, survey(good_survey())),
            (500, reopen()),
            (600, resolve(&["refund"])),
            (601, survey(good_survey())),
        ]);
        let s = state_of(&state);
        assert_eq!(s.status, ComplaintStatus::Resolved);
        assert!(s.resolutions.iter().all(|r| r.satisfaction.is_some()));
        // Never acknowledged: reopening goes back to open, first response still owed.
        assert_eq!(s.first_response, None);
        let reopened = Complaint::apply(
            state.clone(),
            &ComplaintEvent::ComplaintReopened {
                reason: "x".into(),
                at: t(700),
            },
        );
        assert_eq!(reopened.map(|c| c.status), Some(ComplaintStatus::Open));
    }

    /// Commands that are well-formed; whether they fit the state is up to `handle`.
    fn any_command(state: Option<Complaint>) -> BoxedStrategy<ComplaintCommand> {
        let Some(s) = state else {
            return prop_oneof![
                Just("minor"),
                Just("moderate"),
                Just("major"),
                Just("critical")
            ]
            .prop_map(file)
            .boxed();
        };
        let run_started = |clock| s.clock_run(clock).map_or(s.level_since, |r| r.started_at);
        let clocks: Vec<(SlaClock, DateTime<Utc>)> = SlaClock::ALL
            .iter()
            .map(|c| (*c, run_started(*c)))
            .collect();
        let timer = (
            0usize..3,
            prop_oneof![Just(50u8), Just(75u8)],
            any::<bool>(),
        )
            .prop_map(move |(i, fraction, is_breach)| {
                let (clock, started_at) = clocks[i];
                if is_breach {
                    ComplaintCommand::RecordSlaBreach(RecordSlaBreach {
                        expected_version: None,
                        clock,
                        started_at,
                        due_at: started_at + TimeDelta::minutes(1),
                    })
                } else {
                    ComplaintCommand::RaiseSlaWarning(RaiseSlaWarning {
                        expected_version: None,
                        clock,
                        started_at,
                        fraction_percent: fraction,
                        due_at: started_at + TimeDelta::minutes(1),
                    })
                }
            });
        prop_oneof![
            if s.severity >= Severity::Major {
                prop_oneof![Just("phone"), Just("in_person")].boxed()
            } else {
                prop_oneof![
                    Just("phone"),
                    Just("in_person"),
                    Just("letter"),
                    Just("email")
                ]
                .boxed()
            }
            .prop_map(ack),
            any::<bool>().prop_map(|c| update("note", c)),
            Just(wait()),
            Just(escalate("manual")),
            proptest::sample::subsequence(
                vec!["apology", "refund", "replacement", "compensation", "fix"],
                1..=3
            )
            .prop_map(|r| resolve(&r)),
            Just(reopen()),
            (1u32..=5, 1u32..=5).prop_map(|(score, f)| survey(SatisfactionInput {
                score,
                ownership: f,
                felt_valued: f,
                speed: f,
                sincere_regret: f,
                reason: "because".into(),
            })),
            Just(root_cause(good_root_cause())),
            timer.clone(),
            timer,
        ]
        .boxed()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any sequence of valid commands: the events handle returned, replayed from the
        /// start (also after a JSON round trip), give the state built step by step; the
        /// version counts the events; the level never goes down; refusals emit nothing.
        #[test]
        fn replaying_handled_events_rebuilds_the_state(seeds in proptest::collection::vec(any::<u64>(), 1..40)) {
            use proptest::strategy::ValueTree;
            use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

            let mut state: Option<Complaint> = None;
            let mut log: Vec<ComplaintEvent> = Vec::new();
            let mut now = t(0);
            for seed in seeds {
                let mut bytes = [0u8; 32];
                bytes[..8].copy_from_slice(&seed.to_le_bytes());
                let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
                let cmd = any_command(state.clone()).new_tree(&mut runner).expect("tree").current();
                now += TimeDelta::minutes((seed % 300) as i64 + 1);
                let level_before = state.as_ref().map(|s| s.level);
                match Complaint::handle(state.as_ref(), cmd, now, &ctx()) {
                    Ok(events) => {
                        for e in &events {
                            state = Complaint::apply(state, e);
                        }
                        log.extend(events);
                    }
                    Err(ComplaintError::Invalid(v)) => prop_assert!(false, "valid command refused: {v}"),
                    Err(_) => {}
                }
                let s = state.as_ref().expect("filed first");
                prop_assert_eq!(s.version, log.len() as u64);
                prop_assert!(level_before.is_none_or(|l| l <= s.level));
            }
            prop_assert_eq!(&Complaint::replay(&log), &state);
            let json = serde_json::to_vec(&log).expect("json");
            let back: Vec<ComplaintEvent> = serde_json::from_slice(&json).expect("decode");
            prop_assert_eq!(&Complaint::replay(&back), &state);
        }
    }
}
