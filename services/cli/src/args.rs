//! The command line: `churnguard import FILE --format cdnow|csv [...]`, parsed by clap
//! and turned into [`ImportOptions`].

use std::path::PathBuf;
use std::time::Duration;

use chrono::{FixedOffset, NaiveDate, NaiveTime};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::CliError;
use crate::model_report::ReportOptions;
use crate::options::{
    CdnowValues, Connection, CsvColumns, DEFAULT_INGEST, DEFAULT_SCORING, Format, IMPORT,
    ImportOptions, Pick, TimePick, Token,
};

/// churnguard's operator commands, run against a deployment's public APIs.
#[derive(Debug, Parser)]
#[command(name = "churnguard", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load historical transactions into a running deployment, through purchase-ingest.
    ///
    /// The lines are sent as a store gateway sends swipes (StreamSwipes), marked
    /// historical: the deployment must allow imports (limits.allow_import), and where it
    /// asks for identities, take a service token. Resumable: the state file records how
    /// far it got, and running the same command again goes on from there. Each line's
    /// swipe id is imp.SOURCE.LINE, so a line sent twice counts once.
    ///
    /// Exit status: 0 all lines imported; 3 some lines rejected or failed, or stopped
    /// early (see the report); 1 the import could not go on; 2 bad usage.
    Import(Box<ImportArgs>),
    /// Ask churn-scoring to refit its models now (after an import, say) and wait until
    /// GetModel shows the new version; prints it.
    ///
    /// The refit runs on the instance that refits on schedule, once every partition of
    /// the log is applied. Exit status: 0 the new model is stored; 1 it was refused or not
    /// shown in time; 2 bad usage.
    Refit(RefitArgs),
    /// Print what churn-scoring knows: the current model and its log-likelihood,
    /// defection by store, the customers most at risk, and with --calibration-end the
    /// holdout check of Fader, Hardie & Lee (2005) on the purchases log.
    ///
    /// The stores are those named with --stores or, without it, every store churn-scoring
    /// lists (ListStores: the stores with home customers that the token may read; the
    /// text says how many). Defection counts the defections decided in the period
    /// (--from, default the 365 days up to the model's as_of, its last day of data). The
    /// at-risk list merges the stores' lists by value at risk. The holdout check fits
    /// BG/NBD on the purchases up to --calibration-end and sets its predictions for the
    /// holdout period against what the customers did: in total, by calibration repeat
    /// purchases (0-6, 7+) and as cumulative repeat purchases week by week; --plot draws
    /// both figures as one SVG.
    ///
    /// Exit status: 0 printed; 1 a call failed or the plot could not be written; 2 bad
    /// usage.
    Report(ReportArgs),
}

/// Where churn-scoring is and who asks.
#[derive(Debug, Args)]
pub struct ScoringArgs {
    /// churn-scoring's gRPC address (http://, or https:// with --ca-cert).
    #[arg(long, value_name = "URL", default_value = DEFAULT_SCORING)]
    pub scoring: String,
    /// A bearer token, where the deployment asks for identities: refit and the holdout
    /// check need one that reads every store (owner, analyst, service); a manager's
    /// report covers the manager's stores.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "CHURNGUARD_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// The CA certificate (PEM) that signed churn-scoring's, for https://.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
}

impl ScoringArgs {
    /// The connection to churn-scoring.
    pub fn connection(&self) -> Connection {
        let mut connection = Connection::new(self.scoring.clone());
        connection.token = self.token.clone().filter(|t| !t.is_empty()).map(Token::new);
        connection.ca_cert = self.ca_cert.clone();
        connection
    }
}

#[derive(Debug, Args)]
pub struct RefitArgs {
    #[command(flatten)]
    pub scoring: ScoringArgs,
    /// How long to wait for the new model, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub wait: u64,
}

impl RefitArgs {
    /// The connection to churn-scoring.
    pub fn connection(&self) -> Connection {
        self.scoring.connection()
    }
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub scoring: ScoringArgs,
    /// The stores to report on, comma-separated [default: every store ListStores lists].
    #[arg(long, value_name = "ID,...", value_delimiter = ',')]
    pub stores: Vec<String>,
    /// At-risk customers to list (1-1000).
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub top: u32,
    /// The first day of the defection period, YYYY-MM-DD [default: 364 days before the
    /// model's as_of].
    #[arg(long, value_name = "DATE", value_parser = date)]
    pub from: Option<NaiveDate>,
    /// Run the holdout check with the calibration period ending on DATE (YYYY-MM-DD).
    #[arg(long, value_name = "DATE", value_parser = date)]
    pub calibration_end: Option<NaiveDate>,
    /// The last day of the holdout period [default: the last purchase day in the log].
    #[arg(long, value_name = "DATE", value_parser = date, requires = "calibration_end")]
    pub holdout_end: Option<NaiveDate>,
    /// Draw the holdout check's two figures into FILE.svg (SVG only).
    #[arg(long, value_name = "FILE.svg", requires = "calibration_end")]
    pub plot: Option<PathBuf>,
}

impl ReportArgs {
    /// What to report on.
    pub fn options(&self) -> ReportOptions {
        let mut o = ReportOptions::new(self.scoring.scoring.clone(), self.stores.clone());
        o.connection = self.scoring.connection();
        o.top = self.top;
        o.from = self.from;
        o.calibration_end = self.calibration_end;
        o.holdout_end = self.holdout_end;
        o
    }
}

fn date(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .filter(|_| text.len() == 10)
        .ok_or_else(|| "expected a date as YYYY-MM-DD, e.g. 1997-09-30".into())
}

/// The file's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// The CDNOW files: `customer YYYYMMDD count dollars` (the master file, with its
    /// header) or `master_id sample_id YYYYMMDD count dollars` (the sample).
    Cdnow,
    /// CSV with a header; columns named by the --*-column options.
    Csv,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file of history.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The file's layout.
    #[arg(long, value_enum)]
    pub format: FormatArg,
    /// The name in the swipe ids, imp.SOURCE.LINE (1-100 of A-Z a-z 0-9 . _ -)
    /// [default: the file's name without extension, made fit].
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    /// Where the resume state is kept [default: FILE.import-state, beside FILE].
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,

    /// The store of every line [cdnow default: cdnow; csv: from --store-column].
    #[arg(long, value_name = "ID", conflicts_with = "store_column")]
    pub store: Option<String>,
    /// The terminal of every line [default: import].
    #[arg(long, value_name = "ID", conflicts_with = "terminal_column")]
    pub terminal: Option<String>,
    /// The employee of every line [default: import; csv: the employee column if any].
    #[arg(long, value_name = "ID", conflicts_with = "employee_column")]
    pub employee: Option<String>,
    /// The currency of every line, ISO 4217 [cdnow default: USD; csv: from
    /// --currency-column].
    #[arg(long, value_name = "CODE", conflicts_with = "currency_column")]
    pub currency: Option<String>,
    /// The time of a purchase known by its date alone.
    #[arg(long, value_name = "HH:MM[:SS]", default_value = "12:00:00", value_parser = time_of_day)]
    pub time_of_day: NaiveTime,
    /// The stores' offset from UTC, for purchases known by their date alone.
    #[arg(long, value_name = "+HH:MM", default_value = "+00:00", value_parser = utc_offset,
          allow_hyphen_values = true)]
    pub utc_offset: FixedOffset,

    /// The customer column [default: customer].
    #[arg(long, value_name = "NAME", help_heading = "CSV columns")]
    pub customer_column: Option<String>,
    /// The store column [default: store].
    #[arg(long, value_name = "NAME", help_heading = "CSV columns")]
    pub store_column: Option<String>,
    /// The employee column [default: employee, if the header has it].
    #[arg(long, value_name = "NAME", help_heading = "CSV columns")]
    pub employee_column: Option<String>,
    /// The terminal column [default: none; every line's terminal is --terminal].
    #[arg(long, value_name = "NAME", help_heading = "CSV columns")]
    pub terminal_column: Option<String>,
    /// The column of RFC 3339 times, e.g. 2026-11-22T10:15:00+01:00 [default:
    /// timestamp, if the header has it].
    #[arg(
        long,
        value_name = "NAME",
        help_heading = "CSV columns",
        conflicts_with = "date_column"
    )]
    pub time_column: Option<String>,
    /// The column of dates, YYYY-MM-DD, at --time-of-day and --utc-offset [default: date,
    /// if the header has no timestamp column].
    #[arg(long, value_name = "NAME", help_heading = "CSV columns")]
    pub date_column: Option<String>,
    /// The amount column, in major units with a decimal point, e.g. 12.50 [default:
    /// amount].
    #[arg(long, value_name = "NAME", help_heading = "CSV columns")]
    pub amount_column: Option<String>,
    /// The currency column [default: currency].
    #[arg(long, value_name = "NAME", help_heading = "CSV columns")]
    pub currency_column: Option<String>,
    /// The item count column [default: none; 1 item per line].
    #[arg(long, value_name = "NAME", help_heading = "CSV columns")]
    pub items_column: Option<String>,

    /// purchase-ingest's gRPC address (http://, or https:// with --ca-cert).
    #[arg(long, value_name = "URL", default_value = DEFAULT_INGEST, help_heading = "Connection")]
    pub ingest: String,
    /// A bearer token (a service token where the deployment asks for identities). Prefer
    /// the environment variable: a command line is visible to other users.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "CHURNGUARD_TOKEN",
        hide_env_values = true,
        help_heading = "Connection"
    )]
    pub token: Option<String>,
    /// The CA certificate (PEM) that signed purchase-ingest's, for https://.
    #[arg(long, value_name = "FILE", help_heading = "Connection")]
    pub ca_cert: Option<PathBuf>,
    /// Swipes per batch; at most purchase-ingest's limits.max_batch_swipes.
    #[arg(long, value_name = "N", default_value_t = 500, help_heading = "Connection",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
    /// Batches sent ahead of their answers, at most.
    #[arg(long, value_name = "N", default_value_t = 4, help_heading = "Connection",
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub in_flight: u32,
    /// How often a swipe that met a retriable error, or a broken stream, is tried again.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 5,
        help_heading = "Connection"
    )]
    pub retries: u32,
    /// Seconds a batch may wait for its answer before the stream is opened again.
    #[arg(long, value_name = "SECS", default_value_t = 60, help_heading = "Connection",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,

    /// Stop after this many batches (run again to go on): an import in parts.
    #[arg(long, value_name = "N")]
    pub max_batches: Option<u64>,
    /// No progress bar (there is none either when stderr is not a terminal).
    #[arg(long, short)]
    pub quiet: bool,
}

impl ImportArgs {
    /// The import these arguments ask for.
    pub fn into_options(self) -> Result<ImportOptions, CliError> {
        let format = match self.format {
            FormatArg::Cdnow => {
                let csv_only = [
                    ("--customer-column", &self.customer_column),
                    ("--store-column", &self.store_column),
                    ("--employee-column", &self.employee_column),
                    ("--terminal-column", &self.terminal_column),
                    ("--time-column", &self.time_column),
                    ("--date-column", &self.date_column),
                    ("--amount-column", &self.amount_column),
                    ("--currency-column", &self.currency_column),
                    ("--items-column", &self.items_column),
                ];
                if let Some((flag, _)) = csv_only.iter().find(|(_, v)| v.is_some()) {
                    return Err(CliError::Usage(format!(
                        "{flag} is for --format csv; a CDNOW file has fixed columns"
                    )));
                }
                let d = CdnowValues::default();
                Format::Cdnow(CdnowValues {
                    store: self.store.unwrap_or(d.store),
                    terminal: self.terminal.unwrap_or(d.terminal),
                    employee: self.employee.unwrap_or(d.employee),
                    currency: self.currency.unwrap_or(d.currency),
                })
            }
            FormatArg::Csv => Format::Csv(self.csv_columns()),
        };
        let mut connection = Connection::new(self.ingest);
        connection.token = self.token.filter(|t| !t.is_empty()).map(Token::new);
        connection.ca_cert = self.ca_cert;
        connection.answer_timeout = Duration::from_secs(self.timeout);
        let mut opts = ImportOptions::new(self.file, format, String::new());
        opts.connection = connection;
        opts.source = self.source;
        opts.state = self.state;
        opts.time_of_day = self.time_of_day;
        opts.utc_offset = self.utc_offset;
        opts.batch_size = self.batch_size as usize;
        opts.in_flight = self.in_flight as usize;
        opts.retries = self.retries;
        opts.max_batches = self.max_batches;
        Ok(opts)
    }

    /// A value given for every line wins over a column; a column named wins over the
    /// defaults.
    fn csv_columns(&self) -> CsvColumns {
        let d = CsvColumns::default();
        let column_or = |value: &Option<String>, column: &Option<String>, default: Pick| match (
            value, column,
        ) {
            (Some(v), _) => Pick::Value(v.clone()),
            (None, Some(c)) => Pick::Column(c.clone()),
            (None, None) => default,
        };
        CsvColumns {
            customer: self.customer_column.clone().unwrap_or(d.customer),
            store: column_or(&self.store, &self.store_column, d.store),
            employee: column_or(&self.employee, &self.employee_column, d.employee),
            terminal: column_or(
                &self.terminal,
                &self.terminal_column,
                Pick::Value(IMPORT.into()),
            ),
            time: match (&self.time_column, &self.date_column) {
                (Some(t), _) => TimePick::Timestamp(t.clone()),
                (None, Some(d)) => TimePick::Date(d.clone()),
                (None, None) => d.time,
            },
            amount: self.amount_column.clone().unwrap_or(d.amount),
            currency: column_or(&self.currency, &self.currency_column, d.currency),
            items: self.items_column.clone(),
        }
    }
}

fn time_of_day(text: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(text, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M"))
        .map_err(|_| "expected HH:MM or HH:MM:SS, e.g. 12:00:00".into())
}

fn utc_offset(text: &str) -> Result<FixedOffset, String> {
    let bad = || "expected +HH:MM or -HH:MM, e.g. +01:00".to_owned();
    if text == "Z" {
        return FixedOffset::east_opt(0).ok_or_else(bad);
    }
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err(bad()),
    };
    let (hours, minutes) = rest.split_once(':').ok_or_else(bad)?;
    if hours.len() != 2 || minutes.len() != 2 {
        return Err(bad());
    }
    let hours: i32 = hours.parse().map_err(|_| bad())?;
    let minutes: i32 = minutes.parse().map_err(|_| bad())?;
    if hours > 23 || minutes > 59 {
        return Err(bad());
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60)).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(args: &[&str]) -> Result<ImportOptions, String> {
        let cli = Cli::try_parse_from(["churnguard", "import"].iter().chain(args))
            .map_err(|e| e.to_string())?;
        let Command::Import(args) = cli.command else {
            return Err("not an import".into());
        };
        args.into_options().map_err(|e| e.to_string())
    }

    #[test]
    fn refit_defaults_to_make_runs_scoring_port() {
        let cli = Cli::try_parse_from(["churnguard", "refit"]).expect("parses");
        let Command::Refit(args) = cli.command else {
            panic!("a refit");
        };
        assert_eq!(args.connection().url, "http://127.0.0.1:50052");
        assert_eq!(args.wait, 600);
    }

    #[test]
    fn report_stores_are_optional_and_a_plot_needs_a_calibration_end() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(["churnguard", "report"].iter().chain(args)).map(|cli| {
                let Command::Report(args) = cli.command else {
                    panic!("a report");
                };
                args
            })
        };
        let all = parse(&[]).expect("--stores is optional").options();
        assert!(
            all.stores.is_empty(),
            "no stores named: ListStores lists them"
        );
        assert!(parse(&["--plot", "x.svg"]).is_err());
        let args = parse(&["--stores", "a,b", "--calibration-end", "1997-09-30"]).expect("parses");
        let o = args.options();
        assert_eq!(o.stores, ["a", "b"]);
        assert_eq!((o.top, o.from, o.holdout_end), (10, None, None));
        assert_eq!(o.calibration_end, NaiveDate::from_ymd_opt(1997, 9, 30));
        assert_eq!(o.connection.url, "http://127.0.0.1:50052");
        assert!(parse(&["--stores", "a", "--plot", "x.svg"]).is_err());
        assert!(parse(&["--stores", "a", "--holdout-end", "1998-06-30"]).is_err());
        assert!(parse(&["--stores", "a", "--calibration-end", "1997-9-30"]).is_err());
        assert!(parse(&["--stores", "a", "--top", "0"]).is_err());
    }

    #[test]
    fn cdnow_defaults_are_the_documented_ones() {
        let o = options(&["CDNOW_master.txt", "--format", "cdnow"]).expect("parses");
        assert_eq!(o.format, Format::Cdnow(CdnowValues::default()));
        assert_eq!(o.connection.url, "http://127.0.0.1:50051");
        assert_eq!(o.time_of_day, crate::options::noon());
        assert_eq!(o.utc_offset.local_minus_utc(), 0);
        assert_eq!((o.batch_size, o.in_flight, o.retries), (500, 4, 5));
        assert!(options(&["f", "--format", "cdnow", "--amount-column", "x"]).is_err());
    }

    #[test]
    fn csv_values_win_over_columns() {
        let o = options(&[
            "sales.csv",
            "--format",
            "csv",
            "--store",
            "s-1",
            "--date-column",
            "day",
            "--utc-offset",
            "-05:00",
            "--terminal-column",
            "till",
            "--currency",
            "EUR",
        ])
        .expect("parses");
        let Format::Csv(c) = o.format else {
            panic!("csv")
        };
        assert_eq!(c.store, Pick::Value("s-1".into()));
        assert_eq!(c.terminal, Pick::Column("till".into()));
        assert_eq!(c.employee, CsvColumns::default().employee);
        assert_eq!(c.time, TimePick::Date("day".into()));
        assert_eq!(c.currency, Pick::Value("EUR".into()));
        assert_eq!(o.utc_offset.local_minus_utc(), -5 * 3600);
        let both = options(&[
            "f",
            "--format",
            "csv",
            "--store",
            "a",
            "--store-column",
            "b",
        ]);
        assert!(both.is_err());
    }

    #[test]
    fn offsets_and_times_of_day_parse_strictly() {
        assert_eq!(utc_offset("+01:30").map(|o| o.local_minus_utc()), Ok(5400));
        assert_eq!(utc_offset("Z").map(|o| o.local_minus_utc()), Ok(0));
        for bad in ["01:00", "+1:00", "+01", "+24:00", "+01:60", ""] {
            assert!(utc_offset(bad).is_err(), "{bad}");
        }
        assert!(time_of_day("09:30").is_ok());
        assert!(time_of_day("25:00").is_err());
    }
}
