//! What every service binary does on its command line and with its settings.
//!
//! Each binary's `Args` (clap derive) flattens [`ServiceArgs`] (`--config FILE`) next to
//! its own flags, and is parsed by [`parse`], which also reads `--config` from the
//! service's `CHURNGUARD_<SERVICE>_CONFIG` variable ([`ServiceSettings::CONFIG_ENV`]).
//! `--help` and `--version` come with clap; a wrong flag exits with code 2 and says why.
//! Settings that do not load exit with code 2 too, naming the bad key: [`load_or_exit`].

use std::fmt::Display;
use std::path::PathBuf;

use churnguard_config::ServiceSettings;
use clap::{Args, Command, FromArgMatches, Parser};

/// The exit code of a binary started with bad arguments or settings (as clap uses).
pub const USAGE_EXIT: i32 = 2;

/// The flags every service binary has: `#[command(flatten)]` it into the binary's `Args`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    /// Settings file (TOML); the service's CHURNGUARD_* environment variables override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Parses the binary's arguments; `--config` may also come from `S::CONFIG_ENV` (shown in
/// `--help`). Exits like clap's own `parse` on `--help`, `--version` or a wrong flag.
pub fn parse<A: Parser, S: ServiceSettings>() -> A {
    let command = A::command().mut_arg("config", |arg| arg.env(S::CONFIG_ENV));
    let mut matches = command.get_matches();
    A::from_arg_matches_mut(&mut matches).unwrap_or_else(|e| e.exit())
}

/// What a service binary starts with: its arguments ([`parse`]) and its settings, loaded
/// from the `--config` that `service` picks out of them ([`load_or_exit`]).
pub fn start<A: Parser, S: ServiceSettings>(
    binary: &str,
    service: fn(&A) -> &ServiceArgs,
) -> (A, S) {
    let args = parse::<A, S>();
    let settings = load_or_exit(binary, service(&args));
    (args, settings)
}

/// [`start`] for a binary with no flags of its own (`--config`, `--help`, `--version`
/// only): its settings. `version` is the binary's (`env!("CARGO_PKG_VERSION")`), `about`
/// the one line `--help` starts with.
pub fn start_service<S: ServiceSettings>(
    binary: &'static str,
    version: &'static str,
    about: &'static str,
) -> S {
    let command = Command::new(binary).version(version).about(about);
    let command =
        ServiceArgs::augment_args(command).mut_arg("config", |arg| arg.env(S::CONFIG_ENV));
    let args = ServiceArgs::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit());
    load_or_exit(binary, &args)
}

/// Loads the settings from `args.config` (then the environment), or: prints
/// `<binary>: <why>` (which names the bad key) and exits with code 2.
pub fn load_or_exit<S: ServiceSettings>(binary: &str, args: &ServiceArgs) -> S {
    settings_or_exit(binary, S::load(args.config.as_deref()))
}

/// The loaded settings, or: prints `<binary>: <why>` (which names the bad key) on
/// standard error and exits with code 2.
pub fn settings_or_exit<T, E: Display>(binary: &str, loaded: Result<T, E>) -> T {
    loaded.unwrap_or_else(|e| {
        eprintln!("{binary}: {e}");
        std::process::exit(USAGE_EXIT)
    })
}
