//! The proto enums and the domain's vocabularies, mapped value by value.
//!
//! Each pair is spelled out in a `match` in both directions, so the mapping does not
//! depend on the order in which the proto and the domain list their values. Both matches
//! are exhaustive, so a value added to either side without the other fails to compile;
//! the tests below check that every value makes the round trip.
//!
//! Proto to domain, a number that names no value (UNSPECIFIED, or a number the proto does
//! not define) is a [`FieldViolation`] naming the request field, in the words clients
//! have always been given for it:
//!
//! - the vocabularies commands take (channel, touchpoint, severity, contact method,
//!   remedy, defection reason, outreach outcome): the domain's own refusal, e.g.
//!   `unknown channel "42"; expected one of: till, phone, web, comment_card, letter`.
//!   The aggregate checks a command's fields itself, all at once and in its order, so
//!   commands get these values through [`command_input`], which leaves the refusal to
//!   the aggregate (in the same words);
//! - the list and watch filters: `9 is not a known level`, `9 is not a known status`.

use std::fmt::Display;
use std::str::FromStr;

use churnguard_domain::FieldViolation;
use churnguard_domain::feedback::complaint::{ComplaintStatus, SlaClock};
use churnguard_domain::feedback::outreach::{DefectorState, OutreachStatus};
use churnguard_domain::feedback::{
    Channel, ContactMethod, DefectionReason, Level, OutreachOutcome, Remedy, Severity, Touchpoint,
    UnknownValue,
};
use churnguard_proto::feedback::v1 as pb;

/// A domain value with a proto enum counterpart.
pub trait ProtoEnum: Copy + Sized {
    /// The proto enum number of this value.
    fn to_proto(self) -> i32;

    /// The value the proto enum number `number` of the request field `field` names; a
    /// violation of `field` for UNSPECIFIED and for numbers the proto does not define.
    fn from_proto(field: &str, number: i32) -> Result<Self, FieldViolation>;
}

/// An optional enum field of a request, such as a list filter: UNSPECIFIED (0) is none.
pub fn optional<T: ProtoEnum>(field: &str, number: i32) -> Result<Option<T>, FieldViolation> {
    match number {
        0 => Ok(None),
        n => T::from_proto(field, n).map(Some),
    }
}

/// An enum field of a command request as the domain command takes it: the domain's
/// spelling of the value the number names. The aggregate checks a command's input itself,
/// so that every bad field of the command is reported at once, in its order: a number
/// that names no value is passed on as sent, empty when unset and else the number, and
/// the aggregate refuses it with the same violation as [`ProtoEnum::from_proto`] (an
/// optional field, such as an outreach attempt's reason, may be left empty).
pub fn command_input<T: ProtoEnum + Display>(field: &str, number: i32) -> String {
    match T::from_proto(field, number) {
        Ok(value) => value.to_string(),
        Err(_) => as_sent(number),
    }
}

/// A proto enum number as the domain reads it in a command: empty when unset.
fn as_sent(number: i32) -> String {
    if number == 0 {
        String::new()
    } else {
        number.to_string()
    }
}

/// The domain's refusal of a vocabulary field that holds `number`: what the aggregate
/// says when [`command_input`] passes it on.
fn unknown<T: FromStr<Err = UnknownValue>>(field: &str, number: i32) -> FieldViolation {
    let sent = as_sent(number);
    let description = match sent.parse::<T>() {
        Err(e) => e.to_string(),
        // No vocabulary spells a value as a number or as nothing.
        Ok(_) => format!("{number} is not a known value"),
    };
    FieldViolation::new(field, description)
}

impl ProtoEnum for Severity {
    fn to_proto(self) -> i32 {
        let proto = match self {
            Severity::Minor => pb::Severity::Minor,
            Severity::Moderate => pb::Severity::Moderate,
            Severity::Major => pb::Severity::Major,
            Severity::Critical => pb::Severity::Critical,
        };
        proto as i32
    }

    fn from_proto(field: &str, number: i32) -> Result<Self, FieldViolation> {
        match pb::Severity::try_from(number) {
            Ok(pb::Severity::Minor) => Ok(Severity::Minor),
            Ok(pb::Severity::Moderate) => Ok(Severity::Moderate),
            Ok(pb::Severity::Major) => Ok(Severity::Major),
            Ok(pb::Severity::Critical) => Ok(Severity::Critical),
            Ok(pb::Severity::Unspecified) | Err(_) => Err(unknown::<Severity>(field, number)),
        }
    }
}

impl ProtoEnum for Level {
    fn to_proto(self) -> i32 {
        let proto = match self {
            Level::StoreManager => pb::Level::StoreManager,
            Level::RegionalManager => pb::Level::RegionalManager,
            Level::Owner => pb::Level::Owner,
        };
        proto as i32
    }

    fn from_proto(field: &str, number: i32) -> Result<Self, FieldViolation> {
        match pb::Level::try_from(number) {
            Ok(pb::Level::StoreManager) => Ok(Level::StoreManager),
            Ok(pb::Level::RegionalManager) => Ok(Level::RegionalManager),
            Ok(pb::Level::Owner) => Ok(Level::Owner),
            Ok(pb::Level::Unspecified) | Err(_) => Err(FieldViolation::new(
                field,
                format!("{number} is not a known level"),
            )),
        }
    }
}

impl ProtoEnum for Channel {
    fn to_proto(self) -> i32 {
        let proto = match self {
            Channel::Till => pb::Channel::Till,
            Channel::Phone => pb::Channel::Phone,
            Channel::Web => pb::Channel::Web,
            Channel::CommentCard => pb::Channel::CommentCard,
            Channel::Letter => pb::Channel::Letter,
        };
        proto as i32
    }

    fn from_proto(field: &str, number: i32) -> Result<Self, FieldViolation> {
        match pb::Channel::try_from(number) {
            Ok(pb::Channel::Till) => Ok(Channel::Till),
            Ok(pb::Channel::Phone) => Ok(Channel::Phone),
            Ok(pb::Channel::Web) => Ok(Channel::Web),
            Ok(pb::Channel::CommentCard) => Ok(Channel::CommentCard),
            Ok(pb::Channel::Letter) => Ok(Channel::Letter),
            Ok(pb::Channel::Unspecified) | Err(_) => Err(unknown::<Channel>(field, number)),
        }
    }
}

impl ProtoEnum for Touchpoint {
    fn to_proto(self) -> i32 {
        let proto = match self {
            Touchpoint::Products => pb::Touchpoint::Products,
            Touchpoint::Service => pb::Touchpoint::Service,
            Touchpoint::Premises => pb::Touchpoint::Premises,
            Touchpoint::SignageAndAdvertising => pb::Touchpoint::SignageAndAdvertising,
            Touchpoint::Staff => pb::Touchpoint::Staff,
            Touchpoint::QualityAndPrice => pb::Touchpoint::QualityAndPrice,
            Touchpoint::WarrantyAndComplaintHandling => {
                pb::Touchpoint::WarrantyAndComplaintHandling
            }
        };
        proto as i32
    }

    fn from_proto(field: &str, number: i32) -> Result<Self, FieldViolation> {
        match pb::Touchpoint::try_from(number) {
            Ok(pb::Touchpoint::Products) => Ok(Touchpoint::Products),
            Ok(pb::Touchpoint::Service) => Ok(Touchpoint::Service),
            Ok(pb::Touchpoint::Premises) => Ok(Touchpoint::Premises),
            Ok(pb::Touchpoint::SignageAndAdvertising) => Ok(Touchpoint::SignageAndAdvertising),
            Ok(pb::Touchpoint::Staff) => Ok(Touchpoint::Staff),
            Ok(pb::Touchpoint::QualityAndPrice) => Ok(Touchpoint::QualityAndPrice),
            Ok(pb::Touchpoint::WarrantyAndComplaintHandling) => {
                Ok(Touchpoint::WarrantyAndComplaintHandling)
            }
            Ok(pb::Touchpoint::Unspecified) | Err(_) => Err(unknown::<Touchpoint>(field, number)),
        }
    }
}

impl ProtoEnum for ContactMethod {
    fn to_proto(self) -> i32 {
        let proto = match self {
            ContactMethod::Phone => pb::ContactMethod::Phone,
            ContactMethod::InPerson => pb::ContactMethod::InPerson,
            ContactMethod::Letter => pb::ContactMethod::Letter,
            ContactMethod::Email => pb::ContactMethod::Email,
        };
        proto as i32
    }

    fn from_proto(field: &str, number: i32) -> Result<Self, FieldViolation> {
        match pb::ContactMethod::try_from(number) {
            Ok(pb::ContactMethod::Phone) => Ok(ContactMethod::Phone),
            Ok(pb::ContactMethod::InPerson) => Ok(ContactMethod::InPerson),
            Ok(pb::ContactMethod::Letter) => Ok(ContactMethod::Letter),
            Ok(pb::ContactMethod::Email) => Ok(ContactMethod::Email),
            Ok(pb::ContactMethod::Unspecified) | Err(_) => {
                Err(unknown::<ContactMethod>(field, number))
            }
        }
    }
}

impl ProtoEnum for Remedy {
    fn to_proto(self) -> i32 {
        let proto = match self {
            Remedy::Apology => pb::Remedy::Apology,
            Remedy::Refund => pb::Remedy::Refund,
            Remedy::Replacement => pb::Remedy::Replacement,
            Remedy::Compensation => pb::Remedy::Compensation,
            Remedy::Fix => pb::Remedy::Fix,
        };
        proto as i32
    }

    fn from_proto(field: &str, number: i32) -> Result<Self, FieldViolation> {
        match pb::Remedy::try_from(number) {
            Ok(pb::Remedy::Apology) => Ok(Remedy::Apology),
            Ok(pb::Remedy::Refund) => Ok(Remedy::Refund),
            Ok(pb::Remedy::Replacement) => Ok(Remedy::Replacement),
            Ok(pb::Remedy::Compensation) => Ok(Remedy::Compensation),
            Ok(pb::Remedy::Fix) => Ok(Remedy::Fix),
            Ok(pb::Remedy::Unspecified) | Err(_) => Err(unknown::<Remedy>(field, number)),
        }
    }
}

impl ProtoEnum for DefectionReason {
    fn to_proto(self) -> i32 {
        let proto = match self {
            DefectionReason::Price => pb::DefectionReason::Price,
            DefectionReason::Staff => pb::DefectionReason::Staff,
            DefectionReason::Quality => pb::DefectionReason::Quality,
            DefectionReason::Assortment => pb::DefectionReason::Assortment,
            DefectionReason::Location => pb::DefectionReason::Location,
            DefectionReason::MovedAway => pb::DefectionReason::MovedAway,
            DefectionReason::Other => pb::DefectionReason::Other,
        };
        proto as i32
    }

    fn from_proto(field: &str, number: i32) -> Result<Self, FieldViolation> {
        match pb::DefectionReason::try_from(number) {
            Ok(pb::DefectionReason::Price) => Ok(DefectionReason::Price),
            Ok(pb::DefectionReason::Staff) => Ok(DefectionReason::Staff),
            Ok(pb::DefectionReason::Quality) => Ok(DefectionReason::Quality),
            Ok(pb::DefectionReason::Assortment) => Ok(DefectionReason::Assortment),
            Ok(pb::DefectionReason::Location) => Ok(DefectionReason::Location),
            Ok(pb::DefectionReason::MovedAway) => Ok(DefectionReason::MovedAway),
            Ok(pb::DefectionReason::Other) => Ok(DefectionReason::Other),
            Ok(pb::DefectionReason::Unspecified) | Err(_) => {
                Err(unknown::<DefectionReason>(field, number))
            }
        }
    }
}

impl ProtoEnum for OutreachOutcome {
    fn to_proto(self) -> i32 {
        let proto = match self {
            OutreachOutcome::NotReached => pb::OutreachOutcome::NotReached,
            OutreachOutcome::Reached => pb::OutreachOutcome::Reached,
            OutreachOutcome::WonBack => pb::OutreachOutcome::WonBack,
            OutreachOutcome::Lost => pb::OutreachOutcome::Lost,
        };
        proto as i32
    }

    fn from_proto(field: &str, number: i32) -> Result<Self, FieldViolation> {
        match pb::OutreachOutcome::try_from(number) {
            Ok(pb::OutreachOutcome::NotReached) => Ok(OutreachOutcome::NotReached),
            Ok(pb::OutreachOutcome::Reached) => Ok(OutreachOutcome::Reached),
            Ok(pb::OutreachOutcome::WonBack) => Ok(OutreachOutcome::WonBack),
            Ok(pb::OutreachOutcome::Lost) => Ok(OutreachOutcome::Lost),
            Ok(pb::OutreachOutcome::Unspecified) | Err(_) => {
                Err(unknown::<OutreachOutcome>(field, number))
            }
        }
    }
}

impl ProtoEnum for ComplaintStatus {
    fn to_proto(self) -> i32 {
        let proto = match self {
            ComplaintStatus::Open => pb::ComplaintStatus::Open,
            ComplaintStatus::Acknowledged => pb::ComplaintStatus::Acknowledged,
            ComplaintStatus::WaitingOnCustomer => pb::ComplaintStatus::WaitingOnCustomer,
            ComplaintStatus::Resolved => pb::ComplaintStatus::Resolved,
        };
        proto as i32
    }

    fn from_proto(field: &str, number: i32) -> Result<Self, FieldViolation> {
        match pb::ComplaintStatus::try_from(number) {
            Ok(pb::ComplaintStatus::Open) => Ok(ComplaintStatus::Open),
            Ok(pb::ComplaintStatus::Acknowledged) => Ok(ComplaintStatus::Acknowledged),
            Ok(pb::ComplaintStatus::WaitingOnCustomer) => Ok(ComplaintStatus::WaitingOnCustomer),
            Ok(pb::ComplaintStatus::Resolved) => Ok(ComplaintStatus::Resolved),
            Ok(pb::ComplaintStatus::Unspecified) | Err(_) => Err(FieldViolation::new(
                field,
                format!("{number} is not a known status"),
            )),
        }
    }
}

impl ProtoEnum for SlaClock {
    fn to_proto(self) -> i32 {
        let proto = match self {
            SlaClock::FirstResponse => pb::SlaClock::FirstResponse,
            SlaClock::Update => pb::SlaClock::Update,
            SlaClock::Resolution => pb::SlaClock::Resolution,
        };
        proto as i32
    }

    fn from_proto(field: &str, number: i32) -> Result<Self, FieldViolation> {
        match pb::SlaClock::try_from(number) {
            Ok(pb::SlaClock::FirstResponse) => Ok(SlaClock::FirstResponse),
            Ok(pb::SlaClock::Update) => Ok(SlaClock::Update),
            Ok(pb::SlaClock::Resolution) => Ok(SlaClock::Resolution),
            Ok(pb::SlaClock::Unspecified) | Err(_) => Err(FieldViolation::new(
                field,
                format!("{number} is not a known clock"),
            )),
        }
    }
}

impl ProtoEnum for OutreachStatus {
    fn to_proto(self) -> i32 {
        let proto = match self {
            OutreachStatus::Open => pb::OutreachStatus::Open,
            OutreachStatus::Closed => pb::OutreachStatus::Closed,
        };
        proto as i32
    }

    fn from_proto(field: &str, number: i32) -> Result<Self, FieldViolation> {
        match pb::OutreachStatus::try_from(number) {
            Ok(pb::OutreachStatus::Open) => Ok(OutreachStatus::Open),
            Ok(pb::OutreachStatus::Closed) => Ok(OutreachStatus::Closed),
            Ok(pb::OutreachStatus::Unspecified) | Err(_) => Err(FieldViolation::new(
                field,
                format!("{number} is not a known status"),
            )),
        }
    }
}

impl ProtoEnum for DefectorState {
    fn to_proto(self) -> i32 {
        let proto = match self {
            DefectorState::AtRisk => pb::DefectorState::AtRisk,
            DefectorState::Defected => pb::DefectorState::Defected,
        };
        proto as i32
    }

    fn from_proto(field: &str, number: i32) -> Result<Self, FieldViolation> {
        match pb::DefectorState::try_from(number) {
            Ok(pb::DefectorState::AtRisk) => Ok(DefectorState::AtRisk),
            Ok(pb::DefectorState::Defected) => Ok(DefectorState::Defected),
            Ok(pb::DefectorState::Unspecified) | Err(_) => Err(FieldViolation::new(
                field,
                format!("{number} is not a known defector state"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Debug;

    use churnguard_domain::feedback::complaint::{
        AcknowledgeComplaint, ComplaintCommand, RecordRootCause, ResolveComplaint, RootCauseInput,
        input_violations,
    };
    use churnguard_domain::feedback::outreach::{
        OutreachCommand, RecordOutreach, input_violations as outreach_input_violations,
    };

    use super::*;

    /// Numbers around every proto enum's range: the unset value, the defined ones, and
    /// some on either side that no proto enum here defines.
    const NUMBERS: std::ops::RangeInclusive<i32> = -3..=40;

    /// Every value in `all` makes the round trip through its proto number; every number the
    /// proto defines (`defined`, UNSPECIFIED aside) names one of them, and back; every
    /// other number is refused, naming the field.
    fn round_trips<T: ProtoEnum + PartialEq + Debug>(all: &[T], defined: fn(i32) -> bool) {
        for value in all {
            let number = value.to_proto();
            assert_ne!(number, 0, "{value:?} maps to UNSPECIFIED");
            assert_eq!(T::from_proto("f", number), Ok(*value), "{value:?}");
        }
        let mut named = 0;
        for number in NUMBERS {
            match T::from_proto("some.field", number) {
                Ok(value) => {
                    assert!(defined(number), "{number} is no proto value");
                    assert_eq!(value.to_proto(), number, "{value:?}");
                    assert!(all.contains(&value), "{value:?}");
                    named += 1;
                }
                Err(v) => {
                    assert!(
                        !defined(number),
                        "{number} is a proto value, refused: {v:?}"
                    );
                    assert_eq!(v.field, "some.field");
                    assert!(!v.description.is_empty(), "{number}");
                }
            }
        }
        assert_eq!(named, all.len(), "values named by a proto number");
    }

    #[test]
    fn every_value_round_trips_and_every_proto_value_is_mapped() {
        round_trips(Severity::ALL, |n| {
            pb::Severity::try_from(n).is_ok_and(|v| v != pb::Severity::Unspecified)
        });
        round_trips(Level::ALL, |n| {
            pb::Level::try_from(n).is_ok_and(|v| v != pb::Level::Unspecified)
        });
        round_trips(Channel::ALL, |n| {
            pb::Channel::try_from(n).is_ok_and(|v| v != pb::Channel::Unspecified)
        });
        round_trips(Touchpoint::ALL, |n| {
            pb::Touchpoint::try_from(n).is_ok_and(|v| v != pb::Touchpoint::Unspecified)
        });
        round_trips(ContactMethod::ALL, |n| {
            pb::ContactMethod::try_from(n).is_ok_and(|v| v != pb::ContactMethod::Unspecified)
        });
        round_trips(Remedy::ALL, |n| {
            pb::Remedy::try_from(n).is_ok_and(|v| v != pb::Remedy::Unspecified)
        });
        round_trips(DefectionReason::ALL, |n| {
            pb::DefectionReason::try_from(n).is_ok_and(|v| v != pb::DefectionReason::Unspecified)
        });
        round_trips(OutreachOutcome::ALL, |n| {
            pb::OutreachOutcome::try_from(n).is_ok_and(|v| v != pb::OutreachOutcome::Unspecified)
        });
        round_trips(
            &[
                ComplaintStatus::Open,
                ComplaintStatus::Acknowledged,
                ComplaintStatus::WaitingOnCustomer,
                ComplaintStatus::Resolved,
            ],
            |n| {
                pb::ComplaintStatus::try_from(n)
                    .is_ok_and(|v| v != pb::ComplaintStatus::Unspecified)
            },
        );
        round_trips(SlaClock::ALL, |n| {
            pb::SlaClock::try_from(n).is_ok_and(|v| v != pb::SlaClock::Unspecified)
        });
        round_trips(&[OutreachStatus::Open, OutreachStatus::Closed], |n| {
            pb::OutreachStatus::try_from(n).is_ok_and(|v| v != pb::OutreachStatus::Unspecified)
        });
        round_trips(&[DefectorState::AtRisk, DefectorState::Defected], |n| {
            pb::DefectorState::try_from(n).is_ok_and(|v| v != pb::DefectorState::Unspecified)
        });
    }

    #[test]
    fn pairs_match_by_meaning_not_position() {
        assert_eq!(
            Touchpoint::WarrantyAndComplaintHandling.to_proto(),
            pb::Touchpoint::WarrantyAndComplaintHandling as i32
        );
        assert_eq!(
            Level::from_proto("level", pb::Level::Owner as i32),
            Ok(Level::Owner)
        );
        assert_eq!(
            DefectionReason::from_proto("reason", pb::DefectionReason::MovedAway as i32),
            Ok(DefectionReason::MovedAway)
        );
        assert_eq!(
            ComplaintStatus::WaitingOnCustomer.to_proto(),
            pb::ComplaintStatus::WaitingOnCustomer as i32
        );
    }

    #[test]
    fn unset_and_unknown_numbers_are_refused_naming_the_field() {
        let refusal = |v: Result<Channel, FieldViolation>| v.expect_err("refused");
        let unset = refusal(Channel::from_proto("channel", 0));
        assert_eq!(unset.field, "channel");
        assert_eq!(
            unset.description,
            "unknown channel \"\"; expected one of: till, phone, web, comment_card, letter"
        );
        let unknown = refusal(Channel::from_proto("channel", 42));
        assert_eq!(
            unknown.description,
            "unknown channel \"42\"; expected one of: till, phone, web, comment_card, letter"
        );
        let remedy = Remedy::from_proto("remedies[1]", -1).expect_err("refused");
        assert_eq!(remedy.field, "remedies[1]");
        assert!(
            remedy.description.starts_with("unknown remedy \"-1\";"),
            "{remedy:?}"
        );
        assert_eq!(
            Level::from_proto("level", 9),
            Err(FieldViolation::new("level", "9 is not a known level"))
        );
        assert_eq!(
            Level::from_proto("level", 0),
            Err(FieldViolation::new("level", "0 is not a known level"))
        );
        assert_eq!(
            OutreachStatus::from_proto("status", 9),
            Err(FieldViolation::new("status", "9 is not a known status"))
        );
        assert_eq!(
            ComplaintStatus::from_proto("statuses", 0).map_err(|v| v.field),
            Err("statuses".to_owned())
        );
    }

    #[test]
    fn optional_fields_read_unset_as_none() {
        assert_eq!(optional::<Level>("level", 0), Ok(None));
        assert_eq!(
            optional::<Level>("level", pb::Level::RegionalManager as i32),
            Ok(Some(Level::RegionalManager))
        );
        assert_eq!(
            optional::<Level>("level", -2),
            Err(FieldViolation::new("level", "-2 is not a known level"))
        );
        assert_eq!(optional::<OutreachStatus>("status", 0), Ok(None));
    }

    #[test]
    fn commands_get_the_domain_spelling_or_the_number_as_sent() {
        assert_eq!(
            command_input::<Channel>("channel", pb::Channel::CommentCard as i32),
            "comment_card"
        );
        assert_eq!(command_input::<Channel>("channel", 0), "");
        assert_eq!(command_input::<Channel>("channel", 42), "42");
        assert_eq!(command_input::<Remedy>("remedies[0]", -1), "-1");
    }

    /// What the aggregate says about a command's bad enum field is what `from_proto` says.
    #[test]
    fn the_aggregate_refuses_a_passed_on_number_in_the_same_words() {
        for number in [0, 42, -1] {
            let ack = ComplaintCommand::AcknowledgeComplaint(AcknowledgeComplaint {
                expected_version: None,
                method: command_input::<ContactMethod>("method", number),
                note: String::new(),
            });
            let expected = ContactMethod::from_proto("method", number).expect_err("refused");
            assert!(input_violations(&ack).contains(&expected), "{number}");

            let resolve = ComplaintCommand::ResolveComplaint(ResolveComplaint {
                expected_version: None,
                remedies: vec![command_input::<Remedy>("remedies[0]", number)],
                summary: "Apologised".into(),
            });
            let expected = Remedy::from_proto("remedies[0]", number).expect_err("refused");
            assert!(input_violations(&resolve).contains(&expected), "{number}");

            let root_cause = ComplaintCommand::RecordRootCause(RecordRootCause {
                expected_version: None,
                root_cause: RootCauseInput {
                    whys: vec!["why".into()],
                    category: command_input::<Touchpoint>("root_cause.category", number),
                    corrective_action: "act".into(),
                },
            });
            let expected =
                Touchpoint::from_proto("root_cause.category", number).expect_err("refused");
            assert!(
                input_violations(&root_cause).contains(&expected),
                "{number}"
            );

            let attempt = OutreachCommand::RecordOutreach(RecordOutreach {
                expected_version: None,
                reason: command_input::<DefectionReason>("reason", 42),
                free_text: String::new(),
                outcome: command_input::<OutreachOutcome>("outcome", number),
                method: command_input::<ContactMethod>("method", number),
            });
            let violations = outreach_input_violations(&attempt);
            for expected in [
                DefectionReason::from_proto("reason", 42).expect_err("refused"),
                OutreachOutcome::from_proto("outcome", number).expect_err("refused"),
                ContactMethod::from_proto("method", number).expect_err("refused"),
            ] {
                assert!(violations.contains(&expected), "{number}: {expected:?}");
            }
        }
    }
}
