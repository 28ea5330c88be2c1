//! The complainant's contact details: sealed by the adapter before they reach the
//! aggregate or the log, checked in plaintext before sealing.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Violations;
use crate::feedback::check::{Check, Required};

/// Largest sealed contact accepted, in bytes: four plaintext fields plus cipher overhead.
pub const MAX_SEALED_CONTACT_BYTES: usize = 8 * 1024;

/// The complainant's contact details as ciphertext sealed by the adapter (for example with
/// a per-tenant key), so events and snapshots never hold them in plaintext and erasing the
/// key erases them. The domain never looks inside. Serialised as a hex string.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedContact(Vec<u8>);

impl SealedContact {
    pub fn new(ciphertext: Vec<u8>) -> Self {
        Self(ciphertext)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Never prints the bytes: even ciphertext does not belong in logs.
impl fmt::Debug for SealedContact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedContact(<{} bytes>)", self.0.len())
    }
}

impl Serialize for SealedContact {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for SealedContact {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text)
            .map(SealedContact)
            .map_err(serde::de::Error::custom)
    }
}

/// The contact details in plaintext, as the adapter receives them. Only lives long enough
/// to be validated and sealed; `Debug` redacts it.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContactDetails {
    pub name: String,
    pub phone: String,
    pub email: String,
    pub address: String,
}

impl fmt::Debug for ContactDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContactDetails { <redacted> }")
    }
}

impl ContactDetails {
    /// Checks the plaintext before it is sealed. Field paths are `contact.name`,
    /// `contact.phone`, `contact.email`, `contact.address`, or `contact` when there is no
    /// way at all to reach the customer (a phone, an email or an address is required: a
    /// complaint nobody can answer cannot be resolved).
    pub fn validate(&self) -> Result<(), Violations> {
        let mut c = Check::default();
        c.text("contact.name", &self.name, Required::Yes, 200);
        let phone = self.phone.trim();
        if !phone.is_empty() {
            let digits = phone.chars().filter(char::is_ascii_digit).count();
            if !phone
                .chars()
                .all(|ch| ch.is_ascii_digit() || matches!(ch, '+' | '-' | ' ' | '(' | ')'))
            {
                c.fail(
                    "contact.phone",
                    "may only contain digits, spaces and + - ( )",
                );
            } else if !(6..=20).contains(&digits) {
                c.fail("contact.phone", "must have 6 to 20 digits");
            }
        }
        let email = self.email.trim();
        if !email.is_empty() {
            let ok = email.len() <= 254
                && !email.chars().any(char::is_whitespace)
                && email.split_once('@').is_some_and(|(local, domain)| {
                    !local.is_empty()
                        && !domain.contains('@')
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                });
            if !ok {
                c.fail("contact.email", "must be an address like name@example.com");
            }
        }
        c.text("contact.address", &self.address, Required::No, 500);
        if phone.is_empty() && email.is_empty() && self.address.trim().is_empty() {
            c.fail("contact", "one of phone, email or address is required");
        }
        c.finish()
    }

    /// The bytes the adapter encrypts into a [`SealedContact`] (JSON).
    pub fn to_plaintext(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The details back from decrypted bytes, if they are what [`Self::to_plaintext`] made.
    pub fn from_plaintext(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_details_are_checked_before_sealing_and_never_printed() {
        let good = ContactDetails {
            name: "Ada Lovelace".into(),
            phone: "+44 20 7946 0000".into(),
            email: "ada@example.com".into(),
            address: String::new(),
        };
        assert_eq!(good.validate(), Ok(()));
        assert_eq!(
            ContactDetails::from_plaintext(&good.to_plaintext()),
            Some(good.clone())
        );
        assert!(!format!("{good:?}").contains("Ada"));
        let bad = ContactDetails {
            name: String::new(),
            phone: "call me".into(),
            email: "ada@localhost".into(),
            address: String::new(),
        };
        let fields: Vec<String> = bad
            .validate()
            .expect_err("bad")
            .fields()
            .map(str::to_owned)
            .collect();
        assert_eq!(fields, ["contact.name", "contact.phone", "contact.email"]);
        let unreachable = ContactDetails {
            name: "Ada".into(),
            ..ContactDetails::default()
        };
        let fields: Vec<String> = unreachable
            .validate()
            .expect_err("bad")
            .fields()
            .map(str::to_owned)
            .collect();
        assert_eq!(fields, ["contact"]);

        let sealed = SealedContact::new(vec![0xde, 0xad]);
        assert_eq!(format!("{sealed:?}"), "SealedContact(<2 bytes>)");
        assert_eq!(
            serde_json::to_string(&sealed).ok().as_deref(),
            Some("\"dead\"")
        );
    }
}
