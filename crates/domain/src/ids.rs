//! Identifier newtypes. They can only be built by parsing, so an invalid id cannot exist.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest identifier accepted anywhere.
pub const MAX_ID_LEN: usize = 128;

/// Checks the shared identifier grammar: 1..=128 characters of `[A-Za-z0-9._:-]`.
pub fn check_id(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > MAX_ID_LEN {
        return Err(format!(
            "must be at most {MAX_ID_LEN} characters, got {}",
            value.len()
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return Err(format!(
            "may only contain letters, digits and . _ : - (found {c:?})"
        ));
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: impl Into<String>) -> Result<Self, String> {
                let value = value.into();
                check_id(&value)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, String> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// The client-made id of one swipe: the idempotency key from the till to Redis.
    SwipeId
);
id_type!(
    /// A store of the chain.
    StoreId
);
id_type!(
    /// A till or card terminal inside a store.
    TerminalId
);
id_type!(
    /// The employee at the till, so defection can be attributed per employee.
    EmployeeId
);
id_type!(
    /// Who bought: a loyalty customer id or a card token, never a raw card number.
    /// This is the partition key of the purchases topic.
    CustomerKey
);
id_type!(
    /// One complaint: the key of its event stream. The adapter derives it from the filing's
    /// idempotency key, so a retried filing lands on the same stream.
    ComplaintId
);
id_type!(
    /// One defector-outreach case: the key of its event stream, derived from the churn
    /// signal that opened it.
    OutreachCaseId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_id_grammar() {
        assert!(StoreId::parse("store-042").is_ok());
        assert!(SwipeId::parse("pos:7:2026-11-22T10:00:00.123").is_ok());
    }

    #[test]
    fn rejects_empty_long_and_odd_characters() {
        assert!(StoreId::parse("").is_err());
        assert!(StoreId::parse("a".repeat(MAX_ID_LEN + 1)).is_err());
        assert!(StoreId::parse("store 42").is_err());
        assert!(StoreId::parse("store/42").is_err());
    }

    #[test]
    fn deserialising_validates() {
        let ok: Result<StoreId, _> = serde_json::from_str("\"s1\"");
        assert!(ok.is_ok());
        let bad: Result<StoreId, _> = serde_json::from_str("\"s 1\"");
        assert!(bad.is_err());
    }
}
