//! Times and days as the proto writes them: RFC 3339 times, `YYYY-MM-DD` days.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use churnguard_domain::{FieldViolation, quoted};

/// A required time of a request, RFC 3339 with an offset; a violation of `field` if it is
/// missing or not such a time.
pub fn timestamp(field: &str, value: &str) -> Result<DateTime<Utc>, FieldViolation> {
    if value.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            FieldViolation::new(
                field,
                "must be an RFC 3339 time with an offset, e.g. 2026-11-22T10:15:00+01:00",
            )
        })
}

/// A time as responses write it: RFC 3339 in UTC (`Z`), with as many fractional digits as
/// it has.
pub fn timestamp_out(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A day written exactly `YYYY-MM-DD` (four-digit year, two-digit month and day), as the
/// proto says: `2026-9-30` or `+2026-09-30` are refused, not read leniently.
pub fn day(field: &str, value: &str) -> Result<NaiveDate, FieldViolation> {
    if value.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    let shaped = value.len() == 10
        && value.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    shaped
        .then(|| NaiveDate::parse_from_str(value, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| {
            FieldViolation::new(
                field,
                format!(
                    "must be a day as YYYY-MM-DD, e.g. 2026-11-23, got {}",
                    quoted(value)
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_exactly_yyyy_mm_dd() {
        assert_eq!(
            day("d", "2026-11-23").ok(),
            NaiveDate::from_ymd_opt(2026, 11, 23)
        );
        for bad in [
            "1997-9-30",
            "1997-09-3",
            " 2026-11-23",
            "2026/11/23",
            "+2026-11-23",
            "2026-13-01",
            "２０２６-11-23",
        ] {
            assert!(day("d", bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            day("d", "").map_err(|v| v.description),
            Err("is required".to_owned())
        );
    }

    #[test]
    fn times_are_read_with_their_offset_and_written_in_utc() {
        let t = timestamp("at", "2026-11-22T10:15:00+01:00").expect("a time");
        assert_eq!(timestamp_out(t), "2026-11-22T09:15:00Z");
        assert_eq!(
            timestamp("at", "").map_err(|v| v.description),
            Err("is required".to_owned())
        );
        assert_eq!(
            timestamp("occurred_at", "yesterday").map_err(|v| v.field),
            Err("occurred_at".to_owned())
        );
    }
}
