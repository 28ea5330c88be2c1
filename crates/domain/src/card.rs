//! Raw card numbers never enter the system. A deployment that sends them gets each one
//! replaced by a keyed HMAC-SHA256 token before anything is written or logged.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

use crate::ids::CustomerKey;

/// Prefix of every token made here, so a token is never mistaken for a customer id.
pub const CARD_TOKEN_PREFIX: &str = "ct_";

/// Turns primary account numbers (PANs) into stable, non-reversible tokens.
#[derive(Clone)]
pub struct CardTokenizer {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for CardTokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CardTokenizer { key: <redacted> }")
    }
}

/// Why a card number could not be tokenised. Never carries the number itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenizeError {
    #[error("is not a card number: expected 12 to 19 digits with a valid check digit")]
    NotACardNumber,
    #[error("raw card numbers are not accepted: no card tokenisation key is configured")]
    NoKey,
}

impl CardTokenizer {
    /// A tokenizer with a secret key; at least 32 bytes are required.
    pub fn new(key: &[u8]) -> Result<Self, String> {
        if key.len() < 32 {
            return Err(format!("must be at least 32 bytes, got {}", key.len()));
        }
        let mac = Hmac::<Sha256>::new_from_slice(key).map_err(|e| e.to_string())?;
        Ok(Self { mac })
    }

    /// Tokenises a PAN; spaces and dashes between digit groups are ignored.
    pub fn tokenize(&self, pan: &str) -> Result<CustomerKey, TokenizeError> {
        let digits = normalise_pan(pan).ok_or(TokenizeError::NotACardNumber)?;
        let mut mac = self.mac.clone();
        mac.update(digits.as_bytes());
        let tag = mac.finalize().into_bytes();
        let token = format!("{CARD_TOKEN_PREFIX}{}", hex::encode(&tag[..16]));
        CustomerKey::parse(token).map_err(|_| TokenizeError::NotACardNumber)
    }
}

/// The digits of `value` if it is shaped like a payment card number (12-19 digits,
/// optional spaces or dashes, valid Luhn check digit); `None` otherwise.
pub fn normalise_pan(value: &str) -> Option<String> {
    if !value
        .chars()
        .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
    {
        return None;
    }
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    if !(12..=19).contains(&digits.len()) || !luhn_valid(&digits) {
        return None;
    }
    Some(digits)
}

/// True if `value` looks like a payment card number of a major scheme (Visa, Mastercard,
/// Amex, Discover/UnionPay): used to catch PANs sent in an id field by mistake.
pub fn looks_like_payment_card(value: &str) -> bool {
    let Some(digits) = normalise_pan(value) else {
        return false;
    };
    let two: u32 = digits[..2].parse().unwrap_or(0);
    digits.starts_with('4')
        || (51..=55).contains(&two)
        || (22..=27).contains(&two)
        || two == 34
        || two == 37
        || digits.starts_with('6')
}

fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let dd = d * 2;
                if dd > 9 { dd - 9 } else { dd }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn tokens_are_stable_keyed_and_hide_the_number() {
        let t = CardTokenizer::new(KEY).expect("key");
        let a = t.tokenize("4111 1111 1111 1111").expect("valid pan");
        let b = t.tokenize("4111111111111111").expect("valid pan");
        assert_eq!(a, b);
        assert!(a.as_str().starts_with(CARD_TOKEN_PREFIX));
        assert!(!a.as_str().contains("4111111111111111"));
        let other = CardTokenizer::new(b"another-key-another-key-another-key").expect("key");
        assert_ne!(other.tokenize("4111111111111111").expect("valid"), a);
    }

    #[test]
    fn rejects_non_numbers_and_bad_check_digits() {
        let t = CardTokenizer::new(KEY).expect("key");
        assert_eq!(
            t.tokenize("4111111111111112"),
            Err(TokenizeError::NotACardNumber)
        );
        assert_eq!(t.tokenize("cust-1"), Err(TokenizeError::NotACardNumber));
        assert!(CardTokenizer::new(b"short").is_err());
    }

    #[test]
    fn recognises_payment_cards() {
        assert!(looks_like_payment_card("4111111111111111"));
        assert!(looks_like_payment_card("5555 5555 5555 4444"));
        assert!(looks_like_payment_card("378282246310005"));
        assert!(!looks_like_payment_card("4111111111111112"));
        assert!(!looks_like_payment_card("cust-4111"));
    }

    #[test]
    fn debug_never_prints_the_key() {
        let t = CardTokenizer::new(KEY).expect("key");
        assert!(!format!("{t:?}").contains("0123"));
    }
}
