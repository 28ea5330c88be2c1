//! Lengths of business time, as configured.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A length of business time in whole seconds. Configured as a number of seconds or as
/// hours, minutes and seconds in that order: `"4h"`, `"30m"`, `"1h30m"`, `"90s"`. There
/// are no days: "2 days" of business time is ambiguous (two opening days, or 48 hours).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BusinessDuration(i64);

impl BusinessDuration {
    pub const fn from_secs(secs: i64) -> Self {
        Self(secs)
    }

    pub const fn secs(self) -> i64 {
        self.0
    }

    /// Parses `"4h"`, `"1h30m"`, `"45s"`, ... (see the type's doc).
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a duration like \"4h\", \"30m\", \"1h30m\" or \"90s\"");
        let mut total: i64 = 0;
        let mut number = String::new();
        // Units must come in the order h, m, s, each at most once.
        let mut next_unit = 0;
        for c in s.trim().chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let (rank, scale) = match c {
                'h' => (1, 3600),
                'm' => (2, 60),
                's' => (3, 1),
                _ => return Err(bad()),
            };
            if number.is_empty() || rank <= next_unit {
                return Err(bad());
            }
            next_unit = rank;
            let n: i64 = number.parse().map_err(|_| bad())?;
            total = n
                .checked_mul(scale)
                .and_then(|x| total.checked_add(x))
                .ok_or_else(bad)?;
            number.clear();
        }
        if next_unit == 0 || !number.is_empty() {
            return Err(bad());
        }
        Ok(Self(total))
    }
}

impl fmt::Display for BusinessDuration {
    /// The configuration spelling: `4h`, `1h30m`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (h, m, s) = (self.0 / 3600, self.0 % 3600 / 60, self.0 % 60);
        if self.0 < 0 {
            return write!(f, "{}s", self.0);
        }
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 || self.0 == 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

impl Serialize for BusinessDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BusinessDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = BusinessDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds or a duration like \"4h\" or \"1h30m\"")
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map(BusinessDuration)
                    .map_err(|_| E::custom(format!("{v} seconds is too long")))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                if v < 0 {
                    return Err(E::custom(format!("{v} seconds is negative")));
                }
                Ok(BusinessDuration(v))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                BusinessDuration::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn durations_read_as_seconds_or_hours_and_minutes() {
        for (text, secs) in [
            ("4h", 4 * HOUR),
            ("30m", 1800),
            ("1h30m", 5400),
            ("90s", 90),
            ("1h0m5s", 3605),
        ] {
            assert_eq!(
                BusinessDuration::parse(text),
                Ok(BusinessDuration::from_secs(secs))
            );
        }
        for bad in ["", "4", "h", "4 hours", "30m1h", "4h4h", "2d", "-4h"] {
            assert!(BusinessDuration::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(BusinessDuration::from_secs(5400).to_string(), "1h30m");
        assert_eq!(BusinessDuration::from_secs(0).to_string(), "0s");
        let d: BusinessDuration = serde_json::from_str("14400").expect("seconds");
        assert_eq!(d, h(4));
        assert_eq!(serde_json::to_string(&d).ok(), Some("\"4h\"".to_owned()));
    }
}
