//! CSV files with a header (RFC 4180: quoted fields may hold commas, quotes and line
//! breaks). The header is matched to the options' column names once, at the start; a
//! missing column stops the import there, before anything is sent, since every line
//! would lack it.
//!
//! A record's line is the line it starts on in the file, blank lines and quoted line
//! breaks counted, CRLF or LF alike (`Records`).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate};
use csv::{ByteRecord, ReaderBuilder, Trim};

use super::{DateOnly, LocalReject, Purchase, Row, problems};
use crate::decimal::{minor_digits, parse_minor_units};
use crate::error::CliError;
use crate::options::{CsvColumns, Pick, TimePick};

/// A column of the header: where it is, and its name as the file spells it (what a
/// refused line's reason names).
#[derive(Debug, Clone)]
struct Column {
    index: usize,
    name: String,
}

/// Where a field's value comes from, once the header is known.
#[derive(Debug, Clone)]
enum Source {
    Column(Column),
    Value(String),
}

/// How the purchase time is read.
#[derive(Debug, Clone, Copy)]
enum TimeKind {
    Timestamp,
    Date,
}

/// The options' columns, found in the header.
#[derive(Debug, Clone)]
struct Resolved {
    customer: Column,
    store: Source,
    employee: Source,
    terminal: Source,
    currency: Source,
    time: (Column, TimeKind),
    amount: Column,
    items: Option<Column>,
}

impl Resolved {
    fn new(header: &[String], c: &CsvColumns) -> Result<Self, String> {
        let time = match &c.time {
            TimePick::Timestamp(name) => (
                required(header, name, "--time-column")?,
                TimeKind::Timestamp,
            ),
            TimePick::Date(name) => (required(header, name, "--date-column")?, TimeKind::Date),
            TimePick::Either { timestamp, date } => {
                match (find(header, timestamp), find(header, date)) {
                    (Some(col), _) => (col, TimeKind::Timestamp),
                    (None, Some(col)) => (col, TimeKind::Date),
                    (None, None) => {
                        return Err(format!(
                            "no column {timestamp:?} (RFC 3339 times) or {date:?} (dates); name the one \
                         it has with --time-column or --date-column ({})",
                            has(header)
                        ));
                    }
                }
            }
        };
        Ok(Self {
            customer: required(header, &c.customer, "--customer-column")?,
            store: pick(header, &c.store, "--store-column", "--store")?,
            employee: pick(header, &c.employee, "--employee-column", "--employee")?,
            terminal: pick(header, &c.terminal, "--terminal-column", "--terminal")?,
            currency: pick(header, &c.currency, "--currency-column", "--currency")?,
            time,
            amount: required(header, &c.amount, "--amount-column")?,
            items: c
                .items
                .as_deref()
                .map(|name| required(header, name, "--items-column"))
                .transpose()?,
        })
    }

    fn purchase(&self, record: &ByteRecord, when: DateOnly) -> Result<Purchase, LocalReject> {
        let value = |source: &Source| match source {
            Source::Column(col) => field(record, col).map(str::to_owned),
            Source::Value(v) => Ok(v.clone()),
        };
        let customer = field(record, &self.customer)?.to_owned();
        let currency = value(&self.currency)?;
        let minor_units = parse_minor_units(field(record, &self.amount)?, minor_digits(&currency))
            .map_err(|e| LocalReject::new(&self.amount.name, e.to_string()))?;
        let (time_column, kind) = &self.time;
        let time = field(record, time_column)?;
        let occurred_at = match kind {
            TimeKind::Timestamp => DateTime::parse_from_rfc3339(time)
                .map(|t| t.to_rfc3339())
                .map_err(|_| LocalReject::new(&time_column.name, problems::TIMESTAMP))?,
            TimeKind::Date => NaiveDate::parse_from_str(time, "%Y-%m-%d")
                .map(|d| when.occurred_at(d))
                .map_err(|_| LocalReject::new(&time_column.name, problems::DATE_ISO))?,
        };
        let item_count = match &self.items {
            None => 1,
            Some(col) => field(record, col)?
                .parse()
                .map_err(|_| LocalReject::new(&col.name, problems::COUNT))?,
        };
        Ok(Purchase {
            customer,
            store: value(&self.store)?,
            terminal: value(&self.terminal)?,
            employee: value(&self.employee)?,
            occurred_at,
            minor_units,
            currency,
            item_count,
        })
    }
}

/// The field of `col` in `record`, as text.
fn field<'r>(record: &'r ByteRecord, col: &Column) -> Result<&'r str, LocalReject> {
    let bytes = record.get(col.index).ok_or_else(|| {
        LocalReject::new(
            &col.name,
            "missing: the line has fewer fields than the header",
        )
    })?;
    std::str::from_utf8(bytes).map_err(|_| LocalReject::new(&col.name, "not UTF-8 text"))
}

fn find(header: &[String], name: &str) -> Option<Column> {
    let name = name.trim();
    header
        .iter()
        .position(|h| h.eq_ignore_ascii_case(name))
        .map(|index| Column {
            index,
            name: header[index].clone(),
        })
}

fn required(header: &[String], name: &str, flag: &str) -> Result<Column, String> {
    find(header, name)
        .ok_or_else(|| format!("no column {name:?}; name it with {flag} ({})", has(header)))
}

fn pick(
    header: &[String],
    pick: &Pick,
    column_flag: &str,
    value_flag: &str,
) -> Result<Source, String> {
    Ok(match pick {
        Pick::Column(name) => Source::Column(find(header, name).ok_or_else(|| {
            format!(
                "no column {name:?}; name it with {column_flag}, or give every line one value \
                 with {value_flag} ({})",
                has(header)
            )
        })?),
        Pick::ColumnOr(name, value) => {
            find(header, name).map_or_else(|| Source::Value(value.clone()), Source::Column)
        }
        Pick::Value(value) => Source::Value(value.clone()),
    })
}

/// "the header has: a, b, c", for the messages above.
fn has(header: &[String]) -> String {
    if header.iter().all(String::is_empty) {
        "the file has no header".into()
    } else {
        format!("the header has: {}", header.join(", "))
    }
}

/// Cuts a CSV file into records, each with the line it starts on: a record ends at a
/// line end outside quotes. The csv crate's own positions cannot say that (a record's
/// position includes the blank lines before it, and the `\n` of the CRLF before it), so
/// the records are found here and only their fields are left to the csv crate.
#[derive(Debug)]
struct Records<R> {
    reader: R,
    /// The last line read, from 1.
    line: u64,
}

/// Where a record's text stands, as far as line ends go: only one inside quotes (a
/// field opened by a quote, not yet closed) belongs to the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    /// At the start of a field: a quote here opens a quoted field.
    FieldStart,
    /// In a field not opened by a quote: quotes are plain characters.
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: the field's end, or the first of `""`.
    QuoteInQuoted,
}

impl Quoting {
    fn after(mut self, bytes: &[u8]) -> Self {
        for &b in bytes {
            self = match (self, b) {
                (Quoting::FieldStart, b'"') => Quoting::Quoted,
                (Quoting::FieldStart | Quoting::Unquoted | Quoting::QuoteInQuoted, b',') => {
                    Quoting::FieldStart
                }
                (Quoting::FieldStart | Quoting::Unquoted, _) => Quoting::Unquoted,
                (Quoting::Quoted, b'"') => Quoting::QuoteInQuoted,
                (Quoting::Quoted, _) => Quoting::Quoted,
                (Quoting::QuoteInQuoted, b'"') => Quoting::Quoted,
                (Quoting::QuoteInQuoted, _) => Quoting::Unquoted,
            };
        }
        self
    }
}

impl<R: BufRead> Records<R> {
    fn new(reader: R) -> Self {
        Self { reader, line: 0 }
    }

    /// The next record's first line and text (line ends included); blank lines between
    /// records are passed over. A quote left open at the end of the file ends the last
    /// record there.
    fn next_record(&mut self) -> std::io::Result<Option<(u64, Vec<u8>)>> {
        let mut record = Vec::new();
        let mut first_line = 0;
        let mut quoting = Quoting::FieldStart;
        loop {
            let from = record.len();
            if self.reader.read_until(b'\n', &mut record)? == 0 {
                return Ok((!record.is_empty()).then_some((first_line, record)));
            }
            self.line += 1;
            if from == 0 {
                if record.iter().all(|&b| b == b'\r' || b == b'\n') {
                    record.clear();
                    continue;
                }
                first_line = self.line;
            }
            quoting = quoting.after(&record[from..]);
            if quoting != Quoting::Quoted {
                return Ok(Some((first_line, record)));
            }
        }
    }
}

/// The rows of a CSV file.
#[derive(Debug)]
pub struct CsvRows {
    records: Records<BufReader<File>>,
    /// Parses one record's fields (trimmed, unquoted).
    fields: ReaderBuilder,
    path: PathBuf,
    columns: Resolved,
    when: DateOnly,
    /// A read failed: the rows end.
    failed: bool,
}

impl CsvRows {
    /// Opens `path` and finds `columns` in its header (its first record).
    pub fn open(path: &Path, columns: &CsvColumns, when: DateOnly) -> Result<Self, CliError> {
        let file = File::open(path).map_err(|source| CliError::ReadInput {
            path: path.to_owned(),
            source,
        })?;
        let mut records = Records::new(BufReader::new(file));
        let mut fields = ReaderBuilder::new();
        // Flexible: a line with fewer fields is refused on its own (its missing column
        // named), not the end of the import.
        fields.has_headers(false).flexible(true).trim(Trim::All);
        let header: Vec<String> = match read(&mut records, &fields, path)? {
            Some((_, _, record)) => record
                .iter()
                .map(|h| {
                    let h = String::from_utf8_lossy(h);
                    h.trim_start_matches('\u{feff}').trim().to_owned()
                })
                .collect(),
            None => Vec::new(),
        };
        let columns = Resolved::new(&header, columns).map_err(|message| CliError::CsvColumns {
            path: path.to_owned(),
            message,
        })?;
        Ok(Self {
            records,
            fields,
            path: path.to_owned(),
            columns,
            when,
            failed: false,
        })
    }
}

/// The next record: its first line, its text (without the last line end) and its
/// fields; `None` at the end of the file.
fn read<R: BufRead>(
    records: &mut Records<R>,
    fields: &ReaderBuilder,
    path: &Path,
) -> Result<Option<(u64, String, ByteRecord)>, CliError> {
    let Some((line, text)) = records
        .next_record()
        .map_err(|source| CliError::ReadInput {
            path: path.to_owned(),
            source,
        })?
    else {
        return Ok(None);
    };
    let mut record = ByteRecord::new();
    // One whole record, from memory: this fails on no input.
    fields
        .from_reader(text.as_slice())
        .read_byte_record(&mut record)
        .map_err(|source| CliError::ReadCsv {
            path: path.to_owned(),
            source,
        })?;
    let text = String::from_utf8_lossy(&text)
        .trim_end_matches(['\r', '\n'])
        .to_owned();
    Ok(Some((line, text, record)))
}

impl Iterator for CsvRows {
    type Item = Result<Row, CliError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match read(&mut self.records, &self.fields, &self.path) {
            Ok(None) => None,
            Ok(Some((line, text, record))) => Some(Ok(Row {
                line,
                text,
                purchase: self.columns.purchase(&record, self.when),
            })),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use chrono::FixedOffset;

    use super::*;

    fn rows(text: &str, columns: &CsvColumns) -> Result<Vec<Row>, CliError> {
        let mut file = tempfile::NamedTempFile::new().expect("a file");
        file.write_all(text.as_bytes()).expect("written");
        let when = DateOnly {
            time_of_day: crate::options::noon(),
            offset: FixedOffset::east_opt(2 * 3600).expect("offset"),
        };
        CsvRows::open(file.path(), columns, when)?.collect()
    }

    #[test]
    fn columns_are_found_by_name_in_any_order_and_case() {
        let rows = rows(
            "Amount,Customer,Store,Timestamp,Currency,extra\n\
             12.50,c-1,s-1,2024-05-01T10:00:00+02:00,EUR,x\n\
             \"1,5\",c-2,s-1,2024-05-01T10:00:00+02:00,EUR,x\n",
            &CsvColumns::default(),
        )
        .expect("rows");
        assert_eq!(
            rows[0].purchase,
            Ok(Purchase {
                customer: "c-1".into(),
                store: "s-1".into(),
                terminal: "import".into(),
                employee: "import".into(),
                occurred_at: "2024-05-01T10:00:00+02:00".into(),
                minor_units: 1250,
                currency: "EUR".into(),
                item_count: 1,
            })
        );
        assert_eq!(rows[0].line, 2);
        assert_eq!(
            rows[1].purchase.clone().map_err(|e| e.to_string()),
            Err("Amount: not a decimal amount such as 12.50".to_owned())
        );
        assert_eq!(
            rows[1].text,
            "\"1,5\",c-2,s-1,2024-05-01T10:00:00+02:00,EUR,x"
        );
    }

    #[test]
    fn dates_get_the_time_of_day_and_fixed_values_fill_what_is_missing() {
        let columns = CsvColumns {
            store: Pick::Value("s-9".into()),
            currency: Pick::Value("JPY".into()),
            terminal: Pick::Column("till".into()),
            items: Some("n".into()),
            ..CsvColumns::default()
        };
        let rows = rows(
            "customer,date,amount,till,n,employee\n\
             c-1,2024-05-01,1250,t-1,3,e-1\n\
             \"c-2\nstill c-2\",2024-02-30,1,t-1,1,e-1\n\
             c-3,2024-05-01,1,t-1,three,e-1\n\
             c-4,2024-05-01\n",
            &columns,
        )
        .expect("rows");
        let p = rows[0].purchase.clone().expect("a purchase");
        assert_eq!(p.occurred_at, "2024-05-01T12:00:00+02:00");
        assert_eq!((p.minor_units, p.item_count), (1250, 3));
        assert_eq!(
            (p.store.as_str(), p.terminal.as_str(), p.employee.as_str()),
            ("s-9", "t-1", "e-1")
        );
        // The quoted line break: the record starts on line 3, the next on line 5.
        let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 3, 5, 6]);
        let reasons: Vec<String> = rows[1..]
            .iter()
            .map(|r| {
                r.purchase
                    .clone()
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(
            reasons,
            [
                "date: not a date YYYY-MM-DD",
                "n: not a whole number of items",
                "amount: missing: the line has fewer fields than the header",
            ]
        );
    }

    #[test]
    fn records_start_on_their_own_line_whatever_the_line_ends_and_quotes() {
        let lines = |text: &str| {
            let mut records = Records::new(text.as_bytes());
            let mut out = Vec::new();
            while let Some((line, record)) = records.next_record().expect("read") {
                out.push((line, String::from_utf8_lossy(&record).into_owned()));
            }
            out
        };
        assert_eq!(
            lines("h\r\na\r\n\r\nb\r\n\"x\r\ny\"\r\nc"),
            [
                (1, "h\r\n".to_owned()),
                (2, "a\r\n".to_owned()),
                (4, "b\r\n".to_owned()),
                (5, "\"x\r\ny\"\r\n".to_owned()),
                (7, "c".to_owned()),
            ]
        );
        // A quote inside a field not opened by one is a plain character; `""` inside a
        // quoted field is a quote, not its end.
        let text = "h\n5\"3,x\nnext\n\"say \"\"hi\"\"\n!\",y\n\n\nlast\n\"open\n";
        let firsts: Vec<u64> = lines(text).iter().map(|(l, _)| *l).collect();
        assert_eq!(firsts, [1, 2, 3, 4, 8, 9]);
    }

    #[test]
    fn a_missing_column_stops_the_import_before_it_starts() {
        let message = |text: &str| match rows(text, &CsvColumns::default()) {
            Err(CliError::CsvColumns { message, .. }) => message,
            other => panic!("expected a column error, got {other:?}"),
        };
        assert!(message("customer,store,amount,currency\n").contains("\"timestamp\""));
        let m = message("customer,timestamp,amount,currency\n");
        assert!(m.contains("--store-column") && m.contains("--store"), "{m}");
        assert!(message("").contains("no header"));
    }
}
