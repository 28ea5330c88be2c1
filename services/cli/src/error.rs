//! The crate's one error type: why `churnguard` stopped, each variant named after what
//! failed, with the path or address it failed on.
//!
//! A bad line of the input is not an error: it is rejected on its own and counted in the
//! report. These are the failures after which going on would be guessing.

use std::path::PathBuf;

use churnguard_proto::code_name;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A command-line value that cannot be used, e.g. a `--source` with a space.
    #[error("{0}")]
    Usage(String),
    /// The input file could not be opened or read.
    #[error("reading {}: {source}", .path.display())]
    ReadInput {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The CSV reader failed on something other than a bad field (an I/O error).
    #[error("reading {} as CSV: {source}", .path.display())]
    ReadCsv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    /// The CSV header lacks a column the options need.
    #[error("the header of {}: {message}", .path.display())]
    CsvColumns { path: PathBuf, message: String },
    /// The state file exists but could not be read.
    #[error("reading the import state {}: {source}", .path.display())]
    ReadState {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The state file is not one this command wrote.
    #[error(
        "the import state {} is not one churnguard import wrote ({source}); move it away to start over",
        .path.display()
    )]
    ParseState {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The state file could not be written (a read-only directory: use `--state`).
    #[error(
        "writing the import state {}: {source} (name a writable place with --state PATH)",
        .path.display()
    )]
    WriteState {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The state file belongs to another import (another source, or a file that has
    /// since shrunk): resuming from it could skip lines never sent.
    #[error("the import state {} does not fit this import: {message}", .path.display())]
    StateMismatch { path: PathBuf, message: String },
    /// The `--ingest` address or the TLS settings cannot make a client.
    #[error("purchase-ingest at {url}: {message}")]
    Connect { url: String, message: String },
    /// purchase-ingest ended the stream with a status retrying cannot change
    /// (UNAUTHENTICATED, a batch too large, ...).
    #[error(
        "purchase-ingest refused the import: {}{hint}; {lines_done} leading lines are recorded as imported",
        describe(.status)
    )]
    Refused {
        status: Status,
        hint: &'static str,
        lines_done: u64,
    },
    /// purchase-ingest could not be reached, or kept failing, however often it was tried.
    #[error(
        "purchase-ingest at {url} failed {attempts} times in a row, last with {}; {lines_done} leading lines are recorded as imported: run the same command again to resume",
        describe(.status)
    )]
    Unreachable {
        url: String,
        attempts: u32,
        lines_done: u64,
        status: Status,
    },
    /// An answer that does not match its batch (a server speaking another contract).
    #[error("purchase-ingest answered out of contract: {0}")]
    Protocol(String),
    /// churn-scoring refused or failed a call of the refit or report command.
    #[error("churn-scoring at {url}, {call}: {}", describe(.status))]
    Scoring {
        url: String,
        call: &'static str,
        status: Status,
    },
    /// `churnguard report --plot` could not draw or write its image.
    #[error("writing the plot {}: {message}", .path.display())]
    Plot { path: PathBuf, message: String },
    /// The refit asked for was not shown by GetModel in time.
    #[error(
        "churn-scoring at {url} has not stored the refit asked for (still version {version}) after {waited:?}: the log may still be being applied; GetModel shows it when it is"
    )]
    RefitTimeout {
        url: String,
        version: u64,
        waited: std::time::Duration,
    },
}

/// A status as one readable phrase: `UNAVAILABLE: connection refused`.
pub fn describe(status: &Status) -> String {
    let message = status.message();
    if message.is_empty() {
        code_name(status.code()).to_owned()
    } else {
        format!("{}: {message}", code_name(status.code()))
    }
}
