//! Reading the file of history: each record becomes a [`Row`], a purchase with the line
//! it was on, or a line refused here with the column at fault. A bad line never stops the
//! reading: only an unreadable file does.
//!
//! Rows come out in file order and their line numbers only grow, which is what lets the
//! state file say "every line up to N is done" with one number.

use std::fmt;
use std::path::Path;

use chrono::{FixedOffset, NaiveDate, NaiveTime, SecondsFormat};
use churnguard_proto::ingest::v1 as pb;

use crate::error::CliError;
use crate::options::{Format, ImportOptions};

pub mod cdnow;
pub mod csv;

/// One record of the file.
#[derive(Debug, Clone)]
pub struct Row {
    /// The line the record starts on, from 1: its swipe id is made of it.
    pub line: u64,
    /// The record as written (without its line end), quoted in the report if it is
    /// refused.
    pub text: String,
    /// The purchase, or why the line cannot be one.
    pub purchase: Result<Purchase, LocalReject>,
}

/// A purchase read from the file: all of a swipe but its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase {
    pub customer: String,
    pub store: String,
    pub terminal: String,
    pub employee: String,
    /// RFC 3339 with the store's offset.
    pub occurred_at: String,
    pub minor_units: i64,
    pub currency: String,
    pub item_count: u32,
}

impl Purchase {
    /// The swipe, with its id.
    pub fn into_swipe(self, swipe_id: String) -> pb::Swipe {
        pb::Swipe {
            swipe_id,
            customer: Some(pb::swipe::Customer::CustomerId(self.customer)),
            store_id: self.store,
            terminal_id: self.terminal,
            employee_id: self.employee,
            occurred_at: self.occurred_at,
            amount: Some(pb::Amount {
                minor_units: self.minor_units,
                currency: self.currency,
            }),
            item_count: self.item_count,
        }
    }
}

/// Why a line was refused before it was sent: the column and what is wrong with it. The
/// value itself is not repeated here (the report quotes the line), so lines refused for
/// the same reason count together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReject {
    pub column: String,
    pub problem: String,
}

impl LocalReject {
    pub fn new(column: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            column: column.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for LocalReject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.column, self.problem)
    }
}

/// The rows of a file, in order; an `Err` (the file became unreadable) ends them.
pub type Rows = Box<dyn Iterator<Item = Result<Row, CliError>> + Send>;

/// Opens the import's file in its format. A CSV file's header is read and its columns
/// resolved here, so a missing column stops the import before anything is sent.
pub fn open(opts: &ImportOptions) -> Result<Rows, CliError> {
    let path = opts.file.as_path();
    let when = DateOnly {
        time_of_day: opts.time_of_day,
        offset: opts.utc_offset,
    };
    Ok(match &opts.format {
        Format::Cdnow(values) => {
            let file = open_file(path)?;
            Box::new(cdnow::CdnowRows::new(
                std::io::BufReader::new(file),
                path,
                values.clone(),
                when,
            ))
        }
        Format::Csv(columns) => Box::new(csv::CsvRows::open(path, columns, when)?),
    })
}

fn open_file(path: &Path) -> Result<std::fs::File, CliError> {
    std::fs::File::open(path).map_err(|source| CliError::ReadInput {
        path: path.to_owned(),
        source,
    })
}

/// How a purchase known by its date alone gets its time: `--time-of-day` at
/// `--utc-offset`.
#[derive(Debug, Clone, Copy)]
pub struct DateOnly {
    pub time_of_day: NaiveTime,
    pub offset: FixedOffset,
}

impl DateOnly {
    /// `date` at the time of day, with the offset, as RFC 3339:
    /// `1997-01-01T12:00:00+00:00`.
    pub fn occurred_at(&self, date: NaiveDate) -> String {
        // A fixed offset maps every local time to exactly one instant.
        date.and_time(self.time_of_day)
            .and_local_timezone(self.offset)
            .single()
            .map_or_else(String::new, |t| {
                t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
            })
    }
}

/// Every CSV field and CDNOW column is trimmed; these say why a value is refused.
pub(crate) mod problems {
    pub const DATE_YYYYMMDD: &str = "not a date YYYYMMDD";
    pub const DATE_ISO: &str = "not a date YYYY-MM-DD";
    pub const TIMESTAMP: &str = "not an RFC 3339 time such as 2026-11-22T10:15:00+01:00";
    pub const COUNT: &str = "not a whole number of items";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_becomes_a_time_at_the_stores_offset() {
        let when = DateOnly {
            time_of_day: crate::options::noon(),
            offset: FixedOffset::east_opt(0).expect("utc"),
        };
        let date = NaiveDate::from_ymd_opt(1997, 1, 1).expect("date");
        assert_eq!(when.occurred_at(date), "1997-01-01T12:00:00+00:00");
        let when = DateOnly {
            time_of_day: NaiveTime::from_hms_opt(9, 30, 15).expect("time"),
            offset: FixedOffset::west_opt(5 * 3600).expect("offset"),
        };
        assert_eq!(when.occurred_at(date), "1997-01-01T09:30:15-05:00");
    }
}
