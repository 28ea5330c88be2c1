//! A card swipe: the one fact purchase-ingest accepts, and what makes one valid.

use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::card::{CardTokenizer, TokenizeError, looks_like_payment_card};
use crate::envelope::Envelope;
use crate::error::{FieldViolation, Violations, quoted};
use crate::ids::{CustomerKey, EmployeeId, StoreId, SwipeId, TerminalId};
use crate::money::{Currency, Money};

/// A validated purchase at a till: the data of a `churnguard.purchase.card_swiped.v1` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardSwiped {
    pub swipe_id: SwipeId,
    pub customer: CustomerKey,
    pub store_id: StoreId,
    pub terminal_id: TerminalId,
    pub employee_id: EmployeeId,
    /// Event time, with the store's UTC offset as the till reported it.
    pub occurred_at: DateTime<FixedOffset>,
    pub amount: Money,
    pub item_count: u32,
}

impl CardSwiped {
    /// The CloudEvents `type` of this event. A new shape gets a new version suffix.
    pub const EVENT_TYPE: &'static str = "churnguard.purchase.card_swiped.v1";

    /// The event id: derived from the swipe id only, so a retried swipe carries the same
    /// id and every consumer can drop the duplicate.
    pub fn event_id(&self) -> String {
        crate::envelope::event_id(Self::EVENT_TYPE, self.swipe_id.as_str())
    }

    /// Decodes a swipe event, and insists on what ingest guarantees of every swipe it
    /// writes (an amount that is not negative, at least one item): a record that breaks
    /// it is corrupt, refused naming the field rather than counted.
    pub fn decode(payload: &[u8]) -> Result<Envelope<CardSwiped>, crate::DecodeError> {
        let envelope = Envelope::<CardSwiped>::decode(payload, Self::EVENT_TYPE)?;
        let invalid = |field, message: &str| crate::DecodeError::Invalid {
            event_type: Self::EVENT_TYPE.into(),
            field,
            message: message.into(),
        };
        if envelope.data.amount.minor_units < 0 {
            return Err(invalid("amount.minor_units", "must not be negative"));
        }
        if envelope.data.item_count == 0 {
            return Err(invalid("item_count", "must be at least 1"));
        }
        Ok(envelope)
    }

    /// The CloudEvents envelope published for this swipe.
    pub fn into_envelope(self) -> Envelope<CardSwiped> {
        Envelope::new(
            self.event_id(),
            format!("/churnguard/stores/{}", self.store_id),
            Self::EVENT_TYPE,
            Some(self.customer.to_string()),
            self.occurred_at,
            self,
        )
    }
}

/// Who bought, as the till sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerInput {
    Missing,
    CustomerId(String),
    CardToken(String),
    /// A raw card number: tokenised before anything else sees it.
    CardNumber(String),
}

/// A swipe as it arrives, before validation. Field names follow the proto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwipeDraft {
    pub swipe_id: String,
    pub customer: CustomerInput,
    pub store_id: String,
    pub terminal_id: String,
    pub employee_id: String,
    /// RFC 3339 with an explicit offset, e.g. `2026-11-22T10:15:00+01:00`.
    pub occurred_at: String,
    pub amount_minor_units: i64,
    pub currency: String,
    pub item_count: u32,
}

/// The explicit, configurable limits a swipe must respect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwipeLimits {
    /// How far ahead of the server clock `occurred_at` may be (till clocks drift).
    pub max_future: TimeDelta,
    /// How old `occurred_at` may be (an offline store uploading late).
    pub max_age: TimeDelta,
    /// Largest accepted amount, in minor units.
    pub max_amount_minor_units: i64,
    /// Largest accepted item count.
    pub max_item_count: u32,
}

impl Default for SwipeLimits {
    fn default() -> Self {
        Self {
            max_future: TimeDelta::minutes(5),
            max_age: TimeDelta::days(90),
            max_amount_minor_units: 100_000_000,
            max_item_count: 10_000,
        }
    }
}

impl SwipeDraft {
    /// Validates every field and returns the swipe, or every violation found.
    /// `now` is the server's clock; `tokenizer` is set when the deployment may send PANs.
    pub fn validate(
        self,
        now: DateTime<Utc>,
        limits: &SwipeLimits,
        tokenizer: Option<&CardTokenizer>,
    ) -> Result<CardSwiped, Violations> {
        let mut errors = Vec::new();
        let mut field = |name: &str, msg: String| errors.push(FieldViolation::new(name, msg));

        let swipe_id = SwipeId::parse(self.swipe_id)
            .map_err(|e| field("swipe_id", e))
            .ok();
        let customer = match validate_customer(self.customer, tokenizer) {
            Ok(c) => Some(c),
            Err(v) => {
                field(&v.field, v.description);
                None
            }
        };
        let store_id = StoreId::parse(self.store_id)
            .map_err(|e| field("store_id", e))
            .ok();
        let terminal_id = TerminalId::parse(self.terminal_id)
            .map_err(|e| field("terminal_id", e))
            .ok();
        let employee_id = EmployeeId::parse(self.employee_id)
            .map_err(|e| field("employee_id", e))
            .ok();
        let occurred_at = validate_occurred_at(&self.occurred_at, now, limits)
            .map_err(|e| field("occurred_at", e))
            .ok();
        if self.amount_minor_units < 0 {
            field("amount.minor_units", "must not be negative".into());
        } else if self.amount_minor_units > limits.max_amount_minor_units {
            field(
                "amount.minor_units",
                format!("must be at most {}", limits.max_amount_minor_units),
            );
        }
        let currency = Currency::parse_current(&self.currency)
            .map_err(|e| field("amount.currency", e))
            .ok();
        if self.item_count == 0 {
            field("item_count", "must be at least 1".into());
        } else if self.item_count > limits.max_item_count {
            field(
                "item_count",
                format!("must be at most {}", limits.max_item_count),
            );
        }

        match (
            swipe_id,
            customer,
            store_id,
            terminal_id,
            employee_id,
            occurred_at,
            currency,
        ) {
            (
                Some(swipe_id),
                Some(customer),
                Some(store_id),
                Some(terminal_id),
                Some(employee_id),
                Some(occurred_at),
                Some(currency),
            ) if errors.is_empty() => Ok(CardSwiped {
                swipe_id,
                customer,
                store_id,
                terminal_id,
                employee_id,
                occurred_at,
                amount: Money {
                    minor_units: self.amount_minor_units,
                    currency,
                },
                item_count: self.item_count,
            }),
            _ => Err(Violations(errors)),
        }
    }
}

/// The swipe's time: RFC 3339 with an offset, neither too far ahead of the server clock
/// `now` nor older than the limit.
fn validate_occurred_at(
    text: &str,
    now: DateTime<Utc>,
    limits: &SwipeLimits,
) -> Result<DateTime<FixedOffset>, String> {
    let t = DateTime::parse_from_rfc3339(text).map_err(|_| {
        format!(
            "must be an RFC 3339 time with an offset, e.g. 2026-11-22T10:15:00+01:00, got {}",
            quoted(text)
        )
    })?;
    if t.with_timezone(&Utc) > now + limits.max_future {
        return Err(format!(
            "is more than {}s in the future of the server clock",
            limits.max_future.num_seconds()
        ));
    }
    if t.with_timezone(&Utc) < now - limits.max_age {
        return Err(format!(
            "is older than the limit of {} days",
            limits.max_age.num_days()
        ));
    }
    Ok(t)
}

fn validate_customer(
    input: CustomerInput,
    tokenizer: Option<&CardTokenizer>,
) -> Result<CustomerKey, FieldViolation> {
    let tokenize = |field: &str, pan: &str| match tokenizer {
        None => Err(FieldViolation::new(field, TokenizeError::NoKey.to_string())),
        Some(t) => t
            .tokenize(pan)
            .map_err(|e| FieldViolation::new(field, e.to_string())),
    };
    match input {
        CustomerInput::Missing => Err(FieldViolation::new(
            "customer",
            "one of customer_id, card_token or card_number is required",
        )),
        CustomerInput::CardNumber(pan) => tokenize("customer.card_number", &pan),
        CustomerInput::CustomerId(v) => parse_customer("customer.customer_id", &v, tokenize),
        CustomerInput::CardToken(v) => parse_customer("customer.card_token", &v, tokenize),
    }
}

/// An id field that holds what looks like a payment card number is treated as one: it is
/// tokenised (or refused), never stored as it came.
fn parse_customer(
    field: &str,
    value: &str,
    tokenize: impl Fn(&str, &str) -> Result<CustomerKey, FieldViolation>,
) -> Result<CustomerKey, FieldViolation> {
    if looks_like_payment_card(value) {
        return tokenize(field, value);
    }
    CustomerKey::parse(value).map_err(|e| FieldViolation::new(field, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
            .expect("fixed time")
            .with_timezone(&Utc)
    }

    fn draft() -> SwipeDraft {
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
    }

    fn fields(r: Result<CardSwiped, Violations>) -> Vec<String> {
        r.err()
            .map(|v| v.fields().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_good_swipe_keeps_its_offset() {
        let s = draft()
            .validate(now(), &SwipeLimits::default(), None)
            .expect("valid");
        assert_eq!(s.occurred_at.offset().local_minus_utc(), 3600);
        assert_eq!(s.amount.minor_units, 1250);
    }

    #[test]
    fn every_bad_field_is_named() {
        let bad = SwipeDraft {
            swipe_id: String::new(),
            customer: CustomerInput::Missing,
            store_id: "bad store".into(),
            terminal_id: String::new(),
            employee_id: "e/1".into(),
            occurred_at: "yesterday".into(),
            amount_minor_units: -1,
            currency: "eur".into(),
            item_count: 0,
        };
        assert_eq!(
            fields(bad.validate(now(), &SwipeLimits::default(), None)),
            [
                "swipe_id",
                "customer",
                "store_id",
                "terminal_id",
                "employee_id",
                "occurred_at",
                "amount.minor_units",
                "amount.currency",
                "item_count"
            ]
        );
    }

    #[test]
    fn time_limits_are_enforced() {
        let limits = SwipeLimits::default();
        let future = SwipeDraft {
            occurred_at: "2026-11-22T12:06:00Z".into(),
            ..draft()
        };
        assert_eq!(
            fields(future.validate(now(), &limits, None)),
            ["occurred_at"]
        );
        let old = SwipeDraft {
            occurred_at: "2026-01-01T00:00:00Z".into(),
            ..draft()
        };
        assert_eq!(fields(old.validate(now(), &limits, None)), ["occurred_at"]);
        let no_offset = SwipeDraft {
            occurred_at: "2026-11-22T11:00:00".into(),
            ..draft()
        };
        assert_eq!(
            fields(no_offset.validate(now(), &limits, None)),
            ["occurred_at"]
        );
    }

    #[test]
    fn raw_card_numbers_are_tokenised_or_refused() {
        let pan = SwipeDraft {
            customer: CustomerInput::CardNumber("4111111111111111".into()),
            ..draft()
        };
        assert_eq!(
            fields(pan.clone().validate(now(), &SwipeLimits::default(), None)),
            ["customer.card_number"]
        );
        let t = CardTokenizer::new(&[7u8; 32]).expect("key");
        let s = pan
            .validate(now(), &SwipeLimits::default(), Some(&t))
            .expect("tokenised");
        assert!(s.customer.as_str().starts_with("ct_"));
        let json = serde_json::to_string(&s).expect("json");
        assert!(!json.contains("4111111111111111"));

        let hidden = SwipeDraft {
            customer: CustomerInput::CustomerId("4111111111111111".into()),
            ..draft()
        };
        let s = hidden
            .validate(now(), &SwipeLimits::default(), Some(&t))
            .expect("tokenised");
        assert!(s.customer.as_str().starts_with("ct_"));
    }

    #[test]
    fn currencies_must_be_in_current_use() {
        let limits = SwipeLimits::default();
        let made_up = SwipeDraft {
            currency: "XYZ".into(),
            ..draft()
        };
        assert_eq!(
            fields(made_up.validate(now(), &limits, None)),
            ["amount.currency"]
        );
        for code in ["EUR", "USD", "JPY"] {
            let s = SwipeDraft {
                currency: code.into(),
                ..draft()
            }
            .validate(now(), &limits, None)
            .expect(code);
            assert_eq!(s.amount.currency.as_str(), code);
        }
    }

    #[test]
    fn megabyte_values_are_described_briefly() {
        let mb = "9".repeat(1024 * 1024);
        let bad = SwipeDraft {
            customer: CustomerInput::CustomerId(mb.clone()),
            occurred_at: mb.clone(),
            currency: mb.clone(),
            ..draft()
        };
        let v = bad
            .validate(now(), &SwipeLimits::default(), None)
            .expect_err("invalid");
        assert_eq!(
            v.fields().collect::<Vec<_>>(),
            ["customer.customer_id", "occurred_at", "amount.currency"]
        );
        for f in &v.0 {
            assert!(f.description.len() <= 200, "{}: {}", f.field, f.description);
        }
    }

    #[test]
    fn the_event_id_depends_on_the_swipe_id_only() {
        let a = draft()
            .validate(now(), &SwipeLimits::default(), None)
            .expect("valid");
        let b = SwipeDraft {
            amount_minor_units: 99,
            ..draft()
        }
        .validate(now(), &SwipeLimits::default(), None)
        .expect("valid");
        assert_eq!(a.event_id(), b.event_id());
        let c = SwipeDraft {
            swipe_id: "sw-2".into(),
            ..draft()
        }
        .validate(now(), &SwipeLimits::default(), None)
        .expect("valid");
        assert_ne!(a.event_id(), c.event_id());
    }
}
