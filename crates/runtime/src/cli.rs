//! What every service binary does on its command line and with its settings.
//!
//! Arguments are parsed with clap (derive) in each binary: `--config FILE` (also from the
//! service's `CHURNGUARD_<SERVICE>_CONFIG` variable), `--help`, `--version`, and the
//! binary's own flags. A wrong flag exits with code 2 and says why (clap). Settings that
//! do not load exit with code 2 too, naming the bad key: [`settings_or_exit`].

use std::fmt::Display;

/// The exit code of a binary started with bad arguments or settings (as clap uses).
pub const USAGE_EXIT: i32 = 2;

/// The loaded settings, or: prints `<binary>: <why>` (which names the bad key) on
/// standard error and exits with code 2.
pub fn settings_or_exit<T, E: Display>(binary: &str, loaded: Result<T, E>) -> T {
    loaded.unwrap_or_else(|e| {
        eprintln!("{binary}: {e}");
        std::process::exit(USAGE_EXIT)
    })
}
