//! The CDNOW transaction files of the buy-till-you-die literature: one purchase per line,
//! columns separated by spaces (lines start with some).
//!
//! - the master file: `customer_id date number_of_cds dollar_value`, after a header line
//!   with those names: ` 00001 19970101  1   11.77`;
//! - the 1/10 sample: `master_id sample_id date number_of_cds dollar_value`, no header:
//!   ` 00004 0001 19970101  2   29.33`.
//!
//! Each line is told apart by its number of columns; the customer is the master id as
//! written (`00004`), so both files name a customer alike. The files end lines with CRLF.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use super::{DateOnly, LocalReject, Purchase, Row, problems};
use crate::decimal::{minor_digits, parse_minor_units};
use crate::error::CliError;
use crate::options::CdnowValues;

/// What one CDNOW line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdnowLine {
    pub customer: String,
    pub date: NaiveDate,
    pub count: u32,
    /// The dollar value in minor units of the import's currency.
    pub minor_units: i64,
}

impl CdnowLine {
    pub fn purchase(self, values: &CdnowValues, when: DateOnly) -> Purchase {
        Purchase {
            customer: self.customer,
            store: values.store.clone(),
            terminal: values.terminal.clone(),
            employee: values.employee.clone(),
            occurred_at: when.occurred_at(self.date),
            minor_units: self.minor_units,
            currency: values.currency.clone(),
            item_count: self.count,
        }
    }
}

/// Reads one line (without its line end) of either layout; `digits` is the number of
/// decimals of the currency's minor unit.
pub fn parse_line(text: &str, digits: u32) -> Result<CdnowLine, LocalReject> {
    let columns: Vec<&str> = text.split_whitespace().collect();
    let (customer_column, [customer, date, count, dollars]) = match columns.as_slice() {
        [c, d, n, v] => ("customer_id", [*c, *d, *n, *v]),
        [c, _sample_id, d, n, v] => ("master_id", [*c, *d, *n, *v]),
        _ => {
            return Err(LocalReject::new(
                "line",
                "expected 4 columns (customer_id date number_of_cds dollar_value) or 5 \
                 (master_id sample_id date number_of_cds dollar_value)",
            ));
        }
    };
    if customer.is_empty() {
        return Err(LocalReject::new(customer_column, "empty"));
    }
    let date = yyyymmdd(date).ok_or_else(|| LocalReject::new("date", problems::DATE_YYYYMMDD))?;
    let count = count
        .parse::<u32>()
        .map_err(|_| LocalReject::new("number_of_cds", problems::COUNT))?;
    let minor_units = parse_minor_units(dollars, digits)
        .map_err(|e| LocalReject::new("dollar_value", e.to_string()))?;
    Ok(CdnowLine {
        customer: customer.to_owned(),
        date,
        count,
        minor_units,
    })
}

/// `19970101` as a date: exactly eight digits of a real day.
fn yyyymmdd(text: &str) -> Option<NaiveDate> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year = text[..4].parse().ok()?;
    let month = text[4..6].parse().ok()?;
    let day = text[6..].parse().ok()?;
    NaiveDate::from_ymd_opt(year, month, day)
}

/// Whether the file's first line is the master file's header: its first column is not a
/// number, as every customer id of the data is.
fn is_header(text: &str) -> bool {
    text.split_whitespace()
        .next()
        .is_some_and(|first| !first.bytes().all(|b| b.is_ascii_digit()))
}

/// The rows of a CDNOW file. Blank lines and the header are passed over; they are not
/// purchases.
pub struct CdnowRows<R> {
    reader: R,
    path: PathBuf,
    values: CdnowValues,
    digits: u32,
    when: DateOnly,
    /// The last line read, from 1.
    line: u64,
    /// Whether a line with text has been seen: only the first may be the header.
    seen_text: bool,
    buf: Vec<u8>,
    /// A read failed: the rows end.
    failed: bool,
}

impl<R> std::fmt::Debug for CdnowRows<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CdnowRows")
            .field("path", &self.path)
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

impl<R: BufRead> CdnowRows<R> {
    pub fn new(reader: R, path: &Path, values: CdnowValues, when: DateOnly) -> Self {
        Self {
            reader,
            path: path.to_owned(),
            digits: minor_digits(&values.currency),
            values,
            when,
            line: 0,
            seen_text: false,
            buf: Vec::new(),
            failed: false,
        }
    }
}

impl<R: BufRead> Iterator for CdnowRows<R> {
    type Item = Result<Row, CliError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.failed {
            self.buf.clear();
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => return None,
                Ok(_) => self.line += 1,
                Err(source) => {
                    self.failed = true;
                    return Some(Err(CliError::ReadInput {
                        path: self.path.clone(),
                        source,
                    }));
                }
            }
            let (text, utf8) = match std::str::from_utf8(&self.buf) {
                Ok(text) => (text.trim().to_owned(), true),
                Err(_) => (String::from_utf8_lossy(&self.buf).trim().to_owned(), false),
            };
            if text.is_empty() {
                continue;
            }
            let first = !std::mem::replace(&mut self.seen_text, true);
            if first && utf8 && is_header(&text) {
                continue;
            }
            let purchase = if utf8 {
                parse_line(&text, self.digits).map(|l| l.purchase(&self.values, self.when))
            } else {
                Err(LocalReject::new("line", "not UTF-8 text"))
            };
            return Some(Ok(Row {
                line: self.line,
                text,
                purchase,
            }));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use chrono::FixedOffset;

    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("a date")
    }

    #[test]
    fn both_layouts_read_alike() {
        let master = parse_line(" 00001 19970101  1   11.77", 2).expect("master line");
        assert_eq!(
            master,
            CdnowLine {
                customer: "00001".into(),
                date: date(1997, 1, 1),
                count: 1,
                minor_units: 1177,
            }
        );
        let sample = parse_line(" 00004 0001 19970101  2   29.33", 2).expect("sample line");
        assert_eq!(sample.customer, "00004");
        assert_eq!(sample.count, 2);
        assert_eq!(sample.minor_units, 2933);
        assert_eq!(
            parse_line("00455 19970102 1 0.00", 2).map(|l| l.minor_units),
            Ok(0)
        );
    }

    #[test]
    fn a_bad_line_names_its_column() {
        let column = |text: &str| parse_line(text, 2).map_err(|e| e.column);
        assert_eq!(column("00001 19970101 1").err().as_deref(), Some("line"));
        assert_eq!(
            column("00001 19971301 1 11.77").err().as_deref(),
            Some("date")
        );
        assert_eq!(
            column("00001 1997-01-01 1 11.77").err().as_deref(),
            Some("date")
        );
        assert_eq!(
            column("00001 19970101 one 11.77").err().as_deref(),
            Some("number_of_cds")
        );
        assert_eq!(
            column("00001 19970101 1 11,77").err().as_deref(),
            Some("dollar_value")
        );
        assert_eq!(
            column("00001 19970101 1 -1.00").err().as_deref(),
            Some("dollar_value")
        );
        assert_eq!(
            column("00001 19970101 1 1.777").err().as_deref(),
            Some("dollar_value")
        );
    }

    #[test]
    fn the_header_and_blank_lines_are_not_rows() {
        let file = " customer_id  date number_of_cds  dollar_value\r\n 00001 19970101  1   11.77\r\n\r\n 00002 19970112  1   x\r\n 00002 19970112  5   77.00";
        let when = DateOnly {
            time_of_day: crate::options::noon(),
            offset: FixedOffset::east_opt(3600).expect("offset"),
        };
        let rows: Vec<Row> = CdnowRows::new(
            file.as_bytes(),
            Path::new("master.txt"),
            CdnowValues::default(),
            when,
        )
        .collect::<Result<_, _>>()
        .expect("rows");
        let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 4, 5]);
        let first = rows[0].purchase.clone().expect("a purchase");
        assert_eq!(
            first,
            Purchase {
                customer: "00001".into(),
                store: "cdnow".into(),
                terminal: "import".into(),
                employee: "import".into(),
                occurred_at: "1997-01-01T12:00:00+01:00".into(),
                minor_units: 1177,
                currency: "USD".into(),
                item_count: 1,
            }
        );
        assert_eq!(
            rows[1].purchase.clone().map_err(|e| e.column),
            Err("dollar_value".to_owned())
        );
        assert_eq!(rows[1].text, "00002 19970112  1   x");
    }

    #[test]
    fn a_first_line_of_data_is_not_taken_for_a_header() {
        let file = " 00004 0001 19970101  2   29.33\n 00004 0001 19970118  2   29.73\n";
        let when = DateOnly {
            time_of_day: crate::options::noon(),
            offset: FixedOffset::east_opt(0).expect("utc"),
        };
        let rows: Vec<Row> = CdnowRows::new(
            file.as_bytes(),
            Path::new("sample.txt"),
            CdnowValues::default(),
            when,
        )
        .collect::<Result<_, _>>()
        .expect("rows");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line, 1);
    }
}
