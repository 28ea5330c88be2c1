//! Every decoder of what feedback reads back, fed generated and corrupted input: the
//! commits on `feedback.events.v1` (a complaint's and an outreach case's) and the index
//! entries the read model keeps in Redis. A decoder never panics. A commit it accepts
//! encodes back to itself and folds from nothing without a panic (the projection applies
//! it as it comes); an index entry it accepts encodes to a value that decodes to it
//! again. (Checkpoints: `crates/redis/tests/checkpoint_contract.rs`.)

use chrono::{DateTime, TimeDelta, Utc};
use churnguard_domain::Aggregate;
use churnguard_domain::feedback::complaint::{
    AcknowledgeComplaint, Complaint, ComplaintCommand, Context, EscalateComplaint, FileComplaint,
    SealedContact,
};
use churnguard_domain::feedback::outreach::{
    OpenOutreach, OutreachCase, OutreachCommand, RecordOutreach,
};
use churnguard_domain::ids::{ComplaintId, OutreachCaseId};
use churnguard_domain::swipe::CustomerInput;
use feedback::journal::{Commit, Committed, OutreachCommit};
use feedback::projection::{CaseEntry, ListEntry};
use proptest::prelude::*;

fn t(minutes: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z")
        .expect("time")
        .to_utc()
        + TimeDelta::minutes(minutes)
}

/// The events `commands` give, each decided on the state those before it left, as the
/// service decides them, `minutes` apart.
fn decided<A: Aggregate>(
    commands: impl IntoIterator<Item = A::Command>,
    context: &A::Context,
    minutes: i64,
) -> Vec<A::Event>
where
    A::Error: std::fmt::Debug,
{
    let mut events = Vec::new();
    for (i, command) in commands.into_iter().enumerate() {
        let state = A::replay(&events);
        let new = A::handle(state.as_ref(), command, t(i as i64 * minutes), context);
        events.extend(new.expect("a valid command"));
    }
    events
}

/// A complaint filed, acknowledged and escalated: one command's worth of events each,
/// as the service decides them.
fn complaint_commit() -> Commit {
    let commands = [
        ComplaintCommand::FileComplaint(FileComplaint {
            expected_version: None,
            complaint_id: ComplaintId::parse("c-1").expect("id"),
            idempotency_key: "key-1".into(),
            customer: CustomerInput::CustomerId("cust-1".into()),
            contact: SealedContact::new(vec![1, 2, 3, 4]),
            store_id: "store-1".into(),
            channel: "till".into(),
            touchpoint: "staff".into(),
            severity: "major".into(),
            description: "Rude at the till, refused the coupon".into(),
            occurred_at: t(-60),
        }),
        ComplaintCommand::AcknowledgeComplaint(AcknowledgeComplaint {
            expected_version: None,
            method: "phone".into(),
            note: "called, apologised".into(),
        }),
        ComplaintCommand::EscalateComplaint(EscalateComplaint {
            expected_version: None,
            reason: "the customer asked for the manager".into(),
        }),
    ];
    let events = decided::<Complaint>(commands, &Context::default(), 10);
    Commit {
        complaint_id: ComplaintId::parse("c-1").expect("id"),
        base_version: 0,
        commit_id: "commit-1".into(),
        idempotency_key: Some("key-1".into()),
        events,
    }
}

/// An outreach case opened and a call recorded.
fn outreach_commit() -> OutreachCommit {
    let commands = [
        OutreachCommand::OpenOutreach(OpenOutreach {
            expected_version: None,
            case_id: OutreachCaseId::parse("o-1").expect("id"),
            signal_id: "signal-1".into(),
            customer: "cust-1".into(),
            home_store: "store-1".into(),
            state: "defected".into(),
            value_at_risk_minor: 12_000,
            clv_minor: 24_000,
            due_at: t(48 * 60),
            as_of: None,
        }),
        OutreachCommand::RecordOutreach(RecordOutreach {
            expected_version: None,
            reason: "price".into(),
            free_text: "found it cheaper across the road".into(),
            outcome: "won_back".into(),
            method: "phone".into(),
        }),
    ];
    let events = decided::<OutreachCase>(commands, &(), 60);
    OutreachCommit {
        case_id: OutreachCaseId::parse("o-1").expect("id"),
        base_version: 0,
        commit_id: "commit-2".into(),
        idempotency_key: None,
        events,
    }
}

/// What a corruption does to a payload: a byte replaced, a cut, a run of bytes dropped,
/// or a digit changed (versions, times and amounts are digits).
#[derive(Debug, Clone)]
enum Corruption {
    Replace(prop::sample::Index, u8),
    Truncate(prop::sample::Index),
    Drop(prop::sample::Index, usize),
    Digit(prop::sample::Index, u8),
}

fn corruption() -> impl Strategy<Value = Corruption> {
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Corruption::Replace(i, b)),
        any::<prop::sample::Index>().prop_map(Corruption::Truncate),
        (any::<prop::sample::Index>(), 1usize..40).prop_map(|(i, n)| Corruption::Drop(i, n)),
        (any::<prop::sample::Index>(), 0u8..10).prop_map(|(i, d)| Corruption::Digit(i, d)),
    ]
}

fn corrupt(mut bytes: Vec<u8>, corruptions: &[Corruption]) -> Vec<u8> {
    for c in corruptions {
        if bytes.is_empty() {
            break;
        }
        match c {
            Corruption::Replace(i, b) => {
                let at = i.index(bytes.len());
                bytes[at] = *b;
            }
            Corruption::Truncate(i) => bytes.truncate(i.index(bytes.len())),
            Corruption::Drop(i, n) => {
                let at = i.index(bytes.len());
                let end = (at + n).min(bytes.len());
                bytes.drain(at..end);
            }
            Corruption::Digit(i, d) => {
                let digits: Vec<usize> = (0..bytes.len())
                    .filter(|&k| bytes[k].is_ascii_digit())
                    .collect();
                if !digits.is_empty() {
                    bytes[digits[i.index(digits.len())]] = b'0' + d;
                }
            }
        }
    }
    bytes
}

/// A decoded commit encodes back to itself, and its events fold from nothing.
fn check_commit(payload: &[u8]) -> Result<(), TestCaseError> {
    match Committed::decode(payload) {
        Err(e) => prop_assert!(!e.to_string().is_empty()),
        Ok(Committed::Complaint(commit)) => {
            let again = Committed::decode(&commit.to_record(t(0), Some("x:y")).payload);
            prop_assert_eq!(again.ok(), Some(Committed::Complaint(commit.clone())));
            let _ = Complaint::replay(&commit.events);
        }
        Ok(Committed::Outreach(commit)) => {
            let again = Committed::decode(&commit.to_record(t(0), None).payload);
            prop_assert_eq!(again.ok(), Some(Committed::Outreach(commit.clone())));
            let _ = OutreachCase::replay(&commit.events);
        }
    }
    Ok(())
}

fn list_value() -> String {
    let complaint = Complaint::replay(&complaint_commit().events).expect("a complaint");
    ListEntry::of(&complaint).encode()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn corrupted_complaint_commits_are_refused_or_still_whole(cs in prop::collection::vec(corruption(), 1..4)) {
        let payload = complaint_commit().to_record(t(30), Some("store_manager:m-1")).payload;
        check_commit(&corrupt(payload, &cs))?;
    }

    #[test]
    fn corrupted_outreach_commits_are_refused_or_still_whole(cs in prop::collection::vec(corruption(), 1..4)) {
        let payload = outreach_commit().to_record(t(90), Some("system:outreach-opener")).payload;
        check_commit(&corrupt(payload, &cs))?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_commit_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_commit(&bytes)?;
    }

    #[test]
    fn corrupted_index_entries_are_refused_or_decode_stably(cs in prop::collection::vec(corruption(), 1..3)) {
        let value = corrupt(list_value().into_bytes(), &cs);
        let value = String::from_utf8_lossy(&value);
        if let Some(entry) = ListEntry::decode("c-1", &value) {
            prop_assert_eq!(ListEntry::decode("c-1", &entry.encode()), Some(entry));
        }
        let case = corrupt(b"1764000000000 open 0 store-1".to_vec(), &cs);
        let case = String::from_utf8_lossy(&case);
        if let Some(entry) = CaseEntry::decode("o-1", &case) {
            prop_assert_eq!(CaseEntry::decode("o-1", &entry.encode()), Some(entry));
        }
    }
}

#[test]
fn the_fixtures_decode_as_written() {
    let complaint = complaint_commit();
    assert!(complaint.events.len() >= 3, "{:?}", complaint.events);
    let back = Committed::decode(&complaint.to_record(t(30), None).payload).expect("decodes");
    assert_eq!(back, Committed::Complaint(complaint));
    let outreach = outreach_commit();
    assert!(outreach.events.len() >= 2, "{:?}", outreach.events);
    let back = Committed::decode(&outreach.to_record(t(90), None).payload).expect("decodes");
    assert_eq!(back, Committed::Outreach(outreach));
    let value = list_value();
    let entry = ListEntry::decode("c-1", &value).expect("an index entry");
    assert_eq!(entry.encode(), value);
    let case = CaseEntry::decode("o-1", "1764000000000 open 0 store-1").expect("a case entry");
    assert_eq!(case.encode(), "1764000000000 open 0 store-1");
}
