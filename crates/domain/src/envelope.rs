//! The CloudEvents 1.0 structured-mode JSON envelope every churnguard event travels in.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::quoted;

/// The `content-type` header of a structured-mode CloudEvent.
pub const CONTENT_TYPE: &str = "application/cloudevents+json; charset=utf-8";

/// The record header in which purchase-ingest says when it accepted a swipe (ms since
/// the Unix epoch, decimal): where the end-to-end latency is measured from.
pub const INGESTED_AT_HEADER: &str = "churnguard-ingested-at-ms";

/// Record header (value `1`) on swipes imported as history (purchase-ingest's
/// `historical` requests): consumers take them as the past, not as today. While the
/// newest swipe of a partition is history, its absence timers follow the stream's own
/// time instead of the wall clock.
pub const HISTORY_HEADER: &str = "churnguard-history";
const SPEC_VERSION: &str = "1.0";

/// Namespace of churnguard's name-based (v5) event ids.
const EVENT_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6f1c_2b0e_54a4_4d5e_9b1f_6c1e_3c1a_90d7);

/// A deterministic event id for (`event_type`, `key`): retries of one command get one id.
pub fn event_id(event_type: &str, key: &str) -> String {
    let name = format!("{event_type}/{key}");
    uuid::Uuid::new_v5(&EVENT_ID_NAMESPACE, name.as_bytes()).to_string()
}

/// A CloudEvent carrying `data` of type `T`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub specversion: String,
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Event time: when it happened, not when it was written.
    pub time: DateTime<FixedOffset>,
    pub datacontenttype: String,
    /// Who made the command this event records (a CloudEvents extension attribute):
    /// `store:<id>`, `<role>:<subject>`; absent where callers are not identified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    pub data: T,
}

/// Why a payload is not an event this consumer understands.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is not a CloudEvents JSON envelope: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("unsupported CloudEvents specversion {}", quoted(.0))]
    SpecVersion(String),
    #[error("unknown event type {}, expected {expected:?}", quoted(.found))]
    UnknownType { found: String, expected: String },
    #[error("event data does not match {event_type}: {source}")]
    Data {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
    /// Well-formed data that breaks a rule every such event keeps (a corrupted record):
    /// `field` names where.
    #[error("event data of {event_type} is invalid at {field}: {message}")]
    Invalid {
        event_type: String,
        field: &'static str,
        message: String,
    },
}

impl<T> Envelope<T> {
    pub fn new(
        id: String,
        source: String,
        event_type: &str,
        subject: Option<String>,
        time: DateTime<FixedOffset>,
        data: T,
    ) -> Self {
        Self {
            specversion: SPEC_VERSION.into(),
            id,
            source,
            event_type: event_type.into(),
            subject,
            time,
            datacontenttype: "application/json".into(),
            actor: None,
            data,
        }
    }

    /// The same event, saying who made the command (`None`: nobody identified).
    pub fn with_actor(mut self, actor: Option<String>) -> Self {
        self.actor = actor;
        self
    }
}

impl<T: Serialize> Envelope<T> {
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Just the attributes that decide whether a payload is for us; the rest is skipped.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    specversion: std::borrow::Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    event_type: std::borrow::Cow<'a, str>,
}

impl<T: DeserializeOwned> Envelope<T> {
    /// Decodes a payload, insisting on the spec version and on `expected_type`.
    pub fn decode(payload: &[u8], expected_type: &str) -> Result<Self, DecodeError> {
        // The common case, a well-formed event of the expected type and version, takes one
        // pass. Anything else is parsed again below, head first, to say what is wrong.
        if let Ok(event) = serde_json::from_slice::<Self>(payload)
            && event.specversion == SPEC_VERSION
            && event.event_type == expected_type
        {
            return Ok(event);
        }
        let head: Head<'_> = serde_json::from_slice(payload).map_err(DecodeError::Malformed)?;
        if head.specversion != SPEC_VERSION {
            return Err(DecodeError::SpecVersion(head.specversion.into_owned()));
        }
        if head.event_type != expected_type {
            return Err(DecodeError::UnknownType {
                found: head.event_type.into_owned(),
                expected: expected_type.into(),
            });
        }
        serde_json::from_slice(payload).map_err(|source| DecodeError::Data {
            event_type: expected_type.into(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swipe::{CardSwiped, CustomerInput, SwipeDraft, SwipeLimits};

    fn swipe() -> CardSwiped {
        SwipeDraft {
            swipe_id: "sw-9".into(),
            customer: CustomerInput::CardToken("tok-9".into()),
            store_id: "s-9".into(),
            terminal_id: "t-9".into(),
            employee_id: "e-9".into(),
            occurred_at: "2026-11-20T18:00:00-05:00".into(),
            amount_minor_units: 4200,
            currency: "USD".into(),
            item_count: 1,
        }
        .validate(
            DateTime::parse_from_rfc3339("2026-11-22T00:00:00Z")
                .expect("time")
                .to_utc(),
            &SwipeLimits::default(),
            None,
        )
        .expect("valid")
    }

    #[test]
    fn round_trips_with_cloudevents_attribute_names() {
        let env = swipe().into_envelope();
        let json = env.to_json();
        let v: serde_json::Value = serde_json::from_slice(&json).expect("json");
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], CardSwiped::EVENT_TYPE);
        assert_eq!(v["time"], "2026-11-20T18:00:00-05:00");
        assert_eq!(v["source"], "/churnguard/stores/s-9");
        assert_eq!(v["subject"], "tok-9");
        let back = Envelope::<CardSwiped>::decode(&json, CardSwiped::EVENT_TYPE).expect("decode");
        assert_eq!(back, env);
    }

    #[test]
    fn refuses_other_types_and_garbage() {
        let json = swipe().into_envelope().to_json();
        assert!(matches!(
            Envelope::<CardSwiped>::decode(&json, "churnguard.purchase.card_swiped.v2"),
            Err(DecodeError::UnknownType { .. })
        ));
        assert!(matches!(
            Envelope::<CardSwiped>::decode(b"{not json", CardSwiped::EVENT_TYPE),
            Err(DecodeError::Malformed(_))
        ));
    }
}
