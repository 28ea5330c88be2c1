//! `churnguard import FILE --format cdnow|csv [...]` (`churnguard help import`),
//! `churnguard refit [--scoring URL]` (`churnguard help refit`) and
//! `churnguard report [--stores A,B] [--calibration-end DATE] [--plot FILE.svg]`
//! (`churnguard help report`)
//!
//! Parses the command line, runs the import with a progress bar on stderr, and prints
//! the report on stdout. Ctrl-C stops it cleanly: no new batch is sent, the ones in
//! flight are answered and recorded, and running the same command again goes on from
//! there; a second Ctrl-C ends it at once (what was answered is recorded all the same).
//!
//! Exit status: 0 every line imported; 3 the import ran, but some lines were rejected or
//! failed, or it stopped early (the report says which); 1 it could not go on; 2 bad usage.

use std::process::ExitCode;

use churnguard_cli::CliError;
use churnguard_cli::args::{Cli, Command, ImportArgs, RefitArgs, ReportArgs};
use clap::Parser as _;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("churnguard: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Import(args) => runtime.block_on(import(*args)),
        Command::Refit(args) => runtime.block_on(refit(args)),
        Command::Report(args) => runtime.block_on(report(args)),
    }
}

/// Prints the report; writes the plot, if asked for, once the check is in.
async fn report(args: ReportArgs) -> ExitCode {
    let fail = |e: CliError| {
        eprintln!("churnguard report: {e}");
        if matches!(e, CliError::Usage(_)) {
            ExitCode::from(2)
        } else {
            ExitCode::FAILURE
        }
    };
    if let Some(path) = &args.plot
        && let Err(e) = churnguard_cli::plot::check_path(path)
    {
        return fail(e);
    }
    let report = match churnguard_cli::model_report::report(&args.options()).await {
        Ok(report) => report,
        Err(e) => return fail(e),
    };
    print!("{report}");
    if let (Some(path), Some(holdout)) = (&args.plot, &report.holdout) {
        if let Err(e) = churnguard_cli::plot::write(holdout, path) {
            return fail(e);
        }
        eprintln!(
            "churnguard report: the holdout check drawn in {}",
            path.display()
        );
    }
    ExitCode::SUCCESS
}

async fn refit(args: RefitArgs) -> ExitCode {
    let connection = args.connection();
    match churnguard_cli::refit::refit(&connection, std::time::Duration::from_secs(args.wait)).await
    {
        Ok(refitted) => {
            print!("{refitted}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("churnguard refit: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn import(args: ImportArgs) -> ExitCode {
    let quiet = args.quiet;
    let opts = match args.into_options() {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("churnguard import: {e}");
            return ExitCode::from(2);
        }
    };
    let stop = CancellationToken::new();
    tokio::spawn(stop_on_ctrl_c(stop.clone()));
    let bar = churnguard_cli::progress::bar(quiet);
    match churnguard_cli::import(&opts, &bar, stop).await {
        Ok(report) => {
            bar.finish_and_clear();
            print!("{report}");
            if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }
        Err(e) => {
            bar.abandon();
            eprintln!("churnguard import: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The first Ctrl-C stops the import after the batches in flight; the second ends the
/// process (130, as a shell reports SIGINT).
async fn stop_on_ctrl_c(stop: CancellationToken) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    eprintln!("churnguard import: stopping after the batches in flight (Ctrl-C again to quit now)");
    stop.cancel();
    if tokio::signal::ctrl_c().await.is_ok() {
        std::process::exit(130);
    }
}
