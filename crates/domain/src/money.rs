//! Money in integer minor units with an ISO 4217 currency code. Never floating point.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::error::quoted;

/// The currencies a purchase may be paid in: the alphabetic codes of ISO 4217 List One
/// ("current currency & funds"), as published by SIX Financial Information, the ISO 4217
/// maintenance agency, on 2025-03-31, without the codes that are not money one pays with:
/// funds and index units (BOV CHE CHW CLF COU MXV USN UYI UYW), precious metals (XAG XAU
/// XPD XPT), bond-market units (XBA XBB XBC XBD), XDR, XSU, XUA, and the testing and
/// no-currency codes XTS and XXX; and without BGN, replaced by EUR in Bulgaria on
/// 2026-01-01. Sorted, for a binary search.
///
/// Keep it in step with the ISO 4217 amendments: add a code when it is published, drop
/// one once it has been withdrawn. Events already in the log are never checked against
/// this list (see [`Currency::parse`]).
pub const ISO_4217_CURRENT: [&str; 155] = [
    "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BHD",
    "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF",
    "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN",
    "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD",
    "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES",
    "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL",
    "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN",
    "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP",
    "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK",
    "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT",
    "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VED", "VES",
    "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

/// An ISO 4217 alphabetic code: three upper-case ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    /// Any code of the ISO 4217 shape: three upper-case letters. This is what reading an
    /// event back accepts, so an event the log holds stays readable after a currency is
    /// withdrawn; new input goes through [`Currency::parse_current`].
    pub fn parse(code: &str) -> Result<Self, String> {
        let bytes = code.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(format!(
                "must be an ISO 4217 code of three upper-case letters, got {}",
                quoted(code)
            ));
        }
        Ok(Self([bytes[0], bytes[1], bytes[2]]))
    }

    /// A currency in current use: one of [`ISO_4217_CURRENT`].
    pub fn parse_current(code: &str) -> Result<Self, String> {
        let currency = Self::parse(code)?;
        if ISO_4217_CURRENT.binary_search(&code).is_err() {
            return Err(format!(
                "must be an ISO 4217 currency in current use, such as EUR, USD or JPY, got {}",
                quoted(code)
            ));
        }
        Ok(currency)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters can be stored, so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl TryFrom<String> for Currency {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An amount in minor units (cents, pence, ...) of one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub minor_units: i64,
    pub currency: Currency,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_codes() {
        assert_eq!(
            Currency::parse("EUR").map(|c| c.to_string()),
            Ok("EUR".into())
        );
        assert!(Currency::parse("eur").is_err());
        assert!(Currency::parse("EURO").is_err());
        assert!(Currency::parse("").is_err());
    }

    #[test]
    fn only_currencies_in_current_use_are_accepted_as_new_input() {
        for code in ["EUR", "USD", "JPY", "GBP", "CHF", "XOF", "XCG", "ZWG"] {
            assert_eq!(
                Currency::parse_current(code).map(|c| c.to_string()),
                Ok(code.to_owned())
            );
        }
        // Made up, withdrawn, funds, metals and the testing codes.
        for code in [
            "XYZ", "ABC", "DEM", "HRK", "ANG", "BGN", "ZWL", "CLF", "XAU", "XTS", "XXX",
        ] {
            let err = Currency::parse_current(code).expect_err(code);
            assert!(err.contains(&format!("{code:?}")), "{err}");
        }
        assert!(Currency::parse_current("eur").is_err());
        // What the log already holds stays readable.
        assert!(Currency::parse("XYZ").is_ok());
        let old: Money = serde_json::from_str(r#"{"minor_units":1,"currency":"HRK"}"#)
            .expect("a withdrawn code still deserialises");
        assert_eq!(old.currency.as_str(), "HRK");
    }

    #[test]
    fn the_list_is_sorted_and_well_formed() {
        assert!(ISO_4217_CURRENT.windows(2).all(|w| w[0] < w[1]));
        assert!(ISO_4217_CURRENT.iter().all(|c| Currency::parse(c).is_ok()));
    }

    #[test]
    fn a_long_bad_code_is_not_echoed_whole() {
        let long = "Q".repeat(1024 * 1024);
        let err = Currency::parse_current(&long).expect_err("bad");
        assert!(err.len() < 200, "{}", err.len());
        assert!(err.contains("(1048576 bytes)"), "{err}");
    }

    #[test]
    fn money_round_trips_through_json() {
        let m = Money {
            minor_units: 1999,
            currency: Currency::parse("USD").expect("valid"),
        };
        let json = serde_json::to_string(&m).expect("serialise");
        assert_eq!(json, r#"{"minor_units":1999,"currency":"USD"}"#);
        assert_eq!(serde_json::from_str::<Money>(&json).expect("parse"), m);
    }
}
