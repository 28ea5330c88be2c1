//! What an import is asked to do, resolved from the command line ([`crate::args`]) or
//! built by a test: the file and its format, where each swipe field comes from, where
//! the state is kept, and how to reach purchase-ingest.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{FixedOffset, NaiveTime, Offset as _, Utc};

use crate::error::CliError;

/// The value of `terminal_id` and `employee_id` when the file names none.
pub const IMPORT: &str = "import";
/// purchase-ingest's port under `make run` (and its default `listen_addr`).
pub const DEFAULT_INGEST: &str = "http://127.0.0.1:50051";
/// churn-scoring's query API where `make run` serves it.
pub const DEFAULT_SCORING: &str = "http://127.0.0.1:50052";
/// The longest `--source` (and file-stem source): `imp.<source>.<line>` must stay within
/// the 128 characters of a swipe id, with room for a 20-digit line number.
pub const MAX_SOURCE_LEN: usize = 100;

/// 12:00:00, the default `--time-of-day`: a purchase known by its date alone is put in
/// the middle of its day, so an offset of up to 12 hours keeps it on that date.
pub fn noon() -> NaiveTime {
    NaiveTime::from_hms_opt(12, 0, 0).unwrap_or_default()
}

/// One `churnguard import`.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The file of history.
    pub file: PathBuf,
    pub format: Format,
    /// The middle of every swipe id, `imp.<source>.<line>`; `None`: the file's stem,
    /// sanitized ([`source_from_stem`]).
    pub source: Option<String>,
    /// Where the resume state is kept; `None`: `<FILE>.import-state`.
    pub state: Option<PathBuf>,
    /// The time of day of a purchase known by its date only.
    pub time_of_day: NaiveTime,
    /// The stores' offset from UTC, for purchases known by their date only.
    pub utc_offset: FixedOffset,
    pub connection: Connection,
    /// Swipes per StreamSwipes batch: at most purchase-ingest's
    /// `limits.max_batch_swipes` (1,000 by default).
    pub batch_size: usize,
    /// Batches sent and not yet answered, at most.
    pub in_flight: usize,
    /// How often a swipe rejected with a retriable code (UNAVAILABLE, ...), or a stream
    /// that failed, is tried again before giving up.
    pub retries: u32,
    /// Stop after sending this many batches (and having their answers): an import in
    /// parts, resumed by running it again.
    pub max_batches: Option<u64>,
}

impl ImportOptions {
    /// The defaults of the command line for `file` in `format`, sent to `ingest`.
    pub fn new(file: impl Into<PathBuf>, format: Format, ingest: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            format,
            source: None,
            state: None,
            time_of_day: noon(),
            utc_offset: Utc.fix(),
            connection: Connection::new(ingest),
            batch_size: 500,
            in_flight: 4,
            retries: 5,
            max_batches: None,
        }
    }

    /// The source named in swipe ids: `--source`, checked, or the file's stem.
    pub fn source_name(&self) -> Result<String, CliError> {
        match &self.source {
            Some(source) => check_source(source).map(|()| source.clone()),
            None => source_from_stem(&self.file).ok_or_else(|| {
                CliError::Usage(format!(
                    "{} has no name to make swipe ids of; give one with --source",
                    self.file.display()
                ))
            }),
        }
    }

    /// Where the state is kept: `--state`, else `<FILE>.import-state` beside the file.
    pub fn state_path(&self) -> PathBuf {
        self.state.clone().unwrap_or_else(|| {
            let mut name = self.file.as_os_str().to_owned();
            name.push(".import-state");
            PathBuf::from(name)
        })
    }
}

/// The file's layout, and where each swipe field comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per import, never in a collection: boxing would only cost readability"
)]
pub enum Format {
    /// The CDNOW transaction files: `customer YYYYMMDD count dollars`, whitespace
    /// separated, or the sample's `master_id sample_id YYYYMMDD count dollars`.
    Cdnow(CdnowValues),
    /// A CSV file with a header.
    Csv(CsvColumns),
}

/// What a CDNOW line does not say: the same for every line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdnowValues {
    pub store: String,
    pub terminal: String,
    pub employee: String,
    /// The amounts' currency (the CDNOW amounts are dollars).
    pub currency: String,
}

impl Default for CdnowValues {
    fn default() -> Self {
        Self {
            store: "cdnow".into(),
            terminal: IMPORT.into(),
            employee: IMPORT.into(),
            currency: "USD".into(),
        }
    }
}

/// Which CSV column holds each swipe field. Column names are matched to the header
/// ignoring ASCII case and surrounding spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvColumns {
    pub customer: String,
    pub store: Pick,
    pub employee: Pick,
    pub terminal: Pick,
    pub time: TimePick,
    /// Decimal major units, e.g. `12.50`.
    pub amount: String,
    pub currency: Pick,
    /// The item count's column; `None`: 1 item per purchase.
    pub items: Option<String>,
}

impl Default for CsvColumns {
    /// The command line's defaults: columns `customer`, `store`, `employee` (else
    /// `import`), `timestamp` or `date`, `amount`, `currency`; terminal `import`.
    fn default() -> Self {
        Self {
            customer: "customer".into(),
            store: Pick::Column("store".into()),
            employee: Pick::ColumnOr("employee".into(), IMPORT.into()),
            terminal: Pick::Value(IMPORT.into()),
            time: TimePick::Either {
                timestamp: "timestamp".into(),
                date: "date".into(),
            },
            amount: "amount".into(),
            currency: Pick::Column("currency".into()),
            items: None,
        }
    }
}

/// Where one swipe field comes from in a CSV file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// This column, which the header must have.
    Column(String),
    /// This column if the header has it, else this value on every line.
    ColumnOr(String, String),
    /// This value on every line.
    Value(String),
}

/// Where the purchase time comes from in a CSV file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimePick {
    /// An RFC 3339 time with its offset, e.g. `2026-11-22T10:15:00+01:00`.
    Timestamp(String),
    /// A date, `YYYY-MM-DD`, at `--time-of-day` with `--utc-offset`.
    Date(String),
    /// `timestamp` if the header has that column, else `date`.
    Either { timestamp: String, date: String },
}

/// How to reach purchase-ingest.
#[derive(Debug, Clone)]
pub struct Connection {
    /// `http://host:port`, or `https://` with [`Connection::ca_cert`].
    pub url: String,
    /// Sent as `authorization: Bearer <token>` on the stream.
    pub token: Option<Token>,
    /// The CA certificate (PEM) that signed purchase-ingest's, for `https://`.
    pub ca_cert: Option<PathBuf>,
    /// How long one batch may wait for its answer before the stream counts as failed
    /// (and is opened again, resending what was not answered).
    pub answer_timeout: Duration,
}

impl Connection {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: None,
            ca_cert: None,
            answer_timeout: Duration::from_secs(60),
        }
    }
}

/// A bearer token: never printed (`Debug` says `<redacted>`).
#[derive(Clone)]
pub struct Token(String);

impl Token {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The characters a source may have: those of a swipe id but `:`, so that `imp.`, the
/// source and the line number stay apart when read back.
fn source_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Checks a `--source`: 1 to [`MAX_SOURCE_LEN`] characters of `[A-Za-z0-9._-]`.
pub fn check_source(source: &str) -> Result<(), CliError> {
    if source.is_empty() || source.len() > MAX_SOURCE_LEN || !source.chars().all(source_char) {
        return Err(CliError::Usage(format!(
            "--source {source:?}: must be 1 to {MAX_SOURCE_LEN} characters of letters, digits and . _ -"
        )));
    }
    Ok(())
}

/// The file's stem (`CDNOW_master` for `CDNOW_master.txt`) with every character a swipe
/// id cannot hold replaced by `-`, cut to [`MAX_SOURCE_LEN`]; `None` if nothing is left.
pub fn source_from_stem(file: &Path) -> Option<String> {
    let stem = file.file_stem()?.to_string_lossy();
    let source: String = stem
        .chars()
        .map(|c| if source_char(c) { c } else { '-' })
        .take(MAX_SOURCE_LEN)
        .collect();
    (!source.is_empty() && source.chars().any(|c| c.is_ascii_alphanumeric())).then_some(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_is_the_file_stem_made_safe_for_swipe_ids() {
        let s = |p: &str| source_from_stem(Path::new(p));
        assert_eq!(s("/data/CDNOW_master.txt").as_deref(), Some("CDNOW_master"));
        assert_eq!(s("sales 2024 (Q1).csv").as_deref(), Some("sales-2024--Q1-"));
        assert_eq!(s("kassen-ü.csv").as_deref(), Some("kassen--"));
        assert_eq!(s("---.csv"), None);
        assert_eq!(
            s("x".repeat(300).as_str()).map(|s| s.len()),
            Some(MAX_SOURCE_LEN)
        );
        assert!(check_source("CDNOW_master").is_ok());
        assert!(check_source("a:b").is_err());
        assert!(check_source("").is_err());
    }

    #[test]
    fn the_state_lives_beside_the_file_unless_named() {
        let mut o = ImportOptions::new(
            "/data/sales.csv",
            Format::Csv(CsvColumns::default()),
            DEFAULT_INGEST,
        );
        assert_eq!(
            o.state_path(),
            PathBuf::from("/data/sales.csv.import-state")
        );
        o.state = Some("/tmp/s".into());
        assert_eq!(o.state_path(), PathBuf::from("/tmp/s"));
    }

    #[test]
    fn tokens_never_print() {
        let mut c = Connection::new(DEFAULT_INGEST);
        c.token = Some(Token::new("s3cr3t"));
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}
