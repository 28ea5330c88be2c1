//! Amounts written as decimal text (`29.33`, `12.5`, `1250`) turned into integer minor
//! units exactly, with no floating point on the way: `29.33` is 2933 cents, never
//! 2932.9999. Money is integer minor units everywhere in churnguard.

use std::fmt;

/// The ISO 4217 currencies whose minor unit is not a hundredth: those with none (the
/// yen: 1 JPY is 1 minor unit) and those with a thousandth (the Kuwaiti dinar's fils).
/// Every other code, known or not, counts hundredths; purchase-ingest itself refuses a
/// code that is not a current currency.
const NO_MINOR_UNIT: [&str; 17] = [
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
    "VUV", "XAF", "XOF", "XPF",
];
const THOUSANDTHS: [&str; 7] = ["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];

/// How many digits after the decimal point one minor unit of `currency` is: 0 for JPY,
/// 3 for KWD, 2 for USD, EUR and any code not listed.
pub fn minor_digits(currency: &str) -> u32 {
    if NO_MINOR_UNIT.contains(&currency) {
        0
    } else if THOUSANDTHS.contains(&currency) {
        3
    } else {
        2
    }
}

/// Why an amount's text is not an amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountError {
    /// Not digits with at most one decimal point.
    NotANumber,
    /// A minus sign: purchases are not negative (refunds are not imported).
    Negative,
    /// More digits after the point than the currency's minor unit has, not all zero
    /// (`12.345` dollars): rounding would invent money, so the line is refused.
    TooPrecise { digits: u32 },
    /// More minor units than fit in 64 bits.
    TooLarge,
}

impl fmt::Display for AmountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AmountError::NotANumber => f.write_str("not a decimal amount such as 12.50"),
            AmountError::Negative => f.write_str("negative; a purchase is at least 0"),
            AmountError::TooPrecise { digits } => {
                write!(f, "more than {digits} digits after the decimal point")
            }
            AmountError::TooLarge => f.write_str("too large"),
        }
    }
}

/// `text` (major units, e.g. `29.33`) in minor units of a currency with `digits` digits
/// after the point (2: 2933). Accepts `12`, `12.5`, `12.50`, `.5` and `12.`; trailing
/// zeros past the minor unit are fine (`12.500`), other digits there are not. The caller
/// trims surrounding whitespace.
pub fn parse_minor_units(text: &str, digits: u32) -> Result<i64, AmountError> {
    if let Some(rest) = text.strip_prefix('-') {
        // Tell "-12.50" (a refund) from plain garbage.
        return match parse_minor_units(rest, digits) {
            Ok(_) => Err(AmountError::Negative),
            Err(e) => Err(e),
        };
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return Err(AmountError::NotANumber);
    }
    let keep = fraction.len().min(digits as usize);
    let (kept, rest) = fraction.split_at(keep);
    if rest.bytes().any(|b| b != b'0') {
        return Err(AmountError::TooPrecise { digits });
    }
    // The whole part, then the kept fraction digits, then zeros up to `digits`: the
    // digits of the amount in minor units, read left to right.
    let padding = std::iter::repeat_n(b'0', digits as usize - keep);
    whole
        .bytes()
        .chain(kept.bytes())
        .chain(padding)
        .try_fold(0_i64, |n, b| {
            n.checked_mul(10)?.checked_add(i64::from(b - b'0'))
        })
        .ok_or(AmountError::TooLarge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cents_are_exact() {
        assert_eq!(parse_minor_units("29.33", 2), Ok(2933));
        assert_eq!(parse_minor_units("0.00", 2), Ok(0));
        assert_eq!(parse_minor_units("12.5", 2), Ok(1250));
        assert_eq!(parse_minor_units("12", 2), Ok(1200));
        assert_eq!(parse_minor_units("12.", 2), Ok(1200));
        assert_eq!(parse_minor_units(".5", 2), Ok(50));
        assert_eq!(parse_minor_units("007.01", 2), Ok(701));
        assert_eq!(parse_minor_units("12.500", 2), Ok(1250));
        // A float would make 0.29 * 100 = 28.999999999999996.
        assert_eq!(parse_minor_units("0.29", 2), Ok(29));
        assert_eq!(parse_minor_units("1.005", 3), Ok(1005));
    }

    #[test]
    fn currencies_have_their_own_minor_unit() {
        assert_eq!(minor_digits("USD"), 2);
        assert_eq!(minor_digits("EUR"), 2);
        assert_eq!(minor_digits("JPY"), 0);
        assert_eq!(minor_digits("KWD"), 3);
        assert_eq!(minor_digits("XYZ"), 2);
        assert_eq!(parse_minor_units("1250", minor_digits("JPY")), Ok(1250));
        assert_eq!(parse_minor_units("1250.0", minor_digits("JPY")), Ok(1250));
        assert_eq!(
            parse_minor_units("1250.5", minor_digits("JPY")),
            Err(AmountError::TooPrecise { digits: 0 })
        );
        assert_eq!(parse_minor_units("1.5", minor_digits("KWD")), Ok(1500));
    }

    #[test]
    fn what_is_not_an_amount_says_why() {
        for bad in [
            "", ".", "12,50", "1 000", "12.5x", "x", "1.2.3", "+5", "1e3", "١٢",
        ] {
            assert_eq!(
                parse_minor_units(bad, 2),
                Err(AmountError::NotANumber),
                "{bad:?}"
            );
        }
        assert_eq!(parse_minor_units("-12.50", 2), Err(AmountError::Negative));
        assert_eq!(parse_minor_units("-x", 2), Err(AmountError::NotANumber));
        assert_eq!(
            parse_minor_units("12.345", 2),
            Err(AmountError::TooPrecise { digits: 2 })
        );
        assert_eq!(parse_minor_units("92233720368547758.07", 2), Ok(i64::MAX));
        assert_eq!(
            parse_minor_units("92233720368547758.08", 2),
            Err(AmountError::TooLarge)
        );
    }
}
