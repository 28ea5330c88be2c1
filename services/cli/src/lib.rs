//! `churnguard`, the operator's command line for a churnguard deployment. It talks to the
//! deployment only through the services' public gRPC APIs, as any client would.
//!
//! `churnguard import FILE` loads historical transactions (the CDNOW files, or a CSV
//! export of a till system) through purchase-ingest's StreamSwipes, marked `historical`,
//! so history is validated, keyed and written exactly like live swipes. It resumes where
//! it stopped, and a finished import run again sends nothing (see [`mod@import`]).
//!
//! `churnguard refit` asks churn-scoring to refit its models now and waits for the new
//! version ([`mod@refit`]), so a report right after an import reads models fitted on it.
//!
//! `churnguard report` reads the current model, defection by store, the customers most
//! at risk and, given a calibration end, the holdout check churn-scoring makes on its
//! log, as text and as an SVG figure ([`mod@model_report`], [`mod@plot`]).
//!
//! The logic is here, so tests call [`import()`] against a real purchase-ingest; the
//! binary (`src/main.rs`) parses the command line ([`args`]) and prints the
//! [`ImportReport`].

pub mod args;
pub mod client;
pub mod decimal;
pub mod error;
pub mod import;
pub mod input;
pub mod model_report;
pub mod options;
pub mod plot;
pub mod progress;
pub mod refit;
pub mod report;
pub mod state;

pub use error::CliError;
pub use import::import;
pub use model_report::{ModelReport, ReportOptions};
pub use options::{
    CdnowValues, Connection, CsvColumns, Format, ImportOptions, Pick, TimePick, Token,
};
pub use report::ImportReport;
pub use state::ImportState;
