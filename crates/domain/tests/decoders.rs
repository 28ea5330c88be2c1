//! Every decoder of what the log carries, fed generated and corrupted payloads: swipe
//! events, churn signals and envelopes of any type. A decoder never panics; it answers
//! an error that says what is wrong, or a value that encodes back to itself; and a swipe
//! it accepts keeps what ingest guarantees (an amount that is not negative, at least one
//! item).

use chrono::{DateTime, Utc};
use churnguard_domain::signal::ChurnStateChanged;
use churnguard_domain::{CardSwiped, CustomerInput, Envelope, SwipeDraft, SwipeLimits};
use proptest::prelude::*;

fn swipe_payload() -> Vec<u8> {
    let now: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
        .expect("time")
        .to_utc();
    SwipeDraft {
        swipe_id: "sw-1".into(),
        customer: CustomerInput::CustomerId("cust-1".into()),
        store_id: "store-1".into(),
        terminal_id: "till-1".into(),
        employee_id: "emp-1".into(),
        occurred_at: "2026-11-22T11:30:00+01:00".into(),
        amount_minor_units: 1250,
        currency: "EUR".into(),
        item_count: 3,
    }
    .validate(now, &SwipeLimits::default(), None)
    .expect("a valid swipe")
    .into_envelope()
    .with_actor(Some("store:store-1".into()))
    .to_json()
}

fn signal_payload() -> Vec<u8> {
    ChurnStateChanged {
        customer: "cust-1".into(),
        store_id: Some("store-1".into()),
        previous: "active".into(),
        state: "at_risk".into(),
        rules: vec!["overdue".into()],
        p_alive: 0.4,
        clv: 12_000.0,
        value_at_risk: 7_200.0,
        as_of: "2026-11-22".parse().expect("day"),
    }
    .into_envelope()
    .to_json()
}

/// What a corruption does to a payload: a byte replaced, a cut, a run of bytes dropped,
/// or a number in it changed (digits are where amounts and counts are).
#[derive(Debug, Clone)]
enum Corruption {
    Replace(usize, u8),
    Truncate(usize),
    Drop(usize, usize),
    Digit(usize, u8),
}

fn corruption() -> impl Strategy<Value = Corruption> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Corruption::Replace(i, b)),
        any::<usize>().prop_map(Corruption::Truncate),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Corruption::Drop(i, n)),
        (
            any::<usize>(),
            prop::sample::select(b"-0123456789".to_vec())
        )
            .prop_map(|(i, d)| Corruption::Digit(i, d)),
    ]
}

fn corrupt(mut payload: Vec<u8>, corruptions: &[Corruption]) -> Vec<u8> {
    for c in corruptions {
        if payload.is_empty() {
            break;
        }
        let len = payload.len();
        match *c {
            Corruption::Replace(i, b) => payload[i % len] = b,
            Corruption::Truncate(i) => payload.truncate(i % len),
            Corruption::Drop(i, n) => {
                let at = i % len;
                payload.drain(at..(at + n).min(len));
            }
            Corruption::Digit(i, d) => {
                let digits: Vec<usize> =
                    (0..len).filter(|j| payload[*j].is_ascii_digit()).collect();
                if !digits.is_empty() {
                    payload[digits[i % digits.len()]] = d;
                }
            }
        }
    }
    payload
}

/// A swipe decoder's answer: an error that says something, or a swipe that keeps the
/// rules and encodes back to itself.
fn check_swipe(payload: &[u8]) -> Result<(), TestCaseError> {
    match CardSwiped::decode(payload) {
        Err(e) => prop_assert!(!e.to_string().is_empty()),
        Ok(envelope) => {
            prop_assert!(envelope.data.amount.minor_units >= 0, "{envelope:?}");
            prop_assert!(envelope.data.item_count > 0, "{envelope:?}");
            let again = CardSwiped::decode(&envelope.to_json()).expect("its own encoding decodes");
            prop_assert_eq!(again, envelope);
        }
    }
    Ok(())
}

fn check_signal(payload: &[u8]) -> Result<(), TestCaseError> {
    match Envelope::<ChurnStateChanged>::decode(payload, ChurnStateChanged::EVENT_TYPE) {
        Err(e) => prop_assert!(!e.to_string().is_empty()),
        Ok(envelope) => {
            let again = Envelope::<ChurnStateChanged>::decode(
                &envelope.to_json(),
                ChurnStateChanged::EVENT_TYPE,
            )
            .expect("its own encoding decodes");
            prop_assert_eq!(again.data.customer, envelope.data.customer);
            prop_assert_eq!(again.id, envelope.id);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn corrupted_swipe_events_are_refused_or_still_valid(cs in prop::collection::vec(corruption(), 1..4)) {
        check_swipe(&corrupt(swipe_payload(), &cs))?;
    }

    #[test]
    fn corrupted_churn_signals_are_refused_or_still_valid(cs in prop::collection::vec(corruption(), 1..4)) {
        check_signal(&corrupt(signal_payload(), &cs))?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_swipe(&bytes)?;
        check_signal(&bytes)?;
    }
}

#[test]
fn a_swipe_that_breaks_what_ingest_guarantees_is_refused_naming_the_field() {
    let good = String::from_utf8(swipe_payload()).expect("utf-8");
    assert!(CardSwiped::decode(good.as_bytes()).is_ok());
    let free = good.replace("\"minor_units\":1250", "\"minor_units\":0");
    assert!(
        CardSwiped::decode(free.as_bytes()).is_ok(),
        "a purchase of 0 is a purchase (ingest takes it; CDNOW has them)"
    );
    for (from, to, field) in [
        (
            "\"minor_units\":1250",
            "\"minor_units\":-1250",
            "amount.minor_units",
        ),
        ("\"item_count\":3", "\"item_count\":0", "item_count"),
    ] {
        assert!(good.contains(from), "{good}");
        let bad = good.replace(from, to);
        let err = CardSwiped::decode(bad.as_bytes()).expect_err("corrupt");
        assert!(err.to_string().contains(field), "{err}");
    }
}
