//! The decisions, command by command, in given / when / then form.

use super::super::testing::*;
use super::super::*;
use crate::aggregate::Aggregate;
use crate::feedback::vocab::Level;
use crate::ids::ComplaintId;
use crate::swipe::CustomerInput;

#[test]
fn every_invalid_input_names_its_field_and_emits_nothing() {
    let bad_filing = FileComplaint {
        expected_version: None,
        complaint_id: ComplaintId::parse("c-1").expect("id"),
        idempotency_key: "has space".into(),
        customer: CustomerInput::CardToken("4111 1111 1111 1111".into()),
        contact: SealedContact::new(vec![]),
        store_id: "".into(),
        channel: "pigeon".into(),
        touchpoint: "vibes".into(),
        severity: "urgent".into(),
        description: "   ".into(),
        occurred_at: t(60 * 24),
    };
    assert_eq!(
        fields(when(&None, 0, ComplaintCommand::FileComplaint(bad_filing))),
        [
            "idempotency_key",
            "customer.card_token",
            "contact",
            "store_id",
            "channel",
            "touchpoint",
            "severity",
            "description",
            "occurred_at"
        ]
    );
    let mut old = filing("minor");
    old.occurred_at = t(-60 * 24 * 400);
    old.customer = CustomerInput::Missing;
    assert_eq!(
        fields(when(&None, 0, ComplaintCommand::FileComplaint(old))),
        ["customer", "occurred_at"]
    );
    let mut pan = filing("minor");
    pan.customer = CustomerInput::CardNumber("4111111111111111".into());
    assert_eq!(
        fields(when(&None, 0, ComplaintCommand::FileComplaint(pan))),
        ["customer.card_number"]
    );

    let (open, _) = given(vec![(0, file("major"))]);
    assert_eq!(fields(when(&open, 1, ack("fax"))), ["method"]);
    assert_eq!(fields(when(&open, 1, ack("email"))), ["method"]);
    assert_eq!(fields(when(&open, 1, update(" ", false))), ["note"]);
    assert_eq!(fields(when(&open, 1, escalate(""))), ["reason"]);
    assert_eq!(fields(when(&open, 1, resolve(&[]))), ["remedies"]);
    assert_eq!(
        fields(when(&open, 1, resolve(&["refund", "hug", "refund"]))),
        ["remedies[1]", "remedies[2]"]
    );
    let no_summary = ComplaintCommand::ResolveComplaint(ResolveComplaint {
        expected_version: None,
        remedies: vec!["fix".into()],
        summary: String::new(),
    });
    assert_eq!(fields(when(&open, 1, no_summary)), ["summary"]);
    let bad_rc = RootCauseInput {
        whys: vec!["a".into(), "".into()],
        category: "weather".into(),
        corrective_action: "".into(),
    };
    assert_eq!(
        fields(when(&open, 1, root_cause(bad_rc))),
        [
            "root_cause.whys[1]",
            "root_cause.category",
            "root_cause.corrective_action"
        ]
    );
    let too_many = RootCauseInput {
        whys: vec!["why".into(); 6],
        ..good_root_cause()
    };
    assert_eq!(
        fields(when(&open, 1, root_cause(too_many))),
        ["root_cause.whys"]
    );
    let no_whys = RootCauseInput {
        whys: vec![],
        ..good_root_cause()
    };
    assert_eq!(
        fields(when(&open, 1, root_cause(no_whys))),
        ["root_cause.whys"]
    );

    let s = state_of(&open);
    let mut w = warning(s, SlaClock::Resolution, 0, 10);
    if let ComplaintCommand::RaiseSlaWarning(c) = &mut w {
        c.due_at = c.started_at;
    }
    assert_eq!(fields(when(&open, 1, w)), ["fraction_percent", "due_at"]);
    assert_eq!(
        fields(when(&open, 1, breach(s, SlaClock::Resolution, 30))),
        ["due_at"]
    );

    let (acked, _) = given(vec![(0, file("minor")), (1, ack("phone"))]);
    assert_eq!(fields(when(&acked, 2, wait_with(""))), ["note"]);

    let (resolved, _) = given(vec![(0, file("minor")), (1, resolve(&["fix"]))]);
    let bad = SatisfactionInput {
        score: 0,
        ownership: 6,
        felt_valued: 1,
        speed: 5,
        sincere_regret: 9,
        reason: String::new(),
    };
    assert_eq!(
        fields(when(&resolved, 2, survey(bad))),
        [
            "satisfaction.score",
            "satisfaction.ownership",
            "satisfaction.sincere_regret"
        ]
    );
    assert_eq!(fields(when(&resolved, 2, reopen_with(""))), ["reason"]);
}

#[test]
fn out_of_range_answers_are_reported_as_sent() {
    let (resolved, _) = given(vec![(0, file("minor")), (1, resolve(&["apology"]))]);
    let s = SatisfactionInput {
        score: 256,
        speed: u32::MAX,
        ..good_survey()
    };
    match when(&resolved, 2, survey(s)) {
        Err(ComplaintError::Invalid(v)) => {
            let d: Vec<(&str, &str)> =
                v.0.iter()
                    .map(|f| (f.field.as_str(), f.description.as_str()))
                    .collect();
            assert_eq!(
                d,
                [
                    ("satisfaction.score", "must be 1..=5, got 256"),
                    ("satisfaction.speed", "must be 1..=5, got 4294967295"),
                ]
            );
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn input_violations_name_a_commands_own_fields_whatever_the_complaint() {
    let names = |cmd: ComplaintCommand| {
        input_violations(&cmd)
            .into_iter()
            .map(|v| v.field)
            .collect::<Vec<_>>()
    };
    assert_eq!(names(ack("carrier_pigeon")), ["method"]);
    assert_eq!(
        names(ack("letter")),
        Vec::<String>::new(),
        "needs the severity"
    );
    assert_eq!(names(wait_with(" ")), ["note"]);
    assert_eq!(names(reopen_with("")), ["reason"]);
    assert_eq!(
        names(ComplaintCommand::ResolveComplaint(ResolveComplaint {
            expected_version: None,
            remedies: vec!["apology".into(), "apology".into()],
            summary: String::new(),
        })),
        ["remedies[1]", "summary"]
    );
    assert_eq!(
        names(survey(SatisfactionInput {
            score: 9,
            ..good_survey()
        })),
        ["satisfaction.score"]
    );
    assert_eq!(names(file("minor")), Vec::<String>::new());
}

#[test]
fn a_low_score_needs_a_reason() {
    let (resolved, _) = given(vec![(0, file("minor")), (1, resolve(&["apology"]))]);
    for score in [1, 2] {
        let s = SatisfactionInput {
            score,
            ..good_survey()
        };
        assert_eq!(
            fields(when(&resolved, 2, survey(s))),
            ["satisfaction.reason"]
        );
    }
    let s = SatisfactionInput {
        score: 2,
        reason: "nobody called back".into(),
        ..good_survey()
    };
    let events = when(&resolved, 2, survey(s)).expect("accepted");
    assert!(matches!(
        &events[..],
        [ComplaintEvent::SatisfactionRecorded { satisfaction, .. }]
            if satisfaction.reason.as_deref() == Some("nobody called back")
    ));
    let s = SatisfactionInput {
        score: 3,
        ..good_survey()
    };
    assert!(when(&resolved, 2, survey(s)).is_ok());
}

#[test]
fn commands_out_of_order_are_invalid_transitions() {
    let (open, _) = given(vec![(0, file("minor"))]);
    let transition = |r: Result<Vec<ComplaintEvent>, ComplaintError>| match r {
        Err(ComplaintError::InvalidTransition {
            from_status,
            command,
        }) => (from_status, command),
        other => panic!("expected InvalidTransition, got {other:?}"),
    };
    assert_eq!(
        transition(when(&open, 1, reopen())),
        (ComplaintStatus::Open, "reopen_complaint")
    );
    assert_eq!(
        transition(when(&open, 1, survey(good_survey()))),
        (ComplaintStatus::Open, "record_satisfaction")
    );
    assert_eq!(
        transition(when(&open, 1, wait())),
        (ComplaintStatus::Open, "wait_on_customer")
    );

    let (resolved, _) = given(vec![
        (0, file("minor")),
        (1, ack("letter")),
        (2, resolve(&["fix"])),
    ]);
    assert_eq!(
        transition(when(&resolved, 3, resolve(&["fix"]))),
        (ComplaintStatus::Resolved, "resolve_complaint")
    );
    assert_eq!(
        transition(when(&resolved, 3, ack("phone"))),
        (ComplaintStatus::Resolved, "acknowledge_complaint")
    );
    assert_eq!(
        transition(when(&resolved, 3, escalate("why not"))),
        (ComplaintStatus::Resolved, "escalate_complaint")
    );

    let (surveyed, _) = given(vec![
        (0, file("minor")),
        (1, resolve(&["fix"])),
        (2, survey(good_survey())),
    ]);
    assert_eq!(
        when(&surveyed, 3, survey(good_survey())),
        Err(ComplaintError::AlreadyRecorded {
            what: "satisfaction"
        })
    );
    assert_eq!(when(&None, 0, ack("phone")), Err(ComplaintError::NotFound));
}

#[test]
fn version_conflicts_are_refused() {
    let (state, _) = given(vec![(0, file("minor")), (1, ack("phone"))]);
    let cmd = ComplaintCommand::EscalateComplaint(EscalateComplaint {
        expected_version: Some(1),
        reason: "stale view".into(),
    });
    assert_eq!(
        when(&state, 2, cmd),
        Err(ComplaintError::VersionConflict {
            expected: 1,
            current: 2
        })
    );
    let cmd = ComplaintCommand::EscalateComplaint(EscalateComplaint {
        expected_version: Some(2),
        reason: "fresh view".into(),
    });
    assert!(when(&state, 2, cmd).is_ok());
    let mut f = filing("minor");
    f.expected_version = Some(3);
    assert_eq!(
        when(&None, 0, ComplaintCommand::FileComplaint(f)),
        Err(ComplaintError::VersionConflict {
            expected: 3,
            current: 0
        })
    );
}

#[test]
fn a_retried_filing_changes_nothing_and_another_key_is_refused() {
    let (state, _) = given(vec![(0, file("minor"))]);
    assert_eq!(when(&state, 5, file("minor")), Ok(vec![]));
    let mut other = filing("minor");
    other.idempotency_key = "key-2".into();
    assert_eq!(
        when(&state, 5, ComplaintCommand::FileComplaint(other)),
        Err(ComplaintError::AlreadyExists)
    );
}

#[test]
fn major_complaints_need_a_personal_first_response() {
    for severity in ["major", "critical"] {
        let (open, _) = given(vec![(0, file(severity))]);
        assert_eq!(fields(when(&open, 1, ack("letter"))), ["method"]);
        assert!(when(&open, 1, ack("in_person")).is_ok());
    }
    let (open, _) = given(vec![(0, file("moderate"))]);
    assert!(when(&open, 1, ack("email")).is_ok());
}

#[test]
fn timer_commands_are_idempotent_and_stale_ones_are_ignored() {
    let (state, _) = given(vec![(0, file("minor"))]);
    let s = state_of(&state);
    let events = when(&state, 45, warning(s, SlaClock::FirstResponse, 75, 60)).expect("ok");
    assert_eq!(events.len(), 1);
    let state = events.iter().fold(state.clone(), Complaint::apply);
    let s = state_of(&state);
    // The same warning again: nothing. Another fraction: a new warning.
    assert_eq!(
        when(&state, 46, warning(s, SlaClock::FirstResponse, 75, 60)),
        Ok(vec![])
    );
    assert_eq!(
        when(&state, 46, warning(s, SlaClock::FirstResponse, 90, 60)).map(|e| e.len()),
        Ok(1)
    );

    // Breach once; the second is a no-op even though the level moved on.
    let cmd = breach(s, SlaClock::FirstResponse, 60);
    let events = when(&state, 61, cmd.clone()).expect("ok");
    assert_eq!(events.len(), 2);
    let after = events.iter().fold(state.clone(), Complaint::apply);
    assert_eq!(when(&after, 62, cmd), Ok(vec![]));

    // A run that ended (the complaint was answered) makes its warning stale.
    let (acked, _) = given(vec![(0, file("minor")), (10, ack("phone"))]);
    let stale = ComplaintCommand::RaiseSlaWarning(RaiseSlaWarning {
        expected_version: None,
        clock: SlaClock::FirstResponse,
        started_at: t(0),
        fraction_percent: 50,
        due_at: t(60),
    });
    assert_eq!(when(&acked, 30, stale), Ok(vec![]));
    // An update restarted the update clock: the old run's breach is stale.
    let old_update_run = state_of(&acked)
        .clock_run(SlaClock::Update)
        .expect("running");
    let (updated, _) = given(vec![
        (0, file("minor")),
        (10, ack("phone")),
        (20, update("on it", false)),
    ]);
    let stale = ComplaintCommand::RecordSlaBreach(RecordSlaBreach {
        expected_version: None,
        clock: SlaClock::Update,
        started_at: old_update_run.started_at,
        due_at: t(40),
    });
    assert_eq!(when(&updated, 41, stale), Ok(vec![]));

    // Paused or resolved: no timer event.
    let (waiting, _) = given(vec![(0, file("minor")), (10, ack("phone")), (20, wait())]);
    let w = state_of(&waiting);
    assert_eq!(
        when(&waiting, 50, breach(w, SlaClock::Resolution, 40)),
        Ok(vec![])
    );
    let (resolved, _) = given(vec![(0, file("minor")), (10, resolve(&["fix"]))]);
    assert!(state_of(&resolved).running_clocks().is_empty());
}

#[test]
fn breaches_climb_the_chain_and_stay_breached_at_the_owner() {
    let (mut state, _) = given(vec![(0, file("moderate"))]);
    let mut now = 0;
    let chain = [
        (Level::StoreManager, Some(Level::RegionalManager)),
        (Level::RegionalManager, Some(Level::Owner)),
        (Level::Owner, None),
    ];
    for (from, to) in chain {
        let s = state_of(&state).clone();
        assert_eq!(s.level, from);
        let started = s
            .clock_run(SlaClock::Resolution)
            .expect("running")
            .started_at;
        assert_eq!(
            started,
            t(now),
            "each level's clock starts when it takes over"
        );
        now += 120;
        let events = when(&state, now, breach(&s, SlaClock::Resolution, now)).expect("ok");
        match to {
            Some(to) => assert!(matches!(
                &events[..],
                [
                    ComplaintEvent::SlaBreached { run, .. },
                    ComplaintEvent::ComplaintEscalated { from: f, to: t2, reason: EscalationReason::Breach { clock: SlaClock::Resolution }, .. },
                ] if run.level == from && *f == from && *t2 == to
            )),
            None => assert!(matches!(&events[..], [ComplaintEvent::SlaBreached { .. }])),
        }
        state = events.iter().fold(state, Complaint::apply);
    }
    let s = state_of(&state);
    assert_eq!(s.level, Level::Owner);
    assert!(s.is_breached());
    assert_eq!(s.breaches.len(), 3);
    assert_eq!(
        when(&state, now + 1, escalate("more")),
        Err(ComplaintError::NoLevelAbove(Level::Owner))
    );
}

#[test]
fn critical_complaints_start_higher() {
    let (state, _) = given(vec![(0, file("critical"))]);
    assert_eq!(state_of(&state).level, Level::RegionalManager);
    let owner_first = Context {
        critical_starts_at: Level::Owner,
        ..Context::default()
    };
    let events = Complaint::handle(None, file("critical"), t(0), &owner_first).expect("ok");
    assert_eq!(
        Complaint::replay(&events).map(|c| c.level),
        Some(Level::Owner)
    );
    let events = Complaint::handle(None, file("major"), t(0), &owner_first).expect("ok");
    assert_eq!(
        Complaint::replay(&events).map(|c| c.level),
        Some(Level::StoreManager)
    );
}
